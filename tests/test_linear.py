"""Loops linear in their own past (`backend.linear`) run as one kernel call over time (`kernels.linear_scan`).

Each spec runs three ways in float64: with the kernel, on the generated loop (`fuse_cells=False`) and in the
reference executor; outputs, state and every gradient agree to 1e-10, with lengths and in both directions.
The kernel's two paths (the C kernel and a multiply-add a step in torch) give the same numbers, and what is not linear
stays on the generated loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _differential import compare, gradients_of_a_loss, random_inputs, randomize

import rnndsl
from rnndsl.backend import kernels as K
from rnndsl.backend import native
from rnndsl.backend.codegen import generate

EXAMPLES = Path(__file__).parent.parent / "examples"

LINEAR = {
    "qrnn": (EXAMPLES / "qrnn.rnn").read_text(),
    "mingru": (EXAMPLES / "mingru.rnn").read_text(),
    # backward in time, with a learned start; the coefficient a number, the rest a static input and a sequence
    "backward": """network N {
        input x: 3
        input s: 3 static
        c = 0.5 * c[t+1] + s * x - x / 4
        init c = learned
        output c
    }""",
    # a learned scalar as the coefficient, a division and a negation; the node read two steps back outside
    "ema": """network N {
        input x: 3
        param p: 1 = uniform
        layer u: 3 tanh <- x
        c = -(c[t-1] * sigmoid(p) - u) / 2 + c[t-1]
        y = c[t-2] + c
        output y
    }""",
    # a clock: the value is taken every other step and held between
    "clocked": """network N {
        input x: 2
        layer u: 4 tanh <- x
        c = every(2) * u + (1 - every(2)) * c[t-1]
        output c
    }""",
    # a running sum (coefficient 1, folded from a constant) read by a layer that feeds the next step's input
    "sum": """network N {
        input x: 3
        c = c[t-1] + x * 1
        layer y: 2 tanh <- c
        output y
    }""",
}

NOT_LINEAR = {
    "a function of the past": "network N { input x: 3\n c = tanh(c[t-1]) + x\n output c }",
    "a product of two past values": "network N { input x: 3\n c = c[t-1] * c[t-1] + x\n output c }",
    "two delays": "network N { input x: 3\n c = 0.5 * c[t-1] + 0.2 * c[t-2] + x\n output c }",
    "a coefficient read in the loop (SRU)": (EXAMPLES / "sru.rnn").read_text(),
    "a layer": "network N { input x: 3\n layer c: 3 <- x, c[t-1]\n output c }",
}


def _net(spec: str, fuse: bool = True) -> rnndsl.CompiledNetwork:
    """The kernel (`fuse`; on a CPU the default kinds run such a loop whole as native steps instead) or the
    generated loop."""
    return randomize(rnndsl.compile(spec, fuse_cells={"linear"} if fuse else False).double(), seed=3)


@pytest.mark.parametrize("name", list(LINEAR))
@pytest.mark.parametrize("lengths", [False, True])
def test_the_kernel_equals_the_reference(name: str, lengths: bool, device: torch.device) -> None:
    net = _net(LINEAR[name]).to(device)
    assert "K.linear_scan(" in net.code()
    call = random_inputs(net, device, batch=3, steps=6)
    if lengths:
        call["lengths"] = torch.tensor([6, 1, 4], device=device)
    compare(net, **call)


@pytest.mark.parametrize("name", list(LINEAR))
def test_the_kernel_equals_the_generated_loop(name: str) -> None:
    """Outputs, state and gradients against `fuse_cells=False` with lengths and a given state, to 1e-10."""
    fast, loop = _net(LINEAR[name]), _net(LINEAR[name], fuse=False)
    assert "K.linear_scan(" not in loop.code()
    call = random_inputs(fast, "cpu", batch=3, steps=7)
    call["lengths"] = torch.tensor([7, 2, 5])
    if not fast.network.reads_future:
        first = fast(**random_inputs(fast, "cpu", batch=3, steps=2, grad=False))
        assert first.state is not None
        call["state"] = {k: v.detach().clone().requires_grad_() for k, v in first.state.items()}
    results = [gradients_of_a_loss(net, call)[1] for net in (fast, loop)]
    for a, b in zip(*results, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(NOT_LINEAR))
def test_what_is_not_linear_stays_on_the_generated_loop(name: str) -> None:
    assert "K.linear_scan(" not in rnndsl.compile(NOT_LINEAR[name]).code()


def test_fuse_cells_chooses_the_linear_kind() -> None:
    spec = LINEAR["qrnn"]
    assert "K.linear_scan(" in rnndsl.compile(spec, fuse_cells={"linear"}).code()
    assert "K.linear_scan(" not in rnndsl.compile(spec, fuse_cells={"lstm", "gru"}).code()
    network = rnndsl.compile(spec).network
    assert "K.linear_scan(" not in generate(network, False, guard=True).source  # the guard watches every step
    assert "K.linear_scan(" not in generate(network, False, scan=True).source  # torch.export's variant


def _operands(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 5, 3, generator=gen, dtype=dtype)
    b, start = torch.randn(2, 5, 3, generator=gen, dtype=dtype), torch.randn(2, 3, generator=gen, dtype=dtype)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool).unsqueeze(2)
    return a, b, start, keep


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("path", ["C", "torch"])
def test_gradcheck_of_linear_scan(reverse: bool, masked: bool, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if path == "C" and native.scan_kernel() is None:
        pytest.skip(f"no C kernel here: {native.why_not()}")
    if path == "torch":
        monkeypatch.setattr(native, "scan_kernel", lambda: None)
    a, b, start, keep = (x.requires_grad_() if x.is_floating_point() else x for x in _operands(torch.float64))
    fn = lambda a, b, start: K.linear_scan(a, b, start, keep if masked else None, reverse, 5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (a, b, start))


@pytest.mark.parametrize("reverse", [False, True])
def test_one_step_of_linear_scan_is_the_scans_step(reverse: bool) -> None:
    """One step runs as torch's multiply and add, not the scan's node: the same numbers and gradients. (A keep
    mask of one step keeps it: there is no later step to pass the start on to.)"""
    a, b, start, _ = (x[:, :1].detach() if x.dim() == 3 else x for x in _operands(torch.float64))
    a, b, start = (x.clone().requires_grad_() for x in (a, b, start))
    one = K.linear_scan(a, b, start, None, reverse, 1)
    scan = K._LinearScan.apply(a, b, start, reverse)
    assert torch.equal(one, scan)
    g = torch.randn_like(one)
    wrt = (a, b, start)
    for x, y in zip(torch.autograd.grad(one, wrt, g), torch.autograd.grad(scan, wrt, g), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_the_c_kernel_and_the_torch_steps_give_the_same_numbers(
    dtype: torch.dtype, reverse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if native.scan_kernel() is None:
        pytest.skip(f"no C kernel here: {native.why_not()}")
    a, b, start, _ = _operands(dtype)
    c = K._scan(a, b, start, reverse)
    monkeypatch.setattr(native, "scan_kernel", lambda: None)
    assert torch.equal(c, K._scan(a, b, start, reverse))


def test_a_fresh_cache_builds_the_kernel_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNDSL_CACHE", str(tmp_path))
    native.scan_kernel.cache_clear()
    try:
        lib = native.scan_kernel()
        if lib is None:
            pytest.skip(f"no C kernel here: {native.why_not()}")
        (built,) = tmp_path.glob("linear_scan-*.so")
        assert not [p for p in tmp_path.iterdir() if p != built]  # no build folder left behind
        native.scan_kernel.cache_clear()
        mtime = built.stat().st_mtime_ns
        assert native.scan_kernel() is not None and built.stat().st_mtime_ns == mtime  # loaded, not rebuilt
    finally:
        native.scan_kernel.cache_clear()


@pytest.mark.parametrize("env", [{"CC": "/nonexistent/cc"}, {"RNNDSL_NATIVE": "0"}])
def test_without_the_c_kernel_the_numbers_are_the_same(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net(LINEAR["qrnn"])
    call = random_inputs(net, "cpu", batch=2, steps=5)
    expected = net(**call).h
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    native.scan_kernel.cache_clear()
    try:
        assert native.scan_kernel() is None
        assert ("C compiler" in native.why_not()) if "CC" in env else native.why_not() == "RNNDSL_NATIVE=0"
        torch.testing.assert_close(net(**call).h, expected, rtol=0, atol=0)
    finally:
        native.scan_kernel.cache_clear()
