"""refdata schedule: a real pg_cron job (the test cluster preloads pg_cron)
that runs the fdw tables and records its run; crontab and systemd units for
the client tables."""

from __future__ import annotations

import time

import psycopg
import pytest

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
