"""Security promises, each tried as an adversarial user would: names that try
to become code, roles that try to become superuser, files that try to load
less (or more) than they hold."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
import uuid

import psycopg
import pytest
from psycopg import sql

from generator.config import PROJECT_ROOT

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"
REFDATA = [str(PROJECT_ROOT / "bin" / "refdata")]


def unique(prefix: str) -> str:
    """A cluster-wide name no other run uses (roles outlive test databases)."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def is_superuser(conn, role: str) -> bool:
    return conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone()[0]


def render_to_psql(cli_env_args: list[str], dsn: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`refdata render | psql -v ON_ERROR_STOP=1`, the README's DBA route, as a shell pipeline."""
    import shlex
    import sys

    render = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "generator.cli", *cli_env_args, "render"])
    pipeline = f"set -o pipefail; {render} | psql -X -q -v ON_ERROR_STOP=1 {shlex.quote(dsn)}"
    full_env = {k: v for k, v in os.environ.items() if k not in ("REFDATA_DB", "DATABASE_URL", "REFDATA_CONFIG")}
    full_env.update(env or {})
    return subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, cwd=PROJECT_ROOT, env=full_env)


def create(conn, statements: list[sql.Composable]) -> None:
    for s in statements:
        conn.execute(s)


# -- names that try to become code -------------------------------------------------------

# Where a name can sit in a config, and the config that puts it there.
def injection_config(where: str, name: str) -> tuple[list[sql.Composable], str]:
    """Tables for a config that names `name` at `where`, and that config (YAML)."""
    quoted = '"' + name.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    fact_col, key_col, table, mapped = "k", "k", "parent", "name"
    if where == "source_column":
        fact_col = name
    elif where == "target_key":
        key_col = name
    elif where == "target_table":
        table = name
    elif where == "backfill source":
        mapped = name
    tables = [
        sql.SQL("CREATE TABLE {} ({} text PRIMARY KEY, name text)").format(sql.Identifier(table), sql.Identifier(key_col)),
        sql.SQL("CREATE TABLE fact ({} text, {} text)").format(sql.Identifier(fact_col), sql.Identifier(mapped)),
    ]
    y = {k: (quoted if v == name else v) for k, v in
         {"fact": fact_col, "key": key_col, "table": table, "mapped": mapped}.items()}
    config = textwrap.dedent(f"""\
        domains:
          d:
            fact_table: fact
            foreign_keys:
              - name: fk_p
                source_column: {y['fact']}
                target_table: {y['table']}
                target_key: {y['key']}
                backfill_columns:
                  - {{source: {y['mapped']}, target: name}}
        """)
    return tables, config


INJECTION_PLACES = ["source_column", "target_key", "target_table", "backfill source"]
LINE_ENDS = ["\n", "\r", "\r\n"]


@pytest.mark.parametrize("end", LINE_ENDS, ids=["lf", "cr", "crlf"])
@pytest.mark.parametrize("where", INJECTION_PLACES)
def test_a_name_with_a_line_break_cannot_run_as_code(db, dsn, cli, write_config, role, where, end):
    """A legal, existing column named `k<newline>EXECUTE 'ALTER ROLE w SUPERUSER';--`
    used to end a `--` comment inside the SECURITY DEFINER trigger and run
    as its owner. It is refused (exit 2, one line naming file, line and
    field) by apply and render, so nothing reaches the database either way."""
    writer = role("w")
    writer_name = writer.info.user
    name = f"k{end}EXECUTE 'ALTER ROLE {writer_name} SUPERUSER';--"
    tables, config = injection_config(where, name)
    create(db, tables)
    db.execute(sql.SQL("GRANT INSERT ON fact TO {}").format(sql.Identifier(writer_name)))
    path = write_config(config)

    applied = cli("--config", str(path), "apply")
    piped = render_to_psql(["--config", str(path)], dsn)
    for result in (applied, piped):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert re.match(rf"refdata: error: {re.escape(str(path))}:\d+: domain d, foreign key fk_p: ", lines[0])
        assert "control character U+000" in lines[0]
    assert db.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)

    columns = [c for (c,) in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'fact'::regclass "
                                        "AND attnum > 0 ORDER BY attnum")]
    writer.execute(sql.SQL("INSERT INTO fact ({}) VALUES ('NEW1', 'x')").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))))
    assert not is_superuser(db, writer.info.user)


