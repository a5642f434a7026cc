"""`refdata load` never loads less or more than the file holds: lines the
server's CSV parser reads as end of data, fields longer than Python's CSV
default limit, NUL bytes, and staged rows left behind by other transactions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

H = "月度,计划代码,计划名称,期末资产规模"
FACT = 'business."规模明细"'


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def facts(conn) -> list[tuple]:
    return conn.execute(f'SELECT "计划代码" FROM {FACT} ORDER BY "计划代码"').fetchall()


@pytest.fixture
def applied(sample_db, cli):
    result = cli("apply")
    assert result.returncode == 0, result.stderr
    return sample_db


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("options", [[], ["--null", "NULLX"]], ids=["server parse", "python parse"])
def test_a_line_holding_only_backslash_dot_is_a_bad_row_not_the_end(applied, cli, tmp_path, eol, options):
    """PostgreSQL's COPY CSV reads a line holding only `\\.` as end of data:
    a 3-row file loaded 1 row and said nothing. It is a malformed row: exit
    2 naming the line, nothing loaded."""
    rows = [H.encode(), "2025-11-01,PD1,a,1".encode(), b"\\.", "2025-11-01,PD3,c,3".encode()]
    path = write(tmp_path, "dot.csv", eol.join(rows) + eol)
    result = cli("load", "annuity_performance", str(path), *options)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"refdata: error: {path}:3: expected 4 fields, found 1"]
    assert facts(applied) == []


def test_a_quoted_backslash_dot_is_data(applied, cli, tmp_path):
    path = write(tmp_path, "dotq.csv", (H + '\n2025-11-01,PQ1,"\\.",1\n2025-11-01,PQ2,"x\n\\.\ny",2\n').encode())
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert applied.execute(f'SELECT "计划代码", "计划名称" FROM {FACT} ORDER BY 1').fetchall() == [
        ("PQ1", "\\."), ("PQ2", "x\n\\.\ny")]


@pytest.mark.parametrize("options", [[], ["--null", "NULLX"]], ids=["server parse", "python parse"])
def test_fields_longer_than_131072_characters_load_on_both_paths(applied, cli, tmp_path, options):
    huge = "长" * 200_000
    path = write(tmp_path, "huge.csv", (H + f"\n2025-11-01,PH1,{huge},1\n2025-11-01,PH2,b,2\n").encode())
    result = cli("load", "annuity_performance", str(path), *options)
    assert result.returncode == 0, result.stderr
    assert applied.execute(f'SELECT "计划代码", length("计划名称") FROM {FACT} ORDER BY 1').fetchall() == [
        ("PH1", 200_000), ("PH2", 1)]


def test_a_bad_row_after_a_huge_field_is_named_not_the_huge_row(applied, cli, tmp_path):
    huge = "x" * 200_000
    path = write(tmp_path, "hugebad.csv", (H + f"\n2025-11-01,PH1,{huge},1\n2025-11-01,PH2,b,abc\n").encode())
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'refdata: error: {path}:3: column "期末资产规模": invalid input syntax for type numeric: "abc"']
    assert facts(applied) == []


@pytest.mark.parametrize("options", [[], ["--null", "NULLX"]], ids=["server parse", "python parse"])
def test_a_nul_byte_names_line_and_column(applied, cli, tmp_path, options):
    path = write(tmp_path, "nul.csv", (H + "\n2025-11-01,PN1,a,1\n2025-11-01,PN2,b\x00c,2\n").encode())
    result = cli("load", "annuity_performance", str(path), *options)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'refdata: error: {path}:3: column "计划名称": NUL byte at byte 17 of the line']
    assert facts(applied) == []


def test_a_nul_byte_with_rejects_rejects_that_row(applied, cli, tmp_path):
    path = write(tmp_path, "nul.csv", (H + "\n2025-11-01,PN1,a,1\n2025-11-01,PN2,b\x00c,2\n2025-11-01,PN3,d,3\n").encode())
    rejects = tmp_path / "rejects.csv"
    result = cli("load", "annuity_performance", str(path), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert facts(applied) == [("PN1",), ("PN3",)]
    lines = rejects.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line,column,reason,record"
    assert lines[1].startswith("3,计划名称,NUL byte at byte 17 of the line,")
    assert len(lines) == 2


def test_staged_rows_of_finished_transactions_are_cleared_by_the_next_load(applied, cli, role, tmp_path):
    """A transaction that staged rows and committed without calling the load
    function leaves them behind; the next load clears every batch whose
    transaction is over (and never loads them)."""
    grants = ["GRANT USAGE ON SCHEMA refdata, refdata_stage TO {role}",
              'GRANT SELECT, INSERT ON refdata_stage."annuity_performance" TO {role}']
    loader = role("stale", grants)
    loader.autocommit = False
    loader.execute("""INSERT INTO refdata_stage."annuity_performance" ("月度", "计划代码") VALUES ('2025-11-01', 'STALE')""")
    loader.commit()
    stage = 'refdata_stage."annuity_performance"'
    assert applied.execute(f"SELECT count(*) FROM {stage}").fetchone() == (1,)

    path = write(tmp_path, "ok.csv", (H + "\n2025-11-01,PS1,a,1\n").encode())
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert applied.execute(f"SELECT count(*) FROM {stage}").fetchone() == (0,)
    assert facts(applied) == [("PS1",)]


def test_facts_are_inserted_in_load_order(applied, cli, tmp_path):
    """Facts go into the fact table in load order (`_rd_line`), whatever
    order the staged rows lie in: rows staged by hand in reverse, and a file,
    whose rows COPY numbers as it reads them, so the fact table's identity
    follows the file's lines. The staging table carries no index for COPY
    to keep up (apply drops the one older installs have), and a new one
    numbers rows from values cached per session."""
    stage = 'refdata_stage."annuity_performance"'
    assert applied.execute("""SELECT q.seqcache FROM pg_sequence AS q
                              WHERE q.seqrelid = pg_get_serial_sequence(%s, '_rd_line')::regclass""",
                           [stage]).fetchone() == (1000,)
    applied.execute(f'CREATE INDEX "annuity_performance__batch" ON {stage} ("_rd_batch")')
    assert cli("apply").returncode == 0
    assert applied.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [stage]).fetchone() == (0,)

    with applied.transaction():
        applied.execute(f"""INSERT INTO {stage} ("月度", "计划代码", "_rd_line")
                            SELECT '2025-11-01', 'PR' || i, i FROM generate_series(300, 1, -1) AS i""")
        applied.execute('SELECT facts FROM refdata."annuity_performance__load"(%s)', [["月度", "计划代码"]])
    assert [c for (c,) in applied.execute(f'SELECT "计划代码" FROM {FACT} ORDER BY id')] == \
        [f"PR{i}" for i in range(1, 301)]
    applied.execute(f"TRUNCATE {FACT}")

    codes = [f"PF{i:04d}" for i in range(3000)]
    random.Random(12).shuffle(codes)
    lines = [H] + [f"2025-11-01,{c},{'名' * 40},{i}" for i, c in enumerate(codes)]
    path = write(tmp_path, "order.csv", ("\n".join(lines) + "\n").encode())
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert [c for (c,) in applied.execute(f'SELECT "计划代码" FROM {FACT} ORDER BY id')] == codes
