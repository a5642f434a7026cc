"""The YAML config: pydantic models, loading, and errors that name the place.

Two spellings of a foreign key are accepted. The short one of the original
proposal (`derive_columns`: fact columns copied into parent columns of the same
name) and the richer one (`backfill_columns`: source -> target with an
aggregation). Both normalise to `ForeignKey.mappings()`.

The files: one `data_sources.yml` (the proposal's single file), or the
three-file layout of the pipeline this tool replaces: `data_sources.yml`
(`defaults` deep-merged into every domain, the fact table in
`domains.<d>.output`, pipeline keys ignored), `foreign_keys.yml` beside it
(the FK rules) and `reference_sync.yml` (read by sync, not here). `load_config`
reads whichever of them are there; everything else calls it.
"""

from __future__ import annotations

import copy
import csv
import difflib
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator,
)

from .errors import InputError
from .names import CONFIG_NAME, MAX_IDENTIFIER_BYTES, control_character, printable, qualified

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("config/data_sources.yml")

Aggregation = Literal[
    "first", "max_by", "min_by", "concat_distinct", "count_distinct", "template", "sql", "jsonb_append", "lambda"
]
# Settings an aggregation written as an object ({type: max_by, order_column: ...}) may carry.
AGGREGATION_SETTINGS = ("order_column", "separator", "sort", "template", "template_fields", "expression", "code")
# Blank markers when a foreign key lists none: the "(blank)" cell of Chinese Excel.
DEFAULT_BLANK_VALUES = ("(空白)",)
DATA_SOURCES_FILE = "data_sources.yml"
FOREIGN_KEYS_FILE = "foreign_keys.yml"
KNOWN_MAJOR_VERSION = "1"
Scalar = Union[str, int, float, bool, None]


class PlaceError(ValueError):
    """A model check's error that belongs to a field below the model
    (`loc`, relative to it), so the message names that field's line."""

    def __init__(self, message: str, loc: tuple):
        super().__init__(message)
        self.loc = loc


# Beginnings of the names reference sync gives its objects (generator/sync/render.py).
RESERVED_DOMAIN_PREFIXES = ("sync_", "refdata_")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _config_name(value: str) -> str:
    """A name the config gives its own things (foreign keys, sync tables): part
    of object names and of lines a rendered script echoes, so matched in full."""
    if not CONFIG_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name (letters, digits, underscore; not starting with a digit)")
    return value


