"""`refdata load DOMAIN FILE`: stream a CSV through COPY into the domain's
staging table, then let the load function derive parents and insert facts,
all in one transaction.

Memory stays flat: rows go from the file to COPY one at a time (with
--rejects, in bounded chunks). A bad row aborts the whole load with one line
naming file, line, column and reason; with --rejects it is written there
with its reason and the rest loads.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import psycopg

from .catalog import Catalog
from .cells import cell
from .config import Config, chinese_encoding, unclosed_quote
from .errors import InputError, RefdataError, cannot_write
from .names import ident, object_name, qualified
from .order import processing_order
from .db import describe
from .render import INSTALL_STAMP, generated_code_stamp, load_functions, refdata_name, stage_table

RETRIES = 3
NUL = b"\x00"
CHUNK_ROWS = 5_000  # rows buffered per COPY attempt with --rejects
RETRYABLE = ("40P01", "40001")  # deadlock detected, serialization failure
# Python codec name -> server encoding name, for files COPY reads itself.
SERVER_ENCODINGS = {"utf-8": "UTF8", "gbk": "GBK", "gb18030": "GB18030"}


@dataclass
class Options:
    delimiter: str = ","
    encoding: str = "utf-8"
    null: str = ""
    rejects: Path | None = None
    verify: str | None = None  # auto | set-based | per-row; None: the domain's config
    force: bool = False  # load a file again that this domain has loaded before


@dataclass
class Result:
    rows: int = 0
    facts: int = 0
    derived: dict = field(default_factory=dict)
    blank_keys: int = 0
    rejected: int = 0
    seconds: float = 0.0
    attempts: int = 1
    path: str = ""  # how the foreign keys were checked: set-based | per-row
    fallback: str | None = None  # why not set-based
    direct: bool = False  # COPYed into the fact table itself, not through staging


class BadRow(Exception):
    """A record that cannot load; `text` is the decoded line for encoding errors."""

    def __init__(self, line: int | None, column: str | None, reason: str, raw: list[str] | None = None,
                 text: str | None = None):
        super().__init__(reason)
        self.line, self.column, self.reason, self.raw, self.text = line, column, reason, raw, text


# -- reading the file ------------------------------------------------------------


class Fingerprint:
    """Size and sha256 of the bytes a load streams, taken as they pass (the
    file is read once), for refdata.load_run."""

    def __init__(self):
        self.size = 0
        self.digest = hashlib.sha256()

    def feed(self, block: bytes) -> None:
        self.size += len(block)
        self.digest.update(block)


def records(path: Path, options: Options,
            fingerprint: Fingerprint | None = None) -> Iterator[tuple[int, list[str], BadRow | None]]:
    """(starting line, fields, problem) for each CSV record, the header first.

    A line with bytes that are not valid in the encoding still yields its
    record (decoded with replacement characters) together with the problem,
    so --rejects can set it aside and go on. `fingerprint` is fed every
    byte read.
    """
    first_encoding = "utf-8-sig" if codecs.lookup(options.encoding).name == "utf-8" else options.encoding
    state: dict = {"line": 0, "bad": None, "text": []}

    def lines():
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                state["line"] = number
                if fingerprint is not None:
                    fingerprint.feed(raw)
                try:
                    text = raw.decode(first_encoding if number == 1 else options.encoding)
                except UnicodeDecodeError as e:
                    text = raw.decode(options.encoding, errors="replace")
                    if number == 1 and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        # every other byte a NUL: no line of it is worth reading on
                        raise BadRow(1, None, f"not valid {options.encoding}: the file is UTF-16 (it starts with a "
                                              "UTF-16 byte order mark), which load does not read: save it as UTF-8")
                    if state["bad"] is None:
                        reason = f"not valid {options.encoding}: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line"
                        legacy = chinese_encoding(raw) if codecs.lookup(options.encoding).name == "utf-8" else None
                        if legacy:
                            reason += f"; the file reads as {legacy.upper()}: load it with --encoding {legacy}"
                        state["bad"] = BadRow(number, None, reason, text=text)
                if number == 1 and raw.startswith(codecs.BOM_UTF8) and first_encoding != "utf-8-sig":
                    raise BadRow(1, None, f"the file starts with a UTF-8 byte order mark, so it is UTF-8, not "
                                          f"{options.encoding}: load it without --encoding {options.encoding}")
                if "\x00" in text:
                    # csv refuses NUL outright, and PostgreSQL text cannot hold one:
                    # a bad value at a line and column, like undecodable bytes.
                    text = text.replace("\x00", "\ufffd")
                    if state["bad"] is None:
                        reason = f"NUL byte at byte {raw.index(NUL) + 1} of the line"
                        state["bad"] = BadRow(number, None, reason, text=text)
                # the record's own text: whether a field was quoted is not in what csv gives back
                state["text"].append(text)
                yield text

    reader = csv.reader(lines(), delimiter=options.delimiter, strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if str(e) == "unexpected end of data":
                raise BadRow(start, None, f"malformed CSV: {unclosed_quote(state['text'], start)}") from None
            if "new-line character seen in unquoted field" in str(e):
                # Python's own words ask for a mode of its own; what the user can do is this
                raise BadRow(start, None, "malformed CSV: a carriage return (CR) inside an unquoted field; lines "
                                          "ending in a lone CR are not read: save the file with LF or CRLF line "
                                          "ends, or quote the field") from None
            raise BadRow(start, None, f"malformed CSV: {e}") from None
        bad, state["bad"] = state["bad"], None
        text, state["text"] = state["text"], []
        if options.null in fields:
            fields = quoted_kept(fields, "".join(text), options)
        if bad is not None:
            bad.raw = fields
        if fields or bad is not None:
            yield start, fields, bad
        start = state["line"] + 1


class Quoted(str):
    """A field that was quoted in the file: never the NULL marker, as in COPY's CSV format."""


