"""Edge cases found in review: types across paths, concurrent fills, staging batches,
CSV files the server and Python parse differently, several domains on one fact table."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from helpers import apply_config, stage_and_load, wait_until_blocked


def _rows(conn, query: str, params=None) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- set-based derivation vs row trigger: typed mapped values ----------------------------

TYPED_SCHEMA = """
CREATE TABLE parent (k text PRIMARY KEY, n integer, ts text);
CREATE TABLE fact (id serial, k text, amount numeric(18, 2), at timestamp);
"""
TYPED_CONFIG = """
domains:
  typed:
    fact_table: fact
    foreign_keys:
      - name: fk_parent
        source_column: k
        target_table: parent
        target_key: k
        backfill_columns:
          - {source: MAPPED, target: TARGET}
"""


def test_numeric_fact_value_into_integer_parent_column_bulk_path(db, cli, write_config):
    db.execute(TYPED_SCHEMA)
    apply_config(cli, write_config, TYPED_CONFIG.replace("MAPPED", "amount").replace("TARGET", "n"))
    db.execute("INSERT INTO fact (k, amount) VALUES ('ROW', 100.00)")  # row trigger: fine
    assert _rows(db, "SELECT k, n FROM parent") == [("ROW", 100)]
    db.autocommit = False
    # bulk path: ERROR invalid input syntax for type integer: "100.00"
    stage_and_load(db, "typed", ["k", "amount"], [("BULK", "100.00")])
    db.commit()
    assert _rows(db, "SELECT k, n FROM parent ORDER BY k") == [("BULK", 100), ("ROW", 100)]


def test_timestamp_fact_value_into_text_parent_column_paths_agree(db, cli, write_config):
    db.execute(TYPED_SCHEMA)
    apply_config(cli, write_config, TYPED_CONFIG.replace("MAPPED", "at").replace("TARGET", "ts"))
    db.execute("INSERT INTO fact (k, at) VALUES ('ROW', '2025-10-01 10:00:00')")
    db.autocommit = False
    stage_and_load(db, "typed", ["k", "at"], [("BULK", "2025-10-01 10:00:00")])
    db.commit()
    assert _rows(db, "SELECT k, ts FROM parent ORDER BY k") == [
        ("BULK", "2025-10-01 10:00:00"), ("ROW", "2025-10-01 10:00:00")]


# -- two FKs of one domain into the same parent table ------------------------------------

SAME_PARENT_SCHEMA = """
CREATE TABLE org (code text PRIMARY KEY, name text);
CREATE TABLE fact (id serial, sales_org text, sales_name text, service_org text, service_name text);
"""
SAME_PARENT_CONFIG = """
domains:
  two:
    fact_table: fact
    TRIGGER_MODE
    foreign_keys:
      - name: fk_sales
        source_column: sales_org
        target_table: org
        target_key: code
        backfill_columns: [{source: sales_name, target: name}]
        mode: fill_null_only
      - name: fk_service
        source_column: service_org
        target_table: org
        target_key: code
        backfill_columns: [{source: service_name, target: name}]
        mode: fill_null_only
