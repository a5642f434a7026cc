"""Property-based tests: processing order over random dependency graphs, and
random CSV content loading the same through the server's CSV parser and the
Python path."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.config import parse_config
from generator.errors import InputError
from generator.load import Loader, Options
from generator.order import processing_order

# -- processing order ---------------------------------------------------------------


@st.composite
def dags(draw):
    """(names in config order, depends_on per name) with no cycle."""
    n = draw(st.integers(min_value=1, max_value=12))
    rank = draw(st.permutations(range(n)))  # a hidden topological rank per FK
    deps = {}
    for i in range(n):
        earlier = [j for j in range(n) if rank[j] < rank[i]]
        deps[i] = sorted(draw(st.sets(st.sampled_from(earlier), max_size=3))) if earlier else []
    return [f"fk_{i}" for i in range(n)], {f"fk_{i}": [f"fk_{j}" for j in d] for i, d in deps.items()}


def _domain(names, deps):
    fks = "\n".join(
        f"      - {{name: {n}, source_column: c_{n}, target_table: t_{n}, target_key: k, depends_on: [{', '.join(deps[n])}]}}"
        for n in names
    )
    return parse_config(f"domains:\n  d:\n    foreign_keys:\n{fks}\n").domains["d"]


def _reference_order(names, deps):
    """The smallest topological order by config position, the slow obvious way."""
    done, order = set(), []
    while len(order) < len(names):
        ready = next(n for n in names if n not in done and all(d in done for d in deps[n]))
        order.append(ready)
        done.add(ready)
    return order


@settings(max_examples=200, deadline=None)
@given(dags())
def test_random_dags_order_parents_before_children_ties_by_config_order(graph):
    names, deps = graph
    order = [fk.name for fk in processing_order("d", _domain(names, deps))]
    assert sorted(order) == sorted(names)
    position = {n: i for i, n in enumerate(order)}
    for n in names:
        for d in deps[n]:
            assert position[d] < position[n], f"{n} depends on {d}"
    assert order == _reference_order(names, deps)


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_random_cyclic_graphs_are_refused_naming_a_real_cycle(graph, data):
    names, deps = graph
    # Close a cycle: some FK comes to depend on one that (transitively) depends on it, or on itself.
    start = data.draw(st.sampled_from(names))
    below = {start}
    changed = True
    while changed:
        changed = False
        for n in names:
            if n not in below and any(d in below for d in deps[n]):
                below.add(n)
                changed = True
    back = data.draw(st.sampled_from(sorted(below)))
    if back == start:  # a self-reference is refused by the config model itself
        return
    deps = {n: list(d) for n, d in deps.items()}
    deps[start] = deps[start] + [back]
    with pytest.raises(ValueError) as caught:
        processing_order("d", _domain(names, deps))
    message = str(caught.value)
    assert message.startswith("domain d: dependency cycle: ")
    cycle = message.removeprefix("domain d: dependency cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1] and len(cycle) >= 3
    for a, b in zip(cycle, cycle[1:]):
        assert b in deps[a], f"{a} -> {b} is not an edge of the graph"


# -- CSV through both load paths -----------------------------------------------------

FIELD = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
CONFIG = """
domains:
  d:
    fact_table: fact
    foreign_keys:
      - {name: fk_p, source_column: k, target_table: parent, target_key: k,
         backfill_columns: [{source: a, target: a}], skip_blank_values: false}
"""


@pytest.fixture
def csv_db(db, cli, write_config):
    db.execute("CREATE TABLE parent (k text PRIMARY KEY, a text);"
               "CREATE TABLE fact (line int, k text, a text, b text)")
    path = write_config(CONFIG)
    assert cli("--config", str(path), "apply").returncode == 0
    return db, parse_config(CONFIG)


def _load(db, config, path: Path, python: bool):
    """What a load gives: the rows of fact and parent, or its one-line error."""
    db.execute("TRUNCATE fact; TRUNCATE parent")
    db.autocommit = False
    try:
        loader = Loader(db, config, "d", path, Options(force=True))
        loader.python_path = python
        loader.run(progress=False)
    except InputError as e:
        return str(e)
    finally:
        db.rollback()
        db.autocommit = True
    return (db.execute("SELECT line, k, a, b FROM fact ORDER BY line").fetchall(),
            db.execute("SELECT k, a, _source FROM parent ORDER BY k COLLATE \"C\"").fetchall())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), FIELD), FIELD, FIELD), min_size=1, max_size=8),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       terminator=st.sampled_from(["\n", "\r\n"]))
def test_random_csv_loads_the_same_through_both_paths(csv_db, tmp_path_factory, rows, quoting, terminator):
    db, config = csv_db
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting, lineterminator=terminator)
    writer.writerow(["line", "k", "a", "b"])
    for n, (k, a, b) in enumerate(rows, start=1):
        writer.writerow([n, "" if k is None else k, a, b])
    path = tmp_path_factory.mktemp("csv") / "facts.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    server, python = _load(db, config, path, python=False), _load(db, config, path, python=True)
    assert server == python
    if not isinstance(server, str):  # (a field holding a bare carriage return is malformed CSV: both refuse it)
        assert len(server[0]) == len(rows), "every record is one fact row"


@pytest.mark.parametrize("python", [False, True], ids=["server parser", "python path"])
def test_quoted_empty_is_an_empty_string_unquoted_empty_is_null(csv_db, tmp_path, python):
    """As COPY's CSV format has it: only an unquoted value equal to the NULL marker is NULL."""
    db, config = csv_db
    path = tmp_path / "facts.csv"
    path.write_text('line,k,a,b\n1,,"",x\n2,"",,"y"\n', encoding="utf-8")
    fact, _ = _load(db, config, path, python=python)
    assert fact == [(1, None, "", "x"), (2, "", None, "y")]
