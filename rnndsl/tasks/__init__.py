"""Tasks to train networks on: takes a task name and options, gives data splits, a loss and metrics.

Each task is one module, its data from installed packages only (nothing is downloaded at run time):

    digits  scikit-learn's 8x8 digits read row by row     many-to-one classification   accuracy
    adding  the adding problem, generated                 many-to-one regression       mse, solved
    copy    the copy-memory task, generated               many-to-many, tokens         recall accuracy
    names   census first names, next character            many-to-many, padded         bits per char
            (by_sex=1: conditioned on the sex, one-to-many generation)
    g2p     CMU dictionary, spelling to pronunciation     encoder-decoder (a model)    phoneme error rate

`TASKS` maps a name to its class; `make_task("adding", length=50)` builds one. A task's options are
its dataclass fields; `task.config()` gives them back. `task.bind(network)` checks that a network has
the input and output the task needs, or raises `TaskMismatchError` saying what differs and how to fix it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rnndsl._lazy import lazy_exports

if TYPE_CHECKING:
    from rnndsl.tasks.adding import Adding
    from rnndsl.tasks.base import Batch, Binding, Needs, Task, TaskMismatchError
    from rnndsl.tasks.copy import Copy
    from rnndsl.tasks.digits import Digits
    from rnndsl.tasks.g2p import G2P
    from rnndsl.tasks.names import Names

__all__ = [
    "TASKS",
    "Adding",
    "Batch",
    "Binding",
    "Copy",
    "Digits",
    "G2P",
    "Names",
    "Needs",
    "Task",
    "TaskMismatchError",
    "make_task",
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
    },
)


class _Tasks(Mapping[str, "type[Task]"]):
    """The task classes by name: the names are known at once, each class is imported when first read."""

    def __getitem__(self, name: str) -> type[Task]:
        module, cls = _BUILT_IN[name]
        found: type[Task] = getattr(importlib.import_module(module), cls)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(_BUILT_IN)

    def __len__(self) -> int:
        return len(_BUILT_IN)


TASKS: Mapping[str, type[Task]] = _Tasks()


def make_task(name: str, **options: Any) -> Task:
    """The task `name` with `options` (its dataclass fields); unknown names and options are a ValueError.

    >>> make_task("adding", length=20).config()
    {'name': 'adding', 'length': 20, 'seed': 0, 'validation_size': 1000, 'test_size': 1000}
    """
    cls = TASKS.get(name)
    if cls is None:
        raise ValueError(f"no task `{name}`; the tasks are: {', '.join(TASKS)}")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in options:
        if key not in known:
            raise ValueError(f"task `{name}` has no option `{key}`; its options are: {', '.join(known)}")
    return cls(**options)


def parse_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """`["length=50"]` -> `{"length": 50}`, each value converted to the option's type (int or float)."""
    cls = TASKS.get(name)
    if cls is None:
        raise ValueError(f"no task `{name}`; the tasks are: {', '.join(TASKS)}")
    types = {f.name: f.type for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ValueError(f"task option `{pair}`: write KEY=VALUE with KEY one of {', '.join(types)}")
        kind = float if types[key] in (float, "float") else int
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(
                f"task option `{key}` takes {'a number' if kind is float else 'an integer'}, got `{value}`"
            ) from None
    return out
