"""Processing order of a domain's foreign keys: parents before children, ties
by config order, and cycles refused with the cycle spelled out."""

from __future__ import annotations

import textwrap

import pytest

from generator.config import parse_config
from generator.order import processing_order


def domain(*fks: str):
    """A one-domain config from FK specs 'name' or 'name<-dep1,dep2'."""
    lines = []
    for i, spec in enumerate(fks):
        name, _, deps = spec.partition("<-")
        dep = f", depends_on: [{deps}]" if deps else ""
        lines.append(f"      - {{name: {name}, source_column: c{i}, target_table: t{i}, target_key: k{i}{dep}}}")
    text = "domains:\n  d:\n    foreign_keys:\n" + "\n".join(lines) + "\n"
    return text, parse_config(text, "cfg.yml").domains["d"]


def order(*fks: str) -> list[str]:
    return [fk.name for fk in processing_order("d", domain(*fks)[1])]


def test_no_dependencies_keeps_config_order():
    assert order("fk_c", "fk_a", "fk_b") == ["fk_c", "fk_a", "fk_b"]


def test_parent_before_child():
    assert order("fk_portfolio<-fk_plan", "fk_plan") == ["fk_plan", "fk_portfolio"]


def test_proposal_example_order():
    assert order("fk_plan", "fk_portfolio<-fk_plan", "fk_product_line", "fk_organization") == [
        "fk_plan", "fk_portfolio", "fk_product_line", "fk_organization"
    ]


def test_chain_grandparent_parent_child():
    assert order("fk_child<-fk_parent", "fk_parent<-fk_grand", "fk_grand") == ["fk_grand", "fk_parent", "fk_child"]


def test_diamond():
    result = order("fk_d<-fk_b,fk_c", "fk_c<-fk_a", "fk_b<-fk_a", "fk_a")
    assert result[0] == "fk_a" and result[-1] == "fk_d"


def test_every_fk_comes_after_all_it_depends_on():
    specs = ["fk_e<-fk_a,fk_d", "fk_a", "fk_d<-fk_b", "fk_b<-fk_a", "fk_c", "fk_f<-fk_c,fk_e"]
    result = order(*specs)
    assert sorted(result) == sorted(s.partition("<-")[0] for s in specs)
    for spec in specs:
        name, _, deps = spec.partition("<-")
        for dep in filter(None, deps.split(",")):
            assert result.index(dep) < result.index(name), (dep, name, result)


def test_ties_by_config_order_independent_fks():
    result = order("fk_b", "fk_child<-fk_a", "fk_a", "fk_c")
    assert result.index("fk_a") < result.index("fk_child")
    assert result.index("fk_b") < result.index("fk_c")


def test_ties_by_config_order():
    # Whenever several FKs are ready, the one earliest in the config goes
    # next: product is ready at once and comes before plan in the config;
    # the child waits for plan.
    result = order("fk_child<-fk_plan", "fk_product", "fk_plan")
    assert result == ["fk_product", "fk_plan", "fk_child"]


def test_two_cycle_raises_with_the_cycle_named():
    with pytest.raises(ValueError) as exc:
        order("fk_a<-fk_b", "fk_b<-fk_a")
    assert str(exc.value) == "domain d: dependency cycle: fk_a -> fk_b -> fk_a"


def test_three_cycle_raises_with_the_cycle_named():
    with pytest.raises(ValueError) as exc:
        order("fk_x", "fk_a<-fk_b", "fk_b<-fk_c", "fk_c<-fk_a")
    assert str(exc.value) == "domain d: dependency cycle: fk_a -> fk_b -> fk_c -> fk_a"


def test_three_cycle_reads_as_depends_on_whatever_the_config_order():
    # fk_a depends on fk_c, fk_c on fk_b, fk_b on fk_a.
    with pytest.raises(ValueError) as exc:
        order("fk_a<-fk_c", "fk_b<-fk_a", "fk_c<-fk_b")
    assert str(exc.value) == "domain d: dependency cycle: fk_a -> fk_c -> fk_b -> fk_a"


def test_cycle_beside_a_healthy_chain_is_still_found():
    with pytest.raises(ValueError, match=r"dependency cycle: fk_p -> fk_q -> fk_p$"):
        order("fk_a", "fk_b<-fk_a", "fk_p<-fk_q,fk_a", "fk_q<-fk_p")


# -- the CLI ------------------------------------------------------------------


def test_cli_validate_prints_processing_order(cli, write_config):
    path = write_config(
        textwrap.dedent(
            """\
            domains:
              annuity_performance:
                fact_schema: business
                fact_table: 规模明细
                foreign_keys:
                  - {name: fk_portfolio, source_column: 组合代码, target_schema: mapping, target_table: 组合计划,
                     target_key: 组合代码, depends_on: [fk_plan]}
                  - {name: fk_plan, source_column: 计划代码, target_schema: mapping, target_table: 年金计划,
                     target_key: 年金计划号}
            """
        )
    )
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:4] == [
        'domain annuity_performance (fact table "business"."规模明细"), processing order:',
        '  1. fk_plan: 计划代码 -> "mapping"."年金计划" (年金计划号)',
        '  2. fk_portfolio: 组合代码 -> "mapping"."组合计划" (组合代码)  after fk_plan',
    ]


def test_cli_validate_cycle_exit_2(cli, write_config):
    text, _ = domain("fk_a<-fk_c", "fk_b<-fk_a", "fk_c<-fk_b")
    path = write_config(text)
    result = cli("--config", str(path), "validate", db=None)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"refdata: error: {path}: domain d: dependency cycle: fk_a -> fk_c -> fk_b -> fk_a\n"


@pytest.mark.parametrize("command", ["render", "apply"])
def test_other_commands_refuse_a_cycle_too(cli, write_config, postgresql, command):
    text, _ = domain("fk_a<-fk_b", "fk_b<-fk_a")
    path = write_config(text)
    result = cli("--config", str(path), command)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"refdata: error: {path}: domain d: dependency cycle: fk_a -> fk_b -> fk_a\n"
    assert postgresql.execute("SELECT to_regnamespace('refdata')").fetchone() == (None,)
