"""plan, apply and uninstall beside other sessions and under the settings a
DBA gives a database: they wait a bounded time or fail with one line, and
never leave a half-changed database behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
import yaml

from tests.conftest import CLI_ENV, ROOT, _cli_env

from tests.test_migrate import (FACT, _remove_fk, configure, converged, ok, refdata_objects,  # noqa: F401 (fixture)
                                sample_config, triggers)

# A hang becomes a failure instead of a stuck test run.
GUARD = {"PGOPTIONS": "-c statement_timeout=60s"}


@pytest.fixture
def installed(sample_db, configure):
    config = sample_config()
    ok(configure(config, "apply"))
    return config


def test_plan_and_apply_outlast_an_idle_in_transaction_timeout_the_dba_set(installed, sample_db, configure):
    """A plan keeps its transaction on the live database open while pg_dump,
    the scratch database and the schema diff do their work on connections of
    their own. A database whose DBA ends sessions idle in a transaction after
    a moment (a common guard against forgotten transactions) must not end
    refdata's own: plan and apply still work, and the plan converges."""
    name = sample_db.info.dbname
    sample_db.execute(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = \'100ms\'')
    try:
        _remove_fk(installed)
        assert ok(configure(installed, "plan"), 3).startswith("-- refdata plan: ")
        ok(configure(installed, "apply"))
        converged(configure, installed)
    finally:
        sample_db.execute(f'ALTER DATABASE "{name}" RESET idle_in_transaction_session_timeout')


def test_uninstall_beside_a_load_gives_up_after_the_lock_timeout_and_removes_nothing(installed, sample_db,
                                                                                      configure, dsn):
    """A load in flight holds the fact table. An uninstall waiting behind it
    for its table lock would queue every later reader and writer of that
    table behind itself, for as long as the load runs: like apply, it gives up
    after --lock-timeout (default 5s) with one line, and nothing is removed."""
    before = refdata_objects(sample_db)
    with psycopg.connect(dsn) as loading:
        loading.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-10-01', 'PUNINST1')""")
        for args in (["--lock-timeout", "250ms"], []):
            refused = configure(installed, "uninstall", *args, env=GUARD)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            lines = refused.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("refdata: error: uninstall: "), refused.stderr
            timeout = args[1] if args else "5s"
            assert f"locked for longer than {timeout} (--lock-timeout); nothing was removed" in lines[0]
            assert refused.stdout == ""
        loading.commit()
    assert refdata_objects(sample_db) == before
    assert ('business."规模明细"', "annuity_performance__backfill") in triggers(sample_db)
    # once the load is done the uninstall goes through
    assert "dropped trigger annuity_performance__backfill" in ok(configure(installed, "uninstall"))
    assert refdata_objects(sample_db)["schemas"] == []


def _with_organizations_domain(config: dict) -> dict:
    """`config` plus a domain deriving organisations from the same fact table:
    an apply that adds triggers and an index to the fact table and tracking
    columns to the organisations' table."""
    bigger = sample_config()
    organization = next(f for f in bigger["domains"]["annuity_performance"]["foreign_keys"]
                        if f["name"] == "fk_organization")
    bigger["domains"] = {**config["domains"], "organizations": {
        "fact_schema": "business", "fact_table": "规模明细", "foreign_keys": [organization]}}
    return bigger


