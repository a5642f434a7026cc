"""The config checked against the live catalog: every mismatch is one line
naming domain and foreign key, exit code 2, and nothing is applied."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from generator.config import PROJECT_ROOT

from helpers import line_of

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"


def fk_config(fks: str, fact: str = "fact_schema: business\n    fact_table: 规模明细") -> str:
    """One domain `annuity_performance` on the sample fact table with the given FK list (YAML)."""
    return (
        "domains:\n  annuity_performance:\n    "
        + fact
        + "\n    foreign_keys:\n"
        + textwrap.indent(textwrap.dedent(fks), "      ")
    )


PLAN_OK = """\
- name: fk_plan
  source_column: 计划代码
  target_schema: mapping
  target_table: 年金计划
  target_key: 年金计划号
  backfill_columns:
    - {source: 计划名称, target: 计划全称}
  defaults: {计划状态: 待审核}
"""


def refdata_exists(db) -> bool:
    return db.execute("SELECT to_regnamespace('refdata') IS NOT NULL").fetchone()[0]


def in_entry(path, line: int, problem: str) -> bool:
    """Whether config line `line` is within the entry `problem` names: the
    foreign key's (`domain D, foreign key F: ...`: the nearest `name:` at or
    above it is F's) or the domain's (`domain D: ...`: at or below `D:`)."""
    text = Path(path).read_text(encoding="utf-8").splitlines()
    m = re.match(r"domain (\w+)(?:, foreign key (\w+))?:", problem)
    if not m:
        return True
    domain, fk = m.groups()
    above = text[:line]
    if fk:
        names = [t for t in above if re.search(r"\bname: ", t)]
        return bool(names) and re.search(rf"\bname: {fk}\b", names[-1]) is not None
    return any(re.match(rf"\s*{domain}:", t) for t in above)


def tracking_columns(db) -> list[tuple]:
    return db.execute(
        "SELECT attrelid::regclass::text, attname FROM pg_attribute WHERE attname IN ('_source', '_needs_review', '_derived_from_domain', '_derived_at') AND NOT attisdropped"
    ).fetchall()


def triggers(db) -> list[tuple]:
    return db.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()


def refused(cli, db, path, *problems: str, line: int | None = None) -> None:
    """validate and apply both exit 2 with exactly these lines, each naming
    the config's line (`line` when given, else one within the entry its
    problem names: see in_entry); nothing is applied."""
    where = f"database {db.info.dbname} on {db.info.host}"  # every catalog error names the database
    for command in ("validate", "apply"):
        result = cli("--config", str(path), command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        named = [re.match(rf"refdata: error: {re.escape(str(path))}:(\d+): ", e) for e in result.stderr.splitlines()]
        assert len(named) == len(problems) and all(named), (command, result.stderr)
        lines = [int(m.group(1)) for m in named]
        expected = [f"refdata: error: {path}:{line or n}: {p} ({where})" for p, n in zip(problems, lines)]
        assert result.stderr.splitlines() == expected, command
        assert all(in_entry(path, n, p) for n, p in zip(lines, problems)), (command, lines)
        assert "Traceback" not in result.stderr
        assert not refdata_exists(db)
        assert tracking_columns(db) == []
        assert triggers(db) == []


# -- the happy path -----------------------------------------------------------


def test_validate_passes_on_the_sample(cli, sample_db, dsn):
    result = cli("--config", str(SAMPLE_CONFIG), "validate")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    last = result.stdout.splitlines()[-1]
    assert last.startswith("catalog: ok (")
    assert not refdata_exists(sample_db), "validate changes nothing"
    assert tracking_columns(sample_db) == []


def test_validate_and_apply_when_the_fact_table_declares_no_foreign_keys(cli, db, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping."年金计划" ("年金计划号" text PRIMARY KEY, "计划全称" text);
        CREATE TABLE business."规模明细" ("月度" date, "计划代码" text, "计划名称" text);
        """
    )
    path = write_config(
        fk_config(
            """\
            - name: fk_plan
              source_column: 计划代码
              target_schema: mapping
              target_table: 年金计划
              target_key: 年金计划号
              backfill_columns: [{source: 计划名称, target: 计划全称}]
            """
        )
    )
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("catalog: ok")
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    db.execute("""INSERT INTO business."规模明细" VALUES ('2025-10-01', 'P1', '新计划')""")
    assert db.execute(
        """SELECT "年金计划号", "计划全称", "_source", "_needs_review" FROM mapping."年金计划" """
    ).fetchall() == [("P1", "新计划", "auto_derived", True)]


