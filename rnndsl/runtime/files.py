"""Files written whole: takes a path and what to write, gives the path once the file is complete.

`atomic_write` writes through a temporary file beside the target and renames it over the target, so a reader
(or a process resumed after a kill) sees either the old file or the whole new one; `remove_partial_writes`
clears what a killed writer left. Checkpoints, results, plots and ONNX exports are all written so.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "remove_partial_writes"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write `path` through `write(file)` so that it is either the old file or the complete new one.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(p, lambda f: f.write(b"hi")).read_text()
    'hi'
    """
    path = Path(path)
    if path.is_dir():  # else os.replace names the temporary file in its error
        raise IsADirectoryError(errno.EISDIR, "is a folder: give a file's name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it a new file's usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def remove_partial_writes(path: str | Path) -> list[Path]:
    """Remove the temporary files that processes killed inside `atomic_write(path, ...)` left next to `path`;
    give back their paths. Not for a directory another process is writing to at the same time.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / ".a.pt.x1y2.tmp").write_bytes(b"half")
    >>> [p.name for p in remove_partial_writes(d / "a.pt")], list(d.iterdir())
    (['.a.pt.x1y2.tmp'], [])
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
