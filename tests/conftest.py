"""Fixtures on a real PostgreSQL: the test cluster bin/test started (started
here too when pytest runs alone), one fresh database per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories

from generator.cluster import Cluster
from generator.sample import Sizes, create_schema, load_reference

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = Cluster(Path(os.environ.get("REFDATA_TEST_HOME") or ROOT / ".refdata" / "test"))
CLUSTER.start()

RUN = f"{os.getpid()}"  # per-run suffix of cluster-wide names (databases, roles)

postgresql_noproc = factories.postgresql_noproc(
    host=str(CLUSTER.socket_dir), port=5432, user="postgres",
    dbname=f"refdata_test_{RUN}",  # concurrent pytest runs on one cluster stay apart
)
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def dsn(postgresql) -> str:
    info = postgresql.info
    return make_conninfo(host=info.host, port=info.port, user=info.user, dbname=info.dbname)


@pytest.fixture
def sample(postgresql) -> psycopg.Connection:
    """The sample schema (mapping.*, business.规模明细) with authoritative rows."""
    with postgresql.transaction():
        create_schema(postgresql)
        load_reference(postgresql, Sizes())
    return postgresql


@pytest.fixture
def write_config(tmp_path):
    def write(text: str, name: str = "data_sources.yml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli(dsn, tmp_path):
    """Run bin/refdata's CLI in a subprocess, as a user would (against this test's database).
    The embedded cluster's home is a folder that does not exist unless `env` names one,
    so no test reaches a developer's .refdata/."""

    def run(*args: str, db: str | None = dsn, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")}
        full_env["REFDATA_HOME"] = str(tmp_path / "no-embedded-cluster")
        full_env.update(env or {})
        argv = [sys.executable, "-m", "generator.cli"] + (["--db", db] if db else []) + list(args)
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=ROOT)

    return run


@pytest.fixture
def role(postgresql, dsn):
    """Make a login role and connect as it. Roles are cluster-wide: the name
    gets this run's suffix (two runs on one cluster stay apart) and the role
    is dropped afterwards."""
    made: list[str] = []
    conns: list[psycopg.Connection] = []

    def make(name: str, grants: list[str] = ()) -> psycopg.Connection:
        name = f"{name}_{RUN}"
        with postgresql.transaction():
            postgresql.execute(f'CREATE ROLE "{name}" LOGIN')
            made.append(name)
            for g in grants:
                postgresql.execute(g.format(role=f'"{name}"'))
        info = postgresql.info
        conn = psycopg.connect(host=info.host, port=info.port, user=name, dbname=info.dbname, autocommit=True)
        conns.append(conn)
        return conn

    yield make
    for conn in conns:
        conn.close()
    postgresql.rollback()  # a transaction the test left open would hold locks DROP OWNED needs
    with psycopg.connect(dsn, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP OWNED BY "{name}"')
            admin.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def db(postgresql) -> psycopg.Connection:
    """The test database's superuser connection in autocommit mode, so that it
    never holds locks while the CLI (another process) changes the schema."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
def sample_db(sample, db) -> psycopg.Connection:
    """`sample`, committed, through the autocommit connection."""
    return db


def catalog_snapshot(conn: psycopg.Connection) -> dict:
    """What refdata apply creates or changes, read back from the catalog:
    function and trigger definitions, columns, constraints and indexes of the
    tables that carry tracking columns, and the rows of refdata.domain_param."""
    q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
    tracked = """(SELECT attrelid FROM pg_attribute WHERE attname = '_source' AND NOT attisdropped
                  UNION SELECT oid FROM pg_class WHERE relnamespace::regnamespace::text LIKE 'refdata%')"""
    snap = {
        "schemas": q("SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
                     "WHERE nspname LIKE 'refdata%' ORDER BY 1"),
        "relations": q("SELECT c.relname, c.relkind, c.relacl::text, obj_description(c.oid, 'pg_class') "
                       "FROM pg_class c WHERE c.relnamespace::regnamespace::text LIKE 'refdata%' ORDER BY 1"),
        "functions": q("SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text, "
                       "obj_description(p.oid, 'pg_proc') FROM pg_proc p "
                       "WHERE p.pronamespace::regnamespace::text LIKE 'refdata%' ORDER BY 1"),
        "triggers": q("SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled "
                      "FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"),
        "columns": q(f"""SELECT a.attrelid::regclass::text, a.attnum, a.attname,
                               format_type(a.atttypid, a.atttypmod), a.attnotnull,
                               pg_get_expr(d.adbin, d.adrelid)
                        FROM pg_attribute a LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
                        WHERE a.attrelid IN {tracked} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"""),
        "constraints": q(f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                         f"WHERE conrelid IN {tracked} ORDER BY 1, 2"),
        "indexes": q(f"SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                     f"WHERE indrelid IN {tracked} ORDER BY 1"),
        "domain_param": q("SELECT domain, params::text, updated_at FROM refdata.domain_param ORDER BY 1")
        if conn.execute("SELECT to_regclass('refdata.domain_param')").fetchone()[0]
        else [],
    }
    return snap


@pytest.fixture
def snapshot():
    return catalog_snapshot
