"""Schedule: takes a checked `ir.Network`, gives the order in which the executor computes it.

The folded graph's strongly connected components, in topological order, become stages: a component
with no feedback edge is computed for all steps at once (batched over time); a component with one
(a loop) runs as one loop over time, forward when it reads `[t-k]`, backward when it reads `[t+k]`.
Inside a stage, nodes are ordered by their same-step edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from rnndsl.graphs.folded import Component, components, folded
from rnndsl.lang.ir import Network

__all__ = ["Stage", "schedule"]


@dataclass(frozen=True)
class Stage:
    """One step of the plan: `nodes` in order; `direction` 0 batched, +1 forward loop, -1 backward."""

    nodes: tuple[str, ...]
    direction: int
    static: bool = False

    @property
    def is_loop(self) -> bool:
        return self.direction != 0


def schedule(network: Network) -> tuple[Stage, ...]:
    """The stages of a network, inputs excluded (they are given).

    >>> from rnndsl import load
    >>> [s.nodes for s in schedule(load("network E { input x: 2\\n layer h: 3 <- x, h[t-1]\\n"
    ...                                  " layer y: 1 <- h\\n output y }"))]
    [('h',), ('y',)]
    """
    g = folded(network, feeds=False)  # a given self-fed input closes no loop; running free, it is a node
    order = {n.name: i for i, n in enumerate(network.nodes)}
    stages = []
    for comp in components(g, order):
        if len(comp.nodes) == 1 and network[comp.nodes[0]].op in ("input", "param"):
            continue  # given, or a parameter: there from the start
        stages.append(_stage(network, g, comp, order))
    return tuple(stages)


def _stage(network: Network, g: nx.MultiDiGraph, comp: Component, order: dict[str, int]) -> Stage:
    names = list(comp.nodes)
    sub = g.subgraph(names)
    same_step = nx.DiGraph()
    same_step.add_nodes_from(names)
    same_step.add_edges_from((u, v) for u, v, d in sub.edges(data="delay") if d == 0)
    ordered = tuple(nx.lexicographical_topological_sort(same_step, key=order.__getitem__))
    delays = comp.delays - {0}  # one sign in a checked network: the checker refuses a loop with both
    direction = 0 if not delays else (1 if max(delays) > 0 else -1)
    return Stage(ordered, direction, static=all(network[n].static for n in names))
