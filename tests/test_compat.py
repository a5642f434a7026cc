"""The pipeline's configuration files against a real server: the fixture set
in tests/fixtures/workdatahub applies and derives the same parents through the
row trigger, statement mode and `refdata load`; and the pieces that format
needs, one by one (code-point sort, count_distinct without blanks, `type: sql`,
`type: jsonb_append`)."""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import apply_config, line_of, stage_and_load

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "workdatahub"

# Fact rows per domain, in load order: (table, columns, rows).
FACTS = {
    "annuity_performance": ("business.规模明细", [
        "月度", "业务类型", "计划类型", "计划代码", "计划名称", "组合类型", "组合代码", "组合名称",
        "company_id", "客户名称", "期末资产规模", "产品线代码", "机构代码", "机构名称"], [
        ("2025-01-01", "企业年金受托", "集合计划", "P0100", "国电集合年金计划", "含权益", "QTAN101", "国电含权益组合",
         "C100", "国电集团有限公司", "500.00", "PL301", "G10", "广州分公司"),
        ("2025-01-01", "企业年金投资", "集合计划", "P0100", "国电集合年金计划", "固定收益", "QTAN100", "国电固收组合",
         "C100", "国电集团有限公司", "900.00", "PL202", "G11", "深圳分公司"),
        ("2025-02-01", "企业年金受托", "单一计划", "P0002", "中信集团企业年金计划", "固定收益", "QTAN001", "华能固收",
         "C100", "国电集团有限公司", "300.00", "PL201", "(空白)", "(空白)"),
        ("2025-02-01", "企业年金受托", "单一计划", "P0101", "海尔企业年金计划", "权益", "QTAN102", "海尔权益组合",
         "C001", "华能集团有限公司", None, "PL301", None, None),
    ]),
    "annuity_income": ("business.收入明细", [
        "月度", "计划代码", "计划名称", "组合代码", "company_id", "客户名称", "产品线代码", "机构代码", "机构名称", "固费"], [
        ("2025-01-01", "P0200", "宝钢企业年金计划", "QTAN200", "C200", "宝钢集团有限公司", "PL201", "G20", "南京分公司", "10.00"),
        ("2025-01-01", "P0200", "宝钢企业年金计划", "QTAN200", "C200", "宝钢集团有限公司", "PL201", "G21", "苏州分公司", "30.00"),
    ]),
    "annual_award": ("customer.当年中标", [
        "上报月份", "业务类型", "计划类型", "年金计划号", "company_id", "客户全称", "计划规模", "机构代码", "机构名称"], [
        ("2025-03-01", "企业年金受托", "单一计划", "P0300", "C002", "中信集团有限公司", "2000.00", "G01", "北京分公司"),
        ("2025-03-01", "企业年金投资", "单一计划", "P0300", "C002", "中信集团有限公司", "5000.00", "G02", "上海分公司"),
        ("2025-03-01", "企业年金受托", "集合计划", "P0301", "C001", "华能集团有限公司", "100.00", None, None),
        ("2025-03-01", "职业年金受托", "单一计划", "P0302", "C300", "海尔集团有限公司", "300.00", "G01", "北京分公司"),
    ]),
    "annual_loss": ("customer.当年流失", [
        "上报月份", "年金计划号", "company_id", "客户全称", "计划规模", "机构代码", "流失原因"], [
        ("2025-04-01", "P0400", "C400", "万科企业股份有限公司", "800.00", "G40", "招标失败"),
        ("2025-02-01", "P0401", "C400", "万科企业股份有限公司", "100.00", "(空白)", "合同到期"),
        ("2025-06-01", "(空白)", "C400", "万科企业股份有限公司", "50.00", "G40", None),
        ("2025-05-01", "P0001", "C002", "中信集团有限公司", "20.00", "G01", "其他"),
    ]),
}

AUTH = ("authoritative", False, None)


def derived(domain: str) -> tuple:
    return ("auto_derived", True, domain)


PLAN_COLUMNS = ["年金计划号", "计划全称", "计划类型", "客户名称", "主拓机构代码", "管理组合", "计划状态", "备注"]
CUSTOMER_COLUMNS = ["company_id", "客户名称", "年金客户类型", "最新规模", "关联计划", "关联计划数", "产品线", "备注", "tags"]


