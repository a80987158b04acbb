"""Export: takes a `CompiledNetwork` (or `CompiledModel`), gives an ONNX model that onnxruntime runs.

The graph's inputs are named as the spec's inputs and shaped as the module takes them, batch first:
sequences (batch, time, size), token ids (batch, time) int64, static inputs (batch, size), memories
(batch, positions, size). Asked for, `lengths` (batch,) int64 (a model's: `lengths.INSTANCE`; a memory's
own: `lengths.MEMORY`), and the state, `state_in.NAME` / `state_out.NAME` (batch, k, size). Its outputs are
named as the spec's outputs. Batch and time are dynamic axes: the file runs at any length. The weights are
the module's as they are when exported (a training checkpoint's trained ones).

`greedy=True` exports generation instead: the self-fed token input runs free, fed the argmax of its feed at
every step from its start token, for `steps` (an int64 input) tokens; the outputs are `tokens` (batch,
steps) and `lengths` (batch,), cut after the first `stop` token when one is given, as
`generate(steps, greedy=True, stop=...)` gives them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnndsl.backend.names import param_key
from rnndsl.lang.ir import Network, Node
from rnndsl.runtime.files import atomic_write
from rnndsl.runtime.generation import check_token

try:
    import onnx
    from onnx import TensorProto, helper

    from rnndsl.backend.onnx_export import ExportError, NetworkGraph, Weights, write_network
    from rnndsl.backend.onnx_graph import OPSET, Builder, value_info
except ImportError as err:  # onnx is an extra: say which
    raise ImportError(f"exporting to ONNX needs the onnx package: pip install 'rnndsl[onnx]' ({err})") from err

if TYPE_CHECKING:
    from rnndsl.frontend.compose import Instance
    from rnndsl.runtime.model import CompiledModel
    from rnndsl.runtime.network import CompiledNetwork

__all__ = ["ExportError", "model_to_onnx", "network_to_onnx", "save"]


def network_to_onnx(
    net: CompiledNetwork, lengths: bool = False, state: bool = False, greedy: bool = False, stop: int | None = None
) -> onnx.ModelProto:
    """The ONNX model of one compiled network (see the module's docstring)."""
    network = net.network
    _refuse_output_inputs(network)
    if greedy:
        return _greedy(_Graph(net), [(None, net)], lengths, stop)
    graph = _Graph(net)
    batch = graph.batch([n.name for n in network.inputs])
    written = graph.network(net, network, batch, lengths, state=state)
    for out in network.outputs:
        graph.output(out.name, written.outputs[out.name], network[out.name], _out_shape(network[out.name], out.last))
    for name, value in written.state.items():  # given only when asked for
        node = network[name]
        graph.output(f"state_out.{name}", value, node, _state_shape(node, network))
    return graph.model(network.name, f"rnndsl network {network.name}, from {network.source.name}")


def model_to_onnx(
    model: CompiledModel, lengths: bool = False, greedy: bool = False, stop: int | None = None
) -> onnx.ModelProto:
    """The ONNX model of a compiled model: its instances in order, each bound input the ONNX value of the
    output it is bound to (a memory with its instance's lengths)."""
    ir = model.model
    graph = _Graph(model.net(ir.instances[0].name))
    instances = [(inst, model.net(inst.name)) for inst in ir.instances]
    if greedy:
        return _greedy(graph, instances, lengths, stop)
    batch = graph.batch([n.name for _, n in ir.inputs])
    values: dict[str, NetworkGraph] = {}
    for inst, net in instances:
        values[inst.name] = graph.network(net, inst.network, batch, lengths, inst, values)
    for inst, out in ir.outputs:
        node = inst.network[out.name]
        graph.output(out.name, values[inst.name].outputs[out.name], node, _out_shape(node, out.last))
    return graph.model(ir.name, f"rnndsl model {ir.name}, from {ir.source.name}")


def save(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Check the model (onnx.checker, with shape inference) and write it; the path written."""
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder: give a file's name, such as model.onnx", str(path))
    return atomic_write(path, lambda file: file.write(model.SerializeToString()))  # never half a file


class _Graph:
    """One ONNX graph being written: its builder, inputs and outputs."""

    def __init__(self, net: CompiledNetwork) -> None:
        self.g = Builder(_np_dtype(net))
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []

    def input(self, name: str, elem: int, shape: list[int | str | None]) -> str:
        self.inputs.append(value_info(name, elem, shape))
        return name

    def output(self, name: str, value: str, node: Node | None, shape: list[int | str | None]) -> None:
        self.g.nodes.append(helper.make_node("Identity", [value], [name]))
        elem = int(TensorProto.INT64) if node is None or node.is_tokens else self.g.dtype
        self.outputs.append(value_info(name, elem, shape))

    def batch(self, given: list[str]) -> str:
        """The batch size, (1,) int64: read off the first input given, else an input `batch` of its own."""
        if given:
            return str(self.g.op("Shape", given[0], start=0, end=1, hint="batch"))
        return str(self.g.op("Unsqueeze", self.input("batch", TensorProto.INT64, []), self.g.ints([0]), hint="batch"))

    def network(
        self,
        net: CompiledNetwork,
        network: Network,
        batch: str,
        lengths: bool,
        inst: Instance | None = None,
        bound: dict[str, NetworkGraph] | None = None,
        state: bool = False,
        free: bool = False,
        steps: str | None = None,
    ) -> NetworkGraph:
        """Write one network (a model's instance `inst`, its bound inputs from the instances before it)."""
        g, tag = self.g, "" if inst is None else f".{inst.name}"
        values: dict[str, str] = {}
        for node in network.inputs:
            binding = next((b for b in inst.bindings if b[0] == node.name), None) if inst else None
            if binding is not None and bound is not None:
                values[node.name] = bound[binding[1]].outputs[binding[2]]
            else:
                values[node.name] = self.input(node.name, _elem(g, node), _in_shape(node, tag))
        timed = [n.name for n in network.inputs if n.input_kind in ("seq", "tokens")]
        if steps is None:
            steps = (
                g.op("Shape", values[timed[0]], start=1, end=2, hint="steps")
                if timed
                else g.op("Unsqueeze", self.input(f"steps{tag}", TensorProto.INT64, []), g.ints([0]))
            )
        given_lengths = self.input(f"lengths{tag}", TensorProto.INT64, ["batch"]) if lengths and not free else None
        memory_lengths = self._memory_lengths(network, lengths, inst, bound)
        state_in = self._state_inputs(network) if state else None
        return write_network(g, network, weights_of(net), values, batch, steps, given_lengths, memory_lengths, state_in)

    def _memory_lengths(
        self, network: Network, lengths: bool, inst: Instance | None, bound: dict[str, NetworkGraph] | None
    ) -> dict[str, str]:
        """Each memory's lengths: its instance's where it is bound to one, else an input when asked."""
        out = {}
        for node in network.inputs:
            if node.input_kind != "memory":
                continue
            binding = next((b for b in inst.bindings if b[0] == node.name), None) if inst else None
            if binding is not None and bound is not None:
                source = bound[binding[1]].lengths
                if source is not None:
                    out[node.name] = source
            elif lengths:
                out[node.name] = self.input(f"lengths.{node.name}", TensorProto.INT64, ["batch"])
        return out

    def _state_inputs(self, network: Network) -> dict[str, str]:
        if network.reads_future:
            raise ExportError("the state of a network that reads the future: it has none to carry", network)
        return {
            node.name: self.input(f"state_in.{node.name}", _elem(self.g, node), _state_shape(node, network))
            for node in network.nodes
            if network.delays[node.name][0]
        }

    def model(self, name: str, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.g.nodes, name, self.inputs, self.outputs, initializer=self.g.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnndsl", ir_version=9
        )
        model.doc_string = doc
        return model


def _greedy(
    graph: _Graph, instances: Sequence[tuple[Instance | None, CompiledNetwork]], lengths: bool, stop: int | None
) -> onnx.ModelProto:
    """Greedy generation: the instances before the generating one run on their inputs, the generating one
    (the one with a self-fed token input) runs free for `steps` + 1 steps from its start token; its step
    t > 0 is fed the argmax of its feed, and tokens 1 .. steps are what it generated."""
    g = graph.g
    found = [(inst, net) for inst, net in instances if any(n.is_tokens for n in net.network.self_fed)]
    if len(found) != 1:
        first = instances[0][1].network
        raise ExportError(
            f"greedy generation: it needs one network that feeds itself a token "
            f"(`input w: tokens(N) = sample(softmax(y[t-1]))`), and {len(found)} do",
            first,
        )
    gen_inst, gen_net = found[0]
    fed = next(n for n in gen_net.network.self_fed if n.is_tokens)
    check_token(gen_net, fed, stop, "stop")  # as `generate(stop=...)`: a token that can never come is a mistake
    free = gen_net.network.running_free(frozenset(n.name for n in gen_net.network.self_fed))
    given = [
        n.name
        for inst, net in instances
        for n in (free if net is gen_net else net.network).inputs
        if inst is None or n.name not in inst.bound
    ]
    batch = graph.batch(given)
    count = graph.input("steps", TensorProto.INT64, [])
    steps = g.op("Add", g.op("Unsqueeze", count, g.ints([0])), g.ints([1]))  # the start, then `steps` tokens
    written: dict[str, NetworkGraph] = {}
    for inst, net in instances:
        if net is gen_net:
            out = graph.network(net, free, batch, lengths, inst, written, free=True, steps=steps)
            break
        assert inst is not None
        written[inst.name] = graph.network(net, inst.network, batch, lengths, inst, written)
    tokens = g.op("Slice", out.values[fed.name], g.ints([1]), g.ints([2**63 - 1]), g.ints([1]))
    made = g.op("Expand", count, batch)  # every row: `steps` tokens, unless a stop token comes first
    if stop is not None:
        tokens, made = _cut_at_stop(g, tokens, count, made, stop)
    graph.output("tokens", tokens, None, ["batch", "steps"])
    graph.output("lengths", made, None, ["batch"])
    name = gen_net.network.name if gen_inst is None else gen_inst.name
    return graph.model(f"{name} greedy", f"rnndsl greedy generation of {fed.name} by {name}")


def _cut_at_stop(g: Builder, tokens: str, count: str, made: str, stop: int) -> tuple[str, str]:
    """Each row up to and including its first `stop`, the stop token past it (as `generation._cut_at_stop`)."""
    positions = g.op("Unsqueeze", g.op("Range", g.ints([0], scalar=True), count, g.ints([1], scalar=True)), g.ints([0]))
    hit = g.op("Equal", tokens, g.ints([stop], scalar=True))
    first = g.op("ReduceMin", g.op("Where", hit, positions, count), g.ints([1]), keepdims=0)
    made = g.op("Min", made, g.op("Add", first, g.ints([1], scalar=True)))
    inside = g.op("Less", positions, g.op("Unsqueeze", made, g.ints([1])))
    return g.op("Where", inside, tokens, g.ints([stop], scalar=True)), made


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


def _refuse_output_inputs(network: Network) -> None:
    names = {n.name for n in network.inputs}  # `lengths`, `steps` and `batch` are no input's (the checker)
    for out in network.outputs:
        if out.name in names:
            raise ExportError(
                f"output `{out.name}`, an input: an ONNX graph cannot give an input back under its own name",
                network,
                out.span,
                hint=f"output an expression of it instead: `{out.name}_out = {out.name}`",
            )


def _elem(g: Builder, node: Node) -> int:
    return int(TensorProto.INT64) if node.is_tokens else g.dtype


def _in_shape(node: Node, tag: str) -> list[int | str | None]:
    shapes: dict[str, list[int | str | None]] = {
        "seq": ["batch", f"time{tag}", node.size],
        "tokens": ["batch", f"time{tag}"],
        "static": ["batch", node.size],
        "memory": ["batch", f"{node.name}_positions", node.size],
    }
    return shapes[node.input_kind]


def _out_shape(node: Node, last: bool) -> list[int | str | None]:
    if node.is_tokens:
        return ["batch"] if last else ["batch", "time"]
    return ["batch", node.size] if last else ["batch", "time", node.size]


def _state_shape(node: Node, network: Network) -> list[int | str | None]:
    k = network.delays[node.name][0]
    return ["batch", k] if node.is_tokens else ["batch", k, node.size]
