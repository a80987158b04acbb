"""Metrics: takes network outputs and targets, gives numbers. Pure functions, no state.

Classification outputs are logits (a log_softmax output works too: log_softmax is idempotent, so the
cross-entropy is the same). Positions whose target is `IGNORE` (-100, padding) are left out everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rnndsl.tasks.base import IGNORE

__all__ = [
    "accuracy",
    "bits_per_char",
    "closest",
    "cross_entropy",
    "edit_distance",
    "mse",
    "phoneme_error_rate",
    "solved_fraction",
    "word_error_rate",
]


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats over the positions whose target is not IGNORE; logits (..., C).

    >>> round(float(cross_entropy(torch.zeros(1, 4), torch.tensor([2]))), 4)  # ln 4
    1.3863
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1).to(logits.device), ignore_index=IGNORE
    )


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of positions whose arg-max class is the target, IGNORE left out; logits (..., C).

    >>> accuracy(torch.tensor([[0.1, 0.9], [2.0, 1.0]]), torch.tensor([1, 1]))
    0.5
    """
    target = target.to(logits.device)
    keep = target != IGNORE
    if not bool(keep.any()):
        return math.nan
    return float((logits.argmax(-1)[keep] == target[keep]).double().mean())


def bits_per_char(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean cross-entropy in bits per predicted symbol (IGNORE left out).

    >>> bits_per_char(torch.zeros(1, 2, 8), torch.tensor([[3, -100]]))
    3.0
    """
    return float(cross_entropy(logits.double(), target)) / math.log(2)


def mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error.

    >>> mse(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]))
    2.0
    """
    return float(((prediction.double() - target.to(prediction.device).double()) ** 2).mean())


def solved_fraction(prediction: torch.Tensor, target: torch.Tensor, tolerance: float = 0.04) -> float:
    """Fraction of predictions within `tolerance` of the target (|error| < tolerance).

    >>> solved_fraction(torch.tensor([1.0, 1.05]), torch.tensor([1.01, 1.0]))
    0.5
    """
    error = (prediction.double() - target.to(prediction.device).double()).abs()
    return float((error < tolerance).double().mean())


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn `a` into `b`
    (lists of ids; call `.tolist()` on a tensor first).

    >>> edit_distance([1, 2, 3, 4], [1, 3, 4, 5])
    2
    """
    if len(a) < len(b):
        a, b = b, a  # the row runs over the shorter one
    row = list(range(len(b) + 1))  # distances from a[:i] to each prefix of b
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def phoneme_error_rate(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """Total edit distance over total reference length: the phoneme error rate (it can exceed 1). Give the
    sequences without their end symbol.

    >>> phoneme_error_rate([[1, 2, 3], [4]], [[1, 2], [4, 5]])
    0.5
    """
    _check_pairs(hypotheses, references)
    total = sum(len(r) for r in references)
    if not total:
        return math.nan
    return sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True)) / total


def word_error_rate(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """Fraction of hypotheses not exactly their reference (each sequence a whole word's output).

    >>> word_error_rate([[1, 2], [3]], [[1, 2], [3, 3]])
    0.5
    """
    _check_pairs(hypotheses, references)
    if not references:
        return math.nan
    return sum(list(h) != list(r) for h, r in zip(hypotheses, references, strict=True)) / len(references)


def closest(hypotheses: Sequence[Sequence[int]], alternatives: Sequence[Sequence[Sequence[int]]]) -> list[list[int]]:
    """For each hypothesis, the reference among its alternatives at the smallest edit distance (the first of
    equals): what the error rates are computed against when a word has several right answers.

    >>> closest([[1, 2], [3]], [[[1, 3], [1, 2]], [[4], [5]]])
    [[1, 2], [4]]
    """
    if len(hypotheses) != len(alternatives):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(alternatives)} sets of references")
    out: list[list[int]] = []
    for h, refs in zip(hypotheses, alternatives, strict=True):
        distances = [edit_distance(h, r) for r in refs]
        out.append(list(refs[distances.index(min(distances))]))
    return out


def _check_pairs(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
