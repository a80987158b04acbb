"""Native steps: a custom loop's elementwise work, forward and backward, as generated C, one call a step.

Takes a loop the generated backward covers (`loop_backward.LoopFunction`, already planned), gives a second
forward and backward for it whose steps run their elementwise work in C, and the C. A step of a custom cell
is one matrix product per group (torch's, as before) and then a dozen or more small elementwise ops, each a
dispatch of a few microseconds, and as many again in its backward: at 32 or 128 hidden that dispatch is most
of the time. Here each stretch of elementwise work between two matrix products is one C function over the
(batch, unit) grid, written from the same expression trees the torch code is (each op's C form and derivative
are its `c` and `c_grad` entries in the op table), built by `native.step_library` with the host's vector
instructions and glibc's vector exp/tanh, and called through ctypes with a table of pointers.

What the two functions keep: every node's value at every step in one (k + T, B, size) buffer (`_V_<node>`, the
ring's k start values first, steps in loop order); a group's summed inputs in one (B, W) scratch; in the
backward, each node's gradient in k + 1 slots (`_G_<node>`, the slot of step u is u mod (k + 1), so reading a
value k steps back needs no shifting), a group's dZ in one (T, B, W) buffer as `LoopFunction` has it, and the
per-step products `dZ @ W` added in place into the slots by torch. Weight gradients are one product over all
steps at the end, from the value buffers themselves (no stacking). A stretch of nodes of several sizes is one
loop over units per run of one size. Where no backward will follow (autograd not recording: inference), a node
whose steps are not an output keeps only its last k + 1 values, its buffer a ring indexed by step mod (k + 1)
(`ROWS(i)` in the C gives each such node's rows: k + T while recording, k + 1 where not), so a long sequence
needs no buffer of T steps per node.

Which loops (`refusal` says why not): those with a generated backward whose layers read the loop through plain
references, whose expressions read the loop's own values (any delay), static values and outside sequences of
the node's size, and the step index, through ops with a C form (`+ - * /`, negation, numbers, and the functions
whose table entry has `c`), and whose activations' derivatives follow from their output. Row-wise ops with a
`c_row`: layer_norm of a value (its row's mean and 1/std computed by the loop over rows before the loop over
units that reads them; its derivative needs the means of its gradient's row, so it keeps that row and finishes in
a loop of its own after), a softmax layer (the row's max and sum of exponentials; its derivative the row's sum
of gradient times value). Not: the reductions, other row-wise functions, attention, dropout, size-1 nodes, a
backward loop with lengths. The call
site picks at run time (`kernels.step_ready`): the C on a CPU, for float32 and float64, where the library
builds; torch's loop elsewhere and under tracers.

A loop with no matrix product in its step (every product hoisted: IndRNN, SRU, QRNN, minGRU) also exports its
whole run over time, one C call a direction (`_fwall`, `_bwall`, called by `kernels.run_whole`): no Python or
ctypes call a step. On a CPU that beats the linear scan of a loop linear in its past (`codegen` prefers it).

A call's rows are independent (each reads and writes its own row of every buffer; the products between calls are
torch's): where a call covers enough values (`kernels.step_threads`), its rows are split among torch's threads by
OpenMP, the runtime torch itself loaded, each row's arithmetic the same as on one thread.

The numbers are those of the torch loop up to rounding (vector exp and tanh are within a few ulps of torch's),
not bitwise: the tests compare both with the reference executor (1e-10 in float64).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rnndsl.backend.evaluate import fold
from rnndsl.backend.names import var
from rnndsl.backend.plan import LEADING, Group
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Node
from rnndsl.lang.ops import ACTIVATIONS, OPS, constant

if TYPE_CHECKING:
    from rnndsl.backend.loop_backward import LoopFunction
    from rnndsl.backend.plan import LoopPlan, LoopWriter

__all__ = ["NativeLoop", "refusal"]

# Each C type: its name, the suffix of its functions, and its libm functions. The `declare simd` lines tell the
# compiler glibc's libmvec has vector versions of them (what <math.h> says only under -ffast-math).
_TYPES = {
    "f32": ("float", {"EXP": "expf", "TANH": "tanhf", "LOG": "logf", "SIN": "sinf", "COS": "cosf", "SQRT": "sqrtf"}),
    "f64": ("double", {"EXP": "exp", "TANH": "tanh", "LOG": "log", "SIN": "sin", "COS": "cos", "SQRT": "sqrt"}),
}
_VECTOR_MATHS = ("EXP", "TANH", "LOG", "SIN", "COS")


def _over_rows(loop: str) -> list[str]:
    """C: a loop over a call's rows, split among the threads the call site gives (`kernels.step_threads`: one
    where the work is too small to pay for waking them). One thread never enters OpenMP at all (an `if` clause
    would: in a process forked after a parallel region, libgomp then waits for pool threads that did not survive
    the fork; torch's own ops keep out of OpenMP at one thread too, which is what forked workers set)."""
    return [
        "    if (threads > 1) {",
        "#pragma omp parallel for num_threads(threads) schedule(static)",
        f"        {loop}",
        "    } else {",
        f"        {loop}",
        "    }",
    ]


# What a row-wise op (layer_norm) needs of whole rows: the mean and 1/std of its argument's row (two passes, as
# torch's biased variance, eps 1e-5), and for its derivative the means of the gradient's row and of the gradient
# times the normalised value. Written once per type (SUFFIX), called by the loop over rows.
_ROW_HELPERS = r"""
static void row_stats_SUFFIX(const real *x, long n, real *mean, real *rstd) {
    real m = 0, v = 0;
#pragma omp simd reduction(+ : m)
    for (long i = 0; i < n; i++) m += x[i];
    m /= n;
#pragma omp simd reduction(+ : v)
    for (long i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *rstd = 1 / SQRT(v / n + (real)1e-5);
}
static void row_grad_stats_SUFFIX(const real *g, const real *x, long n, real mean, real rstd, real *mg, real *mgy) {
    real a = 0, c = 0;
#pragma omp simd reduction(+ : a, c)
    for (long i = 0; i < n; i++) {
        a += g[i];
        c += g[i] * ((x[i] - mean) * rstd);
    }
    *mg = a / n;
    *mgy = c / n;
}
static void row_softmax_SUFFIX(const real *z, long n, real *mx, real *se) {
    real m = z[0], a = 0;
#pragma omp simd reduction(max : m)
    for (long i = 1; i < n; i++) m = z[i] > m ? z[i] : m;
#pragma omp simd reduction(+ : a)
    for (long i = 0; i < n; i++) a += EXP(z[i] - m);
    *mx = m;
    *se = a;
}
static real row_softmax_grad_SUFFIX(const real *g, const real *go, const real *y, long n) {
    real a = 0;
#pragma omp simd reduction(+ : a)
    for (long i = 0; i < n; i++) a += (go ? g[i] + go[i] : g[i]) * y[i];
    return a;
}
#define ROW_STATS row_stats_SUFFIX
#define ROW_GRAD_STATS row_grad_stats_SUFFIX
#define ROW_SOFTMAX row_softmax_SUFFIX
#define ROW_SOFTMAX_GRAD row_softmax_grad_SUFFIX""".splitlines()


def refusal(em: LoopWriter, plan: LoopPlan) -> str | None:
    """Why a loop cannot have native steps (None: it can)."""
    if em.guard or not plan.function:
        return "no generated backward"
    if plan.attends:
        return "attention"
    if plan.stage.direction < 0 and em.with_lengths:
        return "a backward loop with lengths"
    net, members = em.net, set(plan.stage.nodes)
    if any(net[n].size == 1 for n in members):
        return "a node of size 1"
    for g in plan.groups:
        for node in g.members:
            if node.dropout:
                return "dropout"
            act = ACTIVATIONS[node.activation]
            if act.c is None or act.c_grad is None or "{x}" in act.c_grad:
                return f"the activation {node.activation}"
            for j in g.internal[node.name]:
                e = node.sources[j]
                if not (isinstance(e, s.Ref) and e.name in members):
                    return "a layer source that is an expression of the loop"
    for name in plan.stage.nodes:
        node = net[name]
        if node.op != "expr":
            continue
        assert node.expr is not None
        for e in s.walk(node.expr):
            if constant(e):
                continue
            if isinstance(e, s.Call):
                op = OPS[e.fn]
                if op.c is None or (op.c_grad is None and not op.step) or len(e.args) != 1:
                    return f"the function {e.fn}"
                if op.row_wise and op.c_row != "norm":
                    return f"the function {e.fn} in an expression (row-wise)"
                if op.row_wise and not isinstance(e.args[0], s.Ref):
                    return f"{e.fn} of an expression (its row's statistics are taken from a node's values)"
            if isinstance(e, s.Ref) and net[e.name].size != node.size:
                return "a value of another size than the node's"
    return None


def _row_wise(e: s.Expr) -> bool:
    """Whether an expression calls a row-wise op (which needs whole rows of its argument)."""
    return any(isinstance(x, s.Call) and OPS[x.fn].row_wise for x in s.walk(e))


def _reads(g: Group) -> list[s.Ref]:
    """What a group's products read of its loop, in the order of its weights `_WT<j>`: references (`refusal`
    keeps the loops where they are not)."""
    refs = [g.members[0].sources[j] for j in g.internal[g.members[0].name]]
    assert all(isinstance(r, s.Ref) for r in refs)
    return refs  # type: ignore[return-value]


@dataclass
class _Body:
    """A loop over the units j of one size, in a loop over the rows b: its lines, and the row pointers it needs
    (declared before it). A step function is one or more of these, one per run of nodes of one size."""

    size: int
    pointers: dict[str, str] = field(default_factory=dict)  # C name -> its address expression for row b
    lines: list[str] = field(default_factory=list)
    loaded: dict[str, str] = field(default_factory=dict)  # what a value is called once loaded or computed
    memo: dict[str, str] = field(default_factory=dict)  # a subexpression's C -> the temporary holding it
    temps: int = 0
    kept: bool = False  # a backward's: every node's value this step is kept, read rather than recomputed
    pre: list[str] = field(default_factory=list)  # what the loop over rows computes before calling it
    scalars: list[str] = field(default_factory=list)  # row statistics it takes (from `pre` or earlier)
    closed: bool = False  # later items start a loop of their own


@dataclass
class _Block:
    """What a step runs between matrix products: the groups whose products start it, then the items."""

    groups: list[Group]
    items: list[Group | Node]


class NativeLoop:
    """Writes the native forward and backward of one loop beside its `LoopFunction`."""

    def __init__(self, lf: LoopFunction, index: str) -> None:
        self.lf, self.em, self.plan, self.net = lf, lf.em, lf.plan, lf.net
        self.fname = f"_N{index}"
        self.source_name = f"_S{index}"
        self.workspace = f"_ws{index}"  # its forward's value buffers, kept between calls (`K.Workspace`)
        self.nodes = list(self.plan.stage.nodes)
        self.rings = self.plan.rings
        self.forward_loop = self.plan.stage.direction > 0
        self.blocks = self._blocks()
        # no matrix product in a step: the whole loop is one C call a direction (`_fwall`, `_bwall`)
        self.whole = not self.plan.groups
        # nodes whose steps are not outputs: a call autograd does not record keeps only their last k + 1 values
        # (a ring; `ROWS(i)` in the C, `_n_<node>` in Python: k + T rows while recording, k + 1 where not)
        self.ringed = [n for n in self.nodes if n not in self.plan.collect]
        self._stats: dict[tuple[str, int], tuple[str, str]] = {}  # a row's statistics in the function written
        self._pending: list[_Body] = []  # loops over units a row-wise op's derivative adds after the current one
        self._scratch = 0
        self.kept = {  # each expression node's expression -> the node (its value, kept at every step)
            node.expr: node.name
            for node in (self.net[n] for n in self.nodes)
            if node.expr is not None and not isinstance(node.expr, s.Ref)
        }
        # the pointer table: every buffer a step reads or writes, by name, in one order for all C functions
        self.table: list[str] = []
        self.uses = Counter(  # how often the step reads each outside value (`s_`/`q_` names)
            self._outside(r)
            for n in self.nodes
            if self.net[n].expr is not None
            for r in s.refs(self.net[n].expr)  # type: ignore[arg-type]
            if self.net[r.name].static or r.name not in self.plan.members
        )

    # ---- the shape of a step -------------------------------------------------------------------

    def _blocks(self) -> list[_Block]:
        """The step's order cut before each group whose product reads a value computed in the stretch since
        the last cut (its product must wait for that value)."""
        blocks: list[_Block] = [_Block([], [])]
        for item in self.plan.order:
            if isinstance(item, Group):
                pending = {m.name for i in blocks[-1].items for m in (i.members if isinstance(i, Group) else [i])}
                reads = {r.name for r in _reads(item) if r.delay == 0}
                if reads & pending:
                    blocks.append(_Block([], []))
                blocks[-1].groups.append(item)
            blocks[-1].items.append(item)
        return blocks

    def k(self, name: str) -> int:
        return self.rings.get(name, 0)

    def slot(self, name: str, delay: int) -> str:
        """The C index of the gradient slot of a node's value `delay` steps before step s."""
        n = self.k(name) + 1
        return "0" if n == 1 else f"(((s - {delay}) % {n} + {n}) % {n})"

    def at(self, buffer: str) -> str:
        if buffer not in self.table:
            self.table.append(buffer)
        return f"p[{self.table.index(buffer)}]"

    # ---- C -------------------------------------------------------------------------------------

    def source(self) -> str:
        """The C of every step function, for float and double."""
        if self.ringed:
            self.at("_R_")  # the table's first entry: each ringed node's rows (C longs)
        bodies = [(f"fw{i}", self._forward_bodies(b)) for i, b in enumerate(self.blocks)]
        bodies += [(f"bw{i}", self._backward_bodies(b)) for i, b in enumerate(self.blocks)]
        out = [f"/* loop {', '.join(map(var, self.nodes))}: native steps (rnndsl.backend.native_step) */"]
        out.append("#include <math.h>")
        if self.ringed:
            out.append("#define ROWS(i) (((const long *)p[0])[i])")
        for suffix, (ctype, maths) in _TYPES.items():
            out += ["", f"#ifdef RNNDSL_{suffix.upper()}"]  # each type's part built only where it is called
            for macro in _VECTOR_MATHS:
                out += ["#pragma omp declare simd notinbranch", f"extern {ctype} {maths[macro]}({ctype});"]
            out.append(f"#define real {ctype}")
            out += [f"#define {m} {fn}" for m, fn in maths.items()]
            out.append(f"#define FABS(x) __builtin_fabs{'f' if ctype == 'float' else ''}(x)")
            if any(body.pre for _, nests in bodies for body in nests):  # a row-wise op's statistics
                out += [line.replace("SUFFIX", suffix) for line in _ROW_HELPERS]
            for name, nests in bodies:
                # each loop over units is a function of its row pointers: `restrict` on parameters is what
                # lets the compiler vectorise it (on pointers computed in the loop over rows it does not); not
                # inlined, so every row runs the same code whatever number of rows its thread takes (inlined,
                # gcc gave one row other vector paths than several, tanh a few ulps apart; the same speed)
                fn = f"{self.fname}_{name}_{suffix}"
                for i, body in enumerate(nests):
                    params = ", ".join(
                        [*(f"real *restrict {c}" for c in body.pointers), *map("real {}".format, body.scalars)]
                    )
                    out.append(f"static __attribute__((noinline)) void {fn}_{i}({params}) {{")
                    out.append(f"    for (long j = 0; j < {body.size}; j++) {{")
                    out += [f"        {line}" for line in body.lines]
                    out += ["    }", "}"]
                # one row of one step; rows are independent (each reads and writes its own row of every buffer),
                # so the rows of a step, or of a whole run, are split among `threads` (OpenMP; where the compiler
                # has none, the pragma is ignored and the rows run in order)
                out.append(f"static void {fn}_row(long s, long T, long B, long b, real *const *p) {{")
                out.append("    long t = s;" if self.forward_loop else "    long t = T - 1 - s;")
                for i, body in enumerate(nests):
                    out += [f"    {line}" for line in body.pre]
                    out.append(f"    {fn}_{i}({', '.join([*body.pointers.values(), *body.scalars])});")
                out.append("}")
                out.append(f"// export {fn}")
                out.append(f"void {fn}(long s, long T, long B, long threads, real *const *p) {{")
                out += _over_rows(f"for (long b = 0; b < B; b++) {fn}_row(s, T, B, b, p);")
                out.append("}")
                if self.whole:  # no matrix product in the step: the whole run over time is one call too, a row's
                    # steps one after another
                    steps = "long s = 0; s < T; s++" if name.startswith("fw") else "long s = T - 1; s >= 0; s--"
                    whole = f"{self.fname}_{name[:2]}all_{suffix}"
                    out.append(f"// export {whole}")
                    out.append(f"void {whole}(long T, long B, long threads, real *const *p) {{")
                    out += _over_rows(f"for (long b = 0; b < B; b++) for ({steps}) {fn}_row(s, T, B, b, p);")
                    out.append("}")
            out += [f"#undef {m}" for m in ["real", *maths, "FABS"]]
            if any(body.pre for _, nests in bodies for body in nests):
                out += [f"#undef {m}" for m in ("ROW_STATS", "ROW_GRAD_STATS", "ROW_SOFTMAX", "ROW_SOFTMAX_GRAD")]
            out.append("#endif")
        return "\n".join(out) + "\n"

    def _step(self, name: str, delay: int) -> str:
        """The C index in a node's value buffer of its value `delay` steps before step s."""
        index = f"({self.k(name)} + s - {delay})"
        return f"({index} % ROWS({self.ringed.index(name)}))" if name in self.ringed else index

    def _value_ptr(self, body: _Body, name: str, delay: int) -> str:
        """A pointer to row b of a node's value `delay` steps before step s."""
        return self._row(body, "v", name, delay, self._step(name, delay))

    def _grad_ptr(self, body: _Body, name: str, delay: int) -> str:
        """A pointer to row b of the gradient slot of a node's value `delay` steps before step s."""
        return self._row(body, "g", name, delay, self.slot(name, delay))

    def _row(self, body: _Body, kind: str, name: str, delay: int, index: str) -> str:
        """Row b of a node's values (`kind` "v") or gradient slots ("g") at `index`, as a pointer `body` takes."""
        c = f"p_{kind}{delay}_{var(name)}"
        if c not in body.pointers:
            buffer = ("_V_" if kind == "v" else "_G_") + var(name)
            body.pointers[c] = f"{self.at(buffer)} + ({index} * B + b) * {self.net[name].size}"
        return c

    def _address(self, e: s.Ref) -> str:
        """The address of row b of a value read in the step (what a row-wise op takes its statistics of)."""
        if self.net[e.name].static or e.name not in self.plan.members:
            return self._outside_row(e, self._outside(e)[0].upper())
        index = self._step(e.name, abs(e.delay))
        return f"{self.at('_V_' + var(e.name))} + ({index} * B + b) * {self.net[e.name].size}"

    def _row_stats(self, body: _Body, e: s.Ref) -> tuple[str, str]:
        """The mean and 1/std of a value's row (layer_norm's, eps 1e-5), computed once per row by the loop over
        rows before the first loop over units that needs them, and passed to each that does."""
        key = (e.name, abs(e.delay))
        if key not in self._stats:
            mu, rs = f"mu{len(self._stats)}", f"rs{len(self._stats)}"
            self._stats[key] = (mu, rs)
            n = self.net[e.name].size
            body.pre.append(f"real {mu}, {rs}; ROW_STATS({self._address(e)}, {n}, &{mu}, &{rs});")
        for name in self._stats[key]:
            if name not in body.scalars:
                body.scalars.append(name)
        return self._stats[key]

    def _load(self, body: _Body, e: s.Ref) -> str:
        """A value read in the step, as a C local (loaded once per j)."""
        if self.net[e.name].static or e.name not in self.plan.members:
            key = self._outside(e)
            if key not in body.loaded:
                body.pointers[f"p_{key}"] = self._outside_row(e, key[0].upper())
                body.lines.append(f"real {key} = p_{key}[j];")
                body.loaded[key] = key
            return body.loaded[key]
        key = f"x{abs(e.delay)}_{var(e.name)}"
        if key not in body.loaded:
            ptr = self._value_ptr(body, e.name, abs(e.delay))
            body.lines.append(f"real {key} = {ptr}[j];")
            body.loaded[key] = key
        return body.loaded[key]

    def _outside(self, e: s.Ref) -> str:
        """The C name of a value from outside the loop: a static value (`s_`) or a sequence's step (`q_`)."""
        return f"s_{var(e.name)}" if self.net[e.name].static else f"q_{self.em.seq_ref(e)}"

    def _outside_row(self, e: s.Ref, kind: str) -> str:
        """The address of row b of an outside value (`kind` "S"/"Q") or its gradient ("gS"/"gQ") this step. A
        `param`'s value is one row for the whole batch (its gradient has a row per sequence)."""
        name, size = self._outside(e)[2:], self.net[e.name].size
        if kind == "S" and self.net[e.name].op == "param":
            return self.at(f"_S_{name}")
        row = "b" if self.net[e.name].static else "(b * T + t)"
        return f"{self.at(f'_{kind}_{name}')} + {row} * {size}"

    def _is_param(self, static: str) -> bool:
        """Whether a static value the step reads (by its generated name) is a learned `param` vector."""
        return any(var(n.name) == static and n.op == "param" for n in self.net.nodes)

    def _tmp(self, body: _Body, code: str) -> str:
        name = f"t{body.temps}"
        body.temps += 1
        body.lines.append(f"real {name} = {code};")
        return name

    def _val(self, body: _Body, e: s.Expr) -> str:
        """C of an expression's value this step (a local or a literal), computed once per body."""
        if isinstance(e, s.Num) or constant(e):
            value = e.value if isinstance(e, s.Num) else fold(e)
            if not math.isfinite(value):
                return "((real)NAN)" if math.isnan(value) else f"({'-' if value < 0 else ''}(real)INFINITY)"
            return f"((real){value!r})"
        if isinstance(e, s.Ref):
            return self._load(body, e)
        if body.kept and e in self.kept:  # in the backward, a node's whole expression is its kept value
            return self._load(body, s.Ref(self.kept[e], 0))
        if isinstance(e, s.Neg):
            code = f"-{self._val(body, e.operand)}"
        elif isinstance(e, s.BinOp):
            code = f"{self._val(body, e.left)} {e.op} {self._val(body, e.right)}"
        else:
            assert isinstance(e, s.Call)
            c = OPS[e.fn].c
            assert c is not None
            if OPS[e.fn].row_wise:  # layer_norm: its argument's row statistics, then elementwise
                (arg,) = e.args
                assert isinstance(arg, s.Ref)
                mean, rstd = self._row_stats(body, arg)
                code = c.format(self._val(body, arg), mean=mean, rstd=rstd)
            else:
                code = c.format(self._val(body, e.args[0]), t="t")
        if code not in body.memo:
            body.memo[code] = self._tmp(body, code)
        return body.memo[code]

    @staticmethod
    def _nest(nests: list[_Body], size: int, kept: bool = False, fresh: bool = False) -> _Body:
        """The loop over units of this size: the last one where it is of that size and open, else a new one
        (`fresh`: a new one, for an item whose row-wise op needs whole rows computed before it)."""
        if fresh or not nests or nests[-1].size != size or nests[-1].closed:
            nests.append(_Body(size, kept=kept))
        return nests[-1]

    def _forward_bodies(self, block: _Block) -> list[_Body]:
        nests: list[_Body] = []
        self._stats = {}
        for item in block.items:
            if isinstance(item, Group):
                width, lo = sum(m.size for m in item.members), 0
                for node in item.members:
                    body = self._nest(nests, node.size)
                    z = f"p_z_{var(node.name)}"
                    body.pointers[z] = f"{self.at('_Z_' + item.name)} + b * {width} + {lo}"
                    act = ACTIVATIONS[node.activation].c
                    assert act is not None
                    row: dict[str, str] = {}
                    if ACTIVATIONS[node.activation].c_row == "softmax":  # the row's max and sum of exponentials
                        i = self._counter()
                        row = {"max": f"mx{i}", "sum": f"se{i}"}
                        address = f"{self.at('_Z_' + item.name)} + b * {width} + {lo}"
                        body.pre.append(f"real mx{i}, se{i}; ROW_SOFTMAX({address}, {node.size}, &mx{i}, &se{i});")
                        body.scalars += [f"mx{i}", f"se{i}"]
                    self._store(body, node.name, self._tmp(body, act.format(f"{z}[j]", **row)))
                    lo += node.size
            else:
                assert item.expr is not None
                body = self._nest(nests, item.size, fresh=_row_wise(item.expr))
                self._store(body, item.name, self._val(body, item.expr))
        return nests

    def _store(self, body: _Body, name: str, value: str) -> None:
        ptr = self._value_ptr(body, name, 0)
        body.lines.append(f"{ptr}[j] = {value};")
        body.loaded[f"x0_{var(name)}"] = value

    # ---- C: the backward -------------------------------------------------------------------------

    def _take_grad(self, body: _Body, name: str) -> str:
        """A node's whole gradient this step (every reader is done): read from its slot, which is cleared for
        the step that reuses it, plus the output's gradient where the node's steps are collected."""
        ptr = self._grad_ptr(body, name, 0)
        code = f"{ptr}[j]"
        if name in self.plan.collect:
            go = f"p_go_{var(name)}"
            body.pointers[go] = f"{self.at('_GO_' + var(name))} + (b * T + t) * {self.net[name].size}"
            code += f" + {go}[j]"
        g = self._tmp(body, code)
        body.lines.append(f"{ptr}[j] = 0;")
        return g

    def _add(self, body: _Body, e: s.Ref, g: str) -> None:
        if self.net[e.name].static or e.name not in self.plan.members:
            key = self._outside(e)
            ptr = f"p_g{key}"
            body.pointers[ptr] = self._outside_row(e, "g" + key[0].upper())
            if key.startswith("q_") and self.uses[key] == 1:  # the step's one read of a sequence's value
                body.lines.append(f"{ptr}[j] = {g};")
                return
        else:
            ptr = self._grad_ptr(body, e.name, abs(e.delay))
        body.lines.append(f"{ptr}[j] += {g};")

    def _back(self, body: _Body, e: s.Expr, g: str) -> None:
        """Reverse mode over one expression, per element: add its contribution to what it reads."""
        if not s.refs(e):  # a number, or a function of the step only (`every(2)`)
            return
        if isinstance(e, s.Ref):
            self._add(body, e, g)
        elif isinstance(e, s.Neg):
            self._back(body, e.operand, self._tmp(body, f"-{g}"))
        elif isinstance(e, s.BinOp):
            left, right = e.left, e.right
            if e.op == "+":
                self._back(body, left, g)
                self._back(body, right, g)
            elif e.op == "-":
                self._back(body, left, g)
                if s.refs(right):
                    self._back(body, right, self._tmp(body, f"-{g}"))
            elif e.op == "*":
                if s.refs(left):
                    self._back(body, left, self._tmp(body, f"{g} * {self._val(body, right)}"))
                if s.refs(right):
                    self._back(body, right, self._tmp(body, f"{g} * {self._val(body, left)}"))
            else:
                if s.refs(left):
                    self._back(body, left, self._tmp(body, f"{g} / {self._val(body, right)}"))
                if s.refs(right):
                    code = f"-{g} * {self._val(body, e)} / {self._val(body, right)}"
                    self._back(body, right, self._tmp(body, code))
        elif isinstance(e, s.Call) and OPS[e.fn].row_wise:
            self._back_row(body, e, g)
        else:
            assert isinstance(e, s.Call)
            rule = OPS[e.fn].c_grad
            assert rule is not None
            (arg,) = e.args
            y = self._val(body, e) if "{y}" in rule else ""
            x = self._val(body, arg) if "{x}" in rule else ""
            self._back(body, arg, self._tmp(body, rule.format(g=g, y=y, x=x)))

    def _counter(self) -> int:
        """A fresh number for the names of a row's statistics and scratch rows."""
        self._scratch += 1
        return self._scratch - 1

    def _softmax_grad_sum(self, body: _Body, name: str) -> str:
        """The sum over a softmax layer's row of its gradient (slot and output's) times its value, computed by
        the loop over rows before `body`'s loop, which starts with the layer's reverse."""
        i, size = self._counter(), self.net[name].size
        grad = f"{self.at('_G_' + var(name))} + ({self.slot(name, 0)} * B + b) * {size}"
        out = f"{self.at('_GO_' + var(name))} + (b * T + t) * {size}" if name in self.plan.collect else "0"
        value = f"{self.at('_V_' + var(name))} + ({self._step(name, 0)} * B + b) * {size}"
        body.pre.append(f"real sg{i} = ROW_SOFTMAX_GRAD({grad}, {out}, {value}, {size});")
        body.scalars.append(f"sg{i}")
        return f"sg{i}"

    def _back_row(self, body: _Body, e: s.Call, g: str) -> None:
        """A row-wise op's reverse (layer_norm): its output's gradient kept in a row `scr<i>`, then, in a loop
        over units of its own after this one, the derivative from the row's means of it (`c_grad`'s `{mean_g}`
        and `{mean_gy}`) into what it reads."""
        (arg,) = e.args
        rule = OPS[e.fn].c_grad
        assert isinstance(arg, s.Ref) and rule is not None
        n, i = self.net[arg.name].size, self._counter()
        scratch, mg, my = f"scr{i}", f"mg{i}", f"my{i}"
        body.pre.append(f"real {scratch}[{n}];")
        body.pointers[scratch] = scratch
        body.lines.append(f"{scratch}[j] = {g};")
        self._row_stats(body, arg)  # declared before this loop's call: its other derivatives may read them too
        then = _Body(n, kept=True, closed=True)
        then.pointers[scratch] = scratch
        mean, rstd = self._row_stats(then, arg)
        then.pre.append(
            f"real {mg}, {my}; ROW_GRAD_STATS({scratch}, {self._address(arg)}, {n}, {mean}, {rstd}, &{mg}, &{my});"
        )
        then.scalars += [mg, my]
        y = self._val(then, e)
        code = rule.format(g=f"{scratch}[j]", y=y, rstd=rstd, mean_g=mg, mean_gy=my)
        self._back(then, arg, self._tmp(then, code))
        self._pending.append(then)

    def _backward_bodies(self, block: _Block) -> list[_Body]:
        nests: list[_Body] = []
        self._stats = {}
        for item in reversed(block.items):
            if isinstance(item, Group):
                width, lo = sum(m.size for m in item.members), sum(m.size for m in item.members)
                for node in reversed(item.members):
                    lo -= node.size
                    softmax = ACTIVATIONS[node.activation].c_row == "softmax"
                    # softmax's derivative reads its gradient's whole row: every reader done before its loop
                    body = self._nest(nests, node.size, kept=True, fresh=softmax)
                    dz = f"p_dz_{var(node.name)}"
                    body.pointers[dz] = f"{self.at('_dZ_' + item.name)} + (s * B + b) * {width} + {lo}"
                    rule = ACTIVATIONS[node.activation].c_grad
                    assert rule is not None
                    row = {"sum_gy": self._softmax_grad_sum(body, node.name)} if softmax else {}
                    g = self._take_grad(body, node.name)
                    y = self._load(body, s.Ref(node.name, 0)) if "{y}" in rule else ""
                    body.lines.append(f"{dz}[j] = {rule.format(g=g, y=y, **row)};")
            else:
                assert item.expr is not None
                body = self._nest(nests, item.size, kept=True)
                self._back(body, item.expr, self._take_grad(body, item.name))
                if self._pending:  # a row-wise op's derivative: after this loop, before what it reads
                    body.closed = True
                    nests += self._pending
                    self._pending = []
        return nests

    # ---- Python: the two functions -----------------------------------------------------------------

    def functions(self, inputs: list[str], outputs: list[str]) -> tuple[str, str]:
        """The C source's assignment with the native forward, and the native backward (Python source)."""
        c = self.source()  # fills the pointer table
        forward = f'{self.source_name} = r"""\n{c}"""\n{self.workspace} = K.Workspace()\n\n\n' + self._forward(
            inputs, outputs
        )
        return forward, self._backward(inputs, outputs)

    def _sources(self) -> set[str]:
        """The nodes some group's product reads (their steps are taken one by one, as views)."""
        return {r.name for g in self.plan.groups for r in _reads(g)}

    def _kept(self) -> list[str]:
        """What the native forward keeps for its backward besides the weights and constant addends."""
        lf = self.lf
        return [f"_V_{var(n)}" for n in self.nodes] + [f"_Q_{q}" for q in lf.seqs] + [f"_S_{st}" for st in lf.statics]

    def _threads(self) -> str:
        """Python: how many threads share each C call's rows (`_nt`), from the loop's units a row and the batch."""
        return f"_nt = K.step_threads(B * {sum(self.net[n].size for n in self.nodes)})"

    def _row_of(self, name: str, index: str) -> str:
        """Python: the row of a node's value buffer at `index` (k + step), wrapped where it may be a ring."""
        return f"({index}) % _n_{var(name)}" if name in self.ringed else index

    def _forward(self, inputs: list[str], outputs: list[str]) -> str:
        lf = self.lf
        like = inputs[0]
        lines: list[str] = []
        if not self.whole:
            lines.append(f"_fw = K.step_functions({self.source_name}, {like}, False)")
        for n in self.nodes:
            v, k = var(n), self.k(n)
            rows = f"{k} + T"
            if n in self.ringed:  # its last k + 1 values only, where no backward will read them
                lines.append(f"_n_{v} = {k} + (T if ctx.records else 1)")
                rows = f"_n_{v}"
            lines.append(f"_V_{v} = {self.workspace}.empty({v!r}, ({rows}, B, {self.net[n].size}), {like})")
            for i in range(1, k + 1):
                lines.append(f"_V_{v}[{k - i}].copy_(_r{i}_{v})")
            if n in self._sources():
                lines.append(f"_Vs_{v} = _V_{v}.unbind(0)")
        if self.ringed:
            lines.append(f"_R_ = torch.tensor([{', '.join(f'_n_{var(n)}' for n in self.ringed)}], dtype=torch.long)")
        for g in self.plan.groups:
            lines.append(f"_Z_{g.name} = {like}.new_empty((B, {sum(m.size for m in g.members)}))")
            if g.name not in self.em.constant_addend:
                lines.append(f"_pre_{g.name} = _P_{g.name}.unbind(1)")
        for st in lf.statics:  # a param's one row (`_outside_row`): a copy where a backward keeps it, as the
            # joined weights are, so that a write into the param before backward changes nothing it computes
            param = f"_S_{st} = {st}[0].clone() if ctx.records else {st}[0].contiguous()"
            lines.append(param if self._is_param(st) else f"_S_{st} = {st}.expand(B, -1).contiguous()")
        for q in lf.seqs:
            lines.append(f"_Q_{q} = {q}.contiguous()")
        have = ("_R_", "_V_", "_Z_", "_S_", "_Q_")  # the forward's buffers; the backward's are not made yet
        lines.append(f"_tab, _at = K.pointers({', '.join(b if b.startswith(have) else 'None' for b in self.table)})")
        lines.append(self._threads())
        if self.whole:
            lines.append(f"K.run_whole({self.source_name}, {like}, False, T, B, _nt, _at)")
        else:
            lines.append("for _s in range(T):")
            lines.append("    t = _s" if self.forward_loop else "    t = T - 1 - _s")
        for i, block in enumerate([] if self.whole else self.blocks):
            for g in block.groups:
                pre = f"_pre_{g.name}" if g.name in self.em.constant_addend else f"_pre_{g.name}[t]"
                for j, src in enumerate(_reads(g)):
                    x = f"_Vs_{var(src.name)}[{self._row_of(src.name, f'{self.k(src.name) - abs(src.delay)} + _s')}]"
                    if j == 0:
                        lines.append(f"    torch.addmm({pre}, {x}, _WT0_{g.name}, out=_Z_{g.name})")
                    else:
                        lines.append(f"    _Z_{g.name}.addmm_({x}, _WT{j}_{g.name})")
            lines.append(f"    _fw[{i}](_s, T, B, _nt, _at)")
        kept = lf._weights() + [f"_pre_{g.name}" for g in self.plan.groups if g.name in self.em.constant_addend]
        kept += self._kept()
        lines.append(f"ctx.save_for_backward({', '.join(kept)})")
        lines.append("ctx.meta = (T, B, train)")
        results = {}  # each output's code: a node's steps in time order, or one of its last values (a state)
        for n in self.nodes:
            v, k = var(n), self.k(n)
            # (B, T, H), a tensor of its own: at B = 1 the transposed steps are already contiguous, and
            # `.contiguous()` would hand out a view (of the kept buffer, or of the flip), on which an in-place op
            # fails in autograd
            seq = f"_V_{v}[{k}:]" if self.forward_loop else f"_V_{v}[{k}:].flip(0)"
            results[v] = f"{seq}.transpose(0, 1).clone(memory_format=torch.contiguous_format)"
            results.update(
                {f"_r{i}_{v}": f"_V_{v}[{self._row_of(n, f'{k} + T - {i}')}].clone()" for i in range(1, k + 1)}
            )
        outs = [results[o] for o in outputs]
        lines.append(f"return {', '.join(outs)},")
        head = f"def {self.fname}_forward(ctx, T, B, train, {', '.join(inputs)}):"
        return "\n".join([head, *("    " + line for line in lines)]) + "\n"

    def _backward(self, inputs: list[str], outputs: list[str]) -> str:
        lf = self.lf
        grads = [f"_go{i}" for i in range(len(outputs))]
        by_output = dict(zip(outputs, grads, strict=True))
        consts = [f"_pre_{g.name}" for g in self.plan.groups if g.name in self.em.constant_addend]
        kept = lf._weights() + consts + self._kept()
        lines = ["T, B, train = ctx.meta", f"{', '.join(kept)}, = ctx.saved_tensors"]
        like = f"_V_{var(self.nodes[0])}"
        if not self.whole:
            lines.append(f"_bw = K.step_functions({self.source_name}, {like}, True)")
        for n in self.nodes:
            v, k = var(n), self.k(n)
            lines.append(f"_G_{v} = {like}.new_zeros(({k + 1}, B, {self.net[n].size}))")
            for i in range(1, k + 1):  # the last values' gradients, where they are outputs (a state)
                if f"_r{i}_{v}" in by_output:
                    lines.append(f"_G_{v}[(T - {i}) % {k + 1}].copy_({by_output[f'_r{i}_{v}']})")
            if n in self.plan.collect:  # (B, T, H), read at each step's time
                lines.append(f"_GO_{v} = {by_output[v]}.contiguous()")
            if n in self._sources():
                lines.append(f"_Gs_{v} = _G_{v}.unbind(0)")
        for g in self.plan.groups:
            width = sum(m.size for m in g.members)
            lines.append(f"_dZ_{g.name} = {like}.new_empty((T, B, {width}))")
            lines.append(f"_dZs_{g.name} = _dZ_{g.name}.unbind(0)")
            for j in range(g.width):
                lines.append(f"_WTt{j}_{g.name} = _WT{j}_{g.name}.t()")
        for st in lf.statics:
            lines.append(f"_gS_{st} = {like}.new_zeros((B, _S_{st}.shape[-1]))")
        for q in lf.seqs:  # read once a step: each of its values gets one gradient, written, not added
            lines.append(f"_gQ_{q} = torch.{'empty' if self.uses[f'q_{q}'] == 1 else 'zeros'}_like(_Q_{q})")
        if self.ringed:  # every step kept (the forward recorded)
            rows = ", ".join(f"{self.k(n)} + T" for n in self.ringed)
            lines.append(f"_R_ = torch.tensor([{rows}], dtype=torch.long)")
        lines.append(f"_tab, _at = K.pointers({', '.join('None' if b.startswith('_Z_') else b for b in self.table)})")
        lines.append(self._threads())
        if self.whole:
            lines.append(f"K.run_whole({self.source_name}, {like}, True, T, B, _nt, _at)")
        else:
            lines.append("for _s in range(T - 1, -1, -1):")
        for i, block in reversed(list(enumerate([] if self.whole else self.blocks))):
            lines.append(f"    _bw[{i}](_s, T, B, _nt, _at)")
            for g in block.groups:
                for j, src in enumerate(_reads(g)):
                    slots = self.k(src.name) + 1
                    slot = "0" if slots == 1 else f"(_s - {abs(src.delay)}) % {slots}"
                    lines.append(f"    _Gs_{var(src.name)}[{slot}].addmm_(_dZs_{g.name}[_s], _WTt{j}_{g.name})")
        at = {name: i + LEADING for i, name in enumerate(inputs)}  # in ctx.needs_input_grad
        out: list[str] = []
        for g in self.plan.groups:
            if g.name in self.em.constant_addend:
                name, value = f"_pre_{g.name}", f"K.sum_to(_dZ_{g.name}.sum(0), _pre_{g.name})"
            else:
                name = f"_P_{g.name}"
                order = "" if self.forward_loop else ".flip(0)"  # dZ is in loop order
                value = f"_dZ_{g.name}{order}.transpose(0, 1)"
            lines.append(f"_d{name} = {value} if ctx.needs_input_grad[{at[name]}] else None")
            out.append(f"_d{name}")
        for g in self.plan.groups:
            for j, src in enumerate(_reads(g)):
                lo = self.k(src.name) - abs(src.delay)
                xs = f"_V_{var(src.name)}[{lo}:{lo} + T].flatten(0, 1)"
                name = f"_WT{j}_{g.name}"
                lines.append(
                    f"_d{name} = torch.mm({xs}.t(), _dZ_{g.name}.flatten(0, 1)) "
                    f"if ctx.needs_input_grad[{at[name]}] else None"
                )
                out.append(f"_d{name}")
        for n, k in self.rings.items():
            out += [f"_G_{var(n)}[(-{i}) % {k + 1}].clone()" for i in range(1, k + 1)]
        out += [f"_gQ_{q}" for q in lf.seqs] + ["None"] * len(lf.clock) + [f"_gS_{st}" for st in lf.statics]
        lines.append(f"return {', '.join(out)},")
        head = f"def {self.fname}_backward(ctx, {', '.join(grads)}):"
        return "\n".join([head, *("    " + line for line in lines)]) + "\n"
