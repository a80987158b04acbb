"""Tasks to train networks on: takes a task name and options, gives data splits, a loss and metrics.

Each task is one module, its data from installed packages only (nothing is downloaded at run time):

    digits  scikit-learn's 8x8 digits read row by row     many-to-one classification   accuracy
    adding  the adding problem, generated                 many-to-one regression       mse, solved
    copy    the copy-memory task, generated               many-to-many, tokens         recall accuracy
    names   census first names, next character            many-to-many, padded         bits per char
            (by_sex=1: conditioned on the sex, one-to-many generation)
    g2p     CMU dictionary, spelling to pronunciation     encoder-decoder (a model)    phoneme error rate

Your own data: `data` reads a file of sequences (.npz or .jsonl; `datafile`, over `arrays`, which also
serves a task of one's own: subclass `ArrayTask` and give its arrays, or subclass `Task`). An installed
package makes its tasks known by name to the command line through the `rnndsl.tasks` entry-point group
(`[project.entry-points."rnndsl.tasks"] sine = "mypkg.tasks:Sine"`).

`TASKS` maps a name to its class (the built-in tasks, then the installed ones); `make_task("adding",
length=50)` builds one. A task's options are
its dataclass fields; `task.config()` gives them back. `task.bind(network)` checks that a network has
the input and output the task needs, or raises `TaskMismatchError` saying what differs and how to fix it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from rnndsl._lazy import lazy_exports

if TYPE_CHECKING:
    from rnndsl.tasks.adding import Adding
    from rnndsl.tasks.arrays import ArrayTask, DataError
    from rnndsl.tasks.base import Batch, Binding, Needs, Task, TaskMismatchError
    from rnndsl.tasks.copy import Copy
    from rnndsl.tasks.datafile import Data
    from rnndsl.tasks.digits import Digits
    from rnndsl.tasks.g2p import G2P
    from rnndsl.tasks.names import Names

__all__ = [
    "ENTRY_POINTS",
    "FILE_TASK",
    "TASKS",
    "Adding",
    "ArrayTask",
    "Batch",
    "Binding",
    "Copy",
    "Data",
    "DataError",
    "Digits",
    "G2P",
    "Names",
    "Needs",
    "Task",
    "TaskMismatchError",
    "make_task",
    "task_class",
    "parse_options",
]

# name -> (module, class); a task's module (and torch) is imported when the task is first asked for
_BUILT_IN = {
    "digits": ("rnndsl.tasks.digits", "Digits"),
    "adding": ("rnndsl.tasks.adding", "Adding"),
    "copy": ("rnndsl.tasks.copy", "Copy"),
    "names": ("rnndsl.tasks.names", "Names"),
    "g2p": ("rnndsl.tasks.g2p", "G2P"),
}

__getattr__ = lazy_exports(
    __name__,
    {
        **{cls: module for module, cls in _BUILT_IN.values()},
        **dict.fromkeys(["Batch", "Binding", "Needs", "Task", "TaskMismatchError"], "rnndsl.tasks.base"),
        **dict.fromkeys(["ArrayTask", "DataError"], "rnndsl.tasks.arrays"),
        "Data": "rnndsl.tasks.datafile",
    },
)


ENTRY_POINTS = "rnndsl.tasks"  # the entry-point group where installed packages name their tasks
FILE_TASK = "data"  # the task of `--data FILE` (rnndsl.tasks.datafile), not named with --task


def _installed() -> dict[str, EntryPoint]:
    """Tasks that installed packages declare in the `rnndsl.tasks` group; a built-in name stays built-in.
    Read afresh on each call (it scans the installed distributions' metadata only: nothing is imported)."""
    reserved = {*_BUILT_IN, FILE_TASK}
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS) if ep.name not in reserved}


class _Tasks(Mapping[str, "type[Task]"]):
    """The task classes by name, the built-in ones first, then those of the `rnndsl.tasks` entry points; the
    names are known at once, each class is imported when first read."""

    def __getitem__(self, name: str) -> type[Task]:
        if name in _BUILT_IN:
            module, cls = _BUILT_IN[name]
            found: type[Task] = getattr(importlib.import_module(module), cls)
            return found
        return _load_entry_point(_installed()[name])

    def __iter__(self) -> Iterator[str]:
        return iter([*_BUILT_IN, *sorted(_installed())])

    def __len__(self) -> int:
        return len(_BUILT_IN) + len(_installed())


def _load_entry_point(ep: EntryPoint) -> type[Task]:
    """The task class an entry point names, checked: a dataclass subclass of `Task` with the same name."""
    from rnndsl.tasks.base import Task

    where = f"task `{ep.name}` (entry point `{ep.value}` of the `{ENTRY_POINTS}` group)"
    try:
        cls = ep.load()
    except Exception as err:  # whatever the package's module raises on import: one message, not a traceback
        raise ValueError(f"{where} cannot be loaded: {type(err).__name__}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, Task) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"{where} is not a task: it must name a dataclass subclass of rnndsl.tasks.Task")
    if getattr(cls, "name", None) != ep.name:
        raise ValueError(
            f"{where} names class {cls.__name__}, whose `name` is {getattr(cls, 'name', None)!r}: the two must "
            "agree, as checkpoints rebuild a task by its name"
        )
    return cls


TASKS: Mapping[str, type[Task]] = _Tasks()


def task_class(name: str) -> type[Task]:
    """The class of task `name` (built-in, installed, or "data"), or a ValueError listing the tasks."""
    if name == FILE_TASK:
        from rnndsl.tasks.datafile import Data

        return Data
    cls = TASKS.get(name)
    if cls is None:
        raise ValueError(f"no task `{name}`; the tasks are: {', '.join(TASKS)}")
    return cls


def make_task(name: str, **options: Any) -> Task:
    """The task `name` with `options` (its dataclass fields); unknown names and options are a ValueError.
    `name` is a built-in task, one that a package installs under the `rnndsl.tasks` entry-point group, or
    "data" (a file of one's own, `make_task("data", path="seqs.npz")`).

    >>> make_task("adding", length=20).config()
    {'name': 'adding', 'length': 20, 'seed': 0, 'validation_size': 1000, 'test_size': 1000}
    """
    cls = task_class(name)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in options:
        if key not in known:
            raise ValueError(f"task `{name}` has no option `{key}`; its options are: {', '.join(known)}")
    return cls(**options)


def parse_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """`["length=50"]` -> `{"length": 50}`, each value converted to the option's type (int, float or str)."""
    cls = task_class(name)
    elsewhere: dict[str, str] = getattr(cls, "set_elsewhere", {})  # fields no --task-arg sets (the data file's)
    types = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in elsewhere}  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if key in elsewhere:
            raise ValueError(f"task option `{key}` is set by {elsewhere[key]}, not --task-arg")
        if not sep or key not in types:
            raise ValueError(f"task option `{pair}`: write KEY=VALUE with KEY one of {', '.join(types)}")
        if types[key] in (str, "str"):
            out[key] = value
            continue
        kind = float if types[key] in (float, "float") else int
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(
                f"task option `{key}` takes {'a number' if kind is float else 'an integer'}, got `{value}`"
            ) from None
    return out
