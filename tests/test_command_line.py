"""The README's promises about the command line: the embedded cluster
(`db start|stop|status|url`, the /tmp fallback), which database a command
uses, secrets kept out of output, what only a real process shows (exit
status, pipes), the psql dashboard query and bin/bench."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import CLI_ENV, ROOT

SAMPLE_CONFIG = ROOT / "config" / "data_sources.yml"
TINY = """
domains:
  tiny:
    fact_table: fact
    foreign_keys: [{name: fk, source_column: k, target_table: parent, target_key: k}]
"""


def psql(url: str, sql: str) -> list[str]:
    """Real psql, unaligned and tuples only, as the README uses it."""
    proc = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, url],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.fixture
def home(tmp_path):
    """A REFDATA_HOME of its own, so the test cluster bin/test runs is never stopped.
    Under a folder only root can enter: as root, the server's files then go to /tmp."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    home = private / "home"
    yield home
    from generator.cluster import Cluster

    previous = os.environ.get("REFDATA_HOME")
    os.environ["REFDATA_HOME"] = str(home)
    try:
        cluster = Cluster()
        cluster.stop()
        if cluster.data.parent != cluster.home:
            shutil.rmtree(cluster.data.parent, ignore_errors=True)
    finally:
        if previous is None:
            del os.environ["REFDATA_HOME"]
        else:
            os.environ["REFDATA_HOME"] = previous


def test_db_start_status_url_stop_and_the_embedded_default(cli, cli_process, home, write_config):
    env = {"REFDATA_HOME": str(home)}
    status = cli_process("db", "status", db=None, env=env)
    assert (status.returncode, status.stdout.split(":")[0]) == (1, "not running")

    started = cli("db", "start", db=None, env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("started: postgresql://postgres@/refdata?host=")
    url = cli("db", "url", db=None, env=env).stdout.strip()
    assert started.stdout.strip() == f"started: {url}"
    socket_dir = Path(conninfo_to_dict(url)["host"])
    if os.geteuid() == 0:
        # the postgres user cannot enter the home: files under /tmp/refdata-<hash of the home>
        digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
        assert socket_dir == Path(tempfile.gettempdir()) / f"refdata-{digest}" / "run"
        assert not (home / "pgdata").exists()
    else:
        assert socket_dir == home.resolve() / "run"
    assert (socket_dir.parent / "pgdata" / "PG_VERSION").exists()

    status = cli_process("db", "status", db=None, env=env)
    assert (status.returncode, status.stdout.strip()) == (0, f"running: {socket_dir.parent / 'pgdata'}")
    again = cli("db", "start", db=None, env=env)
    assert (again.returncode, again.stdout.strip()) == (0, f"already running: {url}")

    # psql "$(bin/refdata db url)" connects; with no database named, commands use it
    psql(url, "CREATE TABLE parent (k text PRIMARY KEY); CREATE TABLE fact (id serial, k text REFERENCES parent)")
    config = write_config(TINY)
    applied = cli("--config", str(config), "apply", db=None, env=env)
    assert applied.returncode == 0, applied.stderr
    assert f"host={socket_dir}" in applied.stdout.splitlines()[-1]
    psql(url, "INSERT INTO fact (k) VALUES ('new')")
    assert psql(url, "SELECT k, _source FROM parent") == ["new|auto_derived"]

    stopped = cli("db", "stop", db=None, env=env)
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "stopped")
    assert cli_process("db", "status", db=None, env=env).returncode == 1
    assert cli("db", "stop", db=None, env=env).stdout.strip() == "not running"
    # started again, the data is still there
    assert cli("db", "start", db=None, env=env).returncode == 0
    assert psql(url, "SELECT count(*) FROM parent") == ["1"]


# -- which database ---------------------------------------------------------------


