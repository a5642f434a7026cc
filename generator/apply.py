"""Plan and apply: catalog check, render, the plan that brings the database to
the config (generator/migrate), then all of its steps in one transaction."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from .catalog import Report, check, check_sync, configured_tables, digest, fact_tables, inventory, scope
from .config import Config, SyncConfig
from .db import DEFAULT_LOCK_TIMEOUT, describe
from .errors import InputError, RefdataError
from .migrate.plan import LOCK_MODES, SUMMARY_KINDS, Plan, destructive_steps, make_plan
from .names import DEFAULT_OWNER, ident, qualified
from .render import SECRETS, Statement, render
from .sync.render import statements as sync_statements

# Serialises concurrent applies on one database (an arbitrary, fixed key).
APPLY_LOCK_KEY = 0x72656664  # 'refd'


def pin_search_path(conn: psycopg.Connection) -> None:
    """Resolve operators and functions in pg_catalog only for the rest of the
    transaction: probes and DDL run as the applier (often a superuser), and an
    operator someone planted in a schema on the session's search_path
    (`evil.<(bigint, integer)`) would otherwise run with the applier's rights."""
    conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")


def checked(conn: psycopg.Connection, config: Config, source: str,
            sync: tuple[str, SyncConfig] | None = None,
            owner: str = DEFAULT_OWNER) -> tuple[list[Statement], Report]:
    """Catalog-check the config (and the sync config, when given) and render
    them; InputError with one line per problem."""
    pin_search_path(conn)
    superuser = conn.execute("SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = %s", [owner]).fetchone()
    if superuser and superuser[0]:
        raise InputError(
            f"--owner {owner}: role {owner} is a superuser, and the SECURITY DEFINER functions it owned would "
            f"run triggers that others put on reference tables as superuser; name a role without SUPERUSER "
            f"(--owner ROLE or $REFDATA_OWNER; apply creates it NOLOGIN when missing), or run "
            f"ALTER ROLE {ident(owner)} NOSUPERUSER")
    report = check(conn, config, owner)
    errors = [f"{getattr(e, 'where', None) or source}: {e}" for e in report.errors]
    extra: list[Statement] = []
    if sync:
        sync_source, sync_config = sync
        sync_report = check_sync(conn, sync_config)
        errors += [f"{getattr(e, 'where', None) or sync_source}: {e}" for e in sync_report.errors]
        if not sync_report.errors:
            extra, warnings = sync_statements(sync_config, config, owner=owner)
            report.unconnected += warnings
    if errors:
        where = describe(conn)
        raise InputError("\n".join(f"{e} ({where})" for e in errors))
    return render(config, report.skipped, extra, owner, report.equalities), report


def plan(conn: psycopg.Connection, config: Config, source: str, scratch_dsn: str | None = None,
         lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
         prepared: tuple[list[Statement], Report] | None = None,
         sync: tuple[str, SyncConfig] | None = None,
         owner: str = DEFAULT_OWNER) -> tuple[Plan, Report]:
    """The plan for `config`. `prepared` is what `checked` gave for a database
    with the same catalog (catalog.fingerprint), e.g. for copies of one template.
    `sync`: reference_sync.yml's path and content, planned with it."""
    try:
        with conn.transaction():
            pin_search_path(conn)
            conn.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
            # This transaction waits, idle, while pg_dump, the scratch database
            # and the schema diff work on connections of their own: a DBA's
            # idle_in_transaction_session_timeout would end the session.
            conn.execute("SELECT set_config('idle_in_transaction_session_timeout', '0', true)")
            statements, report = prepared or checked(conn, config, source, sync, owner)
            return make_plan(conn, statements, configured_tables(config, sync[1] if sync else None), scratch_dsn,
                             lock_timeout, fact_tables(config)), report
    except psycopg.errors.LockNotAvailable as e:
        message = (e.diag.message_primary or str(e)).strip()
        raise RefdataError(f"plan: {message}: a table refdata reads was locked for longer than {lock_timeout} "
                           f"(--lock-timeout); nothing was planned ({describe(conn)})") from None


class StalePlan(RefdataError):
    """The database is no longer the one the plan was made for."""


@dataclass
class Outcome:
    """What an apply ran and what it changed, per kind of object."""

    steps: list[Statement]
    report: Report | None = None
    changes: dict[str, Counter] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the steps warned of (a sync source down)

    def summary(self) -> str:
        total = Counter()
        for c in self.changes.values():
            total.update(c)
        if not (total["created"] or total["replaced"] or total["dropped"]):
            return f"unchanged: {total['unchanged']} objects already match the config"
        line = (f"applied: {total['created']} objects created, {total['replaced']} replaced, "
                f"{total['dropped']} dropped, {total['unchanged']} unchanged")
        per_kind = "; ".join(
            f"{kind}: " + ", ".join(f"{c[w]} {w}" for w in ("created", "replaced", "dropped", "unchanged") if c[w])
            for kind, c in self.changes.items() if sum(c.values()))
        return f"{line} ({per_kind})"


def changes(before: dict, after: dict) -> dict[str, Counter]:
    out = {kind: Counter() for kind in SUMMARY_KINDS}
    for key in before.keys() | after.keys():
        kind = key[0]
        if kind not in out:
            continue
        if key not in before:
            out[kind]["created"] += 1
        elif key not in after:
            out[kind]["dropped"] += 1
        elif before[key] != after[key]:
            out[kind]["replaced"] += 1
        else:
            out[kind]["unchanged"] += 1
    return out


