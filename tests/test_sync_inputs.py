"""Reference sync: what users get wrong in its inputs (connection URLs,
config files), each refused or read as written, never half-read and never
echoing a password."""

from __future__ import annotations

import os
import subprocess
from urllib.parse import quote

import pytest

from sync_helpers import MYSQL, plan_table, project_config, sync_config

PLAN = 'mapping."年金计划"'


def mysql_url(database: str, password: str = MYSQL["password"], port: str = str(MYSQL["port"]),
              scheme: str = "mysql", host: str = MYSQL["host"], query: str = "") -> str:
    return f"{scheme}://{MYSQL['user']}:{password}@{host}:{port}/{database}{query}"


@pytest.mark.parametrize("url,message", [
    # a password with an unescaped / or # ends the host part: the parser
    # would read the password as the port and quote it back
    (lambda db, pw: mysql_url(db, pw.replace("-", "/", 1)), "LEG_URL: an @ after the host part"),
    (lambda db, pw: mysql_url(db, pw.replace("-", "#", 1)), "LEG_URL: an @ after the host part"),
    (lambda db, pw: f"mysql://{MYSQL['user']}:{pw}@{MYSQL['host']}:33x6/{db}", "LEG_URL: the port is not a number"),
    (lambda db, pw: mysql_url(db, pw, port="99999"), "LEG_URL: the port is not a number"),
    (lambda db, pw: mysql_url(db, pw, scheme="http"), "LEG_URL: not a mysql:// or mariadb:// URL"),
    (lambda db, pw: mysql_url(db, pw, host=""), "LEG_URL names no host"),
    (lambda db, pw: mysql_url(db, pw, query="?ssl-mode=REQUIRED"), "LEG_URL: a MySQL URL takes no ?parameters"),
])
@pytest.mark.parametrize("via", ["fdw", "client"])
def test_a_malformed_source_url_is_refused_naming_the_variable_and_never_the_password(
        via, url, message, sample_db, cli, write_config, legacy_mysql):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, "legacy_mysql", schema=legacy_mysql.name))
    password = MYSQL["password"]
    env = {"LEG_URL": url(legacy_mysql.name, password)}
    secret_parts = [p for p in password.replace("-", "/").split("/") if len(p) >= 4]

    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 2, applied.stderr
    assert applied.stderr.count("\n") == 1 and f"table 年金计划: {message}" in applied.stderr
    applied = cli("--config", str(config), "apply", env=legacy_mysql.env("LEG"))
    assert applied.returncode == 0, applied.stderr
    synced = cli("--config", str(config), "--debug", "sync", env=env)
    outputs = [applied.stdout, applied.stderr, synced.stdout, synced.stderr]
    if via == "client":  # the fdw path reads the user mapping apply set, not the environment
        assert synced.returncode == 1 and f"年金计划: failed: table 年金计划: {message}" in synced.stderr
        outputs += [str(r) for r in sample_db.execute("SELECT error FROM refdata.sync_run")]
    for text in outputs:
        for part in secret_parts:
            assert part not in text


def pg_url(legacy, query: str = "") -> str:
    info = legacy.info
    return f"postgresql://{info.user}@{quote(info.host, safe='')}:{info.port}/{legacy.name}{query}"


