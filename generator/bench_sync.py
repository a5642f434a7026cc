"""bin/bench --sync: reference sync of a large MariaDB table against pgloader.

A MariaDB table of --sync-rows plans (default 1,000,000) in database
`refdata_bench_sync`, the sample schema's `mapping."年金计划"` as target in a
fresh PostgreSQL database of the same name, then, each --repeat times,
interleaved, as whole processes from the command line:

  fdw       `refdata sync` of a via: fdw table (mysql_fdw, merged in the database)
            into the empty target;
  client    `refdata sync` of a via: client table (mysql-connector-python
            unbuffered, COPY into staging, the same merge) into the empty target;
  pgloader  `pgloader` copying the same table into a database of its own
            (it creates the table; no merge, no tracking);
  fdw_again `refdata sync` (fdw) when every row is already there and unchanged;
  fdw_plain `refdata sync` (fdw) into a copy of the table that no foreign key of
            data_sources.yml names, so without the audit and promotion
            triggers apply puts on reference tables: the merge's own cost;

and prints median seconds, rows/s, each variant's ratio to pgloader (target:
a first sync at least as fast as pgloader, ratio <= 1) and the peak memory
of the `refdata sync` process per path (the client path's stays flat). MariaDB is reached as
the test suite does: $REFDATA_TEST_MYSQL_HOST, _PORT, _USER, _PASSWORD.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .db import connect, redact
from .demo import fresh_database
from .sample import create_schema

DATABASE = "refdata_bench_sync"
ROOT = Path(__file__).resolve().parent.parent
MYSQL = {
    "host": os.environ.get("REFDATA_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": os.environ.get("REFDATA_TEST_MYSQL_PORT", "3306"),
    "user": os.environ.get("REFDATA_TEST_MYSQL_USER", "refdata_test"),
    "password": os.environ.get("REFDATA_TEST_MYSQL_PASSWORD", "rdTest-5f1c9e"),
}
TABLE = """  - name: {name}
    target_table: {name}
    target_schema: mapping
    source_type: legacy_mysql
    via: {via}
    source_config:
      connection_env_prefix: BENCH
      table: annuity_plan
      columns:
        - {{source: plan_code, target: 年金计划号}}
        - {{source: plan_name, target: 计划全称}}
        - {{source: plan_type, target: 计划类型}}
        - {{source: client_name, target: 客户名称}}
        - {{source: plan_status, target: 计划状态}}
    primary_key: 年金计划号
