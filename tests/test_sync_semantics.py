"""Reference sync: delete_insert, config files, the watermark, degraded
mode, bad source data, secrets, enabled: false."""

from __future__ import annotations

import os
import socket
import subprocess

import psycopg
import pytest

from sync_helpers import mysql_env, plan_table, project_config, sync_config

PLAN = 'mapping."年金计划"'
PRODUCT_LINE = 'mapping."产品线"'


def product_line_table(path, version: str = "1.0", mode: str = "delete_insert") -> str:
    return (
        "  - name: 产品线\n"
        "    target_table: 产品线\n"
        "    target_schema: mapping\n"
        "    source_type: config_file\n"
        f"    source_config: {{file_path: \"{path}\", schema_version: \"{version}\"}}\n"
        f"    sync_mode: {mode}\n"
        "    primary_key: 产品线代码\n"
    )


def product_lines(db) -> dict:
    return {r[0]: r[1:] for r in db.execute(f'SELECT "产品线代码", "产品线", "_source" FROM {PRODUCT_LINE}')}


def insert_fact(db, plan: str = "P00000", product_line: str | None = None) -> None:
    db.execute('INSERT INTO business."规模明细" ("月度", "计划代码", "计划名称", "产品线代码") VALUES (%s, %s, %s, %s)',
               ["2025-10-01", plan, "某计划", product_line])


def runs(db, table: str) -> list[dict]:
    cur = db.execute("SELECT * FROM refdata.sync_run WHERE table_name = %s ORDER BY id", [table])
    return [dict(zip([d.name for d in cur.description], r)) for r in cur.fetchall()]


PRODUCT_LINES_YAML = """schema_version: "1.0"
description: 产品线
data:
  - {产品线代码: PL201, 产品线: 企业年金受托, 业务大类: 企业年金}
  - {产品线代码: PL202, 产品线: 企业年金投资（新）, 业务大类: 企业年金}
  - {产品线代码: PL301, 产品线: 养老金产品, 业务大类: 养老保障}
"""


@pytest.mark.parametrize("declared_fk", [True, False])
def test_delete_insert_keeps_rows_facts_reference(declared_fk, sample_db, cli, write_config):
    """PL203 (named by a fact) and PL999 (derived from a fact) are not in the
    file: kept. PL204 (named by nothing) is deleted. Without a declared FK
    constraint data_sources.yml says which fact column names product lines."""
    if not declared_fk:
        fk = sample_db.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'business.\"规模明细\"'::regclass "
                               "AND confrelid = 'mapping.\"产品线\"'::regclass").fetchone()[0]
        sample_db.execute(f'ALTER TABLE business."规模明细" DROP CONSTRAINT "{fk}"')
    config = project_config(write_config)
    data = write_config(PRODUCT_LINES_YAML, "product_lines.yml")
    sync_config(write_config, product_line_table(data))
    assert cli("--config", str(config), "apply").returncode == 0
    insert_fact(sample_db, product_line="PL203")
    insert_fact(sample_db, product_line="PL999")
    assert product_lines(sample_db)["PL999"][1] == "auto_derived"

    result = cli("--config", str(config), "sync")

    assert result.returncode == 0, result.stderr
    assert "产品线: inserted 1, updated 1, promoted 0, unchanged 1, deleted 1, kept 2" in result.stdout
    lines = product_lines(sample_db)
    assert sorted(lines) == ["PL201", "PL202", "PL203", "PL301", "PL999"]
    assert lines["PL202"] == ("企业年金投资（新）", "authoritative")
    assert lines["PL999"][1] == "auto_derived"  # kept as it was