def hand_over_secrets(conn: psycopg.Connection, s: Statement) -> None:
    """A statement's secrets as COPY data into SECRETS (dropped at commit):
    the server logs a statement's text and parameters, never COPY's rows."""
    secrets = s.secrets()
    if not secrets:
        return
    conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {SECRETS.split('.')[1]} (name text PRIMARY KEY, value text) "
                 "ON COMMIT DROP")
    conn.execute(f"TRUNCATE {SECRETS}")
    with conn.cursor().copy(f"COPY {SECRETS} (name, value) FROM STDIN") as copy:
        for row in secrets.items():
            copy.write_row(row)


def take_locks(conn: psycopg.Connection, locks: list[tuple[str, str, str]], lock_timeout: str) -> None:
    """All of `locks` ((schema, table, mode)), or RefdataError naming the
    table not granted within `lock_timeout`. Writers lock tables in either
    order (a fact table, then its parent tables through a derive or an FK
    check; or their own parent rows first, then facts): a session holding one
    of these tables while it waited for another could end a writer's
    transaction as a deadlock. So the apply waits only while it holds none of
    them: one table waited for, the others NOWAIT; when one of those is
    taken, all are let go (the savepoint) and that one is waited for next."""
    if not locks:
        return
    shown = conn.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout]).fetchone()[0]
    total_ms = int(conn.execute("SELECT setting FROM pg_catalog.pg_settings WHERE name = 'lock_timeout'")
                   .fetchone()[0])
    deadline = time.monotonic() + total_ms / 1000 if total_ms else None
    first = 0
    while True:
        left = max(1, int((deadline - time.monotonic()) * 1000)) if deadline else 0
        order = [first] + [i for i in range(len(locks)) if i != first]
        taking = first
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{left}ms"])
                for i in order:
                    taking = i
                    schema, table, mode = locks[i]
                    conn.execute(f"LOCK TABLE {qualified(schema, table)} IN {mode} MODE"
                                 + ("" if i == first else " NOWAIT"))
            break
        except psycopg.errors.LockNotAvailable as e:
            if taking == first or (deadline and time.monotonic() >= deadline):
                schema, table, mode = locks[taking]
                message = (e.diag.message_primary or str(e)).strip()
                raise RefdataError(f"apply: {qualified(schema, table)} was not granted in {mode} mode within "
                                   f"{shown} (--lock-timeout): {message}; another session holds it; "
                                   f"nothing was applied ({describe(conn)})") from None
            first = taking
        except psycopg.errors.UndefinedTable:
            raise StalePlan("the database changed since the plan was made (a table it changes is gone); "
                            "make a new plan; nothing was applied") from None
    conn.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])


def run(conn: psycopg.Connection, the_plan: Plan, configured: list[tuple[str, str]],
        allow_drop: bool = False, lock_timeout: str | None = None) -> Outcome:
    """All steps of a plan in one transaction, if the database is still the one it was made for."""
    with conn.transaction():
        dropping = destructive_steps(conn, the_plan.steps)
        if dropping and not allow_drop:
            more = f" (and {len(dropping) - 1} more)" if len(dropping) > 1 else ""
            raise RefdataError(f"the plan drops data: {dropping[0]}{more}; "
                               "review it with refdata plan, then apply --allow-drop; nothing was applied")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [APPLY_LOCK_KEY])
        pin_search_path(conn)
        timeout = lock_timeout or the_plan.lock_timeout
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [timeout])
        tables = scope(conn, configured)
        locks = the_plan.locks
        if locks is None:  # a plan file without its locks: every table it may touch, outright
            locks = [(schema, table, LOCK_MODES[-1]) for schema, table in tables] if the_plan.steps else []
        take_locks(conn, locks, timeout)
        before = inventory(conn, tables)
        if digest(before) != the_plan.fingerprint:
            raise StalePlan("the database changed since the plan was made (objects refdata owns or touches "
                            "differ); make a new plan; nothing was applied")
        warned: list[str] = []

        def warning(d: psycopg.errors.Diagnostic) -> None:
            if d.severity_nonlocalized == "WARNING":
                warned.append(d.message_primary or "")

        conn.add_notice_handler(warning)
        try:
            for n, s in enumerate(the_plan.steps, start=1):
                try:
                    hand_over_secrets(conn, s)
                    conn.execute(s.bound_sql(), s.bound_params())
                except psycopg.Error as e:
                    message = (e.diag.message_primary or str(e)).strip()
                    raise RefdataError(f"apply failed at {s.kind} {s.name}: {message} (step {n} of the plan); "
                                       f"nothing was applied ({describe(conn)})") from None
        finally:
            conn.remove_notice_handler(warning)
        after = inventory(conn, sorted(set(scope(conn, configured)) | set(tables)))
    return Outcome(the_plan.steps, changes=changes(before, after), warnings=warned)


def apply(conn: psycopg.Connection, config: Config, source: str, scratch_dsn: str | None = None,
          lock_timeout: str = DEFAULT_LOCK_TIMEOUT, allow_drop: bool = False,
          prepared: tuple[list[Statement], Report] | None = None,
          sync: tuple[str, SyncConfig] | None = None,
          owner: str = DEFAULT_OWNER) -> Outcome:
    """Plan, then run the plan: all of it or nothing. When another apply got in
    between (the plan went stale), plan again."""
    for attempt in range(3):
        the_plan, report = plan(conn, config, source, scratch_dsn, lock_timeout, prepared, sync, owner)
        try:
            outcome = run(conn, the_plan, configured_tables(config, sync[1] if sync else None), allow_drop)
        except StalePlan:
            if attempt == 2:
                raise
            continue
        outcome.report = report
        return outcome