def _identifier(value: str) -> str:
    # PostgreSQL cuts longer names to 63 bytes, so such a name can never match.
    if not value:
        raise ValueError("empty name")
    if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{value!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes")
    # A line break in a name ends comments and psql lines wherever a name is
    # written unquoted for its context; no real table needs one.
    bad = control_character(value)
    if bad:
        raise ValueError(f"{value!r} contains the control character {bad}; names may not")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


def _names(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def template_fields(template: str) -> list[str]:
    """Column names named as {placeholders} in a template, in order of first use."""
    fields: list[str] = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if field == "" or spec or conversion:
            raise ValueError(f"template placeholders name a column, like {{计划名称}}: {template!r}")
        _identifier(field)
        if field not in fields:
            fields.append(field)
    return fields


class BackfillColumn(Model):
    source: Identifier | None = None
    target: Identifier
    optional: bool = False
    aggregation: Aggregation = "first"
    order_column: Identifier | None = None
    separator: str = "+"
    sort: bool = True
    template: str | None = None
    template_fields: list[Identifier] | None = None
    expression: str | None = None
    code: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data):
        """`aggregation: {type: max_by, order_column: x}` reads as the flat spelling."""
        if not isinstance(data, dict) or not isinstance(data.get("aggregation"), dict):
            return data
        spec = dict(data["aggregation"])
        out = {k: v for k, v in data.items() if k != "aggregation"}
        if "type" not in spec:
            raise ValueError("aggregation: missing required field 'type'")
        out["aggregation"] = spec.pop("type")
        for key, value in spec.items():
            if key not in AGGREGATION_SETTINGS:
                raise ValueError(f"aggregation: unknown field {key!r}")
            if key in out and out[key] != value:
                raise ValueError(f"{key} is given both in aggregation and beside it, with different values")
            out[key] = value
        return out

    @model_validator(mode="after")
    def _check(self):
        if self.code is not None:
            if self.aggregation not in ("lambda", "jsonb_append"):
                raise ValueError("code is only used with aggregation: lambda or jsonb_append")
            if not self.optional:
                raise ValueError(f"{self.python_code_problem()}; mark it optional: true to leave it out")
            return self
        if self.aggregation == "lambda":
            raise ValueError("aggregation lambda needs code (Python); write type: sql with an SQL expression instead")
        if self.aggregation in ("max_by", "min_by") and not self.order_column:
            raise ValueError(f"aggregation {self.aggregation} needs order_column")
        if self.aggregation == "template":
            if not self.template:
                raise ValueError("aggregation template needs template")
            placeholders = template_fields(self.template)
            if self.template_fields is not None and set(self.template_fields) != set(placeholders):
                raise ValueError(
                    f"template_fields {self.template_fields} do not match the template's placeholders {placeholders}"
                )
        elif self.aggregation == "sql":
            if not self.expression:
                raise ValueError("aggregation sql needs expression")
        elif self.aggregation == "jsonb_append" and self.expression:
            pass
        elif self.source is None:
            raise ValueError(f"aggregation {self.aggregation} needs source")
        if self.template is not None and self.aggregation != "template":
            raise ValueError("template is only used with aggregation: template")
        if self.expression is not None:
            if self.aggregation not in ("sql", "jsonb_append"):
                raise ValueError("expression is only used with aggregation: sql or jsonb_append")
            problem = expression_problem(self.expression)
            if problem:
                raise ValueError(f"expression: {problem}")
        return self

    def python_code_problem(self) -> str:
        instead = ("type: jsonb_append with source or expression (no code)" if self.aggregation == "jsonb_append"
                   else "type: sql with an SQL expression")
        return f"aggregation {self.aggregation} with code runs Python, which the database cannot run; write {instead} instead"

    def sources(self) -> list[str]:
        """Fact columns this mapping reads (an SQL expression's are known to the catalog check only)."""
        if self.aggregation == "template":
            return template_fields(self.template)
        if self.expression is not None:
            return []
        cols = [self.source]
        if self.order_column:
            cols.append(self.order_column)
        return cols


# What may not occur in an SQL expression outside its string literals and
# quoted names: anything that ends the expression or the statement around it.
_EXPRESSION_WORDS = re.compile(r"\b(select|table|values)\b", re.IGNORECASE)


def expression_problem(text: str) -> str | None:
    """Why `text` could reach outside the parentheses it is rendered in, or None.

    The expression is pasted into the generated functions (the one config
    value that is, by nature), so it must stay one expression: balanced
    parentheses, closed literals and quoted names, no statement separator,
    no comment, no `$` (dollar quotes delimit the function bodies), no
    backslash (whose meaning in literals depends on a server setting), no
    subquery (it aggregates the group's fact rows, nothing else). The server
    then parses it in place (catalog check) before anything is applied.
    """
    for ch in ("$", "\\", "\x00"):
        if ch in text:
            return f"{ch!r} is not allowed in an SQL expression"
    depth = 0
    i = 0
    outside: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            end = i + 1
            while True:
                end = text.find(ch, end)
                if end < 0:
                    return f"unterminated {'string literal' if ch == chr(39) else 'quoted name'}"
                if text[end + 1:end + 2] == ch:  # doubled quote: part of the text
                    end += 2
                    continue
                break
            outside.append(" ")
            i = end + 1
            continue
        if text.startswith("--", i) or text.startswith("/*", i) or text.startswith("*/", i):
            return "comments are not allowed in an SQL expression"
        if ch == ";":
            return "';' is not allowed in an SQL expression (it is one expression, not a statement)"
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return "unbalanced parentheses"
        outside.append(ch)
        i += 1
    if depth:
        return "unbalanced parentheses"
    if not "".join(outside).strip():
        return "empty"
    word = _EXPRESSION_WORDS.search("".join(outside))
    if word:
        return f"subqueries are not allowed ({word.group(1).upper()}): the expression aggregates the group's fact rows"
    return None


# The columns refdata keeps on every reference table (README, tracking columns).
TRACKING_COLUMNS = ("_source", "_needs_review", "_derived_from_domain", "_derived_at")


class ForeignKey(Model):
    name: str
    source_column: Identifier | list[Identifier]
    target_table: Identifier
    target_schema: Identifier = "public"
    target_key: Identifier | list[Identifier]
    depends_on: list[str] = []
    derive_columns: list[Identifier] = []
    backfill_columns: list[BackfillColumn] = []
    defaults: dict[Identifier, Scalar] = {}
    mode: Literal["insert_missing", "fill_null_only"] = "insert_missing"
    skip_blank_values: bool = True
    blank_values: list[str] | None = None
    priority: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _config_name(v)

    @model_validator(mode="after")
    def _check(self):
        if len(self.sources) != len(self.keys):
            raise ValueError(
                f"source_column has {len(self.sources)} column(s) but target_key has {len(self.keys)}"
            )
        if not self.sources:
            raise ValueError("source_column is empty")
        for m in self.backfill_columns:
            if m.target in self.keys and not self._restates_key(m):
                raise ValueError(f"column {m.target!r} is the target key; it is always set from source_column")
        targets: dict[str, str] = {}
        for m in self.mappings():
            if m.target in targets:
                raise ValueError(f"column {m.target!r} is mapped twice")
            targets[m.target] = m.target
        for col in self.defaults:
            if col in self.keys:
                raise ValueError(f"defaults: column {col!r} is the target key; it is always set from source_column")
        # refdata sets its tracking columns itself: set here as well, the derive's
        # INSERT named them twice and every writer's insert failed
        own = [m.target for m in self.mappings() if m.target in TRACKING_COLUMNS]
        if own:
            raise ValueError(f"column {own[0]!r} is refdata's own tracking column; the config cannot set it")
        own = [col for col in self.defaults if col in TRACKING_COLUMNS]
        if own:
            raise ValueError(f"defaults: column {own[0]!r} is refdata's own tracking column; the config cannot set it")
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        return _names(self.source_column)

    @property
    def keys(self) -> tuple[str, ...]:
        return _names(self.target_key)

    @property
    def markers(self) -> tuple[str, ...]:
        """Blank markers: the configured ones, or "(空白)" when none are configured."""
        return DEFAULT_BLANK_VALUES if self.blank_values is None else tuple(self.blank_values)

    def _restates_key(self, m: BackfillColumn) -> bool:
        """`{source: 计划代码, target: 年金计划号}` where those are the key's own columns."""
        return (m.aggregation == "first" and m.code is None and m.target in self.keys
                and m.source == self.sources[self.keys.index(m.target)])

    def mappings(self) -> list[BackfillColumn]:
        """Every non-key parent column this FK sets in the database (Python code left out)."""
        out = [
            BackfillColumn(source=c, target=c)
            for c in self.derive_columns
            if c not in self.sources and c not in self.keys
        ]
        out.extend(m for m in self.backfill_columns if m.code is None and not self._restates_key(m))
        return out

    def code_mappings(self) -> list[tuple[int, BackfillColumn]]:
        """(index in backfill_columns, mapping) of the optional Python-code mappings, which are left out."""
        return [(i, m) for i, m in enumerate(self.backfill_columns) if m.code is not None]


class Domain(Model):
    fact_table: Identifier | None = None
    fact_schema: Identifier = "public"
    trigger_mode: Literal["row", "statement"] = "row"
    defer_foreign_keys: bool = False
    verify: Literal["auto", "set-based", "per-row"] = "auto"
    foreign_keys: Annotated[list[ForeignKey], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self):
        seen: set[str] = set()
        for i, fk in enumerate(self.foreign_keys):
            if fk.name in seen:
                raise PlaceError(f"name {fk.name} is used twice in this domain", ("foreign_keys", i, "name"))
            seen.add(fk.name)
        targets: dict[tuple[str, str], ForeignKey] = {}
        for fk in self.foreign_keys:
            other = targets.setdefault((fk.target_schema, fk.target_table), fk)
            if other is not fk and "fill_null_only" in (fk.mode, other.mode):
                # Set-based, both would write the same new parent row in one statement.
                raise ValueError(
                    f"foreign key {fk.name}: mode fill_null_only cannot share target table "
                    f"{fk.target_schema}.{fk.target_table} with foreign key {other.name}"
                )
        for i, fk in enumerate(self.foreign_keys):
            for j, dep in enumerate(fk.depends_on):
                at = ("foreign_keys", i, "depends_on", j)
                if dep not in seen:
                    hint = difflib.get_close_matches(dep, sorted(seen - {fk.name}), n=1, cutoff=0.5)
                    maybe = f" (did you mean {hint[0]}?)" if hint else ""
                    raise PlaceError(f"depends_on names unknown foreign key {dep!r}{maybe}", at)
                if dep == fk.name:
                    raise PlaceError("depends_on names the foreign key itself", at)
        return self

    def fact_table_for(self, domain: str) -> str:
        # The proposal's example names no fact table; the domain name is the
        # natural default (and the catalog check says so when it is missing).
        return self.fact_table or domain


# -- observability and review (top-level `observability:` section) ------------


class Thresholds(Model):
    """Alert limits per reference table; `refdata check` reports each breach."""

    auto_derived_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    pending_review: Annotated[int, Field(ge=0)] | None = None


DEFAULT_THRESHOLDS = Thresholds(auto_derived_ratio=0.10, pending_review=100)


class TableSettings(Model):
    promote_on_insert: bool = True
    thresholds: Thresholds = Thresholds()


class Observability(Model):
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    # apply creates a btree index on each FK's fact columns when none leads
    # with them: fk_coverage and pending_review look keys up through it.
    index_fact_keys: bool = True
    # NOLOGIN role apply creates: runs the review functions, reads the views
    reviewer_role: Identifier = "refdata_reviewer"
    tables: dict[str, TableSettings] = {}  # "schema.table" -> settings

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: dict) -> dict:
        for name in v:
            if "." not in name:
                raise ValueError(f"table {name!r}: name it as schema.table")
        return v

    def table(self, schema: str, table: str) -> TableSettings:
        return self.tables.get(f"{schema}.{table}", TableSettings())

    def thresholds_for(self, schema: str, table: str) -> Thresholds:
        """The table's own limits, each falling back to the section's (then the defaults)."""
        own = self.table(schema, table).thresholds
        base = self.thresholds
        return Thresholds(
            auto_derived_ratio=own.auto_derived_ratio if own.auto_derived_ratio is not None
            else base.auto_derived_ratio if base.auto_derived_ratio is not None
            else DEFAULT_THRESHOLDS.auto_derived_ratio,
            pending_review=own.pending_review if own.pending_review is not None
            else base.pending_review if base.pending_review is not None
            else DEFAULT_THRESHOLDS.pending_review,
        )


