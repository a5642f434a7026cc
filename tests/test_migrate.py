"""plan and apply as declarative migrations: the plan is the difference
between the live database and the config, its application converges, and
nothing outside what refdata owns or touches is ever in it."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from generator.migrate.scratch import client_binary

ROOT = Path(__file__).resolve().parent.parent
FACT = 'business."规模明细"'


# The sample schema's config in the one-file form: each test edits a copy.
SAMPLE = """\
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
          - {source: 计划类型, target: 计划类型, optional: true}
          - {source: 客户名称, target: 客户名称, optional: true}
          - {source: 机构代码, target: 主拓机构代码, aggregation: max_by, order_column: 期末资产规模}
        defaults:
          计划全称: "(待补充)"
          计划状态: 待审核
        blank_values: ["(空白)", "-"]

      - name: fk_portfolio
        source_column: 组合代码
        target_schema: mapping
        target_table: 组合计划
        target_key: 组合代码
        depends_on: [fk_plan]
        backfill_columns:
          - {source: 计划代码, target: 年金计划号}
          - {source: 组合名称, target: 组合名称}
          - {source: 组合类型, target: 组合类型, optional: true}
        blank_values: ["(空白)", "-"]

      - name: fk_product_line
        source_column: 产品线代码
        target_schema: mapping
        target_table: 产品线
        target_key: 产品线代码
        backfill_columns:
          - {target: 产品线, aggregation: template, template: "待确认产品线 {产品线代码}"}
          - {source: 业务类型, target: 业务大类}
        blank_values: ["(空白)"]

      - name: fk_organization
        source_column: 机构代码
        target_schema: mapping
        target_table: 组织架构
        target_key: 机构代码
        derive_columns: [机构代码]
        backfill_columns:
          - {source: 机构名称, target: 机构}
        blank_values: ["(空白)"]
"""


def sample_config() -> dict:
    return yaml.safe_load(SAMPLE)


def fk(config: dict, name: str, domain: str = "annuity_performance") -> dict:
    return next(f for f in config["domains"][domain]["foreign_keys"] if f["name"] == name)


@pytest.fixture
def configure(cli, write_config):
    """Write a config (a dict), run a command with it, return the result."""
    def run(config: dict, *args: str, db: str | None = None, env: dict | None = None):
        path = write_config(yaml.safe_dump(config, allow_unicode=True), name=f"c{uuid.uuid4().hex[:6]}.yml")
        kwargs = {"db": db} if db else {}
        if env:
            kwargs["env"] = env
        return cli("--config", str(path), *args, **kwargs)
    return run


def ok(result, code: int = 0) -> str:
    assert result.returncode == code, result.stderr
    return result.stdout


def converged(configure, config: dict) -> None:
    result = configure(config, "plan")
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def triggers(db) -> list[tuple]:
    """The backfill and load triggers (not the audit and promotion triggers of the reference tables)."""
    return db.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal "
                      "AND (tgname LIKE '%\\_\\_backfill%' OR tgname LIKE '%\\_\\_load\\_%') ORDER BY 1, 2").fetchall()


def functions(db) -> list[str]:
    """refdata's per-domain functions."""
    return [r[0] for r in db.execute("SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'refdata'::regnamespace "
                                     "AND p.proname LIKE '%\\_\\_%' AND p.proname NOT LIKE '%\\_\\_promote' ORDER BY 1")]


def scratch_databases(db) -> set[str]:
    """Scratch databases this process's plans made (named after its pid):
    other processes sharing the cluster make and drop databases of their own."""
    return {r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                     (f"refdata\\_plan\\_{os.getpid()}\\_%",))}


# -- convergence ----------------------------------------------------------------


def test_apply_then_plan_prints_nothing_and_exits_0(sample_db, configure):
    config = sample_config()
    first = configure(config, "plan")
    assert first.returncode == 3, first.stderr
    assert 'CREATE OR REPLACE FUNCTION "refdata"."annuity_performance__backfill"()' in first.stdout  # the full render
    out = ok(configure(config, "apply"))
    created = re.search(r"^applied: (\d+) objects created, 0 replaced, 0 dropped, 0 unchanged \(", out, re.M)
    assert created, out
    converged(configure, config)
    assert ok(configure(config, "apply")).startswith(f"unchanged: {created[1]} objects already match the config")


def _add_backfill_column(c):
    fk(c, "fk_product_line")["backfill_columns"].append({"source": "业务类型", "target": "业务大类"})


def _without_backfill_column(c):
    fk(c, "fk_product_line")["backfill_columns"] = [
        b for b in fk(c, "fk_product_line")["backfill_columns"] if b.get("target") != "业务大类"]


def _remove_fk(c):
    c["domains"]["annuity_performance"]["foreign_keys"] = [
        f for f in c["domains"]["annuity_performance"]["foreign_keys"] if f["name"] != "fk_organization"]


def _statement_mode(c):
    c["domains"]["annuity_performance"].update(trigger_mode="statement", defer_foreign_keys=True)


def _change_default(c):
    fk(c, "fk_plan")["defaults"]["计划状态"] = "待确认"


CHANGES = {
    # name: (change to the base config, text the plan must contain, text it must not)
    "backfill column added": (_add_backfill_column, 'CREATE OR REPLACE FUNCTION refdata.annuity_performance__backfill()',
                              "drop trigger"),
    "foreign key removed": (_remove_fk, 'drop trigger if exists "annuity_performance__backfill"', "drop table"),
    "statement mode": (_statement_mode, "DEFERRABLE INITIALLY DEFERRED", "drop constraint"),
    "default changed": (_change_default, "待确认", "FUNCTION"),
}