def test_optional_column_missing_in_fact_table_is_a_warning(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            PLAN_OK
            + """\
            - name: fk_org
              source_column: 机构代码
              target_schema: mapping
              target_table: 组织架构
              target_key: 机构代码
              backfill_columns:
                - {source: 机构全称, target: 机构, optional: true}
            """.replace("            ", "")
        )
    )
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert (
        f'warning: {path}:{line_of(path, "机构全称")}: domain annuity_performance, foreign key fk_org: optional column '
        '"机构" skipped: column "机构全称" does not exist in "business"."规模明细" (did you mean "机构名称"?)'
    ) in result.stdout.splitlines()
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    assert f"warning: {path}:{line_of(path, '机构全称')}: domain annuity_performance, foreign key fk_org: optional " \
        "column" in result.stdout
    sample_db.execute("""INSERT INTO business."规模明细" ("月度", "机构代码") VALUES ('2025-10-01', 'G900')""")
    assert sample_db.execute(
        """SELECT "机构", "_source" FROM mapping."组织架构" WHERE "机构代码" = 'G900'"""
    ).fetchall() == [(None, "auto_derived")]


# -- refusals -----------------------------------------------------------------


def test_missing_fact_table(cli, sample_db, write_config):
    path = write_config(fk_config(PLAN_OK, fact="fact_schema: business\n    fact_table: 规模明细表"))
    refused(cli, sample_db, path, 'domain annuity_performance: fact table "business"."规模明细表" does not exist (did you mean "business"."规模明细"?)')


def test_missing_fact_table_when_it_defaults_to_the_domain_name(cli, sample_db, write_config):
    path = write_config(fk_config(PLAN_OK, fact="fact_schema: business"))
    refused(
        cli, sample_db, path,
        'domain annuity_performance: fact table "business"."annuity_performance" does not exist '
        "(fact_table is not set; it defaults to the domain name)",
    )


def test_fact_table_that_is_a_view(cli, sample_db, write_config):
    sample_db.execute("""CREATE VIEW business."规模视图" AS SELECT * FROM business."规模明细" """)
    path = write_config(fk_config(PLAN_OK, fact="fact_schema: business\n    fact_table: 规模视图"))
    refused(cli, sample_db, path, 'domain annuity_performance: fact table "business"."规模视图" is not a table')


def test_missing_parent_table(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            PLAN_OK
            + """\
            - name: fk_product_line
              source_column: 产品线代码
              target_schema: mapping
              target_table: 产品线表
              target_key: 产品线代码
            """.replace("            ", "")
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_product_line: target table "mapping"."产品线表" does not exist (did you mean "mapping"."产品线"?)',
    )


def test_missing_column_with_suggestion(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            """\
            - name: fk_plan
              source_column: 计划代码
              target_schema: mapping
              target_table: 年金计划
              target_key: 年金计划号
              derive_columns: [计划名称]
              defaults: {计划全称: "(待补充)", 计划状态: 待审核}
            """
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_plan: column "计划名称" does not exist in "mapping"."年金计划" '
        '(did you mean "计划全称"?)',
    )


def test_missing_source_and_key_columns(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            """\
            - name: fk_org
              source_column: 组织代码
              target_schema: mapping
              target_table: 组织架构
              target_key: 组织代码
            """
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_org: source_column: column "组织代码" does not exist in '
        '"business"."规模明细" (did you mean "组合代码"?)',
        'domain annuity_performance, foreign key fk_org: target_key: column "组织代码" does not exist in '
        '"mapping"."组织架构" (did you mean "机构代码"?)',
    )


def test_missing_backfill_source_column(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            """\
            - name: fk_org
              source_column: 机构代码
              target_schema: mapping
              target_table: 组织架构
              target_key: 机构代码
              backfill_columns: [{source: 机构全称, target: 机构}]
            """
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_org: backfill column 机构: column "机构全称" does not exist '
        'in "business"."规模明细" (did you mean "机构名称"?)',
    )


