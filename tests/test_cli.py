"""The command line as users meet it: one grammar for every command."""

from __future__ import annotations

import pytest

from generator.cli import COMMANDS

CONFIG = """
domains:
  facts:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - name: fk_plan
        source_column: 计划代码
        target_schema: mapping
        target_table: 年金计划
        target_key: 年金计划号
        defaults: {计划全称: "(待补充)", 计划状态: 待审核}
"""


def test_global_options_work_before_and_after_the_command(cli, dsn, sample_db, write_config):
    path = write_config(CONFIG)
    before = cli("--config", str(path), "--db", dsn, "validate", db=None)
    after = cli("validate", "--db", dsn, "--config", str(path), db=None)
    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr
    assert before.stdout == after.stdout
    assert "catalog: ok" in after.stdout
    mixed = cli("--config", str(path), "apply", "--db", dsn, db=None)
    assert mixed.returncode == 0, mixed.stderr


def test_debug_after_the_command_shows_the_traceback(cli, write_config):
    path = write_config("domains: {}\n")
    quiet = cli("validate", "--config", str(path), db=None)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = cli("validate", "--config", str(path), "--debug", db=None)
    assert "Traceback" in loud.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_lists_the_global_options(cli, command):
    result = cli(command, "--help", db=None)
    assert result.returncode == 0, result.stderr
    for option in ("--config PATH", "--db DSN", "--debug"):
        assert option in result.stdout, (command, option)


# -- the embedded cluster and the commands that own their database ----------------


@pytest.fixture
def embedded(tmp_path):
    """A separate embedded cluster (its own REFDATA_HOME), so stopping it
    leaves the test cluster alone; stopped and removed afterwards."""
    import shutil

    from generator.cluster import Cluster

    home = tmp_path / "home"
    cluster = Cluster(home)
    yield home, cluster
    cluster.stop()
    if cluster.data.parent != cluster.home:
        shutil.rmtree(cluster.data.parent, ignore_errors=True)


def test_embedded_cluster_restarts_and_demo_stays_private(cli, embedded, tmp_path):
    import csv

    import psycopg

    from generator.sample import FACT_COLUMNS, Sizes, create_schema, fact_rows, load_reference

    home, cluster = embedded
    # The user's environment names another server and another config; the
    # demo must follow neither (both would fail here).
    env = {"REFDATA_HOME": str(home), "REFDATA_DB": "host=/nonexistent dbname=theirs",
           "DATABASE_URL": "host=/nonexistent dbname=theirs", "REFDATA_CONFIG": str(tmp_path / "theirs.yml")}

    first = cli("db", "start", db=None, env=env)
    assert first.returncode == 0 and first.stdout.startswith("started"), first.stderr
    assert cli("db", "stop", db=None, env=env).stdout.strip() == "stopped"
    assert cli("db", "status", db=None, env=env).returncode == 1

    demo = cli("demo", db=None, env=env)  # starts the stopped cluster itself
    assert demo.returncode == 0, demo.stderr
    assert str(cluster.socket_dir) in demo.stdout
    assert "mapping.年金计划" in demo.stdout

    # validate checks the database apply would use (here the embedded one,
    # still empty), and both name it in every catalog error.
    env_embedded = {"REFDATA_HOME": str(home)}
    assert cli("db", "stop", db=None, env=env).returncode == 0
    outcomes = [cli(command, db=None, env=env_embedded) for command in ("validate", "apply")]
    for result in outcomes:
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[0].endswith(
            f'fact table "business"."规模明细" does not exist (database refdata on {cluster.socket_dir})')
    assert outcomes[0].stderr == outcomes[1].stderr

    # The embedded default database gets the sample schema; then each command
    # that starts the cluster works on the first try after a stop.
    with psycopg.connect(cluster.url()) as conn:
        create_schema(conn)
        load_reference(conn, Sizes())
    facts = tmp_path / "facts.csv"
    with open(facts, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(FACT_COLUMNS)
        w.writerows(list(fact_rows(Sizes(facts=20)))[:20])

    assert cli("db", "stop", db=None, env=env).returncode == 0
    started = cli("db", "start", db=None, env=env)
    assert started.returncode == 0 and started.stdout.startswith("started"), started.stderr
    assert cli("db", "status", db=None, env=env).returncode == 0

    for args in (["apply"], ["load", "annuity_performance", str(facts)]):
        assert cli("db", "stop", db=None, env=env).returncode == 0
        result = cli(*args, db=None, env=env_embedded)
        assert result.returncode == 0, (args, result.stderr)


@pytest.mark.parametrize("command", ["validate", "render"])
def test_a_reader_that_stops_early_is_not_an_error(command):
    """`refdata validate | head -1`, `| grep -q`, quitting `less`: the pipe closes before
    the output is written; no BrokenPipeError, exit 0."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")}
    env["REFDATA_HOME"] = "/nonexistent/refdata-home"
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", command], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 0, stderr
    assert stderr == ""


@pytest.mark.parametrize("command, code", [(["plan"], 3), (["check"], 1)])
def test_a_reader_that_stops_early_keeps_the_exit_code_that_answers_the_question(cli, dsn, sample_db,
                                                                                  write_config, command, code):
    """`refdata plan | head -1` under `set -o pipefail`: 3 still says changes are
    pending, and `refdata check | head -1` still says a threshold is breached."""
    import os
    import subprocess
    import sys

    from tests.conftest import CLI_ENV, ROOT

    config = write_config(CONFIG + "observability:\n  thresholds: {auto_derived_ratio: 0.0001}\n")
    if command == ["check"]:
        assert cli("--config", str(config), "apply").returncode == 0
        sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-10-01', 'P7777')""")
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", "--config", str(config), "--db", dsn, *command],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == code, stderr
    assert "Error" not in stderr


