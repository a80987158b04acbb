"""Your own data: takes a file of sequences (.npz, or .jsonl), gives the `data` task (`rnndsl train --data`).

An .npz holds the arrays `x`, `y` and optionally `lengths` (see `rnndsl.tasks.arrays` for their shapes and
what kind of task each `y` makes). A .jsonl file holds one sequence per line, `{"x": [...], "y": ...}`:
`x` a list of steps, each a list of S numbers (or a token id), `y` a class id, a list of K values, or one
of those per step; sequences may differ in length (they are padded, and `lengths` kept).

The task records the file's absolute path and the sha256 of its bytes (`task.config()`, so checkpoints
and results.json carry them): a resumed run refuses a file whose bytes changed, and finds a moved file
given again with `--data`.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rnndsl.lang.ir import Network
from rnndsl.tasks.arrays import ArrayTask, DataError
from rnndsl.tasks.base import Binding, bind

__all__ = ["Data", "read_arrays"]

SUFFIXES = (".npz", ".jsonl")


def read_arrays(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    """The arrays of a data file's bytes, by its suffix; a `DataError` when they cannot be read."""
    if path.suffix == ".npz":
        return _read_npz(path, raw)
    if path.suffix == ".jsonl":
        return _read_jsonl(path, raw)
    raise DataError(f"{path}: a data file is .npz (arrays x, y, lengths) or .jsonl (one sequence a line)")


def _read_npz(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    if not raw.startswith(b"PK"):  # an .npz is a zip archive; numpy would try to unpickle anything else
        raise DataError(f"{path}: not a readable .npz file (not a zip archive; write it with numpy.savez)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as held:
            arrays = {key: held[key] for key in held.files}
    except ValueError:  # an object array: loading it needs pickle, which would run code from the file
        raise DataError(f"{path}: an array holds Python objects; store arrays of numbers only") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    for key in ("x", "y"):
        if key not in arrays:
            held_names = ", ".join(f"`{k}`" for k in arrays) or "none"
            raise DataError(
                f"{path}: no array `{key}` (it holds {held_names}); the arrays are `x` (sequences), `y` "
                "(targets) and optionally `lengths`"
            )
    return arrays


def _read_jsonl(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is allowed, as in a spec
    except UnicodeDecodeError as err:
        at = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{at}: not UTF-8 text (byte {raw[err.start]:#04x}); save the file as UTF-8") from None
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as err:
            raise DataError(f"{where}: not JSON ({err}); each line is an object {_RECORD}") from None
        if not isinstance(record, dict) or "x" not in record or "y" not in record:
            got = (
                f"an object with keys {', '.join(map(repr, record))}"
                if isinstance(record, dict)
                else "a " + (type(record).__name__)
            )
            raise DataError(f"{where}: expected an object {_RECORD}, got {got}")
        x, y = _array(where, "x", record["x"]), _array(where, "y", record["y"])
        if x.ndim not in (1, 2) or not len(x):
            raise DataError(f"{where}: `x` is a non-empty list of steps (numbers, or lists of numbers)")
        if xs and x.shape[1:] != xs[0].shape[1:]:
            raise DataError(f"{where}: `x` {_steps(x)}, where line {lines[0]}'s {_steps(xs[0])}")
        xs.append(x)
        ys.append(y)
        lines.append(number)
    if not xs:
        raise DataError(f"{path}: no sequence in the file")
    lengths = np.array([len(x) for x in xs])
    per_step = all(y.ndim >= 1 and len(y) == len(x) for x, y in zip(xs, ys, strict=True)) and len(set(lengths)) > 1
    for y, number in zip(ys, lines, strict=True):
        if (y.shape[1:] if per_step else y.shape) != (ys[0].shape[1:] if per_step else ys[0].shape):
            raise DataError(
                f"{path}:{number}: `y` is shaped {list(y.shape)}, line {lines[0]}'s {list(ys[0].shape)}: every "
                "sequence's target has one shape (or one a step, as long as its `x`)"
            )
    return {"x": _pad(xs), "y": _pad(ys) if per_step else np.stack(ys), "lengths": lengths}


_RECORD = '{"x": [...], "y": ...}'


def _array(where: str, key: str, value: object) -> np.ndarray:
    """A record's `x` or `y` as an array of numbers, or a DataError naming the line."""
    try:
        out = np.asarray(value)
    except ValueError:  # numpy: "setting an array element with a sequence. ... inhomogeneous shape"
        raise DataError(f"{where}: `{key}` is ragged: its lists (steps) have different lengths") from None
    if out.dtype.kind not in "biuf":
        raise DataError(f"{where}: `{key}` holds {'text' if out.dtype.kind == 'U' else 'other values'}; numbers only")
    return out


def _steps(x: np.ndarray) -> str:
    """What a sequence's steps are, for a message: token ids, or vectors of some size."""
    return "holds token ids (numbers)" if x.ndim == 1 else f"has steps of size {x.shape[1]}"


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    longest = max(len(r) for r in rows)
    out = np.zeros((len(rows), longest, *rows[0].shape[1:]), dtype=np.result_type(*rows))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


@dataclass(frozen=True)
class Data(ArrayTask):
    """The sequences of a file; `path` and `sha256` are filled in from the file when left empty, and a
    `sha256` given (a resumed run's) must be the file's.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> np.savez(d / "d.npz", x=np.zeros((10, 5, 3)), y=np.arange(10) % 2)
    >>> task = Data(path=str(d / "d.npz"))
    >>> task.kind, task.needs.input_size, len(task.split("test")), len(task.sha256)
    ('class', 3, 1, 64)
    """

    name: ClassVar[str] = "data"
    set_elsewhere: ClassVar[dict[str, str]] = {"path": "--data FILE", "sha256": "the run (the file's hash)"}
    path: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            raise DataError("the data task reads a file: give it with --data FILE")
        path = Path(self.path).expanduser().resolve()
        try:
            raw = path.read_bytes()
        except OSError as err:
            moved = " (moved since the run? give its new place with --data FILE)" if self.sha256 else ""
            raise DataError(f"cannot read the data file {self.path}: {err.strerror or err}{moved}") from None
        digest = hashlib.sha256(raw).hexdigest()
        if self.sha256 and self.sha256 != digest:
            raise DataError(
                f"{path} is not the data the run trained on (sha256 {self.sha256[:12]} then, {digest[:12]} here: "
                "it changed, or it is another file); give the file it was trained on with --data FILE"
            )
        object.__setattr__(self, "path", str(path))
        object.__setattr__(self, "sha256", digest)
        object.__setattr__(self, "_raw", raw)

    def arrays(self) -> dict[str, Any]:
        return read_arrays(Path(self.path), self._raw)  # type: ignore[attr-defined]

    def source(self) -> str:
        return self.path

    @property
    def label(self) -> str:
        """The run folder's part for the task: the file's name without its suffix."""
        return Path(self.path).stem

    def bind(self, network: Any) -> Binding:
        """As any task, the task named by its file in the message."""
        if not isinstance(network, Network):
            return super().bind(network)  # refuses a model
        return bind(network, f"data ({Path(self.path).name})", self.needs)
