"""Messages users read: every config mistake in plain words at its line, and
files in a Chinese Windows encoding named as such."""

from __future__ import annotations

import textwrap

import pytest

from generator.config import parse_config
from generator.errors import InputError

FK = "{name: fk_a, source_column: a, target_table: t, target_key: a%s}"
PYDANTIC_WORDING = ("Input should", "should have", "after validation", "valid dictionary", "instance of",
                    "unable to interpret", "Value error", "type=", "pydantic")


def error_of(text: str) -> str:
    with pytest.raises(InputError) as e:
        parse_config(textwrap.dedent(text), "cfg.yml")
    return str(e.value)


def one_fk(extra: str) -> str:
    return f"domains:\n  d:\n    foreign_keys:\n      - {FK % extra}\n"


# Every pydantic error type the config can trigger, with the plain message it becomes.
CASES = {
    "domains as a list": ("domains: []\n", "cfg.yml:1: field domains: must be a mapping (field: value), not a list"),
    "no foreign keys": ("domains:\n  d:\n    foreign_keys: []\n", "cfg.yml:3: domain d: foreign_keys is empty; list at least one"),
    "foreign key as text": ("domains:\n  d:\n    foreign_keys: [fk_a]\n",
                            "cfg.yml:3: domain d, foreign key #1: must be a mapping (field: value), not text 'fk_a'"),
    "literal": ("domains:\n  d:\n    trigger_mode: rows\n    foreign_keys: [" + FK % "" + "]\n",
                "cfg.yml:3: domain d: field trigger_mode: must be 'row' or 'statement', not text 'rows'"),
    "boolean": (one_fk(", skip_blank_values: perhaps"),
                "cfg.yml:4: domain d, foreign key fk_a: field skip_blank_values: must be true or false, not text 'perhaps'"),
    "number as name": ("domains:\n  d:\n    fact_table: 2024\n    foreign_keys: [" + FK % "" + "]\n",
                       "cfg.yml:3: domain d: field fact_table: must be text, not the number 2024 (quote it to make it text)"),
    "null name": (one_fk(", backfill_columns: [{source: x, target: null}]"),
                  "cfg.yml:4: domain d, foreign key fk_a: field backfill_columns[0].target: must be text, not nothing (null)"),
    "list expected": (one_fk(", depends_on: fk_b"),
                      "cfg.yml:4: domain d, foreign key fk_a: field depends_on: must be a list ([a, b]), not text 'fk_b'"),
    "mapping expected": (one_fk(", defaults: [x]"),
                         "cfg.yml:4: domain d, foreign key fk_a: field defaults: must be a mapping (field: value), not a list"),
    "key as a mapping": ("domains:\n  d:\n    foreign_keys:\n      - {name: fk_a, source_column: {a: 1}, target_table: t, target_key: a}\n",
                         "cfg.yml:4: domain d, foreign key fk_a: field source_column: "
                         "must be a column name or a list of column names, not a mapping"),
    "number in a key list": ("domains:\n  d:\n    foreign_keys:\n      - {name: fk_a, source_column: [1], target_table: t, target_key: [a]}\n",
                             "cfg.yml:4: domain d, foreign key fk_a: field source_column[0]: "
                             "must be a column name or a list of column names, not the number 1 (quote it to make it text)"),
    "default as a list": (one_fk(", defaults: {x: [1, 2]}"),
                          "cfg.yml:4: domain d, foreign key fk_a: field defaults.x: "
                          "must be one value (text, a number, true/false or null), not a list"),
    "unknown field": (one_fk(", depend_on: [fk_b]"),
                      "cfg.yml:4: domain d, foreign key fk_a: unknown field 'depend_on' (did you mean 'depends_on'?)"),
    "number as a domain name": ("domains:\n  2024:\n    foreign_keys: [" + FK % "" + "]\n",
                                "cfg.yml:2: field domains: the name 2024 must be text (quote it to make it text)"),
    "yes as a column name": (one_fk(", defaults: {yes: x}"),
                             "cfg.yml:4: domain d, foreign key fk_a: field defaults: the name true must be text "
                             "(YAML reads yes, no, on and off unquoted as true/false: quote it)"),
    "number as a field": (one_fk(", 1: x"), "cfg.yml:4: domain d, foreign key fk_a: unknown field 1"),
    "missing field": ("domains:\n  d:\n    foreign_keys:\n      - {name: fk_a, source_column: a, target_key: a}\n",
                      "cfg.yml:4: domain d, foreign key fk_a: missing required field 'target_table'"),
    "a foreign key's field in a backfill item": (one_fk(", backfill_columns: [{source: x, target: y, mode: first}]"),
                                                 "cfg.yml:4: domain d, foreign key fk_a: unknown field 'mode' "
                                                 "(a field of a foreign key, not of a backfill_columns item)"),
    "a backfill item's field on the foreign key": (one_fk(", code: 'lambda r: r'"),
                                                   "cfg.yml:4: domain d, foreign key fk_a: unknown field 'code' "
                                                   "(a field of a backfill_columns item, not of a foreign key)"),
    "a domain's field on a foreign key": (one_fk(", fact_table: f"),
                                          "cfg.yml:4: domain d, foreign key fk_a: unknown field 'fact_table' "
                                          "(a field of a domain, not of a foreign key)"),
}