# -- names ---------------------------------------------------------------------------

LONG = "d" * 60  # domain names this long give hashed object names


def names_of(cli, path, *args) -> list[tuple[str, str]]:
    result = cli("--config", str(path), "names", *args, db=None)
    assert result.returncode == 0, result.stderr
    return [tuple(p.strip() for p in line.split(": ", 1)) for line in result.stdout.splitlines()
            if line.startswith("  ")]


@pytest.mark.parametrize("mode", ["row", "statement"])
def test_names_lists_what_apply_created_as_users_type_it(cli, sample_db, write_config, role, mode):
    path = write_config(CONFIG.replace("facts:", f"{LONG}:").replace(
        "fact_table: 规模明细", f"fact_table: 规模明细\n    trigger_mode: {mode}\n    defer_foreign_keys: true"))
    assert cli("--config", str(path), "apply").returncode == 0
    names = names_of(cli, path, LONG)
    kinds = [k for k, _ in names]
    assert kinds[:2] == ["load function", "staging table"]
    assert any(len(sql.encode()) > 60 and "_" in sql for _, sql in names), "hashed names are shown"
    q = sample_db.execute
    for what, sql in names:
        if what.endswith("function"):
            assert q("SELECT to_regproc(%s)", [sql]).fetchone()[0] is not None, (what, sql)
        elif what in ("staging table", "review index"):
            assert q("SELECT to_regclass(%s)", [sql]).fetchone()[0] is not None, (what, sql)
        elif what.endswith("trigger"):
            name, table = sql.split(" ON ")
            assert q("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
                     [table, name.strip('"')]).fetchone()[0] == 1, (what, sql)
        elif what == "_source check":
            name, table = sql.split(" ON ")
            assert q("SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND conname = %s",
                     [table, name.strip('"')]).fetchone()[0] == 1, (what, sql)
        elif what == "run-time values":
            assert q(f"SELECT count(*) FROM {sql}").fetchone()[0] == 1
        else:
            raise AssertionError(f"untested kind {what}")
    # The GRANT a user writes with the listed name works as written.
    loader = role(f"loader_{mode}").info.user
    load_function = dict(names)["load function"]
    q(f"GRANT EXECUTE ON FUNCTION {load_function} TO {loader}")
    assert q("SELECT has_function_privilege(%s, %s::regproc, 'EXECUTE')", [loader, load_function]).fetchone()[0]


def test_names_of_an_unknown_domain_is_refused(cli, write_config):
    path = write_config(CONFIG)
    result = cli("--config", str(path), "names", "fact", db=None)
    assert result.returncode == 2
    assert result.stderr == f"refdata: error: {path}: domain fact is not in the config (known: facts)\n"


@pytest.mark.parametrize("value", ["-5", "99999999999999999999", "ten"])
def test_status_loads_takes_a_count_or_refuses_it_as_an_argument(cli, value):
    result = cli("status", "--loads", value)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("refdata: error: status: argument --loads: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["plan", "apply", "uninstall"])
@pytest.mark.parametrize("value", ["banana", "5 seconds", "99999999d", ""])
def test_a_lock_timeout_the_server_would_not_take_is_refused_as_an_argument(cli, write_config, command, value):
    """Refused before anything connects (it was the server's error, exit 1,
    once the command had begun)."""
    result = cli("--config", str(write_config(CONFIG)), command, "--lock-timeout", value, db="host=/nonexistent")
    assert (result.returncode, result.stderr) == (
        2, f"refdata: error: {command}: argument --lock-timeout: must be a duration such as 5s, 500ms or 2min "
           f"(at most 24 days), not {value!r}\n")


@pytest.mark.parametrize("value", ["5s", "1.5s", "250ms", "2 min", "0"])
def test_a_lock_timeout_in_postgresql_s_units_is_taken(cli, sample_db, write_config, value):
    result = cli("--config", str(write_config(CONFIG)), "apply", "--lock-timeout", value)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("content, reason", [
    (None, "plan file not found"),
    ("dir", "cannot read plan file: Is a directory"),
    (b"-- refdata plan\n\xff\n", "{path}:2: plan is not UTF-8 (byte 0xff)"),
])
def test_a_plan_file_that_cannot_be_read_is_one_line_naming_it(cli, sample_db, write_config, tmp_path, content, reason):
    path = tmp_path / "plan.sql"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    result = cli("--config", str(write_config(CONFIG)), "apply", "--sql", str(path))
    expected = reason.format(path=path) if reason.startswith("{") else f"{path}: {reason}"
    assert (result.returncode, result.stderr) == (2, f"refdata: error: {expected}\n")


def test_an_output_path_that_cannot_be_written_is_one_line_and_exit_2(cli, sample_db, tmp_path, write_config):
    path = write_config(CONFIG)
    blocker = tmp_path / "a file"
    blocker.write_text("")
    assert cli("--config", str(path), "apply").returncode == 0
    # one shape wherever refdata writes a file: the path as given, the system's reason
    for args, place, reason in (
            (["render", "-o", str(blocker / "sql")], blocker / "sql", "Not a directory"),
            (["init", "--fact", 'business."规模明细"', "-o", str(tmp_path / "missing" / "x.yml")],
             tmp_path / "missing" / "x.yml", "No such file or directory"),
            (["report", "-o", str(blocker / "r.html")], blocker / "r.html", "Not a directory"),
            (["export-pending", "-o", str(blocker / "p.csv")], blocker / "p.csv", "Not a directory")):
        result = cli("--config", str(path), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr == f"refdata: error: {place}: cannot write: {reason}\n", result.stderr