# The tables each change's plan locks before its first step, and how (the
# catalog's before and after: sql/catalog/relation_state.sql).
# Functions and domain_param rows take no table lock; a trigger replaced
# (dropped and created), an index or a constraint's deferral altered, a view
# replaced: ACCESS EXCLUSIVE.
LOCKS = {
    "backfill column added": [],
    "foreign key removed": [["business", "规模明细", "ACCESS EXCLUSIVE"], ["mapping", "组织架构", "ACCESS EXCLUSIVE"],
                            ["refdata", "derivation_activity", "ACCESS EXCLUSIVE"],
                            ["refdata", "fk_coverage", "ACCESS EXCLUSIVE"], ["refdata", "pending_review", "ACCESS EXCLUSIVE"],
                            ["refdata", "reference_quality", "ACCESS EXCLUSIVE"]],
    "statement mode": [["business", "规模明细", "ACCESS EXCLUSIVE"]],
    "default changed": [],
}


@pytest.mark.parametrize("change", CHANGES)
def test_each_config_change_plans_and_converges(sample_db, configure, change):
    edit, must, must_not = CHANGES[change]
    base = sample_config()
    if change == "backfill column added":
        _without_backfill_column(base)
    ok(configure(base, "apply"))
    changed = copy.deepcopy(base)
    edit(changed)
    plan = configure(changed, "plan")
    assert plan.returncode == 3, plan.stderr
    assert must in plan.stdout
    assert must_not not in plan.stdout
    locks = json.loads(re.search(r"^-- locks: (.*)$", plan.stdout, re.M)[1])
    assert locks == LOCKS[change], json.dumps(locks, ensure_ascii=False)
    out = ok(configure(changed, "apply"))
    assert re.search(r"^applied: .* replaced", out, re.M), out
    converged(configure, changed)


def test_added_backfill_column_reaches_derived_parents(sample_db, configure):
    base = sample_config()
    _without_backfill_column(base)
    ok(configure(base, "apply"))
    changed = sample_config()
    ok(configure(changed, "apply"))
    sample_db.execute(f"""INSERT INTO {FACT} ("月度", "产品线代码", "业务类型") VALUES ('2025-10-01', 'PL777', '职业年金')""")
    assert sample_db.execute("""SELECT "业务大类" FROM mapping."产品线" WHERE "产品线代码" = 'PL777'""").fetchone() == ("职业年金",)


