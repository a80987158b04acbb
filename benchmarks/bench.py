"""Benchmark: rnndsl against torch.nn and hand-written loops, timed side by side in one process.

    python -m benchmarks.bench                      # CPU: all cases at the standard, small, long and step sizes
    python -m benchmarks.bench --size small --case jordan --out -     # one case, printed only
    python -m benchmarks.bench --device cuda --out docs/performance_cuda
    python -m benchmarks.bench --size tiny --out -   # a smoke run (memory and compile times kept tiny too)

Writes docs/performance.md (ratio tables, targets met or not) and docs/performance.json (every sample).
Ratios are rnndsl's time over the baseline's: below 1.0 means rnndsl is faster.

The pieces, in the order a run uses them: `cases` (each spec and its baselines), `loops` (the
hand-written loops), `timing` (samples, and torch.compile time-boxed), `compile_time` (spec to
module), `memory` (a training step's peak, each implementation in a fresh process), `report`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import rnndsl
from benchmarks import compile_time, deploy, memory, report
from benchmarks.cases import CASES, SIZES, Case, Impl, build
from benchmarks.timing import compile_plain, time_impls
from rnndsl.backend import native

__all__ = ["main", "measure_case"]

_ROOT = Path(__file__).resolve().parent.parent
CUSTOM = [name for name, case in CASES.items() if case.custom]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def environment(args: argparse.Namespace, argv: list[str]) -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    device = args.device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, cuDNN "
        device += f"{torch.backends.cudnn.version()})"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks.bench", *argv]),
        "commit": _commit(),
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "rnndsl", "benchmarks"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _checker(
    ref: torch.Tensor, atol: float, where: str, diffs: dict[str, float]
) -> Callable[[Impl, torch.Tensor], None]:
    """Checks an implementation's forward output against rnndsl's (`ref`), keeping the difference."""

    def check(impl: Impl, y: torch.Tensor) -> None:
        if impl.name == "rnndsl":
            return
        diff = (y - ref).abs().max().item() if y.shape == ref.shape and y.numel() else 0.0
        if y.shape != ref.shape or not diff <= atol:
            raise AssertionError(
                f"{where}: {impl.name} differs from rnndsl by {diff:.3g} (shape "
                f"{tuple(y.shape)} vs {tuple(ref.shape)}); the benchmark compares the same maths"
            )
        diffs[impl.name] = diff

    return check


def measure_case(case: Case, size_name: str, args: argparse.Namespace) -> dict:
    """Time every implementation of one case at one size; the row docs/performance.json keeps."""
    size, where = SIZES[size_name], f"{case.name} at {size_name}"
    torch.manual_seed(0)
    _, impls = build(case, size, args.device)
    x = torch.randn(size.batch, size.steps, size.inputs, device=args.device)
    with torch.no_grad():
        ref = impls[0].fn(x)
    gy = torch.randn_like(ref)
    diffs: dict[str, float] = {}
    compiled = None
    if size_name in args.compile_sizes and case.name in args.compile_cases:
        _log(f"  torch.compile of the plain loop ({where}), each graph time-boxed to {args.compile_budget:.0f} s")
        plain = next(i for i in impls if i.name == "plain loop")
        compiled = compile_plain(plain, x, gy, args.device, args.compile_budget)
        if compiled.impl is not None:
            impls.append(compiled.impl)
    modes = {"torch.compile": compiled.modes} if compiled else None
    samples = time_impls(
        impls,
        x,
        gy,
        args.device,
        args.repeat,
        args.min_repeat,
        args.budget,
        modes,
        check=_checker(ref, args.atol, where, diffs),
    )
    row = {
        "case": case.name,
        "size": size_name,
        "custom": case.custom,
        "linear": case.linear,
        "max_abs_diff": diffs,
        "impls": {
            name: {
                "forward_ms": s.median_ms("forward"),
                "train_ms": s.median_ms("train"),
                "forward_samples_ms": [t * 1000 for t in s.forward],
                "train_samples_ms": [t * 1000 for t in s.train],
            }
            for name, s in samples.items()
        },
    }
    if compiled is not None:
        row["torch_compile"] = {"forward_s": compiled.forward_s, "train_s": compiled.train_s, "note": compiled.note}
    return row


def _summary(row: dict) -> str:
    def r(b: str, mode: str) -> str:
        x = report.ratio(row, b, mode)
        return "-" if x is None else f"{x:.2f}"

    parts = [f"{b} {r(b, 'forward')}/{r(b, 'train')}" for b in report.BASELINES if b in row["impls"]]
    ours = row["impls"]["rnndsl"]
    return (
        f"{row['case']:14s} {row['size']:8s} rnndsl {ours['forward_ms']:.1f}/{ours['train_ms']:.1f} ms; "
        f"ratios fwd/fwd+bwd: " + ", ".join(parts)
    )


def _compile_scope(args: argparse.Namespace, rows: list[dict]) -> str:
    """Where torch.compile ran, where it did not, and why, in the run's own figures."""
    sizes = [s for s in args.size if s in args.compile_sizes]
    if not sizes or not args.compile_cases:
        default = " (the default on cuda, to keep the run short)" if args.device.startswith("cuda") else ""
        return f"torch.compile did not run: none of this run's sizes is in --compile-sizes{default}."
    graphs = [
        (t, f"{r['case']} at {r['size']}, {mode} graph")
        for r in rows
        if (c := r.get("torch_compile"))
        for mode, t in (("training", c["train_s"]), ("forward", c["forward_s"]))
        if t is not None
    ]
    out = [f"It ran at {', '.join(sizes)} for {', '.join(args.compile_cases)}."]
    if graphs:
        out.append(f"The slowest graph that compiled took {max(graphs)[0]:.0f} s ({max(graphs)[1]}).")
    late = [f"{r['case']} at {r['size']}" for r in rows if (c := r.get("torch_compile")) and c["note"]]
    if late:
        out.append(f"Past the time box: {', '.join(late)}.")
    skipped = [s for s in args.size if s not in args.compile_sizes and s in ("standard", "long")]
    if skipped:
        out.append(
            f"Not compiled at {' and '.join(skipped)}: dynamo unrolls every step into the graph, so the "
            "standard size (100 steps, like small) compiles graphs as long as small's and long (1,000 steps) "
            "graphs ten times longer; with small's compile times above that would not fit the time box. "
            "Pass --compile-sizes to try them."
        )
    if any(name not in args.compile_cases for name in (args.case or CASES)):
        out.append(
            "Cases without a torch.compile column were left out to keep the run short (for the standard "
            "cells torch.nn is the reference); pass --compile-cases to add them."
        )
    return " ".join(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--size", action="append", choices=list(SIZES), help="repeatable; default: standard, small, long, step"
    )
    p.add_argument("--case", action="append", choices=list(CASES), help="repeatable; default: all")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        help="torch threads (default: the CPUs this process may use)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed samples per implementation and mode (default 5 on cpu, 3 on cuda)",
    )
    p.add_argument("--min-repeat", type=int, default=3, help="fewest samples when a run is slow (default 3)")
    p.add_argument(
        "--budget",
        type=float,
        default=4.0,
        help="seconds of samples per implementation and mode before taking fewer (default 4)",
    )
    p.add_argument("--atol", type=float, default=1e-4, help="largest output difference from rnndsl's allowed")
    p.add_argument(
        "--compile-sizes",
        nargs="*",
        choices=list(SIZES),
        default=None,
        help="sizes where torch.compile of the plain loop runs (default: small on cpu, none on cuda; "
        "none: give the flag no value)",
    )
    p.add_argument(
        "--compile-cases",
        nargs="*",
        choices=list(CASES),
        default=None,
        help=f"cases where it runs (default: the custom topologies, {', '.join(CUSTOM)})",
    )
    p.add_argument("--compile-budget", type=float, default=120.0, help="time box per compiled graph, s (default 120)")
    p.add_argument(
        "--memory-size",
        choices=[*SIZES, "none"],
        default=None,
        help="size of the LSTM training-memory comparison (default standard, tiny in a tiny-only run; none skips it)",
    )
    p.add_argument(
        "--spec-steps",
        nargs="*",
        type=int,
        default=None,
        help="sequence lengths of the example-spec compile times (default 10 10000, 10 20 in a tiny-only "
        "run; none: give the flag no value)",
    )
    p.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process import/compile timing")
    p.add_argument("--out", default="docs/performance", help="path stem for .md and .json, or - to print only")
    return p


