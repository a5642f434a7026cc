"""`refdata render`: the SQL a DBA reviews and applies with psql. It needs no
database, runs in one transaction, and applied with psql gives exactly what
`refdata apply` gives."""

from __future__ import annotations

import re
import subprocess
import textwrap
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from generator.config import PROJECT_ROOT
from generator.sample import Sizes, create_schema, load_reference

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"

# Config values that must live in refdata.domain_param, never in a function body.
SENTINEL_CONFIG = """\
domains:
  annuity_performance:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - name: fk_plan
        source_column: 计划代码
        target_schema: mapping
        target_table: 年金计划
        target_key: 年金计划号
        backfill_columns:
          - {source: 计划名称, target: 计划全称}
          - {source: 组合代码, target: 客户名称, aggregation: concat_distinct, separator: "SEP-SENTINEL"}
        defaults:
          计划全称: "DEFAULT-SENTINEL-全称"
          计划状态: "DEF-状态"
        blank_values: ["BLANK-SENTINEL", "(空白)"]
      - name: fk_product_line
        source_column: 产品线代码
        target_schema: mapping
        target_table: 产品线
        target_key: 产品线代码
        backfill_columns:
          - {target: 产品线, aggregation: template, template: "TEMPLATE-SENTINEL {产品线代码} 100%"}
"""
SENTINELS = ["DEFAULT-SENTINEL", "DEF-状态", "BLANK-SENTINEL", "(空白)", "TEMPLATE-SENTINEL", "SEP-SENTINEL"]


def no_database_env(tmp_path) -> dict:
    """An environment in which any attempt to reach a database fails."""
    return {
        "REFDATA_HOME": str(tmp_path / "no-cluster-here"),
        "PGHOST": str(tmp_path / "no-socket-here"),
        "PGPORT": "1",
    }


def bodies(script: str) -> list[str]:
    return re.findall(r"\$refdata\$(.*?)\$refdata\$", script, re.S)


def psql(dsn: str, path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), dsn],
        capture_output=True, text=True,
    )


def without_times(snap: dict) -> dict:
    return {**snap, "domain_param": [row[:2] for row in snap["domain_param"]]}


@pytest.fixture
def second_db(db, dsn):
    """Another fresh database on the same server, dropped afterwards."""
    name = f"{db.info.dbname}_second"
    db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    db.execute(f'CREATE DATABASE "{name}"')
    other = make_conninfo(dsn, dbname=name)
    conns = []

    @contextmanager
    def connect():
        conn = psycopg.connect(other, autocommit=True)
        conns.append(conn)
        yield conn

    yield other, connect
    for c in conns:
        c.close()
    db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_sample(dsn: str) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        create_schema(conn)
        load_reference(conn, Sizes())


# -- without a database -------------------------------------------------------


