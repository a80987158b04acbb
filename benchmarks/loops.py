"""Loops: the hand-written baselines, each the same maths as one benchmark spec.

Takes tensors (sequences (batch, time, size), weights written (out, in) as the spec's layers hold
them), gives every step's output (batch, time, size). Two styles:

- `plain_*`: the loop one writes first: `x[:, t]` for each step, one `F.linear` per layer source per
  step, `torch.stack` at the end. It reads the spec's own parameters.
- `fast_*`: hand-optimised: the input projections of every gate for all steps in one matmul before
  the loop, steps taken with `unbind` (whose backward is linear in T), the recurrent matmuls of all
  gates fused into one `addmm` per step (peephole and feedback sources joined where that saves a
  matmul), activations applied once per gate group. They take their own fused weights (copies of the
  spec's, laid out for the fused matmuls) and are written in TorchScript's subset, so the same
  function runs eager or under `torch.jit.script`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "plain_elman",
    "plain_lstm",
    "plain_gru",
    "plain_peephole",
    "plain_jordan",
    "plain_topdown",
    "plain_skip2",
    "plain_layernorm_lstm",
    "plain_indrnn",
    "plain_qrnn",
    "plain_mingru",
    "fast_elman",
    "fast_lstm",
    "fast_gru",
    "fast_peephole",
    "fast_jordan",
    "fast_topdown",
    "fast_skip2",
    "fast_layernorm_lstm",
    "fast_indrnn",
    "fast_qrnn",
    "fast_mingru",
    "FAST",
    "scripted",
]

# ---- plain loops: the spec's weights, one F.linear per source per step --------------------------
# `w` maps (layer, source index) to the weight and `b` a layer to its bias, as rnndsl holds them; `p`
# a `param` node to its learned vector.


def _steps(steps: int, reverse: bool) -> range:
    return range(steps - 1, -1, -1) if reverse else range(steps)


def plain_elman(x: Tensor, w: dict, b: dict, p: str, reverse: bool) -> Tensor:
    h = x.new_zeros(x.shape[0], w[p + "h", 1].shape[0])
    out = [h] * x.shape[1]
    for t in _steps(x.shape[1], reverse):
        h = torch.tanh(F.linear(x[:, t], w[p + "h", 0], b[p + "h"]) + F.linear(h, w[p + "h", 1]))
        out[t] = h
    return torch.stack(out, 1)


def plain_lstm(x: Tensor, w: dict, b: dict, p: str, reverse: bool) -> Tensor:
    h = c = x.new_zeros(x.shape[0], w[p + "i", 1].shape[0])
    out = [h] * x.shape[1]

    def gate(name: str, xt: Tensor) -> Tensor:
        return F.linear(xt, w[p + name, 0], b[p + name]) + F.linear(h, w[p + name, 1])

    for t in _steps(x.shape[1], reverse):
        xt = x[:, t]
        i, f = torch.sigmoid(gate("i", xt)), torch.sigmoid(gate("f", xt))
        g, o = torch.tanh(gate("g", xt)), torch.sigmoid(gate("o", xt))
        c = f * c + i * g
        h = o * torch.tanh(c)
        out[t] = h
    return torch.stack(out, 1)


def plain_gru(x: Tensor, w: dict, b: dict, p: str, reverse: bool) -> Tensor:
    h = x.new_zeros(x.shape[0], w[p + "r", 1].shape[0])
    out = [h] * x.shape[1]
    for t in _steps(x.shape[1], reverse):
        xt = x[:, t]
        r = torch.sigmoid(F.linear(xt, w[p + "r", 0], b[p + "r"]) + F.linear(h, w[p + "r", 1]))
        z = torch.sigmoid(F.linear(xt, w[p + "z", 0], b[p + "z"]) + F.linear(h, w[p + "z", 1]))
        n = torch.tanh(F.linear(xt, w[p + "nx", 0], b[p + "nx"]) + r * F.linear(h, w[p + "nh", 0], b[p + "nh"]))
        h = (1 - z) * n + z * h
        out[t] = h
    return torch.stack(out, 1)


def plain_peephole(x: Tensor, w: dict, b: dict) -> Tensor:
    h = c = x.new_zeros(x.shape[0], w["i", 1].shape[0])
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        i = torch.sigmoid(F.linear(xt, w["i", 0], b["i"]) + F.linear(h, w["i", 1]) + F.linear(c, w["i", 2]))
        f = torch.sigmoid(F.linear(xt, w["f", 0], b["f"]) + F.linear(h, w["f", 1]) + F.linear(c, w["f", 2]))
        g = torch.tanh(F.linear(xt, w["g", 0], b["g"]) + F.linear(h, w["g", 1]))
        c = f * c + i * g
        o = torch.sigmoid(F.linear(xt, w["o", 0], b["o"]) + F.linear(h, w["o", 1]) + F.linear(c, w["o", 2]))
        h = o * torch.tanh(c)
        out.append(h)
    return torch.stack(out, 1)


def plain_jordan(x: Tensor, w: dict, b: dict) -> Tensor:
    y = x.new_zeros(x.shape[0], w["y", 0].shape[0])
    out = []
    for t in range(x.shape[1]):
        h = torch.tanh(F.linear(x[:, t], w["h", 0], b["h"]) + F.linear(y, w["h", 1]))
        y = torch.tanh(F.linear(h, w["y", 0], b["y"]))
        out.append(y)
    return torch.stack(out, 1)


def plain_topdown(x: Tensor, w: dict, b: dict) -> Tensor:
    a = x.new_zeros(x.shape[0], w["a", 1].shape[0])
    top = x.new_zeros(x.shape[0], w["b", 1].shape[0])
    out = []
    for t in range(x.shape[1]):
        a = torch.tanh(F.linear(x[:, t], w["a", 0], b["a"]) + F.linear(a, w["a", 1]) + F.linear(top, w["a", 2]))
        top = torch.tanh(F.linear(a, w["b", 0], b["b"]) + F.linear(top, w["b", 1]))
        out.append(top)
    return torch.stack(out, 1)


def plain_skip2(x: Tensor, w: dict, b: dict) -> Tensor:
    h1 = h2 = x.new_zeros(x.shape[0], w["h", 1].shape[0])
    out = []
    for t in range(x.shape[1]):
        h = torch.tanh(F.linear(x[:, t], w["h", 0], b["h"]) + F.linear(h1, w["h", 1]) + F.linear(h2, w["h", 2]))
        h1, h2 = h, h1
        out.append(h)
    return torch.stack(out, 1)


def plain_layernorm_lstm(x: Tensor, w: dict, b: dict, p: dict) -> Tensor:
    """Each gate's pre-activation and the cell layer-normalised, the gain and bias in `F.layer_norm`
    (what `nn.LayerNorm` does)."""
    hidden = w["ai", 1].shape[0]
    h = c = x.new_zeros(x.shape[0], hidden)
    out = []

    def gate(name: str, xt: Tensor, gain: str, bias: str) -> Tensor:
        a = F.linear(xt, w[name, 0], b[name]) + F.linear(h, w[name, 1])
        return F.layer_norm(a, (hidden,), p[gain], p[bias])

    for t in range(x.shape[1]):
        xt = x[:, t]
        i = torch.sigmoid(gate("ai", xt, "gi", "bi"))
        f = torch.sigmoid(gate("af", xt, "gf", "bf"))
        g = torch.tanh(gate("ag", xt, "gg", "bg"))
        o = torch.sigmoid(gate("ao", xt, "go", "bo"))
        c = f * c + i * g
        h = o * torch.tanh(F.layer_norm(c, (hidden,), p["gc"], p["bc"]))
        out.append(h)
    return torch.stack(out, 1)


def plain_indrnn(x: Tensor, w: dict, b: dict, p: dict) -> Tensor:
    """Both layers in one loop over the steps (the second reads the first's h this step)."""
    h1 = x.new_zeros(x.shape[0], w["a1", 0].shape[0])
    h2 = x.new_zeros(x.shape[0], w["a2", 0].shape[0])
    out = []
    for t in range(x.shape[1]):
        h1 = torch.relu(F.linear(x[:, t], w["a1", 0], b["a1"]) + p["u1"] * h1)
        h2 = torch.relu(F.linear(h1, w["a2", 0], b["a2"]) + p["u2"] * h2)
        out.append(h2)
    return torch.stack(out, 1)


def plain_qrnn(x: Tensor, w: dict, b: dict) -> Tensor:
    """Each gate's width-2 convolution step by step (this step's input and the last's)."""
    c = x.new_zeros(x.shape[0], w["z", 0].shape[0])
    last = x.new_zeros(x.shape[0], x.shape[2])
    out = []
    for t in range(x.shape[1]):
        z, f, o = (F.linear(x[:, t], w[g, 0], b[g]) + F.linear(last, w[g, 1]) for g in "zfo")
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        c = f * c + (1 - f) * z
        out.append(o * c)
        last = x[:, t]
    return torch.stack(out, 1)


def plain_mingru(x: Tensor, w: dict, b: dict) -> Tensor:
    """Both layers in one loop over the steps."""
    h1 = x.new_zeros(x.shape[0], w["z1", 0].shape[0])
    h2 = x.new_zeros(x.shape[0], w["z2", 0].shape[0])
    out = []
    for t in range(x.shape[1]):
        z1, n1 = torch.sigmoid(F.linear(x[:, t], w["z1", 0], b["z1"])), F.linear(x[:, t], w["n1", 0], b["n1"])
        h1 = (1 - z1) * h1 + z1 * n1
        z2, n2 = torch.sigmoid(F.linear(h1, w["z2", 0], b["z2"])), F.linear(h1, w["n2", 0], b["n2"])
        h2 = (1 - z2) * h2 + z2 * n2
        out.append(h2)
    return torch.stack(out, 1)


# ---- hand-optimised loops: fused weights, hoisted projections, one addmm per step ----------------


def _collect(out: list[Tensor], reverse: bool) -> Tensor:
    if reverse:
        out.reverse()
    return torch.stack(out, 1)


def fast_elman(x: Tensor, w_ih: Tensor, w_hh: Tensor, b: Tensor, reverse: bool) -> Tensor:
    pre = F.linear(x, w_ih, b).unbind(1)
    w = w_hh.t()
    h = x.new_zeros(x.shape[0], w_hh.shape[0])
    out: list[Tensor] = []
    n = len(pre)
    for k in range(n):
        h = torch.tanh(torch.addmm(pre[n - 1 - k if reverse else k], h, w))
        out.append(h)
    return _collect(out, reverse)


def fast_lstm(x: Tensor, w_ih: Tensor, w_hh: Tensor, b: Tensor, reverse: bool) -> Tensor:
    """Gates laid out (i, f, o, g): one sigmoid over the first three, one tanh over g."""
    pre = F.linear(x, w_ih, b).unbind(1)
    w = w_hh.t()
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[0], hidden)
    c = h
    out: list[Tensor] = []
    n = len(pre)
    for k in range(n):
        gates = torch.addmm(pre[n - 1 - k if reverse else k], h, w)
        ifo = torch.sigmoid(gates[:, : 3 * hidden])
        c = torch.addcmul(ifo[:, hidden : 2 * hidden] * c, ifo[:, :hidden], torch.tanh(gates[:, 3 * hidden :]))
        h = ifo[:, 2 * hidden :] * torch.tanh(c)
        out.append(h)
    return _collect(out, reverse)


