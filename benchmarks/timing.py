"""Timing: takes implementations of one case, gives their forward and forward+backward times.

Every implementation runs once in each mode before it is timed (TorchScript twice: its profiling
executor optimises on the second call), then once more to size its samples: a first call can build code
(rnndsl generates a variant at its first call), and sizing on it gave one-call samples where runs were due.
Then the implementations take turns, one sample each per round, so a slow drift of the machine touches
them all alike. Each sample is bracketed by a device synchronise and runs with Python's garbage collector
off. A call shorter than `SAMPLE_S` is sampled as a run of consecutive calls lasting about that long, its
time divided by their number: one call of a few hundred microseconds (the step size) is at the mercy of the
timer, of interrupts and of the caches the other implementations' turns left cold, and two runs of it
differed by up to 20%. `forward` runs under `no_grad`; `train` clears the gradients (as
`zero_grad(set_to_none=True)` does), runs forward and backpropagates a fixed random output gradient.

torch.compile of the plain loop is built here too, its compilation time-boxed with SIGALRM.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmarks.cases import Impl

__all__ = ["CompileResult", "Samples", "TimeBox", "compile_plain", "time_impls"]


@dataclass
class Samples:
    forward: list[float]  # seconds
    train: list[float]

    def median_ms(self, mode: str) -> float | None:
        xs = self.forward if mode == "forward" else self.train
        return statistics.median(xs) * 1000 if xs else None


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


SAMPLE_S = 0.005  # the shortest sample: shorter calls are timed in runs


def _one(fn: Callable[[], object], sync: Callable[[], None], calls: int = 1) -> tuple[float, object]:
    """(seconds a call, what the last call returned), timing `calls` consecutive calls."""
    sync()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            out = fn()
        sync()
        return (time.perf_counter() - start) / calls, out
    finally:
        gc.enable()


def _calls(impl: Impl, x: Tensor, gy: Tensor) -> dict[str, Callable[[], object]]:
    def forward() -> object:
        with torch.no_grad():
            return impl.fn(x)

    def train() -> None:
        for p in impl.params:
            p.grad = None
        impl.fn(x).backward(gy)

    return {"forward": forward, "train": train}


def time_impls(
    impls: list[Impl],
    x: Tensor,
    gy: Tensor,
    device: str,
    repeat: int,
    min_repeat: int,
    budget_s: float,
    modes: dict[str, tuple[str, ...]] | None = None,
    check: Callable[[Impl, Tensor], None] | None = None,
) -> dict[str, Samples]:
    """Median-ready samples per implementation: `repeat` each, fewer (not under `min_repeat`) for a
    mode whose single run takes so long that `repeat` of them would pass `budget_s`.

    `modes` limits an implementation to some modes (a torch.compile whose training graph timed out);
    `check` sees each implementation's first forward output (the warm-up doubles as the check).
    """
    sync = _sync(device)
    plan: dict[tuple[str, str], tuple[Callable[[], object], int, int]] = {}  # (call, samples, calls a sample)
    for impl in impls:
        for mode, call in _calls(impl, x, gy).items():
            if modes is not None and mode not in modes.get(impl.name, ("forward", "train")):
                continue
            for i in range(impl.warmup):
                _, y = _one(call, sync)
                if check is not None and mode == "forward" and i == 0:
                    check(impl, y)  # type: ignore[arg-type]
            warm, _ = _one(call, sync)  # after the warm-up: a first call may have built code
            calls = max(1, round(SAMPLE_S / max(warm, 1e-9)))
            samples = max(min(min_repeat, repeat), min(repeat, int(budget_s / max(warm * calls, 1e-9))))
            plan[impl.name, mode] = call, samples, calls
    out = {impl.name: Samples([], []) for impl in impls}
    for round_ in range(max((n for _, n, _ in plan.values()), default=0)):
        for (name, mode), (call, n, calls) in plan.items():
            if round_ < n:
                getattr(out[name], mode).append(_one(call, sync, calls)[0])
    return out


# ---- torch.compile, time-boxed ------------------------------------------------------------------


class TimeBox(BaseException):
    """Raised inside a compilation that ran past its budget (a BaseException, so that torch's own
    `except Exception` handlers do not wrap it)."""


@contextlib.contextmanager
def _time_box(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (SIGALRM: the main thread of a Unix process only)."""
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise TimeBox

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class CompileResult:
    """torch.compile of the plain loop: the implementation (None if no mode compiled in time), the
    modes it runs in, and each mode's compile time in seconds (None: timed out or not kept)."""

    impl: Impl | None
    modes: tuple[str, ...]
    forward_s: float | None
    train_s: float | None
    note: str


def _stop_compile_workers() -> None:
    try:
        from torch._inductor.async_compile import shutdown_compile_workers
    except ImportError:  # an older torch: its workers finish on their own
        return
    shutdown_compile_workers()


def compile_plain(plain: Impl, x: Tensor, gy: Tensor, device: str, budget_s: float) -> CompileResult:
    """Compile the plain loop for training and for inference (separate graphs): each compile time is
    the wall time of the first call, with torch's compile caches off, abandoned past `budget_s`.

    Training goes first: it is the larger graph, and if it times out the reset that clears the
    half-built state loses nothing already compiled.
    """
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    torch._inductor.config.force_disable_caches = True  # a cold compile each time, as a user's first run
    impl = Impl("torch.compile", torch.compile(plain.fn), plain.params)
    sync = _sync(device)
    times: dict[str, float | None] = {"train": None, "forward": None}
    notes = []
    for mode in ("train", "forward"):
        try:
            with _time_box(budget_s):
                times[mode] = _one(_calls(impl, x, gy)[mode], sync)[0]
        except TimeBox:
            _stop_compile_workers()  # an abandoned compile must not keep the CPUs busy while others are timed
            torch._dynamo.reset()  # drop the half-built graph, and with it anything compiled before
            impl = Impl("torch.compile", torch.compile(plain.fn), plain.params)
            notes.append(
                f"the {'training' if mode == 'train' else 'forward'} graph did not compile within {budget_s:.0f} s"
            )
            if mode == "forward" and times["train"] is not None:
                times["train"] = None
                notes.append("the reset after it dropped the training graph")
    modes = tuple(m for m in ("forward", "train") if times[m] is not None)
    return CompileResult(impl if modes else None, modes, times["forward"], times["train"], "; ".join(notes))
