"""Shared fixtures: `device` runs a test on the CPU and, when CUDA is present, on the GPU too."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

# Differential tests compare float32 to 1e-5: TF32 (cuDNN's and cuBLAS's default for float32 on recent
# GPUs) rounds to 10 mantissa bits and would fail them for reasons that are not rnndsl's.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """A torch device; the "cuda" case is skipped when no GPU is available."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as the training commands use by default (several processes may run at once)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_data(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An .npz of 60 sequences (5 steps of 3, a class each) and two specs of different widths (`TINY_SPEC`)."""
    g = np.random.default_rng(0)
    x = g.normal(size=(60, 5, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, :, 0].sum(1) > 0).astype(np.int64))
    a, b = tmp_path / "a.rnn", tmp_path / "b.rnn"
    a.write_text(TINY_SPEC % 8)
    b.write_text(TINY_SPEC % 3)
    return tmp_path / "d.npz", a, b


TINY_SPEC = "network Tiny {\n input x: 3\n layer h: %d tanh <- x, h[t-1]\n layer y: 2 <- h\n output y last\n}\n"


def serving_playground() -> Iterator[str]:
    """The address of a playground started as a user starts it, `rnndsl play --port 0 --no-browser`, until the
    generator is closed (the body of the play tests' module-scoped `url` fixtures)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnndsl", "play", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
    assert found, line + proc.stdout.read()
    yield found.group(1)
    proc.terminate()
    proc.wait(10)