def fast_gru(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, reverse: bool) -> Tensor:
    """Gates laid out (r, z, n) as torch's GRU; `b_hh` is zero but for the candidate's hidden bias."""
    pre = F.linear(x, w_ih, b_ih).unbind(1)
    w = w_hh.t()
    hidden = w_hh.shape[1]
    h = x.new_zeros(x.shape[0], hidden)
    out: list[Tensor] = []
    n = len(pre)
    for k in range(n):
        p = pre[n - 1 - k if reverse else k]
        hh = torch.addmm(b_hh, h, w)
        rz = torch.sigmoid(p[:, : 2 * hidden] + hh[:, : 2 * hidden])
        cand = torch.tanh(torch.addcmul(p[:, 2 * hidden :], rz[:, :hidden], hh[:, 2 * hidden :]))
        h = torch.lerp(cand, h, rz[:, hidden:])  # (1 - z) * n + z * h
        out.append(h)
    return _collect(out, reverse)


def fast_peephole(x: Tensor, w_x: Tensor, b: Tensor, w_h: Tensor, w_c: Tensor, w_co: Tensor) -> Tensor:
    """Gates laid out (i, f, g, o); `w_c` (2H, H) the peepholes of i and f on c[t-1], `w_co` of o on c.

    Three matmuls a step, the fewest the maths allows: h[t-1] for all four gates, c[t-1] for i and
    f, and c (known only once i, f, g are) for o.
    """
    pre = F.linear(x, w_x, b).unbind(1)
    wh, wc, wco = w_h.t(), w_c.t(), w_co.t()
    hidden = w_h.shape[1]
    h = x.new_zeros(x.shape[0], hidden)
    c = h
    out: list[Tensor] = []
    for p in pre:
        z = torch.addmm(p, h, wh)
        i_f = torch.sigmoid(torch.addmm(z[:, : 2 * hidden], c, wc))
        c = torch.addcmul(i_f[:, hidden:] * c, i_f[:, :hidden], torch.tanh(z[:, 2 * hidden : 3 * hidden]))
        o = torch.sigmoid(torch.addmm(z[:, 3 * hidden :], c, wco))
        h = o * torch.tanh(c)
        out.append(h)
    return torch.stack(out, 1)