@pytest.mark.parametrize("field, yaml_value", [
    ("domain", None),
    ("name", '"fk_org\\n"'),
    ("fact_schema", '"public\\n"'),
    ("source_column", '"k\\u2028"'),
    ("source_column", '[k, "k2\\x1b"]'),
    ("target_schema", '"public\\t"'),
    ("target_table", '"parent\\n"'),
    ("target_key", '"k\\r"'),
    ("derive_columns", '["name\\n"]'),
    ("defaults", '{"name\\n": x}'),
    ("order_column", '[{source: v, target: v, aggregation: max_by, order_column: "o\\n"}]'),
    ("template", '[{target: v, aggregation: template, template: "x {a\\nb}"}]'),
    ("target", '[{source: v, target: "v\\u200e"}]'),
])
def test_control_characters_in_any_config_name_are_refused(cli, write_config, field, yaml_value):
    """Names match in full (a `$` anchor lets `fk_org\\n` through) and hold no
    control character, wherever they sit: exit 2, one line naming file, line
    and place."""
    fk = {"name": "fk_p", "source_column": "k", "target_schema": "public", "target_table": "parent",
          "target_key": "k"}
    domain, schema, extra = "d", "public", ""
    if field == "domain":
        domain = '"d\\n"'
    elif field == "fact_schema":
        schema = yaml_value
    elif field in fk:
        fk[field] = yaml_value
    elif field in ("derive_columns", "defaults"):
        extra = f"        {field}: {yaml_value}\n"
    else:
        extra = f"        backfill_columns: {yaml_value}\n"
    body = "      - " + "".join(f"        {k}: {v}\n" for k, v in fk.items()).lstrip()
    text = f"domains:\n  {domain}:\n    fact_schema: {schema}\n    foreign_keys:\n{body}{extra}"
    key = {"domain": "domains", "order_column": "backfill_columns", "template": "backfill_columns",
           "target": "backfill_columns"}.get(field, field)
    line = next(n for n, t in enumerate(text.splitlines(), start=1) if t.lstrip(" -").startswith(key + ":"))
    path = write_config(text)
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2, (text, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    if field == "domain":
        assert lines[0] == f"refdata: error: {path}:{line}: field domains: domain 'd\\n' is not a valid name " \
                           "(letters, digits, underscore)"
    elif field == "name":
        assert lines[0].startswith(f"refdata: error: {path}:{line}: "), lines[0]
        assert "'fk_org\\n' is not a valid name" in lines[0]
    else:
        assert re.match(rf"refdata: error: {re.escape(str(path))}:{line}: domain d(, foreign key fk_p)?: "
                        rf"field {key}", lines[0]), lines[0]
        assert "contains the control character U+" in lines[0], lines[0]


def test_generated_comments_carry_no_config_text(cli, tmp_path):
    """A name inside a `--` comment is text, not a quoted identifier; the
    comments of generated code hold no name from the config at all."""
    result = cli("--config", str(SAMPLE_CONFIG), "render", db=None,
                 env={"REFDATA_HOME": str(tmp_path / "none"), "PGHOST": str(tmp_path / "none")})
    assert result.returncode == 0, result.stderr
    from generator.config import load_config

    config = load_config(SAMPLE_CONFIG)
    names = set(config.domains)
    for d in config.domains.values():
        names |= {d.fact_schema, d.fact_table or ""}
        for fk in d.foreign_keys:
            names |= {fk.name, fk.target_schema, fk.target_table, *fk.sources, *fk.keys}
            for m in fk.mappings():
                names |= {m.target, *m.sources()}
    names.discard("")
    comments = re.findall(r"--[^\n]*", result.stdout)
    assert len(comments) > 3
    for comment in comments:
        for name in names:
            assert name not in comment, (name, comment)


DOLLAR_SCHEMA = [
    "CREATE TABLE victim (x int)",
    'CREATE TABLE "p$refdata$;DROP TABLE victim;--" ("k$refdata$ x" text PRIMARY KEY, name text)',
    'CREATE TABLE fact ("c$refdata$;DROP TABLE victim;--" text, name text)',
]
DOLLAR_CONFIG = """\
domains:
  d:
    fact_table: fact
    foreign_keys:
      - name: fk_p
        source_column: "c$refdata$;DROP TABLE victim;--"
        target_table: "p$refdata$;DROP TABLE victim;--"
        target_key: "k$refdata$ x"
        derive_columns: [name]
        defaults: {name: "$refdata$;DROP TABLE victim;--"}
        blank_values: ["$refdata$"]
"""


def test_names_holding_the_dollar_tag_stay_names(db, dsn, cli, write_config, role, tmp_path):
    """Bodies are quoted with a dollar tag that does not occur in them: names
    holding `$refdata$` are applied as names, by apply and through psql, and
    no DROP TABLE from a name runs."""
    path = write_config(DOLLAR_CONFIG)
    for s in DOLLAR_SCHEMA:
        db.execute(s)
    piped = render_to_psql(["--config", str(path)], dsn)
    assert piped.returncode == 0, piped.stderr
    assert db.execute("SELECT to_regclass('victim')").fetchone()[0] is not None
    applied = cli("--config", str(path), "apply")  # again, by apply: nothing changes, nothing dropped
    assert applied.returncode == 0, applied.stderr
    assert db.execute("SELECT to_regclass('victim')").fetchone()[0] is not None

    writer = role("writer", ["GRANT INSERT ON fact TO {role}"])
    writer.execute("""INSERT INTO fact VALUES ('NEW1', 'named'), ('NEW2', NULL)""")
    assert db.execute('SELECT "k$refdata$ x", name, "_source" FROM "p$refdata$;DROP TABLE victim;--" '
                      "ORDER BY 1").fetchall() == [
        ("NEW1", "named", "auto_derived"), ("NEW2", "$refdata$;DROP TABLE victim;--", "auto_derived")]


def test_the_rendered_script_is_all_or_nothing_even_with_on_error_rollback(db, dsn, cli, write_config, tmp_path):
    """psql's ON_ERROR_ROLLBACK turns each statement into a savepoint; the
    script switches it off, so a failing statement never leaves the ones
    before it committed."""
    path = write_config(textwrap.dedent("""\
        domains:
          d:
            fact_table: fact
            foreign_keys:
              - {name: fk_p, source_column: k, target_table: parent, target_key: k}
        """))
    db.execute("CREATE TABLE parent (k text PRIMARY KEY)")  # no fact table: the trigger statement fails
    rendered = cli("--config", str(path), "render", db=None)
    assert rendered.returncode == 0, rendered.stderr
    script = tmp_path / "refdata.sql"
    script.write_text(rendered.stdout, encoding="utf-8")
    result = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_ROLLBACK=on", "-v", "ON_ERROR_STOP=0",
                             "-f", str(script), dsn], capture_output=True, text=True)
    assert result.returncode != 0
    assert db.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attname = '_source'").fetchone() == (0,)


@pytest.mark.parametrize("scs", ["on", "off"])
def test_literals_mean_the_same_without_standard_conforming_strings(db, scs):
    """Literals in rendered SQL (names in comments of objects, in regclass
    casts inside bodies) read back as the same text whether or not the
    session that parses them has standard_conforming_strings on: a backslash
    before a quote never ends a literal early."""
    from generator.names import literal

    db.execute(f"SET standard_conforming_strings = {scs}")
    db.execute("SET escape_string_warning = off")
    for text in ["x\\'; SELECT 1; --", '"public"."fact\\"', "a\\\\b\\", "plain 'quoted'", "中文\\n"]:
        assert db.execute(f"SELECT {literal(text)}").fetchone()[0] == text


# -- who the generated code runs as --------------------------------------------------------

OWNER_CONFIG = """\
domains:
  d:
    fact_table: fact
    trigger_mode: MODE
    foreign_keys:
      - {name: fk_p, source_column: k, target_table: parent, target_key: k, derive_columns: [name]}
"""


def owned_by(db, owner: str) -> dict:
    """Owner of every function and staging table refdata made, and what that owner may do."""
    return {
        "functions": db.execute("SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc "
                                "WHERE pronamespace = 'refdata'::regnamespace").fetchall(),
        "stage": db.execute("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                            "WHERE relnamespace = 'refdata_stage'::regnamespace AND relkind = 'r'").fetchall(),
        "role": db.execute("SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
                           "FROM pg_roles WHERE rolname = %s", [owner]).fetchone(),
    }


@pytest.mark.parametrize("path", ["row trigger", "statement trigger", "load function"])
def test_a_trigger_on_a_reference_table_runs_as_the_owner_role_not_a_superuser(db, dsn, cli, write_config, role, path,
                                                                              request):
    """A non-superuser who owns a reference table adds a BEFORE INSERT trigger
    trying ALTER ROLE ... SUPERUSER. When a fact with a new key makes the
    backfill insert a parent there, that trigger runs as the owner of the
    generated functions: refdata_owner, which cannot do that."""
    from helpers import stage_and_load

    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text)")
    db.execute("CREATE TABLE fact (k text, name text)")
    mode = "statement" if path == "statement trigger" else "row"
    assert cli("--config", str(write_config(OWNER_CONFIG.replace("MODE", mode))), "apply").returncode == 0
    attacker = role("tabowner", ["ALTER TABLE parent OWNER TO {role}", "GRANT CREATE ON SCHEMA public TO {role}"])
    table_owner = attacker.info.user
    # the role fixture drops what the role owns; refdata's views need the table
    request.addfinalizer(lambda: db.execute("DROP TRIGGER IF EXISTS promote ON parent; "
                                            "ALTER TABLE parent OWNER TO CURRENT_USER"))
    attacker.execute(f"""
        CREATE FUNCTION promote() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                EXECUTE 'ALTER ROLE {table_owner} SUPERUSER';
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;
            END;
            NEW.name := current_user;  -- who the trigger ran as
            RETURN NEW;
        END $$""")
    attacker.execute("CREATE TRIGGER promote BEFORE INSERT ON parent FOR EACH ROW EXECUTE FUNCTION promote()")

    if path == "load function":
        loader = role("loader", [
            "GRANT USAGE ON SCHEMA refdata, refdata_stage TO {role}",
            "GRANT INSERT ON fact TO {role}",
            'GRANT INSERT, SELECT, DELETE ON refdata_stage."d" TO {role}',
            "GRANT INSERT ON refdata.load_run TO {role}",
            'GRANT EXECUTE ON FUNCTION refdata."d__load"(text[], text), '
            'refdata."d__load_parents"(text[], text, boolean) TO {role}',
        ])
        loader.autocommit = False
        stage_and_load(loader, "d", ["k", "name"], [("NEW1", "x")])
        loader.commit()
    else:
        writer = role("writer", ["GRANT INSERT ON fact TO {role}"])
        writer.execute("INSERT INTO fact VALUES ('NEW1', 'x')")

    assert db.execute("SELECT k, name FROM parent").fetchall() == [("NEW1", "refdata_owner")]
    assert not is_superuser(db, table_owner)
    assert owned_by(db, "refdata_owner") == {
        "functions": [("refdata_owner",)], "stage": [("refdata_owner",)],
        "role": (False, False, False, False, False, False),
    }