"""


def test_fill_null_only_may_not_share_its_parent_table_with_another_fk(cli, write_config):
    # Set-based, both FKs would write the same new parent row in one statement.
    path = write_config(SAME_PARENT_CONFIG.replace("TRIGGER_MODE", "trigger_mode: row"))
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert ("domain two: foreign key fk_service: mode fill_null_only cannot share target table public.org "
            "with foreign key fk_sales") in result.stderr


# -- fill_null_only under a concurrent update of the parent ------------------------------


def test_fill_null_only_bulk_fill_survives_a_concurrent_update_of_the_parent(db, cli, write_config, dsn):
    db.execute("""CREATE TABLE parent (k text PRIMARY KEY, name text, other text);
                  CREATE TABLE fact (id serial, k text, name text);
                  INSERT INTO parent VALUES ('P', NULL, NULL);""")
    apply_config(cli, write_config, """
    domains:
      fc:
        fact_table: fact
        foreign_keys:
          - {name: fk, source_column: k, target_table: parent, target_key: k, derive_columns: [name], mode: fill_null_only}
    """)
    errors: list[BaseException] = []

    def load():
        try:
            stage_and_load(loader, "fc", ["k", "name"], [("P", "filled")])
            loader.commit()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with psycopg.connect(dsn) as other, psycopg.connect(dsn) as loader:
        other.execute("UPDATE parent SET other = 'synced' WHERE k = 'P'")  # e.g. a sync touching another column
        t = threading.Thread(target=load)
        t.start()
        try:
            wait_until_blocked(db, loader.info.backend_pid)  # the load waits for the parent's row lock
        finally:
            other.commit()
            t.join(30)
    assert not t.is_alive() and errors == []
    assert _rows(db, "SELECT k, name, other FROM parent") == [("P", "filled", "synced")]


# -- the load function: batches -----------------------------------------------------------

LOADER_GRANTS = [  # the README's, and INSERT on the fact table (facts are written with the loader's rights)
    "GRANT USAGE ON SCHEMA refdata, refdata_stage, business TO {role}",
    'GRANT INSERT, SELECT, DELETE ON refdata_stage."annuity_performance" TO {role}',
    "GRANT INSERT ON refdata.load_run TO {role}",
    'GRANT EXECUTE ON FUNCTION refdata."annuity_performance__load"(text[], text), '
    'refdata."annuity_performance__load_parents"(text[], text, boolean) TO {role}',
    'GRANT INSERT ON business."规模明细" TO {role}',
]


def test_loader_cannot_plant_rows_in_another_loads_batch(sample_db, cli, role):
    assert cli("apply").returncode == 0
    attacker = role("review_attacker", LOADER_GRANTS)
    victim = role("review_victim", LOADER_GRANTS)
    x = attacker.execute("SELECT txid_current()").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation, match='"_rd_batch_is_own"'), attacker.cursor() as cur:
        cur.executemany(
            'INSERT INTO refdata_stage."annuity_performance" ("_rd_batch", "月度", "计划代码") VALUES (%s, %s, %s)',
            [(x + i, "2025-11-01", "EVIL") for i in range(1, 50)],
        )
    victim.autocommit = False
    facts, _, _ = stage_and_load(victim, "annuity_performance", ["月度", "计划代码"], [("2025-11-01", "MINE")])
    victim.commit()
    assert facts == 1
    assert _rows(sample_db, 'SELECT "计划代码" FROM business."规模明细"') == [("MINE",)]


# -- refdata load --------------------------------------------------------------------------

H = "月度,计划代码,计划名称,期末资产规模"


def test_blank_line_in_file_default_options(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _write(tmp_path, "blank.csv", (H + "\n2025-11-01,PT1,a,1\n\n").encode())
    via_python = cli("load", "annuity_performance", str(path), "--null", "NULLX")
    assert via_python.returncode == 0, via_python.stderr
    sample.execute('DELETE FROM business."规模明细"')
    sample.commit()
    result = cli("load", "annuity_performance", str(path), "--force")  # the same file again, the other parser
    # actual: exit 2, 'blank.csv:2: missing data for column "计划代码"' (line 2 is fine; line 3 is empty)
    assert result.returncode == 0, result.stderr


def test_crlf_file_with_lf_in_quoted_field_names_the_right_line(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _write(tmp_path, "excel.csv", (
        H + '\r\n2025-11-01,PT1,"a\nb",1\r\n2025-11-01,PT2,"c\nd",1\r\n2025-11-01,PT3,e,abc\r\n').encode())
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    assert 'excel.csv:6: column "期末资产规模": invalid input syntax for type numeric: "abc"' in result.stderr


def test_quote_inside_unquoted_field(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _write(tmp_path, "inch.csv", (H + '\n2025-11-01,PT1,5"6 x,1\n2025-11-01,PT2,a,2\n').encode())
    via_python = cli("load", "annuity_performance", str(path), "--null", "NULLX")
    assert via_python.returncode == 0, via_python.stderr
    sample.execute('DELETE FROM business."规模明细"')
    sample.commit()
    result = cli("load", "annuity_performance", str(path), "--force")  # the same file again, the other parser
    # the server's parser reads the quote as the start of a quoted field; the
    # load is redone in Python, which reads it as a character of the field
    assert result.returncode == 0, result.stderr
    assert _rows(sample, 'SELECT "计划代码", "计划名称" FROM business."规模明细" ORDER BY 1') == [
        ("PT1", '5"6 x'), ("PT2", "a")]


NND_SCHEMA = """
CREATE TABLE parent (k text PRIMARY KEY);
CREATE TABLE fact (id serial, k text, status text NOT NULL DEFAULT 'new');
"""
NND_CONFIG = """
domains:
  nnd:
    fact_table: fact
    foreign_keys:
      - {name: fk_parent, source_column: k, target_table: parent, target_key: k}
"""


def test_null_in_not_null_column_with_default_names_line_and_column(db, cli, write_config, tmp_path):
    db.execute(NND_SCHEMA)
    config = apply_config(cli, write_config, NND_CONFIG)
    path = _write(tmp_path, "f.csv", b"k,status\na,ok\nb,\n")
    result = cli("--config", str(config), "load", "nnd", str(path))
    assert result.returncode == 2
    # actual: 'f.csv: null value in column "status" of relation "fact" violates not-null constraint (...)'
    assert 'f.csv:3: column "status": value required' in result.stderr


def test_rejects_takes_null_in_not_null_column_with_default(db, cli, write_config, tmp_path):
    db.execute(NND_SCHEMA)
    config = apply_config(cli, write_config, NND_CONFIG)
    path = _write(tmp_path, "f.csv", b"k,status\na,ok\nb,\n")
    rejects = tmp_path / "rejects.csv"
    result = cli("--config", str(config), "load", "nnd", str(path), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert "rejected: 1" in result.stdout


def test_load_of_one_domain_keeps_another_domains_trigger_on_the_same_fact_table(db, cli, write_config, tmp_path):
    db.execute("""CREATE TABLE pa (k text PRIMARY KEY); CREATE TABLE pb (k text PRIMARY KEY);
                  CREATE TABLE fact (id serial, a text REFERENCES pa, b text REFERENCES pb);""")
    config = apply_config(cli, write_config, """
    domains:
      da:
        fact_table: fact
        foreign_keys: [{name: fk_a, source_column: a, target_table: pa, target_key: k}]
      db_:
        fact_table: fact
        foreign_keys: [{name: fk_b, source_column: b, target_table: pb, target_key: k}]
    """)
    db.execute("INSERT INTO fact (a, b) VALUES ('x', 'y')")  # row path: both triggers derive
    assert _rows(db, "SELECT k FROM pb") == [("y",)]
    path = _write(tmp_path, "f.csv", b"a,b\nx2,y2\n")
    result = cli("--config", str(config), "load", "da", str(path))
    # actual: exit 2, 'violates foreign key constraint "fact_b_fkey" (Key (b)=(y2) is not present in table "pb".)'
    assert result.returncode == 0, result.stderr
    assert _rows(db, "SELECT k FROM pb ORDER BY k") == [("y",), ("y2",)]
