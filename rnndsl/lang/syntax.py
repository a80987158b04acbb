"""The syntax tree: small frozen dataclasses, each carrying the span it was parsed from.

Takes nothing (it is data), gives the types `parse` produces and `check` consumes.
Expressions are `Num`, `Ref`, `Call`, `BinOp` and `Neg`; statements are the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from rnndsl.lang.errors import NOWHERE, Span

__all__ = [
    "Num",
    "Ref",
    "Call",
    "BinOp",
    "Neg",
    "Expr",
    "Input",
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
    "refs",
    "LAYER_OPTIONS",
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


@dataclass(frozen=True)
class Input:
    """`input x: 16`, `input s: 4 static` or `input w: tokens(100)`; `feed` is what a self-fed input
    (`input w: tokens(100) = sample(softmax(y[t-1]))`) takes when the caller does not give it."""

    name: str
    kind: str  # "seq" | "static" | "tokens"
    size: float
    span: Span = field(default=NOWHERE, compare=False)
    feed: Expr | None = None


@dataclass(frozen=True)
class Layer:
    """`layer h: 64 tanh dropout=0.1 <- x, h[t-1]`: one weight per source, one bias."""

    name: str
    size: float
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
    size: float | None = None
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
    """`use enc = Encoder(x = x)`: inline another network; its outputs read as `enc.h`."""

    name: str
    network: str
    args: tuple[tuple[str, Expr, Span], ...]
    span: Span = field(default=NOWHERE, compare=False)
    network_span: Span = field(default=NOWHERE, compare=False)


Stmt = Union[Input, Layer, Assign, Init, Output, Use]


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    body: tuple[Stmt, ...]
    span: Span = field(default=NOWHERE, compare=False)
    name_span: Span = field(default=NOWHERE, compare=False)


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


def refs(expr: Expr) -> list[Ref]:
    """Every reference in an expression, left to right."""
    if isinstance(expr, Ref):
        return [expr]
    if isinstance(expr, Call):
        return [r for a in expr.args for r in refs(a)]
    if isinstance(expr, BinOp):
        return refs(expr.left) + refs(expr.right)
    if isinstance(expr, Neg):
        return refs(expr.operand)
    return []
