"""The syntax tree: small frozen dataclasses, each carrying the span it was parsed from.

Takes nothing (it is data), gives the types `parse` produces and `check` consumes.
Expressions are `Num`, `Ref`, `Call`, `BinOp` and `Neg`; statements are the rest. A size is a number, or in
a generic network (`network Cell(H) { ... }`) an expression of its size parameters (`H`, `2 * H`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, Union

from rnndsl.lang.errors import NOWHERE, Span

T = TypeVar("T")

__all__ = [
    "Num",
    "Ref",
    "Call",
    "BinOp",
    "Neg",
    "Expr",
    "Size",
    "Input",
    "Param",
    "Layer",
    "Assign",
    "Init",
    "Output",
    "Use",
    "Stmt",
    "NetworkDecl",
    "Instance",
    "ModelDecl",
    "Program",
    "LAYER_OPTIONS",
    "calls",
    "children",
    "depth",
    "exprs",
    "fold",
    "map_refs",
    "refs",
    "show",
    "walk",
    "with_children",
]

# A layer's options (`layer h: 8 tanh dropout=0.1 <- x`) and the values each takes (None: a number in
# [0, 1)): the checker checks them, the parser tells an option from a mistake (`layer h: 8 tanh = x`).
LAYER_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "bias": ("true", "false"),
    "dropout": None,
    "init": ("default", "xavier", "orthogonal", "normal", "uniform", "zeros"),
}


@dataclass(frozen=True)
class Num:
    value: float
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Ref:
    """`name` (offset 0), `name[t-k]` (offset -k) or `name[t+k]` (offset +k)."""

    name: str
    offset: float = 0
    span: Span = field(default=NOWHERE, compare=False)
    explicit: bool = field(default=False, compare=False)  # written with [t...]

    @property
    def delay(self) -> int:
        """Steps back in time: 1 for `[t-1]`, -1 for `[t+1]`, 0 for the same step."""
        return -int(self.offset)

    def __str__(self) -> str:
        if not self.explicit:
            return self.name
        sign = "-" if self.offset < 0 or str(self.offset).startswith("-") else "+"
        k = abs(self.offset)
        return f"{self.name}[t{sign}{int(k) if k == int(k) else k}]"


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Expr, ...]
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * /
    left: Expr
    right: Expr
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span = field(default=NOWHERE, compare=False)


Expr = Union[Num, Ref, Call, BinOp, Neg]

# A size as written: a number (`64`) is a float; a size that names a size parameter (`H`, `2 * H + 1`) is
# an expression of `Ref`s, `Num`s and `BinOp`s (+ - *), until `frontend.sizes` binds it to a number.
Size = Union[float, Expr]


@dataclass(frozen=True)
class Input:
    """`input x: 16`, `input s: 4 static` or `input w: tokens(100)`; `feed` is what a self-fed input
    (`input w: tokens(100) = sample(softmax(y[t-1]))`) takes when the caller does not give it."""

    name: str
    kind: str  # "seq" | "static" | "memory" | "tokens"
    size: Size
    span: Span = field(default=NOWHERE, compare=False)
    feed: Expr | None = None


@dataclass(frozen=True)
class Param:
    """`param p: 64 = ones`: a learned vector, the same at every step. `init` is "zeros", "ones", "normal",
    "uniform" or a number."""

    name: str
    size: Size
    init: str | float = "zeros"
    span: Span = field(default=NOWHERE, compare=False)
    init_span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Layer:
    """`layer h: 64 tanh dropout=0.1 <- x, h[t-1]`: one weight per source, one bias."""

    name: str
    size: Size
    activation: str
    sources: tuple[Expr, ...]
    options: tuple[tuple[str, str | float, Span], ...] = ()
    span: Span = field(default=NOWHERE, compare=False)
    activation_span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Assign:
    """`c = f * c[t-1] + i * g`, optionally sized: `c: 64 = ...`."""

    name: str
    expr: Expr
    size: Size | None = None
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Init:
    """`init c = zeros | learned | EXPR`: what `c[t-k]` reads before the first step."""

    name: str
    policy: str  # "zeros" | "learned" | "expr"
    expr: Expr | None = None
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Output:
    """`output y` (every step) or `output y last` (each sequence's last step)."""

    name: str
    last: bool = False
    span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Use:
    """`use enc = Encoder(x = x)`: inline another network; its outputs read as `enc.h`. A generic network's
    sizes are given among the arguments, by name: `use l1 = Cell(H = 128, x = e)`."""

    name: str
    network: str
    args: tuple[tuple[str, Expr, Span], ...]
    span: Span = field(default=NOWHERE, compare=False)
    network_span: Span = field(default=NOWHERE, compare=False)


Stmt = Union[Input, Param, Layer, Assign, Init, Output, Use]


@dataclass(frozen=True)
class NetworkDecl:
    """`network Cell(H) { ... }`. `sizes` are the size parameters a generic network declares, each with its
    span; `given` the values a `use` bound them to (`frontend.sizes.bind`), which leaves `sizes` empty."""

    name: str
    body: tuple[Stmt, ...]
    span: Span = field(default=NOWHERE, compare=False)
    name_span: Span = field(default=NOWHERE, compare=False)
    sizes: tuple[tuple[str, Span], ...] = ()
    given: tuple[tuple[str, int], ...] = ()

    @property
    def generic(self) -> bool:
        """Whether the network has sizes still to be given (`network Cell(H)`)."""
        return bool(self.sizes)


@dataclass(frozen=True)
class Instance:
    """`dec = Speaker(context = enc.h)`: run network `network` as `name`, its input `context` bound to the
    output `h` of the earlier instance `enc`. `bindings` holds (input, `instance.output`, span)."""

    name: str
    network: str
    bindings: tuple[tuple[str, str, Span], ...] = ()
    span: Span = field(default=NOWHERE, compare=False)
    network_span: Span = field(default=NOWHERE, compare=False)
    name_span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class ModelDecl:
    name: str
    instances: tuple[Instance, ...]
    span: Span = field(default=NOWHERE, compare=False)
    name_span: Span = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class Program:
    networks: tuple[NetworkDecl, ...]
    models: tuple[ModelDecl, ...] = ()


# ---- the walker: every pass over expressions goes through these ---------------------------------------


def children(expr: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of `expr`, left to right (none for a number or a reference)."""
    if isinstance(expr, Call):
        return expr.args
    if isinstance(expr, BinOp):
        return (expr.left, expr.right)
    if isinstance(expr, Neg):
        return (expr.operand,)
    return ()


def with_children(expr: Expr, kids: Sequence[Expr]) -> Expr:
    """`expr` with its sub-expressions replaced by `kids` (in the order `children` gives them)."""
    if isinstance(expr, Call):
        return dataclasses.replace(expr, args=tuple(kids))
    if isinstance(expr, BinOp):
        return dataclasses.replace(expr, left=kids[0], right=kids[1])
    if isinstance(expr, Neg):
        return dataclasses.replace(expr, operand=kids[0])
    return expr


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of an expression, parents before their children, left to right; without recursion."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        stack.extend(reversed(children(e)))


def fold(expr: Expr, fn: Callable[[Expr, list[T]], T]) -> T:
    """Bottom-up: `fn(node, [the folds of its children])`, without recursion (depth is bounded by the parser,
    but the walker should not lean on it).

    >>> fold(BinOp("+", Ref("a"), Call("tanh", (Num(1.0),))), lambda e, kids: 1 + sum(kids, 0))
    4
    """
    done: list[T] = []
    stack: list[tuple[Expr, bool]] = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        kids = children(e)
        if ready or not kids:
            values = done[len(done) - len(kids) :] if kids else []
            del done[len(done) - len(kids) :]
            done.append(fn(e, values))
        else:
            stack.append((e, True))
            stack.extend((k, False) for k in reversed(kids))
    return done[0]


def map_refs(expr: Expr, fn: Callable[[Ref], Expr]) -> Expr:
    """Rebuild an expression with every reference replaced by `fn(ref)`."""
    return fold(expr, lambda e, kids: fn(e) if isinstance(e, Ref) else with_children(e, kids))


def exprs(st: Stmt) -> tuple[Expr, ...]:
    """Every expression a statement holds: a layer's sources, an assignment's value, an init's expression,
    a `use`'s arguments, a self-fed input's feed. The one helper passes use to read a statement."""
    if isinstance(st, Layer):
        return st.sources
    if isinstance(st, Assign):
        return (st.expr,)
    if isinstance(st, Init):
        return () if st.expr is None else (st.expr,)
    if isinstance(st, Use):
        return tuple(e for _, e, _ in st.args)
    if isinstance(st, Input):
        return () if st.feed is None else (st.feed,)
    return ()


def refs(expr: Expr) -> list[Ref]:
    """Every reference in an expression, left to right."""
    return [e for e in walk(expr) if isinstance(e, Ref)]


def calls(expr: Expr) -> set[str]:
    """The names of the functions an expression calls."""
    return {e.fn for e in walk(expr) if isinstance(e, Call)}


def depth(expr: Expr) -> int:
    """Nesting depth: 1 for a number or a reference."""
    return fold(expr, lambda e, kids: 1 + max(kids, default=0))


def show(expr: Expr) -> str:
    """Spec-like text of an expression, for messages: `f * c[t-1] + i * g`.

    >>> show(BinOp("*", Ref("f"), Ref("c", -1, explicit=True)))
    'f * c[t-1]'
    """

    def text(e: Expr, kids: list[str]) -> str:
        if isinstance(e, Num):
            return f"{e.value:g}"
        if isinstance(e, Ref):
            return str(e)
        if isinstance(e, Neg):
            return f"-{kids[0]}"
        if isinstance(e, BinOp):
            return f"{kids[0]} {e.op} {kids[1]}"
        assert isinstance(e, Call)
        return f"{e.fn}({', '.join(kids)})"

    return fold(expr, text)
