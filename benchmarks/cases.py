"""Cases: takes a case name and a size, gives the spec and every implementation of its maths.

A case is a network written in the language (`spec`) plus the same maths as baselines that read
the compiled network's weights: torch.nn's fused module where one computes it (weights copied in),
the plain loop and the hand-optimised loop of `benchmarks.loops` (eager and TorchScript), and
torch.compile of the plain loop (built by `bench`, which time-boxes its compilation).

Standard cells (Elman, LSTM and torch's GRU) come in three shapes: one layer, two layers (the second
reads the first's h) and bidirectional (a forward and a backward layer on the input, joined with
`concat`). The custom topologies are ones no library cell covers: an LSTM with (full-matrix)
peepholes, a Jordan network, two layers with top-down feedback, a delay-2 skip connection; and the
custom cells of examples/: the layer-normalised LSTM and the two-layer IndRNN (learned `param`
vectors, `layer_norm`, elementwise recurrence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

import rnndsl
from benchmarks import loops

__all__ = ["CASES", "GENERATED_LOOP", "SIZES", "Case", "Impl", "Size", "Weights", "build"]

GENERATED_LOOP = "rnndsl generated loop"

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Size:
    batch: int
    steps: int
    inputs: int
    hidden: int


SIZES = {
    "standard": Size(64, 100, 512, 512),
    "small": Size(64, 100, 128, 32),
    "long": Size(16, 1000, 64, 128),
    "step": Size(8, 1, 64, 128),  # one step a call, as streaming and beam search call: the work around a kernel
    "tiny": Size(4, 6, 8, 8),  # the CI smoke run
}


@dataclass
class Impl:
    """One implementation of a case: `fn(x)` gives the output sequence; `params` get their grads cleared;
    `warmup` calls per mode come before timing (TorchScript's profiling executor optimises on its second)."""

    name: str
    fn: Fn
    params: list[Tensor] = field(default_factory=list)
    warmup: int = 1


@dataclass
class Weights:
    """The compiled network's parameters by (layer, source index), by layer (biases) and by `param` node."""

    w: dict[tuple[str, int], Tensor]
    b: dict[str, Tensor]
    p: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, net: rnndsl.CompiledNetwork) -> Weights:
        layers = [n for n in net.network.nodes if n.op == "layer"]
        w = {(n.name, j): net.weight(n.name, j) for n in layers for j in range(len(n.sources))}
        b = {n.name: bias for n in layers if (bias := net.bias(n.name)) is not None}
        p = {n.name: net.param(n.name) for n in net.network.nodes if n.op == "param"}
        return cls(w, b, p)

    def fused(self, parts: list[Tensor], dim: int = 0) -> Tensor:
        """A new leaf parameter: the given weights joined (a hand-optimised loop owns its fused copy)."""
        return torch.cat([p.detach() for p in parts], dim).clone().requires_grad_()

    def stacked(self, parts: list[Tensor]) -> Tensor:
        """A new leaf parameter: the given vectors as the rows of one matrix."""
        return torch.stack([p.detach() for p in parts]).clone().requires_grad_()


# ---- specs ------------------------------------------------------------------------------------


def _elman_layer(p: str, src: str, h: int, d: str) -> str:
    return f"    layer {p}h: {h} tanh <- {src}, {p}h[t{d}1]\n"


def _lstm_layer(p: str, src: str, h: int, d: str) -> str:
    gates = "".join(
        f"    layer {p}{g}: {h} {act} <- {src}, {p}h[t{d}1]\n"
        for g, act in (("i", "sigmoid"), ("f", "sigmoid"), ("g", "tanh"), ("o", "sigmoid"))
    )
    return gates + f"    {p}c = {p}f * {p}c[t{d}1] + {p}i * {p}g\n    {p}h = {p}o * tanh({p}c)\n"


def _gru_layer(p: str, src: str, h: int, d: str) -> str:
    return (
        f"    layer {p}r: {h} sigmoid <- {src}, {p}h[t{d}1]\n"
        f"    layer {p}z: {h} sigmoid <- {src}, {p}h[t{d}1]\n"
        f"    layer {p}nx: {h} <- {src}\n"
        f"    layer {p}nh: {h} <- {p}h[t{d}1]\n"
        f"    {p}n = tanh({p}nx + {p}r * {p}nh)\n"
        f"    {p}h = (1 - {p}z) * {p}n + {p}z * {p}h[t{d}1]\n"
    )


