"""The YAML config: pydantic models, loading, and errors that name the place.

Two spellings of a foreign key are accepted. The short one of the original
proposal (`derive_columns`: fact columns copied into parent columns of the same
name) and the richer one (`backfill_columns`: source -> target with an
aggregation). Both normalise to `ForeignKey.mappings()`.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .names import CONFIG_NAME, MAX_IDENTIFIER_BYTES, control_character, printable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("config/data_sources.yml")

Aggregation = Literal["first", "max_by", "min_by", "concat_distinct", "count_distinct", "template"]
Scalar = Union[str, int, float, bool, None]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @model_validator(mode="after")
    def _check(self):
        if self.aggregation in ("max_by", "min_by") and not self.order_column:
            raise ValueError(f"aggregation {self.aggregation} needs order_column")
        if self.aggregation == "template":
            if not self.template:
                raise ValueError("aggregation template needs template")
            template_fields(self.template)
        elif self.source is None:
            raise ValueError(f"aggregation {self.aggregation} needs source")
        if self.template is not None and self.aggregation != "template":
            raise ValueError("template is only used with aggregation: template")
        return self

    def sources(self) -> list[str]:
        """Fact columns this mapping reads."""
        if self.aggregation == "template":
            return template_fields(self.template)
        cols = [self.source]
        if self.order_column:
            cols.append(self.order_column)
        return cols


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
    blank_values: list[str] = []

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not CONFIG_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid name (letters, digits, underscore; not starting with a digit)")
        return v

    @model_validator(mode="after")
    def _check(self):
        if len(self.sources) != len(self.keys):
            raise ValueError(
                f"source_column has {len(self.sources)} column(s) but target_key has {len(self.keys)}"
            )
        if not self.sources:
            raise ValueError("source_column is empty")
        targets: dict[str, str] = {}
        for m in self.mappings():
            if m.target in self.keys:
                raise ValueError(f"column {m.target!r} is the target key; it is always set from source_column")
            if m.target in targets:
                raise ValueError(f"column {m.target!r} is mapped twice")
            targets[m.target] = m.target
        for col in self.defaults:
            if col in self.keys:
                raise ValueError(f"defaults: column {col!r} is the target key; it is always set from source_column")
        return self

    @property
    def sources(self) -> tuple[str, ...]:
        return _names(self.source_column)

    @property
    def keys(self) -> tuple[str, ...]:
        return _names(self.target_key)

    def mappings(self) -> list[BackfillColumn]:
        """Every non-key parent column this FK sets from fact columns."""
        out = [
            BackfillColumn(source=c, target=c)
            for c in self.derive_columns
            if c not in self.sources and c not in self.keys
        ]
        out.extend(self.backfill_columns)
        return out


class Domain(Model):
    fact_table: Identifier | None = None
    fact_schema: Identifier = "public"
    trigger_mode: Literal["row", "statement"] = "row"
    defer_foreign_keys: bool = False
    foreign_keys: Annotated[list[ForeignKey], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self):
        seen: set[str] = set()
        for fk in self.foreign_keys:
            if fk.name in seen:
                raise ValueError(f"foreign key {fk.name}: duplicate name")
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
        for fk in self.foreign_keys:
            for dep in fk.depends_on:
                if dep not in seen:
                    raise ValueError(f"foreign key {fk.name}: depends_on names unknown foreign key {dep!r}")
                if dep == fk.name:
                    raise ValueError(f"foreign key {fk.name}: depends_on names itself")
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


class Config(Model):
    domains: dict[str, Domain]
    observability: Observability = Observability()

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, v: dict) -> dict:
        for name in v:
            if not CONFIG_NAME.fullmatch(name):
                raise ValueError(f"domain {name!r} is not a valid name (letters, digits, underscore)")
        if not v:
            raise ValueError("no domains defined")
        return v

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


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read config: {e}") from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"{where}: invalid YAML: {problem}") from None
    duplicate = _duplicate_key(node)
    if duplicate:
        raise InputError(f"{source}:{duplicate}")
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping with a 'domains' key")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        # A misspelt field also makes the real one "missing": name the misspelling.
        # Of a union's failed branches, the one that says what is wrong with the value.
        first = next((err for err in errors if err["type"] == "extra_forbidden"), None) or next(
            (err for err in errors if err["type"] == "value_error"), errors[0])
        raise InputError(_describe(first, data, node, source)) from None


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


def _describe(err: dict, data, node, source: str) -> str:
    """One line: file:line: domain D, foreign key F: field: message."""
    loc = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}"
    elif err["type"] == "missing":
        msg = f"missing required field {loc[-1]!r}"
    # pydantic adds union member tags (e.g. 'str', 'list[str]') to the path
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool")))]
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
    line = _line_of(node, loc)
    where = f"{source}:{line}" if line else source
    parts = [where] + ([", ".join(place)] if place else [])
    fieldtext = "".join(field)
    if fieldtext and err["type"] not in ("extra_forbidden",) and not msg.startswith(fieldtext):
        parts.append(f"field {fieldtext}")
    return printable(": ".join(parts + [msg]))


def _line_of(node, loc: list) -> int | None:
    """Line (1-based) of the deepest YAML node the error path reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for p in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == p:
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