def fast_jordan(x: Tensor, w_xh: Tensor, b_h: Tensor, w_yh: Tensor, w_hy: Tensor, b_y: Tensor) -> Tensor:
    pre = F.linear(x, w_xh, b_h).unbind(1)
    wyh, why = w_yh.t(), w_hy.t()
    y = x.new_zeros(x.shape[0], w_hy.shape[0])
    out: list[Tensor] = []
    for p in pre:
        h = torch.tanh(torch.addmm(p, y, wyh))
        y = torch.tanh(torch.addmm(b_y, h, why))
        out.append(y)
    return torch.stack(out, 1)


def fast_topdown(x: Tensor, w_xa: Tensor, b_a: Tensor, w_a: Tensor, w_b: Tensor, b_b: Tensor) -> Tensor:
    """`w_a` (A, A+B) reads [a[t-1], b[t-1]], `w_b` (B, A+B) reads [a, b[t-1]]: two matmuls a step."""
    pre = F.linear(x, w_xa, b_a).unbind(1)
    wa, wb = w_a.t(), w_b.t()
    a = x.new_zeros(x.shape[0], w_a.shape[0])
    top = x.new_zeros(x.shape[0], w_b.shape[0])
    out: list[Tensor] = []
    for p in pre:
        a = torch.tanh(torch.addmm(p, torch.cat([a, top], 1), wa))
        top = torch.tanh(torch.addmm(b_b, torch.cat([a, top], 1), wb))
        out.append(top)
    return torch.stack(out, 1)


