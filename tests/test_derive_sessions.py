"""Two sessions deriving the same missing parents of a three-level chain
(region <- store <- terminal), made to overlap deterministically: the second
session's insert starts while the first holds its uncommitted parents, and
it is seen waiting (pg_locks) before the first commits. Both commit, every
parent exists once, no unique violation, no deadlock; in row and statement
mode, with single-row inserts and with multi-row inserts in opposite orders."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from helpers import apply_config

SCHEMA = """
CREATE TABLE region (code text PRIMARY KEY);
CREATE TABLE store (id text PRIMARY KEY, region text NOT NULL REFERENCES region);
CREATE TABLE terminal (id text PRIMARY KEY, store text NOT NULL REFERENCES store);
CREATE TABLE fact (
    n bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region text REFERENCES region {deferrable},
    store text REFERENCES store {deferrable},
    terminal text REFERENCES terminal {deferrable}
);
"""

CONFIG = """
domains:
  sales:
    fact_table: fact
    trigger_mode: {mode}
    defer_foreign_keys: {defer}
    foreign_keys:
      - {{name: fk_region, source_column: region, target_table: region, target_key: code}}
      - name: fk_store
        source_column: store
        target_table: store
        target_key: id
        depends_on: [fk_region]
        backfill_columns: [{{source: region, target: region}}]
      - name: fk_terminal
        source_column: terminal
        target_table: terminal
        target_key: id
        depends_on: [fk_store]
        backfill_columns: [{{source: store, target: store}}]
"""

CHAINS = [("R1", "S1", "T1"), ("R2", "S2", "T2")]


@pytest.fixture(params=["row", "statement"])
def chain(request, db, cli, write_config):
    mode = request.param
    db.execute(SCHEMA.format(deferrable="DEFERRABLE INITIALLY DEFERRED" if mode == "statement" else ""))
    apply_config(cli, write_config, CONFIG.format(mode=mode, defer="true" if mode == "statement" else "false"))
    return db


def insert(conn, rows) -> None:
    conn.execute("INSERT INTO fact (region, store, terminal) VALUES "
                 + ", ".join(["(%s, %s, %s)"] * len(rows)), [v for r in rows for v in r])


def waits(db, pid: int, timeout: float = 30) -> None:
    """Until the backend `pid` waits for a lock it was not granted."""
    deadline = time.monotonic() + timeout
    while not db.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted)", [pid]).fetchone()[0]:
        assert time.monotonic() < deadline, "the second session never came to wait"
        time.sleep(0.01)


@pytest.mark.parametrize("first, second", [
    (CHAINS[:1], CHAINS[:1]),                # the same single row
    (CHAINS, CHAINS[::-1]),                  # both chains, in opposite orders
], ids=["single-row", "opposite-orders"])
def test_two_sessions_derive_the_same_chain_once_without_deadlock(chain, dsn, first, second):
    errors: list[BaseException] = []
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        insert(a, first)  # parents derived, not committed

        def other():
            try:
                insert(b, second)
                b.commit()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        thread = threading.Thread(target=other)
        thread.start()
        waits(chain, b.info.backend_pid)
        a.commit()
        thread.join(60)
    assert errors == []
    derived = {t: chain.execute(f"SELECT count(*), count(*) FILTER (WHERE _source = 'auto_derived' AND _needs_review) "
                                f"FROM {t}").fetchone() for t in ("region", "store", "terminal")}
    n = len({r for r in first + second})
    assert derived == {"region": (n, n), "store": (n, n), "terminal": (n, n)}
    assert chain.execute("SELECT count(*) FROM fact").fetchone() == (len(first) + len(second),)
    assert chain.execute("SELECT count(*) FROM terminal AS t JOIN store AS s ON s.id = t.store "
                         "JOIN region AS r ON r.code = s.region").fetchone() == (n,)