def test_apply_refuses_a_superuser_owner(db, dsn, cli, write_config):
    """Definer code owned by a superuser would run others' triggers as
    superuser: apply refuses it with one line saying what to do instead, and
    the rendered script refuses it too."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    path = write_config(OWNER_CONFIG.replace("MODE", "row"))
    superuser = db.info.user
    for result in (cli("--config", str(path), "apply", "--owner", superuser),
                   cli("--config", str(path), "apply", env={"REFDATA_OWNER": superuser})):
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"refdata: error: --owner {superuser}: role {superuser} is a superuser, and the SECURITY DEFINER "
            "functions it owned would run triggers that others put on reference tables as superuser; name a role "
            "without SUPERUSER (--owner ROLE or $REFDATA_OWNER; apply creates it NOLOGIN when missing), or run "
            f'ALTER ROLE "{superuser}" NOSUPERUSER']
    piped = render_to_psql(["--config", str(path)], dsn, env={"REFDATA_OWNER": superuser})
    assert piped.returncode != 0
    assert f"role {superuser} is a superuser and may not own refdata's SECURITY DEFINER functions" in piped.stderr
    assert db.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)


def test_owner_role_holds_only_what_the_functions_need(db, dsn, cli, write_config, request):
    """A named owner ($REFDATA_OWNER) is created NOLOGIN and gets exactly what
    the generated functions need (sql/roles/rights.sql.j2): its schemas, the
    run-time config, rows of the configured reference and fact tables,
    appending to the audit log, the sequences those tables draw from; no
    rights on other tables, no CREATE in other schemas."""
    owner = unique("rd_owner")
    db.execute("""CREATE TABLE parent (id serial, k text PRIMARY KEY, name text);
                  CREATE TABLE filled (k text PRIMARY KEY, name text);
                  CREATE TABLE fact (k text, f text, name text);
                  CREATE TABLE unrelated (x int)""")
    path = write_config("""\
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_p, source_column: k, target_table: parent, target_key: k, derive_columns: [name]}
      - {name: fk_f, source_column: f, target_table: filled, target_key: k, derive_columns: [name], mode: fill_null_only}
