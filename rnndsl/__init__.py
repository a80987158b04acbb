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
from typing import TYPE_CHECKING, Any

import networkx as nx

from rnndsl._version import __version__ as __version__
from rnndsl.frontend.load import load, load_all, read_spec
from rnndsl.graphs.folded import folded
from rnndsl.graphs.unroll import unroll
from rnndsl.lang.errors import Diagnostic, SpecError
from rnndsl.lang.ir import Network

if TYPE_CHECKING:
    from rnndsl.runtime import CompiledNetwork, Outputs, State

__all__ = [
    "CompiledNetwork",
    "Diagnostic",
    "Network",
    "Outputs",
    "SpecError",
    "State",
    "compile",
    "graph",
    "load",
    "load_all",
    "load_checkpoint",
    "read_spec",
    "unroll",
]

_RUNTIME = ("CompiledNetwork", "Outputs", "State")  # need torch: imported on first use, so `rnndsl check` needs none


def __getattr__(name: str) -> Any:
    if name in _RUNTIME:
        from rnndsl import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'rnndsl' has no attribute {name!r}")


def graph(spec: str | Path | Network, network: str | None = None) -> nx.MultiDiGraph:
    """The folded graph of a spec, a checked network or a compiled module."""
    net = getattr(spec, "network", spec)
    return folded(net if isinstance(net, Network) else load(spec, network))  # type: ignore[arg-type]


def compile(spec: str | Path, network: str | None = None, fuse_cells: bool | Collection[str] = True) -> Any:
    """Compile a spec (a path or the text itself) to a `torch.nn.Module`: a `CompiledNetwork`, or a
    `CompiledModel` when `network` names a model (or, without a name, when the file holds one model).

    Loops that are exactly an LSTM or GRU cell run on torch's fused kernels, and an Elman cell too except
    on a CPU, where the generated loop is faster; a loop linear in its own past (`c = f * c[t-1] + b`: QRNN,
    minGRU) runs as one kernel call over time; on a CPU, other loops run each step's elementwise work as
    generated C ("step", built by the system's C compiler at the first call and cached). `fuse_cells=False`
    keeps every loop on the generated torch code (the same numbers up to rounding, slower); a set of kinds
    ({"lstm", "gru", "rnn_tanh", "rnn_relu", "linear", "step"}) fuses exactly those.

    >>> import torch
    >>> net = compile("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")
    >>> net(torch.zeros(1, 4, 2)).h.shape
    torch.Size([1, 4, 3])
    """
    from rnndsl.runtime.build import compile as build

    return build(spec, network, fuse_cells)


def load_checkpoint(path: str | Path, spec: str | Path | None = None, network: str | None = None) -> Any:
    """The trained network (or model) of a checkpoint that `rnndsl train` wrote, in eval mode: compiled
    from the spec text the checkpoint carries (or from `spec`, which must be the same spec), with its
    trained parameters. Call `.train()` on it to train on.

    >>> net = load_checkpoint("runs/digits_gru-digits/checkpoint.pt")  # doctest: +SKIP
    >>> net(x).y                                                        # doctest: +SKIP
    """
    from rnndsl.training.checkpoint import load_model

    return load_model(path, spec, network)
