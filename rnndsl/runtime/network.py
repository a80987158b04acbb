"""Runtime: takes a checked `ir.Network`, gives `CompiledNetwork`, a `torch.nn.Module` that runs it.

The module owns the parameters (one weight per layer source, written (out, in), one bias per layer,
learned initial values and init projections), checks every input it is given, and runs the code that
`codegen` generated for the network (compiled once per module, kept out of pickles).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from rnndsl.backend import kernels, native
from rnndsl.backend.codegen import flat_weights, fused_kinds, generate
from rnndsl.backend.evaluate import evaluate
from rnndsl.backend.names import bias_name, learned_name, param_key, weight_name
from rnndsl.backend.plan import Joins
from rnndsl.graphs.folded import folded
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network, Node
from rnndsl.runtime.feed import Feed, Sampler
from rnndsl.runtime.validate import Call, Signature, validate
from rnndsl.runtime.values import Outputs, State, token_start

if TYPE_CHECKING:
    from rnndsl.runtime.generation import Generation

__all__ = ["CompiledNetwork", "Outputs", "State", "token_start"]


@dataclass(frozen=True)
class Layout:
    """What every call needs to know of a network, worked out once (a call reads it, never the IR's
    properties, which are recomputed at each access)."""

    network: Network
    inputs: tuple[Node, ...]
    names: tuple[str, ...]  # the inputs' names, in definition order
    sequences: tuple[str, ...]  # inputs with a time axis (sequence or tokens)
    memories: tuple[str, ...]  # memory inputs: (batch, positions, size), the same at every step
    attends: tuple[str, ...]  # nodes `c = attend(...)`: the code gives their weights as values["attention:c"]
    fed: frozenset[str]  # self-fed inputs: the network feeds them when they are not given
    delayed: tuple[Node, ...]  # nodes read with a delay: each needs a boundary value
    past: tuple[tuple[Node, int], ...]  # nodes read at [t-k], with the deepest k: each needs a history
    reads_future: bool
    zero_starts: bool  # every delayed node starts from zeros: a call's start values can be kept whole

    @classmethod
    def of(cls, network: Network) -> Layout:
        inputs = tuple(network.inputs)
        delays = network.delays
        return cls(
            network,
            inputs,
            tuple(n.name for n in inputs),
            tuple(n.name for n in inputs if n.input_kind not in ("static", "memory")),
            tuple(n.name for n in inputs if n.input_kind == "memory"),
            tuple(n.name for n in network.nodes if n.attention),
            frozenset(n.name for n in network.self_fed),
            tuple(n for n in network.nodes if delays[n.name] != (0, 0)),
            tuple((n, delays[n.name][0]) for n in network.nodes if delays[n.name][0]),
            network.reads_future,
            all(n.init.kind == "zeros" and not n.is_tokens for n in network.nodes if delays[n.name] != (0, 0)),
        )


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
                nn.init.uniform_(self.bias, -bound, bound) if node.weight_init in (
                    "default",
                    "uniform",
                ) else nn.init.zeros_(self.bias)


class CompiledNetwork(nn.Module):
    """A network compiled to PyTorch. Call it with inputs (batch, time, size); see `forward`.

    >>> import rnndsl, torch
    >>> net = rnndsl.compile("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")
    >>> net(torch.zeros(4, 5, 2)).h.shape
    torch.Size([4, 5, 3])
    """

    def __init__(self, network: Network, fuse_cells: bool | Collection[str] = True) -> None:
        super().__init__()
        self.network = network
        self.fuse_cells = fuse_cells
        self.layers = nn.ModuleDict({param_key(n.name): _Layer(n) for n in network.nodes if n.op == "layer"})
        self.learned_init = nn.ParameterDict(
            {param_key(n.name): nn.Parameter(torch.zeros(n.size)) for n in network.nodes if n.init.kind == "learned"}
        )
        self.params = nn.ParameterDict(  # an OrderedDict keeps definition order (a dict would be sorted)
            OrderedDict((param_key(n.name), nn.Parameter(_param_start(n))) for n in network.nodes if n.op == "param")
        )
        self._learned = [(learned_name(n.name), param_key(n.name)) for n in network.nodes if n.op == "param"]
        self.init_projection = nn.ModuleDict(
            {
                param_key(n.name): nn.Linear(n.init.size, n.size)
                for n in network.nodes
                if n.init.kind == "expr" and n.init.size != n.size
            }
        )
        self.register_buffer("_like", torch.zeros(()), persistent=False)
        self.signature = _signature(network)
        # (layer key, [(generated name, ParameterList index, or "" for the bias)]), fixed by the network
        self._slots = [
            (
                param_key(n.name),
                [(weight_name(n.name, j), str(j)) for j in range(len(n.sources))]
                + ([(bias_name(n.name), "")] if n.bias else []),
            )
            for n in network.nodes
            if n.op == "layer"
        ]
        self._code: dict[tuple[bool, bool, frozenset[str], bool, str, bool], Any] = {}
        # variants (with lengths, guarded, free, device, scan) whose loops all run without a generated backward
        self._loopless: set[tuple[bool, bool, frozenset[str], str, bool]] = set()
        # While autograd records, loops run as one autograd node with a generated backward (`loop_backward`);
        # False keeps them on autograd (the same numbers up to rounding, slower).
        self.generated_backward = True
        # Each fused cell's parameters are views of one buffer laid out as the kernel takes them (`_flatten`).
        self._flats: dict[str, kernels.Flat] = {}  # the generated code reads it as `_J`
        self._flat_cells: dict[str, list[Joins]] = {}  # by device type: what `_flatten` lays out (cells, groups)
        self.register_load_state_dict_post_hook(_flatten_after_load)
        self._flatten()

    # ---- introspection -----------------------------------------------------------------------

    @property
    def ir(self) -> Network:
        """What was compiled: the checked network (a `CompiledModel`'s is its `compose.Model`)."""
        return self.network

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The folded graph; edges carry `delay`."""
        return folded(self.network)

    def code(self, lengths: bool = False, free: bool = False, grad: bool = False) -> str:
        """The Python source the compiler generated for this network's forward pass on its device (`free`:
        the variant whose self-fed inputs run free; `grad`: the one run when autograd records, whose loops
        carry a generated backward)."""
        network = self.network.running_free(frozenset(n.name for n in self.network.self_fed)) if free else self.network
        return generate(
            network,
            lengths,
            self.fuse_cells,
            differentiate=grad and self.generated_backward,
            device=self.like.device.type,
        ).source

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

    def param(self, name: str) -> nn.Parameter:
        """The learned vector of a `param` node, (size,); its state_dict key is `params.NAME`."""
        if name not in self.network.by_name or self.network[name].op != "param":
            params = [n.name for n in self.network.nodes if n.op == "param"]
            raise KeyError(f"no param `{name}`; the params are: {', '.join(params) or 'none'}")
        return self.params[param_key(name)]

    def initial(self, name: str) -> nn.Parameter:
        """The learned initial value of a node (`init NAME = learned`)."""
        if param_key(name) not in self.learned_init:
            learned = [n.name for n in self.network.nodes if n.init.kind == "learned"]
            raise KeyError(f"`{name}` has no learned initial value; these do: {', '.join(learned) or 'none'}")
        return self.learned_init[param_key(name)]

    def _layer(self, name: str) -> _Layer:
        layer = self.layers[param_key(name)]
        assert isinstance(layer, _Layer)
        return layer

    @property
    def layout(self) -> Layout:
        """The network's inputs and delayed nodes as every call reads them, worked out once."""
        layout: Layout | None = self.__dict__.get("_layout")
        if layout is None or layout.network is not self.network:
            layout = self.__dict__["_layout"] = Layout.of(self.network)
        return layout

    @property
    def like(self) -> torch.Tensor:
        """A scalar of the network's dtype and device."""
        return self._buffers["_like"]  # type: ignore[return-value]

    def _device_type(self) -> str:
        """`self.like.device.type`, as `_flatten` read it when the module was made or moved (every call reads it,
        and `.device.type` costs about a microsecond: a device object made, then its type); read afresh where
        `like` is another tensor (swapped in by `torch.func.functional_call`)."""
        like = self._buffers["_like"]
        kept = self.__dict__.get("_device_of")
        return kept[1] if kept is not None and kept[0] is like else like.device.type  # type: ignore[union-attr]

    def _layer_node(self, layer: str) -> Node:
        node = self.network.by_name.get(layer)
        if node is None or node.op != "layer":
            layers = [n.name for n in self.network.nodes if n.op == "layer"]
            raise KeyError(f"no layer `{layer}`; layers are: {', '.join(layers)}")
        return node

    # ---- running -----------------------------------------------------------------------------

    def forward(
        self,
        *args: torch.Tensor,
        lengths: torch.Tensor | None = None,
        state: Mapping[str, Any] | None = None,
        steps: int | None = None,
        batch: int | None = None,
        memory_lengths: Mapping[str, torch.Tensor] | None = None,
        check_finite: bool = False,
        feed_back: float = 0.0,
        sampler: Sampler | None = None,
        **inputs: torch.Tensor,
    ) -> Outputs:
        """Run the network over whole sequences.

        Sequence inputs are (batch, time, size), token inputs (batch, time) int64, static inputs
        (batch, size). `lengths` (batch,) marks padded batches; `state` continues from an earlier
        call's `out.state`; `steps` sets the length when the network has no sequence input, and
        `batch` the batch size when it has no input at all. A memory input (`input enc: 128 memory`) is
        (batch, positions, size); `memory_lengths={"enc": n}` (batch,) says how many positions of each
        sequence's memory count (all, when left out), and `out.attention["c"]` (batch, time, positions)
        holds what `c = attend(...)` weighed (for looking at: it carries no gradient).
        `check_finite` refuses NaN or Inf in the inputs and raises `NonFiniteError` naming the node and
        step where one first appears in a value or, during backward, in a gradient (slow: a debug aid).

        A self-fed input (`input w: tokens(N) = sample(softmax(y[t-1]))`) left out runs free: the network
        feeds itself, starting from the input's init, and `out.fed["w"]` holds what it was fed. Given, it is
        teacher-forced; `feed_back=p` then feeds back the network's own value instead at each step with
        probability p (scheduled sampling). `sampler` sets how `sample(...)` draws (temperature, top-k,
        greedy, a generator).
        """
        # A call given only inputs and perhaps a state, as streaming and beam search call step after step, skips
        # `validate` where its inputs match the last such call's in type, shape, dtype and device (`Signature`).
        plain = (
            lengths is None
            and steps is None
            and batch is None
            and memory_lengths is None
            and check_finite is False
            and type(feed_back) is float
            and feed_back == 0.0
            and sampler is None
            and kernels.untraced()
        )
        seen: Signature | None = self.__dict__.get("_seen") if plain else None
        like = self.like  # validate's: a signature is kept with the `like` it was checked against
        call = seen.match(args, inputs, state) if seen is not None and seen.like is like else None
        if call is not None:
            keeping = not torch.is_inference_mode_enabled()
            return self.execute(call, self.boundary_values(call.inputs, call.batch, keeping), None, traced=False)
        call = validate(self, args, inputs, lengths, state, steps, batch, memory_lengths)
        if plain:
            self.__dict__["_seen"] = Signature.of(self, args, inputs, state, call, like)
        watch = None
        if check_finite:
            from rnndsl.runtime.guard import Watch, check_inputs

            check_inputs(call.inputs, call.lengths)
            watch = Watch([n.name for n in self.network.nodes], call.lengths)
        boundary = self.boundary_values(call.inputs, call.batch)
        feed = self._feed(call, boundary, feed_back, sampler)
        return self.execute(call, boundary, feed, watch)

    def execute(
        self, call: Call, boundary: dict[str, torch.Tensor], feed: Feed | None, watch: Any = None, traced: bool = True
    ) -> Outputs:
        """Run the generated code on checked inputs (`validate`), their boundary values and a feed (`traced=False`:
        the caller knows no tracer looks, `kernels.untraced`)."""
        check_finite, layout, device = watch is not None, self.layout, self._device_type()
        history = self.histories(boundary, call.state, call.batch)
        params = self.parameter_table()
        with_lengths, free = call.lengths is not None, frozenset(feed.given) if feed else _NONE
        scan = traced and _exporting()
        # A call of one step takes the plain variant: a native loop's setup (the input projections split, a kept
        # buffer, a C pointer table) and a generated backward's do not pay off over one step. Without autograd the
        # plain one measured 1.1-1.55x faster at 1-64 x 1 with 74-2560 units in the loop (skip-2, peephole and
        # layer-norm LSTM), within 5% either way at 64-256 x 1 x 512; forward+backward, autograd on its ops
        # 0.54-0.91x of the generated backward's time at 1-64 x 1 (Elman, peephole, Jordan, top-down, skip-2,
        # IndRNN, layer-norm LSTM); the loops linear in their past (QRNN, minGRU) gain once `K.linear_scan` runs
        # one step as a multiply and an add (1.04-1.17x before it, 0.72-0.82x of the old call after).
        differentiate = bool(  # jit.trace gives `steps` as a tensor
            self.generated_backward
            and call.steps > 1
            and (
                _records()
                or ((with_lengths, check_finite, free, device, scan) not in self._loopless and self._native_inference())
            )
        )
        fn = self._code.get((with_lengths, check_finite, free, differentiate, device, scan))
        if fn is None:
            fn = self._compiled(with_lengths, check_finite, free, differentiate, scan)
        inputs = call.code_inputs() if call.memories else call.inputs
        values, new_state = fn(
            params, inputs, boundary, history, call.batch, call.steps, call.lengths, self.training, watch, feed
        )
        if watch is not None:
            watch.raise_first()
        state_out = None if layout.reads_future else State(new_state, self.signature)
        attention = {name: values.pop("attention:" + name) for name in layout.attends} if layout.attends else None
        return Outputs(values, state_out, feed.fed if feed else None, attention)

    def generate(self, steps: int, *, beam: int | None = None, **options: Any) -> Generation:
        """Generate from a self-fed token input: sampling (`temperature`, `top_k`, `greedy`, `prompt`,
        `stop`, `generator`) or, with `beam=K`, beam search (`stop`, `length_penalty`). Static inputs
        by name. See `rnndsl.generation`."""
        from rnndsl.runtime.generation import beam_search, generate

        if beam is not None:
            return beam_search(self, steps, beam, **options)
        return generate(self, steps, **options)

    def to_onnx(
        self,
        path: str | os.PathLike[str],
        lengths: bool = False,
        state: bool = False,
        greedy: bool = False,
        stop: int | None = None,
    ) -> Path:
        """Write this network, with its weights as they are, as an ONNX file that onnxruntime runs at any batch
        size and length (`rnndsl.runtime.export`). Inputs and outputs are named as the spec's;
        `lengths=True` adds a `lengths` input (batch,) int64 (and `lengths.MEMORY` for each memory);
        `state=True` adds inputs `state_in.NAME` and outputs `state_out.NAME` (batch, k, size), as `state=` and
        `out.state`. `greedy=True` writes greedy generation instead: an int64 input `steps`, outputs `tokens`
        (batch, steps) and `lengths` (batch,), cut after the first `stop` token when one is given, as
        `generate(steps, greedy=True, stop=stop)`. Needs `pip install 'rnndsl[onnx]'`. Gives the path written.
        """
        from rnndsl.runtime.export import network_to_onnx, save

        return save(network_to_onnx(self, lengths=lengths, state=state, greedy=greedy, stop=stop), path)

    def _feed(
        self, call: Call, boundary: dict[str, torch.Tensor], feed_back: float, sampler: Sampler | None
    ) -> Feed | None:
        """What the self-fed inputs are given and where they are fed back; None when all are given."""
        if not self.layout.fed and sampler is None and type(feed_back) in (float, int) and feed_back == 0:
            return None  # the usual call: nothing to feed, nothing to check
        fed = self.network.self_fed
        if isinstance(feed_back, bool) or not isinstance(feed_back, (int, float)) or not 0 <= feed_back <= 1:
            raise ValueError(f"feed_back: expected a probability in [0, 1], got {feed_back!r}")
        if feed_back and not fed:
            raise ValueError(
                f"feed_back={feed_back}: network `{self.network.name}` has no self-fed input (`input NAME: ... = EXPR`)"
            )
        if sampler is not None and not isinstance(sampler, Sampler):
            raise ValueError(f"sampler: expected an rnndsl.feed.Sampler, got {type(sampler).__name__}")
        free = [n for n in fed if n.name not in call.inputs or feed_back]
        if not free:
            return None
        B, T, device = call.batch, call.steps, self.like.device  # noqa: N806
        given: dict[str, torch.Tensor | None] = {}
        keep: dict[str, torch.Tensor | None] = {}
        first = torch.zeros(B, T, dtype=torch.bool)
        first[:, 0] = call.state is None  # the first step takes the start value: there is no past to feed
        for node in free:
            if node.name in call.inputs:  # scheduled sampling: each step fed back with probability feed_back
                gen = sampler.generator if sampler is not None else None
                if feed_back == 1:
                    kept = first
                else:  # coins on the CPU, from the sampler's generator where it is one
                    cpu = gen if gen is not None and gen.device.type == "cpu" else None
                    kept = (torch.rand(B, T, generator=cpu) >= feed_back) | first
                given[node.name], keep[node.name] = call.inputs[node.name], kept.to(device)
            elif call.state is None:
                start = self.start_value(node, boundary, B, call.inputs)
                given[node.name] = start.unsqueeze(1).expand(B, T, *start.shape[1:])
                keep[node.name] = first.to(device)
            else:
                given[node.name], keep[node.name] = None, None
        return Feed(given, keep, sampler or Sampler())

    def start_value(
        self, node: Node, boundary: dict[str, torch.Tensor], batch: int, inputs: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """What a self-fed input takes at the first step when running free: its init, (B,) ids or (B, S)
        (an init expression reads the call's static inputs)."""
        if node.is_tokens:
            return torch.full((batch,), token_start(node), dtype=torch.long, device=self.like.device)
        value = boundary.get(node.name)  # computed already when the input is also read with a delay
        return value if value is not None else self.init_value(node, inputs, batch)

    def parameter_table(self) -> dict[str, torch.Tensor]:
        """Every layer parameter under the name generated code reads it by (`_W0_h`, `_b_h`)."""
        # Read through the modules' parameter dicts at each call: .to() may replace the tensors, and
        # torch.export swaps in dicts of its own. This runs on every forward, so it avoids nn.Module
        # attribute lookups (`self.layers` is `nn.Module.__getattr__`, about a microsecond) and ParameterList
        # iteration.
        table: dict[str, torch.Tensor] = {}
        layers: dict[str, Any] = self._modules["layers"]._modules  # type: ignore[union-attr]
        try:
            for key, slots in self._slots:
                layer = layers[key]
                weights = layer._modules["weight"]._parameters
                for name, j in slots:
                    table[name] = weights[j] if j else layer._parameters["bias"]
            params = self._modules["params"]._parameters  # type: ignore[union-attr]
            for name, key in self._learned:
                table[name] = params[key]  # type: ignore[assignment]
        except KeyError:  # a parametrized tensor (`torch.nn.utils.parametrize`: weight_norm, orthogonal...) is
            return self._parameters_as_attributes()  # no entry of its dict: computed by its module's attribute
        return table

    def _parameters_as_attributes(self) -> dict[str, torch.Tensor]:
        """`parameter_table` through the modules' attributes, which compute a parametrized tensor."""
        table: dict[str, torch.Tensor] = {}
        layers: Any = self.layers
        for key, slots in self._slots:
            layer = getattr(layers, key)
            for name, j in slots:
                table[name] = getattr(layer.weight, j) if j else layer.bias
        for name, key in self._learned:
            table[name] = getattr(self.params, key)
        return table

    def boundary_values(
        self, inputs: dict[str, torch.Tensor], batch: int, keeping: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """What each delayed node reads before the first step and past the last: its `init`. Where every one
        starts from zeros, the values are kept whole between calls of the batch size of the last, while nothing
        wrote into them (the values and their histories' views share a version counter); so are their histories.
        `keeping`: `kernels.keeping()`, where the caller knows it."""
        kept = self._kept_starts(keeping)
        layout = self.layout
        if kept is not None and layout.zero_starts:
            starts = kept.get("call")  # (batch, start values, their histories, the zeros)
            if starts is not None and starts[0] == batch and not any(z._version for z in starts[3]):
                return starts[1]
        out: dict[str, torch.Tensor] = {"__like__": self.like}
        for node in layout.delayed:
            out[node.name] = self.init_value(node, inputs, batch, kept)
        if kept is not None and layout.zero_starts:
            zeros = tuple(out[node.name] for node in layout.delayed)  # not `like`: it may be an inference tensor
            if all(map(kernels.keepable, zeros)):
                kept["call"] = (batch, out, None, zeros)
        return out

    def _kept_starts(self, keeping: bool | None = None) -> dict[str, Any] | None:
        """The zero start values and histories kept between calls, per node (no two nodes share one); None where
        calls keep nothing (`kernels.keeping`: a tracer looking, `inference_mode`, a torch.func transform). At
        small sizes a call's per-call work is much of its time, and these are a tensor op or two a node."""
        if not (kernels.keeping() if keeping is None else keeping):
            return None
        kept = self.__dict__.get("_starts")
        if kept is None or kept["like"] is not self.like:  # .to() and .double() give a new `like`
            kept = self.__dict__["_starts"] = {"like": self.like}
        return kept

    def init_value(
        self, node: Node, inputs: Mapping[str, torch.Tensor], batch: int, kept: dict[str, Any] | None = None
    ) -> torch.Tensor:
        like = self.like
        if node.is_tokens:
            return torch.tensor(token_start(node), device=like.device)
        if node.init.kind == "learned":
            return self.learned_init[param_key(node.name)].expand(batch, -1)
        if node.init.kind == "expr" and node.init.expr is not None:
            value = evaluate(node.init.expr, lambda r: inputs[r.name], like)
            value = value.expand(batch, node.size if value.dim() == 0 else -1)  # a plain number broadcasts
            if node.init.size != node.size:
                value = self.init_projection[param_key(node.name)](value)
            return value
        if kept is None:
            return like.new_zeros(batch, node.size)
        zeros = kept.get(node.name)
        # kept while nothing wrote into it (its version counter, which its views share, is still 0)
        if zeros is None or zeros.shape[0] != batch or zeros._version:
            zeros = like.new_zeros(batch, node.size)
            if kernels.keepable(zeros):
                kept[node.name] = zeros
        return zeros

    def histories(
        self, boundary: dict[str, torch.Tensor], state: Mapping[str, torch.Tensor] | None, batch: int
    ) -> dict[str, torch.Tensor]:
        """For each node read at `[t-k]`: the k values before the first step, from `state` or from init."""
        if state is None:  # the kept start values of `boundary_values` come with their histories
            starts = self.__dict__.get("_starts", {}).get("call")
            if starts is not None and starts[1] is boundary and starts[2] is not None:
                return starts[2]
        kept = self._kept_starts() if state is None else None
        starts = kept.get("call") if kept is not None else None
        if starts is not None and starts[1] is not boundary:
            starts = None
        out = {}
        for node, k in self.layout.past:
            if state is not None:
                out[node.name] = state[node.name]
            elif node.is_tokens:
                out[node.name] = torch.full((batch, k), token_start(node), dtype=torch.long, device=self.like.device)
            else:
                out[node.name] = self._history(node.name, boundary[node.name], k, kept)
        if kept is not None and starts is not None and all(map(kernels.keepable, out.values())):
            kept["call"] = (batch, boundary, out, starts[3])
        return out

    def _history(self, name: str, start: torch.Tensor, k: int, kept: dict[str, Any] | None) -> torch.Tensor:
        """k copies of a start value (a view, (B, k, S)); kept with a kept zero start value."""
        if kept is None or kept.get(name) is not start:
            return start.unsqueeze(1).expand(-1, k, -1)
        view = kept.get("history:" + name)
        if view is None or view._base is not start or view.shape[1] != k:
            view = kept["history:" + name] = start.unsqueeze(1).expand(-1, k, -1)
        return view

    def _compiled(
        self,
        with_lengths: bool,
        guard: bool = False,
        free: frozenset[str] = frozenset(),
        differentiate: bool = False,
        scan: bool = False,
    ) -> Any:
        """The generated forward for one variant: with lengths or not, guarded or not, which self-fed
        inputs run free, whether loops carry their own generated backward (when autograd records), and
        whether they run as torch's `scan` (what torch.export traces, so the length stays dynamic)."""
        device = self.like.device.type  # which cells run on torch's fused kernels depends on it
        key = (with_lengths, guard, free, differentiate, device, scan)
        fn = self._code.get(key)
        if fn is None:
            # The recording variant comes with the plain one: torch.compile traces a call with the plain one,
            # and must find it made (generating code inside a traced call would break the graph).
            network = self.network.running_free(free) if free else self.network
            for diff in (False, True) if differentiate else (False,):
                generated = generate(network, with_lengths, self.fuse_cells, guard, diff, device, scan)
                if diff and not generated.loops:  # no loop has a generated backward: the same code
                    self._code[with_lengths, guard, free, diff, device, scan] = self._code[
                        with_lengths, guard, free, False, device, scan
                    ]
                    self._loopless.add((with_lengths, guard, free, device, scan))  # a call needs not choose
                    continue
                namespace: dict[str, Any] = {"torch": torch, "F": F, "K": kernels, "math": math, "_J": self._flats}
                exec(compile(generated.source, f"<rnndsl {self.network.name}>", "exec"), namespace)
                self._code[with_lengths, guard, free, diff, device, scan] = namespace["forward"]
            fn = self._code[key]
        return fn

    def _flatten(self) -> None:
        """Lay each fused cell's parameters out in one buffer as torch's kernel takes them, (w_ih, w_hh, b_ih, b_hh)
        one after another, the parameters views of it (what `nn.RNNBase.flatten_parameters` does), and so each
        group's weights in the other loops (`plan.group_joins`): a call then passes the kernel (the loop) the
        buffer's views, with no `cat` of the gates' weights (`kernels.flat`), and cuDNN takes them without
        repacking. Run when the module is made, moved or converted (each parameter gets a
        tensor of its own then), loaded with `assign=True`, copied or unpickled; a cell still laid out is left
        as it is, and one whose parameters were moved together (`share_memory`) keeps their storage. A parameter
        given a tensor of its own otherwise (`p.data = ...`, `vector_to_parameters`) takes its cell off the
        buffer, whose record here keeps it, one copy of the cell's weights, until the module next moves."""
        device = self.like.device.type
        self.__dict__["_device_of"] = (self.like, device)
        cells = self._flat_cells.get(device)
        if cells is None:
            cells = self._flat_cells[device] = flat_weights(self.network, self.fuse_cells, device)
        table = self.parameter_table()
        flats = {}
        for cell in cells:
            params = [table[name] for name in cell.params]
            kept = self._flats.get(cell.key)
            if kept is not None and all(
                p.data_ptr() == ptr and p.is_contiguous() for p, ptr in zip(params, kept.ptrs, strict=True)
            ):
                flats[cell.key] = kept
            elif len({(p.dtype, p.device) for p in params}) == 1:
                flats[cell.key] = _lay_out(cell, params)
        self._flats.clear()
        self._flats.update(flats)

    def _native_inference(self) -> bool:
        """Whether a call autograd does not record takes the variant with loop functions all the same: there,
        loops with native steps (`backend.native_step`) run them, faster than the plain loop forward too."""
        if not kernels.untraced() or _exporting():
            return False  # first: dynamo cannot trace what `native.available` reads; a torch.func transform (vmap)
            # cannot run the loop's autograd.Function
        device = self._device_type()
        return device == "cpu" and "step" in fused_kinds(self.fuse_cells, device) and native.available()

    def __getstate__(self) -> dict[str, Any]:
        # Generated functions cannot be pickled; they, and what calls cache, are rebuilt on first use.
        state = self.__dict__.copy()
        state["_code"] = {}
        state["_loopless"] = set()
        state.pop("_layout", None)
        state.pop("_starts", None)
        state.pop("_seen", None)
        state.pop("_device_of", None)
        state["_flats"] = {}  # laid out again by `__setstate__`: a copy's parameters are tensors of their own
        state["_flat_cells"] = {}  # what is laid out, worked out from the network again
        return state

    def _apply(self, fn: Any, recurse: bool = True) -> CompiledNetwork:
        # .to(), .double(), .cuda(): what calls kept is of the old device or dtype, and would only hold memory
        for code in self._code.values():
            for value in list(getattr(code, "__globals__", {}).values()):
                if isinstance(value, kernels.Workspace):
                    value.clear()
        self.__dict__.pop("_starts", None)
        self.__dict__.pop("_seen", None)
        out = super()._apply(fn, recurse)
        self._flatten()
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_loopless", set())  # pickled before these were kept
        state.setdefault("_flats", {})
        state["_flat_cells"] = {}  # worked out again: a module pickled before groups were laid out holds cells
        super().__setstate__(state)
        self._flatten()

    def extra_repr(self) -> str:
        ins = ", ".join(f"{n.name}: {n.input_kind} {n.size}" for n in self.network.inputs)
        outs = ", ".join(o.name + (" last" if o.last else "") for o in self.network.outputs)
        return f"network={self.network.name}, inputs=({ins}), outputs=({outs})"


def _lay_out(cell: Joins, params: list[torch.Tensor]) -> kernels.Flat:
    """One buffer and its views, a fused cell's four or a group's joined weights; each parameter becomes a view
    of it (its `.data`), keeping its value. The views lie one after another; where the parameters already lie
    in one storage so (moved there together), that storage is the buffer. On CUDA cuDNN lays a cell's buffer
    out (`torch._cudnn_rnn_flatten_weight`, as `nn.RNNBase.flatten_parameters` does), so that it takes the
    buffer as it is."""
    first = params[0]
    shapes = dict(zip(cell.params, (p.shape for p in params), strict=True))
    rows: list[tuple[int, int, int]] = []  # each parameter's (tensor, first row, end row)
    zeros: list[tuple[int, int, int]] = []  # the rows of no parameter (a missing bias), which must read 0
    joins: list[tuple[int, tuple[int, ...]]] = []  # each tensor's offset when one follows the other, and shape
    offset = 0
    for j, parts in enumerate(cell.parts):
        count = 0
        for part in parts:
            n = part if isinstance(part, int) else shapes[part][0]
            (zeros if isinstance(part, int) else rows).append((j, count, count + n))
            count += n
        shape = (count, *shapes[parts[0]][1:]) if isinstance(parts[0], str) else (count,)
        joins.append((offset, shape))
        offset += math.prod(shape)
    laid_out = first.device.type == "cpu" and _laid_out(params, rows, joins)
    if first.is_cuda and cell.kind in _CUDNN_MODES and torch.backends.cudnn.is_acceptable(first):
        views = tuple(first.new_zeros(shape) for _, shape in joins)
        input_size, hidden_size = joins[0][1][1], joins[1][1][1]
        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():  # not on ROCm, whose `cudnn` is MIOpen
                # `views` become views of the buffer cuDNN lays out
                torch._cudnn_rnn_flatten_weight(
                    list(views), 4, input_size, _CUDNN_MODES[cell.kind], hidden_size, 0, 1, True, False
                )
    else:
        views = ()
        if laid_out:
            buffer = first.new_empty(0).set_(first.untyped_storage(), 0, (offset,), (1,))
            views = tuple(buffer[at : at + math.prod(shape)].view(shape) for at, shape in joins)
            # the storage's other values where the zero rows go (a state_dict of another spec loaded with
            # `assign=True`): not adopted, the parameters copied into a buffer of their own
            laid_out = not any(views[j][lo:hi].any() for j, lo, hi in zeros)
        if not laid_out:
            buffer = first.new_zeros(offset)
            views = tuple(buffer[at : at + math.prod(shape)].view(shape) for at, shape in joins)
    with torch.no_grad():
        for p, (j, lo, hi) in zip(params, rows, strict=True):
            block = views[j][lo:hi]
            if not laid_out:
                block.copy_(p)
            p.data = block
    return kernels.Flat(views, tuple(rows))


_CUDNN_MODES = {"rnn_relu": 0, "rnn_tanh": 1, "lstm": 2, "gru": 3}  # torch.backends.cudnn.rnn.get_cudnn_mode


def _laid_out(
    params: list[torch.Tensor], rows: list[tuple[int, int, int]], joins: list[tuple[int, tuple[int, ...]]]
) -> bool:
    """Whether the parameters lie in one storage, from its start, as the buffer would hold them."""
    storage = params[0].untyped_storage()
    row_size = [math.prod(shape[1:]) for _, shape in joins]
    at, shape = joins[-1]
    return storage.nbytes() >= (at + math.prod(shape)) * params[0].element_size() and all(
        p.untyped_storage().data_ptr() == storage.data_ptr()
        and p.is_contiguous()
        and p.storage_offset() == joins[j][0] + lo * row_size[j]
        for p, (j, lo, _) in zip(params, rows, strict=True)
    )


def _flatten_after_load(module: CompiledNetwork, keys: Any) -> None:
    """After `load_state_dict`: `assign=True` puts new tensors in place of the parameters."""
    module._flatten()


_NONE: frozenset[str] = frozenset()  # no self-fed input runs free


def _records() -> bool:
    """Whether this call runs the variant whose loops carry their own generated backward: autograd records,
    and no tracer (torch.compile, export, jit.trace) is looking, which sees the plain variant's tensor ops,
    nor a torch.func transform (`grad`, `vmap`), which differentiates or batches those ops itself."""
    return (
        torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not kernels.transformed()
    )


def _exporting() -> bool:
    """Whether torch.export traces this call without dynamo (non-strict, its default): then loops run as
    torch's `scan`, and the exported program keeps the length dynamic. Strict export traces through dynamo,
    which cannot trace the code generator, so it gets the variants an eager call made: one length."""
    return torch.compiler.is_exporting() and not torch.compiler.is_dynamo_compiling()


def _text(expr: s.Expr) -> str:
    return "".join(s.show(expr).split())


def _param_start(node: Node) -> torch.Tensor:
    """A param's first value: zeros, ones, a number, N(0, 0.1^2) ("normal") or U(-0.1, 0.1) ("uniform")."""
    start = node.param_init
    if start == "normal":
        return torch.randn(node.size) * 0.1
    if start == "uniform":
        return torch.empty(node.size).uniform_(-0.1, 0.1)
    value = {"zeros": 0.0, "ones": 1.0}.get(start, start) if isinstance(start, str) else start
    return torch.full((node.size,), float(value or 0.0))


def _signature(network: Network) -> str:
    """Identifies a network's state layout: its name, and the nodes read with a delay with their sizes."""
    parts = [network.name] + [f"{n.name}:{n.size}:{network.delays[n.name][0]}" for n in network.nodes]
    return f"{network.name}/{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:12]}"