def test_uninstalling_a_domain_with_its_tracking_columns_spares_a_table_the_sync_writes(sample_db, cli, write_config):
    """产品线 is a target of the domain and of the sync, whose merge writes
    its tracking columns: `uninstall DOMAIN --drop-tracking-columns` leaves it
    out. (It then refuses on the next table, which the quality views over
    every configured reference table still read: nothing is removed.)"""
    config = project_config(write_config)
    data = write_config(PRODUCT_LINES_YAML, "product_lines.yml")
    sync_config(write_config, product_line_table(data, mode="upsert"))
    assert cli("--config", str(config), "apply").returncode == 0
    refused = cli("--config", str(config), "uninstall", "annuity_performance", "--drop-tracking-columns")
    assert refused.returncode == 1
    assert "cannot drop the tracking columns of mapping." in refused.stderr, refused.stderr
    assert "产品线" not in refused.stderr
    result = cli("--config", str(config), "sync")
    assert result.returncode == 0, result.stderr
    assert product_lines(sample_db)["PL301"] == ("养老金产品", "authoritative")


def test_csv_config_file(sample_db, cli, write_config):
    config = project_config(write_config)
    data = write_config("产品线代码,产品线,业务大类\nPL201,企业年金受托,企业年金\nPL501,新产品线,养老保障\n", "lines.csv")
    sync_config(write_config, product_line_table(data, mode="upsert"))
    assert cli("--config", str(config), "apply").returncode == 0
    result = cli("--config", str(config), "sync")
    assert result.returncode == 0, result.stderr
    assert "inserted 1, updated 0, promoted 0, unchanged 1, deleted 0, kept 0" in result.stdout
    assert product_lines(sample_db)["PL501"] == ("新产品线", "authoritative")


def test_config_file_version_mismatch_fails_and_changes_nothing(sample_db, cli, write_config):
    config = project_config(write_config)
    data = write_config(PRODUCT_LINES_YAML, "product_lines.yml")
    sync_config(write_config, product_line_table(data, version="2.0"))
    assert cli("--config", str(config), "apply").returncode == 0
    before = product_lines(sample_db)
    result = cli("--config", str(config), "sync")
    assert result.returncode == 1
    assert f"产品线: failed: table 产品线: {data}: schema_version '1.0' does not match '2.0'" in result.stderr
    assert product_lines(sample_db) == before
    assert runs(sample_db, "产品线")[-1]["status"] == "failed"


def test_incremental_watermark_moves_only_with_a_committed_run(sample_db, cli, write_config, legacy_pg):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw", incremental=True))
    env = legacy_pg.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    src = legacy_pg.conn
    src.execute("INSERT INTO enterprise.annuity_plan VALUES ('P80001', '甲', '正常', '2025-01-01 00:00+00'), "
                "('P80002', '乙', '正常', '2025-01-02 00:00+00')")
    watermark = lambda: sample_db.execute(  # noqa: E731
        "SELECT last_synced_at::text FROM refdata.sync_watermark WHERE table_name = '年金计划'").fetchone()
    first = cli("--config", str(config), "sync", env=env)
    assert "inserted 2, updated 0" in first.stdout, first.stderr
    assert watermark() == ("2025-01-02 00:00:00+00",)

    # A changed row and a duplicate key: the run fails, the watermark stays.
    src.execute("UPDATE enterprise.annuity_plan SET plan_name = '乙（改）', updated_at = '2025-02-01 00:00+00' "
                "WHERE plan_code = 'P80002'")
    src.execute("INSERT INTO enterprise.annuity_plan VALUES ('P80002', '乙（重复）', '正常', '2025-02-02 00:00+00')")
    failed = cli("--config", str(config), "sync", env=env)
    assert failed.returncode == 1
    assert "the key occurs 2 times in the source" in failed.stderr
    assert watermark() == ("2025-01-02 00:00:00+00",)

    src.execute("DELETE FROM enterprise.annuity_plan WHERE plan_name = '乙（重复）'")
    third = cli("--config", str(config), "sync", env=env)
    # only the row changed since the watermark was read (P80001 was not)
    assert "inserted 0, updated 1, promoted 0, unchanged 0" in third.stdout, third.stderr
    assert watermark() == ("2025-02-01 00:00:00+00",)


