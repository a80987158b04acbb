"""A param read as its one row: where every read of it is inside a loop's step, in an expression that also reads
a value of each sequence, the call's plain variant (one step a call, or no loop run as one autograd node) leaves
the learned vector (H,) as it is for broadcasting to meet each sequence's row, instead of expanding it to
(B, H) at each call (`codegen._row_params`). Every other read keeps the expansion, and the numbers, gradients
included, are the reference executor's either way."""

from __future__ import annotations

import re

import pytest
import torch
from _differential import compare, random_inputs, randomize

import rnndsl

# the layer-norm LSTM's step: gains and biases meet each gate's row
STEP = """network N {
    input x: 3
    param g: 4 = ones
    param b: 4
    layer a: 4 <- x, h[t-1]
    h = tanh(g * layer_norm(a) + b) * 0.5 + 0.5 * h[t-1]
    output h
}"""
# reads that keep the expansion: in a batched stage (q), as a layer's source, in a concat, with no sequence's value
# beside it (r), in a loop run as a linear scan (c)
KEEP = {
    "batched": ("p", "param p: 4\n    q = p * x\n    layer a: 4 <- q, h[t-1]\n    h = tanh(a)"),
    "layer source": ("p", "param p: 4\n    layer a: 4 <- x, p, h[t-1]\n    h = tanh(a)"),
    "concat": ("p", "param p: 2\n    layer a: 2 <- x, h[t-1]\n    h = concat(tanh(a), p * a) * 0.5"),
    "alone": ("p", "param p: 4\n    r = p * 2\n    layer a: 4 <- x, h[t-1]\n    h = tanh(a) * r"),
    # a loop linear in its past: its coefficients over all steps at once (found by the long fuzz run)
    "linear scan": ("p", "param p: 4\n    c = 0.5 * c[t-1] + p\n    layer a: 4 <- x, c\n    h = tanh(a)"),
}


def _expanded(code: str, name: str) -> bool:
    line = re.search(rf"^    {name} = .*$", code, re.M)
    assert line is not None, code
    return line.group().endswith(".expand(B, -1)")


def test_a_param_read_only_in_a_step_beside_each_sequences_value_is_one_row() -> None:
    net = rnndsl.compile(STEP)
    plain, recording = net.code(), net.code(grad=True)
    assert not _expanded(plain, "g") and not _expanded(plain, "b")
    assert _expanded(recording, "g") and _expanded(recording, "b")  # a loop run as one autograd node


@pytest.mark.parametrize("steps", [1, 4])
def test_one_row_gives_the_reference_numbers_and_gradients(steps: int) -> None:
    net = randomize(rnndsl.compile(STEP).double(), seed=3)
    net.generated_backward = False  # the plain variant while autograd records too
    compare(net, **random_inputs(net, "cpu", batch=3, steps=steps))


def test_one_row_in_float32() -> None:
    net = randomize(rnndsl.compile(STEP), seed=3)
    net.generated_backward = False
    compare(net, atol=1e-5, rtol=1e-4, **random_inputs(net, "cpu", batch=3, steps=4, dtype=torch.float32))


@pytest.mark.parametrize("case", KEEP.values(), ids=KEEP.keys())
def test_other_reads_keep_the_expansion(case: tuple[str, str]) -> None:
    name, body = case
    spec = f"network N {{\n    input x: 4\n    {body}\n    output h\n}}"
    net = randomize(rnndsl.compile(spec).double(), seed=3)
    assert _expanded(net.code(), name)
    compare(net, **random_inputs(net, "cpu", batch=3, steps=3))
