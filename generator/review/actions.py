"""review approve and review merge, through their SQL functions."""

from __future__ import annotations

import json

import psycopg
from psycopg.types.json import Jsonb

from ..errors import InputError
from .errors import translate


def parse_key(text: str):
    """A key as typed: a JSON object for composite keys, else the value itself."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(value, dict):
            return value
    return text


# A TABLE argument the review functions cannot take: no such table, a name
# that does not parse, no such schema, no reference table.
_TABLE_STATES = ("42P01", "42602", "42601", "3F000", "22023")


def _qualified(conn: psycopg.Connection, table: str) -> str:
    """TABLE as the caller's search_path finds it, with its schema: the
    review functions resolve names under search_path pg_catalog, pg_temp,
    where a table of the caller's schema is not found."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) "
                               "FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
                               "WHERE c.oid = pg_catalog.to_regclass(%s)", [table]).fetchone()
    except psycopg.Error:
        row = None  # a name that does not parse: the function says so
    return row[0] if row else table


def _call(conn: psycopg.Connection, command: str, table: str, sql: str, params: list):
    try:
        with conn.transaction():
            return conn.execute(sql, [_qualified(conn, table), *params]).fetchone()[0]
    except psycopg.Error as e:
        message = (e.diag.message_primary or str(e)).strip()
        if (e.sqlstate or "") in _TABLE_STATES and not message.startswith(("key ", "cannot merge")):
            # what is wrong with TABLE is said naming it, as other arguments are
            raise InputError(f"review {command}: TABLE {table}: {message}") from None
        raise translate(e) from None


def approve(conn: psycopg.Connection, table: str, keys: list[str]) -> int:
    return _call(conn, "approve", table, "SELECT refdata.review_approve(%s, %s)",
                 [Jsonb([parse_key(k) for k in keys])])


def merge(conn: psycopg.Connection, table: str, wrong: str, right: str) -> dict:
    return _call(conn, "merge", table, "SELECT refdata.review_merge(%s, %s, %s)",
                 [Jsonb(parse_key(wrong)), Jsonb(parse_key(right))])
