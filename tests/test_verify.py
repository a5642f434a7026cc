"""Verified bulk loads: the set-based foreign key check that lets the load
function insert facts without the per-row checks, its fallbacks, and the
caller's rights on the fact table (privileges, column grants, row-level
security) on both paths."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import apply_config, race

FACT = 'business."规模明细"'
HEADER = "月度,计划代码,计划名称,组合代码,组合名称,产品线代码,机构代码,期末资产规模"


def _csv(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stage(conn, domain: str, columns: list[str], rows: list[tuple]) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * (len(columns) + 1))
    with conn.cursor() as cur:
        cur.executemany(f'INSERT INTO refdata_stage."{domain}" ({cols}, "_rd_line") VALUES ({marks})',
                        [tuple(row) + (i,) for i, row in enumerate(rows, start=1)])


def _load(conn, domain: str, columns: list[str], verify: str | None = None):
    return conn.execute(f'SELECT facts, path, fallback FROM refdata."{domain}__load"(%s, %s)',
                        [columns, verify]).fetchone()


def _srr(conn) -> str:
    return conn.execute("SHOW session_replication_role").fetchone()[0]


# -- the sample schema through `refdata load` -----------------------------------------


def test_load_verifies_set_based_and_says_so(sample, cli, tmp_path):
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PV1,计划,QV1,组合,PL201,G000,1",
                                        "2025-11-01,P00001,,QT000001,,PL201,G000,2"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert "loaded 2 fact rows" in result.stdout
    assert "foreign keys verified set-based" in result.stdout
    per_row = cli("load", "annuity_performance", str(path), "--verify", "per-row", "--force")
    assert per_row.returncode == 0, per_row.stderr
    assert "foreign keys checked per row (asked for with verify: per-row)" in per_row.stdout
    assert sample.execute(f"SELECT count(*) FROM {FACT}").fetchone()[0] == 4


@pytest.mark.parametrize("options", [[], ["--null", "NULL"]], ids=["server-parsed", "python-parsed"])
@pytest.mark.parametrize("verify", ["set-based", "per-row"])
def test_a_missing_parent_fails_like_the_constraint(sample, cli, tmp_path, options, verify):
    """A blank marker derives no parent, so the declared FK refuses it: the
    same SQLSTATE and constraint on both paths, and set-based names the line."""
    assert cli("apply").returncode == 0
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PV1,计划,QV1,组合,PL201,G000,1",
                                        "2025-11-01,-,,,,PL201,G000,2"])
    result = cli("load", "annuity_performance", str(path), "--verify", verify, *options)
    assert result.returncode == 2
    assert 'violates foreign key constraint "规模明细_计划代码_fkey"' in result.stderr
    assert "Key (计划代码)=(-) is not present" in result.stderr
    # both paths name the line and the column
    assert 'facts.csv:3: column "计划代码": insert or update' in result.stderr
    assert sample.execute(f"SELECT count(*) FROM {FACT}").fetchone()[0] == 0


def test_user_trigger_falls_back_and_still_fires(sample_db, cli, tmp_path):
    assert cli("apply").returncode == 0
    sample_db.execute(f"""
        CREATE TABLE business.audit (n int);
        CREATE FUNCTION business.audit() RETURNS trigger LANGUAGE plpgsql AS
            $$BEGIN INSERT INTO business.audit VALUES (1); RETURN NULL; END$$;
        CREATE TRIGGER audit AFTER INSERT ON {FACT} FOR EACH ROW EXECUTE FUNCTION business.audit();
    """)
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PV1,计划,QV1,组合,PL201,G000,1"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert f'foreign keys checked per row (trigger audit on {FACT} would not fire)' in result.stdout
    assert sample_db.execute("SELECT count(*) FROM business.audit").fetchone()[0] == 1

    refused = cli("load", "annuity_performance", str(path), "--verify", "set-based", "--force")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"refdata: error: load of {path} failed: cannot verify foreign keys set-based: "
        f"trigger audit on {FACT} would not fire; nothing was loaded"
    ]
    assert sample_db.execute(f"SELECT count(*) FROM {FACT}").fetchone()[0] == 1

    sample_db.execute(f"ALTER TABLE {FACT} DISABLE TRIGGER audit")
    assert "verified set-based" in cli("load", "annuity_performance", str(path), "--force").stdout


def test_rule_falls_back(sample_db, cli, tmp_path):
    assert cli("apply").returncode == 0
    sample_db.execute(f"""
        CREATE TABLE business.seen (k text);
        CREATE RULE seen AS ON INSERT TO {FACT} DO ALSO INSERT INTO business.seen VALUES (NEW."计划代码");
    """)
    path = _csv(tmp_path, "facts.csv", [HEADER, "2025-11-01,PV1,计划,QV1,组合,PL201,G000,1"])
    result = cli("load", "annuity_performance", str(path))
    assert result.returncode == 0, result.stderr
    assert f"foreign keys checked per row (rule seen on {FACT} would not fire)" in result.stdout
    assert sample_db.execute("SELECT k FROM business.seen").fetchall() == [("PV1",)]


TWO_DOMAINS = """
domains:
  plans:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - {name: fk_plan, source_column: 计划代码, target_schema: mapping, target_table: 年金计划, target_key: 年金计划号,
         defaults: {计划全称: x, 计划状态: y}}
  lines:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - {name: fk_line, source_column: 产品线代码, target_schema: mapping, target_table: 产品线, target_key: 产品线代码,
         defaults: {产品线: x}}
