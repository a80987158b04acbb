"""A/B of the kept call signature, in one process: calls that match the last call's signature skip `validate` (B,
the default) against every call validated (A: `validate.Signature` patched to keep and match nothing), the two
interleaved, medians of `--repeat`.

    python -m benchmarks.calls --threads 1                # the benchmark cases at the step size (8 x 1 x 64 -> 128):
                                                          # a call under no_grad, one with a state, forward+backward
    python -m benchmarks.calls --streaming --threads 2    # six examples/*.rnn: 100 calls of one step at batch 1,
                                                          # each given the last one's state; beam search on
                                                          # examples/tasks/names_gen.rnn

Prints one line per case: A's and B's µs (or ms) and B / A (below 1: B is faster).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any
from unittest.mock import patch

import torch

import rnndsl
from benchmarks.cases import CASES, SIZES
from rnndsl.runtime.validate import Signature

ROOT = Path(__file__).resolve().parent.parent
STREAMED = ("lstm", "gru", "elman", "peephole_lstm", "qrnn", "layernorm_lstm")


def _validating() -> AbstractContextManager[Any]:
    """Variant A: no signature is kept, so every call is validated (as before the kept signature)."""
    both = ExitStack()
    both.enter_context(patch.object(Signature, "of", classmethod(lambda cls, *args: None)))
    both.enter_context(patch.object(Signature, "match", lambda self, *args: None))
    return both


def interleaved(run: Callable[[], Any], calls: int, repeat: int) -> tuple[float, float]:
    """Median seconds a call of `run` (A, B), the two alternating in blocks of `calls`."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for variant in (0, 1):
            with _validating() if variant == 0 else nullcontext():
                start = time.perf_counter()
                for _ in range(calls):
                    run()
                times[variant].append((time.perf_counter() - start) / calls)
    return statistics.median(times[0]), statistics.median(times[1])


def step_cases(cases: list[str], calls: int, repeat: int) -> list[tuple[str, float, float]]:
    """(label, A, B) for each case at the step size: no_grad, no_grad with a state, forward+backward."""
    return [row for case in cases for row in _step_case(case, calls, repeat)]


def _step_case(case: str, calls: int, repeat: int) -> list[tuple[str, float, float]]:
    size = SIZES["step"]
    net = rnndsl.compile(CASES[case].spec(size.inputs, size.hidden))
    out = net.network.outputs[0].name
    x = torch.randn(size.batch, size.steps, size.inputs, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        state = net(x).state
        rows = [
            (f"{case} no_grad", *interleaved(lambda: net(x), calls, repeat)),
            (f"{case} state", *interleaved(lambda: net(x, state=state), calls, repeat)),
        ]
    return [*rows, (f"{case} fwd+bwd", *interleaved(lambda: net(x)[out].sum().backward(), calls, repeat))]


def streaming(specs: list[str], steps: int, repeat: int) -> list[tuple[str, float, float]]:
    """(label, A, B): `steps` calls of one step at batch 1, each given the last call's state; then beam search."""
    rows = []
    for spec in specs:
        net = rnndsl.compile(ROOT / "examples" / f"{spec}.rnn")
        x = torch.randn(1, steps, net.network.inputs[0].size, generator=torch.Generator().manual_seed(0))

        def stream(net: Any = net, x: torch.Tensor = x) -> None:
            with torch.no_grad():
                state = None
                for t in range(steps):
                    state = net(x[:, t : t + 1], state=state).state

        rows.append((f"{spec}.rnn {steps} steps", *interleaved(stream, 1, repeat)))
    gen = rnndsl.compile(ROOT / "examples" / "tasks" / "names_gen.rnn").eval()
    sex = torch.eye(2).repeat(8, 1)

    def beam() -> None:
        with torch.no_grad():
            gen.generate(12, beam=5, sex=sex)

    rows.append(("names_gen beam 5 x 12", *interleaved(beam, 1, repeat)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=list(CASES), help="benchmark cases (default: eight)")
    p.add_argument("--streaming", action="store_true", help="streaming and beam search on the examples instead")
    p.add_argument("--example", action="append", choices=list(STREAMED), help="examples to stream (default: all)")
    p.add_argument("--steps", type=int, default=100, help="calls of one step a stream")
    p.add_argument("--calls", type=int, default=200, help="calls a timed block (step cases)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=21)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"A = every call validated, B = matching calls skip validation; medians of {args.repeat}")
    if args.streaming:
        rows, unit, scale = streaming(args.example or list(STREAMED), args.steps, args.repeat), "ms", 1e3
    else:
        default = ["elman", "gru", "lstm", "gru_bidir", "lstm_peephole", "jordan", "qrnn", "layernorm_lstm"]
        rows, unit, scale = step_cases(args.case or default, args.calls, args.repeat), "µs", 1e6
    for label, a, b in rows:
        print(f"{label:28} A {a * scale:9.1f} {unit}  B {b * scale:9.1f} {unit}  B/A {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
