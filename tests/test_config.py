"""The YAML config: both spellings parse, and every invalid config is refused
with one line that names the place (file:line, domain, foreign key, field)."""

from __future__ import annotations

import textwrap

import pytest

from generator.config import parse_config
from generator.errors import InputError

# The proposal's example (seed, Story 6.2.3), verbatim.
PROPOSAL_YAML = """\
domains:
  annuity_performance:
    foreign_keys:
      - name: "fk_plan"
        source_column: "年金计划号"
        target_table: "年金计划"
        target_key: "年金计划号"
        derive_columns: ["年金计划号"]
      - name: "fk_portfolio"
        source_column: "组合代码"
        target_table: "组合计划"
        target_key: "组合代码"
        depends_on: ["fk_plan"]
        derive_columns: ["组合代码", "年金计划号"]
      - name: "fk_product_line"
        source_column: "产品线"
        target_table: "产品线"
        target_key: "产品线代码"
        derive_columns: ["产品线"]
      - name: "fk_organization"
        source_column: "组织代码"
        target_table: "组织架构"
        target_key: "组织代码"
        derive_columns: ["组织代码"]
"""

RICH_YAML = """\
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
          - {source: 计划名称, target: 计划全称}
          - {source: 计划类型, target: 计划类型, optional: true}
          - {source: 机构代码, target: 主拓机构代码, aggregation: max_by, order_column: 期末资产规模}
          - {source: 客户名称, target: 客户名称, aggregation: min_by, order_column: 月度}
          - {source: 组合代码, target: 组合清单, aggregation: concat_distinct, separator: "/", sort: false}
          - {source: 组合代码, target: 组合数, aggregation: count_distinct}
          - {target: 备注, aggregation: template, template: "由 {计划代码} 于 {月度} 派生"}
        defaults:
          计划全称: "(待补充)"
          计划状态: 待审核
          排序: 0
          有效: true
        mode: fill_null_only
        skip_blank_values: false
        blank_values: ["(空白)", "-"]
      - name: fk_portfolio
        source_column: [计划代码, 组合代码]
        target_schema: mapping
        target_table: 组合计划
        target_key: [年金计划号, 组合代码]
        depends_on: [fk_plan]
"""


def error_of(text: str, source: str = "cfg.yml") -> str:
    with pytest.raises(InputError) as exc:
        parse_config(textwrap.dedent(text), source)
    message = str(exc.value)
    assert "\n" not in message
    return message


# -- what parses --------------------------------------------------------------


def test_proposal_example_parses_unchanged():
    config = parse_config(PROPOSAL_YAML, "proposal.yml")
    assert list(config.domains) == ["annuity_performance"]
    domain = config.domains["annuity_performance"]
    assert domain.fact_schema == "public"
    assert domain.fact_table_for("annuity_performance") == "annuity_performance"
    fks = {fk.name: fk for fk in domain.foreign_keys}
    assert list(fks) == ["fk_plan", "fk_portfolio", "fk_product_line", "fk_organization"]

    plan = fks["fk_plan"]
    assert plan.sources == ("年金计划号",)
    assert plan.keys == ("年金计划号",)
    assert (plan.target_schema, plan.target_table) == ("public", "年金计划")
    assert plan.mappings() == []  # the key itself is never a derived column

    portfolio = fks["fk_portfolio"]
    assert portfolio.depends_on == ["fk_plan"]
    assert [(m.source, m.target, m.aggregation) for m in portfolio.mappings()] == [
        ("年金计划号", "年金计划号", "first")
    ]

    product_line = fks["fk_product_line"]
    assert product_line.sources == ("产品线",)
    assert product_line.keys == ("产品线代码",)
    assert [(m.source, m.target) for m in product_line.mappings()] == []

    org = fks["fk_organization"]
    assert (org.sources, org.keys) == (("组织代码",), ("组织代码",))
    for fk in fks.values():
        assert fk.mode == "insert_missing"
        assert fk.skip_blank_values is True
        assert fk.defaults == {}


