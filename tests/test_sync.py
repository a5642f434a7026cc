"""Reference sync end to end: real postgres_fdw to a second database on the
test cluster, real MariaDB through mysql_fdw and mysql-connector-python,
config files; merge semantics, watermark, degraded mode."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from decimal import Decimal

import pytest

from sync_helpers import plan_table, project_config, sync_config

PLAN = 'mapping."年金计划"'


def insert_fact(db, plan: str, name: str = "新计划") -> None:
    db.execute('INSERT INTO business."规模明细" ("月度", "计划代码", "计划名称") VALUES (%s, %s, %s)',
               ["2025-10-01", plan, name])


def plan_row(db, code: str) -> dict | None:
    row = db.execute(f'SELECT "计划全称", "计划状态", "_source", "_needs_review", "_derived_from_domain", '
                     f'"_derived_at", xmin::text FROM {PLAN} WHERE "年金计划号" = %s', [code]).fetchone()
    return dict(zip(["name", "status", "source", "review", "domain", "derived_at", "xmin"], row)) if row else None


def last_run(db, table: str = "年金计划") -> dict:
    cur = db.execute("SELECT * FROM refdata.sync_run WHERE table_name = %s ORDER BY id DESC LIMIT 1", [table])
    return dict(zip([d.name for d in cur.description], cur.fetchone()))


@pytest.mark.parametrize("source_type,via", [("postgres", "fdw"), ("postgres", "client"),
                                             ("legacy_mysql", "fdw"), ("legacy_mysql", "client")])
def test_sync_merges_inserts_updates_promotes_and_leaves_unchanged_rows_alone(
        source_type, via, sample_db, cli, write_config, request):
    legacy = request.getfixturevalue("legacy_pg" if source_type == "postgres" else "legacy_mysql")
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, source_type, schema=legacy.name if source_type != "postgres" else "enterprise"))
    env = legacy.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr
    insert_fact(sample_db, "P90001", "新计划甲")  # derived by the trigger before the source knows it
    assert plan_row(sample_db, "P90001")["source"] == "auto_derived"
    before = plan_row(sample_db, "P00000")
    legacy.rows([
        ("P00000", before["name"], before["status"]),   # unchanged
        ("P00001", "改名后的企业年金计划", "正常"),        # updated
        ("P90001", "新计划甲（正式）", "正常"),           # promoted
        ("P90002", "新计划乙", "正常"),                   # inserted
    ])

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 0, result.stderr
    assert "年金计划: inserted 1, updated 1, promoted 1, unchanged 1, deleted 0, kept 0" in result.stdout
    assert f"via {via}" in result.stdout
    assert plan_row(sample_db, "P00000")["xmin"] == before["xmin"]  # not even a new row version
    assert plan_row(sample_db, "P00001")["name"] == "改名后的企业年金计划"
    promoted = plan_row(sample_db, "P90001")
    assert (promoted["name"], promoted["source"], promoted["review"]) == ("新计划甲（正式）", "authoritative", False)
    assert promoted["domain"] == "annuity_performance" and promoted["derived_at"] is not None
    inserted = plan_row(sample_db, "P90002")
    assert (inserted["source"], inserted["review"], inserted["domain"]) == ("authoritative", False, None)
    run = last_run(sample_db)
    assert (run["status"], run["via"], run["inserted"], run["updated"], run["promoted"], run["unchanged"]) == \
        ("succeeded", via, 1, 1, 1, 1)
    assert run["source"].startswith(f"{source_type}:LEG/")

    audit = lambda: sample_db.execute(  # noqa: E731
        "SELECT operation, action, count(*) FROM refdata.audit_log WHERE table_name = 'mapping.\"年金计划\"'::regclass "
        "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    assert ("INSERT", "sync", 1) in audit() and ("UPDATE", "sync", 2) in audit()  # the update and the promotion
    logged = audit()
    again = cli("--config", str(config), "sync", env=env)
    assert "inserted 0, updated 0, promoted 0, unchanged 4" in again.stdout, again.stderr
    assert audit() == logged  # unchanged rows leave no trace


@pytest.mark.parametrize("source_type,listed", [("postgres", True), ("postgres", False), ("legacy_mysql", True)])
def test_fdw_tables_fetch_batch_size_rows_per_round_trip(source_type, listed, sample_db, cli, write_config, request):
    """Either wrapper fetched 100 rows per round trip, each waiting for the
    source's process to be scheduled: a 1,000,000-row sync on a busy machine
    spent more time waiting than reading. batch_size sets it (an imported
    foreign table too), and a source of more rows than one fetch arrives whole."""
    legacy = request.getfixturevalue("legacy_pg" if source_type == "postgres" else "legacy_mysql")
    config = project_config(write_config)
    rows = [(f"P9000{i}", f"计划{i}", "正常") for i in range(5)]
    if listed:
        table = plan_table("LEG", "fdw", source_type, schema=legacy.name if source_type != "postgres" else "enterprise")
        legacy.rows(rows)
    else:  # columns by name, the foreign table imported
        legacy.conn.execute('CREATE TABLE enterprise.plans ("年金计划号" text, "计划全称" text, "计划状态" text)')
        legacy.conn.cursor().executemany("INSERT INTO enterprise.plans VALUES (%s, %s, %s)", rows)
        table = ("  - name: 年金计划\n    target_table: 年金计划\n    target_schema: mapping\n"
                 "    source_type: postgres\n    via: fdw\n"
                 "    source_config: {connection_env_prefix: LEG, schema: enterprise, table: plans}\n"
                 "    primary_key: 年金计划号\n")
    sync_config(write_config, table, batch_size=2)
    env = legacy.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr
    options = sample_db.execute("SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = "
                                "'refdata_stage.\"sync__年金计划__source\"'::regclass").fetchone()[0]
    assert "fetch_size=2" in options, options

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 0, result.stderr
    assert sample_db.execute(f'SELECT count(*) FROM {PLAN} WHERE "年金计划号" LIKE %s', ["P9000_"]).fetchone()[0] == 5


def test_sync_inserts_skip_the_per_row_promotion_call(sample_db, cli, write_config, legacy_pg):
    """The sync inserts only keys it found absent (and promotes set-based), so
    its inserts make no call to the promotion trigger's function; an insert
    by anyone else still does."""
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"))
    env = legacy_pg.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr
    legacy_pg.rows([(f"P9{i:04d}", f"计划{i}", "正常") for i in range(50)])
    promote = "mapping.年金计划__promote"
    sample_db.execute("SET track_functions = 'pl'")
    calls = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = %s"
    with sample_db.transaction():
        run = sample_db.execute(
            "SELECT status, inserted FROM refdata.sync_table('年金计划')").fetchone()
        assert run == ("succeeded", 50)
        assert sample_db.execute(calls, [promote]).fetchone()[0] == 0
        sample_db.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态") VALUES ('P99999', '手工', '正常')""")
        assert sample_db.execute(calls, [promote]).fetchone()[0] == 1


