"""The direct way of a verified load: `refdata load` COPYs the file straight
into the fact table under session_replication_role = replica, and the
domain's two load triggers (ENABLE REPLICA, fired only after the statement
D__load_ready named the domain for) derive the parents of that statement's
rows, then lock and check every foreign key set-based. The same outcome as
the staging path, the same locks, and nothing for any other writer."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from generator.config import load_config
from generator.load import Loader, Options
from helpers import apply_config, race
from test_verify import (CORPUS, CORPUS_COLUMNS, CORPUS_CONFIG, CORPUS_SCHEMA, FACT, HEADER, RACE_CONFIG,
                         RACE_SCHEMA, _csv, _orphans, _outcome, _Rollback)

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "data_sources.yml"


def _direct(conn, domain: str, fact: str, columns: list[str], rows: list[tuple]) -> dict:
    """What `refdata load` does on the direct way, in SQL: the owner's half
    says yes and names the domain, the caller COPYs under replica, the load
    triggers leave their counts. Raises what the COPY or the triggers raise."""
    with conn.transaction():
        conn.execute("SELECT set_config('refdata.load_result', '', true)")
        fallback = conn.execute(f'SELECT refdata."{domain}__load_ready"(%s, NULL, true)', [columns]).fetchone()[0]
        assert fallback is None, fallback
        role = conn.execute("SELECT current_setting('session_replication_role'), "
                            "set_config('session_replication_role', 'replica', true)").fetchone()[0]
        cols = ", ".join(f'"{c}"' for c in columns)
        with conn.cursor() as cur, cur.copy(f"COPY {fact} ({cols}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        outcome = conn.execute("SELECT current_setting('refdata.load_result', true), "
                               "set_config('session_replication_role', %s, true)", [role]).fetchone()[0]
    return {"facts": len(rows), **__import__("json").loads(outcome)}


def _direct_outcome(conn, rows):
    """As test_verify's _outcome, on the direct way."""
    try:
        with conn.transaction():
            facts = _direct(conn, "corpus", "fact", CORPUS_COLUMNS, rows)["facts"]
            loaded = conn.execute("SELECT tableoid::regclass::text, * FROM fact ORDER BY 1, 2, 3").fetchall()
            parents = conn.execute("SELECT k, _source FROM a ORDER BY k").fetchall()
            raise _Rollback((facts, loaded, parents))
    except _Rollback as done:
        return ("loaded",) + done.args[0]
    except psycopg.errors.Error as e:
        return ("failed", e.sqlstate, e.diag.constraint_name if e.sqlstate == "23503" else None)


def _load_runs(conn) -> list[tuple]:
    return conn.execute("SELECT source, path, rows FROM refdata.load_run ORDER BY id").fetchall()


@pytest.mark.parametrize("case", list(CORPUS))
def test_direct_and_staged_loads_give_the_same_outcome(db, cli, write_config, case):
    """Non-configured FKs, composite keys under MATCH SIMPLE and FULL, a
    partitioned fact table (the triggers on its root), a row routed nowhere."""
    db.execute(CORPUS_SCHEMA)
    apply_config(cli, write_config, CORPUS_CONFIG)
    rows, expected = CORPUS[case]
    assert _direct_outcome(db, rows) == _outcome(db, rows, "set-based")
    assert db.execute("SELECT count(*) FROM fact").fetchone()[0] == 0


def test_direct_violation_names_the_constraint_and_the_row(db, cli, write_config):
    db.execute(CORPUS_SCHEMA)
    apply_config(cli, write_config, CORPUS_CONFIG)
    rows, _ = CORPUS["missing parent of a non-configured FK"]
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        _direct(db, "corpus", "fact", CORPUS_COLUMNS, rows)
    assert refused.value.diag.constraint_name == "fact_kb"
    assert refused.value.diag.message_detail == 'Key (kb)=(b404) is not present in table "b".'
    assert refused.value.diag.message_hint == "first offending row: record 5 of this load (staged line 5)"
    assert db.execute("SELECT count(*) FROM fact").fetchone()[0] == 0