"""


def test_other_domains_trigger_on_the_same_fact_table_falls_back(sample_db, cli, write_config, tmp_path):
    config = apply_config(cli, write_config, TWO_DOMAINS)
    path = _csv(tmp_path, "facts.csv", ["月度,计划代码,产品线代码", "2025-11-01,PV1,PLV1"])
    result = cli("--config", str(config), "load", "plans", str(path))
    assert result.returncode == 0, result.stderr
    assert 'trigger lines__backfill on' in result.stdout
    # the other domain's trigger did its part
    assert sample_db.execute("""SELECT "_source" FROM mapping."产品线" WHERE "产品线代码" = 'PLV1'""").fetchone() == (
        "auto_derived",)


# -- session_replication_role is always put back -------------------------------------------


def test_session_replication_role_is_restored_after_success_and_failure(sample_db, cli):
    assert cli("apply").returncode == 0
    sample_db.execute(f"""ALTER TABLE {FACT} ADD CONSTRAINT no_bad CHECK ("计划代码" <> 'BAD')""")
    domain, columns = "annuity_performance", ["月度", "计划代码"]
    sample_db.execute("SET session_replication_role = local")  # not the default, to see it come back
    with sample_db.transaction():
        _stage(sample_db, domain, columns, [("2025-11-01", "PV1")])
        assert _load(sample_db, domain, columns, "set-based") == (1, "set-based", None)
        assert _srr(sample_db) == "local"
        # fails inside the insert that runs under replica
        with pytest.raises(psycopg.errors.CheckViolation):
            with sample_db.transaction():
                _stage(sample_db, domain, columns, [("2025-11-01", "BAD")])
                _load(sample_db, domain, columns, "set-based")
        assert _srr(sample_db) == "local"
        # fails in the set-based check
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            with sample_db.transaction():
                _stage(sample_db, domain, columns, [("2025-11-01", "-")])
                _load(sample_db, domain, columns, "set-based")
        assert _srr(sample_db) == "local"
    with pytest.raises(psycopg.errors.CheckViolation):
        with sample_db.transaction():
            _stage(sample_db, domain, columns, [("2025-11-01", "BAD")])
            _load(sample_db, domain, columns, "set-based")
    assert _srr(sample_db) == "local"
    assert sample_db.execute(f"SELECT count(*) FROM {FACT}").fetchone()[0] == 1


# -- the same outcome on both paths -------------------------------------------------------

CORPUS_SCHEMA = """
CREATE TABLE a (k text PRIMARY KEY, name text);
CREATE TABLE b (k text PRIMARY KEY);
INSERT INTO b VALUES ('b1'), ('bx');
CREATE TABLE b2 (k text PRIMARY KEY);
INSERT INTO b2 VALUES ('b1');
CREATE TABLE e (x text PRIMARY KEY);
INSERT INTO e VALUES ('c1'), ('zz');
CREATE TABLE c (x text, y integer, PRIMARY KEY (x, y));
INSERT INTO c VALUES ('c1', 1);
CREATE TABLE d (x text, y integer, PRIMARY KEY (x, y));
INSERT INTO d VALUES ('d1', 1);
CREATE TABLE fact (
    m date NOT NULL,
    ka text REFERENCES a,
    kb text CONSTRAINT fact_kb REFERENCES b,
    cx text, cy bigint,
    dx text, dy bigint,
    CONSTRAINT fact_c FOREIGN KEY (cx, cy) REFERENCES c MATCH SIMPLE,
    CONSTRAINT fact_d FOREIGN KEY (dx, dy) REFERENCES d MATCH FULL,
    -- the set-based check reads each distinct list of key columns once:
    -- two FKs on kb alone, one on cx alone beside (cx, cy)
    CONSTRAINT fact_kb2 FOREIGN KEY (kb) REFERENCES b2,
    CONSTRAINT fact_e FOREIGN KEY (cx) REFERENCES e
) PARTITION BY RANGE (m);
CREATE TABLE fact_2025_10 PARTITION OF fact FOR VALUES FROM ('2025-10-01') TO ('2025-11-01');
CREATE TABLE fact_2025_11 PARTITION OF fact FOR VALUES FROM ('2025-11-01') TO ('2025-12-01');
"""

CORPUS_CONFIG = """
domains:
  corpus:
    fact_table: fact
    foreign_keys:
      - {name: fk_a, source_column: ka, target_table: a, target_key: k}