@pytest.mark.parametrize("via", ["fdw", "client"])
def test_source_down_is_recorded_others_sync_and_backfill_still_works(via, sample_db, cli, write_config, legacy_pg):
    config = project_config(write_config)
    data = write_config(PRODUCT_LINES_YAML, "product_lines.yml")
    sync_config(write_config, plan_table("LEG", via) + product_line_table(data, mode="upsert"))
    env = legacy_pg.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    plans_before = sample_db.execute(f"SELECT count(*) FROM {PLAN}").fetchone()
    legacy_pg.drop()  # the legacy server is gone

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 1
    assert "年金计划: failed: table 年金计划: " in result.stderr
    assert "1 of 2 table(s) failed; the others are synced" in result.stderr
    assert "产品线: inserted 1, updated 1" in result.stdout
    failed = runs(sample_db, "年金计划")[-1]
    assert failed["status"] == "failed" and failed["error"].startswith("table 年金计划: ")
    assert sample_db.execute(f"SELECT count(*) FROM {PLAN}").fetchone() == plans_before
    insert_fact(sample_db, plan="P77777")  # the triggers do not need the source
    assert sample_db.execute(f'SELECT "_source" FROM {PLAN} WHERE "年金计划号" = %s', ["P77777"]).fetchone() == \
        ("auto_derived",)


@pytest.mark.parametrize("via", ["fdw", "client"])
@pytest.mark.parametrize("rows,message", [
    ([("P00001", "甲", "正常"), ("P00001", "乙", "正常")],
     "table 年金计划: key 年金计划号=P00001: column 年金计划号: the key occurs 2 times in the source"),
    # none of the keys known yet: the target's key index finds the duplicate, the message is the same
    ([("P70001", "甲", "正常"), ("P70002", "丙", "正常"), ("P70001", "乙", "正常")],
     "table 年金计划: key 年金计划号=P70001: column 年金计划号: the key occurs 2 times in the source"),
    ([("P00001", "甲", "正常"), (None, "乙", "正常")],
     "table 年金计划: key 年金计划号=NULL: column 年金计划号: the key is NULL in the source"),
    ([("P00001", "甲", "太长的状态值超过八个字符了")],
     "table 年金计划: key 年金计划号=P00001: column 计划状态: value too long for type character varying(8)"),
])
def test_bad_source_rows_fail_the_table_naming_key_and_column(via, rows, message, sample_db, cli, write_config,
                                                              legacy_mysql):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, "legacy_mysql", schema=legacy_mysql.name))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    legacy_mysql.rows(rows)
    before = sample_db.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall()
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 1
    assert f"年金计划: failed: {message}" in result.stderr
    assert sample_db.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall() == before
    assert runs(sample_db, "年金计划")[-1]["error"] == message


def test_no_password_in_any_output(sample_db, cli, write_config, legacy_mysql, tmp_path):
    sample_db.execute('CREATE TABLE mapping.plan_copy (LIKE mapping."年金计划" INCLUDING ALL)')
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw", "legacy_mysql", schema=legacy_mysql.name)
                + plan_table("LEGC", "client", "legacy_mysql", schema=legacy_mysql.name).replace(
                    "name: 年金计划\n    target_table: 年金计划", "name: plan_copy\n    target_table: plan_copy"))
    env = {**legacy_mysql.env("LEG"), **legacy_mysql.env("LEGC")}
    password = env["LEG_PASSWORD"]
    legacy_mysql.rows([("P00001", "甲", "正常")])
    outputs = []
    for args in [("apply",), ("render",), ("render", "-o", str(tmp_path / "out")), ("sync",), ("validate",)]:
        r = cli("--config", str(config), *args, env=env)
        assert r.returncode == 0, (args, r.stderr)
        outputs += [r.stdout, r.stderr]
    outputs += [p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()]
    wrong = {**env, "LEGC_PASSWORD": "Wr0ng-" + password}
    r = cli("--config", str(config), "sync", env=wrong)
    assert r.returncode == 1 and "Access denied" in r.stderr
    outputs += [r.stdout, r.stderr]
    outputs += [str(row) for row in sample_db.execute("SELECT * FROM refdata.sync_run")]
    for text in outputs:
        assert password not in text
    # only where it must be: the user mapping, read through it by mysql_fdw
    assert sample_db.execute("SELECT count(*) FROM pg_user_mappings WHERE "
                             "array_to_string(umoptions, ',') LIKE %s", [f"%{password}%"]).fetchone() == (1,)


