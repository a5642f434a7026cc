"""Quality views, the audit log and promotion on insert, observed through
real writes by the roles that make them."""

from __future__ import annotations

import json
import select
from datetime import date

import psycopg
import pytest

from helpers import shipped_single_file

from generator.config import PROJECT_ROOT

from test_backfill import FILL_CONFIG, apply_ok, insert_fact

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"
PLAN = 'mapping."年金计划"'
ORG = 'mapping."组织架构"'


@pytest.fixture
def applied(sample_db, cli):
    apply_ok(cli, SAMPLE_CONFIG)
    return sample_db


def audit(conn, table: str, where: str = "true") -> list[tuple]:
    return conn.execute(
        f"""SELECT operation, action, domain, key, old_values, new_values
            FROM refdata.audit_log WHERE table_name = %s::regclass AND {where} ORDER BY id""",
        [table],
    ).fetchall()


# -- views --------------------------------------------------------------------


def test_views_against_known_data(applied):
    insert_fact(applied, 计划代码="P90001", 计划名称="新计划一", 组合代码="QT900001", 机构代码="G001")
    insert_fact(applied, 计划代码="P90001", 计划名称="新计划一", 组合代码="QT900001", 机构代码="G001")
    insert_fact(applied, 计划代码="P90002", 组合代码="QT000001", 机构代码="G950")
    insert_fact(applied, 计划代码="P00001", 组合代码="QT000002", 机构代码="G001")

    quality = {r[0]: r[1:5] + (float(r[5]),) + r[6:] for r in applied.execute(
        """SELECT reference_table::text, total_rows, authoritative, auto_derived, pending_review,
                  auto_derived_ratio, oldest_pending IS NOT NULL, derived_by_domains
           FROM refdata.reference_quality""").fetchall()}
    assert quality['mapping."年金计划"'] == (42, 40, 2, 2, round(2 / 42, 4), True, ["annuity_performance"])
    assert quality['mapping."组合计划"'] == (101, 100, 1, 1, round(1 / 101, 4), True, ["annuity_performance"])
    assert quality['mapping."组织架构"'] == (11, 10, 1, 1, round(1 / 11, 4), True, ["annuity_performance"])
    assert quality['mapping."产品线"'] == (4, 4, 0, 0, 0, False, [])

    pending = applied.execute(
        """SELECT reference_table::text, key, key_json, derived_from_domain, fact_rows
           FROM refdata.pending_review ORDER BY 1, 2""").fetchall()
    assert pending == [
        ('mapping."年金计划"', "P90001", {"年金计划号": "P90001"}, "annuity_performance", 2),
        ('mapping."年金计划"', "P90002", {"年金计划号": "P90002"}, "annuity_performance", 1),
        ('mapping."组合计划"', "QT900001", {"组合代码": "QT900001"}, "annuity_performance", 2),
        ('mapping."组织架构"', "G950", {"机构代码": "G950"}, "annuity_performance", 1),
    ]

    coverage = {r[0]: r[1:5] + tuple(None if x is None else float(x) for x in r[5:]) for r in applied.execute(
        """SELECT foreign_key, keys_used, authoritative, auto_derived, missing, authoritative_share, auto_derived_share
           FROM refdata.fk_coverage WHERE domain = 'annuity_performance'""").fetchall()}
    # plans used: P90001, P90002 (derived), P00001 (authoritative)
    assert coverage["fk_plan"] == (3, 1, 2, 0, round(1 / 3, 4), round(2 / 3, 4))
    assert coverage["fk_portfolio"] == (3, 2, 1, 0, round(2 / 3, 4), round(1 / 3, 4))
    assert coverage["fk_organization"] == (2, 1, 1, 0, 0.5, 0.5)
    assert coverage["fk_product_line"] == (0, 0, 0, 0, None, None)

    activity = applied.execute(
        """SELECT reference_table::text, domain, derived, still_pending, day = (now() AT TIME ZONE 'UTC')::date
           FROM refdata.derivation_activity ORDER BY 1""").fetchall()
    assert activity == [
        ('mapping."年金计划"', "annuity_performance", 2, 2, True),
        ('mapping."组合计划"', "annuity_performance", 1, 1, True),
        ('mapping."组织架构"', "annuity_performance", 1, 1, True),
    ]

    # reviewed by hand: still auto-derived, no longer pending
    applied.execute(f"""UPDATE {ORG} SET "_needs_review" = false WHERE "机构代码" = 'G950'""")
    assert applied.execute(
        """SELECT count(*) FROM refdata.pending_review WHERE reference_table = 'mapping."组织架构"'::regclass""").fetchone() == (0,)