AWKWARD_TABLE = """  - name: {name}
    target_table: {name}
    target_schema: mapping
    source_type: legacy_mysql
    via: {via}
    source_config:
      connection_env_prefix: LEG
      schema: {schema}
      table: awkward
      columns:
        - {{source: code, target: code}}
        - {{source: name, target: name}}
        - {{source: amount, target: amount}}
        - {{source: at, target: at}}
        - {{source: note, target: note}}
    primary_key: code
"""


def test_mysql_values_reach_the_target_alike_through_fdw_and_client(sample_db, cli, write_config, legacy_mysql):
    """The client path stages MySQL's text bytes by binary COPY: tabs,
    newlines, backslashes, a literal \\N, quotes, an empty string, NULL,
    decimals and fractional seconds arrive exactly as mysql_fdw hands them
    to the fdw path, whatever the client encoding."""
    rows = [
        ("K1", "制表\t符", Decimal("12.50"), datetime(2025, 1, 31, 10, 11, 12, 123456), "back\\slash \\N"),
        ("K2", "换行\n与\r回车", Decimal("-0.01"), datetime(2025, 2, 1), ""),
        ("K3", None, None, None, None),
        ("K4", "引号'\"；", Decimal("99999999.99"), datetime(2025, 12, 31, 23, 59, 59, 500000), "\\x41\\\\"),
    ]
    cur = legacy_mysql.conn.cursor()
    cur.execute("CREATE TABLE awkward (code varchar(8) PRIMARY KEY, name varchar(64), amount decimal(10,2), "
                "at datetime(6), note text)")
    cur.executemany("INSERT INTO awkward VALUES (%s, %s, %s, %s, %s)", rows)
    for via in ("fdw", "client"):
        sample_db.execute(f"CREATE TABLE mapping.awkward_{via} (code varchar(8) PRIMARY KEY, name text, "
                          "amount numeric(12,2), at timestamp(6), note text)")
    config = project_config(write_config)
    sync_config(write_config, "".join(AWKWARD_TABLE.format(name=f"awkward_{via}", via=via, schema=legacy_mysql.name)
                                      for via in ("fdw", "client")))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    # a client encoding other than the bytes' own must not garble them
    result = cli("--config", str(config), "sync", env={**env, "PGCLIENTENCODING": "GBK"})
    assert result.returncode == 0, result.stderr
    synced = {via: sample_db.execute(f"SELECT code, name, amount, at, note FROM mapping.awkward_{via} "
                                     "ORDER BY code").fetchall()
              for via in ("fdw", "client")}
    assert synced["client"] == rows
    assert synced["fdw"] == synced["client"]


