"""Check: takes a parsed `Program`, gives checked `ir.Network`s, or a `SpecError` listing every problem.

Each check reports with its own message, span and fix: unknown names (with a did-you-mean), duplicates,
sizes (both sides and where each came from), delays, algebraic loops, loops no schedule can run,
outputs and block inputs that do not exist, token inputs used as vectors, self-fed inputs that do not
read the past; warnings for unused nodes and for `init` on a node nobody reads with a delay.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import networkx as nx

from rnndsl.frontend import sizes
from rnndsl.frontend.inline import Alias, Exports, inline
from rnndsl.frontend.names import RESERVED, check_name, did_you_mean
from rnndsl.frontend.sizes import MAX_SIZE
from rnndsl.graphs.folded import components
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter, Source, Span, SpecError
from rnndsl.lang.ir import InitPolicy, Network, Node, OutputSpec

if TYPE_CHECKING:
    from rnndsl.frontend.compose import Model
from rnndsl.lang.ops import ACTIVATIONS, FEED_FUNCTIONS, OPS, POSITIVE, STEP, TOKEN_FUNCTIONS, reads_step

__all__ = [
    "check",
    "check_file",
    "check_program",
    "check_name",
    "project",
    "resolve",
    "did_you_mean",
    "MAX_DELAY",
    "MAX_SIZE",
    "MAX_PARAMETERS",
    "MAX_ERRORS",
]

MAX_DELAY = 1000
MAX_PARAMETERS = 1 << 30
MAX_ERRORS = 100  # shown per file; the rest are counted in one last diagnostic
MAX_HINTS = 25  # did-you-mean suggestions per network
PARAM_INITS = ("zeros", "ones", "normal", "uniform")  # or a number
LAYER_OPTIONS = s.LAYER_OPTIONS
# CompiledNetwork.forward's own keywords
CALL_KEYWORDS = {"lengths", "memory_lengths", "state", "steps", "batch", "check_finite", "feed_back", "sampler", "self"}
SCALAR = 0  # the size of a plain number: it broadcasts
T = TypeVar("T", "Network", "Network | Model")


def check_program(program: s.Program, source: Source) -> list[Network]:
    """Check every network of a file (and its models); raise one SpecError holding all errors found."""
    return check_file(program, source)[0]


def check_file(program: s.Program, source: Source) -> tuple[list[Network], list[Model]]:
    """Check every network and model of a file; raise one SpecError holding all errors found.

    A generic network (`network Cell(H)`) is checked where it is used, with the sizes each use gives; here
    only its declaration is (its sizes and its names), and it is not among the networks returned."""
    from rnndsl.frontend.compose import check_models

    report = Reporter(source)
    seen: dict[str, s.NetworkDecl] = {}
    for net in program.networks:
        check_name(net.name, net.name_span, report)
        if net.name in seen:
            report.error(
                f"network `{net.name}` is defined twice (first at {seen[net.name].span})",
                net.span,
                "rename one of them",
            )
        seen[net.name] = net
    if not program.networks:
        report.error("no network in this file", Span(1, 1), "write `network NAME { ... }`")
    sizes.never_given(program, report)
    for net in seen.values():
        sizes.check_declaration(net, seen, report)
        if net.generic:
            _Checker(program, net, report).check_own_names()
    checked = [
        n for n in (_Checker(program, net, report).run() for net in seen.values() if not net.generic) if n is not None
    ]
    models = check_models(program, checked, report)
    _dedupe(report)
    _truncate(report)
    report.raise_if_errors()
    return checked, models


def resolve(program: s.Program, source: Source, name: str | None = None) -> Network | Model:
    """The network or model called `name`; without a name, the file's one model, else its one network."""
    nets, models = check_file(program, source)
    found: list[Network | Model] = [*nets, *models]
    if name is None and len(models) == 1:
        return models[0]
    _refuse_generic(program, source, name)
    return _pick(found, name, source, "network or model", "models" if models else "networks")


def check(program: s.Program, source: Source, network: str | None = None) -> Network:
    """Check a file and pick one network by name (needed when the file holds several)."""
    checked = check_program(program, source)
    _refuse_generic(program, source, network)
    return _pick(checked, network, source, "network", "networks")


def _refuse_generic(program: s.Program, source: Source, name: str | None) -> None:
    """A generic network asked for by name has no sizes yet: a SpecError at its name says how to give them."""
    decl = next((n for n in program.networks if n.name == name and n.generic), None)
    if decl is not None:
        raise SpecError([sizes.asked_directly(decl, source)])


def _pick(found: list[T], name: str | None, source: Source, what: str, several: str) -> T:
    """The one item of `found` called `name` (or the only one), else a ValueError listing them."""
    if name is None:
        if len(found) == 1:
            return found[0]
        names = ", ".join(n.name for n in found)
        raise ValueError(f"{source.name} holds several {several} ({names}); pick one with network=NAME")
    for item in found:
        if item.name == name:
            return item
    hint = did_you_mean(name, [n.name for n in found])
    raise ValueError(
        f"{source.name} has no {what} `{name}`; it has: "
        f"{', '.join(n.name for n in found)}" + (f" ({hint})" if hint else "")
    )


def _truncate(report: Reporter) -> None:
    """Keep the first MAX_ERRORS errors and say how many more there are, at the first one left out."""
    if len(report.errors) <= MAX_ERRORS:
        return
    ordered = sorted(report.errors, key=lambda d: (d.span.line, d.span.column))
    rest = ordered[MAX_ERRORS:]
    report.errors = ordered[:MAX_ERRORS]
    report.error(f"{len(rest):,} more errors not shown", rest[0].span, "fix the ones above first")


def _dedupe(report: Reporter) -> None:
    """A block used twice repeats the errors inside it; report each position once."""
    for attr in ("errors", "warnings"):
        seen, kept = set(), []
        for d in getattr(report, attr):
            key = (d.span.line, d.span.column, d.message)
            if key not in seen:
                seen.add(key)
                kept.append(d)
        setattr(report, attr, kept)


@dataclass
class _Def:
    stmt: s.Input | s.Param | s.Layer | s.Assign | Alias
    size: int | None


