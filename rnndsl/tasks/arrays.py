"""Tasks over arrays: takes sequences `x`, targets `y` and optional `lengths` as numpy arrays, gives a task
(splits, a loss and metrics) whose kind follows from `y`, or a `DataError` naming the array that is wrong.

    x  (N, T, S) floats: S values per step     or (N, T) whole numbers: token ids in [0, vocab)
    y  (N,) whole numbers: a class per sequence (read from an `output NAME last`, as logits)
       (N, T) whole numbers: a class per step
       (N,) or (N, K) floats: K values per sequence (regression, an `output NAME last`)
       (N, T, K) floats: K values per step
    lengths (N,) whole numbers in [1, T]: each sequence's steps (without it, every sequence has T)

`criterion` ("cross_entropy" or "mse", the command line's `--loss`) overrides what `y`'s dtype says:
"mse" on whole numbers regresses on them, "cross_entropy" on floats that are whole numbers reads them as
classes. Metrics are the built-in tasks': a class per sequence gives `accuracy` and `loss` (as digits), a
class per step `accuracy` and `cross_entropy` over the steps within each length (as copy), regression
`mse` (as adding). The split is seeded: validation and test take their fractions of N, train the rest.

A task of one's own subclasses `ArrayTask` as a frozen dataclass, names itself and gives its arrays:

>>> from dataclasses import dataclass
>>> from typing import ClassVar
>>> @dataclass(frozen=True)
... class Parity(ArrayTask):
...     name: ClassVar[str] = "parity"
...     length: int = 6
...     def arrays(self):
...         bits = np.random.default_rng(self.seed).integers(0, 2, (200, self.length))
...         return {"x": bits, "y": bits.sum(1) % 2}
>>> task = Parity()
>>> task.kind, task.needs
('class', Needs(input_size=2, output_size=2, last=True, vocab=2, logits=True))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from rnndsl.tasks.base import IGNORE, Batch, Needs, SplitTask, split_indices
from rnndsl.tasks.metrics import accuracy, cross_entropy, mse

__all__ = ["CRITERIA", "ArrayTask", "Arrays", "DataError", "check_arrays"]

CRITERIA = ("cross_entropy", "mse")


class DataError(ValueError):
    """Arrays that cannot be a task's data: the message names the array, what was expected and what came."""


@dataclass(frozen=True)
class Arrays:
    """Checked arrays: `x` float32 (N, T, S) or int64 (N, T) ids, zero past each length; `y` int64 (N,) or
    (N, T) with IGNORE past each length, or float32 (N, K) or (N, T, K); `lengths` int64 (N,) or None;
    `kind` one of "class", "tags" (a class per step), "values" (K per sequence), "steps" (K per step)."""

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray | None
    kind: str

    @property
    def per_step(self) -> bool:
        return self.kind in ("tags", "steps")

    @property
    def classification(self) -> bool:
        return self.kind in ("class", "tags")


def _kinds(source: str, name: str, a: np.ndarray, expected: str) -> DataError:
    return DataError(f"{source}: array `{name}`: expected {expected}, got {a.dtype} of shape {a.shape}")


def _whole(a: np.ndarray) -> bool:
    """Integers, or floats that are all whole numbers (as a CSV or JSON reader may give them)."""
    if a.dtype.kind in "iu":
        return True
    return a.dtype.kind == "f" and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))


def _first_bad(mask: np.ndarray) -> str:
    """`sequence i, step t` (or `sequence i`) of the first True of a (N, ...) mask."""
    where = np.argwhere(mask)[0]
    return f"sequence {where[0]}" + (f", step {where[1]}" if len(where) > 1 else "")


def check_arrays(x: Any, y: Any, lengths: Any = None, *, criterion: str = "", source: str = "the data") -> Arrays:
    """Check and convert a task's arrays, or raise `DataError` naming the array, what was expected and what
    came; `source` names where they came from (a file) in the message.

    >>> check_arrays(np.zeros((4, 3, 2)), np.array([0, 1, 1, 0])).kind
    'class'
    >>> check_arrays(np.zeros((4, 3, 2)), np.zeros(4), np.array([3, 3, 4, 1]), source="d.npz")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    rnndsl.tasks.arrays.DataError: d.npz: array `lengths`: expected each length in [1, T] ..., got 4 at sequence 2
    """
    if criterion not in ("", *CRITERIA):
        raise DataError(f"the loss is one of {', '.join(CRITERIA)}, got `{criterion}`")
    x, y = np.asarray(x), np.asarray(y)
    x = _check_x(x, source)
    n, steps = x.shape[:2]
    lengths = None if lengths is None else _check_lengths(np.asarray(lengths), n, steps, source)
    keep = _steps_kept(n, steps, lengths)
    kind = _kind(y, n, steps, criterion, source)
    _check_finite(x, keep, "x", source)
    if x.dtype == np.int64 and np.any((x < 0) & keep):
        raise DataError(
            f"{source}: array `x`: expected token ids >= 0, got a negative one at {_first_bad((x < 0) & keep)}"
        )
    x = np.where(keep if x.ndim == 2 else keep[..., None], x, 0).astype(x.dtype)  # padding is never read
    return Arrays(x, _convert_y(y, kind, keep, source), lengths, kind)


