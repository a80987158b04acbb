"""Reference: takes a compiled network and inputs, gives the outputs the spec defines, slowly.

The oracle. For each sequence on its own (cut to its length), it builds the unrolled DAG and evaluates
it node by node in topological order with the op table, reading the module's parameters. Nothing is
shared with the fast executor but the parameters and input checks, so tests can compare the two.
Dropout is not modelled: run it on a module in eval mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import torch

from rnndsl.backend import kernels
from rnndsl.backend.evaluate import evaluate
from rnndsl.backend.names import param_key
from rnndsl.graphs.unroll import unroll
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Node
from rnndsl.lang.ops import ACTIVATIONS, CLOCK
from rnndsl.runtime.network import CompiledNetwork
from rnndsl.runtime.validate import Call, validate
from rnndsl.runtime.values import Outputs, State

__all__ = ["reference"]


def reference(
    net: CompiledNetwork,
    *args: torch.Tensor,
    lengths: torch.Tensor | None = None,
    state: Mapping[str, Any] | None = None,
    steps: int | None = None,
    batch: int | None = None,
    memory_lengths: Mapping[str, torch.Tensor] | None = None,
    **inputs: torch.Tensor,
) -> Outputs:
    """Run `net` the slow, obvious way; same call and result as `net(...)`.

    >>> import rnndsl, torch
    >>> net = rnndsl.compile("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")
    >>> x = torch.randn(2, 4, 2)
    >>> torch.allclose(reference(net, x).h, net(x).h, atol=1e-6)
    True
    """
    if net.training and any(n.dropout for n in net.network.nodes):
        raise ValueError("the reference executor does not model dropout: call net.eval() first")
    call = validate(net, args, inputs, lengths, state, steps, batch, memory_lengths)
    free = [n.name for n in net.network.self_fed if n.name not in call.inputs]
    if free:
        raise ValueError(
            f"the reference executor runs self-fed inputs teacher-forced: give "
            f"{', '.join(f'`{n}`' for n in free)} (what a free run was fed is in its `out.fed`)"
        )
    sequences = [_Sequence(net, call, b) for b in range(call.batch)]
    per_seq = [seq.run() for seq in sequences]
    values = {o.name: torch.stack([p[0][o.name] for p in per_seq]) for o in net.network.outputs}
    attention = {
        n.name: torch.stack([seq.attention(n, call.inputs) for seq in sequences])
        for n in net.network.nodes
        if n.attention
    }
    if net.network.reads_future:
        return Outputs(values, None, None, attention)
    new_state = {k: torch.stack([p[1][k] for p in per_seq]) for k in per_seq[0][1]}
    return Outputs(values, State(new_state, net.signature), None, attention)


class _Sequence:
    """One sequence of the batch, evaluated on its own unrolled DAG."""

    def __init__(self, net: CompiledNetwork, call: Call, b: int) -> None:
        self.net, self.ir = net, net.network
        # a memory cut to its length: no mask here, so the generated code's masking is checked against it
        cut = {m: int(n[b]) for m, n in call.memory_lengths.items()}
        self.inputs = {k: v[b : b + 1, : cut[k]] if k in cut else v[b : b + 1] for k, v in call.inputs.items()}
        self.state = None if call.state is None else {k: v[b : b + 1] for k, v in call.state.items()}
        self.steps = call.steps
        self.length = call.steps if call.lengths is None else int(call.lengths[b])
        self.like = net.like
        self.values: dict[tuple[str, int | None], torch.Tensor] = {}
        self.weights: dict[tuple[str, int | None], torch.Tensor] = {}  # what each attention weighed, (1, S)

    def run(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        dag = unroll(self.ir, self.length)
        for key in nx.topological_sort(dag):
            if dag.nodes[key]["kind"] != "initial":
                self.values[key] = self._compute(self.ir[key[0]], key[1])
        outs = {o.name: self._output(self.ir[o.name], o.last) for o in self.ir.outputs}
        state = {}
        for node in self.ir.nodes:
            k = self.ir.delays[node.name][0]
            if k:
                state[node.name] = torch.stack([self._at(node.name, t) for t in range(self.length - k, self.length)], 1)
        return outs, {k: v[0] for k, v in state.items()}

    def attention(self, node: Node, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """An attention's weights at every step, (steps, positions): zero past the sequence's end and past
        its memory's length."""
        assert node.attention is not None
        memory = next(r.name for r in s.refs(node.attention.args[1]) if r != CLOCK and self.ir[r.name].memory)
        memory = self.ir[memory].memory
        positions = inputs[memory].shape[1]
        out = self.like.new_zeros(self.steps, positions)
        for t in range(self.length):
            w = self.weights[node.name, None if node.static else t][0]
            out[t, : w.shape[0]] = w
        return out

    def _output(self, node: Node, last: bool) -> torch.Tensor:
        if node.static:
            value = self.values[node.name, None][0]
            if last:
                return value
            steps = torch.arange(self.steps, device=value.device).unsqueeze(1) < self.length
            return value.expand(self.steps, -1) * steps.to(value.dtype)
        if last:
            return self.values[node.name, self.length - 1][0]
        seq = torch.stack([self.values[node.name, t][0] for t in range(self.length)])
        return torch.cat([seq, seq.new_zeros(self.steps - self.length, *seq.shape[1:])])

    def _at(self, name: str, t: int | None) -> torch.Tensor:
        """The value of `name` at step t; outside [0, length) that is the state or the node's init."""
        node = self.ir[name]
        if node.static:
            return self.values[name, None]
        assert t is not None
        if 0 <= t < self.length:
            return self.values[name, t]
        if t < 0 and self.state is not None:
            hist = self.state[name]
            return hist[:, hist.shape[1] + t]
        return self._init(node)

    def _init(self, node: Node) -> torch.Tensor:
        if node.is_tokens:
            return torch.tensor([-1], device=self.like.device)
        if node.init.kind == "learned":
            return self.net.learned_init[param_key(node.name)].unsqueeze(0)
        if node.init.kind == "expr" and node.init.expr is not None:
            value = evaluate(node.init.expr, lambda r: self.inputs[r.name], self.like)
            if value.dim() == 0:
                value = value.expand(1, node.size)
            if node.init.size != node.size:
                value = self.net.init_projection[param_key(node.name)](value)
            return value
        return self.like.new_zeros(1, node.size)

    def _compute(self, node: Node, t: int | None) -> torch.Tensor:
        if node.op == "input":
            x = self.inputs[node.name]
            return x if node.static else x[:, t]
        if node.op == "param":
            return self.net.param(node.name).unsqueeze(0)  # one sequence at a time

        def lookup(ref: s.Ref) -> torch.Tensor:
            if ref == CLOCK:  # the step index, for `every(k)`: this step's, counted from 0 in this sequence
                assert t is not None
                return self.like.new_full((1, 1), float(t))
            return self._at(ref.name, None if t is None else t - ref.delay)

        sizes = {n.name: n.size for n in self.ir.nodes if n.is_tokens}
        if node.op == "expr":
            assert node.expr is not None
            if node.attention:  # evaluated by hand, for its weights: (1, S, 1) scores, (1, S, H) values
                score, values = (evaluate(a, lookup, self.like, sizes) for a in node.attention.args)
                context, self.weights[node.name, t] = kernels.attend(score, values, None)
                return context
            return evaluate(node.expr, lookup, self.like, sizes)
        layer = self.net._layer(node.name)
        total = layer.bias if layer.bias is not None else self.like.new_zeros(node.size)
        for w, src in zip(layer.weight, node.sources, strict=True):
            if isinstance(src, s.Ref) and self.ir[src.name].is_tokens:
                ids = lookup(src)
                total = total + (w[:, ids].t() if int(ids) >= 0 else w.new_zeros(1, node.size))
            else:
                total = total + evaluate(src, lookup, self.like, sizes) @ w.t()
        return ACTIVATIONS[node.activation].fn(total)
