"""Differential tests against torch.nn: Elman vs nn.RNN, LSTM vs nn.LSTM, GRU vs nn.GRU.

Each cell is written as equations in the DSL; torch's weights are copied in (torch packs the gates
of one direction in `weight_ih_l{k}` / `weight_hh_l{k}` with two biases `b_ih`, `b_hh`; our layers have
one weight per source and one bias). Outputs, the final state and the gradients with respect to the
input and to every weight (mapped back to torch's packing) must agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import rnndsl
from rnndsl.runtime.network import CompiledNetwork

I, H, B, T = 3, 4, 3, 5
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "gru_hx": nn.GRU}


# ---- the cells as DSL text -------------------------------------------------------------------------


def _cell(kind: str, p: str, x: str, d: str) -> list[str]:
    """Statements of one cell with node prefix `p`, reading `x`, recurring at `d` ("t-1" or "t+1")."""
    h = f"{p}h[{d}]"
    if kind == "rnn":
        return [f"layer {p}h: {H} tanh <- {x}, {h}"]
    if kind == "lstm":
        gates = [
            f"layer {p}{g}: {H} {a} <- {x}, {h}"
            for g, a in [("i", "sigmoid"), ("f", "sigmoid"), ("g", "tanh"), ("o", "sigmoid")]
        ]
        return [*gates, f"{p}c = {p}f * {p}c[{d}] + {p}i * {p}g", f"{p}h = {p}o * tanh({p}c)"]
    srcs = f"{h}, {x}" if kind == "gru_hx" else f"{x}, {h}"
    return [
        f"layer {p}r: {H} sigmoid <- {srcs}",
        f"layer {p}z: {H} sigmoid <- {srcs}",
        f"layer {p}nx: {H} <- {x}",
        f"layer {p}nh: {H} <- {h}",
        f"{p}n = tanh({p}nx + {p}r * {p}nh)",
        f"{p}h = (1 - {p}z) * {p}n + {p}z * {h}",
    ]


# torch's parameter suffix -> our node prefix, per layout
PREFIXES = {"one": {"_l0": "l0_"}, "two": {"_l0": "l0_", "_l1": "l1_"}, "bi": {"_l0": "l0_", "_l0_reverse": "l0r_"}}


def spec(kind: str, layout: str, static_init: bool = False) -> str:
    """A network `N` for one layout: `one` layer, `two` stacked, `bi` (forward and backward)."""
    lines = [f"input x: {I}"]
    if layout == "one":
        lines += [*_cell(kind, "l0_", "x", "t-1"), "output l0_h"]
    elif layout == "two":
        lines += [*_cell(kind, "l0_", "x", "t-1"), *_cell(kind, "l1_", "l0_h", "t-1"), "output l1_h"]
    else:
        lines += [
            *_cell(kind, "l0_", "x", "t-1"),
            *_cell(kind, "l0r_", "x", "t+1"),
            "y = concat(l0_h, l0r_h)",
            "output y",
            "output l0_h",
            "output l0r_h",
        ]
        if kind == "lstm":
            lines += ["output l0_c", "output l0r_c"]
        if static_init:
            for p in ("l0_", "l0r_"):
                for v in "hc" if kind == "lstm" else "h":
                    lines += [f"input {p}{v}0: {H} static", f"init {p}{v} = {p}{v}0"]
    return "network N {\n  " + "\n  ".join(lines) + "\n}"


# ---- mapping torch's packed gates to our layers ----------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One gate block of torch's packing: which layer weights hold its rows, which biases."""

    ih: tuple[str, int]
    hh: tuple[str, int]
    b_ih: str  # the layer whose bias holds b_ih of this gate (summed with b_hh when b_hh is the same)
    b_hh: str


def gates(kind: str, p: str) -> list[Gate]:
    if kind == "rnn":
        return [Gate((f"{p}h", 0), (f"{p}h", 1), f"{p}h", f"{p}h")]
    if kind == "lstm":
        return [Gate((f"{p}{g}", 0), (f"{p}{g}", 1), f"{p}{g}", f"{p}{g}") for g in "ifgo"]
    ih, hh = (1, 0) if kind == "gru_hx" else (0, 1)
    return [
        *(Gate((f"{p}{g}", ih), (f"{p}{g}", hh), f"{p}{g}", f"{p}{g}") for g in "rz"),
        Gate((f"{p}nx", 0), (f"{p}nh", 0), f"{p}nx", f"{p}nh"),
    ]


