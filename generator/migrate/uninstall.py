"""Removing what refdata created, in one transaction.

Enters: a connection, the domains to remove (none: all of refdata), the
config (which reference tables the domains derive into), and whether the
tracking columns go too; for everything, the DSN (the pg_cron job of
`refdata schedule`). Leaves: one line per thing removed. Tracking columns
and the rows in reference tables stay unless asked; dropping them turns
auto-derived rows into ordinary rows, and the lines say how many.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import make_conninfo

from ..catalog import query
from ..config import Config, SyncConfig
from ..db import DEFAULT_LOCK_TIMEOUT, connect, describe
from ..errors import InputError, RefdataError
from ..names import ident, object_name, qualified
from ..render import fact_key_index

APPLY_LOCK_KEY = 0x72656664  # the same key apply takes: never both at once
TRACKING = ("_source", "_needs_review", "_derived_from_domain", "_derived_at")


def uninstall(conn: psycopg.Connection, config: Config, domains: list[str], drop_tracking: bool,
              sync: SyncConfig | None = None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT) -> list[str]:
    """`sync`: the reference sync config, whose targets keep their tracking
    columns while only some domains go (its merge writes them)."""
    try:
        return _uninstall(conn, config, domains, drop_tracking, sync, lock_timeout)
    except psycopg.errors.LockNotAvailable as e:
        message = (e.diag.message_primary or str(e)).strip()
        raise RefdataError(f"uninstall: {message}: a table was locked for longer than {lock_timeout} "
                           f"(--lock-timeout); nothing was removed ({describe(conn)})") from None


def _uninstall(conn, config, domains, drop_tracking, sync, lock_timeout) -> list[str]:
    lines: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [APPLY_LOCK_KEY])
        # Waiting on a table a load holds would queue every later reader and
        # writer of that table behind this transaction: give up instead.
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
        if domains:
            for d in domains:
                lines += _remove_domain(conn, d)
            others = {(fk.target_schema, fk.target_table) for name, dom in config.domains.items()
                      if name not in domains for fk in dom.foreign_keys}
            others |= {(t.target_schema, t.target_table) for t in (sync.tables if sync else [])}
            tables = sorted({(fk.target_schema, fk.target_table) for name in domains if name in config.domains
                             for fk in config.domains[name].foreign_keys} - others)
            lines += _drop_fact_key_indexes(conn, config, domains)
        else:
            lines += _remove_all(conn)
            lines += _drop_fact_key_indexes(conn, config, None)
            tables = None
        if drop_tracking:
            lines += _drop_tracking(conn, tables)
    return lines


def _triggers(conn, functions_filter: str, params: list) -> list[tuple[str, str, str]]:
    return conn.execute(
        f"""SELECT t.tgname, n.nspname, c.relname
            FROM pg_catalog.pg_trigger AS t
            JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
            JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
            WHERE NOT t.tgisinternal AND t.tgparentid = 0
              AND p.pronamespace::regnamespace::text IN ('refdata', 'refdata_stage') AND {functions_filter}
            ORDER BY 2, 3, 1""", params).fetchall()


def _drop_triggers(conn, triggers) -> list[str]:
    for name, schema, table in triggers:
        conn.execute(f"DROP TRIGGER {ident(name)} ON {qualified(schema, table)}")
    return [f"dropped trigger {name} on {schema}.{table}" for name, schema, table in triggers]


def _remove_all(conn) -> list[str]:
    lines = _drop_triggers(conn, _triggers(conn, "true", []))
    # The reference sync's servers, and with them the owner role's user
    # mappings (the source's credentials) and the foreign tables.
    for (server,) in conn.execute(
            r"""SELECT s.srvname FROM pg_catalog.pg_foreign_server AS s
                WHERE s.srvname LIKE 'refdata\_\_%'
                   OR s.oid IN (SELECT ft.ftserver FROM pg_catalog.pg_foreign_table AS ft
                                JOIN pg_catalog.pg_class AS c ON c.oid = ft.ftrelid
                                WHERE c.relnamespace = to_regnamespace('refdata_stage'))
                ORDER BY 1""").fetchall():
        conn.execute(f"DROP SERVER {ident(server)} CASCADE")
        lines.append(f"dropped foreign server {server} with its user mappings and foreign tables")
    for schema in ("refdata_stage", "refdata"):
        if conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", [schema]).fetchone()[0]:
            # the schemas are refdata's alone: everything in them goes (never anything else, see README)
            conn.execute(f"DROP SCHEMA {ident(schema)} CASCADE")
            lines.append(f"dropped schema {schema} and everything in it")
    return lines


def remove_schedule(dsn: str) -> list[str]:
    """The pg_cron job `refdata schedule` made for this database, if pg_cron
    is loaded and there is one (it lives in pg_cron's own database, outside
    the uninstall's transaction)."""
    from ..sync.schedule import job_name, unschedule

    with connect(dsn, autocommit=True) as conn:
        cron_db = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
        database = conn.info.dbname
    if not cron_db:
        return []
    with connect(make_conninfo(dsn, dbname=cron_db), autocommit=True) as cron:
        if not cron.execute("SELECT to_regclass('cron.job') IS NOT NULL").fetchone()[0] or not cron.execute(
                "SELECT EXISTS (SELECT FROM cron.job WHERE jobname = %s)", [job_name(database)]).fetchone()[0]:
            return []
    return [unschedule(dsn)]


def _remove_domain(conn, domain: str) -> list[str]:
    # A long domain name is shortened in its functions' names (a prefix and a
    # hash): their comment, which ends naming the domain, finds them too.
    prefix = domain + "__"
    functions = conn.execute(
        """SELECT p.oid::regprocedure::text, p.proname FROM pg_catalog.pg_proc AS p
           WHERE p.pronamespace = to_regnamespace('refdata')
             AND (left(p.proname, length(%s)) = %s
                  OR right(pg_catalog.obj_description(p.oid, 'pg_proc'), length(%s)) = %s)
           ORDER BY 2""", [prefix, prefix, f"(domain {domain})", f"(domain {domain})"]).fetchall()
    stage = conn.execute("SELECT to_regclass(%s)", [qualified("refdata_stage", object_name(domain))]).fetchone()[0]
    has_params = conn.execute("SELECT to_regclass('refdata.domain_param') IS NOT NULL").fetchone()[0] and \
        conn.execute("SELECT 1 FROM refdata.domain_param WHERE domain = %s", [domain]).fetchone()
    if not (functions or stage or has_params):
        raise InputError(f"uninstall: domain {domain} is not installed in this database")
    lines = _drop_triggers(conn, _triggers(conn, "p.proname = ANY (%s)", [[f[1] for f in functions]]))
    for signature, _ in functions:
        conn.execute(f"DROP FUNCTION {signature}")
        lines.append(f"dropped function {signature}")
    if stage:
        conn.execute(f"DROP TABLE {qualified('refdata_stage', object_name(domain))}")
        lines.append(f"dropped staging table refdata_stage.{object_name(domain)}")
    if has_params:
        conn.execute("DELETE FROM refdata.domain_param WHERE domain = %s", [domain])
        lines.append(f"deleted the run-time values of domain {domain} (refdata.domain_param)")
    return lines


def _drop_fact_key_indexes(conn, config: Config, domains: list[str] | None) -> list[str]:
    """The indexes apply made on fact columns (their comment marks them,
    sql/catalog/fact_key_indexes.sql): all of them (`domains` None), or
    those of the domains' FKs that no domain staying uses. One an earlier
    refdata made before it marked them goes too, told by its name and exact
    shape for a configured FK and no comment at all
    (sql/catalog/unmarked_fact_key_index.sql). A user's index on the same
    columns is never marked, and stays."""
    def indexes(names) -> dict[tuple[str, str, str], list[str]]:
        return {fact_key_index(n, config.domains[n], fk): list(fk.sources)
                for n in names if n in config.domains for fk in config.domains[n].foreign_keys}

    marked = [(schema, table, index) for schema, table, index, _ in conn.execute(query("fact_key_indexes"))]
    configured = indexes(config.domains if domains is None else domains)
    if domains is not None:
        configured = {k: v for k, v in configured.items() if k not in indexes(set(config.domains) - set(domains))}
        marked = [m for m in marked if m in configured]
    marked += sorted(key for key, columns in configured.items() if key not in marked and conn.execute(
        query("unmarked_fact_key_index"),
        {"schema": key[0], "table": key[1], "index": key[2], "columns": columns}).fetchone()[0])
    for schema, _, index in marked:
        conn.execute(f"DROP INDEX {qualified(schema, index)}")
    return [f"dropped index {schema}.{index}" for schema, _, index in marked]


def _drop_tracking(conn, tables: list[tuple[str, str]] | None) -> list[str]:
    found = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_catalog.pg_class AS c
           JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
             AND (SELECT count(*) FROM pg_catalog.pg_attribute AS a
                  WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attname = ANY (%s)) = 4
           ORDER BY 1, 2""", [list(TRACKING)]).fetchall()
    lines = []
    for schema, table in found:
        if tables is not None and (schema, table) not in tables:
            continue
        target = qualified(schema, table)
        derived = conn.execute(f"""SELECT count(*) FROM {target} WHERE "_source" = 'auto_derived'""").fetchone()[0]
        try:
            with conn.transaction():
                conn.execute(f"ALTER TABLE {target} " + ", ".join(f"DROP COLUMN {ident(c)}" for c in TRACKING))
        except psycopg.errors.DependentObjectsStillExist as e:
            users = [line.split(" depends on ")[0] for line in (e.diag.message_detail or "").splitlines()]
            raise RefdataError(
                f"cannot drop the tracking columns of {schema}.{table}: {', '.join(u for u in users if 'refdata.' in u) or 'other objects'}"
                " still use them; take the domain out of the config and apply first, or uninstall everything; "
                "nothing was removed") from None
        lines.append(f"dropped the tracking columns of {schema}.{table}: {derived} auto-derived row(s) "
                     "stay as ordinary rows")
    return lines
