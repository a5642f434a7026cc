"""refdata schedule: a real pg_cron job (the test cluster preloads pg_cron)
that runs the fdw tables and records its run; crontab and systemd units for
the client tables."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from generator.names import printable
from generator.sync.schedule import PROJECT_ROOT
from helpers import shipped_single_file
from sync_helpers import plan_table, project_config, sync_config


def cron_jobs(info, job: str) -> list[tuple]:
    with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="refdata", autocommit=True) as c:
        return c.execute("SELECT schedule, command, database FROM cron.job WHERE jobname = %s", [job]).fetchall()


def test_pg_cron_job_runs_the_fdw_sync_and_its_run_is_recorded(sample_db, cli, write_config, legacy_pg):
    info = sample_db.info
    job = f"refdata_sync:{info.dbname}"
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"))
    env = legacy_pg.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    legacy_pg.rows([("P91001", "定时同步计划", "正常")])
    try:
        every_minute = cli("--config", str(config), "schedule", "--cron", "* * * * *")
        assert every_minute.returncode == 0, every_minute.stderr
        assert f"'{job}' runs CALL refdata.sync_fdw() in database {info.dbname} at '* * * * *'" in every_minute.stdout
        assert cron_jobs(info, job) == [("* * * * *", "CALL refdata.sync_fdw()", info.dbname)]
        deadline = time.monotonic() + 75  # pg_cron starts jobs on the minute
        while time.monotonic() < deadline:
            run = sample_db.execute("SELECT status, via, inserted, error FROM refdata.sync_run "
                                    "WHERE table_name = '年金计划'").fetchone()
            if run:
                break
            time.sleep(1)
        assert run == ("succeeded", "fdw", 1, None)
        assert sample_db.execute('SELECT "_source" FROM mapping."年金计划" WHERE "年金计划号" = %s',
                                 ["P91001"]).fetchone() == ("authoritative",)

        default = cli("--config", str(config), "schedule")  # the config's schedule replaces the job's
        assert default.returncode == 0, default.stderr
        assert cron_jobs(info, job) == [("0 1 * * *", "CALL refdata.sync_fdw()", info.dbname)]
    finally:
        removed = cli("--config", str(config), "schedule", "--remove")
    assert removed.returncode == 0 and f"removed pg_cron job '{job}'" in removed.stdout
    assert cron_jobs(info, job) == []


def test_schedule_prints_crontab_and_systemd_units_for_client_tables(sample_db, cli, write_config, legacy_pg):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "client"), schedule='"30 2 * * 1"')
    assert cli("--config", str(config), "apply", env=legacy_pg.env("LEG")).returncode == 0
    result = cli("--config", str(config), "schedule")
    assert result.returncode == 0, result.stderr
    assert "pg_cron job" not in result.stdout  # no fdw tables, no job
    line = next(x for x in result.stdout.splitlines() if x.startswith("30 2 * * 1 "))
    assert "bin/refdata" in line and "sync --sync-config" in line and line.endswith("--via client")
    assert "OnCalendar=Mon *-*-* 2:30:00" in result.stdout
    assert "ExecStart=" in result.stdout


def test_schedule_refuses_a_bad_expression(sample_db, cli, write_config, legacy_pg):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"))
    assert cli("--config", str(config), "apply", env=legacy_pg.env("LEG")).returncode == 0
    result = cli("--config", str(config), "schedule", "--cron", "every day")
    assert result.returncode == 2
    assert "schedule: --cron 'every day' is not a cron expression of five fields" in result.stderr


# A folder name and a database name holding what cron and systemd read
# specially: % (cron: a line break; systemd: a specifier), $ (systemd: an
# environment variable), quotes, spaces, backslashes, a backslash before a %.
AWKWARD = "it's 50% \"done\" a\\b \\%d $HOME"


def _cron_command(line: str) -> tuple[str, str]:
    """(what /bin/sh runs, the command's input) of a crontab line, as cron
    reads it (crontab(5), cronie's do_command.c): the command is the rest of
    the line after five fields; \\% is a %; a backslash before anything else
    stays with that character; the first other % ends the command, and the
    text after it (each further % a line break) is its input."""
    command = line.split(None, 5)[5]
    out, escaped = [], False
    for i, ch in enumerate(command):
        if escaped:
            out.append("%" if ch == "%" else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            return "".join(out), command[i + 1:].replace("%", "\n")
        else:
            out.append(ch)
    return "".join(out) + ("\\" if escaped else ""), ""


def _systemd_words(value: str) -> list[str]:
    """The words of an ExecStart= value, as systemd.service(5) and
    systemd.unit(5) read them: specifiers first (%% is a %, any other %x a
    specifier), then words split on whitespace, quoted with " or ', C escapes
    resolved, then $$ a $ (any other $ an environment variable)."""
    text, i = "", 0
    while i < len(value):
        if value[i] == "%":
            assert value[i + 1] == "%", f"specifier %{value[i + 1]} in {value!r}"
            text, i = text + "%", i + 2
        else:
            text, i = text + value[i], i + 1
    escapes = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "s": " "}
    words, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        word, quote = "", None
        while i < len(text) and (quote or not text[i].isspace()):
            ch = text[i]
            if ch == "\\":
                word += escapes[text[i + 1]]
                i += 2
                continue
            if quote and ch == quote:
                quote = None
            elif not quote and ch in "\"'":
                quote = ch
            else:
                word += ch
            i += 1
        assert quote is None, value
        words.append(word)
    for w in words:
        assert "$" not in w.replace("$$", ""), f"environment variable in {w!r}"
    return [w.replace("$$", "$") for w in words]


def test_schedule_lines_keep_every_word_through_cron_and_systemd(cli, tmp_path):
    folder = tmp_path / AWKWARD
    folder.mkdir()
    config, sync = folder / "data_sources.yml", folder / "reference_sync.yml"
    config.write_text(shipped_single_file(), encoding="utf-8")
    sync.write_text('schema_version: "1.0"\nschedule: "30 2 * * 1"\ntables:\n' + plan_table("LEG", "client"),
                    encoding="utf-8")
    dsn = "host=/var/run/postgresql dbname='sales 100% \\'q\\' \\\\%x $PGDATA'"
    result = cli("--config", str(config), "schedule", "--sync-config", str(sync), db=dsn)
    assert result.returncode == 0, result.stderr
    program = str(PROJECT_ROOT / "bin" / "refdata")
    expected = [program, "--config", str(config), "--db", conninfo_to_dict(dsn), "sync", "--sync-config", str(sync),
                "--via", "client"]

    def read(words: list[str]) -> list:  # the connection string as libpq reads it
        return words[:4] + [conninfo_to_dict(words[4])] + words[5:]

    line = next(x for x in result.stdout.splitlines() if x.startswith("30 2 * * 1 "))
    command, stdin = _cron_command(line)
    assert stdin == "" and command.startswith(shlex.quote(program) + " "), line
    # /bin/sh runs the command; a function in the program's place prints the words it gets
    shown = subprocess.run(["/bin/sh", "-c", 'words() { python3 -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@"; }; '
                            "words " + command[len(shlex.quote(program)) + 1:]], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert read([program] + json.loads(shown.stdout)) == expected

    service = result.stdout.split("# or a systemd timer: /etc/systemd/system/refdata-sync.service\n")[1]
    service = service.split("# /etc/systemd/system/refdata-sync.timer")[0]
    exec_start = next(x for x in service.splitlines() if x.startswith("ExecStart="))
    assert read(_systemd_words(exec_start[len("ExecStart="):])) == expected
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "refdata-sync.service"
        unit.write_text(service, encoding="utf-8")
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr


def test_schedule_refuses_a_config_path_with_a_line_break(cli, tmp_path):
    folder = tmp_path / "two\nlines"
    folder.mkdir()
    config, sync = folder / "data_sources.yml", folder / "reference_sync.yml"
    config.write_text(shipped_single_file(), encoding="utf-8")
    sync.write_text('schema_version: "1.0"\ntables:\n' + plan_table("LEG", "client"), encoding="utf-8")
    result = cli("--config", str(config), "schedule", "--sync-config", str(sync), db="dbname=x")
    assert result.returncode == 2
    assert result.stderr == (f"refdata: error: schedule: the config path {printable(repr(str(config)))} holds the "
                             "control character U+000A, which a crontab line cannot hold; use a path or connection "
                             "string without one\n")
    assert result.stdout == ""
