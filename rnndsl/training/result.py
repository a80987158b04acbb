"""A finished run (`Result`): its network, configuration, history and final metrics, and their JSON form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rnndsl._version import __version__
from rnndsl.training.config import TrainConfig

if TYPE_CHECKING:
    from rnndsl.runtime.model import CompiledModel
    from rnndsl.runtime.network import CompiledNetwork

__all__ = ["Result"]


@dataclass
class Result:
    """A finished run: the network, its configuration, its history and its final metrics.

    `losses[k]` is the training loss of step k+1; `evals` holds one dict per validation evaluation
    (`step`, `time` in seconds since the run began, and the task's metrics); `test` the test metrics.
    """

    spec: str
    network: str
    task: dict[str, Any]
    config: TrainConfig
    parameters: int
    losses: list[float]
    evals: list[dict[str, float]]
    test: dict[str, float]
    elapsed: float
    primary: str
    higher_is_better: bool
    net: CompiledNetwork | CompiledModel = field(repr=False)
    out: Path | None = None

    @property
    def validation(self) -> dict[str, float]:
        last = dict(self.evals[-1]) if self.evals else {}
        return {k: v for k, v in last.items() if k not in ("step", "time")}

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "network": self.network,
            "parameters": self.parameters,
            "task": self.task,
            "train": dataclasses.asdict(self.config),
            "primary_metric": self.primary,
            "higher_is_better": self.higher_is_better,
            "elapsed_s": round(self.elapsed, 3),
            "metrics": {"validation": self.validation, "test": self.test},
            "history": {"loss": self.losses, "validation": self.evals},
            "versions": {"rnndsl": __version__, "torch": str(torch.__version__)},
        }
