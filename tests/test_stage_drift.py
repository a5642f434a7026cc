"""A staging table that fell behind its fact table (ALTER TABLE after apply):
load says so in one line, validate reports it, apply brings it in step."""

from __future__ import annotations

import subprocess

FACT = 'business."规模明细"'
STAGE = '"refdata_stage"."annuity_performance"'
HEADER = "月度,计划代码,计划名称,组合代码,组合名称,产品线代码,机构代码,期末资产规模,备注"


def write_csv(tmp_path, remark: str):
    path = tmp_path / "facts.csv"
    path.write_text(f"{HEADER}\n2025-11-01,PD1,新计划,QD1,新组合,PL201,G000,1,{remark}\n", encoding="utf-8")
    return path


def stage_columns(db) -> dict:
    return dict(db.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_rd\\_%%'",
        [STAGE]).fetchall())


def test_a_column_added_to_the_fact_table_after_apply(cli, sample_db, tmp_path):
    assert cli("apply").returncode == 0
    sample_db.execute(f'ALTER TABLE {FACT} ADD COLUMN "备注" text')
    path = write_csv(tmp_path, "第一笔")

    load = cli("load", "annuity_performance", str(path))
    assert load.returncode == 1
    assert load.stderr == (
        f"refdata: error: staging table {STAGE} is not in step with \"business\".\"规模明细\" since the last "
        'apply: column "备注" added; run refdata apply first\n')

    validate = cli("validate")
    assert validate.returncode == 0, validate.stderr
    # the domain's entry in the config (its fact table is output.table there)
    assert ("warning: config/data_sources.yml:11: domain annuity_performance: staging table " + STAGE + ' is not in step with '
            '"business"."规模明细" since the last apply: column "备注" added; refdata apply brings it in step'
            ) in validate.stdout.splitlines()

    assert cli("apply").returncode == 0
    assert "not in step" not in cli("validate").stdout
    load = cli("load", "annuity_performance", str(path))
    assert load.returncode == 0, load.stderr
    assert sample_db.execute(f"""SELECT "备注" FROM {FACT} WHERE "计划代码" = 'PD1'""").fetchall() == [("第一笔",)]


def test_a_changed_type_and_a_dropped_column_are_brought_in_step_by_apply(cli, sample_db, tmp_path):
    sample_db.execute(f'ALTER TABLE {FACT} ADD COLUMN "备注" varchar(4), ADD COLUMN "旧列" text')
    assert cli("apply").returncode == 0
    sample_db.execute(f'ALTER TABLE {FACT} ALTER COLUMN "备注" TYPE varchar(20), DROP COLUMN "旧列"')

    validate = cli("validate")
    assert ('column "备注" now character varying(20) (staged as character varying(4)); column "旧列" dropped; '
            "refdata apply brings it in step") in validate.stdout
    assert cli("load", "annuity_performance", str(write_csv(tmp_path, "x"))).returncode == 1

    assert cli("apply").returncode == 0
    assert stage_columns(sample_db)["备注"] == "character varying(20)"
    assert "旧列" not in stage_columns(sample_db)
    load = cli("load", "annuity_performance", str(write_csv(tmp_path, "一个超过四个字的备注")))
    assert load.returncode == 0, load.stderr
    assert sample_db.execute(f"""SELECT "备注" FROM {FACT} WHERE "计划代码" = 'PD1'""").fetchall() == [
        ("一个超过四个字的备注",)]


def test_the_psql_route_brings_a_changed_type_and_a_dropped_column_in_step(cli, sample_db, dsn):
    """`refdata render | psql` runs the staging table's own step on the live
    table (apply's plan builds staging afresh in its scratch database)."""
    sample_db.execute(f'ALTER TABLE {FACT} ADD COLUMN "备注" varchar(4), ADD COLUMN "旧列" text')
    assert cli("apply").returncode == 0
    sample_db.execute(f'ALTER TABLE {FACT} ALTER COLUMN "备注" TYPE varchar(20), DROP COLUMN "旧列"')
    render = cli("render")
    assert render.returncode == 0, render.stderr
    applied = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", dsn], input=render.stdout,
                             capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    assert stage_columns(sample_db)["备注"] == "character varying(20)"
    assert "旧列" not in stage_columns(sample_db)