def test_rich_form_parses_every_option():
    config = parse_config(RICH_YAML, "rich.yml")
    domain = config.domains["annuity_performance"]
    assert (domain.fact_schema, domain.fact_table) == ("business", "规模明细")
    plan, portfolio = domain.foreign_keys

    assert (plan.target_schema, plan.target_table, plan.keys) == ("mapping", "年金计划", ("年金计划号",))
    mappings = {m.target: m for m in plan.mappings()}
    assert list(mappings) == ["计划全称", "计划类型", "主拓机构代码", "客户名称", "组合清单", "组合数", "备注"]
    assert mappings["计划全称"].aggregation == "first"
    assert mappings["计划全称"].optional is False
    assert mappings["计划类型"].optional is True
    assert (mappings["主拓机构代码"].aggregation, mappings["主拓机构代码"].order_column) == ("max_by", "期末资产规模")
    assert mappings["主拓机构代码"].sources() == ["机构代码", "期末资产规模"]
    assert (mappings["客户名称"].aggregation, mappings["客户名称"].order_column) == ("min_by", "月度")
    concat = mappings["组合清单"]
    assert (concat.aggregation, concat.separator, concat.sort) == ("concat_distinct", "/", False)
    assert mappings["组合数"].aggregation == "count_distinct"
    template = mappings["备注"]
    assert template.aggregation == "template"
    assert template.source is None
    assert template.sources() == ["计划代码", "月度"]

    assert plan.defaults == {"计划全称": "(待补充)", "计划状态": "待审核", "排序": 0, "有效": True}
    assert plan.mode == "fill_null_only"
    assert plan.skip_blank_values is False
    assert plan.blank_values == ["(空白)", "-"]

    assert portfolio.sources == ("计划代码", "组合代码")
    assert portfolio.keys == ("年金计划号", "组合代码")
    assert portfolio.depends_on == ["fk_plan"]


def test_shipped_config_parses():
    from generator.config import PROJECT_ROOT, load_config

    config = load_config(PROJECT_ROOT / "config" / "data_sources.yml")
    assert [fk.name for fk in config.domains["annuity_performance"].foreign_keys] == [
        "fk_plan", "fk_portfolio", "fk_product_line", "fk_organization"
    ]


# -- what is refused, and how it is said --------------------------------------


def test_unknown_field_on_a_foreign_key_names_domain_fk_field_and_line():
    message = error_of(
        """\
        domains:
          annuity_performance:
            foreign_keys:
              - name: fk_plan
                source_column: 计划代码
                target_table: 年金计划
                target_key: 年金计划号
                derive_colums: [计划全称]
        """
    )
    assert message == "cfg.yml:8: domain annuity_performance, foreign key fk_plan: unknown field 'derive_colums' (did you mean 'derive_columns'?)"


def test_unknown_field_in_a_backfill_column_names_its_line():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: k
                backfill_columns:
                  - source: x
                    target: y
                    agregation: first
        """
    )
    assert message == "cfg.yml:11: domain d, foreign key fk_plan: unknown field 'agregation' (did you mean 'aggregation'?)"


def test_unknown_field_on_a_domain():
    message = error_of(
        """\
        domains:
          d:
            fact_tabel: x
            foreign_keys:
              - {name: fk_a, source_column: a, target_table: t, target_key: a}
        """
    )
    assert message == "cfg.yml:3: domain d: unknown field 'fact_tabel' (did you mean 'fact_table'?)"


def test_duplicate_foreign_key_names():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - {name: fk_a, source_column: a, target_table: t, target_key: a}
              - {name: fk_b, source_column: b, target_table: u, target_key: b}
              - {name: fk_a, source_column: c, target_table: v, target_key: c}
        """
    )
    assert message == "cfg.yml:6: domain d, foreign key fk_a: name fk_a is used twice in this domain"


def test_unknown_depends_on():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - {name: fk_plan, source_column: a, target_table: t, target_key: a}
              - {name: fk_portfolio, source_column: b, target_table: u, target_key: b, depends_on: [fk_plna]}
        """
    )
    # At the depends_on line, not the domain's, with the name it probably meant.
    assert message == (
        "cfg.yml:5: domain d, foreign key fk_portfolio: "
        "depends_on names unknown foreign key 'fk_plna' (did you mean fk_plan?)"
    )


def test_depends_on_itself():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - {name: fk_a, source_column: a, target_table: t, target_key: a, depends_on: [fk_a]}
        """
    )
    assert message == "cfg.yml:4: domain d, foreign key fk_a: depends_on names the foreign key itself"


