"""Fixtures on a real PostgreSQL: the test cluster bin/test started (started
here too when pytest runs alone), one fresh database per test; tests that use
`sample` get theirs as a copy of a template database holding the sample
schema, built once per run."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories

from generator import cli as cli_module
from generator.cluster import Cluster
from generator.sample import Sizes, create_schema, load_reference

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = Cluster(Path(os.environ.get("REFDATA_TEST_HOME") or ROOT / ".refdata" / "test"))
CLUSTER.start()

RUN = f"{os.getpid()}"  # per-run suffix of cluster-wide names (databases, roles)
# What a user's shell might set that would point the CLI elsewhere than the test says.
CLI_ENV = ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")


def _load_sample(host, port, user, dbname, password=None, **_) -> None:
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password) as conn:
        with conn.transaction():
            create_schema(conn)
            load_reference(conn, Sizes())


postgresql_noproc = factories.postgresql_noproc(
    host=str(CLUSTER.socket_dir), port=5432, user="postgres",
    dbname=f"refdata_test_{RUN}",  # concurrent pytest runs on one cluster stay apart
)
sample_noproc = factories.postgresql_noproc(load=[_load_sample], depends_on="postgresql_noproc",
                                           dbname=f"refdata_sample_{RUN}")
postgresql_empty = factories.postgresql("postgresql_noproc")
postgresql_sample = factories.postgresql("sample_noproc")


@pytest.fixture
def postgresql(request) -> psycopg.Connection:
    """The test's own database: empty, or a copy of the sample template for tests that use `sample`."""
    return request.getfixturevalue("postgresql_sample" if "sample" in request.fixturenames else "postgresql_empty")


@pytest.fixture
def dsn(postgresql) -> str:
    info = postgresql.info
    return make_conninfo(host=info.host, port=info.port, user=info.user, dbname=info.dbname)


@pytest.fixture
def sample(postgresql) -> psycopg.Connection:
    """The sample schema (mapping.*, business.规模明细) with authoritative rows."""
    assert postgresql.execute("SELECT to_regclass('business.\"规模明细\"')").fetchone()[0], "not the sample template"
    postgresql.rollback()
    return postgresql


@pytest.fixture
def write_config(tmp_path):
    def write(text: str, name: str = "data_sources.yml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


_OWN_DATABASE = object()


def _cli_env(tmp_path: Path, env: dict | None) -> dict:
    """Variables to set for a CLI run. The embedded cluster's home is a folder
    that does not exist unless `env` names one, so no test reaches a
    developer's .refdata/."""
    return {"REFDATA_HOME": str(tmp_path / "no-embedded-cluster"), **(env or {})}


@pytest.fixture
def cli(request, monkeypatch, tmp_path):
    """Run bin/refdata's CLI (`generator.cli.main`) in this process against
    this test's database, with stdout and stderr captured and the
    environment a user's shell could set for it removed (cwd: the project).
    Returns what a subprocess run would: returncode, stdout, stderr."""

    def run(*args: str, db=_OWN_DATABASE, env: dict | None = None) -> subprocess.CompletedProcess:
        if db is _OWN_DATABASE:
            db = request.getfixturevalue("dsn")
        argv = (["--db", db] if db else []) + list(args)
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as m:
            for name in CLI_ENV:
                m.delenv(name, raising=False)
            for name, value in _cli_env(tmp_path, env).items():
                m.setenv(name, value)
            m.chdir(ROOT)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli_module.main(argv)
                except SystemExit as e:  # --help, --version
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                except Exception:  # what --debug lets through: a traceback and exit 1, as from a process
                    traceback.print_exc()
                    code = 1
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def cli_process(request, tmp_path):
    """Run bin/refdata's CLI in a real subprocess: for what only a process
    shows (exit status, pipes, terminals, the environment it inherits)."""

    def run(*args: str, db=_OWN_DATABASE, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        if db is _OWN_DATABASE:
            db = request.getfixturevalue("dsn")
        full_env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
        full_env.update(_cli_env(tmp_path, env))
        argv = [sys.executable, "-m", "generator.cli"] + (["--db", db] if db else []) + list(args)
        kwargs.setdefault("capture_output", True)
        return subprocess.run(argv, text=True, env=full_env, cwd=ROOT, **kwargs)

    return run


@pytest.fixture
def role(postgresql, dsn):
    """Make a login role and connect as it. Roles are cluster-wide: the name
    gets this run's suffix unless it carries it already (two runs on one
    cluster stay apart), and the role is dropped afterwards."""
    made: list[str] = []
    conns: list[psycopg.Connection] = []

    def make(name: str, grants: list[str] = ()) -> psycopg.Connection:
        if f"_{RUN}" not in name:  # names made unique by the test itself are kept
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


@pytest.fixture
def legacy_pg(postgresql):
    """A database on the test cluster standing in for the legacy PostgreSQL source."""
    from sync_helpers import LegacyPostgres

    legacy = LegacyPostgres(postgresql.info)
    yield legacy
    legacy.drop()


@pytest.fixture
def legacy_mysql():
    """A database on the MariaDB server bin/test started, standing in for the legacy MySQL source."""
    from sync_helpers import LegacyMysql

    legacy = LegacyMysql()
    yield legacy
    legacy.drop()
