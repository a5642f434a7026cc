"""The generated backfill, observed through real inserts: after `refdata apply`
a fact row never fails on a missing parent, and every invented parent is
marked auto_derived and in need of review."""

from __future__ import annotations

import re
import textwrap
import threading
import time
from datetime import date

import psycopg
import pytest
from psycopg import sql

from helpers import line_of, shipped_single_file

from generator.config import PROJECT_ROOT

from helpers import wait_until_blocked

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"
FACT = 'business."规模明细"'
REFERENCE_TABLES = ["年金计划", "组合计划", "产品线", "组织架构"]
TRACKING = '"_source", "_needs_review", "_derived_from_domain"'


def apply_ok(cli, path) -> str:
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def insert(conn, table: str, **values):
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in values)
    marks = sql.SQL(", ").join(sql.Placeholder() * len(values))
    conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(sql.SQL(table), cols, marks), list(values.values()))


def insert_fact(conn, **values):
    values.setdefault("月度", date(2025, 10, 1))
    insert(conn, FACT, **values)


def rows(conn, query: str, params=None) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def count(conn, table: str, where: str = "true") -> int:
    return conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


def reference_counts(conn) -> dict:
    return {t: count(conn, f'mapping."{t}"') for t in REFERENCE_TABLES}


def config(text: str) -> str:
    return textwrap.dedent(text)


@pytest.fixture
def applied(sample_db, cli):
    """The sample schema with its authoritative rows and the shipped config applied."""
    apply_ok(cli, SAMPLE_CONFIG)
    return sample_db


# -- apply --------------------------------------------------------------------


def test_apply_twice_is_a_noop(sample_db, cli, snapshot):
    before_apply = snapshot(sample_db)
    assert before_apply["functions"] == [] and before_apply["triggers"] == []
    out = apply_ok(cli, SAMPLE_CONFIG)
    assert re.search(r"^applied: \d+ objects created, 0 replaced, 0 dropped, \d+ unchanged \(", out, re.M)
    first = snapshot(sample_db)
    assert "refdata.annuity_performance__backfill()" in [f[0] for f in first["functions"]]
    fact_triggers = [t[:2] for t in first["triggers"] if t[0] == 'business."规模明细"']
    assert fact_triggers == [('business."规模明细"', "annuity_performance__backfill"),
                             ('business."规模明细"', "annuity_performance__load_begin"),
                             ('business."规模明细"', "annuity_performance__load_verify")]
    assert len(first["domain_param"]) == 1
    time.sleep(0.05)  # a rewritten row would get a later updated_at
    assert apply_ok(cli, SAMPLE_CONFIG).startswith("unchanged: ")
    assert snapshot(sample_db) == first


def test_reapply_does_not_lock_out_readers_of_reference_tables(sample_db, cli, dsn):
    apply_ok(cli, SAMPLE_CONFIG)
    with psycopg.connect(dsn) as reader:
        # what every FK check holds on a parent row while a fact is written
        reader.execute("""SELECT FROM mapping."年金计划" WHERE "年金计划号" = 'P00001' FOR KEY SHARE""")
        result = cli("--config", str(SAMPLE_CONFIG), "apply", env={"PGOPTIONS": "-c lock_timeout=5s"})
        assert result.returncode == 0, result.stderr
        reader.rollback()


def test_existing_rows_read_authoritative(sample_db, cli):
    before = reference_counts(sample_db)
    assert before == {"年金计划": 40, "组合计划": 100, "产品线": 4, "组织架构": 10}
    apply_ok(cli, SAMPLE_CONFIG)
    assert reference_counts(sample_db) == before
    for t in REFERENCE_TABLES:
        assert rows(
            sample_db,
            f'SELECT "_source", "_needs_review", "_derived_from_domain", "_derived_at", count(*) '
            f'FROM mapping."{t}" GROUP BY 1, 2, 3, 4',
        ) == [("authoritative", False, None, None, before[t])], t


def test_tracking_column_contract(applied):
    cols = rows(
        applied,
        """SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(adbin, adrelid)
           FROM pg_attribute LEFT JOIN pg_attrdef ON (adrelid, adnum) = (attrelid, attnum)
           WHERE attrelid = 'mapping."组织架构"'::regclass AND attname LIKE '\\_%' ORDER BY attnum""",
    )
    assert cols == [
        ("_source", "text", True, "'authoritative'::text"),
        ("_needs_review", "boolean", True, "false"),
        ("_derived_from_domain", "text", False, None),
        ("_derived_at", "timestamp with time zone", False, None),
    ]
    with pytest.raises(psycopg.errors.CheckViolation):
        applied.execute("""UPDATE mapping."组织架构" SET "_source" = 'guessed' WHERE "机构代码" = 'G000'""")


# -- the main job -------------------------------------------------------------


