"""Render the config into SQL statements, in apply order.

Rendering needs the config only, never a database: types are left to
PostgreSQL (row variables declared as ``table%ROWTYPE``, defaults converted by
``jsonb_populate_record``), and the catalog checks (catalog.py) make sure they
will fit before anything is applied.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from psycopg.types.json import Jsonb

from .config import BackfillColumn, Config, Domain, ForeignKey, template_fields
from .errors import InputError
from .names import DEFAULT_OWNER, dollar_quote, ident, literal, object_name, ordered_names, qualified
from .order import processing_order

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


@dataclass(frozen=True)
class KeySets:
    """The distinct keys of every FK of a domain in one pass over the rows:
    GROUP BY GROUPING SETS, one set per distinct list of source columns (two
    FKs on the same columns share it). `set_id` tells a result row's set."""

    columns: str
    sets: str
    set_id: str
    of: dict

    @classmethod
    def build(cls, fks: list["FkView"], alias: str) -> "KeySets":
        unique: list[tuple[str, ...]] = []
        for v in fks:
            if tuple(v.source_idents) not in unique:
                unique.append(tuple(v.source_idents))
        columns = list(dict.fromkeys(c for s in unique for c in s))
        cases = []
        for n, s in enumerate(unique, start=1):
            test = " AND ".join(f"GROUPING({alias}.{c}) = {0 if c in s else 1}" for c in columns)
            cases.append(f"WHEN {test} THEN {n}")
        return cls(
            columns=", ".join(f"{alias}.{c}" for c in columns),
            sets=", ".join("(" + ", ".join(f"{alias}.{c}" for c in s) + ")" for s in unique),
            set_id=f"CASE {' '.join(cases)} END",
            of={v.name: unique.index(tuple(v.source_idents)) + 1 for v in fks},
        )


@cache
def _templates():
    """The templates' environment, built on first use: commands that render
    nothing (sync, load) do not pay for importing jinja2."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(SQL_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["ident"] = ident
    env.filters["literal"] = literal
    env.filters["dollar_quote"] = dollar_quote
    # Every path takes this one transaction-level lock before it creates or fills
    # a parent, and holds it until commit: writers that derive parents then wait
    # for each other instead of deadlocking on keys taken in different orders.
    # Two int4 keys ('refd', 1) so it never meets apply's single bigint key.
    env.globals["derive_lock"] = "pg_catalog.pg_advisory_xact_lock(1919247972, 1)"
    env.globals["key_sets"] = KeySets.build
    return env


@cache
def generated_code_stamp() -> str:
    """A digest of what the code refdata installs is rendered from: the
    templates (not the catalog queries, the benchmark's or the demo's) and
    this module. Recorded in schema refdata's comment at apply; a load into
    an install with another stamp is an install no apply brought up to date."""
    digest = hashlib.sha256()
    for path in sorted(SQL_DIR.rglob("*")):
        part = path.relative_to(SQL_DIR)
        if path.is_file() and part.parts[0] not in ("catalog", "bench", "demo"):
            digest.update(part.as_posix().encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:12]


INSTALL_STAMP = re.compile(r"\(generated code ([0-9a-f]+)\)$")


def load_functions(domain: str) -> list[str]:
    """The functions `refdata load` of a domain calls, directly or through
    the ones it calls, as regprocedure text."""
    return [f"{refdata_name(domain, 'load')}(text[], text)",
            f"{refdata_name(domain, 'load_parents')}(text[], text, boolean)",
            f"{refdata_name(domain, 'load_ready')}(text[], text, boolean)",
            f"{refdata_name(domain, 'load_begin')}()", f"{refdata_name(domain, 'load_verify')}()"]


def sql_file(path: str, **context) -> str:
    """A static .sql file or a .sql.j2 template under sql/, rendered."""
    return _templates().get_template(path).render(**context).strip() + "\n"


@dataclass(frozen=True)
class FromEnv:
    """A value taken from the environment when the statement runs (a
    password, say): apply binds it, a rendered script reads it with psql's
    \\getenv. Never written out, never shown. A `secret` (a password) is not
    bound either: the server logs a statement's parameters (log_statement,
    log_min_duration_statement), so apply hands it over as COPY data, which
    no log setting records, into SECRETS, where the statement reads it."""

    var: str
    value: str | None = field(default=None, repr=False, compare=False)
    secret: bool = False


# The temporary table apply copies secrets into, for the statement that needs them.
SECRETS = "pg_temp.refdata_secret"
# Around a script's statement that carries a secret. A role that may not
# change these settings is told so, and the script goes on.
LOG_SETTINGS = ("log_statement", "log_min_duration_statement", "log_min_error_statement")
QUIET_LOG = (
    "DO $refdata$\nBEGIN\n    PERFORM "
    + ", ".join(f"set_config('{n}', '{v}', false)" for n, v in zip(LOG_SETTINGS, ("none", "-1", "panic")))
    + ";\nEXCEPTION WHEN insufficient_privilege THEN\n"
    "    RAISE WARNING 'refdata: the next statement carries a password and this role may not keep it out of "
    "the server log (log_statement, log_min_duration_statement, log_min_error_statement)';\nEND\n$refdata$;\n")
LOUD_LOG = (
    "DO $refdata$\nBEGIN\n"
    + "".join(f"    RESET {n};\n" for n in LOG_SETTINGS)
    + "EXCEPTION WHEN insufficient_privilege THEN\n    NULL;\nEND\n$refdata$;\n")


@dataclass(frozen=True)
class Statement:
    """One SQL object's statement(s); `params` are bound by apply."""

    kind: str
    name: str
    sql: str
    params: dict | None = None
    # In a psql script: run only when this environment variable is set.
    requires_env: str | None = None
    # The table the statement creates that the owner role must own, as ALTER
    # takes it ("TABLE refdata_stage.d"); every function in schema refdata is
    # the owner's anyway (sql/roles/rights.sql.j2).
    owned: str | None = None

    def bound_params(self) -> dict | None:
        """Parameters as apply binds them (JSON documents as jsonb); never a secret."""
        if not self.params:
            return None
        return {k: Jsonb(v) if isinstance(v, (dict, list)) else v.value if isinstance(v, FromEnv) else v
                for k, v in self.params.items() if k not in self.secrets()}

    def secrets(self) -> dict[str, str | None]:
        """The secret parameters, by name, for apply to COPY into SECRETS."""
        return {k: v.value for k, v in (self.params or {}).items() if isinstance(v, FromEnv) and v.secret}

    def bound_sql(self) -> str:
        """The SQL apply runs: a secret read from SECRETS, not bound."""
        sql = self.sql
        for k in self.secrets():
            sql = sql.replace(f"%({k})s", f"(SELECT s.value FROM {SECRETS} AS s WHERE s.name = {literal(k)})")
        return sql

    def script(self) -> str:
        """The text a DBA runs with psql: parameters become quoted literals,
        values from the environment psql variables set by \\getenv."""
        if not self.params:
            return self.sql
        env = sorted({v.var for v in self.params.values() if isinstance(v, FromEnv)})
        # An unset variable reads as '' (the SQL takes '' for NULL).
        getenv = "".join(f"\\getenv {var} {var}\n\\if :{{?{var}}}\n\\else\n\\set {var} ''\n\\endif\n"
                         for var in env)
        sql = self.sql % {k: f":'{v.var}'" if isinstance(v, FromEnv) else literal(v) for k, v in self.params.items()}
        if self.secrets():
            # psql sends the secret in the statement's text: kept out of the
            # server log where the role may change what it logs.
            sql = QUIET_LOG + sql + LOUD_LOG
        if self.requires_env:
            var = self.requires_env
            return (f"\\getenv {var} {var}\n\\if :{{?{var}}}\n{getenv}{sql}\\else\n"
                    f"\\echo 'refdata: {var} is not set: {self.kind} {self.name} is not set up'\n\\endif\n")
        return getenv + sql


