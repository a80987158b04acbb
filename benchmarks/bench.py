"""Benchmark: rnndsl against torch.nn and hand-written loops, timed side by side in one process.

    python -m benchmarks.bench                      # standard sizes, CPU, writes docs/performance.{md,json}
    python -m benchmarks.bench --size tiny --out -  # a smoke run, printed only
    python -m benchmarks.bench --device cuda

Each case is a spec written in the language plus the same maths as a plain PyTorch loop (and
torch.nn's fused module where one computes it). Times are medians after warm-up, forward under
no_grad and forward+backward; ratios below 1.0 mean rnndsl is faster.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import rnndsl

SIZES = {  # batch, steps, inputs, hidden
    "standard": (64, 100, 512, 512),
    "small": (64, 100, 128, 32),
    "long": (16, 1000, 64, 128),
    "tiny": (4, 8, 8, 8),
}


def lstm_spec(i: int, h: int, peephole: bool = False) -> str:
    peep = (", c[t-1]", ", c") if peephole else ("", "")
    return f"""network LSTM {{
    input x: {i}
    layer i: {h} sigmoid <- x, h[t-1]{peep[0]}
    layer f: {h} sigmoid <- x, h[t-1]{peep[0]}
    layer g: {h} tanh    <- x, h[t-1]
    c = f * c[t-1] + i * g
    layer o: {h} sigmoid <- x, h[t-1]{peep[1]}
    h = o * tanh(c)
    output h
}}"""


def gru_spec(i: int, h: int) -> str:
    return f"""network GRU {{
    input x: {i}
    layer r: {h} sigmoid <- x, h[t-1]
    layer z: {h} sigmoid <- x, h[t-1]
    layer nx: {h} <- x
    layer nh: {h} <- h[t-1]
    n = tanh(nx + r * nh)
    h = (1 - z) * n + z * h[t-1]
    output h
}}"""


SPECS: dict[str, Callable[[int, int], str]] = {
    "elman": lambda i, h: f"network E {{ input x: {i}\n layer h: {h} tanh <- x, h[t-1]\n output h }}",
    "lstm": lstm_spec,
    "gru": gru_spec,
    "lstm_peephole": lambda i, h: lstm_spec(i, h, peephole=True),
    "jordan": lambda i, h: f"network J {{ input x: {i}\n layer h: {h} tanh <- x, y[t-1]\n"
                           f" layer y: {h} tanh <- h\n output y }}",
    "topdown": lambda i, h: f"network TD {{ input x: {i}\n layer a: {h} tanh <- x, a[t-1], b[t-1]\n"
                            f" layer b: {h} tanh <- a, b[t-1]\n output b }}",
    "skip2": lambda i, h: f"network S {{ input x: {i}\n layer h: {h} tanh <- x, h[t-1], h[t-2]\n output h }}",
}


def plain_loop(case: str, net: rnndsl.CompiledNetwork) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same maths as a straightforward hand-written PyTorch loop, with the spec's weights."""
    W = net.weight  # noqa: N806

    def lin(layer: str, *xs: torch.Tensor) -> torch.Tensor:
        out = net.bias(layer)
        for j, x in enumerate(xs):
            out = out + x @ W(layer, j).t()
        return out

    def run(x: torch.Tensor) -> torch.Tensor:
        b, steps, _ = x.shape
        hsize = net.network.outputs and net.network[net.network.outputs[0].name].size
        zero = x.new_zeros(b, hsize)
        s = {"h": zero, "h2": zero, "c": zero, "y": zero, "a": zero, "b": zero}
        outs = []
        for t in range(steps):
            xt = x[:, t]
            if case == "elman":
                s["h"] = torch.tanh(lin("h", xt, s["h"]))
            elif case in ("lstm", "lstm_peephole"):
                peep = (s["c"],) if case == "lstm_peephole" else ()
                i = torch.sigmoid(lin("i", xt, s["h"], *peep))
                f = torch.sigmoid(lin("f", xt, s["h"], *peep))
                g = torch.tanh(lin("g", xt, s["h"]))
                s["c"] = f * s["c"] + i * g
                o = torch.sigmoid(lin("o", xt, s["h"], *((s["c"],) if peep else ())))
                s["h"] = o * torch.tanh(s["c"])
            elif case == "gru":
                r, z = torch.sigmoid(lin("r", xt, s["h"])), torch.sigmoid(lin("z", xt, s["h"]))
                n = torch.tanh(lin("nx", xt) + r * lin("nh", s["h"]))
                s["h"] = (1 - z) * n + z * s["h"]
            elif case == "jordan":
                h = torch.tanh(lin("h", xt, s["y"]))
                s["y"] = s["h"] = torch.tanh(lin("y", h))
            elif case == "topdown":
                s["a"] = torch.tanh(lin("a", xt, s["a"], s["b"]))
                s["b"] = s["h"] = torch.tanh(lin("b", s["a"], s["b"]))
            elif case == "skip2":
                s["h"], s["h2"] = torch.tanh(lin("h", xt, s["h"], s["h2"])), s["h"]
            outs.append(s["h"])
        return torch.stack(outs, 1)

    return run


