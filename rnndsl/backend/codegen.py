"""Codegen: takes a checked `ir.Network` and its `schedule`, gives the Python source of its forward.

The generated function computes every stage in order. A batched stage is a few tensor expressions
over all steps. A loop hoists everything that does not depend on the loop (input projections, biases,
shifted reads of finished sequences) out of the time loop, splits those tensors into per-step lists
(`unbind`, whose backward is linear in T, where indexing a big tensor would be quadratic), fuses the
recurrent matmuls of layers that read the same delayed sources into one `addmm`, and keeps a ring of
the last k values of each node the loop reads `k` steps away. `CompiledNetwork.code` shows the result.

Signature of the generated function:
    forward(P, X, I, H, B, T, lengths, train, watch=None, feed=None) -> (values, state)
P: parameters by generated name; X: inputs; I: boundary value (B, S) of every node read with a delay;
H: past history (B, k, S) of every node read at `[t-k]`; lengths: (B,) or None; watch: a `guard.Watch`
(the guarded variant); feed: a `feed.Feed` for a network whose self-fed inputs run free: it holds the
steps the caller gives, draws the samples and records what was fed. The module-level `_J` the runtime puts
beside the code: the weights a loop joins (a fused cell's, a group's) as views of one buffer (`flat_weights`,
`K.flat`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rnndsl.backend import loop_backward, native_step
from rnndsl.backend.cells import Cell, cell_weights, match_cell
from rnndsl.backend.evaluate import fold
from rnndsl.backend.linear import Linear, match_linear
from rnndsl.backend.names import (
    attention_name,
    bias_name,
    collected_name,
    keep_name,
    learned_name,
    steps_name,
    var,
    weight_name,
)
from rnndsl.backend.plan import Group, Joins, LoopPlan, group_joins, groups_of, rings_of, shared_outer, step_order
from rnndsl.graphs.schedule import Stage, schedule
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network, Node
from rnndsl.lang.ops import ACTIVATIONS, CLOCK, FEED_FUNCTIONS, OPS, ROW_WISE, constant, reads_step

__all__ = ["generate", "flat_weights", "var", "weight_name", "bias_name", "Generated"]

MAX_ONE_HOT = 1024  # token inputs of vocabularies up to this size go one-hot into torch's fused cells


@dataclass
class Generated:
    source: str
    params: list[str] = field(default_factory=list)  # parameter names the code reads from P
    loops: int = 0  # loops run as one autograd node with a generated backward (`loop_backward`)


# Cells run on torch's fused kernels, by device type. On a CPU, an Elman cell does not: torch's `rnn_tanh` there
# is an ATen loop that does not hoist the input projection, and the generated loop (with its generated backward)
# measured 0.94x forward and 0.64x forward+backward of nn.RNN at 32 hidden, 1.06x and 0.81x at 512.
# "linear": a loop linear in its own past (`backend.linear`) runs as one kernel call over time, on every device.
# "step": the other loops with a generated backward run their elementwise work as generated C between the matrix
# products (`backend.native_step`), on a CPU.
FUSED_KINDS = {"cpu": frozenset({"lstm", "gru", "linear", "step"})}
ALL_KINDS = frozenset({"lstm", "gru", "rnn_tanh", "rnn_relu", "linear", "step"})


def generate(
    network: Network,
    with_lengths: bool,
    fuse_cells: bool | Collection[str] = True,
    guard: bool = False,
    differentiate: bool = False,
    device: str = "cpu",
    scan: bool = False,
) -> Generated:
    """Python source of the forward function for a network (with or without per-sequence lengths).

    With `fuse_cells`, loops that are exactly an Elman, LSTM or GRU cell run on torch's fused kernels,
    where they are the fastest on the `device` type (`FUSED_KINDS`), and loops linear in their own past
    (`backend.linear`) run as one `K.linear_scan` call; a set of kinds ("lstm", "gru", "rnn_tanh", "rnn_relu",
    "linear") fuses exactly those.
    With `guard`, every node's value passes through `watch(value, name, step)` (no fused cells then).
    With `differentiate` (the variant run when autograd records), a loop becomes one autograd node whose
    backward is generated too (`loop_backward`), where it can.
    With `scan` (the variant `torch.export` traces), each loop is torch's `scan` over a step function rather
    than a Python loop, so an exported program keeps the length dynamic (a loop feeding itself samples
    stays a Python loop).
    """
    kinds = fused_kinds(fuse_cells, device)
    if guard or scan:  # the guard needs every step; torch's fused kernels fix T when traced
        kinds = frozenset()
    return _Emitter(network, with_lengths, kinds, guard, differentiate, scan).run()


def fused_kinds(fuse_cells: bool | Collection[str], device: str) -> frozenset[str]:
    """The kinds of loop that `fuse_cells` fuses on a device type (`True`: the fastest there)."""
    if fuse_cells is not True:
        return frozenset(fuse_cells or ())
    return FUSED_KINDS.get(device, ALL_KINDS - {"step"})  # a GPU: every cell kind; C steps run on a CPU only


def flat_weights(network: Network, fuse_cells: bool | Collection[str] = True, device: str = "cpu") -> list[Joins]:
    """The weights the loops' code joins on a device type, where each parameter can be a view of one buffer laid
    out as the code takes them: each fused cell's four tensors as torch's kernel takes them (where each is
    whole rows of parameters), each group's joined weights in the other loops (`plan.group_joins`). The
    generated code finds the buffer's views in `_J` under the key (`K.flat`), and joins the parameters itself
    where they are not so."""
    kinds = fused_kinds(fuse_cells, device)
    joins: list[Joins] = []
    for st in schedule(network):
        if not st.is_loop:
            continue
        cell = _fused_cell(network, st, kinds)
        if cell is not None:
            weights = cell_weights(network, st, cell, var(cell.h))
            joins += [weights.joins()] if weights.flat else []
            continue
        groups, _ = groups_of(network, st, var)
        joins += [j for g in groups if (j := group_joins(network, g)) is not None]
    return joins


def _fused_cell(network: Network, stage: Stage, kinds: frozenset[str]) -> Cell | None:
    """The standard cell a loop stage is, where it runs on torch's fused kernel (its kind is in `kinds`)."""
    cell = match_cell(network, stage)
    if cell is None or cell.kind not in kinds:
        return None
    # a token source goes in one-hot (its weight columns are the embedding): cheap for small vocabularies
    wide = any(
        isinstance(e, s.Ref) and network[e.name].is_tokens and network[e.name].size > MAX_ONE_HOT for e in cell.sources
    )
    return None if wide else cell


