"""The copy-memory task (Hochreiter & Schmidhuber, 1997; as in Arjovsky et al., 2016): takes its sizes
and a seed, gives generated splits.

Alphabet: 0 blank, 1..`symbols` the symbols, `symbols`+1 the go marker. A sequence is `copy` random
symbols, `delay`-1 blanks, the go marker, then `copy` blanks (`delay` + 2*`copy` steps). The target is
blank everywhere except the last `copy` steps, which must reproduce the symbols in order. Many-to-many:
the network needs an input `tokens(symbols+2)` (or a sequence input of size symbols+2, fed one-hot) and
`output NAME` (every step) of size symbols+2, read as logits.

Data are generated from seeded numpy generators: training batch `step` from (seed, 2, step), validation
from (seed, 3), test from (seed, 4). Metrics: `accuracy` on the recall steps (primary), the mean
`cross_entropy` per step (nats) and the `baseline` a memoryless network reaches: blanks where they are
certain, a uniform guess over the symbols at the recall steps, copy*ln(symbols)/(delay + 2*copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rnndsl.tasks.base import Batch, Needs, Task, check_split, rng
from rnndsl.tasks.metrics import accuracy, cross_entropy

__all__ = ["Copy", "generate"]


def generate(count: int, symbols: int, copy: int, delay: int, gen: np.random.Generator) -> Batch:
    """`count` sequences of token ids (count, delay + 2*copy) and their targets, both int64."""
    data = gen.integers(1, symbols + 1, (count, copy))
    x = np.zeros((count, delay + 2 * copy), dtype=np.int64)
    x[:, :copy] = data
    x[:, copy + delay - 1] = symbols + 1
    y = np.zeros_like(x)
    y[:, -copy:] = data
    return Batch(torch.from_numpy(x), torch.from_numpy(y))


@dataclass(frozen=True)
class Copy(Task):
    """Remember `copy` symbols over `delay` steps and reproduce them after the go marker.

    >>> batch = Copy(symbols=3, copy=2, delay=3).train_batch(0, 1)
    >>> batch.x.shape[1], batch.x[0, 4].item(), batch.y[0, :5].tolist() == [0] * 5
    (7, 4, True)
    """

    name: ClassVar[str] = "copy"
    primary: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    symbols: int = 8
    copy: int = 10
    delay: int = 20
    seed: int = 0
    validation_size: int = 1000
    test_size: int = 1000

    def __post_init__(self) -> None:
        if self.symbols < 1 or self.copy < 1 or self.delay < 1:
            raise ValueError(
                f"the copy task needs symbols, copy and delay >= 1, got {self.symbols}, {self.copy}, {self.delay}"
            )

    @property
    def needs(self) -> Needs:
        return Needs(input_size=self.symbols + 2, output_size=self.symbols + 2, last=False, vocab=self.symbols + 2)

    @property
    def baseline(self) -> float:
        """Cross-entropy per step (nats) of the best network that remembers nothing."""
        return self.copy * math.log(self.symbols) / (self.delay + 2 * self.copy)

    def _generate(self, count: int, gen: np.random.Generator) -> Batch:
        return generate(count, self.symbols, self.copy, self.delay, gen)

    def train_batch(self, step: int, size: int) -> Batch:
        return self._generate(size, rng(self.seed, 2, step))

    def split(self, name: str) -> Batch:
        check_split(name)
        if name == "validation":
            return self._generate(self.validation_size, rng(self.seed, 3))
        return self._generate(self.test_size, rng(self.seed, 4))

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(out, batch.y)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        recall = slice(-self.copy, None)
        return {
            "accuracy": accuracy(out[:, recall], batch.y[:, recall]),
            "cross_entropy": float(cross_entropy(out.double(), batch.y)),
            "baseline": self.baseline,
        }
