"""The configuration files of the pipeline refdata replaces load unchanged:
the three-file layout, aggregations as objects, the key restated, priorities,
Python code left out with a warning (or refused), and what stays an error."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from generator.config import expression_problem, load_config, parse_config
from generator.errors import InputError
from generator.order import processing_order

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "workdatahub"
WARNINGS = [
    ("foreign_keys.yml:33", "domain annuity_performance, foreign key fk_plan", "备注", "lambda", "type: sql with an SQL expression"),
    ("foreign_keys.yml:105", "domain annuity_performance, foreign key fk_customer", "tags", "jsonb_append",
     "type: jsonb_append with source or expression (no code)"),
    ("foreign_keys.yml:236", "domain annual_loss, foreign key fk_customer", "tags", "lambda", "type: sql with an SQL expression"),
]


def expected_warnings(folder: Path) -> list[str]:
    return [
        f'{folder / place}: {where}: optional column "{column}" left out: aggregation {kind} with code runs '
        f"Python, which the database cannot run; write {instead} instead"
        for place, where, column, kind, instead in WARNINGS
    ]


@pytest.fixture
def files(tmp_path) -> Path:
    """A copy of the fixture files, to edit."""
    for f in FIXTURE.glob("*.yml"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def error_of(text: str, source: str = "cfg.yml") -> str:
    with pytest.raises(InputError) as e:
        parse_config(textwrap.dedent(text), source)
    return str(e.value)


def test_the_three_files_load_unchanged():
    config = load_config(FIXTURE / "data_sources.yml")
    tables = {name: (d.fact_schema, d.fact_table_for(name)) for name, d in config.domains.items()}
    # defaults.output.schema_name deep-merged, output.schema_name overrides; the
    # domain without foreign keys (sandbox_trustee_performance) is the pipeline's.
    assert tables == {
        "annuity_performance": ("business", "规模明细"),
        "annuity_income": ("business", "收入明细"),
        "annual_award": ("customer", "当年中标"),
        "annual_loss": ("customer", "当年流失"),
    }
    assert config.warnings == expected_warnings(FIXTURE)


def test_config_may_name_the_foreign_keys_file():
    by_rules = load_config(FIXTURE / "foreign_keys.yml")
    assert by_rules == load_config(FIXTURE / "data_sources.yml")
    assert by_rules.warnings == expected_warnings(FIXTURE)


def test_foreign_keys_file_alone_uses_fact_table_or_domain_defaults(tmp_path):
    (tmp_path / "foreign_keys.yml").write_text(textwrap.dedent("""\
        schema_version: "1.2"
        domains:
          annuity_performance:
            fact_schema: business
            fact_table: 规模明细
            foreign_keys:
              - {name: fk_plan, source_column: 计划代码, target_table: 年金计划, target_key: 年金计划号}
          规模:
            foreign_keys:
              - {name: fk_plan, source_column: 计划代码, target_table: 年金计划, target_key: 年金计划号}
        """), encoding="utf-8")
    config = load_config(tmp_path / "foreign_keys.yml")
    assert [(d.fact_schema, d.fact_table_for(n)) for n, d in config.domains.items()] == [
        ("business", "规模明细"), ("public", "规模")
    ]


def test_aggregation_object_equals_flat_spelling():
    def mappings(columns: str):
        text = ("domains:\n  d:\n    foreign_keys:\n      - name: fk_plan\n        source_column: a\n"
                "        target_table: t\n        target_key: k\n        backfill_columns:\n" + columns)
        return parse_config(text).domains["d"].foreign_keys[0].mappings()

    objects = mappings(
        "          - {source: x, target: a1, aggregation: {type: max_by, order_column: o}}\n"
        "          - {source: x, target: a2, aggregation: {type: concat_distinct, separator: '/', sort: false}}\n"
        "          - {source: x, target: a3, aggregation: {type: count_distinct}}\n"
        "          - {target: a4, aggregation: {type: template, template: 新客}}\n"
        "          - {target: a5, aggregation: {type: template, template: '新建客户_{月度}', template_fields: [月度]}}\n"
    )
    flat = mappings(
        "          - {source: x, target: a1, aggregation: max_by, order_column: o}\n"
        "          - {source: x, target: a2, aggregation: concat_distinct, separator: '/', sort: false}\n"
        "          - {source: x, target: a3, aggregation: count_distinct}\n"
        "          - {target: a4, aggregation: template, template: 新客}\n"
        "          - {target: a5, aggregation: template, template: '新建客户_{月度}'}\n"
    )
    assert [(m.target, m.aggregation, m.order_column, m.separator, m.sort, m.template) for m in objects] == [
        (m.target, m.aggregation, m.order_column, m.separator, m.sort, m.template) for m in flat
    ]
    assert objects[4].sources() == ["月度"]


@pytest.mark.parametrize("column, problem", [
    ("{source: x, target: y, aggregation: {type: max_by, order_colum: o}}", "aggregation: unknown field 'order_colum'"),
    ("{source: x, target: y, aggregation: {order_column: o}}", "aggregation: missing required field 'type'"),
    ("{source: x, target: y, order_column: p, aggregation: {type: max_by, order_column: o}}",
     "order_column is given both in aggregation and beside it"),
    ("{target: y, aggregation: {type: template, template: '新建_{月度}', template_fields: [计划代码]}}",
     "template_fields ['计划代码'] do not match the template's placeholders ['月度']"),
    ("{source: x, target: y, aggregation: {type: lambda, code: 'lambda g: 1'}}",
     "aggregation lambda with code runs Python, which the database cannot run; write type: sql with an SQL "
     "expression instead; mark it optional: true to leave it out"),
    ("{source: x, target: y, aggregation: {type: lambda}}", "aggregation lambda needs code"),
    ("{target: y, aggregation: {type: sql}}", "aggregation sql needs expression"),
    ("{target: y, aggregation: {type: sql, expression: 'min(x); DROP TABLE t'}}", "expression: ';' is not allowed"),
    ("{source: x, target: y, expression: 'min(x)'}", "expression is only used with aggregation: sql or jsonb_append"),
    ("{source: x, target: y, aggregation: {type: max_by, order_column: o}, code: 'lambda g: 1', optional: true}",
     "code is only used with aggregation: lambda or jsonb_append"),
])
def test_aggregation_objects_refused_with_the_place(column, problem):
    message = error_of(f"""\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: k
                backfill_columns:
                  - {column}
        """)
    assert message.startswith("cfg.yml:9: domain d, foreign key fk_plan: field backfill_columns[0]: " + problem), message


def test_python_code_without_optional_is_an_error_in_the_foreign_keys_file(files):
    path = files / "foreign_keys.yml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "            target: 备注\n            optional: true\n", "            target: 备注\n"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_config(files / "data_sources.yml")
    assert str(e.value) == (
        f"{path}:33: domain annuity_performance, foreign key fk_plan: field backfill_columns[7]: aggregation lambda "
        "with code runs Python, which the database cannot run; write type: sql with an SQL expression instead; "
        "mark it optional: true to leave it out"
    )


def test_unknown_key_in_a_foreign_key_stays_an_error(files):
    path = files / "foreign_keys.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("        priority: 3\n", "        prority: 3\n", 1),
                    encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_config(files / "data_sources.yml")
    assert str(e.value) == f"{path}:60: domain annuity_performance, foreign key fk_product_line: unknown field 'prority' (did you mean 'priority'?)"


def test_misspelt_domain_setting_stays_an_error_pipeline_keys_do_not(files):
    path = files / "data_sources.yml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    sheet_name: 当年中标\n", "    sheet_name: 当年中标\n    fact_tabel: x\n"),
                    encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_config(path)
    assert str(e.value) == f"{path}:36: domain annual_award: unknown field 'fact_tabel' (did you mean 'fact_table'?)"


@pytest.mark.parametrize("name, version", [("data_sources.yml", "2.0"), ("foreign_keys.yml", "3.1")])
def test_unknown_major_schema_version(files, name, version):
    path = files / name
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('schema_version: "1.', f'schema_version: "{version}  # was 1.', 1)
                    .replace(f'"{version}  # was 1.1"', f'"{version}"').replace(f'"{version}  # was 1.2"', f'"{version}"'),
                    encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_config(files / "data_sources.yml")
    assert str(e.value).startswith(f"{path}:")
    assert f"schema_version '{version}' is not supported" in str(e.value)


def test_known_minor_versions_and_reference_sync_file_are_accepted(files):
    (files / "reference_sync.yml").write_text("this: [is not read\n", encoding="utf-8")
    for version in ("1.0", "1.1", "1.2"):
        path = files / "foreign_keys.yml"
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(text.splitlines()[5], f'schema_version: "{version}"'), encoding="utf-8")
        assert len(load_config(files / "data_sources.yml").domains) == 4


def test_key_restated_as_a_mapping_is_the_key():
    config = parse_config("""\
