"""`refdata load` of a file whose rows name parents the server refuses to
derive (a key too long for the parent's key column, a value out of its
range, a CHECK or NOT NULL of the parent): one line naming the file, the
line of the first offending row, its column, the foreign key and the parent
table and column, exit code 2, and nothing loaded, on every way a load takes
(direct COPY, staging by the server's COPY, the Python reader, --rejects).

Every load here fails (or, with --rejects, loads only the good rows), so the
tests share one database with the config applied; each compares what its
load left against what was there before it."""

from __future__ import annotations

import contextlib
import csv
import io
import os

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from generator import cli as cli_module

RUN = f"{os.getpid()}"  # as conftest names per-run databases
CLI_ENV = ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")

SCHEMA = """
CREATE TABLE parent (k varchar(4) PRIMARY KEY, name varchar(6) CHECK (name <> 'forbid'), size numeric(4, 1));
CREATE TABLE region (r varchar(4) PRIMARY KEY, label text NOT NULL);
CREATE TABLE fact (line int NOT NULL, k varchar(20), amount numeric(8, 2), note text, r text);
CREATE TABLE notes (k varchar(4), note text);
CREATE TABLE known (k text PRIMARY KEY);
INSERT INTO known VALUES ('K1');
CREATE TABLE pair (a text, b int, PRIMARY KEY (a, b));
INSERT INTO pair VALUES ('A', 1);
CREATE TABLE xp (x text PRIMARY KEY);
CREATE TABLE checked (
    line int, x text, k text CONSTRAINT checked_k REFERENCES known, a text, b int,
    dk text CONSTRAINT checked_dk REFERENCES known DEFERRABLE INITIALLY DEFERRED, da text, db int,
    CONSTRAINT checked_ab FOREIGN KEY (a, b) REFERENCES pair,
    CONSTRAINT checked_dab FOREIGN KEY (da, db) REFERENCES pair DEFERRABLE INITIALLY DEFERRED);
"""

CONFIG = """
domains:
  d:
    fact_table: fact
    foreign_keys:
      - name: fk_k
        source_column: k
        target_table: parent
        target_key: k
        backfill_columns: [{source: note, target: name}, {source: amount, target: size}]
      - name: fk_r
        source_column: r
        target_table: region
        target_key: r
        backfill_columns: [{source: note, target: label}]
  n:
    fact_table: notes
    foreign_keys:
      - {name: fk_n, source_column: k, target_table: parent, target_key: k}
  c:
    fact_table: checked
    foreign_keys:
      - {name: fk_x, source_column: x, target_table: xp, target_key: x}
"""

HEADER = "line,k,amount,note,r"
GOOD = ["1,K1,1.0,first,R1", "3,K3,1.0,third,R3"]

# (bad row, what the line says after "FILE:3: ")
CASES = {
    "key too long for the parent's key": (
        "2,TOOLONG,1.0,n,R2",
        'column "k": foreign key fk_k: cannot derive its parent in "public"."parent" column "k": '
        "value too long for type character varying(4); nothing was loaded"),
    "value too long for a parent column": (
        "2,K2,1.0,toolong,R2",
        'column "note": foreign key fk_k: cannot derive its parent in "public"."parent" column "name": '
        "value too long for type character varying(6); nothing was loaded"),
    "value out of a parent column's range": (
        "2,K2,12345.0,n,R2",
        'column "amount": foreign key fk_k: cannot derive its parent in "public"."parent" column "size": '
        "numeric field overflow (A field with precision 4, scale 1 must round to an absolute value less than 10^3.); "
        "nothing was loaded"),
    "a CHECK of the parent": (
        "2,K2,1.0,forbid,R2",
        'column "note": foreign key fk_k: cannot derive its parent in "public"."parent" column "name": '
        'new row for relation "parent" violates check constraint "parent_name_check" '
        "(Failing row contains (K2, forbid, 1.0, auto_derived, t, d, "),
    "an empty NOT NULL column of the parent": (
        "2,K2,1.0,,R2",
        'column "note": foreign key fk_r: cannot derive its parent in "public"."region" column "label": '
        'null value in column "label" of relation "region" violates not-null constraint'),
}