# What counts as whitespace in a blank key: ASCII whitespace, no-break,
# figure, narrow and ideographic spaces, and a stray byte-order mark.
BLANK_CHARACTERS = "E' \\t\\n\\r\\f\\v\\u00A0\\u2007\\u202F\\u3000\\uFEFF'"


def key_equals(key: str, value: str, equality: tuple[str, str] | None) -> str:
    """`key = value` by the key's own equality: as a FOREIGN KEY compares,
    the value cast to the key's type, so the key's unique index serves it."""
    if equality is None:
        return f"{key} = {value}"
    operator, type_ = equality
    return f"{key} {operator} {value}::{type_}"


def trimmed(expr: str) -> str:
    return f"btrim({expr}::text, {BLANK_CHARACTERS})"


def format_template(template: str) -> str:
    """A `{column}` template as a format() string with positional %n$s slots."""
    fields = template_fields(template)
    out = []
    for text, name, _, _ in string.Formatter().parse(template):
        out.append(text.replace("%", "%%"))
        if name is not None:
            out.append(f"%{fields.index(name) + 1}$s")
    return "".join(out)


@dataclass
class FkView:
    """A foreign key as the templates see it: quoted names, SQL fragments."""

    fk: ForeignKey
    i: int
    domain: str
    skip: frozenset = frozenset()
    mappings: list[BackfillColumn] = field(default_factory=list)
    # the parent table is the fact table itself: a batch's own rows are parents too
    self_referencing: bool = False
    # key column -> (operator, type) where `=` in pg_catalog is not the key's
    # own equality (catalog.Report.equalities); empty without a catalog
    equalities: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mappings = [m for m in self.fk.mappings() if (self.domain, self.fk.name, m.target) not in self.skip]

    @property
    def name(self) -> str:
        return self.fk.name

    @property
    def target(self) -> str:
        return qualified(self.fk.target_schema, self.fk.target_table)

    @property
    def table_literal(self) -> str:
        """The parent as it is named in counts: schema.table, unquoted."""
        return literal(f"{self.fk.target_schema}.{self.fk.target_table}")

    @property
    def mode(self) -> str:
        # Filling NULLs needs something to fill them with.
        return self.fk.mode if self.mappings else "insert_missing"

    @property
    def has_markers(self) -> bool:
        return self.fk.skip_blank_values and bool(self.fk.markers)

    @property
    def key_pairs(self) -> list[tuple[str, str]]:
        return [(ident(t), ident(s)) for s, t in zip(self.fk.sources, self.fk.keys)]

    @property
    def key_list(self) -> str:
        return ", ".join(ident(k) for k in self.fk.keys)

    @property
    def source_list(self) -> str:
        return ", ".join(ident(s) for s in self.fk.sources)

    @property
    def mapped_targets(self) -> list[str]:
        return [ident(m.target) for m in self.mappings]

    @property
    def defaults(self) -> list[str]:
        return [ident(c) for c in self.fk.defaults]

    @property
    def key_idents(self) -> list[str]:
        return [ident(k) for k in self.fk.keys]

    @property
    def source_idents(self) -> list[str]:
        return [ident(s) for s in self.fk.sources]

    @property
    def value_columns(self) -> list[str]:
        """Non-key parent columns a derived row sets: mapped, then defaults."""
        return self.mapped_targets + [c for c in self.defaults if c not in self.mapped_targets]

    @property
    def insert_columns(self) -> list[str]:
        return self.key_idents + self.value_columns

    def group_by(self, alias: str) -> str:
        return ", ".join(f"{alias}.{s}" for s in self.source_idents)

    def path(self, *keys: str) -> str:
        return "ARRAY[" + ", ".join(literal(k) for k in ("fk", self.name) + keys) + "]"

    def match(self, alias: str, record: str, on_target: bool = False) -> str:
        cols = self.fk.keys if on_target else self.fk.sources
        return " AND ".join(
            key_equals(f"{alias}.{ident(t)}", f"{record}.{ident(s)}", self.equalities.get(t))
            for s, t in zip(cols, self.fk.keys)
        )

    def keys_kept(self, stored: str, record: str) -> str:
        """True when each key of `record` reads in `stored` (the row the
        parent would get) as the look-up compares it; otherwise the insert
        fails naming the foreign key and column (refdata.key_changed), never
        derives a parent under a key cut to the column's length."""
        return " AND ".join(
            f"CASE WHEN {stored}.{ident(t)} = {record}.{ident(s)} THEN true "
            f"ELSE refdata.key_changed({literal(self.name)}, {literal(t)}, {self.table_literal}, "
            f"{record}.{ident(s)}::text, {stored}.{ident(t)}::text) END"
            for s, t in zip(self.fk.sources, self.fk.keys)
        )

    def stored_keys(self, record: str) -> str:
        """The keys of `record` as the parent table's columns store them (a row of it)."""
        pairs = ", ".join(f"{literal(t)}, {record}.{ident(s)}" for s, t in zip(self.fk.sources, self.fk.keys))
        return f"jsonb_populate_record(NULL::{self.target}, jsonb_build_object({pairs}))"

    def keys_usable(self, record: str) -> str:
        """Key present: not NULL, and not empty or whitespace when blanks are skipped."""
        parts = []
        for s in self.fk.sources:
            parts.append(f"{record}.{ident(s)} IS NOT NULL")
            if self.fk.skip_blank_values:
                parts.append(f"{trimmed(f'{record}.{ident(s)}')} <> ''")
        return " AND ".join(parts)

    def is_marker(self, record: str, params: str) -> str:
        markers = f"({params} #> {self.path('blank_values')})"
        return " OR ".join(f"{markers} ? {trimmed(f'{record}.{ident(s)}')}" for s in self.fk.sources)

    def present(self, value: str, params: str) -> str:
        """The value counts: not NULL and, when the FK skips blanks, not blank by its rules."""
        parts = [f"{value} IS NOT NULL"]
        if self.fk.skip_blank_values:
            parts.append(f"{trimmed(value)} <> ''")
            if self.has_markers:
                parts.append(f"NOT (({params} #> {self.path('blank_values')}) ? {trimmed(value)})")
        return " AND ".join(parts)

    def one_row_group(self, expression: str, record: str) -> str:
        """An aggregate SQL expression over a group of the one row `record`."""
        group = ", ".join(f"s.{ident(c)}" for c in self.fk.sources)
        return f"(SELECT ({expression}) FROM (SELECT {record}.*) AS s GROUP BY {group})"

    def row_expression(self, m: BackfillColumn, record: str, params: str) -> str:
        """The parent value one fact row gives; set-based loads aggregate many."""
        if m.aggregation == "template":
            return self._template(m, params, lambda c: f"{record}.{ident(c)}")
        if m.aggregation == "sql":
            return self.one_row_group(m.expression, record)
        if m.aggregation == "jsonb_append":
            values = (self.one_row_group(m.expression, record) if m.expression
                      else f"jsonb_build_array({record}.{ident(m.source)})")
            return f"refdata.jsonb_append(NULL, {values})"
        src = f"{record}.{ident(m.source)}"
        if m.aggregation == "concat_distinct":
            return self._concat(f"ARRAY[{src}::text]", m, params)
        if m.aggregation == "count_distinct":
            return f"({self.present(src, params)})::integer"
        return src

    def set_expression(self, m: BackfillColumn, alias: str, params: str) -> str:
        """The parent value many fact rows sharing a key give (GROUP BY key).

        For a single row each reduces to `row_expression`, so the row trigger
        and the bulk path derive the same parents.
        """
        line = f'{alias}."_rd_line"'
        if m.aggregation == "template":  # filled from the first row in load order
            return self._template(m, params, lambda c: f"(array_agg({alias}.{ident(c)} ORDER BY {line}))[1]")
        if m.aggregation == "sql":
            return f"({m.expression})"
        if m.aggregation == "jsonb_append":
            values = f"({m.expression})" if m.expression else f"jsonb_agg({alias}.{ident(m.source)} ORDER BY {line})"
            return f"refdata.jsonb_append(NULL, {values})"
        src = f"{alias}.{ident(m.source)}"
        if m.aggregation == "concat_distinct":
            return self._concat(f"array_agg({src}::text ORDER BY {line})", m, params)
        if m.aggregation == "count_distinct":
            return f"count(DISTINCT {src}) FILTER (WHERE {self.present(src, params)})"
        if m.aggregation == "first":
            order = line
        else:
            direction = "DESC" if m.aggregation == "max_by" else "ASC"
            # strings by code point, as the pipeline's Python compared them
            order = f"refdata.code_point_order({alias}.{ident(m.order_column)}) {direction} NULLS LAST, {line}"
        return f"(array_agg({src} ORDER BY {order}) FILTER (WHERE {src} IS NOT NULL))[1]"

    def fill(self, current: str, new: str, grouped: bool = False) -> list[tuple[str, str, str]]:
        """(column, filled value, whether it changes) per mapped column of an
        existing parent `current`: NULLs filled, jsonb arrays appended to.
        `new` is a row with the parent's columns, or grouped values ("_rd_vN")."""
        out = []
        for n, m in enumerate(self.mappings, start=1):
            col = ident(m.target)
            old, value = f"{current}.{col}", (f'{new}."_rd_v{n}"' if grouped else f"{new}.{col}")
            if m.aggregation == "jsonb_append":
                filled = f"refdata.jsonb_append({old}, {value})"
                out.append((col, filled, f"{filled} IS DISTINCT FROM {old}"))
            else:
                out.append((col, f"COALESCE({old}, {value})", f"({old} IS NULL AND {value} IS NOT NULL)"))
        return out

    def fill_set(self, current: str, new: str, grouped: bool = False) -> str:
        return ", ".join(f"{c} = {v}" for c, v, _ in self.fill(current, new, grouped))

    def fill_wanted(self, current: str, new: str, grouped: bool = False) -> str:
        return " OR ".join(w for _, _, w in self.fill(current, new, grouped))

    def _template(self, m: BackfillColumn, params: str, value_of) -> str:
        """format() of the stored template with each named column's value bound as an argument."""
        args = "".join(f", {value_of(c)}" for c in template_fields(m.template))
        return f"format({params} #>> {self.path('templates', m.target)}{args})"

    def _concat(self, values: str, m: BackfillColumn, params: str) -> str:
        separator = f"{params} #>> {self.path('separators', m.target)}"
        return f"refdata.concat_distinct({values}, {separator}, {'true' if m.sort else 'false'})"

    def set_aggregates(self, alias: str, params: str) -> list[tuple[str, str]]:
        """("_rd_vN", aggregate) per mapping, in mapping order."""
        return [(ident(f"_rd_v{n}"), self.set_expression(m, alias, params))
                for n, m in enumerate(self.mappings, start=1)]

    def set_values(self, grouped: str, defaults: str) -> list[str]:
        """Per value column: the aggregate, the config default, or the first of both that is not NULL."""
        mapped = {m.target: n for n, m in enumerate(self.mappings, start=1)}
        values = []
        for col in [m.target for m in self.mappings] + [c for c in self.fk.defaults if c not in mapped]:
            parts = [f'{grouped}."_rd_v{mapped[col]}"'] if col in mapped else []
            if col in self.fk.defaults:
                parts.append(f"{defaults}.{ident(col)}")
            values.append(parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})")
        return values

    def row_assignments(self, record: str, params: str) -> list[tuple[str, str]]:
        return [(ident(m.target), self.row_expression(m, record, params)) for m in self.mappings]

    def params(self) -> dict:
        return {
            "blank_values": sorted(set(self.fk.markers)),
            "defaults": dict(self.fk.defaults),
            "templates": {
                m.target: format_template(m.template) for m in self.mappings if m.aggregation == "template"
            },
            "separators": {m.target: m.separator for m in self.mappings if m.aggregation == "concat_distinct"},
        }

    def sources_not_null(self, record: str) -> str:
        return " AND ".join(f"{record}.{ident(s)} IS NOT NULL" for s in self.fk.sources)

    def blank_count(self, record: str, params: str) -> str:
        """1 when this FK's key of the row is blank (so it derived nothing), else 0."""
        return f"coalesce(({self.blank_condition(record, params)})::integer, 0)"

    def blank_condition(self, record: str, params: str) -> str:
        """A key is present but blank (so skipped): empty, whitespace, or a marker."""
        if not self.fk.skip_blank_values:
            return "false"
        parts = [f"({record}.{ident(s)} IS NOT NULL AND {trimmed(f'{record}.{ident(s)}')} = '')" for s in self.fk.sources]
        if self.has_markers:
            parts.append(f"({self.is_marker(record, params)})")
        return " OR ".join(parts)

    def trigger_columns(self) -> list[str]:
        cols = list(self.fk.sources)
        if self.mode == "fill_null_only":
            for m in self.mappings:
                cols += [c for c in m.sources() if c not in cols]
        return cols


