"""`refdata schedule`: when the sync runs without anyone starting it.

Enters: a SyncConfig (its `schedule`, or --cron), the target database's DSN,
the paths the command line used. Leaves: a pg_cron job per database,
`refdata_sync:<database>`, running `CALL refdata.sync_fdw()` (created,
updated or removed in the database pg_cron lives in), and, for tables of
via: client, a ready crontab line and systemd timer unit on stdout.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..config import SyncConfig, cron_problem
from ..db import connect, redact
from ..errors import InputError, RefdataError
from ..names import control_character, printable

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
COMMAND = "CALL refdata.sync_fdw()"


def job_name(database: str) -> str:
    return f"refdata_sync:{database}"


def _cron_connection(dsn: str) -> tuple[psycopg.Connection, str]:
    """A connection to the database pg_cron keeps its jobs in, and the target's name."""
    with connect(dsn, autocommit=True) as conn:
        database = conn.info.dbname
        loaded = conn.execute(
            "SELECT current_setting('cron.database_name', true)").fetchone()[0]
    if not loaded:
        raise RefdataError(
            "pg_cron is not loaded on this server: add shared_preload_libraries = 'pg_cron' and "
            "cron.database_name to postgresql.conf and restart (see README.md, Scheduling)"
        )
    cron = connect(make_conninfo(dsn, dbname=loaded), autocommit=True)
    cron.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    return cron, database


def schedule(dsn: str, expression: str) -> str:
    cron, database = _cron_connection(dsn)
    with cron:
        try:
            jobid = cron.execute("SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                                 [job_name(database), expression, COMMAND, database]).fetchone()[0]
        except psycopg.errors.InvalidParameterValue as e:
            raise InputError(f"schedule: --cron {expression!r}: {e.diag.message_primary}") from None
    return f"pg_cron job {jobid} '{job_name(database)}' runs {COMMAND} in database {database} at '{expression}'"


def unschedule(dsn: str) -> str:
    cron, database = _cron_connection(dsn)
    with cron:
        rows = cron.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s",
                            [job_name(database)]).fetchall()
    return (f"removed pg_cron job '{job_name(database)}'" if rows
            else f"no pg_cron job '{job_name(database)}' to remove")


def client_argv(dsn: str, config_path: Path, sync_path: Path) -> list[str]:
    """The command line of a client sync run, as its words."""
    info = conninfo_to_dict(dsn)
    info.pop("password", None)  # the service reads it from PGPASSWORD / ~/.pgpass
    argv = [str(PROJECT_ROOT / "bin" / "refdata"), "--config", str(config_path.resolve()),
            "--db", make_conninfo(**info), "sync", "--sync-config", str(sync_path.resolve()), "--via", "client"]
    for what, word in (("refdata's path", argv[0]), ("config path", argv[2]), ("database connection", argv[4]),
                       ("sync config path", argv[7])):
        if control_character(word):
            raise InputError(f"schedule: the {what} {printable(repr(word))} holds the control character "
                             f"{control_character(word)}, which a crontab line cannot hold; "
                             "use a path or connection string without one")
    return argv


def crontab_command(argv: list[str]) -> str:
    r"""The command field of a crontab line: words quoted for /bin/sh, which
    cron runs it with, and every % escaped as \%, since cron turns an
    unescaped % into a line break and feeds the rest to the command's input.
    Cron keeps a backslash before any other character, so a word's own
    backslash before a % would take the escape's place (\\%: a kept
    backslash, then a % that ends the command); an empty '' pair splits
    them (shlex single-quotes every word holding a backslash)."""
    return shlex.join(argv).replace("\\%", "\\''%").replace("%", "\\%")


def systemd_command(argv: list[str]) -> str:
    """ExecStart's words, each double-quoted with systemd's C escapes; % is a
    unit specifier (%% a percent sign) and $ an environment variable ($$ a
    dollar sign) wherever they stand, quoted or not."""
    def word(w: str) -> str:
        w = w.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
        return f'"{w}"'
    return " ".join(word(w) for w in argv)


def client_units(expression: str, dsn: str, config_path: Path, sync_path: Path) -> str:
    """A crontab line and a systemd timer for the tables pg_cron cannot run."""
    argv = client_argv(dsn, config_path, sync_path)
    minute, hour, dom, month, dow = expression.split()
    calendar = _calendar(minute, hour, dom, month, dow)
    return (
        "# crontab line (crontab -e) for the tables of via: client:\n"
        f"{expression} {crontab_command(argv)}\n\n"
        "# or a systemd timer: /etc/systemd/system/refdata-sync.service\n"
        "[Unit]\nDescription=refdata reference sync (client path)\n\n"
        f"[Service]\nType=oneshot\nExecStart={systemd_command(argv)}\n\n"
        "# /etc/systemd/system/refdata-sync.timer (systemctl enable --now refdata-sync.timer)\n"
        "[Unit]\nDescription=refdata reference sync schedule\n\n"
        f"[Timer]\nOnCalendar={calendar}\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )


def _calendar(minute: str, hour: str, dom: str, month: str, dow: str) -> str:
    """systemd's OnCalendar for the simple cron forms (numbers, *, lists, */n)."""
    def part(v: str) -> str:
        if v == "*":
            return "*"
        if v.startswith("*/"):
            return f"0/{v[2:]}"
        return v
    days = {"0": "Sun", "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun"}
    weekday = "" if dow == "*" else ",".join(days.get(d, d) for d in dow.split(",")) + " "
    return f"{weekday}*-{part(month)}-{part(dom)} {part(hour)}:{part(minute)}:00"


def check_expression(expression: str) -> str:
    problem = cron_problem(expression)
    if problem:
        raise InputError(f"schedule: --cron {expression!r} {problem}")
    return expression


