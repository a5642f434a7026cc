"""The audit log's storage: each audited statement keeps its rows' fields as
text (refdata.audit_batch), and refdata.audit_log reads them back a line per row,
as jsonb, whatever the values and the writer's session settings."""

from __future__ import annotations

import psycopg
import pytest

from test_backfill import apply_ok

CONFIG = """\
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_ref, source_column: k, target_table: ref, target_key: k, derive_columns: [t]}
"""
# Values whose text needs quoting, escaping or is easily confused with NULL.
AWKWARD = ["", " ", "a,b", 'say "hi"', "back\\slash", "(paren)", " lead", "trail ", "two\nlines", '\\"',
           "NULL", '""', "()", "中文,逗号", "tab\there", '"', "\\"]


@pytest.fixture
def ref(db, cli, write_config):
    db.execute("""CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
                  CREATE TABLE ref (k text PRIMARY KEY, t text, n numeric, i integer, f double precision, b boolean,
                                    j jsonb, ts timestamptz, tsl timestamp, d date, arr text[], bin bytea,
                                    iv interval, p positive, dropped text);
                  ALTER TABLE ref DROP COLUMN dropped;
                  CREATE TABLE fact (k text, t text)""")
    apply_ok(cli, write_config(CONFIG))
    return db


def lines(conn, where: str = "true") -> list[tuple]:
    return conn.execute(f"""SELECT operation, key, old_values, new_values FROM refdata.audit_log
                            WHERE table_name = 'ref'::regclass AND {where} ORDER BY id""").fetchall()


def test_values_read_back_as_to_jsonb_gives_them(ref, role):
    writer = role("rd_ref_writer", ["GRANT SELECT, INSERT, UPDATE ON ref TO {role}"])
    # Settings that change how values print: the audit does not depend on them.
    writer.execute("SET datestyle = 'German, DMY'; SET timezone = 'Asia/Shanghai'; SET extra_float_digits = -3; "
                   "SET bytea_output = 'escape'; SET intervalstyle = 'sql_standard'")
    for n, text in enumerate(AWKWARD):
        writer.execute("INSERT INTO ref (k, t) VALUES (%s, %s)", [f"k{n}", text])
    writer.execute("""INSERT INTO ref (k, t, n, i, f, b, j, ts, tsl, d, arr, bin, iv, p) VALUES
                      ('all', NULL, 12.50, -7, 1.0 / 3, true, '{"a": [1, "x,y"], "b": null}',
                       '2024-03-01 08:30:00.123456+08', '2024-03-01 08:30:00', '2024-12-31',
                       ARRAY['a', 'b c', NULL], '\\x00ff', '1 day 02:00:00', 5)""")
    writer.execute("""INSERT INTO ref (k, n, f) VALUES ('(odd) "key", here', 'NaN', '-Infinity')""")
    expected = {r[0]: r[1] for r in ref.execute("SELECT k, to_jsonb(r) FROM ref AS r").fetchall()}
    got = {line[1]["k"]: line[3] for line in lines(ref, "operation = 'INSERT'")}
    assert set(got) == set(expected)
    as_text = {"arr", "bin", "iv"}  # no JSON form of their own: their text
    for k, values in got.items():
        assert {c: v for c, v in values.items() if c not in as_text} == {
            c: v for c, v in expected[k].items() if c not in as_text}, k
    assert [got["all"][c] for c in sorted(as_text)] == ['{a,"b c",NULL}', "\\x00ff", "1 day 02:00:00"]
    assert [got[f"k{n}"]["t"] for n in range(len(AWKWARD))] == AWKWARD
    assert got["k0"]["n"] is None and got["all"]["t"] is None


def test_a_changed_key_is_two_lines_and_an_unchanged_row_none(ref):
    ref.execute("INSERT INTO ref (k, t, i) VALUES ('a', 'x', 1), ('b', 'y', 2), ('c', 'z', 3)")
    ref.execute("UPDATE ref SET k = CASE k WHEN 'a' THEN 'a2' ELSE k END, i = CASE k WHEN 'c' THEN 30 ELSE i END")
    assert [line for line in lines(ref, "operation = 'UPDATE'")] == [
        ("UPDATE", {"k": "a"}, {"k": "a", "t": "x", "i": 1, **dict.fromkeys(
            ["n", "f", "b", "j", "ts", "tsl", "d", "arr", "bin", "iv", "p", "_derived_from_domain", "_derived_at"]),
            "_source": "authoritative", "_needs_review": False}, None),
        ("UPDATE", {"k": "a2"}, None, {"k": "a2", "t": "x", "i": 1, **dict.fromkeys(
            ["n", "f", "b", "j", "ts", "tsl", "d", "arr", "bin", "iv", "p", "_derived_from_domain", "_derived_at"]),
            "_source": "authoritative", "_needs_review": False}),
        ("UPDATE", {"k": "c"}, {"i": 3}, {"i": 30}),
    ]