"""

CORPUS_COLUMNS = ["m", "ka", "kb", "cx", "cy", "dx", "dy"]
GOOD = [
    ("2025-10-05", "A1", "b1", "c1", 1, "d1", 1),
    ("2025-11-05", "A2", None, "c1", None, None, None),   # MATCH SIMPLE: one NULL and the key is not checked
    ("2025-11-06", None, "b1", None, 7, None, None),      # MATCH FULL: all NULL is fine
    ("2025-11-07", "A1", None, "zz", None, "d1", 1),
]
CORPUS = {
    "good": (GOOD, None),
    "missing parent of a non-configured FK": (GOOD + [("2025-10-05", "A3", "b404", None, None, None, None)], "fact_kb"),
    "composite key missing under MATCH SIMPLE": (GOOD + [("2025-10-05", None, None, "c1", 2, None, None)], "fact_c"),
    "composite key missing under MATCH FULL": (GOOD + [("2025-10-05", None, None, None, None, "d1", 2)], "fact_d"),
    "NULL mixed into a MATCH FULL key": (GOOD + [("2025-10-05", None, None, None, None, "d1", None)], "fact_d"),
    "NULL mixed the other way": (GOOD + [("2025-10-05", None, None, None, None, None, 1)], "fact_d"),
    "missing parent of the second FK on the same column": (GOOD + [("2025-10-05", None, "bx", None, None, None, None)],
                                                           "fact_kb2"),
    "missing parent of an FK on a column of a composite FK": (GOOD + [("2025-10-05", None, None, "c9", None, None, None)],
                                                              "fact_e"),
    "row routed to no partition": (GOOD + [("2026-01-01", "A9", None, None, None, None, None)], "23514"),
}


def _outcome(conn, rows, verify):
    try:
        with conn.transaction():
            _stage(conn, "corpus", CORPUS_COLUMNS, rows)
            facts, path, fallback = _load(conn, "corpus", CORPUS_COLUMNS, verify)
            assert path == verify, fallback
            loaded = conn.execute("SELECT tableoid::regclass::text, * FROM fact ORDER BY 1, 2, 3").fetchall()
            parents = conn.execute("SELECT k, _source FROM a ORDER BY k").fetchall()
            raise _Rollback((facts, loaded, parents))
    except _Rollback as done:
        return ("loaded",) + done.args[0]
    except psycopg.errors.Error as e:
        return ("failed", e.sqlstate, e.diag.constraint_name if e.sqlstate == "23503" else None)


class _Rollback(Exception):
    pass


@pytest.mark.parametrize("case", list(CORPUS))
def test_set_based_and_per_row_give_the_same_outcome(db, cli, write_config, case):
    db.execute(CORPUS_SCHEMA)
    apply_config(cli, write_config, CORPUS_CONFIG)
    rows, expected = CORPUS[case]
    per_row = _outcome(db, rows, "per-row")
    set_based = _outcome(db, rows, "set-based")
    assert set_based == per_row
    if expected is None:
        assert per_row[0] == "loaded" and per_row[1] == len(rows)
        assert [k for k, _ in per_row[3]] == ["A1", "A2"]
    elif expected == "23514":
        assert per_row[:2] == ("failed", "23514")
    else:
        assert per_row == ("failed", "23503", expected)
    assert db.execute("SELECT count(*) FROM fact").fetchone()[0] == 0


def test_deferrable_fk_violated_for_now_is_checked_at_commit(db, cli, write_config):
    db.execute(CORPUS_SCHEMA)
    for fk in ("fact_kb", "fact_kb2"):
        db.execute(f"ALTER TABLE fact ALTER CONSTRAINT {fk} DEFERRABLE INITIALLY DEFERRED")
    apply_config(cli, write_config, CORPUS_CONFIG)
    with db.transaction():
        _stage(db, "corpus", CORPUS_COLUMNS, [("2025-10-05", "A1", "later", None, None, None, None)])
        facts, path, fallback = _load(db, "corpus", CORPUS_COLUMNS)
        assert (facts, path) == (1, "per-row")
        assert "deferrable foreign key fact_kb" in fallback
        db.execute("INSERT INTO b VALUES ('later'); INSERT INTO b2 VALUES ('later')")
    assert db.execute("SELECT kb FROM fact").fetchall() == [("later",)]


# -- concurrent DELETE of a referenced parent ---------------------------------------------------

RACE_SCHEMA = """
CREATE TABLE p (k text PRIMARY KEY);
INSERT INTO p VALUES ('P1');
CREATE TABLE f (k text REFERENCES p, q text REFERENCES p);
"""
RACE_CONFIG = """
domains:
  race:
    fact_table: f
    foreign_keys:
      - {name: fk_q, source_column: q, target_table: p, target_key: k}