def test_duplicate_keys_into_a_table_whose_key_is_checked_at_commit_fail_naming_the_key(sample_db, cli,
                                                                                       write_config):
    """A deferred key constraint would let duplicates in until commit: the
    source is grouped before anything is written."""
    sample_db.execute("CREATE TABLE mapping.codes (code text PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, name text)")
    config = project_config(write_config)
    data = write_config("code,name\nC1,甲\nC2,丙\nC1,乙\n", "codes.csv")
    sync_config(write_config, "  - name: codes\n    target_table: codes\n    target_schema: mapping\n"
                              f"    source_type: config_file\n    source_config: {{file_path: \"{data}\"}}\n"
                              "    primary_key: code\n")
    assert cli("--config", str(config), "apply").returncode == 0
    result = cli("--config", str(config), "sync")
    assert result.returncode == 1
    assert "codes: failed: table codes: key code=C1: column code: the key occurs 2 times in the source" in \
        result.stderr, result.stderr
    assert sample_db.execute("SELECT count(*) FROM mapping.codes").fetchone() == (0,)


def test_enabled_false_syncs_nothing_and_says_so(sample_db, cli, write_config):
    config = project_config(write_config)
    data = write_config(PRODUCT_LINES_YAML, "product_lines.yml")
    sync_config(write_config, product_line_table(data), enabled="false")
    assert cli("--config", str(config), "apply").returncode == 0
    before = product_lines(sample_db)
    result = cli("--config", str(config), "sync")
    assert result.returncode == 0
    assert "reference sync is disabled (enabled: false in " in result.stdout
    assert product_lines(sample_db) == before
    assert runs(sample_db, "产品线") == []


@pytest.mark.parametrize("via", ["fdw", "client"])
def test_without_columns_every_source_column_the_target_has_is_synced(via, sample_db, cli, write_config,
                                                                       legacy_pg):
    """The pipeline's own reference_sync.yml names no columns: the source's
    columns are taken by name; the ones the target lacks are left out."""
    legacy_pg.conn.execute('CREATE TABLE enterprise.plans ("年金计划号" text, "计划全称" text, "计划状态" text, '
                           'legacy_only text)')
    legacy_pg.conn.execute("INSERT INTO enterprise.plans VALUES ('P70001', '按名同步', '正常', 'x')")
    config = project_config(write_config)
    sync_config(write_config, (
        "  - name: 年金计划\n    target_table: 年金计划\n    target_schema: mapping\n"
        f"    source_type: postgres\n    via: {via}\n"
        "    source_config: {connection_env_prefix: LEG, schema: enterprise, table: plans}\n"
        "    primary_key: 年金计划号\n"))
    env = legacy_pg.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    if via == "fdw":  # the import borrowed the owner role's credentials, and gave them back
        assert sample_db.execute("SELECT usename FROM pg_user_mappings").fetchall() == [("refdata_owner",)]
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 0, result.stderr
    assert "年金计划: inserted 1, updated 0" in result.stdout
    assert sample_db.execute(f'SELECT "计划全称", "计划状态" FROM {PLAN} WHERE "年金计划号" = %s',
                             ["P70001"]).fetchone() == ("按名同步", "正常")


@pytest.mark.parametrize("source_type", ["postgres", "legacy_mysql"])
def test_apply_again_keeps_the_fdw_sync_working(source_type, sample_db, cli, write_config, request):
    """The sync config added to a database refdata is applied to, then applied
    once more: the server, user mapping and foreign table are set up and stay."""
    legacy = request.getfixturevalue("legacy_pg" if source_type == "postgres" else "legacy_mysql")
    config = project_config(write_config)
    env = legacy.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    sync_config(write_config, plan_table("LEG", "fdw", source_type,
                                         schema=legacy.name if source_type != "postgres" else "enterprise"))
    for _ in range(2):
        applied = cli("--config", str(config), "apply", env=env)
        assert applied.returncode == 0, applied.stderr
    legacy.rows([("P70001", "再次应用", "正常")])
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 0, result.stderr
    assert "年金计划: inserted 1, updated 0" in result.stdout