def test_new_keys_derive_marked_parents(applied):
    before = reference_counts(applied)
    insert_fact(
        applied, 计划代码="P90001", 计划名称="新计划", 计划类型="单一计划", 客户名称="新客户",
        组合代码="QT900001", 组合名称="新组合", 组合类型="含权益", 产品线代码="PL999", 业务类型="企业年金",
        机构代码="G900", 机构名称="新分公司", 期末资产规模=100,
    )
    after = reference_counts(applied)
    assert {t: after[t] - before[t] for t in after} == {t: 1 for t in REFERENCE_TABLES}
    assert rows(
        applied,
        f"""SELECT "年金计划号", "计划全称", "计划类型", "客户名称", "主拓机构代码", "计划状态", {TRACKING},
                   "_derived_at" IS NOT NULL AND "_derived_at" <= now()
            FROM mapping."年金计划" WHERE "_source" <> 'authoritative'""",
    ) == [("P90001", "新计划", "单一计划", "新客户", "G900", "待审核", "auto_derived", True, "annuity_performance", True)]
    assert rows(applied, f"""SELECT "组合代码", "年金计划号", "组合名称", "组合类型", {TRACKING}
                             FROM mapping."组合计划" WHERE "_needs_review" """) == [
        ("QT900001", "P90001", "新组合", "含权益", "auto_derived", True, "annuity_performance")
    ]
    assert rows(applied, f"""SELECT "产品线代码", "产品线", "业务大类", {TRACKING}
                             FROM mapping."产品线" WHERE "_needs_review" """) == [
        ("PL999", "待确认产品线 PL999", "企业年金", "auto_derived", True, "annuity_performance")
    ]
    assert rows(applied, f"""SELECT "机构代码", "机构", "上级机构代码", {TRACKING}
                             FROM mapping."组织架构" WHERE "_needs_review" """) == [
        ("G900", "新分公司", None, "auto_derived", True, "annuity_performance")
    ]
    assert count(applied, FACT) == 1


def test_parent_look_up_uses_the_key_index_in_a_bulk_insert(applied):
    """Parents analysed while empty, then one INSERT of many facts with new
    keys: each row's look-up of its parent stays an index probe (a plan
    cached for the empty table would scan the growing table once a row). The
    declared foreign key goes: PostgreSQL's own check of it caches such a
    plan too, which only statistics of the filled table avoid."""
    applied.execute(f'ALTER TABLE {FACT} DROP CONSTRAINT "规模明细_计划代码_fkey"')
    applied.execute('TRUNCATE mapping."年金计划" CASCADE')
    applied.execute('ANALYZE mapping."年金计划"')
    scans = """SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relid = 'mapping."年金计划"'::regclass"""
    with applied.transaction():  # the counters are not flushed inside a transaction
        seq, idx = applied.execute(scans).fetchone()
        applied.execute(f"""INSERT INTO {FACT} ("月度", "计划代码")
                            SELECT date '2025-10-01', 'B' || i FROM generate_series(1, 300) AS i""")
        after = applied.execute(scans).fetchone()
    assert count(applied, 'mapping."年金计划"', "\"_source\" = 'auto_derived'") == 300
    assert after[0] - seq == 0 and after[1] - idx >= 300


def test_known_keys_derive_nothing(applied):
    before = reference_counts(applied)
    insert_fact(applied, 计划代码="P00001", 组合代码="QT000001", 产品线代码="PL201", 机构代码="G001")
    assert reference_counts(applied) == before
    assert count(applied, FACT) == 1


def test_insert_only_role_gets_parents_but_cannot_write_reference_tables(applied, role):
    writer = role(
        "refdata_fact_writer",
        ["GRANT USAGE ON SCHEMA business TO {role}", 'GRANT INSERT ON business."规模明细" TO {role}'],
    )
    insert_fact(writer, 计划代码="P90002", 计划名称="角色计划", 组合代码="QT900002", 组合名称="角色组合",
                产品线代码="PL998", 机构代码="G901", 机构名称="角色分公司")
    assert rows(applied, """SELECT "年金计划号", "_source", "_needs_review" FROM mapping."年金计划"
                            WHERE "年金计划号" = 'P90002'""") == [("P90002", "auto_derived", True)]
    assert count(applied, 'mapping."组合计划"', """"组合代码" = 'QT900002' AND "_source" = 'auto_derived'""") == 1
    assert count(applied, 'mapping."产品线"', """"产品线代码" = 'PL998' AND "_source" = 'auto_derived'""") == 1
    assert count(applied, 'mapping."组织架构"', """"机构代码" = 'G901' AND "_source" = 'auto_derived'""") == 1

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema mapping"):
        writer.execute("""INSERT INTO mapping."年金计划" ("年金计划号", "计划全称", "计划状态") VALUES ('PX', 'x', 'x')""")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema refdata"):
        writer.execute("SELECT * FROM refdata.domain_param")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema refdata"):
        writer.execute("SELECT refdata.annuity_performance__backfill()")
    assert count(applied, 'mapping."年金计划"', """"年金计划号" = 'PX'""") == 0