domains:
  d:
    foreign_keys:
      - name: fk_plan
        source_column: 计划代码
        target_table: 年金计划
        target_key: 年金计划号
        backfill_columns:
          - {source: 计划代码, target: 年金计划号}
          - {source: 计划名称, target: 计划全称}
""")
    assert [m.target for m in config.domains["d"].foreign_keys[0].mappings()] == ["计划全称"]


def test_key_set_from_another_column_stays_an_error():
    message = error_of("""\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: 计划代码
                target_table: 年金计划
                target_key: 年金计划号
                backfill_columns:
                  - {source: 计划名称, target: 年金计划号}
        """)
    assert message == ("cfg.yml:4: domain d, foreign key fk_plan: column '年金计划号' is the target key; "
                       "it is always set from source_column")


def test_priority_breaks_ties_of_the_topological_order():
    config = parse_config("""\
domains:
  d:
    foreign_keys:
      - {name: fk_c, source_column: c, target_table: tc, target_key: c, priority: 3}
      - {name: fk_x, source_column: x, target_table: tx, target_key: x}
      - {name: fk_b, source_column: b, target_table: tb, target_key: b, priority: 2, depends_on: [fk_d]}
      - {name: fk_a, source_column: a, target_table: ta, target_key: a, priority: 1}
      - {name: fk_d, source_column: d, target_table: td, target_key: d, priority: 4}
