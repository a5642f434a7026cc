"""Loads into an install that an earlier refdata made and no apply brought
up to date since: one line saying what is out of date and the command that
fixes it, exit 1, nothing loaded; after the apply the same load goes through."""

from __future__ import annotations

from pathlib import Path

from generator import render

HEADER = "月度,计划代码,计划名称,组合代码,组合名称,产品线代码,机构代码,期末资产规模"
# The comment every refdata before the stamp left on its schema.
UNSTAMPED = "refdata: generated backfill functions, settings and review objects"


def _facts(tmp_path: Path) -> Path:
    path = tmp_path / "facts.csv"
    path.write_text(HEADER + "\n2025-11-01,PUP1,计划,QUP1,组合,PL201,G000,1\n", encoding="utf-8")
    return path


def _count(db) -> int:
    n = db.execute('SELECT count(*) FROM business."规模明细"').fetchone()[0]
    db.rollback()
    return n


def test_a_load_into_an_install_of_an_earlier_refdata_says_to_apply(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    # An earlier refdata's install: its schema comment, and a function this
    # refdata's load calls that it did not have.
    sample.execute(f"COMMENT ON SCHEMA refdata IS '{UNSTAMPED}'")
    sample.execute('DROP FUNCTION refdata."annuity_performance__load_ready"(text[], text, boolean)')
    sample.commit()
    before = _count(sample)
    for verify in ("set-based", "per-row"):
        r = cli("load", "annuity_performance", str(_facts(tmp_path)), "--verify", verify)
        assert r.returncode == 1, r.stderr
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert "does not exist" not in r.stderr
        assert "refdata's generated code in database" in r.stderr
        assert (f"was made by another version of refdata (this one renders {render.generated_code_stamp()}, "
                "it carries none: an earlier version)") in r.stderr
        assert "run refdata apply" in r.stderr and "nothing was loaded" in r.stderr
    assert _count(sample) == before
    assert cli("apply").returncode == 0
    r = cli("load", "annuity_performance", str(_facts(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert _count(sample) == before + 1


def test_a_load_whose_function_is_gone_names_it_and_says_to_apply(sample, cli, tmp_path):
    """The install is this version's, but a function of the domain's load is
    gone (dropped by hand, or by an uninstall of the domain run by another
    config): the line names it."""
    assert cli("apply").returncode == 0
    sample.execute('DROP FUNCTION refdata."annuity_performance__load"(text[], text)')
    sample.commit()
    r = cli("load", "annuity_performance", str(_facts(tmp_path)), "--verify", "per-row")
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert 'function "refdata"."annuity_performance__load"(text[], text) of domain annuity_performance' in r.stderr
    assert "run refdata apply" in r.stderr and "nothing was loaded" in r.stderr