def test_database_resolves_db_option_then_refdata_db_then_database_url(cli, sample_db, dsn, tmp_path):
    nowhere = f"host={tmp_path} port=1 dbname=nowhere user=nobody"

    def validate(*args, env):
        return cli("--config", str(SAMPLE_CONFIG), "validate", *args, db=None, env=env)

    for env in ({"REFDATA_DB": dsn}, {"DATABASE_URL": dsn}, {"REFDATA_DB": dsn, "DATABASE_URL": nowhere}):
        result = validate(env=env)
        assert result.returncode == 0, (env, result.stderr)
        assert result.stdout.splitlines()[-1].startswith("catalog: ok ("), env
    for env in ({"REFDATA_DB": nowhere, "DATABASE_URL": dsn}, {"DATABASE_URL": nowhere}):
        result = validate(env=env)
        assert result.returncode == 1, env
        assert result.stderr.startswith("refdata: error: cannot connect to "), env
    result = validate("--db", dsn, env={"REFDATA_DB": nowhere, "DATABASE_URL": nowhere})
    assert result.returncode == 0, result.stderr
    # no database at all: validate checks the config alone
    result = validate(env={})
    assert result.returncode == 0 and result.stdout.splitlines()[-1].startswith("catalog: not checked")


def test_passwords_never_reach_the_output(cli, sample_db, dsn):
    info = conninfo_to_dict(dsn)
    url = f"postgresql://{info['user']}:s3cret@/{info['dbname']}?host={info['host']}"
    for db in (make_conninfo(dsn, password="s3cret"), url):  # the cluster trusts: the password is ignored
        result = cli("--config", str(SAMPLE_CONFIG), "validate", db=db)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1].startswith("catalog: ok (")
        assert "s3cret" not in result.stdout + result.stderr
        result = cli("--config", str(SAMPLE_CONFIG), "apply", db=db)
        assert result.returncode == 0, result.stderr
        assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize("db", ["postgresql+psycopg://app:s3cret@db.example/app",  # SQLAlchemy's URL form
                                "host=db.example password=s3cret dbname",
                                "password='s3cret dbname=app"])
def test_a_malformed_database_string_is_refused_without_quoting_it(cli, db):
    for where in ({"db": db}, {"db": None, "env": {"DATABASE_URL": db}}):
        result = cli("--config", str(SAMPLE_CONFIG), "status", **where)
        assert result.returncode == 2, result.stderr
        assert "s3cret" not in result.stdout + result.stderr
        assert result.stderr.startswith("refdata: error: ") and result.stderr.count("\n") == 1, result.stderr
        assert ("--db" if where["db"] else "$DATABASE_URL") in result.stderr
    for command in ("plan", "apply"):
        result = cli("--config", str(SAMPLE_CONFIG), command, "--scratch-db", db)
        assert result.returncode == 2 and "s3cret" not in result.stdout + result.stderr, result.stderr
        assert result.stderr.startswith("refdata: error: --scratch-db: not a connection string")


def test_a_role_without_rights_on_the_configured_tables_is_not_told_its_config_is_wrong(cli, sample_db, dsn, role):
    """Missing rights are a failure of the run (exit 1), not invalid input (exit 2)."""
    weak = role("rd_weak")
    for command in ("validate", "plan", "apply"):
        result = cli("--config", str(SAMPLE_CONFIG), command, db=make_conninfo(dsn, user=weak.info.user))
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert "permission denied for schema mapping" in result.stderr, result.stderr
        assert f"role {weak.info.user} lacks a right" in result.stderr and "defaults" not in result.stderr


# -- a real process ----------------------------------------------------------------


def test_exit_codes_through_a_real_process(cli_process, write_config, tmp_path):
    assert cli_process("--config", str(SAMPLE_CONFIG), "validate", db=None).returncode == 0
    bad = cli_process("frobnicate", db=None)
    assert bad.returncode == 2 and bad.stderr.startswith("refdata: error: ")
    missing = cli_process("--config", str(tmp_path / "missing.yml"), "validate", db=None)
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1)
    unreachable = cli_process("--config", str(SAMPLE_CONFIG), "apply", db=f"host={tmp_path} port=1 dbname=x")
    assert (unreachable.returncode, unreachable.stderr.count("\n")) == (1, 1)
    assert "Traceback" not in bad.stderr + missing.stderr + unreachable.stderr


