"""The demo's hybrid run: sync from a legacy MariaDB first, then facts.

Enters: the demo's database name, the sample sizes, and a MariaDB named by
$REFDATA_DEMO_MYSQL_URL (mysql://user:password@host:port). Leaves: a legacy database of
the same name on that MariaDB holding the plans (some renamed, and one
the sample's reference rows lack but facts name), the sync config the demo applies
(plans through mysql_fdw, product lines from
config/reference_data/product_lines.yml), and the environment variables its
connection prefix names; None when no MariaDB answers.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import SyncConfig, parse_sync_config
from ..sample import Sizes, _plan

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
PREFIX = "REFDATA_DEMO_LEGACY"
SYNC_YAML = """schema_version: "1.0"
tables:
  - name: 年金计划
    target_table: 年金计划
    target_schema: mapping
    source_type: legacy_mysql
    source_config:
      connection_env_prefix: REFDATA_DEMO_LEGACY
      table: annuity_plan
      columns:
        - {source: plan_code, target: 年金计划号}
        - {source: plan_name, target: 计划全称}
        - {source: plan_type, target: 计划类型}
        - {source: plan_status, target: 计划状态}
    sync_mode: upsert
    primary_key: 年金计划号
  - name: 产品线
    target_table: 产品线
    target_schema: mapping
    source_type: config_file
    source_config: {file_path: "config/reference_data/product_lines.yml", schema_version: "1.0"}
    sync_mode: delete_insert
    primary_key: 产品线代码
"""


def _mariadb() -> dict | None:
    url = os.environ.get("REFDATA_DEMO_MYSQL_URL")
    if url:
        parts = urlsplit(url)
        return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306,
                "user": unquote(parts.username or ""), "password": unquote(parts.password or "")}
    return None


def legacy(database: str, sizes: Sizes) -> tuple[SyncConfig, dict] | None:
    """Build the legacy side; (sync config, environment) or None without a MariaDB."""
    server = _mariadb()
    if not server:
        return None
    import mysql.connector

    try:
        cnx = mysql.connector.connect(**server, charset="utf8mb4", autocommit=True, connection_timeout=5)
    except mysql.connector.Error:
        return None
    with cnx:
        cur = cnx.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"""CREATE TABLE `{database}`.annuity_plan (plan_code varchar(32) PRIMARY KEY,
                        plan_name varchar(200) NOT NULL, plan_type varchar(16), plan_status varchar(8) NOT NULL)""")
        rows = []
        for i in range(sizes.plans + 1):  # one more than the sample's own reference rows
            code, name, kind, _ = _plan(i)
            rows.append((code, name + ("（更名）" if i % 10 == 3 else ""), kind, "正常"))
        cur.executemany(f"INSERT INTO `{database}`.annuity_plan VALUES (%s, %s, %s, %s)", rows)
    env = {f"{PREFIX}_HOST": server["host"], f"{PREFIX}_PORT": str(server["port"]),
           f"{PREFIX}_DATABASE": database, f"{PREFIX}_USER": server["user"],
           f"{PREFIX}_PASSWORD": server["password"]}
    return parse_sync_config(SYNC_YAML, "the demo's sync config"), env
