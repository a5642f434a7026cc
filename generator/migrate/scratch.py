"""The scratch database a plan builds the desired state in.

Enters: a connection to the live database, the schemas to copy, optionally a
scratch database the user named (--scratch-db, for users without CREATEDB).
Leaves: a connection to a database holding a schema-only copy of those
schemas (pg_dump | psql, no owners, no privileges), which is dropped again
when the `with` block ends, however it ends. A named scratch database is
kept, but the schemas copied into it are dropped.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from ..catalog import query
from ..cluster import postgres_bindir
from ..db import DEFAULT_LOCK_TIMEOUT, connect, redact
from ..errors import RefdataError
from ..names import ident, qualified


def client_binary(conn: psycopg.Connection, name: str) -> str:
    """pg_dump/psql of the server's major version when installed (pg_dump refuses newer servers)."""
    major = conn.info.server_version // 10000
    exact = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
    if exact.exists():
        return str(exact)
    return str(postgres_bindir() / name)


def _client_env(conn: psycopg.Connection) -> dict:
    """The live connection's password travels in the environment, never on a command line."""
    env = dict(os.environ)
    if conn.info.password:
        env["PGPASSWORD"] = conn.info.password
    return env


# Connection options of newer libpq versions than the client programs of PostgreSQL 15 know.
_NEWER_OPTIONS = ("sslcertmode", "require_auth", "load_balance_hosts", "sslnegotiation", "min_protocol_version",
                  "max_protocol_version")


def conninfo(conn: psycopg.Connection, **changes) -> str:
    """Where the connection goes (host, port, user, database; no password), as any libpq client takes it."""
    info = {k: v for k, v in conn.info.get_parameters().items() if k not in _NEWER_OPTIONS}
    info.update(changes)
    return make_conninfo(**info)





@contextmanager
def scratch_database(live: psycopg.Connection, schemas: list[str], scratch_dsn: str | None = None,
                     lock_timeout: str = DEFAULT_LOCK_TIMEOUT):
    """A database holding a schema-only copy of `schemas` from `live`; the copy
    gives up when a table's lock is not granted within `lock_timeout`."""
    if scratch_dsn:
        with connect(scratch_dsn, autocommit=True) as conn:
            _pin(conn)
            taken = [r[0] for r in conn.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY (%s) AND nspname <> 'public' "
                "ORDER BY 1", [schemas])]
            if taken:
                raise RefdataError(
                    f"scratch database {redact(scratch_dsn)} already has schema {taken[0]}; name an empty database")
            try:
                _copy(live, conn, schemas, lock_timeout)
                yield conn
            finally:
                conn.rollback()
                for s in schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {ident(s)} CASCADE")
                if "public" in schemas:
                    conn.execute("CREATE SCHEMA IF NOT EXISTS public")
        return

    name = f"refdata_plan_{os.getpid()}_{secrets.token_hex(4)}"
    with _connect_like(live, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE DATABASE {ident(name)} TEMPLATE template0")
        except psycopg.errors.InsufficientPrivilege:
            raise RefdataError("plan needs a scratch database: this role may not CREATE DATABASE; "
                               "name an empty one with --scratch-db DSN") from None
        try:
            with _connect_like(live, dbname=name, autocommit=True) as conn:
                _copy(live, conn, schemas, lock_timeout)
                _pin(conn)
                yield conn
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")


def _pin(conn: psycopg.Connection) -> None:
    """The copy holds the live database's schemas, operators someone planted in
    them included: the planner's queries and the rendered SQL resolve in
    pg_catalog only there (as apply does in the live database)."""
    conn.execute("SET search_path = pg_catalog, pg_temp")


def _connect_like(live: psycopg.Connection, dbname: str | None = None, **kwargs) -> psycopg.Connection:
    """Another connection as the live one's role, to the same or another database of its server."""
    if live.info.password:
        kwargs["password"] = live.info.password
    return psycopg.connect(conninfo(live, **({"dbname": dbname} if dbname else {})), **kwargs)


def _copy(live: psycopg.Connection, scratch: psycopg.Connection, schemas: list[str], lock_timeout: str) -> None:
    """pg_dump --schema-only of `schemas` from live, replayed into scratch by psql."""
    if not schemas:
        return
    if "public" in schemas:
        # a new database has an empty schema public; the dump creates it
        try:
            scratch.execute("DROP SCHEMA IF EXISTS public")
        except psycopg.errors.DependentObjectsStillExist:
            raise RefdataError("the scratch database's schema public is not empty; name an empty database") from None
    dump_cmd = [client_binary(live, "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
                "--quote-all-identifiers", f"--lock-wait-timeout={lock_timeout}", "-d", conninfo(live)]
    for s in schemas:
        dump_cmd += ["-n", ident(s)]  # a pattern: quoted, it matches this name only
    for (extension,) in live.execute(query("copied_extensions"), {"schemas": schemas}).fetchall():
        dump_cmd += ["-e", ident(extension)]
    for schema, table in live.execute(query("uncopied_relations"), {"schemas": schemas}).fetchall():
        dump_cmd += ["-T", qualified(schema, table)]
    dump = subprocess.run(dump_cmd, capture_output=True, env=_client_env(live))
    if dump.returncode != 0:
        raise RefdataError(f"pg_dump of the live schema failed: {_first_line(dump.stderr)}")
    restore = subprocess.run(
        [client_binary(live, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo(scratch)],
        input=dump.stdout, capture_output=True, env=_client_env(scratch))
    if restore.returncode != 0:
        raise RefdataError(f"copying the live schema into the scratch database failed: {_first_line(restore.stderr)}")


def _first_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[0].strip() if lines else "no message"
