"""bin/bench --observability: the quality views and the audit log at size.

Builds, in a fresh database (`refdata_bench_observability`), the sample schema
with `--reference-rows` plans (default 1,000,000; 2% of them auto-derived and
awaiting review, derived over the last 30 days), 20,000 portfolios, 20
product lines, 300 organisations and `--fact-rows` fact rows (default
10,000,000) naming 100,000 distinct plans, applies the project's config (which
indexes the fact key columns, see the README), VACUUM ANALYZEs, and then times:

  views   a full read of each view (reference_quality, pending_review,
          fk_coverage, derivation_activity), median of --repeat runs;
  audit   a bulk sync into the plans table, as `sync_mode: upsert` writes it:
          INSERT ... ON CONFLICT DO UPDATE (changed rows only) of --sync-rows
          rows from a source table, half new keys and half changed rows,
          with refdata's triggers on the table disabled (baseline), with the
          audit triggers only, and with audit and promotion; the ratio to the
          baseline is what auditing costs (target: at most 1.5x).

Prints milliseconds per view and seconds and ratios per sync; a benchmark,
not a test: the exit code does not depend on the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import psycopg

from .apply import apply
from .bench_report import interleaved, main as bench_main, progress, ratio_table, verdict
from .config import PROJECT_ROOT, load_config
from .db import connect, explicit_dsn, redact
from .demo import fresh_database
from .errors import InputError
from .names import ident
from .sample import create_schema

DATABASE = "refdata_bench_observability"
VIEWS = ["reference_quality", "pending_review", "fk_coverage", "derivation_activity"]
AUDIT_TRIGGERS = [f"refdata_audit_{op}{own}" for op in ("insert", "update", "delete") for own in ("", "_own")]
PLAN = 'mapping."年金计划"'
TARGET_RATIO = 1.5


def build(conn: psycopg.Connection, reference_rows: int, fact_rows: int) -> None:
    create_schema(conn)
    # Production fact tables declare no FKs; the bulk fill below would only pay for them.
    for (name,) in conn.execute("""SELECT conname FROM pg_constraint
                                   WHERE conrelid = 'business."规模明细"'::regclass AND contype = 'f'""").fetchall():
        conn.execute(f'ALTER TABLE business."规模明细" DROP CONSTRAINT {ident(name)}')
    progress(f"{reference_rows:,} plans, 20,000 portfolios ...")
    conn.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划类型", "客户名称", "主拓机构代码", "计划状态")
                     SELECT 'P' || lpad(i::text, 7, '0'), '计划' || i, CASE WHEN i %% 2 = 0 THEN '单一计划' ELSE '集合计划' END,
                            '客户' || i, 'G' || lpad((i %% 300)::text, 3, '0'), '正常'
                     FROM generate_series(0, %s - 1) AS i""", [reference_rows])
    conn.execute("""INSERT INTO mapping."组合计划" ("组合代码", "年金计划号", "组合名称", "组合类型")
                    SELECT 'QT' || lpad(i::text, 6, '0'), 'P' || lpad((i % 100000)::text, 7, '0'), '组合' || i, '固定收益'
                    FROM generate_series(0, 19999) AS i""")
    conn.execute("""INSERT INTO mapping."产品线" ("产品线代码", "产品线", "业务大类")
                    SELECT 'PL' || (200 + i), '产品线' || i, '企业年金' FROM generate_series(0, 19) AS i""")
    conn.execute("""INSERT INTO mapping."组织架构" ("机构代码", "机构", "上级机构代码")
                    SELECT 'G' || lpad(i::text, 3, '0'), '机构' || i, 'G000' FROM generate_series(0, 299) AS i""")
    progress(f"{fact_rows:,} fact rows ...")
    conn.execute("""INSERT INTO business."规模明细" ("月度", "计划代码", "组合代码", "产品线代码", "机构代码", "期末资产规模")
                    SELECT date '2024-01-01' + (i %% 24) * interval '1 month',
                           'P' || lpad((i %% 100000)::text, 7, '0'), 'QT' || lpad((i %% 20000)::text, 6, '0'),
                           'PL' || (200 + i %% 20), 'G' || lpad((i %% 300)::text, 3, '0'), i %% 1000000
                    FROM generate_series(0, %s - 1) AS i""", [fact_rows])


def mark_derived(conn: psycopg.Connection, reference_rows: int) -> int:
    """2% of the plans as refdata would have derived them over 30 days (every 50th plan)."""
    cur = conn.execute(f"""UPDATE {PLAN} SET "_source" = 'auto_derived', "_needs_review" = true,
                                  "_derived_from_domain" = 'annuity_performance',
                                  "_derived_at" = now() - (hashtext("年金计划号") & 31) * interval '1 day'
                           WHERE right("年金计划号", 2)::int % 50 = 7""")
    return cur.rowcount


def time_views(conn: psycopg.Connection, repeat: int) -> dict[str, tuple[float, int]]:
    out = {}
    for view in VIEWS:
        runs, rows = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            rows = len(conn.execute(f"SELECT * FROM refdata.{ident(view)}").fetchall())
            runs.append(time.perf_counter() - started)
        out[view] = (statistics.median(runs) * 1000, rows)
    return out


def set_triggers(conn: psycopg.Connection, audit: bool, promote: bool) -> None:
    for name in AUDIT_TRIGGERS:
        conn.execute(f"ALTER TABLE {PLAN} {'ENABLE' if audit else 'DISABLE'} TRIGGER {ident(name)}")
    conn.execute(f"ALTER TABLE {PLAN} {'ENABLE' if promote else 'DISABLE'} TRIGGER refdata_promote")


