"""Shapes: takes `Declarations`, gives `Sizes` (every node's size, the unsized ones inferred from what they
read, and the size of any expression), then checks what sizes decide: layers (activation, options,
sources), params, and every expression and block input against its declared size.

`project` writes the fix of a size mismatch: a layer that projects the expression to the size wanted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from rnndsl.frontend.check.declare import Declarations, Definition
from rnndsl.frontend.inline import Alias
from rnndsl.frontend.names import did_you_mean
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter, Span
from rnndsl.lang.ops import ACTIVATIONS, OPS, TOKEN_FUNCTIONS

__all__ = ["PARAM_INITS", "SCALAR", "Sizes", "check_layers", "check_params", "check_sizes", "infer_sizes", "project"]

SCALAR = 0  # the size of a plain number: it broadcasts
PARAM_INITS = ("zeros", "ones", "normal", "uniform")  # or a number


@dataclass(frozen=True)
class Sizes:
    """Each node's size (None: unknown, or reported) and the size of an expression over them."""

    decls: Declarations
    of: Mapping[str, int | None]

    def expr(self, expr: s.Expr, report: Reporter | None = None) -> int | None:
        """The size of an expression: SCALAR for numbers, None where unknown (or already reported). With a
        `report`, misused token inputs, mismatched sizes and numbers where a vector is needed are reported."""
        if isinstance(expr, s.Num):
            return SCALAR
        if isinstance(expr, s.Ref):
            return self._ref(expr, report)
        if isinstance(expr, s.Neg):
            return self.expr(expr.operand, report)
        if isinstance(expr, s.BinOp):
            return self._same(expr, [expr.left, expr.right], report)
        return self._call(expr, report)

    def _ref(self, ref: s.Ref, report: Reporter | None) -> int | None:
        st = self.decls.defs.get(ref.name)
        if st is None:
            return None
        if report is not None and isinstance(st, (s.Input, Alias)) and st.kind == "tokens":
            report.error(
                f"`{ref.name}` is a token input, used here as a vector",
                ref.span,
                f"make it a layer source (an embedding), or write `one_hot({ref.name})`",
            )
            return None
        return self.of[ref.name]

    def _call(self, call: s.Call, report: Reporter | None) -> int | None:
        if call.fn == "one_hot":
            arg = call.args[0] if call.args else None
            name = arg.name if isinstance(arg, s.Ref) and arg.name in self.decls.defs else None
            if name is not None and not self.decls.is_tokens(name) and report is not None:
                report.error(f"`one_hot` needs a token input; `{arg}` is a vector", call.span)
            return None if name is None else self.of[name]
        op = OPS.get(call.fn)
        if op is None:
            return None
        if op.size == "concat":
            sizes = [self.expr(a, report) for a in call.args]
            if SCALAR in sizes and report is not None:
                report.error("`concat` joins vectors; a plain number has no size", call.span)
            return None if any(z is None for z in sizes) else sum(z for z in sizes if z)
        if op.size == "attend":
            sizes = [self.expr(a, report) for a in call.args]
            return sizes[1] if len(sizes) == 2 else None
        if op.size == "one":
            return 1
        if op.size == "reduce":
            if any(isinstance(a, s.Num) for a in call.args) and report is not None:
                report.error(f"`{call.fn}` reduces vectors; a plain number has no entries to reduce", call.span)
            return None if self._same(call, list(call.args), report) is None else 1
        return self._same(call, list(call.args), report)

    def _same(self, expr: s.Expr, args: list[s.Expr], report: Reporter | None) -> int | None:
        sizes = [self.expr(a, report) for a in args]
        # size 1 (a sum, a learned scalar) broadcasts like a number: only larger sizes must agree
        known = [(z, a) for z, a in zip(sizes, args, strict=False) if z not in (None, SCALAR, 1)]
        if not known and 1 in sizes:
            return 1
        for z, a in known[1:]:
            if z != known[0][0] and report is not None:
                z0, a0 = known[0]
                report.error(
                    f"size mismatch in `{s.show(expr)}`: `{s.show(a0)}` has size {z0}"
                    f"{self.origin(a0)} but `{s.show(a)}` has size {z}{self.origin(a)}",
                    expr.span,
                    f"elementwise operations need equal sizes: {self._fix(a0, z0, a, z)}",
                )
                return None
        if known:
            return known[0][0]
        return SCALAR if all(z == SCALAR for z in sizes) else None

    def _fix(self, a0: s.Expr, z0: int, a: s.Expr, z: int) -> str:
        """The help of a size mismatch: a param takes the size it is used at; anything else is projected."""
        for side, other in ((a, z0), (a0, z)):
            if isinstance(side, s.Ref) and isinstance(self.decls.defs.get(side.name), s.Param):
                return f"declare the param with the size it is used at, `param {side.name}: {other}`"
        return project(a, z0, "one of them")

    def origin(self, expr: s.Expr) -> str:
        """Where a node read by `expr` is declared, for messages: ` (layer at 3:5)`; "" for anything else."""
        st = self.decls.defs.get(expr.name) if isinstance(expr, s.Ref) else None
        if st is None:
            return ""
        kind = {s.Input: "input", s.Param: "param", s.Layer: "layer", s.Assign: "node", Alias: "block input"}[type(st)]
        return f" ({kind} at {st.span})"