def test_composite_key_lengths_must_match():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_portfolio
                source_column: [计划代码, 组合代码]
                target_table: 组合计划
                target_key: [组合代码]
        """
    )
    assert message == (
        "cfg.yml:4: domain d, foreign key fk_portfolio: source_column has 2 column(s) but target_key has 1"
    )


def test_bad_aggregation():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: k
                backfill_columns:
                  - {source: x, target: y, aggregation: sum}
        """
    )
    assert message == (
        "cfg.yml:9: domain d, foreign key fk_plan: field backfill_columns[0].aggregation: "
        "must be 'first', 'max_by', 'min_by', 'concat_distinct', 'count_distinct', 'template', 'sql', "
        "'jsonb_append' or 'lambda', not text 'sum'"
    )


@pytest.mark.parametrize(
    "column, problem",
    [
        ("{source: x, target: y, aggregation: max_by}", "aggregation max_by needs order_column"),
        ("{source: x, target: y, aggregation: min_by}", "aggregation min_by needs order_column"),
        ("{target: y, aggregation: template}", "aggregation template needs template"),
        ("{target: y}", "aggregation first needs source"),
        ("{source: x, target: y, template: '{x}'}", "template is only used with aggregation: template"),
    ],
)
def test_aggregation_needs_its_settings(column, problem):
    message = error_of(
        f"""\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: k
                backfill_columns:
                  - {column}
        """
    )
    assert message == f"cfg.yml:9: domain d, foreign key fk_plan: field backfill_columns[0]: {problem}"


def test_template_placeholders_must_name_columns():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: k
                backfill_columns:
                  - {target: y, aggregation: template, template: "计划 {}"}
        """
    )
    assert message.startswith("cfg.yml:9: domain d, foreign key fk_plan: field backfill_columns[0]: ")
    assert "template placeholders name a column" in message


def test_key_column_mapped_by_backfill_columns():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: 计划代码
                target_table: 年金计划
                target_key: 年金计划号
                backfill_columns:
                  - {source: 计划名称, target: 年金计划号}
        """
    )
    assert message == (
        "cfg.yml:4: domain d, foreign key fk_plan: column '年金计划号' is the target key; "
        "it is always set from source_column"
    )


def test_key_column_in_defaults():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: 计划代码
                target_table: 年金计划
                target_key: 年金计划号
                defaults: {年金计划号: X}
        """
    )
    assert message == (
        "cfg.yml:4: domain d, foreign key fk_plan: defaults: column '年金计划号' is the target key; "
        "it is always set from source_column"
    )


def test_column_mapped_twice():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_plan
                source_column: a
                target_table: t
                target_key: k
                derive_columns: [名称]
                backfill_columns:
                  - {source: 全称, target: 名称}
        """
    )
    assert message == "cfg.yml:4: domain d, foreign key fk_plan: column '名称' is mapped twice"


def test_bad_mode():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - {name: fk_a, source_column: a, target_table: t, target_key: a, mode: upsert}
        """
    )
    assert message == (
        "cfg.yml:4: domain d, foreign key fk_a: field mode: must be 'insert_missing' or 'fill_null_only', "
        "not text 'upsert'"
    )


def test_missing_required_field():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_a
                source_column: a
                target_table: t
        """
    )
    assert message.startswith("cfg.yml:4: domain d, foreign key fk_a: ")
    assert message.endswith("missing required field 'target_key'")


def test_invalid_fk_name():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - {name: "fk plan", source_column: a, target_table: t, target_key: a}
        """
    )
    assert message.startswith("cfg.yml:4: domain d, foreign key fk plan: field name: ")
    assert "'fk plan' is not a valid name" in message


def test_no_domains():
    assert error_of("domains: {}\n") == "cfg.yml:1: field domains: no domains defined"


def test_not_a_mapping():
    assert error_of("- a\n- b\n") == "cfg.yml: expected a mapping with a 'domains' key"


def test_invalid_yaml_names_the_line():
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - name: fk_a
                source_column: [a, b
                target_table: t
        """
    )
    assert message.startswith("cfg.yml:6: invalid YAML: ")


