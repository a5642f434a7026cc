"""Production schemas refdata's own sample does not have: parents that are
partitioned, column types of extensions, parents with triggers of their own,
long domain names. Each goes through the product as a DBA would drive it:
validate, apply (twice), plan, inserts, `refdata load`."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from helpers import apply_config, line_of
from test_catalog import refused


def config(fks: str, domain: str = "d", fact: str = "f") -> str:
    return f"domains:\n  {domain}:\n    fact_table: {fact}\n    foreign_keys:\n" + "".join(
        f"      - {fk}\n" for fk in fks.strip().splitlines())


def load(cli, path, tmp_path, text: str, *options: str, domain: str = "d"):
    data = tmp_path / "facts.csv"
    data.write_text(text, encoding="utf-8")
    return cli("--config", str(path), "load", domain, str(data), "--force", *options)


# -- a partitioned parent ------------------------------------------------------


PARTITIONED = """
    CREATE TABLE period (code text, yr int, PRIMARY KEY (code, yr)) PARTITION BY LIST (yr);
    CREATE TABLE period_2024 PARTITION OF period FOR VALUES IN (2024);
    CREATE TABLE period_rest PARTITION OF period DEFAULT;
    CREATE TABLE f (code text, yr int, amount int, FOREIGN KEY (code, yr) REFERENCES period);
"""
PERIOD_FK = "{name: fk_period, source_column: [code, yr], target_table: period, target_key: [code, yr]}"


@pytest.mark.parametrize("verify", ["auto", "set-based", "per-row"])
def test_a_load_derives_parents_into_any_partition_of_a_partitioned_parent(cli, db, write_config, tmp_path, verify):
    # A FOREIGN KEY into a partitioned table has a clone per partition of the
    # parent; each clone sees only its partition, so checking the batch
    # against them refused every key that lives in another partition.
    db.execute(PARTITIONED)
    db.execute("INSERT INTO period VALUES ('old', 2024)")
    path = apply_config(cli, write_config, config(PERIOD_FK))
    result = load(cli, path, tmp_path, "code,yr,amount\nold,2024,1\nnew,2024,2\nnew,2025,3\n", "--verify", verify)
    assert result.returncode == 0, result.stderr
    assert "parents derived: public.period 2" in result.stdout
    assert ("checked per row" in result.stdout) == (verify == "per-row")
    assert db.execute("SELECT tableoid::regclass::text, code, yr, _source FROM period ORDER BY yr, code").fetchall() == [
        ("period_2024", "new", 2024, "auto_derived"), ("period_2024", "old", 2024, "authoritative"),
        ("period_rest", "new", 2025, "auto_derived")]
    assert db.execute("SELECT count(*) FROM f").fetchone()[0] == 3


def test_a_load_still_refuses_a_key_no_partition_of_the_parent_takes(cli, db, write_config, tmp_path):
    db.execute(PARTITIONED.replace("CREATE TABLE period_rest PARTITION OF period DEFAULT;", ""))
    path = apply_config(cli, write_config, config(PERIOD_FK))
    result = load(cli, path, tmp_path, "code,yr,amount\nnew,2024,2\nnew,2025,3\n")
    assert result.returncode == 2
    assert 'no partition of relation "period" found for row' in result.stderr
    assert db.execute("SELECT count(*) FROM f").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM period").fetchone()[0] == 0


@pytest.mark.parametrize("verify", ["auto", "per-row"])
def test_a_load_into_a_partition_checks_the_foreign_keys_it_inherits(cli, db, write_config, tmp_path, verify):
    # The constraints of a partition are clones of its parent table's: a
    # check that took only constraints of no parent checked none of them, and
    # a load straight into a partition, its per-row checks skipped, stored a
    # fact naming an organisation that does not exist.
    db.execute(PARTITIONED + """
        CREATE TABLE org (id text PRIMARY KEY);
        INSERT INTO org VALUES ('O1');
        CREATE TABLE trade (code text, yr int, org text REFERENCES org, FOREIGN KEY (code, yr) REFERENCES period)
            PARTITION BY LIST (yr);
        CREATE TABLE trade_2024 PARTITION OF trade FOR VALUES IN (2024);
    """)
    path = apply_config(cli, write_config, config(PERIOD_FK, fact="trade_2024"))
    result = load(cli, path, tmp_path, "code,yr,org\nnew,2024,O1\nnew,2024,NOPE\n", "--verify", verify)
    assert result.returncode == 2, result.stdout
    assert "trade_org_fkey" in result.stderr
    assert db.execute("SELECT count(*) FROM trade").fetchone()[0] == 0
    result = load(cli, path, tmp_path, "code,yr,org\nnew,2024,O1\n", "--verify", verify)
    assert result.returncode == 0, result.stderr
    assert ("verified set-based" in result.stdout) == (verify == "auto")


def test_a_derived_parent_a_partition_refuses_names_the_column_and_the_foreign_key(cli, db, write_config, tmp_path):
    # The server names the partition the derived row went to: the load's
    # error named no column and no foreign key, as for a table no FK targets.
    db.execute(PARTITIONED.replace("yr int, PRIMARY KEY", "yr int, label text CHECK (label <> 'bad'), PRIMARY KEY")
               .replace("amount int", "lab text"))
    path = apply_config(cli, write_config, config(
        "{name: fk_period, source_column: [code, yr], target_table: period, target_key: [code, yr], "
        "backfill_columns: [{source: lab, target: label}]}"))
    result = load(cli, path, tmp_path, "code,yr,lab\nnew,2024,bad\n")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f'refdata: error: {tmp_path / "facts.csv"}:2: column "lab": foreign key fk_period: cannot derive its parent '
        'in "public"."period" column "label": new row for relation "period_2024" violates check constraint'), \
        result.stderr
    assert db.execute("SELECT count(*) FROM period").fetchone()[0] == 0

# A fact table that is itself a partition has, as its foreign keys, clones of
# its partitioned table's; a FOREIGN KEY into a partitioned parent has a clone
# per partition of the parent, on the same table. The first are the table's
# foreign keys, the second never count apart from the one they stem from.
TRADE = PARTITIONED + """
    CREATE TABLE org (id text PRIMARY KEY);
    CREATE TABLE trade (code text, yr int, org text REFERENCES org, FOREIGN KEY (code, yr) REFERENCES period)
        PARTITION BY LIST (yr);
    CREATE TABLE trade_2024 PARTITION OF trade FOR VALUES IN (2024);
    CREATE TABLE trade_rest PARTITION OF trade DEFAULT;
