"""The config against the FOREIGN KEYs a fact table declares (validate), and
`refdata init`, which writes a starting config from them."""

from __future__ import annotations

import pytest

from helpers import line_of

SCHEMA = """
CREATE SCHEMA ref;
CREATE SCHEMA fact;
CREATE TABLE ref."计划" ("计划号" text PRIMARY KEY, "名称" text);
CREATE TABLE ref."机构" ("机构代码" text PRIMARY KEY);
CREATE TABLE ref.product (code text, channel text, name text NOT NULL, PRIMARY KEY (code, channel));
CREATE TABLE fact.monthly_assets (
    "计划号" text REFERENCES ref."计划",
    "机构代码" text,
    product_code text,
    channel text,
    amount numeric,
    CONSTRAINT monthly_assets_product_fkey FOREIGN KEY (product_code, channel) REFERENCES ref.product
);
"""

CONFIG = """
domains:
  assets:
    fact_schema: fact
    fact_table: monthly_assets
    foreign_keys:
      - {name: fk_plan, source_column: 机构代码, target_schema: ref, target_table: 计划, target_key: 计划号}
"""


def test_validate_compares_the_config_with_the_declared_foreign_keys(cli, db, write_config):
    db.execute(SCHEMA)
    path = write_config(CONFIG)
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    fk, fact = f"{path}:{line_of(path, 'fk_plan')}", f"{path}:{line_of(path, 'fact_table:')}"
    assert warnings == [
        f'warning: {fk}: domain assets, foreign key fk_plan: no FOREIGN KEY on "fact"."monthly_assets" (机构代码) '
        'references "ref"."计划"; is target_table right?',
        f'warning: {fact}: "fact"."monthly_assets": not covered: monthly_assets_product_fkey (product_code, channel) '
        '-> "ref"."product"',
        f'warning: {fact}: "fact"."monthly_assets": not covered: monthly_assets_计划号_fkey (计划号) -> "ref"."计划"',
    ]


def test_a_config_matching_the_declared_foreign_keys_has_no_such_warnings(cli, sample_db):
    result = cli("validate")
    assert result.returncode == 0, result.stderr
    assert "not covered" not in result.stdout and "no FOREIGN KEY" not in result.stdout


def test_a_fact_table_declaring_no_foreign_keys_is_not_compared(cli, db, write_config):
    db.execute(SCHEMA.replace('REFERENCES ref."计划"', "").replace(
        "CONSTRAINT monthly_assets_product_fkey FOREIGN KEY (product_code, channel) REFERENCES ref.product", "x int"))
    result = cli("--config", str(write_config(CONFIG)), "validate")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stdout


# -- refdata init ---------------------------------------------------------------------

CHAIN = """
CREATE SCHEMA shop;
CREATE TABLE shop.store (code text PRIMARY KEY, city text NOT NULL, opened date NOT NULL, size int NOT NULL);
CREATE TABLE shop.terminal (id text PRIMARY KEY, store_code text NOT NULL REFERENCES shop.store,
                            kind varchar(3) NOT NULL);
CREATE TABLE shop.product (code text, channel text, name text NOT NULL, PRIMARY KEY (code, channel));
CREATE TABLE shop.sale (
    id bigint GENERATED ALWAYS AS IDENTITY,
    terminal_id text REFERENCES shop.terminal,
    store_code text REFERENCES shop.store,
    product_code text,
    channel text,
    city text,
    amount numeric,
    FOREIGN KEY (product_code, channel) REFERENCES shop.product
);
"""


def init_and_apply(cli, tmp_path, fact: str, *extra: str):
    out = tmp_path / "init.yml"
    result = cli("init", "--fact", fact, "-o", str(out), *extra)
    assert result.returncode == 0, result.stderr
    validate = cli("--config", str(out), "validate")
    assert validate.returncode == 0, (out.read_text(encoding="utf-8"), validate.stderr)
    assert "catalog: ok" in validate.stdout
    assert "warning" not in validate.stdout, validate.stdout
    applied = cli("--config", str(out), "apply")
    assert applied.returncode == 0, (out.read_text(encoding="utf-8"), applied.stderr)
    return out.read_text(encoding="utf-8")


def test_init_on_the_sample_schema_validates_applies_and_derives(cli, sample_db, tmp_path):
    text = init_and_apply(cli, tmp_path, 'business."规模明细"', "--domain", "annuity")
    assert "domains:\n  annuity:\n" in text
    # the portfolio's plan comes from the fact's plan column, after the plan
    assert '- {source: "计划代码", target: "年金计划号"}' in text
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "组合代码")
                         VALUES ('2025-10-01', 'PINIT1', 'QINIT1')""")
    assert sample_db.execute("""SELECT "年金计划号", _source FROM mapping."组合计划" WHERE "组合代码" = 'QINIT1'"""
                             ).fetchall() == [("PINIT1", "auto_derived")]


def test_init_with_a_composite_key_and_a_parent_chain(cli, db, tmp_path):
    db.execute(CHAIN)
    text = init_and_apply(cli, tmp_path, "shop.sale")
    assert '        source_column: ["product_code", "channel"]\n' in text
    assert '        target_key: ["code", "channel"]\n' in text
    assert '        depends_on: ["fk_store"]\n' in text          # the terminal's store comes first
    assert '- {source: "store_code", target: "store_code"}' in text
    assert '- {source: "city", target: "city"}' in text         # a fact column of the same name fills it
    assert '"opened": "1970-01-01"  # NOT NULL (date), no fact column of this name' in text
    assert '"kind": "(待补"  # NOT NULL (character varying(3))' in text
    assert '"name": "(待补充)"' in text
    db.execute("""INSERT INTO shop.sale (terminal_id, store_code, product_code, channel, city)
                  VALUES ('T1', 'S1', 'P1', 'web', '上海')""")
    assert db.execute("SELECT id, store_code, kind FROM shop.terminal").fetchall() == [("T1", "S1", "(待补")]
    assert db.execute("SELECT code, city, size FROM shop.store").fetchall() == [("S1", "上海", 0)]
    assert db.execute("SELECT code, channel, name FROM shop.product").fetchall() == [("P1", "web", "(待补充)")]


def test_init_refuses_an_unknown_table_and_an_existing_file(cli, db, tmp_path):
    result = cli("init", "--fact", "shop.nothing")
    assert result.returncode == 2
    assert result.stderr.startswith("refdata: error: --fact shop.nothing: ")
    out = tmp_path / "mine.yml"
    out.write_text("keep", encoding="utf-8")
    result = cli("init", "--fact", "shop.nothing", "-o", str(out))
    assert result.returncode == 2 and out.read_text(encoding="utf-8") == "keep"