class _Checker:
    """Checks one network; every method reports and carries on, so one run finds every error."""

    def __init__(self, program: s.Program, net: s.NetworkDecl, report: Reporter) -> None:
        self.program, self.net, self.report = program, net, report
        self.defs: dict[str, _Def] = {}
        self.inits: dict[str, s.Init] = {}
        self.outputs: list[s.Output] = []
        self.exports: dict[str, Exports] = {}
        self.bad_names: set[str] = set()  # dotted or reserved, reported once where defined
        self._static: set[str] | None = None  # computed once definitions are complete
        self._known: list[str] | None = None  # names visible in this network, for suggestions
        self.errors_before = len(report.errors)
        self.warnings_before = len(report.warnings)  # the report is the file's: keep only this network's

    def run(self) -> Network | None:
        self.check_own_names()
        stmts = inline(self.program, self.net, self.report)
        self._collect(stmts)
        self._check_refs()
        self._infer_sizes()
        self._check_layers()
        self._check_params()
        self._check_sizes()
        self._check_inits()
        self._check_outputs()
        self._check_loops()
        self._check_feeds()
        memories = self._check_memories()
        if len(self.report.errors) > self.errors_before or self._reported_elsewhere():
            return None
        network = self._build(memories)
        self._warn_unused(network)
        self._check_limits(network)
        own = self.report.warnings[self.warnings_before :]
        return dataclasses.replace(network, warnings=tuple(own))  # a new IR, not a mutated one

    def _reported_elsewhere(self) -> bool:
        """Whether the network is broken by an error reported before this checker began: a size that names no
        size of its network (left as written), or a `use` whose sizes could not be given (reported with the
        declarations, by `sizes.check_declaration`). It is not built then, as after an error of its own."""
        unbound = any(d.stmt.size is not None and not isinstance(d.stmt.size, float) for d in self.defs.values())
        return unbound or any(e.failed for e in self.exports.values())

    # ---- definitions -------------------------------------------------------------------------

    def check_own_names(self) -> None:
        """The names the network's own statements define (a generic network's are checked only here)."""
        for st in self.net.body:
            name = getattr(st, "name", "")
            if isinstance(st, (s.Output, s.Init)):
                continue
            if "." in name or name in RESERVED:
                self.bad_names.add(name)
            if "." in name:
                self.report.error(
                    f"`{name}`: a defined name cannot contain '.'",
                    st.span,
                    "dots only read a block's outputs, as in `enc.h`",
                )
            elif name in RESERVED:
                self.report.error(
                    f"`{name}` is a reserved word and cannot name a node",
                    st.span,
                    f"call it `{name}_` or something else",
                )
            elif check_name(name, st.span, self.report) and isinstance(st, s.Input) and name in CALL_KEYWORDS:
                self.report.error(
                    f"input `{name}` would clash with the `{name}=` argument of a call",
                    st.span,
                    f"call it `{name}_` or something else",
                )

    def _collect(self, stmts: list[s.Stmt | Alias | Exports]) -> None:
        for st in stmts:
            if isinstance(st, Exports):
                self.exports[st.instance] = st
            elif isinstance(st, s.Init):
                if st.name in self.inits:
                    self.report.error(
                        f"`init {st.name}` is given twice (first at {self.inits[st.name].span})", st.span, "keep one"
                    )
                self.inits[st.name] = st
            elif isinstance(st, s.Output):
                self.outputs.append(st)
            elif isinstance(st, (s.Input, s.Param, s.Layer, s.Assign, Alias)):
                self._define(st)

    def _define(self, st: s.Input | s.Param | s.Layer | s.Assign | Alias) -> None:
        if st.name in self.defs:
            first = self.defs[st.name].stmt.span
            self.report.error(
                f"`{st.name}` is defined twice (first at {first})",
                st.span,
                "rename one of them, or combine them into one definition",
            )
            return
        size = None if isinstance(st, s.Assign) and st.size is None else self._size_literal(st)
        self.defs[st.name] = _Def(st, size)

    def _size_literal(self, st: s.Input | s.Param | s.Layer | s.Assign | Alias) -> int | None:
        raw = st.size
        what = "vocabulary size" if getattr(st, "kind", "") == "tokens" else "size"
        if raw is not None and not isinstance(raw, float):
            return None  # a size expression left unbound: reported by `sizes`
        if raw is None or raw != int(raw) or raw < 1:
            self.report.error(f"{what} of `{st.name}` must be a positive whole number, not {raw:g}", st.span)
            return None
        if raw > MAX_SIZE:
            self.report.error(
                f"{what} of `{st.name}` is {int(raw):,}, above the limit of {MAX_SIZE:,}",
                st.span,
                "a layer this wide would not fit in memory",
            )
            return None
        return int(raw)

    # ---- references --------------------------------------------------------------------------

    def _exprs(self) -> Iterable[tuple[str, s.Expr]]:
        for name, d in self.defs.items():
            st = d.stmt
            yield from ((name, e) for e in ((st.target,) if isinstance(st, Alias) else s.exprs(st)))

    def _visible(self, name: str) -> bool:
        if name in self.defs and "." not in name:
            return True
        return any(name in e.names for e in self.exports.values())

    def _check_refs(self) -> None:
        own = {id(r) for st in self.net.body for r in _stmt_refs(st)}
        for owner, expr in self._exprs():
            for ref in s.refs(expr):
                self._check_ref(ref, id(ref) in own)
            st = self.defs[owner].stmt
            if isinstance(st, s.Input) and isinstance(expr, s.Call) and expr.fn in FEED_FUNCTIONS:
                for arg in expr.args:  # `sample(...)` is the whole value of a self-fed input: checked there
                    self._check_calls(arg)
            else:
                self._check_calls(expr)

    def _suggest(self, name: str, known: Iterable[str] | None = None) -> str:
        """`did you mean ...?` among the visible names (or `known`); nothing once there are many errors,
        where comparing every unknown name with every known one would take minutes."""
        if len(self.report.errors) - self.errors_before >= MAX_HINTS:
            return ""
        if known is None:
            if self._known is None:
                self._known = [n for n in self.defs if self._visible(n)]
            known = self._known
        return did_you_mean(name, known)

    def _in_failed_block(self, name: str) -> bool:
        """`b.h` where `use b = ...` failed (already reported)."""
        return any(e.failed and name.startswith(e.instance + ".") for e in self.exports.values())

    def _check_ref(self, ref: s.Ref, own: bool) -> None:
        if ref.name not in self.defs and self._in_failed_block(ref.name):
            return
        if ref.name not in self.defs:
            self.report.error(
                f"unknown name `{ref.name}`",
                ref.span,
                self._suggest(ref.name) or "define it with input, layer or `NAME = ...`",
            )
            return
        if own and not self._visible(ref.name):
            inst = ref.name.split(".")[0]
            exp = self.exports.get(inst)
            outs = ", ".join(sorted(n.split(".", 1)[1] for n in exp.names)) if exp else "none"
            self.report.error(
                f"`{ref.name}` is inside block `{inst}`, not one of its outputs",
                ref.span,
                f"the outputs of `{inst}` are: {outs}",
            )
        self._check_delay(ref)

    def _check_delay(self, ref: s.Ref) -> None:
        k = ref.offset
        if ref.explicit and k == 0:
            written = f"{ref.name}[t{'-' if math.copysign(1, k) < 0 else '+'}0]"  # `x[t-0]` parses as -0.0
            self.report.error(
                f"`{written}` has a delay of 0",
                ref.span,
                f"write `{ref.name}` for the same step, or `{ref.name}[t-1]` for the previous one",
            )
        elif k != int(k):
            self.report.error(
                f"`{ref}`: a delay must be a whole number of steps",
                ref.span,
                f"write `{ref.name}[t-{max(1, round(abs(k)))}]`",
            )
        elif abs(k) > MAX_DELAY:
            self.report.error(
                f"`{ref.name}` is read {abs(int(k))} steps away, above the limit of {MAX_DELAY}",
                ref.span,
                "a delay this long keeps that many copies of the value in memory",
            )

    def _check_calls(self, expr: s.Expr) -> None:
        if isinstance(expr, s.Call):
            if expr.fn in TOKEN_FUNCTIONS:
                if len(expr.args) != 1 or not isinstance(expr.args[0], s.Ref):
                    self.report.error(f"`{expr.fn}` takes one token input by name", expr.span, TOKEN_FUNCTIONS[expr.fn])
            elif expr.fn in FEED_FUNCTIONS:
                self.report.error(
                    f"`{expr.fn}` gives a token id, so it can only be the whole value of a self-fed token input",
                    expr.span,
                    FEED_FUNCTIONS[expr.fn],
                )
            elif expr.fn not in OPS:
                self.report.error(
                    f"unknown function `{expr.fn}`",
                    expr.span,
                    did_you_mean(expr.fn, [*OPS, *TOKEN_FUNCTIONS])
                    or "see docs/language.md for the functions the language knows",
                )
            elif OPS[expr.fn].literal and not expr.args:
                end = Span(expr.span.end_line, max(1, expr.span.end_column - 1))  # the `)`, where it goes
                self.report.error(
                    f"`{expr.fn}` needs its {OPS[expr.fn].literal}, a whole number of steps",
                    end,
                    f"write `{expr.fn}(2)` for every other step",
                )
            elif OPS[expr.fn].arity > 0 and len(expr.args) != OPS[expr.fn].arity:
                n = OPS[expr.fn].arity
                self.report.error(
                    f"`{expr.fn}` takes {n} argument{'s' if n > 1 else ''}, not {len(expr.args)}", expr.span
                )
            elif not expr.args:
                self.report.error(f"`{expr.fn}` needs at least one argument", expr.span)
            elif OPS[expr.fn].literal:
                self._check_literal(expr)
        for child in s.children(expr):
            self._check_calls(child)

    def _check_literal(self, call: s.Call) -> None:
        """The argument of `every(k)` is a whole number of steps >= 1 written in the spec: `k` is fixed
        when the network is built (it sets which steps tick), never a value computed at run time."""
        what, (arg,) = OPS[call.fn].literal, call.args
        value = arg.value if isinstance(arg, s.Num) else None
        if isinstance(arg, s.Neg) and isinstance(arg.operand, s.Num):
            value = -arg.operand.value
        if value is None:
            self.report.error(
                f"the {what} of `{call.fn}` must be a whole number written in the spec, not `{s.show(arg)}`",
                arg.span,
                f"write the number of steps, as in `{call.fn}(2)`: the period is fixed when the network is built",
            )
        elif value != int(value) or value < 1:
            self.report.error(
                f"the {what} of `{call.fn}` must be a whole number of steps, at least 1, not {value:g}",
                arg.span,
                f"write `{call.fn}({max(1, round(abs(value)))})`",
            )

    # ---- sizes -------------------------------------------------------------------------------

    def _infer_sizes(self) -> None:
        pending = [n for n, d in self.defs.items() if d.size is None and isinstance(d.stmt, s.Assign)]
        ordered = self._dependency_order(pending)
        for _ in range(len(pending) + 1):
            changed = False
            for name in ordered:
                st = self.defs[name].stmt
                if self.defs[name].size is None and isinstance(st, s.Assign):
                    size = self._size(st.expr, quiet=True)
                    if size is not None and size != SCALAR:
                        self.defs[name].size, changed = size, True
            if not changed:
                break
        broken = self._broken(pending)
        for name in pending:
            d = self.defs[name]
            if d.size is None and name not in broken and not self._is_number(d.stmt):
                self.report.error(
                    f"cannot tell the size of `{name}`", d.stmt.span, f"give it one: `{name}: SIZE = ...`"
                )

    def _dependency_order(self, pending: list[str]) -> list[str]:
        """Unsized nodes, each after the unsized nodes it reads (a loop's members in definition order), so
        one pass infers a chain of any length; in definition order it took a pass per link."""
        position = {n: i for i, n in enumerate(pending)}
        deps = nx.DiGraph()
        deps.add_nodes_from(pending)
        for name in pending:
            st = self.defs[name].stmt
            if isinstance(st, s.Assign):
                deps.add_edges_from((r.name, name) for r in s.refs(st.expr) if r.name in position)
        cond = nx.condensation(deps)
        members = {c: sorted(cond.nodes[c]["members"], key=position.__getitem__) for c in cond}
        first = {c: position[m[0]] for c, m in members.items()}
        return [n for c in nx.lexicographical_topological_sort(cond, key=first.__getitem__) for n in members[c]]

    def _is_number(self, st: s.Input | s.Param | s.Layer | s.Assign | Alias) -> bool:
        """`c = 1`: reported once, as a plain number, by `_check_sizes`."""
        return isinstance(st, s.Assign) and self._size(st.expr, quiet=True) == SCALAR

    def _broken(self, pending: list[str]) -> set[str]:
        """Unsized nodes reading an unknown name or function (reported), directly or through each other:
        their size cannot be known, and saying so again is noise."""
        broken: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name in pending:
                st = self.defs[name].stmt
                if (
                    name not in broken
                    and isinstance(st, s.Assign)
                    and (
                        _has_unknown_call(st.expr)
                        or any(r.name not in self.defs or r.name in broken for r in s.refs(st.expr))
                    )
                ):
                    broken.add(name)
                    changed = True
        return broken

    def _size(self, expr: s.Expr, quiet: bool = False) -> int | None:
        """The size of an expression: SCALAR for numbers, None where unknown (or already reported)."""
        if isinstance(expr, s.Num):
            return SCALAR
        if isinstance(expr, s.Ref):
            d = self.defs.get(expr.name)
            if d is None:
                return None
            if not quiet and isinstance(d.stmt, (s.Input, Alias)) and d.stmt.kind == "tokens":
                self.report.error(
                    f"`{expr.name}` is a token input, used here as a vector",
                    expr.span,
                    f"make it a layer source (an embedding), or write `one_hot({expr.name})`",
                )
                return None
            return d.size
        if isinstance(expr, s.Neg):
            return self._size(expr.operand, quiet)
        if isinstance(expr, s.BinOp):
            return self._same(expr, [expr.left, expr.right], quiet)
        return self._call_size(expr, quiet)

    def _call_size(self, call: s.Call, quiet: bool) -> int | None:
        if call.fn == "one_hot":
            arg = call.args[0] if call.args else None
            d = self.defs.get(arg.name) if isinstance(arg, s.Ref) else None
            if d is not None and getattr(d.stmt, "kind", "") != "tokens" and not quiet:
                self.report.error(f"`one_hot` needs a token input; `{arg}` is a vector", call.span)
            return d.size if d is not None else None
        op = OPS.get(call.fn)
        if op is None:
            return None
        if op.size == "concat":
            sizes = [self._size(a, quiet) for a in call.args]
            if SCALAR in sizes and not quiet:
                self.report.error("`concat` joins vectors; a plain number has no size", call.span)
            return None if any(z is None for z in sizes) else sum(z for z in sizes if z)
        if op.size == "attend":
            sizes = [self._size(a, quiet) for a in call.args]
            return sizes[1] if len(sizes) == 2 else None
        if op.size == "one":
            return 1
        if op.size == "reduce":
            if any(isinstance(a, s.Num) for a in call.args) and not quiet:
                self.report.error(f"`{call.fn}` reduces vectors; a plain number has no entries to reduce", call.span)
            return None if self._same(call, list(call.args), quiet) is None else 1
        return self._same(call, list(call.args), quiet)

    def _same(self, expr: s.Expr, args: list[s.Expr], quiet: bool) -> int | None:
        sizes = [self._size(a, quiet) for a in args]
        # size 1 (a sum, a learned scalar) broadcasts like a number: only larger sizes must agree
        known = [(z, a) for z, a in zip(sizes, args, strict=False) if z not in (None, SCALAR, 1)]
        if not known and 1 in sizes:
            return 1
        for z, a in known[1:]:
            if z != known[0][0] and not quiet:
                z0, a0 = known[0]
                self.report.error(
                    f"size mismatch in `{s.show(expr)}`: `{s.show(a0)}` has size {z0}"
                    f"{self._origin(a0)} but `{s.show(a)}` has size {z}{self._origin(a)}",
                    expr.span,
                    f"elementwise operations need equal sizes: {self._fix_size(a0, z0, a, z)}",
                )
                return None
        if known:
            return known[0][0]
        return SCALAR if all(z == SCALAR for z in sizes) else None

    def _fix_size(self, a0: s.Expr, z0: int, a: s.Expr, z: int) -> str:
        """The help of a size mismatch: a param takes the size it is used at; anything else is projected."""
        for side, other in ((a, z0), (a0, z)):
            if isinstance(side, s.Ref) and isinstance(getattr(self.defs.get(side.name), "stmt", None), s.Param):
                return f"declare the param with the size it is used at, `param {side.name}: {other}`"
        return project(a, z0, "one of them")

    def _origin(self, expr: s.Expr) -> str:
        if isinstance(expr, s.Ref) and expr.name in self.defs:
            st = self.defs[expr.name].stmt
            kind = {s.Input: "input", s.Param: "param", s.Layer: "layer", s.Assign: "node", Alias: "block input"}[
                type(st)
            ]
            return f" ({kind} at {st.span})"
        return ""

    def _check_params(self) -> None:
        for d in self.defs.values():
            st = d.stmt
            if isinstance(st, s.Param) and not isinstance(st.init, float) and st.init not in PARAM_INITS:
                self.report.error(
                    f"param `{st.name}` starts as `{st.init}`, which is not a way to start",
                    st.init_span,
                    f"write {', '.join(PARAM_INITS)} or a number"
                    + (f" ({hint})" if (hint := did_you_mean(st.init, PARAM_INITS)) else ""),
                )

    def _check_layers(self) -> None:
        for name, d in self.defs.items():
            st = d.stmt
            if not isinstance(st, s.Layer):
                continue
            if st.activation not in ACTIVATIONS:
                self.report.error(
                    f"unknown activation `{st.activation}` for layer `{name}`",
                    st.activation_span,
                    did_you_mean(st.activation, ACTIVATIONS)
                    or f"known: {', '.join(ACTIVATIONS)}; or write `NAME = f(...)`",
                )
            for key, value, span in st.options:
                self._check_option(name, key, value, span)
            for src in st.sources:
                if not isinstance(src, s.Ref) or not self._is_tokens(src.name):
                    if self._size(src) == SCALAR:
                        self.report.error(
                            f"source `{s.show(src)}` of layer `{name}` is a plain number",
                            src.span,
                            "a layer's bias already adds a learned constant",
                        )

    def _check_option(self, layer: str, key: str, value: str | float, span: Span) -> None:
        if key not in LAYER_OPTIONS:
            self.report.error(
                f"unknown option `{key}` for layer `{layer}`",
                span,
                did_you_mean(key, LAYER_OPTIONS) or f"options: {', '.join(LAYER_OPTIONS)}",
            )
            return
        allowed = LAYER_OPTIONS[key]
        shown = f"{value:g}" if isinstance(value, float) else value
        if allowed is None:
            if not isinstance(value, float) or not 0 <= value < 1:
                self.report.error(f"`{key}` must be a number in [0, 1), not {shown}", span)
        elif str(value) not in allowed:
            self.report.error(f"`{key}={shown}` is not an option", span, f"use one of: {', '.join(allowed)}")

    def _is_tokens(self, name: str) -> bool:
        d = self.defs.get(name)
        return d is not None and getattr(d.stmt, "kind", "") == "tokens"

    def _check_sizes(self) -> None:
        for name, d in self.defs.items():
            st = d.stmt
            if isinstance(st, s.Assign):
                size = self._size(st.expr)
                if size == SCALAR:
                    self.report.error(
                        f"`{name}` is a plain number, not a vector",
                        st.span,
                        "a node must read another node; write the number where it is used, as in "
                        "`x + 1`: numbers broadcast",
                    )
                elif st.size is not None and size is not None and d.size is not None and size != d.size:
                    self.report.error(
                        f"`{name}` is declared with size {d.size} but its expression has size {size}",
                        st.expr.span,
                        f"make `{name}` a layer to project it, `layer {name}: {d.size} <- "
                        f"{s.show(st.expr)}`, or declare `{name}: {size}`",
                    )
            elif isinstance(st, Alias):
                size = self.defs[st.target.name].size if st.target.name in self.defs else None
                tokens = self._is_tokens(st.target.name)
                if (st.kind == "tokens") != tokens:
                    want = "a token input" if st.kind == "tokens" else "a vector"
                    self.report.error(f"block input `{st.name}` needs {want}; `{st.target}` is not", st.span)
                elif size is not None and d.size is not None and size != d.size:
                    self.report.error(
                        f"block input `{st.name}` has size {d.size}{st.note} but `{st.target}` has size {size}"
                        f"{self._origin(st.target)}",
                        st.span,
                        project(st.target, d.size),
                    )
            elif isinstance(st, s.Layer):
                for src in st.sources:
                    if not (isinstance(src, s.Ref) and self._is_tokens(src.name)):
                        self._size(src)

    # ---- memories ----------------------------------------------------------------------------

    def _memory_input(self, name: str) -> bool:
        d = self.defs.get(name)
        return d is not None and isinstance(d.stmt, (s.Input, Alias)) and d.stmt.kind == "memory"

    def _check_memories(self) -> dict[str, str]:
        """Which memory's positions each node's value runs over (one vector per position): a memory input,
        and what reads one other than through `attend`, which sums its positions up. Reports the misuse of
        memories and of `attend`; gives node -> memory for the nodes over one."""
        over = self._positions()
        if not over:
            self._check_attend_calls({})
            return {}
        for name, found in over.items():
            d = self.defs[name]
            st = d.stmt
            if len(found) > 1:
                self.report.error(
                    f"`{name}` mixes the positions of memories {', '.join(f'`{m}`' for m in sorted(found))}",
                    st.span,
                    "attend to each memory apart, `c1 = attend(s1, m1)`, then combine what attend gives",
                )
            elif isinstance(st, s.Layer) and name not in self._static_names() and found:
                (memory,) = found
                self.report.error(
                    f"layer `{name}` projects memory `{memory}` together with values that change at every step",
                    st.span,
                    "a layer over a memory's positions reads only the memory (it runs once per sequence): "
                    "project the step's value with a layer of its own and add them, as in `e = tanh(k + q)`",
                )
            elif isinstance(st, Alias) and st.kind != "memory" and found:
                self.report.error(
                    f"block input `{st.name}` takes a vector at every step, but `{s.show(st.target)}` is "
                    f"over the positions of memory `{sorted(found)[0]}`",
                    st.span,
                    f"declare it `input {st.name.split('.')[-1]}: {d.size or 'SIZE'} memory` in the block",
                )
        for name, d in self.defs.items():
            st = d.stmt
            if isinstance(st, Alias) and st.kind == "memory" and not over.get(st.target.name):
                self.report.error(
                    f"block input `{st.name}` is a memory, but `{s.show(st.target)}` is not",
                    st.span,
                    "bind it to a memory input of this network (`input NAME: SIZE memory`)",
                )
            for e in _node_exprs(st) + ([st.feed] if isinstance(st, s.Input) and st.feed is not None else []):
                for ref in s.refs(e):
                    if over.get(ref.name) and ref.offset != 0 and ref.name not in self._static_names():
                        self.report.error(
                            f"`{ref.name}` runs over the positions of memory `{sorted(over[ref.name])[0]}`, "
                            f"so it has no value {'before' if ref.delay > 0 else 'after'} this step",
                            ref.span,
                            f"read `{ref.name}` at the same step, or attend to it and read what attend gives",
                        )
            if isinstance(st, s.Input) and st.feed is not None and self._over(st.feed, over):
                self.report.error(
                    f"self-fed input `{name}` is fed a value over a memory's positions",
                    st.feed.span,
                    "feed it what `attend` gives, one vector per step",
                )
        for out in self.outputs:
            if over.get(out.name):
                self.report.error(
                    f"`{out.name}` runs over the positions of memory `{sorted(over[out.name])[0]}`: it has one "
                    "vector per position, not per step",
                    out.span,
                    f"output what `attend` gives (`c = attend(score, {out.name})`), or the memory's own network",
                )
        self._check_attend_calls(over)
        return {n: sorted(m)[0] for n, m in over.items() if m}

    def _positions(self) -> dict[str, set[str]]:
        """node -> the memories whose positions its value runs over (empty sets left out); {} without any
        memory input. A fixed point: the sets only grow."""
        over = {n: {n} for n in self.defs if self._memory_input(n) and isinstance(self.defs[n].stmt, s.Input)}
        if not over and not any(self._memory_input(n) for n in self.defs):
            return {}
        changed = True
        while changed:
            changed = False
            for name, d in self.defs.items():
                if name in over and isinstance(d.stmt, s.Input):
                    continue
                found = set().union(*(self._over(e, over) for e in _node_exprs(d.stmt)))
                if found and found != over.get(name):
                    over[name] = found
                    changed = True
        return over

    @staticmethod
    def _over(expr: s.Expr, over: dict[str, set[str]]) -> set[str]:
        """The memories an expression's value runs over: `attend` sums its memory's positions up."""

        def step(x: s.Expr, kids: list[set[str]]) -> set[str]:
            if isinstance(x, s.Ref):
                return over.get(x.name, set())
            if isinstance(x, s.Call) and x.fn in OPS and OPS[x.fn].memory:
                return set()
            return set().union(*kids)

        return s.fold(expr, step)

    def _check_attend_calls(self, over: dict[str, set[str]]) -> None:
        """`attend(score, values)`: a node's whole value, over one memory, with one score per position."""
        whole = {id(d.stmt.expr) for d in self.defs.values() if isinstance(d.stmt, s.Assign)}
        places = [e for d in self.defs.values() for e in _node_exprs(d.stmt)]
        places += [d.stmt.feed for d in self.defs.values() if isinstance(d.stmt, s.Input) and d.stmt.feed]
        places += [st.expr for st in self.inits.values() if st.expr is not None]
        for top in places:
            for call in s.walk(top):
                if not (isinstance(call, s.Call) and call.fn in OPS and OPS[call.fn].memory and len(call.args) == 2):
                    continue
                if id(call) not in whole:
                    self.report.error(
                        f"`{call.fn}(...)` must be the whole value of a node, so its weights have a name",
                        call.span,
                        f"write `c = {s.show(call)}` and read `c` here",
                    )
                score, values = call.args
                memories = self._over(values, over)
                if not memories:
                    self.report.error(
                        f"`{call.fn}` weighs the positions of a memory, and `{s.show(values)}` is not over one",
                        values.span,
                        "declare the sequence to attend to as `input NAME: SIZE memory` (in a model, bind it to "
                        "an encoder's every-step output), and attend to it or a projection of it",
                    )
                    continue
                scored = self._over(score, over)
                if scored != memories:
                    mem = sorted(memories)[0]
                    self.report.error(
                        f"the score `{s.show(score)}` must give one number per position of memory `{mem}`",
                        score.span,
                        f"compute it from the memory, as in `dot({s.show(values)}, q)` or "
                        f"`dot(v, tanh(k + q))` with `layer k: N <- {mem}`",
                    )
                elif (size := self._size(score, quiet=True)) not in (None, 1):
                    self.report.error(
                        f"the score `{s.show(score)}` has size {size} at each position; attention needs one number",
                        score.span,
                        f"reduce it: `sum(...)`, `dot(v, ...)` with `param v: {size}`, or `dot(k, q)`",
                    )

    # ---- init and outputs --------------------------------------------------------------------

    def _check_inits(self) -> None:
        for name, st in self.inits.items():
            if name not in self.defs:
                if not self._in_failed_block(name):
                    self.report.error(f"`init {name}`: no node `{name}`", st.span, self._suggest(name, self.defs))
                continue
            if isinstance(self.defs[name].stmt, s.Param):
                self.report.error(
                    f"`init {name}`: `{name}` is a param, the same at every step, so it has no initial value",
                    st.span,
                    f"say how it starts where it is declared: `param {name}: {self.defs[name].size} = ones`",
                )
                continue
            if self._is_tokens(name):
                self._check_token_init(name, st)
                continue
            if st.expr is None:
                continue
            for ref in s.refs(st.expr):
                d = self.defs.get(ref.name)
                if d is None:
                    self.report.error(
                        f"unknown name `{ref.name}` in `init {name}`",
                        ref.span,
                        self._suggest(ref.name, ["zeros", "learned", *self.defs])
                        or "write zeros, learned, or an expression of static inputs",
                    )
                elif not (isinstance(d.stmt, s.Input) and d.stmt.kind == "static") or ref.explicit:
                    self.report.error(
                        f"`init {name}` may only read static inputs and numbers, not `{ref}`",
                        ref.span,
                        "declare a vector input as `input NAME: SIZE static`",
                    )
            for clock in (e for e in s.walk(st.expr) if isinstance(e, s.Call) and e.fn in STEP):
                self.report.error(
                    f"`init {name}` is the value before the first step, and `{s.show(clock)}` changes with the step",
                    clock.span,
                    f"write a number or an expression of static inputs; read the clock in `{name}` itself",
                )
            self._check_calls(st.expr)

    def _check_token_init(self, name: str, st: s.Init) -> None:
        """A token input starts from "no token" (`zeros`, a zero vector) or from a token id."""
        vocab = self.defs[name].size or 0
        value = st.expr.value if isinstance(st.expr, s.Num) else None
        if st.policy == "zeros" or (value is not None and value == int(value) and 0 <= value < vocab):
            return
        self.report.error(
            f"token input `{name}` starts from a token id in [0, {vocab}) or from zeros (no token)",
            st.span,
            f"write `init {name} = 0` (a start token) or `init {name} = zeros`",
        )

    def _check_feeds(self) -> None:
        """A self-fed input takes what the network computed before: its value reads only the past."""
        static = self._static_names()
        for name, d in self.defs.items():
            st = d.stmt
            if not isinstance(st, s.Input) or st.feed is None:
                continue
            feed = st.feed
            if st.kind in ("static", "memory"):
                self.report.error(
                    f"{st.kind} input `{name}` cannot be fed back: it is one value per sequence",
                    feed.span,
                    f"drop `{st.kind}`, or drop the `= ...`",
                )
                continue
            for ref in s.refs(feed):
                if ref.name in self.defs and ref.delay <= 0 and ref.name not in static:
                    when = "at the same step" if ref.delay == 0 else "in the future"
                    self.report.error(
                        f"self-fed input `{name}` reads `{ref}` {when}; it is fed what the network computed before",
                        ref.span,
                        f"write `{ref.name}[t-1]`",
                    )
            picks = isinstance(feed, s.Call) and feed.fn in FEED_FUNCTIONS
            if st.kind == "tokens":
                if not picks:
                    self.report.error(
                        f"token input `{name}` is fed token ids: pick them from a distribution",
                        feed.span,
                        f"write `= sample(softmax(...))` or `= argmax(...)` of a vector of size {d.size}",
                    )
                    continue
                assert isinstance(feed, s.Call)
                if len(feed.args) != 1:
                    self.report.error(f"`{feed.fn}` takes one vector, not {len(feed.args)}", feed.span)
                    continue
                if feed.fn == "sample" and not self._positive(feed.args[0], set()):
                    self.report.error(
                        f"`sample` draws from a distribution, and `{s.show(feed.args[0])}` may be negative or all zero",
                        feed.args[0].span,
                        f"write `sample(softmax({s.show(feed.args[0])}))`: softmax turns scores into a distribution",
                    )
                size = self._size(feed.args[0])
                if size is not None and d.size is not None and size != d.size:
                    shown = "a plain number" if size == SCALAR else f"size {size}"
                    self.report.error(
                        f"`{s.show(feed.args[0])}` has {shown}; token input `{name}` picks from {d.size} tokens",
                        feed.args[0].span,
                        _feed_fix(feed.args[0], size, d.size),
                    )
            elif picks:
                assert isinstance(feed, s.Call)
                self.report.error(
                    f"`{feed.fn}` gives token ids; input `{name}` takes vectors of size {d.size}",
                    feed.span,
                    f"declare `input {name}: tokens({d.size})`, or feed a vector such as `y[t-1]`",
                )
            else:
                size = self._size(feed)
                if size is not None and d.size is not None and size != d.size:
                    shown = "a plain number" if size == SCALAR else f"size {size}"
                    self.report.error(
                        f"input `{name}` has size {d.size} but is fed `{s.show(feed)}` of {shown}",
                        feed.span,
                        _feed_fix(feed, size, d.size),
                    )

    def _positive(self, expr: s.Expr, seen: set[str]) -> bool:
        """Whether every entry of `expr` is provably > 0, so that `sample` can normalise it: softmax, sigmoid,
        exp and softplus (as functions or layer activations), positive numbers, and sums, products,
        quotients, min, max and concat of those, through the nodes that compute them."""
        if isinstance(expr, s.Num):
            return expr.value > 0
        if isinstance(expr, s.Ref):
            d = self.defs.get(expr.name)
            if d is None or expr.name in seen:
                return False
            st, seen = d.stmt, seen | {expr.name}
            if isinstance(st, s.Layer):
                return st.activation in POSITIVE
            if isinstance(st, s.Assign):
                return self._positive(st.expr, seen)
            return isinstance(st, Alias) and self._positive(st.target, seen)
        if isinstance(expr, s.BinOp):
            return expr.op != "-" and self._positive(expr.left, seen) and self._positive(expr.right, seen)
        if isinstance(expr, s.Call) and expr.fn in POSITIVE:
            return True
        if isinstance(expr, s.Call) and expr.fn in ("min", "concat"):
            return all(self._positive(a, seen) for a in expr.args)
        if isinstance(expr, s.Call) and expr.fn == "max":
            return any(self._positive(a, seen) for a in expr.args)
        return False

    def _check_outputs(self) -> None:
        seen: set[str] = set()
        for out in self.outputs:
            if self._in_failed_block(out.name) or out.name in self.bad_names:
                pass  # reported where the block or the name is
            elif out.name not in self.defs or not self._visible(out.name):
                self.report.error(
                    f"output `{out.name}` is not defined",
                    out.span,
                    self._suggest(out.name) or "output one of the network's nodes",
                )
            elif out.name in seen:
                self.report.error(f"`output {out.name}` is given twice", out.span)
            elif self._is_tokens(out.name):
                self.report.error(f"token input `{out.name}` cannot be an output", out.span)
            elif isinstance(self.defs[out.name].stmt, s.Param):
                self.report.error(
                    f"param `{out.name}` cannot be an output: it is a learned parameter, the same at every step",
                    out.span,
                    f"read it as `net.param({out.name!r})`, or output a node that uses it",
                )
            seen.add(out.name)
        if not self.outputs:
            self.report.error(
                f"network `{self.net.name}` has no output",
                self.net.span,
                "add `output NAME` (every step) or `output NAME last` (the last step)",
            )

    # ---- building the IR ---------------------------------------------------------------------

    def _build(self, memories: dict[str, str]) -> Network:
        static = self._static_names()
        nodes = []
        for name, d in self.defs.items():
            st = d.stmt
            if isinstance(st, Alias):
                continue
            node = self._node(name, st, d.size or 1, name in static)
            nodes.append(dataclasses.replace(node, memory=memories[name]) if memories.get(name) else node)
        outputs = tuple(OutputSpec(o.name, o.last, o.span) for o in self.outputs)
        return Network(self.net.name, tuple(nodes), outputs, self.report.source)

    def _node(self, name: str, st: s.Input | s.Param | s.Layer | s.Assign, size: int, static: bool) -> Node:
        init = self._init_policy(name)
        if isinstance(st, s.Input):
            static = st.kind in ("static", "memory")
            return Node(name, "input", size, st.span, input_kind=st.kind, init=init, static=static, feed=st.feed)
        if isinstance(st, s.Assign):
            return Node(name, "expr", size, st.span, expr=st.expr, init=init, static=static)
        if isinstance(st, s.Param):
            return Node(name, "param", size, st.span, static=True, param_init=st.init)
        opts = {k: v for k, v, _ in st.options}
        widths = tuple(
            self.defs[src.name].size or 1
            if isinstance(src, s.Ref) and self._is_tokens(src.name)
            else self._size(src, quiet=True) or 1
            for src in st.sources
        )
        return Node(
            name,
            "layer",
            size,
            st.span,
            activation=st.activation,
            sources=st.sources,
            source_sizes=widths,
            bias=opts.get("bias", "true") == "true",
            dropout=float(opts.get("dropout", 0.0)),
            weight_init=str(opts.get("init", "default")),
            init=init,
            static=static,
        )

    def _init_policy(self, name: str) -> InitPolicy:
        st = self.inits.get(name)
        if st is None:
            return InitPolicy()
        size = self._size(st.expr, quiet=True) if st.expr is not None else 0
        if st.expr is not None and size == SCALAR:
            size = self.defs[name].size or 0  # a plain number broadcasts: no projection to learn
        return InitPolicy(st.policy, st.expr, size or 0, st.span)

    def _static_names(self) -> set[str]:
        """Nodes whose value is the same at every step: static inputs and what reads only them.

        A worklist: a node becomes static when the last of the nodes it reads does (sweeping every node
        until nothing changes took a sweep per link of a chain)."""
        if self._static is not None:
            return self._static
        static = {
            n
            for n, d in self.defs.items()
            if isinstance(d.stmt, s.Param) or (isinstance(d.stmt, s.Input) and d.stmt.kind in ("static", "memory"))
        }
        waiting: dict[str, int] = {}  # candidates: how many of the nodes they read are not static yet
        readers: dict[str, list[str]] = {}
        for name, d in self.defs.items():
            refs = [r for e in _node_exprs(d.stmt) for r in s.refs(e)]
            if (
                isinstance(d.stmt, (s.Input, s.Param))
                or not refs
                or any(r.offset != 0 or r.name not in self.defs for r in refs)
                or any(reads_step(e) for e in _node_exprs(d.stmt))  # `s * every(2)` changes with the step
            ):
                continue
            read = {r.name for r in refs}
            waiting[name] = len(read)
            for r in read:
                readers.setdefault(r, []).append(name)
        queue = list(static)
        while queue:
            for reader in readers.get(queue.pop(), []):
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    static.add(reader)
                    queue.append(reader)
        self._static = static
        return static

    # ---- loops -------------------------------------------------------------------------------

    def _check_loops(self) -> None:
        order = list(self.defs)
        static = self._static_names()
        g = nx.MultiDiGraph()
        g.add_nodes_from(order)
        refs: dict[str, list[s.Ref]] = {}
        for name, d in self.defs.items():
            refs[name] = [
                r
                for e in _node_exprs(d.stmt)
                for r in s.refs(e)
                if r.name in self.defs and not (r.explicit and r.offset == 0)
            ]  # `h[t-0]`: reported
            for ref in refs[name]:
                g.add_edge(ref.name, name, delay=ref.delay)
                if ref.explicit and ref.name in static:
                    what = "a param" if isinstance(self.defs[ref.name].stmt, s.Param) else "static"
                    if self._memory_input(ref.name):
                        what = "a memory"
                    self.report.error(
                        f"`{ref.name}` is {what} (the same at every step); read it without a delay",
                        ref.span,
                        f"write `{ref.name}`",
                    )
        same_step = nx.DiGraph([(u, v) for u, v, k in g.edges(data="delay") if k == 0])
        for cycle in nx.simple_cycles(same_step):
            self._algebraic_loop(order, refs, cycle)
            break
        position = {n: i for i, n in enumerate(order)}
        for names in _mixed_loops(g, position):
            self.report.error(
                f"the loop through {', '.join(f'`{n}`' for n in names)} reads both the past and the future",
                self.defs[names[0]].stmt.span,
                "no order of steps can run it: make every delay in the loop [t-k], or all [t+k]",
            )
        fed = {
            n: d.stmt.feed
            for n, d in self.defs.items()
            if isinstance(d.stmt, s.Input) and d.stmt.feed and d.stmt.kind != "static"
        }
        if not fed:
            return
        for name, feed in fed.items():  # running free, a self-fed input joins the loop it reads
            g.add_edges_from(
                (r.name, name, {"delay": r.delay}) for r in s.refs(feed) if r.name in self.defs and r.delay > 0
            )  # other reads are reported in _check_feeds
        for names in _mixed_loops(g, position):
            first = next((n for n in names if n in fed), None)
            if first is not None:
                self.report.error(
                    f"feeding `{first}` back closes a loop through "
                    f"{', '.join(f'`{n}`' for n in names)} that reads the future",
                    fed[first].span,
                    "a network runs free only forward in time: feed it from a loop that reads [t-k]",
                )

    def _algebraic_loop(self, order: list[str], refs: dict[str, list[s.Ref]], cycle: list[str]) -> None:
        start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
        cycle = cycle[start:] + cycle[:start]
        path = " -> ".join([*cycle, cycle[0]])
        src, dst = cycle[-1], cycle[0]
        ref = next((r for r in refs[dst] if r.name == src and r.delay == 0), None)
        span = ref.span if ref else self.defs[dst].stmt.span
        self.report.error(
            f"algebraic loop: {path} needs its own value at the same step",
            span,
            f"read `{src}[t-1]` instead of `{src}` in the definition of `{dst}` (line {span.line})",
        )

    # ---- warnings and limits -----------------------------------------------------------------

    def _warn_unused(self, network: Network) -> None:
        from rnndsl.graphs.folded import folded

        g = folded(network)
        needed = {out.name for out in network.outputs}
        stack = list(needed)  # one search back from every output (an ancestors() call per output is quadratic)
        while stack:
            for pred in g.predecessors(stack.pop()):
                if pred not in needed:
                    needed.add(pred)
                    stack.append(pred)
        fed = {n.name: [r.name for r in s.refs(n.feed)] for n in network.self_fed if n.feed is not None}
        stack = [n for n in fed if n in needed]
        while stack:  # what a needed self-fed input's feed reads is needed too (the folded graph omits feeds)
            for pred in fed.get(name := stack.pop(), []) + (list(g.predecessors(name)) if name not in fed else []):
                if pred not in needed:
                    needed.add(pred)
                    stack.append(pred)
        for node in network.nodes:  # an init expression reads static inputs, which the folded graph omits
            if node.name in needed and node.init.expr is not None:
                needed |= {r.name for r in s.refs(node.init.expr)}
        for node in network.nodes:
            if node.name not in needed and "." not in node.name:
                what = "input" if node.op == "input" else "node"
                self.report.warn(
                    f"{what} `{node.name}` is never used by an output",
                    node.span,
                    "remove it, or read it from a node that leads to an output",
                )
        delays = network.delays
        for name, st in self.inits.items():
            if delays[name] == (0, 0) and network[name].feed is None:  # a self-fed input starts from its init
                self.report.warn(
                    f"`init {name}` has no effect: nothing reads `{name}[t-k]` or `{name}[t+k]`",
                    st.span,
                    f"remove it, or read `{name}[t-1]` somewhere",
                )

    def _check_limits(self, network: Network) -> None:
        count = network.parameter_count()
        if count > MAX_PARAMETERS:
            big = max((n for n in network.nodes if n.op == "layer"), key=lambda n: n.size * sum(n.source_sizes))
            self.report.error(
                f"network `{network.name}` would have {count:,} parameters, above the limit of "
                f"{MAX_PARAMETERS:,} (the largest is layer `{big.name}`: "
                f"{big.size * sum(big.source_sizes):,})",
                big.span,
                "make the layers smaller",
            )