def expected(set_based: bool) -> dict:
    """Every reference row after the four loads. The row trigger takes a new
    key's values from its first row; the set-based paths aggregate the group."""
    ap, ai, aw, al = (derived(d) for d in FACTS)
    return {
        "mapping.年金计划": [
            ("P0001", "华能集团企业年金计划", "单一计划", "华能集团有限公司", "G01", None, "正常", None, *AUTH),
            ("P0002", "中信集团企业年金计划", "单一计划", "中信集团有限公司", "G02", None, "正常", None, *AUTH),
            ("P0100", "国电集合年金计划", "集合计划", "国电集团有限公司", "G11" if set_based else "G10",  # max_by 期末资产规模
             "QTAN100/QTAN101" if set_based else "QTAN101", "待审核", None, *ap),  # 备注: the lambda is left out
            ("P0101", "海尔企业年金计划", "单一计划", "华能集团有限公司", None, "QTAN102", "待审核", None, *ap),
            ("P0200", "宝钢企业年金计划", None, None, "G21" if set_based else "G20", None, "待审核", None, *ai),  # max_by 固费
            ("P0300", "(待补充)", None, "中信集团有限公司", "G02" if set_based else "G01", None, "中标待建", None, *aw),
            ("P0301", "(待补充)", None, "华能集团有限公司", None, None, "中标待建", None, *aw),
            ("P0302", "(待补充)", None, "海尔集团有限公司", "G01", None, "中标待建", None, *aw),
            ("P0400", "(待补充)", None, "万科企业股份有限公司", None, None, "已流失", None, *al),
            ("P0401", "(待补充)", None, "万科企业股份有限公司", None, None, "已流失", None, *al),
        ],
        "mapping.组合计划": [
            ("QTAN001", "P0001", "华能集团企业年金计划固定收益组合", "固定收益", *AUTH),
            ("QTAN100", "P0100", "国电固收组合", "固定收益", *ap),
            ("QTAN101", "P0100", "国电含权益组合", "含权益", *ap),
            ("QTAN102", "P0101", "海尔权益组合", "权益", *ap),
            ("QTAN200", "P0200", None, None, *ai),
        ],
        "mapping.产品线": [
            ("PL201", "企业年金受托", "企业年金", *AUTH),
            ("PL202", "待确认产品线", "企业年金投资", *ap),
            ("PL301", "待确认产品线", "企业年金受托", *ap),
        ],
        "mapping.组织架构": [  # "(空白)" keys derive nothing (skip_blank_values)
            ("G01", "北京分公司", "G00", *AUTH),
            ("G02", "上海分公司", "G00", *AUTH),
            ("G10", "广州分公司", None, *ap),
            ("G11", "深圳分公司", None, *ap),
            ("G20", "南京分公司", None, *ai),
            ("G21", "苏州分公司", None, *ai),
            ("G40", None, None, *al),
        ],
        "customer.客户明细": [
            # authoritative; annual_award (fill_null_only) appends its 业务类型 to tags and keeps 年金客户类型
            ("C001", "华能集团有限公司", "存量客户", None, None, None, None, None, ["VIP", "企业年金受托"], *AUTH),
            ("C002", "中信集团有限公司", "中标客户", None, None, None, None, None, ["企业年金受托", "企业年金投资"], *AUTH),
            ("C100", "国电集团有限公司", "新客", Decimal("900.00") if set_based else Decimal("500.00"),
             "P0002+P0100" if set_based else "P0100", 2 if set_based else 1,
             "PL201,PL202,PL301" if set_based else "PL301", None, [], *ap),  # tags: the jsonb_append lambda is left out
            ("C200", "宝钢集团有限公司", "新客", None, None, None, None, None, [], *ai),
            ("C300", "海尔集团有限公司", "中标客户", None, None, None, None, None, ["职业年金受托"], *aw),
            # count_distinct of 年金计划号 leaves out "(空白)"; 备注 is the type: sql expression
            ("C400", "万科企业股份有限公司", None, None, None, 2 if set_based else 1, None,
             "2502流失" if set_based else "2504流失", [], *al),
        ],
    }


