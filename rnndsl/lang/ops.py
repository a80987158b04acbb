"""The op table: every function and activation the language knows, each one entry owning all of it.

Takes nothing (it is a table), gives `OPS` (name -> `Op`) and `ACTIVATIONS`. An entry holds what every
stage asks of an op (in the manner of JAX's primitives and PyTorch's derivatives.yaml): its arity and
size rule (the checker), its torch code (the generated forward, through `Op.lower`), its callable (the
reference executor and `evaluate`, through `Op.apply`), its derivative (the generated backward; without
one, autograd on that one function), and its properties: `row_wise` (it mixes a vector's entries),
`positive` (every entry > 0, so `sample` may draw from it), `bound` (a number argument makes it a clamp).

Adding an op is one entry here plus its line in docs/language.md; gradcheck, the checker and every
code path pick it up from the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIVATIONS", "FEED_FUNCTIONS", "OPS", "POSITIVE", "ROW_WISE", "TOKEN_FUNCTIONS", "Op"]


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
        self.__dict__[name] = call  # one wrapper per function: later reads skip __getattr__ and the lookup
        return call


torch = _Deferred("torch")
F = _Deferred("torch.nn.functional")


@dataclass(frozen=True)
class Op:
    """One function: how many arguments, how its size follows from theirs, how torch computes it and its
    derivative.

    `code` is a format string over the argument expressions `{0}`, `{1}` (or `{args}` for variadic ops);
    `fn` computes the same thing on tensors. `derivative` is the gradient of a one-argument op written from
    its output `{y}` (or its argument `{x}`, where the output does not determine it) and the incoming
    gradient `{g}`, and `into` the same written into an existing tensor `{out}` (a slice of the generated
    backward's dZ buffer; activations only, from `{y}`); None: the backward asks autograd.
    """

    name: str
    arity: int  # -1: one or more
    size: str  # "same": all sizes equal (size 1 broadcasts); "concat": sizes add up; "reduce": size 1
    code: str
    fn: Callable[..., Any]
    doc: str
    derivative: str | None = None
    into: str | None = None
    row_wise: bool = False
    positive: bool = False
    bound: str | None = None  # min/max: with a number argument, torch.clamp's keyword for it

    def lower(self, args: Sequence[str], numbers: Sequence[bool] = ()) -> str:
        """The torch code of a call on the argument codes `args`; `numbers[i]` marks a plain number, which
        makes min/max a clamp (torch.minimum needs two tensors, and a clamp gives all of the gradient to
        the value where it meets the bound)."""
        clamp = self._clamp(list(args), numbers)
        if clamp is not None:
            x, bound = clamp
            return f"torch.clamp({x}, {self.bound}={bound})"
        if self.arity < 0:
            return self.code.format(args=", ".join(args))
        return self.code.format(*args)

    def apply(self, args: Sequence[Any], numbers: Sequence[bool] = ()) -> Any:
        """The value of a call on tensors: what `lower`'s code computes."""
        clamp = self._clamp(list(args), numbers)
        if clamp is not None:
            x, bound = clamp
            return torch.clamp(x, max=bound) if self.bound == "max" else torch.clamp(x, min=bound)
        return self.fn(*args)

    def _clamp(self, args: list[Any], numbers: Sequence[bool]) -> tuple[Any, Any] | None:
        """(value, bound) when this is a clamp: a bounded op with a plain number among its arguments."""
        if self.bound is None or not any(numbers):
            return None
        return (args[1], args[0]) if numbers[0] else (args[0], args[1])


def _unary(
    name: str, code: str, fn: Callable[..., Any], doc: str, derivative: tuple[str, str] | None = None, **properties: Any
) -> Op:
    grad, into = derivative or (None, None)
    return Op(name, 1, "same", code, fn, doc, grad, into, **properties)


_UNARY = [
    _unary("identity", "{0}", lambda x: x, "x", ("{g}", "{out}.copy_({g})")),
    _unary(
        "tanh",
        "torch.tanh({0})",
        torch.tanh,
        "hyperbolic tangent",
        (
            "torch.ops.aten.tanh_backward({g}, {y})",
            "torch.ops.aten.tanh_backward.grad_input({g}, {y}, grad_input={out})",
        ),
    ),
    _unary(
        "sigmoid",
        "torch.sigmoid({0})",
        torch.sigmoid,
        "logistic function 1 / (1 + e^-x)",
        (
            "torch.ops.aten.sigmoid_backward({g}, {y})",
            "torch.ops.aten.sigmoid_backward.grad_input({g}, {y}, grad_input={out})",
        ),
        positive=True,
    ),
    _unary(
        "relu",
        "torch.relu({0})",
        torch.relu,
        "max(x, 0)",
        (
            "torch.ops.aten.threshold_backward({g}, {y}, 0)",
            "torch.ops.aten.threshold_backward.grad_input({g}, {y}, 0, grad_input={out})",
        ),
    ),
    _unary(
        "logsigmoid",
        "F.logsigmoid({0})",
        F.logsigmoid,
        "log(sigmoid(x)), computed without overflow",
        ("({g} * -torch.expm1({y}))", "torch.mul({g}, torch.expm1({y}).neg_(), out={out})"),
    ),
    _unary("gelu", "F.gelu({0})", F.gelu, "Gaussian error linear unit"),
    _unary("silu", "F.silu({0})", F.silu, "x * sigmoid(x)"),
    _unary("elu", "F.elu({0})", F.elu, "exponential linear unit"),
    _unary("softplus", "F.softplus({0})", F.softplus, "log(1 + e^x)", positive=True),
    _unary("softsign", "F.softsign({0})", F.softsign, "x / (1 + |x|)"),
    _unary("hardtanh", "F.hardtanh({0})", F.hardtanh, "x clipped to [-1, 1]"),
    _unary("exp", "torch.exp({0})", torch.exp, "e^x", ("({g} * {y})", "torch.mul({g}, {y}, out={out})"), positive=True),
    _unary("log", "torch.log({0})", torch.log, "natural logarithm"),
    _unary("sqrt", "torch.sqrt({0})", torch.sqrt, "square root"),
    _unary("abs", "torch.abs({0})", torch.abs, "|x|"),
    _unary("sin", "torch.sin({0})", torch.sin, "sine"),
    _unary("cos", "torch.cos({0})", torch.cos, "cosine"),
    _unary(
        "softmax",
        "torch.softmax({0}, -1)",
        lambda x: torch.softmax(x, -1),
        "softmax over the vector",
        row_wise=True,
        positive=True,
    ),
    _unary(
        "log_softmax",
        "torch.log_softmax({0}, -1)",
        lambda x: torch.log_softmax(x, -1),
        "log of softmax over the vector",
        row_wise=True,
    ),
]

OPS: dict[str, Op] = {op.name: op for op in _UNARY}
OPS["min"] = Op("min", 2, "same", "torch.minimum({0}, {1})", torch.minimum, "elementwise minimum", bound="max")
OPS["max"] = Op("max", 2, "same", "torch.maximum({0}, {1})", torch.maximum, "elementwise maximum", bound="min")
# Reductions over the vector: size 1, which broadcasts against any size (`h / sum(h)`).
OPS["sum"] = Op(
    "sum",
    1,
    "reduce",
    "torch.sum({0}, -1, keepdim=True)",
    lambda x: torch.sum(x, -1, keepdim=True),
    "the sum of the vector's entries (size 1)",
    row_wise=True,
)
OPS["mean"] = Op(
    "mean",
    1,
    "reduce",
    "torch.mean({0}, -1, keepdim=True)",
    lambda x: torch.mean(x, -1, keepdim=True),
    "the mean of the vector's entries (size 1)",
    row_wise=True,
)
OPS["dot"] = Op(
    "dot",
    2,
    "reduce",
    "torch.sum(({0}) * ({1}), -1, keepdim=True)",
    lambda a, b: torch.sum(a * b, -1, keepdim=True),
    "the dot product of two vectors of one size (size 1)",
    row_wise=True,
)
OPS["layer_norm"] = Op(
    "layer_norm",
    1,
    "same",
    "K.layer_norm({0})",
    lambda x: F.layer_norm(x, x.shape[-1:], eps=1e-5),
    "the vector normalised to mean 0 and variance 1 (eps 1e-5, no gain or bias: write them as `g * layer_norm(a) + b`)",
    derivative="K.layer_norm_backward({g}, {x})",  # from the argument: 1/std does not follow from the output
    row_wise=True,
)
OPS["concat"] = Op(
    "concat", -1, "concat", "torch.cat(({args},), -1)", lambda *xs: torch.cat(xs, -1), "vectors joined end to end"
)

# Activations of a layer are the unary ops (`layer h: 8 tanh <- x`); no word means identity.
ACTIVATIONS: dict[str, Op] = {op.name: op for op in _UNARY}

# Functions that mix a vector's entries (the others act on each entry alone): applied to one node's vector at a
# time, never to several nodes' vectors side by side.
ROW_WISE = frozenset(op.name for op in OPS.values() if op.row_wise)

# Functions whose every entry is > 0: `sample` may draw from them.
POSITIVE = frozenset(op.name for op in OPS.values() if op.positive)

# Functions that take a token input rather than a vector.
TOKEN_FUNCTIONS = {"one_hot": "one-hot vector of a token input: `one_hot(w)` has size N for `tokens(N)`"}

# Functions that give a token id; only a self-fed token input's value may be one.
FEED_FUNCTIONS = {
    "sample": "a token id drawn from a distribution: `input w: tokens(N) = sample(softmax(y[t-1]))`",
    "argmax": "the id of the largest entry: `input w: tokens(N) = argmax(y[t-1])`",
}