def test_refdata_load_goes_direct_and_refuses_what_the_constraints_refuse(db, cli, write_config, tmp_path):
    """End to end: the file's rows and derived parents, the load's record, and
    a missing parent of a FK refdata does not derive refused with its line."""
    db.execute(CORPUS_SCHEMA)
    config = apply_config(cli, write_config, CORPUS_CONFIG)
    good = _csv(tmp_path, "good.csv", ["m,ka,kb,cx,cy", "2025-10-05,A1,b1,c1,1", "2025-11-05,A2,,c1,"])
    result = cli("--config", str(config), "load", "corpus", str(good))
    assert result.returncode == 0, result.stderr
    assert "loaded 2 fact rows" in result.stdout and "parents derived: public.a 2" in result.stdout
    assert result.stdout.rstrip().endswith("; foreign keys verified set-based")
    assert _load_runs(db) == [("file", "direct (server csv)", 2)]
    assert db.execute("SELECT k, _source FROM a ORDER BY k").fetchall() == [("A1", "auto_derived"),
                                                                         ("A2", "auto_derived")]
    bad = _csv(tmp_path, "bad.csv", ["m,ka,kb", "2025-10-05,A3,b1", "2025-10-06,A4,b404"])
    refused = cli("--config", str(config), "load", "corpus", str(bad))
    assert refused.returncode == 2
    assert refused.stderr.startswith(f'refdata: error: {bad}:3: column "kb": insert or update on table "fact" '
                                     'violates foreign key constraint "fact_kb"')
    assert db.execute("SELECT count(*) FROM fact").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM a").fetchone()[0] == 2  # A3 was derived, and went with the rest


def test_derived_parents_fire_their_own_triggers(sample_db, cli, tmp_path):
    """The COPY ran under replica; the parents are written under origin, so
    their audit triggers and their own foreign keys (portfolio -> plan) fire."""
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PV1,计划,QV1,组合,PL201,G000,1"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert _load_runs(sample_db)[-1][1] == "direct (server csv)"
    logged = sample_db.execute("""SELECT table_name, action, domain FROM refdata.audit_log
                                  WHERE key::text LIKE '%%V1%%' ORDER BY id""").fetchall()
    assert ('mapping."年金计划"', "derive", "annuity_performance") in [tuple(map(str, r)) for r in logged]
    assert ('mapping."组合计划"', "derive", "annuity_performance") in [tuple(map(str, r)) for r in logged]


def test_other_writers_and_replication_apply_fire_nothing(sample_db, cli):
    """Without the domain named by D__load_ready the load triggers do nothing,
    under replica too (what the apply of logical replication runs under)."""
    assert cli("apply").returncode == 0
    with sample_db.transaction():
        sample_db.execute("SET LOCAL session_replication_role = replica")
        sample_db.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-11-01', 'PREPLICA')""")
    sample_db.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-11-01', 'PORIGIN')""")
    assert _load_runs(sample_db) == []
    # the row trigger derived the plan of the origin write; the replicated row brought its own
    assert sample_db.execute("""SELECT "年金计划号" FROM mapping."年金计划" WHERE "_source" = 'auto_derived'
                                ORDER BY 1""").fetchall() == [("PORIGIN",)]


def test_a_writer_naming_the_domain_itself_under_origin_fires_nothing(sample_db, cli):
    """The load triggers are ENABLE REPLICA: an ordinary insert (origin) skips
    them whatever refdata.load_direct says, and gets the row trigger."""
    assert cli("apply").returncode == 0
    assert sample_db.execute(f"""SELECT tgname, tgenabled FROM pg_trigger
                                 WHERE tgrelid = '{FACT}'::regclass AND tgname LIKE '%%load%%'
                                 ORDER BY 1""").fetchall() == [("annuity_performance__load_begin", "R"),
                                                                ("annuity_performance__load_verify", "R")]
    with sample_db.transaction():
        sample_db.execute("SELECT set_config('refdata.load_direct', 'annuity_performance', true)")
        sample_db.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-11-01', 'PSELF')""")
        assert sample_db.execute("SELECT current_setting('refdata.load_direct', true)").fetchone() == (
            "annuity_performance",)
    assert _load_runs(sample_db) == []
    assert sample_db.execute("""SELECT "_source" FROM mapping."年金计划" WHERE "年金计划号" = 'PSELF'""").fetchall() == [
        ("auto_derived",)]


