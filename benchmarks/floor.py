"""Floor: how long the matrix products alone of a custom loop's forward+backward take, at a size.

    python -m benchmarks.floor --size standard                  # every custom case
    python -m benchmarks.floor --size standard --case topdown

For each custom case, the products the generated code runs (read off the compiled network's loop: per
step, one product per delayed source of each matmul group, forward; in backward, one input-gradient
product per source a step and one weight-gradient product per source over all steps; the hoisted
projection's forward and its weight's gradient, and its source's gradient where the source is not the
benchmark's input, which needs none), timed alone on random tensors of the same shapes, beside
rnndsl's and the plain loop's forward+backward in the same process. The floor is what any
implementation doing those products pays on this machine; `floor / plain loop` is the best ratio to
the plain loop that removing everything else could give.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.cases import CASES, SIZES, build
from rnndsl.graphs.schedule import schedule
from rnndsl.lang import syntax as s

__all__ = ["products"]


def products(case: str, size: str) -> list[tuple[str, Callable[[], object]]]:
    """The case's matrix products as (what, a function running them all for one forward+backward)."""
    sz = SIZES[size]
    net, _ = build(CASES[case], sz, "cpu")
    b, t = sz.batch, sz.steps
    out: list[tuple[str, Callable[[], object]]] = []
    loop_of = {n: stage.nodes for stage in schedule(net.network) if stage.is_loop for n in stage.nodes}
    for node in net.network.nodes:
        if node.op != "layer":
            continue
        for j, src in enumerate(node.sources):
            n_in = net.weight(node.name, j).shape[1]
            w = torch.randn(n_in, node.size)
            # per step when the source reads the layer's own loop; else hoisted (all steps at once)
            loop = any(isinstance(r, s.Ref) and r.name in loop_of.get(node.name, ()) for r in s.refs(src))
            if loop:  # per step: the forward product and the input gradient; once: the weight gradient
                a, z = torch.randn(b, n_in), torch.randn(b, node.size)
                big_a, big_z = torch.randn(t * b, n_in), torch.randn(t * b, node.size)

                def run(a=a, z=z, w=w, big_a=big_a, big_z=big_z) -> None:
                    for _ in range(t):
                        torch.addmm(z, a, w)
                        torch.mm(z, w.t())
                    torch.mm(big_a.t(), big_z)

                out.append((f"{node.name} <- {j} per step", run))
            else:  # hoisted: all steps at once, forward, the weight's gradient and the source's (not the data's)
                big_a, big_z = torch.randn(t * b, n_in), torch.randn(t * b, node.size)
                data = all(net.network[r.name].op == "input" for r in s.refs(src))

                def run(w=w, big_a=big_a, big_z=big_z, data=data) -> None:
                    torch.mm(big_a, w)
                    if not data:  # the benchmark's input needs no gradient
                        torch.mm(big_z, w.t())
                    torch.mm(big_a.t(), big_z)

                out.append((f"{node.name} <- {j} hoisted", run))
    return out


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="standard", choices=list(SIZES))
    p.add_argument("--case", action="append", choices=[n for n, c in CASES.items() if c.custom])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sz = SIZES[args.size]
    print(f"size {args.size}, {args.threads} threads, median of {args.repeat}; ms")
    print("| case | products alone | rnndsl fwd+bwd | plain loop fwd+bwd | products / plain loop | rnndsl / plain |")
    print("|---|---|---|---|---|---|")
    for name in args.case or [n for n, c in CASES.items() if c.custom]:
        _, impls = build(CASES[name], sz, "cpu")
        x = torch.randn(sz.batch, sz.steps, sz.inputs)
        gy = torch.randn_like(impls[0].fn(x))
        timed = {}
        for impl in (i for i in impls if i.name in ("rnndsl", "plain loop")):

            def train(impl=impl, x=x, gy=gy) -> None:
                for q in impl.params:
                    q.grad = None
                impl.fn(x).backward(gy)

            timed[impl.name] = _median_ms(train, args.repeat)
        floor = sum(_median_ms(fn, args.repeat) for _, fn in products(name, args.size))
        ours, plain = timed["rnndsl"], timed["plain loop"]
        print(f"| {name} | {floor:.0f} | {ours:.0f} | {plain:.0f} | {floor / plain:.2f} | {ours / plain:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