def test_a_postgresql_url_is_read_as_libpq_reads_it(sample_db, cli, write_config, legacy_pg):
    """A socket directory as the percent-encoded host, and libpq parameters:
    used by the client path, and set on the fdw path's server (and dropped
    from it when the URL no longer gives them)."""
    config = project_config(write_config)
    legacy_pg.rows([("P90001", "新计划甲", "正常")])
    sync_config(write_config, plan_table("LEG", "client"))
    result = cli("--config", str(config), "apply", env={"LEG_URL": pg_url(legacy_pg, "?sslmode=disable")})
    assert result.returncode == 0, result.stderr
    result = cli("--config", str(config), "sync", env={"LEG_URL": pg_url(legacy_pg, "?sslmode=disable")})
    assert result.returncode == 0, result.stderr
    assert "inserted 1" in result.stdout
    result = cli("--config", str(config), "sync", env={"LEG_URL": pg_url(legacy_pg, "?sslmode=bogus")})
    assert result.returncode == 1 and 'invalid sslmode value: "bogus"' in result.stderr

    sync_config(write_config, plan_table("LEG", "fdw"))
    server = "SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'refdata__leg__pg'"
    result = cli("--config", str(config), "apply", env={"LEG_URL": pg_url(legacy_pg, "?sslmode=require")})
    assert result.returncode == 0, result.stderr
    options = sample_db.execute(server).fetchone()[0]
    assert "sslmode=require" in options and f"host={legacy_pg.info.host}" in options
    planned = cli("--config", str(config), "plan", env={"LEG_URL": pg_url(legacy_pg, "?sslmode=require")})
    assert (planned.returncode, planned.stdout) == (0, ""), planned.stdout + planned.stderr
    planned = cli("--config", str(config), "plan", env={"LEG_URL": pg_url(legacy_pg)})
    assert planned.returncode == 3 and "refdata.sync_server(" in planned.stdout
    result = cli("--config", str(config), "apply", env={"LEG_URL": pg_url(legacy_pg)})
    assert result.returncode == 0, result.stderr
    assert not [o for o in sample_db.execute(server).fetchone()[0] if o.startswith("sslmode=")]
    result = cli("--config", str(config), "sync", env={"LEG_URL": pg_url(legacy_pg)})
    assert result.returncode == 0, result.stderr


def test_a_secret_libpq_parameter_is_not_taken_from_a_url(sample_db, cli, write_config, legacy_pg):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"))
    result = cli("--config", str(config), "apply", env={"LEG_URL": pg_url(legacy_pg, "?sslpassword=Key-s3cret")})
    assert result.returncode == 2
    assert "LEG_URL: ?sslpassword= is not taken from a URL" in result.stderr and "Key-s3cret" not in result.stderr
    assert sample_db.execute("SELECT count(*) FROM pg_foreign_server").fetchone() == (0,)


# -- config files ---------------------------------------------------------------


def product_line_rows(db) -> dict:
    return {r[0]: r[1:] for r in db.execute('SELECT "产品线代码", "产品线", "业务大类", "_source" FROM mapping."产品线"')}


def sync_file(cli, write_config, name: str, content: str | bytes, mode: str = "upsert", before: list | None = None,
              db=None):
    """Apply a sync config of the file, then sync it; `before` gets the rows as they were after the apply."""
    from test_sync_semantics import product_line_table

    config = project_config(write_config)
    data = write_config("", name)
    data.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    sync_config(write_config, product_line_table(data, mode=mode))
    assert cli("--config", str(config), "apply").returncode == 0
    if before is not None:
        before.append(product_line_rows(db))
    return data, cli("--config", str(config), "sync")


def test_config_file_values_are_synced_as_written(sample_db, cli, write_config):
    """YAML's implicit types would make the code 0101 the number 65, 007 the
    number 7, 12:30 the number 750, on the boolean true: every value is the
    file's text, as in a CSV file; ~, null and nothing are NULL."""
    data, result = sync_file(cli, write_config, "lines.yml", (
        'schema_version: "1.0"\n'
        "data:\n"
        "  - {产品线代码: 0101, 产品线: on, 业务大类: 12:30}\n"
        "  - {产品线代码: 007, 产品线: 1.50, 业务大类: ~}\n"
        "  - {产品线代码: 1_000, 产品线: 2024-03-10, 业务大类: null}\n"))
    assert result.returncode == 0, result.stderr
    rows = product_line_rows(sample_db)
    assert rows["0101"] == ("on", "12:30", "authoritative")
    assert rows["007"] == ("1.50", None, "authoritative")
    assert rows["1_000"] == ("2024-03-10", None, "authoritative")


def test_a_quoted_csv_value_keeps_its_line_break(sample_db, cli, write_config):
    data, result = sync_file(cli, write_config, "lines.csv",
                             '产品线代码,产品线,业务大类\nPL601,"两行\n的名称","a,b"\nPL602,x,y,z\n')
    # the ragged row is named by the line it starts on, after the two-line value
    assert result.returncode == 1 and f"{data}:4: 4 fields, the header has 3" in result.stderr
    data, result = sync_file(cli, write_config, "lines.csv", '产品线代码,产品线,业务大类\nPL601,"两行\r\n的名称","a,b"\n')
    assert result.returncode == 0, result.stderr
    assert product_line_rows(sample_db)["PL601"] == ("两行\r\n的名称", "a,b", "authoritative")