def _check_x(x: np.ndarray, source: str) -> np.ndarray:
    expected = "(N, T, S) floats (S values per step) or (N, T) whole numbers (token ids)"
    if x.ndim == 3 and x.dtype.kind in "fiu":
        return x.astype(np.float32)
    if x.ndim == 2 and x.dtype.kind in "iu":
        return x.astype(np.int64)
    if x.ndim == 2 and x.dtype.kind == "f":
        raise DataError(
            f"{source}: array `x`: expected {expected}, got {x.dtype} of shape {x.shape}; for one value per "
            f"step give shape {(*x.shape, 1)} (x[..., None]), for token ids an integer dtype"
        )
    raise _kinds(source, "x", x, expected)


def _check_lengths(lengths: np.ndarray, n: int, steps: int, source: str) -> np.ndarray:
    if lengths.shape != (n,) or not _whole(lengths):
        raise _kinds(source, "lengths", lengths, f"({n},) whole numbers (one length per sequence of x)")
    lengths = lengths.astype(np.int64)
    bad = (lengths < 1) | (lengths > steps)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise DataError(
            f"{source}: array `lengths`: expected each length in [1, T] with T = {steps} (x's second axis), "
            f"got {lengths[i]} at sequence {i}"
        )
    return lengths


def _steps_kept(n: int, steps: int, lengths: np.ndarray | None) -> np.ndarray:
    """(N, T): True at the steps within each sequence's length."""
    if lengths is None:
        return np.ones((n, steps), dtype=bool)
    return np.arange(steps)[None, :] < lengths[:, None]


def _kind(y: np.ndarray, n: int, steps: int, criterion: str, source: str) -> str:
    expected = (
        f"({n},) or ({n}, {steps}) whole numbers (a class per sequence or per step), or ({n},), ({n}, K) or "
        f"({n}, {steps}, K) floats (values per sequence or per step)"
    )
    if y.dtype.kind not in "fiu" or y.ndim not in (1, 2, 3) or y.shape[0] != n:
        raise _kinds(source, "y", y, expected)
    classes = criterion == "cross_entropy" or (not criterion and y.dtype.kind in "iu")
    if classes:
        if y.ndim == 3 or (y.ndim == 2 and y.shape[1] != steps):
            raise _kinds(source, "y", y, f"({n},) or ({n}, {steps}) class ids for the loss cross_entropy")
        if not _whole(y):
            raise DataError(f"{source}: array `y`: expected whole numbers (class ids) for the loss cross_entropy")
        return "class" if y.ndim == 1 else "tags"
    if y.ndim == 3 and y.shape[1] != steps:
        raise _kinds(source, "y", y, f"({n}, {steps}, K): values at each of x's {steps} steps")
    return "steps" if y.ndim == 3 else "values"


def _check_finite(a: np.ndarray, keep: np.ndarray, name: str, source: str) -> None:
    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    bad = (bad.any(axis=tuple(range(keep.ndim, bad.ndim))) if bad.ndim > keep.ndim else bad) & keep
    if np.any(bad):
        value = "NaN" if np.isnan(a[tuple(np.argwhere(bad)[0])]).any() else "Inf"
        raise DataError(f"{source}: array `{name}`: expected finite values, got {value} at {_first_bad(bad)}")


def _convert_y(y: np.ndarray, kind: str, keep: np.ndarray, source: str) -> np.ndarray:
    if kind == "class":
        y = y.astype(np.int64)
        if np.any(y < 0):
            raise DataError(f"{source}: array `y`: expected class ids >= 0, got {y[y < 0][0]} at {_first_bad(y < 0)}")
        return y
    if kind == "tags":
        y = y.astype(np.int64)
        if np.any((y < 0) & keep):
            raise DataError(
                f"{source}: array `y`: expected class ids >= 0, got a negative one at {_first_bad((y < 0) & keep)}"
            )
        return np.where(keep, y, IGNORE)  # steps past a length are not scored
    y = y.astype(np.float32)
    _check_finite(y, keep if kind == "steps" else np.ones(y.shape[:1], dtype=bool), "y", source)
    if kind == "values":
        return y.reshape(len(y), -1)
    return np.where(keep[..., None], y, 0.0).astype(np.float32)