def test_target_key_not_unique(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            PLAN_OK
            + """\
            - name: fk_portfolio
              source_column: 计划代码
              target_schema: mapping
              target_table: 组合计划
              target_key: 年金计划号
              depends_on: [fk_plan]
            """.replace("            ", "")
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_portfolio: target_key ("年金计划号") is not a primary key '
        'or unique constraint of "mapping"."组合计划"',
        # and the key column alone cannot make a row: 组合代码 is the primary key
        'domain annuity_performance, foreign key fk_portfolio: column "组合代码" of "mapping"."组合计划" is NOT NULL '
        "without a default; map it (backfill_columns/derive_columns) or give it a value in defaults",
    )


def test_partial_unique_index_is_not_a_key(cli, db, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping.p (code text, active boolean);
        CREATE UNIQUE INDEX ON mapping.p (code) WHERE active;
        CREATE TABLE business.f (code text);
        """
    )
    path = write_config(
        fk_config(
            "- {name: fk_p, source_column: code, target_schema: mapping, target_table: p, target_key: code}\n",
            fact="fact_schema: business\n    fact_table: f",
        )
    )
    refused(
        cli, db, path,
        'domain annuity_performance, foreign key fk_p: target_key ("code") is not a primary key or unique '
        'constraint of "mapping"."p"',
    )


def test_incompatible_key_types(cli, db, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping."期间" ("期间号" integer PRIMARY KEY, "说明" text);
        CREATE TABLE business."规模明细" ("月度" date NOT NULL, "说明" text);
        """
    )
    path = write_config(
        fk_config(
            """\
            - name: fk_period
              source_column: 月度
              target_schema: mapping
              target_table: 期间
              target_key: 期间号
            """
        )
    )
    refused(
        cli, db, path,
        'domain annuity_performance, foreign key fk_period: column "月度" (date) of "business"."规模明细" cannot be '
        'stored in key column "期间号" (integer) of "mapping"."期间"',
    )


def test_incompatible_backfill_column_type(cli, db, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping.p (code text PRIMARY KEY, since integer);
        CREATE TABLE business.f (code text, "月度" date);
        """
    )
    path = write_config(
        fk_config(
            """\
            - name: fk_p
              source_column: code
              target_schema: mapping
              target_table: p
              target_key: code
              backfill_columns: [{source: 月度, target: since}]
            """,
            fact="fact_schema: business\n    fact_table: f",
        )
    )
    refused(
        cli, db, path,
        'domain annuity_performance, foreign key fk_p: column "月度" (date) of "business"."f" cannot be stored in '
        'column "since" (integer) of "mapping"."p"',
    )


def test_not_null_column_without_default_not_covered(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            """\
            - name: fk_plan
              source_column: 计划代码
              target_schema: mapping
              target_table: 年金计划
              target_key: 年金计划号
              backfill_columns: [{source: 计划名称, target: 计划全称}]
            """
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_plan: column "计划状态" of "mapping"."年金计划" is NOT NULL '
        "without a default; map it (backfill_columns/derive_columns) or give it a value in defaults",
    )


def test_bad_default_value(cli, db, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping."产品线" ("产品线代码" text PRIMARY KEY, "排序" integer NOT NULL);
        CREATE TABLE business."规模明细" ("产品线代码" text);
        """
    )
    path = write_config(
        fk_config(
            """\
            - name: fk_product_line
              source_column: 产品线代码
              target_schema: mapping
              target_table: 产品线
              target_key: 产品线代码
              defaults: {排序: abc}
            """
        )
    )
    refused(
        cli, db, path,
        'domain annuity_performance, foreign key fk_product_line: defaults: invalid input syntax for type integer: "abc"',
    )