def test_a_csv_value_longer_than_pythons_csv_limit_is_synced_whole(sample_db, cli, write_config):
    """Python's csv module refuses fields over 131,072 characters unless told
    otherwise; refdata load was told, a sync of a config file was not and
    failed its table."""
    long = "长" * 200_000
    data, result = sync_file(cli, write_config, "lines.csv", f"产品线代码,产品线\nPL1,{long}\n")
    assert result.returncode == 0, result.stderr
    assert product_line_rows(sample_db)["PL1"][0] == long


@pytest.mark.parametrize("name,content,message", [
    ("lines.yml", 'schema_version: "1.0"\ndata: []\n', "{path}: no data rows; nothing synced"),
    ("lines.csv", "产品线代码,产品线\n", "{path}: no data rows; nothing synced"),
    ("lines.yml", 'schema_version: "1.0"\ndata:\n  - {产品线代码: PL1}\n  - {产品线代码: PL2, 产品线名称: x}\n',
     "{path}:4: column '产品线名称' is not a column of mapping.产品线"),
    ("lines.csv", "产品线代码,_source\nPL1,x\n", "{path}:1: column '_source' is not a column of mapping.产品线"),
    ("lines.csv", "产品线代码,产品线,产品线\nPL1,x,y\n", "{path}:1: column '产品线' is named twice in the header"),
    ("lines.yml", 'schema_version: "1.0"\ndata:\n  - {产品线代码: PL1, 产品线: x, 产品线: y}\n',
     "{path}:3: invalid YAML: key '产品线' given twice"),
    ("lines.yml", 'schema_version: "1.0"\ndata:\n  - 产品线代码: PL1\n    产品线: {a: 1}\n',
     "{path}:3: data item 1: column '产品线': a mapping is not one value"),
    ("lines.csv", "产品线代码,产品线\nPL1,甲\n".encode("gbk"), "{path}:1: not UTF-8 (byte 0xb2); it reads as GBK: convert it with iconv -f gbk -t utf-8"),
    ("lines.csv", "产品线代码,产品线\n".encode() + "PL1,甲\n".encode("gbk"),
     "{path}:2: not UTF-8 (byte 0xbc)"),
    ("lines.csv", "产品线代码,产品线\nPL1,甲\nPL2,a\x00b\n",
     "{path}:3: column '产品线' holds a NUL character, which PostgreSQL text cannot hold"),
    ("lines.yml", 'schema_version: "1.0"\ndata:\n  - {产品线代码: PL1, 产品线: "a\\0b"}\n',
     "{path}:3: column '产品线' holds a NUL character, which PostgreSQL text cannot hold"),
    ("lines.csv", '产品线代码,产品线\nPL1,甲\nPL2,"never\nclosed\n',
     "{path}:3: a quoted field is never closed (its quote opens on line 3)"),
    ("lines.csv", '产品线代码,产品线\nPL1,"甲"乙\n', "{path}:2: malformed CSV: ',' expected after '\"'"),
])
def test_a_bad_config_file_fails_its_table_naming_the_place_and_changes_nothing(
        name, content, message, sample_db, cli, write_config):
    before = []
    data, result = sync_file(cli, write_config, name, content, "delete_insert", before, sample_db)
    assert result.returncode == 1
    assert f"产品线: failed: table 产品线: {message.format(path=data)}" in result.stderr
    assert product_line_rows(sample_db) == before[0]


# -- the sync config itself -------------------------------------------------------


