"""The client path's readers: rows of a sync source in bounded batches.

Enters: a SyncTable, its Connection (database sources) or file, the
watermark of an incremental table, batch_size. Leaves: the target columns
the rows fill, an iterator of row batches (tuples in that column order, the
source's change time last when incremental) and the COPY format the values
are ready for. Memory stays bounded by batch_size: MySQL through an
unbuffered cursor, PostgreSQL through a server-side cursor. Connection
failures raise SourceUnreachable (retried by the caller); a config file
whose schema_version differs raises InputError.

MySQL rows come as the server sends them, each value its text in UTF-8
bytes (a raw cursor): no conversion to Python objects and back, which is
most of what reading costs the driver, and each value reaches the merge as
the same text mysql_fdw hands the fdw path (a DECIMAL's digits, a DATETIME's
fraction, a TIME past 24 hours, a SET's list). Bytes go into the staging
table's text columns by binary COPY, which takes them as they are: no
escaping to get wrong.
"""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import yaml

from ..config import NUL, NUL_HELD, DatabaseSource, FileSource, SyncTable, read_utf8, unclosed_quote
from ..errors import InputError, RefdataError
from ..names import ident, mysql_ident
from .connection import Connection


class SourceUnreachable(RefdataError):
    """The source did not answer (worth another try)."""


@contextmanager
def database_rows(t: SyncTable, conn: Connection, schema: str, since: datetime | None, batch_size: int,
                  target_columns: list[str]):
    """(columns, batches, copy format) of a postgres or legacy_mysql source.
    Without source_config.columns: the source's columns the target has by name."""
    s: DatabaseSource = t.source
    if s.columns:
        names = [c.source for c in s.columns]
    else:
        names = [n for n in _source_columns(t, conn, schema) if n in target_columns]
    columns = [c.target for c in s.columns] if s.columns else list(names)
    if s.incremental:
        names.append(s.incremental.column)
    if t.source_type == "legacy_mysql":
        with _mysql(conn, schema) as cnx:
            query = (f"SELECT {', '.join(mysql_ident(n) for n in names)} "
                     f"FROM {mysql_ident(schema)}.{mysql_ident(s.table)}")
            args = ()
            if s.incremental and since is not None:
                query += f" WHERE {mysql_ident(s.incremental.column)} {s.incremental.operator} %s"
                args = (since,)
            cur = cnx.cursor(buffered=False, raw=True)
            try:
                cur.execute(query, args)
            except Exception as e:
                raise RefdataError(conn.scrub(f"{_first_line(e)}")) from None
            yield columns, _bits_as_numbers(cur, _batches(cur, batch_size, conn)), "binary"
            cur.close()
    else:
        import psycopg

        with _postgres(conn) as pg:
            query = (f"SELECT {', '.join(ident(n) for n in names)} FROM {ident(schema)}.{ident(s.table)}")
            args = None
            if s.incremental and since is not None:
                query += f" WHERE {ident(s.incremental.column)} {s.incremental.operator} %s"
                args = [since]
            with pg.transaction():
                cur = pg.cursor(name="refdata_sync")
                try:
                    cur.execute(query, args)
                except psycopg.Error as e:
                    raise RefdataError(conn.scrub(_first_line(e))) from None
                yield columns, _batches(cur, batch_size, conn), "text"
                cur.close()


def _bits_as_numbers(cur, batches: Iterator[list[tuple]]) -> Iterator[list[tuple]]:
    """A BIT value comes as its bytes (b'101' as 0x05): staged as its number's
    text, as the fdw path reads it (a BIT's bytes as text would be control
    characters, or bytes that are not UTF-8)."""
    from mysql.connector.constants import FieldType

    bits = [i for i, d in enumerate(cur.description) if d[1] == FieldType.BIT]
    if not bits:
        yield from batches
        return
    for batch in batches:
        rows = []
        for row in batch:
            row = list(row)
            for i in bits:
                if row[i] is not None:
                    row[i] = str(int.from_bytes(row[i], "big")).encode()
            rows.append(tuple(row))
        yield rows


def _source_columns(t: SyncTable, conn: Connection, schema: str) -> list[str]:
    table = t.source.table
    if t.source_type == "legacy_mysql":
        with _mysql(conn, schema) as cnx:
            cur = cnx.cursor()
            cur.execute(f"SELECT * FROM {mysql_ident(schema)}.{mysql_ident(table)} LIMIT 0")
            cur.fetchall()
            return [d[0] for d in cur.description]
    with _postgres(conn) as pg:
        cur = pg.execute(f"SELECT * FROM {ident(schema)}.{ident(table)} LIMIT 0")
        return [d.name for d in cur.description]


def _batches(cur, size: int, conn: Connection) -> Iterator[list[tuple]]:
    while True:
        try:
            rows = cur.fetchmany(size)
        except Exception as e:  # noqa: BLE001 - whatever the driver raises when the source goes away mid-read
            raise SourceUnreachable(conn.scrub(f"lost the source while reading it: {_first_line(e)}")) from None
        if not rows:
            return
        yield rows


@contextmanager
def _mysql(conn: Connection, database: str):
    import mysql.connector

    try:
        cnx = mysql.connector.connect(
            host=conn.host, port=conn.port, user=conn.user, password=conn.password or "",
            database=database, charset="utf8mb4", use_unicode=True, connection_timeout=10,
        )
    except mysql.connector.Error as e:
        raise SourceUnreachable(conn.scrub(f"cannot connect to MySQL {conn.host}:{conn.port}: {_first_line(e)}")) from None
    try:
        yield cnx
    finally:
        cnx.close()


