"""Check a config against the live catalog before anything is applied.

Every problem becomes one line naming domain, foreign key and column, so a
config that names `计划名称` where the table has `计划全称` says exactly that.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .config import Config, DatabaseSource, Domain, ForeignKey, SyncConfig
from .db import describe
from .errors import RefdataError
from .names import DEFAULT_OWNER, ident, object_name, qualified
from .order import processing_order

CATALOG_SQL = Path(__file__).resolve().parent.parent / "sql" / "catalog"
JSONB = 3802  # pg_type oid of jsonb, fixed since PostgreSQL 9.4
TRACKING_TYPES = {
    "_source": "text",
    "_needs_review": "boolean",
    "_derived_from_domain": "text",
    "_derived_at": "timestamp with time zone",
}


def query(name: str) -> str:
    return (CATALOG_SQL / f"{name}.sql").read_text(encoding="utf-8")



# Types whose modifier a stored value is rounded or cut to, by base type oid.
NUMERIC, INTEGERS, BIT, VARBIT = 1700, {21, 23, 20}, 1560, 1562  # integers: int2, int4, int8
TIME_TYPES = {1083, 1266, 1114, 1184}  # time, timetz, timestamp, timestamptz: (precision), 6 without


def holds_every_value(source: dict, target: dict) -> bool:
    """Whether the parent key's modifier keeps every fact key value as it is.
    Assignment rounds to a numeric's scale and to a time's precision without a
    word (1.25 stored in numeric(10,1) is 1.3, 10:00:00.7 in timestamp(0) is
    10:00:01), so the derived parent would be another key than the fact names.
    A length or a numeric's precision too small is taken: a value that does not
    fit fails the insert, never changes (varchar(100) facts naming a
    varchar(50) parent are common in legacy schemas, FK constraints included)."""
    s, t = source.get("typmod", -1), target.get("typmod", -1)
    base = target["base_type"]
    if base in TIME_TYPES:  # a date has no fraction to lose
        return source["base_type"] not in TIME_TYPES or (6 if s < 0 else s) <= (6 if t < 0 else t)
    if base == NUMERIC and t >= 0:
        if source["base_type"] in INTEGERS:
            return _numeric(t)[1] >= 0
        return source["base_type"] == NUMERIC and s >= 0 and _numeric(s)[1] <= _numeric(t)[1]
    if target["category"] == "S" or base in (BIT, VARBIT):
        return True
    return t < 0 or s == t  # interval(0) and others: a modifier that may round must match


def _numeric(typmod: int) -> tuple[int, int]:
    """(precision, scale) of a numeric modifier; PostgreSQL 15 keeps a negative scale in 11 bits."""
    precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0x7FF
    return precision, scale - 0x800 if scale & 0x400 else scale

@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # (domain, fk, target column) of optional mappings whose fact column is absent
    skipped: set[tuple[str, str, str]] = field(default_factory=set)
    # sync sources apply could not set up (their connection is not in the environment)
    unconnected: list[str] = field(default_factory=list)
    # (domain, fk, key column) -> (operator, type) of a key that `=` in
    # pg_catalog would compare by another equality than its own (citext,
    # character(n) looked up by text): generated code names both
    equalities: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)


@dataclass
class Table:
    schema: str
    name: str
    oid: int | None = None
    kind: str | None = None
    columns: dict[str, dict] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return qualified(self.schema, self.name)

    def missing(self, column: str) -> str:
        hint = difflib.get_close_matches(column, list(self.columns), n=1, cutoff=0.5)
        suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
        return f'column "{column}" does not exist in {self.label}{suggestion}'


class Located(str):
    """An error line that names its place in the config (`where`: file:line),
    which then stands for the config's path."""

    where: str | None = None

    @classmethod
    def at(cls, where: str | None, text: str) -> "Located":
        line = cls(text)
        line.where = where
        return line


def placed(where: str | None, text: str) -> str:
    """A warning naming the config line of the entry it stems from, as the
    config's own warnings do (`file:line: text`)."""
    return f"{where}: {text}" if where else text


