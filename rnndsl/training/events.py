"""TensorBoard logs: takes a run's losses and evaluations as it trains, gives event files in DIR/tensorboard
(`rnndsl train --tensorboard`; view with `tensorboard --logdir runs`).

Scalars: `train/loss` at every step, `validation/METRIC` at each evaluation, `test/METRIC` at the end. A
run purges what earlier writers logged in the folder from its first step on (TensorBoard's `purge_step`):
a resumed run what the stopped one logged past its checkpoint, a run with --force the run it replaces, so
the curves show each step that counts once. Writing needs the `tensorboard` package (torch's SummaryWriter
writes its format); it comes with `pip install 'rnndsl[experiments]'`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FOLDER", "Events", "require_tensorboard"]

FOLDER = "tensorboard"  # inside a run's folder


def require_tensorboard() -> None:
    """Nothing, or an ImportError naming what to install (checked before a run starts)."""
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "--tensorboard writes event files with the tensorboard package, which is not installed: "
            "pip install 'rnndsl[experiments]' (or pip install tensorboard), or leave --tensorboard out"
        ) from err


class Events:
    """A run's event files under `run/tensorboard`; `start` is the step the run begins (or resumes) at."""

    def __init__(self, run: Path, start: int) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer: Any = SummaryWriter(log_dir=str(run / FOLDER), purge_step=start + 1 if start else 0)

    def loss(self, step: int, value: float) -> None:
        self.writer.add_scalar("train/loss", value, step)

    def metrics(self, split: str, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"{split}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