# How the load reads and stages the file: straight into the fact table (and,
# on a refusal, again through the Python reader), through the staging table by
# the server's COPY (per-row verification goes there), by the Python reader
# (an encoding the server's COPY is not given).
WAYS = {"direct": [], "server staging": ["--verify", "per-row"], "python": ["--encoding", "latin-1"]}


@pytest.fixture(scope="module")
def loaded_db(request, tmp_path_factory):
    """A database with SCHEMA and CONFIG applied, shared by the module's tests."""
    proc = request.getfixturevalue("postgresql_noproc")
    name = f"refdata_load_errors_{RUN}"
    with DatabaseJanitor(user=proc.user, host=proc.host, port=proc.port, dbname=name, password=proc.password):
        dsn = f"host={proc.host} port={proc.port} user={proc.user} dbname={name}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
            home = tmp_path_factory.mktemp("load_errors")
            config = home / "data_sources.yml"
            config.write_text(CONFIG, encoding="utf-8")
            err = io.StringIO()
            with pytest.MonkeyPatch.context() as m, contextlib.redirect_stderr(err):
                for variable in CLI_ENV:
                    m.delenv(variable, raising=False)
                m.setenv("REFDATA_HOME", str(home / "no-embedded-cluster"))
                assert cli_module.main(["--db", dsn, "--config", str(config), "apply"]) == 0, err.getvalue()
            yield conn, dsn, config


@pytest.fixture
def load(loaded_db, cli):
    conn, dsn, config = loaded_db

    def run(path, *options, domain="d", dsn=dsn):
        return cli("--config", str(config), "load", domain, str(path), *options, db=dsn)

    return run


def _state(conn) -> tuple:
    """Everything a load writes: facts, parents, the load log, staged rows."""
    return conn.execute("""SELECT (SELECT count(*) FROM fact), (SELECT count(*) FROM parent),
                                  (SELECT count(*) FROM region), (SELECT count(*) FROM refdata.load_run),
                                  (SELECT count(*) FROM refdata_stage."d")""").fetchone()


def _file(tmp_path, bad: str, name: str = "facts.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, GOOD[0], bad, GOOD[1]]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("case", list(CASES))
def test_a_parent_that_cannot_be_derived_names_line_column_foreign_key_and_parent(loaded_db, load, tmp_path,
                                                                                 case, way):
    conn = loaded_db[0]
    bad, expected = CASES[case]
    path = _file(tmp_path, bad)
    before = _state(conn)
    result = load(path, *WAYS[way])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"refdata: error: {path}:3: {expected}"), result.stderr
    assert lines[0].endswith("; nothing was loaded")
    assert _state(conn) == before


