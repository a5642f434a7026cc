"""The pytest plugin as a user's project meets it: its own schema loaded by
pytest-postgresql's noproc fixture on the server bin/test started, its own
config, and the `refdata_db` fixture from the `pytest11` entry point."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.conftest import CLUSTER, RUN

pytest_plugins = ["pytester"]

SCHEMA = """
CREATE SCHEMA ref;
CREATE SCHEMA sales;
CREATE TABLE ref.region (code text PRIMARY KEY, name text);
CREATE TABLE ref.store (
    store_id    text PRIMARY KEY,
    region_code text NOT NULL REFERENCES ref.region,
    name        text
);
CREATE TABLE sales.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    text REFERENCES ref.store,
    region_code text REFERENCES ref.region,
    store_name  text,
    amount      numeric(12, 2)
);
INSERT INTO ref.region VALUES ('N', 'North');
"""

CONFIG = """
domains:
  orders:
    fact_schema: sales
    fact_table: orders
    foreign_keys:
      - name: fk_region
        source_column: region_code
        target_schema: ref
        target_table: region
        target_key: code
      - name: fk_store
        source_column: store_id
        target_schema: ref
        target_table: store
        target_key: store_id
        depends_on: [fk_region]
        backfill_columns:
          - {source: region_code, target: region_code}
          - {source: store_name, target: name}
"""

CONFTEST = """
import os
from pathlib import Path

from pytest_postgresql import factories

postgresql_noproc = factories.postgresql_noproc(
    host=os.environ["SHOP_PGHOST"], port=5432, user=os.environ.get("SHOP_PGUSER", "postgres"),
    dbname=os.environ["SHOP_DBNAME"],
    load=[Path(__file__).parent / "schema.sql"],
)
postgresql = factories.postgresql("postgresql_noproc")
"""

TESTS = """
import pytest

from generator.pytest_plugin import derived, pending_review


def test_new_store_and_region_are_derived(refdata_db):
    refdata_db.execute(
        "INSERT INTO sales.orders (store_id, region_code, store_name, amount) VALUES ('S1', 'E', 'Harbour St', 10)")
    assert derived(refdata_db, "ref.region") == [
        {"code": "E", "name": None, "_needs_review": True, "_derived_from_domain": "orders"}]
    assert derived(refdata_db, "ref.store") == [
        {"store_id": "S1", "region_code": "E", "name": "Harbour St",
         "_needs_review": True, "_derived_from_domain": "orders"}]
    tracking = derived(refdata_db, "ref.store", columns=["_source", "_derived_at"])
    assert tracking[0]["_source"] == "auto_derived" and tracking[0]["_derived_at"] is not None
    assert pending_review(refdata_db) == {"ref.region": 1, "ref.store": 1}


def test_known_region_is_not_derived(refdata_db):
    refdata_db.execute("INSERT INTO sales.orders (store_id, region_code) VALUES ('S2', 'N')")
    assert derived(refdata_db, "ref.region") == []
    assert [r["store_id"] for r in derived(refdata_db, "ref.store")] == ["S2"]


@pytest.mark.parametrize("n", range(48))
def test_each_database_is_fresh(refdata_db, n):
    refdata_db.execute("INSERT INTO sales.orders (store_id, region_code) VALUES (%s, 'N')", [f"T{n}"])
    assert [r["store_id"] for r in derived(refdata_db, "ref.store")] == [f"T{n}"]
"""


@pytest.fixture
def project(pytester, monkeypatch):
    """A user's project: schema.sql, a refdata config, conftest.py and pytest.ini."""
    monkeypatch.setenv("SHOP_PGHOST", str(CLUSTER.socket_dir))
    monkeypatch.setenv("SHOP_DBNAME", f"shop_{os.getpid()}_{os.urandom(3).hex()}")
    for var in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    pytester.makefile(".sql", schema=SCHEMA)
    (pytester.path / "refdata").mkdir()
    (pytester.path / "refdata" / "data_sources.yml").write_text(CONFIG, encoding="utf-8")
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nrefdata_config = refdata/data_sources.yml\n")
    return pytester


def test_user_project_derives_parents_through_refdata_db(project):
    project.makepyfile(test_orders=TESTS)
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=50)
    # The catalog check and rendering are done once; every later test only
    # runs the statements in its copy of the template database.
    result.stdout.fnmatch_lines(["refdata: config applied to 50 test database(s); catalog checked 1 time(s);*"])


def test_config_naming_a_missing_column_fails_at_setup_with_one_line(project):
    text = CONFIG.replace("{source: store_name, target: name}", "{source: store_nmae, target: name}")
    (project.path / "refdata" / "data_sources.yml").write_text(text, encoding="utf-8")
    line = next(n for n, t in enumerate(text.splitlines(), start=1) if "store_nmae" in t)
    project.makepyfile(test_orders=TESTS.split("@pytest.mark.parametrize")[0])
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        f'*refdata: error: *data_sources.yml:{line}: domain orders, foreign key fk_store: backfill column name: '
        'column "store_nmae" does not exist in "sales"."orders" (did you mean "store_name"?) (database *)',
    ])
    assert "Traceback" not in result.stdout.str()
    assert "During handling of the above exception" not in result.stdout.str()


def test_command_line_option_overrides_the_ini(project):
    other = project.path / "other.yml"
    other.write_text(CONFIG.replace("name: fk_store", "name: fk_shop"), encoding="utf-8")
    project.makepyfile(test_orders="""
def test_store_fk_named_from_the_other_config(refdata_db):
    row = refdata_db.execute("SELECT params -> 'fk' ? 'fk_shop' FROM refdata.domain_param").fetchone()
    assert row == (True,)
""")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--refdata-config", "other.yml")
    result.assert_outcomes(passed=1)


def test_a_suite_run_by_a_role_that_is_no_superuser_names_itself_the_owner(project, monkeypatch):
    """As `refdata apply` does, the fixture takes the owner role from
    $REFDATA_OWNER: a test role that is no superuser (it only may create
    databases) names itself and gets the backfill installed, its functions
    its own, and it leaves no object that would keep it from being dropped."""
    tester = f"shop_tester_{RUN}_{os.urandom(3).hex()}"
    admin = psycopg.connect(host=str(CLUSTER.socket_dir), dbname="postgres", user="postgres", autocommit=True)
    admin.execute(f'CREATE ROLE "{tester}" LOGIN CREATEDB')
    # the reviewer role, which a role without CREATEROLE cannot make: the cluster's DBA made it once
    admin.execute("""DO $$ BEGIN CREATE ROLE refdata_reviewer NOLOGIN;
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$""")
    try:
        project.makepyfile(test_orders=TESTS.split("@pytest.mark.parametrize")[0] + """
def test_the_functions_belong_to_the_tester(refdata_db):
    owners = refdata_db.execute("SELECT DISTINCT proowner::regrole::text FROM pg_proc "
                                "WHERE pronamespace = 'refdata'::regnamespace").fetchall()
    assert owners == [(refdata_db.info.user,)]
""")
        monkeypatch.setenv("SHOP_PGUSER", tester)
        monkeypatch.setenv("REFDATA_OWNER", tester)
        result = project.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=3)
    finally:
        admin.execute(f'DROP ROLE "{tester}"')  # fails while a database or object of it is left
        admin.close()
