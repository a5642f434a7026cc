"""Bad data through both load paths (the server's CSV parser and the Python
path): each is one error line naming the line and the column, or the
documented skip, and nothing is half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import apply_config

from generator.config import parse_config
from generator.errors import InputError
from generator.load import Loader, Options

SCHEMA = """
CREATE TABLE parent (k varchar(4) PRIMARY KEY, name text);
CREATE TABLE fact (line int NOT NULL, k text, amount numeric(8, 2), day date, note text);
"""

CONFIG = """
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_k, source_column: k, target_table: parent, target_key: k,
         backfill_columns: [{source: note, target: name}], blank_values: ["(空白)", "-"]}
"""

HEADER = "line,k,amount,day,note"


@pytest.fixture
def bad_data(db, cli, write_config):
    db.execute(SCHEMA)
    path = apply_config(cli, write_config, CONFIG)
    return db, parse_config(path.read_text(encoding="utf-8"))


def _load(db, config, path: Path, python: bool):
    db.autocommit = False
    try:
        loader = Loader(db, config, "d", path, Options())
        loader.python_path = python
        loader.run(progress=False)
        return None
    except InputError as e:
        return str(e)
    finally:
        db.rollback()
        db.autocommit = True


def _nothing_loaded(db) -> bool:
    return db.execute("""SELECT (SELECT count(*) FROM fact) + (SELECT count(*) FROM parent)
                                + (SELECT count(*) FROM refdata_stage."d")""").fetchone() == (0,)


BAD = {
    "ragged row, too few": ("2,K2,1.00,2025-01-01", "{f}:3: expected 5 fields, found 4"),
    "ragged row, too many": ("2,K2,1.00,2025-01-01,n,extra", "{f}:3: expected 5 fields, found 6"),
    "number that is not one": ("2,K2,1,0,2025-01-01,n", "{f}:3: expected 5 fields, found 6"),
    "type mismatch, numeric": ("2,K2,abc,2025-01-01,n", '{f}:3: column "amount": invalid input syntax for type numeric: "abc"'),
    "type mismatch, date": ("2,K2,1.00,2025-02-30,n", '{f}:3: column "day": date/time field value out of range: "2025-02-30"'),
    "numeric overflow": ("2,K2,12345678.00,2025-01-01,n", '{f}:3: column "amount": numeric field overflow'),
    "NULL in a NOT NULL column": (",K2,1.00,2025-01-01,n", '{f}:3: column "line": value required (column is NOT NULL)'),
}


@pytest.mark.parametrize("python", [False, True], ids=["server parser", "python path"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_row_is_one_line_naming_line_and_column_and_nothing_loads(bad_data, tmp_path, case, python):
    db, config = bad_data
    row, expected = BAD[case]
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n1,K1,1.00,2025-01-01,first\n{row}\n3,K3,1.00,2025-01-01,third\n", encoding="utf-8")
    assert _load(db, config, path, python) == expected.format(f=path)
    assert _nothing_loaded(db)


@pytest.mark.parametrize("python", [False, True], ids=["server parser", "python path"])
def test_invalid_encoding_is_one_line_naming_line_and_column(bad_data, tmp_path, python):
    db, config = bad_data
    path = tmp_path / "bad.csv"
    path.write_bytes(f"{HEADER}\n1,K1,1.00,2025-01-01,ok\n2,K2,1.00,2025-01-01,".encode() + "坏".encode("gbk") + b"\n")
    assert _load(db, config, path, python) == (f'{path}:3: column "note": not valid utf-8: byte 0xbb at byte 22 '
                                               "of the line; the file reads as GBK: load it with --encoding gbk")
    assert _nothing_loaded(db)


@pytest.mark.parametrize("python", [False, True], ids=["server parser", "python path"])
def test_key_longer_than_the_parent_column_names_the_column(bad_data, tmp_path, python):
    db, config = bad_data
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n1,K1,1.00,2025-01-01,ok\n2,TOOLONG,1.00,2025-01-01,n\n", encoding="utf-8")
    assert _load(db, config, path, python) == (
        f'{path}:3: column "k": foreign key fk_k: cannot derive its parent in "public"."parent" column "k": '
        "value too long for type character varying(4); nothing was loaded")
    assert _nothing_loaded(db)


@pytest.mark.parametrize("python", [False, True], ids=["server parser", "python path"])
def test_blank_keys_are_skipped_and_derive_nothing(bad_data, tmp_path, python):
    """NULL, empty, whitespace and the configured markers: the fact row loads
    (no FK is declared here), no parent is derived for it."""
    db, config = bad_data
    path = tmp_path / "blank.csv"
    path.write_text(HEADER + "\n" + "\n".join([
        "1,,1.00,2025-01-01,null key",
        '2,"",1.00,2025-01-01,empty key',
        '3," \t　",1.00,2025-01-01,whitespace key',
        "4,(空白),1.00,2025-01-01,marker",
        "5, - ,1.00,2025-01-01,marker with spaces",
        "6,K6,1.00,2025-01-01,a real key",
    ]) + "\n", encoding="utf-8")
    assert _load(db, config, path, python) is None
    db.autocommit = True
    assert db.execute("SELECT line, k FROM fact ORDER BY line").fetchall() == [
        (1, None), (2, ""), (3, " \t\u3000"), (4, "(空白)"), (5, " - "), (6, "K6")]
    assert db.execute("SELECT k, name FROM parent").fetchall() == [("K6", "a real key")]