def refdata_name(domain: str, what: str) -> str:
    """Qualified name of a per-domain function in schema refdata."""
    return qualified("refdata", object_name(domain, what))


def stage_table(domain: str) -> str:
    return qualified("refdata_stage", object_name(domain))


def load_triggers(domain: str) -> list[str]:
    """The names of a domain's two load triggers, which fire in name order:
    back to origin first (D__load_begin), then derive and verify."""
    return ordered_names(domain, "load_begin", "load_verify")


def generated_names(domain: str, d: Domain) -> list[tuple[str, str]]:
    """(what, name as SQL writes it) of what apply creates for a domain that
    users type: in GRANTs, in psql, in ALTER TABLE ... DISABLE TRIGGER."""
    fact = fact_table(domain, d)
    out = [
        ("load function", refdata_name(domain, "load")),
        ("staging table", stage_table(domain)),
    ]
    if d.trigger_mode == "row":
        out += [("row trigger", f"{ident(object_name(domain, 'backfill'))} ON {fact}"),
                ("its function", refdata_name(domain, "backfill"))]
    else:
        out += [("insert trigger", f"{ident(object_name(domain, 'backfill_insert'))} ON {fact}"),
                ("update trigger", f"{ident(object_name(domain, 'backfill_update'))} ON {fact}"),
                ("their function", refdata_name(domain, "backfill_set"))]
    out += [("direct load function", refdata_name(domain, "load_ready")),
            ("direct load trigger", f"{ident(load_triggers(domain)[0])} ON {fact}"),
            ("direct load verify trigger", f"{ident(load_triggers(domain)[1])} ON {fact}"),
            ("its function", refdata_name(domain, "load_verify"))]
    out.append(("run-time values", f"refdata.domain_param WHERE domain = {literal(domain)}"))
    parents: set[str] = set()
    for fk in processing_order(domain, d):
        target = qualified(fk.target_schema, fk.target_table)
        if target in parents:
            continue  # another FK of the domain shares this parent table
        parents.add(target)
        out += [("review index", qualified(fk.target_schema, object_name(fk.target_table, "needs_review"))),
                ("_source check", f"{ident(object_name(fk.target_table, 'source_check'))} ON {target}")]
    return out