"""


def statement_config(fact: str, defer: bool) -> str:
    return config(PERIOD_FK, fact=fact).replace(
        "    foreign_keys:\n", f"    trigger_mode: statement\n    defer_foreign_keys: {str(defer).lower()}\n"
                              "    foreign_keys:\n")


def test_a_partition_as_fact_table_warns_of_the_foreign_keys_it_inherits(cli, db, write_config):
    db.execute(TRADE)
    path = write_config(config(PERIOD_FK, fact="trade_2024"))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning: ")] == [
        f'warning: {path}:{line_of(path, "fact_table")}: "public"."trade_2024": not covered: trade_org_fkey (org) -> '
        '"public"."org"']


def test_statement_mode_on_a_partition_needs_its_table_s_constraint_deferred(cli, db, write_config):
    db.execute(TRADE)
    path = write_config(statement_config("trade_2024", defer=False))
    for command in ("validate", "apply"):
        result = cli("--config", str(path), command)
        assert result.returncode == 2, result.stdout
        assert result.stderr.splitlines() == [
            f"refdata: error: {path}:{line_of(path, 'trigger_mode')}: domain d, foreign key fk_period: trigger_mode "
            'statement needs constraint "trade_code_yr_fkey" of "public"."trade" to be DEFERRABLE INITIALLY DEFERRED '
            f"(or set defer_foreign_keys: true) (database {db.info.dbname} on {db.info.host})"]
    assert db.execute("SELECT to_regnamespace('refdata')").fetchone()[0] is None


@pytest.mark.parametrize("fact", ["trade", "trade_2024"])
def test_defer_foreign_keys_defers_the_partitioned_table_s_constraint(cli, db, write_config, fact):
    # A partition's constraint can only be altered through the one it stems
    # from: apply defers the partitioned table's (all its partitions with it),
    # and neither the clones into the parent's partitions nor the partitions'
    # own clones are deferred apart.
    db.execute(TRADE + "INSERT INTO org VALUES ('O1');")
    path = write_config(statement_config(fact, defer=True))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning: ")] == [
        f'warning: {path}:{line_of(path, "fact_table")}: "public"."{fact}": not covered: trade_org_fkey (org) -> '
        '"public"."org"']
    result = cli("--config", str(path), "apply")
    assert result.returncode == 0, result.stderr
    assert db.execute("""SELECT DISTINCT condeferrable AND condeferred FROM pg_constraint
                          WHERE contype = 'f' AND conrelid::regclass::text LIKE 'trade%' AND confrelid <> 'org'::regclass
                       """).fetchall() == [(True,)]
    db.execute(f"INSERT INTO {fact} VALUES ('new', 2024, 'O1')")
    assert db.execute("SELECT code, yr, _source FROM period").fetchall() == [("new", 2024, "auto_derived")]
    again = cli("--config", str(path), "apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("unchanged: ")
    plan = cli("--config", str(path), "plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # a fresh plan after the constraint went back to immediate defers it again
    db.execute("ALTER TABLE trade ALTER CONSTRAINT trade_code_yr_fkey NOT DEFERRABLE")
    plan = cli("--config", str(path), "plan")
    assert [line for line in plan.stdout.splitlines() if line.startswith("ALTER ")] == [
        'ALTER TABLE "public"."trade" ALTER CONSTRAINT "trade_code_yr_fkey" DEFERRABLE INITIALLY DEFERRED;'], plan.stdout


def test_a_load_into_a_partition_checks_a_defaulted_inherited_key_per_row(cli, db, write_config, tmp_path):
    # The set-based check verifies the columns a load writes; an inherited
    # foreign key on a column the file leaves to its default makes the load
    # check every row as PostgreSQL does, which refuses the default naming
    # an organisation that does not exist.
    db.execute(TRADE + "ALTER TABLE trade ALTER COLUMN org SET DEFAULT 'NOPE'; INSERT INTO org VALUES ('O1');")
    path = apply_config(cli, write_config, config(PERIOD_FK, fact="trade_2024"))
    result = load(cli, path, tmp_path, "code,yr\nnew,2024\n")
    assert result.returncode == 2, result.stdout
    assert "trade_org_fkey" in result.stderr
    assert db.execute("SELECT count(*) FROM trade").fetchone()[0] == 0
    db.execute("ALTER TABLE trade ALTER COLUMN org SET DEFAULT 'O1'")
    result = load(cli, path, tmp_path, "code,yr\nnew,2024\n")
    assert result.returncode == 0, result.stderr
    assert ("foreign keys checked per row (foreign key trade_org_fkey: column org is not loaded but computed or "
            "defaulted)") in result.stdout


@pytest.mark.parametrize("fact", ["f", "ledger_b"])
def test_a_review_merge_counts_a_partitioned_table_s_rows_once(cli, db, write_config, fact):
    # Each partition of a table has a clone of the table's FOREIGN KEY, under
    # the same name: counted apart, the last one counted hid the others.
    db.execute("""
        CREATE TABLE org (id text PRIMARY KEY);
        CREATE TABLE f (org text);
        CREATE TABLE ledger (yr int, org text REFERENCES org) PARTITION BY LIST (yr);
        CREATE TABLE ledger_a PARTITION OF ledger FOR VALUES IN (2024);
        CREATE TABLE ledger_b PARTITION OF ledger DEFAULT;
    """)
    apply_config(cli, write_config, config("{name: fk_org, source_column: org, target_table: org, target_key: id}",
                                           fact=fact))
    # ledger is no fact table of refdata's: a DBA lets the merge re-point its rows
    db.execute("GRANT SELECT, UPDATE ON ledger TO refdata_owner")
    db.execute("INSERT INTO org VALUES ('O1'), ('OX')")
    db.execute("INSERT INTO ledger VALUES (2024, 'OX'), (2025, 'OX'), (2025, 'OX'), (2026, 'O1')")
    result = cli("review", "merge", "public.org", "OX", "O1")
    assert result.returncode == 0, result.stderr
    repointed = "d.fk_org: 0, ledger_org_fkey: 3" if fact == "f" else "d.fk_org: 2, ledger_org_fkey: 1"
    assert result.stdout.strip() == f"merged OX into O1 in public.org; rows re-pointed: {repointed}"
    assert db.execute("SELECT org, count(*) FROM ledger GROUP BY 1").fetchall() == [("O1", 4)]


# -- types and functions of extensions -----------------------------------------


def test_a_schema_using_extensions_and_other_schemas_plans_and_applies_again(cli, db, write_config):
    # A plan copies the live schemas into a scratch database; a schema-only
    # dump of a few schemas leaves the extensions out, so a citext key (or a
    # default calling a function of an extension in a schema of its own)
    # failed every apply after the first, and every plan; so did a view of
    # a copied schema reading a table of a schema that was not copied.
    db.execute("""
        CREATE SCHEMA rpt;
        CREATE TABLE rpt.totals (customer text, amount int);
        CREATE VIEW public.customer_totals AS SELECT * FROM rpt.totals;
        CREATE EXTENSION citext;
        CREATE SCHEMA ext;
        CREATE EXTENSION "uuid-ossp" SCHEMA ext;
        CREATE SCHEMA ref;
        CREATE TABLE ref.customer (code citext PRIMARY KEY, id uuid NOT NULL DEFAULT ext.uuid_generate_v4());
        CREATE TABLE f (customer citext REFERENCES ref.customer, amount int);
    """)
    path = apply_config(cli, write_config, config(
        "{name: fk_customer, source_column: customer, target_schema: ref, target_table: customer, target_key: code}"))
    again = cli("--config", str(path), "apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("unchanged: ")
    plan = cli("--config", str(path), "plan")
    assert plan.returncode == 0, plan.stderr  # nothing to do
    assert [line for line in plan.stdout.splitlines() + plan.stderr.splitlines()
            if not line.startswith("warning: ")] == []
    db.execute("INSERT INTO f VALUES ('AbC', 1), ('abc', 2)")
    assert db.execute("SELECT code::text, id IS NOT NULL, _source FROM ref.customer").fetchall() == [
        ("AbC", True, "auto_derived")]


@pytest.mark.parametrize("schema", ["public", "rpt"])
def test_a_view_over_a_foreign_table_in_a_copied_schema_plans(cli, db, write_config, schema):
    # A plan's copy of the schemas leaves foreign tables out (their server is
    # not copied): a view reading one failed the copy, and every plan and apply.
    db.execute(f"""
        CREATE EXTENSION file_fdw;
        CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
        CREATE SCHEMA rpt;
        CREATE FOREIGN TABLE {schema}.org_file (id text) SERVER files OPTIONS (program 'echo O1', format 'csv');
        CREATE VIEW public.org_feed AS SELECT id FROM {schema}.org_file;
        CREATE VIEW public.org_feed_upper AS SELECT upper(id) AS id FROM public.org_feed;
        CREATE TABLE org (id text PRIMARY KEY);
        CREATE TABLE f (org text REFERENCES org);
    """)
    path = write_config(config("{name: fk_org, source_column: org, target_table: org, target_key: id}"))
    plan = cli("--config", str(path), "plan")
    assert plan.returncode == 3, plan.stderr
    path = apply_config(cli, write_config, path.read_text(encoding="utf-8"))
    plan = cli("--config", str(path), "plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert db.execute("SELECT * FROM public.org_feed_upper").fetchall() == [("O1",)]
    db.execute("INSERT INTO f VALUES ('NEW')")
    assert db.execute("SELECT count(*) FROM org").fetchone()[0] == 1


# -- long domain names -----------------------------------------------------------


# 63 bytes, and one whose shortened load trigger names, with the hash at
# their end, sorted the verify trigger before the begin trigger
LONG_DOMAIN = "d" * 60 + "007"


def test_a_long_domain_name_keeps_its_load_triggers_in_firing_order(cli, db, write_config, tmp_path):
    # The two load triggers of a direct load fire in name order: the first
    # puts session_replication_role back to origin, the second derives and
    # verifies. Names shortened with a hash at their end fired them the other
    # way round for about half of the long domain names (a Chinese domain
    # name of 18 characters is long), and every load fell back to staging.
    db.execute("CREATE TABLE plan (code text PRIMARY KEY); CREATE TABLE f (code text REFERENCES plan, amount int)")
    path = apply_config(cli, write_config, config(
        "{name: fk_plan, source_column: code, target_table: plan, target_key: code}", domain=LONG_DOMAIN))
    result = load(cli, path, tmp_path, "code,amount\nP1,1\n", domain=LONG_DOMAIN)
    assert result.returncode == 0, result.stderr
    assert db.execute("SELECT path FROM refdata.load_run").fetchall() == [("direct (server csv)",)]
    assert db.execute("SELECT code, _source FROM plan").fetchall() == [("P1", "auto_derived")]
    names = [r[0] for r in db.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'f'::regclass AND tgname LIKE '%load%' ORDER BY tgname COLLATE \"C\"")]
    assert [n[-len("load_verify"):] for n in names] == ["_load_begin", "load_verify"]
    listed = cli("--config", str(path), "names").stdout
    assert all(f'"{n}" ON "public"."f"' in listed for n in names)


# -- a parent with triggers of its own --------------------------------------------


def test_a_before_insert_trigger_of_a_parent_is_a_warning(cli, db, write_config):
    # It runs on the parent refdata inserts: upper-casing the key stores a
    # parent under another key than the fact names, and without a declared
    # FOREIGN KEY nothing ever says so. One that only fires on UPDATE cannot.
    db.execute("""
        CREATE TABLE product (code text PRIMARY KEY, changed timestamptz);
        CREATE TABLE f (product text, other text);
        CREATE FUNCTION norm() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN NEW.code := upper(NEW.code); RETURN NEW; END';
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
            'BEGIN NEW.changed := now(); RETURN NEW; END';
        CREATE TRIGGER product_norm BEFORE INSERT OR UPDATE ON product FOR EACH ROW EXECUTE FUNCTION norm();
        CREATE TRIGGER product_touch BEFORE UPDATE ON product FOR EACH ROW EXECUTE FUNCTION touch();
    """)
    path = apply_config(cli, write_config, config(
        "{name: fk_product, source_column: product, target_table: product, target_key: code}\n"
        "{name: fk_other, source_column: other, target_table: product, target_key: code}"))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == [
        f'warning: {path}:{line_of(path, "fk_product")}: domain d, foreign key fk_product: BEFORE INSERT row trigger "product_norm" on "public"."product" '
        "can change the parent refdata derives: a key it changes leaves the fact naming a parent nobody derived"]


# -- parents with row-level security -----------------------------------------------


RLS_PARENT = """
    CREATE TABLE org (id text PRIMARY KEY, region text);
    CREATE TABLE f (org text);
    INSERT INTO org VALUES ('O1', 'north');
    ALTER TABLE org ENABLE ROW LEVEL SECURITY;
