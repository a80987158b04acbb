"""Standard cells: which loops are recognised, and the fused-kernel path equals the generated loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import rnndsl
from rnndsl.backend import kernels
from rnndsl.backend.cells import match_cell
from rnndsl.backend.codegen import ALL_KINDS
from rnndsl.graphs.schedule import schedule
from tests._differential import random_inputs, randomize

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

LSTM = """network LSTM {
    input x: 3
    layer i: 4 sigmoid <- x, h[t-1]
    layer f: 4 sigmoid <- x, h[t-1]
    layer g: 4 tanh    <- x, h[t-1]
    layer o: 4 sigmoid <- x, h[t-1]
    c = f * c[t-1] + i * g
    h = o * tanh(c)
    output h
}"""


def kinds(spec: str, network: str | None = None) -> list[str | None]:
    net = rnndsl.load(spec, network)
    return [None if (c := match_cell(net, st)) is None else c.kind for st in schedule(net) if st.is_loop]


@pytest.mark.parametrize(
    ("file", "network", "expected"),
    [
        ("elman.rnn", None, ["rnn_tanh"]),
        ("lstm.rnn", None, ["lstm"]),
        ("gru.rnn", None, ["gru"]),
        ("bilstm.rnn", None, ["lstm", "lstm"]),
        ("lstm2.rnn", "LSTM2", ["lstm", "lstm"]),
        ("gru2.rnn", "GRU2", ["gru", "gru"]),
        ("jordan.rnn", None, [None]),
        ("skip2.rnn", None, [None]),
        ("topdown.rnn", None, [None]),
    ],
)
def test_examples_are_recognised(file: str, network: str | None, expected: list[str | None]) -> None:
    assert kinds(str(EXAMPLES / file), network) == expected


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (("layer i: 4 sigmoid <- x, h[t-1]", "layer i: 4 sigmoid <- x, h[t-1], c[t-1]"), "a peephole"),
        (("output h", "output h\n    output c"), "c is needed at every step"),
        (("layer f: 4 sigmoid <- x", "layer f: 4 sigmoid dropout=0.5 <- x"), "a dropout on a gate"),
        (("layer g: 4 tanh", "layer g: 4 relu"), "another activation"),
        (("c = f * c[t-1] + i * g", "c = f * c[t-1] + i * g * 0.5"), "other maths"),
        (("layer o: 4 sigmoid <- x, h[t-1]", "layer o: 4 sigmoid <- x, h[t-1], h[t-1]"), "h[t-1] read twice"),
        (("layer o: 4 sigmoid <- x, h[t-1]", "layer o: 4 sigmoid <- h[t-1]"), "a gate without the outside source"),
    ],
)
def test_near_misses_stay_on_generated_code(change: tuple[str, str], why: str) -> None:
    assert kinds(LSTM) == ["lstm"]
    assert kinds(LSTM.replace(*change)) == [None], why


TOKENS_GRU = """network TokensGRU {
    input  s: 3 static
    input  w: tokens(7) = sample(softmax(y[t-1]))
    init   w = 0
    layer  r: 4 sigmoid <- w, s, h[t-1]
    layer  z: 4 sigmoid <- w, s, h[t-1]
    layer  nx: 4 <- w, s
    layer  nh: 4 <- h[t-1]
    n = tanh(nx + r * nh)
    h = (1 - z) * n + z * h[t-1]
    layer  y: 7 <- h
    output y
}"""

CASES = [
    ("elman.rnn", None),
    ("lstm.rnn", None),
    ("gru.rnn", None),
    ("bilstm.rnn", None),
    ("lstm2.rnn", "LSTM2"),
    ("gru2.rnn", "GRU2"),
    ("bidirectional.rnn", None),
    (TOKENS_GRU, None),
]


@pytest.mark.parametrize(("file", "network"), CASES, ids=lambda v: str(v).split()[1] if "{" in str(v) else v)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("steps", [6, 1], ids=["6_steps", "1_step"])  # one step runs torch's cell functions
def test_fused_equals_generated_loop(
    file: str, network: str | None, with_lengths: bool, steps: int, device: torch.device
) -> None:
    spec = file if "{" in file else EXAMPLES / file
    fused = randomize(rnndsl.compile(spec, network, fuse_cells=ALL_KINDS)).double().to(device)  # Elman too, on a CPU
    loop = rnndsl.compile(spec, network, fuse_cells=False).double().to(device)
    loop.load_state_dict(fused.state_dict())
    assert "K.fused" in fused.code() and "K.fused" not in loop.code()
    torch.manual_seed(1)
    call = random_inputs(fused, device, batch=3, steps=steps)
    if with_lengths:
        call["lengths"] = torch.tensor([6, 1, 4] if steps == 6 else [1, 1, 1], device=device)
    a, b = fused(**call), loop(**call)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-10, rtol=1e-10)
    if a.state is not None:
        assert b.state is not None
        for k in a.state:
            torch.testing.assert_close(a.state[k], b.state[k], atol=1e-10, rtol=1e-10)
    grads = []
    for net, out in ((fused, a), (loop, b)):
        total = sum(out[k].sum() * (i + 1) for i, k in enumerate(out))
        params = list(net.parameters())
        grads.append(torch.autograd.grad(total, params))
    for ga, gb in zip(*grads, strict=True):
        torch.testing.assert_close(ga, gb, atol=1e-9, rtol=1e-9)


def test_h_may_come_first_in_a_gate() -> None:
    """Where a gate reads h[t-1] among its sources does not matter; the outside sources keep their order."""
    spec = LSTM.replace("<- x, h[t-1]", "<- h[t-1], x", 2)  # i and f read h first, g and o last
    assert kinds(spec) == ["lstm"]
    fused = randomize(rnndsl.compile(spec)).double()
    loop = rnndsl.compile(spec, fuse_cells=False).double()
    loop.load_state_dict(fused.state_dict())
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(fused(x).h, loop(x).h)


def test_fused_lstm_continues_from_state() -> None:
    net = randomize(rnndsl.compile(LSTM)).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    whole = net(x)
    first = net(x[:, :4])
    second = net(x[:, 4:], state=first.state)
    torch.testing.assert_close(torch.cat([first.h, second.h], 1), whole.h)
    torch.testing.assert_close(second.state["c"], whole.state["c"])


@pytest.mark.parametrize("file", ["elman.rnn", "lstm.rnn", "gru.rnn"])
def test_fused_cells_one_step_a_call_equal_the_whole_call(file: str) -> None:
    """Streaming one step a call (torch's cell functions, from the carried state) gives the whole call's numbers."""
    net = randomize(rnndsl.compile(EXAMPLES / file, fuse_cells=ALL_KINDS)).double()
    call = random_inputs(net, "cpu", batch=2, steps=5, grad=False)
    (name, x), whole = next(iter(call.items())), net(**call)
    state, parts = None, []
    for t in range(x.shape[1]):
        out = net(**{name: x[:, t : t + 1]}, state=state)
        state = out.state
        parts.append(out)
    for k in whole:
        torch.testing.assert_close(torch.cat([p[k] for p in parts], 1), whole[k], rtol=1e-10, atol=1e-12)
    assert state is not None and whole.state is not None
    for k in whole.state:
        torch.testing.assert_close(state[k], whole.state[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("file", "kind"), [("lstm.rnn", "lstm"), ("gru.rnn", "gru"), ("elman.rnn", "rnn_tanh")])
def test_one_step_runs_the_cell_function_not_the_sequence_kernel(
    file: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU a fused cell's call of one step runs torch's cell function (`torch.lstm_cell`, ...: its set-up is a
    step's, the sequence kernel's is a sequence's); two steps, or one with lengths, run the sequence kernel. The LSTM
    without autograd keeps the sequence kernel where batch x hidden > 2048 (oneDNN's fused elementwise work)."""
    calls: list[str] = []

    def counted(fn: Any, name: str) -> Any:
        def run(*args: Any) -> Any:
            calls.append(name)
            return fn(*args)

        return run

    for table, name in ((kernels._FUSED, "sequence"), (kernels._CELL, "cell")):
        monkeypatch.setitem(table, kind, counted(table[kind], name))
    net = rnndsl.compile(EXAMPLES / file, fuse_cells=ALL_KINDS)
    size, hidden = net.network.inputs[0].size, net.network["h"].size
    wide = 2048 // hidden + 1  # batch x hidden > 2048
    one = torch.ones(2, dtype=torch.long)
    for batch, steps, lengths, grad, expected in (
        (2, 1, None, True, "cell"),
        (2, 1, None, False, "cell"),
        (wide, 1, None, True, "cell"),
        (wide, 1, None, False, "sequence" if kind == "lstm" else "cell"),
        (2, 2, None, True, "sequence"),
        (2, 1, one, True, "sequence"),
    ):
        calls.clear()
        with torch.set_grad_enabled(grad):
            net(torch.randn(batch, steps, size), lengths=lengths)
        assert calls == [expected], (batch, steps, lengths, grad)


def test_a_fused_cell_whose_h_is_read_further_back_continues_from_state() -> None:
    """Another node reads h[t-3]: the cell's history of h is three steps deep, and the kernel starts from its last
    step. Split into calls of 1, 2 and 4 steps carrying the state, it gives the whole call's
    numbers, as the generated loop does."""
    spec = LSTM.replace("output h", "layer y: 2 <- h[t-3]\n output h\n output y")
    assert kinds(spec) == ["lstm"]
    fused = randomize(rnndsl.compile(spec)).double()
    loop = rnndsl.compile(spec, fuse_cells=False).double()
    loop.load_state_dict(fused.state_dict())
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    whole = loop(x)
    state, parts = None, []
    for lo, hi in ((0, 1), (1, 3), (3, 7)):
        out = fused(x[:, lo:hi], state=state)
        state = out.state
        parts.append(out)
    for name in ("h", "y"):
        torch.testing.assert_close(torch.cat([p[name] for p in parts], 1), whole[name], rtol=1e-10, atol=1e-12)
    assert state is not None and whole.state is not None
    for name in ("h", "c"):
        torch.testing.assert_close(state[name], whole.state[name], rtol=1e-10, atol=1e-12)
