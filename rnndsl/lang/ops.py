"""The op table: every function and activation the language knows, with its size rule and torch code.

Takes nothing (it is a table), gives `OPS` (name -> `Op`) and `ACTIVATIONS`, read by the checker for
arity and sizes, by the reference executor through `Op.fn`, and by code generation through `Op.code`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Op", "OPS", "ACTIVATIONS", "ROW_WISE"]


class _Deferred:
    """A module's functions, looked up when first called: the table names torch's functions without
    importing torch, so checking a spec (which reads only arities and size rules) needs none."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Callable[..., Any]:
        found: list[Callable[..., Any]] = []

        def call(*args: Any, **kwargs: Any) -> Any:
            if not found:
                found.append(getattr(importlib.import_module(self._module), name))
            return found[0](*args, **kwargs)

        call.__name__ = call.__qualname__ = f"{self._module}.{name}"
        return call


torch = _Deferred("torch")
F = _Deferred("torch.nn.functional")


@dataclass(frozen=True)
class Op:
    """One function: how many arguments, how its size follows from theirs, how torch computes it.

    `code` is a format string over the argument expressions `{0}`, `{1}` (or `{args}` for variadic
    ops): the code generator fills it in; `fn` computes the same thing on tensors.
    """

    name: str
    arity: int  # -1: one or more
    size: str  # "same": elementwise, all sizes equal; "concat": sizes add up
    code: str
    fn: Callable[..., Any]
    doc: str


def _unary(name: str, code: str, fn: Callable[..., Any], doc: str) -> Op:
    return Op(name, 1, "same", code, fn, doc)


_UNARY = [
    _unary("identity", "{0}", lambda x: x, "x"),
    _unary("tanh", "torch.tanh({0})", torch.tanh, "hyperbolic tangent"),
    _unary("sigmoid", "torch.sigmoid({0})", torch.sigmoid, "logistic function 1 / (1 + e^-x)"),
    _unary("relu", "torch.relu({0})", torch.relu, "max(x, 0)"),
    _unary("gelu", "F.gelu({0})", F.gelu, "Gaussian error linear unit"),
    _unary("silu", "F.silu({0})", F.silu, "x * sigmoid(x)"),
    _unary("elu", "F.elu({0})", F.elu, "exponential linear unit"),
    _unary("softplus", "F.softplus({0})", F.softplus, "log(1 + e^x)"),
    _unary("softsign", "F.softsign({0})", F.softsign, "x / (1 + |x|)"),
    _unary("hardtanh", "F.hardtanh({0})", F.hardtanh, "x clipped to [-1, 1]"),
    _unary("exp", "torch.exp({0})", torch.exp, "e^x"),
    _unary("log", "torch.log({0})", torch.log, "natural logarithm"),
    _unary("sqrt", "torch.sqrt({0})", torch.sqrt, "square root"),
    _unary("abs", "torch.abs({0})", torch.abs, "|x|"),
    _unary("sin", "torch.sin({0})", torch.sin, "sine"),
    _unary("cos", "torch.cos({0})", torch.cos, "cosine"),
    _unary("softmax", "torch.softmax({0}, -1)", lambda x: torch.softmax(x, -1), "softmax over the vector"),
    _unary(
        "log_softmax",
        "torch.log_softmax({0}, -1)",
        lambda x: torch.log_softmax(x, -1),
        "log of softmax over the vector",
    ),
]

OPS: dict[str, Op] = {op.name: op for op in _UNARY}
OPS["min"] = Op("min", 2, "same", "torch.minimum({0}, {1})", torch.minimum, "elementwise minimum")
OPS["max"] = Op("max", 2, "same", "torch.maximum({0}, {1})", torch.maximum, "elementwise maximum")
OPS["concat"] = Op(
    "concat", -1, "concat", "torch.cat(({args},), -1)", lambda *xs: torch.cat(xs, -1), "vectors joined end to end"
)

# Activations of a layer are the unary ops (`layer h: 8 tanh <- x`); no word means identity.
ACTIVATIONS: dict[str, Op] = {op.name: op for op in _UNARY}

# Functions that mix a vector's entries (the others act on each entry alone): applied to one node's vector at a
# time, never to several nodes' vectors side by side.
ROW_WISE = frozenset({"softmax", "log_softmax"})

# Functions that take a token input rather than a vector.
TOKEN_FUNCTIONS = {"one_hot": "one-hot vector of a token input: `one_hot(w)` has size N for `tokens(N)`"}

# Functions that give a token id; only a self-fed token input's value may be one.
FEED_FUNCTIONS = {
    "sample": "a token id drawn from a distribution: `input w: tokens(N) = sample(softmax(y[t-1]))`",
    "argmax": "the id of the largest entry: `input w: tokens(N) = argmax(y[t-1])`",
}
