"""The statements `refdata apply` adds for reference_sync.yml.

Enters: a SyncConfig (and the main Config, whose foreign keys say which fact
columns name a synced table's rows), the environment for fdw connections.
Leaves: `Statement`s in apply order (the shared sync tables and functions,
then per table its tracking columns, settings row, staging table or foreign
server, user mapping and foreign table, and `refdata."sync_<table>"()`) and
warnings for fdw tables whose connection the environment does not give.
Config values are bound parameters; credentials are `FromEnv` values.
"""

from __future__ import annotations

from ..config import Config, DatabaseSource, SyncConfig, SyncTable
from ..errors import InputError, RefdataError
from ..names import DEFAULT_OWNER, ident, literal, object_name, qualified
from ..render import Statement, render, sql_file
from .connection import Connection, NotConfigured, connection, server_options

WRAPPER = {"postgres": "postgres_fdw", "legacy_mysql": "mysql_fdw"}
SHARED = [
    ("table", "refdata.sync_table", "tables/sync_table.sql"),
    ("table", "refdata.sync_run", "tables/sync_run.sql"),
    ("table", "refdata.sync_watermark", "tables/sync_watermark.sql"),
    ("function", "refdata.sync_bit", "functions/sync_bit.sql"),
    ("function", "refdata.sync_label", "functions/sync_label.sql"),
    ("function", "refdata.sync_merge", "functions/sync_merge.sql"),
    ("function", "refdata.sync_table", "functions/sync_table.sql"),
    ("function", "refdata.sync_failed", "functions/sync_failed.sql"),
    ("function", "refdata.sync_fdw", "functions/sync_fdw.sql"),
    ("function", "refdata.sync_server", "functions/sync_server.sql"),
    ("function", "refdata.sync_user_mapping", "functions/sync_user_mapping.sql"),
    ("function", "refdata.sync_foreign_table", "functions/sync_foreign_table.sql"),
]


def stage_name(t: SyncTable) -> str:
    return object_name("sync", t.name)


def source_name(t: SyncTable) -> str:
    """The foreign table an fdw table reads, in refdata_stage."""
    return object_name("sync", t.name, "source")


def wrapper_function(t: SyncTable) -> str:
    return qualified("refdata", object_name(f"sync_{t.name}"))


def refuse_clashes(sync: SyncConfig, config: Config | None) -> None:
    """InputError naming the sync table's line when a name refdata gives one
    of its objects (its function in schema refdata, its staging or foreign
    table in refdata_stage) is one refdata gives another object too: one of
    its own functions, a domain's function, another sync table's (long names
    are shortened first, so compared as created). Apply would replace the
    other object, or merge both into one. (A domain's staging table cannot
    clash: domain names do not start with sync_.)"""
    taken: dict[tuple[str, str], str] = {}
    own = [s for s in (render(config) if config else []) if s.kind == "function"]
    own += [Statement(kind, name, "") for kind, name, _ in SHARED if kind == "function"]
    for s in own:
        taken.setdefault(("refdata", s.name.split(".", 1)[1].split("(")[0]), f"refdata's function {s.name}")
    for i, t in enumerate(sync.tables):
        relation = ("its staging table", stage_name(t)) if t.effective_via == "client" else \
            ("its foreign table", source_name(t))
        for what, schema, name in (("its function", "refdata", object_name(f"sync_{t.name}")),
                                   (relation[0], "refdata_stage", relation[1])):
            holder = f"the {what.removeprefix('its ')} of sync table {t.name}"
            other = taken.setdefault((schema, name), holder)
            if other != holder:
                where = sync.where("tables", i, "name")
                raise InputError(f"{where + ': ' if where else ''}table {t.name}: refdata would name {what} "
                                 f"{qualified(schema, name)}, which is {other}; rename the sync table")


def server_name(t: SyncTable) -> str:
    kind = "pg" if t.source_type == "postgres" else "mysql"
    return object_name("refdata", t.source.connection_env_prefix.lower(), kind)