@pytest.mark.parametrize("text, expected", CASES.values(), ids=list(CASES))
def test_config_errors_are_plain_words_at_their_line(text, expected):
    message = error_of(text)
    assert message == expected
    assert not any(w in message for w in PYDANTIC_WORDING), message


def test_unknown_depends_on_is_reported_at_the_depends_on_line():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: a
              - name: fk_portfolio
                source_column: b
                target_table: u
                target_key: b
                depends_on:
                  - fk_plan
                  - fk_plna
        """
    )
    assert message == ("cfg.yml:14: domain d, foreign key fk_portfolio: "
                       "depends_on names unknown foreign key 'fk_plna' (did you mean fk_plan?)")


# -- encodings ---------------------------------------------------------------------


CONFIG_TEXT = one_fk(", defaults: {计划名称: 待补充}")


@pytest.mark.parametrize("encoding, text", [("gbk", CONFIG_TEXT), ("gb18030", CONFIG_TEXT + "# 𠀀\n")])
def test_a_config_in_a_chinese_windows_encoding_says_which_and_how_to_convert(cli, tmp_path, encoding, text):
    path = tmp_path / "cfg.yml"
    path.write_bytes(text.encode(encoding))
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert result.stderr.startswith(f"refdata: error: {path}:4: config is not UTF-8 (byte 0x")
    assert result.stderr.rstrip().endswith(
        f"; it reads as {encoding.upper()}: convert it with iconv -f {encoding} -t utf-8")
    assert len(result.stderr.splitlines()) == 1


def test_a_config_that_is_no_known_encoding_says_not_utf8(cli, tmp_path):
    path = tmp_path / "cfg.yml"
    path.write_bytes(b"domains:\n  d: \xff\xff\n")
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert result.stderr == f"refdata: error: {path}:2: config is not UTF-8 (byte 0xff)\n"


@pytest.mark.parametrize("character, shown", [("\x00", "U+0000"), ("\x1b", "U+001B"), ("\ufffe", "U+FFFE")])
@pytest.mark.parametrize("sync", [False, True], ids=["config", "sync-config"])
def test_a_config_holding_a_character_yaml_refuses_is_one_line_naming_its_line(cli, tmp_path, character, shown, sync):
    """YAML allows no NUL, no raw control character besides tab and line
    breaks: PyYAML's message for them was two lines with a position and no
    line number."""
    path = tmp_path / "cfg.yml"
    text = f"domains:\n  d:\n    fact_table: f{character}\n"
    if sync:
        path.write_text(one_fk(""), encoding="utf-8")
        sync_path = tmp_path / "reference_sync.yml"
        sync_path.write_text(f'schema_version: "1.0"\nenabled: true\ntables: []  # {character}\n', encoding="utf-8")
        result = cli("--config", str(path), "validate", "--sync-config", str(sync_path), db=None)
        path = sync_path
    else:
        path.write_text(text, encoding="utf-8")
        result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"refdata: error: {path}:3: invalid YAML: the character {shown} is not allowed "
                             "in YAML\n"), result.stderr


@pytest.mark.parametrize("extra", [', defaults: {x: "a\\0b"}', ', blank_values: ["\\0"]',
                                   ', backfill_columns: [{source: a, target: b, aggregation: concat_distinct, separator: "\\0"}]',
                                   ', backfill_columns: [{target: b, aggregation: template, template: "x\\0{a}"}]'],
                         ids=["default", "blank value", "separator", "template"])
def test_a_nul_character_in_a_config_value_is_refused_at_its_line(extra):
    """YAML's "\\0" is a NUL character, which no PostgreSQL text holds: the
    apply failed at the parameters' step with 'unsupported Unicode escape
    sequence' (exit 1), and render wrote it into the script."""
    assert error_of(one_fk(extra)) == "cfg.yml:4: a NUL character (\\0), which PostgreSQL text cannot hold"


