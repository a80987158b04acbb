"""Evaluate: takes a syntax expression and a way to look up references, gives a tensor.

A direct interpreter over the op table, used where speed does not matter: the reference executor
(every node at every step) and initial values computed from static inputs (once per call).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rnndsl.backend import kernels
from rnndsl.lang import syntax as s
from rnndsl.lang.ops import CLOCK, OPS, constant

__all__ = ["evaluate", "fold"]


def evaluate(
    expr: s.Expr, lookup: Callable[[s.Ref], torch.Tensor], like: torch.Tensor, token_sizes: dict[str, int] | None = None
) -> torch.Tensor:
    """The value of `expr`; numbers become tensors of `like`'s dtype and device. An op that reads the step
    asks `lookup(CLOCK)` for the step index."""
    if isinstance(expr, s.Num):
        return like.new_tensor(expr.value)
    if isinstance(expr, s.Ref):
        return lookup(expr)
    if isinstance(expr, s.Neg):
        return -evaluate(expr.operand, lookup, like, token_sizes)
    if isinstance(expr, s.BinOp):
        a = evaluate(expr.left, lookup, like, token_sizes)
        b = evaluate(expr.right, lookup, like, token_sizes)
        return _BINARY[expr.op](a, b)
    if expr.fn == "one_hot":
        arg = expr.args[0]
        assert isinstance(arg, s.Ref) and token_sizes is not None
        return kernels.one_hot(lookup(arg), token_sizes[arg.name], like)
    args = [evaluate(a, lookup, like, token_sizes) for a in expr.args]
    op = OPS[expr.fn]
    if op.size == "concat":
        return kernels.cat(*args)
    step = lookup(CLOCK) if op.step else None
    return op.apply(args, [constant(a) for a in expr.args], step)  # a number bound: a clamp, as generated


def fold(expr: s.Expr) -> float:
    """The value of an expression of numbers only (`sin(0.5)`), computed once, in float64: what the
    generated code and the exported graph write as one number.

    >>> fold(s.BinOp("*", s.Num(2.0), s.Num(0.25)))
    0.5
    """
    like = torch.zeros((), dtype=torch.float64)
    return float(evaluate(expr, lambda r: like, like))


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "+": torch.add,
    "-": torch.sub,
    "*": torch.mul,
    "/": torch.div,
}
