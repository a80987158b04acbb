"""Export: takes a `CompiledNetwork` (or `CompiledModel`), gives an ONNX file that onnxruntime runs.

The graph's inputs are named as the spec's inputs and shaped as the module takes them, batch first:
sequences (batch, time, size), token ids (batch, time) int64, static inputs (batch, size), memories
(batch, positions, size); `lengths` (batch,) int64 when asked for (and `lengths.MEMORY` for each memory).
Its outputs are named as the spec's outputs. Batch and time are dynamic axes: the file runs at any length.
The weights are the module's, as they are when exported (a training checkpoint's trained ones).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnndsl.backend.names import param_key
from rnndsl.lang.ir import Network, Node

try:
    from rnndsl.backend.onnx_export import ExportError, Weights, write_network
except ImportError as err:  # onnx is an extra: say which
    raise ImportError(f"exporting to ONNX needs the onnx package: pip install 'rnndsl[onnx]' ({err})") from err

if TYPE_CHECKING:
    import onnx

    from rnndsl.backend.onnx_graph import Builder
    from rnndsl.runtime.network import CompiledNetwork

__all__ = ["ExportError", "network_to_onnx", "save"]


def network_to_onnx(net: CompiledNetwork, lengths: bool = False, state: bool = False) -> onnx.ModelProto:
    """The ONNX model of one compiled network (see the module's docstring); `state=True` adds the state:
    inputs `state_in.NAME` (batch, k, size), the last k values of each node read k steps back as a call's
    `state=` takes them, and outputs `state_out.NAME`, as `out.state` gives them."""
    from onnx import TensorProto, helper

    from rnndsl.backend.onnx_graph import OPSET, Builder, value_info

    network = net.network
    _refuse_clashes(network, state)
    g = Builder(_np_dtype(net))
    inputs, graph_inputs = _graph_inputs(g, network)
    batch, steps, extra = _dims(g, network)
    lengths_in: str | None = None
    memory_lengths: dict[str, str] = {}
    if lengths:
        if any(n.input_kind not in ("static", "memory") for n in network.inputs) or extra:
            lengths_in = "lengths"
            graph_inputs.append(value_info("lengths", TensorProto.INT64, ["batch"]))
        for node in network.inputs:
            if node.input_kind == "memory":
                memory_lengths[node.name] = f"lengths.{node.name}"
                graph_inputs.append(value_info(f"lengths.{node.name}", TensorProto.INT64, ["batch"]))
    state_in = _state_inputs(g, network, graph_inputs) if state else None
    written = write_network(g, network, weights_of(net), inputs, batch, steps, lengths_in, memory_lengths, state_in)
    outputs = []
    for out in network.outputs:
        node = network[out.name]
        g.nodes.append(helper.make_node("Identity", [written.outputs[out.name]], [out.name]))
        outputs.append(value_info(out.name, _elem(g, node), _out_shape(node, out.last)))
    if state:
        for name, value in written.state.items():
            node = network[name]
            g.nodes.append(helper.make_node("Identity", [value], [f"state_out.{name}"]))
            outputs.append(value_info(f"state_out.{name}", _elem(g, node), _state_shape(node, network)))
    graph = helper.make_graph(g.nodes, network.name, [*graph_inputs, *extra], outputs, initializer=g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnndsl", ir_version=9
    )
    model.doc_string = f"rnndsl network {network.name}, from {network.source.name}"
    return model


def save(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Check the model (onnx.checker, with shape inference) and write it; the path written."""
    import onnx

    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, tmp)
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def weights_of(net: CompiledNetwork) -> Weights:
    """The module's tensors as the writer asks for them: (kind, node) -> a numpy array."""

    def array(t: torch.Tensor | None) -> np.ndarray:
        assert t is not None
        return t.detach().cpu().numpy()

    getters: dict[str, Callable[[str], Any]] = {
        "bias": net.bias,
        "param": net.param,
        "learned_init": net.initial,
        "init_weight": lambda n: net.init_projection[param_key(n)].weight,
        "init_bias": lambda n: net.init_projection[param_key(n)].bias,
    }

    def weights(kind: str, node: str) -> np.ndarray:
        if kind.startswith("weight"):
            return array(net.weight(node, int(kind.removeprefix("weight"))))
        return array(getters[kind](node))

    return weights


