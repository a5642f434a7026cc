"""Reference sync: what users get wrong in its inputs (connection URLs,
config files), each refused or read as written, never half-read and never
echoing a password."""

from __future__ import annotations

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
