"""A plan: the statements that bring the live database to the rendered config.

Enters: a live connection, the rendered statements (render.py) and the
config's tables. Leaves: a `Plan` (steps, the fingerprint of what refdata owns
or touches in the live database, which steps drop data).

How: the schemas of the touched tables and refdata's own schemas are copied
(schema only) into a scratch database; there refdata's own objects are
removed and the rendered SQL is run, which gives the desired state; migra
diffs live -> desired over the objects in scope (refdata's schemas, the
touched tables' columns, constraints, indexes and triggers). What migra does
not compare is compared here: owners, privileges and comments of refdata's
objects, deferred foreign keys (altered in place, never dropped and
re-added), and the rows of refdata.domain_param (data, not schema).
On a database without schema refdata the plan is the rendered SQL itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import psycopg
import sqlalchemy
from migra import Migration
from schemainspect import get_inspector
from schemainspect.pg.obj import InspectedConstraint, InspectedTrigger

from ..catalog import relation_states, table_params, fingerprint, query, touched_tables
from ..errors import InputError, RefdataError
from ..names import ident, literal, qualified
from ..render import PSQL_PREAMBLE, FromEnv, Statement
from ..db import DEFAULT_LOCK_TIMEOUT
from .scratch import conninfo, scratch_database

# schemainspect writes a trigger's DROP without doubling the double quotes in
# its names: a fact table named 'Fact "Table"' broke every plan dropping one.
InspectedTrigger.drop_statement = property(
    lambda t: f"drop trigger if exists {ident(t.name)} on {qualified(t.schema, t.table_name)};")

OWN_SCHEMAS = ("refdata", "refdata_stage")
# Reference sync's connection objects (wrapper extension, foreign servers,
# user mappings, foreign tables): migra compares none of them, and the
# credentials come from the environment of each apply. Each statement is
# idempotent and contacts no source, so every plan runs them on the live
# database, after the functions they call; the scratch database never has them.
FDW_KINDS = ("extension", "server", "user_mapping", "foreign_table")
# Kinds of the inventory that are objects of refdata (summaries count them).
SUMMARY_KINDS = ("schema", "table", "view", "function", "trigger", "tracking columns", "parameters")
# Table lock modes a plan's steps take, weakest first: CREATE INDEX; CREATE
# TRIGGER and ALTER TABLE ... ENABLE TRIGGER; ALTER TABLE of a column or
# constraint, DROP TRIGGER, DROP INDEX, CREATE OR REPLACE VIEW, DROP TABLE.
LOCK_MODES = ("SHARE", "SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE")


@dataclass
class Plan:
    steps: list[Statement]
    fingerprint: str
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    destructive: list[str] = field(default_factory=list)
    # (schema, table, mode): the tables the steps change, each in the
    # strongest mode a step takes on it; apply takes them all before its first
    # step. None: not known (a plan file without its "-- locks:" line).
    locks: list[tuple[str, str, str]] | None = None

    def script(self) -> str:
        """The plan as a psql script, all or nothing; `apply --sql` reads it back."""
        if not self.steps:
            return ""
        body = "".join(f"\n-- step {n}\n{s.script().rstrip()}\n" for n, s in enumerate(self.steps, start=1))
        return (
            f"-- refdata plan: {len(self.steps)} step(s). Review, then apply with\n"
            "--   refdata apply --sql FILE   (refuses if the database changed since)\n"
            "-- or psql -v ON_ERROR_STOP=1 -f FILE\n"
            f"-- fingerprint: {self.fingerprint}\n"
            + (f"-- locks: {json.dumps(self.locks, ensure_ascii=False)}\n" if self.locks is not None else "")
            + PSQL_PREAMBLE +
            "BEGIN;\n"
            f"SET LOCAL lock_timeout = {literal(self.lock_timeout)};\n"
            + "".join(f"LOCK TABLE {qualified(schema, table)} IN {mode} MODE;\n"
                      for schema, table, mode in self.locks or [])
            + body
            + "\nCOMMIT;\n"
        )


def _has_refdata(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regnamespace('refdata') IS NOT NULL").fetchone()[0]


def make_plan(conn: psycopg.Connection, statements: list[Statement], configured: list[tuple[str, str]],
              scratch_dsn: str | None = None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
              facts: list[tuple[str, str]] = ()) -> Plan:
    """`facts`: the configured fact tables (the others get tracking columns)."""
    print_ = fingerprint(conn, configured)
    existing = touched_tables(conn, configured)
    if not _has_refdata(conn):
        # Nothing of refdata's to compare with: the plan is the rendered SQL.
        # It adds tracking columns to the reference tables and triggers and
        # indexes to the fact tables (to their partitions with them: LOCK
        # TABLE takes a partitioned table's partitions too).
        locks = [(schema, table, LOCK_MODES[1] if (schema, table) in facts else LOCK_MODES[2])
                 for schema, table in existing if (schema, table) in configured]
        return Plan(list(statements), print_, lock_timeout, locks=locks)
    schemas = [r[0] for r in conn.execute(query("copied_schemas"), table_params(existing))]
    # Roles are the cluster's, not the database's: building the desired state
    # creates a missing one (NOLOGIN, as apply would); the plan creates it too,
    # for the psql route on a server the plan was not made on.
    roles = [s for s in statements if s.kind == "role" and not conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = %s)", [s.name]).fetchone()[0]]
    with scratch_database(conn, schemas, scratch_dsn, lock_timeout) as scratch:
        _build_desired(scratch, [s for s in statements if s.kind not in FDW_KINDS])
        locks = table_locks(relation_states(conn, existing), relation_states(scratch, existing))
        steps = roles + _schema_steps(conn, scratch, existing)
        steps += _deferral_steps(conn, scratch, existing)
        steps += _own_object_steps(conn, scratch)
        steps += _index_comment_steps(conn, scratch)
        steps += _data_steps(conn, scratch, statements)
    steps += _fdw_steps(conn, statements)
    steps += _guard_steps(conn, statements)
    steps += _rights_steps(conn, statements, steps)
    plan = Plan(steps, print_, lock_timeout, locks=locks if steps else [])
    plan.destructive = destructive_steps(conn, steps)
    return plan


def table_locks(live: dict, desired: dict) -> list[tuple[str, str, str]]:
    """The tables of the live database that the plan from `live` to `desired`
    (catalog.relation_states of each) changes, each with the strongest lock
    mode a step changing it takes (LOCK_MODES), in name order. A relation
    only the desired state has is created: nobody else can hold it."""
    locks = []
    for (schema, name), (kind, shape, triggers, indexes) in sorted(live.items()):
        want = desired.get((schema, name))
        if want is None or want[0] != kind or want[1] != shape or triggers - want[2] or indexes - want[3]:
            mode = LOCK_MODES[2]  # dropped, altered, a trigger or index dropped or replaced
        elif want[2] - triggers:
            mode = LOCK_MODES[1]
        elif want[3] - indexes:
            mode = LOCK_MODES[0]
        else:
            continue
        locks.append((schema, name, mode))
    return locks


def _rights_steps(live: psycopg.Connection, statements: list[Statement], planned: list[Statement]) -> list[Statement]:
    """The owner role's rights (render's kind "rights"): grants on the
    configured tables outside refdata's schemas, column grants, and the write
    rights on refdata's logs it takes back, none of which the comparisons
    above see. The statement runs on the live database in a savepoint that is
    rolled back: when it would change a privilege or owner (or cannot run
    before this plan's other steps), it is a step, the last one. The grants
    on synced tables follow the rows of refdata.sync_table: when the plan
    writes those, the live database cannot tell yet, and the rights are a step."""
    rights = [s for s in statements if s.kind == "rights"]
    if not rights:
        return []
    if any(s.kind == "params" and s.name.split(".")[:2] == ["refdata", "sync_table"] for s in planned):
        return rights
    before = live.execute(query("privileges")).fetchall()
    try:
        with live.transaction():
            for s in rights:
                live.execute(s.sql, s.bound_params())
            after = live.execute(query("privileges")).fetchall()
            raise psycopg.Rollback()
    except psycopg.Error:
        return rights
    return rights if after != before else []


def _guard_steps(live: psycopg.Connection, statements: list[Statement]) -> list[Statement]:
    """The event triggers that keep the owner role from DDL (render's kind
    "event_trigger"; migra compares no event triggers): their statement when
    the live database lacks one of the three or has it disabled, and the
    planner may create them (for any other role the statement only warns, so a
    plan holding it would never come to nothing left to do)."""
    have, superuser = live.execute(
        """SELECT (SELECT count(*) FROM pg_catalog.pg_event_trigger
                    WHERE evtname IN ('refdata_owner_guard_start', 'refdata_owner_guard_end',
                                      'refdata_owner_guard_drop') AND evtenabled = 'A'),
                  (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)""").fetchone()
    return [s for s in statements if s.kind == "event_trigger"] if have < 3 and superuser else []


def _build_desired(scratch: psycopg.Connection, statements: list[Statement]) -> None:
    """In the scratch copy: remove refdata's objects, then run the rendered SQL."""
    with scratch.transaction():
        # The fact key indexes refdata made: the rendered SQL makes again those
        # still needed, so migra drops the others from the live database.
        for schema, _, index, _ in scratch.execute(query("fact_key_indexes")).fetchall():
            scratch.execute(f"DROP INDEX {qualified(schema, index)}")
        for (sql,) in scratch.execute(
            """SELECT format('DROP TRIGGER %I ON %I.%I', t.tgname, n.nspname, c.relname)
               FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
               JOIN pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_proc AS p ON p.oid = t.tgfoid
               WHERE NOT t.tgisinternal AND t.tgparentid = 0
                 AND p.pronamespace::regnamespace::text IN ('refdata', 'refdata_stage')""").fetchall():
            scratch.execute(sql)
        # In the scratch copy only: the live database never sees this. The
        # tables of schema refdata stay: they hold data (run history, audit
        # log), and a table the rendered SQL no longer creates is kept.
        # Without a sync config the sync functions are not planned: they stay.
        planned_sync = any("FUNCTION refdata.sync_" in s.sql for s in statements)
        for (sql,) in scratch.execute(
            """SELECT format('DROP TABLE %%I.%%I CASCADE', n.nspname, c.relname)
               FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
               WHERE n.nspname = 'refdata_stage' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND (%s OR c.relname NOT LIKE 'sync\\_%%')""", [planned_sync]).fetchall():
            scratch.execute(sql)
        for (sql,) in scratch.execute(
            """SELECT format('DROP %%s IF EXISTS %%s CASCADE', kind, name) FROM (
                   SELECT CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END AS kind,
                          format('%%I.%%I', n.nspname, c.relname) AS name
                   FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'refdata' AND c.relkind IN ('v', 'm')
                   UNION ALL
                   SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                          p.oid::regprocedure::text
                   FROM pg_proc AS p WHERE p.pronamespace = to_regnamespace('refdata')) AS o
               WHERE %s OR (o.name NOT LIKE 'refdata.sync\\_%%' AND o.name NOT LIKE 'refdata."sync\\_%%')""",
                [planned_sync]).fetchall():
            scratch.execute(sql)
        for s in statements:
            try:
                scratch.execute(s.sql, s.bound_params())
            except psycopg.Error as e:
                message = (e.diag.message_primary or str(e)).strip()
                raise RefdataError(f"building the desired state failed at {s.kind} {s.name}: {message}") from None


def _inspect(conn: psycopg.Connection, tables: set[tuple[str, str]]):
    """schemainspect's view of one database, cut down to what refdata owns or touches."""
    dsn, password = conninfo(conn), conn.info.password
    # schemainspect's catalog queries resolve operators in pg_catalog only (see apply.pin_search_path)
    pinned = {"options": "-c search_path=pg_catalog,pg_temp", **({"password": password} if password else {})}
    engine = sqlalchemy.create_engine("postgresql+psycopg://", poolclass=sqlalchemy.pool.NullPool,
                                      creator=lambda: psycopg.connect(dsn, **pinned))
    with engine.connect() as c:
        inspector = get_inspector(c)
    engine.dispose()
    # Triggers a partition inherits come and go with the parent's: never a step of their own.
    clones = set(conn.execute(
        """SELECT n.nspname, c.relname, t.tgname FROM pg_catalog.pg_trigger AS t
           JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
           JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
           WHERE t.tgparentid <> 0""").fetchall())

    def keep(obj) -> bool:
        schema = getattr(obj, "schema", None)
        if isinstance(obj, InspectedTrigger) and (schema, obj.table_name, obj.name) in clones:
            return False
        if schema in OWN_SCHEMAS:
            return True
        table = getattr(obj, "table_name", None)
        if table is not None:
            # Foreign keys of touched tables are compared by deferral only (_deferral_steps).
            return (schema, table) in tables and not (isinstance(obj, InspectedConstraint) and obj.is_fk)
        if getattr(obj, "relationtype", None) in ("r", "p"):
            return (schema, obj.name) in tables
        return False

    for attr, value in list(vars(inspector).items()):
        if isinstance(value, dict):
            setattr(inspector, attr, type(value)((k, v) for k, v in value.items() if keep(v)))
    return inspector


def _schema_steps(live, scratch, tables) -> list[Statement]:
    scope = set(tables)
    migration = Migration(_inspect(live, scope), _inspect(scratch, scope))
    migration.set_safety(False)
    migration.add_all_changes(privileges=False)
    steps = []
    for sql in migration.statements:
        sql = sql.strip()
        if not sql:
            continue
        if sql.lower().startswith("set check_function_bodies"):
            # function bodies may name objects later steps create
            sql = "SET LOCAL check_function_bodies = off;"
        steps.append(Statement("ddl", _label(sql), sql + "\n"))
    return steps


def _deferral_steps(live, scratch, tables) -> list[Statement]:
    params = table_params(tables)
    have = set(live.execute(query("deferred_foreign_keys"), params).fetchall())
    want = scratch.execute(query("deferred_foreign_keys"), params).fetchall()
    return [
        Statement("ddl", f"defer {schema}.{table}.{name}",
                  f"ALTER TABLE {ident(schema)}.{ident(table)} ALTER CONSTRAINT {ident(name)} "
                  "DEFERRABLE INITIALLY DEFERRED;\n")
        for schema, table, name in want if (schema, table, name) not in have
    ]


def _own_object_steps(live, scratch) -> list[Statement]:
    """Owners, privileges and comments of refdata's objects, as the rendered SQL left them.

    Privileges a DBA granted on refdata's objects (USAGE and INSERT for a
    loader, say) stay: only what PUBLIC holds and the rendered SQL revokes
    is revoked; what the rendered SQL grants is granted.
    """
    current = scratch.execute("SELECT current_user").fetchone()[0]
    have = {(r[0], r[1]): r for r in live.execute(query("own_objects"))}
    steps = []
    for kind, name, owner, comment, grants in scratch.execute(query("own_objects")).fetchall():
        old = have.get((kind, name))
        if old is None:  # created by this plan: the applying role's, with the default privileges
            old = (kind, name, None, None, [["PUBLIC", "EXECUTE", False]] if kind in ("FUNCTION", "PROCEDURE") else [])
        target = f"{kind} {name}"
        on = f"{'TABLE' if kind in ('VIEW', 'MATERIALIZED VIEW') else kind} {name}"
        sql = []
        if owner != current and owner != old[2]:
            sql.append(f"ALTER {target} OWNER TO {ident(owner)};")
        old_grants = {(g, p): o for g, p, o in old[4]}
        new_grants = {(g, p): o for g, p, o in grants}
        for (grantee, privilege) in sorted(old_grants):
            if grantee == "PUBLIC" and (grantee, privilege) not in new_grants:
                sql.append(f"REVOKE {privilege} ON {on} FROM PUBLIC;")
        for (grantee, privilege), option in sorted(new_grants.items()):
            # refdata never grants to PUBLIC (a default privilege of a copied object is no grant)
            if grantee != "PUBLIC" and old_grants.get((grantee, privilege)) != option:
                sql.append(f"GRANT {privilege} ON {on} TO {grantee}{' WITH GRANT OPTION' if option else ''};")
        if comment is not None and comment != old[3]:
            sql.append(f"COMMENT ON {target} IS {literal(comment)};")
        if sql:
            steps.append(Statement("ddl", f"privileges of {target}", "\n".join(sql) + "\n"))
    return steps


def _index_comment_steps(live, scratch) -> list[Statement]:
    """The comment that marks a fact key index as refdata's (migra compares
    no comments, and creates an index without its comment): on each one
    the desired state has and the live database lacks or has unmarked."""
    have = {(r[0], r[2]) for r in live.execute(query("fact_key_indexes"))}
    return [Statement("ddl", f"comment of index {schema}.{index}",
                      f"COMMENT ON INDEX {qualified(schema, index)} IS {literal(comment)};\n")
            for schema, _, index, comment in scratch.execute(query("fact_key_indexes")).fetchall()
            if (schema, index) not in have]


def _data_steps(live, scratch, statements: list[Statement]) -> list[Statement]:
    """Rows the rendered SQL writes into refdata's tables are data: migra leaves
    them alone. A table's statements are in the plan where its rows differ
    between live and desired (the statements are idempotent upserts);
    refdata.domain_param is compared per domain, and rows of domains no
    longer configured are deleted."""
    by_table: dict[str, list[Statement]] = {}
    for s in statements:
        if s.kind == "params":
            by_table.setdefault(".".join(s.name.split(".")[:2]), []).append(s)
    steps = []
    for table, written in by_table.items():
        if table == "refdata.domain_param":
            steps += _domain_param_steps(live, written)
        elif _rows(live, table) != _rows(scratch, table):
            steps += written
    if "refdata.domain_param" not in by_table:
        steps += _domain_param_steps(live, [])
    return steps


def _fdw_steps(live, statements: list[Statement]) -> list[Statement]:
    """The reference sync's connection statements (FDW_KINDS) whose outcome the
    live database does not show yet: a missing extension, server, mapping or
    foreign table, server or mapping options other than the environment
    gives now, a foreign table defined from the config with other columns.
    Compared with the bound values, on the live catalog: no source is contacted."""
    steps: list[Statement] = []
    pending_servers: set[str] = set()
    for s in statements:
        if s.kind not in FDW_KINDS:
            continue
        params = {k: v.value if isinstance(v, FromEnv) else v for k, v in (s.params or {}).items()}
        if s.kind == "extension":
            pending = not live.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = %s)",
                                       [s.name]).fetchone()[0]
        elif s.kind == "server":
            row = live.execute("""SELECT w.fdwname, s.srvoptions FROM pg_catalog.pg_foreign_server AS s
                                  JOIN pg_catalog.pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
                                  WHERE s.srvname = %s""", [s.name]).fetchone()
            want = {k: str(v) for k, v in params.items()
                    if k not in ("server", "wrapper", "extra") and v not in (None, "")}
            want.update(params.get("extra") or {})  # a None there: an option that must be gone
            pending = row is None or row[0] != params.get("wrapper") or any(
                _options(row[1]).get(k) != v for k, v in want.items())
        elif s.kind == "user_mapping":
            rows = live.execute("SELECT m.usename, m.umoptions FROM pg_catalog.pg_user_mappings AS m "
                                "WHERE m.srvname = %s", [s.name]).fetchall()
            have = {user: _options(options) for user, options in rows}
            user_key = "username" if "'username'" in s.sql else "user"
            want = {user_key: params.get("user"), "password": params.get("password")}
            if "'password_required'" in s.sql:
                want["password_required"] = None if params.get("password") not in (None, "") else "false"
            want = {k: (None if v in (None, "") else str(v)) for k, v in want.items()}
            mine = have.get(params.get("owner"))
            pending = "public" in have or mine is None or any(mine.get(k) != v for k, v in want.items())
        else:  # foreign_table
            # A MySQL foreign table reads every column but the incremental one
            # as bytea, beside its server's information_schema.COLUMNS table;
            # one an earlier version set up (text columns) is set up again.
            row = live.execute(
                """SELECT array_agg(a.attname::text ORDER BY a.attnum),
                          bool_and(w.fdwname <> 'mysql_fdw' OR a.attname IS NOT DISTINCT FROM %s
                                   OR a.atttypid = 'pg_catalog.bytea'::pg_catalog.regtype)
                          AND bool_and(w.fdwname <> 'mysql_fdw' OR to_regclass(%s) IS NOT NULL)
                   FROM pg_catalog.pg_foreign_table AS ft
                   JOIN pg_catalog.pg_foreign_server AS fs ON fs.oid = ft.ftserver
                   JOIN pg_catalog.pg_foreign_data_wrapper AS w ON w.oid = fs.srvfdw
                   JOIN pg_catalog.pg_attribute AS a ON a.attrelid = ft.ftrelid AND a.attnum > 0 AND NOT a.attisdropped
                   WHERE ft.ftrelid = to_regclass(%s)""",
                [params.get("updated"), qualified("refdata_stage", str(params.get("catalog"))),
                 qualified(*s.name.split(".", 1))]).fetchone()
            columns = params.get("columns")
            if columns is not None:
                updated = params.get("updated")
                columns = [str(c) for c in columns] + ([updated] if updated and updated not in columns else [])
            pending = (row is None or row[0] is None or not row[1] or params.get("server") in pending_servers
                       or (columns is not None and row[0] != columns))
        if pending:
            steps.append(s)
            if s.kind in ("server", "user_mapping"):
                pending_servers.add(s.name)
    return steps