@pytest.mark.parametrize("top,message", [
    ({"schedule": '"61 1 * * *"'}, "reference_sync.yml:2: schedule '61 1 * * *' has a minute field "
                                   "'61': '61' is not from 0 to 59"),
    ({"schedule": '"0 1 * * funday"'}, "reference_sync.yml:2: schedule '0 1 * * funday' has a day of "
                                      "week field 'funday': 'funday' is not from 0 to 7"),
    ({"schedule": '"*/0 * * * *"'}, "schedule '*/0 * * * *' has a step of 0 in its minute field '*/0'"),
    ({"schedule": '"0 1 * *"'}, "schedule '0 1 * *' is not a cron expression of five fields"),
    ({"schema_version": '"2.0"'}, "reference_sync.yml:1: schema_version '2.0' is not supported"),
])
def test_a_bad_schedule_or_version_in_the_sync_config_is_refused_by_every_command(
        top, message, sample_db, cli, write_config):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "client"), **top)
    for command in ("apply", "sync", "validate"):
        result = cli("--config", str(config), command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, (command, result.stderr)
    assert sample_db.execute("SELECT to_regclass('refdata.sync_table')").fetchone() == (None,)


PLAN_STATUS = "        - {source: plan_status, target: 计划状态}\n"
UPDATED = "        updated_at_column: updated_at\n"


@pytest.mark.parametrize("incremental,find,replace,message", [
    (False, "      table: annuity_plan\n", "      table: annuity_plan\n      tabel: x\n", "12: table 年金计划: unknown field 'tabel'"),
    (False, "target: 计划全称}", "target: 计划全称, optional: true}", "14: table 年金计划: unknown field 'optional'"),
    (False, PLAN_STATUS, "        - {source: plan_status, target: 计划全称}\n",
     "15: table 年金计划: source_config.columns: target column '计划全称' is mapped twice"),
    (False, "      columns:\n", "      columns:\n        - {source: x}\n", "13: table 年金计划: missing required field 'target'"),
    (False, "primary_key: 年金计划号", "primary_key: 计划代码",
     "17: table 年金计划: primary_key column '计划代码' is not a target of source_config.columns"),
    (True, UPDATED, UPDATED + "        colum: x\n", "19: table 年金计划: unknown field 'colum'"),
    (True, ">= :last", "< :last", "17: table 年金计划: field source_config.incremental.where: where 'updated_at < "),
    (True, "sync_mode: upsert", "sync_mode: delete_insert", "19: table 年金计划: sync_mode delete_insert cannot be incremental"),
])
def test_a_bad_key_inside_a_table_entry_is_reported_at_its_own_line(
        incremental, find, replace, message, sample_db, cli, write_config):
    config = project_config(write_config)
    table = plan_table("LEG", "client", incremental=incremental)
    assert table.count(find) == 1
    path = sync_config(write_config, table.replace(find, replace))
    result = cli("--config", str(config), "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"refdata: error: {path}:{message}"), result.stderr


def test_schedule_takes_names_ranges_lists_and_steps(sample_db, cli, write_config, legacy_pg):
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"), schedule='"*/15 0-6 1,15 jan,JUL mon-fri"')
    assert cli("--config", str(config), "apply", env=legacy_pg.env("LEG")).returncode == 0
    result = cli("--config", str(config), "schedule")
    try:
        assert result.returncode == 0, result.stderr
        assert "at '*/15 0-6 1,15 jan,JUL mon-fri'" in result.stdout
        refused = cli("--config", str(config), "schedule", "--cron", "0 24 * * *")
        assert refused.returncode == 2
        assert "schedule: --cron '0 24 * * *' has an hour field '24': '24' is not from 0 to 23" in refused.stderr
    finally:
        cli("--config", str(config), "schedule", "--remove")


# -- MySQL values through mysql_fdw ------------------------------------------------


@pytest.mark.parametrize("via", ["fdw", "client"])
def test_a_four_byte_character_from_mysql_arrives_whole(via, sample_db, cli, write_config, legacy_mysql):
    """mysql_fdw connects in MySQL's three-byte utf8 unless told otherwise:
    an emoji arrived as '?'."""
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, "legacy_mysql", schema=legacy_mysql.name))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    legacy_mysql.rows([("P90001", "表情😀计划𠀀", "正常")])
    result = cli("--config", str(config), "sync", env=env)
    assert result.returncode == 0, result.stderr
    assert sample_db.execute(f'SELECT "计划全称" FROM {PLAN} WHERE "年金计划号" = %s',
                             ["P90001"]).fetchone() == ("表情😀计划𠀀",)