def fast_skip2(x: Tensor, w_x: Tensor, b: Tensor, w_12: Tensor) -> Tensor:
    """`w_12` (H, 2H) reads [h[t-1], h[t-2]]: one matmul a step."""
    pre = F.linear(x, w_x, b).unbind(1)
    w = w_12.t()
    h1 = x.new_zeros(x.shape[0], w_12.shape[0])
    h2 = h1
    out: list[Tensor] = []
    for p in pre:
        h = torch.tanh(torch.addmm(p, torch.cat([h1, h2], 1), w))
        h1, h2 = h, h1
        out.append(h)
    return torch.stack(out, 1)


def fast_layernorm_lstm(
    x: Tensor, w_x: Tensor, b: Tensor, w_h: Tensor, gains: Tensor, biases: Tensor, g_c: Tensor, b_c: Tensor
) -> Tensor:
    """Gates laid out (i, f, o, g); `gains` and `biases` (4, H) those of the gates' layer norms, `g_c` and
    `b_c` (H,) the cell's. One addmm a step for the four gates, one `layer_norm` over all four (viewed
    (B, 4, H)) with its gains and biases in one `addcmul`, one sigmoid over i, f, o."""
    pre = F.linear(x, w_x, b).unbind(1)
    wh = w_h.t()
    hidden = w_h.shape[1]
    batch = x.shape[0]
    h = x.new_zeros(batch, hidden)
    c = h
    out: list[Tensor] = []
    for p in pre:
        z = F.layer_norm(torch.addmm(p, h, wh).view(batch, 4, hidden), (hidden,))
        z = torch.addcmul(biases, z, gains)
        ifo = torch.sigmoid(z[:, :3])
        c = torch.addcmul(ifo[:, 1] * c, ifo[:, 0], torch.tanh(z[:, 3]))
        h = ifo[:, 2] * torch.tanh(F.layer_norm(c, (hidden,), g_c, b_c))
        out.append(h)
    return torch.stack(out, 1)


