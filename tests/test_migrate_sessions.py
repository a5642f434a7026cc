"""plan, apply and uninstall beside other sessions and under the settings a
DBA gives a database: they wait a bounded time or fail with one line, and
never leave a half-changed database behind."""

from __future__ import annotations

import psycopg
import pytest

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
