"""References: takes `Declarations`, gives nothing but diagnostics: every name read is defined and visible,
every delay is a whole number of steps within the limit, every call names a known function with its
arguments (`check_calls`, which the inits' check uses too).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from rnndsl.frontend.check.declare import Declarations, Hints
from rnndsl.frontend.inline import Alias
from rnndsl.frontend.names import did_you_mean
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter, Span
from rnndsl.lang.ops import FEED_FUNCTIONS, OPS, TOKEN_FUNCTIONS

__all__ = ["MAX_DELAY", "check_calls", "check_references"]

MAX_DELAY = 1000


def check_references(decls: Declarations, hints: Hints, report: Reporter) -> None:
    """Every reference and call in the definitions, in definition order."""
    own = {id(r) for st in decls.network.body for r in _stmt_refs(st)}
    for owner, expr in _exprs(decls):
        for ref in s.refs(expr):
            _check_ref(ref, id(ref) in own, decls, hints, report)
        st = decls.defs[owner]
        if isinstance(st, s.Input) and isinstance(expr, s.Call) and expr.fn in FEED_FUNCTIONS:
            for arg in expr.args:  # `sample(...)` is the whole value of a self-fed input: checked there
                check_calls(arg, report)
        else:
            check_calls(expr, report)


def _exprs(decls: Declarations) -> Iterator[tuple[str, s.Expr]]:
    for name, st in decls.defs.items():
        yield from ((name, e) for e in ((st.target,) if isinstance(st, Alias) else s.exprs(st)))


def _stmt_refs(st: s.Stmt) -> list[s.Ref]:
    """The references written in a statement of the network itself (inits and feeds are checked apart)."""
    return [r for e in s.exprs(st) for r in s.refs(e)] if isinstance(st, (s.Layer, s.Assign, s.Use)) else []


def _check_ref(ref: s.Ref, own: bool, decls: Declarations, hints: Hints, report: Reporter) -> None:
    if ref.name not in decls.defs and decls.in_failed_block(ref.name):
        return
    if ref.name not in decls.defs:
        report.error(
            f"unknown name `{ref.name}`",
            ref.span,
            hints(ref.name) or "define it with input, layer or `NAME = ...`",
        )
        return
    if own and not decls.visible(ref.name):
        inst = ref.name.split(".")[0]
        exp = decls.exports.get(inst)
        outs = ", ".join(sorted(n.split(".", 1)[1] for n in exp.names)) if exp else "none"
        report.error(
            f"`{ref.name}` is inside block `{inst}`, not one of its outputs",
            ref.span,
            f"the outputs of `{inst}` are: {outs}",
        )
    _check_delay(ref, report)


def _check_delay(ref: s.Ref, report: Reporter) -> None:
    k = ref.offset
    if ref.explicit and k == 0:
        written = f"{ref.name}[t{'-' if math.copysign(1, k) < 0 else '+'}0]"  # `x[t-0]` parses as -0.0
        report.error(
            f"`{written}` has a delay of 0",
            ref.span,
            f"write `{ref.name}` for the same step, or `{ref.name}[t-1]` for the previous one",
        )
    elif k != int(k):
        report.error(
            f"`{ref}`: a delay must be a whole number of steps",
            ref.span,
            f"write `{ref.name}[t-{max(1, round(abs(k)))}]`",
        )
    elif abs(k) > MAX_DELAY:
        report.error(
            f"`{ref.name}` is read {abs(int(k))} steps away, above the limit of {MAX_DELAY}",
            ref.span,
            "a delay this long keeps that many copies of the value in memory",
        )


def check_calls(expr: s.Expr, report: Reporter) -> None:
    """Every call in `expr`, outermost first: a known function with the arguments it takes."""
    for call in s.walk(expr):
        if isinstance(call, s.Call):
            _check_call(call, report)


def _check_call(call: s.Call, report: Reporter) -> None:
    fn, args = call.fn, call.args
    if fn in TOKEN_FUNCTIONS:
        if len(args) != 1 or not isinstance(args[0], s.Ref):
            report.error(f"`{fn}` takes one token input by name", call.span, TOKEN_FUNCTIONS[fn])
    elif fn in FEED_FUNCTIONS:
        report.error(
            f"`{fn}` gives a token id, so it can only be the whole value of a self-fed token input",
            call.span,
            FEED_FUNCTIONS[fn],
        )
    elif fn not in OPS:
        report.error(
            f"unknown function `{fn}`",
            call.span,
            did_you_mean(fn, [*OPS, *TOKEN_FUNCTIONS]) or "see docs/language.md for the functions the language knows",
        )
    elif OPS[fn].literal and not args:
        end = Span(call.span.end_line, max(1, call.span.end_column - 1))  # the `)`, where it goes
        report.error(
            f"`{fn}` needs its {OPS[fn].literal}, a whole number of steps", end, f"write `{fn}(2)` for every other step"
        )
    elif OPS[fn].arity > 0 and len(args) != OPS[fn].arity:
        n = OPS[fn].arity
        report.error(f"`{fn}` takes {n} argument{'s' if n > 1 else ''}, not {len(args)}", call.span)
    elif not args:
        report.error(f"`{fn}` needs at least one argument", call.span)
    elif OPS[fn].literal:
        _check_literal(call, report)


def _check_literal(call: s.Call, report: Reporter) -> None:
    """The argument of `every(k)` is a whole number of steps >= 1 written in the spec: `k` is fixed
    when the network is built (it sets which steps tick), never a value computed at run time."""
    what, (arg,) = OPS[call.fn].literal, call.args
    value = arg.value if isinstance(arg, s.Num) else None
    if isinstance(arg, s.Neg) and isinstance(arg.operand, s.Num):
        value = -arg.operand.value
    if value is None:
        report.error(
            f"the {what} of `{call.fn}` must be a whole number written in the spec, not `{s.show(arg)}`",
            arg.span,
            f"write the number of steps, as in `{call.fn}(2)`: the period is fixed when the network is built",
        )
    elif value != int(value) or value < 1:
        report.error(
            f"the {what} of `{call.fn}` must be a whole number of steps, at least 1, not {value:g}",
            arg.span,
            f"write `{call.fn}({max(1, round(abs(value)))})`",
        )