def test_pending_review_keys_of_a_composite_key_stay_apart_when_a_value_holds_the_separator(db, cli, write_config):
    # joined by ", ", ("x, y", "z") and ("x", "y, z") both read "x, y, z"
    db.execute("""CREATE TABLE ref (a text, b text, PRIMARY KEY (a, b));
                  CREATE TABLE f (a text, b text, n int)""")
    apply_ok(cli, write_config(
        "domains:\n  d:\n    fact_table: f\n    foreign_keys:\n"
        "      - {name: fk_ref, source_column: [a, b], target_table: ref, target_key: [a, b]}\n"))
    db.execute("INSERT INTO f VALUES ('x, y', 'z', 1), ('x', 'y, z', 2), ('x', 'y, z', 3)")
    assert db.execute("SELECT key, key_json, fact_rows FROM refdata.pending_review ORDER BY fact_rows").fetchall() == [
        ('["x, y", "z"]', {"a": "x, y", "b": "z"}, 1), ('["x", "y, z"]', {"a": "x", "b": "y, z"}, 2)]


def test_fk_coverage_reads_keys_through_the_fact_index(applied):
    plan = "\n".join(r[0] for r in applied.execute(
        "EXPLAIN SELECT * FROM refdata.fk_coverage WHERE foreign_key = 'fk_plan'").fetchall())
    assert "Recursive Union" in plan
    indexes = [r[0] for r in applied.execute(
        """SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'business."规模明细"'::regclass""")]
    assert any('("计划代码")' in i for i in indexes), indexes


# -- audit log ----------------------------------------------------------------


def test_audit_rows_for_insert_update_and_delete(applied, role):
    writer = role("rd_writer", [
        "GRANT USAGE ON SCHEMA mapping TO {role}",
        'GRANT SELECT, INSERT, UPDATE, DELETE ON mapping."组织架构" TO {role}',
    ])
    writer.execute("SET application_name = 'hand edit'")
    writer.execute(f"""INSERT INTO {ORG} ("机构代码", "机构") VALUES ('G800', '新机构')""")
    writer.execute(f"""UPDATE {ORG} SET "机构" = '改名' WHERE "机构代码" = 'G800'""")
    writer.execute(f"""UPDATE {ORG} SET "机构" = "机构" WHERE "机构代码" = 'G800'""")  # changes nothing
    writer.execute(f"""DELETE FROM {ORG} WHERE "机构代码" = 'G800'""")
    lines = audit(applied, ORG)
    assert [line[:4] for line in lines] == [
        ("INSERT", None, None, {"机构代码": "G800"}),
        ("UPDATE", None, None, {"机构代码": "G800"}),
        ("DELETE", None, None, {"机构代码": "G800"}),
    ]
    assert lines[0][5]["机构"] == "新机构" and lines[0][4] is None
    assert (lines[1][4], lines[1][5]) == ({"机构": "新机构"}, {"机构": "改名"})
    assert lines[2][4]["机构"] == "改名" and lines[2][5] is None
    who = applied.execute(
        "SELECT DISTINCT session_user_name::text, application_name FROM refdata.audit_log").fetchall()
    assert who == [(writer.info.user, "hand edit")]


def test_audit_log_of_a_bulk_write_is_set_based_and_complete(applied):
    applied.execute(f"""UPDATE {PLAN} SET "计划状态" = '已停用' WHERE "年金计划号" < 'P00030'""")
    applied.execute(f"""DELETE FROM {ORG} WHERE "机构代码" >= 'G005'""")
    changed = audit(applied, PLAN, "operation = 'UPDATE'")
    assert len(changed) == 30
    assert all(set(line[5]) == {"计划状态"} and line[5]["计划状态"] == "已停用" for line in changed)
    assert len(audit(applied, ORG, "operation = 'DELETE'")) == 5


def test_derived_parents_are_audited_with_their_domain(applied):
    insert_fact(applied, 计划代码="P90001", 计划名称="新计划", 组合代码="QT000001")
    assert [line[:4] for line in audit(applied, PLAN)] == [
        ("INSERT", "derive", "annuity_performance", {"年金计划号": "P90001"})]


