"""rnndsl: recurrent networks declared as graphs with feedback edges, compiled to PyTorch.

The pipeline, in processing order (one module per stage):

    parse    spec text            -> syntax tree          (grammars/rnn.lark, Lark LALR)
    inline   syntax tree          -> flat statements      (`use` blocks expanded)
    check    flat statements      -> ir.Network           (names, sizes, delays, loops; SpecError)
    graph    ir.Network           -> folded MultiDiGraph  (edges carry `delay`)
    unroll   ir.Network, steps    -> unrolled DiGraph     (nodes `(name, t)`)
    schedule ir.Network           -> stages               (batched over time, or one loop per cycle)
    codegen  ir.Network, stages   -> Python source        (the forward pass; `net.code()` shows it)
    runtime  ir.Network           -> CompiledNetwork      (a torch.nn.Module; inputs checked by validate)
    compose  model declarations   -> compose.Model        (networks in order, each on its own time axis)
    model    compose.Model        -> CompiledModel        (an encoder's summary bound to a decoder's input)
    generation a self-fed network -> Generation           (sampling, greedy, beam search)
    reference ir.Network, module  -> outputs              (the oracle: the unrolled DAG, node by node)
    draw     either graph         -> DOT / SVG / PNG
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import networkx as nx

from rnndsl.check import check, check_program, resolve
from rnndsl.errors import Diagnostic, SpecError
from rnndsl.graph import folded
from rnndsl.ir import Network
from rnndsl.parse import parse
from rnndsl.runtime import CompiledNetwork, Outputs, State
from rnndsl.unroll import unroll

__all__ = ["CompiledNetwork", "Diagnostic", "Network", "Outputs", "SpecError", "State", "compile", "graph", "load",
           "load_all", "load_checkpoint", "read_spec", "unroll"]
__version__ = "0.1.0"


def read_spec(spec: str | Path) -> tuple[str, str]:
    """(text, name) of a spec given as a path or as the text itself; a file may start with a byte-order mark."""
    if isinstance(spec, Path) or ("\n" not in spec and "{" not in spec and spec.endswith(".rnn")):
        path = Path(spec)
        try:
            return path.read_text(encoding="utf-8-sig"), str(spec)
        except FileNotFoundError:
            raise FileNotFoundError(f"no spec file at {spec}") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{spec} is not UTF-8 text: {err}") from None
    return spec.removeprefix("\ufeff"), "<string>"


def load_all(spec: str | Path) -> list[Network]:
    """Parse and check every network of a spec (a path or the text itself)."""
    from rnndsl.errors import Source

    text, name = read_spec(spec)
    return check_program(parse(text, name), Source(text, name))


def load(spec: str | Path, network: str | None = None) -> Network:
    """Parse and check one network of a spec; `network=` picks it when the file holds several.

    >>> load("network N { input x: 2\\n output x }").name
    'N'
    """
    from rnndsl.errors import Source

    text, name = read_spec(spec)
    return check(parse(text, name), Source(text, name), network)


def graph(spec: str | Path | Network, network: str | None = None) -> nx.MultiDiGraph:
    """The folded graph of a spec, a checked network or a compiled module."""
    net = getattr(spec, "network", spec)
    return folded(net if isinstance(net, Network) else load(spec, network))  # type: ignore[arg-type]


def compile(spec: str | Path, network: str | None = None, fuse_cells: bool | Collection[str] = True) -> Any:
    """Compile a spec (a path or the text itself) to a `torch.nn.Module`: a `CompiledNetwork`, or a
    `CompiledModel` when `network` names a model (or, without a name, when the file holds one model).

    Loops that are exactly an LSTM or GRU cell run on torch's fused kernels, and an Elman cell too except
    on a CPU, where the generated loop is faster. `fuse_cells=False` keeps every loop on the generated code
    (the same numbers, slower); a set of kinds ({"lstm", "gru", "rnn_tanh", "rnn_relu"}) fuses exactly those.

    >>> import torch
    >>> net = compile("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")
    >>> net(torch.zeros(1, 4, 2)).h.shape
    torch.Size([1, 4, 3])
    """
    from rnndsl.errors import Source
    from rnndsl.model import CompiledModel

    text, name = read_spec(spec)
    found = resolve(parse(text, name), Source(text, name), network)
    return CompiledNetwork(found, fuse_cells) if isinstance(found, Network) else CompiledModel(found, fuse_cells)


def load_checkpoint(path: str | Path, spec: str | Path | None = None, network: str | None = None) -> Any:
    """The trained network (or model) of a checkpoint that `rnndsl train` wrote, in eval mode: compiled
    from the spec text the checkpoint carries (or from `spec`, which must be the same spec), with its
    trained parameters. Call `.train()` on it to train on.

    >>> net = load_checkpoint("runs/digits_gru-digits/checkpoint.pt")  # doctest: +SKIP
    >>> net(x).y                                                        # doctest: +SKIP
    """
    from rnndsl.training.checkpoint import load_model

    return load_model(path, spec, network)
