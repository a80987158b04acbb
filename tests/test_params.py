"""`param NAME: SIZE [= INIT]`: a learned vector, the same at every step (issue 13, item 1). It is a
module parameter under `params.NAME`, reachable by `net.param`, counted, read in any expression, and runs
the same in the generated forward, the generated backward, the reference executor and autograd."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rnndsl
from rnndsl.runtime.reference import reference

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PARAMS = ["peephole_lstm.rnn", "layernorm_lstm.rnn", "indrnn.rnn"]


def test_a_param_is_a_parameter_under_a_stable_key() -> None:
    net = rnndsl.compile(
        "network P { input x: 3\n param z: 3\n param o: 3 = ones\n param n: 3 = -0.25\n param g: 2000 = normal\n"
        " param u: 2000 = uniform\n param s: 1 = 0.5\n layer h: 3 tanh <- x, h[t-1]\n"
        " y = s * (z + o + n) * h + sum(g) * 0 + sum(u) * 0\n output y }"
    )
    keys = [k for k in net.state_dict() if k.startswith("params.")]
    assert keys == ["params.z", "params.o", "params.n", "params.g", "params.u", "params.s"]
    assert torch.equal(net.param("z"), torch.zeros(3)) and torch.equal(net.param("o"), torch.ones(3))
    assert torch.equal(net.param("n"), torch.full((3,), -0.25)) and net.param("s").shape == (1,)
    assert 0.08 < float(net.param("g").detach().std()) < 0.12 and float(net.param("u").detach().abs().max()) <= 0.1
    assert isinstance(net.param("o"), torch.nn.Parameter) and net.param("o").requires_grad
    assert net.ir.parameter_count() == sum(p.numel() for p in net.parameters())
    with pytest.raises(KeyError, match="no param `h`; the params are: z, o, n, g, u, s"):
        net.param("h")


def test_peephole_lstm_equals_the_equations_by_hand() -> None:
    """Gers & Schmidhuber's peepholes as diagonal vectors: the spec against the same LSTM written in torch."""
    net = rnndsl.compile(EXAMPLES / "peephole_lstm.rnn").double()
    torch.manual_seed(0)
    with torch.no_grad():
        for name in ("pi", "pf", "po"):
            net.param(name).normal_()
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    w = {g: (net.weight(g, "x"), net.weight(g, "h[t-1]"), net.bias(g)) for g in ("ai", "af", "ao", "g")}
    pi, pf, po = net.param("pi"), net.param("pf"), net.param("po")
    h = c = torch.zeros(2, 128, dtype=torch.float64)
    steps = []
    for t in range(6):
        pre = {g: x[:, t] @ wx.T + h @ wh.T + b for g, (wx, wh, b) in w.items()}
        i, f = torch.sigmoid(pre["ai"] + pi * c), torch.sigmoid(pre["af"] + pf * c)
        c = f * c + i * torch.tanh(pre["g"])
        h = torch.sigmoid(pre["ao"] + po * c) * torch.tanh(c)
        steps.append(h)
    torch.testing.assert_close(net(x).h, torch.stack(steps, 1))
    assert "torch.lstm" not in net.code()  # not a standard cell: the peepholes make it another model


@pytest.mark.parametrize("spec", PARAMS)
def test_param_examples_match_the_reference_and_autograd(spec: str) -> None:
    net = rnndsl.compile(EXAMPLES / spec).double()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.params.values():
            p.add_(torch.randn_like(p) * 0.3)  # away from the start, so every term matters
    x = torch.randn(3, 7, 32, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 1])
    out = net(x, lengths=lengths)
    (name,) = out.keys()
    torch.testing.assert_close(out[name], reference(net, x, lengths=lengths)[name])
    assert "K.loop(" in net.code(grad=True)  # one autograd node per loop, its backward generated
    params = list(net.parameters())
    grads = torch.autograd.grad(out[name].pow(2).sum(), params)
    net.generated_backward = False
    expected = torch.autograd.grad(net(x, lengths=lengths)[name].pow(2).sum(), params)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    assert all(float(g.abs().sum()) > 0 for g, p in zip(grads, params, strict=True) if p.ndim == 1 and p.numel() > 1)


def test_params_gradcheck() -> None:
    from test_gradcheck import gradcheck

    gradcheck(
        "network G { input x: 2\n param p: 3 = ones\n param s: 1 = 0.5\n layer a: 3 <- x, h[t-1]\n"
        " h = tanh(a + p * h[t-1]) * s\n y = h * p + s\n output y }",
        torch.device("cpu"),
        lengths=True,
    )


def test_each_use_of_a_block_learns_its_own_param() -> None:
    net = rnndsl.compile(
        "network Cell { input x: 4\n param u: 4 = uniform\n layer a: 4 <- x\n h = relu(a + u * h[t-1])\n"
        " output h }\n"
        "network Two { input x: 4\n use l1 = Cell(x = x)\n use l2 = Cell(x = l1.h)\n output l2.h }",
        network="Two",
    )
    assert [k for k in net.state_dict() if k.startswith("params.")] == ["params.l1__u", "params.l2__u"]
    assert not torch.equal(net.param("l1.u"), net.param("l2.u"))
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(net(x)["l2.h"], reference(net, x)["l2.h"])


def test_a_param_moves_with_the_module_and_is_saved() -> None:
    net = rnndsl.compile(EXAMPLES / "indrnn.rnn")
    copy = rnndsl.compile(EXAMPLES / "indrnn.rnn")
    copy.load_state_dict(net.state_dict())
    x = torch.randn(2, 4, 32)
    torch.testing.assert_close(copy(x).h2, net(x).h2)
    assert net.double().param("u1").dtype == torch.float64 and net(x.double()).h2.dtype == torch.float64