def test_a_default_a_check_constraint_of_the_parent_refuses_is_named_at_its_line(cli, sample_db, dsn, write_config):
    # a derived row would fail at insert time, in the middle of someone's load
    sample_db.execute("""ALTER TABLE mapping."年金计划" ADD CONSTRAINT "计划状态_known"
                             CHECK ("计划状态" IN ('正常', '待审核')) NOT VALID;
                         -- reads a mapped column too: the default alone does not decide it
                         ALTER TABLE mapping."年金计划" ADD CONSTRAINT named_or_normal
                             CHECK ("计划全称" IS NOT NULL OR "计划状态" = '正常') NOT VALID""")
    definition = sample_db.execute("""SELECT pg_get_constraintdef(oid) FROM pg_constraint
                                      WHERE conname = '计划状态_known'""").fetchone()[0]
    text = fk_config(PLAN_OK.replace("defaults: {计划状态: 待审核}", "defaults: {计划状态: 待批准}"))
    path = write_config(text)
    line = next(n for n, t in enumerate(text.splitlines(), start=1) if "待批准" in t)
    refused(cli, sample_db, path,
            'domain annuity_performance, foreign key fk_plan: defaults: a derived row of "mapping"."年金计划" '
            f'would break its check constraint "计划状态_known" ({definition}); give defaults it takes', line=line)
    # a read-only database (a standby) cannot judge them: validate says so and goes on
    read_only = make_conninfo(dsn, options="-c default_transaction_read_only=on")
    result = cli("--config", str(path), "validate", db=read_only)
    assert result.returncode == 0, result.stderr
    assert (f'warning: {path}:{line_of(path, "defaults:")}: domain annuity_performance, foreign key fk_plan: '
            'defaults: not checked against the CHECK constraints of "mapping"."年金计划" (the database is read-only)'
            ) in result.stdout.splitlines()
    path.write_text(fk_config(PLAN_OK), encoding="utf-8")
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr


def test_default_for_a_missing_column(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            """\
            - name: fk_plan
              source_column: 计划代码
              target_schema: mapping
              target_table: 年金计划
              target_key: 年金计划号
              backfill_columns: [{source: 计划名称, target: 计划全称}]
              defaults: {计划状况: 待审核, 计划状态: 待审核}
            """
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_plan: defaults: column "计划状况" does not exist in '
        '"mapping"."年金计划" (did you mean "计划状态"?)',
    )


def test_parent_referencing_another_parent_needs_depends_on(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            PLAN_OK
            + """\
            - name: fk_portfolio
              source_column: 组合代码
              target_schema: mapping
              target_table: 组合计划
              target_key: 组合代码
              backfill_columns: [{source: 计划代码, target: 年金计划号}]
            """.replace("            ", "")
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_portfolio: "mapping"."组合计划" references "mapping"."年金计划" '
        "(foreign key fk_plan); add depends_on: [fk_plan]",
    )


def test_every_problem_is_reported_one_line_each(cli, sample_db, write_config):
    path = write_config(
        fk_config(
            """\
            - name: fk_plan
              source_column: 计划代码
              target_schema: mapping
              target_table: 年金计划
              target_key: 年金计划号
              derive_columns: [计划名称]
            - name: fk_product_line
              source_column: 产品线代码
              target_schema: mapping
              target_table: 产品线表
              target_key: 产品线代码
            """
        )
    )
    result = cli("--config", str(path), "apply")
    assert result.returncode == 2
    where = f" (database {sample_db.info.dbname} on {sample_db.info.host})"
    assert all(line.endswith(where) for line in result.stderr.splitlines())
    lines = [line.removesuffix(where) for line in result.stderr.splitlines()]
    text = path.read_text(encoding="utf-8").splitlines()

    def at(fragment: str) -> str:  # each names the line of the entry it stems from
        return f"{path}:{next(n for n, t in enumerate(text, start=1) if fragment in t)}"

    assert lines == [
        f"refdata: error: {at('derive_columns: [计划名称]')}: domain annuity_performance, foreign key fk_plan: "
        'column "计划名称" does not exist in "mapping"."年金计划" (did you mean "计划全称"?)',
        f"refdata: error: {at('- name: fk_plan')}: domain annuity_performance, foreign key fk_plan: "
        'column "计划全称" of "mapping"."年金计划" is NOT NULL without a default; '
        "map it (backfill_columns/derive_columns) or give it a value in defaults",
        f"refdata: error: {at('- name: fk_plan')}: domain annuity_performance, foreign key fk_plan: "
        'column "计划状态" of "mapping"."年金计划" is NOT NULL without a default; '
        "map it (backfill_columns/derive_columns) or give it a value in defaults",
        f"refdata: error: {at('target_table: 产品线表')}: domain annuity_performance, foreign key fk_product_line: "
        'target table "mapping"."产品线表" does not exist (did you mean "mapping"."产品线"?)',
    ]
    assert not refdata_exists(sample_db)