def _defaults(args: argparse.Namespace) -> None:
    """Fill the defaults that depend on the device or on a tiny-only (smoke) run."""
    args.size = args.size or ["standard", "small", "long", "step"]
    cuda, tiny = args.device.startswith("cuda"), args.size == ["tiny"]
    if args.memory_size is None:
        args.memory_size = "tiny" if tiny else "standard"
    if args.spec_steps is None:
        args.spec_steps = [10, 20] if tiny else [10, 10_000]
    if args.repeat is None:  # GPU samples vary less, and the default cuda run should stay near 4 minutes
        args.repeat = 3 if cuda else 5
    if args.compile_sizes is None:  # on a GPU, compiling even one unrolled loop takes a good part of the run
        args.compile_sizes = [] if cuda else ["small"]
    args.compile_cases = CUSTOM if args.compile_cases is None else args.compile_cases


def _settings(args: argparse.Namespace, rows: list[dict]) -> dict:
    shapes = {s: [getattr(SIZES[s], f) for f in ("batch", "steps", "inputs", "hidden")] for s in SIZES}
    return {
        "sizes": args.size,
        "size_shapes": shapes,
        "device": args.device,
        "threads": args.threads,
        "repeat": args.repeat,
        "min_repeat": args.min_repeat,
        "budget_s": args.budget,
        "atol": args.atol,
        "compile_sizes": args.compile_sizes,
        "compile_cases": args.compile_cases,
        "compile_budget_s": args.compile_budget,
        "compile_scope_note": _compile_scope(args, rows),
    }


