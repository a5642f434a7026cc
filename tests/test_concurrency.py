"""What each mode promises to concurrent writers, tried with 8 sessions that
insert overlapping new keys, each in its own order: every fact row once,
every parent once, and no deadlock or serialization failure where the README
says there is none."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest

from helpers import apply_config

SESSIONS = 8
KEYS = 200

SCHEMA = """
CREATE TABLE plan (code text PRIMARY KEY, name text);
CREATE TABLE org (code text PRIMARY KEY, name text);
CREATE TABLE fact (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session int NOT NULL,
    plan_code text REFERENCES plan {deferrable},
    org_code text REFERENCES org {deferrable},
    plan_name text
);
"""

CONFIG = """
domains:
  facts:
    fact_table: fact
    trigger_mode: {mode}
    defer_foreign_keys: {defer}
    foreign_keys:
      - name: fk_plan
        source_column: plan_code
        target_table: plan
        target_key: code
        backfill_columns: [{{source: plan_name, target: name}}]
      - name: fk_org
        source_column: org_code
        target_table: org
        target_key: code
"""


@pytest.fixture
def concurrent(db, cli, write_config, dsn, request):
    """The schema with a config in `mode`, and a runner for 8 sessions."""
    mode = request.param
    db.execute(SCHEMA.format(deferrable="DEFERRABLE INITIALLY DEFERRED" if mode == "statement" else ""))
    apply_config(cli, write_config, CONFIG.format(mode=mode, defer="true" if mode == "statement" else "false"))

    def run(write, isolation=None):
        """Each session writes every key, in its own order; returns the errors (SQLSTATE) seen."""
        errors: list[str] = []
        barrier = threading.Barrier(SESSIONS)

        def session(n: int):
            rows = [(n, f"P{k:03d}", f"O{k % 50:03d}", f"plan {k}") for k in range(KEYS)]
            random.Random(n).shuffle(rows)
            with psycopg.connect(dsn, autocommit=isolation is None) as conn:
                if isolation:
                    conn.isolation_level = isolation
                barrier.wait(timeout=60)
                try:
                    write(conn, rows)
                except psycopg.Error as e:
                    errors.append(e.sqlstate or type(e).__name__)
                except Exception as e:  # noqa: BLE001 - any other failure of a session is a test failure too
                    errors.append(repr(e))

        threads = [threading.Thread(target=session, args=(n,)) for n in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a session hung"
        return errors

    return run


def _insert_statements(rows_per_statement):
    def write(conn, rows):
        for i in range(0, len(rows), rows_per_statement):
            chunk = rows[i:i + rows_per_statement]
            marks = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            with conn.transaction():
                conn.execute(f"INSERT INTO fact (session, plan_code, org_code, plan_name) VALUES {marks}",
                             [v for r in chunk for v in r])
    return write


def _copy(conn, rows):
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY fact (session, plan_code, org_code, plan_name) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


def _one_transaction_of_single_rows(conn, rows):
    with conn.transaction():
        for r in rows:
            conn.execute("INSERT INTO fact (session, plan_code, org_code, plan_name) VALUES (%s, %s, %s, %s)", r)


def _all_once(db):
    facts = db.execute("SELECT count(*), count(DISTINCT (session, plan_code)) FROM fact").fetchone()
    assert facts == (SESSIONS * KEYS, SESSIONS * KEYS)
    plans = db.execute("SELECT count(*), count(*) FILTER (WHERE _source = 'auto_derived' AND _needs_review "
                       "AND _derived_from_domain = 'facts' AND name IS NOT NULL) FROM plan").fetchone()
    assert plans == (KEYS, KEYS)
    assert db.execute("SELECT count(*) FROM org").fetchone() == (50,)


WRITERS = {
    "insert_25_rows_a_statement": _insert_statements(25),
    "copy_200_rows": _copy,
    "insert_1_row_autocommit": _insert_statements(1),
    "insert_1_row_200_in_a_transaction": _one_transaction_of_single_rows,
}


@pytest.mark.parametrize("concurrent", ["row", "statement"], indirect=True)
@pytest.mark.parametrize("writer", list(WRITERS))
def test_eight_sessions_overlapping_new_keys_no_deadlock(concurrent, db, writer):
    assert concurrent(WRITERS[writer]) == []
    _all_once(db)


@pytest.mark.parametrize("concurrent", ["row", "statement"], indirect=True)
def test_repeatable_read_writers_retry_serialization_failures(concurrent, db):
    """Under REPEATABLE READ a parent committed by another session after the
    snapshot was taken is a serialization failure (40001), as for any insert
    that meets a row it cannot see; the README's retry loop gets every row in once."""
    retried = []

    def write(conn, rows):
        for r in rows:
            for attempt in range(10):
                try:
                    with conn.transaction():
                        conn.execute("INSERT INTO fact (session, plan_code, org_code, plan_name) "
                                     "VALUES (%s, %s, %s, %s)", r)
                    break
                except psycopg.errors.SerializationFailure:
                    retried.append(r)
            else:
                raise AssertionError(f"row {r} failed 10 times")

    assert concurrent(write, isolation=psycopg.IsolationLevel.REPEATABLE_READ) == []
    _all_once(db)


@pytest.mark.parametrize("concurrent", ["row"], indirect=True)
def test_bulk_loads_and_row_writers_together_no_deadlock(concurrent, db):
    """4 sessions load their rows through the staging table and the load
    function while 4 others insert theirs through the row trigger in one
    transaction each: all wait for each other where they meet, none fails."""

    def write(conn, rows):
        if rows[0][0] % 2:
            _one_transaction_of_single_rows(conn, rows)
            return
        with conn.transaction():
            with conn.cursor() as cur, cur.copy(
                    'COPY refdata_stage."facts" (session, plan_code, org_code, plan_name) FROM STDIN') as cp:
                for r in rows:
                    cp.write_row(r)
            conn.execute('SELECT * FROM refdata."facts__load"(%s)', [["session", "plan_code", "org_code", "plan_name"]])

    assert concurrent(write) == []
    _all_once(db)