""")
    result = cli("--config", str(path), "apply", env={"REFDATA_OWNER": owner})
    request.addfinalizer(lambda: db.execute(f'DROP OWNED BY "{owner}" CASCADE; DROP ROLE "{owner}"'))
    assert result.returncode == 0, result.stderr
    assert owned_by(db, owner) == {"functions": [(owner,)], "stage": [(owner,)],
                                   "role": (False, False, False, False, False, False)}
    privileges = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER".split(", ")

    def may(table):
        return [p for p in privileges
                if db.execute("SELECT has_table_privilege(%s, %s, %s)", [owner, table, p]).fetchone()[0]]

    assert may("parent") == ["SELECT", "INSERT", "UPDATE", "DELETE"]
    assert may("filled") == ["SELECT", "INSERT", "UPDATE", "DELETE"]
    assert may("fact") == ["SELECT", "INSERT", "UPDATE"]
    assert may("unrelated") == []
    assert may("refdata.domain_param") == ["SELECT"]
    assert may("refdata.audit_batch") == ["INSERT"]
    assert may("refdata.audit_log") == []
    assert db.execute("SELECT has_sequence_privilege(%s, 'parent_id_seq', 'USAGE')", [owner]).fetchone() == (True,)
    assert db.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", [owner]).fetchone() == (False,)


def test_render_grants_prints_a_role_model_that_works(sample_db, dsn, cli, role, tmp_path):
    """`render --grants` prints the owner role, its rights and what writers
    and loaders need; applied with psql after apply, a writer inserts facts
    and a loader runs `refdata load`, neither touching reference tables."""
    from psycopg.conninfo import make_conninfo

    assert cli("apply").returncode == 0
    writer = role("writer")
    writer_name, loader_name = writer.info.user, role("loader").info.user
    grants = cli("render", "--grants", db=None)
    assert grants.returncode == 0, grants.stderr
    assert "ALTER ROUTINE" in grants.stdout and "GRANT EXECUTE ON FUNCTION" in grants.stdout
    script = tmp_path / "grants.sql"
    script.write_text(grants.stdout, encoding="utf-8")
    applied = subprocess.run(["psql", "-X", "-q", "-v", f"writer={writer_name}", "-v", f"loader={loader_name}",
                              "-f", str(script), dsn], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr

    writer.execute("""INSERT INTO business."规模明细" ("月度", "计划代码") VALUES ('2025-11-01', 'PGRANT1')""")
    data = tmp_path / "f.csv"
    data.write_text("月度,计划代码\n2025-11-01,PGRANT2\n", encoding="utf-8")
    loaded = cli("load", "annuity_performance", str(data), db=make_conninfo(dsn, user=loader_name))
    assert loaded.returncode == 0, loaded.stderr
    assert sample_db.execute("""SELECT "年金计划号", "_source" FROM mapping."年金计划"
                                WHERE "年金计划号" LIKE 'PGRANT%' ORDER BY 1""").fetchall() == [
        ("PGRANT1", "auto_derived"), ("PGRANT2", "auto_derived")]



def plant_operators(conn, planter: str, pairs: list[tuple[str, str]], ops: tuple[str, ...]) -> None:
    """In schema planted, as `conn`'s role: operators `ops` for each (left, right)
    type pair whose function tries to make `planter` superuser, then answers as
    text comparison would."""
    for left, right in pairs:
        name = f"promote_{left}"
        conn.execute(f"""
            CREATE FUNCTION planted.{name}(a {left}, b {right}) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
                BEGIN EXECUTE 'ALTER ROLE {planter} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
                RETURN a::text < b::text;
            END $$""")
        for op in ops:
            conn.execute(f"CREATE OPERATOR planted.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = planted.{name})")


def test_operators_planted_on_the_appliers_search_path_never_run(db, dsn, cli, write_config, role):
    """Someone who can create objects in a schema on the applier's search_path
    plants `<` and `=` operators that make their caller superuser. apply and
    the rendered script resolve operators in pg_catalog only, so neither the
    catalog checks nor the DDL run them as the (superuser) applier."""
    conn = role("planter")
    planter = conn.info.user
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    db.execute(f"CREATE SCHEMA planted AUTHORIZATION {planter}")
    db.execute(sql.SQL("ALTER DATABASE {} SET search_path = planted, pg_catalog, public").format(
        sql.Identifier(db.info.dbname)))
    plant_operators(conn, planter, [("bigint", "integer"), ("text", "text")], ("<", "="))
    path = write_config(OWNER_CONFIG.replace("MODE", "row"))
    assert cli("--config", str(path), "validate").returncode == 0
    assert not is_superuser(db, planter)
    applied = cli("--config", str(path), "apply")
    assert applied.returncode == 0, applied.stderr
    assert not is_superuser(db, planter)
    piped = render_to_psql(["--config", str(path)], dsn)
    assert piped.returncode == 0, piped.stderr
    assert not is_superuser(db, planter)


# -- who the reference sync runs as ----------------------------------------------------------

SYNCED = 'mapping."年金计划"'


@pytest.mark.parametrize("source_type,via", [("postgres", "fdw"), ("postgres", "client"),
                                             ("legacy_mysql", "fdw"), ("config_file", "client")])
def test_a_trigger_on_a_synced_table_runs_as_the_owner_role_not_the_applier(sample_db, cli, write_config, role,
                                                                           request, source_type, via):
    """A non-superuser who owns a synced reference table adds a trigger trying
    ALTER ROLE ... SUPERUSER. The sync (`refdata sync`, and the pg_cron job's
    CALL refdata.sync_fdw(), both run by a superuser) writes that table
    through refdata.sync_table, which runs as refdata_owner: the trigger
    fails to promote anyone, and sees refdata_owner as its user."""
    from sync_helpers import plan_table, project_config, sync_config

    config = project_config(write_config)
    env = {}
    if source_type == "config_file":
        data = write_config("schema_version: \"1.0\"\ndata:\n  - {年金计划号: PSYNC1, 计划全称: 同步计划, 计划状态: 正常}\n",
                            "plans.yml")
        sync_config(write_config, textwrap.dedent(f"""\
              - name: 年金计划
                target_table: 年金计划
                target_schema: mapping
                source_type: config_file
                source_config: {{file_path: "{data}", schema_version: "1.0"}}
                sync_mode: upsert
                primary_key: 年金计划号
            """))
    else:
        legacy = request.getfixturevalue("legacy_pg" if source_type == "postgres" else "legacy_mysql")
        sync_config(write_config, plan_table("LEG", via, source_type,
                                             schema="enterprise" if source_type == "postgres" else legacy.name))
        env = legacy.env("LEG")
        legacy.rows([("PSYNC1", "同步计划", "正常")])
    applied = cli("--config", str(config), "apply", env=env)
    assert applied.returncode == 0, applied.stderr

    attacker = role("syncowner", [f"ALTER TABLE {SYNCED} OWNER TO {{role}}", "GRANT USAGE ON SCHEMA mapping TO {role}",
                                   "GRANT CREATE ON SCHEMA public TO {role}"])
    name = attacker.info.user
    request.addfinalizer(lambda: sample_db.execute(f"DROP TRIGGER IF EXISTS promote ON {SYNCED}; "
                                                   f"ALTER TABLE {SYNCED} OWNER TO CURRENT_USER"))
    attacker.execute(f"""
        CREATE TABLE public.seen (who text);
        GRANT INSERT ON public.seen TO PUBLIC;
        CREATE FUNCTION public.promote() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                EXECUTE 'ALTER ROLE {name} SUPERUSER';
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;
            END;
            INSERT INTO public.seen VALUES (current_user);
            RETURN NEW;
        END $$;
        CREATE TRIGGER promote BEFORE INSERT OR UPDATE ON {SYNCED} FOR EACH ROW EXECUTE FUNCTION public.promote()""")

    synced = cli("--config", str(config), "sync", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert sample_db.execute(f'SELECT "_source" FROM {SYNCED} WHERE "年金计划号" = %s', ["PSYNC1"]).fetchone() == (
        "authoritative",)
    if via == "fdw":  # what the pg_cron job runs, as the superuser who scheduled it
        legacy.rows([("PSYNC2", "定时同步计划", "正常")])
        sample_db.execute("CALL refdata.sync_fdw()")
        assert sample_db.execute(f'SELECT count(*) FROM {SYNCED} WHERE "年金计划号" = %s', ["PSYNC2"]).fetchone() == (1,)
    assert not is_superuser(sample_db, name)
    assert {who for (who,) in sample_db.execute("SELECT who FROM public.seen")} == {"refdata_owner"}
    # the source's credentials belong to the owner role alone (the import borrowed them, and gave them back)
    assert sample_db.execute("SELECT usename FROM pg_user_mappings").fetchall() == (
        [("refdata_owner",)] if via == "fdw" else [])
    assert sample_db.execute("SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc "
                             "WHERE pronamespace = 'refdata'::regnamespace AND prosecdef").fetchall() == [
        ("refdata_owner",)]


# -- what code running as the owner role can leave behind ---------------------------------

@pytest.mark.parametrize("payload", ["alter function", "session search_path", "temporary table", "held cursor",
                                     "temporary table, string rules changed"])
def test_a_trigger_running_as_the_owner_role_leaves_nothing_that_runs_as_the_caller(db, cli, write_config, role,
                                                                                    request, payload):
    """A trigger on a reference table its (non-superuser) owner added runs as
    refdata_owner when a backfill writes there, inside the session of whoever
    wrote the fact: here a superuser. It may not use that role to leave code
    for the superuser to run later: make a generated function SECURITY
    INVOKER with the attacker's search_path, point the session's search_path
    at the attacker's schema, shadow the fact table with a temporary table
    whose default calls the attacker's function, or declare a cursor WITH
    HOLD whose query runs at commit as whoever commits. The superuser then goes on
    working (a query naming now(), an insert into the fact table by its
    plain name, another fact with a new key) and nobody became superuser."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    assert cli("--config", str(write_config(OWNER_CONFIG.replace("MODE", "row"))), "apply").returncode == 0
    attacker = role("planter", ["ALTER TABLE parent OWNER TO {role}", "GRANT CREATE ON SCHEMA public TO {role}"])
    name = attacker.info.user
    request.addfinalizer(lambda: db.execute("DISCARD TEMP; DROP TRIGGER IF EXISTS plant ON parent; "
                                            "ALTER TABLE parent OWNER TO CURRENT_USER"))
    # What the superuser must never run: now() and a text default that promote their caller's victim.
    db.execute(f'CREATE SCHEMA att AUTHORIZATION "{name}"')
    attacker.execute(f"""
        GRANT USAGE ON SCHEMA att TO PUBLIC;
        CREATE FUNCTION att.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN EXECUTE 'ALTER ROLE {name} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
            RETURN pg_catalog.now();
        END $$;
        CREATE FUNCTION att.k() RETURNS text LANGUAGE sql AS 'SELECT att.now()::text'""")
    plant = {
        "alter function": """ALTER FUNCTION refdata."d__backfill"() SECURITY INVOKER;
                             ALTER FUNCTION refdata."d__backfill"() SET search_path = att, pg_catalog""",
        "session search_path": "SET search_path = att, public, pg_catalog",
        "temporary table": "CREATE TEMPORARY TABLE fact (k text DEFAULT att.k(), name text)",
        "held cursor": "DECLARE planted CURSOR WITH HOLD FOR SELECT att.now()",
        # backslashes in the guard's LIKE pattern would read as escapes, its _ as any character
        "temporary table, string rules changed": """CREATE TEMPORARY TABLE ordinal AS
                                                    SELECT set_config('standard_conforming_strings', 'off', true)""",
    }[payload]
    attacker.execute(f"""
        CREATE FUNCTION public.plant() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                EXECUTE {sql.Literal(plant).as_string(attacker)};
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'refused: %', SQLERRM;
            END;
            RETURN NEW;
        END $$;
        CREATE TRIGGER plant BEFORE INSERT ON parent FOR EACH ROW EXECUTE FUNCTION public.plant()""")

    def attempt(statement: str) -> None:
        try:
            db.execute(statement)
        except psycopg.Error:
            pass

    if payload in ("session search_path", "held cursor"):  # refused: the fact and its parent with it
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="changed the session"):
            db.execute("INSERT INTO public.fact VALUES ('NEW1', 'x')")
    else:  # refused the DDL only: the fact and its parent are written
        db.execute("INSERT INTO public.fact VALUES ('NEW1', 'x')")
        assert db.execute("SELECT k FROM public.parent").fetchall() == [("NEW1",)]
    assert db.execute("""SELECT current_setting('search_path'), to_regclass('pg_temp.fact'),
                                to_regclass('pg_temp.ordinal')""").fetchone() == ('"$user", public', None, None)
    attempt("SELECT now()")
    attempt("INSERT INTO fact (name) VALUES ('plain name')")
    attempt("INSERT INTO public.fact VALUES ('NEW2', 'x')")
    db.execute("RESET search_path")
    assert not is_superuser(db, name)
    assert db.execute("""SELECT prosecdef, proconfig FROM pg_proc WHERE oid = 'refdata."d__backfill"()'::regprocedure""").fetchone() == (
        True, ["search_path=pg_catalog, pg_temp", "enable_seqscan=off"])