def test_render_needs_no_database(cli, tmp_path):
    env = no_database_env(tmp_path)
    result = cli("--config", str(SAMPLE_CONFIG), "render", db=None, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not (tmp_path / "no-cluster-here").exists(), "render must not start the embedded cluster"
    script = result.stdout
    statements = [
        line for line in script.splitlines()
        if line.strip() and not line.startswith("--") and not line.startswith("\\")
    ]
    assert statements[0] == "BEGIN;"
    assert statements[-1] == "COMMIT;"
    assert "\\set ON_ERROR_STOP on" in script.splitlines()[:5]
    assert script.count("BEGIN;") == 1 and script.count("COMMIT;") == 1
    assert 'CREATE OR REPLACE FUNCTION "refdata"."annuity_performance__backfill"()' in script
    assert "SECURITY DEFINER" in script
    assert "SET search_path = pg_catalog, pg_temp" in script
    assert 'ON "business"."规模明细"' in script


def test_render_uses_the_default_config_and_no_db(cli, tmp_path):
    result = cli("render", db=None, env=no_database_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "annuity_performance__backfill" in result.stdout


def test_every_security_definer_function_pins_its_search_path(cli, write_config, tmp_path):
    result = cli("--config", str(write_config(SENTINEL_CONFIG)), "render", db=None, env=no_database_env(tmp_path))
    assert result.returncode == 0, result.stderr
    functions = re.findall(r"CREATE OR REPLACE FUNCTION (.*?)\nAS \$refdata\$", result.stdout, re.S)
    definers = [f for f in functions if "SECURITY DEFINER" in f]
    assert any("annuity_performance__backfill" in f for f in definers)
    for header in definers:
        assert "SET search_path = pg_catalog, pg_temp" in header, header


def test_config_values_stay_out_of_function_bodies(cli, write_config, tmp_path):
    result = cli("--config", str(write_config(SENTINEL_CONFIG)), "render", db=None, env=no_database_env(tmp_path))
    assert result.returncode == 0, result.stderr
    script = result.stdout
    found = bodies(script)
    assert len(found) >= 1
    for body in found:
        for sentinel in SENTINELS:
            assert sentinel not in body
    # they are data: the INSERT into refdata.domain_param carries them
    params = script[script.index("INSERT INTO refdata.domain_param"):]
    params = params[: params.index(";\n")]
    for sentinel in SENTINELS:
        assert sentinel in params


def test_config_values_live_in_domain_param_after_apply(sample_db, cli, write_config):
    path = write_config(SENTINEL_CONFIG)
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    definitions = sample_db.execute(
        "SELECT string_agg(pg_get_functiondef(oid), E'\\n') FROM pg_proc "
        "WHERE pronamespace::regnamespace::text LIKE 'refdata%'"
    ).fetchone()[0]
    assert "annuity_performance__backfill" in definitions
    for sentinel in SENTINELS:
        assert sentinel not in definitions
    params = sample_db.execute("SELECT params FROM refdata.domain_param WHERE domain = 'annuity_performance'").fetchone()[0]
    assert params["fk"]["fk_plan"]["defaults"] == {"计划全称": "DEFAULT-SENTINEL-全称", "计划状态": "DEF-状态"}
    assert sorted(params["fk"]["fk_plan"]["blank_values"]) == ["(空白)", "BLANK-SENTINEL"]
    # and they work from there
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "产品线代码")
                         VALUES ('2025-10-01', 'P80001', 'PL801')""")
    assert sample_db.execute(
        """SELECT "计划全称", "计划状态" FROM mapping."年金计划" WHERE "年金计划号" = 'P80001'"""
    ).fetchone() == ("DEFAULT-SENTINEL-全称", "DEF-状态")
    assert sample_db.execute(
        """SELECT "产品线" FROM mapping."产品线" WHERE "产品线代码" = 'PL801'"""
    ).fetchone() == ("TEMPLATE-SENTINEL PL801 100%",)
    # security definer functions pin their search_path in the catalog too
    assert sample_db.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace::regnamespace::text LIKE 'refdata%' AND prosecdef "
        "AND NOT proconfig @> ARRAY['search_path=pg_catalog, pg_temp']"
    ).fetchone()[0] == 0


def test_render_to_directory(cli, tmp_path):
    out = tmp_path / "sql_out"
    result = cli("--config", str(SAMPLE_CONFIG), "render", "-o", str(out), db=None, env=no_database_env(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.iterdir())
    numbered = [f for f in files if f != "apply.sql"]
    assert "apply.sql" in files
    assert result.stdout.strip() == (
        f"wrote {len(files)} files to {out}; apply with: psql -v ON_ERROR_STOP=1 -f {out / 'apply.sql'}"
    )
    assert all(re.fullmatch(r"\d{3}_[a-z]+_.+\.sql", f) for f in numbered), numbered
    assert [int(f[:3]) for f in numbered] == list(range(1, len(numbered) + 1))
    assert numbered[0] == "001_role_refdata_owner.sql"
    assert any(f.startswith(f"{len(numbered) - 1:03d}_grant_") for f in numbered)
    assert numbered[-1] == f"{len(numbered):03d}_rights_refdata_owner.sql"
    apply_sql = (out / "apply.sql").read_text(encoding="utf-8")
    lines = [line for line in apply_sql.splitlines() if line and not line.startswith("--")]
    assert lines == ["\\set ON_ERROR_STOP on", "\\set ON_ERROR_ROLLBACK off", "BEGIN;",
                     "SET LOCAL search_path = pg_catalog, pg_temp;", *[f"\\ir {f}" for f in numbered], "COMMIT;"]
    # the files together are the single script's statements
    single = cli("--config", str(SAMPLE_CONFIG), "render", db=None, env=no_database_env(tmp_path)).stdout
    for f in numbered:
        assert (out / f).read_text(encoding="utf-8").strip() in single


# -- psql gives what refdata apply gives --------------------------------------


@pytest.mark.parametrize("form", ["script", "directory"])
def test_psql_applied_render_equals_refdata_apply(sample_db, dsn, second_db, cli, tmp_path, snapshot, form):
    other_dsn, connect_other = second_db
    load_sample(other_dsn)

    if form == "script":
        rendered = cli("--config", str(SAMPLE_CONFIG), "render", db=None)
        assert rendered.returncode == 0, rendered.stderr
        path = tmp_path / "refdata.sql"
        path.write_text(rendered.stdout, encoding="utf-8")
    else:
        rendered = cli("--config", str(SAMPLE_CONFIG), "render", "-o", str(tmp_path / "out"), db=None)
        assert rendered.returncode == 0, rendered.stderr
        path = tmp_path / "out" / "apply.sql"
    result = psql(dsn, path)
    assert result.returncode == 0, result.stderr
    by_psql = snapshot(sample_db)

    applied = cli("--config", str(SAMPLE_CONFIG), "apply", db=other_dsn)
    assert applied.returncode == 0, applied.stderr
    with connect_other() as other:
        by_apply = snapshot(other)

    assert by_psql["functions"] and by_psql["triggers"] and by_psql["domain_param"]
    assert without_times(by_psql) == without_times(by_apply)

    # and refdata apply after psql changes nothing at all
    applied = cli("--config", str(SAMPLE_CONFIG), "apply")
    assert applied.returncode == 0, applied.stderr
    assert snapshot(sample_db) == by_psql

    # the psql-applied backfill works
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "组合代码")
                         VALUES ('2025-10-01', 'P80010', 'QT800010')""")
    assert sample_db.execute(
        """SELECT "_source", "_needs_review" FROM mapping."组合计划" WHERE "组合代码" = 'QT800010'"""
    ).fetchone() == ("auto_derived", True)


