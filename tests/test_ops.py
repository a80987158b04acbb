"""The op table: each entry's torch code, callable and derivative agree with each other and with autograd,
the language reference lists exactly the table, and an op added as one entry (logsigmoid) runs everywhere:
the checker, the generated forward, the generated backward, the reference executor."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import rnndsl
from rnndsl.backend import kernels as K
from rnndsl.lang.ops import ACTIVATIONS, FEED_FUNCTIONS, OPS, TOKEN_FUNCTIONS
from rnndsl.runtime.reference import reference

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = {"torch": torch, "F": F, "K": K}
DOMAIN = {"log": lambda x: x.abs() + 0.5, "sqrt": lambda x: x.abs() + 0.5}  # keep away from where they break


def run(code: str, **values: torch.Tensor) -> torch.Tensor:
    """Evaluate one of the table's own code templates (text of this package, never of a spec)."""
    return eval(code, dict(NAMESPACE), values)


def sample(name: str) -> torch.Tensor:
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return DOMAIN.get(name, lambda v: v)(x)


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if not op.memory))
def test_code_and_callable_agree(name: str) -> None:
    op = OPS[name]
    args: list[object] = [sample(name), sample(name).flip(0)][: 2 if op.arity != 1 else 1]
    if op.literal:  # a whole number written in the spec, not a value
        args = [3.0]
    names = {f"a{i}": a for i, a in enumerate(args)}
    step = K.steps(2, 7, torch.zeros((), dtype=torch.float64)) if op.step else None  # the step index, (B, T, 1)
    code = op.lower(list(names), step="t")
    torch.testing.assert_close(run(code, **names, t=step), op.apply(args, step=step), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.memory))
def test_a_memory_ops_code_callable_and_gradients_agree_with_autograd(name: str) -> None:
    """attend: its code gives (value, weights), the value its callable's; a kept-out position gets no weight;
    its written gradients (`vjp`) are autograd's through its code, masked or not."""
    op = OPS[name]
    assert op.vjp is not None
    gen = torch.Generator().manual_seed(1)
    score = torch.randn(4, 6, 1, dtype=torch.float64, generator=gen)
    values = torch.randn(4, 6, 3, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(run(op.lower(["a0", "a1"]), a0=score, a1=values)[0], op.apply([score, values]))
    keep = K.valid_mask(torch.tensor([6, 2, 1, 4]), 6)
    for mask in (None, keep):
        x, v = score.clone().requires_grad_(), values.clone().requires_grad_()
        context, weights = run(op.lower(["x", "v"], keep="keep"), x=x, v=v, keep=mask)
        if mask is not None:
            assert torch.all(weights[~mask.squeeze(-1)] == 0) and torch.allclose(
                weights.sum(-1), torch.ones(4).double()
            )
        g = torch.randn_like(context)
        expected = torch.autograd.grad(context, (x, v), g)
        got = run(op.vjp.format("x", "v", g="g", keep="keep"), x=x.detach(), v=v.detach(), g=g, keep=mask)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["min", "max"])
def test_a_number_argument_makes_min_and_max_a_clamp(name: str) -> None:
    op, x = OPS[name], sample(name)
    for args, numbers in (([x, 0.25], [False, True]), ([0.25, x], [True, False])):
        code = op.lower(["x" if not n else "0.25" for n in numbers], numbers)
        assert code.startswith("torch.clamp(x, ")
        torch.testing.assert_close(run(code, x=x), op.apply(args, numbers), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(n for n, op in ACTIVATIONS.items() if op.derivative is not None))
def test_each_written_derivative_is_autograds(name: str) -> None:
    op = ACTIVATIONS[name]
    assert op.derivative is not None and op.into is not None
    x = sample(name).requires_grad_()
    y = op.fn(x)
    g = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, g)
    y, x = y.detach(), x.detach()
    torch.testing.assert_close(run(op.derivative.format(g="g", y="y"), g=g, y=y), expected)
    out = torch.empty_like(y)
    run(op.into.format(g="g", y="y", out="out"), g=g, y=y, out=out)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    "name", sorted(n for n, op in OPS.items() if op.derivative is not None and n not in ACTIVATIONS)
)
def test_each_written_derivative_of_a_function_is_autograds(name: str) -> None:
    """Functions (not activations) may write their derivative from the argument `{x}` too (layer_norm:
    1/std does not follow from the output); float64, on a non-contiguous argument (a column slice, as a
    group's matmul gives), and gradcheck through the written derivative."""
    op = OPS[name]
    assert op.derivative is not None and op.into is None
    wide = torch.randn(4, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3 + 1
    x = wide[:, 2:9].requires_grad_()
    y = op.fn(x)
    g = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, g)
    got = run(op.derivative.format(g="g", y="y", x="x"), g=g, y=y.detach(), x=x.detach())
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)

    class Written(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, v: torch.Tensor) -> torch.Tensor:
            out = op.fn(v)
            ctx.save_for_backward(v, out)
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            v, out = ctx.saved_tensors
            return run(op.derivative.format(g="grad", y="out", x="v"), grad=grad, out=out, v=v)

    assert torch.autograd.gradcheck(Written.apply, (x.detach().clone().requires_grad_(),))


