"""Loop backward: a time loop of the generated code as one autograd node, its backward generated too.

Takes the code emitter in the middle of a loop stage (the loop's groups, rings and collected nodes,
its hoisting already written), gives two functions appended to the generated source and the line
that calls them through `K.loop`:

- `_L<n>_forward(ctx, T, B, train, *inputs)`: the loop as the autograd path would run it, which also
  keeps every node's value at every step (`_V_<node>`, after the ring's start values).
- `_L<n>_backward(ctx, *grads)`: the reverse loop. Each step's gradients are written straight into the
  code (reverse mode over the step's expressions; values a derivative needs are recomputed from the
  kept node values). A group's matmul gradient `dz` goes into one (T, B, W) buffer; the input-side
  products `dz @ W` run per step, as they must, but every weight gradient is one product over all
  steps at the end, `stack(src)ᵀ @ dZ` (what the fused cell kernels do), and the hoisted projections
  get `dZ` whole.

Gradients for a node's value accumulate in locals: `_g_<node>` for a node nothing reads with a delay,
and slots `_g0_<node>` .. `_gk_<node>` (the value this step, 1 .. k steps back) for one the loop reads
up to k steps away, shifted down after every step; the first contribution in a step assigns, later ones
add, so no zeros are made. Inputs are the hoisted addends (`_P_<group>` whole, or a constant one), the
joined weights `_WT<j>_<group>`, the rings' start values, the outside sequences and static values
the step reads, the step index `_t` where the step reads it (`every(k)`; it gets no gradient), and
dropout masks.

A backward-running loop with lengths holds the init in its rings past each sequence's end: there the
ring values (`_M_<node>`) are kept apart from the node's, and the gradient a ring value gets is split
between the node (inside the sequence) and the init `_I_<node>` (past its end).

Loops this does not cover stay on autograd: self-fed inputs, token sources read inside the loop, and the
guarded variant.
"""

from __future__ import annotations

from itertools import count
from typing import TYPE_CHECKING

from rnndsl.backend import native_step
from rnndsl.backend.names import attention_name, keep_name, steps_name, var
from rnndsl.backend.plan import LEADING, Group, LoopPlan, LoopWriter
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Node
from rnndsl.lang.ops import ACTIVATIONS, CLOCK, FEED_FUNCTIONS, OPS, constant, reads_step

if TYPE_CHECKING:
    from rnndsl.graphs.schedule import Stage

__all__ = ["LoopFunction", "eligible", "keeps_sum"]


def keeps_sum(members: list[Node]) -> bool:
    """Whether a group's backward needs its members' summed inputs (kept in `_A_<group>` by the forward):
    an activation whose derivative does not follow from its output, or dropout, which hides the output."""
    return any(m.dropout or ACTIVATIONS[m.activation].derivative is None for m in members)


def eligible(em: LoopWriter, stage: Stage) -> bool:
    """Whether a loop stage gets a generated backward (see the module's docstring for what does not)."""
    if em.guard:
        return False
    members = set(stage.nodes)
    for name in stage.nodes:
        node = em.net[name]
        if node.feed is not None:
            return False
        if node.op == "expr":
            assert node.expr is not None
            read = [node.expr]
        else:
            read = [e for e in node.sources if any(r.name in members for r in s.refs(e))]
        for e in read:
            if any(em.net[r.name].is_tokens for r in s.refs(e)) or s.calls(e) & ({"one_hot"} | set(FEED_FUNCTIONS)):
                return False
    return True