def source_label(t: SyncTable, conn: Connection | None = None, for_script: bool = False) -> tuple:
    """(head, schema, tail) of the source's name in refdata.sync_run: the
    MySQL database the environment names when the config does not (a
    rendered script's psql reads it), "${PREFIX_DATABASE}" when neither does."""
    s = t.source
    if not isinstance(s, DatabaseSource):
        return f"config_file:{s.file_path}", None, ""
    schema = remote_schema(t, conn)
    if schema is None:
        schema = conn.env("database") if for_script and conn else f"${{{s.connection_env_prefix}_DATABASE}}"
    return f"{t.source_type}:{s.connection_env_prefix}/", schema, f".{s.table}"


def remote_schema(t: SyncTable, conn=None) -> str | None:
    """PostgreSQL: the schema (default public). MySQL: the database, from
    source_config.schema, else from the connection settings."""
    s = t.source
    if "schema" in t.source_config or t.source_type == "postgres":
        return s.schema_
    return conn.database if conn else None


def references(t: SyncTable, config: Config | None) -> list[dict]:
    """Fact columns that name this table's rows, per data_sources.yml
    (declared FK constraints are read from the catalog at run time)."""
    refs = []
    for name, d in (config.domains.items() if config else []):
        for fk in d.foreign_keys:
            if (fk.target_schema, fk.target_table) == (t.target_schema, t.target_table):
                refs.append({"schema": d.fact_schema, "table": d.fact_table_for(name),
                             "columns": [[s, k] for s, k in zip(fk.sources, fk.keys)]})
    return refs