def _mixed_loops(g: nx.MultiDiGraph, position: dict[str, int]) -> list[list[str]]:
    """The strongly connected parts of `g` that read both the past and the future, in definition order."""
    mixed = [list(c.nodes) for c in components(g, position) if max(c.delays, default=0) > 0 > min(c.delays, default=0)]
    return sorted(mixed, key=lambda names: position[names[0]])


def _node_exprs(st: s.Input | s.Param | s.Layer | s.Assign | Alias) -> list[s.Expr]:
    """What a node's value reads each step (a self-fed input's feed is followed apart)."""
    if isinstance(st, Alias):
        return [st.target]
    return list(s.exprs(st)) if isinstance(st, (s.Layer, s.Assign)) else []


def _stmt_refs(st: s.Stmt) -> list[s.Ref]:
    """The references written in a statement of the network itself (inits and feeds are checked apart)."""
    return [r for e in s.exprs(st) for r in s.refs(e)] if isinstance(st, (s.Layer, s.Assign, s.Use)) else []


def _has_unknown_call(expr: s.Expr) -> bool:
    if isinstance(expr, s.Call) and expr.fn not in OPS and expr.fn not in TOKEN_FUNCTIONS:
        return True
    return any(_has_unknown_call(c) for c in s.children(expr))


def project(expr: s.Expr, size: int, what: str = "it", feed: bool = False) -> str:
    """The fix of a size mismatch, as docs/language.md gives it: a layer that projects `expr` to `size`.

    Through one-argument functions (`softmax(h[t-1])`) the layer projects the node read, so the delay stays
    where it was written; any other expression is projected whole, and for a feed (which must read the past)
    the layer reads it one delay later and the feed reads the layer back at that delay.

    >>> project(s.Ref("x"), 64, "one of them")
    'add a layer to project one of them, `layer x_64: 64 <- x`, and read `x_64` instead of `x`'
    >>> project(s.Call("softmax", (s.Ref("h", -1, explicit=True),)), 5)
    'add a layer to project it, `layer h_5: 5 <- h`, and read `softmax(h_5[t-1])` instead of `softmax(h[t-1])`'
    """
    inner = expr
    while isinstance(inner, (s.Call, s.Neg)) and len(s.children(inner)) == 1:
        inner = s.children(inner)[0]
    if isinstance(inner, s.Ref):
        name = f"{inner.name.replace('.', '_')}_{size}"
        source: s.Expr = s.Ref(inner.name)
        read = s.map_refs(expr, lambda r: s.Ref(name, r.offset, explicit=r.explicit) if r is inner else r)
    else:
        k = min((r.delay for r in s.refs(expr) if r.delay > 0), default=0) if feed else 0
        name, source, read = "p", s.map_refs(expr, lambda r: _later(r, k)), s.Ref("p", -k, explicit=k > 0)
    return (
        f"add a layer to project {what}, `layer {name}: {size} <- {s.show(source)}`, and read `{s.show(read)}` "
        f"instead of `{s.show(expr)}`"
    )


def _feed_fix(expr: s.Expr, size: int, wanted: int) -> str:
    """The help line of a feed of the wrong size (a plain number cannot be projected: it has no size)."""
    fix = f"feed it a vector of size {wanted}"
    return fix if size == SCALAR else f"{fix}: {project(expr, wanted, feed=True)}"


def _later(ref: s.Ref, k: int) -> s.Ref:
    """`ref` read k steps later: `h[t-2]` -> `h[t-1]` for k = 1; same-step and future reads stay."""
    if ref.delay <= 0:
        return ref
    return s.Ref(ref.name, -(ref.delay - k), ref.span, explicit=ref.delay > k)