def prepare_source(conn: psycopg.Connection, rows: int) -> None:
    """What a sync brings from the legacy system: half new plans, half changed existing ones."""
    conn.execute("DROP TABLE IF EXISTS bench_sync_source")
    conn.execute(f"""CREATE UNLOGGED TABLE bench_sync_source AS
                     SELECT "年金计划号", "计划全称" || '(更新)' AS "计划全称", "计划类型", "客户名称", "主拓机构代码", "计划状态"
                     FROM {PLAN} WHERE "_source" = 'authoritative' ORDER BY "年金计划号" LIMIT %s""", [rows - rows // 2])
    conn.execute("""INSERT INTO bench_sync_source
                    SELECT 'S' || lpad(i::text, 8, '0'), '同步计划' || i, '单一计划', '客户' || i, 'G001', '正常'
                    FROM generate_series(1, %s) AS i""", [rows // 2])
    conn.execute("ANALYZE bench_sync_source")


def sync_once(conn: psycopg.Connection) -> float:
    """Seconds of one upsert sync (insert new keys, update changed rows), rolled back afterwards."""
    with conn.transaction(force_rollback=True):
        started = time.perf_counter()
        conn.execute(f"""INSERT INTO {PLAN} AS t ("年金计划号", "计划全称", "计划类型", "客户名称", "主拓机构代码", "计划状态")
                         SELECT * FROM bench_sync_source
                         ON CONFLICT ("年金计划号") DO UPDATE
                            SET "计划全称" = EXCLUDED."计划全称", "计划类型" = EXCLUDED."计划类型",
                                "客户名称" = EXCLUDED."客户名称", "主拓机构代码" = EXCLUDED."主拓机构代码",
                                "计划状态" = EXCLUDED."计划状态"
                          WHERE (t."计划全称", t."计划类型", t."客户名称", t."主拓机构代码", t."计划状态")
                                IS DISTINCT FROM (EXCLUDED."计划全称", EXCLUDED."计划类型", EXCLUDED."客户名称",
                                                  EXCLUDED."主拓机构代码", EXCLUDED."计划状态")""")
        return time.perf_counter() - started


def time_sync(conn: psycopg.Connection, rows: int, repeat: int) -> dict[str, list[float]]:
    def variant(audit: bool, promote: bool):
        def once() -> float:
            set_triggers(conn, audit, promote)
            conn.execute("CHECKPOINT")
            return sync_once(conn)
        return once

    prepare_source(conn, rows)
    runs = interleaved({"no refdata triggers": variant(False, False), "audit": variant(True, False),
                        "audit and promotion": variant(True, True)}, repeat)
    set_triggers(conn, True, True)
    conn.execute("DROP TABLE bench_sync_source")
    return runs


def run(args) -> int:
    if min(args.reference_rows, args.fact_rows, args.sync_rows, args.repeat) < 1:
        raise InputError("--reference-rows, --fact-rows, --sync-rows and --repeat must be at least 1")
    if args.reference_rows < 100_000:
        raise InputError("--reference-rows: at least 100,000 (the facts name 100,000 distinct plans)")
    config_path = PROJECT_ROOT / "config" / "data_sources.yml"
    config = load_config(config_path)
    server = explicit_dsn(args.db)
    dsn = fresh_database(server, DATABASE)
    try:
        with connect(dsn, autocommit=True) as conn:
            progress(f"building in {redact(dsn)}:")
            build(conn, args.reference_rows, args.fact_rows)
            progress("refdata apply (tracking columns, fact key indexes, views, triggers) ...")
            conn.autocommit = False
            apply(conn, config, str(config_path))
            conn.commit()
            conn.autocommit = True
            derived = mark_derived(conn, args.reference_rows)
            progress("VACUUM ANALYZE ...")
            conn.execute("VACUUM ANALYZE")
            views = time_views(conn, args.repeat)
            sync = time_sync(conn, args.sync_rows, args.repeat)
            version = conn.execute("SHOW server_version").fetchone()[0]
    finally:
        if not args.keep:
            with connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {ident(DATABASE)} WITH (FORCE)")
    print(f"refdata bench --observability: {args.reference_rows:,} plans ({derived:,} auto-derived, pending review), "
          f"{args.fact_rows:,} fact rows naming 100,000 plans, 20,000 portfolios, 20 product lines, "
          f"300 organisations; PostgreSQL {version}; median of {args.repeat} run(s)")
    print()
    print("view (full read)                     ms      rows")
    for view, (ms, rows) in views.items():
        print(f"  refdata.{view:<24} {ms:>9.1f} {rows:>9,}")
    print()
    print(f"bulk sync into {PLAN}: upsert of {args.sync_rows:,} rows (half new keys, half changed rows)")
    for line in ratio_table(sync, "no refdata triggers", "untriggered", args.sync_rows):
        print(f"  {line}")
    ratio = statistics.median(sync["audit"]) / statistics.median(sync["no refdata triggers"])
    print()
    print(f"target: auditing slows a bulk sync at most {TARGET_RATIO}x: {verdict(ratio <= TARGET_RATIO)} ({ratio:.2f}x)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench --observability", description=__doc__.split("\n\n")[0])
    p.add_argument("--db", metavar="DSN", help=f"server to use (default: the embedded cluster); database {DATABASE} is recreated there")
    p.add_argument("--reference-rows", type=int, default=1_000_000, metavar="N", help="plans (default 1,000,000)")
    p.add_argument("--fact-rows", type=int, default=10_000_000, metavar="N", help="fact rows (default 10,000,000)")
    p.add_argument("--sync-rows", type=int, default=200_000, metavar="N", help="rows per sync, half new, half changed (default 200,000)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per measurement (default 3)")
    p.add_argument("--keep", action="store_true", help=f"keep database {DATABASE} afterwards")
    return p


def main(argv: list[str] | None = None) -> int:
    return bench_main(run, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