@pytest.mark.parametrize("route,payload", [("policy", "session search_path"), ("policy", "held cursor"),
                                           ("inheritance child", "session search_path"),
                                           ("index predicate", "session search_path")],
                         ids=["policy-search_path", "policy-held_cursor", "child-search_path", "index-search_path"])
def test_code_a_look_up_alone_runs_as_the_owner_role_leaves_nothing_either(db, cli, write_config, role, request,
                                                                          route, payload):
    """A fact whose parent exists makes the row trigger write nothing, but its
    look-up of the parent can still run code of the parent table's owner as
    refdata_owner: a policy of the parent (row-level security), or, while the
    look-up is planned, a CHECK constraint of an inheritance child or the
    predicate of a partial index, which the planner evaluates. So the row
    trigger checks the session on every call, not only when it wrote: that
    code may not leave the caller (a superuser) a changed search_path or a
    cursor WITH HOLD either, and the insert fails."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    assert cli("--config", str(write_config(OWNER_CONFIG.replace("MODE", "row"))), "apply").returncode == 0
    db.execute("INSERT INTO parent VALUES ('OLD1', 'there')")
    db.execute("INSERT INTO public.fact VALUES ('OLD1', 'x')")  # the look-up's plan, cached before the attack
    attacker = role("planter", ["ALTER TABLE parent OWNER TO {role}", "GRANT CREATE ON SCHEMA public TO {role}"])
    name = attacker.info.user
    request.addfinalizer(lambda: db.execute("CLOSE ALL; DROP TABLE IF EXISTS att.child; DROP POLICY IF EXISTS seen ON parent; "
                                            "DROP INDEX IF EXISTS folded; "
                                            "ALTER TABLE parent OWNER TO CURRENT_USER"))
    db.execute(f'CREATE SCHEMA att AUTHORIZATION "{name}"')
    plant = {"session search_path": "SET search_path = att, public, pg_catalog",
             "held cursor": "DECLARE planted CURSOR WITH HOLD FOR SELECT 1"}[payload]
    attacker.execute(f"""
        GRANT USAGE ON SCHEMA att TO PUBLIC;
        CREATE FUNCTION att.plant() RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE {sql.Literal(plant).as_string(attacker)};
            RETURN true;
        END $$;
        CREATE FUNCTION att.folded() RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN
            RETURN att.plant();
        END $$""")
    if route == "policy":
        attacker.execute("CREATE POLICY seen ON parent USING (att.plant()); "
                         "ALTER TABLE parent ENABLE ROW LEVEL SECURITY")
    elif route == "inheritance child":
        attacker.execute("CREATE TABLE att.child (CHECK (att.folded())) INHERITS (parent)")
    else:
        attacker.execute("CREATE INDEX folded ON parent (k) WHERE att.folded()")
        attacker.execute("RESET search_path")

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="changed the session"):
        db.execute("INSERT INTO public.fact VALUES ('OLD1', 'y')")
    assert db.execute("SELECT current_setting('search_path'), (SELECT count(*) FROM pg_cursors)").fetchone() == (
        '"$user", public', 0)
    assert db.execute("SELECT name FROM public.fact").fetchall() == [("x",)]


# -- settings a session may set ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["row", "statement"])
def test_a_writer_cannot_switch_the_backfill_off_with_a_setting(db, cli, write_config, role, mode):
    """The load function has the triggers skip rows whose parents it derived
    already (refdata.skip_backfill). A writer who sets that setting
    themselves, without a load, still gets the parent derived and marked for
    review. The threat: fact tables that declare no FK constraints (as in
    production) would otherwise take a fact naming a parent that does not
    exist, with nothing in refdata.pending_review to say so."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    assert cli("--config", str(write_config(OWNER_CONFIG.replace("MODE", mode))), "apply").returncode == 0
    writer = role("writer", ["GRANT INSERT ON fact TO {role}"])
    writer.execute("SET refdata.skip_backfill = 'd'")
    writer.execute("INSERT INTO fact VALUES ('NEW1', 'x')")
    with writer.transaction():  # and as the load function sets it: transaction-local
        writer.execute("SELECT set_config('refdata.skip_backfill', 'd', true)")
        writer.execute("INSERT INTO fact VALUES ('NEW2', 'y')")
    # A loader's own statements after a load in the same transaction are not the load's insert.
    loader = role("loader", [
        "GRANT USAGE ON SCHEMA refdata, refdata_stage TO {role}", "GRANT INSERT ON fact TO {role}",
        'GRANT INSERT, SELECT, DELETE ON refdata_stage."d" TO {role}', "GRANT INSERT ON refdata.load_run TO {role}",
        'GRANT EXECUTE ON FUNCTION refdata."d__load"(text[], text), '
        'refdata."d__load_parents"(text[], text, boolean) TO {role}'])
    with loader.transaction():
        loader.execute('SELECT * FROM refdata."d__load"()')
        loader.execute("SELECT set_config('refdata.skip_backfill', 'd', true)")
        loader.execute("INSERT INTO fact VALUES ('NEW3', 'z')")
    assert db.execute('SELECT k, name, "_source", "_needs_review" FROM parent ORDER BY k').fetchall() == [
        ("NEW1", "x", "auto_derived", True), ("NEW2", "y", "auto_derived", True), ("NEW3", "z", "auto_derived", True)]