def test_incremental_mysql_client_sync_reads_only_rows_changed_since_the_watermark(
        sample_db, dsn, cli, write_config, legacy_mysql):
    """The staged change time is MySQL's DATETIME text, read in this session's
    time zone as the watermark is. An older staging table (change time as
    timestamptz) is replaced by the rendered script too."""
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "client", "legacy_mysql", incremental=True, schema=legacy_mysql.name))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    stage = 'refdata_stage."sync__年金计划"'
    sample_db.execute(f'ALTER TABLE {stage} ALTER COLUMN "_rd_updated_at" TYPE timestamptz USING NULL')
    render = cli("--config", str(config), "render", env=env)
    assert render.returncode == 0, render.stderr
    applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn], input=render.stdout,
                             capture_output=True, text=True, env={**os.environ, **env})
    assert applied.returncode == 0, applied.stderr
    assert sample_db.execute("SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = %s::regclass "
                             "AND attname = '_rd_updated_at'", [stage]).fetchone() == ("text",)
    cur = legacy_mysql.conn.cursor()
    cur.execute("INSERT INTO annuity_plan VALUES ('P80001', '甲', '正常', '2025-01-01 08:00:00'), "
                "('P80002', '乙', '正常', '2025-01-02 08:00:00.250000')")
    watermark = lambda: sample_db.execute(  # noqa: E731
        "SELECT (last_synced_at AT TIME ZONE current_setting('TimeZone'))::text FROM refdata.sync_watermark "
        "WHERE table_name = '年金计划'").fetchone()
    first = cli("--config", str(config), "sync", env=env)
    assert "inserted 2, updated 0" in first.stdout, first.stderr
    assert watermark() == ("2025-01-02 08:00:00.25",)
    cur.execute("UPDATE annuity_plan SET plan_name = '乙（改）', updated_at = '2025-02-01 08:00:00' "
                "WHERE plan_code = 'P80002'")
    second = cli("--config", str(config), "sync", env=env)
    assert "inserted 0, updated 1, promoted 0, unchanged 0" in second.stdout, second.stderr
    assert watermark() == ("2025-02-01 08:00:00",)


def test_a_table_applied_as_client_synced_as_fdw_fails_recorded_saying_to_apply(sample_db, cli, write_config, legacy_pg):
    """The config says via: fdw, the database still has the client settings of
    the last apply (no foreign table): the run fails, recorded, saying to
    apply, instead of aborting on the missing foreign table's NULL name."""
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "client"))
    env = legacy_pg.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr
    sync_config(write_config, plan_table("LEG", "fdw"))

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 1
    assert "年金计划: failed: table 年金计划: its source is not set up" in result.stderr, result.stderr
    assert "run refdata apply" in result.stderr
    run = last_run(sample_db)
    assert (run["status"], run["via"]) == ("failed", "fdw")


def test_a_database_whose_strings_keep_backslash_escapes_syncs_every_column_by_name(
        sample_db, cli, write_config, legacy_pg):
    """A legacy database may default standard_conforming_strings to off: the
    merge's pattern for refdata's own columns ('\\_rd\\_%') then read '_rd_%',
    and a source column such as "ordinal" (rd as its second and third
    letters) was silently left out of a sync by name."""
    sample_db.execute(f'ALTER TABLE {PLAN} ADD COLUMN "ordinal" integer')
    sample_db.execute(f'ALTER DATABASE "{sample_db.info.dbname}" SET standard_conforming_strings = off')
    legacy_pg.conn.execute('CREATE TABLE enterprise.plans ("年金计划号" text, "计划全称" text, "计划状态" text, '
                           '"ordinal" integer)')
    legacy_pg.conn.execute("INSERT INTO enterprise.plans VALUES ('P90001', '计划', '正常', 7)")
    config = project_config(write_config)
    sync_config(write_config, "  - name: 年金计划\n    target_table: 年金计划\n    target_schema: mapping\n"
                "    source_type: postgres\n    via: fdw\n"
                "    source_config: {connection_env_prefix: LEG, schema: enterprise, table: plans}\n"
                "    primary_key: 年金计划号\n")
    env = legacy_pg.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr

    # as pg_cron or a DBA in psql runs it: in a session with the database's setting
    sample_db.execute("SET standard_conforming_strings = off")
    sample_db.execute('SELECT * FROM refdata."sync_年金计划"()')

    assert sample_db.execute(f'SELECT "ordinal" FROM {PLAN} WHERE "年金计划号" = %s', ["P90001"]).fetchone() == (7,)


def test_apply_notes_a_source_the_environment_does_not_name_at_its_config_line(sample_db, cli, write_config):
    config = project_config(write_config)
    sync = sync_config(write_config, plan_table("NOWHERE", "fdw"))
    result = cli("--config", str(config), "apply", env={})
    assert result.returncode == 0, result.stderr
    line = next(n for n, text in enumerate(sync.read_text(encoding="utf-8").splitlines(), start=1)
                if "connection_env_prefix" in text)
    notes = [text for text in result.stdout.splitlines() if text.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith(f"note: {sync}:{line}: table 年金计划: "), result.stdout
    assert notes[0].endswith("; its foreign table is not set up and its sync will fail")
