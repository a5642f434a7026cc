"""refdata.load_run: what each load and each statement-mode batch records,
and `refdata status --loads`."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from generator.config import PROJECT_ROOT
from helpers import shipped_single_file
from test_backfill import apply_ok, insert_fact

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"


def runs(conn) -> list[tuple]:
    return conn.execute(
        """SELECT domain, source, file_name, file_size, file_sha256, rows, path, foreign_keys,
                  finished_at >= started_at
           FROM refdata.load_run ORDER BY id""").fetchall()


def test_load_records_file_rows_path_and_pre_load_coverage(sample_db, cli, tmp_path):
    # as in production, no declared FKs: blank keys load (and derive nothing)
    for fk in ("规模明细_计划代码_fkey", "规模明细_机构代码_fkey"):
        sample_db.execute(f'ALTER TABLE business."规模明细" DROP CONSTRAINT "{fk}"')
    apply_ok(cli, SAMPLE_CONFIG)
    insert_fact(sample_db, 计划代码="P90002", 组合代码="QT000001")  # derived before the load
    data = tmp_path / "facts.csv"
    data.write_text(textwrap.dedent("""\
        月度,计划代码,组合代码,机构代码
        2025-10-01,P00001,QT000001,G001
        2025-10-01,P90001,QT000002,G001
        2025-10-01,P90001,QT000002,G001
        2025-10-01,P90002,QT000003,(空白)
        2025-10-01,(空白),QT000003,
        2025-10-01,,QT000003,G950
        """), encoding="utf-8")
    result = cli("load", "annuity_performance", str(data))
    assert result.returncode == 0, result.stderr
    (domain, source, name, size, sha, rows, path, fks, ordered), = runs(sample_db)
    assert (domain, source, name, rows, ordered) == ("annuity_performance", "file", str(data), 6, True)
    assert size == data.stat().st_size and sha == hashlib.sha256(data.read_bytes()).hexdigest()
    assert path == "direct (server csv)"  # COPY straight into the fact table, its FKs verified set-based
    assert fks["fk_plan"] == {"keys_seen": 3, "authoritative": 1, "auto_derived": 1, "derived_now": 1}
    assert fks["fk_portfolio"] == {"keys_seen": 3, "authoritative": 3, "auto_derived": 0, "derived_now": 0}
    assert fks["fk_organization"] == {"keys_seen": 2, "authoritative": 1, "auto_derived": 0, "derived_now": 1}
    assert fks["fk_product_line"] == {"keys_seen": 0, "authoritative": 0, "auto_derived": 0, "derived_now": 0}

    # --rejects reads the file in Python: the path says so
    assert cli("load", "annuity_performance", str(data), "--rejects", str(tmp_path / "bad.csv"),
               "--force").returncode == 0
    second = runs(sample_db)[1]
    assert second[6] == "staging (python, rejects)"
    assert second[3:5] == (size, sha)
    assert second[7]["fk_plan"] == {"keys_seen": 3, "authoritative": 1, "auto_derived": 2, "derived_now": 0}

    status = cli("status", "--loads")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["load", "domain", "file", "rows", "path", "started", "took", "foreign", "key",
                                "keys", "authoritative", "auto_derived", "derived", "now"]
    newest, older = lines[2:6], lines[6:10]
    assert newest[0].split()[:5] == ["2", "annuity_performance", str(data), "6", "staging"]
    assert newest[1].split() == ["fk_plan", "3", "1", "2", "0"]
    assert older[1].split() == ["fk_plan", "3", "1", "1", "1"]


def test_statement_mode_batches_are_recorded_once_per_statement(sample_db, cli, write_config):
    text = shipped_single_file().replace(
        "    fact_table: 规模明细\n", "    fact_table: 规模明细\n    trigger_mode: statement\n    defer_foreign_keys: true\n", 1)
    apply_ok(cli, write_config(text))
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "组合代码")
                         VALUES ('2025-10-01', 'P90001', 'QT000001'), ('2025-10-01', 'P90001', 'QT000001'),
                                ('2025-10-01', 'P00001', 'QT000001')""")
    (domain, source, name, size, sha, rows, path, fks, ordered), = runs(sample_db)
    assert (domain, source, name, size, sha, rows, path, ordered) == (
        "annuity_performance", "statement", None, None, None, 3, "statement", True)
    assert fks["fk_plan"] == {"keys_seen": 2, "authoritative": 1, "auto_derived": 0, "derived_now": 1}
    sample_db.execute("""UPDATE business."规模明细" SET "计划代码" = 'P00002' WHERE false""")  # no batch at all
    assert len(runs(sample_db)) == 1


