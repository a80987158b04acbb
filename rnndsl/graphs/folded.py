"""Graph: takes a checked `ir.Network`, gives the folded graph as a `networkx.MultiDiGraph`.

One node per network node (attributes: op, size, static, input_kind, activation, line, init); one edge per
distinct (source, delay) a node reads, with `delay` = k for `[t-k]`, -k for `[t+k]`, 0 for the same step.
A self-fed input also gets an edge per distinct (source, delay) its feed reads, marked `kind="feed"`: the
value flows that way only when the input runs free, so `loops` and the scheduler leave those edges out.
Feedback edges are the ones with a nonzero delay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network

__all__ = ["FEED", "Component", "components", "feedback_edges", "folded", "is_feed", "loops"]

FEED = "feed"  # the `kind` of an edge from what a self-fed input's feed reads to the input


def folded(network: Network, feeds: bool = True) -> nx.MultiDiGraph:
    """The folded graph of a network; with `feeds=False`, without the edges of self-fed inputs' feeds.

    >>> from rnndsl import load
    >>> g = folded(load("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }"))
    >>> sorted((u, v, d) for u, v, d in g.edges(data="delay"))
    [('h', 'h', 1), ('x', 'h', 0)]
    >>> g = folded(load("network G { input w: 2 = y[t-1]\\n layer y: 2 tanh <- w\\n output y }"))
    >>> [(u, v, d) for u, v, d in g.edges(data=True) if is_feed(d)]
    [('y', 'w', {'delay': 1, 'kind': 'feed'})]
    """
    g = nx.MultiDiGraph(name=network.name)
    for node in network.nodes:
        g.add_node(
            node.name,
            op=node.op,
            size=node.size,
            static=node.static,
            input_kind=node.input_kind,
            activation=node.activation,
            line=node.span.line,
            init=node.init.kind,
        )
    for node in network.nodes:
        seen = set()
        for ref in node.refs():
            if (ref.name, ref.delay) not in seen:
                seen.add((ref.name, ref.delay))
                g.add_edge(ref.name, node.name, delay=ref.delay)
    for node in network.self_fed if feeds else []:
        assert node.feed is not None
        for name, delay in dict.fromkeys((r.name, r.delay) for r in s.refs(node.feed)):
            g.add_edge(name, node.name, delay=delay, kind=FEED)
    g.graph["outputs"] = [(o.name, o.last) for o in network.outputs]
    return g


def is_feed(attrs: dict[str, object]) -> bool:
    """Whether an edge (given its attributes) is a self-fed input's feed."""
    return attrs.get("kind") == FEED


def feedback_edges(g: nx.MultiDiGraph) -> list[tuple[str, str, int]]:
    """The edges that carry a value across steps, as (source, target, delay); feeds included."""
    return [(u, v, d) for u, v, d in g.edges(data="delay") if d != 0]


@dataclass(frozen=True)
class Component:
    """A strongly connected part of a folded graph: its nodes (in definition order) and the delays of
    the edges inside it (0: the same step). It is a loop when one of them is not 0."""

    nodes: tuple[str, ...]
    delays: frozenset[int]


def components(g: nx.MultiDiGraph, position: Mapping[str, int] | None = None) -> list[Component]:
    """The strongly connected components of `g` in topological order, the one holding the earliest-defined
    node first among those that may go next. `position` gives definition order (default: `g`'s node order).
    The one place the checker, `loops` and the scheduler find the cycles of a network and their delays.

    >>> from rnndsl import load
    >>> components(folded(load("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")))
    [Component(nodes=('x',), delays=frozenset()), Component(nodes=('h',), delays=frozenset({1}))]
    """
    order = dict(position) if position is not None else {n: i for i, n in enumerate(g.nodes)}
    cond = nx.condensation(g)
    members: dict[int, list[str]] = {}
    for name, c in cond.graph["mapping"].items():
        members.setdefault(c, []).append(name)
    delays: dict[int, set[int]] = {c: set() for c in members}
    for u, v, d in g.edges(data="delay"):  # one pass over the edges: a subgraph per component is quadratic
        cu = cond.graph["mapping"][u]
        if cu == cond.graph["mapping"][v]:
            delays[cu].add(d)
    ranked = nx.lexicographical_topological_sort(cond, key=lambda c: min(order[n] for n in members[c]))
    return [Component(tuple(sorted(members[c], key=order.__getitem__)), frozenset(delays[c])) for c in ranked]


def loops(g: nx.MultiDiGraph) -> list[tuple[list[str], list[int]]]:
    """Each feedback loop (a strongly connected part with a delayed edge), with its distinct delays, in the
    order of their earliest-defined nodes.

    Feed edges are left out: a self-fed input is given while training, so its feed closes no loop the
    compiler runs (running free, `Network.running_free` makes the input a node of the loop it reads)."""
    position = {n: i for i, n in enumerate(g.nodes)}
    view = nx.subgraph_view(g, filter_edge=lambda u, v, k: not is_feed(g.edges[u, v, k]))
    out = [(list(c.nodes), sorted(c.delays - {0})) for c in components(view, position) if c.delays - {0}]
    return sorted(out, key=lambda item: position[item[0][0]])