class LoopFunction:
    """Writes one loop with a generated backward: the call in the forward, the two functions after it."""

    def __init__(self, em: LoopWriter, plan: LoopPlan) -> None:
        self.em, self.plan, self.stage, self.groups, self.early = em, plan, plan.stage, plan.groups, plan.early
        self.rings, self.collect = plan.rings, plan.collect
        self.net = em.net
        self.members = set(plan.stage.nodes)
        self.fname = f"_L{len(em.functions)}"
        self.seqs: list[str] = []  # outside sequences the step reads, as the forward names them
        self.statics: list[str] = []  # static values the step reads
        self.clock: list[str] = []  # the step index, where the step reads it (`every(k)`): no gradient
        self.masks = [f"_D_{var(n)}" for n in plan.stage.nodes if self.net[n].op == "layer" and self.net[n].dropout]
        self.masked = plan.stage.direction < 0 and em.with_lengths  # rings hold the init past each sequence's end
        # each attention's memory's keep mask (an input without a gradient), and its weights (an output without)
        self.keeps = list(dict.fromkeys(keep_name(em.memory_of(self._weighed(n))) for n in plan.attends))
        self.weights = [attention_name(n) for n in plan.attends]
        self.lines: list[str] = []
        self.assigned: set[str] = set()
        self.memo: dict[str, str] = {}
        self.temps = count()
        self.src_lists: list[str] = []
        self._loop_at = 0  # the index of the backward's `for _s` line, once written

    # ---- what crosses the node ---------------------------------------------------------------

    def _weighed(self, name: str) -> s.Expr:
        """What an attention node (`c = attend(score, values)`) weighs: its values."""
        call = self.net[name].attention
        assert call is not None
        return call.args[1]

    def _scan_reads(self) -> None:
        """The outside values the step reads, computed (sequences shifted) in the forward, before the call."""
        for name in self.stage.nodes:
            node = self.net[name]
            exprs = (
                [node.expr]
                if node.expr is not None
                else [e for e in node.sources if any(r.name in self.members for r in s.refs(e))]
            )
            for e in exprs:
                if reads_step(e) and not self.clock:
                    self.clock.append(self.em.seq_ref(CLOCK))
                for r in s.refs(e):
                    if r.name in self.members:
                        continue
                    if self.net[r.name].static:
                        if var(r.name) not in self.statics:
                            self.statics.append(var(r.name))
                    else:
                        seq = self.em.seq_ref(r)
                        if seq not in self.seqs:
                            self.seqs.append(seq)

    def _pres(self) -> list[str]:
        return [f"_pre_{g.name}" if g.name in self.em.constant_addend else f"_P_{g.name}" for g in self.groups]

    def _weights(self) -> list[str]:
        return [f"_WT{j}_{g.name}" for g in self.groups for j in range(g.width)]

    def _ring_inputs(self) -> list[str]:
        starts = [f"_r{i}_{var(n)}" for n, k in self.rings.items() for i in range(1, k + 1)]
        return starts + ([f"_I_{var(n)}" for n in self.rings] + ["valid"] if self.masked else [])

    def _outputs(self) -> list[str]:
        """Every step of each collected node, then the last ring values of the others (their state)."""
        return [var(n) for n in self.collect] + [
            f"_r{i}_{var(n)}" for n, k in self.rings.items() if n not in self.collect for i in range(1, k + 1)
        ]

    # ---- writing -----------------------------------------------------------------------------

    def emit(self) -> None:
        em = self.em
        self._scan_reads()
        if self.masked:
            for n in self.rings:
                em.emit(f"_I_{var(n)} = I[{n!r}]")
                em.defined.add(f"_I_{var(n)}")
        inputs = (
            self._pres()
            + self._weights()
            + self._ring_inputs()
            + self.seqs
            + self.clock
            + self.statics
            + self.masks
            + self.keeps
        )
        outputs = self._outputs() + self.weights
        fns = f"{self.fname}_forward, {self.fname}_backward"
        native = None
        if "step" in em.kinds and native_step.refusal(em, self.plan) is None:
            native = native_step.NativeLoop(self, self.fname[2:])
            em.emit(
                f"_fns = ({native.fname}_forward, {native.fname}_backward) "
                f"if K.step_ready({native.source_name}, {inputs[0]}) else ({fns})"
            )
            fns = "_fns[0], _fns[1]"
        em.emit(f"{', '.join(outputs)}, = K.loop({fns}, T, B, train, {', '.join(inputs)})")
        for n in self.collect:
            em.defined.add(var(n))
        em.loops += 1
        em.functions.append(self._forward(inputs, outputs))
        em.functions.append(self._backward(inputs, outputs))
        if native is not None:
            em.functions.extend(native.functions(inputs, outputs))

    def _forward(self, inputs: list[str], outputs: list[str]) -> str:
        em = self.em
        with em.function_body() as body:
            for g in self.groups:
                if g.name not in em.constant_addend:
                    em.emit(f"_pre_{g.name} = _P_{g.name}.unbind(1)")
                if keeps_sum(g.members):
                    em.emit(f"_A_{g.name} = []")
            if self.masked:
                em.emit("_valid_s = valid.unbind(1)")
                em.defined.add("_valid_s")
                for n, k in self.rings.items():
                    em.emit(f"_M_{var(n)} = [{', '.join(f'_r{i}_{var(n)}' for i in range(k, 0, -1))}]")
            em.loop_steps(self.plan, save=True)
            lists = self._lists()
            em.emit(f"ctx.lists = ({', '.join(lists)},)")
            kept = self._kept()
            em.emit(f"ctx.save_for_backward({', '.join(kept)})")
            em.emit("ctx.meta = (T, B, train)")
            if self.weights:
                em.emit(f"ctx.mark_non_differentiable({', '.join(self.weights)})")
            # the last ring values are also in `_V_`: return copies, or the outputs would hold their own node
            plain = {var(n) for n in self.collect} | set(self.weights)  # the weights: made by the loop, not kept
            outs = [o if o in plain else f"{o}.clone()" for o in outputs]
            em.emit(f"return {', '.join(outs)},")
        head = f"def {self.fname}_forward(ctx, T, B, train, {', '.join(inputs)}):"
        return "\n".join([head, *body]) + "\n"

    def _lists(self) -> list[str]:
        """The per-step values the forward keeps for the backward (on `ctx.lists`)."""
        masked = [f"_M_{var(n)}" for n in self.rings] if self.masked else []
        return (
            [f"_V_{var(n)}" for n in self.stage.nodes]
            + masked
            + [f"_A_{g.name}" for g in self.groups if keeps_sum(g.members)]
        )

    def _kept(self) -> list[str]:
        """The node's inputs its backward reads (saved with `save_for_backward`, so in-place changes are caught)."""
        consts = [f"_pre_{g.name}" for g in self.groups if g.name in self.em.constant_addend]
        kept = self._weights() + consts + self.seqs + self.clock + self.statics + self.masks
        kept += ["valid"] if self.masked else []
        return kept + [k for k in self.keeps if k not in kept]

    # ---- the backward ------------------------------------------------------------------------

    def w(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def _backward(self, inputs: list[str], outputs: list[str]) -> str:
        w = self.w
        grads = [f"_go{i}" for i in range(len(outputs))]
        w("T, B, train = ctx.meta")
        if self._kept():
            w(f"{', '.join(self._kept())}, = ctx.saved_tensors")
        w(f"{', '.join(self._lists())}, = ctx.lists")
        for g in self.groups:
            for j in range(g.width):
                w(f"_WTt{j}_{g.name} = _WT{j}_{g.name}.t()")
            assert g.width, "a layer of a loop reads the loop (a loop is a strongly connected component)"
            w(f"_dZ_{g.name} = _WT0_{g.name}.new_empty((T, B, {sum(n.size for n in g.members)}))")
        for seq in self.seqs:
            w(f"{steps_name(seq)} = {seq}.unbind(1)")
            w(f"_G{steps_name(seq)} = [None] * T")
        for clock in self.clock:
            w(f"{steps_name(clock)} = {clock}.unbind(1)")
        for v in self.statics:
            w(f"_gS_{v} = torch.zeros_like({v})")
        if self.masked:
            w("_valid_s = valid.unbind(1)")
            for n in self.rings:
                w(f"_gI_{var(n)} = torch.zeros_like(_V_{var(n)}[-1])")
        by_output = dict(zip(outputs, grads, strict=True))
        for n in self.collect:
            w(f"{by_output[var(n)]} = {by_output[var(n)]}.unbind(1)")
        for n, k in self.rings.items():
            v = var(n)
            for i in range(k):
                start = by_output.get(f"_r{i + 1}_{v}", f"torch.zeros_like(_V_{v}[-1])")
                w(f"_g{i}_{v} = {start}")
        self._loop_at = len(self.lines)  # where lists the reversed step fills are made, before its loop
        w("for _s in range(T - 1, -1, -1):")
        w("t = _s" if self.stage.direction > 0 else "t = T - 1 - _s", 2)
        self._step_backward(by_output)
        return self._results(inputs, grads)

    def _step_backward(self, by_output: dict[str, str]) -> None:
        w = self.w
        self.assigned = {f"_g{i}_{var(n)}" for n, k in self.rings.items() for i in range(k)}
        self.assigned |= {f"_gS_{v}" for v in self.statics}
        for n in self.stage.nodes:  # this step's values and the ring values it read
            v, k = var(n), self.rings.get(n, 0)
            w(f"{v} = _V_{v}[{k} + _s]" if k else f"{v} = _V_{v}[_s]", 2)
            held = f"_M_{v}" if self.masked else f"_V_{v}"
            for i in range(1, k + 1):
                w(f"_r{i}_{v} = {held}[{k - i} + _s]", 2)
        if self.masked:  # a ring value past the sequence's end was the init: its gradient goes there
            for n in self.rings:
                v = var(n)
                w(f"_gI_{v} = _gI_{v} + torch.where(_valid_s[t], 0.0, _g0_{v})", 2)
                w(f"_g0_{v} = torch.where(_valid_s[t], _g0_{v}, 0.0)", 2)
        for n in self.collect:
            self._add(self._target(n, 0), f"{by_output[var(n)]}[t]")
        for item in self.plan.order:  # a node's whole expression is its kept value: read, not recomputed
            if isinstance(item, Node) and item.expr is not None and not isinstance(item.expr, s.Ref):
                self.memo.setdefault(self.em.expr(item.expr, self._ref), var(item.name))
        for item in reversed(self.plan.order):
            if isinstance(item, Node):
                assert item.expr is not None
                self._back(item.expr, self._grad_of(item.name))
            else:
                self._group_backward(item)
        for seq in self.seqs:
            w(f"_G{steps_name(seq)}[t] = {self._grad_var_of_seq(seq)}", 2)
        for n, k in self.rings.items():
            v = var(n)
            assert f"_g{k}_{v}" in self.assigned  # the step reads the ring k back: that is what k is
            olds = [f"_g{i}_{v}" for i in range(k)]
            news = [f"_g{i}_{v}" for i in range(1, k + 1)]
            w(f"{', '.join(olds)} = {', '.join(news)}", 2)

    def _results(self, inputs: list[str], grads: list[str]) -> str:
        w = self.w
        out: list[str] = []
        at = {name: i + LEADING for i, name in enumerate(inputs)}  # in ctx.needs_input_grad
        for g in self.groups:
            name = f"_pre_{g.name}" if g.name in self.em.constant_addend else f"_P_{g.name}"
            if g.name in self.em.constant_addend:
                value = f"K.sum_to(_dZ_{g.name}.sum(0), {name})"
            elif self.stage.direction > 0:
                value = f"_dZ_{g.name}.transpose(0, 1)"
            else:
                value = f"_dZ_{g.name}.flip(0).transpose(0, 1)"
            w(f"_d{name} = {value} if ctx.needs_input_grad[{at[name]}] else None")
            out.append(f"_d{name}")
        weights = [
            (f"_WT{j}_{g.name}", g, self._stacked_source(g.members[0].sources[jj], g, j))
            for g in self.groups
            for j, jj in enumerate(g.internal[g.members[0].name])
        ]
        stacked: dict[str, str] = {}  # a source's steps stacked once, however many weights read it
        for _, _, code in weights:
            if code not in stacked:
                stacked[code] = f"_Xs{len(stacked)}"
                needed = " or ".join(f"ctx.needs_input_grad[{at[n]}]" for n, _, c in weights if c == code)
                w(f"{stacked[code]} = {code}.flatten(0, 1) if {needed} else None")
        for name, g, code in weights:
            w(
                f"_d{name} = torch.mm({stacked[code]}.t(), _dZ_{g.name}.flatten(0, 1)) "
                f"if ctx.needs_input_grad[{at[name]}] else None"
            )
            out.append(f"_d{name}")
        for n, k in self.rings.items():
            out += [f"_g{i - 1}_{var(n)}" for i in range(1, k + 1)]
        if self.masked:
            out += [f"_gI_{var(n)}" for n in self.rings] + ["None"]
        out += [f"torch.stack(_G{steps_name(seq)}, 1)" for seq in self.seqs]
        out += ["None"] * len(self.clock)
        out += [f"_gS_{v}" for v in self.statics]
        out += ["None"] * (len(self.masks) + len(self.keeps))
        w(f"return {', '.join(out)},")
        head = f"def {self.fname}_backward(ctx, {', '.join(grads)}):"
        return "\n".join([head, *self.lines]) + "\n"

    def _stacked_source(self, e: s.Expr, g: Group, j: int) -> str:
        """A group's source over all steps, (T, B, size), in step order (for its weight's gradient)."""
        if isinstance(e, s.Ref) and e.name in self.members:
            v, k = var(e.name), self.rings.get(e.name, 0)
            held = f"_M_{v}" if self.masked and e.delay else f"_V_{v}"
            lo = k - abs(e.delay)
            return f"torch.stack({held}[{lo}:{lo} + T])" if lo else f"torch.stack({held}[:T])"
        return f"torch.stack(_X{j}_{g.name})"

    # ---- reverse mode over one step ------------------------------------------------------------

    def _target(self, name: str, delay: int) -> str:
        v = var(name)
        return f"_g{abs(delay)}_{v}" if name in self.rings else f"_g_{v}"

    def _grad_of(self, name: str) -> str:
        """The complete gradient of a node's value this step (every reader is done by now)."""
        target = self._target(name, 0)
        if target not in self.assigned:  # nothing reads it this step
            self.w(f"{target} = torch.zeros_like({var(name)})", 2)
            self.assigned.add(target)
        return target

    def _grad_var_of_seq(self, seq: str) -> str:
        return f"_gq{steps_name(seq)}"

    def _add(self, target: str, code: str) -> None:
        if target in self.assigned:
            self.w(f"{target} = {target} + {code}", 2)
        else:
            self.w(f"{target} = {code}", 2)
            self.assigned.add(target)

    def _tmp(self, code: str) -> str:
        name = f"_b{next(self.temps)}"
        self.w(f"{name} = {code}", 2)
        return name

    def _ref(self, r: s.Ref) -> str:
        if r != CLOCK:  # the step index is read like an outside sequence
            node, v = self.net[r.name], var(r.name)
            if node.static:
                return v
            if r.name in self.members:
                return v if r.delay == 0 else f"_r{abs(r.delay)}_{v}"
        return f"{steps_name(self.em.seq_ref(r))}[t]"

    def _val(self, e: s.Expr) -> str:
        """A forward value this step, recomputed from the kept node values (once per step)."""
        if isinstance(e, s.Ref) or constant(e):
            return self.em.expr(e, self._ref)
        code = self.em.expr(e, self._ref)
        if code not in self.memo:
            self.memo[code] = self._tmp(code)
        return self.memo[code]

    def _back(self, e: s.Expr, g: str) -> None:
        """Add an expression's contribution to the gradients of what it reads, given its gradient `g`."""
        if not s.refs(e):  # a number, or a function of the step only (`every(2)`): nothing to differentiate
            return
        if isinstance(e, s.Ref):
            if e.name in self.members:
                self._add(self._target(e.name, e.delay), g)
            elif self.net[e.name].static:
                self._add(f"_gS_{var(e.name)}", g)
            else:
                self._add(self._grad_var_of_seq(self.em.seq_ref(e)), g)
            return
        if isinstance(e, s.Neg):
            self._back(e.operand, self._tmp(f"-{g}"))
            return
        if isinstance(e, s.BinOp):
            self._back_binop(e, g)
            return
        assert isinstance(e, s.Call)
        self._back_call(e, g)

    def _back_binop(self, e: s.BinOp, g: str) -> None:
        left, right = e.left, e.right
        if e.op == "+":
            self._back(left, self._to(left, e, g))
            self._back(right, self._to(right, e, g))
        elif e.op == "-":
            self._back(left, self._to(left, e, g))
            if s.refs(right):
                self._back(right, self._to(right, e, self._tmp(f"-{g}")))
        elif e.op == "*":
            if s.refs(left):
                self._back(left, self._to(left, e, self._tmp(f"{g} * {self._val_in(right, e)}")))
            if s.refs(right):
                self._back(right, self._to(right, e, self._tmp(f"{g} * {self._val_in(left, e)}")))
        else:  # "/"
            if s.refs(left):
                self._back(left, self._to(left, e, self._tmp(f"{g} / {self._val_in(right, e)}")))
            if s.refs(right):
                self._back(right, self._to(right, e, self._tmp(f"-{g} * {self._val(e)} / {self._val_in(right, e)}")))

    def _to(self, side: s.Expr, e: s.Expr, g: str) -> str:
        """A side's share of `g`: summed over the memory's positions where a side of one vector was broadcast
        over them, and over the vector where a size-1 side was broadcast to `e`'s size."""
        if not s.refs(side):
            return g
        if self.em.memory_of(e) and not self.em.memory_of(side):
            g = self._tmp(f"{g}.sum(-2)")
        return self._tmp(f"{g}.sum(-1, keepdim=True)") if self._size(side) == 1 < self._size(e) else g

    def _val_in(self, side: s.Expr, e: s.Expr) -> str:
        """A side's forward value as it meets the other side in `e`: given a positions axis where `e` runs
        over a memory's positions and the side does not."""
        value = self._val(side)
        if not constant(side) and self.em.memory_of(e) and not self.em.memory_of(side):
            return f"{value}.unsqueeze(-2)"
        return value

    def _back_call(self, e: s.Call, g: str) -> None:
        op = OPS[e.fn]
        if op.memory and op.vjp is not None:  # attention: the scores' and the values' gradients at once
            score, weighed = e.args
            keep = keep_name(self.em.memory_of(weighed))
            both = self._tmp(op.vjp.format(self._val(score), self._val(weighed), g=g, keep=keep))
            self._back(score, self._tmp(f"{both}[0]"))
            self._back(weighed, self._tmp(f"{both}[1]"))
            return
        if e.fn == "concat":
            lo = 0
            cut = "..." if self.em.memory_of(e) else ":"
            for a in e.args:
                size = self._size(a)
                self._back(a, self._to(a, e, self._tmp(f"{g}[{cut}, {lo}:{lo + size}]")))
                lo += size
            return
        if e.fn in ("min", "max"):
            a, b = e.args
            if not constant(a) and not constant(b):  # `min(h, every(2))` too: as forward, no clamp
                fn = "torch.minimum" if e.fn == "min" else "torch.maximum"
                both = self._tmp(f"K.vjp(lambda _a, _b: {fn}(_a, _b), {g}, {self._val(a)}, {self._val(b)})")
                self._back(a, self._tmp(f"{both}[0]"))
                self._back(b, self._tmp(f"{both}[1]"))
                return
            x, bound = (a, b) if not constant(a) else (b, a)
            clamp = OPS[e.fn].lower(["_x", self.em.expr(bound, self._ref)], [False, True])
            self._back(x, self._tmp(f"K.vjp(lambda _x: {clamp}, {g}, {self._val(x)})[0]"))
            return
        derivative = OPS[e.fn].derivative
        if derivative is not None:
            (arg,) = e.args
            y = self._val(e) if "{y}" in derivative else ""  # each value recomputed only where it is read
            code = derivative.format(g=g, y=y, x=self._val(arg) if "{x}" in derivative else "")
            self._back(arg, g if code == g else self._tmp(code))
            return
        if len(e.args) == 1:  # no written derivative: autograd on this one function
            code = f"K.vjp(lambda _x: {OPS[e.fn].lower(['_x'])}, {g}, {self._val(e.args[0])})[0]"
            self._back(e.args[0], self._tmp(code))
            return
        names = [f"_a{i}" for i in range(len(e.args))]  # the same, for every argument at once
        values = ", ".join(self._val_in(a, e) for a in e.args)
        grads = self._tmp(f"K.vjp(lambda {', '.join(names)}: {OPS[e.fn].lower(names)}, {g}, {values})")
        for i, a in enumerate(e.args):
            if s.refs(a):
                self._back(a, self._to(a, e, self._tmp(f"{grads}[{i}]")))

    def _size(self, e: s.Expr) -> int:
        """The size of an expression's value (0 for a number, which broadcasts)."""

        def size(x: s.Expr, kids: list[int]) -> int:
            if isinstance(x, s.Ref):
                return self.net[x.name].size
            if isinstance(x, s.Call) and OPS[x.fn].size == "concat":
                return sum(kids)
            if isinstance(x, s.Call) and OPS[x.fn].size in ("reduce", "one"):
                return 1
            return max(kids, default=0)

        return s.fold(e, size)

    def _group_backward(self, g: Group) -> None:
        """A group's step in reverse: each member's activation (into its columns of dZ), then every source."""
        w = self.w
        dz = self._tmp(f"_dZ_{g.name}[_s]")
        keep = keeps_sum(g.members)
        lo = 0
        for node in g.members:
            v, hi = var(node.name), lo + node.size
            grad = self._grad_of(node.name)
            if node.dropout:
                grad = self._tmp(f"{grad} * _D_{v} if train else {grad}")
            out = f"{dz}[:, {lo}:{hi}]" if len(g.members) > 1 else dz
            act = node.activation
            summed = f"_A_{g.name}[_s][:, {lo}:{hi}]"
            into = ACTIVATIONS[act].into
            if into is not None:
                y = self._tmp(ACTIVATIONS[act].code.format(summed)) if keep else v
                w(into.format(g=grad, y=y, out=out), 2)
            else:
                w(f"{out}.copy_(K.vjp(lambda _x: {ACTIVATIONS[act].code.format('_x')}, {grad}, {summed})[0])", 2)
            lo = hi
        node0 = g.members[0]
        for j, jj in enumerate(g.internal[node0.name]):
            e = node0.sources[jj]
            wt = f"_WTt{j}_{g.name}"
            if isinstance(e, s.Ref) and e.name in self.members:
                target = self._target(e.name, e.delay)
                if target in self.assigned:
                    w(f"{target} = torch.addmm({target}, {dz}, {wt})", 2)
                else:
                    w(f"{target} = torch.mm({dz}, {wt})", 2)
                    self.assigned.add(target)
                continue
            listed = f"_X{j}_{g.name}"
            if listed not in self.src_lists:
                self.src_lists.append(listed)
                self.lines.insert(self._loop_at, f"    {listed} = [None] * T")
                self._loop_at += 1
            w(f"{listed}[_s] = {self._val(e)}", 2)
            self._back(e, self._tmp(f"torch.mm({dz}, {wt})"))
