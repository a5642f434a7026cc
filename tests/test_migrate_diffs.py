"""Migrations by diff, the way a user changes a config over time: each step
(a default, a backfill source column, a foreign key removed and added back,
statement mode, a domain added and removed, another owner role) plans only
what the change touches, applies, and leaves nothing to plan; then uninstall
leaves the database as it was before the first apply, except for what the
README says stays (the owner roles' rights, foreign keys made deferred)."""

from __future__ import annotations

import copy
import re
import uuid

from tests.test_migrate import configure, fk, ok, sample_config  # noqa: F401 (fixture)

USER = "NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"


def whole_catalog(db) -> dict:
    """Every object of the database's own schemas, and what refdata could
    leave elsewhere (event triggers, foreign servers, default privileges)."""
    q = lambda sql: db.execute(sql).fetchall()  # noqa: E731
    return {
        "schemas": q(f"SELECT nspname, nspacl::text, obj_description(oid, 'pg_namespace') FROM pg_namespace "
                     f"WHERE nspname {USER} ORDER BY 1"),
        "relations": q(f"SELECT c.oid::regclass::text, c.relkind, c.relacl::text, obj_description(c.oid, 'pg_class'), "
                       f"c.relowner::regrole::text FROM pg_class AS c WHERE relnamespace::regnamespace::text {USER} "
                       "ORDER BY 1"),
        "columns": q(f"""SELECT a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                pg_get_expr(d.adbin, d.adrelid), a.attacl::text, col_description(a.attrelid, a.attnum)
                         FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
                         LEFT JOIN pg_attrdef AS d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
                         WHERE c.relnamespace::regnamespace::text {USER} AND a.attnum > 0 AND NOT a.attisdropped
                         ORDER BY 1, 2"""),
        "functions": q(f"SELECT p.oid::regprocedure::text, p.proacl::text, obj_description(p.oid, 'pg_proc') "
                       f"FROM pg_proc AS p WHERE pronamespace::regnamespace::text {USER} ORDER BY 1"),
        "triggers": q("SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal "
                      "ORDER BY 1, 2"),
        "event_triggers": q("SELECT evtname FROM pg_event_trigger ORDER BY 1"),
        "indexes": q(f"""SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),
                                obj_description(i.indexrelid, 'pg_class')
                         FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid
                         WHERE c.relnamespace::regnamespace::text {USER} ORDER BY 1"""),
        "constraints": q(f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                         f"WHERE connamespace::regnamespace::text {USER} ORDER BY 1, 2"),
        "servers": q("SELECT srvname FROM pg_foreign_server ORDER BY 1"),
        "default_privileges": q("SELECT defaclrole::regrole::text, defaclobjtype, defaclacl::text FROM pg_default_acl "
                                "ORDER BY 1, 2"),
        "extensions": q("SELECT extname FROM pg_extension ORDER BY 1"),
        "database": q("SELECT datacl::text FROM pg_database WHERE datname = current_database()"),
    }


def _steps(owner: str) -> list[tuple[str, dict, list[str], str]]:
    """(what changes, the config, the owner role, a pattern no line of its plan may match)."""
    base = sample_config()
    default = copy.deepcopy(base)
    fk(default, "fk_plan")["defaults"]["计划状态"] = "待确认"
    no_org = copy.deepcopy(default)
    no_org["domains"]["annuity_performance"]["foreign_keys"] = [
        f for f in no_org["domains"]["annuity_performance"]["foreign_keys"] if f["name"] != "fk_organization"]
    source = copy.deepcopy(default)
    fk(source, "fk_plan")["backfill_columns"][0]["source"] = "客户名称"
    statement = copy.deepcopy(source)
    statement["domains"]["annuity_performance"].update(trigger_mode="statement", defer_foreign_keys=True)
    more = copy.deepcopy(statement)
    more["domains"]["orgs"] = {"fact_schema": "business", "fact_table": "规模明细",
                               "foreign_keys": [copy.deepcopy(fk(more, "fk_organization"))]}
    nothing_dropped = r"(?i)^drop\s"
    return [
        # function bodies and domain_param rows only: no table touched, nothing dropped
        ("a default changed", default, "refdata_owner", r"(?i)^(drop|create trigger|alter table|lock table)\s"),
        # the backfill trigger's UPDATE OF list loses the column: it is replaced; the
        # organisation table's triggers and promote function go, the fact key index too
        ("a foreign key removed", no_org, "refdata_owner", r"(?i)^drop\s+(table|schema|view|function if exists \"refdata\"\.\"annuity)"),
        ("the foreign key added back", copy.deepcopy(default), "refdata_owner", r"(?i)^drop\s+(?!trigger if exists \"annuity_performance__backfill\")"),
        ("a backfill source column renamed", source, "refdata_owner", r"(?i)^(drop|create trigger|alter table|lock table)\s"),
        ("statement mode", statement, "refdata_owner", r"(?i)^drop\s+(?!trigger if exists \"annuity_performance__backfill\")"),
        ("a domain added", more, "refdata_owner", nothing_dropped),
        ("the domain removed", copy.deepcopy(statement), "refdata_owner", r"(?i)^drop\s(?!.*orgs)"),
        # the promote triggers name the owner role: replaced; nothing else dropped
        ("another owner role", copy.deepcopy(statement), owner, r"(?i)^drop\s+(?!trigger if exists \"refdata_promote\")"),
    ]


