"""Memory: takes the LSTM case at one size, gives the peak memory of one training step per implementation.

Each implementation is measured in a fresh Python process (`python -m benchmarks.memory --impl NAME`),
so nothing another implementation allocated or cached can hide in or inflate its figure. The process
builds the network, runs one full training step as a warm-up (kernels loaded, code generated, oneDNN
primitives made), drops the gradients, then measures a second step (forward, backward of a fixed
output gradient, fresh gradients as after `zero_grad(set_to_none=True)`):

- CPU: the rise of the resident set size. The kernel's high-water mark (VmHWM) is reset to the current
  RSS just before the step (`echo 5 > /proc/self/clear_refs`), and the peak is VmHWM after the step
  minus VmRSS before it. glibc is told to map every block of 64 KiB or more on its own
  (MALLOC_MMAP_THRESHOLD_), so a freed tensor leaves the RSS at once and the figure follows live
  memory rather than the allocator's free lists. It counts everything the step touches: tensors,
  oneDNN scratch space, Python objects. Linux folds its RSS counts in batches, so the figures are a few
  pages off (a tiny step's rise can read slightly below zero).
- CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, minus what was allocated
  before the step: tensor memory, cuDNN workspace and reserve included.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["IMPLS", "METHOD", "measure"]

IMPLS = ("torch.nn", "rnndsl", "rnndsl, generated loop")
METHOD = {
    "cpu": "each implementation in a fresh process, one warm-up training step, then the rise of the resident "
    "set size during a second step: the kernel's high-water mark (VmHWM, reset through "
    "/proc/self/clear_refs just before the step) minus the RSS before it, with glibc mapping every block "
    "of 64 KiB or more on its own (MALLOC_MMAP_THRESHOLD_) so freed tensors leave the RSS at once. "
    "Counts everything the step touches (tensors, gradients, oneDNN scratch, Python objects). "
    '"rnndsl, generated loop" is the same spec compiled with fuse_cells=False.',
    "cuda": "each implementation in a fresh process, one warm-up training step, then "
    "torch.cuda.max_memory_allocated() during a second step minus the memory allocated before it "
    '(tensors, gradients, cuDNN workspace and reserve). "rnndsl, generated loop" is the same spec '
    "compiled with fuse_cells=False.",
}
_ROOT = Path(__file__).resolve().parent.parent


def measure(size: str, device: str, threads: int) -> list[dict]:
    """Peak training-step memory of each of `IMPLS`, each in its own process (run side by side)."""
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_="65536",
        PYTHONPATH=os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.memory",
                "--impl",
                impl,
                "--size",
                size,
                "--device",
                device,
                "--threads",
                str(threads),
            ],
            cwd=_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for impl in IMPLS
    ]
    rows = []
    for impl, proc in zip(IMPLS, procs, strict=True):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"memory measurement of {impl} failed:\n{err[-3000:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


# ---- the child process -------------------------------------------------------------------------


def _status(key: str) -> int:
    """A /proc/self/status field in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024  # type: ignore[union-attr]


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmHWM") <= _status("VmRSS") + (1 << 20)
    except OSError:
        return False


def _child(impl: str, size_name: str, device: str, threads: int) -> dict:
    import rnndsl
    from benchmarks.cases import CASES, SIZES, Weights

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    size, case = SIZES[size_name], CASES["lstm"]
    net = rnndsl.compile(case.spec(size.inputs, size.hidden), fuse_cells=impl != "rnndsl, generated loop").to(device)
    if impl == "torch.nn":
        assert case.torch_nn is not None
        mod = case.torch_nn(Weights.of(net), size.inputs, size.hidden)
        del net
        fn, params = (lambda x: mod(x)[0]), list(mod.parameters())
    else:
        fn, params = (lambda x: net(x).h), list(net.parameters())
    x = torch.randn(size.batch, size.steps, size.inputs, device=device)
    gy = torch.randn(size.batch, size.steps, size.hidden, device=device)

    def step() -> None:
        fn(x).backward(gy)

    step()
    for p in params:
        p.grad = None
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return {
            "impl": impl,
            "peak_bytes": torch.cuda.max_memory_allocated() - before,
            "method": "torch.cuda.max_memory_allocated, fresh process",
        }
    if not _reset_peak():
        return {"impl": impl, "peak_bytes": None, "method": "unavailable: /proc/self/clear_refs cannot reset VmHWM"}
    before = _status("VmRSS")
    step()
    return {"impl": impl, "peak_bytes": _status("VmHWM") - before, "method": "RSS high-water mark, fresh process"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="one implementation's training-step memory (run by benchmarks.bench)")
    p.add_argument("--impl", choices=IMPLS, required=True)
    p.add_argument("--size", default="standard")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(_child(args.impl, args.size, args.device, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