def codes_table(data) -> str:
    return ("  - name: codes\n    target_table: codes\n    target_schema: lookup\n"
            f"    source_type: config_file\n    source_config: {{file_path: \"{data}\"}}\n"
            "    primary_key: code\n")


@pytest.mark.parametrize("route", ["apply", "plan_file"])
def test_a_sync_target_no_foreign_key_names_added_to_an_applied_database_gets_its_tracking_columns(
        route, sample_db, cli, write_config, tmp_path):
    """lookup.codes (in a schema nothing else of refdata's uses) is the target
    of no foreign key: only the sync config makes it refdata's. Added after a
    first apply, the next apply (or the plan it reviews) still compares it,
    adds its tracking columns, its audit triggers and the owner's rights on
    it, and the sync runs."""
    sample_db.execute("CREATE SCHEMA lookup; CREATE TABLE lookup.codes (code text PRIMARY KEY, name text)")
    config = project_config(write_config)
    assert cli("--config", str(config), "apply").returncode == 0
    data = write_config("code,name\nC1,甲\nC2,乙\n", "codes.csv")
    sync_config(write_config, codes_table(data))
    if route == "apply":
        applied = cli("--config", str(config), "apply")
    else:
        planned = cli("--config", str(config), "plan")
        assert planned.returncode == 3, planned.stderr
        assert '"_source"' in planned.stdout and "codes" in planned.stdout
        (tmp_path / "plan.sql").write_text(planned.stdout, encoding="utf-8")
        applied = cli("--config", str(config), "apply", "--sql", str(tmp_path / "plan.sql"))
    assert applied.returncode == 0, applied.stderr
    assert "tracking columns: 1 created" in applied.stdout, applied.stdout
    assert sample_db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'lookup.codes'::regclass "
                             "AND attname IN ('_source', '_needs_review', '_derived_from_domain', '_derived_at') "
                             "AND NOT attisdropped").fetchone() == (4,)
    result = cli("--config", str(config), "sync")
    assert result.returncode == 0, result.stderr
    assert "codes: inserted 2" in result.stdout
    sample_db.execute("UPDATE lookup.codes SET name = '丙' WHERE code = 'C2'")
    assert sample_db.execute(  # its changes are audited like an FK target's
        "SELECT operation, action, key FROM refdata.audit_log WHERE table_name = 'lookup.codes'::regclass "
        "ORDER BY id, key->>'code'").fetchall() == [
            ("INSERT", "sync", {"code": "C1"}), ("INSERT", "sync", {"code": "C2"}), ("UPDATE", None, {"code": "C2"})]
    again = cli("--config", str(config), "apply")
    assert again.returncode == 0 and "unchanged:" in again.stdout, again.stdout + again.stderr
    # what refdata added to the table goes with the rest of it
    removed = cli("--config", str(config), "uninstall", "--drop-tracking-columns")
    assert removed.returncode == 0, removed.stderr
    assert "dropped the tracking columns of lookup.codes: 0 auto-derived row(s)" in removed.stdout
    assert sample_db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'lookup.codes'::regclass "
                             "AND attname LIKE '\\_%' AND NOT attisdropped").fetchone() == (0,)