def test_the_language_reference_lists_exactly_the_table() -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    table = text[text.index("## Functions") :].split("\n## ")[0]
    listed = re.findall(r"^\| `([a-z_]+)\(", table, flags=re.M)
    assert sorted(listed) == sorted([*OPS, *TOKEN_FUNCTIONS, *FEED_FUNCTIONS])


LOGSIGMOID = """network L {
    input x: 3
    layer h: 6 logsigmoid <- x, h[t-1]
    y = logsigmoid(h * 2) + h
    output y
}"""


def test_an_op_added_as_one_entry_runs_in_every_stage() -> None:
    net = rnndsl.compile(LOGSIGMOID).double()
    code = net.code(grad=True)
    assert "F.logsigmoid(" in code and "torch.expm1(" in code and "K.vjp" not in code  # the table's derivative
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    out = net(x)
    torch.testing.assert_close(out.y, reference(net, x).y)
    grads = torch.autograd.grad(out.y.pow(2).sum(), list(net.parameters()))
    net.generated_backward = False
    expected = torch.autograd.grad(net(x).y.pow(2).sum(), list(net.parameters()))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    with pytest.raises(rnndsl.SpecError, match="takes 1 argument"):
        rnndsl.load(LOGSIGMOID.replace("logsigmoid(h * 2)", "logsigmoid(h, h)"))


NORMED = """network Normed {
    input x: 3
    layer a: 6 <- x, h[t-1]
    k = mean(h[t-1])                                  # size 1, inside the loop
    n = layer_norm(a)
    h = tanh(n * 1.5 + k) + h[t-1] / (1 + dot(h[t-1], h[t-1]))
    m = mean(h) + sum(x)                              # size 1, outside the loop
    y = h - m                                         # size 1 broadcasts against 6
    output y
}"""


def test_reductions_layer_norm_and_size_one_broadcasting_in_a_loop() -> None:
    """layer_norm, sum, mean and dot inside a loop with its generated backward, and size-1 values broadcast:
    the same as the reference executor forward, and as autograd backward."""
    from test_gradcheck import gradcheck

    net = rnndsl.compile(NORMED).double()
    assert "K.loop(" in net.code(grad=True) and "K.layer_norm(" in net.code()
    assert "K.layer_norm_backward(" in net.code(grad=True)  # the table's derivative, not autograd
    x = torch.randn(3, 9, 3, dtype=torch.float64)
    lengths = torch.tensor([9, 5, 1])
    out = net(x, lengths=lengths)
    torch.testing.assert_close(out.y, reference(net, x, lengths=lengths).y)
    a = net.weight("a", "x").detach()
    torch.testing.assert_close(net(x[:, :1]).y[:, 0, :], _one_step(a, net, x[:, 0]))
    grads = torch.autograd.grad(out.y.pow(2).sum(), list(net.parameters()))
    net.generated_backward = False
    expected = torch.autograd.grad(net(x, lengths=lengths).y.pow(2).sum(), list(net.parameters()))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    gradcheck(NORMED, torch.device("cpu"))


def _one_step(w: torch.Tensor, net: rnndsl.CompiledNetwork, x: torch.Tensor) -> torch.Tensor:
    """The first step by hand (h[t-1] = 0): layer_norm is torch's, mean/sum/dot are over the vector."""
    a = x @ w.T + net.bias("a").detach()
    h = torch.tanh(F.layer_norm(a, (6,), eps=1e-5) * 1.5)
    return h - (h.mean(-1, keepdim=True) + x.sum(-1, keepdim=True))


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("dot(h, 2)", "`dot` reduces vectors; a plain number has no entries to reduce"),
        ("dot(h, x)", "size mismatch in `dot(h, x)`"),
        ("layer_norm(h, h)", "`layer_norm` takes 1 argument, not 2"),
        ("sum(h) + x", None),  # size 1 broadcasts: fine
    ],
)
def test_reductions_are_checked(expr: str, message: str | None) -> None:
    spec = f"network R {{ input x: 3\n layer h: 4 tanh <- x, h[t-1]\n y = {expr}\n output y }}"
    if message is None:
        assert rnndsl.load(spec)["y"].size == 3
        return
    with pytest.raises(rnndsl.SpecError, match=re.escape(message)):
        rnndsl.load(spec)