def fact_table(domain: str, d: Domain) -> str:
    return qualified(d.fact_schema, d.fact_table_for(domain))


def fact_key_index(domain: str, d: Domain, fk: ForeignKey) -> tuple[str, str, str]:
    """(schema, table, index) of the index apply makes on an FK's fact columns
    (observability.index_fact_keys), when no index leads with them already."""
    table = d.fact_table_for(domain)
    parts = (table, *fk.sources)
    if any("__" in part for part in parts):
        # joined with "__", (a, b) and "a__b" would read alike: a digest of the parts keeps them apart
        digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:8]
        return d.fact_schema, table, object_name(*parts, "refdata", digest)
    return d.fact_schema, table, object_name(*parts, "refdata")


def domain_views(domain: str, d: Domain, skip: frozenset = frozenset(), equalities: dict | None = None) -> list[FkView]:
    fact = (d.fact_schema, d.fact_table_for(domain))
    equalities = equalities or {}
    return [FkView(fk, i, domain, skip, self_referencing=(fk.target_schema, fk.target_table) == fact,
                   equalities={k: equalities[(domain, fk.name, k)] for k in fk.keys if (domain, fk.name, k) in equalities})
            for i, fk in enumerate(processing_order(domain, d), start=1)]


def render(config: Config, skip: set[tuple[str, str, str]] = frozenset(),
           sync: list[Statement] = (), owner: str = DEFAULT_OWNER,
           equalities: dict | None = None) -> list[Statement]:
    """Every statement, in apply order.

    `skip` names optional mappings (domain, fk, target column) whose fact
    column the catalog check found absent; `equalities` the keys it found
    compared by another equality than their own (catalog.Report.equalities:
    without a catalog, keys are compared by `=` as pg_catalog resolves it). `sync` (reference sync's
    statements) come after the tracking columns, before the domains. `owner`
    is the role that owns the generated functions and staging tables.
    """
    skip = frozenset(skip)
    out = [
        Statement("role", owner, sql_file("roles/owner.sql.j2", owner=ident(owner), owner_literal=literal(owner))),
        Statement("schema", "refdata", sql_file("schema/refdata.sql.j2", stamp=generated_code_stamp())),
        Statement("schema", "refdata_stage", sql_file("schema/refdata_stage.sql")),
        Statement("table", "refdata.domain_param", sql_file("tables/domain_param.sql")),
        Statement("function", "refdata.concat_distinct", sql_file("functions/concat_distinct.sql.j2")),
        Statement("function", "refdata.jsonb_append", sql_file("functions/jsonb_append.sql.j2")),
        Statement("function", "refdata.code_point_order(text)", sql_file("functions/code_point_order_text.sql.j2")),
        Statement("function", "refdata.code_point_order(anyelement)",
                  sql_file("functions/code_point_order_any.sql.j2")),
        Statement("function", "refdata.key_changed", sql_file("functions/key_changed.sql.j2")),
        Statement("table", "refdata.audit_batch", sql_file("tables/audit_batch.sql")),
        Statement("function", "refdata.audit_value", sql_file("functions/audit_value.sql")),
        Statement("function", "refdata.audit_values", sql_file("functions/audit_values.sql")),
        Statement("function", "refdata.audit_rows", sql_file("functions/audit_rows.sql")),
        Statement("view", "refdata.audit_log", sql_file("views/audit_log.sql")),
        Statement("function", "refdata.record_fields", sql_file("functions/record_fields.sql")),
        Statement("function", "refdata.audit", sql_file("functions/audit.sql")),
        Statement("function", "refdata.owner_writes", sql_file("functions/owner_writes.sql")),
        Statement("function", "refdata.owner_guard", sql_file("functions/owner_guard.sql")),
        Statement("event_trigger", "refdata_owner_guard", sql_file("triggers/owner_guard.sql")),
        Statement("table", "refdata.reference_link", sql_file("tables/reference_link.sql")),
        Statement("table", "refdata.load_run", sql_file("tables/load_run.sql")),
        Statement("function", "refdata.load_run_finished", sql_file("functions/load_run_finished.sql")),
        Statement("trigger", "refdata.load_run.refdata_load_run_finished", sql_file("triggers/load_run_finished.sql")),
        Statement("table", "refdata.backfill_skip", sql_file("tables/backfill_skip.sql")),
        Statement("function", "refdata.set_based_blocker", sql_file("functions/set_based_blocker.sql.j2")),
        Statement("function", "refdata.verify_foreign_keys", sql_file("functions/verify_foreign_keys.sql.j2")),
    ]
    views = {name: domain_views(name, d, skip, equalities) for name, d in config.domains.items()}
    targets = {(v.fk.target_schema, v.fk.target_table): v for fks in views.values() for v in fks}
    for (schema, table), v in targets.items():
        out.append(Statement("tracking", f"{schema}.{table}", sql_file(
            "tracking/columns.sql.j2",
            table=v.target,
            table_literal=literal(v.target),
            check_name=object_name(table, "source_check"),
            index_name=object_name(table, "needs_review"),
            index_literal=literal(qualified(schema, object_name(table, "needs_review"))),
        )))
        out += observed_table_statements(config, schema, table, v, owner)
    out += sync
    for name, d in config.domains.items():
        out += domain_statements(name, d, views[name])
    out += observability_statements(config, views)
    out.append(owner_rights(config, views, owner, out))
    return out