def copy_weights(net: CompiledNetwork, mod: nn.Module, kind: str, layout: str) -> None:
    with torch.no_grad():
        for suffix, p in PREFIXES[layout].items():
            w_ih, w_hh = getattr(mod, f"weight_ih{suffix}"), getattr(mod, f"weight_hh{suffix}")
            b_ih, b_hh = getattr(mod, f"bias_ih{suffix}"), getattr(mod, f"bias_hh{suffix}")
            for k, g in enumerate(gates(kind, p)):
                rows = slice(k * H, (k + 1) * H)
                net.weight(*g.ih).copy_(w_ih[rows])
                net.weight(*g.hh).copy_(w_hh[rows])
                if g.b_ih == g.b_hh:
                    net.bias(g.b_ih).copy_(b_ih[rows] + b_hh[rows])  # type: ignore[union-attr]
                else:
                    net.bias(g.b_ih).copy_(b_ih[rows])  # type: ignore[union-attr]
                    net.bias(g.b_hh).copy_(b_hh[rows])  # type: ignore[union-attr]


def packed_grads(net: CompiledNetwork, kind: str, layout: str) -> dict[str, torch.Tensor]:
    """Our gradients, packed the way torch packs its parameters (a shared bias feeds both b_ih and b_hh)."""
    out = {}
    for suffix, p in PREFIXES[layout].items():
        gs = gates(kind, p)
        out[f"weight_ih{suffix}"] = torch.cat([net.weight(*g.ih).grad for g in gs])  # type: ignore[misc]
        out[f"weight_hh{suffix}"] = torch.cat([net.weight(*g.hh).grad for g in gs])  # type: ignore[misc]
        out[f"bias_ih{suffix}"] = torch.cat([net.bias(g.b_ih).grad for g in gs])  # type: ignore[misc,union-attr]
        out[f"bias_hh{suffix}"] = torch.cat([net.bias(g.b_hh).grad for g in gs])  # type: ignore[misc,union-attr]
    return out


# ---- the comparison ----------------------------------------------------------------------------------


def make(
    kind: str, layout: str, dtype: torch.dtype, device: torch.device, static_init: bool = False, fuse: bool = True
) -> tuple[CompiledNetwork, nn.Module]:
    torch.manual_seed(0)
    mod = TORCH[kind](I, H, num_layers=2 if layout == "two" else 1, bidirectional=layout == "bi", batch_first=True).to(
        device, dtype
    )
    net = rnndsl.compile(spec(kind, layout, static_init), fuse_cells=fuse).to(device, dtype)
    copy_weights(net, mod, kind, layout)
    return net, mod


def run_torch(mod: nn.Module, x: torch.Tensor, hx: object) -> tuple[torch.Tensor, object]:
    # cuDNN may run float32 RNNs in TF32; the comparison wants full float32.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        return mod(x, hx)  # type: ignore[no-any-return]


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    tol = TOL[dtype]
    torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


