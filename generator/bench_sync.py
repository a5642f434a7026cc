"""bin/bench --sync: reference sync of a large MariaDB table against pgloader.

A MariaDB table of --sync-rows plans (default 1,000,000) in database
`refdata_bench_sync`, the sample schema's `mapping."年金计划"` as target in a
fresh PostgreSQL database of the same name, then, each --repeat times,
interleaved, as whole processes from the command line:

  fdw            `refdata sync` of a via: fdw table (mysql_fdw, merged in the
                 database) into the empty target, with every trigger apply puts
                 on a reference table (audit, promotion on insert);
  fdw_unaudited  the same with the audit triggers disabled: fdw / fdw_unaudited
                 is what the audit log costs a bulk sync (target: at most 1.5x);
  client         `refdata sync` of a via: client table (mysql-connector-python,
                 an unbuffered raw cursor, binary COPY into staging, the same
                 merge) into the empty target;
  pgloader       `pgloader` copying the same table into a database of its own
                 (it creates the table; no merge, no tracking);
  fdw_again      `refdata sync` (fdw) when every row is already there and unchanged;

and prints median seconds, rows/s, each variant's ratio to pgloader (target:
a first sync at least as fast as pgloader, ratio <= 1), the audit ratio, the
load average, the peak memory of the `refdata sync` process per path (the
client path's stays flat) and whether the client path's MySQL driver runs
its C extension or pure Python (8 times slower to read). MariaDB is reached as the test suite does:
$REFDATA_TEST_MYSQL_HOST, _PORT, _USER, _PASSWORD.
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

from .bench_report import interleaved, load_average, progress, ratio_table, verdict
from .db import connect, redact
from .demo import fresh_database
from .errors import RefdataError
from .names import ident
from .sample import create_schema

DATABASE = "refdata_bench_sync"
PLAN = 'mapping."年金计划"'
AUDIT_TARGET = 1.5
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
        for via in ("fdw", "client"):
            syncs[via] = tmp / f"sync_{via}.yml"
            syncs[via].write_text('schema_version: "1.0"\ntables:\n' + TABLE.format(via=via, name="年金计划"),
                                  encoding="utf-8")
        for via in syncs:  # both set up once; each run applies its own table's settings
            _run(refdata + ["--config", str(config), "apply", "--sync-config", str(syncs[via])], env)
        info = conninfo_to_dict(loader_dsn)
        target = f"pgsql://{info.get('user', 'postgres')}@unix:{info['host']}:{info.get('port', 5432)}/{info['dbname']}"
        source = (f"mysql://{quote(MYSQL['user'])}:{quote(MYSQL['password'], safe='')}@{MYSQL['host']}:{MYSQL['port']}"
                  f"/{DATABASE}")
        pgloader = ["pgloader", "--quiet", source, target]

        def reset():
            with connect(dsn, autocommit=True) as c:
                c.execute(f'TRUNCATE {PLAN}, refdata.audit_batch CASCADE')
                c.execute(f'VACUUM ANALYZE {PLAN}')
                c.execute("CHECKPOINT")
            with connect(loader_dsn, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {DATABASE} CASCADE")
                c.execute("CHECKPOINT")

        def audit(enabled: bool):
            with connect(dsn, autocommit=True) as c:
                for op in ("insert", "update", "delete"):
                    for own in ("", "_own"):
                        c.execute(f"ALTER TABLE {PLAN} {'ENABLE' if enabled else 'DISABLE'} TRIGGER "
                                  f"{ident(f'refdata_audit_{op}{own}')}")

        def counted(db: str, table: str, seconds: float) -> float:
            with connect(db) as c:
                count = c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if count != rows:
                raise RefdataError(f"{table} holds {count:,} rows after the run, expected {rows:,}")
            return seconds

        def sync(via: str, fresh: bool = True, audited: bool = True):
            def once() -> float:
                if fresh:
                    reset()
                _run(refdata + ["--config", str(config), "apply", "--sync-config", str(syncs[via])], env)
                if not audited:
                    audit(False)
                try:
                    seconds = _timed(refdata + ["--config", str(config), "sync", "--sync-config", str(syncs[via])],
                                     env, via)
                finally:
                    if not audited:
                        audit(True)
                return counted(dsn, PLAN, seconds)
            return once

        def copy() -> float:
            reset()
            return counted(loader_dsn, f"{DATABASE}.annuity_plan", _timed(pgloader, env))

        load_before = load_average()
        times = interleaved({"fdw": sync("fdw"), "fdw_again": sync("fdw", fresh=False),
                             "fdw_unaudited": sync("fdw", audited=False), "client": sync("client"),
                             "pgloader": copy}, args.repeat)
    print(f"refdata bench --sync: MariaDB table of {rows:,} rows into PostgreSQL ({redact(server)}); "
          f"median of {args.repeat} interleaved run(s), whole processes; {os.cpu_count()} CPUs, "
          f"load average {load_before} before, {load_average()} after")
    for line in ratio_table(times, "pgloader", "pgloader", rows):
        print(line)
    print(f"client path's MySQL driver: {_driver()}")
    print(f"peak memory of the refdata sync process (max RSS): "
          + ", ".join(f"{k} {max(v) / 1024:.0f} MB" for k, v in PEAKS.items()))
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in ("fdw", "client"):
        ratio = med[name] / med["pgloader"]
        print(f"target {name} sync at least as fast as pgloader (ratio <= 1): {verdict(ratio <= 1)} ({ratio:.2f}x)")
    ratio = med["fdw"] / med["fdw_unaudited"]
    print(f"target the audit log slows a bulk sync at most {AUDIT_TARGET}x (fdw / fdw_unaudited): "
          f"{verdict(ratio <= AUDIT_TARGET)} ({ratio:.2f}x)")
    if not args.keep:
        with connect(server, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            c.execute(f'DROP DATABASE IF EXISTS "{DATABASE}_pgloader" WITH (FORCE)')
        with _mysql() as c:
            c.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    return 0


def _driver() -> str:
    """mysql-connector-python as `refdata sync` imports it (after psycopg)."""
    code = ("import generator.cli, generator.sync.run, mysql.connector as m; "
            "print(f'mysql-connector-python {m.__version__}, ' + ('C extension' if m.HAVE_CEXT else 'pure Python'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return proc.stdout.strip() or f"unknown ({proc.stderr.strip().splitlines()[-1:]})"


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