@pytest.mark.parametrize("text, expected", [
    ("loop: &a [*a]\n" + one_fk(""), None),
    ("domains: " + "[" * 3000 + "]" * 3000 + "\n", "cfg.yml: invalid YAML: nested deeper than a config can be"),
], ids=["alias of itself", "nested 3000 deep"])
def test_a_config_whose_structure_has_no_end_is_one_line(text, expected):
    """An alias may name the node it is part of, and lists may nest without
    end: a walk that followed them never finished (RecursionError, exit 1)."""
    if expected is None:
        assert parse_config(text, "cfg.yml").domains
    else:
        assert error_of(text) == expected


def test_a_csv_in_gbk_loaded_as_utf8_suggests_the_encoding(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = tmp_path / "gbk.csv"
    path.write_bytes("月度,计划代码,计划名称\n2025-11-01,PG1,国企年金计划\n".encode("gbk"))
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"refdata: error: {path}:1: ")
    assert result.stderr.rstrip().endswith("; the file reads as GBK: load it with --encoding gbk")
    assert len(result.stderr.splitlines()) == 1
    rejects = tmp_path / "rejects.csv"
    body = tmp_path / "body.csv"
    body.write_bytes("月度,计划代码\n".encode() + "2025-11-01,计划\n".encode("gb18030"))
    result = cli("load", "annuity_performance", str(body), "--rejects", str(rejects))
    assert "--encoding gbk" in rejects.read_text(encoding="utf-8")


@pytest.mark.parametrize("schema, table, hint", [
    ("mapping", "年金计划表", '"mapping"."年金计划"'),   # a close name in the same schema
    ("public", "年金计划", '"mapping"."年金计划"'),      # the same name in another schema
    ("mapp", "年金计划", '"mapping"."年金计划"'),        # a mistyped schema
])
def test_a_mistyped_table_gets_a_did_you_mean(cli, sample_db, write_config, schema, table, hint):
    path = write_config(
        "domains:\n  d:\n    fact_schema: business\n    fact_table: 规模明细\n    foreign_keys:\n"
        f"      - {{name: fk_plan, source_column: 计划代码, target_schema: {schema}, target_table: {table}, "
        "target_key: 年金计划号}\n")
    result = cli("--config", str(path), "validate")
    assert result.returncode == 2
    assert f'target table "{schema}"."{table}" does not exist (did you mean {hint}?)' in result.stderr


def test_a_mistyped_fact_table_gets_a_did_you_mean(cli, sample_db, write_config):
    path = write_config(
        "domains:\n  d:\n    fact_schema: busines\n    fact_table: 规模明细\n    foreign_keys:\n"
        "      - {name: fk_plan, source_column: 计划代码, target_schema: mapping, target_table: 年金计划, "
        "target_key: 年金计划号}\n")
    result = cli("--config", str(path), "validate")
    assert result.returncode == 2
    assert 'fact table "busines"."规模明细" does not exist (did you mean "business"."规模明细"?)' in result.stderr