def initial(kind: str, layers: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Random h0 (and c0) in torch's layout (layers, batch, hidden), requiring grad."""
    n = 2 if kind == "lstm" else 1
    return tuple(torch.randn(layers, B, H, dtype=dtype, device=device, requires_grad=True) for _ in range(n))


def hx_of(kind: str, init: tuple[torch.Tensor, ...] | None) -> object:
    if init is None:
        return None
    return init if kind == "lstm" else init[0]


@pytest.fixture(
    params=[(True, torch.float32), (True, torch.float64), (False, torch.float64)],
    ids=["fused-f32", "fused-f64", "loop-f64"],
)
def mode(request: pytest.FixtureRequest) -> tuple[bool, torch.dtype]:
    """Standard cells run on torch's fused kernels by default; `fuse_cells=False` keeps the generated loop."""
    return request.param  # type: ignore[no-any-return]


# "gru" writes r and z as `<- x, h[t-1]` and nh as `<- h[t-1]`: the loop's source sits at different
# positions in layers whose recurrent matmuls codegen fuses. "gru_hx" writes `<- h[t-1], x`.
KINDS = ["rnn", "lstm", "gru", "gru_hx"]


@pytest.mark.parametrize("with_state", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("layout", ["one", "two"])
@pytest.mark.parametrize("kind", KINDS)
def test_unidirectional(
    kind: str, layout: str, with_state: bool, mode: tuple[bool, torch.dtype], device: torch.device
) -> None:
    fuse, dtype = mode
    net, mod = make(kind, layout, dtype, device, fuse=fuse)
    layers = 2 if layout == "two" else 1
    x = torch.randn(B, T, I, dtype=dtype, device=device, requires_grad=True)
    init = initial(kind, layers, dtype, device) if with_state else None
    expected, final = run_torch(mod, x, hx_of(kind, init))
    state = None
    if init is not None:
        state = {f"l{k}_{v}": t[k].unsqueeze(1) for k in range(layers) for v, t in zip("hc", init, strict=False)}
    out = net(x, state=state)
    got = out[f"l{layers - 1}_h"]
    close(got, expected, dtype, "output")

    # the final state: h_n (and c_n), one row per layer
    finals = final if kind == "lstm" else (final,)
    for v, f in zip("hc", finals, strict=False):  # type: ignore[arg-type]
        assert out.state is not None
        close(torch.stack([out.state[f"l{k}_{v}"][:, -1] for k in range(layers)]), f, dtype, f"{v}_n")

    # gradients of one scalar that reads every output and the final state
    weights = [torch.randn_like(expected)] + [torch.randn_like(f) for f in finals]  # type: ignore[arg-type]
    ours = torch.stack(
        [
            out.state[f"l{k}_{v}"][:, -1]
            for v in ("hc" if kind == "lstm" else "h")  # type: ignore[index]
            for k in range(layers)
        ]
    ).view(len(finals), layers, B, H)
    loss_ours = (got * weights[0]).sum() + sum((ours[j] * weights[j + 1]).sum() for j in range(len(finals)))
    loss_torch = (expected * weights[0]).sum() + sum((f * w).sum() for f, w in zip(finals, weights[1:], strict=True))  # type: ignore[arg-type]
    wrt = [x, *(init or ())]
    g_ours = torch.autograd.grad(loss_ours, [*wrt, *net.parameters()])
    g_torch = torch.autograd.grad(loss_torch, [*wrt, *mod.parameters()])
    for a, b, what in zip(g_ours[: len(wrt)], g_torch, ["x", "h0", "c0"], strict=False):
        close(a, b, dtype, f"grad {what}")
    for p, g in zip(net.parameters(), g_ours[len(wrt) :], strict=True):
        p.grad = g
    packed = packed_grads(net, kind, layout)
    for (name, _), g in zip(mod.named_parameters(), g_torch[len(wrt) :], strict=True):
        close(packed[name], g, dtype, f"grad {name}")


@pytest.mark.parametrize("with_init", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional(kind: str, with_init: bool, mode: tuple[bool, torch.dtype], device: torch.device) -> None:
    """The backward direction reads [t+1]; torch's h0 for it is our `init` at the end, from a static input."""
    fuse, dtype = mode
    net, mod = make(kind, "bi", dtype, device, static_init=with_init, fuse=fuse)
    x = torch.randn(B, T, I, dtype=dtype, device=device, requires_grad=True)
    init = initial(kind, 2, dtype, device) if with_init else None
    expected, final = run_torch(mod, x, hx_of(kind, init))
    inputs = {}
    if init is not None:
        for k, p in enumerate(("l0_", "l0r_")):
            for v, t in zip("hc", init, strict=False):
                inputs[f"{p}{v}0"] = t[k]
    out = net(x=x, **inputs)
    assert out.state is None  # it reads the future: no state to carry on
    close(out.y, expected, dtype, "output")
    finals = final if kind == "lstm" else (final,)
    # forward direction ends at the last step, backward at the first
    close(torch.stack([out.l0_h[:, -1], out.l0r_h[:, 0]]), finals[0], dtype, "h_n")  # type: ignore[index]
    if kind == "lstm":
        close(torch.stack([out.l0_c[:, -1], out.l0r_c[:, 0]]), finals[1], dtype, "c_n")  # type: ignore[index]

    w = torch.randn_like(expected)
    wh = torch.randn_like(finals[0])  # type: ignore[index]
    loss_ours = (out.y * w).sum() + (torch.stack([out.l0_h[:, -1], out.l0r_h[:, 0]]) * wh).sum()
    loss_torch = (expected * w).sum() + (finals[0] * wh).sum()  # type: ignore[index]
    wrt = [x, *(init or ())]
    g_ours = torch.autograd.grad(loss_ours, [*wrt, *net.parameters()])
    g_torch = torch.autograd.grad(loss_torch, [*wrt, *mod.parameters()])
    for a, b, what in zip(g_ours[: len(wrt)], g_torch, ["x", "h0", "c0"], strict=False):
        close(a, b, dtype, f"grad {what}")
    for p, g in zip(net.parameters(), g_ours[len(wrt) :], strict=True):
        p.grad = g
    packed = packed_grads(net, kind, "bi")
    for (name, _), g in zip(mod.named_parameters(), g_torch[len(wrt) :], strict=True):
        close(packed[name], g, dtype, f"grad {name}")


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("kind", KINDS)
def test_padded_batch_matches_packed_sequence(kind: str, fuse: bool, device: torch.device) -> None:
    """With lengths, our outputs and state match torch on a PackedSequence (bidirectional too)."""
    dtype = torch.float64
    lengths = torch.tensor([T, 2, 4])
    x = torch.randn(B, T, I, dtype=dtype, device=device)
    for layout in ("one", "bi"):
        net, mod = make(kind, layout, dtype, device, fuse=fuse)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        expected, final = mod(packed)
        expected, _ = nn.utils.rnn.pad_packed_sequence(expected, batch_first=True, total_length=T)
        out = net(x, lengths=lengths.to(device))
        got = out.y if layout == "bi" else out.l0_h
        close(got, expected, dtype, f"{layout} output")
        h_n = final[0] if kind == "lstm" else final
        if layout == "one":
            close(out.state["l0_h"][:, -1], h_n[0], dtype, "h_n")  # type: ignore[index]
        else:
            close(out.l0r_h[:, 0], h_n[1], dtype, "backward h_n")