@pytest.mark.parametrize("via", ["fdw", "client"])
@pytest.mark.parametrize("from_url", [False, True])
def test_the_source_label_names_the_mysql_database_the_environment_gives(
        via, from_url, sample_db, dsn, cli, write_config, legacy_mysql):
    """Without source_config.schema the database is <PREFIX>_DATABASE (or the
    URL's path): the label named none (legacy_mysql:LEG/.annuity_plan)."""
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, "legacy_mysql").replace("      schema: enterprise\n", ""))
    env = legacy_mysql.env("LEG")
    if from_url:
        env = {"LEG_URL": f"mysql://{MYSQL['user']}:{MYSQL['password']}@{MYSQL['host']}:{MYSQL['port']}/{legacy_mysql.name}"}
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    legacy_mysql.rows([("P90001", "甲", "正常")])

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 0, result.stderr
    label = f"legacy_mysql:LEG/{legacy_mysql.name}.annuity_plan"
    assert f"({label} via {via}, " in result.stdout, result.stdout
    assert sample_db.execute("SELECT source FROM refdata.sync_run").fetchall() == [(label,)]
    assert MYSQL["password"] not in result.stdout + result.stderr
    if not from_url:  # a rendered script reads the database when psql runs it
        sample_db.execute("DELETE FROM refdata.sync_table")
        render = cli("--config", str(config), "render", env={})
        assert render.returncode == 0, render.stderr
        applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn], input=render.stdout,
                                 capture_output=True, text=True, env={**os.environ, **env})
        assert applied.returncode == 0, applied.stderr
        assert sample_db.execute("SELECT source_label FROM refdata.sync_table").fetchall() == [(label,)]


@pytest.mark.parametrize("incremental", [False, True])
def test_a_short_read_by_mysql_fdw_fails_the_table_instead_of_syncing_part_of_it(
        incremental, sample_db, cli, write_config, legacy_mysql):
    """mysql_fdw stops reading, with no error, at a YEAR value it reads as
    text (a foreign table set up by an earlier refdata, whose columns were
    text): the sync read none of the rows and said it succeeded. Applied
    again, the foreign table reads bytea and syncs the table whole, as the
    client path does."""
    sample_db.execute(f'ALTER TABLE {PLAN} ADD COLUMN "成立年份" integer')
    cur = legacy_mysql.conn.cursor()
    cur.execute("ALTER TABLE annuity_plan ADD COLUMN founded year")
    cur.execute("INSERT INTO annuity_plan (plan_code, plan_name, plan_status, founded) "
                "VALUES ('P90001', '甲', '正常', NULL), ('P90002', '乙', '正常', 2024), ('P90003', '丙', '正常', 2025)")
    year = "        - {source: founded, target: 成立年份}\n"
    config = project_config(write_config)
    table = plan_table("LEG", "fdw", "legacy_mysql", schema=legacy_mysql.name, incremental=incremental)
    sync_config(write_config, table.replace("        - {source: plan_status, target: 计划状态}\n",
                                            "        - {source: plan_status, target: 计划状态}\n" + year))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    sample_db.execute('ALTER FOREIGN TABLE refdata_stage."sync__年金计划__source" ALTER COLUMN founded TYPE text')
    before = sample_db.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall()

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 1
    assert "年金计划: failed: table 年金计划: mysql_fdw read 1 of the source's 3 rows and stopped" in result.stderr
    assert sample_db.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall() == before
    assert sample_db.execute("SELECT count(*) FROM refdata.sync_watermark").fetchone() == (0,)
    for via in ("fdw", "client"):
        sample_db.execute(f'DELETE FROM {PLAN} WHERE "年金计划号" LIKE %s', ["P9000%"])
        sample_db.execute("DELETE FROM refdata.sync_watermark")
        sync_config(write_config, table.replace("via: fdw", f"via: {via}").replace(
            "        - {source: plan_status, target: 计划状态}\n", "        - {source: plan_status, target: 计划状态}\n" + year))
        assert cli("--config", str(config), "apply", env=env).returncode == 0
        result = cli("--config", str(config), "sync", env=env)
        assert result.returncode == 0, result.stderr
        assert sample_db.execute(f'SELECT "年金计划号", "成立年份" FROM {PLAN} WHERE "年金计划号" LIKE %s ORDER BY 1',
                                 ["P9000%"]).fetchall() == [("P90001", None), ("P90002", 2024), ("P90003", 2025)], via


