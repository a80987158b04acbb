"""Compile time: takes the example specs, gives how long rnndsl takes from spec text to a module that ran.

For each `examples/*.rnn` (its last network: the one that uses the others) and each sequence length:
`build` is `rnndsl.compile(text)` (parse, check, module with its parameters); `first call` is the
first forward, which also generates and `exec`s the code; `call` is the same module's next call of the
same input, straight after; `compile` = build + first call - call, the one-off cost a user waits for.
At 10,000 steps a call takes far longer than the compile, so each figure is the median over fresh
modules (`tries`) of that module's own pair of calls: the pairing cancels the machine's drift, the
median its outliers. `generate` times the code generation and `exec` alone on a fresh module, which
does not depend on T at all: a check on the subtraction.

torch has one-off costs of its own the first time it meets a shape (oneDNN builds an RNN primitive
per sequence length, which at 10,000 steps took seconds here); nn.LSTM pays them too, so a throwaway
module of the same spec runs once first and its first call is reported apart (`torch warm-up`).
Batch 1 under `no_grad`, so that a 10,000-step call stays cheap and the subtraction small. The parser
is already built (an earlier spec built it); `cold_start` measures a fresh process instead.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import rnndsl

__all__ = ["EXAMPLES", "cold_start", "spec_compile_times"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _inputs(net: rnndsl.CompiledNetwork, batch: int, steps: int, device: str) -> dict:
    out: dict = {}
    for node in net.network.inputs:
        if node.input_kind == "static":
            out[node.name] = torch.randn(batch, node.size, device=device)
        elif node.is_tokens:
            out[node.name] = torch.randint(0, node.size, (batch, steps), device=device)
        else:
            out[node.name] = torch.randn(batch, steps, node.size, device=device)
    if all(n.input_kind == "static" for n in net.network.inputs):
        out["steps"] = steps
    return out


def _clock(fn: object, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    sync()
    return (time.perf_counter() - start) * 1000


def _one(path: Path, steps: int, device: str, batch: int, tries: int) -> dict:
    text = path.read_text(encoding="utf-8")
    name = re.findall(r"\bnetwork\s+(\w+)", text)[-1]
    warm = rnndsl.compile(text, network=name).to(device)
    inputs = _inputs(warm, batch, steps, device)
    with torch.no_grad():
        torch_warm_up = _clock(lambda: warm(**inputs), device)
    runs = []  # (build, first call, next call) of fresh modules: each generates its code on its first call
    generate = []
    for _ in range(tries):
        start = time.perf_counter()
        net = rnndsl.compile(text, network=name)
        build = (time.perf_counter() - start) * 1000
        net = net.to(device)
        with torch.no_grad():
            first = _clock(lambda net=net: net(**inputs), device)  # type: ignore[misc]
            runs.append((build, first, _clock(lambda net=net: net(**inputs), device)))  # type: ignore[misc]
        fresh = rnndsl.compile(text, network=name).to(device)
        generate.append(_clock(lambda fresh=fresh: fresh._compiled(False), device))  # type: ignore[misc]
    med = statistics.median
    return {
        "spec": path.name,
        "steps": steps,
        "build_ms": med(b for b, _, _ in runs),
        "first_call_ms": med(f for _, f, _ in runs),
        "call_ms": med(c for _, _, c in runs),
        "compile_ms": med(b + max(0.0, f - c) for b, f, c in runs),
        "generate_ms": med(generate),
        "torch_warm_up_ms": torch_warm_up,
    }


def spec_compile_times(steps: list[int], device: str, batch: int = 1, tries: int = 5) -> list[dict]:
    """One row per example spec and sequence length (see the module docstring)."""
    rnndsl.compile((EXAMPLES / "elman.rnn").read_text(encoding="utf-8"))  # build the parser first
    return [_one(path, t, device, batch, tries) for path in sorted(EXAMPLES.glob("*.rnn")) for t in steps]


_COLD = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import rnndsl
t2 = time.perf_counter()
net = rnndsl.compile(open(sys.argv[1]).read())
t3 = time.perf_counter()
net(torch.randn(1, 10, net.network.inputs[0].size))
t4 = time.perf_counter()
print(json.dumps({"import_torch_ms": (t1 - t0) * 1e3, "import_rnndsl_ms": (t2 - t1) * 1e3,
                  "first_compile_ms": (t3 - t2) * 1e3, "first_call_ms": (t4 - t3) * 1e3}))
"""


def cold_start(spec: str = "lstm.rnn") -> dict:
    """A fresh process: import torch, import rnndsl, the first compile (the LALR parser is built then),
    and the first call of 10 steps."""
    root = EXAMPLES.parent
    out = subprocess.run(
        [sys.executable, "-c", _COLD, str(EXAMPLES / spec)], cwd=root, capture_output=True, text=True, check=True
    )
    return {"spec": spec, **json.loads(out.stdout.strip().splitlines()[-1])}
