"""Processing order of a domain's foreign keys: parents before children."""

from __future__ import annotations

import heapq
from graphlib import CycleError, TopologicalSorter

from .config import Domain, ForeignKey


def processing_order(domain_name: str, domain: Domain) -> list[ForeignKey]:
    """Topological order over depends_on; ties go to the lower `priority`
    (FKs without one after those with one), then to the earlier FK in the config.

    Raises ValueError naming the cycle, e.g. ``fk_a -> fk_b -> fk_a`` where
    ``->`` reads "depends on".
    """
    position = {fk.name: i for i, fk in enumerate(domain.foreign_keys)}
    rank = {fk.name: (fk.priority is None, fk.priority or 0, position[fk.name]) for fk in domain.foreign_keys}
    by_name = {fk.name: fk for fk in domain.foreign_keys}
    sorter = TopologicalSorter({fk.name: fk.depends_on for fk in domain.foreign_keys})
    try:
        sorter.prepare()
    except CycleError as e:
        raise ValueError(f"domain {domain_name}: dependency cycle: {_cycle_text(e.args[1], position)}") from None
    ready: list[tuple[int, str]] = []
    order: list[ForeignKey] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, (rank[name], name))
        _, name = heapq.heappop(ready)
        order.append(by_name[name])
        sorter.done(name)
    return order


def _cycle_text(cycle: list[str], position: dict[str, int]) -> str:
    # graphlib lists each node before the one that depends on it; reverse to
    # read as "depends on", and start at the first FK in config order.
    nodes = list(reversed(cycle))[:-1]
    start = min(range(len(nodes)), key=lambda i: position[nodes[i]])
    nodes = nodes[start:] + nodes[:start]
    return " -> ".join(nodes + [nodes[0]])
