"""Loops: takes `Declarations`; `static_nodes` gives the nodes whose value is the same at every step, and
`check_loops` reports what no schedule can run: a delayed read of a static value, an algebraic loop (a
value needing itself at the same step), a loop reading both past and future, and a self-fed input
whose feed closes such a loop when it runs free.
"""

from __future__ import annotations

import networkx as nx

from rnndsl.frontend.check.declare import Declarations, Definition
from rnndsl.frontend.inline import Alias
from rnndsl.graphs.folded import components
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter
from rnndsl.lang.ops import reads_step

__all__ = ["node_exprs", "check_loops", "static_nodes"]


def node_exprs(st: Definition) -> list[s.Expr]:
    """What a node's value reads each step (a self-fed input's feed is followed apart)."""
    if isinstance(st, Alias):
        return [st.target]
    return list(s.exprs(st)) if isinstance(st, (s.Layer, s.Assign)) else []


def static_nodes(decls: Declarations) -> frozenset[str]:
    """Nodes whose value is the same at every step: params, static and memory inputs, and what reads only
    them at the same step (not the clock). A worklist: a node becomes static when the last of the nodes it
    reads does (sweeping every node until nothing changes took a sweep per link of a chain)."""
    defs = decls.defs
    static = {
        n
        for n, st in defs.items()
        if isinstance(st, s.Param) or (isinstance(st, s.Input) and st.kind in ("static", "memory"))
    }
    waiting: dict[str, int] = {}  # candidates: how many of the nodes they read are not static yet
    readers: dict[str, list[str]] = {}
    for name, st in defs.items():
        refs = [r for e in node_exprs(st) for r in s.refs(e)]
        if (
            isinstance(st, (s.Input, s.Param))
            or not refs
            or any(r.offset != 0 or r.name not in defs for r in refs)
            or any(reads_step(e) for e in node_exprs(st))  # `s * every(2)` changes with the step
        ):
            continue
        read = {r.name for r in refs}
        waiting[name] = len(read)
        for r in read:
            readers.setdefault(r, []).append(name)
    queue = list(static)
    while queue:
        for reader in readers.get(queue.pop(), []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                static.add(reader)
                queue.append(reader)
    return frozenset(static)


def check_loops(decls: Declarations, static: frozenset[str], report: Reporter) -> None:
    """Every loop has a delay and runs in one direction of time, also once self-fed inputs run free."""
    order = list(decls.defs)
    position = {n: i for i, n in enumerate(order)}
    g, refs = _reads(decls, static, report)
    same_step = nx.DiGraph([(u, v) for u, v, k in g.edges(data="delay") if k == 0])
    for cycle in nx.simple_cycles(same_step):
        _algebraic_loop(decls, order, refs, cycle, report)
        break
    for names in _mixed_loops(g, position):
        report.error(
            f"the loop through {', '.join(f'`{n}`' for n in names)} reads both the past and the future",
            decls.defs[names[0]].span,
            "no order of steps can run it: make every delay in the loop [t-k], or all [t+k]",
        )
    _check_free_running(decls, g, position, report)


def _reads(
    decls: Declarations, static: frozenset[str], report: Reporter
) -> tuple[nx.MultiDiGraph, dict[str, list[s.Ref]]]:
    """The graph of what each node reads (edge attribute `delay`) and each node's references; a delayed
    read of a static value is reported."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(decls.defs)
    refs: dict[str, list[s.Ref]] = {}
    for name, st in decls.defs.items():
        refs[name] = [
            r for e in node_exprs(st) for r in s.refs(e) if r.name in decls.defs and not (r.explicit and r.offset == 0)
        ]  # `h[t-0]`: reported
        for ref in refs[name]:
            g.add_edge(ref.name, name, delay=ref.delay)
            if ref.explicit and ref.name in static:
                what = "a param" if isinstance(decls.defs[ref.name], s.Param) else "static"
                if decls.is_memory(ref.name):
                    what = "a memory"
                report.error(
                    f"`{ref.name}` is {what} (the same at every step); read it without a delay",
                    ref.span,
                    f"write `{ref.name}`",
                )
    return g, refs


def _algebraic_loop(
    decls: Declarations, order: list[str], refs: dict[str, list[s.Ref]], cycle: list[str], report: Reporter
) -> None:
    start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
    cycle = cycle[start:] + cycle[:start]
    path = " -> ".join([*cycle, cycle[0]])
    src, dst = cycle[-1], cycle[0]
    ref = next((r for r in refs[dst] if r.name == src and r.delay == 0), None)
    span = ref.span if ref else decls.defs[dst].span
    report.error(
        f"algebraic loop: {path} needs its own value at the same step",
        span,
        f"read `{src}[t-1]` instead of `{src}` in the definition of `{dst}` (line {span.line})",
    )


def _check_free_running(decls: Declarations, g: nx.MultiDiGraph, position: dict[str, int], report: Reporter) -> None:
    """Running free, a self-fed input joins the loop it reads: that loop may not read the future. Adds the
    feeds' edges to `g`, this pass's own graph."""
    fed = {n: st.feed for n, st in decls.defs.items() if isinstance(st, s.Input) and st.feed and st.kind != "static"}
    if not fed:
        return
    for name, feed in fed.items():
        g.add_edges_from(
            (r.name, name, {"delay": r.delay}) for r in s.refs(feed) if r.name in decls.defs and r.delay > 0
        )  # other reads are reported by `check_feeds`
    for names in _mixed_loops(g, position):
        first = next((n for n in names if n in fed), None)
        if first is not None:
            report.error(
                f"feeding `{first}` back closes a loop through "
                f"{', '.join(f'`{n}`' for n in names)} that reads the future",
                fed[first].span,
                "a network runs free only forward in time: feed it from a loop that reads [t-k]",
            )


def _mixed_loops(g: nx.MultiDiGraph, position: dict[str, int]) -> list[list[str]]:
    """The strongly connected parts of `g` that read both the past and the future, in definition order."""
    mixed = [list(c.nodes) for c in components(g, position) if max(c.delays, default=0) > 0 > min(c.delays, default=0)]
    return sorted(mixed, key=lambda names: position[names[0]])
