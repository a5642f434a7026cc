"""Rows the fact table's own constraints refuse (FK, CHECK, unique) during
`refdata load`: with --rejects they go to the rejects file with their line and
reason, in file order, and the rest loads; without, the error names the line."""

from __future__ import annotations

import csv

import pytest

FACT = 'business."规模明细"'
HEADER = "月度,计划代码,计划名称,组合代码,组合名称,产品线代码,机构代码,期末资产规模"
LINES = [
    HEADER,
    "2025-11-01,PR1,计划一,QR1,组合一,PL201,G000,10",   # 2 loads
    "2025-11-01,  ,计划二,,组合二,PL201,G000,20",        # 3 blank plan key: skipped, then the declared FK refuses it
    "2025-11-01,PR3,计划三,QR3,组合三,PL201,G000,30",   # 4 loads
    "2025-11-01,PR4,计划四,QR4,组合四,PL201,G000,-5",   # 5 CHECK refuses
    "2025-13-01,PR5,计划五,QR5,组合五,PL201,G000,50",   # 6 bad date: refused while reading
    "2025-11-01,PR1,计划一,QR6,组合六,PL201,G000,60",   # 7 unique (月度, 计划代码) refuses: line 2 came first
    "2025-11-01,PR8,计划八,QR8,组合八,PL201,G000,80",   # 8 loads
]


@pytest.fixture
def constrained(cli, sample_db, tmp_path):
    assert cli("apply").returncode == 0
    sample_db.execute(f'ALTER TABLE {FACT} ADD CONSTRAINT "规模非负" CHECK ("期末资产规模" >= 0), '
                      'ADD CONSTRAINT "每月一计划" UNIQUE ("月度", "计划代码")')
    path = tmp_path / "facts.csv"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def plans(db) -> list[str]:
    return [r[0] for r in db.execute(f'SELECT "计划代码" FROM {FACT} ORDER BY "计划代码"').fetchall()]


def test_with_rejects_every_refused_row_is_in_the_rejects_file_in_file_order(cli, sample_db, constrained, tmp_path):
    rejects = tmp_path / "rejects.csv"
    result = cli("load", "annuity_performance", str(constrained), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert "loaded 3 fact rows" in result.stdout and "rejected: 4" in result.stdout
    assert plans(sample_db) == ["PR1", "PR3", "PR8"]
    with open(rejects, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "column", "reason", "record"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("3", "计划代码"), ("5", ""), ("6", "月度"), ("7", "月度, 计划代码")]
    reasons = [r[2] for r in rows[1:]]
    assert "violates foreign key constraint" in reasons[0] and "(计划代码)=(  )" in reasons[0]
    assert 'violates check constraint "规模非负"' in reasons[1]
    assert 'violates unique constraint "每月一计划"' in reasons[3]
    assert [r[3] for r in rows[1:]] == [LINES[2], LINES[4], LINES[5], LINES[6]]
    # parents of refused rows were not derived; those of loaded rows were
    derived = [r[0] for r in sample_db.execute(
        """SELECT "年金计划号" FROM mapping."年金计划" WHERE _source = 'auto_derived' ORDER BY 1""").fetchall()]
    assert derived == ["PR1", "PR3", "PR8"]


def test_a_rejects_file_that_cannot_be_written_loads_nothing(cli, sample_db, constrained, tmp_path):
    """The refused rows are set aside only into the rejects file: when it
    cannot be written, loading the rest would lose them without a word."""
    rejects = tmp_path / "no such folder" / "rejects.csv"
    result = cli("load", "annuity_performance", str(constrained), "--rejects", str(rejects))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"refdata: error: --rejects {rejects}: cannot write: No such file or directory; "
                             "nothing was loaded\n")
    assert plans(sample_db) == []
    assert sample_db.execute("SELECT count(*) FROM refdata.load_run").fetchone() == (0,)
    # and the same file loads once the rejects file can be written
    rejects.parent.mkdir()
    assert cli("load", "annuity_performance", str(constrained), "--rejects", str(rejects)).returncode == 0
    assert plans(sample_db) == ["PR1", "PR3", "PR8"]


def test_without_rejects_the_error_names_the_line_and_nothing_loads(cli, sample_db, constrained, tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n".join([LINES[0], LINES[1], LINES[2], LINES[3]]) + "\n", encoding="utf-8")
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f'refdata: error: {path}:3: column "计划代码": insert or update on table '
                                    '"规模明细" violates foreign key constraint')
    assert result.stderr.rstrip().endswith("; nothing was loaded")
    assert len(result.stderr.splitlines()) == 1
    assert plans(sample_db) == []


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_a_rejects_file_that_is_the_file_being_loaded_is_refused_and_the_file_kept(cli, sample_db, constrained,
                                                                                   tmp_path, how):
    """`--rejects` naming the file being loaded (by its own path, a symbolic
    or a hard link) truncated it to its refused rows: the loaded rows' only
    copy was gone. Refused before anything is read; the file is as it was."""
    before = constrained.read_bytes()
    rejects = {"same path": constrained, "symlink": tmp_path / "link.csv", "hard link": tmp_path / "hard.csv"}[how]
    if how == "symlink":
        rejects.symlink_to(constrained)
    elif how == "hard link":
        rejects.hardlink_to(constrained)
    result = cli("load", "annuity_performance", str(constrained), "--rejects", str(rejects))
    assert (result.returncode, result.stderr) == (
        2, f"refdata: error: --rejects {rejects}: is the file being loaded; name another file\n")
    assert constrained.read_bytes() == before
    assert plans(sample_db) == []