@pytest.mark.parametrize("find, replace, at, problem", [
    ("fact_table: 规模明细", "fact_table: 规模明细表", "fact_table: 规模明细表",
     'domain annuity_performance: fact table "business"."规模明细表" does not exist (did you mean "business"."规模明细"?)'),
    ("source_column: 计划代码", "source_column: 计划代号", "source_column: 计划代号",
     'domain annuity_performance, foreign key fk_plan: source_column: column "计划代号" does not exist in '
     '"business"."规模明细" (did you mean "计划代码"?)'),
    ("{source: 计划名称, target: 计划全称}", "{source: 计划名称, target: 计划全称}\n          - {source: 客户名称, target: 客户全名}",
     "target: 客户全名}",
     'domain annuity_performance, foreign key fk_plan: column "客户全名" does not exist in "mapping"."年金计划" '
     '(did you mean "客户名称"?)'),
    ("defaults: {计划状态: 待审核}", "defaults:\n          计划全称: x\n          计划状态: 待审核待审核待审核", "计划状态: 待审核待审核待审核",
     "domain annuity_performance, foreign key fk_plan: defaults: value too long for type character varying(8)"),
])
def test_a_catalog_error_names_the_line_of_the_config_entry_it_stems_from(cli, sample_db, write_config,
                                                                         find, replace, at, problem):
    text = fk_config(PLAN_OK)
    assert text.count(find) == 1
    text = text.replace(find, replace)
    path = write_config(text)
    line = next(n for n, t in enumerate(text.splitlines(), start=1) if at in t)
    refused(cli, sample_db, path, problem, line=line)


def test_apply_rolls_back_when_a_statement_fails(cli, db, sample_db, write_config):
    # The catalog check passes, but a constraint of the same name makes the
    # second table's tracking columns fail: nothing of the apply may remain.
    sample_db.execute("""ALTER TABLE mapping."产品线" ADD CONSTRAINT "产品线__source_check" CHECK (true)""")
    path = write_config(
        fk_config(
            PLAN_OK
            + """\
            - name: fk_product_line
              source_column: 产品线代码
              target_schema: mapping
              target_table: 产品线
              target_key: 产品线代码
              defaults: {产品线: 待确认}
            """.replace("            ", "")
        )
    )
    result = cli("--config", str(path), "apply")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("refdata: error: apply failed at tracking mapping.产品线: ")
    assert result.stderr.rstrip().endswith(f"; nothing was applied (database {db.info.dbname} on {db.info.host})")
    assert not refdata_exists(sample_db)
    assert tracking_columns(sample_db) == []


@pytest.mark.parametrize("command", ["validate", "apply"])
def test_unreachable_database_is_exit_1_one_line(cli, write_config, tmp_path, command):
    path = write_config(fk_config(PLAN_OK))
    result = cli("--config", str(path), command, db=f"host={tmp_path} port=1 dbname=x user=nobody password=s3cret")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("refdata: error: cannot connect to ")
    assert "s3cret" not in result.stderr


def test_fact_column_with_the_reserved_prefix(cli, sample_db, write_config):
    sample_db.execute("""ALTER TABLE business."规模明细" ADD COLUMN "_rd_batch" bigint""")
    path = write_config(fk_config(PLAN_OK))
    refused(
        cli, sample_db, path,
        'domain annuity_performance: column "_rd_batch" of "business"."规模明细" uses the prefix _rd_ refdata reserves',
    )


def test_skipped_optional_mapping_does_not_cover_a_not_null_column(cli, sample_db, write_config):
    # 计划状态 is NOT NULL without a default; the only mapping to it is optional and its column is absent
    path = write_config(
        fk_config(
            """\
            - name: fk_plan
              source_column: 计划代码
              target_schema: mapping
              target_table: 年金计划
              target_key: 年金计划号
              backfill_columns:
                - {source: 计划名称, target: 计划全称}
                - {source: 计划状态码, target: 计划状态, optional: true}
            """
        )
    )
    refused(
        cli, sample_db, path,
        'domain annuity_performance, foreign key fk_plan: column "计划状态" of "mapping"."年金计划" is NOT NULL '
        "without a default; map it (backfill_columns/derive_columns) or give it a value in defaults",
    )