def quoted_kept(fields: list[str], text: str, options: Options) -> list[str]:
    """`fields` with the quoted ones equal to the NULL marker made `Quoted`.

    Only called for records holding such a value, so the slow walk over the
    record's characters is rare."""
    quoted: list[bool] = []
    at_start, is_quoted, in_quotes = True, False, False
    for ch in text.rstrip("\r\n"):
        if at_start:
            at_start, is_quoted = False, ch == '"'
            in_quotes = is_quoted
            if ch == options.delimiter:
                quoted.append(False)
                at_start = True
        elif in_quotes:
            in_quotes = ch != '"'
        elif ch == '"' and is_quoted:
            in_quotes = True
        elif ch == options.delimiter:
            quoted.append(is_quoted)
            at_start = True
    quoted.append(is_quoted and not at_start)
    if len(quoted) != len(fields):  # not what csv read; leave the record as it is
        return fields
    return [Quoted(v) if q and v == options.null else v for v, q in zip(fields, quoted)]


# -- loading ---------------------------------------------------------------------


def check_install(conn: psycopg.Connection) -> None:
    """RefdataError when schema refdata's comment does not carry the stamp of
    the code this refdata generates: the functions a load calls would be
    another version's, or missing (the tool was upgraded, apply not run)."""
    row = conn.execute("SELECT pg_catalog.obj_description(n.oid, 'pg_namespace') FROM pg_catalog.pg_namespace AS n "
                       "WHERE n.nspname = 'refdata'").fetchone()
    if row is None:
        return  # not installed at all: the staging table's line says so
    mine, found = generated_code_stamp(), INSTALL_STAMP.search(row[0] or "")
    if found is None or found.group(1) != mine:
        theirs = f"it carries {found.group(1)}" if found else "it carries none: an earlier version"
        raise RefdataError(f"refdata's generated code in {describe(conn)} was made by another version of refdata "
                           f"(this one renders {mine}, {theirs}); run refdata apply with this config to bring it "
                           "up to date; nothing was loaded")


