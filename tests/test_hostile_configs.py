"""A corpus of broken and hostile configs (tests/corpus/configs): each gives
exit code 2 with exactly the lines its `# expect:` header says, through
`validate` and `apply`, and leaves the database exactly as it was. And values
that try to inject stay values."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from helpers import apply_config

CORPUS = sorted((Path(__file__).parent / "corpus" / "configs").glob("*.yml"))


def _expected(path: Path, shown: Path, db) -> list[str]:
    where = f"database {db.info.dbname} on {db.info.host}"
    return [f"refdata: error: {line.removeprefix('# expect: ').replace('{file}', str(shown)).replace('{db}', where)}"
            for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# expect: ")]


def _refused_everywhere(cli, db, snapshot, path: Path, expected: list[str]) -> None:
    before = snapshot(db)
    for command in ("validate", "apply"):
        result = cli("--config", str(path), command)
        assert (result.returncode, result.stderr.splitlines()) == (2, expected), command
    assert snapshot(db) == before, "the database is exactly as it was"


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_broken_or_hostile_config_is_refused_with_its_line(path, cli, sample_db, snapshot):
    expected = _expected(path, path, sample_db)
    assert expected, f"{path.name} has no '# expect:' line"
    _refused_everywhere(cli, sample_db, snapshot, path, expected)


def test_an_empty_file(cli, sample_db, snapshot, tmp_path):
    path = tmp_path / "data_sources.yml"
    path.write_bytes(b"")
    _refused_everywhere(cli, sample_db, snapshot, path,
                        [f"refdata: error: {path}: expected a mapping with a 'domains' key"])


HOSTILE_VALUES = r"""
domains:
  annuity_performance:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - name: fk_plan
        source_column: 计划代码
        target_schema: mapping
        target_table: 年金计划
        target_key: 年金计划号
        backfill_columns:
          - {target: 计划全称, aggregation: template, template: "{计划名称}'); DROP TABLE mapping.\"年金计划\"; -- $refdata$ %s %I"}
          - {source: 客户名称, target: 客户名称, aggregation: concat_distinct, separator: "'; DROP TABLE business.\"规模明细\"; --"}
        defaults:
          计划状态: "x'); --"
          主拓机构代码: "$$; DROP"
        blank_values: ["'); DROP TABLE mapping.\"年金计划\"; --", "$refdata$"]
"""


def test_values_that_try_to_inject_stay_values(cli, sample_db, write_config):
    apply_config(cli, write_config, HOSTILE_VALUES)
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "计划名称", "客户名称")
                         VALUES ('2025-10-01', 'P777', 'n''a"me', 'c1')""")
    # a blank marker holding a dollar tag is a marker: that key derives nothing (and fails the declared FK)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-10-01', '$refdata$')""")
    assert sample_db.execute("""SELECT "计划全称", "客户名称", "计划状态", "主拓机构代码", "_source"
                                FROM mapping."年金计划" WHERE "年金计划号" = 'P777'""").fetchone() == (
        """n'a"me'); DROP TABLE mapping."年金计划"; -- $refdata$ %s %I""", "c1", "x'); --", "$$; DROP", "auto_derived")
    assert sample_db.execute("""SELECT count(*) FROM mapping."年金计划" WHERE "年金计划号" = '$refdata$'""").fetchone() == (0,)
    assert sample_db.execute("""SELECT to_regclass('mapping."年金计划"') IS NOT NULL,
                                       to_regclass('business."规模明细"') IS NOT NULL""").fetchone() == (True, True)