def own_label(schema: str, table: str) -> str:
    """A reference table as it names its own objects in schema refdata:
    schema.table, or as SQL writes it when a dot in either name would make
    two tables read alike ("x.y".z and x."y.z" would share one function)."""
    if "." in schema or "." in table:
        return qualified(schema, table)
    return f"{schema}.{table}"


def observed_table_statements(config: Config, schema: str, table: str, v: FkView,
                              owner: str = DEFAULT_OWNER) -> list[Statement]:
    """Index of derived rows, audit triggers and promotion on insert of one reference table."""
    label = f"{schema}.{table}"
    promote = refdata_name(own_label(schema, table), "promote")
    return [
        Statement("index", f"{label}.derived", sql_file(
            "indexes/derived.sql.j2", table=v.target, index_name=object_name(table, "derived"))),
        Statement("trigger", f"{label}.refdata_audit", sql_file(
            "triggers/audit.sql.j2", table=v.target, keys=list(v.fk.keys))),
        Statement("function", f"refdata.{object_name(own_label(schema, table), 'promote')}", sql_file(
            "functions/promote.sql.j2", function=promote, table=v.target, keys=v.key_idents)),
        Statement("trigger", f"{label}.refdata_promote", sql_file(
            "triggers/promote.sql.j2", table=v.target, table_literal=literal(v.target), function=promote,
            owner_literal=literal(owner),
            enabled=config.observability.table(schema, table).promote_on_insert)),
    ]


