"""Loops with a generated backward (`rnndsl.loop_backward`): one autograd node per loop, exact gradients.

Each spec runs three ways in float64: the generated backward, the same network on autograd
(`generated_backward = False`), and the reference executor; outputs, state and every gradient (inputs,
state, parameters) must agree. gradcheck checks the generated backward against finite differences.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import torch
from _differential import compare, gradients_of_a_loss, random_inputs, randomize
from torch.func import functional_call

import rnndsl
from rnndsl.backend import kernels

SPECS = {
    # a group of several activations reading the same delayed sources; an Elman-like self loop two steps deep
    "group_of_activations": """network N {
        input x: 3
        layer a: 2 tanh <- x, h[t-1]
        layer b: 2 relu <- x, h[t-1]
        layer c: 2 exp <- x, h[t-1]
        layer d: 2 sigmoid <- x, h[t-1]
        layer e: 2 <- x, h[t-1]
        layer f: 2 gelu <- x, h[t-1]
        h = a + b * 0.1 + c * 0.05 - d * e + f + h[t-2] * 0.3
        output h
    }""",
    # expressions read outside sequences, a static input, and a layer reads an expression of the loop
    "expressions": """network N {
        input x: 3
        input s: 3 static
        layer a: 3 softplus <- x, h[t-1]
        layer b: 3 tanh <- concat(h[t-1], x)
        h = tanh(a * s - b / (2 + abs(x)) + max(h[t-1], x) + min(a, 0.5)) + -h[t-2] * 0.1
        output h
        output a last
    }""",
    # the peephole LSTM: a gate reads the new cell state at the same step
    "peephole": """network N {
        input x: 3
        layer i: 2 sigmoid <- x, h[t-1], c[t-1]
        layer f: 2 sigmoid <- x, h[t-1], c[t-1]
        layer g: 2 tanh <- x, h[t-1]
        c = f * c[t-1] + i * g
        layer o: 2 sigmoid <- x, h[t-1], c
        h = o * tanh(c)
        output h
    }""",
    # two layers with top-down feedback; a second loop runs backward in time and reads the first
    "topdown_and_backward": """network N {
        input x: 3
        layer a: 3 tanh <- x, a[t-1], b[t-1]
        layer b: 2 softsign <- a, b[t-1]
        layer r: 2 tanh <- x, b, r[t+1]
        y = concat(b, r)
        output y
    }""",
    # a Jordan net whose output, an expression with a bias-free layer, feeds back; learned start values
    "jordan": """network N {
        input x: 3
        layer h: 3 silu <- x, y[t-1]
        layer p: 2 bias=false <- h
        y = softmax(p)
        init y = learned
        output y
    }""",
}


def _net(name: str, seed: int = 0) -> rnndsl.CompiledNetwork:
    return randomize(rnndsl.compile(SPECS[name], fuse_cells=False).double(), seed)


def _uses_loop_node(out: torch.Tensor) -> bool:
    """Whether autograd's graph behind `out` holds a generated loop node."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "_LoopBackward":
            return True
        todo += [f for f, _ in fn.next_functions]
    return False


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("lengths", [False, True])
def test_generated_backward_equals_the_reference(name: str, lengths: bool, device: torch.device) -> None:
    net = _net(name).to(device)
    call = random_inputs(net, device, batch=3, steps=5)
    if lengths:
        call["lengths"] = torch.tensor([5, 1, 3], device=device)
    out = compare(net, **call)
    assert _uses_loop_node(next(iter(out.values())))


@pytest.mark.parametrize("name", list(SPECS))
def test_generated_backward_equals_autograd(name: str) -> None:
    """The same network on autograd: outputs and gradients equal to rounding, with lengths and a given state."""
    net = _net(name)
    call = random_inputs(net, "cpu", batch=3, steps=5)
    call["lengths"] = torch.tensor([5, 2, 4])  # a backward loop then holds its init past each end
    if not net.network.reads_future:
        first = net(**random_inputs(net, "cpu", batch=3, steps=2, grad=False))
        assert first.state is not None
        call["state"] = {k: v.detach().clone().requires_grad_() for k, v in first.state.items()}
    results = []
    for generated in (True, False):
        net.generated_backward = generated
        out, values = gradients_of_a_loss(net, call)
        assert _uses_loop_node(next(iter(out.values()))) == generated
        results.append(values)
    for a, b in zip(*results, strict=True):
        if a is None or b is None:
            assert (a is None and b is None) or float((a if a is not None else b).abs().max()) == 0
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["expressions", "peephole", "jordan"])
def test_gradcheck_of_the_generated_backward(name: str) -> None:
    """Finite differences in every input and parameter, against the generated backward alone."""
    net = _net(name)
    call = random_inputs(net, "cpu", batch=2, steps=3)
    names = [k for k, v in call.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    params = dict(net.named_parameters())

    def run(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given: dict[str, Any] = dict(call) | dict(zip(names, args[: len(names)], strict=True))
        weights = dict(zip(params, args[len(names) :], strict=True))
        out = functional_call(net, weights, (), given)
        assert _uses_loop_node(next(iter(out.values())))
        return tuple(out.values())

    assert torch.autograd.gradcheck(run, tuple(call[k] for k in names) + tuple(params.values()))


def test_dropout_in_a_loop_uses_the_forward_masks() -> None:
    net = randomize(
        rnndsl.compile(
            """network N {
        input x: 3
        layer h: 4 tanh dropout=0.5 <- x, h[t-1]
        layer g: 4 relu dropout=0.3 <- x, h[t-1]
        y = h + g
        output y
    }""",
            fuse_cells=False,
        ).double()
    ).train()
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for generated in (True, False):
        net.generated_backward = generated
        torch.manual_seed(7)
        out = net(x).y
        grads.append(torch.autograd.grad((out * out).sum(), [x, *net.parameters()]))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_frozen_weights_get_no_gradient_and_inference_runs_the_plain_loop() -> None:
    net = _net("peephole")
    net.weight("i", "h[t-1]").requires_grad_(False)
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    net(x).h.sum().backward()
    assert net.weight("i", "h[t-1]").grad is None
    assert net.weight("o", "c").grad is not None
    with torch.no_grad():
        out = net(x).h
    assert out.grad_fn is None
    assert "K.loop(" in net.code(grad=True) and "K.loop(" not in net.code()


def test_a_loop_with_a_self_fed_input_stays_on_autograd() -> None:
    """Free-running loops are not covered (their steps sample): the recording variant keeps autograd there."""
    net = rnndsl.compile("examples/generator.rnn")
    assert "K.loop(" not in net.code(free=True, grad=True)


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
def test_a_loop_that_no_backward_can_follow_runs_without_an_autograd_node(native: bool) -> None:
    """No gradient recorded, or none an input needs (a frozen module): the loop's forward alone, the same numbers
    as through its autograd node; where a gradient is needed, the node."""
    net = rnndsl.compile(SPECS["peephole"], fuse_cells=True if native else {"lstm", "gru", "linear"}).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    through_node = net(x).h.detach()
    with mock.patch.object(kernels._Loop, "apply", wraps=kernels._Loop.apply) as node:
        with torch.no_grad():
            free = net(x).h
        net.requires_grad_(False)
        frozen = net(x).h
        assert node.call_count == 0
        net.requires_grad_(True)
        net(x).h.sum().backward()
        assert node.call_count == 1
    assert free.grad_fn is None and frozen.grad_fn is None
    assert torch.allclose(free, through_node, atol=1e-12) and torch.allclose(frozen, through_node, atol=1e-12)
