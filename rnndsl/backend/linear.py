"""Linear loops: takes a loop stage, gives `h = a * h[t-1] + b` when the loop is that, with `a` and `b` read apart.

A loop of one expression node that is elementwise affine in its own value one step away, with coefficients that
do not read the loop (QRNN's fo-pooling `c = f * c[t-1] + (1 - f) * z`, minGRU's
`h = (1 - z) * h[t-1] + z * n`, an exponential moving average, an SRU or LRU-style diagonal recurrence), needs
no per-step code: `a` and `b` are computed for every step before it, and the recurrence itself is one kernel
call over time (`kernels.linear_scan`), forward and backward. The match is on the syntax tree: sums,
differences, negation and products or quotients by a factor that does not read the node; anything else (the
node inside a function, a product of two terms that read it, a second delay) keeps the generated loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnndsl.graphs.schedule import Stage
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network

__all__ = ["Linear", "match_linear"]

Affine = tuple[s.Expr | None, s.Expr | None]  # (coefficient of the node's past value, the rest); None is 0


@dataclass(frozen=True)
class Linear:
    """`node = a * node[t-1] + b` (`[t+1]` in a backward loop); `b` None when it is 0."""

    node: str
    a: s.Expr
    b: s.Expr | None


def match_linear(network: Network, stage: Stage) -> Linear | None:
    """The linear recurrence a loop stage computes, or None."""
    if not stage.is_loop or len(stage.nodes) != 1:
        return None
    node = network[stage.nodes[0]]
    if node.op != "expr" or node.expr is None or node.feed is not None or node.memory or node.attention:
        return None
    past = s.Ref(node.name, float(-stage.direction))
    if any(r.name == node.name and r != past for r in s.refs(node.expr)):
        return None  # read two ways (h[t-1] and h[t-2]): a ring the kernel does not keep
    found = s.fold(node.expr, lambda e, kids: _affine(e, kids, past))
    if found is None or found[0] is None:
        return None
    return Linear(node.name, found[0], found[1])


def _affine(e: s.Expr, kids: list[Affine | None], past: s.Ref) -> Affine | None:
    """`e` as (a, b) with e = a * past + b, from its children's; None where it is not affine in `past`."""
    if e == past:
        return s.Num(1.0), None
    if all(k is not None and k[0] is None for k in kids) and not (isinstance(e, s.Ref) and e.name == past.name):
        return None, e  # does not read the node
    if any(k is None for k in kids):
        return None
    if isinstance(e, s.Neg):
        a, b = kids[0]  # type: ignore[misc]
        return _neg(a), _neg(b)
    if not isinstance(e, s.BinOp):
        return None  # a function of the node's past value
    (al, bl), (ar, br) = kids  # type: ignore[misc]
    if e.op in "+-":
        return _join(e.op, al, ar), _join(e.op, bl, br)
    if e.op == "*" and al is None:
        return _scale(e.left, ar), _scale(e.left, br)
    if e.op == "*" and ar is None:
        return _scale(e.right, al, left=False), _scale(e.right, bl, left=False)
    if e.op == "/" and ar is None:
        return _divide(al, e.right), _divide(bl, e.right)
    return None


def _neg(x: s.Expr | None) -> s.Expr | None:
    return None if x is None else s.Neg(x)


def _join(op: str, x: s.Expr | None, y: s.Expr | None) -> s.Expr | None:
    if y is None:
        return x
    if x is None:
        return y if op == "+" else s.Neg(y)
    return s.BinOp(op, x, y)


def _scale(factor: s.Expr, x: s.Expr | None, left: bool = True) -> s.Expr | None:
    """factor * x (x * factor), with a coefficient of 1 dropped: `f * c[t-1]` keeps its one rounding."""
    if x is None:
        return None
    if x == s.Num(1.0):
        return factor
    return s.BinOp("*", factor, x) if left else s.BinOp("*", x, factor)


def _divide(x: s.Expr | None, divisor: s.Expr) -> s.Expr | None:
    return None if x is None else s.BinOp("/", x, divisor)