def _np_dtype(net: CompiledNetwork) -> np.dtype[Any]:
    dtype = net.like.dtype
    if dtype not in (torch.float32, torch.float64):
        raise ExportError(f"a network in {dtype}: export it in float32 or float64 (net.float())", net.network)
    return np.dtype(np.float32 if dtype == torch.float32 else np.float64)


def _refuse_clashes(network: Network, state: bool) -> None:
    names = {n.name for n in network.inputs}  # `lengths`, `steps` and `batch` are no input's (the checker)
    for out in network.outputs:
        if out.name in names:
            raise ExportError(
                f"output `{out.name}`, an input: an ONNX graph cannot give an input back under its own name",
                network,
                out.span,
                hint=f"output an expression of it instead: `{out.name}_out = {out.name}`",
            )


def _graph_inputs(g: Builder, network: Network) -> tuple[dict[str, str], list[Any]]:
    from onnx import TensorProto

    from rnndsl.backend.onnx_graph import value_info

    inputs, infos = {}, []
    for node in network.inputs:
        shapes: dict[str, list[int | str | None]] = {
            "seq": ["batch", "time", node.size],
            "tokens": ["batch", "time"],
            "static": ["batch", node.size],
            "memory": ["batch", f"{node.name}_positions", node.size],
        }
        shape = shapes[node.input_kind]
        elem = TensorProto.INT64 if node.is_tokens else g.dtype
        infos.append(value_info(node.name, elem, shape))
        inputs[node.name] = node.name
    return inputs, infos


def _dims(g: Builder, network: Network) -> tuple[str, str, list[Any]]:
    """The batch size and the length, (1,) int64 each: read off the inputs, or inputs of their own
    (`steps`, and `batch` for a network with no input) where nothing else says them."""
    from onnx import TensorProto

    from rnndsl.backend.onnx_graph import value_info

    extra = []
    nodes = network.inputs
    if nodes:
        batch = g.op("Shape", nodes[0].name, start=0, end=1, hint="batch")
    else:
        extra.append(value_info("batch", TensorProto.INT64, []))
        batch = g.op("Unsqueeze", "batch", g.ints([0]), hint="batch")
    timed = [n for n in nodes if n.input_kind in ("seq", "tokens")]
    if timed:
        steps = g.op("Shape", timed[0].name, start=1, end=2, hint="steps")
    else:
        extra.append(value_info("steps", TensorProto.INT64, []))
        steps = g.op("Unsqueeze", "steps", g.ints([0]), hint="steps")
    return batch, steps, extra


def _state_inputs(g: Builder, network: Network, infos: list[Any]) -> dict[str, str]:
    from rnndsl.backend.onnx_graph import value_info

    if network.reads_future:
        raise ExportError("the state of a network that reads the future: it has none to carry", network)
    out = {}
    for node in network.nodes:
        if network.delays[node.name][0]:
            out[node.name] = f"state_in.{node.name}"
            infos.append(value_info(out[node.name], _elem(g, node), _state_shape(node, network)))
    return out


def _elem(g: Builder, node: Node) -> int:
    from onnx import TensorProto

    return int(TensorProto.INT64) if node.is_tokens else g.dtype


def _out_shape(node: Node, last: bool) -> list[int | str | None]:
    if node.is_tokens:
        return ["batch"] if last else ["batch", "time"]
    return ["batch", node.size] if last else ["batch", "time", node.size]


def _state_shape(node: Node, network: Network) -> list[int | str | None]:
    k = network.delays[node.name][0]
    return ["batch", k] if node.is_tokens else ["batch", k, node.size]
