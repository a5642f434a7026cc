"""Reference sync: MySQL column types through mysql_fdw and the client path,
each value arriving as MySQL holds it or the table failing with one line
naming key (or row) and column, never an empty string or garbled text."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sync_helpers import project_config, sync_config

BINARY_ROWS = [
    # code, blob, tinyblob, mediumblob, longblob, binary(4), varbinary(16), bit(1), bit(8), bit(64)
    ("K1", b"\x00\xff\x80\xc3", b"\xff", b"A\x00B", b"\n\r\\\x00", b"\x00\x01\x02\x03", "中文".encode(),
     1, 0xA5, 2 ** 64 - 1),
    ("K2", b"", b"\\x41", b"\xe4\xb8", b"\x00" * 3, b"ab\x00\x00", b"", 0, 0, 2 ** 63),
    ("K3", None, None, None, None, None, None, None, None, None),
]


def binary_table(name: str, via: str, database: str, columns: bool) -> str:
    listed = ("      columns:\n" + "".join(f"        - {{source: {c}, target: {c}}}\n" for c in
                                            ("code", "bl", "tb", "mb", "lb", "bi", "vb", "flag", "b8", "b64"))
              if columns else "")
    return (f"  - name: {name}\n    target_table: {name}\n    target_schema: mapping\n"
            f"    source_type: legacy_mysql\n    via: {via}\n"
            f"    source_config:\n      connection_env_prefix: LEG\n      schema: {database}\n      table: bin\n"
            f"{listed}    primary_key: code\n")


@pytest.mark.parametrize("columns", [True, False])
def test_mysql_binary_and_bit_values_arrive_as_they_are_on_both_paths(columns, sample_db, cli, write_config,
                                                                       legacy_mysql):
    """mysql_fdw read BLOB, BINARY, VARBINARY and BIT columns into text as ''
    (a zero byte first) or as characters: now bytes into bytea byte for byte,
    a BIT as its number (into boolean, integer, numeric), on both paths."""
    cur = legacy_mysql.conn.cursor()
    cur.execute("CREATE TABLE bin (code varchar(8) PRIMARY KEY, bl blob, tb tinyblob, mb mediumblob, lb longblob, "
                "bi binary(4), vb varbinary(16), flag bit(1), b8 bit(8), b64 bit(64))")
    cur.executemany("INSERT INTO bin VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", BINARY_ROWS)
    for via in ("fdw", "client"):
        sample_db.execute(f"CREATE TABLE mapping.bin_{via} (code text PRIMARY KEY, bl bytea, tb bytea, mb bytea, "
                          "lb bytea, bi bytea, vb text, flag boolean, b8 integer, b64 numeric(20))")
    config = project_config(write_config)
    sync_config(write_config, "".join(binary_table(f"bin_{via}", via, legacy_mysql.name, columns)
                                      for via in ("fdw", "client")))
    env = legacy_mysql.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 0, result.stderr
    expected = [(code, *blobs, vb.decode() if vb is not None else None, None if flag is None else bool(flag), b8,
                 None if b64 is None else Decimal(b64))
                for code, *blobs, vb, flag, b8, b64 in BINARY_ROWS]
    for via in ("fdw", "client"):
        rows = sample_db.execute(f"SELECT * FROM mapping.bin_{via} ORDER BY code").fetchall()
        assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r[:10]) for r in rows] == expected, via


ENUM_SET_YEAR = {
    "enum": ("kind enum('甲','b','') NULL", "kind text", [("K1", "甲"), ("K2", ""), ("K3", None)]),
    "set": ("tags set('x','y','中') NULL", "tags text", [("K1", "x,中"), ("K2", ""), ("K3", None)]),
    "year": ("founded year NULL", "founded integer", [("K1", 2024), ("K2", 1901), ("K3", None)]),
    "bit": ("active bit(1) NULL", "active boolean", [("K1", True), ("K2", False), ("K3", None)]),
}


@pytest.mark.parametrize("kinds", [["enum"], ["set"], ["year"], ["enum", "set", "year", "bit"]])
@pytest.mark.parametrize("via", ["fdw", "client"])
def test_enum_set_year_and_bit_columns_sync_without_a_column_list(kinds, via, sample_db, cli, write_config,
                                                                  legacy_mysql):
    """mysql_fdw's IMPORT FOREIGN SCHEMA skipped a table with a SET column
    and typed ENUM and YEAR columns with types PostgreSQL lacks: apply said
    "not found on server". The columns come from MySQL's catalog now."""
    cur = legacy_mysql.conn.cursor()
    cur.execute(f"CREATE TABLE kinds (code varchar(8) PRIMARY KEY, {', '.join(ENUM_SET_YEAR[k][0] for k in kinds)}, "
                "legacy_only int)")
    rows = [tuple([code] + [dict(ENUM_SET_YEAR[k][2])[code] for k in kinds]) for code in ("K1", "K2", "K3")]
    mysql_rows = [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in rows]
    cur.executemany(f"INSERT INTO kinds VALUES ({', '.join(['%s'] * (len(kinds) + 1))}, 7)", mysql_rows)
    sample_db.execute(f"CREATE TABLE mapping.kinds (code text PRIMARY KEY, "
                      f"{', '.join(ENUM_SET_YEAR[k][1] for k in kinds)})")
    config = project_config(write_config)
    sync_config(write_config, (
        f"  - name: kinds\n    target_table: kinds\n    target_schema: mapping\n"
        f"    source_type: legacy_mysql\n    via: {via}\n"
        f"    source_config: {{connection_env_prefix: LEG, schema: {legacy_mysql.name}, table: kinds}}\n"
        f"    primary_key: code\n"))
    env = legacy_mysql.env("LEG")
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr

    result = cli("--config", str(config), "sync", env=env)

    assert result.returncode == 0, result.stderr
    assert "kinds: inserted 3, updated 0" in result.stdout
    columns = ", ".join(ENUM_SET_YEAR[k][1].split()[0] for k in kinds)
    assert sample_db.execute(f"SELECT code, {columns} FROM mapping.kinds ORDER BY code").fetchall() == rows
