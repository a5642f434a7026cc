"""The main job end to end: `refdata demo` against a real server."""

import re

import psycopg
import pytest

from conftest import ROOT, RUN
from generator import demo
from generator.config import PROJECT_ROOT, DEFAULT_CONFIG, load_config

ROW = re.compile(r"^(mapping\.\S+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M)


def readme_counts() -> dict:
    """The table README.md shows for `bin/refdata demo`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("reference table   authoritative"):]
    block = block[: block.index("```")]
    return {m.group(1): tuple(map(int, m.groups()[1:])) for m in ROW.finditer(block)}


@pytest.fixture
def demo_database(dsn):
    """A per-run name: `refdata_demo` itself is cluster-wide."""
    name = f"refdata_demo_{RUN}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_demo_prints_the_counts_the_readme_shows(dsn, demo_database, capsys):
    path = PROJECT_ROOT / DEFAULT_CONFIG
    assert demo.run(dsn, load_config(path), str(path), database=demo_database) == 0
    out = capsys.readouterr().out
    printed = {m.group(1): tuple(map(int, m.groups()[1:])) for m in ROW.finditer(out)}
    expected = readme_counts()
    assert set(expected) == {"mapping.年金计划", "mapping.组合计划", "mapping.产品线", "mapping.组织架构"}
    assert printed == expected
    with psycopg.connect(dsn, dbname=demo_database) as conn:  # the table says what the database holds
        for table, (authoritative, derived, review) in expected.items():
            schema, name = table.split(".")
            assert conn.execute(
                f"""SELECT count(*) FILTER (WHERE _source = 'authoritative'), count(*) FILTER (WHERE _source = 'auto_derived'),
                           count(*) FILTER (WHERE _needs_review) FROM {schema}."{name}" """).fetchone() == (
                authoritative, derived, review)