def test_audit_log_is_append_only_for_other_roles(applied, role):
    insert_fact(applied, 计划代码="P90001", 组合代码="QT000001")
    reader = role("rd_auditor", ["GRANT USAGE ON SCHEMA refdata TO {role}",
                                         "GRANT SELECT ON refdata.audit_log, refdata.audit_batch TO {role}"])
    assert reader.execute("SELECT count(*) FROM refdata.audit_log").fetchone()[0] == 1
    # The lines' storage: no write right of any kind.
    for statement in ("UPDATE refdata.audit_batch SET domain = 'x'", "DELETE FROM refdata.audit_batch",
                      "TRUNCATE refdata.audit_batch",
                      "INSERT INTO refdata.audit_batch (table_name, operation, key_columns, columns, types, old_rows) "
                      "VALUES ('mapping.\"产品线\"', 'DELETE', '{x}', '{x}', '{text}', '{(1)}')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(statement)
    # The view over it takes no writes either.
    for statement in ("UPDATE refdata.audit_log SET domain = 'x'", "DELETE FROM refdata.audit_log",
                      "TRUNCATE refdata.audit_log",
                      "INSERT INTO refdata.audit_log (table_name, operation, key) VALUES ('mapping.\"产品线\"', 'DELETE', '{}')"):
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectNotInPrerequisiteState,
                            psycopg.errors.WrongObjectType)):
            reader.execute(statement)
    assert applied.execute("SELECT count(*) FROM refdata.audit_log").fetchone()[0] == 1


def test_fill_by_an_insert_only_role_is_recorded_and_cannot_be_forged(sample_db, cli, write_config, role):
    apply_ok(cli, write_config(FILL_CONFIG))
    sample_db.execute(f"""UPDATE {ORG} SET "机构" = NULL WHERE "机构代码" = 'G001'""")
    loader = role("rd_loader", ["GRANT USAGE ON SCHEMA business TO {role}",
                                        'GRANT INSERT ON business."规模明细" TO {role}'])
    insert_fact(loader, 机构代码="G001", 机构名称="补上的名字")
    fills = sample_db.execute(
        """SELECT table_name::text, key, new_values, old_values, domain, logged_at IS NOT NULL,
                  session_user_name::text
           FROM refdata.audit_log WHERE action = 'fill'""").fetchall()
    assert fills == [('mapping."组织架构"', {"机构代码": "G001"}, {"机构": "补上的名字"}, {"机构": None},
                      "annuity_performance", True, loader.info.user)]

    # A role that may write the table itself cannot pass its write off as a fill.
    editor = role("rd_editor", ["GRANT USAGE ON SCHEMA mapping TO {role}",
                                        'GRANT SELECT, UPDATE ON mapping."组织架构" TO {role}'])
    editor.execute("SELECT set_config('refdata.audit_action', 'fill', false), "
                   "set_config('refdata.audit_domain', 'annuity_performance', false)")
    editor.execute(f"""UPDATE {ORG} SET "机构" = '手改' WHERE "机构代码" = 'G002'""")
    forged = sample_db.execute(
        """SELECT action, domain FROM refdata.audit_log WHERE key = '{"机构代码": "G002"}'""").fetchall()
    assert forged == [(None, None)]


# -- promotion on insert ------------------------------------------------------


def test_insert_of_an_auto_derived_key_promotes_it(applied, role):
    insert_fact(applied, 计划代码="P90001", 计划名称="猜的名字", 组合代码="QT000001")
    derived = applied.execute(
        f"""SELECT "_derived_from_domain", "_derived_at" FROM {PLAN} WHERE "年金计划号" = 'P90001'""").fetchone()
    legacy = role("rd_legacy", ["GRANT USAGE ON SCHEMA mapping TO {role}",
                                        'GRANT INSERT ON mapping."年金计划" TO {role}'])
    cur = legacy.execute(
        f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划类型", "计划状态")
            VALUES ('P90001', '真正的名字', '单一计划', '正常')""")
    assert cur.rowcount == 0  # the insert became an update
    row = applied.execute(
        f"""SELECT "计划全称", "计划类型", "计划状态", "_source", "_needs_review", "_derived_from_domain", "_derived_at"
            FROM {PLAN} WHERE "年金计划号" = 'P90001'""").fetchone()
    assert row == ("真正的名字", "单一计划", "正常", "authoritative", False) + tuple(derived)
    assert applied.execute("SELECT key FROM refdata.pending_review").fetchall() == []
    assert applied.execute(
        """SELECT auto_derived, pending_review FROM refdata.reference_quality
           WHERE reference_table = 'mapping."年金计划"'::regclass""").fetchone() == (0, 0)
    promotion = audit(applied, PLAN, "action = 'promote'")
    assert len(promotion) == 1
    assert promotion[0][:4] == ("UPDATE", "promote", None, {"年金计划号": "P90001"})
    assert promotion[0][5]["_source"] == "authoritative" and promotion[0][5]["计划全称"] == "真正的名字"
    assert promotion[0][4]["_source"] == "auto_derived"

    # Now authoritative: a second insert of the key fails as it always did.
    with pytest.raises(psycopg.errors.UniqueViolation):
        legacy.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态") VALUES ('P90001', '再来一次', '正常')""")
    with pytest.raises(psycopg.errors.UniqueViolation):
        legacy.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态") VALUES ('P00001', '已有的', '正常')""")