@dataclass(frozen=True)
class ArrayTask(SplitTask):
    """A task over arrays that `arrays()` gives ({"x": ..., "y": ..., "lengths": ...}, numpy or anything
    numpy reads); subclasses are frozen dataclasses whose fields are their options, besides these:

    `criterion` "" (from y's dtype), "cross_entropy" or "mse"; `validation` and `test` the fractions of the
    sequences those splits take (train the rest), drawn with `seed`; `classes` and `vocab` at least the
    number of classes and of token ids (0: one more than the largest that occurs).
    """

    name: ClassVar[str] = "arrays"
    criterion: str = ""
    validation: float = 0.1
    test: float = 0.1
    seed: int = 0
    classes: int = 0
    vocab: int = 0

    def arrays(self) -> dict[str, Any]:
        raise NotImplementedError

    def source(self) -> str:
        """Where the arrays come from, for messages."""
        return f"task `{self.name}`"

    @functools.cached_property
    def data(self) -> Arrays:
        given = self.arrays()
        for key in ("x", "y"):
            if key not in given:
                raise DataError(
                    f"{self.source()}: no array `{key}`; a task's data are `x`, `y` and optionally `lengths`"
                )
        return check_arrays(
            given["x"], given["y"], given.get("lengths"), criterion=self.criterion, source=self.source()
        )

    @property
    def kind(self) -> str:
        return self.data.kind

    @property
    def primary(self) -> str:  # type: ignore[override]  # a class constant elsewhere; here the data decide
        return "accuracy" if self.data.classification else "mse"

    @property
    def higher_is_better(self) -> bool:  # type: ignore[override]
        return self.data.classification

    @property
    def needs(self) -> Needs:
        data = self.data
        vocab = self._count("vocab", self.vocab, data.x) if data.x.dtype == np.int64 else 0
        size = vocab or int(data.x.shape[-1])
        out = self._count("classes", self.classes, data.y) if data.classification else int(data.y.shape[-1])
        return Needs(size, out, last=not data.per_step, vocab=vocab, logits=data.classification)

    def _count(self, option: str, given: int, ids: np.ndarray) -> int:
        seen = int(ids.max(initial=0)) + 1
        if given and given < seen:
            raise DataError(f"{self.source()}: {option}={given}, but an id of {seen - 1} occurs (give {seen} or more)")
        return max(given, seen)

    @functools.cached_property
    def _splits(self) -> dict[str, np.ndarray]:
        for option in ("validation", "test"):
            if not 0 < getattr(self, option) < 1:
                raise DataError(f"the {option} fraction must be between 0 and 1, got {getattr(self, option)}")
        n = len(self.data.x)
        splits = split_indices(n, self.seed, (self.validation, self.test))
        for part, rows in splits.items():
            if not len(rows):
                raise DataError(
                    f"{self.source()}: {n} sequences leave none for {part} with the split "
                    f"{1 - self.validation - self.test:g},{self.validation:g},{self.test:g}: give more sequences "
                    "or change the fractions (--split TRAIN,VALIDATION,TEST)"
                )
        return splits

    def check(self) -> ArrayTask:
        """The task, its data and split checked now (a `DataError` otherwise), before anything is written."""
        _ = self.needs, self._splits
        return self

    def _batch(self, rows: np.ndarray) -> Batch:
        data = self.data
        lengths = None if data.lengths is None else data.lengths[rows]
        steps = data.x.shape[1] if lengths is None else int(lengths.max())  # padded to this batch's longest
        x, y = data.x[rows, :steps], data.y[rows]
        y = y[:, :steps] if data.per_step else y
        return Batch(
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(np.ascontiguousarray(y)),
            None if lengths is None else torch.from_numpy(lengths),
        )

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.data.classification:
            return cross_entropy(out, batch.y)
        diff = (out - batch.y.to(out)) ** 2
        if self.kind == "steps" and batch.lengths is not None:
            keep = _mask(batch, out)
            return (diff * keep).sum() / (keep.sum() * out.shape[-1])
        return diff.mean()

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        if self.kind == "class":
            return {"accuracy": accuracy(out, batch.y), "loss": float(cross_entropy(out.double(), batch.y))}
        if self.kind == "tags":
            return {"accuracy": accuracy(out, batch.y), "cross_entropy": float(cross_entropy(out.double(), batch.y))}
        if self.kind == "steps" and batch.lengths is not None:
            keep = _mask(batch, out).bool().squeeze(-1)
            return {"mse": mse(out[keep], batch.y[keep])}
        return {"mse": mse(out, batch.y)}


def _mask(batch: Batch, out: torch.Tensor) -> torch.Tensor:
    """(B, T, 1) ones within each length, zeros past it, in `out`'s dtype."""
    assert batch.lengths is not None
    steps = torch.arange(out.shape[1], device=out.device)
    return (steps[None, :] < batch.lengths.to(out.device)[:, None]).to(out.dtype)[..., None]