class _Emitter:
    def __init__(
        self,
        network: Network,
        with_lengths: bool,
        kinds: frozenset[str],
        guard: bool = False,
        differentiate: bool = False,
        scan: bool = False,
    ) -> None:
        self.net = network
        self.scan = scan and not guard
        self._xs: list[str] = []  # in a scan: the per-step values the step function takes, in order
        self._scanning = False  # whether the loop being written is a scan
        self.with_lengths = with_lengths
        self.guard = guard
        self.differentiate = differentiate
        self.functions: list[str] = []  # module-level functions after `forward`: loops' forward and backward
        self.loops = 0  # loops with a generated backward
        self.stages = schedule(network)
        self.kinds = kinds  # the cell kinds that run on torch's fused kernels
        self.cells = {st: cell for st in self.stages if (cell := _fused_cell(network, st, kinds)) is not None}
        self.linears = {
            st: lin for st in self.stages if "linear" in kinds and (lin := match_linear(network, st)) is not None
        }
        self.state_code: dict[str, str] = {}  # how the state of a node is read, where not from its steps
        self.ring_state: dict[str, int] = {}  # loop nodes whose state is their ring of the last k values
        self.constant_addend: set[str] = set()  # groups whose hoisted addend is the same at every step
        # a GRU's input projection of the candidate runs inside the fused kernel: skip it unless read elsewhere
        self.skip = {c.nx for c in self.cells.values() if c.nx and self._only_reader(c.nx, c)}
        self.stage_of = {n: st for st in self.stages for n in st.nodes}
        self.memories = [n.name for n in network.inputs if n.input_kind == "memory"]
        self.attends = [n.name for n in network.nodes if n.attention]
        self.lines: list[str] = []
        self.defined: set[str] = set()
        self.params: list[str] = []
        self.indent = 1
        self._loop_at: int | None = None  # the index of the `for t` line of the loop being written
        self.clocked = False  # whether some stage reads the step index `_t` (`every(k)`)

    # ---- standard cells ----------------------------------------------------------------------

    def _only_reader(self, name: str, cell: Cell) -> bool:
        """Whether only the cell's loop reads `name` (then the fused kernel computes it instead)."""
        loop = next(set(st.nodes) for st, c in self.cells.items() if c is cell)
        readers = {n.name for n in self.net.nodes if any(r.name == name for r in n.refs())}
        outputs = {o.name for o in self.net.outputs}
        return readers <= loop and name not in outputs and self.net.delays[name] == (0, 0)

    def _fused_loop(self, stage: Stage, cell: Cell) -> None:
        """A loop that is a standard cell: one call of torch's fused kernel with the spec's weights."""
        h = cell.h
        direction = "forward" if stage.direction > 0 else "backward"
        self.emit(
            f"# loop over time ({direction}): {', '.join(stage.nodes)}: a standard {cell.kind} cell, "
            f"run by torch's fused kernel"
        )
        srcs = [
            f"K.one_hot({self.seq_ref(e)}, {self.net[e.name].size}, {self._like()})"
            if isinstance(e, s.Ref) and self.net[e.name].is_tokens
            else self.expr(e, self.seq_ref)
            for e in cell.sources
        ]
        x = srcs[0] if len(srcs) == 1 else f"K.cat({', '.join(srcs)})"
        if all(self._static(e) for e in cell.sources):
            x = f"K.sequence({x}, T)"
        v = var(h)
        weights = cell_weights(self.net, stage, cell, v)
        for name in weights.params:
            self.param(name)
        part = lambda p: p if isinstance(p, str) else self._zeros(p)  # noqa: E731
        joined = [
            self._joined([self._joined(list(row), 1) for row in weights.w_ih], 0),
            self._joined(list(weights.w_hh), 0),
            self._joined([part(p) for p in weights.b_ih], 0),
            self._joined([part(p) for p in weights.b_hh], 0),
        ]
        names = [f"_Wih_{v}", f"_Whh_{v}", f"_bih_{v}", f"_bhh_{v}"]
        if weights.flat:
            # the module keeps the cell's parameters as views of one buffer (`_J`, runtime.network): no copy
            self.emit(f"_w_{v} = K.flat(_J.get({v!r}), ({', '.join(weights.params)},))")
            self.emit(f"{', '.join(names)} = _w_{v} or ({', '.join(joined)})")
        else:
            for name, code in zip(names, joined, strict=True):
                self.emit(f"{name} = {code}")
        start = [self._fused_start(n, stage.direction > 0) for n in (h, cell.c) if n]
        lengths = "lengths" if self.with_lengths else "None"
        self.emit(
            f"{v}, _hn_{v}, _cn_{v} = K.fused({cell.kind!r}, {x}, ({', '.join(start)},), "
            f"[_Wih_{v}, _Whh_{v}, _bih_{v}, _bhh_{v}], {lengths}, {stage.direction < 0})"
        )
        self.defined.add(v)
        if cell.c:
            self.state_code[cell.c] = f"_cn_{v}.transpose(0, 1)"

    def _fused_start(self, name: str, forward: bool) -> str:
        """What a fused cell's kernel starts a state from, (1, B, H): the last of its history (one view of it where
        the history is one step deep, as it is unless another node reads further back), or its init."""
        if not forward:
            return f"I[{name!r}].unsqueeze(0)"
        if self.net.delays[name][0] == 1:
            return f"H[{name!r}].transpose(0, 1)"
        return f"H[{name!r}][:, -1:].transpose(0, 1)"

    def _linear_loop(self, stage: Stage, lin: Linear) -> None:
        """A loop linear in its own past: its coefficients over all steps, then one kernel call over time."""
        n, v, forward = lin.node, var(lin.node), stage.direction > 0
        past = f"{n}[t{'-' if forward else '+'}1]"
        self.emit(
            f"# loop over time ({'forward' if forward else 'backward'}): {n} = a * {past} + b, "
            f"linear in its past: one kernel call"
        )
        a = self.expr(lin.a, self.seq_ref)
        b = "0.0" if lin.b is None else self.expr(lin.b, self.seq_ref)
        start = f"H[{n!r}].select(1, -1)" if forward else f"I[{n!r}]"
        keep = "valid" if self.with_lengths and not forward else "None"
        self.emit(f"{v} = K.linear_scan({a}, {b}, {start}, {keep}, {not forward}, T)")
        self.defined.add(v)

    def _bias(self, node: Node) -> str:
        return self.param(bias_name(node.name)) if node.bias else self._zeros(node.size)

    def _zeros(self, size: int) -> str:
        return f"K.zeros({size}, {self._like()})"

    @staticmethod
    def _joined(parts: list[str], dim: int) -> str:
        return parts[0] if len(parts) == 1 else f"torch.cat([{', '.join(parts)}], {dim})"

    # ---- the whole function ------------------------------------------------------------------

    def run(self) -> Generated:
        body = self.lines
        self._inputs()
        for stage in self.stages:
            if stage in self.cells:
                self._fused_loop(stage, self.cells[stage])
            elif stage in self.linears and not self._native_whole(stage):
                self._linear_loop(stage, self.linears[stage])
            elif stage.is_loop:
                self._loop(stage)
            else:
                for name in stage.nodes:
                    if name not in self.skip:
                        self._batched(self.net[name], stage.static)
        self._results()
        head = [
            "def forward(P, X, I, H, B, T, lengths, train, watch=None, feed=None):",
            f"    # network {self.net.name}: {len(self.stages)} stages",
            *(f"    {p} = P[{p!r}]" for p in self.params),
        ]
        if self.with_lengths:
            head.append("    valid = K.valid_mask(lengths, T)")
        if self.clocked:
            head.append(f"    {CLOCK.name} = K.steps(B, T, {self._like()})")
        return Generated(
            "\n".join([*head, *body]) + "\n" + "".join("\n\n" + f for f in self.functions),
            self.params,
            self.loops,
        )

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def param(self, name: str) -> str:
        if name not in self.params:
            self.params.append(name)
        return name

    def _inputs(self) -> None:
        for node in self.net.inputs:
            self.emit(f"{var(node.name)} = X[{node.name!r}]")
            self.defined.add(var(node.name))
            if node.input_kind == "memory":  # (B, S, 1) bool: the positions inside each memory's length, or None
                self.emit(f"{keep_name(node.name)} = X[{node.name + ':keep'!r}]")
        rows = self._row_params()
        for node in self.net.nodes:  # a param: its learned vector, one row per sequence like a static input
            if node.op == "param":
                code = self.param(learned_name(node.name))
                self.emit(
                    f"{var(node.name)} = {code}" if node.name in rows else f"{var(node.name)} = {code}.expand(B, -1)"
                )
                self.defined.add(var(node.name))

    def _row_params(self) -> set[str]:
        """The params read as their one row (H,), not expanded to (B, H): where every read of one is inside a
        loop's step (which reads a static value as it is), in an expression that also reads a value of each
        sequence and calls nothing that joins or reads a memory, so broadcasting gives what the expansion did.
        Only in a variant with no loop run as one autograd node (whose backward gives a static input a (B, H)
        gradient); there one op a param a call (at one step a call, a tenth of the layer-norm LSTM's call)."""
        if self.differentiate or self.scan:
            return set()
        joining = {n for n, op in OPS.items() if op.memory or op.size == "concat"} | set(FEED_FUNCTIONS) | {"one_hot"}
        rows = {n.name for n in self.net.nodes if n.op == "param"}
        for node in self.net.nodes:
            read = {r.name for r in node.refs() if r.name in rows}
            if not read:
                continue
            e = node.expr
            if (
                node.op != "expr"
                or e is None
                or node.feed is not None
                or not self._stepped(self.stage_of[node.name])
                or s.calls(e) & joining
                or self.memory_of(e)
                or all(self.net[r.name].static for r in s.refs(e))
            ):
                rows -= read
        return rows

    def _stepped(self, stage: Stage) -> bool:
        """Whether a stage runs step by step in this variant's code: a loop not on a fused kernel nor a linear scan
        (which compute over all steps at once, as a batched stage does)."""
        return stage.is_loop and stage not in self.cells and stage not in self.linears

    # ---- references --------------------------------------------------------------------------

    def seq_ref(self, ref: s.Ref, before_loop: bool = False) -> str:
        """A finished node read over all steps (shifted by its delay), as a variable; `CLOCK`, the step
        index over all steps, (B, T, 1)."""
        if ref == CLOCK:
            self.clocked = True
            return CLOCK.name
        node, v = self.net[ref.name], var(ref.name)
        if node.static:
            return f"{v}.unsqueeze(1)"
        d = ref.delay
        if d == 0:
            return v
        shifted = f"_{'tm' if d > 0 else 'tp'}{abs(d)}_{v}"
        if shifted not in self.defined:
            emit = self.emit_before_loop if before_loop else self.emit
            if d > 0:
                emit(f"{shifted} = K.past({v}, H[{ref.name!r}], {d})")
            else:
                lengths = "lengths" if self.with_lengths else "None"
                emit(f"{shifted} = K.future({v}, I[{ref.name!r}], {-d}, {lengths})")
            self.defined.add(shifted)
        return shifted

    def feed_value(self, e: s.Expr, ref: object, name: str, step: str) -> str:
        """Code of the value a self-fed input `name` takes at `step` (code: `t`, or `None` for every step);
        a draw names both, so that a distribution no token can be drawn from is reported by input and step."""
        if not (isinstance(e, s.Call) and e.fn in FEED_FUNCTIONS):
            return self.expr(e, ref)
        inner = e.args[0]
        if e.fn == "argmax":
            return f"{self.expr(inner, ref)}.argmax(-1)"
        # every step at once (a feed outside any loop): a value of static nodes, (B, 1, N), is widened to each
        # step's, so that each step draws a token of its own rather than all sharing one
        every = "K.sequence({}, T)" if step == "None" else "{}"
        if isinstance(inner, s.Call) and inner.fn == "softmax":  # the same draw, without exp and log
            return f"feed.sample_logits({every.format(self.expr(inner.args[0], ref))}, {name!r}, {step})"
        return f"feed.sample({every.format(self.expr(inner, ref))}, {name!r}, {step})"

    def expr(self, e: s.Expr, ref: object) -> str:
        """Code of an expression; `ref` turns a reference into code (batched, static or per step), and
        `CLOCK` into the step index there, for the ops that read it."""
        if isinstance(e, s.Num) or constant(e):
            value = e.value if isinstance(e, s.Num) else fold(e)
            return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
        if isinstance(e, s.Ref):
            return ref(e)  # type: ignore[operator]
        if isinstance(e, s.Neg):
            return f"(-{self.expr(e.operand, ref)})"
        if isinstance(e, s.BinOp):
            fused = self._lerp(e, ref) or self._addcmul(e, ref)
            if fused:
                return fused
            left, right = self.at_positions(e, [e.left, e.right], ref)
            return f"({left} {e.op} {right})"
        if e.fn in FEED_FUNCTIONS:
            return self.feed_value(e, ref, "", "None")
        if e.fn == "one_hot":
            arg = e.args[0]
            assert isinstance(arg, s.Ref)
            n = self.net[arg.name].size
            return f"K.one_hot({ref(arg)}, {n}, {self._like()})"  # type: ignore[operator]
        op = OPS[e.fn]
        args = [self.expr(a, ref) for a in e.args] if op.memory else self.at_positions(e, list(e.args), ref)
        if op.size == "concat" and (ref == self.seq_ref or self.memory_of(e)):
            return f"K.cat({', '.join(args)})"
        keep = keep_name(self.memory_of(e.args[1])) if op.memory else "None"
        step = ref(CLOCK) if op.step else None  # type: ignore[operator]
        return op.lower(args, [constant(a) for a in e.args], step, keep)

    def _addcmul(self, e: s.BinOp, ref: object) -> str:
        """In a loop's step, `x + a * b` (or `x - a * b`, or `a * b + x`) as one `torch.addcmul`, where all three
        are tensors and the expression does not run over a memory's positions; else "". One op a step instead
        of two, as hand-written loops do (`relu(a + u * h)`, `f * c + i * g`, a peephole's `a + p * c`); over
        all steps at once (a batched stage) the dispatch saved is nothing, and separate ops keep the values
        bitwise those of the reference executor (addcmul may round once, as a fused multiply-add)."""
        if e.op not in "+-" or not self._in_step(e, ref):
            return ""
        pairs = [(e.left, e.right)] + ([(e.right, e.left)] if e.op == "+" else [])
        for x, product in pairs:
            if (
                isinstance(product, s.BinOp)
                and product.op == "*"
                and not any(constant(v) for v in (x, product.left, product.right))
            ):
                value = ", value=-1" if e.op == "-" else ""
                args = ", ".join(self.expr(v, ref) for v in (x, product.left, product.right))
                return f"torch.addcmul({args}{value})"
        return ""

    def _in_step(self, e: s.Expr, ref: object) -> bool:
        """Whether `e` is written for one step of a loop (not over all steps, nor over a memory's positions):
        where a fused elementwise op saves a dispatch a step."""
        return not self.memory_of(e) and ref not in (self.seq_ref, self._static_ref)

    def _lerp(self, e: s.BinOp, ref: object) -> str:
        """In a loop's step, `(1 - z) * a + z * b` (the factors in either order, the terms too) as one
        `torch.lerp(a, b, z)`: a GRU's update, a clock's hold, where the step writes four ops; else ""."""
        if e.op != "+" or not self._in_step(e, ref):
            return ""
        for p, q in ((e.left, e.right), (e.right, e.left)):
            for held, a in _factors(p):
                z = _one_minus(held)
                if z is None or constant(z):
                    continue
                for z2, b in _factors(q):
                    if z2 == z and not constant(a) and not constant(b):
                        return f"torch.lerp({', '.join(self.expr(v, ref) for v in (a, b, z))})"
        return ""

    def memory_of(self, e: s.Expr) -> str:
        """The memory whose positions an expression's value runs over ("" for none): one vector per position,
        on the axis before the vector's (`attend` sums them up)."""
        return self.net.memory_of(e) if self.memories else ""

    def at_positions(self, e: s.Expr, args: list[s.Expr], ref: object) -> list[str]:
        """The code of an expression's operands, those of one vector given a positions axis of 1 (so they
        broadcast over the positions) where the expression runs over a memory's positions."""
        codes = [self.expr(a, ref) for a in args]
        if not self.memory_of(e):
            return codes
        return [
            c if self.memory_of(a) or constant(a) else f"{c}.unsqueeze(-2)" for a, c in zip(args, codes, strict=True)
        ]

    def _like(self) -> str:
        return "I['__like__']"

    def _static_ref(self, ref: s.Ref) -> str:
        assert ref != CLOCK, "the step index read where every step is the same"
        return var(ref.name)

    def _static(self, e: s.Expr) -> bool:
        """Whether an expression is the same at every step: it reads only static nodes, and not the step."""
        return not reads_step(e) and all(self.net[r.name].static for r in s.refs(e))

    # ---- batched stages ----------------------------------------------------------------------

    def _batched(self, node: Node, static: bool) -> None:
        ref = self._static_ref if static else self.seq_ref
        v = var(node.name)
        if node.op == "expr" and node.feed is not None:
            assert node.expr is not None
            self.emit(f"{v} = feed.whole({node.name!r}, {self.feed_value(node.expr, ref, node.name, 'None')})")
            self.emit(f"feed.record({node.name!r}, {v})")
        elif node.op == "expr":
            assert node.expr is not None
            if node.attention:  # the weights beside the value: (B, T, S), or (B, S) when static
                self.emit(f"{v}, {attention_name(node.name)} = {self.expr(node.expr, ref)}")
            else:
                self.emit(f"{v} = {self.expr(node.expr, ref)}")
        else:
            terms = [self._projection(node, j, ref, bias=j == 0) for j in range(len(node.sources))]
            self.emit(f"{v} = {ACTIVATIONS[node.activation].code.format(' + '.join(terms))}")
            if node.dropout:
                mask = "" if static else ".unsqueeze(1)"
                self.emit(f"if train: {v} = {v} * K.drop_mask(B, {node.size}, {node.dropout!r}, {v}){mask}")
        if self.guard:
            self.emit(f"watch({v}, {node.name!r}, None)")
        self.defined.add(v)

    def _projection(self, node: Node, j: int, ref: object, bias: bool) -> str:
        src, w = node.sources[j], self.param(weight_name(node.name, j))
        b = f", {self.param(bias_name(node.name))}" if bias and node.bias else ""
        if isinstance(src, s.Ref) and self.net[src.name].is_tokens:
            emb = f"K.embed({ref(src)}, {w})"  # type: ignore[operator]
            return f"({emb} + {bias_name(node.name)})" if b else emb
        return f"F.linear({self.expr(src, ref)}, {w}{b})"

    # ---- loops -------------------------------------------------------------------------------

    def _loop(self, stage: Stage) -> None:
        plan = self._plan(stage)
        self.emit(
            f"# loop over time ({'forward' if stage.direction > 0 else 'backward'}): "
            f"{', '.join(stage.nodes)}" + (": one autograd node, its backward generated" if plan.function else "")
        )
        self._scanning = self.scan and not plan.function and not any(self.net[n].feed for n in stage.nodes)
        self._xs = []
        for g in plan.groups:
            self._hoist(g, split=not plan.function)
        for n, k in plan.rings.items():
            for i in range(1, k + 1):
                init = f"H[{n!r}].select(1, -{i})" if stage.direction > 0 else f"I[{n!r}]"
                self.emit(f"_r{i}_{var(n)} = {init}")
        for name in stage.nodes:
            node = self.net[name]
            if node.op == "layer" and node.dropout:
                self.emit(
                    f"_D_{var(name)} = K.drop_mask(B, {node.size}, {node.dropout!r}, {self._like()}) if train else None"
                )
        if plan.function:
            loop_backward.LoopFunction(self, plan).emit()
        elif self._scanning:
            self._scan_steps(plan)
        else:
            self.loop_steps(plan)
        self._scanning = False
        self.ring_state.update({n: k for n, k in plan.rings.items() if n not in plan.collect})

    def _native_whole(self, stage: Stage) -> bool:
        """Whether a loop runs whole in one C call a direction (native steps, no matrix product in its step):
        on a CPU that beats the linear scan of a loop linear in its past, whose coefficients it need not make."""
        plan = self._plan(stage)
        return "step" in self.kinds and plan.function and not plan.groups and native_step.refusal(self, plan) is None

    def _plan(self, stage: Stage) -> LoopPlan:
        """What both loop writers read of one loop, worked out once."""
        groups, early = groups_of(self.net, stage, var)
        return LoopPlan(
            stage,
            groups,
            early,
            rings_of(self.net, stage),
            [n for n in stage.nodes if self._collected(n, stage)],
            step_order(self.net, stage, groups, early),
            self.differentiate and loop_backward.eligible(self, stage),
            tuple(n for n in stage.nodes if n in self.attends),
        )

    @contextmanager
    def function_body(self) -> Iterator[list[str]]:
        """Write into a function of its own (a loop's forward): the lines it yields, at one indent, and
        `_valid_s` defined there only."""
        saved = self.lines, self.indent, "_valid_s" in self.defined
        self.lines, self.indent = [], 1
        try:
            yield self.lines
        finally:
            self.lines, self.indent = saved[0], saved[1]
            if not saved[2]:
                self.defined.discard("_valid_s")

    def loop_steps(self, plan: LoopPlan, save: bool = False) -> None:
        """The time loop itself, after the hoisting and the rings' start values. With `save` (the forward of
        a loop with a generated backward), every node's value at every step is also kept in `_V_<node>`,
        after the ring's start values, oldest first."""
        stage, rings, collect = plan.stage, plan.rings, plan.collect
        members = set(stage.nodes)
        steps: dict[str, str] = {}
        for n in collect:
            self.emit(f"{collected_name(var(n))} = []")
        for n in plan.attends:
            self.emit(f"{collected_name(attention_name(n))} = []")
        if save:
            for n in stage.nodes:
                k = rings.get(n, 0)
                self.emit(f"_V_{var(n)} = [{', '.join(f'_r{i}_{var(n)}' for i in range(k, 0, -1))}]")
        span = "range(T)" if stage.direction > 0 else "range(T - 1, -1, -1)"
        self._loop_at = len(self.lines)  # where lines the step needs computed before the loop go
        self.emit(f"for t in {span}:")
        self.indent += 1
        step_ref = lambda r: self._step_ref(r, members, steps)  # noqa: E731
        for item in plan.order:
            if isinstance(item, Group):
                self._group_step(item, step_ref, save)
            elif item.feed is not None:
                assert item.expr is not None
                v, name = var(item.name), item.name
                self.emit_before_loop(f"_Fg_{v}, _Fk_{v}, _Fm_{v} = feed.plan({name!r}, T)")
                self.emit(
                    f"{v} = _Fg_{v}[t] if _Fm_{v}[t] == 1 else "
                    f"feed.pick(_Fg_{v}[t], _Fk_{v}[t], {self.feed_value(item.expr, step_ref, name, 't')})"
                )
            elif item.name in plan.attends:
                assert item.expr is not None
                w = attention_name(item.name)
                self.emit(f"{var(item.name)}, {w} = {self.expr(item.expr, step_ref)}")
                self.emit(f"{collected_name(w)}.append({w})")
            else:
                assert item.expr is not None
                self.emit(f"{var(item.name)} = {self.expr(item.expr, step_ref)}")
        if self.guard:
            for name in stage.nodes:
                self.emit(f"watch({var(name)}, {name!r}, t)")
        if save:
            for n in stage.nodes:
                self.emit(f"_V_{var(n)}.append({var(n)})")
        self._ring_update(stage, rings, collect)
        if save and stage.direction < 0 and self.with_lengths:  # what the ring holds: the init past the end
            for n in rings:
                self.emit(f"_M_{var(n)}.append(_m_{var(n)})")
        self.indent -= 1
        self._loop_at = None
        for n in plan.attends:
            w = attention_name(n)
            if stage.direction < 0:
                self.emit(f"{collected_name(w)}.reverse()")
            self.emit(f"{w} = torch.stack({collected_name(w)}, 1)")
        for n in collect:
            if stage.direction < 0:
                self.emit(f"{collected_name(var(n))}.reverse()")
            self.emit(f"{var(n)} = torch.stack({collected_name(var(n))}, 1)")
            self.defined.add(var(n))
            if self.net[n].feed is not None:
                self.emit(f"feed.record({n!r}, {var(n)})")

    def _scan_steps(self, plan: LoopPlan) -> None:
        """The loop as `K.scan(step, rings, per-step values, dim=1)`: the step function is the loop's body, its
        carry the rings, what it gives back each step the collected values, stacked on the time axis by the
        scan (a backward loop scans in reverse, its values in time order). What the step reads of outside
        sequences is known once the body is written: its unpacking line goes in after."""
        stage, rings, collect = plan.stage, plan.rings, plan.collect
        members = set(stage.nodes)
        steps: dict[str, str] = {}
        carry = [f"_r{i}_{var(n)}" for n, k in rings.items() for i in range(k, 0, -1)]
        fn = f"_step{len(self.functions)}_{var(stage.nodes[0])}"
        self._loop_at = start = len(self.lines)
        self.emit(f"def {fn}(_carry, _xs):")
        self.indent += 1
        self.emit(f"({', '.join(carry)},) = _carry")
        unpack = len(self.lines)
        step_ref = lambda r: self._step_ref(r, members, steps)  # noqa: E731
        for item in plan.order:
            if isinstance(item, Group):
                self._group_step(item, step_ref)
            elif item.name in plan.attends:
                assert item.expr is not None
                self.emit(f"{var(item.name)}, {attention_name(item.name)} = {self.expr(item.expr, step_ref)}")
            else:
                assert item.expr is not None
                self.emit(f"{var(item.name)} = {self.expr(item.expr, step_ref)}")
        self._ring_update(stage, rings, collect)
        if not self._xs:  # nothing read step by step: the clock gives the scan its length
            self.emit_before_loop(self.split_steps("_xs_t", f"K.steps(B, T, {self._like()})"))
        moved = self._loop_at - start  # lines put before the step function since `unpack` was counted
        self.lines.insert(unpack + moved, "    " * self.indent + f"({', '.join(self._xs)},) = _xs")
        outs = [var(n) for n in collect] + [attention_name(n) for n in plan.attends]
        # scan refuses aliases among what a step gives back (a ring passes a slot on; h is carried and kept)
        cloned = lambda names: "".join(f"{n}.clone(), " for n in names)  # noqa: E731
        self.emit(f"return ({cloned(carry)}), ({cloned(outs)})")
        self.indent -= 1
        self._loop_at = None
        targets = "".join(o + ", " for o in outs)
        self.emit(
            f"({', '.join(carry)},), ({targets}) = K.scan({fn}, ({', '.join(carry)},), "
            f"({', '.join(self._xs)},), dim=1, reverse={stage.direction < 0})"
        )
        self.defined.update(var(n) for n in collect)

    def _hoist(self, g: Group, split: bool = True) -> None:
        """Before the loop: each member's projections of outside values, with its bias, for all steps.

        Members whose outside sources are all static (or who have none) add the same at every step:
        if every member is so, the group's addend is one (B, H) or (H,) tensor, not a list of steps.
        With `split`, a (B, T, H) addend is split into its steps `_pre_<group>`; without (a loop with a
        generated backward, which splits it itself), it is left whole as `_P_<group>`.
        """

        def steps(code: str) -> str:
            return self.split_steps(f"_pre_{g.name}", code) if split else f"_P_{g.name} = {code}"

        # One matmul a step per loop-reading source. Joining a layer's several delayed sources with a per-step
        # torch.cat into one matmul (what the hand-optimised loops do) measured 5-20% slower forward+backward
        # at 512 hidden on CPU (top-down, skip-2), though faster at 32: the cat's copy and the strided
        # gradient slices cost more than the launch it saves.
        joined = self._group_weights(g)
        for j in range(g.width):
            self.emit(f"_WT{j}_{g.name} = {joined[j]}.t()")
        outer = shared_outer(self.net, g)
        if outer is not None:
            terms = [
                f"F.linear({self.expr(g.members[0].sources[j], self.seq_ref)}, {joined[g.width + i]}"
                + (f", {joined[-1]})" if i == 0 else ")")
                for i, j in enumerate(outer[0])
            ]
            self.emit(steps(f"({' + '.join(terms)})" if len(terms) > 1 else terms[0]))
            return
        parts = [self._outer(node, g) for node in g.members]
        kinds = {k for k, _ in parts}
        if "seq" in kinds:
            widen = {"seq": "{}", "static": "{}.unsqueeze(1).expand(B, T, -1)", "bias": "{}.expand(B, T, -1)"}
            codes = [widen[k].format(c) for k, c in parts]
            self.emit(steps(f"({self._joined(codes, -1)})"))
            return
        widen = {"static": "{}", "bias": "{}.expand(B, -1)" if "static" in kinds else "{}"}
        self.emit(f"_pre_{g.name} = {self._joined([widen[k].format(c) for k, c in parts], -1)}")
        self.constant_addend.add(g.name)

    def _group_weights(self, g: Group) -> list[str]:
        """The names of a group's joined weights (`plan.group_joins`; one layer's own parameters where it is alone):
        the views of the module's buffer where its parameters are still those views (`K.flat`), else joined here."""
        joins = group_joins(self.net, g)
        if joins is None:
            (node,) = g.members
            return [self.param(weight_name(node.name, j)) for j in g.internal[node.name]]
        part = lambda p: self.param(p) if isinstance(p, str) else self._zeros(p)  # noqa: E731
        names = [f"_Wj{i}_{g.name}" for i in range(len(joins.parts))]
        self.emit(f"_j_{g.name} = K.flat(_J.get({joins.key!r}), ({', '.join(map(self.param, joins.params))},))")
        cats = ", ".join(self._joined([part(p) for p in join], 0) for join in joins.parts)
        self.emit(f"{', '.join(names)}, = _j_{g.name} or ({cats},)")
        return names

    def _outer(self, node: Node, g: Group) -> tuple[str, str]:
        """A member's part that does not depend on the loop: ("seq" | "static" | "bias", code)."""
        outer = [j for j in range(len(node.sources)) if j not in g.internal[node.name]]
        if not outer:
            return "bias", self._bias(node)
        static = all(self._static(node.sources[j]) for j in outer)
        ref = self._static_ref if static else self.seq_ref
        terms = [self._projection(node, j, ref, bias=i == 0) for i, j in enumerate(outer)]
        return ("static" if static else "seq"), " + ".join(terms)

    def _group_step(self, g: Group, step_ref: object, save: bool = False) -> None:
        """One step of a group: its matmuls, then each member's activation (and dropout). With `save`, a group
        whose backward needs its members' inputs (`loop_backward.keeps_sum`) keeps them in `_A_<group>`."""
        const = g.name in self.constant_addend
        acc = f"_pre_{g.name}" if const else self.at_t(f"_pre_{g.name}")
        node0 = g.members[0]
        z = acc
        for j, jj in enumerate(g.internal[node0.name]):
            src = node0.sources[jj]
            if isinstance(src, s.Ref) and self.net[src.name].is_tokens:  # ids: rows of the embedding table
                z = f"({z} + K.embed_rows({self.expr(src, step_ref)}, _WT{j}_{g.name}))"
            else:
                z = f"torch.addmm({z}, {self.expr(src, step_ref)}, _WT{j}_{g.name})"
        keep = save and loop_backward.keeps_sum(g.members)
        if len(g.members) == 1 and not keep:
            self.emit(f"{var(node0.name)} = {ACTIVATIONS[node0.activation].code.format(z)}")
        else:
            self.emit(f"_acc = {z}")
            if keep:
                self.emit(f"_A_{g.name}.append(_acc)")
            lo = 0
            for act, run in _runs(g.members):
                width = sum(n.size for n in run)
                part = f"_acc[:, {lo}:{lo + width}]"
                names = [var(n.name) for n in run]
                value = ACTIVATIONS[act].code.format(part)
                if len(run) == 1:
                    self.emit(f"{names[0]} = {value}")
                else:
                    self.emit(f"{', '.join(names)} = {value}.split([{', '.join(str(n.size) for n in run)}], 1)")
                lo += width
        for node in g.members:
            if node.dropout:
                self.emit(f"if train: {var(node.name)} = {var(node.name)} * _D_{var(node.name)}")

    def _step_ref(self, ref: s.Ref, members: set[str], steps: dict[str, str]) -> str:
        """A reference read at step t of a loop: a member's value or ring, a static value, or the step of
        an outside sequence (the step index `CLOCK` is one), split into steps before the loop."""
        if ref != CLOCK:
            node, v = self.net[ref.name], var(ref.name)
            if node.static:
                return v
            if ref.name in members:
                return v if ref.delay == 0 else f"_r{abs(ref.delay)}_{v}"
        seq = self.seq_ref(ref, before_loop=True)
        listed = steps_name(seq)
        if listed not in steps:
            self.emit_before_loop(self.split_steps(listed, seq))
            steps[listed] = listed
        return self.at_t(listed)

    def split_steps(self, name: str, code: str) -> str:
        """The line that makes a (B, T, ...) value readable step by step as `at_t(name)`: its steps as a list
        (`unbind`), or in a scan the value whole, which the scan slices and hands the step function."""
        if not self._scanning:
            return f"{name} = {code}.unbind(1)"
        self._xs.append(name)
        return f"{name} = {code}"

    def at_t(self, name: str) -> str:
        """A value split by `split_steps`, read at step t: `name[t]`, or in a scan the step function's
        argument of the same name."""
        return name if self._scanning else f"{name}[t]"

    def emit_before_loop(self, line: str) -> None:
        """Insert a line just before the `for t` line of the loop being written."""
        assert self._loop_at is not None, "a line before the loop, written outside a loop"
        self.lines.insert(self._loop_at, "    " * (self.indent - 1) + line)
        self._loop_at += 1

    def _collected(self, name: str, stage: Stage) -> bool:
        """Whether the loop keeps every step of a node: read outside, an output, or its state needs it."""
        if any(o.name == name for o in self.net.outputs) or self.net[name].feed is not None:
            return True  # outputs, and what a self-fed input was fed (the caller gets it back)
        if any(r.name == name for n in self.net.nodes if n.name not in stage.nodes for r in n.refs()):
            return True
        past, _ = self.net.delays[name]
        return past > 0 and (self.with_lengths or past > rings_of(self.net, stage).get(name, 0))

    def _ring_update(self, stage: Stage, rings: dict[str, int], collect: list[str]) -> None:
        for n in collect if not self._scanning else ():
            self.emit(f"{collected_name(var(n))}.append({var(n)})")
        for n, k in rings.items():
            v = var(n)
            new = v
            if stage.direction < 0 and self.with_lengths:
                self.emit(f"_m_{v} = torch.where({self.at_t('_valid_s')}, {v}, _I_{v})")
                if f"_I_{v}" not in self.defined:  # a loop with a generated backward takes it as an input
                    self.emit_before_loop(f"_I_{v} = I[{n!r}]")
                new = f"_m_{v}"
            olds = [f"_r{i}_{v}" for i in range(k, 0, -1)]
            news = [f"_r{i}_{v}" for i in range(k - 1, 0, -1)] + [new]
            self.emit(f"{', '.join(olds)} = {', '.join(news)}")
        if stage.direction < 0 and self.with_lengths and rings and "_valid_s" not in self.defined:
            self.emit_before_loop(self.split_steps("_valid_s", "valid"))
            self.defined.add("_valid_s")

    # ---- results -----------------------------------------------------------------------------

    def _results(self) -> None:
        self.emit("values = {}")
        for out in self.net.outputs:
            node, v = self.net[out.name], var(out.name)
            if out.last:
                value = v if node.static else f"K.last({v}, lengths)"
            else:
                seq = f"{v}.unsqueeze(1).expand(-1, T, -1)" if node.static else v
                value = f"K.masked({seq}, valid)" if self.with_lengths else seq
            self.emit(f"values[{out.name!r}] = {value}")
        for name in self.attends:  # what each attention weighed, for looking at: (B, T, S), cut from the graph
            node, w = self.net[name], attention_name(name)
            seq = f"{w}.unsqueeze(1).expand(-1, T, -1)" if node.static else w
            value = f"K.masked({seq}, valid)" if self.with_lengths else seq
            self.emit(f"values[{'attention:' + name!r}] = {value}.detach()")
        self.emit("state = {}")
        if not self.net.reads_future:
            ring_state = self.ring_state
            for node in self.net.nodes:
                k, _ = self.net.delays[node.name]
                if not k:
                    continue
                v = var(node.name)
                if node.name in self.state_code:
                    value = self.state_code[node.name]
                elif node.name in ring_state:
                    value = f"torch.stack([{', '.join(f'_r{i}_{v}' for i in range(k, 0, -1))}], 1)"
                else:
                    lengths = "lengths" if self.with_lengths else "None"
                    value = f"K.last_k(H[{node.name!r}], {v}, {lengths}, {k})"
                self.emit(f"state[{node.name!r}] = {value}")
        self.emit("return values, state")


def _factors(e: s.Expr) -> list[tuple[s.Expr, s.Expr]]:
    """A product's two factors, both ways round; none for anything else."""
    return [(e.left, e.right), (e.right, e.left)] if isinstance(e, s.BinOp) and e.op == "*" else []


def _one_minus(e: s.Expr) -> s.Expr | None:
    """z where `e` is `1 - z`."""
    if isinstance(e, s.BinOp) and e.op == "-" and isinstance(e.left, s.Num) and e.left.value == 1:
        return e.right
    return None


def _runs(nodes: list[Node]) -> list[tuple[str, list[Node]]]:
    """Neighbours with the same elementwise activation, which one call applies to all (softmax: one each)."""
    out: list[tuple[str, list[Node]]] = []
    for n in nodes:
        if out and out[-1][0] == n.activation and n.activation not in ROW_WISE:
            out[-1][1].append(n)
        else:
            out.append((n.activation, [n]))
    return out
