"""Unroll: takes a checked `ir.Network` and a number of steps, gives the time-unrolled DAG.

Nodes are `(name, t)` for t in [0, steps); a static node (the same at every step) is one node
`(name, None)`. Where a reference reaches before step 0 or past the last step, the DAG has an
initial-value node `(name, t)` with t < 0 or t >= steps and `kind="initial"`: its value is the state
carried in, or the node's `init`. Feedback edges point from step t-k to step t. Always acyclic.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from rnndsl import syntax as s
from rnndsl.ir import Network

__all__ = ["unroll", "MAX_UNROLL_STEPS"]

MAX_UNROLL_STEPS = 100_000


def unroll(network: Any, steps: int) -> nx.DiGraph:
    """The unrolled DAG of a network (an `ir.Network` or a compiled module) over `steps` steps.

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
    return g


def _add_edge(g: nx.DiGraph, net: Network, ref: s.Ref, target: tuple[str, int | None], steps: int) -> None:
    source = net[ref.name]
    if source.static:
        g.add_edge((ref.name, None), target, delay=0)
        return
    assert target[1] is not None  # a node reading a time-varying value is not static
    t = target[1] - ref.delay
    if not 0 <= t < steps and (ref.name, t) not in g:
        g.add_node((ref.name, t), kind="initial", op=source.op, size=source.size,
                   side="past" if t < 0 else "future", init=source.init.kind)
        if source.init.expr is not None:
            for r in s.refs(source.init.expr):
                g.add_edge((r.name, None), (ref.name, t), delay=0, init=True)
    g.add_edge((ref.name, t), target, delay=ref.delay)
