"""Apply the rendered SQL: catalog check first, then all statements in one transaction."""

from __future__ import annotations

import psycopg

from .catalog import Report, check, check_sync
from .config import Config, SyncConfig
from .db import describe
from .errors import InputError, RefdataError
from .names import DEFAULT_OWNER, ident
from .render import Statement, render
from .sync.render import statements as sync_statements

# Serialises concurrent applies on one database (an arbitrary, fixed key).
APPLY_LOCK_KEY = 0x72656664  # 'refd'


def pin_search_path(conn: psycopg.Connection) -> None:
    """Resolve operators and functions in pg_catalog only for the rest of the
    transaction: probes and DDL run as the applier (often a superuser), and an
    operator someone planted in a schema on the session's search_path
    (`evil.<(bigint, integer)`) would otherwise run with the applier's rights."""
    conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")


def checked(conn: psycopg.Connection, config: Config, source: str,
            sync: tuple[str, SyncConfig] | None = None,
            owner: str = DEFAULT_OWNER) -> tuple[list[Statement], Report]:
    """Catalog-check the config (and the sync config, when given) and render
    them; InputError with one line per problem."""
    pin_search_path(conn)
    superuser = conn.execute("SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = %s", [owner]).fetchone()
    if superuser and superuser[0]:
        raise InputError(
            f"--owner {owner}: role {owner} is a superuser, and the SECURITY DEFINER functions it owned would "
            f"run triggers that others put on reference tables as superuser; name a role without SUPERUSER "
            f"(--owner ROLE or $REFDATA_OWNER; apply creates it NOLOGIN when missing), or run "
            f"ALTER ROLE {ident(owner)} NOSUPERUSER")
    report = check(conn, config)
    errors = [f"{source}: {e}" for e in report.errors]
    extra: list[Statement] = []
    if sync:
        sync_source, sync_config = sync
        sync_report = check_sync(conn, sync_config)
        errors += [f"{sync_source}: {e}" for e in sync_report.errors]
        if not sync_report.errors:
            extra, warnings = sync_statements(sync_config, config)
            report.unconnected += [f"{sync_source}: {w}" for w in warnings]
    if errors:
        where = describe(conn)
        raise InputError("\n".join(f"{e} ({where})" for e in errors))
    return render(config, report.skipped, extra, owner), report


def apply(conn: psycopg.Connection, config: Config, source: str,
          prepared: tuple[list[Statement], Report] | None = None,
          sync: tuple[str, SyncConfig] | None = None,
          owner: str = DEFAULT_OWNER) -> tuple[list[Statement], Report]:
    """Check, then run every statement in one transaction: all of it or nothing.

    `prepared` is what `checked` gave for a database with the same catalog
    (catalog.fingerprint), e.g. for copies of one template database. `sync`:
    reference_sync.yml's path and content, applied with it."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [APPLY_LOCK_KEY])
        pin_search_path(conn)
        statements, report = prepared or checked(conn, config, source, sync, owner)
        for s in statements:
            try:
                conn.execute(s.sql, s.bound_params())
            except psycopg.Error as e:
                message = (e.diag.message_primary or str(e)).strip()
                raise RefdataError(
                    f"apply failed at {s.kind} {s.name}: {message}; nothing was applied ({describe(conn)})"
                ) from None
    return statements, report