@pytest.mark.parametrize("case", list(CASES))
def test_with_rejects_the_row_whose_parent_cannot_be_derived_goes_there_and_the_rest_loads(loaded_db, load, tmp_path,
                                                                                          case):
    conn = loaded_db[0]
    bad, expected = CASES[case]
    # keys of their own, so the good rows derive their parents here too
    tag = str(list(CASES).index(case))
    good = [g.replace("K", "J" + tag).replace("R", "S" + tag) for g in GOOD]
    path = tmp_path / "facts.csv"
    path.write_text("\n".join([HEADER, good[0], bad, good[1]]) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    before = _state(conn)
    result = load(path, "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert "loaded 2 fact rows" in result.stdout and "rejected: 1" in result.stdout
    with open(rejects, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1][:2] == ["3", expected.split('"')[1]]
    reason = expected.split(": ", 1)[1].removesuffix("; nothing was loaded")
    assert rows[1][2].startswith(reason), rows[1][2]
    assert rows[1][3] == bad and len(rows) == 2
    assert _state(conn) == (before[0] + 2, before[1] + 2, before[2] + 2, before[3] + 1, 0)
    # one run, of the file, with the rows it loaded (finding the refused row loads nothing)
    assert conn.execute("SELECT source, file_name, rows FROM refdata.load_run ORDER BY id DESC LIMIT 1").fetchone() \
        == ("file", str(path), 2)


# -- files that are not what a load expects ------------------------------------

READ_WAYS = {"server": [], "python": ["--encoding", "latin-1"], "rejects": ["--rejects", "{rejects}"]}


@pytest.mark.parametrize("way", list(READ_WAYS))
def test_blank_lines_before_the_header_never_load_the_header_as_a_row(loaded_db, load, tmp_path, way):
    """COPY's HEADER skips the first line, whatever it holds: with a blank
    line first it took the header for a row, and a text-only fact table
    loaded it (and derived a parent named after the key column)."""
    conn = loaded_db[0]
    key = {"server": "N1", "python": "N2", "rejects": "N3"}[way]
    path = tmp_path / "notes.csv"
    path.write_text(f"\nk,note\n{key},a\n", encoding="utf-8")
    options = [o.format(rejects=tmp_path / "rejects.csv") for o in READ_WAYS[way]]
    result = load(path, *options, domain="n")
    assert result.returncode == 0, result.stderr
    assert "loaded 1 fact rows" in result.stdout
    assert conn.execute("SELECT k, note FROM notes WHERE k IN ('k', %s)", [key]).fetchall() == [(key, "a")]
    assert conn.execute("SELECT k FROM parent WHERE k IN ('k', %s)", [key]).fetchall() == [(key,)]


@pytest.mark.parametrize("way", list(READ_WAYS))
def test_a_file_with_lone_carriage_returns_is_one_line_saying_what_to_do(loaded_db, load, tmp_path, way):
    conn = loaded_db[0]
    path = tmp_path / "mac.csv"
    path.write_bytes(b"line,k,amount,note,r\r1,K1,1.0,a,R1\r2,K2,1.0,b,R2\r")
    before = _state(conn)
    result = load(path, *[o.format(rejects=tmp_path / "rejects.csv") for o in READ_WAYS[way]])
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"refdata: error: {path}:1: malformed CSV: a carriage return (CR) inside an unquoted "
                             "field; lines ending in a lone CR are not read: save the file with LF or CRLF line "
                             "ends, or quote the field\n")
    assert _state(conn) == before and not (tmp_path / "rejects.csv").exists()


@pytest.mark.parametrize("header, expected", [
    ("LINE,k", 'column 1 "LINE" is not a loadable column of "public"."fact" (did you mean "line"? column names are '
               "case-sensitive)"),
    ("line,kk", 'column 2 "kk" is not a loadable column of "public"."fact" (did you mean "k"?)'),
    ("line,k,k", 'column "k" appears twice in the header'),
    ("k,amount", 'required column "line" (NOT NULL, no default) is not in the header'),
    ("line,,k", 'column 2 "" is not a loadable column of "public"."fact"'),
])
def test_a_header_that_does_not_name_the_fact_columns_is_one_line_at_line_1(loaded_db, load, tmp_path,
                                                                           header, expected):
    conn = loaded_db[0]
    path = tmp_path / "facts.csv"
    path.write_text(f"{header}\n1,K1,K1\n", encoding="utf-8")
    before = _state(conn)
    for way in READ_WAYS.values():
        result = load(path, *[o.format(rejects=tmp_path / "rejects.csv") for o in way])
        assert (result.returncode, result.stderr) == (2, f"refdata: error: {path}:1: {expected}\n")
    assert _state(conn) == before


# -- rows a declared foreign key of the fact table refuses -----------------------

CHECKED_HEADER = "line,x,k,a,b,dk,da,db"
CHECKED_GOOD = ["1,X1,K1,A,1,K1,A,1", "3,X3,,,,,,"]
# (bad row, column, constraint, key): immediate and deferrable, one column and composite
DECLARED = {
    "immediate": ("2,X2,K404,,,,,", "k", "checked_k", '(k)=(K404) is not present in table "known"'),
    "immediate composite": ("2,X2,,A,9,,,", "a, b", "checked_ab", '(a, b)=(A, 9) is not present in table "pair"'),
    "deferrable": ("2,X2,,,,K404,,", "dk", "checked_dk", '(dk)=(K404) is not present in table "known"'),
    "deferrable composite": ("2,X2,,,,,A,9", "da, db", "checked_dab", '(da, db)=(A, 9) is not present in table "pair"'),
}


def _checked_state(conn) -> tuple:
    return conn.execute("""SELECT (SELECT count(*) FROM checked), (SELECT count(*) FROM xp),
                                  (SELECT count(*) FROM refdata.load_run),
                                  (SELECT count(*) FROM refdata_stage."c")""").fetchone()


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("case", list(DECLARED))
def test_a_row_a_declared_foreign_key_refuses_names_line_column_and_constraint(loaded_db, load, tmp_path, case, way):
    """Immediate or deferrable (checked at commit), one column or several:
    the same line, naming the file's line, the fact column(s) and the
    constraint, and nothing loaded."""
    conn = loaded_db[0]
    bad, column, constraint, key = DECLARED[case]
    path = tmp_path / "checked.csv"
    path.write_text("\n".join([CHECKED_HEADER, CHECKED_GOOD[0], bad, CHECKED_GOOD[1]]) + "\n", encoding="utf-8")
    before = _checked_state(conn)
    result = load(path, *WAYS[way], domain="c")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f'refdata: error: {path}:3: column "{column}": insert or update on table "checked" '
                             f'violates foreign key constraint "{constraint}" (Key {key}.); nothing was loaded\n')
    assert _checked_state(conn) == before