class Catalog:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self._tables: dict[tuple[str, str], Table] = {}
        self._all_tables: list[tuple[str, str]] | None = None

    def table(self, schema: str, name: str) -> Table:
        key = (schema, name)
        if key not in self._tables:
            t = Table(schema, name)
            row = self.conn.execute(query("relation"), {"schema": schema, "name": name}).fetchone()
            if row:
                t.oid, t.kind = row
                cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
                t.columns = {c["name"]: c for c in cur.execute(query("columns"), {"oid": t.oid})}
            self._tables[key] = t
        return self._tables[key]

    def table_hint(self, schema: str, name: str) -> str:
        """' (did you mean "s"."t"?)' for a table that does not exist: a close
        name in the same schema, else the same or a close name in another."""
        if self._all_tables is None:
            self._all_tables = [tuple(r) for r in self.conn.execute(query("tables"))]
        same = [t for s, t in self._all_tables if s == schema]
        hint = difflib.get_close_matches(name, same, n=1, cutoff=0.5)
        if hint:
            return f" (did you mean {qualified(schema, hint[0])}?)"
        elsewhere = [s for s, t in self._all_tables if t == name]
        if elsewhere:
            return f" (did you mean {qualified(elsewhere[0], name)}?)"
        labels = {f"{s}.{t}": (s, t) for s, t in self._all_tables}
        hint = difflib.get_close_matches(f"{schema}.{name}", list(labels), n=1, cutoff=0.6)
        return f" (did you mean {qualified(*labels[hint[0]])}?)" if hint else ""

    def stage_drift(self, domain: str, fact: Table) -> str | None:
        """How the domain's staging table fell behind its fact table (an ALTER
        TABLE since the last apply), as one phrase; None when in step or when
        there is no staging table yet."""
        stage = self.table("refdata_stage", object_name(domain))
        if stage.oid is None or fact.oid is None:
            return None
        rows = self.conn.execute(query("stage_drift"), {"fact": fact.oid, "stage": stage.oid}).fetchall()
        if not rows:
            return None
        said = {"missing": "added", "extra": "dropped", "type": "now {} (staged as {})"}
        parts = [f'column "{name}" ' + said[problem].format(fact_type, stage_type)
                 for name, problem, fact_type, stage_type in rows]
        return (f"staging table {stage.label} is not in step with {fact.label} since the last apply: "
                + "; ".join(parts))

    def constraint_columns(self, table: str, name: str) -> list[str]:
        """The columns constraint `name` of `table` (as SQL writes it) reads."""
        return [r[0] for r in self.conn.execute(query("constraint_columns"), {"table": table, "name": name})]

    def partition_root(self, table: str) -> tuple[str, str] | None:
        """(schema, table) of the partitioned table at the top of partition `table` (as SQL writes it)."""
        row = self.conn.execute(query("partition_root"), {"table": table}).fetchone()
        return (row[0], row[1]) if row else None

    def unique_keys(self, t: Table, immediate: bool | None = None) -> list[list[str]]:
        """Column lists of the table's unique keys; only those checked
        immediately (or only deferrable ones) when `immediate` says so."""
        return [row[1] for row in self.conn.execute(query("unique_keys"), {"oid": t.oid})
                if immediate is None or row[2] == immediate]

    def foreign_keys(self, t: Table) -> list[dict]:
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        return list(cur.execute(query("foreign_keys"), {"oid": t.oid}))

    def assignable(self, source: dict, target: dict) -> bool:
        # Anything converts to a string column (INSERT uses the I/O conversion).
        if target["category"] == "S":
            return True
        row = self.conn.execute(
            query("assignment_cast"), {"source": source["base_type"], "target": target["base_type"]}
        ).fetchone()
        return bool(row[0])

    def _refusal(self, sql: str, params=None) -> str | None:
        """Why the server refuses a probe query, or None; nothing it does stays."""
        with self.conn.transaction(force_rollback=True):
            try:
                self.conn.execute(sql, params)
            except psycopg.Error as e:
                self._lacking_rights(e)
                return (e.diag.message_primary or str(e)).strip()
        return None

    def _lacking_rights(self, e: psycopg.Error) -> None:
        """A probe the server refused for want of a right says nothing about
        the config: the run fails (exit 1) saying whose right is missing."""
        if e.sqlstate == "42501":
            message = (e.diag.message_primary or str(e)).strip()
            raise RefdataError(f"{message}: role {self.conn.info.user} lacks a right that checking the config "
                               f"against the catalog needs; run as the tables' owner or a superuser "
                               f"({describe(self.conn)})")

    def unchanged(self, source: dict, target: dict) -> bool:
        """Whether a fact key value is stored in the parent's key as the same value (sql/catalog/key_cast.sql),
        also under the parent column's modifier (holds_every_value)."""
        row = self.conn.execute(
            query("key_cast"), {"source": source["base_type"], "target": target["base_type"]}
        ).fetchone()
        return bool(row and row[0]) and holds_every_value(source, target)

    def comparable(self, source: dict, target: dict) -> bool:
        """Whether `target = source` resolves to an operator without casts (key look-ups)."""
        return self._refusal(f"SELECT NULL::{target['type']} = NULL::{source['type']}") is None

    def same_key_equality(self, parent: Table, key: str, source: dict, target: dict) -> bool:
        """Whether `key = fact value` is the key's own equality (sql/catalog/key_operator.sql).
        True when the probe cannot be built (no TEMP right, a read-only server): nothing to say then."""
        with self.conn.transaction(force_rollback=True):
            try:
                self.conn.execute(f"CREATE TEMPORARY VIEW rd_key_probe AS "
                                  f"SELECT NULL::{target['type']} = NULL::{source['type']} AS x")
            except psycopg.Error:
                return True
            return self.conn.execute(query("key_operator"), {"parent": parent.oid, "key": key}).fetchone()[0]

    def key_equality(self, parent: Table, keys: tuple[str, ...], key: str) -> tuple[str, str] | None:
        """(`OPERATOR(schema.=)`, `schema.type`): the key's own equality, as a
        FOREIGN KEY into it compares (sql/catalog/key_equality.sql), and the
        type to cast the fact value to; None when no unique index names it."""
        row = self.conn.execute(query("key_equality"), {"parent": parent.oid, "keys": list(keys), "key": key}).fetchone()
        if not row or not OPERATOR_NAME.fullmatch(row[1]):
            return None
        return f"OPERATOR({ident(row[0])}.{row[1]})", qualified(row[2], row[3])

    def tracks_source(self, t: Table, column: dict) -> bool:
        """Whether a table's `_source` column is refdata's: NOT NULL, and a CHECK
        of that column alone allows 'authoritative' and 'auto_derived' only."""
        return column["not_null"] and any(
            reads == ["_source"] and "'authoritative'" in definition and "'auto_derived'" in definition
            for _, _, definition, reads in self.conn.execute(query("default_checks"), {"oid": t.oid, "columns": []}))

    def coalescible(self, first: str, second: str) -> bool:
        """Whether COALESCE(<first>, <second>) has a type (a value with a fallback)."""
        return self._refusal(f"SELECT COALESCE(NULL::{first}, NULL::{second})") is None

    def expression_type(self, fact: Table, expression: str, group_by: tuple[str, ...]) -> tuple[dict | None, str | None, str | None]:
        """(type, None, None) of an SQL aggregate expression over a group of
        fact rows, or (None, why the server refuses it, SQLSTATE).

        The server parses and plans it as the generated functions run it (the
        check runs with search_path pinned to pg_catalog, pg_temp by
        apply.checked; the group's rows as `s`), over no
        rows, so nothing in it is evaluated. The config check has already
        made sure it is one expression (config.expression_problem).
        """
        group = ", ".join(f"s.{ident(c)}" for c in group_by)
        with self.conn.transaction(force_rollback=True):
            try:
                cur = self.conn.execute(f"SELECT ({expression}) FROM {fact.label} AS s WHERE false GROUP BY {group}")
            except psycopg.Error as e:
                self._lacking_rights(e)
                return None, (e.diag.message_primary or str(e)).strip(), e.sqlstate
            oid = cur.description[0].type_code
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(query("type"), {"oid": oid}).fetchone(), None, None

    def default_error(self, t: Table, defaults: dict) -> str | None:
        """Convert the defaults the way the generated function will; say why it fails."""
        return self._refusal(
            f"SELECT jsonb_populate_record(NULL::{t.label}, %s::jsonb)", [json.dumps(defaults, ensure_ascii=False)]
        )

    def refusing_checks(self, t: Table, defaults: dict) -> list[tuple[str, str, list[str]]] | None:
        """(name, definition, columns read) of each CHECK constraint of `t`
        that the defaults decide alone (it reads no other column) and refuse.
        The server judges them itself, on an empty temporary copy of the
        table that keeps just those constraints: no definition is pasted.
        None when the database is read-only (no temporary table)."""
        checks = self.conn.execute(query("default_checks"), {"oid": t.oid, "columns": list(defaults)}).fetchall()
        decided = {name: (definition, reads) for name, is_decided, definition, reads in checks if is_decided}
        if not decided:
            return []
        probe = "pg_temp.refdata_default_probe"
        refused = []
        with self.conn.transaction(force_rollback=True):
            try:
                self.conn.execute(f"CREATE TEMPORARY TABLE refdata_default_probe (LIKE {t.label} INCLUDING CONSTRAINTS)")
                for name, is_decided, _, _ in checks:
                    if not is_decided:
                        self.conn.execute(f"ALTER TABLE {probe} DROP CONSTRAINT {ident(name)}")
                for column, info in t.columns.items():
                    if info["not_null"]:
                        self.conn.execute(f"ALTER TABLE {probe} ALTER COLUMN {ident(column)} DROP NOT NULL")
                while True:
                    try:
                        with self.conn.transaction():
                            self.conn.execute(f"INSERT INTO {probe} SELECT * FROM jsonb_populate_record(NULL::{probe}, "
                                              "%s::jsonb)", [json.dumps(defaults, ensure_ascii=False)])
                        break
                    except psycopg.errors.CheckViolation as e:
                        name = e.diag.constraint_name
                        if name not in decided or name in refused:
                            raise
                        refused.append(name)
                        self.conn.execute(f"ALTER TABLE {probe} DROP CONSTRAINT {ident(name)}")
            except psycopg.errors.ReadOnlySqlTransaction:
                return None
            except psycopg.Error as e:
                self._lacking_rights(e)
                raise
        return [(name, *decided[name]) for name in sorted(refused)]