def _waiting_pid(db, other_than: int, timeout: float = 30) -> tuple[int, str]:
    """The backend of this database (other than `other_than` and this one)
    that waits for a lock not granted: polled until there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("""SELECT a.pid, a.query FROM pg_stat_activity AS a
                            WHERE a.datname = current_database() AND a.pid NOT IN (pg_backend_pid(), %s)
                              AND EXISTS (SELECT FROM pg_locks AS l WHERE l.pid = a.pid AND NOT l.granted)""",
                         [other_than]).fetchone()
        if row:
            return row
        time.sleep(0.02)
    raise AssertionError("no session came to wait for a lock")


def test_an_apply_whose_backend_is_killed_half_way_leaves_the_database_as_it_was(installed, sample_db, configure,
                                                                                 dsn, snapshot):
    """The apply has locked its tables and run the first steps of a plan
    that adds a foreign key when it comes to wait for a function it replaces
    that another session is altering; then its backend is terminated (a
    failover, a DBA's pg_terminate_backend). One line naming the step, exit
    1, the catalog exactly as before, no scratch database left; the next
    apply completes and converges."""
    small = sample_config()
    _remove_fk(small)
    ok(configure(small, "apply"))  # the installed config less a foreign key
    before = snapshot(sample_db)
    scratch = set(r[0] for r in sample_db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'refdata\\_plan\\_%'"))
    outcome = {}
    with psycopg.connect(dsn) as writer:
        for (function,) in writer.execute("SELECT oid::regprocedure::text FROM pg_proc "
                                          "WHERE pronamespace = 'refdata'::regnamespace").fetchall():
            writer.execute(f"ALTER FUNCTION {function} COST 101")
        thread = threading.Thread(target=lambda: outcome.update(r=configure(installed, "apply", "--lock-timeout", "60s",
                                                                            env=GUARD)))
        thread.start()
        pid, query = _waiting_pid(sample_db, writer.info.backend_pid)
        assert "function" in query.lower(), query
        sample_db.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join()
        writer.rollback()
    killed = outcome["r"]
    assert killed.returncode == 1, killed.stdout + killed.stderr
    assert killed.stderr.startswith("refdata: error: ") and len(killed.stderr.splitlines()) == 1, killed.stderr
    step = re.search(r"terminating connection due to administrator command \(step (\d+) of the plan\); "
                     r"nothing was applied", killed.stderr)
    assert step and int(step[1]) > 1, killed.stderr
    assert snapshot(sample_db) == before
    assert set(r[0] for r in sample_db.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'refdata\\_plan\\_%'")) <= scratch
    ok(configure(installed, "apply"))
    converged(configure, installed)


def test_a_plan_stopped_with_sigterm_drops_its_scratch_database(installed, sample_db, dsn, tmp_path, write_config):
    """`timeout 60 refdata plan`, a cancelled CI job, systemd stopping a
    service: SIGTERM ends the plan as Ctrl-C does, with one line and exit 1,
    and the scratch database (a copy of the touched schemas on the server)
    is dropped, not left behind on the cluster for every plan so stopped."""
    config = sample_config()
    _remove_fk(config)
    path = write_config(yaml.safe_dump(config, allow_unicode=True), name="changed.yml")
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env.update(_cli_env(tmp_path, GUARD))
    sample_db.execute("CREATE TABLE business.unrelated (id int)")  # in a schema the plan copies
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE business.unrelated IN ACCESS EXCLUSIVE MODE")  # pg_dump of the plan waits here
        plan = subprocess.Popen([sys.executable, "-m", "generator.cli", "--db", dsn, "--config", str(path), "plan",
                                 "--lock-timeout", "60s"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, query = _waiting_pid(sample_db, holder.info.backend_pid)
            assert "LOCK TABLE" in query, query  # pg_dump's, in the scratch database's copy
            mine = f"refdata\\_plan\\_{plan.pid}\\_%"
            assert sample_db.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [mine]).fetchone() == (1,)
            plan.send_signal(signal.SIGTERM)
            out, err = plan.communicate(timeout=60)
        finally:
            plan.kill()
        holder.rollback()
    assert (plan.returncode, out, err) == (1, "", "refdata: interrupted\n")
    assert sample_db.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [mine]).fetchone() == (0,)


def test_an_apply_waiting_for_the_fact_table_never_ends_the_writer_holding_it(sample_db, configure, dsn):
    """A second domain on the fact table, deriving into a parent table no
    domain used before: the apply adds its tracking columns and an index on
    the fact table. A writer is in the middle of a transaction on the fact
    table; the apply waits for it. The writer's next insert checks its FK
    into that parent table: the apply must not be holding that table while
    it waits, or the writer's transaction ends as a deadlock (its check runs
    first here: deadlock_timeout 10ms). The writer commits, then the apply
    goes through and converges."""
    config = sample_config()
    _remove_fk(config)
    ok(configure(config, "apply"))
    bigger = _with_organizations_domain(config)
    outcome = {}
    with psycopg.connect(dsn) as writer:
        writer.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-10-01', 'P00001')""")
        thread = threading.Thread(target=lambda: outcome.update(r=configure(bigger, "apply", "--lock-timeout", "60s",
                                                                            env=GUARD)))
        thread.start()
        _waiting_pid(sample_db, writer.info.backend_pid)
        writer.execute("SET deadlock_timeout = '10ms'")
        writer.execute(f"""INSERT INTO {FACT} ("月度", "计划代码", "机构代码") VALUES ('2025-10-01', 'P00001', 'G001')""")
        writer.commit()
        thread.join()
    ok(outcome["r"])
    converged(configure, bigger)
    assert sample_db.execute(f"SELECT count(*) FROM {FACT} WHERE \"月度\" = '2025-10-01'").fetchone() == (2,)