"""


def _orphans(conn) -> int:
    return conn.execute("SELECT count(*) FROM f WHERE NOT EXISTS (SELECT FROM p WHERE p.k = f.k)").fetchone()[0]


def _connect(dsn):
    return psycopg.connect(dsn, autocommit=True)


@pytest.mark.parametrize("verify", ["set-based", "per-row"])
def test_parent_deleted_while_the_load_checks_it(db, cli, write_config, dsn, verify):
    """The DELETE holds the parent first; the load's check waits for it and then finds the parent gone."""
    db.execute(RACE_SCHEMA)
    apply_config(cli, write_config, RACE_CONFIG)
    with _connect(dsn) as loader, _connect(dsn) as deleter:
        deleter.execute("BEGIN")
        deleter.execute("DELETE FROM p WHERE k = 'P1'")

        def load():
            with loader.transaction():
                _stage(loader, "race", ["k"], [("P1",)])
                return _load(loader, "race", ["k"], verify)

        outcome = race(db, loader, load, lambda: deleter.execute("COMMIT"))
    assert outcome == {"error": "23503"}
    assert _orphans(db) == 0 and db.execute("SELECT count(*) FROM f").fetchone()[0] == 0


@pytest.mark.parametrize("verify", ["set-based", "per-row"])
def test_parent_deleted_after_the_load_checked_it(db, cli, write_config, dsn, verify):
    """The load holds the parent (FOR KEY SHARE) until it commits; the DELETE waits and then fails."""
    db.execute(RACE_SCHEMA)
    apply_config(cli, write_config, RACE_CONFIG)
    with _connect(dsn) as loader, _connect(dsn) as deleter:
        loader.execute("BEGIN")
        _stage(loader, "race", ["k"], [("P1",)])
        assert _load(loader, "race", ["k"], verify)[:2] == (1, verify)
        outcome = race(db, deleter, lambda: deleter.execute("DELETE FROM p WHERE k = 'P1'"),
                       lambda: loader.execute("COMMIT"))
    assert outcome == {"error": "23503"}
    assert _orphans(db) == 0 and db.execute("SELECT count(*) FROM f").fetchone()[0] == 1


# -- the caller's rights on the fact table ------------------------------------------------------

RIGHTS_SCHEMA = """
CREATE SCHEMA facts;
CREATE TABLE facts.p (k text PRIMARY KEY);
CREATE TABLE facts.f (
    owner  text NOT NULL DEFAULT current_user,
    k      text REFERENCES facts.p,
    secret text
);
ALTER TABLE facts.f ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON facts.f USING (owner = current_user) WITH CHECK (owner = current_user);
"""
RIGHTS_CONFIG = """
domains:
  rights:
    fact_schema: facts
    fact_table: f
    foreign_keys:
      - {name: fk_p, source_column: k, target_schema: facts, target_table: p, target_key: k}
"""
# The README's grants for a loader, and a column-limited INSERT on the fact table.
LOADER_GRANTS = [
    "GRANT USAGE ON SCHEMA refdata, refdata_stage, facts TO {role}",
    'GRANT INSERT, SELECT, DELETE ON refdata_stage."rights" TO {role}',
    "GRANT INSERT ON refdata.load_run TO {role}",
    'GRANT EXECUTE ON FUNCTION refdata."rights__load"(text[], text), '
    'refdata."rights__load_parents"(text[], text, boolean) TO {role}',
    "GRANT INSERT (owner, k) ON facts.f TO {role}",
]