def observability_statements(config: Config, views: dict[str, list[FkView]]) -> list[Statement]:
    """Fact key indexes and the quality views over every configured FK."""
    out: list[Statement] = []
    tables: dict[tuple[str, str], dict] = {}
    fks = []
    indexed: set[tuple[str, tuple]] = set()
    for domain, fk_views in views.items():
        d = config.domains[domain]
        fact = fact_table(domain, d)
        for v in fk_views:
            t = tables.setdefault((v.fk.target_schema, v.fk.target_table), {
                "table": v.target, "literal": literal(v.target), "key_cols": v.key_idents,
                "key_pairs": [(ident(k), literal(k)) for k in v.fk.keys], "refs": [],
            })
            ref = {"fact": fact, "match": v.match("r", "f")}
            if ref not in t["refs"]:
                t["refs"].append(ref)
            fks.append({
                "domain_literal": literal(domain), "fk_literal": literal(v.name),
                "fact_literal": literal(fact), "table_literal": literal(v.target),
                "fact": fact, "table": v.target, "sources": v.source_idents, "key_cols": v.key_idents,
                "f_sources": ", ".join(f"f.{s}" for s in v.source_idents),
                "match": " AND ".join(key_equals(f"p.{ident(k)}", f"k.{ident(f'k{i}')}", v.equalities.get(k))
                                      for i, k in enumerate(v.fk.keys, start=1)),
            })
            if config.observability.index_fact_keys and (fact, v.fk.sources) not in indexed:
                indexed.add((fact, v.fk.sources))
                schema, _, index = fact_key_index(domain, d, v.fk)
                out.append(Statement("index", f"{d.fact_schema}.{d.fact_table_for(domain)}.{v.name}", sql_file(
                    "indexes/fact_key.sql.j2", fact=fact, fact_literal=literal(fact), columns=list(v.fk.sources),
                    index_name=index, index=qualified(schema, index), index_literal=literal(qualified(schema, index)))))
    context = {"tables": list(tables.values()), "fks": fks}
    for view in ("reference_quality", "pending_review", "fk_coverage", "derivation_activity"):
        out.append(Statement("view", f"refdata.{view}", sql_file(f"views/{view}.sql.j2", **context)))
    out.append(Statement("params", "refdata.reference_link", sql_file("params/reference_link.sql.j2"),
                         {"links": links(config)}))
    for function in ("review_keys", "review_approve", "review_merge", "review_import", "pending_rows"):
        out.append(Statement("function", f"refdata.{function}", sql_file(f"functions/{function}.sql")))
    role = config.observability.reviewer_role
    out.append(Statement("role", role, sql_file("roles/reviewer.sql.j2", role=role)))
    out.append(Statement("grant", f"{role}.review", sql_file("grants/reviewer.sql.j2", role=role)))
    return out


