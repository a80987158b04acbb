"""The step's clock `every(k)`: 1 at the steps t = 0, k, 2k, ... and 0 elsewhere, t counted from 0 in every
direction and unaffected by padding; the same in every stage (a batched stage, a generated loop forward and
backward, its generated backward, a fused cell's input, the reference executor) and never folded as a
constant nor taken for a static value. Its argument's errors are golden files (tests/golden/errors/every_*)."""

from __future__ import annotations

import pytest
import torch
from _differential import compare, random_inputs, randomize

import rnndsl
from rnndsl.lang.ops import OPS
from rnndsl.runtime.reference import reference

COUNTS = """network Counts {
    input  x: 1
    m = every(3)
    f = f[t-1] + every(3) * x            # forward: how many of the steps 0, 3, 6, ... up to t
    b = b[t+1] + every(2) * x            # backward: how many of the steps 0, 2, 4, ... from t to the end
    output m
    output f
    output b
}"""


def ticks(period: int, steps: int) -> torch.Tensor:
    return torch.tensor([1.0 if t % period == 0 else 0.0 for t in range(steps)], dtype=torch.float64)


def expected_counts(lengths: list[int], steps: int) -> dict[str, torch.Tensor]:
    """`Counts` on x = 1, by hand: each sequence counted from its own first step and up to its own end."""
    out: dict[str, list[torch.Tensor]] = {"m": [], "f": [], "b": []}
    for n in lengths:
        pad = torch.zeros(steps - n, dtype=torch.float64)
        out["m"].append(torch.cat([ticks(3, n), pad]))
        out["f"].append(torch.cat([ticks(3, n).cumsum(0), pad]))
        out["b"].append(torch.cat([ticks(2, n).flip(0).cumsum(0).flip(0), pad]))
    return {k: torch.stack(v).unsqueeze(2) for k, v in out.items()}