@pytest.fixture
def loader(db, cli, write_config, dsn):
    """A loader role per test (cluster-wide, so its name is unique), with or without SET on session_replication_role."""
    db.execute(RIGHTS_SCHEMA)
    apply_config(cli, write_config, RIGHTS_CONFIG)
    made = []

    def make(may_set: bool):
        name = f"loader_{uuid.uuid4().hex[:12]}"
        db.execute(f'CREATE ROLE "{name}" LOGIN')
        for g in LOADER_GRANTS + (["GRANT SET ON PARAMETER session_replication_role TO {role}"] if may_set else []):
            db.execute(g.format(role=f'"{name}"'))
        info = db.info
        role_dsn = make_conninfo(host=info.host, port=info.port, user=name, dbname=info.dbname)
        conn = psycopg.connect(role_dsn, autocommit=True)
        made.append((name, conn))
        return name, conn, role_dsn

    yield make
    for name, conn in made:
        conn.close()
        db.execute(f'DROP OWNED BY "{name}"')
        db.execute(f'DROP ROLE "{name}"')


@pytest.mark.parametrize("may_set, path", [(False, "per-row"), (True, "set-based")])
def test_fact_rights_apply_through_the_load_function(loader, db, may_set, path):
    name, conn, _ = loader(may_set)
    # what the role may do directly
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        conn.execute("INSERT INTO facts.f (owner, k) VALUES ('someone_else', NULL)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute("INSERT INTO facts.f (owner, k, secret) VALUES (current_user, NULL, 's')")

    # the psql route: staging table + load function, in one transaction
    def route(columns, row, load_columns="same"):
        with conn.transaction():
            _stage(conn, "rights", columns, [row])
            return _load(conn, "rights", columns if load_columns == "same" else load_columns)

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        route(["owner", "k"], ("someone_else", "N1"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        route(["owner", "k", "secret"], (name, "N1", "s"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        route(["owner", "k"], (name, "N1"), None)  # all loadable columns, secret among them
    facts, taken, fallback = route(["owner", "k"], (name, "N1"))
    assert (facts, taken) == (1, path)
    if not may_set:
        assert fallback == "the loading role may not set session_replication_role"
    assert db.execute("SELECT owner, k, secret FROM facts.f").fetchall() == [(name, "N1", None)]
    assert db.execute("SELECT k, _source FROM facts.p").fetchall() == [("N1", "auto_derived")]


@pytest.mark.parametrize("may_set", [False, True])
def test_fact_rights_apply_through_refdata_load(loader, db, cli, write_config, tmp_path, may_set):
    name, _, role_dsn = loader(may_set)
    config = str(tmp_path / "data_sources.yml")
    other = _csv(tmp_path, "other.csv", ["owner,k", "someone_else,N2"])
    result = cli("--config", config, "load", "rights", str(other), db=role_dsn)
    assert result.returncode == 1
    assert "new row violates row-level security policy" in result.stderr
    secret = _csv(tmp_path, "secret.csv", ["owner,k,secret", f"{name},N3,s"])
    result = cli("--config", config, "load", "rights", str(secret), db=role_dsn)
    assert result.returncode == 1
    assert "permission denied for table f" in result.stderr
    assert db.execute("SELECT count(*) FROM facts.f").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM facts.p").fetchone()[0] == 0
    mine = _csv(tmp_path, "mine.csv", ["owner,k", f"{name},N4"])
    result = cli("--config", config, "load", "rights", str(mine), db=role_dsn)
    assert result.returncode == 0, result.stderr
    assert ("verified set-based" if may_set else "may not set session_replication_role") in result.stdout
    if not may_set:
        refused = cli("--config", config, "load", "rights", str(mine), "--verify", "set-based", "--force", db=role_dsn)
        assert refused.returncode == 1
        assert "cannot verify foreign keys set-based: the loading role may not set session_replication_role" in refused.stderr


def test_domain_verify_key_chooses_the_path_and_the_option_overrides_it(db, cli, write_config, tmp_path):
    db.execute(RACE_SCHEMA)
    config = apply_config(cli, write_config, RACE_CONFIG.replace("    fact_table: f\n",
                                                                 "    fact_table: f\n    verify: per-row\n"))
    path = _csv(tmp_path, "f.csv", ["k,q", "P1,NEW"])
    result = cli("--config", str(config), "load", "race", str(path))
    assert result.returncode == 0, result.stderr
    assert "foreign keys checked per row (asked for with verify: per-row)" in result.stdout
    result = cli("--config", str(config), "load", "race", str(path), "--verify", "set-based", "--force")
    assert result.returncode == 0, result.stderr
    assert "foreign keys verified set-based" in result.stdout
    bad = write_config(RACE_CONFIG.replace("    fact_table: f\n", "    fact_table: f\n    verify: sometimes\n"),
                       "bad.yml")
    result = cli("--config", str(bad), "validate")
    assert result.returncode == 2
    assert "verify" in result.stderr and len(result.stderr.strip().splitlines()) == 1