def test_each_change_a_user_makes_plans_only_what_it_touches_and_uninstall_leaves_what_was_there(sample_db, configure):
    owner = f"rd_owner_{uuid.uuid4().hex[:8]}"
    before = whole_catalog(sample_db)
    ok(configure(sample_config(), "apply"))
    try:
        for what, config, role, forbidden in _steps(owner):
            plan = ok(configure(config, "plan", "--owner", role), 3)
            wrong = [line for line in plan.splitlines() if re.match(forbidden, line)]
            assert not wrong, f"{what}: {wrong}"
            ok(configure(config, "apply", "--owner", role))
            assert ok(configure(config, "plan", "--owner", role)) == "", what
        ok(configure(_steps(owner)[-1][1], "uninstall", "--drop-tracking-columns"))
        after = whole_catalog(sample_db)
        changed = {k for k in before if before[k] != after[k]}
        # What stays, as the README says: the owner roles' rights on the
        # configured tables and their schemas, and the foreign keys made deferred.
        assert changed <= {"schemas", "relations", "constraints"}, {k: after[k] for k in changed}
        grantees = lambda acl: {e.split("=", 1)[0] for e in (acl or "{}").strip("{}").split(",") if e}  # noqa: E731
        for kind, acl_at in (("schemas", 1), ("relations", 2)):
            assert [r[:acl_at] + r[acl_at + 1:] for r in after[kind]] == [r[:acl_at] + r[acl_at + 1:] for r in before[kind]]
            for old, new in zip(before[kind], after[kind]):
                # an owner's privileges spelled out once another role has some (the
                # owner of these tables and schemas is the test's superuser, postgres)
                assert grantees(new[acl_at]) - grantees(old[acl_at]) <= {"refdata_owner", owner, "postgres"}, new
        assert [(t, n, d.replace(" DEFERRABLE INITIALLY DEFERRED", "")) for t, n, d in after["constraints"]] == \
            before["constraints"]
    finally:
        sample_db.execute(f"""DO $$BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
                              REASSIGN OWNED BY "{owner}" TO refdata_owner; DROP OWNED BY "{owner}";
                              DROP ROLE "{owner}"; END IF; END$$""")


def test_a_reviewed_plan_locks_tables_whose_names_hold_dots_quotes_and_unicode(db, configure, tmp_path):
    """The locks a plan file carries name the tables as the catalog does,
    whatever their names hold: apply --sql takes them and applies."""
    db.execute('''CREATE SCHEMA "a.b ""c""";
                  CREATE TABLE "a.b ""c"""."父.表 ’行" (k text PRIMARY KEY, n text);
                  CREATE TABLE "a.b ""c"""."事实"".表" (k text, n text);''')
    config = {"domains": {"d": {"fact_schema": 'a.b "c"', "fact_table": '事实".表', "foreign_keys": [
        {"name": "fk", "source_column": "k", "target_schema": 'a.b "c"', "target_table": "父.表 ’行",
         "target_key": "k"}]}}}
    ok(configure(config, "apply"))
    config["domains"]["d"]["foreign_keys"][0]["backfill_columns"] = [{"source": "n", "target": "n"}]
    config["domains"]["e"] = copy.deepcopy(config["domains"]["d"])
    plan = ok(configure(config, "plan"), 3)
    assert 'LOCK TABLE "a.b ""c"""."事实"".表" IN SHARE ROW EXCLUSIVE MODE;' in plan
    assert '-- locks: [["a.b \\"c\\"", "事实\\".表", "SHARE ROW EXCLUSIVE"]' in plan
    (tmp_path / "plan.sql").write_text(plan, encoding="utf-8")
    ok(configure(config, "apply", "--sql", str(tmp_path / "plan.sql")))
    assert ok(configure(config, "plan")) == ""
    db.execute('''INSERT INTO "a.b ""c"""."事实"".表" VALUES ('K1', 'name')''')
    assert db.execute('''SELECT n, _source FROM "a.b ""c"""."父.表 ’行"''').fetchall() == [("name", "auto_derived")]


def test_a_plan_whose_last_step_fails_leaves_the_catalog_as_it_was(sample_db, configure, tmp_path, snapshot):
    """Every step of a plan before the one that fails (triggers dropped and
    made, functions replaced, views replaced, rows written) is undone: one
    line naming the step, exit 1, the catalog as it was; the plan without
    that step then applies."""
    base = sample_config()
    ok(configure(base, "apply"))
    before = snapshot(sample_db)
    changed = copy.deepcopy(base)
    changed["domains"]["annuity_performance"]["foreign_keys"] = [
        f for f in changed["domains"]["annuity_performance"]["foreign_keys"] if f["name"] != "fk_organization"]
    plan = ok(configure(changed, "plan"), 3)
    steps = len(re.findall(r"^-- step \d+$", plan, re.M))
    broken = plan.replace("\nCOMMIT;\n", f"\n-- step {steps + 1}\nSELECT 1 / 0;\n\nCOMMIT;\n")
    (tmp_path / "broken.sql").write_text(broken, encoding="utf-8")
    r = configure(changed, "apply", "--sql", str(tmp_path / "broken.sql"))
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and f"division by zero (step {steps + 1} of the plan); nothing was applied" \
        in r.stderr, r.stderr
    assert snapshot(sample_db) == before
    (tmp_path / "plan.sql").write_text(plan, encoding="utf-8")
    ok(configure(changed, "apply", "--sql", str(tmp_path / "plan.sql")))
    assert ok(configure(changed, "plan")) == ""