def test_the_short_read_check_of_an_incremental_table_counts_the_rows_changed_since_the_watermark(
        sample_db, cli, write_config, legacy_mysql):
    cur = legacy_mysql.conn.cursor()
    cur.executemany("INSERT INTO annuity_plan (plan_code, plan_name, plan_status, updated_at) VALUES (%s, %s, %s, %s)",
                    [("P90001", "甲", "正常", "2025-01-01"), ("P90002", "乙", "正常", "2025-01-02"),
                     ("P90003", "丙", "正常", "2025-01-03")])
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw", "legacy_mysql", schema=legacy_mysql.name, incremental=True))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    first = cli("--config", str(config), "sync", env=env)
    assert first.returncode == 0 and "inserted 3" in first.stdout, first.stdout + first.stderr
    cur.execute("UPDATE annuity_plan SET plan_name = '甲（新）', updated_at = '2025-02-01' WHERE plan_code = 'P90001'")

    second = cli("--config", str(config), "sync", env=env)

    assert second.returncode == 0, second.stderr
    assert "inserted 0, updated 1, promoted 0, unchanged 1" in second.stdout  # P90001, and P90003 at the watermark


@pytest.mark.parametrize("via,where", [("client", "source row 2"), ("fdw", "key 年金计划号=P90002")])
def test_mysql_bytes_that_are_not_text_fail_the_table_naming_row_and_column(
        via, where, sample_db, cli, write_config, legacy_mysql):
    """A zero byte first: mysql_fdw read the value into a text column as ''."""
    cur = legacy_mysql.conn.cursor()
    cur.execute("ALTER TABLE annuity_plan MODIFY plan_name varbinary(200)")
    cur.execute("INSERT INTO annuity_plan (plan_code, plan_name, plan_status) "
                "VALUES ('P90001', 'A', '正常'), ('P90002', x'00a5', '正常')")
    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", via, "legacy_mysql", schema=legacy_mysql.name))
    env = legacy_mysql.env("LEG")
    assert cli("--config", str(config), "apply", env=env).returncode == 0
    before = sample_db.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall()

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 1
    assert (f"年金计划: failed: table 年金计划: {where}: column 计划全称: "
            'invalid byte sequence for encoding "UTF8": 0x00') in result.stderr
    assert sample_db.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall() == before


def test_two_prefixes_that_differ_only_in_case_are_refused(sample_db, cli, write_config):
    """Foreign servers are named by prefix in lower case, environment
    variables are not: LEG and leg would share one server, and one table
    would read its source through the other's settings."""
    config = project_config(write_config)
    second = (plan_table("leg", "fdw").replace("name: 年金计划", "name: 计划二")
              .replace("target_table: 年金计划", "target_table: 计划二"))
    sync_config(write_config, plan_table("LEG", "fdw") + second)
    result = cli("--config", str(config), "apply")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "table 计划二: connection_env_prefix leg differs from LEG (table 年金计划) only in case" in result.stderr
    assert sample_db.execute("SELECT to_regclass('refdata.sync_table')").fetchone() == (None,)
    # the same spelling for both is one source, as before
    sync_config(write_config, plan_table("LEG", "fdw") + second.replace("connection_env_prefix: leg",
                                                                        "connection_env_prefix: LEG"))
    assert "only in case" not in cli("--config", str(config), "apply").stderr


def test_a_sync_config_saved_as_gbk_names_the_line_and_how_to_convert(sample_db, cli, write_config):
    config = project_config(write_config)
    path = sync_config(write_config, plan_table("LEG", "client"))
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    result = cli("--config", str(config), "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (f"refdata: error: {path}:3: sync config is not UTF-8 (byte 0xc4); "
                             "it reads as GBK: convert it with iconv -f gbk -t utf-8\n"), result.stderr



