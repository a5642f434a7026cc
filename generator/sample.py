"""Sample data with production names: reference rows and monthly fact rows.

Deterministic (seeded) so the demo prints the same counts every run. A share
of fact rows carries keys no parent has yet: new plans (with their new
portfolios in the same row), new product lines and new organisations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg

from .names import qualified
from .render import sql_file

COMPANIES = [
    "华能", "中信", "招商", "国电", "中铁", "宝钢", "海尔", "格力", "万科", "中石化",
    "中海油", "南方电网", "国家电网", "中国移动", "中国联通", "工商银行", "交通银行", "上汽", "一汽", "东风",
]
CITIES = ["北京", "上海", "广东", "江苏", "浙江", "山东", "四川", "湖北", "福建", "河南", "辽宁", "天津"]
PRODUCT_LINES = [
    ("PL201", "企业年金受托", "企业年金"),
    ("PL202", "企业年金投资", "企业年金"),
    ("PL203", "职业年金受托", "职业年金"),
    ("PL204", "职业年金投资", "职业年金"),
    ("PL301", "养老金产品", "养老保障"),
]
PLAN_KINDS = ["单一计划", "集合计划"]
PORTFOLIO_KINDS = ["固定收益", "含权益", "权益", "货币"]

FACT_COLUMNS = [
    "月度", "业务类型", "计划类型", "计划代码", "计划名称", "组合类型", "组合代码", "组合名称",
    "客户名称", "期初资产规模", "期末资产规模", "供款", "投资收益", "产品线代码", "机构代码", "机构名称",
]

PLAN = qualified("mapping", "年金计划")
PORTFOLIO = qualified("mapping", "组合计划")
PRODUCT_LINE = qualified("mapping", "产品线")
ORGANISATION = qualified("mapping", "组织架构")
FACT = qualified("business", "规模明细")


@dataclass
class Sizes:
    plans: int = 40
    portfolios: int = 100
    product_lines: int = 4
    organisations: int = 10
    facts: int = 400
    new_share: float = 0.05  # share of fact rows naming at least one unknown key


def create_schema(conn: psycopg.Connection) -> None:
    conn.execute(sql_file("demo/schema.sql"))


def _plan(i: int) -> tuple:
    company = COMPANIES[i % len(COMPANIES)] + (f"{i // len(COMPANIES)}" if i >= len(COMPANIES) else "")
    kind = PLAN_KINDS[i % 2]
    return (f"P{i:05d}", f"{company}企业年金计划", kind, f"{company}集团有限公司")


def _org(i: int) -> tuple:
    city = CITIES[i % len(CITIES)] + (f"{i // len(CITIES)}" if i >= len(CITIES) else "")
    return (f"G{i:03d}", f"{city}分公司" if i else "总部")


def _portfolio(i: int, plans: int) -> tuple:
    plan = i % plans
    kind = PORTFOLIO_KINDS[i % len(PORTFOLIO_KINDS)]
    return (f"QT{i:06d}", f"P{plan:05d}", f"{_plan(plan)[1]}{kind}组合", kind)


def load_reference(conn: psycopg.Connection, s: Sizes) -> None:
    """The authoritative layer: what a sync from the legacy systems would bring."""
    with conn.cursor() as cur:
        with cur.copy(f'COPY {PLAN} ("年金计划号", "计划全称", "计划类型", "客户名称", "主拓机构代码", "计划状态") FROM STDIN') as cp:
            for i in range(s.plans):
                code, name, kind, client = _plan(i)
                cp.write_row((code, name, kind, client, _org(i % s.organisations)[0], "正常"))
        with cur.copy(f'COPY {PORTFOLIO} ("组合代码", "年金计划号", "组合名称", "组合类型") FROM STDIN') as cp:
            for i in range(s.portfolios):
                cp.write_row(_portfolio(i, s.plans))
        with cur.copy(f'COPY {PRODUCT_LINE} ("产品线代码", "产品线", "业务大类") FROM STDIN') as cp:
            for row in PRODUCT_LINES[: s.product_lines]:
                cp.write_row(row)
            for i in range(len(PRODUCT_LINES), s.product_lines):
                cp.write_row((f"PL{400 + i}", f"专项产品{i}", "养老保障"))
        with cur.copy(f'COPY {ORGANISATION} ("机构代码", "机构", "上级机构代码") FROM STDIN') as cp:
            for i in range(s.organisations):
                code, name = _org(i)
                cp.write_row((code, name, None if i == 0 else "G000"))


def fact_rows(s: Sizes, seed: int = 20251031, month: date = date(2025, 10, 1)):
    """Fact rows in FACT_COLUMNS order; about `new_share` of them name new keys."""
    rng = random.Random(seed)
    new_plans = max(1, s.plans // 20)
    pl_codes = [p[0] for p in PRODUCT_LINES[: s.product_lines]] + [
        f"PL{400 + i}" for i in range(len(PRODUCT_LINES), s.product_lines)
    ]
    for _ in range(s.facts):
        new = rng.random() < s.new_share
        what = rng.randrange(4) if new else -1
        if what == 0:  # a new plan with a new portfolio: both parents derived from one row
            plan_i = s.plans + rng.randrange(new_plans)
            port_i = s.portfolios + (plan_i - s.plans) * 3 + rng.randrange(3)
            code, pname, kind, client = _plan(plan_i)
            port = (f"QT{port_i:06d}", code, f"{pname}{PORTFOLIO_KINDS[port_i % 4]}组合", PORTFOLIO_KINDS[port_i % 4])
        else:
            port_i = rng.randrange(s.portfolios)
            port = _portfolio(port_i, s.plans)
            code, pname, kind, client = _plan(int(port[1][1:]))
        if what == 1:
            pl = f"PL9{rng.randrange(max(1, s.product_lines // 4 + 1)):02d}"
        else:
            pl = rng.choice(pl_codes)
        if what == 2:
            org_i = s.organisations + rng.randrange(max(1, s.organisations // 10 + 1))
        else:
            org_i = rng.randrange(s.organisations)
        if what == 3:  # a new portfolio of a known plan
            port = (f"QN{rng.randrange(max(1, s.portfolios // 20 + 1)):06d}", code, f"{pname}新增组合", "含权益")
        org_code, org_name = _org(org_i)
        start = Decimal(rng.randrange(1_000_000, 5_000_000_000)) / 100
        contribution = Decimal(rng.randrange(0, 50_000_000)) / 100
        income = (start * Decimal(rng.uniform(-0.02, 0.05))).quantize(Decimal("0.01"))
        yield (
            month, "企业年金" if pl < "PL203" else "职业年金", kind, code, pname, port[3], port[0], port[2],
            client, start, start + contribution + income, contribution, income, pl, org_code, org_name,
        )