def test_the_domain_is_named_for_one_statement_only(sample_db, cli):
    assert cli("apply").returncode == 0
    with sample_db.transaction():
        counts = _direct(sample_db, "annuity_performance", FACT, ["月度", "计划代码"], [("2025-11-01", "PONE")])
        assert counts == {"facts": 1, "blank_keys": 0, "parents_derived": {
            'mapping.年金计划': 1, 'mapping.组合计划': 0, 'mapping.产品线': 0, 'mapping.组织架构': 0}}
        assert sample_db.execute("SELECT current_setting('refdata.load_direct', true)").fetchone() == ("",)
        sample_db.execute(f"""INSERT INTO {FACT} ("月度", "计划代码") VALUES ('2025-11-01', 'PTWO')""")
    assert _load_runs(sample_db) == [("bulk", "bulk", 1)]


def test_load_triggers_enabled_for_origin_only_send_the_load_through_staging(sample_db, cli, tmp_path):
    """ALTER TABLE ... ENABLE TRIGGER USER makes them origin-only, so they would
    not fire under replica: the load is staged (and still verified set-based)."""
    assert cli("apply").returncode == 0
    sample_db.execute(f"ALTER TABLE {FACT} ENABLE TRIGGER USER")
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PV1,计划,QV1,组合,PL201,G000,1"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert "foreign keys verified set-based" in result.stdout
    assert _load_runs(sample_db) == [("file", "staging (server csv)", 1)]
    assert cli("apply").returncode == 0  # puts them back
    assert cli("load", "annuity_performance", str(path), "--force").returncode == 0
    assert _load_runs(sample_db)[-1] == ("file", "direct (server csv)", 1)


def test_session_replication_role_is_back_after_direct_loads(sample_db, cli, dsn, tmp_path):
    """In the loading session, inside its transaction: after a direct load,
    after one the fact table refused (CHECK), after one a missing parent failed."""
    assert cli("apply").returncode == 0
    sample_db.execute(f"""ALTER TABLE {FACT} ADD CONSTRAINT no_bad CHECK ("计划代码" <> 'BAD')""")
    config = load_config(SAMPLE_CONFIG)
    good = _csv(tmp_path, "good.csv", ["月度,计划代码", "2025-11-01,PV1"])
    bad = _csv(tmp_path, "bad.csv", ["月度,计划代码", "2025-11-01,PV2", "2025-11-01,BAD"])
    orphan = _csv(tmp_path, "orphan.csv", ["月度,计划代码", "2025-11-01,PV3", "2025-11-01,-"])
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = local")  # not the default, to see it come back
        conn.commit()
        result = Loader(conn, config, "annuity_performance", good, Options()).run(progress=False)
        assert (result.facts, result.path, result.direct) == (1, "set-based", True)
        assert conn.execute("SHOW session_replication_role").fetchone() == ("local",)
        for path in (bad, orphan):
            with pytest.raises(Exception) as refused:
                Loader(conn, config, "annuity_performance", path, Options()).run(progress=False)
            assert f"{path}:3" in str(refused.value)
            assert conn.execute("SHOW session_replication_role").fetchone() == ("local",)
        conn.commit()
    assert sample_db.execute(f"""SELECT "计划代码" FROM {FACT}""").fetchall() == [("PV1",)]


@pytest.mark.parametrize("when", ["before the check", "after the check"])
def test_parent_deleted_during_a_direct_load(db, cli, write_config, dsn, when):
    """The DELETE holding the parent first: the triggers' lock waits for it and
    finds the parent gone. The load holding it first (FOR KEY SHARE, until
    commit): the DELETE waits and then fails. No orphan either way."""
    db.execute(RACE_SCHEMA)
    apply_config(cli, write_config, RACE_CONFIG)
    with psycopg.connect(dsn, autocommit=True) as loader, psycopg.connect(dsn, autocommit=True) as deleter:
        if when == "before the check":
            deleter.execute("BEGIN")
            deleter.execute("DELETE FROM p WHERE k = 'P1'")

            def load():
                with loader.transaction():
                    return _direct(loader, "race", "f", ["k"], [("P1",)])

            outcome = race(db, loader, load, lambda: deleter.execute("COMMIT"))
            expected_facts = 0
        else:
            loader.execute("BEGIN")
            assert _direct(loader, "race", "f", ["k"], [("P1",)])["facts"] == 1
            outcome = race(db, deleter, lambda: deleter.execute("DELETE FROM p WHERE k = 'P1'"),
                           lambda: loader.execute("COMMIT"))
            expected_facts = 1
    assert outcome == {"error": "23503"}
    assert _orphans(db) == 0 and db.execute("SELECT count(*) FROM f").fetchone()[0] == expected_facts
