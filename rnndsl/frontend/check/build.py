"""Build: takes the facts of the passes before it (sizes, static nodes, memories), gives the IR's nodes, then
reads them for what a network must not be or may be by mistake: more parameters than the limit (an error),
nodes no output uses and inits with no effect (warnings). The network is built from these, once.
"""

from __future__ import annotations

from collections.abc import Mapping

from rnndsl.frontend.check.declare import Declarations
from rnndsl.frontend.check.shapes import SCALAR, Sizes
from rnndsl.frontend.inline import Alias
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter
from rnndsl.lang.ir import InitPolicy, Node, count_parameters, read_delays

__all__ = ["MAX_PARAMETERS", "build_nodes", "check_limits", "warn"]

MAX_PARAMETERS = 1 << 30


def build_nodes(sizes: Sizes, static: frozenset[str], memories: Mapping[str, str]) -> tuple[Node, ...]:
    """One `Node` per definition that is not a block input, in definition order."""
    return tuple(
        _node(name, st, sizes, name in static, memories.get(name, ""))
        for name, st in sizes.decls.defs.items()
        if not isinstance(st, Alias)
    )


def _node(name: str, st: s.Input | s.Param | s.Layer | s.Assign, sizes: Sizes, static: bool, memory: str) -> Node:
    size, init = sizes.of[name] or 1, _init_policy(name, sizes)
    if isinstance(st, s.Input):
        static = st.kind in ("static", "memory")
        return Node(
            name, "input", size, st.span, input_kind=st.kind, init=init, static=static, feed=st.feed, memory=memory
        )
    if isinstance(st, s.Assign):
        return Node(name, "expr", size, st.span, expr=st.expr, init=init, static=static, memory=memory)
    if isinstance(st, s.Param):
        return Node(name, "param", size, st.span, static=True, param_init=st.init, memory=memory)
    opts = {k: v for k, v, _ in st.options}
    return Node(
        name,
        "layer",
        size,
        st.span,
        activation=st.activation,
        sources=st.sources,
        source_sizes=tuple(_source_width(src, sizes) for src in st.sources),
        bias=opts.get("bias", "true") == "true",
        dropout=float(opts.get("dropout", 0.0)),
        weight_init=str(opts.get("init", "default")),
        init=init,
        static=static,
        memory=memory,
    )


def _source_width(src: s.Expr, sizes: Sizes) -> int:
    """The input width of a source's weight: the vocabulary for a token source (an embedding)."""
    if isinstance(src, s.Ref) and sizes.decls.is_tokens(src.name):
        return sizes.of[src.name] or 1
    return sizes.expr(src) or 1


def _init_policy(name: str, sizes: Sizes) -> InitPolicy:
    st = sizes.decls.inits.get(name)
    if st is None:
        return InitPolicy()
    size = sizes.expr(st.expr) if st.expr is not None else 0
    if st.expr is not None and size == SCALAR:
        size = sizes.of[name] or 0  # a plain number broadcasts: no projection to learn
    return InitPolicy(st.policy, st.expr, size or 0, st.span)


def check_limits(network: str, nodes: tuple[Node, ...], report: Reporter) -> None:
    """A network's parameters stay within MAX_PARAMETERS."""
    count = count_parameters(nodes)
    if count <= MAX_PARAMETERS:
        return
    big = max((n for n in nodes if n.op == "layer"), key=lambda n: n.size * sum(n.source_sizes))
    report.error(
        f"network `{network}` would have {count:,} parameters, above the limit of "
        f"{MAX_PARAMETERS:,} (the largest is layer `{big.name}`: {big.size * sum(big.source_sizes):,})",
        big.span,
        "make the layers smaller",
    )


def warn(decls: Declarations, nodes: tuple[Node, ...], report: Reporter) -> None:
    """Warn of nodes no output uses (block members aside) and of inits nothing reads."""
    needed = _needed(nodes, [o.name for o in decls.outputs])
    for node in nodes:
        if node.name not in needed and "." not in node.name:
            what = "input" if node.op == "input" else "node"
            report.warn(
                f"{what} `{node.name}` is never used by an output",
                node.span,
                "remove it, or read it from a node that leads to an output",
            )
    delays, fed = read_delays(nodes), {n.name for n in nodes if n.feed is not None}
    for name, st in decls.inits.items():
        if delays[name] == (0, 0) and name not in fed:  # a self-fed input starts from its init
            report.warn(
                f"`init {name}` has no effect: nothing reads `{name}[t-k]` or `{name}[t+k]`",
                st.span,
                f"remove it, or read `{name}[t-1]` somewhere",
            )


def _needed(nodes: tuple[Node, ...], outputs: list[str]) -> set[str]:
    """What the outputs read, directly or not: values, the feeds of self-fed inputs, and the static inputs
    that init expressions read. One search back from every output (an ancestors() call per output is
    quadratic)."""
    reads = {n.name: [r.name for r in n.refs() + _feed_refs(n)] for n in nodes}
    needed = set(outputs)
    stack = list(needed)
    while stack:
        for pred in reads[stack.pop()]:
            if pred not in needed:
                needed.add(pred)
                stack.append(pred)
    for node in nodes:  # an init expression reads static inputs, which read nothing themselves
        if node.name in needed and node.init.expr is not None:
            needed |= {r.name for r in s.refs(node.init.expr)}
    return needed


def _feed_refs(node: Node) -> list[s.Ref]:
    """What a self-fed input's feed reads (the folded graph's feed edges)."""
    return s.refs(node.feed) if node.feed is not None and node.op == "input" else []