def test_renamed_domain_leaves_one_trigger_and_its_own_objects_only(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    renamed = {"domains": {"annuity_renamed": config["domains"]["annuity_performance"]}}
    plan = ok(configure(renamed, "plan"), 3)
    assert 'drop function if exists "refdata"."annuity_performance__load"' in plan
    ok(configure(renamed, "apply"))
    assert triggers(sample_db) == [('business."规模明细"', f"annuity_renamed__{t}")
                                   for t in ("backfill", "load_begin", "load_verify")]
    assert functions(sample_db) == ["annuity_renamed__backfill", "annuity_renamed__backfill_set",
                                    "annuity_renamed__load", "annuity_renamed__load_begin",
                                    "annuity_renamed__load_parents", "annuity_renamed__load_ready",
                                    "annuity_renamed__load_verify"]
    assert sample_db.execute("SELECT domain FROM refdata.domain_param").fetchall() == [("annuity_renamed",)]
    assert sample_db.execute("SELECT relname FROM pg_class WHERE relnamespace = 'refdata_stage'::regnamespace "
                             "AND relkind = 'r'").fetchall() == [("annuity_renamed",)]
    sample_db.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-10-01', 'P77701')""")
    assert sample_db.execute("""SELECT "_derived_from_domain" FROM mapping."年金计划"
                                WHERE "年金计划号" = 'P77701'""").fetchone() == ("annuity_renamed",)
    converged(configure, renamed)


def test_plan_applied_with_psql(sample_db, configure, dsn, tmp_path, write_config):
    """The DBA's route without the tool applying anything: bin/refdata plan
    into a file, psql runs the file (the README's command line, as a shell runs it)."""
    config = sample_config()
    ok(configure(config, "apply"))
    _remove_fk(config)
    path = write_config(yaml.safe_dump(config, allow_unicode=True), name="psql_route.yml")
    env = {k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")}
    env.update(REFDATA_DB=dsn, REFDATA_CONFIG=str(path), REFDATA_HOME=str(tmp_path / "no-embedded-cluster"),
               PATH=f"{Path(client_binary(sample_db, 'psql')).parent}:{env['PATH']}", PGDATABASE="")
    route = subprocess.run(
        ["bash", "-c", 'bin/refdata plan > "$1" || [ $? -eq 3 ] && psql -X -q -v ON_ERROR_STOP=1 -d "$2" -f "$1"',
         "route", str(tmp_path / "change.sql"), dsn], cwd=ROOT, env=env, capture_output=True, text=True)
    assert route.returncode == 0, route.stderr
    assert "-- refdata plan:" in (tmp_path / "change.sql").read_text(encoding="utf-8")
    assert "fk_organization" not in sample_db.execute("SELECT params::text FROM refdata.domain_param").fetchone()[0]
    converged(configure, config)
    # nothing pending: an empty file, which psql runs as well
    again = subprocess.run(["bash", "-c", 'bin/refdata plan > "$1" || [ $? -eq 3 ] && psql -X -q -d "$2" -f "$1"',
                            "route", str(tmp_path / "again.sql"), dsn], cwd=ROOT, env=env, capture_output=True, text=True)
    assert (again.returncode, (tmp_path / "again.sql").read_text()) == (0, ""), again.stderr


def test_a_missing_owner_role_is_created_by_the_plan(sample_db, configure, dsn, tmp_path):
    """Roles belong to the cluster: a plan for an owner role the server lacks
    creates it, so the plan file runs on a server where the role is missing."""
    config = sample_config()
    ok(configure(config, "apply"))
    owner = f"rd_owner_{uuid.uuid4().hex[:8]}"
    plan = ok(configure(config, "plan", "--owner", owner), 3)
    assert f'CREATE ROLE "{owner}" NOLOGIN;' in plan
    assert f'ALTER FUNCTION refdata.annuity_performance__load(columns text[], verify text) OWNER TO "{owner}";' in plan
    try:
        # building the desired state made the role on this cluster: take it away again,
        # as on the server the reviewed plan is for
        sample_db.execute(f'DROP ROLE "{owner}"')
        (tmp_path / "change.sql").write_text(plan, encoding="utf-8")
        psql = subprocess.run([client_binary(sample_db, "psql"), "-X", "-q", "-f", str(tmp_path / "change.sql"), dsn],
                              capture_output=True, text=True)
        assert psql.returncode == 0, psql.stderr
        assert sample_db.execute("""SELECT proowner::regrole::text, r.rolcanlogin FROM pg_proc
                                    JOIN pg_roles AS r ON r.oid = proowner
                                    WHERE proname = 'annuity_performance__load'""").fetchone() == (owner, False)
        assert ok(configure(config, "plan", "--owner", owner)) == ""
    finally:
        sample_db.execute(f"""DO $$BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
                              REASSIGN OWNED BY "{owner}" TO refdata_owner; DROP OWNED BY "{owner}";
                              DROP ROLE "{owner}"; END IF; END$$""")


def test_a_foreign_key_added_later_derives_into_its_new_table(sample_db, configure):
    """The owner role's rights on a newly configured reference table are in the plan:
    without them the trigger (running as the owner role) could not insert there."""
    base = sample_config()
    _remove_fk(base)
    ok(configure(base, "apply"))
    config = sample_config()
    plan = ok(configure(config, "plan"), 3)
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "mapping"."组织架构" TO "refdata_owner";' in plan
    assert 'alter table "mapping"."组织架构" add column "_source"' in plan
    ok(configure(config, "apply"))
    converged(configure, config)
    # a SECURITY DEFINER function the plan created is not everyone's to call
    assert sample_db.execute("""SELECT has_function_privilege('public', 'refdata."mapping.组织架构__promote"()',
                                                              'EXECUTE')""").fetchone() == (False,)
    sample_db.execute(f"""INSERT INTO {FACT} ("月度", "机构代码", "机构名称") VALUES ('2025-10-01', 'G999', '新机构')""")
    assert sample_db.execute("""SELECT "机构", "_source" FROM mapping."组织架构" WHERE "机构代码" = 'G999'""").fetchone() \
        == ("新机构", "auto_derived")


def test_a_step_that_drops_data_is_refused_until_allow_drop(sample_db, configure, tmp_path):
    """Schema refdata is refdata's: a materialized view someone made there is not
    in the desired state, and dropping it (and its rows) takes --allow-drop."""
    config = sample_config()
    ok(configure(config, "apply"))
    sample_db.execute("""CREATE MATERIALIZED VIEW refdata.plan_snapshot AS SELECT "年金计划号" FROM mapping."年金计划" """)
    assert sample_db.execute("SELECT count(*) > 0 FROM refdata.plan_snapshot").fetchone() == (True,)
    plan = configure(config, "plan")
    assert plan.returncode == 3, plan.stderr
    assert 'drop materialized view if exists "refdata"."plan_snapshot"' in plan.stdout
    assert "warning: drops data (apply needs --allow-drop): drop materialized view" in plan.stderr
    reviewed = tmp_path / "reviewed.sql"
    reviewed.write_text(plan.stdout, encoding="utf-8")
    for refused in (configure(config, "apply"), configure(config, "apply", "--sql", str(reviewed))):
        assert refused.returncode == 1
        assert 'the plan drops data: drop materialized view if exists "refdata"."plan_snapshot"' in refused.stderr
        assert "nothing was applied" in refused.stderr
        assert sample_db.execute("SELECT to_regclass('refdata.plan_snapshot') IS NOT NULL").fetchone() == (True,)
    out = ok(configure(config, "apply", "--allow-drop"))
    assert re.search(r"^applied: .*1 dropped", out, re.M), out
    assert sample_db.execute("SELECT to_regclass('refdata.plan_snapshot')").fetchone() == (None,)
    converged(configure, config)


# -- reviewed plans, drops, drift -----------------------------------------------


def test_reviewed_plan_applies_and_a_stale_one_is_refused(sample_db, configure, tmp_path):
    config = sample_config()
    ok(configure(config, "apply"))
    _remove_fk(config)
    reviewed = tmp_path / "reviewed.sql"
    reviewed.write_text(ok(configure(config, "plan"), 3), encoding="utf-8")

    sample_db.execute(f'ALTER TABLE {FACT} ADD COLUMN "备注" text')  # the database moves on
    stale = configure(config, "apply", "--sql", str(reviewed))
    assert stale.returncode == 1
    assert "the database changed since the plan was made" in stale.stderr
    assert ("business.\"规模明细\"", "annuity_performance__backfill") in triggers(sample_db)
    assert "fk_organization" in sample_db.execute("SELECT params::text FROM refdata.domain_param").fetchone()[0]

    reviewed.write_text(ok(configure(config, "plan"), 3), encoding="utf-8")
    out = ok(configure(config, "apply", "--sql", str(reviewed)))
    assert re.search(r"^applied: ", out, re.M)
    assert "fk_organization" not in sample_db.execute("SELECT params::text FROM refdata.domain_param").fetchone()[0]
    converged(configure, config)


def test_a_table_in_schema_refdata_that_holds_data_is_kept(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    sample_db.execute("CREATE TABLE refdata.notes (note text); INSERT INTO refdata.notes VALUES ('keep me')")
    converged(configure, config)
    assert sample_db.execute("SELECT note FROM refdata.notes").fetchall() == [("keep me",)]


def test_fact_column_added_after_apply_shows_as_staging_drift(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    sample_db.execute(f'ALTER TABLE {FACT} ADD COLUMN "备注" text')
    plan = ok(configure(config, "plan"), 3)
    assert 'alter table "refdata_stage"."annuity_performance" add column "备注" text' in plan
    ok(configure(config, "apply"))
    converged(configure, config)


def test_unrelated_schema_differences_are_ignored(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    sample_db.execute(
        """
        CREATE SCHEMA elsewhere;  -- nothing refdata touches: never copied into the scratch database
        CREATE TABLE elsewhere.kept (a int PRIMARY KEY);
        CREATE TABLE public.unrelated (a int PRIMARY KEY);
        CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
        CREATE TRIGGER user_stamp BEFORE INSERT ON business."规模明细" FOR EACH ROW EXECUTE FUNCTION public.stamp();
        CREATE TRIGGER other_stamp BEFORE INSERT ON public.unrelated FOR EACH ROW EXECUTE FUNCTION public.stamp();
        CREATE VIEW mapping.plans AS SELECT "年金计划号" FROM mapping."年金计划";
        CREATE INDEX ON business."规模明细" ("月度");
        ALTER TABLE mapping."组织架构" ADD COLUMN "备注" text;
        GRANT SELECT ON business."规模明细" TO PUBLIC;
        """
    )
    converged(configure, config)


def test_loader_grants_on_refdata_objects_survive(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    role = f"loader_{uuid.uuid4().hex[:8]}"
    sample_db.execute(f'CREATE ROLE "{role}"')
    try:
        sample_db.execute(f'GRANT USAGE ON SCHEMA refdata, refdata_stage TO "{role}"; '
                          f'GRANT INSERT ON refdata_stage."annuity_performance" TO "{role}"; '
                          f'GRANT EXECUTE ON FUNCTION refdata."annuity_performance__load"(text[], text) TO "{role}"')
        converged(configure, config)
        _remove_fk(config)
        ok(configure(config, "apply"))
        assert sample_db.execute(
            "SELECT has_function_privilege(%s, 'refdata.\"annuity_performance__load\"(text[], text)', 'EXECUTE'), "
            "has_function_privilege('public', 'refdata.\"annuity_performance__backfill\"()', 'EXECUTE')",
            [role]).fetchone() == (True, False)
    finally:
        sample_db.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def test_a_lock_not_granted_in_time_stops_plan_and_apply(sample_db, configure, dsn):
    """A load holding its fact table: apply gives up after --lock-timeout
    (the plan file carries it), and so does plan when a table is locked
    outright; nothing is applied either way."""
    config = sample_config()
    ok(configure(config, "apply"))
    _remove_fk(config)
    assert "SET LOCAL lock_timeout = '250ms';" in ok(configure(config, "plan", "--lock-timeout", "250ms"), 3)
    guard = {"PGOPTIONS": "-c statement_timeout=60s"}  # a hang becomes a failure
    with psycopg.connect(dsn) as loading:
        loading.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-10-01', 'PLOCK1')""")
        refused = configure(config, "apply", "--lock-timeout", "250ms", env=guard)
        assert refused.returncode == 1
        assert "canceling statement due to lock timeout" in refused.stderr
        assert "nothing was applied" in refused.stderr
        loading.rollback()
        loading.execute(f"LOCK TABLE {FACT} IN ACCESS EXCLUSIVE MODE")
        before = scratch_databases(sample_db)
        blocked = configure(config, "plan", "--lock-timeout", "250ms", env=guard)
        assert blocked.returncode == 1
        assert "lock timeout" in blocked.stderr or "could not obtain lock" in blocked.stderr, blocked.stderr
        assert "Canceled" not in blocked.stderr
        assert scratch_databases(sample_db) == before
    assert "fk_organization" in sample_db.execute("SELECT params::text FROM refdata.domain_param").fetchone()[0]
    ok(configure(config, "apply"))
    converged(configure, config)


# -- the scratch database ---------------------------------------------------------


def test_scratch_database_is_gone_after_success_and_after_failure(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    before = scratch_databases(sample_db)
    _remove_fk(config)
    ok(configure(config, "plan"), 3)
    assert scratch_databases(sample_db) == before
    # a function whose SQL body reads a foreign table, which the copy leaves
    # out (its server is not copied) and pg_dump cannot leave the function
    # out with it: the copy fails
    sample_db.execute("""CREATE EXTENSION IF NOT EXISTS file_fdw;
                         CREATE SERVER rd_files FOREIGN DATA WRAPPER file_fdw;
                         CREATE FOREIGN TABLE mapping.legacy (code text) SERVER rd_files
                             OPTIONS (filename '/dev/null', format 'csv');
                         CREATE FUNCTION mapping.legacy_count() RETURNS bigint LANGUAGE sql
                             BEGIN ATOMIC SELECT count(*) FROM mapping.legacy; END""")
    failed = configure(config, "plan")
    assert failed.returncode == 1
    assert "copying the live schema into the scratch database failed" in failed.stderr
    assert scratch_databases(sample_db) == before


def test_without_createdb_plan_names_scratch_db(sample_db, configure, role, dsn):
    config = sample_config()
    ok(configure(config, "apply"))
    name = f"planner_{uuid.uuid4().hex[:8]}"
    conn = role(name, ["GRANT CONNECT ON DATABASE " + sample_db.info.dbname + " TO {role}",
                       "GRANT USAGE ON SCHEMA business, mapping, refdata, refdata_stage TO {role}",
                       "GRANT SELECT ON ALL TABLES IN SCHEMA business, mapping, refdata, refdata_stage TO {role}"])
    name = conn.info.user  # the fixture makes the name unique for this run
    own_dsn = psycopg.conninfo.make_conninfo(dsn, user=name)
    refused = configure(config, "plan", db=own_dsn)
    assert refused.returncode == 1
    assert "may not CREATE DATABASE; name an empty one with --scratch-db" in refused.stderr
    scratch = f"refdata_scratch_{uuid.uuid4().hex[:8]}"
    sample_db.execute(f'CREATE DATABASE "{scratch}" OWNER "{name}"')
    try:
        scratch_dsn = psycopg.conninfo.make_conninfo(dsn, user=name, dbname=scratch)
        _remove_fk(config)
        # Handing objects to another owner takes what only a superuser has
        # (CREATE for that role on the schemas): this planner names itself.
        plan = configure(config, "plan", "--scratch-db", scratch_dsn, "--owner", name, db=own_dsn)
        assert plan.returncode == 3, plan.stderr
        assert 'drop trigger if exists "annuity_performance__backfill"' in plan.stdout
        with psycopg.connect(scratch_dsn) as s:  # emptied again
            assert s.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN "
                             "('business', 'mapping', 'refdata', 'refdata_stage')").fetchone() == (0,)
    finally:
        conn.close()
        sample_db.execute(f'DROP DATABASE "{scratch}" WITH (FORCE)')



def test_a_dba_who_is_no_superuser_applies_the_rendered_script_twice_and_plans_nothing(
        sample_db, configure, role, dsn, tmp_path):
    # Objects handed to another owner need CREATE for it on their schema, which
    # only a superuser does without: a DBA owning the tables names itself
    # owner. Its rights on its own schemas must survive the rights statement
    # (it revoked them, and the second run failed on "permission denied for
    # schema business"), and its plan must not hold the DDL guard, which only
    # a superuser can create (the plan never came to nothing).
    config = sample_config()
    name = role("dba", [f"GRANT CREATE ON DATABASE {sample_db.info.dbname} TO {{role}}"]).info.user
    sample_db.execute(f"""DO $$ DECLARE t regclass; BEGIN
        ALTER SCHEMA business OWNER TO "{name}"; ALTER SCHEMA mapping OWNER TO "{name}";
        FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace IN ('business'::regnamespace, 'mapping'::regnamespace)
                   AND c.relkind IN ('r', 'p') LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO "{name}"', t);
        END LOOP; END $$""")
    script = tmp_path / "refdata.sql"
    script.write_text(ok(configure(config, "render", "--owner", name, db="")))
    own_dsn = psycopg.conninfo.make_conninfo(dsn, user=name)
    for run in (1, 2):
        applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script), own_dsn],
                                 capture_output=True, text=True)
        assert applied.returncode == 0, (run, applied.stderr)
    # what the DBA holds on its own schema and tables is still all of it
    assert sample_db.execute(f"""SELECT has_schema_privilege('{name}', 'business', 'CREATE'),
                                        has_table_privilege('{name}', 'business."规模明细"', 'TRUNCATE'),
                                        has_table_privilege('{name}', 'mapping."年金计划"', 'TRIGGER')""").fetchone() \
        == (True, True, True)
    scratch = f"refdata_scratch_{uuid.uuid4().hex[:8]}"
    sample_db.execute(f'CREATE DATABASE "{scratch}" OWNER "{name}"')
    try:
        scratch_dsn = psycopg.conninfo.make_conninfo(dsn, user=name, dbname=scratch)
        plan = configure(config, "plan", "--scratch-db", scratch_dsn, "--owner", name, db=own_dsn)
        assert (plan.returncode, plan.stdout) == (0, ""), plan.stdout + plan.stderr
    finally:
        sample_db.execute(f'DROP DATABASE "{scratch}" WITH (FORCE)')
    # the trigger works for the DBA's own insert
    with psycopg.connect(own_dsn, autocommit=True) as conn:
        conn.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "计划名称", "组合代码", "组合名称", "期末资产规模")
                        VALUES ('2025-01-01', 'DBA-NEW', 'n', 'DBA-P', 'p', 1)""")
    assert sample_db.execute("""SELECT _source FROM mapping."年金计划" WHERE "年金计划号" = 'DBA-NEW'""").fetchone() \
        == ("auto_derived",)


# -- identifiers -----------------------------------------------------------------


def test_chinese_and_quoted_identifiers_round_trip(db, configure):
    db.execute(
        '''
        CREATE SCHEMA "My ""Schema""";
        CREATE SCHEMA "参考 数据";
        CREATE TABLE "参考 数据"."计划 ""表""" ("计划 号" text PRIMARY KEY, "全称" text, "it's" text);
        CREATE TABLE "My ""Schema"""."事实 表" ("计划 ""代码""" text, "名称" text, "it's" text);
        '''
    )
    config = {"domains": {"年金_域": {
        "fact_schema": 'My "Schema"', "fact_table": "事实 表",
        "foreign_keys": [{"name": "fk_计划", "source_column": '计划 "代码"', "target_schema": "参考 数据",
                          "target_table": '计划 "表"', "target_key": "计划 号",
                          "backfill_columns": [{"source": "名称", "target": "全称"}]}]}}}
    ok(configure(config, "apply"))
    converged(configure, config)
    config["domains"]["年金_域"]["foreign_keys"][0]["backfill_columns"].append({"source": "it's", "target": "it's"})
    plan = ok(configure(config, "plan"), 3)
    assert 'refdata."年金_域__backfill"()' in plan
    ok(configure(config, "apply"))
    converged(configure, config)
    db.execute('''INSERT INTO "My ""Schema"""."事实 表" VALUES ('新计划', '名', '它的')''')
    assert db.execute('''SELECT "全称", "it's", "_source" FROM "参考 数据"."计划 ""表"""''').fetchall() == [
        ("名", "它的", "auto_derived")]


# -- uninstall ---------------------------------------------------------------------


def refdata_objects(db) -> dict:
    return {
        "schemas": db.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'refdata%'").fetchall(),
        "triggers": triggers(db),
        "functions": db.execute("SELECT oid::regprocedure::text FROM pg_proc "
                                "WHERE pronamespace::regnamespace::text LIKE 'refdata%'").fetchall(),
    }


def test_uninstall_leaves_no_refdata_object_and_keeps_the_data(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    sample_db.execute(f"""INSERT INTO {FACT} ("月度", "计划代码", "机构代码") VALUES ('2025-10-01', 'P88801', 'G888')""")
    facts = sample_db.execute(f"SELECT count(*) FROM {FACT}").fetchone()
    out = ok(configure(config, "uninstall"))
    assert "dropped trigger annuity_performance__backfill on business.规模明细" in out
    assert refdata_objects(sample_db) == {"schemas": [], "triggers": [], "functions": []}
    assert sample_db.execute(f"SELECT count(*) FROM {FACT}").fetchone() == facts
    assert sample_db.execute("""SELECT "_source", "_needs_review" FROM mapping."年金计划"
                                WHERE "年金计划号" = 'P88801'""").fetchone() == ("auto_derived", True)
    # with the tracking columns gone, derived rows are ordinary rows, and the command says how many
    out = ok(configure(config, "uninstall", "--drop-tracking-columns"))
    assert "dropped the tracking columns of mapping.年金计划: 1 auto-derived row(s) stay as ordinary rows" in out
    assert sample_db.execute("""SELECT count(*) FROM pg_attribute WHERE attname = '_source'
                                AND attrelid::regclass::text LIKE 'mapping.%'""").fetchone() == (0,)
    assert sample_db.execute("""SELECT count(*) FROM mapping."年金计划" WHERE "年金计划号" = 'P88801'""").fetchone() == (1,)
    # and a fresh apply installs it all again
    ok(configure(config, "apply"))
    converged(configure, config)


def test_uninstall_one_domain_keeps_the_other(sample_db, configure):
    config = sample_config()
    other = copy.deepcopy(config["domains"]["annuity_performance"])
    other["foreign_keys"] = [f for f in other["foreign_keys"] if f["name"] == "fk_organization"]
    config["domains"]["org_only"] = other
    ok(configure(config, "apply"))
    # the views over all configured reference tables still read the tracking columns
    refused = configure(config, "uninstall", "annuity_performance", "--drop-tracking-columns")
    assert refused.returncode == 1
    assert "cannot drop the tracking columns of mapping.产品线: view refdata.reference_quality" in refused.stderr
    assert "nothing was removed" in refused.stderr
    assert ('business."规模明细"', "annuity_performance__backfill") in triggers(sample_db)
    out = ok(configure(config, "uninstall", "annuity_performance"))
    assert "deleted the run-time values of domain annuity_performance" in out
    assert triggers(sample_db) == [('business."规模明细"', f"org_only__{t}")
                                   for t in ("backfill", "load_begin", "load_verify")]
    assert functions(sample_db) == ["org_only__backfill", "org_only__backfill_set", "org_only__load",
                                    "org_only__load_begin", "org_only__load_parents", "org_only__load_ready",
                                    "org_only__load_verify"]
    assert sample_db.execute("SELECT domain FROM refdata.domain_param").fetchall() == [("org_only",)]
    tracked = sample_db.execute("""SELECT count(*) FROM pg_attribute WHERE attname = '_source'""").fetchone()
    assert tracked == (4,)
    del config["domains"]["annuity_performance"]
    ok(configure(config, "apply"))  # the review objects of the tables no longer configured go too
    converged(configure, config)
    missing = configure(config, "uninstall", "annuity_performance")
    assert missing.returncode == 2
    assert "domain annuity_performance is not installed" in missing.stderr


def fact_indexes(db) -> list[str]:
    return [r[0] for r in db.execute(f"""SELECT indexrelid::regclass::text FROM pg_index
                                         WHERE indrelid = '{FACT}'::regclass ORDER BY 1""")]


def test_uninstall_drops_the_fact_key_indexes_apply_made_and_no_other(sample_db, configure):
    """apply indexes each FK's fact columns (index_fact_keys); on a large fact
    table each costs every insert and its disk. They go with the domains
    that made them; an index the user made stays, also one that serves a key."""
    config = sample_config()
    other = copy.deepcopy(config["domains"]["annuity_performance"])
    other["foreign_keys"] = [f for f in other["foreign_keys"] if f["name"] == "fk_organization"]
    config["domains"]["org_only"] = other
    before = fact_indexes(sample_db)
    sample_db.execute(f'CREATE INDEX mine_on_plans ON {FACT} ("产品线代码", "月度")')
    ok(configure(config, "apply"))
    made = sorted(set(fact_indexes(sample_db)) - set(before) - {'business.mine_on_plans'})
    assert made == sorted(['business."规模明细__组合代码__refdata"', 'business."规模明细__机构代码__refdata"',
                           'business."规模明细__计划代码__refdata"'])  # 产品线代码: mine_on_plans leads with it
    out = ok(configure(config, "uninstall", "annuity_performance"))
    assert 'dropped index business.规模明细__计划代码__refdata' in out
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == [
        'business."规模明细__机构代码__refdata"', "business.mine_on_plans"]  # org_only still uses its index
    out = ok(configure(config, "uninstall"))
    assert 'dropped index business.规模明细__机构代码__refdata' in out
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == ["business.mine_on_plans"]


def test_apply_drops_the_fact_key_index_of_a_key_no_longer_configured_and_no_other(sample_db, configure):
    """An FK that leaves the config takes the index apply made on its fact
    columns with it (each costs every insert); the user's own index on the
    same columns stays, and so does the index of an FK that stays."""
    config = sample_config()
    before = fact_indexes(sample_db)
    ok(configure(config, "apply"))
    sample_db.execute(f'CREATE INDEX mine_on_organisations ON {FACT} ("机构代码")')
    config["domains"]["annuity_performance"]["foreign_keys"] = [
        f for f in config["domains"]["annuity_performance"]["foreign_keys"] if f["name"] != "fk_organization"]
    plan = ok(configure(config, "plan"), 3)
    assert 'drop index if exists "business"."规模明细__机构代码__refdata"' in plan, plan
    ok(configure(config, "apply"))
    converged(configure, config)
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == sorted([
        'business."规模明细__计划代码__refdata"', 'business."规模明细__组合代码__refdata"',
        'business."规模明细__产品线代码__refdata"', "business.mine_on_organisations"])
    # with the indexes off, they all go
    config["observability"] = {"index_fact_keys": False}
    ok(configure(config, "apply"))
    converged(configure, config)
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == ["business.mine_on_organisations"]


def test_uninstall_drops_every_fact_key_index_refdata_made_also_of_keys_the_config_no_longer_names(
        sample_db, configure):
    config = sample_config()
    before = fact_indexes(sample_db)
    ok(configure(config, "apply"))
    sample_db.execute(f'CREATE INDEX mine_on_plans ON {FACT} ("计划代码")')
    # an index by refdata's naming that refdata did not make is the user's
    sample_db.execute(f'CREATE INDEX "规模明细__月度__refdata" ON {FACT} ("月度")')
    config["domains"]["annuity_performance"]["foreign_keys"] = [
        f for f in config["domains"]["annuity_performance"]["foreign_keys"] if f["name"] == "fk_plan"]
    out = ok(configure(config, "uninstall"))
    assert "dropped index business.规模明细__组合代码__refdata" in out
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == [
        'business."规模明细__月度__refdata"', "business.mine_on_plans"]


def test_uninstall_drops_a_fact_key_index_made_before_indexes_were_marked_and_never_a_user_s(sample_db, configure):
    """An earlier refdata made its fact key indexes without a comment.
    uninstall tells one by the name and exact shape it has for a configured
    FK and no comment at all, and drops it with its domain, without an apply
    marking it first. An index of that name and shape that a user commented
    is theirs: apply does not mark it, uninstall leaves it."""
    config = sample_config()
    before = fact_indexes(sample_db)
    ok(configure(config, "apply"))
    sample_db.execute('COMMENT ON INDEX business."规模明细__产品线代码__refdata" IS NULL')
    sample_db.execute('DROP INDEX business."规模明细__机构代码__refdata"')
    sample_db.execute(f'CREATE INDEX "规模明细__机构代码__refdata" ON {FACT} ("机构代码")')
    sample_db.execute("""COMMENT ON INDEX business."规模明细__机构代码__refdata" IS 'reports by organisation'""")
    out = ok(configure(config, "uninstall", "annuity_performance"))
    assert "dropped index business.规模明细__产品线代码__refdata" in out
    assert "规模明细__机构代码__refdata" not in out
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == ['business."规模明细__机构代码__refdata"']
    ok(configure(config, "apply"))
    assert sample_db.execute("""SELECT obj_description('business."规模明细__机构代码__refdata"'::regclass, 'pg_class')""")\
        .fetchone() == ("reports by organisation",)
    out = ok(configure(config, "uninstall"))
    assert "规模明细__机构代码__refdata" not in out
    assert sorted(set(fact_indexes(sample_db)) - set(before)) == ['business."规模明细__机构代码__refdata"']


def test_a_fact_key_index_made_before_refdata_marked_its_indexes_is_marked_by_the_next_apply(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    sample_db.execute(f'COMMENT ON INDEX business."规模明细__产品线代码__refdata" IS NULL')
    plan = ok(configure(config, "plan"), 3)
    assert 'COMMENT ON INDEX "business"."规模明细__产品线代码__refdata" IS' in plan, plan
    ok(configure(config, "apply"))
    converged(configure, config)
    config["domains"]["annuity_performance"]["foreign_keys"] = [
        f for f in config["domains"]["annuity_performance"]["foreign_keys"] if f["name"] != "fk_product_line"]
    ok(configure(config, "apply"))
    assert 'business."规模明细__产品线代码__refdata"' not in fact_indexes(sample_db)
    # made again by a plan (migra's CREATE INDEX), it is marked again
    ok(configure(sample_config(), "apply"))
    converged(configure, sample_config())
    assert sample_db.execute("""SELECT obj_description('business."规模明细__产品线代码__refdata"'::regclass, 'pg_class')
                             """).fetchone()[0].startswith("refdata: fact key index ")


# -- statement mode on a partitioned fact table ---------------------------------------


def test_statement_mode_partitions_and_a_partition_created_later(db, configure):
    db.execute(
        """
        CREATE SCHEMA ref; CREATE SCHEMA fact;
        CREATE TABLE ref.plan (code text PRIMARY KEY, name text);
        CREATE TABLE fact.monthly (month date NOT NULL, plan_code text, plan_name text) PARTITION BY RANGE (month);
        CREATE TABLE fact.monthly_10 PARTITION OF fact.monthly FOR VALUES FROM ('2025-10-01') TO ('2025-11-01');
        """
    )
    config = {"domains": {"monthly": {
        "fact_schema": "fact", "trigger_mode": "statement",
        "foreign_keys": [{"name": "fk_plan", "source_column": "plan_code", "target_schema": "ref",
                          "target_table": "plan", "target_key": "code",
                          "backfill_columns": [{"source": "plan_name", "target": "name"}]}]}}}
    ok(configure(config, "apply"))
    converged(configure, config)
    db.execute("INSERT INTO fact.monthly_10 VALUES ('2025-10-05', 'P1', '直接写分区')")  # names the partition
    db.execute("INSERT INTO fact.monthly VALUES ('2025-10-06', 'P2', '经父表')")
    assert db.execute("SELECT code, name FROM ref.plan ORDER BY 1").fetchall() == [("P1", "直接写分区"), ("P2", "经父表")]

    db.execute("CREATE TABLE fact.monthly_11 PARTITION OF fact.monthly FOR VALUES FROM ('2025-11-01') TO ('2025-12-01')")
    plan = ok(configure(config, "plan"), 3)
    assert "CREATE TRIGGER monthly__backfill_insert AFTER INSERT ON fact.monthly_11" in plan
    ok(configure(config, "apply"))
    converged(configure, config)
    db.execute("INSERT INTO fact.monthly_11 VALUES ('2025-11-05', 'P3', '新分区')")
    assert db.execute("SELECT name FROM ref.plan WHERE code = 'P3'").fetchone() == ("新分区",)

    # back to row mode: the partitions' statement triggers go, the row trigger is inherited
    config["domains"]["monthly"]["trigger_mode"] = "row"
    ok(configure(config, "apply"))
    converged(configure, config)
    assert [t for t in triggers(db) if "backfill_insert" in t[1]] == []
    db.execute("INSERT INTO fact.monthly_11 VALUES ('2025-11-06', 'P4', '行模式')")
    assert db.execute("SELECT name FROM ref.plan WHERE code = 'P4'").fetchone() == ("行模式",)


# -- with a reference sync ------------------------------------------------------------


@pytest.mark.parametrize("via", ["fdw", "client"])
def test_a_sync_config_plans_and_converges_and_stays_without_one(sample_db, cli, write_config, legacy_pg, via):
    """The sync objects (functions owned by the owner role, foreign server,
    staging) are planned with reference_sync.yml; a plan without one leaves
    them alone."""
    from sync_helpers import plan_table, project_config, sync_config

    config = project_config(write_config)
    sync = sync_config(write_config, plan_table("LEG", via))
    env = legacy_pg.env("LEG")
    legacy_pg.rows([("PMIG1", "迁移计划", "正常")])
    ok(cli("--config", str(config), "apply", env=env))
    with_sync = cli("--config", str(config), "plan", "--sync-config", str(sync), env=env)
    assert (with_sync.returncode, with_sync.stdout) == (0, ""), with_sync.stdout + with_sync.stderr
    sync.rename(sync.with_name("elsewhere.yml"))  # no reference_sync.yml beside the config
    without = cli("--config", str(config), "plan", env=env)
    assert (without.returncode, without.stdout) == (0, ""), without.stdout + without.stderr
    sync.with_name("elsewhere.yml").rename(sync)
    if via == "fdw":  # the foreign table dropped behind refdata's back: the plan sets it up again
        (foreign,) = sample_db.execute("SELECT ftrelid::regclass::text FROM pg_foreign_table").fetchone()
        sample_db.execute(f"DROP FOREIGN TABLE {foreign}")
        again = cli("--config", str(config), "plan", env=env)
        assert again.returncode == 3, again.stderr
        assert "SELECT refdata.sync_foreign_table(" in again.stdout and "sync_server(" not in again.stdout
        ok(cli("--config", str(config), "apply", env=env))
    synced = cli("--config", str(config), "sync", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert sample_db.execute("""SELECT "_source" FROM mapping."年金计划" WHERE "年金计划号" = 'PMIG1'""").fetchone() == (
        "authoritative",)


def test_uninstall_removes_the_sync_servers_credentials_and_schedule(sample_db, cli, write_config, legacy_pg):
    """Everything refdata made outside its schemas goes too: the foreign
    server with the owner role's user mapping (the source's credentials),
    the pg_cron job of refdata schedule, the owner guard's event triggers."""
    from sync_helpers import plan_table, project_config, sync_config

    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"))
    env = legacy_pg.env("LEG")
    ok(cli("--config", str(config), "apply", env=env))
    ok(cli("--config", str(config), "schedule", "--cron", "0 3 * * *"))
    job = f"refdata_sync:{sample_db.info.dbname}"
    out = ok(cli("--config", str(config), "uninstall"))
    assert "dropped foreign server refdata__leg__pg with its user mappings and foreign tables" in out
    assert f"removed pg_cron job '{job}'" in out
    assert sample_db.execute("SELECT count(*) FROM pg_foreign_server").fetchone() == (0,)
    assert sample_db.execute("SELECT count(*) FROM pg_user_mappings").fetchone() == (0,)
    assert sample_db.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'refdata%'").fetchone() == (0,)
    info = sample_db.info
    with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="refdata", autocommit=True) as cron:
        assert cron.execute("SELECT count(*) FROM cron.job WHERE jobname = %s", [job]).fetchone() == (0,)
    assert refdata_objects(sample_db) == {"schemas": [], "triggers": [], "functions": []}