_LAYER_TEXT = {"elman": _elman_layer, "lstm": _lstm_layer, "gru": _gru_layer}

# shape -> the layers (name prefix, runs backward), stacked (each reads the previous) or side by side
_SHAPES: dict[str, tuple[tuple[tuple[str, bool], ...], bool]] = {
    "": ((("", False),), True),
    "_2layer": ((("l1_", False), ("l2_", False)), True),
    "_bidir": ((("fw_", False), ("bw_", True)), False),
}


def _cell_spec(kind: str, shape: str) -> Callable[[int, int], str]:
    layers, stacked = _SHAPES[shape]

    def spec(i: int, h: int) -> str:
        body, src = f"    input x: {i}\n", "x"
        for p, reverse in layers:
            body += _LAYER_TEXT[kind](p, src, h, "+" if reverse else "-")
            src = f"{p}h" if stacked else src
        out = src if stacked else "h"
        if not stacked:
            body += f"    h = concat({', '.join(p + 'h' for p, _ in layers)})\n"
        return f"network {kind.upper()}{shape.upper()} {{\n{body}    output {out}\n}}\n"

    return spec


def _peephole_spec(i: int, h: int) -> str:
    return f"""network PeepholeLSTM {{
    input x: {i}
    layer i: {h} sigmoid <- x, h[t-1], c[t-1]   # peepholes: the gates also read the cell state
    layer f: {h} sigmoid <- x, h[t-1], c[t-1]
    layer g: {h} tanh    <- x, h[t-1]
    c = f * c[t-1] + i * g
    layer o: {h} sigmoid <- x, h[t-1], c         # the output gate reads the new cell state
    h = o * tanh(c)
    output h
}}
"""


def _jordan_spec(i: int, h: int) -> str:
    return f"""network Jordan {{
    input x: {i}
    layer h: {h} tanh <- x, y[t-1]   # the output, not the hidden layer, feeds back
    layer y: {h} tanh <- h
    output y
}}
"""


def _topdown_spec(i: int, h: int) -> str:
    return f"""network TopDown {{
    input x: {i}
    layer a: {h} tanh <- x, a[t-1], b[t-1]   # bottom-up input, own state, top-down feedback
    layer b: {h} tanh <- a, b[t-1]
    output b
}}
"""


def _skip2_spec(i: int, h: int) -> str:
    return f"""network Skip2 {{
    input x: {i}
    layer h: {h} tanh <- x, h[t-1], h[t-2]   # a skip connection two steps back
    output h
}}
"""


def _layernorm_lstm_spec(i: int, h: int) -> str:
    """examples/layernorm_lstm.rnn at the given sizes."""
    gates = "".join(f"    layer  a{g}: {h} <- x, h[t-1]\n" for g in "ifgo")
    params = "".join(f"    param  g{g}: {h} = ones\n" for g in "ifgoc")
    params += "".join(f"    param  b{g}: {h}{' = 1' if g == 'f' else ''}\n" for g in "ifgoc")
    return f"""network LayerNormLSTM {{
    input  x: {i}
{gates}{params}    i = sigmoid(gi * layer_norm(ai) + bi)
    f = sigmoid(gf * layer_norm(af) + bf)
    g = tanh(gg * layer_norm(ag) + bg)
    o = sigmoid(go * layer_norm(ao) + bo)
    c = f * c[t-1] + i * g
    h = o * tanh(gc * layer_norm(c) + bc)
    output h
}}
"""


def _indrnn_spec(i: int, h: int) -> str:
    """examples/indrnn.rnn at the given sizes."""
    return f"""network IndRNN {{
    input  x: {i}
    param  u1: {h} = uniform
    param  u2: {h} = uniform
    layer  a1: {h} <- x
    h1 = relu(a1 + u1 * h1[t-1])
    layer  a2: {h} <- h1
    h2 = relu(a2 + u2 * h2[t-1])
    output h2
}}
"""