@contextmanager
def _postgres(conn: Connection):
    import psycopg

    try:
        pg = psycopg.connect(host=conn.host, port=conn.port, dbname=conn.database, user=conn.user,
                             password=conn.password, autocommit=True,
                             **{"connect_timeout": "10", **dict(conn.options)})
    except psycopg.OperationalError as e:
        raise SourceUnreachable(conn.scrub(f"cannot connect to PostgreSQL {conn.host}:{conn.port}: {_first_line(e)}")) from None
    try:
        yield pg
    finally:
        pg.close()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def resolve_file(t: SyncTable, base: Path) -> Path:
    path = Path(t.source.file_path)
    if path.is_absolute() or path.exists():
        return path
    return base / path


@contextmanager
def file_rows(t: SyncTable, base: Path, batch_size: int, target_columns: list[str]):
    """(columns, batches, copy format) of a config_file source: YAML
    {schema_version, data} or CSV with a header naming target columns.
    Every value is the file's text, as a CSV cell would be: YAML's implicit
    types would turn a code 0101 into 65, 007 into 7 and 12:30 into 750."""
    s: FileSource = t.source
    path = resolve_file(t, base)
    place = f"table {t.name}: {path}"
    text = read_utf8(path, place)
    if path.suffix.lower() == ".csv":
        header, records, lines = _csv(place, text)
    else:
        header, records, lines = _yaml_data(place, text, s)
    for column in header:
        if column not in target_columns:
            raise InputError(f"{place}:{lines[column]}: column {column!r} is not a column of "
                             f"{t.target_schema}.{t.target_table}")
    if not records:
        # Never an empty load: under delete_insert it would delete every row no fact names.
        raise InputError(f"{place}: no data rows; nothing synced")
    yield header, _chunks(records, batch_size), "text"


def _csv(place: str, text: str) -> tuple[list[str], list[tuple], dict]:
    consumed: list[str] = []  # the lines of the record being read

    def lines(handle):
        for line in handle:
            consumed.append(line)
            yield line

    # newline="": a quoted value keeps its line breaks; strict: a quote never
    # closed is an error, not a value running to the end of the file
    reader = csv.reader(lines(io.StringIO(text, newline="")), strict=True)
    try:
        return _csv_records(place, reader, consumed)
    except csv.Error as e:
        start = reader.line_num - max(len(consumed), 1) + 1  # the line of the record being read
        if str(e) == "unexpected end of data":
            raise InputError(f"{place}:{start}: {unclosed_quote(consumed, start)}") from None
        raise InputError(f"{place}:{start}: malformed CSV: {e}") from None


def _csv_records(place: str, reader, consumed: list[str]) -> tuple[list[str], list[tuple], dict]:
    header = next(reader, None)
    if not header or not any(header):
        raise InputError(f"{place}: no header row naming the target columns")
    for n, column in enumerate(header, start=1):
        if not column:
            raise InputError(f"{place}:1: header field {n} is empty")
        if header.index(column) != n - 1:
            raise InputError(f"{place}:1: column {column!r} is named twice in the header")
    records = []
    start = reader.line_num + 1
    consumed.clear()
    for row in reader:
        consumed.clear()
        if len(row) != len(header):
            raise InputError(f"{place}:{start}: {len(row)} fields, the header has {len(header)}")
        held = next((c for c, v in zip(header, row) if NUL in v), None)
        if held is not None:
            raise InputError(f"{place}:{start}: column {held!r} {NUL_HELD}")
        records.append(tuple(v if v != "" else None for v in row))
        start = reader.line_num + 1
    return header, records, {c: 1 for c in header}


class _TextLoader(yaml.SafeLoader):
    """YAML with every scalar as its text, except null (~, null, nothing);
    a key given twice in one mapping is an error, not the last one winning."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key.value!r} given twice", key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def _yaml_data(place: str, text: str, s: FileSource) -> tuple[list[str], list[tuple], dict]:
    loader = _TextLoader(text)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None)
        raise InputError(f"{place}{f':{mark.line + 1}' if mark else ''}: invalid YAML"
                         f"{f': {problem}' if problem else ''}") from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise InputError(f"{place}: expected a mapping with schema_version and a data list")
    version = doc.get("schema_version")
    if s.schema_version is not None and (version is None or str(version) != str(s.schema_version)):
        raise InputError(
            f"{place}: schema_version {version!r} does not match {s.schema_version!r} "
            "named in the sync config; nothing synced"
        )
    items = next(v for k, v in node.value if k.value == "data").value
    columns: list[str] = []
    lines: dict[str, int] = {}
    for n, (item, item_node) in enumerate(zip(doc["data"], items), start=1):
        line = item_node.start_mark.line + 1
        if not isinstance(item, dict):
            raise InputError(f"{place}:{line}: data item {n} is not a mapping of column: value")
        for column, value in item.items():
            if isinstance(value, str) and NUL in value:
                raise InputError(f"{place}:{line}: column {column!r} {NUL_HELD}")
            if isinstance(value, (dict, list)):
                raise InputError(f"{place}:{line}: data item {n}: column {column!r}: a "
                                 f"{'mapping' if isinstance(value, dict) else 'list'} is not one value; "
                                 "quote it (JSON for a jsonb column)")
            if str(column) not in lines:
                columns.append(str(column))
                lines[str(column)] = line
    records = [tuple(item.get(c) for c in columns) for item in doc["data"]]
    return columns, records, lines


def _chunks(records: list[tuple], size: int) -> Iterator[list[tuple]]:
    for i in range(0, len(records), size):
        yield records[i:i + size]
