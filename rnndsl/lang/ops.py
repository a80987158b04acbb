"""The op table: every function and activation the language knows, each one entry owning all of it.

Takes nothing (it is a table), gives `OPS` (name -> `Op`) and `ACTIVATIONS`. An entry holds what every
stage asks of an op (in the manner of JAX's primitives and PyTorch's derivatives.yaml): its arity and
size rule (the checker), its torch code (the generated forward, through `Op.lower`), its callable (the
reference executor and `evaluate`, through `Op.apply`), its derivative (the generated backward; without
one, autograd on that one function), its ONNX form (the exporter, through `Op.to_onnx`), and its
properties: `row_wise` (it mixes a vector's entries), `positive` (every entry > 0, so `sample` may draw
from it), `bound` (a number argument makes it a clamp), `step` (it reads the step index: `every(k)`, the
clock) and `literal` (its argument is a whole number written in the spec, not a value).

The step index reaches an op that reads it the way a value reaches any op: every stage that evaluates
expressions looks up `CLOCK`, a reference no node can have, as it looks up references to nodes (the
generated code reads it as a sequence `_t`, the reference executor as the step it is at). `constant`
tells an expression that is the same number everywhere (folded once) from one that has no references but
changes with the step.

Adding an op is one entry here plus its line in docs/language.md; gradcheck, the checker and every
code path pick it up from the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rnndsl.lang import syntax as s

__all__ = [
    "ACTIVATIONS",
    "CLOCK",
    "FEED_FUNCTIONS",
    "OPS",
    "POSITIVE",
    "ROW_WISE",
    "STEP",
    "TOKEN_FUNCTIONS",
    "Op",
    "constant",
    "reads_step",
]


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
K = _Deferred("rnndsl.backend.kernels")  # the generated code's helpers (named `K` there too)


@dataclass(frozen=True)
class Op:
    """One function: how many arguments, how its size follows from theirs, how torch computes it and its
    derivative.

    `code` is a format string over the argument expressions `{0}`, `{1}` (or `{args}` for variadic ops)
    and, for an op that reads the step, the step index `{t}`; `fn` computes the same thing on tensors (the
    step index as its keyword `t`). `derivative` is the gradient of a one-argument op written from its
    output `{y}` (or its argument `{x}`, where the output does not determine it) and the incoming gradient
    `{g}`, and `into` the same written into an existing tensor `{out}` (a slice of the generated backward's
    dZ buffer; activations only, from `{y}`); None: the backward asks autograd. An op whose only argument
    is a `literal` has no derivative to write: nothing it reads can change, so no gradient goes through it
    (it is zero). `vjp` is the same for an op of several arguments: the tuple of every argument's
    gradient, from `{g}` and the arguments `{0}`, `{1}`.

    `memory`: the op reads one memory's positions (`attend`): its code takes the memory's keep mask
    `{keep}` and gives the weights beside the value, `(value, weights)`; `fn` gives the value alone.

    `c`: its C form over one element, `{0}` (a local or a literal of type `real`, float or double; libm's
    functions through the macros EXP, TANH, LOG, SQRT, SIN, COS, FABS), and `c_grad` its derivative from `{g}`,
    `{y}` and `{x}` as `derivative` has it: what the native step kernels (`backend.native_step`) write. A
    row-wise op's reads its row's statistics, named by `c_row`: "norm" (layer_norm, in an expression) its
    argument row's `{mean}` and `{rstd}`, and its derivative the means of the gradient's row `{mean_g}` and of
    the gradient times the output `{mean_gy}`; "softmax" (an activation) its argument row's `{max}` and `{sum}`
    of exponentials, and its derivative the row's sum of the gradient times the output `{sum_gy}`. An op
    without them keeps a loop on torch's ops.

    `onnx`: its ONNX form for the exporter: an operator's name for a one-to-one op (`"Tanh"`), or a function
    of the graph builder and the argument values that writes the nodes and gives the value (`to_onnx`).
    """

    name: str
    arity: int  # -1: one or more
    size: str  # "same": all sizes equal (size 1 broadcasts); "concat": sizes add up; "reduce": size 1 of
    # vectors; "one": size 1 whatever the (literal) arguments; "attend": the size of the second argument
    # (the values), over a memory's positions
    code: str
    fn: Callable[..., Any]
    doc: str
    derivative: str | None = None
    into: str | None = None
    row_wise: bool = False
    positive: bool = False
    bound: str | None = None  # min/max: with a number argument, torch.clamp's keyword for it
    step: bool = False  # reads the step index t (looked up as `CLOCK`): never constant, never static
    literal: str | None = None  # what its argument is when it must be a whole number > 0 written in the spec
    vjp: str | None = None
    memory: bool = False
    onnx: str | Callable[..., Any] | None = None
    c: str | None = None
    c_grad: str | None = None
    c_row: str | None = None  # a row-wise op's statistics in C: "norm" (layer_norm's) or "softmax"

    def lower(
        self, args: Sequence[str], numbers: Sequence[bool] = (), step: str | None = None, keep: str = "None"
    ) -> str:
        """The torch code of a call on the argument codes `args` (and `step`, the code of the step index,
        for an op that reads it; `keep`, a memory's keep mask, for one that reads a memory); `numbers[i]`
        marks a plain number, which makes min/max a clamp (torch.minimum needs two tensors, and a clamp
        gives all of the gradient to the value where it meets the bound)."""
        clamp = self._clamp(list(args), numbers)
        if clamp is not None:
            x, bound = clamp
            return f"torch.clamp({x}, {self.bound}={bound})"
        if self.arity < 0:
            return self.code.format(args=", ".join(args), t=step)
        return self.code.format(*args, t=step, keep=keep)

    def apply(self, args: Sequence[Any], numbers: Sequence[bool] = (), step: Any = None) -> Any:
        """The value of a call on tensors (and `step`, the step index, for an op that reads it): what
        `lower`'s code computes."""
        clamp = self._clamp(list(args), numbers)
        if clamp is not None:
            x, bound = clamp
            return torch.clamp(x, max=bound) if self.bound == "max" else torch.clamp(x, min=bound)
        return self.fn(*args, t=step) if self.step else self.fn(*args)

    def to_onnx(self, g: Any, args: Sequence[str], step: str | None = None, keep: str | None = None) -> Any:
        """The ONNX value of a call, written by the graph builder `g` (`backend.onnx_export`: `g.op(TYPE,
        *inputs, **attributes)`, `g.const(number)`, `g.ints([...])`) on the argument values `args` (and `step`,
        the step index, for an op that reads it; `keep`, a memory's keep mask or None, for one that reads a
        memory, which gives `(value, weights)` as its code does). min/max with a number need no clamp here:
        ONNX's Min and Max broadcast a number and give the same values."""
        if self.onnx is None:
            raise NotImplementedError(self.name)
        if isinstance(self.onnx, str):
            return str(g.op(self.onnx, *args))
        if self.step:
            return self.onnx(g, *args, t=step)
        if self.memory:
            return self.onnx(g, *args, keep=keep)
        return self.onnx(g, *args)

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
    _unary(
        "identity", "{0}", lambda x: x, "x", ("{g}", "{out}.copy_({g})"), onnx=lambda g, x: x, c="{0}", c_grad="{g}"
    ),
    _unary(
        "tanh",
        "torch.tanh({0})",
        torch.tanh,
        "hyperbolic tangent",
        (
            "torch.ops.aten.tanh_backward({g}, {y})",
            "torch.ops.aten.tanh_backward.grad_input({g}, {y}, grad_input={out})",
        ),
        onnx="Tanh",
        c="TANH({0})",
        c_grad="{g} * (1 - {y} * {y})",
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
        onnx="Sigmoid",
        c="1 / (1 + EXP(-{0}))",
        c_grad="{g} * {y} * (1 - {y})",
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
        onnx="Relu",
        c="({0} < 0 ? 0 : {0})",  # NaN passes, as in torch
        c_grad="({y} > 0 ? {g} : 0)",
    ),
    _unary(
        "logsigmoid",
        "F.logsigmoid({0})",
        F.logsigmoid,
        "log(sigmoid(x)), computed without overflow",
        ("({g} * -torch.expm1({y}))", "torch.mul({g}, torch.expm1({y}).neg_(), out={out})"),
        onnx=lambda g, x: g.op("Neg", g.op("Softplus", g.op("Neg", x))),
    ),
    _unary(  # x * Phi(x), Phi through erf (ONNX's own Gelu needs opset 20)
        "gelu",
        "F.gelu({0})",
        F.gelu,
        "Gaussian error linear unit",
        onnx=lambda g, x: g.op(
            "Mul",
            g.op("Mul", x, g.const(0.5)),
            g.op("Add", g.const(1.0), g.op("Erf", g.op("Mul", x, g.const(0.5**0.5)))),
        ),
    ),
    _unary("silu", "F.silu({0})", F.silu, "x * sigmoid(x)", onnx=lambda g, x: g.op("Mul", x, g.op("Sigmoid", x))),
    _unary("elu", "F.elu({0})", F.elu, "exponential linear unit", onnx="Elu"),
    _unary("softplus", "F.softplus({0})", F.softplus, "log(1 + e^x)", positive=True, onnx="Softplus"),
    _unary("softsign", "F.softsign({0})", F.softsign, "x / (1 + |x|)", onnx="Softsign"),
    _unary(
        "hardtanh",
        "F.hardtanh({0})",
        F.hardtanh,
        "x clipped to [-1, 1]",
        onnx=lambda g, x: g.op("Clip", x, g.const(-1.0), g.const(1.0)),
    ),
    _unary(
        "exp",
        "torch.exp({0})",
        torch.exp,
        "e^x",
        ("({g} * {y})", "torch.mul({g}, {y}, out={out})"),
        positive=True,
        onnx="Exp",
        c="EXP({0})",
        c_grad="{g} * {y}",
    ),
    _unary("log", "torch.log({0})", torch.log, "natural logarithm", onnx="Log", c="LOG({0})", c_grad="{g} / {x}"),
    _unary("sqrt", "torch.sqrt({0})", torch.sqrt, "square root", onnx="Sqrt", c="SQRT({0})", c_grad="{g} / (2 * {y})"),
    _unary(
        "abs", "torch.abs({0})", torch.abs, "|x|", onnx="Abs", c="FABS({0})", c_grad="{g} * (({x} > 0) - ({x} < 0))"
    ),
    _unary("sin", "torch.sin({0})", torch.sin, "sine", onnx="Sin", c="SIN({0})", c_grad="{g} * COS({x})"),
    _unary("cos", "torch.cos({0})", torch.cos, "cosine", onnx="Cos", c="COS({0})", c_grad="-{g} * SIN({x})"),
    _unary(
        "softmax",
        "torch.softmax({0}, -1)",
        lambda x: torch.softmax(x, -1),
        "softmax over the vector",
        row_wise=True,
        positive=True,
        c="EXP({0} - {max}) / {sum}",
        c_grad="{y} * ({g} - {sum_gy})",
        c_row="softmax",
        onnx=lambda g, x: g.op("Softmax", x, axis=-1),
    ),
    _unary(
        "log_softmax",
        "torch.log_softmax({0}, -1)",
        lambda x: torch.log_softmax(x, -1),
        "log of softmax over the vector",
        row_wise=True,
        onnx=lambda g, x: g.op("LogSoftmax", x, axis=-1),
    ),
]

