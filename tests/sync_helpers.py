"""Sources for the reference sync tests: a legacy PostgreSQL database on the
test cluster (read through postgres_fdw or psycopg) and a database on the
MariaDB server bin/test started (read through mysql_fdw or
mysql-connector-python). Names are unique per run, for concurrent runs."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()

MYSQL = {
    "host": os.environ.get("REFDATA_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("REFDATA_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("REFDATA_TEST_MYSQL_USER", "refdata_test"),
    "password": os.environ.get("REFDATA_TEST_MYSQL_PASSWORD", "rdTest-5f1c9e"),
}


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


def mysql_connect(database: str | None = None):
    import mysql.connector

    return mysql.connector.connect(**MYSQL, database=database, charset="utf8mb4", autocommit=True)


def mysql_env(prefix: str, database: str) -> dict:
    return {f"{prefix}_HOST": MYSQL["host"], f"{prefix}_PORT": str(MYSQL["port"]),
            f"{prefix}_DATABASE": database, f"{prefix}_USER": MYSQL["user"],
            f"{prefix}_PASSWORD": MYSQL["password"]}


def pg_env(prefix: str, info, database: str) -> dict:
    return {f"{prefix}_HOST": info.host, f"{prefix}_PORT": str(info.port),
            f"{prefix}_DATABASE": database, f"{prefix}_USER": info.user}


def project_config(write_config) -> Path:
    """The shipped config, in a folder of the test's own (where the test
    writes its reference_sync.yml beside it)."""
    from helpers import shipped_single_file

    return write_config(shipped_single_file())


def sync_config(write_config, tables: str, **top) -> Path:
    head = "".join(f"{k}: {v}\n" for k, v in {"schema_version": '"1.0"', **top}.items())
    return write_config(head + "tables:\n" + tables, "reference_sync.yml")


def plan_table(prefix: str, via: str, source_type: str = "postgres", mode: str = "upsert",
               incremental: bool = False, schema: str = "enterprise", extra: str = "") -> str:
    inc = ("      incremental:\n        where: \"updated_at >= :last_synced_at\"\n"
           "        updated_at_column: updated_at\n") if incremental else ""
    return (
        f"  - name: 年金计划\n"
        f"    target_table: 年金计划\n"
        f"    target_schema: mapping\n"
        f"    source_type: {source_type}\n"
        f"    via: {via}\n"
        f"    source_config:\n"
        f"      connection_env_prefix: {prefix}\n"
        f"      schema: {schema}\n"
        f"      table: annuity_plan\n"
        f"      columns:\n"
        f"        - {{source: plan_code, target: 年金计划号}}\n"
        f"        - {{source: plan_name, target: 计划全称}}\n"
        f"        - {{source: plan_status, target: 计划状态}}\n"
        f"{inc}{extra}"
        f"    sync_mode: {mode}\n"
        f"    primary_key: 年金计划号\n"
    )


class LegacyPostgres:
    """A database on the test cluster standing in for the legacy PostgreSQL."""

    def __init__(self, info):
        self.info = info
        self.name = unique("refdata_legacy")
        with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="postgres",
                             autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.name}"')
        self.conn = psycopg.connect(host=info.host, port=info.port, user=info.user, dbname=self.name,
                                    autocommit=True)
        self.conn.execute("""CREATE SCHEMA enterprise;
            CREATE TABLE enterprise.annuity_plan (plan_code varchar(32), plan_name text, plan_status text,
                                                  updated_at timestamptz NOT NULL DEFAULT now())""")

    def rows(self, rows: list[tuple]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO enterprise.annuity_plan (plan_code, plan_name, plan_status) "
                            "VALUES (%s, %s, %s)", rows)

    def env(self, prefix: str) -> dict:
        return pg_env(prefix, self.info, self.name)

    def drop(self) -> None:
        self.conn.close()
        with psycopg.connect(host=self.info.host, port=self.info.port, user=self.info.user, dbname="postgres",
                             autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class LegacyMysql:
    def __init__(self):
        self.name = unique("refdata_legacy")
        with mysql_connect() as c:
            cur = c.cursor()
            cur.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
        self.conn = mysql_connect(self.name)
        cur = self.conn.cursor()
        cur.execute("""CREATE TABLE annuity_plan (plan_code varchar(32), plan_name varchar(200),
                       plan_status varchar(64), updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))""")

    def rows(self, rows: list[tuple]) -> None:
        cur = self.conn.cursor()
        cur.executemany("INSERT INTO annuity_plan (plan_code, plan_name, plan_status) VALUES (%s, %s, %s)", rows)

    def env(self, prefix: str) -> dict:
        return mysql_env(prefix, self.name)

    def drop(self) -> None:
        cur = self.conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        self.conn.close()