def test_statement_mode_counts_every_statement_also_when_no_parent_is_missing(sample_db, cli, write_config):
    """The figures come from the keys the statement names, whether or not it
    derives anything; NULL keys are not counted."""
    text = shipped_single_file().replace(
        "    fact_table: 规模明细\n", "    fact_table: 规模明细\n    trigger_mode: statement\n    defer_foreign_keys: true\n", 1)
    apply_ok(cli, write_config(text))
    insert = """INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-10-01', %s), ('2025-10-01', %s),
                                                                    ('2025-10-01', %s)"""
    derived = """SELECT "年金计划号" FROM mapping."年金计划" WHERE _source = 'auto_derived' ORDER BY 1"""
    sample_db.execute(insert, ["P00001", None, "P00001"])  # only known keys
    sample_db.execute(insert, ["P90001", "P00001", "P90001"])  # one new key
    sample_db.execute(insert, ["P90001", "P00002", "P00001"])  # the new key is there now
    sample_db.commit()
    batches = runs(sample_db)
    assert [(rows, fks["fk_plan"]) for (_, _, _, _, _, rows, _, fks, _) in batches] == [
        (3, {"keys_seen": 1, "authoritative": 1, "auto_derived": 0, "derived_now": 0}),
        (3, {"keys_seen": 2, "authoritative": 1, "auto_derived": 0, "derived_now": 1}),
        (3, {"keys_seen": 3, "authoritative": 2, "auto_derived": 1, "derived_now": 0}),
    ]
    assert batches[0][7]["fk_portfolio"] == {"keys_seen": 0, "authoritative": 0, "auto_derived": 0, "derived_now": 0}
    assert sample_db.execute(derived).fetchall() == [("P90001",)]
    assert sample_db.execute('SELECT count(*) FROM business."规模明细"').fetchone() == (9,)


def test_load_counts_keys_per_fk_when_two_fks_share_their_column(db, cli, write_config, tmp_path):
    """Each FK's keys are counted apart, also when another FK reads the same column."""
    db.execute("""CREATE TABLE a (k text PRIMARY KEY); INSERT INTO a VALUES ('k1');
                  CREATE TABLE b (k text PRIMARY KEY); INSERT INTO b VALUES ('k1'), ('k2');
                  CREATE TABLE fact (k text, j text)""")
    config = write_config(textwrap.dedent("""\
        domains:
          d:
            fact_table: fact
            foreign_keys:
              - {name: fk_a, source_column: k, target_table: a, target_key: k}
              - {name: fk_b, source_column: k, target_table: b, target_key: k}
              - {name: fk_j, source_column: j, target_table: b, target_key: k}
        """))
    apply_ok(cli, config)
    data = tmp_path / "facts.csv"
    data.write_text("k,j\nk1,k1\nk2,k2\nk3,\nk3,k9\n", encoding="utf-8")
    result = cli("--config", str(config), "load", "d", str(data))
    assert result.returncode == 0, result.stderr
    fks = runs(db)[0][7]
    assert fks["fk_a"] == {"keys_seen": 3, "authoritative": 1, "auto_derived": 0, "derived_now": 2}
    assert fks["fk_b"] == {"keys_seen": 3, "authoritative": 2, "auto_derived": 0, "derived_now": 1}
    assert fks["fk_j"] == {"keys_seen": 3, "authoritative": 2, "auto_derived": 0, "derived_now": 1}


LAST_FK_CONFIG = """\
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_k, source_column: k, target_table: p, target_key: k}
      - {name: fk_j, source_column: j, target_table: q, target_key: k}
"""


def _load_file(cli, config, tmp_path, lines: list[str], how: str):
    """One file loaded by `refdata load` (direct, or staged when read in Python)."""
    data = tmp_path / f"facts{len(list(tmp_path.glob('facts*.csv')))}.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra = ["--rejects", str(tmp_path / "rejects.csv"), "--force"] if how == "staging" else []
    result = cli("--config", str(config), "load", "d", str(data), *extra)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("how", ["direct", "staging"])
