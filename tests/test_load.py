"""The bulk path: staging table + set-based load function, `refdata load`,
the statement-level trigger mode, and agreement between all paths."""

from __future__ import annotations

import csv
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

from helpers import apply_config, shipped_single_file, stage_and_load

from generator.cells import cell
from generator.config import load_config
from generator.load import Loader, Options

ROOT = Path(__file__).resolve().parent.parent

AGG_SCHEMA = """
CREATE TABLE parent (
    k          text PRIMARY KEY,
    first_v    text,
    max_v      text,
    min_v      text,
    cat_sorted text,
    cat_seen   text,
    cnt        integer,
    tmpl       text NOT NULL,
    status     text NOT NULL
);
CREATE TABLE fact (id serial, k text, v text, w text, o numeric);
"""

AGG_CONFIG = """
domains:
  agg:
    fact_table: fact
    foreign_keys:
      - name: fk_parent
        source_column: k
        target_table: parent
        target_key: k
        backfill_columns:
          - {source: v, target: first_v}
          - {source: v, target: max_v, aggregation: max_by, order_column: o}
          - {source: v, target: min_v, aggregation: min_by, order_column: o}
          - {source: w, target: cat_sorted, aggregation: concat_distinct, separator: " | "}
          - {source: w, target: cat_seen, aggregation: concat_distinct, sort: false}
          - {source: w, target: cnt, aggregation: count_distinct}
          - {target: tmpl, aggregation: template, template: "{k}: {v} 100%"}
        defaults: {status: new}
        blank_values: ["(空白)"]
"""

PARENT_COLUMNS = "k, first_v, max_v, min_v, cat_sorted, cat_seen, cnt, tmpl, status, _source, _needs_review, _derived_from_domain"


def _parents(conn, order_by="k"):
    return conn.execute(f"SELECT {PARENT_COLUMNS} FROM parent ORDER BY {order_by}").fetchall()


def test_aggregations_over_many_rows_with_ties_and_nulls(postgresql, cli, write_config):
    postgresql.execute(AGG_SCHEMA)
    postgresql.commit()
    apply_config(cli, write_config, AGG_CONFIG)
    rows = [  # (k, v, w, o) in load order
        ("A", None, "z", 5),
        ("A", "x1", "b", 1),
        ("A", "x2", "z", 9),
        ("A", "x3", None, 9),   # ties x2 on o; x2 came first
        ("A", None, "a", None),
        ("A", "x4", "b", None),  # NULL order values sort last either way
        ("B", "y", "q", 3),
        ("(空白)", "ignored", "q", 3),
        ("  ", "ignored", "q", 3),
        (None, "ignored", "q", 3),
    ]
    facts, derived, blank = stage_and_load(postgresql, "agg", ["k", "v", "w", "o"], rows)
    assert (facts, derived, blank) == (10, {"public.parent": 2}, 2)
    assert _parents(postgresql) == [
        ("A", "x1", "x2", "x1", "a | b | z", "z+b+a", 3, "A:  100%", "new", "auto_derived", True, "agg"),
        ("B", "y", "y", "y", "q", "q", 1, "B: y 100%", "new", "auto_derived", True, "agg"),
    ]
    assert postgresql.execute('SELECT count(*) FROM refdata_stage."agg"').fetchone()[0] == 0


def test_row_trigger_gives_the_same_values_for_a_single_row(postgresql, cli, write_config):
    postgresql.execute(AGG_SCHEMA)
    postgresql.commit()
    apply_config(cli, write_config, AGG_CONFIG)
    stage_and_load(postgresql, "agg", ["k", "v", "w", "o"], [("S", "v1", "w1", 7), ("N", None, None, None)])
    staged = _parents(postgresql)
    postgresql.execute("DELETE FROM parent; DELETE FROM fact")
    postgresql.execute("INSERT INTO fact (k, v, w, o) VALUES ('S', 'v1', 'w1', 7), ('N', NULL, NULL, NULL)")
    postgresql.commit()
    assert _parents(postgresql) == staged
    assert staged[0][:8] == ("N", None, None, None, None, None, 0, "N:  100%")


def test_dependent_parents_are_derived_in_order_within_one_batch(sample, cli):
    result = cli("apply")
    assert result.returncode == 0, result.stderr
    columns = ["月度", "计划代码", "计划名称", "组合代码", "组合名称"]
    facts, derived, _ = stage_and_load(
        sample, "annuity_performance", columns,
        [("2025-11-01", "PNEW1", "新计划", "QNEW1", "新组合"), ("2025-11-01", "PNEW1", "新计划", "QNEW2", None)],
    )
    assert facts == 2
    assert derived["mapping.年金计划"] == 1 and derived["mapping.组合计划"] == 2
    rows = sample.execute(
        'SELECT "组合代码", "年金计划号", "_source" FROM mapping."组合计划" WHERE "组合代码" LIKE %s ORDER BY 1',
        ["QNEW%"],
    ).fetchall()
    assert rows == [("QNEW1", "PNEW1", "auto_derived"), ("QNEW2", "PNEW1", "auto_derived")]