class Loader:
    def __init__(self, conn: psycopg.Connection, config: Config, domain: str, path: Path, options: Options):
        if domain not in config.domains:
            known = ", ".join(config.domains)
            raise InputError(f"domain {domain} is not in the config (known: {known})")
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a file")
        if path.exists() and not path.is_file():
            raise InputError(f"{path}: not a regular file (a pipe or device cannot be read twice, as a load may "
                             "need to): write it to a file first")
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        if options.rejects is not None and options.rejects.exists() and options.rejects.samefile(path):
            # written before the commit, it would replace the loaded rows' only copy by the refused ones
            raise InputError(f"--rejects {options.rejects}: is the file being loaded; name another file")
        try:
            codecs.lookup(options.encoding)
        except LookupError:
            raise InputError(f"--encoding: unknown encoding {options.encoding!r}") from None
        if "\n".encode(options.encoding) != b"\n":
            # lines are split at the byte 0x0a, which UTF-16 and UTF-32 spread over 2 or 4 bytes
            raise InputError(f"--encoding {options.encoding}: load reads files whose lines end in the byte 0x0a "
                             "(UTF-8, GBK, GB18030, Latin-1, ...): save the file as UTF-8")
        if len(options.delimiter) != 1:
            raise InputError("--delimiter: must be one character")
        if options.delimiter in '"\r\n':
            # as COPY refuses them: a field could not be told from the quoting or the line end
            raise InputError(f"--delimiter: cannot be {_named(options.delimiter)}")
        bad = next((c for c in options.delimiter + '"\r\n' if c in options.null), None)
        if bad is not None:
            # no unquoted field holds it, and a quoted one is never NULL: the marker would never match
            raise InputError(f"--null {options.null!r}: cannot hold {_named(bad)}")
        self.conn, self.domain, self.path, self.options = conn, domain, path, options
        self.d = config.domains[domain]
        self.stage = stage_table(domain)
        self.function = refdata_name(domain, "load")
        check_install(conn)
        catalog = Catalog(conn)
        stage = catalog.table("refdata_stage", object_name(domain))
        if stage.oid is None:
            raise RefdataError(f"staging table {self.stage} does not exist; run refdata apply first")
        for function in load_functions(domain):
            if conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NULL", [function]).fetchone()[0]:
                raise RefdataError(f"function {function} of domain {domain}'s load does not exist in {describe(conn)}; "
                                   "run refdata apply with this config to make it; nothing was loaded")
        fact = catalog.table(self.d.fact_schema, self.d.fact_table_for(domain))
        drift = catalog.stage_drift(domain, fact)
        conn.rollback()
        if drift:
            # The loader may not own the staging table; apply, which does, brings it in step.
            raise RefdataError(f"{drift}; run refdata apply first")
        self.loadable = {c: info for c, info in stage.columns.items() if not c.startswith("_rd_")}
        # NOT NULL columns: a file must name those without a default, and no
        # column it names may be empty there (it is inserted as given).
        self.not_null = {c for c, info in fact.columns.items() if info["not_null"] and c in self.loadable}
        self.required = {c for c in self.not_null if not fact.columns[c]["has_default"]}
        self.fact_label = fact.label
        self.fact = qualified(self.d.fact_schema, self.d.fact_table_for(domain))
        self.columns: list[str] = []
        self.python_path = False

    def _header(self, fields: list[str]) -> list[str]:
        columns = [f.strip() for f in fields]
        seen = set()
        for i, c in enumerate(columns, start=1):
            if c not in self.loadable:
                same = [name for name in self.loadable if name.casefold() == c.casefold()]
                hint = same or difflib.get_close_matches(c, list(self.loadable), n=1, cutoff=0.5)
                suggestion = f' (did you mean "{hint[0]}"?{" column names are case-sensitive" if same else ""})' \
                    if hint else ""
                other = next((d for d in ",;\t|" if d in c and d != self.options.delimiter), None)
                if len(columns) == 1 and other:
                    # the whole header read as one column: the file is delimited otherwise
                    named = "a tab" if other == "\t" else repr(other)
                    advice = {",": "without --delimiter", "\t": "with --delimiter $'\\t'"}.get(
                        other, f"with --delimiter {other!r}")
                    suggestion = f" (the header is one column: is the file delimited by {named}? load it {advice})"
                raise InputError(
                    f'{self.path}:1: column {i} "{c}" is not a loadable column of {self.fact_label}{suggestion}'
                )
            if c in seen:
                raise InputError(f'{self.path}:1: column "{c}" appears twice in the header')
            seen.add(c)
        missing = sorted(self.required - seen)
        if missing:
            raise InputError(f'{self.path}:1: required column "{missing[0]}" (NOT NULL, no default) is not in the header')
        self.columns = columns
        return columns

    def _check(self, line: int, fields: list[str], columns: list[str]) -> list[str | None]:
        if len(fields) != len(columns):
            raise BadRow(line, None, f"expected {len(columns)} fields, found {len(fields)}", fields)
        values = [None if v == self.options.null and not isinstance(v, Quoted) else v for v in fields]
        for c, v in zip(columns, values):
            if v is None and c in self.not_null:
                raise BadRow(line, c, "value required (column is NOT NULL)", fields)
        return values

    def run(self, progress: bool) -> Result:
        for attempt in range(1, RETRIES + 1):
            try:
                result = self._attempt(progress)
                result.attempts = attempt
                return result
            except psycopg.errors.Error as e:
                if self.conn.closed or self.conn.broken or (e.sqlstate or "").startswith("57"):
                    # The server restarted or cut the session: its transaction, and so the load, is gone.
                    self.conn.close()
                    raise RefdataError(f"load of {self.path} failed: the connection to the server was lost "
                                       f"({_reason(e).splitlines()[0]}); nothing was loaded") from None
                self.conn.rollback()
                if e.sqlstate in RETRYABLE and attempt < RETRIES:
                    print(f"refdata: {e.diag.message_primary}; retrying the load (attempt {attempt + 1} of {RETRIES})",
                          file=sys.stderr)
                    time.sleep(0.2 * attempt)
                    continue
                raise self._translate(e) from None
        raise AssertionError("unreachable")

    def _attempt(self, progress: bool) -> Result:
        result = Result()
        self.rejects: list[tuple] = []
        # COPY of the file's bytes numbers staged rows by its identity, not by file line
        self.server_staged = False
        started = time.monotonic()
        meter = Progress(progress)
        self.fingerprint = Fingerprint()
        rows = records(self.path, self.options, self.fingerprint)
        try:
            first = next(rows, None)
            if first is None:
                raise InputError(f"{self.path}: empty file (a header row naming the fact columns is expected)")
            if first[2] is not None:
                raise first[2]
            columns = self._header(first[1])
            copy_sql = (
                f"COPY {self.stage} ({', '.join(ident(c) for c in columns)}, \"_rd_line\") FROM STDIN"
            )
            started_at = datetime.now(timezone.utc)
            with self.conn.transaction():
                # Operators of the load's queries resolve in pg_catalog, never
                # in a schema someone else can create objects in.
                self.conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
                if self.options.rejects:
                    parsed_by = "python, rejects"
                    self._copy_with_rejects(copy_sql, rows, columns, result, meter)
                elif self._server_parses() and not self.python_path and first[0] == 1:
                    # (COPY's HEADER skips the first line: with blank lines before
                    # the header it would load the header as a row)
                    parsed_by = "server csv"
                    rows.close()
                    self.server_staged = True
                    if self._load_direct(columns, result, meter, started_at):
                        result.seconds = time.monotonic() - started
                        return result
                    self.fingerprint = Fingerprint()  # COPY reads the file from its first byte again
                    self._copy_file(columns, result, meter)
                else:
                    parsed_by = "python"
                    self._copy_all(copy_sql, rows, columns, result, meter)
                meter.done(result.rows)
                self.file_record = json.dumps(self._file_record(parsed_by, started_at))
                self._load_staged(columns, result)
                if self.options.rejects:
                    # before the commit: the refused rows are nowhere else
                    self._write_rejects(self.rejects)
        except BadRow as bad:
            raise InputError(self._where(bad)) from None
        except UsePythonPath:
            self.python_path = True
            return self._attempt(progress)
        finally:
            meter.clear()
        result.seconds = time.monotonic() - started
        return result

    def _file_record(self, parsed_by: str, started_at: datetime, way: str = "staging") -> dict:
        """What refdata.load_run records of this load's file: the bytes it streamed."""
        return {"name": str(self.path), "size": self.fingerprint.size, "sha256": self.fingerprint.digest.hexdigest(),
                "path": f"{way} ({parsed_by})", "started": started_at.isoformat(), "force": self.options.force}

    def _server_parses(self) -> bool:
        """Whether the file can go to COPY as it is: the server's CSV parser is
        much faster than reading rows in Python. Only for the default
        delimiter and NULL marker and the encodings below, so that no option
        value has to be written into the COPY statement."""
        return (self.options.delimiter, self.options.null) == (",", "") and self._server_encoding() is not None

    def _server_encoding(self) -> str | None:
        return SERVER_ENCODINGS.get(codecs.lookup(self.options.encoding).name)

    def _load_direct(self, columns, result, meter, started_at: datetime) -> bool:
        """The file COPYed straight into the fact table, as the caller, under
        session_replication_role = replica for that one statement; the
        domain's load triggers then derive its parents and lock and check its
        foreign keys set-based on that statement's rows (D__load_verify).
        False, with nothing done, when the owner's half (D__load_ready) says
        the staging path must serve this load, or when the COPY or the check
        failed for any reason but a bad value (the staging path then loads
        the file again and says what is wrong as it always does)."""
        if self.options.verify == "per-row":
            return False
        # The file's record (refdata.load_run, --force) before the COPY: its
        # bytes hashed first, and again as COPY reads them.
        first = Fingerprint()
        with open(self.path, "rb") as f:
            while block := f.read(1 << 20):
                first.feed(block)
        self.fingerprint = first
        record = json.dumps(self._file_record("server csv", started_at, "direct"))
        ready = refdata_name(self.domain, "load_ready")
        step = "lock"
        try:
            with self.conn.transaction():
                # Triggers of the fact table stay as they are until commit (what
                # D__load_ready finds is what the COPY fires).
                self.conn.execute(f"LOCK TABLE {self.fact} IN ROW EXCLUSIVE MODE")
                step = "ready"  # its refusals (a file loaded before, say) are the load's
                role = self.conn.execute(
                    "SELECT current_setting('session_replication_role'), set_config('refdata.load_file', %s, true), "
                    "set_config('refdata.load_result', '', true)", [record]).fetchone()[0]
                fallback = self.conn.execute(
                    f"SELECT {ready}(%s, %s, has_parameter_privilege('session_replication_role', 'SET'))",
                    [columns, self.options.verify]).fetchone()[0]
                if fallback is not None:
                    raise _StagingPath()
                step = "copy"
                self.conn.execute("SELECT set_config('session_replication_role', 'replica', true)")
                self.fingerprint = Fingerprint()
                self._copy_file(columns, result, meter, self.fact)
                outcome = self.conn.execute(
                    "SELECT current_setting('refdata.load_result', true), set_config('session_replication_role', %s, true)",
                    [role]).fetchone()[0]
                if not outcome:
                    raise _StagingPath()  # the load triggers did not run
                if (self.fingerprint.size, self.fingerprint.digest.digest()) != (first.size, first.digest.digest()):
                    raise RefdataError(f"load of {self.path} failed: the file changed while it was read; nothing was loaded")
        except _StagingPath:
            result.rows = 0
            return False
        except psycopg.errors.DataError:
            raise
        except psycopg.errors.Error as e:
            if (step == "ready" and e.sqlstate != "42501") or e.sqlstate in RETRYABLE or self.conn.broken \
                    or (e.sqlstate or "").startswith("57"):
                raise  # the load's own failure, or one that retrying the whole load resolves
            # Not allowed to (no EXECUTE on D__load_ready, a column-level INSERT grant
            # that LOCK TABLE does not take, row-level security), or refused: staging.
            result.rows = 0
            return False
        counts = json.loads(outcome)
        result.facts = result.rows
        result.blank_keys = counts["blank_keys"] or 0
        result.derived = dict(counts["parents_derived"] or {})
        result.path, result.fallback, result.direct = "set-based", None, True
        meter.done(result.rows)
        return True

    def _copy_file(self, columns, result, meter, target: str | None = None) -> None:
        """COPY the file's bytes into the staging table (or `target`); on a
        bad row, find it again in Python and say what is wrong."""
        copy_sql = (f"COPY {target or self.stage} ({', '.join(ident(c) for c in columns)}) FROM STDIN "
                    f"(FORMAT csv, HEADER true, ENCODING '{self._server_encoding()}')")
        with self.conn.cursor() as cur:
            try:
                with cur.copy(copy_sql) as cp, open(self.path, "rb") as f:
                    counter = RecordCounter()
                    while block := f.read(1 << 20):
                        cp.write(block)
                        counter.feed(block)
                        self.fingerprint.feed(block)
                        meter.tick(counter.records - 1, force=True)
                result.rows = cur.rowcount
            except psycopg.errors.DataError as e:
                line, column = _copy_position(e)
                raise self._diagnose(line, column, _reason(e), _copy_value(e)) from None
        # A line holding only \. ends COPY's CSV data early (PostgreSQL 15),
        # a lone CR ends a line for one parser and not the other: whenever
        # the server loaded another number of rows than the file holds
        # records, the Python parser reads the file and names the line.
        if result.rows != counter.records - 1:
            raise UsePythonPath()

    def _empty_not_null(self, columns: list[str]) -> Exception | None:
        """After the fact table refused a NULL: the first staged row holding one
        in a NOT NULL column the file names, said as the Python path says it.
        Only looked for once the insert failed, so a good file pays no pass over
        its rows for it."""
        named_not_null = sorted(self.not_null & set(columns))
        if not named_not_null:
            return None
        test = " OR ".join(f"s.{ident(c)} IS NULL" for c in named_not_null)
        row = self.conn.execute(
            f"""SELECT (SELECT count(*) FROM {self.stage} AS b
                        WHERE b."_rd_batch" = txid_current() AND b."_rd_line" <= s."_rd_line")
                FROM {self.stage} AS s
                WHERE s."_rd_batch" = txid_current() AND ({test})
                ORDER BY s."_rd_line" LIMIT 1"""
        ).fetchone()
        if not row:
            return None
        return self._diagnose(_nth_record_line(self.path, self.options, row[0]), None, "value required", None)

    def _diagnose(self, line: int | None, column: str | None, reason: str, value: str | None) -> Exception:
        """What the server's COPY refused, said as the row path would say it.

        The record holding `line` is checked in Python. When Python sees no
        problem there and cannot confirm the server's complaint (the two CSV
        parsers differ on blank lines and stray quotes, and the server counts
        lines differently in CRLF files), the load is redone on the Python
        path, which names the right line."""
        record = None
        if line is not None:
            try:
                for found in records(self.path, self.options):
                    if found[0] > line:
                        break
                    record = found
            except BadRow as bad:
                return bad
        if record is None or record[0] == 1:  # no line, or the header
            return UsePythonPath()
        start, fields, bad = record
        if bad is not None:
            return bad
        try:
            self._check(start, fields, self.columns)
        except BadRow as found:
            return found
        if column in self.columns and value is not None and fields[self.columns.index(column)] == value:
            return BadRow(start, column, reason, fields)
        return UsePythonPath()

    def _copy_all(self, copy_sql, rows, columns, result, meter) -> None:
        with self.conn.cursor() as cur:
            try:
                with cur.copy(copy_sql) as cp:
                    for line, fields, bad in rows:
                        if bad is not None:
                            raise bad
                        cp.write_row(self._check(line, fields, columns) + [line])
                        result.rows += 1
                        meter.tick(result.rows)
            except psycopg.errors.DataError as e:
                copy_line, column = _copy_position(e)
                line = _nth_record_line(self.path, self.options, copy_line) if copy_line else None
                raise BadRow(line, column, _reason(e)) from None

    def _record(self, raw) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.options.delimiter).writerow(raw or [])
        return buffer.getvalue().rstrip("\r\n")

    def _write_rejects(self, rejects: list[tuple]) -> None:
        """The rejects file: rows that failed while reading (format, types) and
        rows the fact table's constraints refused, together in file order.
        People open it in a spreadsheet: its text cells are written as
        export-pending writes them (cells.cell), so a record from a fact file
        starting with = or @ is never run as a formula."""
        try:
            with open(self.options.rejects, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(["line", "column", "reason", "record"])
                writer.writerows((line, cell(column), cell(reason), cell(record))
                                 for line, column, reason, record in sorted(rejects, key=lambda r: r[0]))
        except OSError as e:
            raise cannot_write(f"--rejects {self.options.rejects}", e, "nothing was loaded") from None

    def _copy_with_rejects(self, copy_sql, rows, columns, result, meter) -> None:
        def reject(bad: BadRow, raw):
            record = bad.text.rstrip("\r\n") if bad.text is not None else self._record(raw)
            self.rejects.append((bad.line, self._column_of(bad) or "", bad.reason, record))
            result.rejected += 1

        chunk: list[tuple[int, list, list]] = []

        def flush():
            pending = chunk[:]
            chunk.clear()
            while pending:
                try:
                    with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(copy_sql) as cp:
                        for line, values, _ in pending:
                            cp.write_row(values + [line])
                    result.rows += len(pending)
                    return
                except psycopg.errors.DataError as e:
                    copy_line, column = _copy_position(e)
                    if not copy_line:
                        raise
                    line, _, raw = pending[copy_line - 1]
                    reject(BadRow(line, column, _reason(e)), raw)
                    del pending[copy_line - 1]

        for line, fields, bad in rows:
            if bad is not None:
                reject(bad, fields)
                continue
            try:
                chunk.append((line, self._check(line, fields, columns), fields))
            except BadRow as bad:
                reject(bad, fields)
                continue
            meter.tick(result.rows + len(chunk))
            if len(chunk) >= CHUNK_ROWS:
                flush()
        flush()

    # -- rows the fact table's constraints refuse ----------------------------------

    def _load_staged(self, columns: list[str], result: Result) -> None:
        """Call the load function on the staged batch. The common case is one
        call. When a constraint of the fact table (FK, CHECK, NOT NULL, unique)
        refuses a row, the batch is split in halves, in file order, until each
        refusing row stands alone: with --rejects it goes to the rejects file
        and the rest loads; without, the error names its line."""
        # The first call that succeeds records the run with the file (a refused
        # call's savepoint gives the setting back for the next one).
        self.conn.execute("SELECT set_config('refdata.load_file', %s, true)", [self.file_record])
        try:
            self._call(columns, result)
            return
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as e:
            # A value a derived parent cannot hold (too long for its key, say)
            # fails the whole batch with no row named: the halving finds it.
            if isinstance(e, psycopg.errors.IntegrityError) and e.diag.table_name is None \
                    and e.diag.constraint_name is None:
                raise  # not a row's refusal (this file was loaded before, say)
            empty = self._empty_not_null(columns) if self.server_staged and e.sqlstate == "23502" else None
            if empty is not None:
                raise empty from None
            refusal = e
        try:
            with self.conn.transaction():
                self.conn.execute(
                    f"CREATE TEMP TABLE rd_pending ON COMMIT DROP AS SELECT * FROM {self.stage} "
                    "WHERE _rd_batch = txid_current()")
                self.conn.execute(f"DELETE FROM {self.stage} WHERE _rd_batch = txid_current()")
        except psycopg.errors.InsufficientPrivilege:
            # Finding the row takes SELECT and DELETE on the staging table;
            # without them the server's message is all there is.
            raise refusal from None
        first, last = self.conn.execute("SELECT min(_rd_line), max(_rd_line) FROM rd_pending").fetchone()
        refused: dict[int, tuple[str, str]] = {}
        mid = (first + last) // 2
        # The halving only finds the refused rows: what its calls load is
        # undone, and one call then loads the rest, so that the load is one
        # run in refdata.load_run with its file and its row count.
        with self.conn.transaction(force_rollback=True):
            self._bisect(columns, result, first, mid, refused)
            self._bisect(columns, result, mid + 1, last, refused)
        if not refused:
            # No row fails alone (the rows of one key together, say): the batch as a whole is refused.
            raise refusal
        result.facts, result.blank_keys, result.derived = 0, 0, {}
        self.conn.execute(f"INSERT INTO {self.stage} SELECT * FROM rd_pending WHERE _rd_line <> ALL (%s)",
                          [sorted(refused)])
        self.conn.execute("DROP TABLE rd_pending")
        self._call(columns, result)
        records = self._records_at(set(refused))
        for line, (column, reason) in sorted(refused.items()):
            self.rejects.append((line, column, reason, records.get(line, "")))
            result.rejected += 1

    def _bisect(self, columns, result, lo: int, hi: int, refused: dict) -> None:
        if lo > hi:
            return
        try:
            with self.conn.transaction():
                staged = self.conn.execute(
                    f"INSERT INTO {self.stage} SELECT * FROM rd_pending WHERE _rd_line BETWEEN %s AND %s",
                    [lo, hi]).rowcount
                if staged:
                    self._call(columns, result)
            return
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as e:
            if lo == hi:
                column, reason = self._refusal(e, lo)
                if not self.options.rejects:
                    raise BadRow(self._file_line(lo), column or None, f"{reason}; nothing was loaded") from None
                refused[lo] = (column, reason)
                return
        mid = (lo + hi) // 2
        self._bisect(columns, result, lo, mid, refused)
        self._bisect(columns, result, mid + 1, hi, refused)

    def _refusal(self, e: psycopg.errors.Error, staged_line: int) -> tuple[str, str]:
        """(fact column, reason) of the refusal of the one row staged at
        `staged_line` (in rd_pending). When it is a parent derived for the row
        that was refused, the reason names the foreign key, the parent table
        and its column, and the column is the fact column that fed it."""
        fact_table = self.d.fact_table_for(self.domain)
        column, reason = _constraint_reason(e, fact_table)
        if e.diag.table_name == fact_table and e.diag.schema_name in (None, self.d.fact_schema):
            return column, reason
        found = self._parent_refused(e, staged_line)
        if found is None:
            return column, reason
        fk, source, target = found
        into = f' column "{target}"' if target else ""
        return source or "", (f"foreign key {fk.name}: cannot derive its parent in "
                              f"{qualified(fk.target_schema, fk.target_table)}{into}: {reason}")

    def _parent_refused(self, e: psycopg.errors.Error, staged_line: int) -> tuple | None:
        """(foreign key, fact column, parent column) whose derived parent the
        server refused, or None when that cannot be told. A constraint names
        its table (and a NOT NULL its column); a value error (too long,
        out of range, not a label of the enum) names neither, so each value
        the row gives a parent column is converted into that column's type
        the way the derivation's INSERT stores it, until one fails."""
        fks = processing_order(self.domain, self.d)
        if e.diag.table_name:
            table = (e.diag.schema_name, e.diag.table_name)
            candidates = [fk for fk in fks if (fk.target_schema, fk.target_table) == table]
            if not candidates:  # a partition of a partitioned parent
                try:
                    with self.conn.transaction():
                        root = Catalog(self.conn).partition_root(qualified(*table))
                except psycopg.Error:
                    root = None
                candidates = [fk for fk in fks if (fk.target_schema, fk.target_table) == root]
            if not candidates:
                return None
            targets = [e.diag.column_name] if e.diag.column_name else []
            if not targets and e.diag.constraint_name:  # a CHECK: the columns it reads
                try:
                    with self.conn.transaction():
                        targets = Catalog(self.conn).constraint_columns(qualified(*table), e.diag.constraint_name)
                except psycopg.Error:
                    pass
            for target in targets:
                for fk in candidates:
                    if source := _fed_by(fk, target):
                        return fk, source, target
            return candidates[0], None, targets[0] if len(targets) == 1 else None
        for fk in fks:
            parent = qualified(fk.target_schema, fk.target_table)
            pairs = list(zip(fk.sources, fk.keys)) + [
                (m.source, m.target) for m in fk.mappings()
                if m.aggregation in ("first", "max_by", "min_by") and m.source in self.loadable]
            for source, target in pairs:
                if source not in self.loadable:
                    continue
                try:
                    with self.conn.transaction():
                        self.conn.execute(
                            f"SELECT jsonb_populate_record(NULL::{parent}, jsonb_build_object(%s::text, "
                            f"to_jsonb(s.{ident(source)}))) FROM rd_pending AS s WHERE s.\"_rd_line\" = %s",
                            [target, staged_line])
                except psycopg.errors.DataError:
                    return fk, source, target
                except psycopg.Error:
                    return None  # the parent's type is out of the loader's reach
        return None

    def _file_line(self, staged_line: int) -> int | None:
        if not self.server_staged:
            return staged_line
        n = self.conn.execute("SELECT count(*) FROM rd_pending WHERE _rd_line <= %s", [staged_line]).fetchone()[0]
        return _nth_record_line(self.path, self.options, n)

    def _call(self, columns: list[str], result: Result) -> None:
        with self.conn.transaction():  # a savepoint: a refusal undoes this call only
            facts, derived, blank_keys, result.path, result.fallback = self.conn.execute(
                f"SELECT facts, parents_derived, blank_keys, path, fallback FROM {self.function}(%s, %s)",
                [columns, self.options.verify]).fetchone()
            # Deferred constraints (a DEFERRABLE foreign key the set-based
            # check left to the per-row one) are checked now, not at commit:
            # nothing else runs before the load commits, and here the halving
            # can name the row they refuse.
            self.conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        result.facts += facts
        result.blank_keys += blank_keys
        for table, n in (derived or {}).items():
            result.derived[table] = result.derived.get(table, 0) + n

    def _records_at(self, lines: set[int]) -> dict[int, str]:
        """The file's records starting at these lines, as written to a rejects file."""
        found: dict[int, str] = {}
        if lines:
            for line, fields, _ in records(self.path, self.options):
                if line in lines:
                    found[line] = self._record(fields)
                    if len(found) == len(lines):
                        break
        return found

    def _column_of(self, bad: BadRow) -> str | None:
        """For an undecodable line: the column holding the bad bytes."""
        if bad.column or bad.text is None:
            return bad.column
        try:
            fields = next(csv.reader([bad.text], delimiter=self.options.delimiter))
        except (csv.Error, StopIteration):
            return None
        for i, value in enumerate(fields):
            if "\ufffd" in value:
                return self.columns[i] if i < len(self.columns) else f"field {i + 1}"
        return None

    def _where(self, bad: BadRow) -> str:
        place = f"{self.path}:{bad.line}" if bad.line else str(self.path)
        column = self._column_of(bad)
        column = f': column "{column}"' if column else ""
        return f"{place}{column}: {bad.reason}"

    def _translate(self, e: psycopg.errors.Error) -> RefdataError:
        message = (e.diag.message_primary or str(e)).strip()
        detail = f" ({e.diag.message_detail.strip()})" if e.diag.message_detail else ""
        # Class 22 (data) and 23 (constraints) come from the file's contents.
        if e.sqlstate and e.sqlstate[:2] in ("22", "23"):
            column = self._refused_column(e)
            column = f': column "{column}"' if column else ""
            return InputError(f"{self._offending_line(e)}{column}: {message}{detail}; nothing was loaded")
        return RefdataError(f"load of {self.path} failed: {message}{detail}; nothing was loaded")

    def _refused_column(self, e: psycopg.errors.Error) -> str:
        """The fact column(s) a constraint of the fact table refused: from the
        server's detail, or, when it hides the key from a role that may not
        read it, from the constraint itself."""
        fact_table = self.d.fact_table_for(self.domain)
        column, _ = _constraint_reason(e, fact_table)
        if column or e.diag.table_name != fact_table or not e.diag.constraint_name:
            return column
        try:
            with self.conn.transaction():
                return ", ".join(Catalog(self.conn).constraint_columns(self.fact, e.diag.constraint_name))
        except psycopg.Error:
            return ""

    def _offending_line(self, e: psycopg.errors.Error) -> str:
        """The file, and the line of the first offending row when the set-based check names it."""
        m = re.match(r"first offending row: record (\d+) of this load \(staged line (\d+)\)", e.diag.message_hint or "")
        if not m:
            return str(self.path)
        # On the Python path rows are staged with their line; COPY of the file numbers them itself.
        line = int(m.group(2)) if self.options.rejects or self.python_path or not self._server_parses() \
            else _nth_record_line(self.path, self.options, int(m.group(1)))
        return f"{self.path}:{line}" if line else str(self.path)


def _named(ch: str) -> str:
    return {'"': "the quote character", "\r": "a carriage return", "\n": "a line feed"}.get(
        ch, f"the delimiter {ch!r}")


def _constraint_reason(e: psycopg.errors.Error, fact_table: str) -> tuple[str, str]:
    """(column, reason) of a constraint violation, the reason with the
    server's detail (which key, which value). The column only when it is one
    of the fact table's (a derived parent's refusal names the parent's)."""
    message = (e.diag.message_primary or str(e)).strip()
    detail = (e.diag.message_detail or "").strip()
    column = ""
    if e.diag.table_name == fact_table:
        column = e.diag.column_name or ""
        m = re.match(r"Key \((.*?)\)=", detail)
        if not column and m:
            column = ", ".join(c.strip().strip('"') for c in m.group(1).split(","))
    return column, f"{message} ({detail})" if detail else message


def _fed_by(fk, target: str) -> str | None:
    """The fact column a foreign key copies into parent column `target`."""
    if target in fk.keys:
        return fk.sources[fk.keys.index(target)]
    return next((m.source for m in fk.mappings() if m.target == target and m.source), None)


def _copy_position(e: psycopg.errors.Error) -> tuple[int | None, str | None]:
    """COPY's 'line N, column C' from the error context."""
    m = re.search(r'COPY [^,]+, line (\d+)(?:, column ([^:]+))?', e.diag.context or "")
    if not m:
        return None, None
    column = m.group(2)
    return int(m.group(1)), (None if column in (None, "_rd_line") else column)


def _copy_value(e: psycopg.errors.Error) -> str | None:
    """The value COPY quotes in its context (column C: "value")."""
    m = re.search(r', column [^:]+: "(.*)"\Z', e.diag.context or "", re.S)
    return m.group(1) if m else None


class RecordCounter:
    """CSV records in a stream of bytes: line feeds outside double quotes
    (doubled quotes inside a quoted field toggle twice and cancel out), plus
    a last line without one. Counted with bytes methods, block by block, so
    it keeps up with COPY."""

    def __init__(self):
        self.line_feeds = 0
        self.in_quotes = False
        self.last = b"\n"

    def feed(self, block: bytes) -> None:
        parts = block.split(b'"')
        quoted = b"".join(parts[0 if self.in_quotes else 1::2])
        self.line_feeds += block.count(b"\n") - quoted.count(b"\n")
        if len(parts) % 2 == 0:
            self.in_quotes = not self.in_quotes
        self.last = block[-1:]

    @property
    def records(self) -> int:
        return self.line_feeds + (self.last != b"\n")


class _StagingPath(Exception):
    """The direct path cannot serve this load: the staging path does."""


class UsePythonPath(Exception):
    """The server's CSV parser and Python's disagree about the file: read it in Python."""


def _reason(e: psycopg.errors.Error) -> str:
    return (e.diag.message_primary or str(e)).strip()


def _nth_record_line(path: Path, options: Options, n: int) -> int | None:
    """Starting line of the n-th data record (1-based), found again on the error path only."""
    try:
        for i, (line, _, _) in enumerate(records(path, options)):
            if i == n:
                return line
    except BadRow:
        return None
    return None


class Progress:
    """Rows and rows/s on a terminal's stderr; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()
        self.last = 0.0

    def tick(self, rows: int, force: bool = False) -> None:
        if not self.enabled or (rows % 1000 and not force):
            return
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.last = now
            rate = rows / max(now - self.started, 1e-9)
            sys.stderr.write(f"\r{rows:>12,} rows  {rate:>10,.0f} rows/s")
            sys.stderr.flush()

    def done(self, rows: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\r{rows:>12,} rows staged; deriving parents and inserting facts ...")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def summary(result: Result, path: Path, fact_label: str) -> str:
    rate = result.facts / result.seconds if result.seconds else 0
    derived = ", ".join(f"{t} {n}" for t, n in sorted(result.derived.items())) or "none"
    text = (
        f"loaded {result.facts:,} fact rows from {path} into {fact_label} in {result.seconds:.1f} s "
        f"({rate:,.0f} rows/s); parents derived: {derived}; blank keys skipped: {result.blank_keys:,}"
    )
    if result.path == "set-based":
        text += "; foreign keys verified set-based"
    elif result.path:
        text += f"; foreign keys checked per row ({result.fallback})"
    if result.rejected:
        text += f"; rejected: {result.rejected:,} (see the rejects file)"
    if result.attempts > 1:
        text += f"; after {result.attempts} attempts"
    return text