def check(conn: psycopg.Connection, config: Config, owner: str = DEFAULT_OWNER) -> Report:
    """All catalog problems of the config, for functions owned by `owner`;
    nothing is changed in the database."""
    report = Report()
    catalog = Catalog(conn)
    facts = {(d.fact_schema, d.fact_table_for(n)) for n, d in config.domains.items()}
    for name, domain in config.domains.items():
        _check_domain(catalog, report, name, domain, facts, config.where, owner)
    _check_declared(catalog, report, config)
    _check_names(catalog, report, config)
    return report


# Triggers refdata makes on every reference table (sql/triggers/audit.sql.j2, promote.sql.j2).
REFERENCE_TRIGGERS = [f"refdata_audit_{op}{own}" for op in ("insert", "update", "delete") for own in ("", "_own")] \
    + ["refdata_promote"]


def _check_names(catalog: Catalog, report: Report, config: Config) -> None:
    """Names refdata gives objects in the user's schemas that something of
    the user's holds already: an index name taken by another relation (refdata
    would skip its index without a word), a trigger name by a trigger of the
    user's (refdata would replace it), and two of refdata's names that are one."""
    from .render import fact_key_index, load_triggers

    planned: dict[tuple[str, str], str] = {}
    seen: set[tuple[str, str]] = set()

    def index(place: str, at: str | None, schema: str, name: str, table: "Table", what: str) -> None:
        if planned.setdefault((schema, name), what) != what:
            report.errors.append(Located.at(at, f"{place}: refdata would give {qualified(schema, name)} to its {what} and to its "
                                 f"{planned[(schema, name)]}; rename one of the tables"))
            return
        if (schema, name) in seen:
            return
        seen.add((schema, name))
        for (holder,) in catalog.conn.execute(query("name_holder"), {"schema": schema, "name": name, "table": table.oid}):
            report.errors.append(Located.at(at, f"{place}: {qualified(schema, name)} is {holder}; refdata gives that "
                                                f"name to its {what} and would make none: rename it"))

    def triggers(place: str, at: str | None, table: "Table", names: list[str]) -> None:
        if (table.schema, f"triggers of {table.name}") in seen:
            return
        seen.add((table.schema, f"triggers of {table.name}"))
        for trigger, function in catalog.conn.execute(query("foreign_triggers"), {"oid": table.oid, "names": names}):
            report.errors.append(Located.at(at, f"{place}: trigger {ident(trigger)} on {table.label} runs {function}; "
                                                f"refdata gives that name to a trigger of its own and would replace it: "
                                                f"rename the trigger"))

    for name, domain in config.domains.items():
        fact = catalog.table(domain.fact_schema, domain.fact_table_for(name))
        if fact.oid is None:
            continue
        triggers(f"domain {name}", config.where(name, "fact_table"), fact, [object_name(name, what) for what in
                                          ("backfill", "backfill_insert", "backfill_update")] + load_triggers(name))
        for i, fk in enumerate(domain.foreign_keys):
            place = f"domain {name}, foreign key {fk.name}"
            at = config.where(name, "foreign_keys", i, "target_table")
            if config.observability.index_fact_keys:
                schema, _, index_name = fact_key_index(name, domain, fk)
                index(place, config.where(name, "foreign_keys", i, "source_column"), schema, index_name, fact, f"index on the fact columns ({', '.join(fk.sources)}) "
                                                         f"of {fact.label}")
            parent = catalog.table(fk.target_schema, fk.target_table)
            if parent.oid is None:
                continue
            for suffix, what in (("needs_review", "index of rows awaiting review"), ("derived", "index of derived rows")):
                index(place, at, fk.target_schema, object_name(fk.target_table, suffix), parent, f"{what} on {parent.label}")
            triggers(place, at, parent, REFERENCE_TRIGGERS)