def closed_port() -> int:
    """A local TCP port nothing listens on: the source is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "no_columns"])
@pytest.mark.parametrize("source_type", ["postgres", "legacy_mysql"])
def test_apply_with_the_source_down_succeeds_and_its_sync_fails_degraded(source_type, columns, sample_db, cli,
                                                                         write_config):
    """A configured column list defines the foreign table without the source;
    without one, apply says in one line that the source could not be reached."""
    config = project_config(write_config)
    table = plan_table("DOWN", "fdw", source_type, schema="enterprise")
    if not columns:
        table = table[:table.index("      columns:\n")] + table[table.index("    sync_mode:"):]
    sync_config(write_config, table)
    port = closed_port()
    env = ({"DOWN_HOST": "127.0.0.1", "DOWN_PORT": str(port), "DOWN_DATABASE": "legacy", "DOWN_USER": "postgres"}
           if source_type == "postgres" else mysql_env("DOWN", "legacy") | {"DOWN_PORT": str(port)})

    applied = cli("--config", str(config), "apply", env=env)

    assert applied.returncode == 0, applied.stderr
    warned = [line for line in applied.stdout.splitlines() if "cannot be reached" in line]
    if columns:
        assert warned == []
    else:
        assert len(warned) == 1 and warned[0].startswith("warning: source enterprise.annuity_plan "), applied.stdout
        assert "run refdata apply again when the source is up" in warned[0]
    plans_before = sample_db.execute(f"SELECT count(*) FROM {PLAN}").fetchone()

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 1
    assert "年金计划: failed: table 年金计划: " in result.stderr
    failed = runs(sample_db, "年金计划")[-1]
    assert failed["status"] == "failed" and failed["error"].startswith("table 年金计划: ")
    assert sample_db.execute(f"SELECT count(*) FROM {PLAN}").fetchone() == plans_before
    insert_fact(sample_db, plan="P77777")  # the triggers do not need the source
    assert sample_db.execute(f'SELECT "_source" FROM {PLAN} WHERE "年金计划号" = %s', ["P77777"]).fetchone() == \
        ("auto_derived",)


COPY_TABLE = 'mapping."plan_copy"'


def emptied(sample_db, via: str, schema: str, **kw) -> str:
    """The plan table emptied (with the facts naming it) for a first sync:
    the source goes straight in."""
    sample_db.execute(f"TRUNCATE {PLAN} CASCADE")
    return plan_table("LEG", via, "legacy_mysql", schema=schema, **kw)


@pytest.mark.parametrize("via", ["fdw", "client"])
@pytest.mark.parametrize("mode,incremental,filled", [("upsert", False, False), ("delete_insert", False, False),
                                                     ("upsert", True, False), ("delete_insert", False, True)],
                         ids=["upsert", "delete_insert", "incremental", "not_empty"])
def test_a_first_sync_into_an_empty_table_inserts_every_row_as_authoritative(via, mode, incremental, filled,
                                                                            sample_db, cli, write_config,
                                                                            legacy_mysql):
    """Into an empty table the source goes straight in, counted, audited as
    the sync's, the watermark moved; a table holding only keys the source
    lacks is no empty table (delete_insert deletes them)."""
    config = project_config(write_config)
    sync_config(write_config, emptied(sample_db, via, legacy_mysql.name, mode=mode, incremental=incremental))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    if filled:
        sample_db.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态") VALUES ('P60001', '旧', '正常')""")
    legacy_mysql.rows([("P70001", "甲", "正常"), ("P70002", "乙", "正常"), ("P70003", "丙", "正常")])
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 0, result.stderr
    deleted = 1 if filled else 0
    assert f"年金计划: inserted 3, updated 0, promoted 0, unchanged 0, deleted {deleted}, kept 0" in result.stdout
    assert sample_db.execute(f'SELECT "年金计划号", "计划全称", "_source", "_needs_review" FROM {PLAN} '
                             'ORDER BY 1').fetchall() == [("P70001", "甲", "authoritative", False),
                                                          ("P70002", "乙", "authoritative", False),
                                                          ("P70003", "丙", "authoritative", False)]
    run = runs(sample_db, "年金计划")[-1]
    assert (run["status"], run["inserted"], run["updated"], run["unchanged"]) == ("succeeded", 3, 0, 0)
    assert sample_db.execute("SELECT action, count(*) FROM refdata.audit_log WHERE operation = 'INSERT' AND "
                             f"table_name = '{PLAN}'::regclass AND action = 'sync' GROUP BY 1").fetchall() == [("sync", 3)]
    watermark = sample_db.execute("SELECT count(*) FROM refdata.sync_watermark WHERE table_name = '年金计划'")
    assert watermark.fetchone() == ((1,) if incremental else (0,))
    again = cli("--config", str(config), "sync", env=env)
    assert "年金计划: inserted 0, updated 0, promoted 0, unchanged 3" in again.stdout, again.stderr


