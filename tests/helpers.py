"""Helpers shared by the bulk-path tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg


def apply_config(cli, write_config, text: str) -> Path:
    """Write a config and `refdata apply` it; the test stops if that fails."""
    path = write_config(text)
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    return path


def line_of(path: Path, fragment: str) -> int:
    """The number of the first line of a config file holding `fragment`."""
    return next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if fragment in text)


def stage_and_load(conn, domain: str, columns: list[str], rows: list[tuple]):
    """What `refdata load` does, in SQL: stage with load order, call the load function."""
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * (len(columns) + 1))
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO refdata_stage."{domain}" ({cols}, "_rd_line") VALUES ({marks})',
                [row + (i,) for i, row in enumerate(rows, start=1)],
            )
        return conn.execute(f'SELECT facts, parents_derived, blank_keys FROM refdata."{domain}__load"(%s)',
                            [columns]).fetchone()


def wait_until_blocked(db, pid: int, timeout: float = 30.0) -> None:
    """Until backend `pid` waits on a lock: what a race needs instead of sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        if state and state[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited on a lock")


def race(db, waiter, statement, release) -> dict:
    """Run `statement()` (on connection `waiter`) in a thread until that
    connection waits on a lock, then `release()` it. {"result": what the
    statement returned} or {"error": its SQLSTATE}."""
    outcome = {}

    def run():
        try:
            outcome["result"] = statement()
        except psycopg.Error as e:
            outcome["error"] = e.sqlstate

    thread = threading.Thread(target=run)
    thread.start()
    wait_until_blocked(db, waiter.info.backend_pid)
    release()
    thread.join()
    return outcome


def shipped_single_file() -> str:
    """The shipped config (config/data_sources.yml with foreign_keys.yml) as
    one file in the single-file form, for tests that edit it."""
    rules = (Path(__file__).resolve().parent.parent / "config" / "foreign_keys.yml").read_text(encoding="utf-8")
    return rules.replace("  annuity_performance:\n",
                         "  annuity_performance:\n    fact_schema: business\n    fact_table: 规模明细\n", 1)