@pytest.mark.parametrize("grad", [False, True], ids=["plain", "generated-backward"])
@pytest.mark.parametrize("lengths", [None, [7, 4, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("fuse", [False, True], ids=["generated-loop", "linear-kernel"])
def test_every_ticks_at_multiples_of_its_period_from_step_zero(
    lengths: list[int] | None, grad: bool, fuse: bool
) -> None:
    """Exactly the hand-counted values, from the generated code (forward and backward loops, and with autograd
    recording, the loops with their generated backward; or, both loops being linear in their past, the
    linear-scan kernel) and from the reference executor."""
    net = rnndsl.compile(COUNTS, fuse_cells=fuse).double()
    kernel = "K.linear_scan(" if fuse else "K.loop("
    assert kernel in net.code(lengths is not None, grad=True) and "K.every(" in net.code()
    x = torch.ones(3, 7, 1, dtype=torch.float64, requires_grad=grad)
    call = {} if lengths is None else {"lengths": torch.tensor(lengths)}
    want = expected_counts(lengths or [7, 7, 7], 7)
    with torch.set_grad_enabled(grad):
        fast, slow = net(x, **call), reference(net, x, **call)
    for k, v in want.items():
        torch.testing.assert_close(fast[k], v, rtol=0, atol=0)
        torch.testing.assert_close(slow[k], v, rtol=0, atol=0)


def test_no_gradient_goes_through_the_clock() -> None:
    """d(every(2) * x)/dx is the clock itself; a function of the clock alone adds nothing."""
    net = rnndsl.compile("network G { input x: 3\n y = every(2) * x + tanh(every(3)) * 2\n output y }").double()
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).y.sum(), x)
    torch.testing.assert_close(grad, ticks(2, 6).view(1, 6, 1).expand(2, 6, 3), rtol=0, atol=0)


EVERYWHERE = """network Everywhere {
    input  x: 3
    input  s: 3 static
    a = s * every(2)                              # a static value times the clock: not static
    layer  n: 4 tanh <- x, every(3), h[t-1]       # the clock as a layer source, hoisted
    h = every(2) * n + (1 - every(2)) * h[t-1] + 0.1 * min(n, every(3)) * dot(every(2), h[t-1])
    layer  u: 4 tanh <- concat(x, every(4)), a, u[t+1]
    layer  i: 4 sigmoid <- x, every(2), c4[t-1]   # an LSTM whose outside source holds the clock: a fused cell
    layer  f: 4 sigmoid <- x, every(2), c4[t-1]
    layer  g: 4 tanh    <- x, every(2), c4[t-1]
    layer  o: 4 sigmoid <- x, every(2), c4[t-1]
    c = f * c[t-1] + i * g
    c4 = o * tanh(c)
    y = h + u + c4 + max(tanh(every(5)), sum(x[t-1]) * 0)
    output y
    output a
    output h last
}"""


@pytest.mark.parametrize("generated_backward", [True, False], ids=["generated-backward", "autograd"])
@pytest.mark.parametrize("fuse_cells", [True, False], ids=["fused", "loops"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
def test_the_clock_in_every_stage_equals_the_reference(
    lengths: bool, fuse_cells: bool, generated_backward: bool
) -> None:
    """Outputs, state and every gradient, against the reference executor: the clock in a batched stage, in a
    forward loop (its generated backward included), in a backward loop, in `min`, `max` and `dot`, as a layer
    source, in `concat`, times a static value, and in a fused LSTM's input."""
    net = randomize(rnndsl.compile(EVERYWHERE, fuse_cells=fuse_cells).double().eval())
    assert not net.network["a"].static
    code = net.code(lengths, grad=True)
    assert code.count("K.loop(") == (2 if fuse_cells else 3)
    assert ("K.fused('lstm'" in code) == fuse_cells
    net.generated_backward = generated_backward
    call = random_inputs(net, "cpu", 3, 7)
    if lengths:
        call["lengths"] = torch.tensor([7, 4, 1])
    compare(net, **call)


TIES = """network Ties {
    input  x: 3
    layer  n: 3 tanh <- x, h[t-1]
    h = n + min(x, every(2)) * h[t-1] + max(every(3), x)
    output h
}"""


def test_min_and_max_against_the_clock_split_ties_as_the_forward_does() -> None:
    """`min(x, every(2))` is torch.minimum of two values (not a clamp at a number): where x is exactly 0 or 1,
    the clock's values, half of the gradient goes to each side, in the generated backward as under autograd."""
    net = randomize(rnndsl.compile(TIES).double().eval())
    assert "K.loop(" in net.code(grad=True)
    x = torch.randint(0, 2, (2, 6, 3)).double().requires_grad_()  # every entry ties with the clock somewhere
    (fast,) = torch.autograd.grad(net(x).h.sum(), x)
    (slow,) = torch.autograd.grad(reference(net, x).h.sum(), x)
    net.generated_backward = False
    (plain,) = torch.autograd.grad(net(x).h.sum(), x)
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(fast, slow)


def test_the_clock_is_never_folded_into_a_number() -> None:
    """`tanh(every(2))` reads no node, yet is not a constant: it is computed at each step, not once."""
    net = rnndsl.compile(
        "network N { input x: 2\n layer h: 2 tanh <- x, h[t-1]\n y = h * tanh(every(2)) + every(1)\n output y }"
    ).double()
    assert "torch.tanh(K.every(" in net.code() and "K.every(" in net.code(grad=True)
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    out = net(x)
    h = out.y - 1
    torch.testing.assert_close(h[:, 1::2], torch.zeros_like(h[:, 1::2]), rtol=0, atol=0)  # tanh(0) at odd steps
    # to the last bit but for C steps' vector tanh (backend.native_step), within an ulp or two of torch's
    torch.testing.assert_close(out.y, reference(net, x).y, rtol=0, atol=1e-15)


def test_chunks_as_long_as_a_period_multiple_keep_the_clock_in_phase() -> None:
    """Each call counts its steps from 0 (docs/language.md): continuing from the state in chunks whose length
    is a multiple of every period gives the whole run; any other chunk length shifts the clock."""
    net = randomize(
        rnndsl.compile(
            "network W { input x: 3\n layer n2: 4 tanh <- x, h2[t-1]\n h2 = every(2) * n2 + (1 - every(2)) * h2[t-1]\n"
            " layer n4: 4 tanh <- x, h2[t-1], h4[t-1]\n h4 = every(4) * n4 + (1 - every(4)) * h4[t-1]\n"
            " y = h2 + h4\n output y }"
        )
        .double()
        .eval()
    )
    x = torch.randn(2, 8, 3, dtype=torch.float64)
    whole = net(x).y
    first = net(x[:, :4])
    torch.testing.assert_close(torch.cat([first.y, net(x[:, 4:], state=first.state).y], 1), whole)
    first = net(x[:, :3])
    assert not torch.allclose(torch.cat([first.y, net(x[:, 3:], state=first.state).y], 1), whole)


def test_a_self_fed_input_may_read_the_clock() -> None:
    """Running free, the feed reads the clock at each step: feeding back what it fed gives the same outputs."""
    net = randomize(
        rnndsl.compile(
            "network F { input x: 2 = tanh(y[t-1]) * every(2)\n layer h: 3 tanh <- x, h[t-1]\n"
            " layer y: 2 <- h\n output y }"
        )
        .double()
        .eval()
    )
    free = net(steps=6, batch=2)
    assert (free.fed["x"][:, 1::2] == 0).all() and (free.fed["x"][:, 2::2] != 0).all()
    # given x, the loop runs C steps (backend.native_step), whose vector tanh is within an ulp or two of torch's
    torch.testing.assert_close(net(x=free.fed["x"]).y, free.y, rtol=0, atol=1e-15)


def test_beam_search_refuses_a_network_with_a_clock_and_sampling_runs() -> None:
    spec = (
        "network L { input w: tokens(5) = sample(softmax(y[t-1]))\n layer h: 4 tanh <- w, every(2), h[t-1]\n"
        " layer y: 5 <- h\n output y }"
    )
    net = rnndsl.compile(spec)
    with pytest.raises(ValueError, match=r"reads the step \(every\(k\)\), which each call counts from 0"):
        net.generate(4, beam=2, batch=1)
    assert net.generate(4, batch=2).tokens.shape == (2, 4)


def test_the_op_table_entry_owns_the_clock() -> None:
    """One entry: size 1, reads the step, its argument a literal period."""
    op = OPS["every"]
    assert (op.arity, op.size, op.step, op.literal) == (1, "one", True, "period")
    assert rnndsl.load("network N { input x: 4\n m = every(2)\n y = m * x\n output y }")["m"].size == 1