def _indrnn_layer(pre: Tensor, u: Tensor) -> Tensor:
    h = pre.new_zeros(pre.shape[0], pre.shape[2])
    out: list[Tensor] = []
    for p in pre.unbind(1):
        h = torch.relu(torch.addcmul(p, u, h))
        out.append(h)
    return torch.stack(out, 1)


def fast_indrnn(x: Tensor, w_1: Tensor, b_1: Tensor, u_1: Tensor, w_2: Tensor, b_2: Tensor, u_2: Tensor) -> Tensor:
    """Layer by layer: each layer's input projection for all steps in one matmul (the second's over the
    first's whole output), then its loop, one addcmul and one relu a step."""
    h = _indrnn_layer(F.linear(x, w_1, b_1), u_1)
    return _indrnn_layer(F.linear(h, w_2, b_2), u_2)


def _linear_loop(a: Tensor, b: Tensor) -> Tensor:
    """c = a * c[t-1] + b over the steps, a and b computed for all steps: one addcmul a step."""
    c = a.new_zeros(a.shape[0], a.shape[2])
    out: list[Tensor] = []
    a_steps, b_steps = a.unbind(1), b.unbind(1)
    for t in range(len(a_steps)):  # TorchScript has no zip(strict=)
        c = torch.addcmul(b_steps[t], a_steps[t], c)
        out.append(c)
    return torch.stack(out, 1)


def fast_qrnn(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The three gates' convolutions in one matmul over [x_t, x_t-1] for all steps (gates laid out z, f, o),
    then the fo-pooling loop, one addcmul a step."""
    last = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x[:, :-1]], 1)
    z, f, o = F.linear(torch.cat([x, last], 2), w, b).chunk(3, 2)
    f = torch.sigmoid(f)
    return torch.sigmoid(o) * _linear_loop(f, (1 - f) * torch.tanh(z))


def fast_mingru(x: Tensor, w_1: Tensor, b_1: Tensor, w_2: Tensor, b_2: Tensor) -> Tensor:
    """Layer by layer: gate and candidate in one matmul for all steps (laid out z, n), then the loop,
    h = (1 - z) * h[t-1] + z * n, one addcmul a step."""
    z, n = F.linear(x, w_1, b_1).chunk(2, 2)
    z = torch.sigmoid(z)
    h = _linear_loop(1 - z, z * n)
    z, n = F.linear(h, w_2, b_2).chunk(2, 2)
    z = torch.sigmoid(z)
    return _linear_loop(1 - z, z * n)


FAST = {
    "elman": fast_elman,
    "lstm": fast_lstm,
    "gru": fast_gru,
    "peephole": fast_peephole,
    "jordan": fast_jordan,
    "topdown": fast_topdown,
    "skip2": fast_skip2,
    "layernorm_lstm": fast_layernorm_lstm,
    "indrnn": fast_indrnn,
    "qrnn": fast_qrnn,
    "mingru": fast_mingru,
}


def scripted(name: str) -> torch.jit.ScriptFunction:
    """The TorchScript version of one `fast_*` loop (compiled once per process)."""
    if name not in _SCRIPTED:
        with warnings.catch_warnings():  # deprecated in favour of torch.compile, and still a baseline users have
            warnings.simplefilter("ignore", DeprecationWarning)
            _SCRIPTED[name] = torch.jit.script(FAST[name])
    return _SCRIPTED[name]


_SCRIPTED: dict = {}