TABLE_COLUMNS = {
    "mapping.年金计划": PLAN_COLUMNS,
    "mapping.组合计划": ["组合代码", "年金计划号", "组合名称", "组合类型"],
    "mapping.产品线": ["产品线代码", "产品线", "业务大类"],
    "mapping.组织架构": ["机构代码", "机构", "上级机构代码"],
    "customer.客户明细": CUSTOMER_COLUMNS,
}


def reference_rows(conn) -> dict:
    out = {}
    for table, columns in TABLE_COLUMNS.items():
        schema, name = table.split(".")
        cols = ", ".join(f'"{c}"' for c in columns + ["_source", "_needs_review", "_derived_from_domain"])
        out[table] = conn.execute(f'SELECT {cols} FROM "{schema}"."{name}" ORDER BY 1').fetchall()
    stamps = conn.execute('SELECT count(*) FROM customer."客户明细" WHERE created_at IS NULL OR updated_at IS NULL')
    assert stamps.fetchone()[0] == 0
    return out


def fact_table(table: str) -> str:
    schema, name = table.split(".")
    return f'"{schema}"."{name}"'


def setup_schema(db, tmp_path: Path, statement_mode: bool = False) -> Path:
    db.execute((FIXTURE / "schema.sql").read_text(encoding="utf-8"))
    folder = tmp_path / "config"
    folder.mkdir()
    for f in FIXTURE.glob("*.yml"):
        shutil.copy(f, folder / f.name)
    if statement_mode:
        rules = folder / "foreign_keys.yml"
        text = rules.read_text(encoding="utf-8").replace("\n    foreign_keys:\n", "\n    trigger_mode: statement\n    foreign_keys:\n")
        rules.write_text(text, encoding="utf-8")
    return folder


def check_warnings(result, folder: Path):
    from test_compat_config import expected_warnings

    assert result.returncode == 0, result.stderr
    warnings = [line.removeprefix("warning: ") for line in result.stdout.splitlines() if line.startswith("warning")]
    assert warnings == expected_warnings(folder)


@pytest.fixture
def loader(db, role):
    """A role that may only insert facts (and read them), as a loading job has."""
    name = f"wdh_loader_{uuid.uuid4().hex[:8]}"
    grants = ["GRANT USAGE ON SCHEMA business, customer TO {role}"] + [
        f"GRANT INSERT, SELECT ON {fact_table(t)} TO {{role}}" for t, _, _ in FACTS.values()]
    return lambda: role(name, grants)


def test_fixture_validates_with_exactly_the_python_code_warnings_and_applies(db, cli, tmp_path):
    folder = setup_schema(db, tmp_path)
    check_warnings(cli("--config", str(folder / "data_sources.yml"), "validate"), folder)
    check_warnings(cli("--config", str(folder / "foreign_keys.yml"), "apply"), folder)


def test_fixture_row_trigger(db, cli, tmp_path, loader):
    folder = setup_schema(db, tmp_path)
    assert cli("--config", str(folder / "data_sources.yml"), "apply").returncode == 0
    conn = loader()
    for table, columns, rows in FACTS.values():
        cols = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {fact_table(table)} ({cols}) VALUES ({marks})", rows)
    assert reference_rows(db) == expected(set_based=False)