@pytest.mark.parametrize("mode", ["row", "statement"])
def test_a_loader_cannot_have_its_own_rows_skipped_by_calling_the_load_s_owner_half(db, cli, write_config, role,
                                                                                     mode):
    """A loader may call D__load_parents, which records the load's
    transaction and statement for the backfill triggers. Calling it in one
    statement (a DO block) with its own INSERT of a fact naming a parent no
    one derived, after setting refdata.skip_backfill as the load function
    does, used to have the triggers skip that row: on a fact table without
    FK constraints the fact named a parent that did not exist, and nothing
    listed it for review. The parent is derived and marked instead."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    assert cli("--config", str(write_config(OWNER_CONFIG.replace("MODE", mode))), "apply").returncode == 0
    loader = role("loader", [
        "GRANT USAGE ON SCHEMA refdata, refdata_stage TO {role}", "GRANT INSERT ON fact TO {role}",
        'GRANT INSERT, SELECT, DELETE ON refdata_stage."d" TO {role}',
        'GRANT EXECUTE ON FUNCTION refdata."d__load"(text[], text), '
        'refdata."d__load_parents"(text[], text, boolean) TO {role}'])
    loader.execute("""DO $$
        BEGIN
            PERFORM FROM refdata."d__load_parents"(NULL, NULL, false);
            PERFORM set_config('refdata.skip_backfill', 'd', true);
            INSERT INTO fact VALUES ('ORPHAN', 'x');
        END $$""")
    assert db.execute('SELECT k, name, "_source", "_needs_review" FROM parent').fetchall() == [
        ("ORPHAN", "x", "auto_derived", True)]


FILL_CONFIG = """\
domains:
  d:
    fact_table: fact
    trigger_mode: MODE
    foreign_keys:
      - name: fk_p
        source_column: k
        target_table: parent
        target_key: k
        mode: fill_null_only
        backfill_columns: [{source: name, target: name}]
"""


@pytest.mark.parametrize("path", ["row", "statement", "load"])
def test_an_error_filling_a_parent_shows_none_of_its_values(db, cli, write_config, role, path):
    """Filling a NULL column of an existing parent (mode fill_null_only) with a
    value that breaks a constraint of the reference table fails, as it
    should; but PostgreSQL's DETAIL ("Failing row contains (...)") is built
    for the owner role, which may read the row, and showed a writer with
    INSERT on the fact table only the parent's other columns. The error
    keeps its message, code and constraint, and shows no value of the row."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text CONSTRAINT short_name CHECK (length(name) < 5), "
               "secret text); CREATE TABLE fact (k text, name text);"
               "INSERT INTO parent VALUES ('K1', NULL, 'TOPSECRET')")
    config = FILL_CONFIG.replace("MODE", "row" if path == "load" else path)
    assert cli("--config", str(write_config(config)), "apply").returncode == 0
    writer = role("writer", [
        "GRANT USAGE ON SCHEMA refdata, refdata_stage TO {role}", "GRANT INSERT ON fact TO {role}",
        'GRANT INSERT, SELECT, DELETE ON refdata_stage."d" TO {role}',
        'GRANT EXECUTE ON FUNCTION refdata."d__load"(text[], text), '
        'refdata."d__load_parents"(text[], text, boolean) TO {role}'])
    with pytest.raises(psycopg.errors.CheckViolation) as raised:
        with writer.transaction():
            if path == "load":
                writer.execute("""INSERT INTO refdata_stage."d" (k, name, "_rd_line") VALUES ('K1', 'too long', 1)""")
                writer.execute('SELECT * FROM refdata."d__load"()')
            else:
                writer.execute("INSERT INTO fact VALUES ('K1', 'too long')")
    error = raised.value
    assert error.diag.constraint_name == "short_name" and "short_name" in error.diag.message_primary
    shown = " ".join(str(x) for x in (error, error.diag.message_detail, error.diag.message_hint, error.diag.context))
    assert "TOPSECRET" not in shown and "K1" not in shown, shown
    assert db.execute("SELECT name FROM parent").fetchall() == [(None,)]


def test_a_loader_cannot_forge_the_load_log(sample_db, dsn, cli, role, tmp_path):
    """refdata.load_run says who loaded what. A loader with the role model's
    grants (render --grants) may not write it: a row claiming another role,
    another transaction, rows never loaded is refused. What the log takes
    from the loading client (the file's name, size and digest, through
    refdata.load_file) is recorded as that client's word, beside who said it
    (loaded_by) and in which transaction: a direct call of the load function
    claiming any file is logged under the loader's own name."""
    from psycopg.conninfo import make_conninfo

    assert cli("apply").returncode == 0
    loader = role("loader")
    name = loader.info.user
    grants = cli("render", "--grants", db=None)
    script = tmp_path / "grants.sql"
    script.write_text(grants.stdout, encoding="utf-8")
    applied = subprocess.run(["psql", "-X", "-q", "-v", f"writer={name}", "-v", f"loader={name}",
                              "-f", str(script), dsn], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        loader.execute("""INSERT INTO refdata.load_run (domain, source, file_name, rows, started_at, finished_at,
                                                        path, foreign_keys, loaded_by, txid)
                          VALUES ('annuity_performance', 'file', 'board_approved.csv', 1000000, now(), now(),
                                  'staging (server csv)', '{}', 'cfo', 1)""")
    data = tmp_path / "f.csv"
    data.write_text("月度,计划代码\n2025-11-01,PFORGE1\n", encoding="utf-8")
    assert cli("load", "annuity_performance", str(data), db=make_conninfo(dsn, user=name)).returncode == 0
    loader.autocommit = False
    loader.execute("""SELECT set_config('refdata.load_file', '{"name": "board_approved.csv", "sha256": "00", "rows": 1000000}', true)""")
    loader.execute('INSERT INTO refdata_stage."annuity_performance" ("月度", "计划代码", "_rd_line") '
                   "VALUES ('2025-11-01', 'PFORGE2', 1)")
    txid = loader.execute("SELECT txid_current()").fetchone()[0]
    assert loader.execute('SELECT facts FROM refdata."annuity_performance__load"()').fetchone() == (1,)
    inserted = loader.execute("SELECT clock_timestamp()").fetchone()[0]
    loader.commit()
    # the load ends when its transaction commits, after its facts were inserted
    assert sample_db.execute("SELECT finished_at FROM refdata.load_run ORDER BY id DESC LIMIT 1").fetchone()[0] > inserted
    assert sample_db.execute("SELECT file_name, rows, loaded_by, txid FROM refdata.load_run ORDER BY id").fetchall() == [
        (str(data), 1, name, sample_db.execute("SELECT txid FROM refdata.load_run ORDER BY id LIMIT 1").fetchone()[0]),
        ("board_approved.csv", 1, name, txid)]
    assert "as the loading client names it" in sample_db.execute(
        "SELECT col_description('refdata.load_run'::regclass, 4)").fetchone()[0]


def test_every_definer_function_is_pinned_revoked_and_owned_by_the_owner_role(sample_db, cli, write_config,
                                                                              legacy_pg):
    """The shipped config with a reference sync through postgres_fdw, as
    applied: every SECURITY DEFINER function refdata made pins search_path,
    grants PUBLIC nothing, and belongs to refdata_owner, which is no
    superuser; every other function of schema refdata belongs to it too (so
    the DDL guard covers them), and the guard's event triggers fire always."""
    from sync_helpers import plan_table, project_config, sync_config

    config = project_config(write_config)
    sync_config(write_config, plan_table("LEG", "fdw"))
    applied = cli("--config", str(config), "apply", env=legacy_pg.env("LEG"))
    assert applied.returncode == 0, applied.stderr
    rows = sample_db.execute("""
        SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner), r.rolsuper,
               p.proacl IS NOT NULL AND NOT EXISTS (SELECT FROM aclexplode(p.proacl) AS x
                                                    WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')
        FROM pg_proc AS p JOIN pg_roles AS r ON r.oid = p.proowner
        WHERE p.pronamespace = 'refdata'::regnamespace ORDER BY 1""").fetchall()
    definers = [r for r in rows if r[1]]
    assert len(definers) >= 10
    for name, _, config_, owner, superuser, revoked in definers:
        assert (config_[0], owner, superuser, revoked) == ("search_path=pg_catalog, pg_temp", "refdata_owner", False,
                                                           True), name
    assert {r[3] for r in rows} == {"refdata_owner"}
    assert sample_db.execute("SELECT evtname, evtevent, evtenabled FROM pg_event_trigger "
                             "WHERE evtname LIKE 'refdata%' ORDER BY 1").fetchall() == [
        ("refdata_owner_guard_drop", "sql_drop", "A"), ("refdata_owner_guard_end", "ddl_command_end", "A"),
        ("refdata_owner_guard_start", "ddl_command_start", "A")]


def test_an_install_without_the_ddl_guard_gets_it_from_its_next_plan(sample_db, cli):
    """An install made before the owner role was kept from DDL (or whose guard
    someone disabled): the next plan has the event triggers' statement, apply
    puts them back, and the plan after that is empty."""
    assert cli("apply").returncode == 0
    sample_db.execute("DROP EVENT TRIGGER refdata_owner_guard_start; "
                      "ALTER EVENT TRIGGER refdata_owner_guard_end DISABLE")
    plan = cli("plan")
    assert plan.returncode == 3, plan.stderr
    assert "CREATE EVENT TRIGGER" in plan.stdout
    assert cli("apply").returncode == 0
    assert sample_db.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'refdata_owner_guard_%' "
                             "AND evtenabled = 'A'").fetchone() == (3,)
    again = cli("plan")
    assert (again.returncode, again.stdout) == (0, ""), again.stdout