@pytest.mark.parametrize("via", ["fdw", "client"])
@pytest.mark.parametrize("rows,message", [
    ([("P70001", "甲", "正常"), ("P70002", "丙", "正常"), ("P70001", "乙", "正常")],
     "table 年金计划: key 年金计划号=P70001: column 年金计划号: the key occurs 2 times in the source"),
    ([("P70001", "甲", "正常"), (None, "乙", "正常")],
     "table 年金计划: key 年金计划号=NULL: column 年金计划号: the key is NULL in the source"),
    ([("P70001", "甲", "正常"), ("P70002", None, "正常")],
     "table 年金计划: key 年金计划号=P70002: column 计划全称: NULL in the source, but the column is NOT NULL "
     "in mapping.\"年金计划\""),
    ([("P70001", "甲", "正常"), ("P70002", "乙", "太长的状态值超过八个字符了")],
     "table 年金计划: key 年金计划号=P70002: column 计划状态: value too long for type character varying(8)"),
])
def test_a_first_sync_of_bad_rows_into_an_empty_table_fails_naming_key_and_column(via, rows, message, sample_db, cli,
                                                                                  write_config, legacy_mysql):
    config = project_config(write_config)
    sync_config(write_config, emptied(sample_db, via, legacy_mysql.name))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    legacy_mysql.rows(rows)
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 1
    assert f"年金计划: failed: {message}" in result.stderr, result.stderr
    assert sample_db.execute(f"SELECT count(*) FROM {PLAN}").fetchone() == (0,)
    assert runs(sample_db, "年金计划")[-1]["error"] == message
    assert sample_db.execute("SELECT count(*) FROM refdata.audit_batch").fetchone() == (0,)


def test_a_null_key_into_an_empty_table_whose_key_allows_null_fails_naming_it(sample_db, cli, write_config,
                                                                              legacy_mysql):
    """A key kept unique by a constraint that lets NULL in: the target would
    take the NULL key, so the source is checked first."""
    sample_db.execute(f'CREATE TABLE {COPY_TABLE} ("年金计划号" varchar(32) UNIQUE, "计划全称" text, '
                      '"计划状态" varchar(8))')
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw", "legacy_mysql", schema=legacy_mysql.name).replace(
        "name: 年金计划\n    target_table: 年金计划", "name: plan_copy\n    target_table: plan_copy"))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    legacy_mysql.rows([("P70001", "甲", "正常"), (None, "乙", "正常")])
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 1
    assert ("plan_copy: failed: table plan_copy: key 年金计划号=NULL: column 年金计划号: the key is NULL in the source"
            in result.stderr), result.stderr
    assert sample_db.execute(f"SELECT count(*) FROM {COPY_TABLE}").fetchone() == (0,)


def test_the_password_apply_sets_never_reaches_the_server_log(sample_db, dsn, cli, write_config):
    """With every statement logged, with its parameters and duration: apply
    and a rendered script run by psql set the user mapping's password, and
    the server log never holds it."""
    import uuid
    from pathlib import Path

    password = f"rdLog-{uuid.uuid4().hex}"
    database = sample_db.info.dbname
    for setting, value in (("log_statement", "'all'"), ("log_min_duration_statement", "0"),
                           ("log_min_error_statement", "'debug5'")):
        sample_db.execute(f'ALTER DATABASE "{database}" SET {setting} = {value}')
    log = Path(os.environ["REFDATA_TEST_HOME"]) / "server.log"
    config = project_config(write_config)
    sync_config(write_config, plan_table("LOG", "fdw", "legacy_mysql", schema="legacy"))
    env = mysql_env("LOG", "legacy") | {"LOG_PASSWORD": password}
    mapping = "SELECT umoptions FROM pg_user_mappings WHERE srvname = 'refdata__log__mysql'"

    def logged(run) -> str:
        start = log.stat().st_size
        run()
        with log.open("rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", "replace")

    applied = []
    text = logged(lambda: applied.append(cli("--config", str(config), "apply", env=env)))
    assert applied[0].returncode == 0, applied[0].stderr
    assert f"password={password}" in sample_db.execute(mapping).fetchone()[0]
    assert "refdata.sync_user_mapping" in text and "parameters: $1 = " in text  # it logs what it is set to
    assert password not in text

    sample_db.execute("""SELECT refdata.sync_user_mapping('refdata__log__mysql', 'refdata_owner', '{"password": null}')""")
    assert "password" not in str(sample_db.execute(mapping).fetchone()[0])
    render = cli("--config", str(config), "render", env={})
    assert render.returncode == 0, render.stderr
    scripted = []
    marker = f"rd-after-{uuid.uuid4().hex}"  # the log is the cluster's: other tests write to it meanwhile
    text = logged(lambda: scripted.append(subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn], input=render.stdout + f"SELECT '{marker}';\n",
        capture_output=True, text=True,
        env={**os.environ, **env})))
    assert scripted[0].returncode == 0, scripted[0].stderr
    assert f"password={password}" in sample_db.execute(mapping).fetchone()[0]
    assert f"statement: SELECT '{marker}'" in text  # the session logs again after the script
    assert password not in text