def _qrnn_spec(i: int, h: int) -> str:
    """examples/qrnn.rnn at the given sizes: a loop linear in its past (one kernel call over time)."""
    gates = "".join(
        f"    layer  {g}: {h} {act} <- x, x[t-1]\n" for g, act in (("z", "tanh"), ("f", "sigmoid"), ("o", "sigmoid"))
    )
    return f"""network QRNN {{
    input  x: {i}
{gates}    c = f * c[t-1] + (1 - f) * z
    h = o * c
    output h
}}
"""


def _mingru_spec(i: int, h: int) -> str:
    """examples/mingru.rnn at the given sizes: two loops linear in their past."""
    return f"""network MinGRU {{
    input  x: {i}
    layer  z1: {h} sigmoid <- x
    layer  n1: {h} <- x
    h1 = (1 - z1) * h1[t-1] + z1 * n1
    layer  z2: {h} sigmoid <- h1
    layer  n2: {h} <- h1
    h2 = (1 - z2) * h2[t-1] + z2 * n2
    output h2
}}
"""


# ---- baselines for the standard cells ----------------------------------------------------------

_PLAIN_CELL = {"elman": loops.plain_elman, "lstm": loops.plain_lstm, "gru": loops.plain_gru}


def _run_layers(shape: str, layer: Callable[[Tensor, str, bool], Tensor]) -> Fn:
    layers, stacked = _SHAPES[shape]

    def run(x: Tensor) -> Tensor:
        if not stacked:
            return torch.cat([layer(x, p, reverse) for p, reverse in layers], -1)
        for p, reverse in layers:
            x = layer(x, p, reverse)
        return x

    return run


def _cell_plain(kind: str, shape: str) -> Callable[[Weights], Fn]:
    return lambda wb: _run_layers(shape, lambda x, p, rev: _PLAIN_CELL[kind](x, wb.w, wb.b, p, rev))


def _cell_fused_weights(kind: str, wb: Weights, p: str) -> list[Tensor]:
    """One layer's weights in the fused layout of `loops.fast_<kind>`."""
    w, b = wb.w, wb.b
    if kind == "elman":
        return [wb.fused([w[p + "h", 0]]), wb.fused([w[p + "h", 1]]), wb.fused([b[p + "h"]])]
    if kind == "lstm":
        gates = [p + g for g in "ifog"]
        return [wb.fused([w[g, 0] for g in gates]), wb.fused([w[g, 1] for g in gates]), wb.fused([b[g] for g in gates])]
    zeros = torch.zeros(2 * w[p + "r", 1].shape[0], device=w[p + "r", 1].device)
    return [
        wb.fused([w[p + "r", 0], w[p + "z", 0], w[p + "nx", 0]]),
        wb.fused([w[p + "r", 1], w[p + "z", 1], w[p + "nh", 0]]),
        wb.fused([b[p + "r"], b[p + "z"], b[p + "nx"]]),
        wb.fused([zeros, b[p + "nh"]]),
    ]


def _cell_fast(kind: str, shape: str) -> Callable[[Weights, bool], Impl]:
    def build(wb: Weights, script: bool) -> Impl:
        fn = loops.scripted(kind) if script else loops.FAST[kind]
        params = {p: _cell_fused_weights(kind, wb, p) for p, _ in _SHAPES[shape][0]}
        run = _run_layers(shape, lambda x, p, rev: fn(x, *params[p], rev))
        return Impl("", run, [t for ts in params.values() for t in ts])

    return build


_NN_GATES = {"elman": (nn.RNN, "h"), "lstm": (nn.LSTM, "ifgo"), "gru": (nn.GRU, "rz")}


def _cell_nn(kind: str, shape: str) -> Callable[[Weights, int, int], nn.Module]:
    """torch.nn's module with the spec's weights copied in (so the same numbers come out)."""
    layers, stacked = _SHAPES[shape]

    def build(wb: Weights, i: int, h: int) -> nn.Module:
        cls, gates = _NN_GATES[kind]
        mod = cls(i, h, num_layers=len(layers) if stacked else 1, bidirectional=not stacked, batch_first=True)
        mod = mod.to(next(iter(wb.w.values())).device)
        with torch.no_grad():
            for k, (p, reverse) in enumerate(layers):
                at = f"l{0 if not stacked else k}{'_reverse' if reverse else ''}"
                w_ih, w_hh, b_ih, b_hh = _nn_layer(kind, wb, p, gates)
                for name, value in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
                    getattr(mod, f"{name}_{at}").copy_(value)
        return mod

    return build


