"""`refdata sync`: every table of reference_sync.yml, each in its own transaction.

Enters: a SyncConfig, the target database's DSN, the environment (source
connections). Leaves: merged reference tables, a `refdata.sync_run` row per
table (failed runs too, with their reason), one printed line per table, and
whether all succeeded. fdw tables are merged in the database by
`refdata.sync_table(name)`; client tables are read here, COPYed into their
staging table and merged by the same function. A table that fails (source
down, bad data) changes nothing of that table; the others go on.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from ..config import DatabaseSource, SyncConfig, SyncTable
from ..db import connect
from ..errors import InputError, RefdataError
from ..names import ident, qualified
from .connection import connection
from .render import remote_schema, stage_name
from .sources import SourceUnreachable, database_rows, file_rows

ATTEMPTS = 3
BACKOFF = 0.5  # seconds, doubled per attempt
COUNTS = ("inserted", "updated", "promoted", "unchanged", "deleted", "kept")


@dataclass
class Outcome:
    table: str
    status: str
    source: str
    via: str
    counts: dict
    seconds: float
    error: str | None = None

    def line(self) -> str:
        if self.status == "succeeded":
            counts = ", ".join(f"{k} {self.counts[k]}" for k in COUNTS)
            return f"{self.table}: {counts} ({self.source} via {self.via}, {self.seconds:.2f} s)"
        return f"{self.table}: failed: {self.error}"


def _outcome(row: dict) -> Outcome:
    return Outcome(row["table_name"], row["status"], row["source"], row["via"],
                   {k: row[k] for k in COUNTS}, (row["finished_at"] - row["started_at"]).total_seconds(),
                   row["error"])


def sync(dsn: str, config: SyncConfig, base: Path, names: list[str] | None = None,
         via: str | None = None) -> list[Outcome]:
    """Sync the chosen tables (all by default), `concurrency` at a time."""
    tables = config.tables
    if names:
        unknown = [n for n in names if n not in {t.name for t in tables}]
        if unknown:
            raise InputError(f"no table named {unknown[0]} in the sync config")
        tables = [t for t in tables if t.name in names]
    if via:
        tables = [t for t in tables if t.effective_via == via]
    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        return list(pool.map(lambda t: sync_table(dsn, config, t, base), tables))


def sync_table(dsn: str, config: SyncConfig, t: SyncTable, base: Path) -> Outcome:
    with connect(dsn) as conn:
        conn.row_factory = psycopg.rows.dict_row
        if not _installed(conn) or not conn.execute(
                "SELECT 1 AS ok FROM refdata.sync_table WHERE name = %s", [t.name]).fetchone():
            raise RefdataError(f"table {t.name} is not set up in this database: run refdata apply")
        conn.commit()
        if t.effective_via == "fdw":
            with conn.transaction():
                row = conn.execute("SELECT * FROM refdata.sync_table(%s)", [t.name]).fetchone()
            return _outcome(row)
        return _client(conn, config, t, base)


def _installed(conn) -> bool:
    return conn.execute("SELECT to_regclass('refdata.sync_table') IS NOT NULL AS ok").fetchone()["ok"]


def _client(conn: psycopg.Connection, config: SyncConfig, t: SyncTable, base: Path) -> Outcome:
    started = conn.execute("SELECT clock_timestamp() AS now").fetchone()["now"]
    conn.commit()
    secret = None
    error = None
    for attempt in range(1, ATTEMPTS + 1):
        try:
            if isinstance(t.source, DatabaseSource):
                source = connection(t.source.connection_env_prefix, t.source_type)
                secret = source
                schema = remote_schema(t, source)
                since = _watermark(conn, t) if t.source.incremental else None
                reader = database_rows(t, source, schema, since, config.batch_size, _stage_columns(conn, t))
            else:
                reader = file_rows(t, base, config.batch_size, _stage_columns(conn, t))
            with reader as (columns, batches, fmt):
                return _stage_and_merge(conn, t, columns, batches, fmt)
        except SourceUnreachable as e:
            conn.rollback()
            error = str(e)
            if attempt < ATTEMPTS:
                time.sleep(BACKOFF * 2 ** (attempt - 1))
                continue
        except (RefdataError, psycopg.Error) as e:
            conn.rollback()
            error = e.diag.message_primary if isinstance(e, psycopg.Error) and e.diag.message_primary else str(e)
            break
    error = error if error.startswith(f"table {t.name}:") else f"table {t.name}: {error}"
    if secret:
        error = secret.scrub(error)
    with conn.transaction():
        row = conn.execute("SELECT * FROM refdata.sync_failed(%s, %s, %s)", [t.name, started, error]).fetchone()
    return _outcome(row)


def _stage_columns(conn, t: SyncTable) -> list[str]:
    """The target's columns a source may fill (those of its staging table)."""
    rows = conn.execute(
        "SELECT a.attname AS name FROM pg_attribute AS a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attname <> '_rd_updated_at' ORDER BY a.attnum",
        [qualified("refdata_stage", stage_name(t))]).fetchall()
    conn.commit()
    return [r["name"] for r in rows]


def _watermark(conn, t: SyncTable) -> datetime | None:
    """The watermark as the source compares it: a MySQL DATETIME has no zone,
    so it gets the local time of this session's zone."""
    row = conn.execute(
        "SELECT last_synced_at, last_synced_at AT TIME ZONE current_setting('TimeZone') AS local "
        "FROM refdata.sync_watermark WHERE table_name = %s", [t.name]).fetchone()
    conn.commit()
    if not row:
        return None
    return row["local"] if t.source_type == "legacy_mysql" else row["last_synced_at"]


# A text COPY's context ends ": <value>", a binary COPY's at the column name.
COPY_CONTEXT = re.compile(r"COPY [^,]+, line (\d+), column (.+)$", re.S)


def _stage_and_merge(conn: psycopg.Connection, t: SyncTable, columns: list[str], batches, fmt: str) -> Outcome:
    """`fmt` binary: every value is UTF-8 bytes (or None) for a text column."""
    stage = qualified("refdata_stage", stage_name(t))
    incremental = isinstance(t.source, DatabaseSource) and t.source.incremental is not None
    copy_columns = columns + (["_rd_updated_at"] if incremental else [])
    with conn.transaction():
        conn.execute(f"TRUNCATE {stage}")
        options = ""
        if fmt == "binary":
            # A binary COPY's text is taken in the client encoding.
            conn.execute("SET LOCAL client_encoding = 'UTF8'")
            options = " (FORMAT binary)"
        line = 0
        try:
            with conn.cursor().copy(f"COPY {stage} ({', '.join(ident(c) for c in copy_columns)}) FROM STDIN{options}") as cp:
                for batch in batches:
                    for row in batch:
                        cp.write_row(row)
                    line += len(batch)
        except psycopg.errors.UndefinedColumn as e:
            raise InputError(f"table {t.name}: {e.diag.message_primary}") from None
        except psycopg.errors.DataError as e:
            m = COPY_CONTEXT.search((e.diag.context or "").splitlines()[0] if e.diag.context else "")
            column = m and max((c for c in copy_columns if m[2] == c or m[2].startswith(c + ":")), key=len, default=None)
            where = f"source row {m[1]}: column {column}: " if column else ""
            raise RefdataError(f"table {t.name}: {where}{e.diag.message_primary}") from None
        row = conn.execute("SELECT * FROM refdata.sync_table(%s, %s)", [t.name, columns]).fetchone()
        conn.execute(f"TRUNCATE {stage}")
    return _outcome(row)