class Origin(dict):
    """Per domain, the Documents its settings and its FK rules were read
    from. Where a config was read from is no part of what it says: two
    configs read from different files compare equal when they say the same."""

    def __eq__(self, other) -> bool:
        return isinstance(other, Origin)


class Config(Model):
    domains: dict[str, Domain]
    observability: Observability = Observability()
    # Lines for the user about what the files say but refdata leaves out (set by the loader).
    _warnings: list[str] = PrivateAttr(default_factory=list)
    # domain: (the file of its settings, the file of its FK rules), as read (set by the loader)
    _origin: "Origin" = PrivateAttr(default_factory=lambda: Origin())

    def where(self, domain: str, *loc) -> str | None:
        """file:line of a domain's field (`loc` below the domain: "foreign_keys",
        0, "defaults", ...) in the file it was read from; None for a config
        not read from files."""
        docs = self._origin.get(domain)
        if not docs:
            return None
        return docs[1 if loc[:1] == ("foreign_keys",) else 0].line(["domains", domain, *loc])

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, v: dict) -> dict:
        for name in v:
            if not CONFIG_NAME.fullmatch(name):
                raise ValueError(f"domain {name!r} is not a valid name (letters, digits, underscore)")
            # A domain's objects are refdata_stage."D" and refdata."D__..."(); reference
            # sync's are refdata_stage."sync__T", refdata."sync_T"() and the foreign
            # tables of its servers, refdata_stage."refdata__..." : one name, two objects.
            if name.startswith(RESERVED_DOMAIN_PREFIXES):
                raise ValueError(f"domain {name!r} starts with {name[:name.index('_') + 1]}, which names reference "
                                 "sync's own objects in schemas refdata and refdata_stage; choose another name")
        if not v:
            raise ValueError("no domains defined")
        return v

    @model_validator(mode="after")
    def _one_key_per_table(self):
        """Foreign keys into one reference table, in any domain, target it by
        one key: its promotion on insert and its audit log are rendered once
        per table with one key, so a row derived by another key would be
        promoted (its key changed) or refused as a duplicate by the wrong one."""
        first: dict[tuple[str, str], tuple[str, ForeignKey]] = {}
        for name, domain in self.domains.items():
            for i, fk in enumerate(domain.foreign_keys):
                table = (fk.target_schema, fk.target_table)
                other, ofk = first.setdefault(table, (name, fk))
                if set(fk.keys) != set(ofk.keys):
                    keys = ", ".join(f'"{k}"' for k in fk.keys)
                    theirs = ", ".join(f'"{k}"' for k in ofk.keys)
                    raise PlaceError(
                        f"target_key ({keys}) of {qualified(*table)} is not the key domain {other}, foreign key "
                        f"{ofk.name} targets ({theirs}); promotion on insert and the audit log know a table by "
                        "one key: target it by the same key", ("domains", name, "foreign_keys", i, "target_key"))
        return self

    @model_validator(mode="after")
    def _observed_tables(self):
        targets = {f"{fk.target_schema}.{fk.target_table}" for d in self.domains.values() for fk in d.foreign_keys}
        for name in self.observability.tables:
            if name not in targets:
                raise ValueError(f"observability: table {name!r} is not the target of any foreign key")
        return self


