"""The checked network: the IR every later stage reads.

Takes nothing (it is data), gives `Network` (nodes in definition order, outputs, the source) and
`Node`; `read_delays` and `count_parameters` of nodes not yet in a network (the checker's warnings and
limits, read before it builds the network). `check` builds it; `graph`, `unroll`, `schedule`, `codegen`
and the executors read it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from rnndsl.lang import syntax as s
from rnndsl.lang.errors import NOWHERE, Diagnostic, Source, Span
from rnndsl.lang.ops import OPS, reads_step

__all__ = ["InitPolicy", "Node", "OutputSpec", "Network", "count_parameters", "read_delays"]


@dataclass(frozen=True)
class InitPolicy:
    """What `name[t-k]` reads before the first step (and `name[t+k]` after the last)."""

    kind: str = "zeros"  # "zeros" | "learned" | "expr"
    expr: s.Expr | None = None
    size: int = 0  # size of expr; a learned projection maps it to the node's size when they differ
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Node:
    """One value per step (or per sequence, when `static`).

    op "input": a given tensor (`input_kind` "memory": a whole sequence, (batch, positions, size), the same
    at every step, and `memory` its own name); "param": a learned vector, the same at every step (`param_init` says how
    it starts); "layer": act(sum_j W_j @ source_j + b); "expr": a parameter-free expression of other
    nodes. A self-fed input (`feed` set) becomes an "expr" node whose `expr` is its feed when it runs free
    (`Network.running_free`).
    """

    name: str
    op: str
    size: int
    span: Span = field(default=NOWHERE, compare=False)
    input_kind: str = ""  # "seq" | "static" | "tokens" for inputs
    activation: str = "identity"
    sources: tuple[s.Expr, ...] = ()
    source_sizes: tuple[int, ...] = ()  # input width of each source's weight (N for a token source)
    expr: s.Expr | None = None
    bias: bool = True
    dropout: float = 0.0
    weight_init: str = "default"
    init: InitPolicy = InitPolicy()
    static: bool = False
    feed: s.Expr | None = None  # a self-fed input's value when the caller does not give it
    param_init: str | float | None = None  # a param's start: "zeros", "ones", "normal", "uniform" or a number
    memory: str = ""  # the memory input whose positions this value runs over (one vector per position), or ""

    @property
    def is_tokens(self) -> bool:
        return self.input_kind == "tokens"

    @property
    def token_start(self) -> int:
        """The id a token input reads before the first step (and a self-fed one starts from): its
        `init NAME = ID`, or -1, "no token" (a zero vector)."""
        expr = self.init.expr
        return int(expr.value) if isinstance(expr, s.Num) else -1

    @property
    def attention(self) -> s.Call | None:
        """The call `attend(score, values)` when this node's value is one (it gives weights too), else None."""
        e = self.expr
        return e if isinstance(e, s.Call) and e.fn in OPS and OPS[e.fn].memory else None

    def parameter_count(self) -> int:
        """The learned numbers this node owns: a layer's weights and bias, a param's vector, a learned
        initial value or the projection of an init expression of another size."""
        total = self.size * sum(self.source_sizes) + (self.size if self.bias else 0) if self.op == "layer" else 0
        total += self.size if self.op == "param" else 0
        if self.init.kind == "learned":
            total += self.size
        elif self.init.kind == "expr" and self.init.size != self.size:
            total += self.size * (self.init.size + 1)
        return total

    def refs(self) -> list[s.Ref]:
        """Every reference this node's value reads (its init expression excluded)."""
        if self.expr is not None:
            return s.refs(self.expr)
        return [r for src in self.sources for r in s.refs(src)]


@dataclass(frozen=True)
class OutputSpec:
    name: str
    last: bool = False
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Network:
    """A checked network: every reference resolves, sizes agree, every loop has a delay."""

    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[OutputSpec, ...]
    source: Source
    warnings: tuple[Diagnostic, ...] = ()

    @functools.cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def __getitem__(self, name: str) -> Node:
        return self.by_name[name]

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "input"]

    @property
    def self_fed(self) -> list[Node]:
        """Inputs that feed themselves from the network's past values when the caller does not give them."""
        return [n for n in self.nodes if n.feed is not None and n.op == "input"]

    def running_free(self, names: frozenset[str]) -> Network:
        """The network in which the self-fed inputs `names` are computed from their feed, not given.

        Each becomes an "expr" node (its `feed` kept, so code generation knows to mix in given steps);
        `delays` do not change, since they already count what feeds read.
        """
        nodes = tuple(dataclasses.replace(n, op="expr", expr=n.feed) if n.name in names else n for n in self.nodes)
        return dataclasses.replace(self, nodes=nodes)

    @functools.cached_property
    def delays(self) -> dict[str, tuple[int, int]]:
        """For each node, the deepest past delay and the farthest future offset anyone reads it at
        (a self-fed input's feed included, so the state holds what it reads in either mode)."""
        return read_delays(self.nodes)

    @property
    def reads_future(self) -> bool:
        return any(f > 0 for _, f in self.delays.values())

    @property
    def reads_step(self) -> bool:
        """Whether some node's value (or a self-fed input's feed) reads the step index: `every(k)`."""
        exprs = [e for n in self.nodes for e in (*n.sources, n.expr, n.feed) if e is not None]
        return any(reads_step(e) for e in exprs)

    def parameter_count(self) -> int:
        return count_parameters(self.nodes)

    def memory_of(self, expr: s.Expr) -> str:
        """The memory whose positions an expression's value runs over ("" for none): one vector per position,
        on the axis before the vector's (`attend` sums them up, so its value runs over none)."""

        def step(x: s.Expr, kids: list[str]) -> str:
            if isinstance(x, s.Ref):
                return self.by_name[x.name].memory if x.name in self.by_name else ""  # "" for the clock
            if isinstance(x, s.Call) and x.fn in OPS and OPS[x.fn].memory:
                return ""
            return next((k for k in kids if k), "")

        return s.fold(expr, step)


def read_delays(nodes: Iterable[Node]) -> dict[str, tuple[int, int]]:
    """`Network.delays` of these nodes (the checker reads it before the network is built)."""
    nodes = list(nodes)
    out = {n.name: (0, 0) for n in nodes}
    for node in nodes:
        for ref in node.refs() + ([] if node.feed is None or node.op != "input" else s.refs(node.feed)):
            past, future = out[ref.name]
            out[ref.name] = (max(past, ref.delay), max(future, -ref.delay))
    return out


def count_parameters(nodes: Iterable[Node]) -> int:
    """`Network.parameter_count()` of these nodes (the checker holds it to its limit before building)."""
    return sum(n.parameter_count() for n in nodes)