def test_two_foreign_keys_into_one_table_by_different_keys_name_the_second_ones_line():
    # promotion on insert and the audit log know a reference table by one key
    message = error_of(
        """\
        domains:
          d:
            foreign_keys:
              - {name: fk_plan, source_column: code, target_table: plan, target_key: code}
          e:
            foreign_keys:
              - name: fk_name
                source_column: name
                target_table: plan
                target_key: name
        """
    )
    assert message == (
        'cfg.yml:10: domain e, foreign key fk_name: target_key ("name") of "public"."plan" is not the key '
        'domain d, foreign key fk_plan targets ("code"); promotion on insert and the audit log know a table '
        "by one key: target it by the same key")


def test_cli_validate_two_keys_into_one_table_in_foreign_keys_yml_exit_2_without_a_database(cli, tmp_path):
    (tmp_path / "data_sources.yml").write_text("domains:\n  d:\n    output: {table: f}\n", encoding="utf-8")
    rules = tmp_path / "foreign_keys.yml"
    rules.write_text(textwrap.dedent("""\
        schema_version: "1.2"
        domains:
          d:
            foreign_keys:
              - {name: fk_plan, source_column: code, target_table: plan, target_key: code}
              - {name: fk_name, source_column: name, target_table: plan, target_key: [name]}
        """), encoding="utf-8")
    result = cli("--config", str(rules), "validate", db=None)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f'refdata: error: {rules}:6: domain d, foreign key fk_name: target_key ("name") of "public"."plan" is not '
        'the key domain d, foreign key fk_plan targets ("code"); promotion on insert and the audit log know a '
        "table by one key: target it by the same key\n")


def test_an_error_in_what_an_alias_brings_in_names_the_line_of_the_alias():
    # the anchor's line is shared by every use of it: the alias says which use
    text = """\
        columns: &columns
          - {source: a, target: b, aggregaton: first}
        fk: &fk {name: fk_b, source_column: b, target_table: u, target_key: b, derive_colums: [b]}
        domains:
          d:
            foreign_keys:
              - name: fk_a
                source_column: a
                target_table: t
                target_key: a
                backfill_columns: *columns
        """
    assert error_of(text) == ("cfg.yml:11: domain d, foreign key fk_a: unknown field 'aggregaton' "
                              "(did you mean 'aggregation'?)")
    text = text.replace("backfill_columns: *columns", "derive_columns: [a]\n              - *fk")
    assert error_of(text) == ("cfg.yml:12: domain d, foreign key fk_b: unknown field 'derive_colums' "
                              "(did you mean 'derive_columns'?)")


# -- the CLI: exit code 2 and one line on stderr ------------------------------


def test_cli_validate_without_db_prints_order(cli, write_config, tmp_path):
    path = write_config(RICH_YAML)
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: 1 domain(s), 2 foreign key(s)",
        'domain annuity_performance (fact table "business"."规模明细"), processing order:',
        '  1. fk_plan: 计划代码 -> "mapping"."年金计划" (年金计划号)',
        '  2. fk_portfolio: 计划代码, 组合代码 -> "mapping"."组合计划" (年金计划号, 组合代码)  after fk_plan',
        "catalog: not checked (no database named by --db, $REFDATA_DB or $DATABASE_URL, and no embedded "
        f"cluster under {tmp_path / 'no-embedded-cluster'} yet)",
    ]
    assert result.stderr == ""


def test_cli_validate_proposal_example(cli, write_config):
    path = write_config(PROPOSAL_YAML)
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 0, result.stderr
    assert "4 foreign key(s)" in result.stdout


def test_cli_validate_unknown_field_exit_2_one_line(cli, write_config):
    path = write_config(
        textwrap.dedent(
            """\
            domains:
              annuity_performance:
                foreign_keys:
                  - name: fk_plan
                    source_column: 计划代码
                    target_table: 年金计划
                    target_key: 年金计划号
                  - name: fk_portfolio
                    source_column: 组合代码
                    target_table: 组合计划
                    target_key: 组合代码
                    depends: [fk_plan]
            """
        )
    )
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"refdata: error: {path}:12: domain annuity_performance, foreign key fk_portfolio: unknown field 'depends' (did you mean 'depends_on'?)\n"
    )


def test_cli_validate_invalid_yaml_exit_2(cli, write_config):
    path = write_config("domains:\n  d: [\n")
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"refdata: error: {path}:3: invalid YAML: ")
    assert "Traceback" not in result.stderr