# --------------------------------------------------------------------------
# loading


def resolve_config_path(cli_value: str | None) -> Path:
    """--config > $REFDATA_CONFIG > config/data_sources.yml (cwd, else the project's)."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("REFDATA_CONFIG")
    if env:
        return Path(env)
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return PROJECT_ROOT / DEFAULT_CONFIG


@dataclass
class Document:
    """One YAML file as read: data, the node tree (for line numbers), its name."""

    source: str
    data: dict
    node: yaml.Node | None

    def line(self, loc: list) -> str:
        line = _line_of(self.node, loc)
        return f"{self.source}:{line}" if line else self.source


def config_files(path: Path) -> tuple[Path | None, Path | None]:
    """(data sources file, foreign keys file) for the file --config names.

    A file named foreign_keys.yml takes data_sources.yml beside it (when there
    is one); any other file is the data sources file and takes
    foreign_keys.yml beside it (when there is one).
    """
    if path.name == FOREIGN_KEYS_FILE:
        sources = path.with_name(DATA_SOURCES_FILE)
        return (sources if sources.exists() else None), path
    fks = path.with_name(FOREIGN_KEYS_FILE)
    return path, (fks if fks.exists() else None)


def load_config(path: Path) -> Config:
    """The config --config names, with the other file of the layout beside it."""
    sources, fks = config_files(path)
    documents = [_read(p) for p in (sources, fks) if p is not None]
    if path.name == FOREIGN_KEYS_FILE:
        return build_config(documents[0] if sources else None, documents[-1])
    return build_config(documents[0], documents[1] if fks else None)


def _read(path: Path) -> Document:
    return parse_document(read_utf8(path, str(path), "config"), str(path))


# Python's csv module refuses fields over 131,072 characters by default;
# PostgreSQL takes fields up to 1 GB, and so does every CSV file refdata
# reads (loads, review import, config files a sync reads).
csv.field_size_limit(1 << 30)


# What a value of a file users write (a review export, a file a sync reads)
# is refused for when it holds a NUL: PostgreSQL's text cannot.
NUL = "\x00"
NUL_HELD = "holds a NUL character, which PostgreSQL text cannot hold"


def read_utf8(path: Path, place: str, kind: str = "") -> str:
    """The text of a file users write (a config, a config file a sync reads):
    UTF-8, a BOM allowed. One line naming `place` when it is missing,
    unreadable or not UTF-8; one saved in a Chinese Windows encoding says
    which it reads as and how to convert it. `kind` names the file in those
    lines ("config": "config file not found", "config is not UTF-8")."""
    named = f"{kind} " if kind else ""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{place}: {named}file not found") from None
    except OSError as e:
        raise InputError(f"{place}: cannot read {named}file: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        legacy = chinese_encoding(raw)
        hint = (f"; it reads as {legacy.upper()}: convert it with iconv -f {legacy} -t utf-8"
                if legacy else "")
        raise InputError(f"{place}:{line}: {kind + ' is ' if kind else ''}not UTF-8 "
                         f"(byte 0x{raw[e.start]:02x}){hint}") from None


def unclosed_quote(lines: list[str], start: int) -> str:
    """What is wrong with a CSV record whose quote is never closed, naming
    the line where that quote opens, in the record of `lines` starting at
    line `start` (doubled quotes inside a quoted field close and open it
    again on the same line): the words of every CSV reader refdata has."""
    opened, in_quotes = start, False
    for number, text in enumerate(lines, start=start):
        for ch in text:
            if ch == '"':
                in_quotes = not in_quotes
                if in_quotes:
                    opened = number
    return f"a quoted field is never closed (its quote opens on line {opened})"


def chinese_encoding(raw: bytes) -> str | None:
    """gbk or gb18030 when bytes that are not UTF-8 decode as that (Excel and
    Notepad on Chinese Windows write these), else None."""
    for encoding in ("gbk", "gb18030"):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


def parse_document(text: str, source: str) -> Document:
    node, data = _yaml(text, source)
    duplicate = _duplicate_key(node)
    if duplicate:
        raise InputError(f"{source}:{duplicate}")
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping with a 'domains' key")
    return Document(source, data, node)


def parse_config(text: str, source: str = "<config>") -> Config:
    """A single-file config (data sources with their foreign keys) from text."""
    return build_config(parse_document(text, source), None)


def build_config(sources: Document | None, fks: Document | None) -> Config:
    """One Config from the data sources file and/or the foreign keys file.

    FK rules come from `fks` when given, else from the domains of `sources`.
    A domain's fact table: fact_table/fact_schema where given, else the data
    sources' output.table/output.schema_name (after `defaults`), else the
    domain name in public.
    """
    for doc, known in ((sources, ("1.0", "1.1")), (fks, ("1.0", "1.1", "1.2"))):
        if doc is not None:
            _check_version(doc, known)
    base = sources.data if sources else {}
    defaults = base.get("defaults") if isinstance(base.get("defaults"), dict) else {}
    source_domains = _domains(sources)
    rule_domains = _domains(fks) if fks else None
    domains: dict = {}
    origin: dict[str, tuple[Document, Document]] = {}  # domain: (its settings, its FK rules)
    warnings: list[str] = []
    names = list(source_domains) + [n for n in (rule_domains or {}) if n not in source_domains]
    for name in names:
        own = source_domains.get(name)
        rules = (rule_domains or {}).get(name)
        if rule_domains is None:
            if not isinstance(own, dict) or not _is_refdata_domain(own):
                continue  # a domain of the pipeline only
        elif rules is None:
            if isinstance(own, dict) and "foreign_keys" in own:
                warnings.append(f"{sources.line(['domains', name, 'foreign_keys'])}: domain {name}: foreign_keys "
                                f"ignored: the rules come from {fks.source}")
            continue
        merged = _deep_merge(defaults, own) if isinstance(own, dict) else (own if own is not None else dict(defaults))
        domain = _refdata_keys(merged)
        if isinstance(merged, dict) and isinstance(merged.get("output"), dict):
            output = merged["output"]
            if "table" in output:
                domain.setdefault("fact_table", output["table"])
            if "schema_name" in output:
                domain.setdefault("fact_schema", output["schema_name"])
        if rule_domains is not None:
            domain.pop("foreign_keys", None)
            if isinstance(rules, dict):
                domain.update(_refdata_keys(rules))
            else:
                domain = rules  # not a mapping: let validation say so
        domains[name] = domain
        rule_doc = fks if rule_domains is not None else sources
        origin[name] = (sources if sources and name in source_domains else rule_doc, rule_doc)
    # Settings of the whole config (observability, ...): from either file, the rules' file last.
    settings = {k: v for doc in (sources, fks) if doc for k, v in doc.data.items()
                if k != "domains" and (k in Config.model_fields or _typo(k, Config.model_fields))}
    try:
        config = Config.model_validate({**settings, "domains": domains})
    except ValidationError as e:
        first = _first(e.errors())
        loc = _placed(first, first["loc"])[0]
        doc = fks if fks and loc[:1] and loc[0] in fks.data else sources or fks
        if loc[:1] == ["domains"] and len(loc) > 1 and loc[1] in origin:
            settings, rules = origin[loc[1]]
            doc = rules if loc[2:3] == ["foreign_keys"] else settings
        raise InputError(_describe(first, doc.data, doc.node, doc.source)) from None
    for name, domain in config.domains.items():
        rules = origin[name][1]
        for fk_index, fk in enumerate(domain.foreign_keys):
            for i, m in fk.code_mappings():
                where = rules.line(["domains", name, "foreign_keys", fk_index, "backfill_columns", i])
                warnings.append(f"{where}: domain {name}, foreign key {fk.name}: optional column "
                                f"\"{m.target}\" left out: {m.python_code_problem()}")
    config._warnings = warnings
    config._origin = Origin(origin)
    return config


def _check_version(doc: Document, known: tuple[str, ...]) -> None:
    version = doc.data.get("schema_version")
    if version is None:
        return
    text = str(version)
    if text.split(".")[0] != KNOWN_MAJOR_VERSION:
        raise InputError(f"{doc.line(['schema_version'])}: schema_version {text!r} is not supported: "
                         f"refdata reads {', '.join(known)} (major version {KNOWN_MAJOR_VERSION})")


def _domains(doc: Document | None) -> dict:
    if doc is None:
        return {}
    domains = doc.data.get("domains")
    if domains is None:
        raise InputError(f"{doc.source}: expected a mapping with a 'domains' key")
    if not isinstance(domains, dict):
        raise InputError(f"{doc.line(['domains'])}: field domains: must be a mapping (field: value), not {_kind(domains)}")
    return domains


def _is_refdata_domain(domain: dict) -> bool:
    """A domain refdata manages names foreign keys or a refdata setting (else it is the pipeline's)."""
    return any(k in Domain.model_fields for k in domain) or bool(_typos(domain))


def _typo(key, known) -> bool:
    """Whether a key refdata does not know looks like a misspelling of one it does."""
    return isinstance(key, str) and key not in known and bool(difflib.get_close_matches(key, list(known), n=1, cutoff=0.8))


def _typos(domain: dict) -> list[str]:
    """Keys that look like a misspelt refdata setting (kept, so validation names them)."""
    return [k for k in domain if _typo(k, Domain.model_fields)]


def _refdata_keys(domain) -> dict:
    """The keys of a domain refdata reads (and near-misses of them); the pipeline's are dropped."""
    if not isinstance(domain, dict):
        return {}
    typos = _typos(domain)
    return {k: v for k, v in domain.items() if k in Domain.model_fields or k in typos}


def _deep_merge(base, over):
    """`over` on top of `base`: mappings merge key by key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(base[k], v) if k in base else v
    return out


def _first(errors: list[dict]) -> dict:
    """The error that says what is wrong: a misspelt field (it also makes the
    real one "missing"), a check's own message, else of a union's failed
    branches the one that got deepest into the value."""
    first = next((err for err in errors if err["type"] == "extra_forbidden"), None) or next(
        (err for err in errors if err["type"] == "value_error"), None)
    if first:
        return first
    first = errors[0]
    base = [p for p in first["loc"] if not _is_tag(p)]
    same = [e for e in errors if [p for p in e["loc"] if not _is_tag(p)][:len(base)] == base]
    return max(same, key=lambda e: len(e["loc"]))


def _is_tag(p) -> bool:
    # pydantic adds union member tags (e.g. 'str', 'list[str]') to the path
    return isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool"))


def _kind(value) -> str:
    """What a YAML value is, in the user's words."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _field_names() -> list[str]:
    return sorted({f for m in (Config, Domain, ForeignKey, BackfillColumn) for f in m.model_fields})


# Where each field of the config belongs: a real field in another entry than its own is said as such.
_FIELD_OWNERS = ((BackfillColumn, "a backfill_columns item"), (ForeignKey, "a foreign key"), (Domain, "a domain"),
                 (Config, "the top level"))


def _entry_of(loc) -> str:
    """What kind of entry of the config an error path ends in (its last step the field)."""
    names = [p for p in loc[:-1] if isinstance(p, str) and not _is_tag(p)]
    if names[-1:] in (["backfill_columns"], ["derive_columns"]):
        return f"a {names[-1]} item"
    if names[-1:] == ["foreign_keys"]:
        return "a foreign key"
    if names[-1:] == ["domains"] or len(names) > 1 and names[-2] == "domains":
        return "a domain"
    return names[-1] if names else "the top level"


def _plain(err: dict) -> str:
    """pydantic's error as a plain message: no pydantic wording reaches users."""
    kind, loc, value = err["type"], err["loc"], err.get("input")
    tagged = any(_is_tag(p) for p in loc)
    name = next((p for p in reversed(loc) if isinstance(p, str) and not _is_tag(p)), "")
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        owner = next((what for model, what in _FIELD_OWNERS if loc[-1] in model.model_fields), None)
        if owner:  # a real field, in the wrong entry
            return f"unknown field {loc[-1]!r} (a field of {owner}, not of {_entry_of(loc)})"
        hint = difflib.get_close_matches(str(loc[-1]), _field_names(), n=1, cutoff=0.6)
        return f"unknown field {loc[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind == "missing":
        return f"missing required field {loc[-1]!r}"
    if kind == "too_short":
        return f"{name} is empty; list at least one" if name else "is empty; list at least one"
    if kind == "literal_error":
        return f"must be {err.get('ctx', {}).get('expected', 'one of the documented values')}, not {_kind(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, not {_kind(value)}"
    if kind in ("int_type", "int_parsing", "float_type", "float_parsing"):
        return f"must be a number, not {_kind(value)}"
    quote = " (quote it to make it text)" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    if kind == "string_type" and loc[-1:] == ("[key]",):  # a mapping's key: a name refdata reads as text
        if isinstance(value, bool):
            return (f"the name {str(value).lower()} must be text "
                    "(YAML reads yes, no, on and off unquoted as true/false: quote it)")
        return f"the name {value} must be text{quote}" if quote else f"the name must be text, not {_kind(value)}"
    if kind == "invalid_key":
        return f"unknown field {loc[-1]}"
    if kind == "string_type" and tagged and name in ("source_column", "target_key"):
        return f"must be a column name or a list of column names, not {_kind(value)}{quote}"
    if kind == "string_type" and tagged:
        return f"must be one value (text, a number, true/false or null), not {_kind(value)}"
    if kind == "string_type":
        return f"must be text, not {_kind(value)}{quote}"
    if kind == "list_type":
        return f"must be a list ([a, b]), not {_kind(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (field: value), not {_kind(value)}"
    return f"is not valid here: {_kind(value)}"


def _duplicate_key(node) -> str | None:
    """'line: duplicate key ...' for the first key a YAML mapping repeats (YAML
    would keep the last one silently), else None."""
    seen_nodes: set[int] = set()
    stack = [node] if node is not None else []
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:  # an alias: already walked
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            keys: dict = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in keys:
                        return (f"{k.start_mark.line + 1}: duplicate key {k.value!r} "
                                f"(also on line {keys[k.value]}; YAML would keep only the last)")
                    keys[k.value] = k.start_mark.line + 1
                stack += [k, v]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value
    return None


def _placed(err: dict, loc) -> tuple[list, PlaceError | None]:
    """An error's path, continued by the field a model check named
    (PlaceError.loc), and that check's error (None for pydantic's own)."""
    placed = (err.get("ctx") or {}).get("error")
    if isinstance(placed, PlaceError):
        return [*loc, *placed.loc], placed
    return list(loc), None


def _describe(err: dict, data, node, source: str) -> str:
    """One line: file:line: domain D, foreign key F: field: message."""
    msg = _plain(err)
    loc = [p for p in _placed(err, err["loc"])[0] if not _is_tag(p)]
    line = _line_of(node, loc)
    if err["loc"][-1:] == ("[key]",):
        loc = loc[:-1]  # the mapping the key is in is the field
    place: list[str] = []
    field: list[str] = []
    cursor = data
    i = 0
    if loc[:1] == ["domains"] and len(loc) > 1:
        domain = loc[1]
        place.append(f"domain {domain}")
        cursor = data.get("domains", {}).get(domain, {}) if isinstance(data.get("domains"), dict) else {}
        i = 2
        if loc[2:3] == ["foreign_keys"] and len(loc) > 3 and isinstance(loc[3], int):
            fks = cursor.get("foreign_keys") if isinstance(cursor, dict) else None
            fk = fks[loc[3]] if isinstance(fks, list) and loc[3] < len(fks) else None
            name = fk.get("name") if isinstance(fk, dict) else None
            place.append(f"foreign key {name}" if name else f"foreign key #{loc[3] + 1}")
            i = 4
    for p in loc[i:]:
        field.append(f"[{p}]" if isinstance(p, int) else ("." if field else "") + str(p))
    where = f"{source}:{line}" if line else source
    parts = [where] + ([", ".join(place)] if place else [])
    fieldtext = "".join(field)
    if fieldtext and err["type"] not in ("extra_forbidden", "missing") and not msg.startswith(re.split(r"[.\[]", fieldtext)[0]):
        parts.append(f"field {fieldtext}")
    return printable(": ".join(parts + [msg]))


def _scalar(node) -> object:
    """A key node as YAML reads it (2024, true): what the data's key is."""
    try:
        return yaml.safe_load(node.value) if isinstance(node, yaml.ScalarNode) and not node.style else node.value
    except yaml.YAMLError:
        return node.value


def _line_of(node, loc: list) -> int | None:
    """Line (1-based) of the deepest YAML node the error path reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for p in loc:
        if getattr(node, "alias", False):
            return line  # deeper lines are the anchor's, shared by every use of it
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == p or (not isinstance(p, str) and _scalar(k) == p):
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and p < len(node.value):
            node = node.value[p]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# --------------------------------------------------------------------------
# reference_sync.yml: authoritative sources synced into reference tables

SYNC_CONFIG = "reference_sync.yml"
# The one incremental filter a source can take: rows changed since the watermark.
INCREMENTAL_WHERE = re.compile(r"^\s*\"?(?P<column>[^\W\d]\w*)\"?\s*(?P<op>>=|>)\s*:last_synced_at\s*$")


# pg_cron's fields: minute, hour, day of month, month, day of week; each a
# comma list of *, a number or a range (months and days also by name), with
# an optional /step (what Debian's postgresql-15-cron takes).
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
CRON_NAMES = {
    "month": {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"), start=1)},
    "day of week": {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}
CRON_PART = re.compile(r"(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\d+))?")


def cron_problem(expression: str) -> str | None:
    """What pg_cron would refuse in the expression, as words that follow it
    (None: it takes it), so a bad schedule is refused where it is written,
    not the first time `refdata schedule` runs."""
    fields = expression.split()
    if len(fields) != 5:
        return "is not a cron expression of five fields"
    for value, (what, low, high) in zip(fields, CRON_FIELDS):
        for part in value.split(","):
            m = CRON_PART.fullmatch(part)
            if not m:
                return f"has {'an' if what == 'hour' else 'a'} {what} field {value!r} that is not *, a number, a range or a list of them"
            if m[4] is not None and int(m[4]) == 0:
                return f"has a step of 0 in its {what} field {value!r}"
            for bound in (m[2], m[3]):
                if bound is None:
                    continue
                number = int(bound) if bound.isdigit() else CRON_NAMES.get(what, {}).get(bound.lower())
                if number is None or not low <= number <= high:
                    return f"has {'an' if what == 'hour' else 'a'} {what} field {value!r}: {bound!r} is not from {low} to {high}"
    return None


class SyncColumn(Model):
    source: Identifier
    target: Identifier


class Incremental(Model):
    where: str | None = None
    updated_at_column: Identifier | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.where is not None:
            m = INCREMENTAL_WHERE.match(self.where)
            if not m:
                # Arbitrary SQL text from a config file never reaches the database.
                raise PlaceError(
                    f"where {self.where!r} is not of the form '<column> >= :last_synced_at'; "
                    "write that form, or give updated_at_column alone", ("where",)
                )
            if self.updated_at_column and self.updated_at_column != m["column"]:
                raise PlaceError(
                    f"where names column {m['column']!r} but updated_at_column is {self.updated_at_column!r}",
                    ("updated_at_column",)
                )
        elif not self.updated_at_column:
            raise ValueError("incremental needs updated_at_column (or where: '<column> >= :last_synced_at')")
        return self

    @property
    def column(self) -> str:
        return self.updated_at_column or INCREMENTAL_WHERE.match(self.where)["column"]

    @property
    def operator(self) -> str:
        return INCREMENTAL_WHERE.match(self.where)["op"] if self.where else ">="


class DatabaseSource(Model):
    connection_env_prefix: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    schema_: Identifier = Field("public", alias="schema")
    table: Identifier
    # None: every column of the source whose name the target has
    columns: Annotated[list[SyncColumn], Field(min_length=1)] | None = None
    incremental: Incremental | None = None


class FileSource(Model):
    file_path: str
    schema_version: str | None = None  # when given, the data file's must be the same
    description: str | None = None


class SyncTable(Model):
    name: str
    target_table: Identifier
    target_schema: Identifier = "public"
    source_type: Literal["postgres", "legacy_mysql", "config_file"]
    source_config: dict
    sync_mode: Literal["upsert", "delete_insert"] = "upsert"
    primary_key: Identifier | list[Identifier]
    via: Literal["fdw", "client"] = "fdw"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _config_name(v)

    @model_validator(mode="after")
    def _check(self):
        try:
            source = self.source
        except ValidationError as e:
            # source_config has a model of its own: its error names its own key's line, the
            # first in the file's order (pydantic lists a nested model's errors first)
            keys = list(self.source_config)
            err = min(e.errors(), key=lambda r: keys.index(r["loc"][0]) if r["loc"] and r["loc"][0] in keys
                      else len(keys))
            loc, _ = _placed(err, ("source_config", *(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))))
            msg = _sync_message(err, loc)
            if err["type"] not in ("extra_forbidden", "missing"):
                field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
                msg = msg if msg.startswith(field) else f"field {field}: {msg}"
            raise PlaceError(msg, loc) from None
        if not self.keys:
            raise PlaceError("primary_key is empty", ("primary_key",))
        if isinstance(source, DatabaseSource) and source.columns:
            targets = [c.target for c in source.columns]
            for j, t in enumerate(targets):
                if t in targets[:j]:
                    raise PlaceError(f"source_config.columns: target column {t!r} is mapped twice",
                                     ("source_config", "columns", j))
            for k in self.keys:
                if k not in targets:
                    raise PlaceError(f"primary_key column {k!r} is not a target of source_config.columns",
                                     ("primary_key",))
        if isinstance(source, DatabaseSource):
            if source.incremental and self.sync_mode == "delete_insert":
                raise PlaceError(
                    "sync_mode delete_insert cannot be incremental (a partial read cannot tell which rows are gone); "
                    "use sync_mode: upsert, or drop incremental", ("sync_mode",)
                )
        return self

    @property
    def source(self) -> DatabaseSource | FileSource:
        model = FileSource if self.source_type == "config_file" else DatabaseSource
        return model.model_validate(self.source_config)

    @property
    def keys(self) -> tuple[str, ...]:
        return _names(self.primary_key)

    @property
    def effective_via(self) -> str:
        """Files are always read by refdata itself."""
        return "client" if self.source_type == "config_file" else self.via


class SyncConfig(Model):
    schema_version: str = "1.0"
    enabled: bool = True
    schedule: str = "0 1 * * *"
    concurrency: Annotated[int, Field(ge=1)] = 1
    batch_size: Annotated[int, Field(ge=1)] = 5000
    tables: list[SyncTable] = []
    # "file": the Document it was read from, for line numbers (set by parse_sync_config)
    _origin: "Origin" = PrivateAttr(default_factory=lambda: Origin())

    def where(self, *loc) -> str | None:
        """file:line of a field (`loc`: "tables", 0, "primary_key", ...); None
        for a sync config not read from a file."""
        document = self._origin.get("file")
        return document.line(list(loc)) if document else None

    @field_validator("schema_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v.split(".")[0] != KNOWN_MAJOR_VERSION:
            raise ValueError(f"schema_version {v!r} is not supported: refdata reads 1.x "
                             f"(major version {KNOWN_MAJOR_VERSION})")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        problem = cron_problem(v)
        if problem:
            raise ValueError(f"schedule {v!r} {problem}")
        return v

    @model_validator(mode="after")
    def _check(self):
        seen: set[str] = set()
        targets: dict[tuple[str, str], str] = {}
        prefixes: dict[tuple[str, str], tuple[str, str]] = {}
        for i, t in enumerate(self.tables):
            if t.name in seen:
                raise PlaceError("duplicate name", ("tables", i, "name"))
            seen.add(t.name)
            other = targets.setdefault((t.target_schema, t.target_table), t.name)
            if other != t.name:
                raise PlaceError(f"target {t.target_schema}.{t.target_table} is already synced by {other}",
                                 ("tables", i, "target_table"))
            # One foreign server per prefix and source type, named in lower
            # case; the environment's names are not: LEG and leg would share
            # a server, and one table would read through the other's settings.
            if isinstance(t.source, DatabaseSource):
                prefix = t.source.connection_env_prefix
                spelled = prefixes.setdefault((t.source_type, prefix.lower()), (prefix, t.name))
                if spelled[0] != prefix:
                    raise PlaceError(f"connection_env_prefix {prefix} differs from {spelled[0]} "
                                     f"(table {spelled[1]}) only in case; spell it one way",
                                     ("tables", i, "source_config", "connection_env_prefix"))
        return self

    def table(self, name: str) -> SyncTable:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)


def sync_config_path(config_path: Path, cli_value: str | None = None) -> Path:
    """--sync-config > $REFDATA_SYNC_CONFIG > reference_sync.yml beside the main config."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("REFDATA_SYNC_CONFIG")
    if env:
        return Path(env)
    return config_path.parent / SYNC_CONFIG


def load_sync_config(path: Path) -> SyncConfig:
    return parse_sync_config(read_utf8(path, str(path), "sync config"), str(path))


def parse_sync_config(text: str, source: str = "<sync config>") -> SyncConfig:
    node, data = _yaml(text, source)
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping with a 'tables' key")
    try:
        config = SyncConfig.model_validate(data)
    except ValidationError as e:
        raise InputError(_describe_sync(e.errors()[0], data, node, source)) from None
    config._origin["file"] = Document(source, data, node)
    return config


def _sync_message(err: dict, loc) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown field {loc[-1]!r}"
    if err["type"] == "missing":
        return f"missing required field {loc[-1]!r}"
    return err["msg"].removeprefix("Value error, ")


def _describe_sync(err: dict, data, node, source: str) -> str:
    """One line: file:line: table T: field: message."""
    loc, placed = _placed(err, [p for p in err["loc"] if not _is_tag(p)])
    msg = str(placed) if placed else _sync_message(err, loc)
    place = []
    rest = loc
    if loc[:1] == ["tables"] and len(loc) > 1 and isinstance(loc[1], int):
        tables = data.get("tables") or []
        entry = tables[loc[1]] if loc[1] < len(tables) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        place.append(f"table {name}" if name else f"table #{loc[1] + 1}")
        rest = loc[2:]
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in rest).replace(".[", "[")
    line = _line_of(node, loc)
    parts = [f"{source}:{line}" if line else source] + place
    if field and err["type"] != "extra_forbidden" and not placed and not msg.startswith(field):
        parts.append(f"field {field}")
    return printable(": ".join(parts + [msg]))


