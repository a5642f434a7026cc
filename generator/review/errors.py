"""Errors of the review functions as the CLI reports them."""

from __future__ import annotations

import re

import psycopg

from ..errors import InputError, RefdataError

# What the caller got wrong (a key, a value, a name), as opposed to a failure.
_INPUT_STATES = ("22", "23", "42P01", "42703", "P0002", "42704")


def translate(e: psycopg.Error, path: str | None = None) -> RefdataError:
    """One line; `line N: ...` from review_import becomes `FILE:N: ...`."""
    message = (e.diag.message_primary or str(e)).strip()
    if path:
        m = re.match(r"line (\d+): (.*)", message, re.S)
        message = f"{path}:{m.group(1)}: {m.group(2)}" if m else f"{path}: {message}"
    state = e.sqlstate or ""
    if state.startswith(_INPUT_STATES):
        return InputError(message)
    return RefdataError(message)