def _nn_layer(kind: str, wb: Weights, p: str, gates: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w, b = wb.w, wb.b
    names = [p + g for g in gates] if kind != "elman" else [p + "h"]
    w_ih = torch.cat([w[n, 0] for n in names] + ([w[p + "nx", 0]] if kind == "gru" else []))
    w_hh = torch.cat([w[n, 1] for n in names] + ([w[p + "nh", 0]] if kind == "gru" else []))
    b_ih = torch.cat([b[n] for n in names] + ([b[p + "nx"]] if kind == "gru" else []))
    b_hh = torch.zeros_like(b_ih)
    if kind == "gru":
        b_hh[2 * b[p + "nh"].shape[0] :] = b[p + "nh"]
    return w_ih, w_hh, b_ih, b_hh


# ---- baselines for the custom topologies -------------------------------------------------------


def _peephole_fast(wb: Weights) -> list[Tensor]:
    w, b = wb.w, wb.b
    return [
        wb.fused([w[g, 0] for g in "ifgo"]),
        wb.fused([b[g] for g in "ifgo"]),
        wb.fused([w[g, 1] for g in "ifgo"]),
        wb.fused([w["i", 2], w["f", 2]]),
        wb.fused([w["o", 2]]),
    ]


def _jordan_fast(wb: Weights) -> list[Tensor]:
    w, b = wb.w, wb.b
    return [wb.fused([w["h", 0]]), wb.fused([b["h"]]), wb.fused([w["h", 1]]), wb.fused([w["y", 0]]), wb.fused([b["y"]])]


def _topdown_fast(wb: Weights) -> list[Tensor]:
    w, b = wb.w, wb.b
    return [
        wb.fused([w["a", 0]]),
        wb.fused([b["a"]]),
        wb.fused([w["a", 1], w["a", 2]], 1),
        wb.fused([w["b", 0], w["b", 1]], 1),
        wb.fused([b["b"]]),
    ]


def _skip2_fast(wb: Weights) -> list[Tensor]:
    w, b = wb.w, wb.b
    return [wb.fused([w["h", 0]]), wb.fused([b["h"]]), wb.fused([w["h", 1], w["h", 2]], 1)]


def _layernorm_lstm_fast(wb: Weights) -> list[Tensor]:
    w, b, p = wb.w, wb.b, wb.p
    gates = ["ai", "af", "ao", "ag"]  # (i, f, o, g): one sigmoid over the first three
    return [
        wb.fused([w[g, 0] for g in gates]),
        wb.fused([b[g] for g in gates]),
        wb.fused([w[g, 1] for g in gates]),
        wb.stacked([p["g" + g[1]] for g in gates]),
        wb.stacked([p["b" + g[1]] for g in gates]),
        wb.fused([p["gc"]]),
        wb.fused([p["bc"]]),
    ]


def _indrnn_fast(wb: Weights) -> list[Tensor]:
    w, b, p = wb.w, wb.b, wb.p
    return [wb.fused([t]) for t in (w["a1", 0], b["a1"], p["u1"], w["a2", 0], b["a2"], p["u2"])]


def _qrnn_fast(wb: Weights) -> list[Tensor]:
    w, b = wb.w, wb.b
    return [wb.fused([torch.cat([w[g, 0], w[g, 1]], 1) for g in "zfo"]), wb.fused([b[g] for g in "zfo"])]


def _mingru_fast(wb: Weights) -> list[Tensor]:
    w, b = wb.w, wb.b
    return [
        wb.fused([w[n, 0] for n in names]) if i == 0 else wb.fused([b[n] for n in names])
        for names in (("z1", "n1"), ("z2", "n2"))
        for i in (0, 1)
    ]


def _custom_plain(fn: Callable[[Tensor, dict, dict], Tensor]) -> Callable[[Weights], Fn]:
    return lambda wb: lambda x: fn(x, wb.w, wb.b)


def _param_plain(fn: Callable[[Tensor, dict, dict, dict], Tensor]) -> Callable[[Weights], Fn]:
    """A plain loop that also reads the `param` vectors."""
    return lambda wb: lambda x: fn(x, wb.w, wb.b, wb.p)


def _custom_fast(name: str, weights: Callable[[Weights], list[Tensor]]) -> Callable[[Weights, bool], Impl]:
    def build(wb: Weights, script: bool) -> Impl:
        fn = loops.scripted(name) if script else loops.FAST[name]
        params = weights(wb)
        return Impl("", lambda x: fn(x, *params), params)

    return build


# ---- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A spec (inputs, hidden) -> text, and builders of its baselines from the compiled network's weights."""

    name: str
    custom: bool
    spec: Callable[[int, int], str]
    plain: Callable[[Weights], Fn]
    fast: Callable[[Weights, bool], Impl]
    torch_nn: Callable[[Weights, int, int], nn.Module] | None = None
    linear: bool = False  # has loops linear in their past: the generated per-step loop is timed beside the kernel


def _cell_cases() -> dict[str, Case]:
    return {
        f"{kind}{shape}": Case(
            f"{kind}{shape}",
            False,
            _cell_spec(kind, shape),
            _cell_plain(kind, shape),
            _cell_fast(kind, shape),
            _cell_nn(kind, shape),
        )
        for kind in ("elman", "lstm", "gru")
        for shape in _SHAPES
    }


CASES: dict[str, Case] = {
    **_cell_cases(),
    "lstm_peephole": Case(
        "lstm_peephole",
        True,
        _peephole_spec,
        _custom_plain(loops.plain_peephole),
        _custom_fast("peephole", _peephole_fast),
    ),
    "jordan": Case(
        "jordan", True, _jordan_spec, _custom_plain(loops.plain_jordan), _custom_fast("jordan", _jordan_fast)
    ),
    "topdown": Case(
        "topdown", True, _topdown_spec, _custom_plain(loops.plain_topdown), _custom_fast("topdown", _topdown_fast)
    ),
    "skip2": Case("skip2", True, _skip2_spec, _custom_plain(loops.plain_skip2), _custom_fast("skip2", _skip2_fast)),
    "layernorm_lstm": Case(
        "layernorm_lstm",
        True,
        _layernorm_lstm_spec,
        _param_plain(loops.plain_layernorm_lstm),
        _custom_fast("layernorm_lstm", _layernorm_lstm_fast),
    ),
    "indrnn": Case(
        "indrnn", True, _indrnn_spec, _param_plain(loops.plain_indrnn), _custom_fast("indrnn", _indrnn_fast)
    ),
    "qrnn": Case(
        "qrnn", True, _qrnn_spec, _custom_plain(loops.plain_qrnn), _custom_fast("qrnn", _qrnn_fast), linear=True
    ),
    "mingru": Case(
        "mingru",
        True,
        _mingru_spec,
        _custom_plain(loops.plain_mingru),
        _custom_fast("mingru", _mingru_fast),
        linear=True,
    ),
}


def build(case: Case, size: Size, device: str) -> tuple[rnndsl.CompiledNetwork, list[Impl]]:
    """The compiled spec and its implementations (rnndsl first), all computing the same numbers.

    torch.compile is not among them: `bench` builds it from the plain loop, time-boxed.
    """
    net = rnndsl.compile(case.spec(size.inputs, size.hidden)).to(device)
    out = net.network.outputs[0].name
    wb = Weights.of(net)
    params = list(net.parameters())
    impls = [Impl("rnndsl", lambda x: net(x)[out], params)]
    if case.custom:  # the same module on the generated torch loop: what the kernels (linear scan, C steps) replace
        loop = rnndsl.compile(case.spec(size.inputs, size.hidden), fuse_cells=False).to(device)
        loop.load_state_dict(net.state_dict())
        impls.append(Impl(GENERATED_LOOP, lambda x: loop(x)[out], list(loop.parameters())))
    if case.torch_nn is not None:
        mod = case.torch_nn(wb, size.inputs, size.hidden)
        impls.append(Impl("torch.nn", lambda x: mod(x)[0], list(mod.parameters())))
    impls.append(Impl("plain loop", case.plain(wb), params))
    for script, name in ((False, "hand-optimised"), (True, "hand-optimised TorchScript")):
        impl = case.fast(wb, script)
        impls.append(Impl(name, impl.fn, impl.params, warmup=2 if script else 1))
    return net, impls