def _options(options: list[str] | None) -> dict[str, str]:
    """key=value options of the catalog (srvoptions, umoptions) as a dict."""
    return dict(o.split("=", 1) for o in options or [])


def _rows(conn, table: str):
    """A table's rows, comparable across databases (None: no such table)."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", [qualified(*table.split("."))]).fetchone()[0]:
        return None
    return conn.execute(
        f"SELECT coalesce(jsonb_agg(r ORDER BY r::text), '[]') FROM (SELECT to_jsonb(t) - 'updated_at' AS r "
        f"FROM {qualified(*table.split('.'))} AS t) AS x").fetchone()[0]


def _domain_param_steps(live, written: list[Statement]) -> list[Statement]:
    wanted = {s.params["domain"]: s for s in written}
    have = {}
    if live.execute("SELECT to_regclass('refdata.domain_param') IS NOT NULL").fetchone()[0]:
        have = dict(live.execute("SELECT domain, params FROM refdata.domain_param").fetchall())
    steps = [s for domain, s in wanted.items() if have.get(domain) != s.params["params"]]
    for domain in sorted(set(have) - set(wanted)):
        steps.append(Statement("params", f"refdata.domain_param.{domain}",
                               "DELETE FROM refdata.domain_param WHERE domain = %(domain)s;\n", {"domain": domain}))
    return steps


_NAME = r'"((?:[^"]|"")+)"\."((?:[^"]|"")+)"'
_DROP_TABLE = re.compile(r"^\s*drop\s+table\s+(?:if\s+exists\s+)?" + _NAME, re.I)
_DROP_COLUMN = re.compile(r"^\s*alter\s+table\s+(?:only\s+)?" + _NAME + r"\s+drop\s+column\b", re.I)
_DROP_OTHER = re.compile(r"^\s*drop\s+(schema|materialized\s+view|sequence|type|domain|extension)\b", re.I)


def destructive(conn: psycopg.Connection, sql: str) -> bool:
    """Whether a statement drops something that holds data: a table, or a
    column of a table (tracking columns too), that has rows. Staging tables
    hold rows only inside a loading transaction and never count."""
    for pattern in (_DROP_TABLE, _DROP_COLUMN):
        m = pattern.match(sql)
        if m:
            schema, table = (g.replace('""', '"') for g in m.groups())
            if schema == "refdata_stage":
                return False
            if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", [qualified(schema, table)]).fetchone()[0]:
                return False
            return conn.execute(f"SELECT EXISTS (SELECT FROM {qualified(schema, table)})").fetchone()[0]
    return bool(_DROP_OTHER.match(sql))


def destructive_steps(conn: psycopg.Connection, steps: list[Statement]) -> list[str]:
    return [s.name for s in steps if destructive(conn, s.sql)]


def _label(sql: str) -> str:
    first = sql.splitlines()[0].strip().rstrip(";")
    return first if len(first) <= 120 else first[:117] + "..."


# -- reviewed plan files -------------------------------------------------------

_STEP = re.compile(r"^-- step \d+$", re.M)
_FINGERPRINT = re.compile(r"^-- fingerprint: ([0-9a-f]+)$", re.M)
_LOCK_TIMEOUT = re.compile(r"^SET LOCAL lock_timeout = '([^']*)';$", re.M)
_LOCKS = re.compile(r"^-- locks: (.*)$", re.M)


def read_plan(text: str, source: str) -> Plan:
    """A plan file `plan` wrote (and a reviewer may have trimmed) read back."""
    fp = _FINGERPRINT.search(text)
    if not fp:
        raise InputError(f"{source}: not a refdata plan (no '-- fingerprint:' line)")
    parts = _STEP.split(text)
    steps = []
    for n, part in enumerate(parts[1:], start=1):
        sql = part.strip()
        if n == len(parts) - 1:
            sql = re.sub(r"\s*COMMIT;\s*$", "", sql)
        if sql:
            steps.append(Statement("ddl", _label(sql), sql + "\n"))
    timeout = _LOCK_TIMEOUT.search(text)
    locks = _LOCKS.search(text)
    try:
        locks = [(str(s), str(t), str(m)) for s, t, m in json.loads(locks.group(1))] if locks else None
    except (ValueError, TypeError):
        raise InputError(f"{source}: the '-- locks:' line is not the list plan wrote; make a new plan") from None
    if locks and any(m not in LOCK_MODES for _, _, m in locks):
        raise InputError(f"{source}: the '-- locks:' line names a lock mode plan never writes; make a new plan")
    return Plan(steps, fp.group(1), timeout.group(1) if timeout else DEFAULT_LOCK_TIMEOUT, locks=locks)