def statements(sync: SyncConfig, config: Config | None, env=None,
               for_script: bool = False, owner: str = DEFAULT_OWNER) -> tuple[list[Statement], list[str]]:
    """`for_script`: a psql script takes connection settings from the
    environment when it runs (\\getenv), so none are needed now. `owner`:
    the role the sync functions run as, whose user mappings they read through."""
    refuse_clashes(sync, config)
    out = [Statement(kind, name, sql_file(path)) for kind, name, path in SHARED]
    warnings: list[str] = []
    tracked = {(fk.target_schema, fk.target_table) for d in (config.domains.values() if config else [])
               for fk in d.foreign_keys}
    extensions: set[str] = set()
    servers: set[str] = set()
    for i, t in enumerate(sync.tables):
        target = qualified(t.target_schema, t.target_table)
        if (t.target_schema, t.target_table) not in tracked:
            out.append(Statement("tracking", f"{t.target_schema}.{t.target_table}", sql_file(
                "tracking/columns.sql.j2",
                table=target,
                table_literal=literal(target),
                check_name=object_name(t.target_table, "source_check"),
                index_name=object_name(t.target_table, "needs_review"),
                index_literal=literal(qualified(t.target_schema, object_name(t.target_table, "needs_review"))),
            )))
            # A table only the sync config names is still reference data:
            # its changes go to the audit log like an FK target's.
            out.append(Statement("trigger", f"{t.target_schema}.{t.target_table}.refdata_audit", sql_file(
                "triggers/audit.sql.j2", table=target, keys=list(t.keys))))
        s = t.source
        via = t.effective_via
        conn = None
        if isinstance(s, DatabaseSource):
            try:
                conn = (Connection(s.connection_env_prefix, t.source_type, "", 0, None, None) if for_script
                        else connection(s.connection_env_prefix, t.source_type, env))
            except InputError as e:
                raise InputError(f"table {t.name}: {e}") from None
            except NotConfigured as e:
                if via == "fdw":
                    # the file's line of the prefix the environment lacks, as config warnings name theirs
                    where = sync.where("tables", i, "source_config", "connection_env_prefix")
                    warnings.append(f"{where + ': ' if where else ''}table {t.name}: {e}; its foreign table is not "
                                    "set up and its sync will fail")
            if via == "fdw" and conn:
                host_var = conn.env("host").var if for_script else None
                server = server_name(t)
                wrapper = WRAPPER[t.source_type]
                if wrapper not in extensions:
                    extensions.add(wrapper)
                    out.append(Statement("extension", wrapper, f"CREATE EXTENSION IF NOT EXISTS {ident(wrapper)};\n"))
                if server not in servers:
                    servers.add(server)
                    options = {"host": conn.env("host"), "port": conn.env("port")}
                    if t.source_type == "postgres":
                        options["dbname"] = conn.env("database")
                        user_key = "user"
                    else:
                        user_key = "username"
                    keys = list(options)
                    # A PostgreSQL URL's libpq parameters (sslmode, ...), as data:
                    # postgres_fdw refuses one it does not take.
                    out.append(Statement("server", server, (
                        "SELECT refdata.sync_server(%(server)s, %(wrapper)s, jsonb_build_object("
                        + ", ".join(f"'{k}', NULLIF(%({k})s::text, '')" for k in keys) + ") || %(extra)s::jsonb);\n"),
                        {"server": server, "wrapper": wrapper, **options, "extra": server_options(conn, for_script)},
                        requires_env=host_var))
                    # postgres_fdw lets a role that is not a superuser connect only
                    # with a password the server asked for; without one in the
                    # environment the owner's mapping says it connects without
                    # (password_required false, which only a superuser may set).
                    without_password = ("'password_required', CASE WHEN NULLIF(%(password)s::text, '') IS NULL "
                                        "THEN 'false' END, " if t.source_type == "postgres" else "")
                    out.append(Statement("user_mapping", server, (
                        f"SELECT refdata.sync_user_mapping(%(server)s, %(owner)s, jsonb_build_object("
                        f"'{user_key}', NULLIF(%(user)s::text, ''), {without_password}"
                        f"'password', NULLIF(%(password)s::text, '')));\n"),
                        {"server": server, "owner": owner, "user": conn.env("user"), "password": conn.env("password")},
                        requires_env=host_var))
                schema = remote_schema(t, conn)
                if not schema and for_script:
                    schema = conn.env("database")
                if not schema:
                    raise RefdataError(f"table {t.name}: no MySQL database: set source_config.schema "
                                       f"or {s.connection_env_prefix}_DATABASE")
                out.append(Statement("foreign_table", f"refdata_stage.{source_name(t)}", (
                    "SELECT refdata.sync_foreign_table(%(server)s, %(owner)s, %(schema)s, %(table)s, %(local)s, "
                    "%(columns)s, %(updated)s, %(catalog)s, %(fetch_size)s);\n"),
                    {"server": server, "owner": owner, "schema": schema, "table": s.table, "local": source_name(t),
                     "catalog": object_name(server, "columns"),
                     "columns": [c.source for c in s.columns] if s.columns else None,
                     "updated": s.incremental.column if s.incremental else None,
                     "fetch_size": sync.batch_size},
                    requires_env=host_var))
        params = {
            "name": t.name,
            "target_schema": t.target_schema,
            "target_table": t.target_table,
            "source_type": t.source_type,
            **dict(zip(("source_label", "source_schema_label", "source_table_label"),
                       source_label(t, conn, for_script))),
            "via": via,
            "mode": t.sync_mode,
            "keys": list(t.keys),
            "columns": [[c.source, c.target] for c in s.columns] if isinstance(s, DatabaseSource) and s.columns else [],
            "source_schema": "refdata_stage" if via == "fdw" else None,
            "source_table": source_name(t) if via == "fdw" else None,
            "stage_schema": "refdata_stage",
            "stage_table": stage_name(t),
            "updated_column": s.incremental.column if isinstance(s, DatabaseSource) and s.incremental else None,
            "updated_op": s.incremental.operator if isinstance(s, DatabaseSource) and s.incremental else None,
            "refs": references(t, config),
        }
        out.append(Statement("params", f"refdata.sync_table.{t.name}", sql_file("sync/param.sql"), params))
        if via == "client":
            stage = qualified("refdata_stage", stage_name(t))
            out.append(Statement("stage", f"refdata_stage.{stage_name(t)}", sql_file(
                "sync/stage.sql.j2", stage_literal=literal(stage), target_literal=literal(target),
                comment=literal(f"refdata: client-path staging rows of {target} (sync table {t.name})"))))
        out.append(Statement("function", f"refdata.{object_name(f'sync_{t.name}')}", sql_file(
            "sync/wrapper.sql.j2", function=wrapper_function(t), name_literal=literal(t.name),
            comment=literal(f"refdata: syncs {target} (sync table {t.name})"))))
    out.append(Statement("params", "refdata.sync_table", sql_file("sync/forget.sql"),
                         {"names": [t.name for t in sync.tables]}))
    return out, warnings