OPS: dict[str, Op] = {op.name: op for op in _UNARY}
OPS["min"] = Op(
    "min", 2, "same", "torch.minimum({0}, {1})", torch.minimum, "elementwise minimum", bound="max", onnx="Min"
)
OPS["max"] = Op(
    "max", 2, "same", "torch.maximum({0}, {1})", torch.maximum, "elementwise maximum", bound="min", onnx="Max"
)
# Reductions over the vector: size 1, which broadcasts against any size (`h / sum(h)`).
OPS["sum"] = Op(
    "sum",
    1,
    "reduce",
    "torch.sum({0}, -1, keepdim=True)",
    lambda x: torch.sum(x, -1, keepdim=True),
    "the sum of the vector's entries (size 1)",
    row_wise=True,
    onnx=lambda g, x: g.op("ReduceSum", x, g.ints([-1])),
)
OPS["mean"] = Op(
    "mean",
    1,
    "reduce",
    "torch.mean({0}, -1, keepdim=True)",
    lambda x: torch.mean(x, -1, keepdim=True),
    "the mean of the vector's entries (size 1)",
    row_wise=True,
    onnx=lambda g, x: g.op("ReduceMean", x, g.ints([-1])),
)
OPS["dot"] = Op(
    "dot",
    2,
    "reduce",
    "torch.sum(({0}) * ({1}), -1, keepdim=True)",
    lambda a, b: torch.sum(a * b, -1, keepdim=True),
    "the dot product of two vectors of one size (size 1)",
    row_wise=True,
    onnx=lambda g, a, b: g.op("ReduceSum", g.op("Mul", a, b), g.ints([-1])),
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
    c="({0} - {mean}) * {rstd}",
    c_grad="{rstd} * ({g} - {mean_g} - {y} * {mean_gy})",
    c_row="norm",
    onnx=lambda g, x: _onnx_layer_norm(g, x),
)
# Attention: the weighted sum of a memory's positions, the weights a softmax of the scores over them.
OPS["attend"] = Op(
    "attend",
    2,
    "attend",
    "K.attend({0}, {1}, {keep})",
    lambda score, values: K.attend(score, values, None)[0],
    "`attend(score, values)`: the sum over a memory's positions of `values` weighted by a softmax of `score` "
    "(size 1 at each position) over the positions inside the memory's length; the size of `values`",
    vjp="K.attend_grad({g}, {0}, {1}, {keep})",
    memory=True,
    onnx=lambda g, score, values, keep: _onnx_attend(g, score, values, keep),
)
OPS["concat"] = Op(
    "concat",
    -1,
    "concat",
    "torch.cat(({args},), -1)",
    lambda *xs: torch.cat(xs, -1),
    "vectors joined end to end",
    onnx=lambda g, *xs: g.op("Concat", *xs, axis=-1),  # the writer gives the parts one shape but the last axis
)
# The clock: 1 at the steps t = 0, k, 2k, ... and 0 at the others (t counted from 0 in every direction).
# `t` holds the step index in the network's dtype, so the value comes out in it too.
OPS["every"] = Op(
    "every",
    1,
    "one",
    "K.every({t}, {0})",
    lambda k, t: (torch.remainder(t, k) == 0).to(t.dtype),
    "1 at the steps t = 0, k, 2k, ... and 0 at the others (size 1)",
    step=True,
    literal="period",
    c="(t % (long){0} == 0)",
    onnx=lambda g, k, t: g.op("Cast", g.op("Equal", g.op("Mod", t, k, fmod=1), g.const(0.0)), to=g.dtype),
)


