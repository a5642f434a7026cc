"""Apply the rendered SQL: catalog check first, then all statements in one transaction."""

from __future__ import annotations

import psycopg

from .catalog import Report, check
from .config import Config
from .db import describe
from .errors import InputError, RefdataError
from .render import Statement, render

# Serialises concurrent applies on one database (an arbitrary, fixed key).
APPLY_LOCK_KEY = 0x72656664  # 'refd'


def checked(conn: psycopg.Connection, config: Config, source: str) -> tuple[list[Statement], Report]:
    """Catalog-check the config and render it; InputError with one line per problem."""
    report = check(conn, config)
    if report.errors:
        where = describe(conn)
        raise InputError("\n".join(f"{source}: {e} ({where})" for e in report.errors))
    return render(config, report.skipped), report


def apply(conn: psycopg.Connection, config: Config, source: str,
          prepared: tuple[list[Statement], Report] | None = None) -> tuple[list[Statement], Report]:
    """Check, then run every statement in one transaction: all of it or nothing.

    `prepared` is what `checked` gave for a database with the same catalog
    (catalog.fingerprint), e.g. for copies of one template database."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [APPLY_LOCK_KEY])
        statements, report = prepared or checked(conn, config, source)
        for s in statements:
            try:
                conn.execute(s.sql, s.bound_params())
            except psycopg.Error as e:
                message = (e.diag.message_primary or str(e)).strip()
                raise RefdataError(
                    f"apply failed at {s.kind} {s.name}: {message}; nothing was applied ({describe(conn)})"
                ) from None
    return statements, report