def test_a_server_going_away_mid_command_is_one_line_and_exit_1(cli_process, sample_db, dsn, db):
    """The backend is terminated while the command waits on a lock (a
    restart, a failover, a DBA's pg_terminate_backend)."""
    apply = cli_process("--config", str(SAMPLE_CONFIG), "apply")
    assert apply.returncode == 0, apply.stderr
    name = f"refdata_gone_{os.getpid()}"
    with psycopg.connect(dsn) as holder:
        holder.execute('LOCK TABLE mapping."年金计划" IN ACCESS EXCLUSIVE MODE')
        command = subprocess.Popen(
            [sys.executable, "-m", "generator.cli", "--config", str(SAMPLE_CONFIG), "--db",
             make_conninfo(dsn, application_name=name), "status"],
            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k not in CLI_ENV})
        deadline = time.monotonic() + 30
        pid = None
        while pid is None and time.monotonic() < deadline:
            row = db.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                             [name]).fetchone()
            pid = row[0] if row else time.sleep(0.05)
        assert pid, "the command never waited on the lock"
        db.execute("SELECT pg_terminate_backend(%s)", [pid])
        out, err = command.communicate(timeout=60)
    assert command.returncode == 1, err
    assert err == ("refdata: error: lost the connection to the database: "
                   "terminating connection due to administrator command\n")


@pytest.mark.parametrize("command", [["uninstall"], ["apply"], ["review", "approve", "mapping.年金计划", "P00001"]])
def test_a_read_only_database_is_named_as_such(cli, sample_db, dsn, command):
    """A hot standby, or default_transaction_read_only: one line saying so, exit 1."""
    assert cli("--config", str(SAMPLE_CONFIG), "apply").returncode == 0
    read_only = make_conninfo(dsn, options="-c default_transaction_read_only=on")
    result = cli("--config", str(SAMPLE_CONFIG), *command, db=read_only)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("refdata: error: "), result.stderr
    assert "read-only" in result.stderr and "Traceback" not in result.stderr
    assert "ReadOnlySqlTransaction" not in result.stderr


def test_a_database_error_is_one_line_without_the_statement(cli, sample_db, dsn, role):
    """A role that may not read refdata's views: psql's LINE/caret lines and
    psycopg's class name are not for users."""
    assert cli("--config", str(SAMPLE_CONFIG), "apply").returncode == 0
    viewer = role("rd_viewer")
    for command in (["status"], ["check"], ["status", "--loads"]):
        result = cli("--config", str(SAMPLE_CONFIG), *command, db=make_conninfo(dsn, user=viewer.info.user))
        assert result.returncode == 1, result.stderr
        assert result.stderr == "refdata: error: permission denied for schema refdata\n", command


def test_render_piped_into_psql(cli_process, sample_db, dsn):
    """`bin/refdata render | psql`: the script applies from a pipe as from a file."""
    render = subprocess.Popen(
        [str(ROOT / "bin" / "refdata"), "--config", str(SAMPLE_CONFIG), "render"],
        stdout=subprocess.PIPE, env={k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL")},
    )
    applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn], stdin=render.stdout,
                             capture_output=True, text=True)
    render.stdout.close()
    assert render.wait() == 0
    assert applied.returncode == 0, applied.stderr
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-11-01', 'PPIPE')""")
    assert sample_db.execute(
        """SELECT _source FROM mapping."年金计划" WHERE "年金计划号" = 'PPIPE'""").fetchone() == ("auto_derived",)