def test_a_bulk_update_pairs_each_row_across_batches(ref):
    """25,000 rows updated in one statement: three lines of storage, and each
    row's line holds its own old and new value."""
    ref.execute("INSERT INTO ref (k, i) SELECT 'k' || g, g FROM generate_series(1, 25000) AS g")
    ref.execute("UPDATE ref SET i = -i WHERE i % 7 <> 0")
    assert ref.execute("""SELECT operation, count(*), sum(array_length(coalesce(new_rows, old_rows), 1))
                          FROM refdata.audit_batch GROUP BY 1 ORDER BY 1""").fetchall() == [
        ("INSERT", 3, 25000), ("UPDATE", 3, 25000 - 25000 // 7)]
    updates = lines(ref, "operation = 'UPDATE'")
    assert len(updates) == 25000 - 25000 // 7
    assert all(old == {"i": int(key["k"][1:])} and new == {"i": -int(key["k"][1:])}
               for _, key, old, new in updates)
    ids = [r[0] for r in ref.execute("SELECT id FROM refdata.audit_log ORDER BY id").fetchall()]
    assert len(set(ids)) == len(ids)


def test_deletes_keep_the_whole_row(ref):
    ref.execute("""INSERT INTO ref (k, t, b) VALUES ('a', 'x,"y"', false)""")
    ref.execute("DELETE FROM ref")
    [(operation, key, old, new)] = lines(ref, "operation = 'DELETE'")
    assert (operation, key, old["t"], old["b"], new) == ("DELETE", {"k": "a"}, 'x,"y"', False, None)


def test_an_old_audit_log_table_is_named_not_dropped(ref, cli, write_config):
    """A database whose refdata.audit_log is still the table of an earlier
    refdata: apply stops with a line saying what to do, and keeps the table."""
    ref.execute("DROP VIEW refdata.audit_log")
    ref.execute("CREATE TABLE refdata.audit_log (id bigint, key jsonb)")
    ref.execute("""INSERT INTO refdata.audit_log VALUES (1, '{"k": "a"}')""")
    result = cli("--config", str(write_config(CONFIG)), "apply")
    assert result.returncode != 0
    assert "refdata.audit_log is the table of an earlier refdata" in result.stderr
    assert ref.execute("SELECT count(*) FROM refdata.audit_log").fetchone() == (1,)
    ref.execute("ALTER TABLE refdata.audit_log RENAME TO audit_log_before")
    apply_ok(cli, write_config(CONFIG))
    ref.execute("INSERT INTO ref (k) VALUES ('b')")
    assert [line[1] for line in lines(ref)] == [{"k": "b"}]
    assert ref.execute("SELECT count(*) FROM refdata.audit_log_before").fetchone() == (1,)


def test_the_storage_refuses_lines_that_cannot_be_read_back(ref):
    with pytest.raises(psycopg.errors.CheckViolation):
        ref.execute("""INSERT INTO refdata.audit_batch (table_name, operation, key_columns, columns, types, new_rows)
                       VALUES ('ref', 'INSERT', '{k}', '{k,t}', '{text}', '{(a,b)}')""")


def test_fields_are_their_types_output_as_the_row_prints_them(ref):
    """Each field is kept as its type's output function writes it, also where
    a cast to text would write something else (char(n) keeps its padding,
    inet its address as written, a boolean its t or f)."""
    ref.execute("ALTER TABLE ref ADD COLUMN c char(5), ADD COLUMN ip inet, ADD COLUMN ch \"char\"")
    ref.execute("INSERT INTO ref (k, c, ip, ch, b) VALUES ('x', 'ab', '10.0.0.1', 'q', false)")
    [(_, key, _, new)] = lines(ref, "operation = 'INSERT'")
    expected = ref.execute("SELECT to_jsonb(r) FROM ref AS r").fetchone()[0]
    assert (key, new) == ({"k": "x"}, expected)
    assert [new[c] for c in ("c", "ip", "ch", "b")] == ["ab   ", "10.0.0.1", "q", False]


def test_lines_stored_as_record_literals_read_back_the_same(ref):
    """Lines written before each field was kept apart hold each row's record
    literal (row::text, under the audit's settings): the log reads them back
    as it reads the lines written now, an UPDATE's rows paired by position."""
    ref.execute("SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres'; SET extra_float_digits = 1; "
                "SET bytea_output = 'hex'")
    for n, text in enumerate(AWKWARD):
        ref.execute("INSERT INTO ref (k, t) VALUES (%s, %s)", [f"k{n}", text])
    ref.execute("""INSERT INTO ref (k, t, n, i, f, b, j, ts, tsl, d, arr, bin, iv, p) VALUES
                   ('all', NULL, 12.50, -7, 1.0 / 3, true, '{"a": [1, "x,y"], "b": null}',
                    '2024-03-01 08:30:00.123456+08', '2024-03-01 08:30:00', '2024-12-31',
                    ARRAY['a', 'b c', NULL], '\\x00ff', '1 day 02:00:00', 5)""")
    literals = "SELECT array_agg(r::text ORDER BY r.k) FROM ref AS r"
    before = ref.execute(literals).fetchone()[0]
    ref.execute("""UPDATE ref SET t = coalesce(t, '') || ',"x"', i = coalesce(i, 0) + 1""")
    after = ref.execute(literals).fetchone()[0]
    [(last,)] = ref.execute("SELECT max(id) FROM refdata.audit_batch").fetchall()
    ref.execute("""INSERT INTO refdata.audit_batch (table_name, operation, key_columns, columns, types, old_rows, new_rows)
                   SELECT b.table_name, v.op, b.key_columns, b.columns, b.types, v.o, v.n
                   FROM (SELECT * FROM refdata.audit_batch WHERE id = %s) AS b,
                        (VALUES ('INSERT', NULL, %s::text[]), ('UPDATE', %s::text[], %s::text[])) AS v(op, o, n)""",
                [last, before, before, after])

    def lines_of(where: str) -> list:
        return sorted((op, key["k"], old, new) for op, key, old, new in lines(ref, where))

    now = lines_of(f"id < {last + 1} * 100000")
    assert len(now) == 2 * (len(AWKWARD) + 1)
    assert lines_of(f"id > {last + 1} * 100000") == now
