"""torch.autograd.gradcheck (float64) of the generated executor, on small specs covering every construct.

Each check differentiates every output and state value with respect to every float input and every
parameter (passed in through `torch.func.functional_call`), against finite differences.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.func import functional_call

import rnndsl
from rnndsl.lang.ops import ACTIVATIONS

B, T = 2, 3

SPECS = {
    "sources_and_delays": """network N {
        input x: 2
        layer h: 3 tanh <- x, h[t-1], h[t-2]
        layer y: 2 sigmoid <- h, x[t-1]
        output y
        output h last
    }""",
    "future": """network N {
        input x: 2
        layer f: 2 tanh <- x, f[t-1]
        layer b: 2 tanh <- x, b[t+1], f[t+2]
        y = concat(f, b)
        output y
        output b last
    }""",
    "learned_init": """network N {
        input x: 2
        layer h: 3 tanh <- x, y[t-1]
        layer y: 2 sigmoid <- h
        init y = learned
        output y
    }""",
    "expr_init_with_projection": """network N {
        input x: 2
        input s: 2 static
        layer i: 3 sigmoid <- x, h[t-1], s
        layer g: 3 tanh <- x, h[t-1]
        c = i * g + (1 - i) * c[t-1]
        h = tanh(c) * i
        init c = s           # sizes differ: a learned projection of s
        init h = tanh(s) * 0.5
        output h
        output c last
    }""",
    "static_source_and_static_node": """network N {
        input x: 2
        input s: 3 static
        layer a: 2 tanh <- s
        layer h: 2 tanh <- a, h[t-1]
        y = h * a
        output y
        output a last
    }""",
    "tokens": """network N {
        input w: tokens(4)
        input x: 2
        layer e: 3 tanh <- w, e[t-1], w[t-1]
        o = one_hot(w) * 0.5 + one_hot(w[t+1])
        layer y: 2 <- e, o, x
        output y
    }""",
    "no_sequence_input": """network N {
        input s: 2 static
        layer h: 3 tanh <- h[t-1], h[t-2]
        init h = concat(s, s) * 0.5
        y = sin(h) + h[t-1]
        output y
    }""",
    "binary_ops": """network N {
        input x: 2
        input u: 2
        layer h: 2 tanh <- x, h[t-1]
        y = (h + u) * (h - x) / (2 + sin(u)) - -h * 0.5
        z = min(h, u) + max(x, h[t-1])
        v = concat(y, z, x)
        output v
    }""",
}

# Expression functions with a domain: feed them positive values.
POSITIVE = {"log": "log(sigmoid(h) + 0.5)", "sqrt": "sqrt(sigmoid(h) + 0.5)"}
# Activations that are fine on any input (not log / sqrt, which need positive pre-activations).
LAYER_ACTIVATIONS = [a for a in ACTIVATIONS if a not in POSITIVE]


def call_for(net: rnndsl.CompiledNetwork, device: torch.device, lengths: bool) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    call: dict[str, Any] = {}
    for node in net.network.inputs:
        if node.input_kind == "tokens":
            call[node.name] = torch.randint(0, node.size, (B, T), generator=gen).to(device)
        elif node.input_kind == "static":
            call[node.name] = torch.randn(B, node.size, generator=gen, dtype=torch.float64).to(device)
        else:
            call[node.name] = torch.randn(B, T, node.size, generator=gen, dtype=torch.float64).to(device)
    if all(n.input_kind == "static" for n in net.network.inputs):
        call["steps"] = T
    if lengths:
        call["lengths"] = torch.tensor([T, 2], device=device)
    return call


def gradcheck(spec: str, device: torch.device, lengths: bool = False, fast: bool = False) -> None:
    """Full gradcheck, or `fast` (one random projection: for the many one-op checks)."""
    torch.manual_seed(0)
    net = rnndsl.compile(spec).to(device, torch.float64)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    call = call_for(net, device, lengths)
    floats = [k for k, v in call.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    names = [n for n, _ in net.named_parameters()]

    def fn(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kwargs = call | dict(zip(floats, tensors[: len(floats)], strict=True))
        out = functional_call(net, dict(zip(names, tensors[len(floats) :], strict=True)), (), kwargs)
        state = [v for v in (out.state or {}).values() if v.is_floating_point()]
        return (*out.values(), *state)

    leaves = [call[k].detach().clone().requires_grad_() for k in floats]
    leaves += [p.detach().clone().requires_grad_() for p in net.parameters()]
    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("name", SPECS)
def test_constructs(name: str, lengths: bool, device: torch.device) -> None:
    gradcheck(SPECS[name], device, lengths)


@pytest.mark.parametrize("act", LAYER_ACTIVATIONS)
def test_layer_activation(act: str, device: torch.device) -> None:
    gradcheck(f"network N {{ input x: 2\n layer h: 3 {act} <- x, h[t-1]\n output h }}", device, fast=True)


@pytest.mark.parametrize("fn", sorted(ACTIVATIONS))
def test_expression_function(fn: str, device: torch.device) -> None:
    expr = POSITIVE.get(fn, f"{fn}(h * 1.5)")
    gradcheck(f"network N {{ input x: 2\n layer h: 3 tanh <- x, y[t-1]\n y = {expr}\n output y }}", device, fast=True)


@pytest.mark.parametrize("expr", ["min(h, 0.5)", "max(0.25, h)"])
def test_min_max_with_a_number(expr: str) -> None:
    gradcheck(f"network N {{ input x: 2\n layer h: 3 tanh <- x, h[t-1]\n y = {expr}\n output y }}", torch.device("cpu"))
