"""The pipeline's configuration files against a real server: the fixture set
in tests/fixtures/workdatahub applies and derives the same parents through the
row trigger, statement mode and `refdata load`; and the pieces that format
needs, one by one (code-point sort, count_distinct without blanks, `type: sql`,
`type: jsonb_append`)."""

from __future__ import annotations

import csv
import shutil
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import apply_config, stage_and_load

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