"""
ORG_FK = "{name: fk_org, source_column: org, target_table: org, target_key: id}"


def test_a_parent_whose_row_level_security_lets_the_owner_see_nothing_is_refused(cli, db, write_config):
    # refdata's functions look parents up and insert them as the owner role:
    # with no policy for it, every fact row failed, those naming parents that
    # exist included, and validate had said nothing.
    db.execute(RLS_PARENT + "CREATE POLICY north ON org TO PUBLIC USING (region = 'north');"
               "ALTER POLICY north ON org TO pg_monitor;")
    path = write_config(config(ORG_FK))
    refused(cli, db, path, 'domain d, foreign key fk_org: row-level security on "public"."org" applies to '
            '"refdata_owner", which derives its parents, and no policy lets it read and insert rows: every fact row '
            'would fail; give it one (CREATE POLICY ... TO "refdata_owner" USING (true) WITH CHECK (true)) or BYPASSRLS')


def test_a_parent_whose_row_level_security_has_a_policy_for_the_owner_is_a_warning(cli, db, write_config):
    # a policy for everyone: a parent it hides looks missing, and a derived
    # row it refuses (no region) fails the fact row
    db.execute(RLS_PARENT + "CREATE POLICY regional ON org USING (region IS DISTINCT FROM 'hidden') "
               "WITH CHECK (region IS NOT NULL);")
    path = apply_config(cli, write_config, config(ORG_FK))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == [
        f"warning: {path}:{line_of(path, 'target_table')}: domain d, foreign key fk_org: row-level security on "
        '"public"."org" applies to "refdata_owner", which derives its parents: a parent its policies hide looks '
        "missing (the insert finds the key taken and adds nothing) and a derived row they refuse fails the fact row"]
    db.execute("INSERT INTO f VALUES ('O1')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        db.execute("INSERT INTO f VALUES ('NEW')")
    db.rollback()
    # a policy letting the owner see and insert every row: no warning, parents derived
    db.execute("CREATE POLICY refdata ON org TO refdata_owner USING (true)")
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == []
    db.execute("INSERT INTO f VALUES ('NEW')")
    assert db.execute("SELECT id, _source FROM org ORDER BY id").fetchall() == [
        ("NEW", "auto_derived"), ("O1", "authoritative")]
    # a restrictive policy narrows every permissive one
    db.execute("CREATE POLICY narrow ON org AS RESTRICTIVE USING (region IS NOT NULL)")
    result = cli("--config", str(path), "validate")
    assert any("row-level security" in line for line in result.stdout.splitlines())


def test_a_parent_the_owner_role_owns_has_no_row_level_security_finding(cli, db, write_config):
    db.execute(RLS_PARENT)
    db.execute("CREATE ROLE refdata_owner NOLOGIN") if db.execute(
        "SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'refdata_owner')").fetchone()[0] else None
    db.execute("ALTER TABLE org OWNER TO refdata_owner")
    path = apply_config(cli, write_config, config(ORG_FK))
    result = cli("--config", str(path), "validate")
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == []
    db.execute("INSERT INTO f VALUES ('O1'), ('NEW')")
    assert db.execute("SELECT count(*) FROM org").fetchone()[0] == 2
    # FORCE ROW LEVEL SECURITY holds the table's owner to the policies too
    db.execute("ALTER TABLE org FORCE ROW LEVEL SECURITY")
    result = cli("--config", str(path), "validate")
    assert result.returncode == 2
    assert "no policy lets it read and insert rows" in result.stderr
    # but not a role with BYPASSRLS
    role = f"rd_bypass_{uuid.uuid4().hex[:8]}"
    db.execute(f'CREATE ROLE "{role}" NOLOGIN BYPASSRLS')
    try:
        result = cli("--config", str(path), "validate", env={"REFDATA_OWNER": role})
        assert result.returncode == 0, result.stderr
        assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == []
    finally:
        db.execute(f'DROP ROLE "{role}"')


# -- keys compared by another equality than the parent key's ------------------------


@pytest.mark.parametrize("fact_type, key_type, shown", [
    ("text", "public.citext", "public.citext"),   # 'abc' is not found next to 'ABC', a case the key calls equal
])
def test_a_key_the_look_up_compares_by_another_equality_is_refused(cli, db, write_config, fact_type, key_type, shown):
    # The look-up resolves `key = fact value` to text = text: another
    # equality than the key's (and its unique index cannot serve it, so every
    # look-up reads the whole parent table). PostgreSQL itself refuses a
    # FOREIGN KEY from text to citext.
    db.execute(f"""
        CREATE EXTENSION IF NOT EXISTS citext;
        CREATE TABLE plan (code {key_type} PRIMARY KEY);
        CREATE TABLE f (code {fact_type});
    """)
    path = write_config(config("{name: fk_plan, source_column: code, target_table: plan, target_key: code}"))
    refused(cli, db, path,
            f'domain d, foreign key fk_plan: column "code" ({fact_type}) of "public"."f" is compared with key column '
            f'"code" ({shown}) of "public"."plan" by another equality than the key\'s (its unique index cannot serve '
            f"the look-up): a fact value the key calls equal to a parent's (in another case, with trailing spaces) "
            f"is not found; give both the same type")


def test_a_citext_fact_key_into_a_citext_parent_key_is_taken(cli, db, write_config):
    db.execute("""
        CREATE EXTENSION IF NOT EXISTS citext;
        CREATE TABLE plan (code citext PRIMARY KEY);
        CREATE TABLE f (code citext REFERENCES plan);
    """)
    # citext's = lives in schema public, where refdata's functions do not
    # look: apply names it, as the FOREIGN KEY does; nothing to warn about
    path = apply_config(cli, write_config, config(
        "{name: fk_plan, source_column: code, target_table: plan, target_key: code}"))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == []
    db.execute("INSERT INTO f VALUES ('AbC'), ('abc'), ('ABC ')")
    assert db.execute("SELECT code::text, _source FROM plan ORDER BY 1").fetchall() == [
        ("ABC ", "auto_derived"), ("AbC", "auto_derived")]


# Keys the FOREIGN KEY calls equal in another spelling: case for citext,
# trailing spaces for character(n) (also against a text or varchar value).
SPELLINGS = {
    "citext": ("CREATE EXTENSION IF NOT EXISTS citext; CREATE TABLE plan (code citext PRIMARY KEY)",
               "citext", "ABC", "abc"),
    "char-char": ("CREATE TABLE plan (code char(5) PRIMARY KEY)", "char(5)", "AB", "AB "),
    "char-varchar": ("CREATE TABLE plan (code char(5) PRIMARY KEY)", "varchar(5)", "AB", "AB "),
    "char-text": ("CREATE TABLE plan (code char(5) PRIMARY KEY)", "text", "AB", "AB "),
}


@pytest.mark.parametrize("case", list(SPELLINGS))
def test_the_views_find_a_parent_the_foreign_key_finds_in_another_spelling(cli, db, write_config, case):
    # The views compared keys by `=` as pg_catalog resolves it (text = text):
    # a fact naming 'abc' counted as missing although the FOREIGN KEY (and
    # the trigger) took the parent 'ABC' as its own.
    parent, fact_type, stored, spelled = SPELLINGS[case]
    db.execute(f"{parent}; CREATE TABLE f (code {fact_type} REFERENCES plan, n int)")
    db.execute("INSERT INTO plan VALUES (%s), ('ZZ')", [stored])
    db.execute("INSERT INTO f VALUES (%s, 1)", [spelled])  # the FOREIGN KEY takes it
    apply_config(cli, write_config, config("{name: fk_plan, source_column: code, target_table: plan, target_key: code}"))
    db.execute("INSERT INTO f VALUES (%s, 2)", [spelled])  # and so does the trigger: nothing derived
    assert db.execute("SELECT code::text, _source FROM plan ORDER BY 1").fetchall() == [
        (stored, "authoritative"), ("ZZ", "authoritative")]
    assert db.execute("SELECT keys_used, authoritative, auto_derived, missing FROM refdata.fk_coverage").fetchall() == [
        (1, 1, 0, 0)]
    db.execute("UPDATE plan SET _source = 'auto_derived', _needs_review = true")
    assert db.execute("SELECT key, fact_rows FROM refdata.pending_review ORDER BY key").fetchall() == [
        (stored, 2), ("ZZ", 0)]


@pytest.mark.parametrize("case", list(SPELLINGS))
def test_a_merge_repoints_facts_naming_the_key_in_another_spelling(cli, db, write_config, case):
    # The merge compared facts with WRONG by text = text: a fact naming
    # 'abc' stayed behind, and deleting 'ABC' failed on the FOREIGN KEY
    # (or, without one, left the fact naming no parent).
    parent, fact_type, stored, spelled = SPELLINGS[case]
    db.execute(f"{parent}; CREATE TABLE f (code {fact_type} REFERENCES plan, n int)")
    db.execute("INSERT INTO plan VALUES (%s), ('ZZ')", [stored])
    db.execute("INSERT INTO f VALUES (%s, 1), (%s, 2), ('ZZ', 3)", [spelled, stored])
    apply_config(cli, write_config, config("{name: fk_plan, source_column: code, target_table: plan, target_key: code}"))
    result = db.execute("SELECT refdata.review_merge('public.plan', %s, '\"ZZ\"')",
                        [f'"{stored}"']).fetchone()[0]
    assert result["repointed"] == {"d.fk_plan": 2}
    assert db.execute("SELECT code::text, count(*) FROM f GROUP BY 1").fetchall() == [("ZZ", 3)]
    assert db.execute("SELECT code::text FROM plan").fetchall() == [("ZZ",)]


def test_a_citext_key_is_looked_up_through_its_index(cli, db, write_config):
    # The look-up by text = text read the whole parent for every fact row
    # (300 inserts against 200,000 parents: 5.7 s); by citext's own = the
    # key's index serves it.
    db.execute("""
        CREATE EXTENSION IF NOT EXISTS citext;
        CREATE TABLE plan (code citext PRIMARY KEY);
        CREATE TABLE f (code citext, n int);
        INSERT INTO plan SELECT 'P' || g FROM generate_series(1, 5000) AS g;
        ANALYZE plan;
    """)
    apply_config(cli, write_config, config("{name: fk_plan, source_column: code, target_table: plan, target_key: code}"))
    db.execute("INSERT INTO f VALUES ('P3', 0)")  # a session's first insert reads the parent once, whatever the key
    scans = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relid = 'plan'::regclass"
    with db.transaction():  # the counts of this transaction and of earlier ones the backend has not reported yet
        before = db.execute(scans).fetchone()
        db.execute("INSERT INTO f VALUES ('p1', 1), ('p2', 2), ('new', 3)")
        after = db.execute(scans).fetchone()
    assert after[0] - before[0] == 0 and after[1] - before[1] >= 3, (before, after)
    assert db.execute("SELECT count(*) FROM plan WHERE _source = 'auto_derived'").fetchone() == (1,)


# -- a parent with a column named like a tracking column ----------------------------


@pytest.mark.parametrize("column", ["\"_source\" text", "\"_source\" text NOT NULL DEFAULT 'legacy'"])
def test_a_parent_with_a_source_column_of_its_own_is_refused(cli, db, write_config, column):
    # A lineage column of the parent's own, under refdata's name: apply kept
    # it as it was (NULL allowed, any value), so its rows read neither
    # authoritative nor auto-derived, and the views counted none of them.
    db.execute(f"CREATE TABLE plan (code text PRIMARY KEY, {column}); CREATE TABLE f (code text)")
    db.execute("INSERT INTO plan (code) VALUES ('A')")
    path = write_config(config("{name: fk_plan, source_column: code, target_table: plan, target_key: code}"))
    where = f"database {db.info.dbname} on {db.info.host}"
    for command in ("validate", "apply"):
        result = cli("--config", str(path), command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [
            f'refdata: error: {path}:5: domain d, foreign key fk_plan: column "_source" of "public"."plan" is not '
            f"refdata's (it may hold other values than 'authoritative' and 'auto_derived'); rename it, refdata adds "
            f"its own ({where})"]
    assert db.execute("SELECT to_regnamespace('refdata'), count(*) FROM pg_attribute "
                      "WHERE attrelid = 'plan'::regclass AND attname LIKE '\\_%' AND NOT attisdropped").fetchone() == (None, 1)


def test_a_text_fact_key_into_a_char_key_is_looked_up_as_character(cli, db, write_config):
    # text = text is what `key = text value` resolves to: the key's index
    # cannot serve it, and 'ab ' is not found next to 'ab'. Apply compares
    # the value cast to character, as the FOREIGN KEY does (a varchar value
    # is compared so anyway): no warning.
    db.execute("CREATE TABLE plan (code char(4) PRIMARY KEY); CREATE TABLE f (code text, other varchar(4))")
    path = apply_config(cli, write_config, config(
        "{name: fk_plan, source_column: code, target_table: plan, target_key: code}\n"
        "{name: fk_other, source_column: other, target_table: plan, target_key: code}"))
    result = cli("--config", str(path), "validate")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == []
    db.execute("INSERT INTO f VALUES ('ab', 'ab'), ('cd', NULL)")
    assert db.execute("SELECT code, _source FROM plan ORDER BY 1").fetchall() == [
        ("ab  ", "auto_derived"), ("cd  ", "auto_derived")]


def test_uninstalling_a_long_named_domain_removes_its_triggers_and_functions(cli, db, write_config):
    # Functions of a domain whose name is shortened in them do not start with
    # "<domain>__": uninstall found none, said it was done, and left the
    # triggers deriving parents on the fact table.
    db.execute("CREATE TABLE plan (code text PRIMARY KEY); CREATE TABLE f (code text)")
    path = apply_config(cli, write_config, config(
        "{name: fk_plan, source_column: code, target_table: plan, target_key: code}", domain=LONG_DOMAIN))
    result = cli("--config", str(path), "uninstall", LONG_DOMAIN)
    assert result.returncode == 0, result.stderr
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'f'::regclass").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'refdata'::regnamespace "
                      "AND obj_description(oid, 'pg_proc') LIKE '%domain ddd%'").fetchone() == (0,)
    db.execute("INSERT INTO f VALUES ('P1')")
    assert db.execute("SELECT count(*) FROM plan").fetchone() == (0,)


def test_a_plan_drops_the_triggers_of_a_fact_table_whose_names_hold_double_quotes(cli, db, write_config):
    fact = '"fäct-""s"."Fact ""Table"""'
    db.execute('CREATE SCHEMA "fäct-""s"; CREATE TABLE plan (code text PRIMARY KEY); '
               f"CREATE TABLE {fact} (code text)")
    fk = "{name: fk_plan, source_column: code, target_table: plan, target_key: code}"
    domain = "    fact_schema: 'fäct-\"s'\n    fact_table: 'Fact \"Table\"'\n    foreign_keys:\n      - " + fk + "\n"
    apply_config(cli, write_config, "domains:\n  one:\n" + domain + "  two:\n" + domain)
    path = apply_config(cli, write_config, "domains:\n  one:\n" + domain)
    assert sorted(r[0] for r in db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [fact])) == [
        "one__backfill", "one__load_begin", "one__load_verify"]
    plan = cli("--config", str(path), "plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