class _Composer(yaml.SafeLoader):
    """Composes an alias as a copy of its anchor's node that starts at the
    alias (`alias` set): an error in what an alias brings in names the line
    of the alias, where that use of it is, not the anchor's."""

    def compose_node(self, parent, index):
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        node = copy.copy(super().compose_node(parent, index))
        node.start_mark, node.alias = mark, True
        return node


def _nul_line(root) -> int | None:
    """The line of the first scalar holding a NUL character (YAML's "\\0").
    Each node once: aliases share nodes, and may refer to their own anchor."""
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if "\x00" in node.value:
                return node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            todo += reversed(node.value)
        else:
            todo += reversed([n for pair in node.value for n in pair])
    return None


def _yaml(text: str, source: str):
    """(node tree, data) of a YAML text; one line naming the place when it is not YAML."""
    try:
        composer = _Composer(text)
        try:
            node = composer.get_single_node()
        finally:
            composer.dispose()
        if node is not None and (line := _nul_line(node)):
            raise InputError(f"{source}:{line}: a NUL character (\\0), which PostgreSQL text cannot hold")
        return node, yaml.safe_load(text)
    except RecursionError:
        raise InputError(f"{source}: invalid YAML: nested deeper than a config can be") from None
    except yaml.reader.ReaderError as e:
        # a character YAML allows nowhere (NUL, a raw control character): PyYAML
        # says where only as a position, on a line of its own
        line = text.count("\n", 0, e.position) + 1
        raise InputError(f"{source}:{line}: invalid YAML: the character U+{e.character:04X} is not allowed "
                         "in YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"{where}: invalid YAML: {problem}") from None
