"""How to train: the options of a run (`TrainConfig`), plain data that the command line's defaults read
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `steps` is the total number of optimizer steps (a resumed run stops there too);
    `clip` is the largest gradient norm (0: no clipping); `eval_every` is in steps (0: only at the end);
    `eval_batch` bounds the sequences evaluated in one call."""

    steps: int = 1000
    batch: int = 32
    lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    eval_batch: int = 1000

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch", "eval_batch", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
