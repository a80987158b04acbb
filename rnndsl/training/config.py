"""How to train: the options of a run (`TrainConfig`), plain data that the command line's defaults read
without importing torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LR_DECAYS", "TrainConfig"]

LR_DECAYS = ("none", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `steps` is the total number of optimizer steps (a resumed run stops there too);
    `clip` is the largest gradient norm (0: no clipping); `eval_every` is in steps (0: only at the end);
    `eval_batch` bounds the sequences evaluated in one call. `lr_decay` "cosine" anneals the learning rate
    from `lr` to a twentieth of it over `steps` (half a cosine); "none" keeps it."""

    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    eval_batch: int = 1000
    lr_decay: str = "none"

    def lr_at(self, step: int) -> float:
        """The learning rate of the step after `step` steps: a function of the step alone, so a resumed run
        follows the schedule without saving any of it."""
        if self.lr_decay == "none" or not self.steps:
            return self.lr
        floor = self.lr / 20
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))

    def __post_init__(self) -> None:
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        for name in ("steps", "eval_every", "clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch", "eval_batch", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