def test_psql_script_stops_at_the_first_error_and_leaves_nothing(db, dsn, cli, tmp_path):
    # No sample schema: the tracking ALTER TABLE fails; BEGIN..COMMIT with
    # ON_ERROR_STOP means the schema created before it is gone too.
    rendered = cli("--config", str(SAMPLE_CONFIG), "render", db=None)
    path = tmp_path / "refdata.sql"
    path.write_text(rendered.stdout, encoding="utf-8")
    result = psql(dsn, path)
    assert result.returncode == 3
    assert 'ERROR:  schema "mapping" does not exist' in result.stderr
    assert db.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)


def test_psql_applies_awkward_identifiers_like_refdata_apply(db, dsn, second_db, cli, write_config, tmp_path, snapshot):
    schema = textwrap.dedent(
        '''
        CREATE SCHEMA "My ""Schema""";
        CREATE TABLE "My ""Schema"""."Plan ""Table""" ("Plan Key" text PRIMARY KEY, "Full ""Name""" text NOT NULL);
        CREATE TABLE "My ""Schema"""."Fact Table" ("Plan ""Code""" text, "Name: :x" text);
        '''
    )
    config = textwrap.dedent(
        """\
        domains:
          awkward:
            fact_schema: 'My "Schema"'
            fact_table: Fact Table
            foreign_keys:
              - name: fk_plan
                source_column: 'Plan "Code"'
                target_schema: 'My "Schema"'
                target_table: 'Plan "Table"'
                target_key: Plan Key
                backfill_columns: [{source: 'Name: :x', target: 'Full "Name"'}]
                defaults: {'Full "Name"': "it's :x \\\\ %s $$ $refdata$"}
                blank_values: [":ON_ERROR_STOP", "\\\\set"]
        """
    )
    path = write_config(config)
    other_dsn, connect_other = second_db
    db.execute(schema)
    with connect_other() as other:
        other.execute(schema)

    rendered = cli("--config", str(path), "render", "-o", str(tmp_path / "out"), db=None)
    assert rendered.returncode == 0, rendered.stderr
    result = psql(dsn, tmp_path / "out" / "apply.sql")
    assert result.returncode == 0, result.stderr
    applied = cli("--config", str(path), "apply", db=other_dsn)
    assert applied.returncode == 0, applied.stderr
    with connect_other() as other:
        assert without_times(snapshot(db)) == without_times(snapshot(other))

    db.execute('''INSERT INTO "My ""Schema"""."Fact Table" VALUES ('K1', NULL), ('K2', 'named')''')
    assert db.execute(
        '''SELECT "Plan Key", "Full ""Name""", "_source" FROM "My ""Schema"""."Plan ""Table""" ORDER BY 1'''
    ).fetchall() == [("K1", "it's :x \\ %s $$ $refdata$", "auto_derived"), ("K2", "named", "auto_derived")]