def _onnx_layer_norm(g: Any, x: str) -> str:
    """`layer_norm` in ONNX operators that need no size (LayerNormalization would need a gain of the
    vector's size): the same mean and biased variance as torch."""
    centred = g.op("Sub", x, g.op("ReduceMean", x, g.ints([-1])))
    variance = g.op("ReduceMean", g.op("Mul", centred, centred), g.ints([-1]))
    return str(g.op("Div", centred, g.op("Sqrt", g.op("Add", variance, g.const(1e-5)))))


def _onnx_attend(g: Any, score: str, values: str, keep: str | None) -> tuple[str, str]:
    """`attend` in ONNX, as `kernels.attend`: the masked softmax of the scores over the positions (the axis
    before the vector; `keep` shaped to broadcast against `score`, or None), and the weighted sum of the
    values; gives the value and the weights, (..., S)."""
    if keep is not None:
        score = g.op("Where", keep, score, g.const(float("-inf")))
    weights = g.op("Softmax", score, axis=-2)
    value = g.op("ReduceSum", g.op("Mul", weights, values), g.ints([-2]), keepdims=0)
    return value, g.op("Squeeze", weights, g.ints([-1]))


# Activations of a layer are the unary ops (`layer h: 8 tanh <- x`); no word means identity.
ACTIVATIONS: dict[str, Op] = {op.name: op for op in _UNARY}