# ---- inference ---------------------------------------------------------------------------------------


def infer_sizes(decls: Declarations, report: Reporter) -> Sizes:
    """The written sizes, and each unsized `NAME = ...` sized by what it reads; an unsized node whose size
    cannot be told is reported (unless it reads something unknown, or is a plain number)."""
    of = dict(decls.written)  # filled in here, and fixed once returned
    sizes = Sizes(decls, of)
    pending = [n for n, st in decls.defs.items() if of[n] is None and isinstance(st, s.Assign)]
    ordered = _dependency_order(decls, pending)
    for _ in range(len(pending) + 1):
        changed = False
        for name in ordered:
            st = decls.defs[name]
            if of[name] is None and isinstance(st, s.Assign):
                size = sizes.expr(st.expr)
                if size is not None and size != SCALAR:
                    of[name], changed = size, True
        if not changed:
            break
    broken = _broken(decls, pending)
    for name in pending:
        st = decls.defs[name]
        if of[name] is None and name not in broken and not _is_number(st, sizes):
            report.error(f"cannot tell the size of `{name}`", st.span, f"give it one: `{name}: SIZE = ...`")
    return sizes


def _dependency_order(decls: Declarations, pending: list[str]) -> list[str]:
    """Unsized nodes, each after the unsized nodes it reads (a loop's members in definition order), so
    one pass infers a chain of any length; in definition order it took a pass per link."""
    position = {n: i for i, n in enumerate(pending)}
    deps = nx.DiGraph()
    deps.add_nodes_from(pending)
    for name in pending:
        st = decls.defs[name]
        if isinstance(st, s.Assign):
            deps.add_edges_from((r.name, name) for r in s.refs(st.expr) if r.name in position)
    cond = nx.condensation(deps)
    members = {c: sorted(cond.nodes[c]["members"], key=position.__getitem__) for c in cond}
    first = {c: position[m[0]] for c, m in members.items()}
    return [n for c in nx.lexicographical_topological_sort(cond, key=first.__getitem__) for n in members[c]]


def _is_number(st: Definition, sizes: Sizes) -> bool:
    """`c = 1`: reported once, as a plain number, by `check_sizes`."""
    return isinstance(st, s.Assign) and sizes.expr(st.expr) == SCALAR


def _broken(decls: Declarations, pending: list[str]) -> set[str]:
    """Unsized nodes reading an unknown name or function (reported), directly or through each other:
    their size cannot be known, and saying so again is noise."""
    broken: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in pending:
            st = decls.defs[name]
            if (
                name not in broken
                and isinstance(st, s.Assign)
                and (
                    _has_unknown_call(st.expr)
                    or any(r.name not in decls.defs or r.name in broken for r in s.refs(st.expr))
                )
            ):
                broken.add(name)
                changed = True
    return broken


def _has_unknown_call(expr: s.Expr) -> bool:
    return any(isinstance(e, s.Call) and e.fn not in OPS and e.fn not in TOKEN_FUNCTIONS for e in s.walk(expr))


# ---- the checks sizes decide ---------------------------------------------------------------------------


