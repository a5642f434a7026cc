"""Spreadsheet cells: what enters is a text value refdata writes into a CSV
file people open in Excel or LibreOffice (export-pending, the rejects file of
refdata load); what leaves is that text made safe to open, and back again.

Text a spreadsheet would run as a formula when the file is opened (= + - @,
a tab or CR first) is written with a leading apostrophe: the keys and names
in these files come from fact files, which anyone may have written. So is a
text that starts with apostrophes before such a character, so reading takes
exactly one off again; numbers (-5, +3.2) stay as they are. export-pending
applies the same rule in SQL (its COPY writes the cells), from these patterns.
"""

from __future__ import annotations

import re

FORMULA_SQL = r"^'*[=+@\t\r-]"
NUMBER_SQL = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
QUOTED_FORMULA = re.compile(r"'+[=+@\t\r-]")
# Python's $ also matches before a final newline, PostgreSQL's does not
_FORMULA = re.compile(FORMULA_SQL)
_NUMBER = re.compile(NUMBER_SQL.removesuffix("$") + r"\Z")


def cell(value: str) -> str:
    """A text value as it is written into a cell."""
    return "'" + value if _FORMULA.match(value) and not _NUMBER.match(value) else value


def uncell(value: str) -> str:
    """A cell's text as it was before cell()."""
    return value[1:] if QUOTED_FORMULA.match(value) else value
