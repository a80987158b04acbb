"""Attention benchmark: takes the g2p attention decoder, gives its time beside a hand-written PyTorch loop.

    python -m benchmarks.attention                    # the g2p shapes: batch 64, 9 letters, 10 phonemes
    python -m benchmarks.attention --batch 8 --repeat 3

The decoder is `Speaker` of examples/tasks/g2p_attention.rnn (additive attention over a 256-wide memory,
a GRU of 256 reading the phoneme and the context), teacher-forced as in training, with padded memories.
The hand-written loop is what one would write in PyTorch for the same model with the same weights: the
keys and the phoneme projections computed once for every step, one matmul for the query and the candidate's
hidden side, one for the context's three projections, `masked_fill` and `softmax` for the weights; it is
checked equal to rnndsl's output first. Both run forward (no_grad) and forward+backward, taking turns, one
sample each per round; the table gives medians and rnndsl's time over the hand-written loop's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

import rnndsl

SPEC = Path(__file__).resolve().parent.parent / "examples" / "tasks" / "g2p_attention.rnn"


def hand_written(net: rnndsl.CompiledNetwork) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """The decoder as a PyTorch loop over the compiled network's own parameters."""
    w = net.weight
    proj = net.init_projection["h"]
    hidden_side = torch.cat([w("q", 0), w("nh", 0)])  # both read h[t-1]: one matmul
    hidden_bias = torch.cat([torch.zeros(128), net.bias("nh")])
    context_side = torch.cat([w("r", "c"), w("z", "c"), w("nx", "c")])  # one matmul for the context's three
    gates_h = torch.cat([w("r", "h[t-1]"), w("z", "h[t-1]")])

    def run(enc: Tensor, context: Tensor, phone: Tensor, keep: Tensor) -> Tensor:
        keys = enc @ w("k", 0).t()  # (B, S, 128), once per word
        table = torch.cat([w("r", "phone"), w("z", "phone"), w("nx", "phone")]).t()  # (40, 768)
        bias = torch.cat([net.bias("r"), net.bias("z"), net.bias("nx")])
        tokens = (F.embedding(phone, table) + bias).unbind(1)  # every step's phoneme projections
        v = net.param("v")
        h = proj(context)
        ys = []
        for t in range(phone.shape[1]):
            qh = torch.addmm(hidden_bias, h, hidden_side.t())
            q, nh = qh[:, :128], qh[:, 128:]
            score = (torch.tanh(keys + q.unsqueeze(1)) * v).sum(-1).masked_fill(~keep, float("-inf"))
            c = (torch.softmax(score, -1).unsqueeze(-1) * enc).sum(1)
            pre = tokens[t] + c @ context_side.t()
            rz = torch.sigmoid(pre[:, :512] + h @ gates_h.t())
            r, z = rz[:, :256], rz[:, 256:]
            n = torch.tanh(pre[:, 512:] + r * nh)
            h = (1 - z) * n + z * h
            ys.append(torch.addmm(net.bias("y"), h, w("y", "h").t()) + c @ w("y", "c").t())
        return torch.stack(ys, 1)

    return run


def sample(fn: Callable[[], Tensor], backward: bool) -> float:
    start = time.perf_counter()
    if backward:
        fn().sum().backward()
    else:
        with torch.no_grad():
            fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attention", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--letters", type=int, default=9, help="memory positions (default 9: a long word)")
    p.add_argument("--phonemes", type=int, default=10, help="decoder steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = rnndsl.compile(SPEC, "Speaker")
    B, S, T = args.batch, args.letters, args.phonemes  # noqa: N806
    enc, context = torch.randn(B, S, 256), torch.randn(B, 128)
    phone, lengths = torch.randint(0, 40, (B, T)), torch.randint(2, S + 1, (B,))
    keep = torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)
    hand = hand_written(net)
    impls = {
        "rnndsl": lambda: net(enc=enc, context=context, phone=phone, memory_lengths={"enc": lengths}).y,
        "hand-written": lambda: hand(enc, context, phone, keep),
    }
    with torch.no_grad():
        torch.testing.assert_close(impls["rnndsl"](), impls["hand-written"](), atol=1e-5, rtol=1e-5)
    print(
        f"g2p attention decoder, batch {B}, {S} letters, {T} phonemes; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeat}\n"
    )
    print("| mode | rnndsl ms | hand-written ms | ratio |")
    print("| --- | --- | --- | --- |")
    for backward in (False, True):
        times: dict[str, list[float]] = {name: [] for name in impls}
        for fn in impls.values():  # warm-up
            sample(fn, backward)
            net.zero_grad(set_to_none=True)
        for _ in range(args.repeat):
            for name, fn in impls.items():
                times[name].append(sample(fn, backward))
                net.zero_grad(set_to_none=True)
        ours, theirs = statistics.median(times["rnndsl"]), statistics.median(times["hand-written"])
        mode = "forward+backward" if backward else "forward"
        print(f"| {mode} | {ours * 1e3:.2f} | {theirs * 1e3:.2f} | {ours / theirs:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