def test_a_key_missing_only_for_the_last_foreign_key_is_derived_and_counted(db, cli, write_config, tmp_path, how):
    """The derive looks for rows only when some FK misses a key: a key missing
    for the last FK alone, or a blank key alone (skipped, but counted), is
    still found; a file naming only known keys derives and counts nothing."""
    db.execute("""CREATE TABLE p (k text PRIMARY KEY); INSERT INTO p VALUES ('P1');
                  CREATE TABLE q (k text PRIMARY KEY); INSERT INTO q VALUES ('Q1');
                  CREATE TABLE fact (k text, j text)""")
    config = write_config(LAST_FK_CONFIG)
    apply_ok(cli, config)
    known = _load_file(cli, config, tmp_path, ["k,j", "P1,Q1", "P1,Q1"], how)
    assert "parents derived: public.p 0, public.q 0; blank keys skipped: 0" in known.stdout, known.stdout
    last = _load_file(cli, config, tmp_path, ["k,j", "P1,Q1", "P1,Q2", "P1,Q2"], how)
    assert "parents derived: public.p 0, public.q 1; blank keys skipped: 0" in last.stdout, last.stdout
    blank = _load_file(cli, config, tmp_path, ["k,j", "P1,Q1", "P1,(空白)", "P1, "], how)
    assert "parents derived: public.p 0, public.q 0; blank keys skipped: 2" in blank.stdout, blank.stdout
    assert db.execute("SELECT k, _source FROM q ORDER BY k").fetchall() == [("Q1", "authoritative"), ("Q2", "auto_derived")]
    figures = [(rows, fks["fk_k"], fks["fk_j"]) for (_, _, _, _, _, rows, _, fks, _) in runs(db)]
    assert figures == [
        (2, {"keys_seen": 1, "authoritative": 1, "auto_derived": 0, "derived_now": 0},
         {"keys_seen": 1, "authoritative": 1, "auto_derived": 0, "derived_now": 0}),
        (3, {"keys_seen": 1, "authoritative": 1, "auto_derived": 0, "derived_now": 0},
         {"keys_seen": 2, "authoritative": 1, "auto_derived": 0, "derived_now": 1}),
        (3, {"keys_seen": 1, "authoritative": 1, "auto_derived": 0, "derived_now": 0},
         {"keys_seen": 1, "authoritative": 1, "auto_derived": 0, "derived_now": 0}),
    ]


def test_fill_null_only_fills_when_no_key_is_missing_and_the_figures_count_both_modes(db, cli, write_config, tmp_path):
    """A fill_null_only FK needs the rows whose parents exist: its NULLs are
    filled by a statement that derives nothing, and with the keys another FK
    of the domain misses."""
    db.execute("""CREATE TABLE p (k text PRIMARY KEY, a text); INSERT INTO p VALUES ('P1', NULL), ('P2', 'kept');
                  CREATE TABLE q (k text PRIMARY KEY); INSERT INTO q VALUES ('Q1'), ('Q2');
                  CREATE TABLE fact (k text, a text, j text)""")
    config = write_config("""\
domains:
  d:
    fact_table: fact
    trigger_mode: statement
    foreign_keys:
      - {name: fk_k, source_column: k, target_table: p, target_key: k, derive_columns: [a], mode: fill_null_only}
      - {name: fk_j, source_column: j, target_table: q, target_key: k}
""")
    apply_ok(cli, config)
    db.execute("INSERT INTO fact VALUES ('P1', 'filled', 'Q2'), ('P2', 'not kept', 'Q1')")
    assert db.execute("SELECT k, a, _source FROM p ORDER BY k").fetchall() == [
        ("P1", "filled", "authoritative"), ("P2", "kept", "authoritative")]
    db.execute("INSERT INTO fact VALUES ('P1', 'again', 'Q3'), ('P4', 'new', 'Q1'), ('P4', 'newer', 'Q3')")
    assert db.execute("SELECT k, a, _source FROM p ORDER BY k").fetchall() == [
        ("P1", "filled", "authoritative"), ("P2", "kept", "authoritative"),
        ("P4", "new", "auto_derived")]
    assert db.execute("SELECT k, _source FROM q ORDER BY k").fetchall() == [
        ("Q1", "authoritative"), ("Q2", "authoritative"), ("Q3", "auto_derived")]
    figures = [(rows, fks["fk_k"], fks["fk_j"]) for (_, _, _, _, _, rows, _, fks, _) in runs(db)]
    assert figures == [
        (2, {"keys_seen": 2, "authoritative": 2, "auto_derived": 0, "derived_now": 0},
         {"keys_seen": 2, "authoritative": 2, "auto_derived": 0, "derived_now": 0}),
        (3, {"keys_seen": 2, "authoritative": 1, "auto_derived": 0, "derived_now": 1},
         {"keys_seen": 2, "authoritative": 1, "auto_derived": 0, "derived_now": 1}),
    ]