def test_an_install_missing_rights_gets_them_from_its_next_plan(sample_db, cli, role):
    """Rights of the owner role that neither migra nor the comparison of
    refdata's own objects sees (here: the column grant that lets a load's
    commit set its finished_at, made by a newer version), and a loader's
    INSERT on the load log granted by an older role model: the next plan
    runs the rights statement, apply restores the one and takes back the
    other, and the plan after that is empty."""
    assert cli("apply").returncode == 0
    loader = role("loader").info.user
    sample_db.execute(f'REVOKE UPDATE (finished_at) ON refdata.load_run FROM refdata_owner; '
                      f'GRANT INSERT ON refdata.load_run TO "{loader}"')
    plan = cli("plan")
    assert plan.returncode == 3, plan.stderr
    assert "GRANT UPDATE (finished_at) ON TABLE refdata.load_run" in plan.stdout
    assert cli("apply").returncode == 0
    assert sample_db.execute("SELECT has_column_privilege('refdata_owner', 'refdata.load_run', 'finished_at', 'UPDATE'), "
                             "has_table_privilege(%s, 'refdata.load_run', 'INSERT')", [loader]).fetchone() == (True, False)
    again = cli("plan")
    assert (again.returncode, again.stdout) == (0, ""), again.stdout


def test_rights_of_a_table_no_longer_configured_are_taken_back(sample_db, cli, write_config):
    """A config that no longer derives organisations: the owner role loses
    INSERT and DELETE on mapping."组织架构" at the next apply. It keeps
    SELECT and UPDATE there, which a verified load needs on every table the
    fact table's declared foreign keys reference."""
    import yaml

    from helpers import shipped_single_file

    full = yaml.safe_load(shipped_single_file())
    assert cli("--config", str(write_config(yaml.safe_dump(full, allow_unicode=True))), "apply").returncode == 0
    table = 'mapping."组织架构"'
    privileges = ("SELECT", "INSERT", "UPDATE", "DELETE")

    def held():
        return [p for p in privileges
                if sample_db.execute("SELECT has_table_privilege('refdata_owner', %s, %s)", [table, p]).fetchone()[0]]

    assert held() == ["SELECT", "INSERT", "UPDATE", "DELETE"]
    domain = full["domains"]["annuity_performance"]
    domain["foreign_keys"] = [f for f in domain["foreign_keys"] if f["name"] != "fk_organization"]
    applied = cli("--config", str(write_config(yaml.safe_dump(full, allow_unicode=True))), "apply")
    assert applied.returncode == 0, applied.stderr
    assert held() == ["SELECT", "UPDATE"]


def test_operators_planted_in_the_scratch_database_never_run(db, dsn, cli, write_config, role):
    """plan runs the rendered SQL in a scratch database as the (superuser)
    planner. A named --scratch-db whose search_path puts a schema with planted
    operators first: they never run there either."""
    conn = role("scratch_planter")
    planter = conn.info.user
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, name text); CREATE TABLE fact (k text, name text)")
    path = write_config(OWNER_CONFIG.replace("MODE", "row"))
    assert cli("--config", str(path), "apply").returncode == 0
    scratch = f"refdata_scratch_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        scratch_dsn = psycopg.conninfo.make_conninfo(dsn, dbname=scratch)
        with psycopg.connect(scratch_dsn, autocommit=True) as s:
            s.execute(f"CREATE SCHEMA planted AUTHORIZATION {planter}")
            s.execute(sql.SQL("ALTER DATABASE {} SET search_path = planted, pg_catalog, public").format(
                sql.Identifier(scratch)))
        with psycopg.connect(psycopg.conninfo.make_conninfo(scratch_dsn, user=planter), autocommit=True) as p:
            plant_operators(p, planter, [("bigint", "integer"), ("text", "text"), ("oid", "oid"), ("name", "name")],
                            ("<", "=", "<>"))
        changed = write_config(OWNER_CONFIG.replace("MODE", "statement"), name="statement.yml")
        planned = cli("--config", str(changed), "plan", "--scratch-db", scratch_dsn)
        assert planned.returncode == 3, planned.stderr
        assert not is_superuser(db, planter)
    finally:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(scratch)))


# -- names read from the catalog into files ------------------------------------------------