def _extras(args: argparse.Namespace, data: dict) -> None:
    """The example specs' compile times, the training-memory comparison and the linear-scan kernel's first build."""
    if any(CASES[name].linear for name in args.case or CASES):
        data["linear_kernel_build_s"] = _first_build()
    if any(CASES[name].custom for name in args.case or CASES) and args.device == "cpu":
        data["step_kernel_build_s"] = _first_step_build()
    if args.spec_steps:
        _log("compile time of the example specs")
        data["spec_compile"] = compile_time.spec_compile_times(args.spec_steps, args.device)
        if not args.no_cold_start:
            data["cold_start"] = compile_time.cold_start()
    if args.memory_size != "none":
        _log(f"training-step memory at {args.memory_size}, each implementation in a fresh process")
        rows = memory.measure(args.memory_size, args.device, args.threads)
        data["memory"] = {"size": args.memory_size, "rows": rows, "method": memory.METHOD[args.device.split(":")[0]]}


def _first_build() -> float | None:
    """Seconds to build the linear-scan kernel into an empty cache (None where it cannot be built)."""
    saved = os.environ.get("RNNDSL_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RNNDSL_CACHE"] = cache
        native.scan_kernel.cache_clear()
        start = time.perf_counter()
        built = native.scan_kernel() is not None
        seconds = time.perf_counter() - start
    if saved is None:
        del os.environ["RNNDSL_CACHE"]
    else:
        os.environ["RNNDSL_CACHE"] = saved
    native.scan_kernel.cache_clear()
    return seconds if built else None


def _first_step_build() -> float | None:
    """Seconds the first call of the peephole LSTM (standard size) takes into an empty kernel cache, less what a
    second fresh module's first call takes (the library then built): building its C steps. None where they
    cannot be built."""
    saved = os.environ.get("RNNDSL_CACHE")
    spec, x = CASES["lstm_peephole"].spec(64, 64), torch.randn(2, 3, 64)
    firsts = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RNNDSL_CACHE"] = cache
        native.step_library.cache_clear()
        for _ in range(2):
            net = rnndsl.compile(spec)
            start = time.perf_counter()
            net(x)[net.network.outputs[0].name].sum().backward()
            firsts.append(time.perf_counter() - start)
        built = native.available() and any(Path(cache).glob("step-*.so"))
    if saved is None:
        del os.environ["RNNDSL_CACHE"]
    else:
        os.environ["RNNDSL_CACHE"] = saved
    native.step_library.cache_clear()
    return firsts[0] - firsts[1] if built else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    _defaults(args)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # every implementation in full float32
        torch.backends.cudnn.allow_tf32 = False
    start = time.perf_counter()
    rows = []
    for size in args.size:
        for name in args.case or list(CASES):
            rows.append(measure_case(CASES[name], size, args))
            _log(f"[{time.perf_counter() - start:6.0f} s] " + _summary(rows[-1]))
    data = {"environment": environment(args, argv), "settings": _settings(args, rows), "cases": rows}
    _extras(args, data)
    data["targets"] = report.targets(data)
    data["elapsed_s"] = time.perf_counter() - start
    text = report.markdown(data)
    if args.out == "-":
        print(text)
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".md").write_text(text + deploy.kept_section(Path(args.out + ".md")), encoding="utf-8")
    Path(args.out + ".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    _log(f"wrote {args.out}.md and {args.out}.json in {data['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