def declared_match(declared: dict, fk: ForeignKey) -> bool:
    """Whether a declared FOREIGN KEY is the configured one: same parent table,
    same fact columns paired with the same parent columns."""
    return ((declared["referenced_schema"], declared["referenced_table"]) == (fk.target_schema, fk.target_table)
            and set(zip(declared["columns"], declared["referenced_columns"])) == set(zip(fk.sources, fk.keys)))


def _check_declared(catalog: Catalog, report: Report, config: Config) -> None:
    """The config against the FOREIGN KEYs each fact table declares: a
    configured FK the table does not declare is probably aimed at the wrong
    table or column; a declared one no domain covers will refuse rows whose
    parent is missing instead of deriving it. Fact tables that declare none
    (common in production) are not compared."""
    by_fact: dict[tuple[str, str], list[tuple[str, ForeignKey]]] = {}
    for name, domain in config.domains.items():
        for fk in domain.foreign_keys:
            by_fact.setdefault((domain.fact_schema, domain.fact_table_for(name)), []).append((name, fk))

    def at(name: str, fk: ForeignKey, field: str) -> str | None:
        return config.where(name, "foreign_keys", config.domains[name].foreign_keys.index(fk), field)

    for (schema, table), configured in by_fact.items():
        fact = catalog.table(schema, table)
        if fact.oid is None or fact.kind not in ("r", "p"):
            continue
        declared = catalog.foreign_keys(fact)
        if not declared:
            continue
        for name, fk in configured:
            if not any(declared_match(d, fk) for d in declared):
                cols = ", ".join(fk.sources)
                report.warnings.append(placed(at(name, fk, "target_table"),
                    f"domain {name}, foreign key {fk.name}: no FOREIGN KEY on {fact.label} ({cols}) references "
                    f"{qualified(fk.target_schema, fk.target_table)}; is target_table right?"))
        for d in declared:
            if not any(declared_match(d, fk) for _, fk in configured):
                # the fact table's entry: the first domain that names it
                report.warnings.append(placed(config.where(configured[0][0], "fact_table"),
                    f"{fact.label}: not covered: {d['name']} ({', '.join(d['columns'])}) -> "
                    f"{qualified(d['referenced_schema'], d['referenced_table'])}"))