def check_layers(sizes: Sizes, report: Reporter) -> None:
    """Each layer's activation and options are known, and no source is a plain number."""
    for name, st in sizes.decls.defs.items():
        if not isinstance(st, s.Layer):
            continue
        if st.activation not in ACTIVATIONS:
            report.error(
                f"unknown activation `{st.activation}` for layer `{name}`",
                st.activation_span,
                did_you_mean(st.activation, ACTIVATIONS)
                or f"known: {', '.join(ACTIVATIONS)}; or write `NAME = f(...)`",
            )
        for key, value, span in st.options:
            _check_option(name, key, value, span, report)
        for src in st.sources:
            if not isinstance(src, s.Ref) or not sizes.decls.is_tokens(src.name):
                if sizes.expr(src, report) == SCALAR:
                    report.error(
                        f"source `{s.show(src)}` of layer `{name}` is a plain number",
                        src.span,
                        "a layer's bias already adds a learned constant",
                    )


def _check_option(layer: str, key: str, value: str | float, span: Span, report: Reporter) -> None:
    if key not in s.LAYER_OPTIONS:
        report.error(
            f"unknown option `{key}` for layer `{layer}`",
            span,
            did_you_mean(key, s.LAYER_OPTIONS) or f"options: {', '.join(s.LAYER_OPTIONS)}",
        )
        return
    allowed = s.LAYER_OPTIONS[key]
    shown = f"{value:g}" if isinstance(value, float) else value
    if allowed is None:
        if not isinstance(value, float) or not 0 <= value < 1:
            report.error(f"`{key}` must be a number in [0, 1), not {shown}", span)
    elif str(value) not in allowed:
        report.error(f"`{key}={shown}` is not an option", span, f"use one of: {', '.join(allowed)}")


def check_params(decls: Declarations, report: Reporter) -> None:
    """Each param starts in a known way or from a number."""
    for st in decls.defs.values():
        if isinstance(st, s.Param) and not isinstance(st.init, float) and st.init not in PARAM_INITS:
            report.error(
                f"param `{st.name}` starts as `{st.init}`, which is not a way to start",
                st.init_span,
                f"write {', '.join(PARAM_INITS)} or a number"
                + (f" ({hint})" if (hint := did_you_mean(st.init, PARAM_INITS)) else ""),
            )


def check_sizes(sizes: Sizes, report: Reporter) -> None:
    """Every expression has one size, the size declared for it; every block input takes what it is bound to."""
    for name, st in sizes.decls.defs.items():
        if isinstance(st, s.Assign):
            _check_assign(name, st, sizes, report)
        elif isinstance(st, Alias):
            _check_alias(name, st, sizes, report)
        elif isinstance(st, s.Layer):
            for src in st.sources:
                if not (isinstance(src, s.Ref) and sizes.decls.is_tokens(src.name)):
                    sizes.expr(src, report)


def _check_assign(name: str, st: s.Assign, sizes: Sizes, report: Reporter) -> None:
    size, declared = sizes.expr(st.expr, report), sizes.of[name]
    if size == SCALAR:
        report.error(
            f"`{name}` is a plain number, not a vector",
            st.span,
            "a node must read another node; write the number where it is used, as in `x + 1`: numbers broadcast",
        )
    elif st.size is not None and size is not None and declared is not None and size != declared:
        report.error(
            f"`{name}` is declared with size {declared} but its expression has size {size}",
            st.expr.span,
            f"make `{name}` a layer to project it, `layer {name}: {declared} <- "
            f"{s.show(st.expr)}`, or declare `{name}: {size}`",
        )


def _check_alias(name: str, st: Alias, sizes: Sizes, report: Reporter) -> None:
    size, declared = sizes.of.get(st.target.name), sizes.of[name]
    if (st.kind == "tokens") != sizes.decls.is_tokens(st.target.name):
        want = "a token input" if st.kind == "tokens" else "a vector"
        report.error(f"block input `{st.name}` needs {want}; `{st.target}` is not", st.span)
    elif size is not None and declared is not None and size != declared:
        report.error(
            f"block input `{st.name}` has size {declared}{st.note} but `{st.target}` has size {size}"
            f"{sizes.origin(st.target)}",
            st.span,
            project(st.target, declared),
        )


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


def _later(ref: s.Ref, k: int) -> s.Ref:
    """`ref` read k steps later: `h[t-2]` -> `h[t-1]` for k = 1; same-step and future reads stay."""
    if ref.delay <= 0:
        return ref
    return s.Ref(ref.name, -(ref.delay - k), ref.span, explicit=ref.delay > k)