""")
    assert [fk.name for fk in processing_order("d", config.domains["d"])] == ["fk_a", "fk_c", "fk_d", "fk_b", "fk_x"]


def test_blank_markers_default_to_the_excel_blank_marker():
    def markers(extra: str):
        text = f"domains:\n  d:\n    foreign_keys:\n      - {{name: fk_a, source_column: a, target_table: t, target_key: a{extra}}}\n"
        return parse_config(text).domains["d"].foreign_keys[0].markers

    assert markers("") == ("(空白)",)
    assert markers(", blank_values: ['-']") == ("-",)
    assert markers(", blank_values: []") == ()


@pytest.mark.parametrize("expression, problem", [
    ("to_char(min(\"上报月份\"), 'YYMM') || '新建'", None),
    ("string_agg(DISTINCT \"计划代码\", ';' ORDER BY \"计划代码\")", None),
    ("min(\"a\"\"b\") || 'it''s; -- not a comment'", None),
    ("min(x); DROP TABLE t", "';' is not allowed"),
    ("min(x) -- rest", "comments are not allowed"),
    ("min(x) /* c */", "comments are not allowed"),
    ("min(x)) FROM t UNION SELECT (1", "unbalanced parentheses"),
    ("min((x)", "unbalanced parentheses"),
    ("min(x) || 'open", "unterminated string literal"),
    ('min("x) || 1', "unterminated quoted name"),
    ("min(x) || $$a$$", "'$' is not allowed"),
    ("min(x) || '$refdata$'", "'$' is not allowed"),
    ("min(x) || E'\\\\'", "'\\\\' is not allowed"),
    ("(SELECT rolpassword FROM pg_authid LIMIT 1)", "subqueries are not allowed (SELECT)"),
    ("(TABLE pg_authid)", "subqueries are not allowed (TABLE)"),
    ("  ", "empty"),
])
def test_sql_expression_must_stay_one_expression(expression, problem):
    found = expression_problem(expression)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


def test_cli_validate_names_exactly_the_python_code_warnings(cli):
    for named in ("data_sources.yml", "foreign_keys.yml"):
        result = cli("--config", str(FIXTURE / named), "validate", db=None)
        assert result.returncode == 0, result.stderr
        warnings = [line.removeprefix("warning: ") for line in result.stdout.splitlines() if line.startswith("warning")]
        assert warnings == expected_warnings(FIXTURE)
        assert "4 domain(s), 14 foreign key(s)" in result.stdout


def test_settings_of_the_whole_config_come_from_either_file(files):
    path = files / "data_sources.yml"
    path.write_text(path.read_text(encoding="utf-8") + "observability:\n  reviewer_role: wdh_reviewer\n",
                    encoding="utf-8")
    assert load_config(files / "foreign_keys.yml").observability.reviewer_role == "wdh_reviewer"
    path.write_text(path.read_text(encoding="utf-8").replace("observability:", "observabilty:"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_config(path)
    assert str(e.value) == f"{path}:54: unknown field 'observabilty' (did you mean 'observability'?)"


def test_foreign_keys_left_in_data_sources_are_ignored_with_a_warning(files):
    path = files / "data_sources.yml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "      table: 受托业绩\n",
        "      table: 受托业绩\n    foreign_keys:\n"
        "      - {name: fk_plan, source_column: 计划代码, target_table: 年金计划, target_key: 年金计划号}\n"),
        encoding="utf-8")
    config = load_config(path)
    assert "sandbox_trustee_performance" not in config.domains
    assert config.warnings[0] == (f"{path}:54: domain sandbox_trustee_performance: foreign_keys ignored: "
                                  f"the rules come from {files / 'foreign_keys.yml'}")
    assert config.warnings[1:] == expected_warnings(files)
