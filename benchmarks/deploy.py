"""Deploy benchmark: takes benchmark cases, gives onnxruntime's forward time beside rnndsl's in eager PyTorch.

    python -m benchmarks.deploy                           # lstm, peephole LSTM, Jordan at small, standard, long
    python -m benchmarks.deploy --size small --case jordan --repeat 5
    python -m benchmarks.deploy --write docs/performance.md   # the same as that file's last section

`--write` replaces the section that starts at `MARK` (or adds it at the end); `benchmarks.bench` keeps the
section when it rewrites the file.

Each case's spec is compiled (float32, eval mode) and exported with `to_onnx`; "export" is the time of
writing and checking the file (after a warm-up export: importing onnx is not counted), "session" of
onnxruntime loading it. The forward passes then take turns, one
sample each per round (so a drift of the machine touches both alike), with one intra-op thread each by
default; the table gives the medians and onnxruntime's time over rnndsl's. Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.cases import CASES, SIZES

CASE_NAMES = ("lstm", "lstm_peephole", "jordan")
MARK = "<!-- benchmarks.deploy -->"


def kept_section(path: Path) -> str:
    """The deploy section of a performance file, from its mark to the end ("" when it has none)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return "\n" + text[text.index(MARK) :] if MARK in text else ""


def write_section(path: Path, lines: list[str]) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    head = text[: text.index(MARK)] if MARK in text else text + "\n"
    path.write_text(head + MARK + "\n" + "\n".join(lines) + "\n", encoding="utf-8")


def measure(case: str, size: str, threads: int, repeat: int) -> dict[str, float]:
    import onnxruntime as ort

    shape = SIZES[size]
    net = __import__("rnndsl").compile(CASES[case].spec(shape.inputs, shape.hidden)).eval()
    x = torch.randn(shape.batch, shape.steps, shape.inputs)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = net.to_onnx(Path(tmp) / "net.onnx")
        exported = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        start = time.perf_counter()
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        loaded = time.perf_counter() - start
    name, feeds = sess.get_inputs()[0].name, {sess.get_inputs()[0].name: x.numpy()}
    assert name == net.network.inputs[0].name
    with torch.no_grad():
        expected = net(x)[net.network.outputs[0].name]
        got = torch.from_numpy(sess.run(None, feeds)[0])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # timing the same computation
    times: dict[str, list[float]] = {"rnndsl": [], "onnxruntime": []}
    for _ in range(repeat):
        with torch.no_grad():
            start = time.perf_counter()
            net(x)
            times["rnndsl"].append(time.perf_counter() - start)
        start = time.perf_counter()
        sess.run(None, feeds)
        times["onnxruntime"].append(time.perf_counter() - start)
    eager, onnx_rt = statistics.median(times["rnndsl"]), statistics.median(times["onnxruntime"])
    return {"rnndsl": eager, "onnxruntime": onnx_rt, "export": exported, "session": loaded}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.deploy", description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=list(CASES), help=f"repeatable; default {', '.join(CASE_NAMES)}")
    p.add_argument("--size", action="append", choices=list(SIZES), help="repeatable; default small, standard, long")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and onnxruntime (default 1)")
    p.add_argument("--repeat", type=int, default=7, help="timed forward passes of each (default 7)")
    p.add_argument("--write", metavar="FILE", help="also write the table as FILE's deploy section")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    measure("jordan", "tiny", 1, 1)  # imports onnx and warms up: the first export would count them

    lines = [
        "## onnxruntime beside eager PyTorch (forward, CPU)",
        "",
        f"Written by `python -m benchmarks.deploy {' '.join(argv if argv is not None else sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, onnxruntime {ort.__version__}, {args.threads} intra-op thread(s) each, float32, median "
        f"of {args.repeat} forward passes taking turns. The ratio is onnxruntime's time over rnndsl's in eager "
        "PyTorch (below 1: onnxruntime is faster); export is `to_onnx` (write and check), session onnxruntime's load.",
        "",
        "| case | size (B, T, I, H) | rnndsl eager ms | onnxruntime ms | ratio | export ms | session ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    print("\n".join(lines), flush=True)
    for size in args.size or ["small", "standard", "long"]:
        for case in args.case or CASE_NAMES:
            s = SIZES[size]
            m = measure(case, size, args.threads, args.repeat)
            lines.append(
                f"| {case} | {size} ({s.batch}, {s.steps}, {s.inputs}, {s.hidden}) | {m['rnndsl'] * 1e3:.1f} | "
                f"{m['onnxruntime'] * 1e3:.1f} | {m['onnxruntime'] / m['rnndsl']:.2f} | {m['export'] * 1e3:.0f} | "
                f"{m['session'] * 1e3:.0f} |"
            )
            print(lines[-1], flush=True)
    if args.write:
        write_section(Path(args.write), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
