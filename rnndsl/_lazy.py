"""Lazy exports: a package's public names that need torch, imported on first use (PEP 562).

A package lists `name -> module` and gets a module `__getattr__` that imports the module when the name is
first read, then keeps it. `rnndsl check` and the command line's parser so never import torch, while
`from rnndsl.tasks import Digits` works as before.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package` for `names`, each read from the module it maps to."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's own name)
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)  # read once
        return value

    return __getattr__