# Functions that mix a vector's entries (the others act on each entry alone): applied to one node's vector at a
# time, never to several nodes' vectors side by side.
ROW_WISE = frozenset(op.name for op in OPS.values() if op.row_wise)

# Functions whose every entry is > 0: `sample` may draw from them.
POSITIVE = frozenset(op.name for op in OPS.values() if op.positive)

# Functions that read the step index: their value changes from step to step though they read no node.
STEP = frozenset(op.name for op in OPS.values() if op.step)

# What a function that reads the step looks up for it, as other expressions look up the nodes they read:
# the step index, (B, T, 1) over all steps or (B, 1) at one. No node can be called `_t`.
CLOCK = s.Ref("_t")


def reads_step(expr: s.Expr) -> bool:
    """Whether an expression calls a function that reads the step (`every(2) * h` does).

    >>> reads_step(s.BinOp("*", s.Call("every", (s.Num(2.0),)), s.Ref("h")))
    True
    """
    return any(isinstance(e, s.Call) and e.fn in STEP for e in s.walk(expr))


def constant(expr: s.Expr) -> bool:
    """Whether an expression is the same number at every step of every sequence: no references and no
    function of the step (`every(2)` reads no node, but is not constant).

    >>> constant(s.Call("sin", (s.Num(0.5),))), constant(s.Call("every", (s.Num(2.0),)))
    (True, False)
    """
    return not any(isinstance(e, s.Ref) or (isinstance(e, s.Call) and e.fn in STEP) for e in s.walk(expr))


# Functions that take a token input rather than a vector.
TOKEN_FUNCTIONS = {"one_hot": "one-hot vector of a token input: `one_hot(w)` has size N for `tokens(N)`"}

# Functions that give a token id; only a self-fed token input's value may be one.
FEED_FUNCTIONS = {
    "sample": "a token id drawn from a distribution: `input w: tokens(N) = sample(softmax(y[t-1]))`",
    "argmax": "the id of the largest entry: `input w: tokens(N) = argmax(y[t-1])`",
}
