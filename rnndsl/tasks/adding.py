"""The adding problem (Hochreiter & Schmidhuber, 1997): takes a length and a seed, gives generated splits.

Each sequence has `length` steps of 2 channels: a random value uniform in [0, 1), and a marker that is 1
at exactly two steps (one in the first half, one in the second) and 0 elsewhere. The target is the sum
of the two marked values. Many-to-one regression: the network needs a sequence input of size 2 and
`output NAME last` of size 1 (the predicted sum; a linear output layer).

Data are generated on the fly from seeded numpy generators: training batch `step` from (seed, 2, step),
validation (`validation_size` sequences) from (seed, 3), test (`test_size`) from (seed, 4); the same
options give the same data everywhere. Metrics: `mse` (primary; always predicting 1 scores 1/6, about
0.167) and `solved`, the fraction of sequences with |error| < 0.04, the original paper's criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rnndsl.tasks.base import Batch, Needs, Task, check_split, rng
from rnndsl.tasks.metrics import mse, solved_fraction

__all__ = ["Adding", "generate"]


def generate(count: int, length: int, gen: np.random.Generator) -> Batch:
    """`count` sequences (count, length, 2) float32 and their sums (count,)."""
    values = gen.random((count, length), dtype=np.float32)
    half = length // 2
    first = gen.integers(0, half, count)
    second = gen.integers(half, length, count)
    marks = np.zeros((count, length), dtype=np.float32)
    rows = np.arange(count)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    return Batch(torch.from_numpy(np.stack([values, marks], axis=-1)), torch.from_numpy(target))


@dataclass(frozen=True)
class Adding(Task):
    """The adding problem at `length` steps; many-to-one regression.

    >>> batch = Adding(length=10).train_batch(0, 4)
    >>> tuple(batch.x.shape), tuple(batch.y.shape), batch.x[..., 1].sum(1).tolist()
    ((4, 10, 2), (4,), [2.0, 2.0, 2.0, 2.0])
    """

    name: ClassVar[str] = "adding"
    primary: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False
    length: int = 100
    seed: int = 0
    validation_size: int = 1000
    test_size: int = 1000

    def __post_init__(self) -> None:
        if self.length < 2:
            raise ValueError(f"the adding problem needs length >= 2 (one mark in each half), got {self.length}")

    @property
    def needs(self) -> Needs:
        return Needs(input_size=2, output_size=1, last=True, logits=False)

    def train_batch(self, step: int, size: int) -> Batch:
        return generate(size, self.length, rng(self.seed, 2, step))

    def split(self, name: str) -> Batch:
        check_split(name)
        if name == "validation":
            return generate(self.validation_size, self.length, rng(self.seed, 3))
        return generate(self.test_size, self.length, rng(self.seed, 4))

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return torch.mean((out.squeeze(-1) - batch.y.to(out)) ** 2)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"mse": mse(out.squeeze(-1), batch.y), "solved": solved_fraction(out.squeeze(-1), batch.y)}
