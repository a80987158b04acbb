"""The linear recurrence alone: `h = a * h[t-1] + b` over (B, T, H), with `a` and `b` given, as rnndsl's
`K.linear_scan` (the C kernel, or its torch fallback) and as a per-step loop on autograd (`unbind`, one
`addcmul` a step: the loop one writes by hand). Forward (no grad) and forward+backward, medians of interleaved
calls, one thread.

    python -m benchmarks.linear_scan [--batch 16 --steps 1000 --hidden 128 --repeat 11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from rnndsl.backend import kernels as K
from rnndsl.backend import native

Scan = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def per_step(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    h, out = start, []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1), strict=True):
        h = torch.addcmul(b_t, a_t, h)
        out.append(h)
    return torch.stack(out, 1)


def kernel(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    return K.linear_scan(a, b, start, None, False, a.shape[1])


def measure(fns: dict[str, Scan], batch: int, steps: int, hidden: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Median ms (forward, forward+backward) of each function on the same random operands."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(batch, steps, hidden, generator=gen), torch.randn(batch, steps, hidden, generator=gen)
    start, grad = torch.zeros(batch, hidden), torch.randn(batch, steps, hidden, generator=gen)
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(a, b, start)
            t1 = time.perf_counter()
            la, lb = a.clone().requires_grad_(), b.clone().requires_grad_()
            t2 = time.perf_counter()
            fn(la, lb, start).backward(grad)
            t3 = time.perf_counter()
            times[name][0].append(t1 - t0)
            times[name][1].append(t3 - t2)
    return {n: (statistics.median(f) * 1e3, statistics.median(t) * 1e3) for n, (f, t) in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeat", type=int, default=11)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    path = "C kernel" if native.scan_kernel() is not None else f"torch fallback ({native.why_not()})"
    found = measure(
        {"per-step loop": per_step, "linear_scan": kernel}, args.batch, args.steps, args.hidden, args.repeat
    )
    print(f"B={args.batch} T={args.steps} H={args.hidden}, 1 thread, linear_scan on its {path}:")
    for name, (fwd, both) in found.items():
        print(f"  {name:<14} forward {fwd:8.2f} ms   forward+backward {both:8.2f} ms")
    (lf, lb), (kf, kb) = found["per-step loop"], found["linear_scan"]
    print(f"  linear_scan: {lf / kf:.1f}x faster forward, {lb / kb:.1f}x forward+backward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
