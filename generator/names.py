"""The one place where names and values become SQL text.

Every identifier in generated SQL goes through `ident`; the few values that
must appear in a rendered script (never in function bodies) go through
`literal`. Object names longer than PostgreSQL's 63-byte limit are shortened
by `object_name`, deterministically, so re-rendering gives the same names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata

from .errors import InputError

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1

# The role that owns the generated SECURITY DEFINER functions: NOLOGIN, no
# superuser, holding only the rights those functions need.
DEFAULT_OWNER = "refdata_owner"

# Config names (domains, foreign keys) become parts of object names: keep them
# to identifier characters (Unicode letters included) so they stay readable.
# Always used with fullmatch: `$` would also match before a final newline.
CONFIG_NAME = re.compile(r"[^\W\d]\w*")

# Characters no identifier from a config may hold: ASCII and C1 controls
# (newlines end `--` comments and psql lines), invisible format characters
# (they make names read differently than they compare) and Unicode line and
# paragraph separators.
_CONTROL_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def printable(text: str) -> str:
    """Text for a one-line message: control characters shown escaped (\\n, \\x1b, \\u2028)."""
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in _CONTROL_CATEGORIES else ch for ch in text)


def control_character(name: str) -> str | None:
    """The first control character of a name, as U+XXXX, or None."""
    for ch in name:
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def owner_role(cli_value: str | None = None) -> str:
    """The owner role: --owner > $REFDATA_OWNER > refdata_owner."""
    name = cli_value or os.environ.get("REFDATA_OWNER") or DEFAULT_OWNER
    problem = None
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        problem = f"longer than {MAX_IDENTIFIER_BYTES} bytes"
    elif control_character(name):
        problem = f"contains the control character {control_character(name)}"
    elif name.lower().startswith("pg_") or name.lower() == "public":
        problem = "is reserved by PostgreSQL"
    if problem:
        raise InputError(f"--owner / $REFDATA_OWNER: role name {printable(repr(name))} {problem}")
    return name


def ident(name: str) -> str:
    """Quote one identifier, always, whatever its characters."""
    if not isinstance(name, str) or name == "":
        raise ValueError(f"invalid identifier: {name!r}")
    if "\x00" in name:
        raise ValueError(f"identifier contains a NUL byte: {name!r}")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"identifier longer than {MAX_IDENTIFIER_BYTES} bytes: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def object_name(*parts: str) -> str:
    """Join parts with '__' and fit the result into 63 bytes.

    Too long names keep a readable prefix (cut on a character boundary) and
    end in 8 hex digits of a hash of the full name, so distinct long names
    stay distinct.
    """
    full = "__".join(parts)
    raw = full.encode("utf-8")
    if len(raw) <= MAX_IDENTIFIER_BYTES:
        return full
    digest = hashlib.sha256(raw).hexdigest()[:8]
    prefix = raw[: MAX_IDENTIFIER_BYTES - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{prefix}_{digest}"


def ordered_names(base: str, *suffixes: str) -> list[str]:
    """`base__suffix` for each suffix, fit into 63 bytes by shortening `base`
    alike in all of them, so that they keep the order of their suffixes:
    PostgreSQL fires the triggers of one event in the byte order of their
    names, and a hash at the end would decide it instead."""
    room = MAX_IDENTIFIER_BYTES - max(len(f"__{s}".encode("utf-8")) for s in suffixes)
    raw = base.encode("utf-8")
    if len(raw) > room:
        digest = hashlib.sha256(raw).hexdigest()[:8]
        base = raw[: room - len(digest) - 1].decode("utf-8", errors="ignore") + f"_{digest}"
    return [f"{base}__{s}" for s in suffixes]


def literal(value) -> str:
    """A SQL literal, read the same whatever standard_conforming_strings says."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a value contains a NUL byte")
    if "\\" in text:
        # E'' means the same whatever standard_conforming_strings says, in a
        # script and in a function body compiled by a session that turned it off.
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def dollar_quote(body: str, tag: str = "refdata") -> str:
    """Quote a function body or DO block with a dollar tag that does not occur in it.

    The body is the text between the tags; the tag is the first of `refdata`,
    `refdata1`, ... whose closing delimiter first appears where the body ends,
    so no name or value inside can end the quote early.
    """
    n = 0
    candidate = tag
    while True:
        delimiter = f"${candidate}$"
        if (body + delimiter).find(delimiter) == len(body):
            return delimiter + body + delimiter
        n += 1
        candidate = f"{tag}{n}"


def mysql_ident(name: str) -> str:
    """Quote one MySQL/MariaDB identifier (the client path's source queries)."""
    if not isinstance(name, str) or name == "" or "\x00" in name:
        raise ValueError(f"invalid identifier: {name!r}")
    return "`" + name.replace("`", "``") + "`"
