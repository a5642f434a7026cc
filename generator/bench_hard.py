"""bin/bench's hard case: schema, config, reference rows and fact rows.

Five foreign keys of which one is composite, a three-level parent chain
(a new desk of a new branch of a new region, all from one fact row) and a
fact table partitioned by month. Deterministic, like the sample.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from .render import sql_file

FACT_SCHEMA, FACT_TABLE = "hard", "trade"
FACT_COLUMNS = ["day", "region", "branch", "desk", "desk_name", "product", "product_name",
                "bank", "number", "holder", "amount"]
DOMAIN = "trades"

CONFIG = """\
domains:
  trades:
    fact_schema: hard
    fact_table: trade
    foreign_keys:
      - name: fk_region
        source_column: region
        target_schema: hard
        target_table: region
        target_key: code
        backfill_columns:
          - {target: name, aggregation: template, template: "new region {region}"}
      - name: fk_branch
        source_column: branch
        target_schema: hard
        target_table: branch
        target_key: code
        depends_on: [fk_region]
        backfill_columns:
          - {source: region, target: region}
      - name: fk_desk
        source_column: desk
        target_schema: hard
        target_table: desk
        target_key: code
        depends_on: [fk_branch]
        backfill_columns:
          - {source: branch, target: branch}
          - {source: desk_name, target: name}
      - name: fk_product
        source_column: product
        target_schema: hard
        target_table: product
        target_key: code
        backfill_columns:
          - {source: product_name, target: name, aggregation: max_by, order_column: amount}
        defaults: {name: "(unnamed)"}
      - name: fk_account
        source_column: [bank, number]
        target_schema: hard
        target_table: account
        target_key: [bank, number]
        backfill_columns:
          - {source: holder, target: holder}
"""

REGIONS, BRANCHES, DESKS, PRODUCTS, ACCOUNTS, BANKS = 30, 300, 3_000, 200, 20_000, 8


def build(conn: psycopg.Connection) -> None:
    """The schema and its authoritative reference rows."""
    conn.execute(sql_file("bench/hard_schema.sql"))
    with conn.cursor() as cur:
        with cur.copy("COPY hard.region (code, name) FROM STDIN") as cp:
            for i in range(REGIONS):
                cp.write_row((f"R{i:03d}", f"region {i}"))
        with cur.copy("COPY hard.branch (code, region, name) FROM STDIN") as cp:
            for i in range(BRANCHES):
                cp.write_row((f"B{i:04d}", f"R{i % REGIONS:03d}", f"branch {i}"))
        with cur.copy("COPY hard.desk (code, branch, name) FROM STDIN") as cp:
            for i in range(DESKS):
                cp.write_row((f"D{i:05d}", f"B{i % BRANCHES:04d}", f"desk {i}"))
        with cur.copy("COPY hard.product (code, name) FROM STDIN") as cp:
            for i in range(PRODUCTS):
                cp.write_row((f"X{i:04d}", f"product {i}"))
        with cur.copy("COPY hard.account (bank, number, holder) FROM STDIN") as cp:
            for i in range(ACCOUNTS):
                cp.write_row((f"BK{i % BANKS}", f"{i:08d}", f"holder {i}"))


def fact_rows(n: int, new_share: float = 0.05, seed: int = 20251201):
    """Fact rows in FACT_COLUMNS order over three months; about `new_share` name new keys."""
    rng = random.Random(seed)
    start = date(2025, 10, 1)
    for _ in range(n):
        what = rng.randrange(4) if rng.random() < new_share else -1
        d = rng.randrange(DESKS)
        desk, branch, region = f"D{d:05d}", f"B{d % BRANCHES:04d}", f"R{d % BRANCHES % REGIONS:03d}"
        if what == 0:  # a new desk of a new branch of a new region
            k = rng.randrange(20)
            desk, branch, region = f"DN{k:04d}", f"BN{k // 2:03d}", f"RN{k // 4:02d}"
        elif what == 1:  # a new desk of a known branch
            desk = f"DK{rng.randrange(200):04d}"
            branch, region = f"B{int(desk[2:]) % BRANCHES:04d}", f"R{int(desk[2:]) % BRANCHES % REGIONS:03d}"
        p = rng.randrange(PRODUCTS)
        product = f"XN{rng.randrange(30):03d}" if what == 2 else f"X{p:04d}"
        a = rng.randrange(ACCOUNTS)
        bank, number = (f"BK{a % BANKS}", f"N{rng.randrange(2_000):07d}") if what == 3 else (f"BK{a % BANKS}", f"{a:08d}")
        amount = Decimal(rng.randrange(100, 100_000_000)) / 100
        yield (start + timedelta(days=rng.randrange(92)), region, branch, desk, f"desk {desk}", product,
               f"product {product}", bank, number, f"holder {bank}/{number}", amount)