def test_generated_functions_are_not_executable_by_public(sample_db, cli, write_config, role):
    statement_mode = shipped_single_file().replace(
        "    fact_table: 规模明细\n", "    fact_table: 规模明细\n    trigger_mode: statement\n    defer_foreign_keys: true\n")
    for path in (SAMPLE_CONFIG, write_config(statement_mode)):
        apply_ok(cli, path)
        assert rows(sample_db, """SELECT p.oid::regprocedure::text FROM pg_proc AS p,
                                         aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                                  WHERE p.pronamespace = 'refdata'::regnamespace AND p.prosecdef
                                    AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'""") == []
    # A role that can see schema refdata and create tables of its own must
    # not get the owner's rights through the definer functions.
    intruder = role("refdata_intruder", ["GRANT USAGE ON SCHEMA refdata TO {role}",
                                         "GRANT CREATE ON SCHEMA public TO {role}"])
    intruder.execute('CREATE TABLE public.mine ("计划代码" varchar(32))')
    for function in ("annuity_performance__backfill", "annuity_performance__backfill_set"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
            intruder.execute(f"CREATE TRIGGER t BEFORE INSERT ON public.mine FOR EACH ROW "
                             f"EXECUTE FUNCTION refdata.{function}()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
        intruder.execute("SELECT * FROM refdata.annuity_performance__load()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
        intruder.execute("SELECT * FROM refdata.annuity_performance__load_parents(NULL, NULL, true)")


def test_reference_table_privileges_still_apply_with_schema_usage(applied, role):
    writer = role(
        "refdata_fact_writer2",
        [
            "GRANT USAGE ON SCHEMA business, mapping TO {role}",
            'GRANT INSERT ON business."规模明细" TO {role}',
        ],
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match='permission denied for table 年金计划'):
        writer.execute("""INSERT INTO mapping."年金计划" ("年金计划号", "计划全称", "计划状态") VALUES ('PX', 'x', 'x')""")
    insert_fact(writer, 计划代码="P90003")
    assert count(applied, 'mapping."年金计划"', """"年金计划号" = 'P90003' AND "_needs_review" """) == 1


def test_copy_with_new_keys(applied):
    before = reference_counts(applied)
    columns = ["月度", "计划代码", "计划名称", "组合代码", "组合名称", "产品线代码", "业务类型", "机构代码", "机构名称"]
    data = [
        (date(2025, 10, 1), "P90010", "复制计划一", "QT900010", "组合十", "PL990", "职业年金", "G910", "复制一"),
        (date(2025, 10, 1), "P90010", "复制计划一(重复)", "QT900011", "组合十一", "PL990", "职业年金", "G910", "x"),
        (date(2025, 10, 1), "P90011", None, "QT900012", None, "PL201", None, "G001", None),
        (date(2025, 10, 1), "P00001", "已有", "QT000001", "已有", "PL201", None, "G001", None),
    ]
    with applied.cursor() as cur:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        with cur.copy(sql.SQL("COPY business.{} ({}) FROM STDIN").format(sql.Identifier("规模明细"), cols)) as cp:
            for row in data:
                cp.write_row(row)
    assert count(applied, FACT) == 4
    after = reference_counts(applied)
    assert {t: after[t] - before[t] for t in after} == {"年金计划": 2, "组合计划": 3, "产品线": 1, "组织架构": 1}
    assert rows(applied, """SELECT "年金计划号", "计划全称", "计划状态" FROM mapping."年金计划"
                            WHERE "_source" = 'auto_derived' ORDER BY 1""") == [
        ("P90010", "复制计划一", "待审核"),  # the first row that names a new key makes the parent
        ("P90011", "(待补充)", "待审核"),
    ]
    assert rows(applied, """SELECT "组合代码", "年金计划号" FROM mapping."组合计划"
                            WHERE "_source" = 'auto_derived' ORDER BY 1""") == [
        ("QT900010", "P90010"), ("QT900011", "P90010"), ("QT900012", "P90011"),
    ]


def test_multi_row_insert_with_repeated_new_key(applied):
    applied.execute(
        """INSERT INTO business."规模明细" ("月度", "计划代码", "机构代码")
           VALUES ('2025-10-01', 'P90020', 'G920'), ('2025-11-01', 'P90020', 'G920'), ('2025-12-01', 'P90020', 'G920')"""
    )
    assert count(applied, FACT) == 3
    assert count(applied, 'mapping."年金计划"', """"年金计划号" = 'P90020'""") == 1
    assert count(applied, 'mapping."组织架构"', """"机构代码" = 'G920'""") == 1


def test_dependent_parents_both_new_in_one_row(applied):
    # fk_portfolio depends on fk_plan: the new portfolio's row references the
    # new plan (a declared FK), so the plan must be made first.
    insert_fact(applied, 计划代码="P90030", 计划名称="同行新计划", 组合代码="QT900030", 组合名称="同行新组合")
    assert rows(applied, """SELECT p."年金计划号", p."计划全称", q."组合代码", q."组合名称", p."_source", q."_source"
                            FROM mapping."组合计划" q JOIN mapping."年金计划" p USING ("年金计划号")
                            WHERE q."组合代码" = 'QT900030'""") == [
        ("P90030", "同行新计划", "QT900030", "同行新组合", "auto_derived", "auto_derived")
    ]


def test_null_keys_are_skipped(applied):
    before = reference_counts(applied)
    insert_fact(applied, 计划代码=None, 组合代码=None, 产品线代码=None, 机构代码=None, 计划名称="无键")
    insert_fact(applied)
    assert count(applied, FACT) == 2
    assert reference_counts(applied) == before


def test_authoritative_parent_is_never_overwritten(applied):
    query = 'SELECT * FROM mapping."年金计划" WHERE "年金计划号" = %s'
    before = rows(applied, query, ["P00001"])
    assert before and before[0][-4:] == ("authoritative", False, None, None)
    insert_fact(applied, 计划代码="P00001", 计划名称="另一个名字", 计划类型="集合计划", 客户名称="别人",
                机构代码="G009", 期末资产规模=10**12)
    insert_fact(applied, 计划代码="P00001", 计划名称="另一个名字")
    # an UPDATE of the key column fires the trigger: one row moves to a new
    # plan (derived, so the trigger ran), the other names P00001 again
    applied.execute("""UPDATE business."规模明细"
                       SET "计划代码" = CASE WHEN "机构代码" IS NULL THEN 'P90099' ELSE 'P00001' END,
                           "计划名称" = '再一个名字', "客户名称" = NULL""")
    assert rows(applied, query, ["P00001"]) == before
    assert rows(applied, """SELECT "计划全称", "_source" FROM mapping."年金计划" WHERE "年金计划号" = 'P90099'""") == [
        ("再一个名字", "auto_derived")]


def test_auto_derived_parent_is_kept_by_insert_missing(applied):
    insert_fact(applied, 机构代码="G930", 机构名称="第一次")
    insert_fact(applied, 机构代码="G930", 机构名称="第二次")
    assert rows(applied, """SELECT "机构" FROM mapping."组织架构" WHERE "机构代码" = 'G930'""") == [("第一次",)]


def test_update_of_a_key_column_derives_the_new_parent(applied):
    insert_fact(applied, 计划代码="P00001", 机构代码="G001")
    before = reference_counts(applied)
    applied.execute("""UPDATE business."规模明细" SET "机构代码" = 'G940', "机构名称" = '改过的'""")
    after = reference_counts(applied)
    assert {t: after[t] - before[t] for t in after} == {"年金计划": 0, "组合计划": 0, "产品线": 0, "组织架构": 1}
    assert rows(applied, f"""SELECT "机构", {TRACKING} FROM mapping."组织架构" WHERE "机构代码" = 'G940'""") == [
        ("改过的", "auto_derived", True, "annuity_performance")
    ]
    applied.execute("""UPDATE business."规模明细" SET "计划代码" = 'P90040'""")
    assert count(applied, 'mapping."年金计划"', """"年金计划号" = 'P90040' AND "_source" = 'auto_derived'""") == 1


def test_defaults_fill_not_null_columns(applied):
    insert_fact(applied, 计划代码="P90050")
    assert rows(applied, """SELECT "计划全称", "计划状态", "计划类型", "客户名称" FROM mapping."年金计划"
                            WHERE "年金计划号" = 'P90050'""") == [("(待补充)", "待审核", None, None)]


def test_template_aggregation(applied):
    insert_fact(applied, 产品线代码="PL960", 业务类型="职业年金")
    assert rows(applied, """SELECT "产品线", "业务大类" FROM mapping."产品线" WHERE "产品线代码" = 'PL960'""") == [
        ("待确认产品线 PL960", "职业年金")
    ]


# -- blank markers ------------------------------------------------------------


BLANKS_SCHEMA = """
    CREATE SCHEMA mapping;
    CREATE SCHEMA business;
    CREATE TABLE mapping."组织架构" ("机构代码" text PRIMARY KEY, "机构" text);
    CREATE TABLE business."规模明细" ("id" serial PRIMARY KEY, "机构代码" text, "机构名称" text);
"""


def blanks_config(skip: bool) -> str:
    return config(
        f"""\
        domains:
          annuity_performance:
            fact_schema: business
            fact_table: 规模明细
            foreign_keys:
              - name: fk_organization
                source_column: 机构代码
                target_schema: mapping
                target_table: 组织架构
                target_key: 机构代码
                backfill_columns: [{{source: 机构名称, target: 机构}}]
                skip_blank_values: {str(skip).lower()}
                blank_values: ["(空白)", "-"]
        """
    )


def derived_keys(conn) -> list[str]:
    return [r[0] for r in rows(conn, """SELECT "机构代码" FROM mapping."组织架构" ORDER BY 1""")]


def test_blank_markers_are_skipped(db, cli, write_config):
    db.execute(BLANKS_SCHEMA)
    apply_ok(cli, write_config(blanks_config(True)))
    for key in ["", "   ", "(空白)", " (空白) ", "-", None, "G1"]:
        insert(db, FACT, 机构代码=key, 机构名称="x")
    assert count(db, FACT) == 7
    assert derived_keys(db) == ["G1"]


@pytest.mark.parametrize(
    "key",
    [
        "\t",
        " \n ",
        "\u3000",
    ],
    ids=["tab", "newline", "ideographic-space"],
)
def test_whitespace_other_than_spaces_is_blank_too(db, cli, write_config, key):
    db.execute(BLANKS_SCHEMA)
    apply_ok(cli, write_config(blanks_config(True)))
    insert(db, FACT, 机构代码=key)
    assert count(db, FACT) == 1
    assert derived_keys(db) == []


def test_skip_blank_values_false_derives_them(db, cli, write_config):
    db.execute(BLANKS_SCHEMA)
    apply_ok(cli, write_config(blanks_config(False)))
    for key in ["", "   ", "(空白)", None, "G1"]:
        insert(db, FACT, 机构代码=key)
    assert count(db, FACT) == 5
    assert derived_keys(db) == ["", "   ", "(空白)", "G1"]
    assert count(db, 'mapping."组织架构"', "\"_source\" = 'auto_derived'") == 4


def test_blank_values_added_on_the_sample(applied):
    # fk_plan lists "(空白)" and "-" as markers; the fact table declares FKs, so
    # a blank key is only accepted if a parent with that key exists already.
    applied.execute("""INSERT INTO mapping."年金计划" ("年金计划号", "计划全称", "计划状态")
                       VALUES ('(空白)', '空白占位', '正常'), ('-', '横线占位', '正常')""")
    before = reference_counts(applied)
    insert_fact(applied, 计划代码="(空白)")
    assert reference_counts(applied) == before
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        insert_fact(applied, 组合代码="-")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        insert_fact(applied, 产品线代码=" (空白) ")
    assert reference_counts(applied) == before


# -- mode fill_null_only ------------------------------------------------------


FILL_CONFIG = """\
domains:
  annuity_performance:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - name: fk_organization
        source_column: 机构代码
        target_schema: mapping
        target_table: 组织架构
        target_key: 机构代码
        mode: fill_null_only
        backfill_columns:
          - {source: 机构名称, target: 机构}
          - {source: 机构代码, target: 上级机构代码}
"""


def org(conn, code: str):
    return conn.execute(
        """SELECT "机构", "上级机构代码", "_source", "_needs_review" FROM mapping."组织架构" WHERE "机构代码" = %s""",
        [code],
    ).fetchone()


def test_fill_null_only_fills_nulls_of_an_existing_parent(sample_db, cli, write_config):
    apply_ok(cli, write_config(FILL_CONFIG))
    sample_db.execute("""UPDATE mapping."组织架构" SET "机构" = NULL WHERE "机构代码" = 'G001'""")
    assert org(sample_db, "G001") == (None, "G000", "authoritative", False)
    insert_fact(sample_db, 机构代码="G001", 机构名称="补上的名字")
    assert org(sample_db, "G001") == ("补上的名字", "G000", "authoritative", False)
    insert_fact(sample_db, 机构代码="G001", 机构名称="不会覆盖")
    assert org(sample_db, "G001") == ("补上的名字", "G000", "authoritative", False)
    g002 = org(sample_db, "G002")
    assert g002 == ("广东分公司", "G000", "authoritative", False)
    insert_fact(sample_db, 机构代码="G002", 机构名称="也不会覆盖")
    assert org(sample_db, "G002") == g002


def test_fill_null_only_derived_parent_gets_nulls_filled_and_stays_derived(sample_db, cli, write_config):
    apply_ok(cli, write_config(FILL_CONFIG))
    insert_fact(sample_db, 机构代码="G950", 机构名称=None)
    assert org(sample_db, "G950") == (None, "G950", "auto_derived", True)
    insert_fact(sample_db, 机构代码="G950", 机构名称="后来才知道")
    assert org(sample_db, "G950") == ("后来才知道", "G950", "auto_derived", True)
    insert_fact(sample_db, 机构代码="G950", 机构名称="更后来的")
    assert org(sample_db, "G950") == ("后来才知道", "G950", "auto_derived", True)


def test_fill_null_only_on_update_of_a_mapped_column(sample_db, cli, write_config):
    apply_ok(cli, write_config(FILL_CONFIG))
    insert_fact(sample_db, 机构代码="G951")
    assert org(sample_db, "G951") == (None, "G951", "auto_derived", True)
    sample_db.execute("""UPDATE business."规模明细" SET "机构名称" = '改名后填上' WHERE "机构代码" = 'G951'""")
    assert org(sample_db, "G951") == ("改名后填上", "G951", "auto_derived", True)


# -- purpose-built schemas ----------------------------------------------------


def test_partitioned_fact_table(sample_db, cli, snapshot):
    sample_db.execute(
        """
        DROP TABLE business."规模明细";
        CREATE TABLE business."规模明细" (
            "月度" date NOT NULL, "业务类型" text, "计划类型" varchar(16), "计划代码" varchar(32) REFERENCES mapping."年金计划",
            "计划名称" text, "组合类型" varchar(16), "组合代码" varchar(32) REFERENCES mapping."组合计划", "组合名称" text,
            "客户名称" text, "期末资产规模" numeric(20, 2), "产品线代码" varchar(16) REFERENCES mapping."产品线",
            "机构代码" varchar(16) REFERENCES mapping."组织架构", "机构名称" text
        ) PARTITION BY RANGE ("月度");
        CREATE TABLE business."规模明细_2025_10" PARTITION OF business."规模明细" FOR VALUES FROM ('2025-10-01') TO ('2025-11-01');
        CREATE TABLE business."规模明细_2025_11" PARTITION OF business."规模明细" FOR VALUES FROM ('2025-11-01') TO ('2025-12-01');
        """
    )
    apply_ok(cli, SAMPLE_CONFIG)
    first = snapshot(sample_db)
    apply_ok(cli, SAMPLE_CONFIG)
    assert snapshot(sample_db) == first, "apply twice is a no-op on a partitioned table too"

    insert_fact(sample_db, 月度=date(2025, 10, 31), 计划代码="P90060", 组合代码="QT900060", 机构代码="G960")
    insert_fact(sample_db, 月度=date(2025, 11, 1), 计划代码="P90061", 产品线代码="PL961")
    # straight into a partition, and into a partition attached after apply
    insert(sample_db, 'business."规模明细_2025_11"', 月度=date(2025, 11, 2), 计划代码="P90062")
    sample_db.execute(
        """CREATE TABLE business."规模明细_2025_12" PARTITION OF business."规模明细"
           FOR VALUES FROM ('2025-12-01') TO ('2026-01-01')"""
    )
    insert_fact(sample_db, 月度=date(2025, 12, 1), 计划代码="P90063", 机构代码="G963")
    assert count(sample_db, FACT) == 4
    assert [r[0] for r in rows(sample_db, """SELECT "年金计划号" FROM mapping."年金计划"
                                            WHERE "_source" = 'auto_derived' ORDER BY 1""")] == [
        "P90060", "P90061", "P90062", "P90063"
    ]
    assert count(sample_db, 'mapping."组合计划"', "\"_source\" = 'auto_derived'") == 1
    assert count(sample_db, 'mapping."产品线"', "\"_source\" = 'auto_derived'") == 1
    assert count(sample_db, 'mapping."组织架构"', "\"_source\" = 'auto_derived'") == 2


COMPOSITE_SCHEMA = """
    CREATE SCHEMA mapping;
    CREATE SCHEMA business;
    CREATE TABLE mapping."组合计划" (
        "年金计划号" text, "组合代码" text, "组合名称" text,
        PRIMARY KEY ("年金计划号", "组合代码")
    );
    INSERT INTO mapping."组合计划" VALUES ('P0', 'A', '已有组合');
    CREATE TABLE business."规模明细" (
        "计划代码" text, "组合代码" text, "组合名称" text,
        FOREIGN KEY ("计划代码", "组合代码") REFERENCES mapping."组合计划"
    );
"""


def test_composite_key(db, cli, write_config):
    db.execute(COMPOSITE_SCHEMA)
    apply_ok(
        cli,
        write_config(
            config(
                """\
                domains:
                  annuity_performance:
                    fact_schema: business
                    fact_table: 规模明细
                    foreign_keys:
                      - name: fk_portfolio
                        source_column: [计划代码, 组合代码]
                        target_schema: mapping
                        target_table: 组合计划
                        target_key: [年金计划号, 组合代码]
                        derive_columns: [组合名称]
                """
            )
        ),
    )
    for plan, port, name in [("P0", "A", "不改"), ("P1", "A", "一A"), ("P1", "B", "一B"), ("P0", "B", "零B"),
                             ("P1", "A", "重复"), ("P2", None, "半个键"), (None, "C", "半个键")]:
        insert(db, FACT, 计划代码=plan, 组合代码=port, 组合名称=name)
    assert count(db, FACT) == 7
    assert rows(db, """SELECT "年金计划号", "组合代码", "组合名称", "_source" FROM mapping."组合计划" ORDER BY 1, 2""") == [
        ("P0", "A", "已有组合", "authoritative"),
        ("P0", "B", "零B", "auto_derived"),
        ("P1", "A", "一A", "auto_derived"),
        ("P1", "B", "一B", "auto_derived"),
    ]


def test_defaults_of_several_types(db, cli, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping."产品线" (
            "产品线代码" text PRIMARY KEY, "产品线" text NOT NULL, "排序" integer NOT NULL, "有效" boolean NOT NULL,
            "生效日" date NOT NULL, "费率" numeric(6, 4) NOT NULL, "备注" text DEFAULT '服务器默认'
        );
        CREATE TABLE business."规模明细" ("产品线代码" text REFERENCES mapping."产品线", "产品线名称" text);
        """
    )
    apply_ok(
        cli,
        write_config(
            config(
                """\
                domains:
                  annuity_performance:
                    fact_schema: business
                    fact_table: 规模明细
                    foreign_keys:
                      - name: fk_product_line
                        source_column: 产品线代码
                        target_schema: mapping
                        target_table: 产品线
                        target_key: 产品线代码
                        backfill_columns: [{source: 产品线名称, target: 产品线}]
                        defaults: {产品线: 待确认, 排序: 99, 有效: false, 生效日: "2025-01-01", 费率: 0.0125}
                """
            )
        ),
    )
    insert(db, FACT, 产品线代码="PL1", 产品线名称=None)
    insert(db, FACT, 产品线代码="PL2", 产品线名称="有名字")
    assert rows(db, """SELECT "产品线代码", "产品线", "排序", "有效", "生效日", "费率"::text, "备注"
                       FROM mapping."产品线" ORDER BY 1""") == [
        ("PL1", "待确认", 99, False, date(2025, 1, 1), "0.0125", "服务器默认"),
        ("PL2", "有名字", 99, False, date(2025, 1, 1), "0.0125", "服务器默认"),
    ]


def test_template_and_other_aggregations_on_one_row(db, cli, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping.plan (code text PRIMARY KEY, label text, note text, owner text, first_owner text,
                                   portfolios text, portfolio_count integer);
        CREATE TABLE business.fact (code text, month date, name text, org text, assets numeric, portfolio text);
        """
    )
    apply_ok(
        cli,
        write_config(
            config(
                """\
                domains:
                  perf:
                    fact_schema: business
                    fact_table: fact
                    foreign_keys:
                      - name: fk_plan
                        source_column: code
                        target_schema: mapping
                        target_table: plan
                        target_key: code
                        backfill_columns:
                          - {target: label, aggregation: template, template: "{name} ({code}), {month}: 100% {name}"}
                          - {target: note, aggregation: template, template: "{{literal}} braces"}
                          - {source: org, target: owner, aggregation: max_by, order_column: assets}
                          - {source: org, target: first_owner, aggregation: min_by, order_column: month}
                          - {source: portfolio, target: portfolios, aggregation: concat_distinct}
                          - {source: portfolio, target: portfolio_count, aggregation: count_distinct}
                """
            )
        ),
    )
    insert(db, "business.fact", code="P1", month=date(2025, 10, 1), name="计划一", org="G1", assets=5, portfolio="Q1")
    assert rows(db, "SELECT label, note, owner, first_owner, portfolios, portfolio_count FROM mapping.plan") == [
        ("计划一 (P1), 2025-10-01: 100% 计划一", "{literal} braces", "G1", "G1", "Q1", 1)
    ]


def test_key_types_without_an_equality_operator_are_refused(db, cli, write_config):
    db.execute(
        """
        CREATE SCHEMA mapping;
        CREATE SCHEMA business;
        CREATE TABLE mapping.plan (code text PRIMARY KEY);
        CREATE TABLE business.fact (code bigint);
        """
    )
    path = write_config(
        config(
            """\
            domains:
              perf:
                fact_schema: business
                fact_table: fact
                foreign_keys:
                  - {name: fk_plan, source_column: code, target_schema: mapping, target_table: plan, target_key: code}
            """
        )
    )
    result = cli("--config", str(path), "apply")
    # The key look-up needs text = bigint, which PostgreSQL has no operator for:
    # refused up front instead of failing every insert later.
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"refdata: error: {path}:{line_of(path, '- {name: fk_plan')}: domain perf, foreign key fk_plan: "
        "column \"code\" (bigint) of \"business\".\"fact\" "
        "cannot be compared with (no = operator without a cast) key column \"code\" (text) of \"mapping\".\"plan\" "
        f"(database {db.info.dbname} on {db.info.host})"
    )
    assert rows(db, "SELECT to_regnamespace('refdata')") == [(None,)]


# -- concurrency --------------------------------------------------------------


@pytest.mark.parametrize("first_outcome", ["commit", "rollback"])
def test_concurrent_inserts_of_the_same_new_key(applied, dsn, first_outcome):
    values = dict(计划代码="P90070", 计划名称="并发", 组合代码="QT900070", 产品线代码="PL970", 机构代码="G970")
    with psycopg.connect(dsn) as a, psycopg.connect(dsn, autocommit=True) as b:
        insert_fact(a, **values, 机构名称="A")  # A's transaction stays open
        errors: list[BaseException] = []

        def second():
            try:
                insert_fact(b, **values, 机构名称="B")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        thread = threading.Thread(target=second)
        thread.start()
        try:
            wait_until_blocked(applied, b.info.backend_pid)
            assert thread.is_alive()
        finally:
            a.commit() if first_outcome == "commit" else a.rollback()
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert errors == []

    facts = 2 if first_outcome == "commit" else 1
    assert count(applied, FACT, """"计划代码" = 'P90070'""") == facts
    for table, key, value in [("年金计划", "年金计划号", "P90070"), ("组合计划", "组合代码", "QT900070"),
                              ("产品线", "产品线代码", "PL970"), ("组织架构", "机构代码", "G970")]:
        assert count(applied, f'mapping."{table}"', f""""{key}" = '{value}' AND "_source" = 'auto_derived'""") == 1
    winner = "A" if first_outcome == "commit" else "B"
    assert rows(applied, """SELECT "机构" FROM mapping."组织架构" WHERE "机构代码" = 'G970'""") == [(winner,)]


# -- identifiers --------------------------------------------------------------


def test_awkward_identifiers_end_to_end(db, cli, write_config):
    db.execute(
        '''
        CREATE SCHEMA "My ""Schema""";
        CREATE SCHEMA "Ref Data 参考";
        CREATE TABLE "Ref Data 参考"."Plan ""Table"" 计划" (
            "Plan Key" text PRIMARY KEY,
            "Full ""Name""" text NOT NULL,
            "StatusCode" text NOT NULL,
            "it's" text
        );
        CREATE TABLE "My ""Schema"""."Fact Table" (
            "Plan ""Code""" text REFERENCES "Ref Data 参考"."Plan ""Table"" 计划",
            "计划 Name" text,
            "MixedCase" text
        );
        '''
    )
    path = write_config(
        config(
            """\
            domains:
              年金Domain:
                fact_schema: 'My "Schema"'
                fact_table: Fact Table
                foreign_keys:
                  - name: fk_Plan
                    source_column: 'Plan "Code"'
                    target_schema: Ref Data 参考
                    target_table: 'Plan "Table" 计划'
                    target_key: Plan Key
                    backfill_columns:
                      - {source: 计划 Name, target: 'Full "Name"'}
                      - {target: "it's", aggregation: template, template: "it's {MixedCase}; 100%"}
                    defaults: {'Full "Name"': "O'Brien \\"quoted\\"", StatusCode: "$1 %s '; DROP TABLE x; --"}
                    blank_values: ["n/a", "it's blank"]
            """
        )
    )
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    apply_ok(cli, path)
    fact = '"My ""Schema"""."Fact Table"'
    insert(db, fact, **{'Plan "Code"': "K1", "计划 Name": "名", "MixedCase": "Mc"})
    insert(db, fact, **{'Plan "Code"': "K2", "计划 Name": None, "MixedCase": None})
    assert rows(db, '''SELECT "Plan Key", "Full ""Name""", "StatusCode", "it's", "_source", "_derived_from_domain"
                       FROM "Ref Data 参考"."Plan ""Table"" 计划" ORDER BY 1''') == [
        ("K1", "名", "$1 %s '; DROP TABLE x; --", "it's Mc; 100%", "auto_derived", "年金Domain"),
        ("K2", "O'Brien \"quoted\"", "$1 %s '; DROP TABLE x; --", "it's ; 100%", "auto_derived", "年金Domain"),
    ]
    db.execute(f'UPDATE {fact} SET "Plan ""Code""" = \'K3\' WHERE "Plan ""Code""" = \'K2\'')
    assert count(db, '"Ref Data 参考"."Plan ""Table"" 计划"', """"Plan Key" = 'K3'""") == 1


def object_names(db) -> list[tuple[str, str]]:
    return rows(
        db,
        """SELECT 'function', proname::text FROM pg_proc WHERE pronamespace::regnamespace::text LIKE 'refdata%'
           UNION ALL SELECT 'relation', relname::text FROM pg_class WHERE relnamespace::regnamespace::text LIKE 'refdata%'
           UNION ALL SELECT 'trigger', tgname::text FROM pg_trigger WHERE NOT tgisinternal
           UNION ALL SELECT 'constraint', conname::text FROM pg_constraint WHERE conrelid::regclass::text LIKE 'mapping.%'
           UNION ALL SELECT 'index', relname::text FROM pg_class
                     WHERE relnamespace = 'mapping'::regnamespace AND relkind = 'i'""",
    )


LONG_TABLE = "年金计划参考数据表用于自动派生缺失父级记录"  # 21 characters, 63 bytes
LONG_FK = "fk_" + "组合计划" * 20  # 243 bytes


def long_names_schema(db, facts: int) -> None:
    assert len(LONG_TABLE.encode()) == 63
    db.execute(
        f"""CREATE SCHEMA mapping; CREATE SCHEMA business;
            CREATE TABLE mapping."{LONG_TABLE}" (code text PRIMARY KEY);"""
        + "".join(f"CREATE TABLE business.f{i} (code text);" for i in range(1, facts + 1))
    )


def long_names_domain(name: str, fact: str) -> str:
    return (
        f"  {name}:\n    fact_schema: business\n    fact_table: {fact}\n    foreign_keys:\n"
        f"      - {{name: {LONG_FK}, source_column: code, target_schema: mapping, "
        f"target_table: {LONG_TABLE}, target_key: code}}\n"
    )


def test_long_fk_and_table_names_fit_in_63_bytes(db, cli, write_config, snapshot):
    long_names_schema(db, 1)
    path = write_config("domains:\n" + long_names_domain("perf", "f1"))
    apply_ok(cli, path)
    names = object_names(db)
    for _, name in names:
        assert len(name.encode()) <= 63, name
    constraints = sorted(n for k, n in names if k == "constraint")
    indexes = sorted(n for k, n in names if k == "index")
    assert len(constraints) == 2 and len(indexes) == 3  # pkey + source check; pkey + needs_review and derived indexes
    insert(db, "business.f1", code="K1")
    assert rows(db, f"""SELECT "_source", "_needs_review", "_derived_from_domain" FROM mapping."{LONG_TABLE}" """) == [
        ("auto_derived", True, "perf")
    ]
    first = snapshot(db)
    apply_ok(cli, path)  # a clean re-apply with the shortened names
    assert snapshot(db) == first


def test_long_domain_names_fit_in_63_bytes(db, cli, write_config):
    long_ascii = "annuity_performance_monthly_asset_scale_details_by_plan_and_portfolio"  # 69 bytes
    long_a = "年金业绩月度资产规模明细按计划组合产品线机构统计口径甲"  # 26 characters, 78 bytes
    long_b = "年金业绩月度资产规模明细按计划组合产品线机构统计口径乙"  # same first 25 characters
    long_names_schema(db, 3)
    domains = [(long_ascii, "f1"), (long_a, "f2"), (long_b, "f3")]
    path = write_config("domains:\n" + "".join(long_names_domain(n, f) for n, f in domains))
    apply_ok(cli, path)

    names = object_names(db)
    for _, name in names:
        assert len(name.encode()) <= 63, name
    triggers = [n for k, n in names if k == "trigger" and not n.startswith("refdata_")]
    assert len(triggers) == len(set(triggers)) == 9  # the backfill and the two load triggers of each
    for i, (domain_name, fact) in enumerate(domains):
        insert(db, f"business.{fact}", code=f"K{i}")
        assert rows(db, f"""SELECT "_source", "_derived_from_domain" FROM mapping."{LONG_TABLE}"
                            WHERE code = 'K{i}'""") == [("auto_derived", domain_name)]
    apply_ok(cli, path)


# -- re-applying a changed config ---------------------------------------------


def test_changed_defaults_only_change_domain_param(sample_db, cli, write_config, snapshot):
    text = shipped_single_file()
    apply_ok(cli, SAMPLE_CONFIG)
    insert_fact(sample_db, 计划代码="P90080")
    before = snapshot(sample_db)
    changed = write_config(text.replace("计划状态: 待审核", "计划状态: 新建待审"))
    assert changed.read_text(encoding="utf-8") != text
    apply_ok(cli, changed)
    after = snapshot(sample_db)
    assert after["functions"] == before["functions"]
    assert after["triggers"] == before["triggers"]
    assert after["domain_param"] != before["domain_param"]
    insert_fact(sample_db, 计划代码="P90081")
    assert rows(sample_db, """SELECT "年金计划号", "计划状态" FROM mapping."年金计划"
                              WHERE "年金计划号" IN ('P90080', 'P90081') ORDER BY 1""") == [
        ("P90080", "待审核"), ("P90081", "新建待审"),
    ]


def test_two_domains_share_a_reference_table(sample_db, cli, write_config):
    sample_db.execute("""CREATE TABLE business."机构月报" ("机构" varchar(16), "名称" text)""")
    path = write_config(
        config(
            """\
            domains:
              annuity_performance:
                fact_schema: business
                fact_table: 规模明细
                foreign_keys:
                  - {name: fk_organization, source_column: 机构代码, target_schema: mapping, target_table: 组织架构,
                     target_key: 机构代码, backfill_columns: [{source: 机构名称, target: 机构}]}
              org_report:
                fact_schema: business
                fact_table: 机构月报
                foreign_keys:
                  - {name: fk_organization, source_column: 机构, target_schema: mapping, target_table: 组织架构,
                     target_key: 机构代码, backfill_columns: [{source: 名称, target: 机构}]}
            """
        )
    )
    apply_ok(cli, path)
    insert_fact(sample_db, 机构代码="G990", 机构名称="从规模来")
    insert(sample_db, 'business."机构月报"', 机构="G991", 名称="从月报来")
    insert(sample_db, 'business."机构月报"', 机构="G990", 名称="不覆盖")
    assert rows(sample_db, """SELECT "机构代码", "机构", "_derived_from_domain" FROM mapping."组织架构"
                              WHERE "_source" = 'auto_derived' ORDER BY 1""") == [
        ("G990", "从规模来", "annuity_performance"), ("G991", "从月报来", "org_report"),
    ]