def test_promotion_look_up_uses_the_key_index_in_a_bulk_insert(applied):
    """A table analysed while empty, then a bulk insert of authoritative rows:
    each row's promotion look-up stays an index probe (a plan cached for the
    empty table would scan the growing table once a row, quadratic)."""
    applied.execute(f"TRUNCATE {PLAN} CASCADE")
    applied.execute(f"ANALYZE {PLAN}")
    scans = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relid = %s::regclass"
    with applied.transaction():  # the counters are not flushed inside a transaction
        seq, idx = applied.execute(scans, [PLAN]).fetchone()
        applied.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态")
                            SELECT 'B' || i, '计划' || i, '正常' FROM generate_series(1, 300) AS i""")
        after = applied.execute(scans, [PLAN]).fetchone()
    assert (after[0] - seq, after[1] - idx) == (0, 300)


def test_a_session_posing_as_the_sync_still_gets_promotion(applied):
    """The sync's inserts skip the promotion trigger by its marker, but only as
    the owner role: any other session setting it is promoted as usual."""
    insert_fact(applied, 计划代码="P90001", 组合代码="QT000001")
    with applied.transaction():
        applied.execute("SELECT set_config('refdata.audit_action', 'sync', true)")
        cur = applied.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态")
                                  VALUES ('P90001', '真正的名字', '正常')""")
    assert cur.rowcount == 0
    assert applied.execute(f"""SELECT "_source" FROM {PLAN} WHERE "年金计划号" = 'P90001'""").fetchone() == (
        "authoritative",)


def test_promotion_can_be_switched_off_per_table(sample_db, cli, write_config):
    text = shipped_single_file() + (
        "observability:\n  tables:\n    mapping.年金计划: {promote_on_insert: false}\n")
    apply_ok(cli, write_config(text))
    insert_fact(sample_db, 计划代码="P90001", 组合代码="QT000001")
    with pytest.raises(psycopg.errors.UniqueViolation):
        sample_db.execute(f"""INSERT INTO {PLAN} ("年金计划号", "计划全称", "计划状态") VALUES ('P90001', '真正的名字', '正常')""")
    # other tables still promote
    insert_fact(sample_db, 计划代码="P00001", 组合代码="QT000001", 机构代码="G950")
    sample_db.execute(f"""INSERT INTO {ORG} ("机构代码", "机构") VALUES ('G950', '真的机构')""")
    assert sample_db.execute(f"""SELECT "_source" FROM {ORG} WHERE "机构代码" = 'G950'""").fetchone() == ("authoritative",)


# -- notifications ------------------------------------------------------------


def test_notify_once_per_new_key(applied, dsn):
    listener = psycopg.connect(dsn, autocommit=True)
    try:
        listener.execute("LISTEN refdata_auto_derived")
        with applied.transaction():
            for _ in range(3):  # three fact rows, one new plan and one new portfolio
                insert_fact(applied, 计划代码="P90001", 组合代码="QT900001")
        payloads = []
        deadline = 50
        while deadline and len(payloads) < 2:
            if select.select([listener.fileno()], [], [], 0.1)[0] or True:
                payloads += [json.loads(n.payload) for n in listener.notifies(timeout=0.2, stop_after=2)]
            deadline -= 1
        # nothing more arrives
        payloads += [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    finally:
        listener.close()
    assert sorted(payloads, key=lambda p: p["table"]) == [
        {"table": 'mapping."年金计划"', "key": {"年金计划号": "P90001"}, "domain": "annuity_performance"},
        {"table": 'mapping."组合计划"', "key": {"组合代码": "QT900001"}, "domain": "annuity_performance"},
    ]