def _check_domain(catalog: Catalog, report: Report, name: str, domain: Domain,
                  facts: set[tuple[str, str]] = frozenset(), where=lambda *loc: None,
                  owner: str = DEFAULT_OWNER) -> None:
    """The checks of one domain; `facts` are the fact tables of every domain,
    `where` is Config.where (file:line of a field); each error names the
    line of the entry it stems from."""

    def error(loc: tuple, text: str) -> None:
        report.errors.append(Located.at(where(name, *loc), text))

    def warn(loc: tuple, text: str) -> None:
        report.warnings.append(placed(where(name, *loc), text))

    fact = catalog.table(domain.fact_schema, domain.fact_table_for(name))
    if fact.oid is None or fact.kind not in ("r", "p"):
        what = "does not exist" if fact.oid is None else "is not a table"
        if fact.oid is not None:
            hint = ""
        elif domain.fact_table:
            hint = catalog.table_hint(fact.schema, fact.name)
        else:
            hint = " (fact_table is not set; it defaults to the domain name)"
        error(("fact_table",), f"domain {name}: fact table {fact.label} {what}{hint}")
        return
    drift = catalog.stage_drift(name, fact)
    if drift:
        warn(("fact_table",), f"domain {name}: {drift}; refdata apply brings it in step")
    order = processing_order(name, domain)
    targets = {(fk.target_schema, fk.target_table): fk.name for fk in order}
    for col in fact.columns:
        if col.startswith("_rd_"):
            error(("fact_table",), f'domain {name}: column "{col}" of {fact.label} uses the prefix _rd_ refdata reserves')
    for child in catalog.conn.execute(query("inheritance_children"), {"oid": fact.oid}).fetchall():
        if tuple(child) not in facts:
            error(("fact_table",),
                f"domain {name}: {qualified(*child)} inherits from fact table {fact.label}, and no domain has it as "
                f"its fact table: rows written straight into it would derive no parents (configure a domain for it too)"
            )
    ours = object_name(name, "backfill").encode("utf-8")
    for trigger, _ in catalog.conn.execute(query("before_row_triggers"), {"oid": fact.oid}).fetchall():
        # PostgreSQL fires a table's triggers in the byte order of their names
        first = domain.trigger_mode == "row" and ours < trigger.encode("utf-8")
        warn(("fact_table",),
            f"domain {name}: BEFORE row trigger {ident(trigger)} on {fact.label} can change a row after refdata "
            f"derived its parents from it (refdata load derives from the values loaded"
            f"{'; the row trigger fires first, by name' if first else ''}): a key it changes names a parent "
            f"nobody derived"
        )
    if domain.trigger_mode == "statement" and fact.kind == "p":
        trigger = object_name(name, "backfill_insert")
        for (part,) in catalog.conn.execute(query("partitions_without_trigger"), {"oid": fact.oid, "trigger": trigger}):
            warn(("fact_table",),
                f"domain {name}: partition {part} of {fact.label} has no statement trigger {ident(trigger)} "
                f"(created after apply); writes straight into it derive nothing until refdata apply adds it"
            )
    if domain.trigger_mode == "statement" and not domain.defer_foreign_keys:
        # Statement-level triggers run after the statement; immediate FK
        # checks run before them and would fail on parents not derived yet.
        for ref in catalog.foreign_keys(fact):
            if (ref["referenced_schema"], ref["referenced_table"]) in targets and not ref["deferred"]:
                error(("trigger_mode",),
                    f"domain {name}, foreign key {targets[(ref['referenced_schema'], ref['referenced_table'])]}: "
                    f'trigger_mode statement needs constraint "{ref["root_name"]}" of '
                    f'{qualified(ref["root_schema"], ref["root_table"])} to be '
                    f"DEFERRABLE INITIALLY DEFERRED (or set defer_foreign_keys: true)"
                )
    triggers_seen: set[tuple[str, str]] = set()
    for fk in order:
        place = f"domain {name}, foreign key {fk.name}"
        entry = ("foreign_keys", domain.foreign_keys.index(fk))
        errors_before = len(report.errors)
        parent = catalog.table(fk.target_schema, fk.target_table)
        if parent.oid is None or parent.kind not in ("r", "p"):
            what = "does not exist" if parent.oid is None else "is not a table"
            hint = catalog.table_hint(parent.schema, parent.name) if parent.oid is None else ""
            error((*entry, "target_table"), f"{place}: target table {parent.label} {what}{hint}")
            continue

        for col in fk.sources:
            if col not in fact.columns:
                error((*entry, "source_column"), f"{place}: source_column: {fact.missing(col)}")
            elif fact.columns[col]["generated"]:
                error((*entry, "source_column"), f"{place}: source_column: {computed(fact, col)}")
        for col in fk.keys:
            if col not in parent.columns:
                error((*entry, "target_key"), f"{place}: target_key: {parent.missing(col)}")
            elif parent.columns[col]["generated"]:
                error((*entry, "target_key"), f'{place}: target_key: column "{col}" of {parent.label} is generated and cannot be set')
            elif parent.columns[col]["numbered"]:
                error((*entry, "target_key"),
                    f'{place}: target_key: column "{col}" of {parent.label} is numbered by a sequence: a derived '
                    f"parent takes the number the fact names, and a row numbered later gets it too (and is promoted "
                    f"into the derived one)")
        if len(report.errors) > errors_before:
            continue

        if not any(set(k) == set(fk.keys) for k in catalog.unique_keys(parent, immediate=True)):
            keys = ", ".join(f'"{k}"' for k in fk.keys)
            if any(set(k) == set(fk.keys) for k in catalog.unique_keys(parent, immediate=False)):
                # derives insert ON CONFLICT on the key, which takes no deferrable constraint
                error((*entry, "target_key"),
                    f"{place}: target_key ({keys}) of {parent.label} is DEFERRABLE, which ON CONFLICT cannot use; "
                    f"make the constraint NOT DEFERRABLE"
                )
            else:
                error((*entry, "target_key"),
                    f"{place}: target_key ({keys}) is not a primary key or unique constraint of {parent.label}"
                )
        if (parent.schema, parent.name) not in triggers_seen:
            triggers_seen.add((parent.schema, parent.name))
            for trigger, on_insert in catalog.conn.execute(query("before_row_triggers"), {"oid": parent.oid}):
                if on_insert:
                    warn((*entry, "target_table"),
                        f"{place}: BEFORE INSERT row trigger {ident(trigger)} on {parent.label} can change the "
                        f"parent refdata derives: a key it changes leaves the fact naming a parent nobody derived")
            applies, permitted, open_ = catalog.conn.execute(query("row_security"),
                                                             {"oid": parent.oid, "owner": owner}).fetchone()
            # refdata's functions read and insert parents as the owner role:
            # with no policy for it they see none and may insert none
            if applies and not permitted:
                error((*entry, "target_table"),
                    f"{place}: row-level security on {parent.label} applies to {ident(owner)}, which derives its "
                    f"parents, and no policy lets it read and insert rows: every fact row would fail; give it one "
                    f"(CREATE POLICY ... TO {ident(owner)} USING (true) WITH CHECK (true)) or BYPASSRLS")
            elif applies and not open_:
                warn((*entry, "target_table"),
                    f"{place}: row-level security on {parent.label} applies to "
                    f"{ident(owner)}, which derives its parents: a parent its policies hide looks missing (the insert "
                    f"finds the key taken and adds nothing) and a derived row they refuse fails the fact row")
        for s, k in zip(fk.sources, fk.keys):
            src, tgt = fact.columns[s], parent.columns[k]
            # `key = fact value` in pg_catalog resolves to text = text for a
            # character(n) key and a text value, and for a citext key (whose =
            # lies in another schema): the generated code names the key's own
            # equality then, as the FOREIGN KEY does
            if ((tgt["base_type"] == BPCHAR and src["base_type"] != BPCHAR)
                    or src["base_type"] == tgt["base_type"]) and not catalog.same_key_equality(parent, k, src, tgt):
                equality = catalog.key_equality(parent, fk.keys, k)
                if equality:
                    report.equalities[(name, fk.name, k)] = equality
                else:
                    warn((*entry, "source_column"),
                        f'{place}: key column "{k}" ({tgt["type"]}) of {parent.label} is looked up by another '
                        f'equality than its own, that of column "{s}" ({src["type"]}) of {fact.label}: every '
                        f"look-up reads the whole parent table, and the views count a key the parent holds in "
                        f"another spelling as missing; give the fact column the key's type")
            if not catalog.assignable(src, tgt):
                problem = "cannot be stored in"
            elif not catalog.comparable(src, tgt):
                problem = "cannot be compared with (no = operator without a cast)"
            elif not catalog.unchanged(src, tgt):
                problem = "can change when stored in"
            elif (src["base_type"] != tgt["base_type"] and tgt["base_type"] != BPCHAR
                  and not catalog.same_key_equality(parent, k, src, tgt)):
                error((*entry, "source_column"),
                    f'{place}: column "{s}" ({src["type"]}) of {fact.label} is compared with key column "{k}" '
                    f'({tgt["type"]}) of {parent.label} by another equality than the key\'s (its unique index '
                    f"cannot serve the look-up): a fact value the key calls equal to a parent's (in another case, "
                    f"with trailing spaces) is not found; give both the same type")
                continue
            elif not same_equality(src, tgt):
                error((*entry, "source_column"),
                    f'{place}: column "{s}" of {fact.label} compares under collation {src["collation_name"]}, key '
                    f'column "{k}" of {parent.label} under {tgt["collation_name"]}: a key one calls equal to a '
                    f"parent's the other may not; give both the same collation")
                continue
            else:
                continue
            error((*entry, "source_column"),
                f'{place}: column "{s}" ({src["type"]}) of {fact.label} {problem} '
                f'key column "{k}" ({tgt["type"]}) of {parent.label}'
                + (" (the fact would name another key than the parent derived for it); give both the same type"
                   if problem.startswith("can change") else "")
            )

        covered = set(fk.keys)
        for m in fk.mappings():
            at = (*entry, *_mapping_loc(fk, m))
            expression = None
            if m.expression is not None:
                expression, problem, state = catalog.expression_type(fact, m.expression, fk.sources)
                if problem and m.optional and state == "42703":  # undefined_column
                    report.skipped.add((name, fk.name, m.target))
                    warn(at, f'{place}: optional column "{m.target}" skipped: expression: {problem}')
                    continue
                if problem:
                    error(at, f'{place}: column "{m.target}": expression: {problem}')
                    continue
            missing_sources = [c for c in m.sources() if c not in fact.columns]
            if missing_sources:
                if m.optional:
                    report.skipped.add((name, fk.name, m.target))
                    warn(at, f'{place}: optional column "{m.target}" skipped: {fact.missing(missing_sources[0])}')
                else:
                    error(at, f"{place}: backfill column {m.target}: {fact.missing(missing_sources[0])}")
                continue
            generated = [c for c in m.sources() if fact.columns[c]["generated"]]
            if generated:
                error(at, f"{place}: backfill column {m.target}: {computed(fact, generated[0])}")
                continue
            if m.target not in parent.columns:
                error(at, f"{place}: {parent.missing(m.target)}")
                continue
            target = parent.columns[m.target]
            if target["generated"]:
                error(at, f'{place}: column "{m.target}" of {parent.label} is generated and cannot be set')
                continue
            covered.add(m.target)
            if (target["not_null"] and target["has_default"] and m.target not in fk.defaults
                    and m.aggregation in ("first", "max_by", "min_by") and not fact.columns[m.source]["not_null"]):
                # INSERT stores the NULL it is given; only a config default stands in for it
                warn(at,
                    f'{place}: column "{m.target}" of {parent.label} is NOT NULL and filled from "{m.source}" of '
                    f"{fact.label}, which can be NULL: its DEFAULT does not stand in for a NULL, so a fact naming a "
                    f"new key with no value there fails; give it a value in defaults"
                )
            # A value that may fall back to a default or to the parent's own
            # value is combined with COALESCE, which needs one type for both.
            value_type = {"concat_distinct": "text", "template": "text", "count_distinct": "bigint",
                          "jsonb_append": "jsonb"}.get(
                m.aggregation, expression["type"] if expression else
                fact.columns[m.source]["type"] if m.source in fact.columns else "text")
            if (m.target in fk.defaults or fk.mode == "fill_null_only") and not catalog.coalescible(
                    value_type, target["type"]):
                error(at,
                    f'{place}: column "{m.target}" ({target["type"]}) of {parent.label} is filled from a {value_type} '
                    f"value that cannot be combined with its {'default' if m.target in fk.defaults else 'own value'}; "
                    f"use a source column of a matching type"
                )
            if m.aggregation in ("first", "max_by", "min_by"):
                src = fact.columns[m.source]
                if not catalog.assignable(src, target):
                    error(at,
                        f'{place}: column "{m.source}" ({src["type"]}) of {fact.label} cannot be stored in '
                        f'column "{m.target}" ({target["type"]}) of {parent.label}'
                    )
            elif m.aggregation == "sql" and not catalog.assignable(expression, target):
                error(at,
                    f'{place}: column "{m.target}" ({target["type"]}) of {parent.label} cannot store the '
                    f'{expression["type"]} value of its expression'
                )
            elif m.aggregation == "jsonb_append" and target["base_type"] != JSONB:
                error(at,
                    f'{place}: column "{m.target}" ({target["type"]}) of {parent.label} is not jsonb '
                    f"(jsonb_append appends to a jsonb array)"
                )
            elif m.aggregation == "jsonb_append" and expression and expression["base_type"] != JSONB:
                error(at,
                    f'{place}: column "{m.target}": expression gives {expression["type"]}, not a jsonb array'
                )
            elif m.aggregation == "count_distinct" and target["category"] not in ("N", "S"):
                error(at,
                    f'{place}: column "{m.target}" ({target["type"]}) of {parent.label} cannot hold a count'
                )
            elif m.aggregation in ("concat_distinct", "template") and target["category"] != "S":
                error(at,
                    f'{place}: column "{m.target}" ({target["type"]}) of {parent.label} cannot hold text '
                    f"({m.aggregation})"
                )
        for col in fk.defaults:
            if col not in parent.columns:
                error((*entry, "defaults", col), f"{place}: defaults: {parent.missing(col)}")
            elif parent.columns[col]["generated"]:
                error((*entry, "defaults", col), f'{place}: defaults: column "{col}" of {parent.label} is generated and cannot be set')
            else:
                covered.add(col)
        if fk.defaults and all(c in parent.columns and not parent.columns[c]["generated"] for c in fk.defaults):
            problem = catalog.default_error(parent, dict(fk.defaults))
            if problem:
                # the default the server refuses, when one alone is refused
                column = next((c for c in fk.defaults if catalog.default_error(parent, {c: fk.defaults[c]})), None)
                error((*entry, "defaults", *([column] if column else [])), f"{place}: defaults: {problem}")
            refusing = None if problem else catalog.refusing_checks(parent, dict(fk.defaults))
            if refusing is None and not problem:
                warn((*entry, "defaults"), f"{place}: defaults: not checked against the CHECK constraints of "
                                           f"{parent.label} (the database is read-only)")
            for check, definition, reads in refusing or []:
                column = next(c for c in fk.defaults if c in reads) if reads else next(iter(fk.defaults))
                error((*entry, "defaults", column),
                      f'{place}: defaults: a derived row of {parent.label} would break its check constraint '
                      f'"{check}" ({definition}); give defaults it takes')

        for col, info in parent.columns.items():
            if col in TRACKING_TYPES:
                if info["type"] != TRACKING_TYPES[col]:
                    error((*entry, "target_table"),
                        f'{place}: column "{col}" of {parent.label} is {info["type"]}, '
                        f"but refdata tracks with {TRACKING_TYPES[col]}"
                    )
                elif col == "_source" and not catalog.tracks_source(parent, info):
                    # apply adds only the tracking columns a table lacks: one of
                    # the table's own would keep its NULLs and other values,
                    # which the views count neither authoritative nor derived
                    error((*entry, "target_table"),
                        f'{place}: column "_source" of {parent.label} is not refdata\'s (it may hold other values '
                        f"than 'authoritative' and 'auto_derived'); rename it, refdata adds its own")
                continue
            if info["not_null"] and not info["has_default"] and col not in covered:
                error(entry,
                    f'{place}: column "{col}" of {parent.label} is NOT NULL without a default; '
                    f"map it (backfill_columns/derive_columns) or give it a value in defaults"
                )

        # A derived parent whose mapped columns reference another parent of
        # this domain (its own table included: an organisation's parent
        # organisation) comes after a foreign key that derives that one. A
        # reference the derived row leaves unset waits for nothing.
        sets = {m.target: m for m in fk.mappings() if (name, fk.name, m.target) not in report.skipped}
        for ref in catalog.foreign_keys(parent):
            mapped = [sets[c] for c in ref["columns"] if c in sets]
            referenced = (ref["referenced_schema"], ref["referenced_table"])
            others = [f for f in order if f.name != fk.name and (f.target_schema, f.target_table) == referenced]
            if not mapped or not others or any(_depends(order, fk, f.name) for f in others):
                continue
            # the one whose key is what the mappings copy, when there is one
            sources = {m.source for m in mapped}
            other = next((f for f in others if set(f.sources) <= sources), others[0]).name
            error((*entry, "depends_on"),
                f"{place}: {parent.label} references {qualified(*referenced)} "
                f"(foreign key {other}); add depends_on: [{other}]"
            )