@pytest.mark.parametrize("end", ["\n", "\r", "\u2028", "\x85"], ids=["lf", "cr", "u2028", "nel"])
def test_init_writes_catalog_names_into_its_comments_as_text_never_as_config(db, cli, tmp_path, end):
    """`refdata init` names each FOREIGN KEY constraint and each placeholder's
    type in a YAML comment. A constraint or a type whose name holds a line
    break (anyone who may create a table or a type can name one so) used to
    end that comment, and the rest of the name became config the DBA then
    applied: here `mode: fill_null_only`, which lets every writer of facts
    fill NULL columns of authoritative parents, and a default of the
    writer's choosing. The comment shows the break escaped."""
    evil = f"c{end}        mode: fill_null_only"
    evil_type = f"t{end}          note: planted #"
    db.execute(sql.SQL("""
        CREATE DOMAIN {} AS int;
        CREATE TABLE parent (k text PRIMARY KEY, note text, size {} NOT NULL);
        CREATE TABLE fact (k text, v text, CONSTRAINT {} FOREIGN KEY (k) REFERENCES parent);
        """).format(sql.Identifier(evil_type), sql.Identifier(evil_type), sql.Identifier(evil)))
    out = tmp_path / "init.yml"
    result = cli("init", "--fact", "public.fact", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    import yaml

    fk = yaml.safe_load(text)["domains"]["fact"]["foreign_keys"][0]
    assert sorted(fk) == ["defaults", "name", "source_column", "target_key", "target_schema", "target_table"], text
    assert fk["defaults"] == {"size": 0}, text
    assert f"# c{repr(end)[1:-1]}        mode" in text  # the name is still shown, its break escaped
    assert len(text.splitlines()) == len(text.split("\n")) - 1, "only the file's own line breaks"


# -- text from files and tables reaching the terminal ---------------------------------------

TERMINAL_CONTROLS = ["\x1b]0;owned\x07", "\x1b[2K\r", "\x9b31m", "\u202e"]


@pytest.fixture
def applied_fact(db, cli, write_config):
    """A fact table and its parent, one domain applied: the config's path."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY); CREATE TABLE fact (k text, amount int)")
    config = write_config("""
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_k, source_column: k, target_table: parent, target_key: k}
""")
    assert cli("--config", str(config), "apply").returncode == 0
    return config


@pytest.mark.parametrize("python_path", [False, True], ids=["server-parser", "python-path"])
def test_an_error_quoting_a_value_shows_its_control_characters_escaped(applied_fact, cli, tmp_path, python_path):
    """A value in a fact file (anyone may have written it) is quoted by the
    error that refuses it. Printed as it is, an escape sequence in it drives
    the terminal of whoever runs the load: a carriage return and `ESC [2K`
    erase the line the real error was on, OSC sequences retitle the window
    or write the clipboard. The error line shows such characters escaped."""
    data = tmp_path / "facts.csv"
    value = "1" + "".join(TERMINAL_CONTROLS) + "all good"
    data.write_text(f'k,amount\nK1,"{value}"\n', encoding="utf-8")
    args = ["--config", str(applied_fact), "load", "d", str(data)] + (["--delimiter", ";"] if python_path else [])
    if python_path:
        data.write_text(f'k;amount\nK1;"{value}"\n', encoding="utf-8")
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, repr(result.stderr)
    line = result.stderr[:-1]
    assert not [ch for ch in line if not ch.isprintable()], repr(line)
    assert "\\x1b]0;owned\\x07" in line and "all good" in line, line


def test_a_failed_sync_line_shows_control_characters_of_the_source_escaped(sample_db, cli, write_config):
    """A source row's key, from a system someone else fills, is named in the
    line of a table that failed: escaped, it cannot drive the terminal."""
    from test_sync_inputs import sync_file

    key = "\x1b]0;x\x07\r\x1b[2K"
    _, result = sync_file(cli, write_config, "lines.csv", f'产品线代码,产品线\n"{key}",\n')
    assert result.returncode == 1, result.stderr
    assert "产品线: failed: " in result.stderr and "\\x1b]0;x\\x07" in result.stderr, result.stderr
    assert not [ch for ch in result.stderr.replace("\n", "") if not ch.isprintable()], repr(result.stderr)


def test_status_shows_a_loaded_file_s_name_with_its_control_characters_escaped(applied_fact, cli, tmp_path):
    """The file name a load records is what the loading client said (any
    loader's); `status --loads` shows it to whoever asks, escaped."""
    data = tmp_path / "x\x1b]0;owned\x07\r.csv"
    data.write_text("k,amount\nK1,1\n", encoding="utf-8")
    assert cli("--config", str(applied_fact), "load", "d", str(data)).returncode == 0
    result = cli("status", "--loads")
    assert result.returncode == 0, result.stderr
    assert "x\\x1b]0;owned\\x07\\r.csv" in result.stdout, result.stdout
    assert not [ch for ch in result.stdout.replace("\n", "") if not ch.isprintable()], repr(result.stdout)


@pytest.mark.parametrize("name", ["年金计划\n\\! touch /tmp/refdata_pwned\n\\echo '", "年金计划'; --", "年金计划 x"],
                         ids=["psql meta-command", "quote", "space"])
def test_a_sync_table_name_is_matched_in_full(cli, write_config, name, tmp_path):
    """A sync table's name becomes part of object names and of the line a
    rendered script echoes when its source's environment is not set
    (`\\echo '... foreign_table refdata_stage.sync__NAME__source ...'`):
    matched only at its start, a name could go on with a quote and a line
    break, and psql ran the next line (`\\! touch ...`) as a shell command."""
    from sync_helpers import plan_table, project_config, sync_config

    config = project_config(write_config)
    table = plan_table("LEG", "fdw").replace("  - name: 年金计划\n", f"  - name: {json_quoted(name)}\n", 1)
    path = sync_config(write_config, table)
    for command in (["validate"], ["render"]):
        result = cli("--config", str(config), *command, "--sync-config", str(path), db=None)
        assert result.returncode == 2, (command, result.stdout)
        assert result.stderr.startswith(f"refdata: error: {path}:3: "), result.stderr
        assert "is not a valid name" in result.stderr and result.stderr.count("\n") == 1, result.stderr


def json_quoted(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def test_promotion_on_insert_never_writes_a_row_row_level_security_hides_from_the_inserter(db, cli, write_config, role):
    """Promotion turns an INSERT of an auto-derived key into an UPDATE that
    the owner role makes. A clerk whose policy lets it see and insert only
    tenant A's rows inserted tenant B's derived key and overwrote that row
    (the INSERT's WITH CHECK never ran: the trigger skipped the insert).
    Promotion is for inserters row-level security does not restrict on the
    table; the clerk's INSERT fails on the key, as without refdata."""
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, tenant text, name text); CREATE TABLE fact (k text, v text)")
    config = write_config("""
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk, source_column: k, target_table: parent, target_key: k, defaults: {tenant: B}}
""")
    assert cli("--config", str(config), "apply").returncode == 0
    db.execute("ALTER TABLE parent ENABLE ROW LEVEL SECURITY; "
               "CREATE POLICY refdata ON parent TO refdata_owner USING (true) WITH CHECK (true)")
    db.execute("INSERT INTO fact VALUES ('K1', 'x'), ('K2', 'y')")  # derives K1 and K2 of tenant B
    clerk = role("clerk", ["GRANT SELECT, INSERT ON parent TO {role}"])
    db.execute(sql.SQL("CREATE POLICY clerk ON parent TO {} USING (tenant = 'A') WITH CHECK (tenant = 'A')").format(
        sql.Identifier(clerk.info.user)))
    assert clerk.execute("SELECT count(*) FROM parent").fetchone() == (0,)
    for tenant in ("B", "A"):
        with pytest.raises(psycopg.Error) as refused:
            clerk.execute("INSERT INTO parent (k, tenant, name) VALUES ('K1', %s, 'mine now')", [tenant])
        assert isinstance(refused.value, (psycopg.errors.UniqueViolation, psycopg.errors.InsufficientPrivilege))
    assert db.execute("SELECT k, tenant, name, _source FROM parent ORDER BY k").fetchall() == [
        ("K1", "B", None, "auto_derived"), ("K2", "B", None, "auto_derived")]
    # a role row-level security does not restrict still promotes
    db.execute("INSERT INTO parent (k, tenant, name) VALUES ('K2', 'B', 'authoritative now')")
    assert db.execute("SELECT name, _source FROM parent WHERE k = 'K2'").fetchone() == ("authoritative now",
                                                                                       "authoritative")
