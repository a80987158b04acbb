"""Handwritten digits read row by row: takes a seed, gives splits of scikit-learn's bundled 8x8 digits.

`sklearn.datasets.load_digits` ships with scikit-learn (1,797 images, 10 classes; nothing is
downloaded). Each image is a sequence of 8 steps (its rows, top to bottom) of 8 pixels scaled from
0..16 to [0, 1]; the target is the digit. Many-to-one: the network needs a sequence input of size 8 and
`output NAME last` of size 10, read as logits (no activation, or log_softmax; a softmax is refused).

Splits: a permutation of the images fixed by `seed` gives test 20% (359), validation 10% (180) and
train the rest (1,258). Training batches are seeded reshuffles of train, one permutation per epoch.
Metric: accuracy (the primary one) and the cross-entropy `loss`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rnndsl.tasks.base import Batch, Needs, SplitTask, split_indices
from rnndsl.tasks.metrics import accuracy, cross_entropy

__all__ = ["Digits", "load_images"]


@functools.lru_cache(maxsize=1)
def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All images as (N, 8, 8) float32 in [0, 1] and labels (N,) int64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("the digits task needs scikit-learn: pip install 'rnndsl[tasks]'") from err
    images, labels = load_digits(return_X_y=True)
    return (images.reshape(-1, 8, 8) / 16.0).astype(np.float32), labels.astype(np.int64)


@dataclass(frozen=True)
class Digits(SplitTask):
    """8x8 digits, one row per step; many-to-one classification.

    >>> task = Digits(seed=0)
    >>> batch = task.train_batch(0, 32)
    >>> tuple(batch.x.shape), tuple(batch.y.shape), len(task.split("test"))
    ((32, 8, 8), (32,), 359)
    """

    name: ClassVar[str] = "digits"
    primary: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    seed: int = 0

    @property
    def needs(self) -> Needs:
        return Needs(input_size=8, output_size=10, last=True)

    @functools.cached_property
    def _splits(self) -> dict[str, np.ndarray]:
        return split_indices(len(load_images()[1]), self.seed, (0.1, 0.2))

    def _batch(self, indices: np.ndarray) -> Batch:
        images, labels = load_images()
        return Batch(torch.from_numpy(images[indices]), torch.from_numpy(labels[indices]))

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(out, batch.y)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"accuracy": accuracy(out, batch.y), "loss": float(cross_entropy(out.double(), batch.y))}
