"""Promises of the README's Guarantees section that no other test file
holds: statement mode on partitions, and what a killed load leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import apply_config, line_of

ROOT = Path(__file__).resolve().parent.parent

PARTITIONED = """
CREATE TABLE plan (code text PRIMARY KEY, name text);
CREATE TABLE fact (
    month date NOT NULL,
    plan_code text REFERENCES plan DEFERRABLE INITIALLY DEFERRED,
    plan_name text
) PARTITION BY RANGE (month);
CREATE TABLE fact_2025 PARTITION OF fact FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY RANGE (month);
CREATE TABLE fact_2025_h2 PARTITION OF fact_2025 FOR VALUES FROM ('2025-07-01') TO ('2026-01-01');
CREATE TABLE fact_2025_h1 PARTITION OF fact_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
CREATE TABLE fact_2026 PARTITION OF fact FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""

CONFIG = """
domains:
  facts:
    fact_table: fact
    trigger_mode: {mode}
    foreign_keys:
      - name: fk_plan
        source_column: plan_code
        target_table: plan
        target_key: code
        backfill_columns: [{{source: plan_name, target: name}}]
"""


def _statement_triggers(db) -> list[tuple[str, str]]:
    return db.execute("""SELECT tgrelid::regclass::text, tgname FROM pg_trigger
                         WHERE NOT tgisinternal AND tgname LIKE 'facts__backfill_%' ORDER BY 1, 2""").fetchall()


def test_statement_mode_covers_writes_straight_into_partitions(db, cli, write_config):
    db.execute(PARTITIONED)
    apply_config(cli, write_config, CONFIG.format(mode="statement"))
    with db.transaction():
        db.execute("INSERT INTO fact VALUES ('2025-03-01', 'P1', 'via the parent')")
        db.execute("INSERT INTO fact_2025 VALUES ('2025-08-01', 'P2', 'via a sub-partitioned partition')")
        db.execute("INSERT INTO fact_2025_h1 VALUES ('2025-02-01', 'P3', 'straight into a leaf')")
        with db.cursor() as cur, cur.copy("COPY fact_2026 FROM STDIN") as cp:
            cp.write_row(("2026-05-01", "P4", "COPY into a leaf"))
        db.execute("UPDATE fact_2025_h2 SET plan_code = 'P5', plan_name = 'updated in a leaf' WHERE plan_code = 'P2'")
    assert db.execute("SELECT code, name, _source FROM plan ORDER BY code").fetchall() == [
        ("P1", "via the parent", "auto_derived"),
        ("P2", "via a sub-partitioned partition", "auto_derived"),
        ("P3", "straight into a leaf", "auto_derived"),
        ("P4", "COPY into a leaf", "auto_derived"),
        ("P5", "updated in a leaf", "auto_derived"),
    ]
    # one derivation per statement: a write through the parent does not fire the partitions' triggers too
    assert db.execute("SELECT count(*) FROM plan").fetchone() == (5,)


def test_switching_to_row_mode_removes_the_partitions_statement_triggers(db, cli, write_config):
    db.execute(PARTITIONED)
    apply_config(cli, write_config, CONFIG.format(mode="statement"))
    parts = ["fact", "fact_2025", "fact_2025_h1", "fact_2025_h2", "fact_2026"]
    assert _statement_triggers(db) == [(p, f"facts__backfill_{e}") for p in parts for e in ("insert", "update")]
    apply_config(cli, write_config, CONFIG.format(mode="row"))
    assert _statement_triggers(db) == []
    db.execute("INSERT INTO fact_2025_h1 VALUES ('2025-02-01', 'P9', 'row mode, leaf')")
    assert db.execute("SELECT code, name FROM plan").fetchall() == [("P9", "row mode, leaf")]


def test_killed_load_leaves_nothing_and_the_rerun_loads_the_file_once(db, cli, write_config, dsn, tmp_path):
    db.execute("CREATE TABLE plan (code text PRIMARY KEY, name text);"
               "CREATE TABLE fact (n int NOT NULL, plan_code text REFERENCES plan, plan_name text)")
    config = apply_config(cli, write_config, CONFIG.format(mode="row").replace("fact_table: fact", "fact_table: fact"))
    data = tmp_path / "facts.csv"
    rows = 300_000
    with open(data, "w", encoding="utf-8") as f:
        f.write("n,plan_code,plan_name\n")
        for n in range(rows):
            f.write(f"{n},P{n % 5000},plan {n % 5000}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")}
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", "--db", dsn, "--config", str(config),
                             "load", "facts", str(data)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Kill it mid-file: while its COPY is taking rows.
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not db.execute(
            "SELECT count(*) FROM pg_stat_progress_copy WHERE datname = current_database() AND tuples_processed > 0"
    ).fetchone()[0]:
        time.sleep(0.01)
    assert proc.poll() is None, "the load ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The server notices the dead client and rolls its transaction back.
    deadline = time.monotonic() + 60
    while db.execute("""SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                        AND pid <> pg_backend_pid()""").fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.execute("SELECT count(*) FROM fact").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM plan").fetchone() == (0,)
    assert db.execute('SELECT count(*) FROM refdata_stage."facts"').fetchone() == (0,)

    result = cli("--config", str(config), "load", "facts", str(data))
    assert result.returncode == 0, result.stderr
    assert db.execute("SELECT count(*), count(DISTINCT n) FROM fact").fetchone() == (rows, rows)
    assert db.execute("SELECT count(*) FROM plan WHERE _source = 'auto_derived'").fetchone() == (5000,)
    assert db.execute('SELECT count(*) FROM refdata_stage."facts"').fetchone() == (0,)


