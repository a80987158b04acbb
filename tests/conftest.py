"""Shared fixtures: `device` runs a test on the CPU and, when CUDA is present, on the GPU too."""

from __future__ import annotations

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
