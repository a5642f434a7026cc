"""review approve and review merge, through their SQL functions."""

from __future__ import annotations

import json

import psycopg
from psycopg.types.json import Jsonb

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


def approve(conn: psycopg.Connection, table: str, keys: list[str]) -> int:
    try:
        with conn.transaction():
            return conn.execute("SELECT refdata.review_approve(%s, %s)",
                                [table, Jsonb([parse_key(k) for k in keys])]).fetchone()[0]
    except psycopg.Error as e:
        raise translate(e) from None


def merge(conn: psycopg.Connection, table: str, wrong: str, right: str) -> dict:
    try:
        with conn.transaction():
            return conn.execute("SELECT refdata.review_merge(%s, %s, %s)",
                                [table, Jsonb(parse_key(wrong)), Jsonb(parse_key(right))]).fetchone()[0]
    except psycopg.Error as e:
        raise translate(e) from None