def test_an_apply_never_ends_a_writer_that_wrote_the_parent_table_before_the_fact_table(sample_db, configure, dsn):
    """The other order of the test above: the writer inserts into the parent
    table first (its own reference data) and then into the fact table, in one
    transaction. The apply needs both tables (tracking columns on the parent,
    a trigger and an index on the fact table): holding the fact table while
    it waited for the parent would make the writer's fact insert the deadlock
    victim (its check runs first: deadlock_timeout 10ms). The apply waits
    holding no table, the writer commits, then the apply converges."""
    config = sample_config()
    _remove_fk(config)
    ok(configure(config, "apply"))
    bigger = _with_organizations_domain(config)
    plan = ok(configure(bigger, "plan"), 3)
    # Triggers and an index added to the fact table, tracking columns to the
    # parent, refdata's views over the parents replaced:
    assert re.findall(r"^LOCK TABLE .*$", plan, re.M) == [
        'LOCK TABLE "business"."规模明细" IN SHARE ROW EXCLUSIVE MODE;',
        'LOCK TABLE "mapping"."组织架构" IN ACCESS EXCLUSIVE MODE;'] + [
        f'LOCK TABLE "refdata"."{view}" IN ACCESS EXCLUSIVE MODE;'
        for view in ("derivation_activity", "fk_coverage", "pending_review", "reference_quality")], plan
    outcome = {}
    with psycopg.connect(dsn) as writer:
        writer.execute("""INSERT INTO mapping."组织架构" ("机构代码", "机构") VALUES ('G900', 'own')""")
        thread = threading.Thread(target=lambda: outcome.update(r=configure(bigger, "apply", "--lock-timeout", "60s",
                                                                            env=GUARD)))
        thread.start()
        _waiting_pid(sample_db, writer.info.backend_pid)
        writer.execute("SET deadlock_timeout = '10ms'")
        writer.execute(f"""INSERT INTO {FACT} ("月度", "计划代码", "机构代码") VALUES ('2025-10-01', 'P00001', 'G900')""")
        writer.commit()
        thread.join()
    ok(outcome["r"])
    converged(configure, bigger)
    assert sample_db.execute(f"SELECT count(*) FROM {FACT} WHERE \"月度\" = '2025-10-01'").fetchone() == (1,)


def test_an_apply_that_cannot_get_a_table_in_time_names_it_and_leaves_the_writer_alone(sample_db, configure, dsn):
    """A writer holds the parent table past --lock-timeout: the apply gives
    up with one line naming that table, exit 1, nothing applied, and the
    writer's transaction goes on to insert a fact and commit."""
    config = sample_config()
    _remove_fk(config)
    ok(configure(config, "apply"))
    bigger = sample_config()
    before = refdata_objects(sample_db)
    with psycopg.connect(dsn) as writer:
        writer.execute("""INSERT INTO mapping."组织架构" ("机构代码", "机构") VALUES ('G901', 'own')""")
        r = configure(bigger, "apply", "--lock-timeout", "300ms", env=GUARD)
        writer.execute(f"""INSERT INTO {FACT} ("月度", "计划代码", "机构代码") VALUES ('2025-11-01', 'P00001', 'G901')""")
        writer.commit()
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert '"mapping"."组织架构"' in r.stderr and "--lock-timeout" in r.stderr and "nothing was applied" in r.stderr
    assert refdata_objects(sample_db) == before


def test_an_apply_that_only_replaces_functions_waits_for_no_writer(sample_db, configure, dsn):
    """A backfill column added changes function bodies only: the apply locks
    no table, so a writer in the middle of a transaction on the fact table
    and a parent table does not hold it up (--lock-timeout 300ms), and the
    writer's next insert runs the new function."""
    base = sample_config()
    base["domains"]["annuity_performance"]["foreign_keys"][0]["backfill_columns"] = [
        c for c in base["domains"]["annuity_performance"]["foreign_keys"][0]["backfill_columns"]
        if c["target"] != "客户名称"]
    ok(configure(base, "apply"))
    with psycopg.connect(dsn) as writer:
        writer.execute("""INSERT INTO mapping."组织架构" ("机构代码", "机构") VALUES ('G902', 'own')""")
        writer.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-12-01', 'P00001')""")
        ok(configure(sample_config(), "apply", "--lock-timeout", "300ms", env=GUARD))
        writer.execute(f"""INSERT INTO {FACT} ("月度", "计划代码", "客户名称") VALUES ('2025-12-01', 'PNEW9', '新客户')""")
        writer.commit()
    assert sample_db.execute("""SELECT "客户名称" FROM mapping."年金计划" WHERE "年金计划号" = 'PNEW9'""").fetchone() == (
        "新客户",)