"""


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _mysql(database: str | None = None):
    import mysql.connector

    return mysql.connector.connect(host=MYSQL["host"], port=int(MYSQL["port"]), user=MYSQL["user"],
                                   password=MYSQL["password"], database=database, charset="utf8mb4", autocommit=True)


def build_source(rows: int) -> None:
    with _mysql() as c:
        cur = c.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        cur.execute(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4")
    with _mysql(DATABASE) as c:
        cur = c.cursor()
        cur.execute(f"""CREATE TABLE `{DATABASE}`.annuity_plan (
            plan_code varchar(32) PRIMARY KEY, plan_name varchar(200) NOT NULL, plan_type varchar(16),
            client_name varchar(200), plan_status varchar(8) NOT NULL)""")
        cur.execute(f"""INSERT INTO `{DATABASE}`.annuity_plan
            SELECT concat('P', lpad(seq, 8, '0')), concat('企业年金计划', seq),
                   if(seq % 2 = 0, '单一计划', '集合计划'), concat('客户', seq % 5000, '集团有限公司'), '正常'
            FROM seq_1_to_{rows}""")


def run(args) -> int:
    from .db import resolve_dsn

    rows = args.sync_rows
    server = resolve_dsn(args.db)
    progress(f"MariaDB table of {rows:,} rows in {DATABASE} ...")
    build_source(rows)
    dsn = fresh_database(server, DATABASE)
    loader_dsn = fresh_database(server, f"{DATABASE}_pgloader")
    with connect(dsn, autocommit=True) as conn:
        create_schema(conn)
        conn.execute('CREATE TABLE mapping.plan_plain (LIKE mapping."年金计划" INCLUDING ALL)')
    env = {**os.environ, "BENCH_HOST": MYSQL["host"], "BENCH_PORT": MYSQL["port"], "BENCH_DATABASE": DATABASE,
           "BENCH_USER": MYSQL["user"], "BENCH_PASSWORD": MYSQL["password"]}
    refdata = [str(ROOT / "bin" / "refdata"), "--db", dsn]
    with tempfile.TemporaryDirectory(prefix="refdata-bench-sync-") as tmp:
        tmp = Path(tmp)
        config = tmp / "data_sources.yml"
        for name in ("data_sources.yml", "foreign_keys.yml"):  # the shipped config, without its sync config
            source_file = ROOT / "config" / name
            if source_file.exists():
                (tmp / name).write_text(source_file.read_text(encoding="utf-8"), encoding="utf-8")
        syncs = {}
        for variant, via, table in (("fdw", "fdw", "年金计划"), ("client", "client", "年金计划"),
                                    ("fdw_plain", "fdw", "plan_plain")):
            syncs[variant] = tmp / f"sync_{variant}.yml"
            syncs[variant].write_text('schema_version: "1.0"\ntables:\n' + TABLE.format(via=via, name=table),
                                      encoding="utf-8")
        for variant in syncs:  # all set up once; each run applies its own table's settings
            _run(refdata + ["--config", str(config), "apply", "--sync-config", str(syncs[variant])], env)
        info = conninfo_to_dict(loader_dsn)
        target = f"pgsql://{info.get('user', 'postgres')}@unix:{info['host']}:{info.get('port', 5432)}/{info['dbname']}"
        source = (f"mysql://{quote(MYSQL['user'])}:{quote(MYSQL['password'], safe='')}@{MYSQL['host']}:{MYSQL['port']}"
                  f"/{DATABASE}")
        pgloader = ["pgloader", "--quiet", source, target]

        def reset():
            with connect(dsn, autocommit=True) as c:
                c.execute('TRUNCATE mapping."年金计划", mapping.plan_plain, refdata.audit_log CASCADE')
                c.execute('VACUUM ANALYZE mapping."年金计划", mapping.plan_plain')
                c.execute("CHECKPOINT")
            with connect(loader_dsn, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {DATABASE} CASCADE")
                c.execute("CHECKPOINT")

        def sync(via: str):
            _run(refdata + ["--config", str(config), "apply", "--sync-config", str(syncs[via])], env)
            return _timed(refdata + ["--config", str(config), "sync", "--sync-config", str(syncs[via])], env, via)

        times: dict[str, list[float]] = {"fdw": [], "fdw_again": [], "client": [], "fdw_plain": [], "pgloader": []}
        for i in range(1, args.repeat + 1):
            for name in times:
                if name != "fdw_again":  # the repeat runs on what fdw just synced
                    reset()
                if name == "pgloader":
                    seconds = _timed(pgloader, env)
                    db, table = loader_dsn, f"{DATABASE}.annuity_plan"
                else:
                    seconds = sync(name.removesuffix("_again"))
                    db, table = dsn, "mapping.plan_plain" if name == "fdw_plain" else 'mapping."年金计划"'
                with connect(db) as c:
                    count = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if count != rows:
                    print(f"bench: error: {name} left {count:,} rows in {table}, expected {rows:,}", file=sys.stderr)
                    return 1
                times[name].append(seconds)
                progress(f"run {i}/{args.repeat} {name}: {seconds:.2f} s")
    base = statistics.median(times["pgloader"])
    print(f"refdata bench --sync: MariaDB table of {rows:,} rows into PostgreSQL ({redact(server)}); "
          f"median of {args.repeat} interleaved run(s), whole processes")
    print(f"{'variant':<10} {'seconds':>8} {'rows/s':>10} {'vs pgloader':>12}")
    for name, values in times.items():
        m = statistics.median(values)
        print(f"{name:<10} {m:>8.2f} {rows / m:>10,.0f} {m / base:>11.2f}x")
    print(f"peak memory of the refdata sync process (max RSS): "
          + ", ".join(f"{k} {max(v) / 1024:.0f} MB" for k, v in PEAKS.items()))
    for name in ("fdw", "client", "fdw_plain"):
        ratio = statistics.median(times[name]) / base
        print(f"target {name} sync at least as fast as pgloader (ratio <= 1): {'PASS' if ratio <= 1 else 'MISS'}")
    if not args.keep:
        with connect(server, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            c.execute(f'DROP DATABASE IF EXISTS "{DATABASE}_pgloader" WITH (FORCE)')
        with _mysql() as c:
            c.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    return 0


def _run(argv: list[str], env: dict) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise psycopg.OperationalError(f"{Path(argv[0]).name} failed: {proc.stderr.strip().splitlines()[-1:]}")


PEAKS: dict[str, list[int]] = {}


def _timed(argv: list[str], env: dict, name: str | None = None) -> float:
    """Wall seconds of the whole process; its peak memory (max RSS, kB) goes to PEAKS[name]."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            last = err.read().decode("utf-8", "replace").strip().splitlines()[-1:]
            raise psycopg.OperationalError(f"{Path(argv[0]).name} failed: {last}")
    if name:
        PEAKS.setdefault(name, []).append(usage.ru_maxrss)
    return seconds