@pytest.mark.parametrize("find, replace, at, message", [
    ("    target_table: 年金计划\n", "    target_table: 年金计画\n", "target_table: 年金计画",
     'table 年金计划: target table "mapping"."年金计画" does not exist'),
    ("{source: plan_name, target: 计划全称}", "{source: plan_name, target: 计划名称}", "target: 计划名称}",
     'table 年金计划: column "计划名称" does not exist in "mapping"."年金计划" (did you mean "计划全称"?)'),
    ("    primary_key: 年金计划号\n", "    primary_key: 计划全称\n", "primary_key: 计划全称",
     'table 年金计划: primary_key ("计划全称") is not a primary key or unique constraint of "mapping"."年金计划"'),
])
def test_a_sync_table_the_catalog_refuses_is_named_at_its_line(find, replace, at, message, sample_db, cli,
                                                               write_config):
    config = project_config(write_config)
    table = plan_table("LEG", "client")
    assert table.count(find) == 1
    path = sync_config(write_config, table.replace(find, replace))
    line = next(n for n, t in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if at in t)
    for command in ("validate", "apply"):
        result = cli("--config", str(config), command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"refdata: error: {path}:{line}: {message} (database "), result.stderr
    assert sample_db.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)


def clash_tables(path, *names: str, fdw: str | None = None) -> str:
    """Sync tables of a file each (and one read through a foreign table, whose
    connection the environment does not give), into tables org, org1, ..."""
    out = ""
    for i, name in enumerate(names):
        out += (f"  - name: {name}\n    target_table: org{i or ''}\n    source_type: config_file\n"
                f"    source_config: {{file_path: \"{path}\", schema_version: \"1.0\"}}\n    primary_key: id\n")
    if fdw:
        out += (f"  - name: {fdw}\n    target_table: org_fdw\n    source_type: postgres\n"
                "    source_config: {connection_env_prefix: NOWHERE, table: org, columns: [{source: id, target: id}]}\n"
                "    primary_key: id\n")
    return out


LONG = "a" * 60


@pytest.mark.parametrize("domain, names, fdw, clash", [
    # two long names, shortened alike: one's staging table is the other's foreign table
    ("d", [f"{LONG}__source"], LONG, (LONG, 'its foreign table "refdata_stage"."sync__aaaa')),
    # refdata's own function refdata.sync_fdw(), which the sync function would replace
    ("d", ["fdw"], None, ("fdw", 'its function "refdata"."sync_fdw", which is refdata\'s function refdata.sync_fdw')),
    # a domain's function refdata."sync__backfill"
    ("sync", ["_backfill"], None, ("_backfill", 'its function "refdata"."sync__backfill", which is refdata\'s '
                                                "function refdata.sync__backfill")),
    # two sync tables: one's staging table is the other's foreign table
    ("d", ["x__source"], "x", ("x", 'its foreign table "refdata_stage"."sync__x__source", which is the staging '
                                    "table of sync table x__source")),
])
def test_a_sync_table_whose_generated_names_clash_is_refused_at_its_line(db, cli, write_config, domain, names, fdw,
                                                                         clash):
    db.execute("""CREATE TABLE org (id text PRIMARY KEY); CREATE TABLE org1 (id text PRIMARY KEY);
                  CREATE TABLE org_fdw (id text PRIMARY KEY); CREATE TABLE f (org text)""")
    data = write_config('schema_version: "1.0"\ndata:\n  - {id: A}\n', "orgs.yml")
    path = sync_config(write_config, clash_tables(data, *names, fdw=fdw))
    config = write_config(f"domains:\n  {domain}:\n    fact_table: f\n    foreign_keys:\n"
                          "      - {name: fk_org, source_column: org, target_table: org, target_key: id}\n")
    name, message = clash
    line = next(n for n, t in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                if t == f"  - name: {name}")
    for command in ("validate", "apply", "render"):
        result = cli("--config", str(config), command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"refdata: error: {path}:{line}: table {name}: refdata would name "
                                        f"{message}"), result.stderr
    assert db.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)
    # another name is taken
    path.write_text(path.read_text(encoding="utf-8").replace(f"name: {name}\n", f"name: {name}_2\n"),
                    encoding="utf-8")
    result = cli("--config", str(config), "apply")
    assert result.returncode == 0, result.stderr
