"""The generated executor against the reference executor, on every network of every example spec.

Both must give the same outputs, the same state and the same gradients with respect to the inputs and
every parameter (float64, tight tolerance), with and without per-sequence lengths, and when continuing
from a state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _differential import compare, random_inputs, randomize

import rnndsl
from rnndsl.runtime.network import CompiledNetwork
from rnndsl.runtime.reference import reference

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.rnn"))
B, T = 2, 4

# Networks without a sequence input (they need steps=), written here: the examples all have one.
EXTRA = {
    "static_source": (
        """
network Oscillator {
    input  s: 3 static
    layer  h: 4 tanh <- s, h[t-1], h[t-2]
    init   h = s
    y = sin(h) * 0.5 + h[t-1]
    output y
    output h last
}
""",
        [],
    ),
    "no_source": (
        """
network Counter {
    input  s: 3 static
    layer  a: 4 <- s
    layer  h: 4 tanh <- h[t-1], h[t-2]
    init   h = s
    y = sin(h) * 0.5 + h[t-1] + a
    output y
    output h last
}
""",
        [],
    ),
}


def cases() -> list[Any]:
    out = []
    for path in EXAMPLES:
        for net in rnndsl.load_all(path):
            out.append(pytest.param(str(path), net.name, id=f"{path.stem}-{net.name}"))
    for key, (text, marks) in EXTRA.items():
        for net in rnndsl.load_all(text):
            out.append(pytest.param(text, net.name, id=f"{key}-{net.name}", marks=marks))
    return out


def build(spec: str, name: str, device: torch.device) -> CompiledNetwork:
    return randomize(rnndsl.compile(spec, network=name).to(device, torch.float64).eval())


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("spec", "name"), cases())
def test_fast_equals_reference(spec: str, name: str, lengths: bool, device: torch.device) -> None:
    net = build(spec, name, device)
    call = random_inputs(net, device, B, T)
    if lengths:
        call["lengths"] = torch.tensor([T, 1], device=device)
    compare(net, **call)


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("spec", "name"), cases())
def test_fast_equals_reference_from_state(spec: str, name: str, lengths: bool, device: torch.device) -> None:
    """Continuing from a state (a random one, requiring grad): both executors read it the same way."""
    net = build(spec, name, device)
    if net.network.reads_future:
        pytest.skip("a network reading [t+k] takes no state")
    first = net(**random_inputs(net, device, B, T))
    assert first.state is not None
    state = {
        k: (
            torch.randn_like(v).requires_grad_()
            if v.dtype.is_floating_point
            else torch.randint_like(v, 0, net.network[k].size)
        )
        for k, v in first.state.items()
    }
    call = random_inputs(net, device, B, 3)
    if lengths:
        call["lengths"] = torch.tensor([1, 3], device=device)
    compare(net, state=state, **call)


def test_static_output_with_lengths_is_zero_past_the_end() -> None:
    """A static node as a per-step output is zero past each sequence's end, in both executors."""
    net = build(
        "network S { input x: 2\n input s: 3 static\n a = s * 2\n layer y: 3 <- x, y[t-1]\n output a\n output y }",
        "S",
        torch.device("cpu"),
    )
    call = {
        "x": torch.randn(2, 4, 2, dtype=torch.float64),
        "s": torch.randn(2, 3, dtype=torch.float64),
        "lengths": torch.tensor([4, 2]),
    }
    fast, slow = net(**call), reference(net, **call)
    assert fast.a[1, 2:].abs().max() == 0
    torch.testing.assert_close(fast.a, slow.a)


@pytest.mark.parametrize("fn", ["min", "max"])
def test_a_value_that_meets_a_number_bound_gets_the_same_gradient(fn: str) -> None:
    """`min(f[t-1], 0.5)` with f[t-1] exactly 0.5 (sigmoid(0) of the zero init): both executors treat a number
    bound as a clamp, so the gradient at the tie is the same (found by the random-topology fuzzer)."""
    net = randomize(
        rnndsl.compile(f"""network N {{
        input x: 2
        layer f: 2 sigmoid <- x, g[t-1]
        g = sigmoid({fn}(g[t-1], 0.5)) + f * 0
        output g
    }}""").double()
    )
    x = torch.zeros(2, 3, 2, dtype=torch.float64, requires_grad=True)
    compare(net, x=x)
    state = {"g": torch.full((2, 1, 2), 0.5, dtype=torch.float64, requires_grad=True)}
    compare(net, x=x, state=state)


@pytest.mark.parametrize("act", ["softmax", "log_softmax"])
def test_layers_sharing_a_matmul_get_their_own_softmax(act: str) -> None:
    """Two softmax layers reading the same delayed source run as one matmul; each normalises its own vector,
    not the two side by side (found by the random-topology fuzzer)."""
    net = randomize(
        rnndsl.compile(f"""network N {{
        input x: 3
        layer a: 3 tanh <- x, p[t-1], q[t-1]
        layer p: 3 {act} <- a[t-1]
        layer q: 2 {act} <- a[t-1]
        y = concat(p, q)
        output y
    }}""").double()
    )
    for grad in (False, True):
        x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=grad)
        compare(net, x=x)
