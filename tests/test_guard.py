"""check_finite: NaN and Inf are traced to the node and step where they first appear."""

from __future__ import annotations

import pytest
import torch

import rnndsl
from rnndsl.runtime.guard import NonFiniteError

SPEC = """network N {
    input x: 2
    layer h: 3 tanh <- x, h[t-1]
    y = log(h + 1.5) / h[t-1]
    init h = learned
    layer o: 2 <- y
    output o
}"""


def test_clean_run_gives_the_same_outputs() -> None:
    net = rnndsl.compile(SPEC).double()
    with torch.no_grad():
        net.initial("h").fill_(0.5)
        net.weight("h", "h[t-1]").fill_(0.0)
        net.weight("h", "x").fill_(0.01)
        net.bias("h").fill_(0.5)  # h stays near tanh(0.5): no zero to divide by
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    torch.testing.assert_close(net(x, check_finite=True).o, net(x).o)


def test_forward_names_node_and_step() -> None:
    net = rnndsl.compile(SPEC).double()
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    # all parameters zero: the learned init of h is 0, so y divides by zero at step 0
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    with pytest.raises(NonFiniteError, match=r"Inf first appears in the value of node `y` at step 0") as err:
        net(x, check_finite=True)
    assert (err.value.node, err.value.step, err.value.phase) == ("y", 0, "value")


def test_loop_origin_is_found_before_what_it_spreads_to() -> None:
    spec = "network L { input x: 1\n layer a: 1 <- x, b[t-1]\n b = log(a)\n layer c: 1 <- b\n output c }"
    net = rnndsl.compile(spec).double()
    with torch.no_grad():
        net.weight("a", 0).fill_(1.0)
        net.weight("a", 1).fill_(0.0)
        net.bias("a").fill_(0.0)
    x = torch.tensor([[[1.0], [2.0], [-1.0], [3.0]]], dtype=torch.float64)  # log(-1) at step 2
    with pytest.raises(NonFiniteError) as err:
        net(x, check_finite=True)
    assert (err.value.node, err.value.step) == ("b", 2)


def test_padding_is_ignored() -> None:
    spec = "network P { input x: 1\n layer a: 1 <- x, a[t-1]\n b = log(a)\n output b }"
    net = rnndsl.compile(spec).double()
    with torch.no_grad():
        net.weight("a", 0).fill_(1.0)
        net.weight("a", 1).fill_(0.0)
        net.bias("a").fill_(0.0)
    x = torch.tensor([[[1.0], [2.0], [-1.0]]], dtype=torch.float64)
    net(x, lengths=torch.tensor([2]), check_finite=True)  # step 2 is padding: no error
    with pytest.raises(NonFiniteError):
        net(x, check_finite=True)


def test_gradient_names_node_and_step() -> None:
    net = rnndsl.compile("network G { input x: 2\n layer h: 2 tanh <- x, h[t-1]\n y = sqrt(h * h)\n output y }")
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    out = net(torch.zeros(1, 4, 2), check_finite=True)  # sqrt'(0) is infinite
    with pytest.raises(NonFiniteError, match="gradient of node `h` at step 3") as err:
        out.y.sum().backward()
    assert err.value.phase == "gradient"


def test_non_finite_inputs_are_refused() -> None:
    net = rnndsl.compile(SPEC)
    x = torch.randn(2, 4, 2)
    x[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"input `x`: expected finite values, got Inf at sequence 1, step 2"):
        net(x, check_finite=True)
    with pytest.raises(NonFiniteError) as caught:  # the class the README names catches a bad input too
        net(x, check_finite=True)
    assert (caught.value.node, caught.value.step, caught.value.phase) == ("x", 2, "input")
    net(x)  # without the check, nothing looks
