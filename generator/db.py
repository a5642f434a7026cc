"""Which database to use, and connecting to it.

--db > $REFDATA_DB > $DATABASE_URL > the embedded default cluster.
"""

from __future__ import annotations

import os

import psycopg

from .cluster import Cluster
from .errors import InputError, RefdataError


def named_dsn(cli_value: str | None) -> str | None:
    """The database the user named, if any (never starts the embedded cluster)."""
    for source, value in (("--db", cli_value), ("$REFDATA_DB", os.environ.get("REFDATA_DB")),
                          ("$DATABASE_URL", os.environ.get("DATABASE_URL"))):
        if value:
            return checked_dsn(value, source)
    return None


def checked_dsn(value: str, source: str) -> str:
    """`value` when libpq reads it, else InputError naming `source` but never
    quoting the value: libpq's own message repeats it, password and all."""
    try:
        psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.ProgrammingError:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        hint = (f"; {scheme}:// is SQLAlchemy's form of a URL: drop the +{scheme.split('+', 1)[1]}"
                if "+" in scheme else "")
        raise InputError(f"{source}: not a connection string PostgreSQL reads (postgresql://USER@HOST:PORT/DBNAME, "
                         f"or key=value pairs such as host=HOST dbname=DBNAME){hint}") from None
    return value


def resolve_dsn(cli_value: str | None) -> str:
    return named_dsn(cli_value) or embedded_dsn()


def catalog_dsn(cli_value: str | None) -> tuple[str | None, str]:
    """The database `validate` checks: the one `apply` would use. The embedded
    cluster is started when it exists but is never created just to validate;
    then (None, why) says why the catalog was not checked."""
    dsn = named_dsn(cli_value)
    if dsn:
        return dsn, ""
    cluster = Cluster()
    if not cluster.initialized():
        return None, (f"no database named by --db, $REFDATA_DB or $DATABASE_URL, and no embedded cluster under "
                      f"{cluster.home} yet")
    cluster.start()
    return cluster.url(), ""


def explicit_dsn(cli_value: str | None) -> str:
    """--db, else the embedded cluster: for commands that create and drop
    databases of their own (demo, bench), which must never follow the
    environment to a server the user did not name on the command line."""
    return checked_dsn(cli_value, "--db") if cli_value else embedded_dsn()


def embedded_dsn() -> str:
    cluster = Cluster()
    cluster.start()
    return cluster.url()


# How long apply, plan and uninstall wait for a lock before giving up (--lock-timeout):
# a DDL statement waiting for a table queues every later reader and writer of it.
DEFAULT_LOCK_TIMEOUT = "5s"


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    try:
        conn = psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "connection failed"
        raise RefdataError(f"cannot connect to {redact(dsn)}: {first}") from None
    except psycopg.ProgrammingError:  # libpq's message quotes the string, password and all
        checked_dsn(dsn, "the database")
        raise
    # refdata's SQL spells LIKE patterns with backslashes ('\_rd\_%'); a
    # database defaulting this to off would read them as other patterns
    conn.execute("SET standard_conforming_strings = on")
    if not conn.autocommit:
        conn.commit()
    return conn


def redact(dsn: str) -> str:
    """A DSN fit for messages: no password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**info)


def describe(conn: psycopg.Connection) -> str:
    """`database NAME on HOST[:PORT]` for messages (never the password)."""
    info = conn.info
    where = info.host + (f":{info.port}" if info.port and int(info.port) != 5432 else "")
    return f"database {info.dbname} on {where}"


# SQLSTATE classes and codes of a connection that is gone: 08 connection
# exception, 57P01..57P03 the server shutting down or refusing; no SQLSTATE
# at all when the socket closed before the server could say anything.
_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")


def database_error(e: psycopg.Error) -> str:
    """A database error as one line for users: the server's own message (not
    psycopg's class name, not the statement with its LINE and caret lines),
    saying when the connection was lost or the database is read-only."""
    text = (e.diag.message_primary or str(e)).strip()
    first = text.splitlines()[0].strip() if text else type(e).__name__
    state = e.sqlstate or ""
    if state.startswith(_CONNECTION_LOST) or (not state and isinstance(e, psycopg.OperationalError)):
        return f"lost the connection to the database: {first}"
    if state == "25006":
        return f"{first} (the database is read-only: a hot standby, or default_transaction_read_only is on)"
    return first

