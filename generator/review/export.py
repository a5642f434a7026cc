"""export-pending and review import: the CSV round trip of rows awaiting review."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from ..cells import FORMULA_SQL, NUMBER_SQL, cell, uncell
from ..config import NUL, NUL_HELD, read_utf8, unclosed_quote
from ..errors import InputError, cannot_write
from ..load import Options, Quoted, quoted_kept
from ..names import ident
from .errors import translate

BOM = "\ufeff".encode("utf-8")
TABLE_COLUMN = "reference_table"


def _tables(conn: psycopg.Connection, table: str | None) -> list[tuple[str, list[str]]]:
    """(table, its columns) of the configured reference tables in question."""
    try:
        # by name through the catalog: a reviewer needs no rights on the tables' schemas
        rows = conn.execute(
            """SELECT format('%%I.%%I', l.target_schema, l.target_table),
                      ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
                            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
               FROM (SELECT DISTINCT target_schema, target_table FROM refdata.reference_link) AS l
               JOIN pg_catalog.pg_namespace AS n ON n.nspname = l.target_schema
               JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = l.target_table
               WHERE %s::text IS NULL OR ARRAY[l.target_schema::text, l.target_table::text] = parse_ident(%s)
               ORDER BY 1""",
            [table, table],
        ).fetchall()
    except psycopg.Error as e:
        raise translate(e, f"--table {table}" if table else None) from None
    if table and not rows:
        raise InputError(f"--table {table}: not a reference table of any configured foreign key")
    return rows


def export_pending(conn: psycopg.Connection, path: Path, table: str | None = None, excel: bool = False) -> int:
    """Stream the pending rows, every column of their table, to a CSV file via COPY.

    A file of several tables has the columns of all of them (first come,
    first placed); a row's cells of columns its table lacks stay empty.
    """
    columns: list[str] = []
    for _, cols in _tables(conn, table):
        columns += [c for c in cols if c not in columns and c != TABLE_COLUMN]
    select = ", ".join(f"{_cell('(p.row_values ->> ' + _text(c) + ')')} AS {ident(c)}" for c in columns)
    conn.execute("SELECT set_config('refdata.export_table', coalesce(%s, ''), false)", [table])
    # The table's name always with its schema: regclass would leave out one on
    # the session's search_path, which the import (resolving as the owner,
    # search_path pg_catalog, pg_temp) would then not find.
    table_name = ("(SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class AS c "
                  "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = p.table_name)")
    query = (f"COPY (SELECT {table_name} AS {ident(TABLE_COLUMN)}, {select} "
             "FROM refdata.pending_rows(nullif(current_setting('refdata.export_table'), '')) AS p) "
             "TO STDOUT WITH (FORMAT csv)")
    # The header is written here: column names are cells a spreadsheet runs too.
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([TABLE_COLUMN] + [cell(c) for c in columns])
    try:
        with path.open("wb") as out, conn.cursor() as cur:
            with cur.copy(query) as copy:
                if excel:
                    out.write(BOM)
                out.write(header.getvalue().encode("utf-8"))
                for chunk in copy:
                    out.write(chunk)
            return cur.rowcount  # the server's count: a value may hold line breaks
    except psycopg.Error as e:
        raise translate(e) from None
    except OSError as e:
        raise cannot_write(str(path), e) from None


def _cell(value: str) -> str:
    """The SQL of a text value as export-pending writes it into a cell (cells.cell in SQL)."""
    return (f"CASE WHEN {value} ~ {_text(FORMULA_SQL)} AND {value} !~ {_text(NUMBER_SQL)} "
            f"THEN '''' || {value} ELSE {value} END")


def _text(name: str) -> str:
    # a column name as a SQL string constant for ->> (quoted like an identifier, with single quotes)
    return "'" + name.replace("'", "''") + "'"


def read_reviewed(path: Path) -> list[dict]:
    """The rows of an edited export: line, table, values (empty cells are NULL)."""
    text = read_utf8(path, str(path))  # Excel on Chinese Windows saves GBK: the line says so
    rows = []
    consumed: list[str] = []  # the lines of the record csv is reading

    def lines(handle):
        for line in handle:
            consumed.append(line)
            yield line

    with io.StringIO(text, newline="") as handle:
        # strict: a quote never closed is an error, not a value running to the end of the file
        reader = csv.reader(lines(handle), strict=True)
        line = 1
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty file (import a file written by export-pending)")
            if TABLE_COLUMN not in header:
                raise InputError(f"{path}:1: the header names no {TABLE_COLUMN} column (import a file written by export-pending)")
            header = [uncell(name) for name in header]
            seen = set()
            for name in header:
                if NUL in name:
                    raise InputError(f'{path}:1: column "{name}" {NUL_HELD}')
                if name in seen:
                    raise InputError(f"{path}:1: column {name!r} appears twice")
                seen.add(name)
            line = reader.line_num + 1
            consumed.clear()
            for record in reader:
                raw = "".join(consumed)
                consumed.clear()
                if not any(record) and '"' not in raw:
                    line = reader.line_num + 1
                    continue
                if len(record) != len(header):
                    raise InputError(f"{path}:{line}: {len(record)} fields, the header has {len(header)}")
                held = next((k for k, v in zip(header, record) if NUL in v), None)
                if held is not None:
                    raise InputError(f'{path}:{line}: column "{held}" {NUL_HELD}')
                # as COPY wrote them: an empty cell is NULL, a quoted one ("") empty text
                record = quoted_kept(record, raw, Options()) if "" in record else record
                values = {k: (uncell(v) if v != "" or isinstance(v, Quoted) else None)
                          for k, v in zip(header, record)}
                rows.append({"line": line, "table": values.pop(TABLE_COLUMN), "values": values})
                line = reader.line_num + 1
        except csv.Error as e:
            if reader.line_num >= line and str(e) == "unexpected end of data":
                raise InputError(f"{path}:{line}: {unclosed_quote(consumed, line)}") from None
            raise InputError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None
    return rows


def import_reviewed(conn: psycopg.Connection, path: Path) -> int:
    """All rows of the file, or none: one transaction, through refdata.review_import."""
    rows = read_reviewed(path)
    try:
        with conn.transaction():
            return conn.execute("SELECT refdata.review_import(%s)", [Jsonb(rows)]).fetchone()[0]
    except psycopg.Error as e:
        raise translate(e, str(path)) from None
