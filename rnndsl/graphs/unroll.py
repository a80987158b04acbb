"""Unroll: takes a checked `ir.Network` and a number of steps, gives the time-unrolled DAG.

Nodes are `(name, t)` for t in [0, steps); a static node (the same at every step) is one node
`(name, None)`. Where a reference reaches before step 0 or past the last step, the DAG has an
initial-value node `(name, t)` with t < 0 or t >= steps and `kind="initial"`: its value is the state
carried in, or the node's `init`. Feedback edges point from step t-k to step t. Always acyclic.

With `feeds=True` (as `draw` asks), a self-fed input `w` with the feed `f(y[t-k])` also gets the edges
`(y, t-k) -> (w, t)` for t >= k, marked `kind="feed"`: what running free feeds it (the steps before take
its init or the state, so they get none). Without, the DAG is what the reference executor evaluates:
every self-fed input is given.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from rnndsl.graphs.folded import FEED
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network

__all__ = ["unroll", "MAX_UNROLL_STEPS"]

MAX_UNROLL_STEPS = 100_000


def unroll(network: Any, steps: int, feeds: bool = False) -> nx.DiGraph:
    """The unrolled DAG of a network (an `ir.Network` or a compiled module) over `steps` steps; with
    `feeds`, the edges of self-fed inputs' feeds too.

    >>> from rnndsl import load
    >>> g = unroll(load("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }"), 3)
    >>> g.number_of_nodes(), g.nodes["h", -1]["kind"]
    (7, 'initial')
    """
    net: Network = getattr(network, "network", network)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive whole number, got {steps!r}")
    if steps > MAX_UNROLL_STEPS:
        raise ValueError(f"steps={steps:,} is above the limit of {MAX_UNROLL_STEPS:,} for an unrolled graph")
    g = nx.DiGraph(name=f"{net.name} unrolled", steps=steps, outputs=[(o.name, o.last) for o in net.outputs])
    for node in net.nodes:
        for t in [None] if node.static else range(steps):
            g.add_node((node.name, t), kind="static" if node.static else "step", op=node.op, size=node.size)
    for node in net.nodes:
        for t in [None] if node.static else range(steps):
            for ref in node.refs():
                _add_edge(g, net, ref, (node.name, t), steps)
    for node in net.self_fed if feeds else []:
        assert node.feed is not None
        for ref in s.refs(node.feed):
            _add_feed_edges(g, net, ref, node.name, steps)
    return g


def _add_feed_edges(g: nx.DiGraph, net: Network, ref: s.Ref, name: str, steps: int) -> None:
    if net[ref.name].static:
        for t in range(steps):
            g.add_edge((ref.name, None), (name, t), delay=0, kind=FEED)
        return
    for t in range(max(ref.delay, 0), steps):  # a feed reads only the past (check)
        g.add_edge((ref.name, t - ref.delay), (name, t), delay=ref.delay, kind=FEED)


def _add_edge(g: nx.DiGraph, net: Network, ref: s.Ref, target: tuple[str, int | None], steps: int) -> None:
    source = net[ref.name]
    if source.static:
        g.add_edge((ref.name, None), target, delay=0)
        return
    assert target[1] is not None  # a node reading a time-varying value is not static
    t = target[1] - ref.delay
    if not 0 <= t < steps and (ref.name, t) not in g:
        g.add_node(
            (ref.name, t),
            kind="initial",
            op=source.op,
            size=source.size,
            side="past" if t < 0 else "future",
            init=source.init.kind,
        )
        if source.init.expr is not None:
            for r in s.refs(source.init.expr):
                g.add_edge((r.name, None), (ref.name, t), delay=0, init=True)
    g.add_edge((ref.name, t), target, delay=ref.delay)
