"""The one place where names and values become SQL text.

Every identifier in generated SQL goes through `ident`; the few values that
must appear in a rendered script (never in function bodies) go through
`literal`. Object names longer than PostgreSQL's 63-byte limit are shortened
by `object_name`, deterministically, so re-rendering gives the same names.
"""

from __future__ import annotations

import hashlib
import json
import re

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1

# Config names (domains, foreign keys) become parts of object names: keep them
# to identifier characters (Unicode letters included) so they stay readable.
CONFIG_NAME = re.compile(r"^[^\W\d]\w*$")


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


def literal(value) -> str:
    """A SQL literal for a rendered script (standard_conforming_strings on)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a value contains a NUL byte")
    return "'" + text.replace("'", "''") + "'"