def test_render_to_a_directory_again_replaces_what_it_wrote(cli, tmp_path, write_config):
    out = tmp_path / "sql_out"
    fk = ("      - {{name: fk_{0}, source_column: c{0}, target_schema: mapping, target_table: t{0}, "
          "target_key: k}}\n")
    head = "domains:\n  d:\n    fact_table: f\n    foreign_keys:\n"
    larger = write_config(head + "".join(fk.format(i) for i in range(3)), "larger.yml")
    first = cli("--config", str(larger), "render", "-o", str(out), db=None)
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in out.iterdir())
    # A smaller config: fewer objects, so stale numbered files would remain.
    smaller = write_config(head + fk.format(0), "smaller.yml")
    second = cli("--config", str(smaller), "render", "-o", str(out), db=None)
    assert second.returncode == 0, second.stderr
    after = sorted(p.name for p in out.iterdir())
    assert len(after) < len(before)
    listed = [line[4:] for line in (out / "apply.sql").read_text(encoding="utf-8").splitlines()
              if line.startswith("\\ir ")]
    assert sorted(listed + ["apply.sql"]) == after, "every file in the folder is one apply.sql runs"


@pytest.mark.parametrize("foreign", ["MANIFEST", "apply.sql"])
def test_render_refuses_a_directory_holding_files_it_did_not_write(cli, tmp_path, foreign):
    out = tmp_path / "sql_out"
    out.mkdir()
    (out / foreign).write_text("mine\n", encoding="utf-8")
    result = cli("--config", str(SAMPLE_CONFIG), "render", "-o", str(out), db=None)
    assert result.returncode == 2
    assert result.stderr == (f"refdata: error: {out}: holds files refdata did not write ({foreign}); "
                             "render into an empty or new folder\n")
    assert sorted(p.name for p in out.iterdir()) == [foreign]
    assert (out / foreign).read_text(encoding="utf-8") == "mine\n"


def test_render_refuses_a_foreign_file_beside_its_own(cli, tmp_path):
    out = tmp_path / "sql_out"
    assert cli("--config", str(SAMPLE_CONFIG), "render", "-o", str(out), db=None).returncode == 0
    (out / "manifest.json").write_text("{}", encoding="utf-8")
    result = cli("--config", str(SAMPLE_CONFIG), "render", "-o", str(out), db=None)
    assert result.returncode == 2
    assert "holds files refdata did not write (manifest.json)" in result.stderr