def test_a_script_role_that_may_not_quiet_the_server_log_is_warned_and_one_that_may_gets_it_back(postgresql, role):
    """Around the statement with the password a rendered script turns the
    server's statement logging off and back to what it was, where the role
    may set those parameters; a role that may not is warned, and the script
    goes on."""
    from generator.render import LOUD_LOG, QUIET_LOG

    plain = role("rd_nolog")
    warned: list[str] = []
    plain.add_notice_handler(lambda d: warned.append(d.message_primary))
    plain.execute(QUIET_LOG)
    plain.execute(LOUD_LOG)
    assert warned == ["refdata: the next statement carries a password and this role may not keep it out of the "
                      "server log (log_statement, log_min_duration_statement, log_min_error_statement)"]
    settings = "log_statement, log_min_duration_statement, log_min_error_statement"
    allowed = role("rd_log", [f"GRANT SET ON PARAMETER {settings} TO {{role}}",
                              "ALTER ROLE {role} SET log_statement = 'ddl'"])
    show = ("SELECT current_setting('log_statement'), current_setting('log_min_duration_statement'), "
            "current_setting('log_min_error_statement')")
    before = allowed.execute(show).fetchone()
    assert before[0] == "ddl"
    allowed.execute(QUIET_LOG)
    assert allowed.execute(show).fetchone() == ("none", "-1", "panic")
    allowed.execute(LOUD_LOG)
    assert allowed.execute(show).fetchone() == before
    name = allowed.info.user
    allowed.close()
    postgresql.execute(f'REVOKE SET ON PARAMETER {settings} FROM "{name}"')
    postgresql.commit()


def test_a_failure_storing_the_password_never_quotes_it(sample_db, dsn, cli, write_config):
    """The server fails while it stores a user mapping's password (here a
    lock another session holds on the mapping): the error, its context and
    the server log name the server and the reason, never the password."""
    import uuid
    from pathlib import Path

    password = f"rdLock-{uuid.uuid4().hex}"
    log = Path(os.environ["REFDATA_TEST_HOME"]) / "server.log"
    config = project_config(write_config)
    sync_config(write_config, plan_table("LCK", "fdw", "legacy_mysql", schema="legacy"))
    result = cli("--config", str(config), "apply", env=mysql_env("LCK", "legacy"))
    assert result.returncode == 0, result.stderr
    start = log.stat().st_size
    with psycopg.connect(dsn, autocommit=False) as holder:
        options = holder.execute("SELECT umoptions::text FROM pg_user_mappings "
                                 "WHERE srvname = 'refdata__lck__mysql'").fetchone()[0] or ""
        verb = "SET" if "password=" in options else "ADD"
        holder.execute(f"ALTER USER MAPPING FOR refdata_owner SERVER refdata__lck__mysql OPTIONS ({verb} password 'x')")
        sample_db.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            sample_db.execute("SELECT refdata.sync_user_mapping('refdata__lck__mysql', 'refdata_owner', "
                              "jsonb_build_object('password', %s::text))", (password,))
        sample_db.rollback()
    error = caught.value
    assert password not in f"{error} {error.diag.context} {error.diag.internal_query}"
    with log.open("rb") as f:
        f.seek(start)
        assert password not in f.read().decode("utf-8", "replace")
    assert "refdata__lck__mysql" in str(error)
