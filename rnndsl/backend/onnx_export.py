"""ONNX export: takes a checked `ir.Network`, its schedule and its weights, gives the network as ONNX nodes.

The writer follows the schedule as `codegen` does, with ONNX operators instead of torch calls:
- a batched stage is plain operators over every step at once, (batch, time, size); a static value is
  (batch, size) and meets a sequence through a time axis of 1; a delayed read of a finished sequence is a
  shifted copy of it, its first (last) steps the history (the init);
- a loop is an ONNX `Loop` over time whose body is one step: the projections of outside values are
  computed before it for every step and gathered at step t, each value the loop reads k steps away is k
  loop-carried slots (a ring), a loop reading the future runs t = T-1 .. 0 and, with lengths, carries the
  init past each sequence's end; the steps of what is read later leave it as scan outputs;
- the op table's `onnx` entries (`lang.ops`) write each function, so a new op is exported where it is
  declared.
Batch and time are dynamic: nothing in the graph depends on the length it was exported at. Dropout is
left out (an exported network runs as in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from rnndsl.backend.cells import Cell, match_cell, recurrent_index
from rnndsl.backend.codegen import MAX_ONE_HOT
from rnndsl.backend.evaluate import fold
from rnndsl.backend.onnx_graph import Builder, value_info
from rnndsl.backend.plan import rings_of
from rnndsl.graphs.schedule import Stage, schedule
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Diagnostic, Span
from rnndsl.lang.ir import Network, Node
from rnndsl.lang.ops import ACTIVATIONS, CLOCK, FEED_FUNCTIONS, OPS, constant

__all__ = ["ExportError", "Weights", "NetworkGraph", "write_network"]

INT64_MAX = 2**63 - 1


class ExportError(ValueError):
    """A construct that cannot be exported: the message names it, and where the spec writes it as a
    diagnostic does (FILE:LINE:COL, the line, a caret) with the way around it when there is one."""

    def __init__(self, what: str, network: Network, span: Span | None = None, hint: str = "") -> None:
        if span is None or not span.line:
            super().__init__(f"{network.source.name}: cannot export {what} (network `{network.name}`)")
        else:
            super().__init__(Diagnostic(f"cannot export {what}", span, network.source, hint=hint).format())


# What the writer asks of the module for the weights: (kind, node) -> array. Kinds: "weight0", "weight1",
# ... (a layer source's (out, in) weight), "bias", "param" (a learned vector), "learned_init",
# "init_weight" and "init_bias" (the projection of an init expression to the node's size).
Weights = Callable[[str, str], np.ndarray]


@dataclass
class NetworkGraph:
    """What the writer gives, all values of the builder's graph: each output's (batch-first, masked past each
    length), each node's as computed (every step, or static), each attention node's weights, the state when
    asked; and the length and lengths it ran with."""

    outputs: dict[str, str]
    values: dict[str, str]
    attention: dict[str, str] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)
    steps: str = ""
    lengths: str | None = None


def write_network(
    g: Builder,
    network: Network,
    weights: Weights,
    inputs: Mapping[str, str],
    batch: str,
    steps: str,
    lengths: str | None = None,
    memory_lengths: Mapping[str, str] | None = None,
    state: Mapping[str, str] | None = None,
) -> NetworkGraph:
    """Write one network into `g`: its inputs are the ONNX values `inputs` (by spec name: sequences
    (B, T, S), tokens (B, T) int64, static (B, S), memories (B, M, S)); `batch` and `steps` are int64 values
    of shape (1,), B and T; `lengths` (B,) int64 or None; `memory_lengths` by memory; `state` by node read
    with a delay, (B, k, S), or None for the inits (given, the state at the end is given too). A self-fed
    input that runs free (`Network.running_free`) takes its start at step 0, then the argmax of its feed:
    greedy decoding."""
    writer = _Writer(g, network, weights, dict(inputs), batch, steps, lengths, dict(memory_lengths or {}), state)
    return writer.run()


class _Writer:
    def __init__(
        self,
        g: Builder,
        net: Network,
        weights: Weights,
        inputs: dict[str, str],
        batch: str,
        steps: str,
        lengths: str | None,
        memory_lengths: dict[str, str],
        state: Mapping[str, str] | None,
    ) -> None:
        self.g, self.net, self.weights = g, net, weights
        self.values: dict[str, str] = dict(inputs)  # node -> ONNX value: (B, T, ...) or, static, (B, ...)
        self.batch, self.steps, self.lengths = batch, steps, lengths
        self.state_in = state
        self.attention: dict[str, str] = {}
        self._cache: dict[Any, str] = {}
        self.memory_keep = {m: self._memory_keep(m, n) for m, n in memory_lengths.items()}

    # ---- the whole network ---------------------------------------------------------------------

    def run(self) -> NetworkGraph:
        for node in self.net.nodes:
            if node.op == "param":  # one row per sequence, as the generated code reads it
                self.values[node.name] = self._expand(self._weight("param", node.name), node.size)
        stages = schedule(self.net)
        cells = {st: cell for st in stages if (cell := self._cell(st)) is not None}
        partner = _bidirectional_pairs(cells, lambda c: self.net[c.h].size)
        written: set[Stage] = set()
        for stage in stages:
            if stage in written:
                continue  # written with its twin, as one bidirectional operator
            if stage in cells:
                pair = sorted([stage, *([partner[stage]] if stage in partner else [])], key=lambda st: -st.direction)
                self._cell_loop([(st, cells[st]) for st in pair])  # forward first, as ONNX's directions
                written.update(pair)
            elif stage.is_loop:
                self._loop(stage)
            else:
                for name in stage.nodes:
                    self._batched(self.net[name], stage.static)
        return self._results()

    def _weight(self, kind: str, node: str, transpose: bool = False) -> str:
        key = ("w", kind, node, transpose)
        if key not in self._cache:
            value = np.asarray(self.weights(kind, node), dtype=self.g.np_dtype)
            self._cache[key] = self.g.tensor(value.T if transpose else value, f"{node}.{kind}")
        return self._cache[key]

    def _expand(self, vector: str, size: int) -> str:
        """A (S,) vector as (B, S)."""
        return str(self.g.op("Expand", vector, self._shape(size)))

    def _shape(self, *tail: int) -> str:
        """The int64 shape (B, *tail)."""
        key = ("shape", tail)
        if key not in self._cache:
            self._cache[key] = self.g.op("Concat", self.batch, self.g.ints(list(tail)), axis=0) if tail else self.batch
        return self._cache[key]

    def _error(self, what: str, node: Node | None = None) -> ExportError:
        return ExportError(what, self.net, node.span if node is not None else None)

    # ---- boundary values -------------------------------------------------------------------------

    def init(self, node: Node) -> str:
        """What a node reads before the first step and past the last: (B, S), or a token id (0-d int64)."""
        key = ("init", node.name)
        if key in self._cache:
            return self._cache[key]
        g = self.g
        with g.outside():
            if node.is_tokens:
                value = g.ints([node.token_start], scalar=True)
            elif node.init.kind == "learned":
                value = self._expand(self._weight("learned_init", node.name), node.size)
            elif node.init.kind == "expr" and node.init.expr is not None:
                value = self.expr(node.init.expr, self._static_ref)
                if constant(node.init.expr):  # a plain number: every entry of every sequence
                    value = g.op("Expand", value, self._shape(node.size))
                if node.init.size != node.size:
                    w = self._weight("init_weight", node.name, transpose=True)
                    value = g.op("Add", g.op("MatMul", value, w), self._weight("init_bias", node.name))
            else:
                value = g.op("Expand", g.const(0.0), self._shape(node.size))
        self._cache[key] = value
        return value

    def history(self, node: Node, k: int) -> str:
        """The k values before the first step, oldest first: (B, k, S) (B, k for tokens), from the state
        when one is given, else the init repeated."""
        key = ("hist", node.name)
        if key not in self._cache:
            with self.g.outside():
                if self.state_in is not None:
                    self._cache[key] = self.state_in[node.name]
                else:
                    tail = (k,) if node.is_tokens else (k, node.size)
                    start = (
                        self.init(node) if node.is_tokens else self.g.op("Unsqueeze", self.init(node), self.g.ints([1]))
                    )
                    self._cache[key] = self.g.op("Expand", start, self._shape(*tail))
        return self._cache[key]

    # ---- references over all steps -----------------------------------------------------------------

    def seq_ref(self, ref: s.Ref) -> str:
        """A value read over every step, shifted by its delay: (B, T, ...), a static one (B, 1, ...); the
        step index (B, T, 1) for `CLOCK`."""
        if ref == CLOCK:
            return self._clock()
        node = self.net[ref.name]
        v = self.values[ref.name]
        if node.static:
            return self._cached(("t1", v), lambda: self.g.op("Unsqueeze", v, self.g.ints([1])))
        if ref.delay == 0:
            return v
        return self._cached(("shift", ref.name, ref.delay), lambda: self._shifted(node, v, ref.delay))

    def _cached(self, key: Any, make: Callable[[], str]) -> str:
        if key not in self._cache:
            with self.g.outside():
                self._cache[key] = make()
        return self._cache[key]

    def _shifted(self, node: Node, v: str, d: int) -> str:
        g = self.g
        if d > 0:  # v[t-d]: the history's last d values, then the sequence
            k = self.net.delays[node.name][0]
            hist = self.history(node, k)
            start = g.op("Slice", hist, g.ints([k - d]), g.ints([k]), g.ints([1]))
            return str(g.op("Slice", g.op("Concat", start, v, axis=1), g.ints([0]), self.steps, g.ints([1])))
        d = -d  # v[t+d]: the sequence from d on, then the init; with lengths, the init from each end on
        init = self.init(node)
        tail = g.op(
            "Expand",
            init if node.is_tokens else g.op("Unsqueeze", init, g.ints([1])),
            self._shape(d, *([] if node.is_tokens else [node.size])),
        )
        rest = g.op("Slice", v, g.ints([d]), g.ints([INT64_MAX]), g.ints([1]))
        out = g.op("Slice", g.op("Concat", rest, tail, axis=1), g.ints([0]), self.steps, g.ints([1]))
        if self.lengths is None:
            return str(out)
        inside = g.op(
            "Less",
            g.op("Add", self._positions(), g.ints([d], scalar=True)),
            g.op("Unsqueeze", self.lengths, g.ints([1])),
        )
        if node.is_tokens:
            return str(g.op("Where", inside, out, g.ints([-1], scalar=True)))
        return str(g.op("Where", g.op("Unsqueeze", inside, g.ints([2])), out, g.op("Unsqueeze", init, g.ints([1]))))

    def _positions(self) -> str:
        """The step indices 0 .. T-1 as a (1, T) int64 row."""
        return self._cached(
            "positions",
            lambda: self.g.op(
                "Unsqueeze",
                self.g.op("Range", self.g.ints([0], scalar=True), self._t_scalar(), self.g.ints([1], scalar=True)),
                self.g.ints([0]),
            ),
        )

    def _t_scalar(self) -> str:
        return self._cached("T", lambda: self.g.op("Squeeze", self.steps, self.g.ints([0])))

    def _valid(self) -> str:
        """(B, T, 1) bool: the steps inside each sequence."""
        assert self.lengths is not None
        lengths = self.lengths
        return self._cached(
            "valid",
            lambda: self.g.op(
                "Unsqueeze",
                self.g.op("Less", self._positions(), self.g.op("Unsqueeze", lengths, self.g.ints([1]))),
                self.g.ints([2]),
            ),
        )

    def _clock(self) -> str:
        """The step index over every step, (B, T, 1) in the network's dtype: what `every(k)` reads."""

        def make() -> str:
            t = self.g.op("Cast", self.g.op("Unsqueeze", self._positions(), self.g.ints([2])), to=self.g.dtype)
            return str(self.g.op("Expand", t, self.g.op("Concat", self.batch, self.steps, self.g.ints([1]), axis=0)))

        return self._cached("clock", make)

    def _memory_keep(self, memory: str, lengths: str) -> str:
        """A memory's (B, M, 1) keep mask from its lengths (B,): the positions inside each memory."""
        g = self.g
        count = g.op("Squeeze", g.op("Shape", self.values[memory], start=1, end=2), g.ints([0]))
        positions = g.op(
            "Unsqueeze", g.op("Range", g.ints([0], scalar=True), count, g.ints([1], scalar=True)), g.ints([0])
        )
        inside = g.op("Less", positions, g.op("Unsqueeze", lengths, g.ints([1])))
        return str(g.op("Unsqueeze", inside, g.ints([2])))

    def _static_ref(self, ref: s.Ref) -> str:
        if ref == CLOCK:
            raise self._error("the step index where every step is the same")
        return self.values[ref.name]

    # ---- expressions ------------------------------------------------------------------------------

    def expr(self, e: s.Expr, ref: Callable[[s.Ref], str]) -> Any:
        """The ONNX value of an expression; `ref` gives a reference's value in this context (every step,
        static, or one step of a loop)."""
        g = self.g
        if isinstance(e, s.Num) or constant(e):
            return g.const(e.value if isinstance(e, s.Num) else fold(e))
        if isinstance(e, s.Ref):
            return ref(e)
        if isinstance(e, s.Neg):
            return g.op("Neg", self.expr(e.operand, ref))
        if isinstance(e, s.BinOp):
            left, right = self.at_positions(e, [e.left, e.right], ref)
            return g.op({"+": "Add", "-": "Sub", "*": "Mul", "/": "Div"}[e.op], left, right)
        if e.fn in FEED_FUNCTIONS:
            return self._feed_value(e, ref)
        if e.fn == "one_hot":
            arg = e.args[0]
            assert isinstance(arg, s.Ref)
            return self._one_hot(ref(arg), self.net[arg.name].size)
        op = OPS[e.fn]
        if op.onnx is None:
            raise ExportError(f"`{e.fn}`: it has no ONNX form in the op table", self.net, e.span)
        if op.memory:
            score, values = (self.expr(a, ref) for a in e.args)
            memory = self.memory_of(e.args[1])
            return op.to_onnx(g, [score, values], keep=self._keep_like(memory, ref))
        args = self.at_positions(e, list(e.args), ref)
        if op.size == "concat" and len(args) > 1:
            args = self._broadcast(args)
        step = ref(CLOCK) if op.step else None
        return op.to_onnx(g, args, step=step)

    def memory_of(self, e: s.Expr) -> str:
        return self.net.memory_of(e)

    def at_positions(self, e: s.Expr, args: list[s.Expr], ref: Callable[[s.Ref], str]) -> list[str]:
        """Operand values; over a memory's positions, those of one vector get a positions axis of 1."""
        values = [self.expr(a, ref) for a in args]
        if not self.memory_of(e):
            return values
        return [
            v if self.memory_of(a) or constant(a) else self.g.op("Unsqueeze", v, self.g.ints([-2]))
            for a, v in zip(args, values, strict=True)
        ]

    def _keep_like(self, memory: str, ref: Callable[[s.Ref], str]) -> str | None:
        """A memory's keep mask shaped for the context: (B, M, 1) at one step or static, (B, 1, M, 1) over
        every step; None when every position counts."""
        keep = self.memory_keep.get(memory)
        if keep is None:
            return None
        if ref == self.seq_ref:
            return self._cached(("keep_t", memory), lambda: self.g.op("Unsqueeze", keep, self.g.ints([1])))
        return keep

    def _broadcast(self, parts: list[str]) -> list[str]:
        """Vectors of one leading shape (a static value meets a sequence) for Concat, which needs it."""
        g = self.g
        firsts = [g.op("Slice", p, g.ints([0]), g.ints([1]), g.ints([-1])) for p in parts]
        lead = firsts[0]
        for f in firsts[1:]:
            lead = g.op("Add", lead, f)  # (..., 1): the leading axes broadcast
        shape = g.op("Shape", lead)
        return [g.op("Expand", p, shape) for p in parts]

    def _one_hot(self, ids: str, n: int) -> str:
        """One-hot vectors of size n in the network's dtype; id -1 ("no token") matches no entry: zeros.
        (An id against 0 .. n-1, not OneHot, which onnxruntime has for float32 only.)"""
        g = self.g
        hot = g.op("Equal", g.op("Unsqueeze", ids, g.ints([-1])), g.ints(list(range(n))))
        return str(g.op("Cast", hot, to=g.dtype))

    def _present(self, ids: str) -> str:
        """(…, 1): 1 where a token is, 0 for "no token" (id -1)."""
        g = self.g
        present = g.op("Cast", g.op("GreaterOrEqual", ids, g.ints([0], scalar=True)), to=g.dtype)
        return str(g.op("Unsqueeze", present, g.ints([-1])))

    def _feed_value(self, e: s.Call, ref: Callable[[s.Ref], str]) -> str:
        """A self-fed input's feed, drawn greedily: the id of the largest entry (for `sample`, the likeliest
        token; softmax does not move the largest, so `sample(softmax(y))` is argmax(y))."""
        inner = e.args[0]
        if e.fn == "sample" and isinstance(inner, s.Call) and inner.fn == "softmax":
            inner = inner.args[0]
        return str(self.g.op("ArgMax", self.expr(inner, ref), axis=-1, keepdims=0))

    # ---- layers -----------------------------------------------------------------------------------

    def projection(self, node: Node, j: int, ref: Callable[[s.Ref], str]) -> str:
        """`W_j @ source_j` for every step (or one): a matmul, or for a token source rows of the table."""
        g = self.g
        src, w = node.sources[j], self._weight(f"weight{j}", node.name, transpose=True)
        if isinstance(src, s.Ref) and self.net[src.name].is_tokens:
            ids = ref(src)
            rows = g.op("Gather", w, g.op("Max", ids, g.ints([0], scalar=True)), axis=0)
            return str(g.op("Mul", rows, self._present(ids)))
        return str(g.op("MatMul", self.expr(src, ref), w))

    def _sum(self, terms: list[str]) -> str:
        total = terms[0]
        for term in terms[1:]:
            total = self.g.op("Add", total, term)
        return total

    def _activate(self, node: Node, z: str) -> str:
        return str(ACTIVATIONS[node.activation].to_onnx(self.g, [z]))

    # ---- batched stages ---------------------------------------------------------------------------

    def _batched(self, node: Node, static: bool) -> None:
        ref = self._static_ref if static else self.seq_ref
        if node.op == "expr":
            assert node.expr is not None
            if node.feed is not None:
                raise self._error(f"the self-fed input `{node.name}` outside a loop", node)
            value = self.expr(node.expr, ref)
            if node.attention:
                value, self.attention[node.name] = value
        else:
            terms = [self.projection(node, j, ref) for j in range(len(node.sources))]
            if node.bias:
                terms.append(self._weight("bias", node.name))
            value = self._activate(node, self._sum(terms))
        self.values[node.name] = value

    # ---- standard cells -----------------------------------------------------------------------------

    def _cell(self, stage: Stage) -> Cell | None:
        """The standard cell a loop is, when ONNX's own operator can run it: in float32, not where the state is
        asked for (the operators give an LSTM's c at the end only) nor for a token source of a wide vocabulary."""
        cell = match_cell(self.net, stage) if self.state_in is None else None
        if cell is None or self.g.np_dtype != np.float32:
            return None  # onnxruntime runs these operators in float32 only
        wide = any(
            isinstance(e, s.Ref) and self.net[e.name].is_tokens and self.net[e.name].size > MAX_ONE_HOT
            for e in cell.sources
        )
        return None if wide else cell

    def _cell_loop(self, cells: list[tuple[Stage, Cell]]) -> None:
        """A standard cell as ONNX's LSTM, GRU or RNN operator, with the spec's weights in its gate order
        (LSTM i o f c, GRU z r h with the reset applied after the hidden matmul, as torch's); a forward and a
        reverse cell of the same kind, size and sources as one operator of direction "bidirectional"."""
        g, (stage, cell) = self.g, cells[0]
        sources = [
            self._one_hot(self.seq_ref(e), self.net[e.name].size)
            if isinstance(e, s.Ref) and self.net[e.name].is_tokens
            else self.expr(e, self.seq_ref)
            for e in cell.sources
        ]
        parts = self._broadcast(sources) if len(sources) > 1 else sources
        x = g.op("Concat", *parts, axis=-1) if len(parts) > 1 else parts[0]
        if all(self._static(e) for e in cell.sources):  # the same at every step: (B, 1, I) to (B, T, I)
            x = g.op("Expand", x, g.op("Concat", self.batch, self.steps, g.ints([1]), axis=0))
        w, r, bias = (np.stack(arrays) for arrays in zip(*(self._cell_weights(st, c) for st, c in cells), strict=True))
        starts = [
            g.op(
                "Concat",
                *(g.op("Unsqueeze", self._ring_start(self.net[n], 1, st.direction), g.ints([0])) for st, n in ns),
                axis=0,
            )
            for ns in zip(*([(st, n) for n in (c.h, c.c) if n] for st, c in cells), strict=True)
        ]
        kinds: dict[str, tuple[str, dict[str, Any]]] = {
            "lstm": ("LSTM", {}),
            "gru": ("GRU", {"linear_before_reset": 1}),
            "rnn_tanh": ("RNN", {"activations": ["Tanh"] * len(cells)}),
            "rnn_relu": ("RNN", {"activations": ["Relu"] * len(cells)}),
        }
        op, extra = kinds[cell.kind]
        direction = "bidirectional" if len(cells) == 2 else "forward" if stage.direction > 0 else "reverse"
        y = g.op(
            op,
            g.op("Transpose", x, perm=[1, 0, 2]),
            g.tensor(w, f"{cell.h}.W"),
            g.tensor(r, f"{cell.h}.R"),
            g.tensor(bias, f"{cell.h}.B"),
            "" if self.lengths is None else g.op("Cast", self.lengths, to=int(TensorProto.INT32)),
            *starts,
            hidden_size=self.net[cell.h].size,
            direction=direction,
            outputs=1,
            hint=cell.kind,
            **extra,
        )
        for i, (_, c) in enumerate(cells):  # (T, directions, B, H): each direction's (B, T, H)
            one = g.op("Squeeze", g.op("Slice", y, g.ints([i]), g.ints([i + 1]), g.ints([1])), g.ints([1]))
            self.values[c.h] = g.op("Transpose", one, perm=[1, 0, 2])

    def _cell_weights(self, stage: Stage, cell: Cell) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One direction's W (gates x H, I), R (gates x H, H) and B (Wb then Rb) in ONNX's gate order."""
        order = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}.get(cell.kind, [0])  # torch's gates to ONNX's
        ih = [self.net[n] for n in cell.gates] + ([self.net[cell.nx]] if cell.nx else [])
        rec = {n: recurrent_index(self.net[n], cell.h, stage.direction) or 0 for n in cell.gates}
        hh = [(n, rec[n]) for n in cell.gates]
        if cell.nx:
            hh.append((next(n for n in stage.nodes if self.net[n].op == "layer" and n not in cell.gates), 0))
        w = np.concatenate([self._input_weight(ih[i], rec.get(ih[i].name)) for i in order])
        r = np.concatenate([self._array(f"weight{hh[i][1]}", hh[i][0]) for i in order])
        size = self.net[cell.h].size
        wb = [self._bias_array(ih[i]) for i in order]
        rb = [self._bias_array(self.net[hh[i][0]]) if cell.nx and i == 2 else np.zeros(size) for i in order]
        return w, r, np.concatenate(wb + rb).astype(self.g.np_dtype)

    def _array(self, kind: str, node: str) -> np.ndarray:
        return np.asarray(self.weights(kind, node), dtype=self.g.np_dtype)

    def _input_weight(self, node: Node, recurrent: int | None) -> np.ndarray:
        """A gate's weights of the cell's outside sources, joined along the input axis (out, I)."""
        outer = [j for j in range(len(node.sources)) if recurrent is None or j != recurrent]
        return np.concatenate([self._array(f"weight{j}", node.name) for j in outer], axis=1)

    def _bias_array(self, node: Node) -> np.ndarray:
        return self._array("bias", node.name) if node.bias else np.zeros(node.size, dtype=self.g.np_dtype)

    # ---- loops ------------------------------------------------------------------------------------

    def _loop(self, stage: Stage) -> None:
        """One ONNX Loop over time: the body is one step; rings are loop-carried, collected steps scanned."""
        g, members = self.g, set(stage.nodes)
        rings = rings_of(self.net, stage)
        outer = {n: self._outer(self.net[n], members) for n in stage.nodes if self.net[n].op == "layer"}
        state = self.state_in is not None
        collect = [n for n in stage.nodes if self._collected(n, stage, state)]
        starts = [self._ring_start(self.net[n], i, stage.direction) for n, k in rings.items() for i in range(k, 0, -1)]
        with g.body() as nodes:
            it, cond = g.fresh("iteration"), g.fresh("cond")
            slots = {
                n: [g.fresh(f"{n}[{'-' if stage.direction > 0 else '+'}{i}]") for i in range(k, 0, -1)]
                for n, k in rings.items()
            }
            at = g.op("Reshape", it, g.ints([]))  # 0-d, whatever shape the runtime gives the count
            t = at if stage.direction > 0 else g.op("Sub", g.op("Sub", self._t_scalar(), g.ints([1], scalar=True)), at)
            step: dict[str, str] = {}
            gathered: dict[str, str] = {}

            def step_ref(ref: s.Ref) -> str:
                if ref != CLOCK:
                    node = self.net[ref.name]
                    if node.static:
                        return self.values[ref.name]
                    if ref.name in members:
                        return step[ref.name] if ref.delay == 0 else slots[ref.name][-abs(ref.delay)]
                seq = self.seq_ref(ref)
                if seq not in gathered:
                    gathered[seq] = g.op("Gather", seq, t, axis=1)
                return gathered[seq]

            weights: dict[str, str] = {}
            for name in stage.nodes:
                step[name] = self._step(self.net[name], outer.get(name), members, step_ref, t, weights)
            new_slots = []
            for n in rings:
                new = step[n]
                if stage.direction < 0 and self.lengths is not None:  # past each end the ring holds the init
                    valid = g.op("Unsqueeze", g.op("Less", t, self.lengths), g.ints([1]))
                    new = g.op("Where", valid, new, self.init(self.net[n]))
                new_slots += [*slots[n][1:], new]
            scans = [step[n] for n in collect] + [weights[n] for n in weights]
            outs = [
                g.op("Identity", cond),
                *(g.op("Identity", v) for v in new_slots),
                *(g.op("Identity", v) for v in scans),
            ]
        carried = [n for n, k in rings.items() for _ in range(k)]
        scanned = [*collect, *weights]
        body = helper.make_graph(
            nodes,
            f"{self.net.name} step",
            [
                value_info(it, TensorProto.INT64, []),
                value_info(cond, TensorProto.BOOL, []),
                *(value_info(x, self._elem(n), None) for n in rings for x in slots[n]),
            ],
            [
                value_info(outs[0], TensorProto.BOOL, []),
                *(value_info(o, self._elem(n), None) for n, o in zip(carried, outs[1:], strict=False)),
                *(value_info(o, self._elem(n), None) for n, o in zip(scanned, outs[1 + len(carried) :], strict=True)),
            ],
        )
        results = g.op("Loop", self._t_scalar(), "", *starts, body=body, outputs=len(outs) - 1, hint="loop")
        results = results if isinstance(results, list) else [results]
        for i, (name, seq) in enumerate(zip(scanned, results[len(carried) :], strict=True)):
            rank = 3 if i >= len(collect) else self._rank(self.net[name])  # attention weights: (T, B, M)
            value = self._batch_first(seq, rank, stage.direction < 0)
            if i >= len(collect):
                self.attention[name] = value
            else:
                self.values[name] = value

    def _elem(self, name: str) -> int:
        """A node's ONNX element type: int64 ids for tokens, else the network's dtype."""
        return int(TensorProto.INT64) if self.net[name].is_tokens else self.g.dtype

    @staticmethod
    def _rank(node: Node) -> int:
        """How many axes a node's steps have once stacked, (T, B, ...): ids 2, a vector 3, over a memory 4."""
        return 2 if node.is_tokens else 4 if node.memory else 3

    def _batch_first(self, seq: str, rank: int, reverse: bool) -> str:
        """Scanned steps (T, B, ...) as (B, T, ...), in time order."""
        g = self.g
        if reverse:
            seq = g.op("Slice", seq, g.ints([-1]), g.ints([-INT64_MAX]), g.ints([0]), g.ints([-1]))
        return str(g.op("Transpose", seq, perm=[1, 0, *range(2, rank)]))

    def _ring_start(self, node: Node, i: int, direction: int) -> str:
        """The start of ring slot i (i steps away): the history's value i steps before step 0 going
        forward, the init going backward."""
        if direction < 0:
            return self.init(node)
        hist = self.history(node, self.net.delays[node.name][0])
        return str(self.g.op("Gather", hist, self.g.ints([self.net.delays[node.name][0] - i], scalar=True), axis=1))

    def _outer(self, node: Node, members: set[str]) -> tuple[str, bool] | None:
        """Before the loop: a layer's projections of outside values and its bias, and whether they have a
        time axis: (B, T, H), or where they are the same at every step (B, H) or (H,); None for neither."""
        outer = [j for j, e in enumerate(node.sources) if not any(r.name in members for r in s.refs(e))]
        static = all(self._static(node.sources[j]) for j in outer)
        ref = self._static_ref if static else self.seq_ref
        terms = [self.projection(node, j, ref) for j in outer]
        if node.bias:
            terms.append(self._weight("bias", node.name))
        return (self._sum(terms), not static) if terms else None

    def _static(self, e: s.Expr) -> bool:
        return not any(isinstance(x, s.Call) and x.fn in OPS and OPS[x.fn].step for x in s.walk(e)) and all(
            self.net[r.name].static for r in s.refs(e)
        )

    def _step(
        self,
        node: Node,
        outer: tuple[str, bool] | None,
        members: set[str],
        step_ref: Callable[[s.Ref], str],
        t: str,
        weights: dict[str, str],
    ) -> str:
        g = self.g
        if node.op == "expr":
            assert node.expr is not None
            if node.feed is not None:
                return self._fed(node, step_ref, t)
            value = self.expr(node.expr, step_ref)
            if node.attention:
                value, weights[node.name] = value
            return str(value)
        terms = []
        if outer is not None:
            addend, whole = outer
            terms.append(g.op("Gather", addend, t, axis=1) if whole else addend)
        for j, e in enumerate(node.sources):
            if any(r.name in members for r in s.refs(e)):
                terms.append(self.projection(node, j, step_ref))
        return self._activate(node, self._sum(terms))

    def _collected(self, name: str, stage: Stage, state: bool) -> bool:
        """Whether every step of a loop node leaves the loop: an output, what a self-fed input was fed, read
        outside, or in the state."""
        if any(o.name == name for o in self.net.outputs) or self.net[name].feed is not None:
            return True
        if any(r.name == name for n in self.net.nodes if n.name not in stage.nodes for r in n.refs()):
            return True
        return state and self.net.delays[name][0] > 0

    def _fed(self, node: Node, step_ref: Callable[[s.Ref], str], t: str) -> str:
        """A self-fed input running free: its start at step 0, then what it feeds itself."""
        assert node.expr is not None
        g = self.g
        fed = self.expr(node.expr, step_ref)
        first = g.op("Equal", t, g.ints([0], scalar=True))
        return str(g.op("Where", first, self.init(node), fed))

    # ---- results ----------------------------------------------------------------------------------

    def _results(self) -> NetworkGraph:
        g = self.g
        outputs = {}
        for out in self.net.outputs:
            node, v = self.net[out.name], self.values[out.name]
            if out.last:
                value = v if node.static else self._last(v, node)
            else:
                if node.static:  # the same at every step
                    whole = g.op("Concat", self.batch, self.steps, g.ints([node.size]), axis=0)
                    v = g.op("Expand", g.op("Unsqueeze", v, g.ints([1])), whole)
                value = v if self.lengths is None else self._masked(v)
            outputs[out.name] = value
        return NetworkGraph(outputs, self.values, self.attention, self._state(), self.steps, self.lengths)

    def _masked(self, seq: str) -> str:
        return str(self.g.op("Where", self._valid(), seq, self.g.const(0.0)))

    def _last(self, seq: str, node: Node) -> str:
        g = self.g
        if self.lengths is None:
            return str(g.op("Gather", seq, g.ints([-1], scalar=True), axis=1))
        index = g.op("Sub", self.lengths, g.ints([1], scalar=True))
        return str(
            g.op(
                "Squeeze",
                g.op(
                    "GatherElements",
                    seq,
                    g.op("Expand", g.op("Reshape", index, g.ints([-1, 1, 1])), self._shape(1, node.size)),
                    axis=1,
                ),
                g.ints([1]),
            )
        )

    def _state(self) -> dict[str, str]:
        """The last k values of each node read k steps back, oldest first (as `kernels.last_k`): the
        history and the steps joined, cut at each sequence's end; written where the state was given."""
        if self.state_in is None:
            return {}
        g, out = self.g, {}
        for node in self.net.nodes:
            k = self.net.delays[node.name][0]
            if not k:
                continue
            joined = g.op("Concat", self.history(node, k), self.values[node.name], axis=1)
            if self.lengths is None:  # steps T .. T+k-1 of the joined axis: the last k
                end = g.op("Add", self.steps, g.ints([k]))
                out[node.name] = g.op("Slice", joined, self.steps, end, g.ints([1]))
                continue
            index = g.op("Add", g.op("Unsqueeze", self.lengths, g.ints([1])), g.ints(list(range(k))))  # (B, k)
            if not node.is_tokens:
                index = g.op("Expand", g.op("Unsqueeze", index, g.ints([2])), self._shape(k, node.size))
            out[node.name] = g.op("GatherElements", joined, index, axis=1)
        return out


def _bidirectional_pairs(cells: dict[Stage, Cell], size: Callable[[Cell], int]) -> dict[Stage, Stage]:
    """Forward and reverse cells that one bidirectional operator can run: the same kind and size, reading the
    same sources. Each stage of a pair maps to the other."""
    pairs: dict[Stage, Stage] = {}
    for fwd, a in cells.items():
        for bwd, b in cells.items():
            if fwd.direction > 0 > bwd.direction and fwd not in pairs and bwd not in pairs:
                if (a.kind, a.sources, size(a)) == (b.kind, b.sources, size(b)):
                    pairs[fwd], pairs[bwd] = bwd, fwd
    return pairs
