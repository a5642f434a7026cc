"""refdata init: a starting config written from the catalog.

Enters: a connection and a fact table as PostgreSQL writes its name
(`business."规模明细"`). Leaves: the text of a single-file config with one
foreign key per FOREIGN KEY the table declares (composite ones included); a
parent column that references another parent the fact table also references
mapped from the fact's column for that parent, with depends_on; and a
`defaults` entry, with a comment, for each NOT NULL parent column no fact
column of the same name can fill. The text validates and applies unchanged.
"""

from __future__ import annotations

import json
import re

import psycopg

from .catalog import TRACKING_TYPES, Catalog, Table
from .errors import InputError
from .names import CONFIG_NAME, printable, qualified

# A placeholder per type category that converts to the column's type;
# validate's own conversion check confirms it before it is written.
PLACEHOLDERS = {"N": 0, "B": False, "D": "1970-01-01", "S": "(待补充)"}


def fact_table(conn: psycopg.Connection, catalog: Catalog, name: str) -> Table:
    with conn.transaction(force_rollback=True):
        try:
            schema, table = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_catalog.pg_class AS c "
                "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = %s::regclass",
                [name]).fetchone()
        except psycopg.Error as e:
            raise InputError(f"--fact {name}: {(e.diag.message_primary or str(e)).strip()}") from None
    return catalog.table(schema, table)


def _yaml(value) -> str:
    """A YAML scalar: JSON's double-quoted strings are YAML too."""
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    """Catalog text for a YAML comment: a line break in a name (YAML ends a
    comment at CR, LF, NEL, U+2028 and U+2029) would make the rest of the
    name config, so control characters are shown escaped."""
    return printable(text)


def _fk_name(table: str, taken: set[str]) -> str:
    base = f"fk_{table}" if CONFIG_NAME.fullmatch(f"fk_{table}") else "fk"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def scaffold(conn: psycopg.Connection, fact_name: str, domain: str | None = None) -> str:
    catalog = Catalog(conn)
    fact = fact_table(conn, catalog, fact_name)
    if fact.kind not in ("r", "p"):
        raise InputError(f"--fact {fact_name}: {fact.label} is not a table")
    domain = domain or (fact.name if CONFIG_NAME.fullmatch(fact.name) else "facts")
    if not CONFIG_NAME.fullmatch(domain):
        raise InputError(f"--domain {domain!r}: letters, digits and underscore, not starting with a digit")
    declared = catalog.foreign_keys(fact)
    if not declared:
        raise InputError(f"--fact {fact_name}: {fact.label} declares no FOREIGN KEY; "
                         "write the config by hand (README, Config reference)")
    taken: set[str] = set()
    fks = []
    for d in declared:
        fks.append({"d": d, "name": _fk_name(d["referenced_table"], taken),
                    "parent": catalog.table(d["referenced_schema"], d["referenced_table"])})
    by_parent = {(f["d"]["referenced_schema"], f["d"]["referenced_table"]): f for f in fks}

    out = [f"# refdata config for {_comment(fact.label)}, written by refdata init from its FOREIGN KEYs.",
           "# Check it with: bin/refdata validate; apply it with: bin/refdata apply",
           "domains:", f"  {domain}:", f"    fact_schema: {_yaml(fact.schema)}",
           f"    fact_table: {_yaml(fact.name)}", "    foreign_keys:"]
    for f in fks:
        d, parent = f["d"], f["parent"]
        keys = list(d["referenced_columns"])
        mapped: dict[str, str] = {}  # parent column -> fact column
        depends: list[str] = []
        # A parent column referencing another parent of this fact table: fill it
        # from the fact's column for that parent, after that parent exists.
        for ref in catalog.foreign_keys(parent):
            other = by_parent.get((ref["referenced_schema"], ref["referenced_table"]))
            if other is None or other is f:
                continue
            pairs = dict(zip(other["d"]["referenced_columns"], other["d"]["columns"]))
            for col, refcol in zip(ref["columns"], ref["referenced_columns"]):
                if col not in keys and refcol in pairs:
                    mapped[col] = pairs[refcol]
            if other["name"] not in depends:
                depends.append(other["name"])
        defaults: list[tuple[str, object, str]] = []
        for col, info in parent.columns.items():
            if col in keys or col in mapped or col in TRACKING_TYPES or info["generated"]:
                continue
            if col in fact.columns and catalog.assignable(fact.columns[col], info):
                if info["not_null"] and not info["has_default"]:
                    mapped[col] = col
                continue
            if info["not_null"] and not info["has_default"]:
                defaults.append((col, _placeholder(catalog, parent, col, info), info["type"]))
        single = len(keys) == 1
        out += [f"      - name: {f['name']}  # {_comment(d['name'])}",
                f"        source_column: {_yaml(d['columns'][0]) if single else _yaml(list(d['columns']))}",
                f"        target_schema: {_yaml(d['referenced_schema'])}",
                f"        target_table: {_yaml(d['referenced_table'])}",
                f"        target_key: {_yaml(keys[0]) if single else _yaml(keys)}"]
        if depends:
            out.append(f"        depends_on: {_yaml(depends)}")
        if mapped:
            out.append("        backfill_columns:")
            out += [f"          - {{source: {_yaml(src)}, target: {_yaml(col)}}}" for col, src in mapped.items()]
        if defaults:
            out.append("        defaults:")
            for col, value, type_ in defaults:
                out.append(f"          {_yaml(col)}: {_yaml(value)}  # NOT NULL ({_comment(type_)}), no fact column "
                           "of this name: decide what an auto-derived row holds")
    return "\n".join(out) + "\n"


def _placeholder(catalog: Catalog, parent: Table, col: str, info: dict):
    candidates = [PLACEHOLDERS.get(info["category"], "(待补充)"), "?", "0"]
    m = re.search(r"\((\d+)\)", info["type"])
    if m and info["category"] == "S":
        candidates.insert(0, "(待补充)"[: int(m.group(1))])
    for value in candidates:
        if catalog.default_error(parent, {col: value}) is None:
            return value
    return None