def test_cli_validate_missing_file_exit_2(cli, tmp_path):
    path = tmp_path / "nowhere.yml"
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert result.stderr == f"refdata: error: {path}: config file not found\n"


def test_cli_config_from_environment(cli, write_config, tmp_path):
    path = write_config(PROPOSAL_YAML)
    result = cli("validate", db=None, env={"REFDATA_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: 1 domain(s), 4 foreign key(s)")
    missing = tmp_path / "missing.yml"
    result = cli("--config", str(missing), "validate", db=None, env={"REFDATA_CONFIG": str(path)})
    assert result.returncode == 2, "--config wins over $REFDATA_CONFIG"
    assert str(missing) in result.stderr


def test_cli_bad_arguments_exit_2(cli):
    result = cli("frobnicate", db=None)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("refdata: error: ")
    assert "invalid choice: 'frobnicate'" in result.stderr


@pytest.mark.parametrize(
    "fks, line, expected",
    [
        (
            "- {name: fk_a, source_column: a, target_table: t, target_key: a}\n"
            "- {name: fk_a, source_column: b, target_table: u, target_key: b}\n",
            5,
            "domain d, foreign key fk_a: name fk_a is used twice in this domain",
        ),
        (
            "- {name: fk_a, source_column: a, target_table: t, target_key: a, depends_on: [fk_x]}\n",
            4,
            "domain d, foreign key fk_a: depends_on names unknown foreign key 'fk_x'",
        ),
        (
            "- {name: fk_a, source_column: [a, b], target_table: t, target_key: [a, b, c]}\n",
            4,
            "domain d, foreign key fk_a: source_column has 2 column(s) but target_key has 3",
        ),
        (
            "- {name: fk_a, source_column: a, target_table: t, target_key: a,\n"
            "   backfill_columns: [{source: x, target: y, aggregation: median}]}\n",
            5,
            "domain d, foreign key fk_a: field backfill_columns[0].aggregation: must be 'first', ",
        ),
        (
            "- {name: fk_a, source_column: a, target_table: t, target_key: k,\n"
            "   backfill_columns: [{source: x, target: k}]}\n",
            4,
            "domain d, foreign key fk_a: column 'k' is the target key",
        ),
    ],
    ids=["duplicate", "unknown-depends-on", "composite-lengths", "bad-aggregation", "key-mapped"],
)
def test_cli_validate_config_errors_exit_2_one_line(cli, write_config, fks, line, expected):
    body = textwrap.indent(fks, "      ")
    path = write_config(f"domains:\n  d:\n    foreign_keys:\n{body}")
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"refdata: error: {path}:{line}: {expected}")


def test_cli_validate_identifier_longer_than_63_bytes(cli, write_config):
    table = "年金计划参考数据表用于自动派生缺失父级记录并标记待审核的长"  # 87 bytes
    path = write_config(
        "domains:\n  d:\n    foreign_keys:\n"
        f"      - {{name: fk_a, source_column: code, target_table: {table}, target_key: code}}\n"
    )
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"refdata: error: {path}:4: domain d, foreign key fk_a: ")
    assert "63 bytes" in result.stderr


@pytest.mark.parametrize("extra, message", [
    (", defaults: {_source: authoritative}", "defaults: column '_source' is refdata's own tracking column"),
    (", backfill_columns: [{source: a, target: _needs_review}]", "column '_needs_review' is refdata's own tracking column"),
    (", derive_columns: [_derived_at]", "column '_derived_at' is refdata's own tracking column"),
], ids=["defaults", "backfill target", "derive_columns"])
def test_a_tracking_column_set_by_the_config_is_refused(extra, message):
    """The derive's INSERT names the tracking columns itself: a config that
    set one too validated and applied, and then every writer's insert
    failed (column specified more than once)."""
    text = f"domains:\n  d:\n    foreign_keys:\n      - {{name: fk_a, source_column: a, target_table: t, target_key: a{extra}}}\n"
    with pytest.raises(InputError) as e:
        parse_config(text, "cfg.yml")
    assert str(e.value) == f"cfg.yml:4: domain d, foreign key fk_a: {message}; the config cannot set it"