# -- refdata load --------------------------------------------------------------------

HEADER = "月度,计划代码,计划名称,组合代码,组合名称,产品线代码,机构代码,期末资产规模"


def _csv(tmp_path: Path, name: str, lines: list[str], encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _fact_count(conn) -> int:
    return conn.execute('SELECT count(*) FROM business."规模明细"').fetchone()[0]


def test_load_cli_loads_and_summarises(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "facts.csv", [
        HEADER,
        "2025-11-01,PL1,计划一,QL1,组合一,PL201,G000,100.50",
        "2025-11-01,PL1,计划一,QL2,,PL999,G000,",
        '2025-11-01,P00001,"名称, 带逗号",QT000001,,PL201,G000,5',
    ])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert "loaded 3 fact rows" in result.stdout
    assert "mapping.年金计划 1" in result.stdout and "mapping.组合计划 2" in result.stdout
    assert "mapping.产品线 1" in result.stdout
    assert _fact_count(sample) == 3
    assert sample.execute('SELECT "产品线" FROM mapping."产品线" WHERE "产品线代码" = %s', ["PL999"]).fetchone() == (
        "待确认产品线 PL999",
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ("2025-13-01,PX,n,QX,n,PL201,G000,1", 'bad.csv:3: column "月度": date/time field value out of range'),
        ("2025-11-01,PX,n,QX,n,PL201,G000,abc", 'bad.csv:3: column "期末资产规模": invalid input syntax for type numeric'),
        ("2025-11-01,PX,n,QX,n,PL201,G000", "bad.csv:3: expected 8 fields, found 7"),
        ("2025-11-01," + "P" * 40 + ",n,QX,n,PL201,G000,1", 'bad.csv:3: column "计划代码": value too long'),
        (",PX,n,QX,n,PL201,G000,1", 'bad.csv:3: column "月度": value required'),
    ],
)
def test_a_bad_row_aborts_the_load_and_leaves_the_fact_table_unchanged(sample, cli, tmp_path, line, expected):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "bad.csv", [HEADER, "2025-11-01,PGOOD,n,QGOOD,n,PL201,G000,1", line,
                                      "2025-11-01,PGOOD2,n,QGOOD2,n,PL201,G000,1"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert _fact_count(sample) == 0
    assert sample.execute('SELECT count(*) FROM mapping."年金计划" WHERE "年金计划号" LIKE %s', ["PGOOD%"]).fetchone()[0] == 0


def test_bad_encoding_names_line_and_column(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = tmp_path / "mixed.csv"
    path.write_bytes((HEADER + "\n2025-11-01,P1,").encode() + "计划".encode("gbk") + b",Q1,n,PL201,G000,1\n")
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    assert 'mixed.csv:2: column "计划名称": not valid utf-8' in result.stderr


def test_unknown_header_column_is_named(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "h.csv", ["月度,计划代号", "2025-11-01,P1"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    assert 'h.csv:1: column 2 "计划代号" is not a loadable column of "business"."规模明细" (did you mean "计划代码"?)' in result.stderr


def test_rejects_file_takes_bad_rows_and_the_rest_loads(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "mixed.csv", [
        HEADER,
        "2025-11-01,PR1,n,QR1,n,PL201,G000,1",
        "2025-13-01,PR2,n,QR2,n,PL201,G000,1",
        "2025-11-01,PR3,n,QR3,n,PL201,G000",
        "2025-11-01,PR4,n,QR4,n,PL201,G000,abc",
        "2025-11-01,PR5,n,QR5,n,PL201,G000,5",
    ])
    rejects = tmp_path / "rejects.csv"
    result = cli("load", "annuity_performance", str(path), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert "loaded 2 fact rows" in result.stdout and "rejected: 3" in result.stdout
    assert [r[0] for r in sample.execute('SELECT "计划代码" FROM business."规模明细" ORDER BY 1')] == ["PR1", "PR5"]
    text = rejects.read_text(encoding="utf-8").splitlines()
    assert text[0] == "line,column,reason,record"
    assert sorted(text[1:]) == sorted([
        '3,月度,"date/time field value out of range: ""2025-13-01""","2025-13-01,PR2,n,QR2,n,PL201,G000,1"',
        '4,,"expected 8 fields, found 7","2025-11-01,PR3,n,QR3,n,PL201,G000"',
        '5,期末资产规模,"invalid input syntax for type numeric: ""abc""","2025-11-01,PR4,n,QR4,n,PL201,G000,abc"',
    ])
    # parents only for rows that loaded
    assert sample.execute('SELECT count(*) FROM mapping."年金计划" WHERE "年金计划号" IN (%s, %s)', ["PR2", "PR4"]).fetchone()[0] == 0


def test_rejects_file_runs_no_formula_in_a_spreadsheet_and_loads_again_as_the_readme_says(sample, cli, tmp_path):
    # The rejects file is opened in Excel like export-pending's: a record from
    # a fact file starting with = + - @ (or an apostrophe before one) is
    # written with a leading apostrophe, numbers stay; the README's recipe
    # gives the refused lines back byte for byte.
    assert cli("apply").returncode == 0
    bad = ["=1+2,PX1,n,QX1,n,PL201,G000,1",
           "@SUM(A1),PX2,n,QX2,n,PL201,G000,1",
           "-x,PX3,n,QX3,n,PL201,G000,1",
           "+1,PX4,n,QX4,n,PL201,G000",
           "'=1,PX5,n,QX5,n,PL201,G000,1",
           "2025-11-01,PX6,n,QX6,n,PL201,G000,=cmd|' /C calc'!A0"]
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PX0,n,QX0,n,PL201,G000,1"] + bad)
    rejects = tmp_path / "rejects.csv"
    result = cli("load", "annuity_performance", str(path), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert "loaded 1 fact rows" in result.stdout and "rejected: 6" in result.stdout
    with rejects.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["record"] for r in rows] == ["'" + line for line in bad[:5]] + [bad[5]]
    # the last refusal's reason names the value: it starts with a word, never a formula
    assert all(not re.match(r"[=+@\t\r-]", r[k]) for r in rows for k in ("column", "reason", "record"))
    # numbers stay as they are
    assert (cell("-5"), cell("+3.2e1"), cell("-5\n")) == ("-5", "+3.2e1", "'-5\n")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(\{ head -n 1 facts.csv.*?\} > again.csv\n)", readme, re.S).group(1)
    subprocess.run(["bash", "-c", block], cwd=tmp_path, check=True)
    assert (tmp_path / "again.csv").read_text(encoding="utf-8").splitlines() == [HEADER] + bad
    # fixed (a date where it was wrong, the missing field, a number), they load
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("\n".join([HEADER] + [",".join(["2025-11-01"] + line.split(",")[1:7] + ["1"]) for line in bad]) + "\n",
                     encoding="utf-8")
    assert cli("load", "annuity_performance", str(fixed)).returncode == 0
    assert _fact_count(sample) == 7

SELF_CONFIG = """
domains:
  orgs:
    fact_schema: public
    fact_table: org
    foreign_keys:
      - name: fk_parent
        source_column: parent
        target_schema: public
        target_table: org
        target_key: code
"""


@pytest.mark.parametrize("rejects", [False, True], ids=["server-parsed", "python-rejects"])
def test_a_self_referencing_fact_table_load_counts_every_fact_and_only_the_parents_it_derived(
        db, cli, write_config, tmp_path, rejects):
    # D's parent A comes in the same file: A is a fact, not a derived parent
    # (it was derived, then promoted by its own row, so the summary said 3
    # facts and 3 parents for 4 facts and 2 parents); a later fact row for a
    # derived key promotes it and is counted as loaded (it said 1 for 2).
    db.execute("CREATE TABLE org (code text PRIMARY KEY, name text, parent text REFERENCES org(code));"
               "INSERT INTO org VALUES ('ROOT', 'root', NULL)")
    config = str(apply_config(cli, write_config, SELF_CONFIG))
    extra = ["--rejects", str(tmp_path / "rejects.csv")] if rejects else []
    first = _csv(tmp_path, "orgs.csv", ["code,name,parent", "D,d,A", "A,a,ROOT", "B,b,NEWP", "C,c,NEWQ"])
    result = cli("--config", config, "load", "orgs", str(first), *extra)
    assert result.returncode == 0, result.stderr
    assert "loaded 4 fact rows" in result.stdout and "parents derived: public.org 2;" in result.stdout, result.stdout
    assert db.execute("SELECT code, _source FROM org ORDER BY 1").fetchall() == [
        ("A", "authoritative"), ("B", "authoritative"), ("C", "authoritative"), ("D", "authoritative"),
        ("NEWP", "auto_derived"), ("NEWQ", "auto_derived"), ("ROOT", "authoritative")]
    # The triggers of the load's insert (per-row path: the fact table has
    # triggers) derive for every row, as for any other insert: D's row, before
    # A's, derives A, which A's own row then promotes. The load, which left A
    # to its row, counts it as a fact, not as a parent.
    assert db.execute("SELECT array_agg(action ORDER BY id) FROM refdata.audit_log "
                      "WHERE key ->> 'code' = 'A'").fetchone() == (["derive", "promote"],)
    # the key figures: A was no parent before the load, nor derived by it
    (figures,), = db.execute("SELECT foreign_keys -> 'fk_parent' FROM refdata.load_run").fetchall()
    assert figures == {"keys_seen": 4, "authoritative": 1, "auto_derived": 0, "derived_now": 2}
    second = _csv(tmp_path, "more.csv", ["code,name,parent", "NEWP,p,ROOT", "E,e,ROOT"])
    result = cli("--config", config, "load", "orgs", str(second), *extra)
    assert result.returncode == 0, result.stderr
    assert "loaded 2 fact rows" in result.stdout and "parents derived: public.org 0;" in result.stdout, result.stdout
    assert db.execute("SELECT name, _source FROM org WHERE code = 'NEWP'").fetchone() == ("p", "authoritative")

def test_gbk_input(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "gbk.csv", [HEADER, "2025-11-01,PG1,国企年金计划,QG1,稳健组合,PL201,G000,1"], encoding="gbk")
    result = cli("load", "annuity_performance", str(path), "--encoding", "gbk")
    assert result.returncode == 0, result.stderr
    assert sample.execute('SELECT "计划全称" FROM mapping."年金计划" WHERE "年金计划号" = %s', ["PG1"]).fetchone() == (
        "国企年金计划",
    )


def test_concurrent_loads_with_overlapping_new_keys(sample, db, cli, tmp_path, dsn):
    """The second load really contends: it waits for the first one's new keys
    (still uncommitted) and, once they are committed, adds nothing twice."""
    assert cli("apply").returncode == 0
    config = load_config(Path("config/data_sources.yml"))
    keys = [f"PC{i:03d}" for i in range(60)]
    a = _csv(tmp_path, "a.csv", [HEADER] + [f"2025-11-01,{k},n,Q{k},n,PL201,G000,1" for k in keys])
    b = _csv(tmp_path, "b.csv", [HEADER] + [f"2025-11-01,{k},n,Q{k},n,PL201,G000,2" for k in reversed(keys)])
    errors: list[BaseException] = []

    def load_b():
        try:
            with psycopg.connect(dsn) as conn:
                pids.append(conn.info.backend_pid)
                Loader(conn, config, "annuity_performance", b, Options()).run(progress=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pids: list[int] = []
    with psycopg.connect(dsn) as first:
        loader = Loader(first, config, "annuity_performance", a, Options())
        first.execute("SELECT 1")  # an open transaction: the load below stays uncommitted in it
        assert loader.run(progress=False).facts == 60
        thread = threading.Thread(target=load_b)
        thread.start()
        try:
            _until(lambda: pids and _waiting(db, pid=pids[0]), "the second load waits for the first")
        finally:
            first.commit()
            thread.join(60)
    assert not thread.is_alive() and errors == []
    assert db.execute(
        'SELECT count(*), count(DISTINCT "计划代码") FROM business."规模明细"').fetchone() == (120, 60)
    assert db.execute("""SELECT count(*), count(*) FILTER (WHERE _source = 'auto_derived')
                         FROM mapping."年金计划" WHERE "年金计划号" LIKE 'PC%'""").fetchone() == (60, 60)
    assert db.execute('SELECT count(*) FROM refdata_stage."annuity_performance"').fetchone()[0] == 0


def test_concurrent_loads_never_see_each_others_staged_rows(sample, cli, dsn):
    assert cli("apply").returncode == 0
    stage = 'refdata_stage."annuity_performance"'
    with psycopg.connect(dsn) as other:
        other.execute(f"""INSERT INTO {stage} ("月度", "计划代码") VALUES ('2025-11-01', 'POTHER')""")
        # other's batch is staged but not loaded; this session loads its own
        facts, derived, _ = stage_and_load(sample, "annuity_performance", ["月度", "计划代码"],
                                            [("2025-11-01", "PMINE")])
        assert facts == 1
        other.commit()  # committed without loading: never loaded, and cleared by the next load

        # A batch committed by a transaction newer than this load's is visible
        # to it and not stale for it: the load still takes only its own rows.
        sample.execute("SELECT txid_current()")
        other.execute(f"""INSERT INTO {stage} ("月度", "计划代码") VALUES ('2025-11-01', 'PNEWER')""")
        other.commit()
        facts, _, _ = stage_and_load(sample, "annuity_performance", ["月度", "计划代码"], [("2025-11-01", "PMINE2")])
        sample.commit()
        assert facts == 1
    assert [r[0] for r in sample.execute('SELECT "计划代码" FROM business."规模明细" ORDER BY 1')] == ["PMINE", "PMINE2"]
    assert sample.execute(f'SELECT "计划代码" FROM {stage}').fetchall() == [("PNEWER",)]


# -- statement trigger mode and agreement between paths ------------------------------


def _mode_config(trigger_mode: str, defer: bool) -> str:
    text = shipped_single_file()
    extra = f"    trigger_mode: {trigger_mode}\n" + ("    defer_foreign_keys: true\n" if defer else "")
    return text.replace("    fact_table: 规模明细\n", "    fact_table: 规模明细\n" + extra)


def test_statement_mode_is_refused_while_fks_are_checked_immediately(sample, cli, write_config):
    path = write_config(_mode_config("statement", defer=False))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 2
    assert ('domain annuity_performance, foreign key fk_plan: trigger_mode statement needs constraint '
            '"规模明细_计划代码_fkey" of "business"."规模明细" to be DEFERRABLE INITIALLY DEFERRED '
            "(or set defer_foreign_keys: true)") in result.stderr


def test_defer_foreign_keys_makes_the_domain_fks_deferred(sample, cli, write_config):
    apply_config(cli, write_config, _mode_config("statement", defer=True))
    rows = sample.execute(
        """SELECT conname, condeferrable AND condeferred FROM pg_constraint
           WHERE conrelid = 'business."规模明细"'::regclass AND contype = 'f' ORDER BY 1""").fetchall()
    assert len(rows) == 4 and all(deferred for _, deferred in rows)
    # with the FKs deferred, statement mode needs defer_foreign_keys no more; apply leaves them deferred
    path = write_config(_mode_config("statement", defer=False))
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    assert sample.execute(
        """SELECT count(*) FILTER (WHERE condeferrable AND condeferred) FROM pg_constraint
           WHERE conrelid = 'business."规模明细"'::regclass AND contype = 'f'""").fetchone() == (4,)


FACTS = [  # each new key once: every path must agree exactly
    ("2025-11-01", "PA1", "新计划甲", "单一计划", "QA1", "组合甲", "PL201", "G000", "100"),
    ("2025-11-01", "PA2", None, None, "QA2", None, "PL950", "G901", "5"),
    ("2025-11-01", "P00001", "已有计划", "单一计划", "QA3", "组合丙", "PL201", "G000", "7"),
    ("2025-11-01", "PA3", "新计划乙", "集合计划", None, None, None, None, "1"),
]
FACT_COLS = ["月度", "计划代码", "计划名称", "计划类型", "组合代码", "组合名称", "产品线代码", "机构代码", "期末资产规模"]


def _derived(conn):
    out = {}
    for table in ["年金计划", "组合计划", "产品线", "组织架构"]:
        cur = conn.execute(f'SELECT * FROM mapping."{table}" WHERE _source = %s ORDER BY 1', ["auto_derived"])
        names = [d.name for d in cur.description]
        out[table] = [tuple(v for n, v in zip(names, row) if n != "_derived_at") for row in cur]
    return out


def _reset(conn):
    conn.execute('DELETE FROM business."规模明细"')
    for table in ["组合计划", "年金计划", "产品线", "组织架构"]:
        conn.execute(f'DELETE FROM mapping."{table}" WHERE _source = %s', ["auto_derived"])
    conn.commit()


def test_row_mode_statement_mode_and_staging_derive_identical_parents(sample, cli, write_config):
    cols = ", ".join(f'"{c}"' for c in FACT_COLS)
    apply_config(cli, write_config, _mode_config("row", defer=False))
    with sample.cursor() as cur, cur.copy(f'COPY business."规模明细" ({cols}) FROM STDIN') as cp:
        for row in FACTS:
            cp.write_row(row)
    sample.commit()
    by_row = _derived(sample)
    assert all(by_row.values()), by_row

    _reset(sample)
    stage_and_load(sample, "annuity_performance", FACT_COLS, FACTS)
    by_stage = _derived(sample)

    _reset(sample)
    apply_config(cli, write_config, _mode_config("statement", defer=True))
    with sample.cursor() as cur, cur.copy(f'COPY business."规模明细" ({cols}) FROM STDIN') as cp:
        for row in FACTS:
            cp.write_row(row)
    sample.commit()
    by_statement = _derived(sample)

    assert by_row == by_stage == by_statement
    assert by_row["年金计划"][0][:6] == ("PA1", "新计划甲", "单一计划", None, "G000", "待审核")
    assert _fact_count(sample) == len(FACTS)


def test_statement_mode_covers_multi_row_insert_and_update(sample, cli, write_config):
    apply_config(cli, write_config, _mode_config("statement", defer=True))
    sample.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "组合代码")
                      VALUES ('2025-11-01', 'PS1', 'QS1'), ('2025-11-01', 'PS1', 'QS2')""")
    sample.execute("""UPDATE business."规模明细" SET "计划代码" = 'PS2' WHERE "组合代码" = 'QS2'""")
    sample.commit()
    plans = sample.execute(
        """SELECT "年金计划号" FROM mapping."年金计划" WHERE _source = 'auto_derived' ORDER BY 1""").fetchall()
    assert plans == [("PS1",), ("PS2",)]


def test_quoted_newlines_load_and_errors_name_the_record_start(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    good = _csv(tmp_path, "ml.csv", ["月度,计划代码,计划名称,期末资产规模", '2025-11-01,PM1,"两行\n名称",1'])
    result = cli("load", "annuity_performance", str(good))
    assert result.returncode == 0, result.stderr
    assert sample.execute('SELECT "计划全称" FROM mapping."年金计划" WHERE "年金计划号" = %s', ["PM1"]).fetchone() == (
        "两行\n名称",
    )
    bad = _csv(tmp_path, "ml_bad.csv", ["月度,计划代码,计划名称,期末资产规模", '2025-11-01,PM2,"a\nb",1',
                                        '2025-11-01,PM3,"c\nd",abc'])
    result = cli("load", "annuity_performance", str(bad))
    assert result.returncode == 2
    assert 'ml_bad.csv:4: column "期末资产规模": invalid input syntax for type numeric: "abc"' in result.stderr


def test_other_delimiter_and_null_marker(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "semi.csv", ["月度;计划代码;计划名称;期末资产规模", "2025-11-01;PD1;NULL;1", "2025-11-01;PD2;;2"])
    result = cli("load", "annuity_performance", str(path), "--delimiter", ";", "--null", "NULL")
    assert result.returncode == 0, result.stderr
    names = sample.execute("""SELECT "年金计划号", "计划全称" FROM mapping."年金计划"
                              WHERE "年金计划号" LIKE 'PD%' ORDER BY 1""").fetchall()
    assert names == [("PD1", "(待补充)"), ("PD2", "")]  # NULL took the default; an empty string is a value


# -- what the bulk path promises ---------------------------------------------------------


def test_new_parents_are_inserted_in_key_order(db, cli, write_config):
    # Concurrent loads lock the keys they insert; in one order for all, they
    # wait for each other instead of deadlocking.
    db.execute("""CREATE TABLE parent (k text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY);
                  CREATE TABLE fact (id serial, k text REFERENCES parent);""")
    apply_config(cli, write_config, """
    domains:
      ord:
        fact_table: fact
        foreign_keys: [{name: fk, source_column: k, target_table: parent, target_key: k}]
    """)
    keys = [f"K{i:03d}" for i in range(300)]
    random.Random(14).shuffle(keys)
    db.autocommit = False
    facts, derived, _ = stage_and_load(db, "ord", ["k"], [(k,) for k in keys])
    db.commit()
    assert (facts, derived) == (300, {"public.parent": 300})
    assert [k for (k,) in db.execute("SELECT k FROM parent ORDER BY seq")] == sorted(keys)


def test_bulk_fill_null_only_never_overwrites_a_value(db, cli, write_config):
    db.execute("""CREATE TABLE parent (k text PRIMARY KEY, a text, b text);
                  CREATE TABLE fact (id serial, k text, a text, b text);
                  INSERT INTO parent VALUES ('P', 'kept', NULL);""")
    apply_config(cli, write_config, """
    domains:
      fill:
        fact_table: fact
        foreign_keys:
          - {name: fk, source_column: k, target_table: parent, target_key: k, derive_columns: [a, b], mode: fill_null_only}
    """)
    db.autocommit = False
    stage_and_load(db, "fill", ["k", "a", "b"], [("P", "from fact", "filled"), ("N", "new a", "new b")])
    db.commit()
    assert db.execute("SELECT k, a, b, _source, _needs_review FROM parent ORDER BY k").fetchall() == [
        ("N", "new a", "new b", "auto_derived", True),
        ("P", "kept", "filled", "authoritative", False),
    ]


def test_staging_table_is_unlogged(sample, cli):
    assert cli("apply").returncode == 0
    assert sample.execute("""SELECT relpersistence FROM pg_class
                             WHERE oid = 'refdata_stage."annuity_performance"'::regclass""").fetchone() == ("u",)


def test_two_loads_in_one_transaction_insert_each_row_once(sample, cli):
    assert cli("apply").returncode == 0
    columns = ["月度", "计划代码"]
    with sample.transaction():
        assert stage_and_load(sample, "annuity_performance", columns, [("2025-11-01", "PT1")])[0] == 1
        assert stage_and_load(sample, "annuity_performance", columns, [("2025-11-01", "PT2")])[0] == 1
        # the bulk path's skip of the trigger ends with its insert
        sample.execute("""INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-11-01', 'PT3')""")
    assert sample.execute('SELECT "计划代码" FROM business."规模明细" ORDER BY 1').fetchall() == [
        ("PT1",), ("PT2",), ("PT3",)]
    assert sample.execute('SELECT count(*) FROM refdata_stage."annuity_performance"').fetchone() == (0,)
    assert sample.execute("""SELECT "年金计划号", _source FROM mapping."年金计划"
                             WHERE "年金计划号" LIKE 'PT%' ORDER BY 1""").fetchall() == [
        ("PT1", "auto_derived"), ("PT2", "auto_derived"), ("PT3", "auto_derived")]


def test_a_plain_insert_in_the_same_statement_as_a_load_derives_its_parents(sample, cli):
    """A procedure that loads and then inserts runs both in one statement (one
    statement_timestamp): the load's skip of the trigger ends with its insert."""
    assert cli("apply").returncode == 0
    sample.execute("""DO $$
        BEGIN
            INSERT INTO refdata_stage."annuity_performance" ("月度", "计划代码", "_rd_line") VALUES ('2025-11-01', 'PS1', 1);
            PERFORM refdata."annuity_performance__load"(ARRAY['月度', '计划代码']);
            INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-11-01', 'PS2');
        END $$""")
    sample.commit()
    assert sample.execute("""SELECT "年金计划号", _source FROM mapping."年金计划"
                             WHERE "年金计划号" LIKE 'PS%' ORDER BY 1""").fetchall() == [
        ("PS1", "auto_derived"), ("PS2", "auto_derived")]



def test_a_plain_insert_in_the_same_statement_as_a_load_is_logged_as_its_own_statement(db, cli, write_config):
    """In statement mode the trigger leaves the load's own insert to the
    load's record; a plain insert after it, in the same statement, is a
    statement of its own and gets its record in refdata.load_run."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    apply_config(cli, write_config, """
domains:
  d:
    fact_table: fact
    trigger_mode: statement
    foreign_keys:
      - {name: fk_p, source_column: k, target_table: parent, target_key: k, derive_columns: [name]}
""")
    db.execute("""DO $$
        BEGIN
            INSERT INTO refdata_stage."d" (k, name, "_rd_line") VALUES ('L1', 'x', 1);
            PERFORM refdata."d__load"();
            INSERT INTO fact VALUES ('P1', 'y');
        END $$""")
    assert db.execute("SELECT source, rows FROM refdata.load_run ORDER BY id").fetchall() == [
        ("bulk", 1), ("statement", 1)]
    assert db.execute('SELECT k, "_source" FROM parent ORDER BY k').fetchall() == [
        ("L1", "auto_derived"), ("P1", "auto_derived")]

# -- refdata load: files and the errors the README documents --------------------------------


def test_utf8_bom_is_skipped(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("月度,计划代码,计划名称\n2025-11-01,PB1,带BOM\n").encode())
    for extra in ([], ["--null", "NULLX", "--force"]):  # the server's parser and Python's
        result = cli("load", "annuity_performance", str(path), *extra)
        assert result.returncode == 0, result.stderr
        assert "loaded 1 fact rows" in result.stdout
    assert sample.execute("""SELECT "月度"::text, "计划代码" FROM business."规模明细" """).fetchall() == [
        ("2025-11-01", "PB1"), ("2025-11-01", "PB1")]


def test_gb18030_input_beyond_gbk(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    name = "计划𠀀€"  # U+20000 has no GBK code: GB18030 only
    path = _csv(tmp_path, "gb.csv", ["月度,计划代码,计划名称", f"2025-11-01,PG18,{name}"], encoding="gb18030")
    for extra in ([], ["--null", "NULLX", "--force"]):
        sample.execute('DELETE FROM business."规模明细"')
        sample.commit()
        result = cli("load", "annuity_performance", str(path), "--encoding", "gb18030", *extra)
        assert result.returncode == 0, result.stderr
        assert sample.execute('SELECT "计划名称" FROM business."规模明细"').fetchall() == [(name,)]
    assert sample.execute('SELECT "计划全称" FROM mapping."年金计划" WHERE "年金计划号" = %s', ["PG18"]).fetchone() == (
        name,)


@pytest.mark.parametrize("content, args, expected", [
    ("月度,计划代码,月度\n2025-11-01,P1,2025-11-01\n", [],
     'FILE:1: column "月度" appears twice in the header'),
    ("计划代码,计划名称\nP1,n\n", [],
     'FILE:1: required column "月度" (NOT NULL, no default) is not in the header'),
    ("", [], "FILE: empty file (a header row naming the fact columns is expected)"),
    ("月度,计划代码\n2025-11-01,P1\n", ["--encoding", "no-such-codec"],
     "--encoding: unknown encoding 'no-such-codec'"),
    ("月度,计划代码\n2025-11-01,P1\n", ["--delimiter", ";;"], "--delimiter: must be one character"),
], ids=["duplicate-column", "missing-required-column", "empty-file", "unknown-encoding", "bad-delimiter"])
def test_documented_load_errors(sample, cli, tmp_path, content, args, expected):
    assert cli("apply").returncode == 0
    path = tmp_path / "f.csv"
    path.write_text(content, encoding="utf-8")
    result = cli("load", "annuity_performance", str(path), *args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["refdata: error: " + expected.replace("FILE", str(path))]
    assert _fact_count(sample) == 0


def test_load_of_a_path_that_is_not_a_regular_file_says_what_it_is(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for path, expected in ((tmp_path, f"{tmp_path}: is a directory, not a file"),
                           (fifo, f"{fifo}: not a regular file (a pipe or device cannot be read twice, as a load "
                                  "may need to): write it to a file first"),
                           (tmp_path / "none.csv", f"{tmp_path / 'none.csv'}: file not found")):
        result = cli("load", "annuity_performance", str(path))
        assert result.returncode == 2
        assert result.stderr.splitlines() == ["refdata: error: " + expected]


def test_load_of_an_unknown_domain(sample, cli, tmp_path):
    path = _csv(tmp_path, "f.csv", ["月度,计划代码", "2025-11-01,P1"])
    result = cli("load", "annuity_perf", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "refdata: error: domain annuity_perf is not in the config (known: annuity_performance)"]


def test_load_of_a_row_breaking_a_constraint_is_exit_2(db, cli, write_config, tmp_path):
    db.execute("""CREATE TABLE parent (k text PRIMARY KEY);
                  CREATE TABLE fact (id serial, k text, amount numeric CHECK (amount >= 0));""")
    config = apply_config(cli, write_config, """
    domains:
      chk:
        fact_table: fact
        foreign_keys: [{name: fk, source_column: k, target_table: parent, target_key: k}]
    """)
    path = _csv(tmp_path, "f.csv", ["k,amount", "a,1", "b,-1"])
    result = cli("--config", str(config), "load", "chk", str(path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    # the line of the row; the serial in the server's detail is whatever the attempts drew
    assert line.startswith(f'refdata: error: {path}:3: new row for relation "fact" violates check constraint '
                           '"fact_amount_check" (Failing row contains (')
    assert line.endswith(", b, -1).); nothing was loaded")
    assert db.execute("SELECT count(*) FROM fact").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM parent").fetchone() == (0,)


# -- retries and the terminal ------------------------------------------------------------


def _waiting(db, **match) -> int | None:
    """pid of the backend waiting on a lock that matches, if any."""
    where = " AND ".join(f"{k} = %s" for k in match)
    row = db.execute(f"SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND {where}",
                     list(match.values())).fetchone()
    return row[0] if row else None


def _until(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


def test_load_retries_after_a_deadlock(sample, cli, db, dsn, tmp_path):
    """A real deadlock, made deterministic: the load inserts new plans in key
    order (PAA, PAB, PDL). Y holds PAB, so the load waits there holding PAA;
    X, holding PDL, asks for PAA and waits on the load. When Y lets go, the
    load asks for PDL: a cycle the load itself finds, as X never checks."""
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "f.csv", ["月度,计划代码", "2025-11-01,PAA", "2025-11-01,PAB", "2025-11-01,PDL"])
    plan = """INSERT INTO mapping."年金计划" ("年金计划号", "计划全称", "计划状态") VALUES (%s, 'held', 'x')"""
    result = {}
    with psycopg.connect(dsn) as x, psycopg.connect(dsn) as y:
        x.execute("SET deadlock_timeout = '1h'")
        x.execute(plan, ["PDL"])
        y.execute(plan, ["PAB"])
        load = threading.Thread(target=lambda: result.update(done=cli(
            "load", "annuity_performance", str(path), env={"PGAPPNAME": "deadlock-load"})))
        load.start()
        try:
            _until(lambda: _waiting(db, application_name="deadlock-load"), "the load waits for Y")
            x_waits = threading.Thread(target=x.execute, args=(plan, ["PAA"]))
            x_waits.start()
            _until(lambda: _waiting(db, pid=x.info.backend_pid), "X waits for the load")
            y.rollback()
            x_waits.join(60)  # X gets PAA once the load's first attempt is rolled back
            assert not x_waits.is_alive()
            x.commit()
        finally:
            load.join(60)
    done = result["done"]
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "refdata: deadlock detected; retrying the load (attempt 2 of 3)"]
    assert "loaded 3 fact rows" in done.stdout and done.stdout.strip().endswith("after 2 attempts")
    assert sample.execute("""SELECT "年金计划号", _source FROM mapping."年金计划"
                             WHERE "年金计划号" IN ('PAA', 'PAB', 'PDL') ORDER BY 1""").fetchall() == [
        ("PAA", "authoritative"), ("PAB", "auto_derived"), ("PDL", "authoritative")]
    assert _fact_count(sample) == 3


def test_progress_line_on_a_terminal(sample, cli, cli_process, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "f.csv", ["月度,计划代码"] + [f"2025-11-01,PP{i % 7}" for i in range(2500)])
    for extra in ([], ["--null", "NULLX", "--force"]):  # the server's parser and Python's
        controller, terminal = os.openpty()
        try:
            proc = cli_process("load", "annuity_performance", str(path), *extra, stderr=terminal,
                               capture_output=False, stdout=subprocess.PIPE)
        finally:
            os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal's other end is closed
                break
            if not chunk:
                break
            shown += chunk
        os.close(controller)
        assert proc.returncode == 0
        assert "loaded 2,500 fact rows" in proc.stdout
        text = shown.decode()
        assert re.search(r"\r +[\d,]+ rows +[\d,]+ rows/s", text), text
        assert "2,500 rows staged; deriving parents and inserting facts ..." in text
        assert text.endswith("\r\x1b[K")  # and the line is gone when the summary is printed
    # not on a terminal: nothing but the summary
    quiet = cli_process("load", "annuity_performance", str(path), "--force")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_database_whose_strings_keep_backslash_escapes_loads_a_fact_column_named_like_refdatas(
        sample, cli, tmp_path):
    """A legacy database may default standard_conforming_strings to off:
    refdata's catalog queries spell the pattern of its own columns with
    backslashes ('\\_rd\\_%'), read there as '_rd_%', and a fact column with
    rd as its second and third letters ("ordinal") was taken for refdata's:
    the staging table looked stale and every load was refused."""
    sample.execute('ALTER TABLE business."规模明细" ADD COLUMN "ordinal" integer')
    sample.commit()
    assert cli("apply").returncode == 0
    sample.execute(f'ALTER DATABASE "{sample.info.dbname}" SET standard_conforming_strings = off')
    sample.commit()
    path = _csv(tmp_path, "facts.csv", [HEADER + ",ordinal", "2025-11-01,PL1,计划一,QL1,组合一,PL201,G000,1,7"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert sample.execute('SELECT "ordinal" FROM business."规模明细"').fetchall() == [(7,)]
