"""Graph: takes a checked `ir.Network`, gives the folded graph as a `networkx.MultiDiGraph`.

One node per network node (attributes: op, size, static, input_kind, activation, line, init); one edge per
distinct (source, delay) a node reads, with `delay` = k for `[t-k]`, -k for `[t+k]`, 0 for the same step.
A self-fed input also gets an edge per distinct (source, delay) its feed reads, marked `kind="feed"`: the
value flows that way only when the input runs free, so `loops` and the scheduler leave those edges out.
Feedback edges are the ones with a nonzero delay.
"""

from __future__ import annotations

import networkx as nx

from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network

__all__ = ["FEED", "folded", "feedback_edges", "is_feed", "loops"]

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


def loops(g: nx.MultiDiGraph) -> list[tuple[list[str], list[int]]]:
    """Each feedback loop (a strongly connected part with a delayed edge), with its distinct delays.

    Feed edges are left out: a self-fed input is given while training, so its feed closes no loop the
    compiler runs (running free, `Network.running_free` makes the input a node of the loop it reads)."""
    position = {n: i for i, n in enumerate(g.nodes)}
    full = g
    g = nx.subgraph_view(full, filter_edge=lambda u, v, k: not is_feed(full.edges[u, v, k]))
    comps = list(nx.strongly_connected_components(g))
    comp_of = {n: i for i, comp in enumerate(comps) for n in comp}
    delays: list[set[int]] = [set() for _ in comps]
    for u, v, d in g.edges(data="delay"):  # one pass over the edges: a subgraph per component is quadratic
        if d != 0 and comp_of[u] == comp_of[v]:
            delays[comp_of[u]].add(d)
    out = [(sorted(comp, key=position.__getitem__), sorted(ds)) for comp, ds in zip(comps, delays, strict=True) if ds]
    return sorted(out, key=lambda item: position[item[0][0]])