def torch_nn(case: str, net: rnndsl.CompiledNetwork, i: int, h: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torch.nn's fused module for the standard cells, holding the spec's weights."""
    gates = {"elman": (nn.RNN, ["h"]), "lstm": (nn.LSTM, ["i", "f", "g", "o"]), "gru": (nn.GRU, ["r", "z", "nx"])}
    if case not in gates:
        return None
    cls, names = gates[case]
    mod = cls(i, h, batch_first=True).to(net.like.device)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.cat([net.weight(n, 0) for n in names]))
        hh = ["r", "z", "nh"] if case == "gru" else names
        mod.weight_hh_l0.copy_(torch.cat([net.weight(n, 1 if n != "nh" else 0) for n in hh]))
        mod.bias_ih_l0.copy_(torch.cat([net.bias(n) for n in names]))
        mod.bias_hh_l0.zero_()
        if case == "gru":
            mod.bias_ih_l0[2 * h:].copy_(net.bias("nx"))
            mod.bias_hh_l0[2 * h:].copy_(net.bias("nh"))
    return lambda x: mod(x)[0]


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


@dataclass
class Row:
    case: str
    size: str
    impl: str
    forward_ms: float
    train_ms: float


def measure(case: str, size: str, device: str, repeat: int) -> list[Row]:
    b, steps, i, h = SIZES[size]
    net = rnndsl.compile(SPECS[case](i, h)).to(device)
    x = torch.randn(b, steps, i, device=device, requires_grad=True)
    impls: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"rnndsl": lambda x: net(x)[net.network.outputs[0].name]}
    impls["plain loop"] = plain_loop(case, net)
    fused = torch_nn(case, net, i, h)
    if fused is not None:
        impls["torch.nn"] = fused
    rows = []
    for name, fn in impls.items():
        with torch.no_grad():
            fwd = timed(lambda fn=fn: fn(x), repeat)  # type: ignore[misc]
        train = timed(lambda fn=fn: fn(x).sum().backward(), repeat)  # type: ignore[misc]
        rows.append(Row(case, size, name, fwd, train))
    return rows


def table(rows: list[Row]) -> str:
    out = ["| case | size | impl | forward ms | fwd+bwd ms | fwd ratio | fwd+bwd ratio |",
           "|---|---|---|---|---|---|---|"]
    ours = {(r.case, r.size): r for r in rows if r.impl == "rnndsl"}
    for r in rows:
        base = ours[r.case, r.size]
        ratio = ("", "") if r.impl == "rnndsl" else (f"{base.forward_ms / r.forward_ms:.2f}",
                                                      f"{base.train_ms / r.train_ms:.2f}")
        out.append(f"| {r.case} | {r.size} | {r.impl} | {r.forward_ms:.1f} | {r.train_ms:.1f} "
                   f"| {ratio[0]} | {ratio[1]} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", action="append", choices=list(SIZES), help="repeatable; default: standard, small, long")
    p.add_argument("--case", action="append", choices=list(SPECS), help="repeatable; default: all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default="docs/performance", help="path stem for .md and .json, or - to print only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [r for size in args.size or ["standard", "small", "long"] for case in args.case or list(SPECS)
            for r in measure(case, size, args.device, args.repeat)]
    where = (f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
             f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    text = (f"Measured with `python -m benchmarks.bench` on {where}. "
            "Ratio = rnndsl time / that implementation's time.\n\n")
    text += table(rows)
    print(text)
    if args.out != "-":
        Path(args.out + ".md").write_text("# Performance\n\n" + text + "\n")
        Path(args.out + ".json").write_text(json.dumps({"where": where, "rows": [r.__dict__ for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
