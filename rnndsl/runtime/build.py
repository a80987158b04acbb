"""Build: takes a spec (a path or the text itself), gives the `torch.nn.Module` that runs it.

`rnndsl.compile` is `compile` here: a `CompiledNetwork`, or a `CompiledModel` for a model.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from rnndsl.frontend.check import resolve
from rnndsl.frontend.load import read_spec
from rnndsl.frontend.parse import parse
from rnndsl.lang.errors import Source
from rnndsl.lang.ir import Network
from rnndsl.runtime.model import CompiledModel
from rnndsl.runtime.network import CompiledNetwork

__all__ = ["compile"]


def compile(spec: str | Path, network: str | None = None, fuse_cells: bool | Collection[str] = True) -> Any:
    """`rnndsl.compile`: the network, or the model, that `network` names in a spec (see there)."""
    text, name = read_spec(spec)
    found = resolve(parse(text, name), Source(text, name), network)
    return CompiledNetwork(found, fuse_cells) if isinstance(found, Network) else CompiledModel(found, fuse_cells)
