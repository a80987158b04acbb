"""Boundaries: takes `Sizes` (and through them the `Declarations`), gives nothing but diagnostics about what
lies at the network's edges: each `init` (the value before the first step) names a node that has one and
reads only static inputs and numbers; each `output` names a visible node that can be one.
"""

from __future__ import annotations

from rnndsl.frontend.check.declare import Declarations, Hints
from rnndsl.frontend.check.references import check_calls
from rnndsl.frontend.check.shapes import Sizes
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter
from rnndsl.lang.ops import STEP

__all__ = ["check_inits", "check_outputs"]


def check_inits(sizes: Sizes, hints: Hints, report: Reporter) -> None:
    decls = sizes.decls
    for name, st in decls.inits.items():
        if name not in decls.defs:
            if not decls.in_failed_block(name):
                report.error(f"`init {name}`: no node `{name}`", st.span, hints(name, decls.defs))
        elif isinstance(decls.defs[name], s.Param):
            report.error(
                f"`init {name}`: `{name}` is a param, the same at every step, so it has no initial value",
                st.span,
                f"say how it starts where it is declared: `param {name}: {sizes.of[name]} = ones`",
            )
        elif decls.is_tokens(name):
            _check_token_init(name, st, sizes, report)
        elif st.expr is not None:
            _check_init_expr(name, st.expr, decls, hints, report)


def _check_init_expr(name: str, expr: s.Expr, decls: Declarations, hints: Hints, report: Reporter) -> None:
    """An init expression reads static inputs and numbers only, and not the clock."""
    for ref in s.refs(expr):
        st = decls.defs.get(ref.name)
        if st is None:
            report.error(
                f"unknown name `{ref.name}` in `init {name}`",
                ref.span,
                hints(ref.name, ["zeros", "learned", *decls.defs])
                or "write zeros, learned, or an expression of static inputs",
            )
        elif not (isinstance(st, s.Input) and st.kind == "static") or ref.explicit:
            report.error(
                f"`init {name}` may only read static inputs and numbers, not `{ref}`",
                ref.span,
                "declare a vector input as `input NAME: SIZE static`",
            )
    for clock in (e for e in s.walk(expr) if isinstance(e, s.Call) and e.fn in STEP):
        report.error(
            f"`init {name}` is the value before the first step, and `{s.show(clock)}` changes with the step",
            clock.span,
            f"write a number or an expression of static inputs; read the clock in `{name}` itself",
        )
    check_calls(expr, report)


def _check_token_init(name: str, st: s.Init, sizes: Sizes, report: Reporter) -> None:
    """A token input starts from "no token" (`zeros`, a zero vector) or from a token id."""
    vocab = sizes.of[name] or 0
    value = st.expr.value if isinstance(st.expr, s.Num) else None
    if st.policy == "zeros" or (value is not None and value == int(value) and 0 <= value < vocab):
        return
    report.error(
        f"token input `{name}` starts from a token id in [0, {vocab}) or from zeros (no token)",
        st.span,
        f"write `init {name} = 0` (a start token) or `init {name} = zeros`",
    )


def check_outputs(decls: Declarations, hints: Hints, report: Reporter) -> None:
    seen: set[str] = set()
    for out in decls.outputs:
        if decls.in_failed_block(out.name) or out.name in decls.bad_names:
            pass  # reported where the block or the name is
        elif out.name not in decls.defs or not decls.visible(out.name):
            report.error(
                f"output `{out.name}` is not defined",
                out.span,
                hints(out.name) or "output one of the network's nodes",
            )
        elif out.name in seen:
            report.error(f"`output {out.name}` is given twice", out.span)
        elif decls.is_tokens(out.name):
            report.error(f"token input `{out.name}` cannot be an output", out.span)
        elif isinstance(decls.defs[out.name], s.Param):
            report.error(
                f"param `{out.name}` cannot be an output: it is a learned parameter, the same at every step",
                out.span,
                f"read it as `net.param({out.name!r})`, or output a node that uses it",
            )
        seen.add(out.name)
    if not decls.outputs:
        net = decls.network
        report.error(
            f"network `{net.name}` has no output",
            net.span,
            "add `output NAME` (every step) or `output NAME last` (the last step)",
        )
