"""The audit log's storage: each audited statement keeps its rows' fields as
text (refdata.audit_batch), and refdata.audit_log reads them back a line per row,
as jsonb, whatever the values and the writer's session settings."""

from __future__ import annotations

import json

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
    inet its address as written, a boolean its t or f), in a statement of a
    few rows and in one of many; and the table's columns as they are when
    it is written, also after ALTER TABLE in the same session."""
    ref.execute("INSERT INTO ref (k, t) VALUES ('before', 'x')")
    ref.execute("ALTER TABLE ref ADD COLUMN c char(5), ADD COLUMN ip inet, ADD COLUMN ch \"char\", DROP COLUMN t")
    ref.execute("INSERT INTO ref (k, c, ip, ch, b) VALUES ('x', 'ab', '10.0.0.1', 'q', false)")
    ref.execute("""INSERT INTO ref (k, c, ip, ch, b)
                   SELECT 'x' || g, 'ab', ('10.0.0.' || g)::inet, 'q', g % 2 = 0 FROM generate_series(1, 40) AS g""")
    got = {key["k"]: new for _, key, _, new in lines(ref, "operation = 'INSERT'")}
    expected = {r[0]: r[1] for r in ref.execute("SELECT k, to_jsonb(r) FROM ref AS r").fetchall()}
    assert got.pop("before")["t"] == "x" and "t" not in expected.pop("before")
    assert got == expected
    assert [got["x"][c] for c in ("c", "ip", "ch", "b")] == ["ab   ", "10.0.0.1", "q", False]
    assert [got["x40"][c] for c in ("c", "ip", "ch", "b")] == ["ab   ", "10.0.0.40", "q", True]


def test_lines_stored_as_record_literals_read_back_the_same(ref):
    """Lines written before each field was kept apart hold each row's record
    literal (row::text, under the audit's settings): the log reads them back
    as it reads the lines written now, an UPDATE's rows paired by position,
    also in a session that reads backslashes in string literals as escapes."""
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

    ref.execute("SET standard_conforming_strings = off")

    def lines_of(where: str) -> list:
        return sorted((op, key["k"], old, new) for op, key, old, new in lines(ref, where))

    now = lines_of(f"id < {last + 1} * 100000")
    assert len(now) == 2 * (len(AWKWARD) + 1)
    assert lines_of(f"id > {last + 1} * 100000") == now


def test_a_few_rows_and_many_are_kept_alike(ref, dsn):
    """A statement of a few rows and one of many keep each row's fields the
    same, whatever the writer's settings: rows inserted one by one, then
    updated and deleted in one statement each, read back as the table had
    them; an UPDATE pairs each row's old and new fields; a statement that
    writes nothing leaves no line."""
    writer = psycopg.connect(dsn, autocommit=True)
    writer.execute("SET datestyle = 'German, DMY'; SET extra_float_digits = -3; SET bytea_output = 'escape'; "
                   "SET intervalstyle = 'sql_standard'")
    table = "SELECT k, to_jsonb(r) FROM ref AS r"
    for n, text in enumerate(AWKWARD + [f"pad{n}" for n in range(20)]):
        writer.execute("INSERT INTO ref (k, t, i) VALUES (%s, %s, %s)", [f"k{n}", text, n])
    writer.execute("""INSERT INTO ref (k, t, n, i, f, b, j, ts, tsl, d, arr, bin, iv, p) VALUES
                   ('all', NULL, 12.50, -7, 1.0 / 3, true, '{"a": [1, "x,y"], "b": null}',
                    '2024-03-01 08:30:00.123456+08', '2024-03-01 08:30:00', '2024-12-31',
                    ARRAY['a', 'b c', NULL], '\\x00ff', '1 day 02:00:00', 5)""")
    before = dict(ref.execute(table).fetchall())
    writer.execute("UPDATE ref SET i = 0 WHERE false")
    writer.execute("DELETE FROM ref WHERE false")
    writer.execute("""UPDATE ref SET i = i + 1, t = t || ',"'""")
    after = dict(ref.execute(table).fetchall())
    writer.execute("DELETE FROM ref")
    assert ref.execute("""SELECT operation, count(*), max(array_length(coalesce(new_rows, old_rows), 1))
                          FROM refdata.audit_batch GROUP BY 1 ORDER BY 1""").fetchall() == [
        ("DELETE", 1, 38), ("INSERT", 38, 1), ("UPDATE", 1, 38)]
    as_text = {"arr", "bin", "iv"}

    def comparable(rows: dict) -> dict:
        return {k: {c: v for c, v in row.items() if c not in as_text} for k, row in rows.items()}

    inserted = {key["k"]: new for _, key, _, new in lines(ref, "operation = 'INSERT'")}
    deleted = {key["k"]: old for _, key, old, _ in lines(ref, "operation = 'DELETE'")}
    assert comparable(inserted) == comparable(before) and comparable(deleted) == comparable(after)
    assert [inserted["all"][c] for c in sorted(as_text)] == [deleted["all"][c] for c in sorted(as_text)] == [
        '{a,"b c",NULL}', "\\x00ff", "1 day 02:00:00"]
    updated = {key["k"]: (old, new) for _, key, old, new in lines(ref, "operation = 'UPDATE'")}
    assert updated["k3"] == ({"i": 3, "t": 'say "hi"'}, {"i": 4, "t": 'say "hi",\"'})
    assert updated["all"] == ({"i": -7}, {"i": -6})
    assert len(updated) == 38


def test_every_auto_derived_row_is_announced(ref, dsn, cli, write_config, tmp_path):
    """One notification per auto-derived row a statement inserts, whether it
    inserts one row or many, with the table, the key and the domain; a load
    deriving many parents in one statement announces each, and its lines
    name the domain."""
    csv = tmp_path / "facts.csv"
    csv.write_text("k,t\n" + "".join(f"load{g},x\n" for g in range(1, 41)), encoding="utf-8")
    listener = psycopg.connect(dsn, autocommit=True)
    try:
        listener.execute("LISTEN refdata_auto_derived")
        ref.execute("""INSERT INTO ref (k, "_source", "_needs_review", "_derived_from_domain")
                       VALUES ('one', 'auto_derived', true, 'd'), ('mine', 'authoritative', false, NULL)""")
        ref.execute("""INSERT INTO ref (k, "_source", "_needs_review", "_derived_from_domain")
                       SELECT 'many' || g, 'auto_derived', true, 'd' || g FROM generate_series(1, 40) AS g""")
        result = cli("--config", str(write_config(CONFIG)), "load", "d", str(csv))
        assert result.returncode == 0, result.stderr
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=81)]
        payloads += [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]
    finally:
        listener.close()
    assert sorted(payloads, key=lambda p: p["key"]["k"]) == sorted(
        [{"table": "public.ref", "key": {"k": "one"}, "domain": "d"}]
        + [{"table": "public.ref", "key": {"k": f"many{g}"}, "domain": f"d{g}"} for g in range(1, 41)]
        + [{"table": "public.ref", "key": {"k": f"load{g}"}, "domain": "d"} for g in range(1, 41)],
        key=lambda p: p["key"]["k"])
    assert ref.execute("""SELECT action, domain, array_length(new_rows, 1) FROM refdata.audit_batch
                          WHERE operation = 'INSERT' ORDER BY id""").fetchall() == [
        (None, None, 2), (None, None, 40), ("derive", "d", 40)]


ODD_CONFIG = """\
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_odd, source_column: k, target_table: odd, target_key: k}
"""
WEIRD = 'say ""hi"", 名 字'  # a column name with quotes, a comma, spaces and Chinese, as SQL spells it


def test_one_row_and_forty_store_the_same_fields(db, cli, write_config, role):
    """The same hostile rows written one per statement (each row's fields
    from its record literal) and forty per statement (each column's output
    function) store the same fields, field for field, for INSERT, UPDATE
    (old and new paired) and DELETE, each the column's text as its type
    prints it: text needing quotes, escapes or easily taken for NULL, a
    composite, an array, jsonb, bytea, numeric, timestamptz, float and
    interval, a column dropped in the middle, a generated column, a column
    named with quotes and Chinese, 100 more columns; written by a role whose
    session prints dates, floats, bytea and intervals otherwise and reads
    backslashes in string literals as escapes."""
    extra = ", ".join(f"c{n:03} integer" for n in range(1, 101))
    db.execute(f"""CREATE TYPE pair AS (a text, b integer);
                   CREATE TABLE odd (k text PRIMARY KEY, t text, gone text, "{WEIRD}" text, pr pair, arr text[],
                                     j jsonb, bin bytea, n numeric, ts timestamptz, f double precision, iv interval,
                                     g text GENERATED ALWAYS AS (upper(t) || '!') STORED, {extra});
                   ALTER TABLE odd DROP COLUMN gone;
                   CREATE TABLE src AS SELECT * FROM odd WITH NO DATA;
                   ALTER TABLE src DROP COLUMN g;
                   CREATE TABLE fact (k text)""")
    apply_ok(cli, write_config(ODD_CONFIG))
    values = AWKWARD + ["中文", "\\\\n", "a\\,b", "", None, ",,", "((", "x" + 'a,"b"\\ (c)\n' * 5000]
    columns = [r[0] for r in db.execute("""SELECT attname FROM pg_attribute WHERE attrelid = 'src'::regclass
                                           AND attnum > 0 AND NOT attisdropped ORDER BY attnum""").fetchall()]
    rows = []
    for i in range(40):
        v, w = values[i % len(values)], values[(i + 7) % len(values)]
        rows.append([f"k{i:02}", v, w, f"({'' if v is None else json.dumps(v)},{i})" if i % 5 else None,
                     [v, w, "a,b", '"q"', None, "NULL", "{x}", "\\", " "], json.dumps({"v": v, "q": '"x",\\'}),
                     bytes([0, 92, 44, 34, 40, i]), "12.500" if i % 2 else "-0.0100", "2024-03-01 08:30:00.123456+08",
                     1 / 3 if i % 3 else 1e-300, "1 day 02:00:03.5", *range(i, i + 100)])
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO src VALUES ({', '.join(['%s'] * len(columns))})", rows)
    listed = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    writer = role("rd_odd_writer", ["GRANT SELECT, INSERT, UPDATE, DELETE ON odd TO {role}",
                                    "GRANT SELECT ON src TO {role}"])
    writer.autocommit = True
    writer.execute("SET datestyle = 'German, DMY'; SET timezone = 'America/St_Johns'; SET extra_float_digits = -3; "
                   "SET bytea_output = 'escape'; SET intervalstyle = 'sql_standard'; "
                   "SET standard_conforming_strings = off")
    insert = f"INSERT INTO odd ({listed}) SELECT {listed} FROM src"
    # under standard_conforming_strings = off the literal appends ,"\ to t
    update = ("""UPDATE odd SET t = t || ',"\\\\', pr = ROW((pr).a || ' ("', (pr).b + 1), arr = arr || ARRAY[t, NULL],
                 c050 = -c050, n = n * 10""")
    after = []  # the table's fields after each statement (or each 40)
    for one_by_one in (True, False):
        for sql in (insert, update, "DELETE FROM odd"):
            for i in range(40) if one_by_one else [None]:
                writer.execute(sql + (" WHERE k = %s" if one_by_one else ""), [f"k{i:02}"] if one_by_one else [])
            after.append(dict(table_fields(db, "America/St_Johns")))
    assert after[3:] == after[:3] and after[2] == {}
    batches = db.execute("""SELECT operation, array_length(coalesce(new_rows, old_rows), 1), columns, old_rows, new_rows
                            FROM refdata.audit_batch ORDER BY id""").fetchall()
    assert [(op, size) for op, size, *_ in batches] == (
        [("INSERT", 1)] * 40 + [("UPDATE", 1)] * 40 + [("DELETE", 1)] * 40
        + [("INSERT", 40), ("UPDATE", 40), ("DELETE", 40)])
    assert batches[0][2] == columns[:11] + ["g"] + columns[11:] + [
        "_source", "_needs_review", "_derived_from_domain", "_derived_at"]
    few, many = {}, {}
    for op, size, names, old, new in batches:
        at = names.index("k")
        for n in range(size):
            o, w = old[n] if old else None, new[n] if new else None
            (few if size == 1 else many)[op, (o or w)[at]] = (o, w)
    assert set(few) == set(many) and len(few) == 120
    for key in sorted(few):
        assert few[key] == many[key], key
    own = len(columns) + 1
    inserted, updated = after[0], after[1]
    assert len(inserted) == 40
    for key in sorted(inserted):
        old, new = many["UPDATE", key]
        assert (many["INSERT", key][1][:own], old[:own]) == (inserted[key],) * 2
        assert (new[:own], many["DELETE", key][0][:own]) == (updated[key],) * 2
    assert updated["k03"][1] == 'say "hi",' + '"\\'
    assert updated["k01"][names.index(WEIRD.replace('""', '"'))] == "two\nlines"


def table_fields(conn, timezone: str) -> list[tuple]:
    """Each row of odd's own fields (not refdata's tracking columns) as its
    type's output writes it under refdata.audit's settings."""
    conn.execute(f"SET timezone = '{timezone}'; SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres'; "
                 "SET extra_float_digits = 1; SET bytea_output = 'hex'")
    try:
        fields = conn.execute("""SELECT string_agg(format('r.%I::text', attname), ', ' ORDER BY attnum)
                                 FROM pg_attribute WHERE attrelid = 'odd'::regclass AND attnum > 0
                                 AND NOT attisdropped AND attname NOT LIKE '\\_%'""").fetchone()[0]
        return conn.execute(f"SELECT k, ARRAY[{fields}] FROM odd AS r").fetchall()
    finally:
        conn.execute("RESET ALL")