def test_fixture_statement_mode(db, cli, tmp_path, loader):
    folder = setup_schema(db, tmp_path, statement_mode=True)
    result = cli("--config", str(folder / "data_sources.yml"), "apply")
    assert result.returncode == 0, result.stderr
    conn = loader()
    for table, columns, rows in FACTS.values():
        cols = ", ".join(f'"{c}"' for c in columns)
        with conn.cursor() as cur, cur.copy(f"COPY {fact_table(table)} ({cols}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
    assert reference_rows(db) == expected(set_based=True)


def test_fixture_refdata_load(db, cli, tmp_path):
    folder = setup_schema(db, tmp_path)
    assert cli("--config", str(folder / "data_sources.yml"), "apply").returncode == 0
    for domain, (table, columns, rows) in FACTS.items():
        path = tmp_path / f"{domain}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(["" if v is None else v for v in row] for row in rows)
        result = cli("--config", str(folder / "foreign_keys.yml"), "load", domain, str(path))
        assert result.returncode == 0, result.stderr
    assert reference_rows(db) == expected(set_based=True)
    facts = {t: db.execute(f"SELECT count(*) FROM {fact_table(t)}").fetchone()[0] for t, _, _ in FACTS.values()}
    assert facts == {t: len(rows) for t, _, rows in FACTS.values()}


# -- the pieces, one by one ----------------------------------------------------------

PIECES_SCHEMA = """
CREATE TABLE parent (
    k       text PRIMARY KEY,
    sorted  text,
    cnt     integer,
    cnt_all integer,
    label   text,
    tags    jsonb DEFAULT '[]'
);
CREATE TABLE fact (k text, v text COLLATE "zh-x-icu", m date, n numeric, o varchar(8) COLLATE "zh-x-icu");
"""


def pieces_config(columns: str, skip_blank: bool = True, mode: str = "insert_missing", trigger_mode: str = "row") -> str:
    return f"""
domains:
  pieces:
    fact_table: fact
    trigger_mode: {trigger_mode}
    foreign_keys:
      - name: fk_parent
        source_column: k
        target_table: parent
        target_key: k
        mode: {mode}
        skip_blank_values: {'true' if skip_blank else 'false'}
        backfill_columns:
{columns}"""


def parents(conn, columns="k, sorted, cnt, cnt_all, label, tags"):
    return conn.execute(f"SELECT {columns} FROM parent ORDER BY k").fetchall()


@pytest.fixture
def chinese_db(postgresql):
    """A database whose default collation sorts Chinese by pinyin (ICU "zh"),
    where code point order is not what ORDER BY gives."""
    from conftest import RUN

    name = f"refdata_zh_{RUN}_{uuid.uuid4().hex[:6]}"
    info = postgresql.info
    admin = psycopg.connect(host=info.host, port=info.port, user=info.user, dbname=info.dbname, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE \'zh\' '
                  f"LOCALE 'C.UTF-8'")
    dsn = make_conninfo(host=info.host, port=info.port, user=info.user, dbname=name)
    conn = psycopg.connect(dsn)
    try:
        conn.execute(PIECES_SCHEMA)
        conn.commit()
        yield conn, dsn
    finally:
        conn.close()
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


CHINESE = ["北京", "上海", "b", "C", "北京"]


def test_concat_distinct_sorts_by_code_point_whatever_the_collation(chinese_db, cli, write_config):
    conn, dsn = chinese_db
    # this database says 北京 (bei) < 上海 (shang), Chinese before Latin, b < C; Python sorts by code point
    assert conn.execute("SELECT array_agg(v ORDER BY v) FROM unnest(%s::text[]) AS v", [CHINESE]).fetchone()[0] == [
        "北京", "北京", "上海", "b", "C"]
    path = write_config(pieces_config(
        "          - {source: v, target: sorted, aggregation: {type: concat_distinct, separator: '+', sort: true}}\n"))
    assert cli("--config", str(path), "apply", db=dsn).returncode == 0
    stage_and_load(conn, "pieces", ["k", "v"], [("K1", v) for v in CHINESE])
    conn.execute("INSERT INTO fact (k, v) VALUES ('K2', '上海')")
    conn.commit()
    assert parents(conn, "k, sorted") == [("K1", "C+b+上海+北京"), ("K2", "上海")]
    assert "+".join(sorted(set(CHINESE))) == "C+b+上海+北京"


def test_max_by_and_min_by_order_strings_by_code_point(chinese_db, cli, write_config):
    conn, dsn = chinese_db
    path = write_config(pieces_config(
        "          - {source: v, target: label, aggregation: {type: max_by, order_column: o}}\n"
        "          - {source: v, target: sorted, aggregation: {type: min_by, order_column: o}}\n"
        "          - {source: v, target: tags, aggregation: {type: jsonb_append}}\n"))
    assert cli("--config", str(path), "apply", db=dsn).returncode == 0
    # by code point 上 (U+4E0A) < 北 (U+5317); this database says 北京 (bei) < 上海 (shang)
    stage_and_load(conn, "pieces", ["k", "v", "o"], [("K1", "from 北京", "北京"), ("K1", "from 上海", "上海")])
    assert parents(conn, "k, label, sorted, tags") == [("K1", "from 北京", "from 上海", ["from 北京", "from 上海"])]


@pytest.mark.parametrize("skip_blank, counted", [(True, 2), (False, 5)])
def test_count_distinct_counts_distinct_non_blank_values(postgresql, cli, write_config, skip_blank, counted):
    postgresql.execute(PIECES_SCHEMA)
    postgresql.commit()
    apply_config(cli, write_config, pieces_config(
        "          - {source: v, target: cnt, aggregation: {type: count_distinct}}\n", skip_blank))
    values = ["a", "(空白)", "", "  ", None, "b", "a", "(空白)"]
    stage_and_load(postgresql, "pieces", ["k", "v"], [("K1", v) for v in values])
    # the row trigger: a group of one blank row counts nothing (or one, blanks not skipped)
    postgresql.execute("INSERT INTO fact (k, v) VALUES ('K2', '(空白)'), ('K3', 'x'), ('K4', NULL)")
    postgresql.commit()
    assert parents(postgresql, "k, cnt") == [("K1", counted), ("K2", 0 if skip_blank else 1), ("K3", 1), ("K4", 0)]


SQL_COLUMNS = (
    "          - {target: label, aggregation: {type: sql, expression: \"to_char(min(\\\"m\\\"), 'YYMM') || '新建'\"}}\n"
    "          - {target: cnt, aggregation: {type: sql, expression: 'count(*) FILTER (WHERE n > 0)'}}\n"
)


@pytest.mark.parametrize("trigger_mode", ["row", "statement"])
def test_sql_expression_aggregates_the_group_and_a_single_row_alike(postgresql, cli, write_config, trigger_mode):
    postgresql.execute(PIECES_SCHEMA)
    postgresql.commit()
    apply_config(cli, write_config, pieces_config(SQL_COLUMNS, trigger_mode=trigger_mode))
    postgresql.execute("INSERT INTO fact (k, m, n) VALUES ('K1', '2025-03-01', 5), ('K1', '2024-12-01', 0), "
                       "('K1', '2025-01-01', 2)")
    stage_and_load(postgresql, "pieces", ["k", "m", "n"], [("K2", date(2025, 7, 1), 1), ("K2", date(2025, 6, 1), 1)])
    postgresql.commit()
    first_row_only = trigger_mode == "row"
    assert parents(postgresql, "k, label, cnt") == [
        ("K1", "2503新建" if first_row_only else "2412新建", 1 if first_row_only else 2),
        ("K2", "2506新建", 2),
    ]


@pytest.mark.parametrize("target, expression, problem", [
    ("label", 'min(\\"月份\\")', 'column "label": expression: column "月份" does not exist'),
    ("label", "upper(v)", 'column "label": expression: column "s.v" must appear in the GROUP BY clause or be used '
                          "in an aggregate function"),
    ("cnt", "max(m)", 'column "cnt" (integer) of "public"."parent" cannot store the date value of its expression'),
    # the generated functions see pg_catalog only, and so does the check
    ("label", "refdata_helper(min(v))", 'column "label": expression: function refdata_helper(text) does not exist'),
])
def test_sql_expression_is_checked_against_the_catalog(postgresql, cli, write_config, target, expression, problem):
    postgresql.execute(PIECES_SCHEMA + "CREATE FUNCTION public.refdata_helper(text) RETURNS text LANGUAGE sql "
                       "AS 'SELECT $1';")
    postgresql.commit()
    path = write_config(pieces_config(
        f"          - {{target: {target}, aggregation: {{type: sql, expression: \"{expression}\"}}}}\n"))
    result = cli("--config", str(path), "apply")
    assert result.returncode == 2, result.stderr
    line = line_of(path, f"{{target: {target}, aggregation")  # the mapping's own line
    assert result.stderr.startswith(f"refdata: error: {path}:{line}: domain pieces, foreign key fk_parent: {problem} "
                                    "(database "), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert postgresql.execute("SELECT to_regnamespace('refdata')").fetchone()[0] is None  # nothing applied


def test_optional_sql_expression_on_an_absent_column_is_left_out(postgresql, cli, write_config):
    postgresql.execute(PIECES_SCHEMA)
    postgresql.commit()
    path = write_config(pieces_config(
        "          - {target: label, optional: true, aggregation: {type: sql, expression: 'min(\"客户名称\")'}}\n"))
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    assert (f'warning: {path}:{line_of(path, "target: label")}: domain pieces, foreign key fk_parent: optional '
            'column "label" skipped: expression: column "客户名称" does not exist') in result.stdout
    postgresql.execute("INSERT INTO fact (k) VALUES ('K1')")
    assert parents(postgresql, "k, label") == [("K1", None)]


@pytest.mark.parametrize("expression", [
    "min(v) || '$refdata$'", "min(v)); DROP TABLE parent; SELECT (1", "min(v) -- ", "(SELECT max(k) FROM parent)",
])
def test_sql_expression_cannot_leave_its_place(postgresql, cli, write_config, expression):
    postgresql.execute(PIECES_SCHEMA)
    postgresql.commit()
    quoted = json.dumps(expression, ensure_ascii=False)  # a YAML double-quoted scalar
    path = write_config(pieces_config(f"          - {{target: label, aggregation: {{type: sql, expression: {quoted}}}}}\n"))
    for command in ("validate", "apply"):
        result = cli("--config", str(path), command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"refdata: error: {path}:14: domain pieces, foreign key fk_parent: "
                                        "field backfill_columns[0]: expression: "), result.stderr
    assert postgresql.execute("SELECT to_regclass('parent') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("trigger_mode", ["row", "statement"])
def test_jsonb_append_new_parents_get_distinct_values_existing_ones_get_what_they_lack(
        postgresql, cli, write_config, trigger_mode):
    postgresql.execute(PIECES_SCHEMA)
    postgresql.execute("""INSERT INTO parent (k, tags) VALUES ('OLD', '["VIP", "b"]'), ('NUL', NULL),
                          ('OBJ', '{"not": "an array"}')""")
    postgresql.commit()
    apply_config(cli, write_config, pieces_config(
        "          - {source: v, target: tags, aggregation: {type: jsonb_append}}\n",
        mode="fill_null_only", trigger_mode=trigger_mode))
    postgresql.execute("""INSERT INTO fact (k, v) VALUES ('NEW', 'b'), ('NEW', NULL), ('NEW', 'a'), ('NEW', 'b'),
                          ('OLD', 'b'), ('OLD', 'c'), ('NUL', 'x'), ('OBJ', 'y')""")
    postgresql.commit()
    assert parents(postgresql, "k, tags") == [
        ("NEW", ["b", "a"]), ("NUL", ["x"]), ("OBJ", {"not": "an array"}), ("OLD", ["VIP", "b", "c"]),
    ]


def test_jsonb_append_expression_and_target_type(postgresql, cli, write_config):
    postgresql.execute(PIECES_SCHEMA)
    postgresql.commit()
    apply_config(cli, write_config, pieces_config(
        "          - {target: tags, aggregation: {type: jsonb_append, expression: \"jsonb_agg(n ORDER BY n DESC)\"}}\n"))
    stage_and_load(postgresql, "pieces", ["k", "n"], [("K1", 1), ("K1", 3), ("K1", 1), ("K1", None)])
    postgresql.execute("INSERT INTO fact (k, n) VALUES ('K2', 5)")  # the row trigger: a group of one row
    postgresql.commit()
    assert parents(postgresql, "k, tags") == [("K1", [3, 1]), ("K2", [5])]
    path = write_config(pieces_config("          - {source: v, target: label, aggregation: {type: jsonb_append}}\n"))
    result = cli("--config", str(path), "apply")
    assert result.returncode == 2
    line = line_of(path, "{source: v, target: label")
    assert result.stderr.startswith(f"refdata: error: {path}:{line}: domain pieces, foreign key fk_parent: column \"label\" "
                                    f"(text) of \"public\".\"parent\" is not jsonb (jsonb_append appends to a jsonb "
                                    f"array) (database "), result.stderr