def _mapping_loc(fk: ForeignKey, m) -> tuple:
    """Where mapping `m` of `fk.mappings()` is in the FK's entry: its
    backfill_columns item, or the derive_columns item it stands for."""
    for i, b in enumerate(fk.backfill_columns):
        if b is m:
            return ("backfill_columns", i)
    if m.target in fk.derive_columns:
        return ("derive_columns", fk.derive_columns.index(m.target))
    return ()


# the characters an operator's name is made of: nothing else is pasted into OPERATOR(...)
OPERATOR_NAME = re.compile(r"[-+*/<>=~!@#%^&|`?]+")
DEFAULT_COLLATION = 100  # pg_collation oid of "default"
BPCHAR = 1042  # pg_type oid of character(n), whose trailing spaces the load handles itself


def same_equality(source: dict, key: dict) -> bool:
    """Whether a fact key and its parent key call the same values equal
    where refdata compares and groups them. A nondeterministic collation
    (case-insensitive, say) on either side makes them differ, unless the
    fact column has the database's default one: then the key's collation
    decides every comparison, as in PostgreSQL's own foreign key check."""
    return (source["collation"] == key["collation"] or source["collation"] == DEFAULT_COLLATION
            or (source["deterministic"] and key["deterministic"]))


def computed(fact: Table, column: str) -> str:
    """Why a fact column PostgreSQL computes cannot feed a derivation: a
    BEFORE row trigger runs before it is computed (and sees NULL), and the
    staging table, which holds what a load writes, has no such column."""
    return (f'column "{column}" of {fact.label} is generated: PostgreSQL computes it after refdata reads '
            f"the row; use a column the row is written with")


