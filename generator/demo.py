"""The main job on sample data: a fresh database, the sample schema with its
authoritative rows, the config applied, facts inserted with INSERT and COPY,
then how many parents are authoritative and how many were derived. With
$REFDATA_DEMO_MYSQL_URL naming a MariaDB, the hybrid run: reference data
synced from there first (generator.sync.demo), then the facts."""

from __future__ import annotations

import os

import psycopg
from psycopg.conninfo import make_conninfo

from .apply import apply
from .config import Config
from .db import connect, explicit_dsn, redact
from .names import ident
from .sample import FACT, FACT_COLUMNS, Sizes, create_schema, fact_rows, load_reference
from .sync.demo import PROJECT_ROOT, legacy
from .sync.run import sync

DEMO_DATABASE = "refdata_demo"
REFERENCE_TABLES = ["年金计划", "组合计划", "产品线", "组织架构"]


def with_database(dsn: str, database: str) -> str:
    return make_conninfo(dsn, dbname=database)


def fresh_database(dsn: str, database: str) -> str:
    with connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {ident(database)} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {ident(database)}")
    return with_database(dsn, database)


def insert_facts(conn: psycopg.Connection, rows: list[tuple], via_copy: bool) -> None:
    cols = ", ".join(ident(c) for c in FACT_COLUMNS)
    with conn.transaction(), conn.cursor() as cur:
        if via_copy:
            with cur.copy(f"COPY {FACT} ({cols}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(FACT_COLUMNS))
            cur.executemany(f"INSERT INTO {FACT} ({cols}) VALUES ({marks})", rows)


def counts(conn: psycopg.Connection) -> list[tuple]:
    out = []
    for table in REFERENCE_TABLES:
        row = conn.execute(
            f"""SELECT count(*) FILTER (WHERE "_source" = 'authoritative'),
                       count(*) FILTER (WHERE "_source" = 'auto_derived'),
                       count(*) FILTER (WHERE "_needs_review")
                FROM {ident('mapping')}.{ident(table)}"""
        ).fetchone()
        out.append((f"mapping.{table}", *row))
    return out


def run(db: str | None, config: Config, source: str, sizes: Sizes | None = None,
        database: str = DEMO_DATABASE) -> int:
    """`db` is what --db said: the demo never follows $REFDATA_DB or $DATABASE_URL."""
    sizes = sizes or Sizes()
    dsn = fresh_database(explicit_dsn(db), database)
    hybrid = legacy(database, sizes)
    with connect(dsn) as conn:
        with conn.transaction():
            create_schema(conn)
            load_reference(conn, sizes)
        if hybrid:
            sync_config, env = hybrid
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)  # apply reads the connection from the environment
            try:
                outcome = apply(conn, config, source, sync=("the demo's sync config", sync_config))
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        else:
            outcome = apply(conn, config, source)
        print(f"{outcome.summary()} (config {source}, database {database})")
        if hybrid:
            print("synced authoritative reference data first (plans from the legacy MariaDB through mysql_fdw, "
                  "product lines from config/reference_data/product_lines.yml):")
            for outcome in sync(dsn, sync_config, PROJECT_ROOT):
                print(f"  {outcome.line()}")
        rows = list(fact_rows(sizes))
        split = len(rows) // 4
        insert_facts(conn, rows[:split], via_copy=False)
        insert_facts(conn, rows[split:], via_copy=True)
        facts = conn.execute(f"SELECT count(*) FROM {FACT}").fetchone()[0]
        print(f"inserted {split} fact rows with INSERT and {len(rows) - split} with COPY into business.规模明细 "
              f"({facts} rows now)\n")
        table = counts(conn)
    header = ("reference table", "authoritative", "auto_derived", "needs_review")
    widths = [max(_width(str(r[i])) for r in [header, *table]) for i in range(4)]
    for r in [header, *table]:
        print("  ".join(_pad(str(v), widths[i], right=i > 0) for i, v in enumerate(r)))
    print(f"\nlook around: psql \"{redact(dsn)}\"")
    return 0


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill
