"""bin/refdata demo with a MariaDB reachable: the hybrid run, sync first, then facts."""

from __future__ import annotations

import re
from urllib.parse import quote

import psycopg
import pytest

from conftest import RUN
from generator import demo
from generator.config import DEFAULT_CONFIG, PROJECT_ROOT, load_config
from sync_helpers import MYSQL, mysql_connect

ROW = re.compile(r"^(mapping\.\S+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M)


@pytest.fixture
def demo_database(dsn):
    name = f"refdata_demo_sync_{RUN}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    with mysql_connect() as c:
        c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def test_demo_syncs_from_mariadb_first_then_facts_derive_the_rest(dsn, demo_database, capsys, monkeypatch):
    monkeypatch.setenv("REFDATA_DEMO_MYSQL_URL", f"mysql://{quote(MYSQL['user'])}:{quote(MYSQL['password'], safe='')}"
                                                 f"@{MYSQL['host']}:{MYSQL['port']}")
    path = PROJECT_ROOT / DEFAULT_CONFIG
    assert demo.run(dsn, load_config(path), str(path), database=demo_database) == 0
    out = capsys.readouterr().out
    assert MYSQL["password"] not in out
    sync_at = out.index("年金计划: inserted 1, updated 4, promoted 0, unchanged 36, deleted 0, kept 0")
    assert "产品线: inserted 1, updated 0, promoted 0, unchanged 4, deleted 0, kept 0" in out
    assert sync_at < out.index("inserted 100 fact rows")  # sync first, then facts
    printed = {m.group(1): tuple(map(int, m.groups()[1:])) for m in ROW.finditer(out)}
    plans_authoritative, plans_derived, _ = printed["mapping.年金计划"]
    assert (plans_authoritative, plans_derived) == (41, 1)  # P00040 came from the legacy system
    assert sum(v[0] for v in printed.values()) > sum(v[1] for v in printed.values())