def links(config: Config) -> list[dict]:
    """Every configured FK as a row of refdata.reference_link."""
    return [
        {"domain": name, "foreign_key": fk.name, "fact_schema": d.fact_schema, "fact_table": d.fact_table_for(name),
         "source_columns": list(fk.sources), "target_schema": fk.target_schema, "target_table": fk.target_table,
         "key_columns": list(fk.keys)}
        for name, d in config.domains.items() for fk in d.foreign_keys
    ]


def owner_rights(config: Config, views: dict[str, list[FkView]], owner: str, statements: list[Statement]) -> Statement:
    """The owner's grants and ownerships, in one statement (sql/roles/rights.sql.j2)."""
    reference = list(dict.fromkeys(v.target for fks in views.values() for v in fks))
    facts = sorted({fact_table(name, d) for name, d in config.domains.items()})
    schemas = {v.fk.target_schema for fks in views.values() for v in fks} | {d.fact_schema for d in config.domains.values()}
    return Statement("rights", owner, sql_file(
        "roles/rights.sql.j2",
        owner=ident(owner),
        owner_literal=literal(owner),
        schemas=[ident(n) for n in sorted(schemas)],
        reference_tables=reference,
        fact_tables=facts,
        written=[literal(t) for t in reference + facts],
        facts=[literal(t) for t in facts],
        owned=[s.owned for s in statements if s.owned],
    ))


def domain_statements(name: str, d: Domain, fks: list[FkView]) -> list[Statement]:
    """Run-time values, functions, staging table and triggers of one domain."""
    fact = fact_table(name, d)
    stage = stage_table(name)
    fact_label = f"{d.fact_schema}.{d.fact_table_for(name)}"
    common = {"fks": fks, "domain_literal": literal(name), "fact_literal": literal(fact), "fact_table": fact}

    def function(what: str, template: str, comment: str, **extra) -> Statement:
        sql = sql_file(template, function=refdata_name(name, what),
                       comment=literal(f"refdata: {comment} (domain {name})"), **common, **extra)
        return Statement("function", f"refdata.{object_name(name, what)}", sql)

    params = {"domain": name, "verify": d.verify, "fk": {v.name: v.params() for v in fks}}
    # refdata's triggers on the fact table, which a set-based load may run under replica
    own_functions = [literal(f"{refdata_name(name, w)}()")
                     for w in ("backfill", "backfill_set", "load_begin", "load_verify")]
    begin_trigger, verify_trigger = load_triggers(name)
    load_trigger_names = {"begin_trigger": begin_trigger, "verify_trigger": verify_trigger}
    out = [
        Statement("params", f"refdata.domain_param.{name}", sql_file("params/domain_param.sql.j2"),
                  {"domain": name, "params": params}),
        function("backfill", "functions/backfill.sql.j2", f"derives missing parents of each row written to {fact}"),
        function("backfill_set", "functions/backfill_statement.sql.j2",
                 f"derives missing parents of each statement's rows written to {fact}"),
        Statement("stage", f"refdata_stage.{name}", sql_file(
            "stage/table.sql.j2", stage=stage, stage_literal=literal(stage), fact_literal=literal(fact),
            batch_index=object_name(name, "batch"),
            comment=literal(f"refdata: staging rows of {fact} (domain {name}); see {refdata_name(name, 'load')}"),
        ), owned=f"TABLE {stage}"),
        function("load_parents", "functions/load_parents.sql.j2",
                 f"derives the parents of staged rows of {stage} and verifies the foreign keys of {fact}",
                 stage=stage, stage_literal=literal(stage), own_functions=own_functions),
        function("load", "functions/load.sql.j2", f"loads staged rows of {stage} into {fact} as the caller",
                 stage=stage, stage_literal=literal(stage), parents_function=refdata_name(name, "load_parents")),
        function("load_begin", "functions/load_begin.sql.j2",
                 f"puts session_replication_role back to origin after the COPY of a direct load into {fact}"),
        function("load_verify", "functions/load_verify.sql.j2",
                 f"derives the parents of a direct load into {fact} and verifies its foreign keys",
                 own_functions=own_functions),
        Statement("trigger", f"{fact_label}.{verify_trigger}", sql_file(
            "triggers/load_direct.sql.j2", fact_table=fact, domain_literal=literal(name),
            begin_function=refdata_name(name, "load_begin"), verify_function=refdata_name(name, "load_verify"),
            **load_trigger_names)),
        function("load_ready", "functions/load_ready.sql.j2",
                 f"checks a direct load into {fact} and names the domain for its COPY",
                 stage=stage, own_functions=own_functions, triggers=[literal(t) for t in load_trigger_names.values()]),
    ]
    if d.defer_foreign_keys:
        out.append(Statement("constraints", f"{fact_label}.deferred", sql_file(
            "constraints/defer.sql.j2", fact_literal=literal(fact), targets=sorted({literal(v.target) for v in fks}))))
    columns: list[str] = []
    for v in fks:
        columns += [c for c in v.trigger_columns() if c not in columns]
    out.append(Statement("trigger", f"{fact_label}.{object_name(name, 'backfill')}", sql_file(
        "triggers/backfill.sql.j2",
        mode=d.trigger_mode,
        domain_literal=literal(name),
        row_trigger=object_name(name, "backfill"),
        insert_trigger=object_name(name, "backfill_insert"),
        update_trigger=object_name(name, "backfill_update"),
        columns=[ident(c) for c in columns],
        fact_table=fact,
        fact_literal=literal(fact),
        row_function=refdata_name(name, "backfill"),
        statement_function=refdata_name(name, "backfill_set"),
    )))
    return out


