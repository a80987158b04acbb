"""Runtime: takes a checked `ir.Network`, gives `CompiledNetwork`, a `torch.nn.Module` that runs it.

The module owns the parameters (one weight per layer source, written (out, in), one bias per layer,
learned initial values and init projections), checks every input it is given, and runs the code that
`codegen` generated for the network (compiled once per module, kept out of pickles).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from rnndsl import kernels
from rnndsl import syntax as s
from rnndsl.codegen import bias_name, generate, weight_name
from rnndsl.evaluate import evaluate
from rnndsl.graph import folded
from rnndsl.ir import Network, Node

__all__ = ["CompiledNetwork", "Outputs", "State"]


def _key(name: str) -> str:
    """A node's key in the module's dicts: '.' (block members, `enc.h`) becomes `__`, and a name that
    is already an attribute of nn.ModuleDict/ParameterDict (`update`, `keys`, `to`) gets a `__` suffix.
    User names never hold `__`, so keys cannot clash."""
    key = name.replace(".", "__")
    return key + "__" if hasattr(nn.ModuleDict, key) or hasattr(nn.ParameterDict, key) else key


class State(dict):
    """What delayed references need to continue a sequence: node -> (batch, k, size), oldest first."""

    def __init__(self, values: Mapping[str, torch.Tensor], signature: str) -> None:
        super().__init__(values)
        self.signature = signature

    def detach(self) -> State:
        """The same state cut from the graph (truncated backpropagation through time)."""
        return State({k: v.detach() for k, v in self.items()}, self.signature)


class Outputs(dict[str, torch.Tensor]):
    """The outputs of one call, a dict: `out["h"]`, or `out.h` where the name is no dict method;
    `out.state` to carry into the next call. Being a dict, it is seen by DistributedDataParallel."""

    def __init__(self, values: dict[str, torch.Tensor], state: State | None) -> None:
        super().__init__(values)
        self.state = state

    def __getattr__(self, name: str) -> torch.Tensor:
        if name in self:
            return self[name]
        raise AttributeError(f"no output `{name}`; outputs are: {', '.join(self)}")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.items())
        return f"Outputs({shapes})"


class _Layer(nn.Module):
    def __init__(self, node: Node) -> None:
        super().__init__()
        self.weight = nn.ParameterList([nn.Parameter(torch.empty(node.size, w)) for w in node.source_sizes])
        self.bias: nn.Parameter | None = nn.Parameter(torch.empty(node.size)) if node.bias else None
        self.reset(node)

    def reset(self, node: Node) -> None:
        bound = 1 / math.sqrt(node.size)
        init = {
            "default": lambda w: nn.init.uniform_(w, -bound, bound),
            "uniform": lambda w: nn.init.uniform_(w, -bound, bound),
            "xavier": nn.init.xavier_uniform_,
            "orthogonal": nn.init.orthogonal_,
            "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
            "zeros": nn.init.zeros_,
        }[node.weight_init]
        with torch.no_grad():
            for w in self.weight:
                init(w)
            if self.bias is not None:
                nn.init.uniform_(self.bias, -bound, bound) if node.weight_init in ("default", "uniform") \
                    else nn.init.zeros_(self.bias)


class CompiledNetwork(nn.Module):
    """A network compiled to PyTorch. Call it with inputs (batch, time, size); see `forward`.

    >>> import rnndsl, torch
    >>> net = rnndsl.compile("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")
    >>> net(torch.zeros(4, 5, 2)).h.shape
    torch.Size([4, 5, 3])
    """

    def __init__(self, network: Network, fuse_cells: bool = True) -> None:
        super().__init__()
        self.network = network
        self.fuse_cells = fuse_cells
        self.layers = nn.ModuleDict({_key(n.name): _Layer(n) for n in network.nodes if n.op == "layer"})
        self.learned_init = nn.ParameterDict({_key(n.name): nn.Parameter(torch.zeros(n.size))
                                         for n in network.nodes if n.init.kind == "learned"})
        self.init_projection = nn.ModuleDict({
            _key(n.name): nn.Linear(n.init.size, n.size) for n in network.nodes
            if n.init.kind == "expr" and n.init.size != n.size})
        self.register_buffer("_like", torch.zeros(()), persistent=False)
        self.signature = _signature(network)
        # (layer key, [(generated name, ParameterList index, or "" for the bias)]), fixed by the network
        self._slots = [(_key(n.name), [(weight_name(n.name, j), str(j)) for j in range(len(n.sources))]
                        + ([(bias_name(n.name), "")] if n.bias else [])) for n in network.nodes if n.op == "layer"]
        self._code: dict[tuple[bool, bool], Any] = {}

    # ---- introspection -----------------------------------------------------------------------

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The folded graph; edges carry `delay`."""
        return folded(self.network)

    def code(self, lengths: bool = False) -> str:
        """The Python source the compiler generated for this network's forward pass."""
        return generate(self.network, lengths, self.fuse_cells).source

    def weight(self, layer: str, source: str | int) -> nn.Parameter:
        """The weight (out, in) of one source of a layer, by its text as written (`"h[t-1]"`) or index."""
        node = self._layer_node(layer)
        if isinstance(source, int):
            index = source
        else:
            texts = [_text(e) for e in node.sources]
            wanted = "".join(source.split())
            if wanted not in texts:
                raise KeyError(f"layer `{layer}` has no source `{source}`; its sources are: {', '.join(texts)}")
            index = texts.index(wanted)
        return self._layer(layer).weight[index]

    def bias(self, layer: str) -> nn.Parameter | None:
        self._layer_node(layer)
        return self._layer(layer).bias

    def initial(self, name: str) -> nn.Parameter:
        """The learned initial value of a node (`init NAME = learned`)."""
        if _key(name) not in self.learned_init:
            learned = [n.name for n in self.network.nodes if n.init.kind == "learned"]
            raise KeyError(f"`{name}` has no learned initial value; these do: {', '.join(learned) or 'none'}")
        return self.learned_init[_key(name)]

    def _layer(self, name: str) -> _Layer:
        layer = self.layers[_key(name)]
        assert isinstance(layer, _Layer)
        return layer

    @property
    def like(self) -> torch.Tensor:
        """A scalar of the network's dtype and device."""
        return self._buffers["_like"]  # type: ignore[return-value]

    def _layer_node(self, layer: str) -> Node:
        node = self.network.by_name.get(layer)
        if node is None or node.op != "layer":
            layers = [n.name for n in self.network.nodes if n.op == "layer"]
            raise KeyError(f"no layer `{layer}`; layers are: {', '.join(layers)}")
        return node

    # ---- running -----------------------------------------------------------------------------

    def forward(self, *args: torch.Tensor, lengths: torch.Tensor | None = None, state: Mapping[str, Any] | None = None,
                steps: int | None = None, batch: int | None = None, check_finite: bool = False,
                **inputs: torch.Tensor) -> Outputs:
        """Run the network over whole sequences.

        Sequence inputs are (batch, time, size), token inputs (batch, time) int64, static inputs
        (batch, size). `lengths` (batch,) marks padded batches; `state` continues from an earlier
        call's `out.state`; `steps` sets the length when the network has no sequence input, and
        `batch` the batch size when it has no input at all.
        `check_finite` refuses NaN or Inf in the inputs and raises `NonFiniteError` naming the node and
        step where one first appears in a value or, during backward, in a gradient (slow: a debug aid).
        """
        from rnndsl.guard import Watch, check_inputs
        from rnndsl.validate import validate

        call = validate(self, args, inputs, lengths, state, steps, batch)
        watch = None
        if check_finite:
            check_inputs(call.inputs, call.lengths)
            watch = Watch([n.name for n in self.network.nodes], call.lengths)
        boundary = self.boundary_values(call.inputs, call.batch)
        history = self.histories(boundary, call.state, call.batch)
        params = self.parameter_table()
        fn = self._compiled(call.lengths is not None, guard=check_finite)
        values, new_state = fn(params, call.inputs, boundary, history, call.batch, call.steps, call.lengths,
                               self.training, watch)
        if watch is not None:
            watch.raise_first()
        return Outputs(values, None if self.network.reads_future else State(new_state, self.signature))

    def parameter_table(self) -> dict[str, torch.Tensor]:
        """Every layer parameter under the name generated code reads it by (`_W0_h`, `_b_h`)."""
        # Read through the modules' parameter dicts at each call (.to() may replace the tensors); this
        # runs on every forward, so it avoids nn.Module attribute lookups and ParameterList iteration.
        table: dict[str, torch.Tensor] = {}
        layers = self.layers._modules
        for key, slots in self._slots:
            layer = layers[key]
            assert layer is not None
            weights = layer._modules["weight"]._parameters  # type: ignore[union-attr]
            for name, j in slots:
                table[name] = weights[j] if j else layer._parameters["bias"]  # type: ignore[assignment]
        return table

    def boundary_values(self, inputs: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
        """What each delayed node reads before the first step and past the last: its `init`."""
        like = self.like
        out: dict[str, torch.Tensor] = {"__like__": like}
        for node in self.network.nodes:
            if self.network.delays[node.name] != (0, 0):
                out[node.name] = self.init_value(node, inputs, batch)
        return out

    def init_value(self, node: Node, inputs: Mapping[str, torch.Tensor], batch: int) -> torch.Tensor:
        like = self.like
        if node.is_tokens:
            return torch.tensor(-1, device=like.device)
        if node.init.kind == "learned":
            return self.learned_init[_key(node.name)].expand(batch, -1)
        if node.init.kind == "expr" and node.init.expr is not None:
            value = evaluate(node.init.expr, lambda r: inputs[r.name], like)
            value = value.expand(batch, node.size if value.dim() == 0 else -1)  # a plain number broadcasts
            if node.init.size != node.size:
                value = self.init_projection[_key(node.name)](value)
            return value
        return like.new_zeros(batch, node.size)

    def histories(self, boundary: dict[str, torch.Tensor], state: Mapping[str, torch.Tensor] | None,
                  batch: int) -> dict[str, torch.Tensor]:
        """For each node read at `[t-k]`: the k values before the first step, from `state` or from init."""
        out = {}
        for node in self.network.nodes:
            k, _ = self.network.delays[node.name]
            if k == 0:
                continue
            if state is not None:
                out[node.name] = state[node.name]
            elif node.is_tokens:
                out[node.name] = torch.full((batch, k), -1, dtype=torch.long, device=self.like.device)
            else:
                out[node.name] = boundary[node.name].unsqueeze(1).expand(-1, k, -1)
        return out

    def _compiled(self, with_lengths: bool, guard: bool = False) -> Any:
        fn = self._code.get((with_lengths, guard))
        if fn is None:
            generated = generate(self.network, with_lengths, self.fuse_cells, guard)
            namespace: dict[str, Any] = {"torch": torch, "F": F, "K": kernels, "math": math}
            exec(compile(generated.source, f"<rnndsl {self.network.name}>", "exec"), namespace)
            fn = self._code[with_lengths, guard] = namespace["forward"]
        return fn

    def __getstate__(self) -> dict[str, Any]:
        # Generated functions cannot be pickled; they are rebuilt on first use.
        state = self.__dict__.copy()
        state["_code"] = {}
        return state

    def extra_repr(self) -> str:
        ins = ", ".join(f"{n.name}: {n.input_kind} {n.size}" for n in self.network.inputs)
        outs = ", ".join(o.name + (" last" if o.last else "") for o in self.network.outputs)
        return f"network={self.network.name}, inputs=({ins}), outputs=({outs})"


def _text(expr: s.Expr) -> str:
    from rnndsl.check import _show

    return "".join(_show(expr).split())


def _signature(network: Network) -> str:
    """Identifies a network's state layout: its name, and the nodes read with a delay with their sizes."""
    parts = [network.name] + [f"{n.name}:{n.size}:{network.delays[n.name][0]}" for n in network.nodes]
    return f"{network.name}/{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:12]}"