@pytest.mark.parametrize("case", list(DECLARED))
def test_with_rejects_a_row_a_declared_foreign_key_refuses_goes_there_and_the_rest_loads(loaded_db, load, tmp_path,
                                                                                        case):
    conn = loaded_db[0]
    bad, column, constraint, key = DECLARED[case]
    tag = str(list(DECLARED).index(case))
    good = [g.replace("X", "Y" + tag) for g in CHECKED_GOOD]
    path = tmp_path / "checked.csv"
    path.write_text("\n".join([CHECKED_HEADER, good[0], bad, good[1]]) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    before = _checked_state(conn)
    result = load(path, "--rejects", str(rejects), domain="c")
    assert result.returncode == 0, result.stderr
    assert "loaded 2 fact rows" in result.stdout and "rejected: 1" in result.stdout
    with open(rejects, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1] == ["3", column, f'insert or update on table "checked" violates foreign key constraint '
                                    f'"{constraint}" (Key {key}.)', bad]
    assert len(rows) == 2
    assert _checked_state(conn) == (before[0] + 2, before[1] + 2, before[2] + 1, 0)


@pytest.mark.parametrize("may_set", [True, False], ids=["set-based", "per-row"])
def test_a_loader_that_may_not_delete_staged_rows_still_gets_the_column(loaded_db, load, tmp_path, may_set):
    """Without DELETE on the staging table the refused row cannot be singled
    out: the set-based check's own error then names the line, and either
    path the column(s), from the key or, when the server hides the key from
    the role, from the constraint."""
    conn, dsn, config = loaded_db
    name = f"loader_{RUN}_{os.urandom(4).hex()}"
    conn.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        for grant in ["USAGE ON SCHEMA refdata, refdata_stage", 'INSERT, SELECT ON refdata_stage."c"',
                      "INSERT ON refdata.load_run", "INSERT ON checked",
                      'EXECUTE ON FUNCTION refdata."c__load"(text[], text), '
                      'refdata."c__load_parents"(text[], text, boolean)'] \
                + (["SET ON PARAMETER session_replication_role"] if may_set else []):
            conn.execute(f'GRANT {grant} TO "{name}"')
        bad, column, constraint, key = DECLARED["immediate composite"]
        path = tmp_path / "checked.csv"
        path.write_text("\n".join([CHECKED_HEADER, CHECKED_GOOD[0], bad, CHECKED_GOOD[1]]) + "\n", encoding="utf-8")
        before = _checked_state(conn)
        result = load(path, dsn=f"{dsn} user={name}", domain="c")
        where, key = (f"{path}:3", key) if may_set else (str(path), 'is not present in table "pair"')
        assert result.stderr == (f'refdata: error: {where}: column "{column}": insert or update on table "checked" '
                                 f'violates foreign key constraint "{constraint}" (Key {key}.); nothing was loaded\n')
        assert result.returncode == 2
        assert _checked_state(conn) == before
    finally:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


# (file bytes, ways that read it, what the line says after "FILE")
BAD_FILES = {
    "a quote never closed on the last line": (
        b'line,k,amount,note,r\n1,K1,1.0,a,R1\n2,K2,1.0,"never\nclosed\n', list(READ_WAYS),
        ":3: malformed CSV: a quoted field is never closed (its quote opens on line 3)"),
    "a UTF-16 file": (
        "line,k,amount,note,r\n1,K1,1.0,a,R1\n".encode("utf-16"), ["server", "rejects"],
        ":1: not valid utf-8: the file is UTF-16 (it starts with a UTF-16 byte order mark), which load does not "
        "read: save it as UTF-8"),
    "a UTF-8 file with a byte order mark loaded as Latin-1": (
        b"\xef\xbb\xbfline,k,amount,note,r\n1,K1,1.0,a,R1\n", ["python"],
        ":1: the file starts with a UTF-8 byte order mark, so it is UTF-8, not latin-1: load it without "
        "--encoding latin-1"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_file_load_cannot_read_is_one_line_naming_the_line_and_what_to_do(loaded_db, load, tmp_path, case):
    conn = loaded_db[0]
    content, ways, expected = BAD_FILES[case]
    path = tmp_path / "facts.csv"
    path.write_bytes(content)
    before = _state(conn)
    for way in ways:
        result = load(path, *[o.format(rejects=tmp_path / "rejects.csv") for o in READ_WAYS[way]])
        assert (result.returncode, result.stderr) == (2, f"refdata: error: {path}{expected}\n"), way
    assert _state(conn) == before and not (tmp_path / "rejects.csv").exists()


@pytest.mark.parametrize("encoding", ["utf-16", "UTF-16LE", "utf-32"])
def test_an_encoding_whose_line_feed_is_not_one_byte_is_refused_as_an_option(loaded_db, load, tmp_path, encoding):
    path = tmp_path / "facts.csv"
    path.write_bytes("line,k\n1,K1\n".encode(encoding))
    result = load(path, "--encoding", encoding)
    assert (result.returncode, result.stderr) == (
        2, f"refdata: error: --encoding {encoding}: load reads files whose lines end in the byte 0x0a (UTF-8, GBK, "
           "GB18030, Latin-1, ...): save the file as UTF-8\n")


@pytest.mark.parametrize("options, expected", [
    (["--delimiter", '"'], "--delimiter: cannot be the quote character"),
    (["--delimiter", "\n"], "--delimiter: cannot be a line feed"),
    (["--delimiter", "\r"], "--delimiter: cannot be a carriage return"),
    (["--null", ","], "--null ',': cannot hold the delimiter ','"),
    (["--delimiter", ";", "--null", "n;a"], "--null 'n;a': cannot hold the delimiter ';'"),
    (["--null", "\n"], "--null '\\n': cannot hold a line feed"),
    (["--null", '"'], "--null '\"': cannot hold the quote character"),
])
def test_a_delimiter_or_null_marker_copy_would_refuse_is_refused_as_an_option(loaded_db, load, tmp_path,
                                                                              options, expected):
    """They read fields no file can be written in, or a marker that never matches (an unquoted field cannot
    hold the delimiter, and a quoted one is never NULL)."""
    conn = loaded_db[0]
    path = tmp_path / "facts.csv"
    path.write_text(f"{HEADER}\n{GOOD[0]}\n", encoding="utf-8")
    before = _state(conn)
    result = load(path, *options)
    assert (result.returncode, result.stderr) == (2, f"refdata: error: {expected}\n")
    assert _state(conn) == before


@pytest.mark.parametrize("delimiter, options, advice", [
    (";", [], "is the file delimited by ';'? load it with --delimiter ';'"),
    ("\t", [], "is the file delimited by a tab? load it with --delimiter $'\\t'"),
    (",", ["--delimiter", ";"], "is the file delimited by ','? load it without --delimiter"),
])
def test_a_header_read_as_one_column_suggests_the_delimiter(loaded_db, load, tmp_path, delimiter, options, advice):
    path = tmp_path / "facts.csv"
    path.write_text(f"{HEADER.replace(',', delimiter)}\n{GOOD[0].replace(',', delimiter)}\n", encoding="utf-8")
    result = load(path, *options)
    header = HEADER.replace(",", delimiter).replace("\t", "\\t")
    assert (result.returncode, result.stderr) == (
        2, f'refdata: error: {path}:1: column 1 "{header}" is not a loadable column of "public"."fact" '
           f"(the header is one column: {advice})\n")