# psql settings that keep a script all or nothing: stop at the first error,
# and no per-statement savepoints (ON_ERROR_ROLLBACK) that would let later
# statements commit after a failed one.
PSQL_PREAMBLE = "\\set ON_ERROR_STOP on\n\\set ON_ERROR_ROLLBACK off\n"
# Operators and functions of the script resolve in pg_catalog only, whatever
# schemas the session's search_path names (see apply.pin_search_path).
SEARCH_PATH = "SET LOCAL search_path = pg_catalog, pg_temp;\n"


def script(statements: list[Statement]) -> str:
    """One psql script, all or nothing."""
    body = "\n".join(s.script() for s in statements)
    return (
        "-- Generated by refdata. Apply with:\n"
        "--   psql -v ON_ERROR_STOP=1 -f refdata.sql \"$DATABASE_URL\"\n"
        + PSQL_PREAMBLE +
        "BEGIN;\n" + SEARCH_PATH + "\n" + body + "\nCOMMIT;\n"
    )


def grants(config: Config, owner: str = DEFAULT_OWNER) -> str:
    """The role model as a psql script: the owner role and what it holds,
    then what writers and loaders of each domain need (psql variables
    :"writer" and :"loader" name them). Run it after apply."""
    statements = render(config, owner=owner)
    users = sql_file("roles/users.sql.j2", domains=[
        {"fact_schema": ident(d.fact_schema), "fact": fact_table(name, d), "stage": stage_table(name),
         "load": refdata_name(name, "load"), "load_parents": refdata_name(name, "load_parents"),
         "load_ready": refdata_name(name, "load_ready")}
        for name, d in config.domains.items()
    ])
    return (
        "-- The role model of refdata. Apply, after refdata apply, with:\n"
        "--   psql -v ON_ERROR_STOP=1 -v writer=ROLE -v loader=ROLE -f grants.sql \"$DATABASE_URL\"\n"
        + PSQL_PREAMBLE + "BEGIN;\n" + SEARCH_PATH + "\n"
        + statements[0].sql + "\n" + statements[-1].sql + "\n" + users + "\nCOMMIT;\n"
    )


GENERATED_MARK = "-- Generated by refdata."


def written_before(directory: Path) -> list[Path]:
    """The files an earlier `render -o` wrote into `directory` (apply.sql lists
    them); InputError if the folder holds anything else, which is not ours to replace."""
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    present = sorted(directory.iterdir())
    if not present:
        return []
    apply = directory / "apply.sql"
    ours: set[Path] = set()
    try:
        text = apply.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if text.startswith(GENERATED_MARK):
        ours = {apply} | {directory / line[4:].strip() for line in text.splitlines() if line.startswith("\\ir ")}
    foreign = [p.name for p in present if p not in ours or not p.is_file()]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(
            f"{directory}: holds files refdata did not write ({shown}); render into an empty or new folder"
        )
    return present


def write_directory(statements: list[Statement], directory: Path) -> list[Path]:
    """One file per object, numbered in apply order, plus apply.sql running them all.
    What an earlier run wrote there is replaced; anything else stops it."""
    for old in written_before(directory):
        old.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, s in enumerate(statements, start=1):
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in s.name)
        path = directory / f"{n:03d}_{s.kind}_{safe}.sql"
        path.write_text(s.script(), encoding="utf-8")
        paths.append(path)
    apply = directory / "apply.sql"
    apply.write_text(
        f"{GENERATED_MARK} Apply with:\n"
        "--   psql -v ON_ERROR_STOP=1 -f apply.sql \"$DATABASE_URL\"\n"
        + PSQL_PREAMBLE + "BEGIN;\n" + SEARCH_PATH
        + "".join(f"\\ir {p.name}\n" for p in paths)
        + "COMMIT;\n",
        encoding="utf-8",
    )
    return [apply] + paths