def test_readme_dashboard_query_with_psql(cli, sample_db, dsn):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("Dashboard query")
    query = readme[readme.index("```sql\n", start) + 7: readme.index("```", readme.index("```sql\n", start) + 7)]
    assert cli("apply").returncode == 0
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码")
                         VALUES ('2025-11-01', 'PDASH1'), ('2025-11-01', 'PDASH2'), ('2025-11-01', 'P00001')""")
    sample_db.execute("""UPDATE mapping."年金计划" SET _needs_review = false WHERE "年金计划号" = 'PDASH2'""")
    assert sorted(psql(dsn, query)) == ["authoritative|40|0", "auto_derived|2|1"]


FACT_INDEXES = "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = 'business.规模明细'::regclass"


def run_bench(home: Path, *args: str) -> subprocess.CompletedProcess:
    """bin/bench at a tiny size on the embedded cluster under `home`, without the CLI's environment."""
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env["REFDATA_HOME"] = str(home)
    return subprocess.run([str(ROOT / "bin" / "bench"), "--rows", "300", "--repeat", "1", "--single", "10", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_bench_at_a_tiny_size(home, sample_db):
    """bin/bench end to end on its own embedded cluster (its database is cluster-wide)."""
    own = sample_db.execute(FACT_INDEXES).fetchone()[0]  # the sample schema's own indexes
    figures = home / "bench.json"
    proc = run_bench(home, "--memory-rows", "2000", "--json", str(figures))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("refdata bench: 300 fact rows")
    assert re.search(r"^auto-derived parents per run \(equal in every variant\): mapping\.年金计划 \d+", out, re.M)
    for variant in ("1 baseline: COPY", "2 COPY through the row trigger", "COPY through the statement trigger",
                    "3 refdata load (foreign keys: set-based)", "refdata load --verify per-row",
                    "4 client-side design end to end", "refdata load vs the client-side design",
                    "5 single-row INSERT", "with the row trigger"):
        assert re.search(rf"^\s*{re.escape(variant)}.*\d", out, re.M), variant
    assert "hard case: 300 rows into hard.trade (partitioned)" in out
    assert re.search(r"^peak memory \(max RSS\) of bin/refdata load, 2,000 rows: \d+ MB", out, re.M)
    data = json.loads(figures.read_text(encoding="utf-8"))
    assert data["rows"] == 300 and data["sample"]["load_path"] == ["set-based"]
    assert data["hard"]["load_path"] == ["set-based"]
    assert {t["figure"] for t in data["targets"]} >= {"refdata load / baseline", "refdata load / client-side design",
                                                       "hard: row / baseline", "single-row latency, row trigger / none"}
    assert data["sample"]["variants"]["baseline"]["vs_baseline"] == 1.0
    # single-row latencies: the row trigger's passes and the one without it took turns on the same rows
    latency = data["single_row_latency_ms"]
    assert set(latency["median"]) == set(latency["mean"]) == {"none", "row", "row_present", "statement"}
    assert all(ms > 0 for by_kind in latency.values() for ms in by_kind.values())
    # by default the bench measures what apply leaves: an index per FK on the fact table
    assert data["fact_key_indexes"] is True and data["fact_table_indexes"]["sample"] > own
    assert re.search(r"^fact table indexes: .*\(observability.index_fact_keys\): on$", out, re.M)


def test_bench_runs_only_the_variants_named(home, sample_db):
    """--variants statement: the baseline, the floor and the statement trigger (and the single-row INSERTs)."""
    figures = home / "bench.json"
    proc = run_bench(home, "--skip-memory", "--variants", "statement", "--json", str(figures))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for variant in ("1 baseline: COPY", "COPY through the statement trigger", "5 single-row INSERT"):
        assert re.search(rf"^\s*{re.escape(variant)}.*\d", out, re.M), variant
    for variant in ("2 COPY through the row trigger", "3 refdata load", "4 client-side design", "vs the client-side"):
        assert variant not in out
    data = json.loads(figures.read_text(encoding="utf-8"))
    assert set(data["sample"]["variants"]) <= {"baseline", "floor", "statement", "single", "single_statement"}
    assert set(data["hard"]["variants"]) <= {"baseline", "floor", "statement"}
    assert {t["figure"] for t in data["targets"]} >= {"statement / baseline", "hard: statement / baseline"}
    # the COPY variants' backend CPU time, read from /proc on this machine
    assert data["sample"]["variants"]["statement"]["cpu_vs_baseline"] > 0
    assert re.search(r"^\s*COPY through the statement trigger.*backend CPU [\d.]+ s, [\d.]+×$", out, re.M), out
    proc = run_bench(home, "--variants", "statement,rows")
    assert proc.returncode == 2 and "rows: not one of row, statement, staging, client" in proc.stderr


def test_bench_without_the_fact_key_indexes(home, sample_db):
    """--no-fact-key-indexes: every variant runs on the fact table as the user built it
    (the sample schema's own indexes only), and the figures say so."""
    own = sample_db.execute(FACT_INDEXES).fetchone()[0]
    figures = home / "bench.json"
    proc = run_bench(home, "--skip-memory", "--no-fact-key-indexes", "--json", str(figures))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(rf"^fact table indexes: sample {own}, hard \d+; refdata's index per FK "
                     r"\(observability.index_fact_keys\): off", proc.stdout, re.M), proc.stdout[:2000]
    assert "3 refdata load (foreign keys: set-based)" in proc.stdout
    data = json.loads(figures.read_text(encoding="utf-8"))
    assert data["fact_key_indexes"] is False and data["fact_table_indexes"]["sample"] == own
    assert data["hard"]["load_path"] == ["set-based"]