def test_partition_created_after_apply_is_reported_then_covered(db, cli, write_config):
    db.execute(PARTITIONED)
    config = apply_config(cli, write_config, CONFIG.format(mode="statement"))
    db.execute("CREATE TABLE fact_2027 PARTITION OF fact FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    result = cli("--config", str(config), "validate")
    assert result.returncode == 0, result.stderr
    assert (f'warning: {config}:{line_of(config, "fact_table:")}: domain facts: partition public.fact_2027 of "public"."fact" has no statement trigger '
            '"facts__backfill_insert" (created after apply); writes straight into it derive nothing until '
            'refdata apply adds it') in result.stdout.splitlines()
    assert cli("--config", str(config), "apply").returncode == 0
    assert "warning" not in cli("--config", str(config), "validate").stdout
    with db.transaction():
        db.execute("INSERT INTO fact_2027 VALUES ('2027-03-01', 'P7', 'new partition')")
    assert db.execute("SELECT code, name FROM plan").fetchall() == [("P7", "new partition")]


def test_server_restart_during_a_load_is_one_line_and_the_rerun_completes(tmp_path):
    """On a cluster of its own (restarting the shared one would cut every other test off)."""
    from generator.cluster import Cluster

    cluster = Cluster(tmp_path / "home")
    cluster.start()
    try:
        import psycopg

        dsn = cluster.url()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE plan (code text PRIMARY KEY, name text);"
                         "CREATE TABLE fact (n int NOT NULL, plan_code text REFERENCES plan, plan_name text);"
                         "INSERT INTO plan VALUES ('KEEP', 'committed before the load')")
        config = tmp_path / "data_sources.yml"
        config.write_text(CONFIG.format(mode="row"), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")}
        base = [sys.executable, "-m", "generator.cli", "--db", dsn, "--config", str(config)]
        assert subprocess.run(base + ["apply"], cwd=ROOT, env=env, capture_output=True).returncode == 0
        data = tmp_path / "facts.csv"
        rows = 300_000
        with open(data, "w", encoding="utf-8") as f:
            f.write("n,plan_code,plan_name\n")
            for n in range(rows):
                f.write(f"{n},P{n % 5000},plan {n % 5000}\n")
        proc = subprocess.Popen(base + ["load", "facts", str(data)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and not conn.execute(
                    "SELECT count(*) FROM pg_stat_progress_copy WHERE tuples_processed > 0").fetchone()[0]:
                time.sleep(0.01)
        assert proc.poll() is None, "the load ended before the restart"
        cluster._run("pg_ctl", "restart", "-D", str(cluster.data), "-m", "fast", "-w", "-l", str(cluster.log))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"refdata: error: load of {data} failed: "), err
        assert "the connection to the server was lost" in lines[0] and lines[0].endswith("; nothing was loaded"), err
        assert "Traceback" not in err
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT code FROM plan").fetchall() == [("KEEP",)]
            assert conn.execute("SELECT count(*) FROM fact").fetchone() == (0,)
        rerun = subprocess.run(base + ["load", "facts", str(data)], cwd=ROOT, env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT n) FROM fact").fetchone() == (rows, rows)
            assert conn.execute("SELECT count(*) FROM plan").fetchone() == (5001,)
    finally:
        cluster.stop()


def test_the_same_file_is_loaded_once_unless_forced(db, cli, write_config, tmp_path):
    db.execute("CREATE TABLE plan (code text PRIMARY KEY, name text);"
               "CREATE TABLE fact (n int NOT NULL, plan_code text REFERENCES plan, plan_name text)")
    config = apply_config(cli, write_config, CONFIG.format(mode="row"))
    data = tmp_path / "facts.csv"
    data.write_text("n,plan_code,plan_name\n1,P1,one\n2,P2,two\n", encoding="utf-8")
    assert cli("--config", str(config), "load", "facts", str(data)).returncode == 0
    run_id = db.execute("SELECT id FROM refdata.load_run").fetchone()[0]
    again = cli("--config", str(config), "load", "facts", str(data))
    assert again.returncode == 2
    [line] = again.stderr.splitlines()
    assert line.startswith(f"refdata: error: {data}: the same file (sha256 ")
    assert f"was loaded into domain facts already: {data} at " in line
    assert line.endswith(f"(refdata.load_run id {run_id}); use --force to load it again; nothing was loaded")
    assert db.execute("SELECT count(*) FROM fact").fetchone() == (2,)
    # the same content under another name is the same file
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data.read_bytes())
    assert cli("--config", str(config), "load", "facts", str(copy)).returncode == 2
    forced = cli("--config", str(config), "load", "facts", str(data), "--force")
    assert forced.returncode == 0, forced.stderr
    assert db.execute("SELECT count(*) FROM fact").fetchone() == (4,)
    assert db.execute("SELECT count(*) FROM refdata.load_run").fetchone() == (2,)


def test_row_mode_on_conflict_do_nothing_leaves_a_parent_that_check_counts(db, cli, write_config):
    """The documented exception: a BEFORE INSERT trigger runs before PostgreSQL
    finds the conflict, so a skipped row has derived its parent; statement
    mode derives only from rows really inserted."""
    db.execute("CREATE TABLE plan (code text PRIMARY KEY, name text);"
               "CREATE TABLE fact (id int PRIMARY KEY, plan_code text REFERENCES plan DEFERRABLE INITIALLY DEFERRED,"
               " plan_name text)")
    for mode, key in (("row", "GHOST"), ("statement", "NONE")):
        config = apply_config(cli, write_config, CONFIG.format(mode=mode))
        db.execute("INSERT INTO fact VALUES (1, 'P1', 'kept') ON CONFLICT DO NOTHING")
        db.execute("INSERT INTO fact VALUES (1, %s, 'skipped') ON CONFLICT DO NOTHING", [key])
        db.execute("DELETE FROM fact")
        db.execute("DELETE FROM plan WHERE code = 'P1'")
    assert db.execute("SELECT code FROM plan").fetchall() == [("GHOST",)]
    result = cli("--config", str(config), "check")
    assert "note: public.plan: 1 row(s) awaiting review that no fact row names" in result.stdout.splitlines()


@pytest.mark.parametrize("via", ["fdw"])
def test_mysql_source_lost_mid_sync_is_recorded_failed_and_the_next_run_succeeds(via, sample_db, cli, write_config,
                                                                                  legacy_mysql):
    """MariaDB cuts the sync's connections while rows stream (KILL CONNECTION
    on every session of the source database, as a stopping server would):
    the run is recorded failed, the table is unchanged, the next run succeeds."""
    import threading

    from sync_helpers import mysql_connect, plan_table, project_config, sync_config

    legacy = legacy_mysql
    legacy.rows([(f"PM{n:06d}", f"计划{n}", "正常") for n in range(20_000)])
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, "legacy_mysql", schema=legacy.name), batch_size=500)
    env = legacy.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    before = sample_db.execute('SELECT count(*), md5(string_agg("年金计划号" || "计划全称" || "_source", \',\' '
                               'ORDER BY "年金计划号")) FROM mapping."年金计划"').fetchone()
    stop = threading.Event()

    def cut_off():
        with mysql_connect() as admin:
            cur = admin.cursor()
            while not stop.is_set():
                # mysql_fdw's connection keeps the database it first read
                # (information_schema, where the sync looks up BIT columns):
                # its queries name the source database
                cur.execute("SELECT id FROM information_schema.PROCESSLIST WHERE (DB = %s OR INFO LIKE %s)"
                            " AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep'", [legacy.name, f"%`{legacy.name}`%"])
                for (pid,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL CONNECTION {int(pid)}")
                    except Exception:  # noqa: BLE001 - it ended on its own meanwhile
                        pass
                time.sleep(0.005)

    killer = threading.Thread(target=cut_off)
    killer.start()
    try:
        result = cli("--config", str(config), "sync", env=env)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert result.returncode == 1, result.stdout
    assert "年金计划: failed: table 年金计划: " in result.stderr
    run = sample_db.execute("SELECT status, error FROM refdata.sync_run ORDER BY id DESC LIMIT 1").fetchone()
    assert run[0] == "failed" and run[1].startswith("table 年金计划: ")
    assert sample_db.execute('SELECT count(*), md5(string_agg("年金计划号" || "计划全称" || "_source", \',\' '
                             'ORDER BY "年金计划号")) FROM mapping."年金计划"').fetchone() == before

    again = cli("--config", str(config), "sync", env=env)
    assert again.returncode == 0, again.stderr
    assert "年金计划: inserted 20000" in again.stdout
