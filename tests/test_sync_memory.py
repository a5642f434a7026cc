"""The client path's memory stays flat: syncing ten times the rows of a
MariaDB table takes (almost) no more memory. The full 1,000,000-row figure is
in bin/bench --sync."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sync_helpers import ROOT, mysql_connect, mysql_env, project_config, unique

BIG_TABLE = """  - name: big
    target_table: big
    target_schema: mapping
    source_type: legacy_mysql
    via: client
    source_config:
      connection_env_prefix: BIG
      table: big
      columns:
        - {source: code, target: code}
        - {source: name, target: name}
    primary_key: code
"""

PEAK = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.fixture
def mariadb_database():
    name = unique("refdata_big")
    with mysql_connect() as c:
        c.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield name
    with mysql_connect() as c:
        c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def peak_kb(dsn: str, config, sync_path, env: dict) -> int:
    argv = [sys.executable, "-c", PEAK, sys.executable, "-m", "generator.cli", "--db", dsn,
            "--config", str(config), "sync", "--sync-config", str(sync_path)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, check=True)
    return int(out.stdout.strip())


def test_client_path_memory_is_flat(sample_db, dsn, cli, write_config, mariadb_database):
    sample_db.execute("CREATE TABLE mapping.big (code varchar(32) PRIMARY KEY, name text NOT NULL)")
    config = project_config(write_config)
    sync_path = write_config('schema_version: "1.0"\nbatch_size: 5000\ntables:\n' + BIG_TABLE, "reference_sync.yml")
    env = mysql_env("BIG", mariadb_database)
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    peaks = {}
    with mysql_connect(mariadb_database) as my:
        cur = my.cursor()
        cur.execute("CREATE TABLE big (code varchar(32) PRIMARY KEY, name varchar(100))")
        for rows in (30_000, 300_000):
            cur.execute("DELETE FROM big")
            cur.execute(f"INSERT INTO big SELECT concat('K', seq), concat('参考数据名称', seq) FROM seq_1_to_{rows}")
            sample_db.execute("TRUNCATE mapping.big")
            peaks[rows] = peak_kb(dsn, config, sync_path, env)
            assert sample_db.execute("SELECT count(*) FROM mapping.big").fetchone() == (rows,)
    # ten times the rows, at most a few MB more (a buffered read would need ~100 MB more)
    assert peaks[300_000] - peaks[30_000] < 20_000, peaks