def _depends(order: list[ForeignKey], fk: ForeignKey, other: str) -> bool:
    by_name = {f.name: f for f in order}
    stack, seen = list(fk.depends_on), set()
    while stack:
        n = stack.pop()
        if n == other:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(by_name[n].depends_on)
    return False


def configured_tables(config: Config, sync: SyncConfig | None = None) -> list[tuple[str, str]]:
    """The tables refdata manages, (schema, table): the config's fact and
    reference tables and the sync config's targets. Plans compare these, apply
    and apply --sql fingerprint them: a table left out here (a sync target no
    foreign key names) would never get the tracking columns a later apply adds."""
    return sorted({(d.fact_schema, d.fact_table_for(name)) for name, d in config.domains.items()}
                  | {(fk.target_schema, fk.target_table) for d in config.domains.values() for fk in d.foreign_keys}
                  | {(t.target_schema, t.target_table) for t in (sync.tables if sync else [])})


def fact_tables(config: Config) -> list[tuple[str, str]]:
    """The domains' fact tables, (schema, table)."""
    return sorted({(d.fact_schema, d.fact_table_for(name)) for name, d in config.domains.items()})


def table_params(tables) -> dict:
    return {"schemas": [t[0] for t in tables], "tables": [t[1] for t in tables]}


def touched_tables(conn: psycopg.Connection, configured: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Tables outside refdata's schemas that it touches (sql/catalog/touched_tables.sql)."""
    return [(r[0], r[1]) for r in conn.execute(query("touched_tables"), table_params(configured)).fetchall()]


def relation_states(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """(schema, name) -> (relkind, shape, triggers, indexes) of refdata's own
    relations and of `tables` (sql/catalog/relation_state.sql), read with
    names qualified as in any other database (search_path pinned)."""
    with conn.transaction():
        conn.execute("SELECT set_config('search_path', 'pg_catalog, pg_temp', true)")
        rows = conn.execute(query("relation_state"), table_params(tables)).fetchall()
    return {(r[0], r[1]): (r[2], r[3], frozenset(r[4]), frozenset(r[5])) for r in rows}


def scope(conn: psycopg.Connection, configured: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The configured tables and those refdata touches besides."""
    return sorted(set(touched_tables(conn, configured)) | set(configured))


def inventory(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(kind, name) -> digest of each object refdata owns or touches, and of
    each domain's run-time values."""
    out = {(r[0], r[1]): r[2] for r in conn.execute(query("inventory"), table_params(tables))}
    if conn.execute("SELECT to_regclass('refdata.domain_param') IS NOT NULL").fetchone()[0]:
        for domain, digest_ in conn.execute("SELECT domain, md5(params::text) FROM refdata.domain_param"):
            out[("parameters", domain)] = digest_
    return out


def digest(inv: dict[tuple[str, str], str]) -> str:
    """The fingerprint of an inventory."""
    rows = sorted([list(k), v] for k, v in inv.items())
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


def fingerprint(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> str:
    """The one catalog fingerprint: a digest of what refdata owns or touches
    for these configured tables. Equal fingerprints mean the catalog checks
    give the same findings (the test plugin reuses them) and a plan made for
    one applies to the other (apply --sql refuses a plan whose fingerprint
    is no longer the database's)."""
    return digest(inventory(conn, scope(conn, tables)))


TRACKING_COLUMNS = set(TRACKING_TYPES)


def check_sync(conn: psycopg.Connection, sync: SyncConfig) -> Report:
    """Catalog problems of reference_sync.yml: target tables, mapped columns,
    keys that are a primary key or unique constraint, NOT NULL columns nothing fills."""
    report = Report()
    catalog = Catalog(conn)
    for i, t in enumerate(sync.tables):
        place = f"table {t.name}"

        def error(loc: tuple, text: str) -> None:
            report.errors.append(Located.at(sync.where("tables", i, *loc), text))

        target = catalog.table(t.target_schema, t.target_table)
        if target.oid is None or target.kind not in ("r", "p"):
            what = "does not exist" if target.oid is None else "is not a table"
            error(("target_table",), f"{place}: target table {target.label} {what}")
            continue
        source = t.source
        mapped = [c.target for c in source.columns] if isinstance(source, DatabaseSource) and source.columns else None
        bad = False

        def at(col: str) -> tuple:  # the mapping that names a column, else the key
            return ("source_config", "columns", mapped.index(col)) if mapped and col in mapped else ("primary_key",)

        for col in list(t.keys) + (mapped or []):
            if col in TRACKING_COLUMNS or col.startswith("_rd_"):
                error(at(col), f'{place}: column "{col}" is refdata\'s own; a source cannot set it')
                bad = True
            elif col not in target.columns:
                error(at(col), f"{place}: {target.missing(col)}")
                bad = True
        if bad:
            continue
        if not any(set(k) == set(t.keys) for k in catalog.unique_keys(target)):
            keys = ", ".join(f'"{k}"' for k in t.keys)
            error(("primary_key",), f"{place}: primary_key ({keys}) is not a primary key or unique constraint of {target.label}")
        if mapped is not None:
            for name, col in target.columns.items():
                if col["not_null"] and not col["has_default"] and name not in mapped:
                    error(("source_config", "columns"),
                        f'{place}: column "{name}" of {target.label} is NOT NULL without a default; '
                        "map a source column to it in source_config.columns"
                    )
    return report
