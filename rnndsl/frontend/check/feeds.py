"""Feeds: takes `Sizes` and the static nodes, gives nothing but diagnostics about self-fed inputs: each is
fed what the network computed before, of its own size; a token input picks its ids from a distribution.
"""

from __future__ import annotations

from rnndsl.frontend.check.declare import Declarations
from rnndsl.frontend.check.shapes import SCALAR, Sizes, project
from rnndsl.frontend.inline import Alias
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter
from rnndsl.lang.ops import FEED_FUNCTIONS, POSITIVE

__all__ = ["check_feeds"]


def check_feeds(sizes: Sizes, static: frozenset[str], report: Reporter) -> None:
    """A self-fed input takes what the network computed before: its value reads only the past."""
    for name, st in sizes.decls.defs.items():
        if not isinstance(st, s.Input) or st.feed is None:
            continue
        if st.kind in ("static", "memory"):
            report.error(
                f"{st.kind} input `{name}` cannot be fed back: it is one value per sequence",
                st.feed.span,
                f"drop `{st.kind}`, or drop the `= ...`",
            )
            continue
        _check_reads_past(name, st.feed, sizes.decls, static, report)
        picks = isinstance(st.feed, s.Call) and st.feed.fn in FEED_FUNCTIONS
        if st.kind == "tokens":
            _check_token_feed(name, st.feed, sizes, report)
        elif picks:
            assert isinstance(st.feed, s.Call)
            report.error(
                f"`{st.feed.fn}` gives token ids; input `{name}` takes vectors of size {sizes.of[name]}",
                st.feed.span,
                f"declare `input {name}: tokens({sizes.of[name]})`, or feed a vector such as `y[t-1]`",
            )
        else:
            _check_vector_feed(name, st.feed, sizes, report)


def _check_reads_past(name: str, feed: s.Expr, decls: Declarations, static: frozenset[str], report: Reporter) -> None:
    for ref in s.refs(feed):
        if ref.name in static and ref.explicit:  # as everywhere else: a static value has no past of its own
            what = "a param" if isinstance(decls.defs.get(ref.name), s.Param) else "static"
            report.error(
                f"`{ref.name}` is {'a memory' if decls.is_memory(ref.name) else what} (the same at every step); "
                "read it without a delay",
                ref.span,
                f"write `{ref.name}`",
            )
        elif ref.name in decls.defs and ref.delay <= 0 and ref.name not in static:
            when = "at the same step" if ref.delay == 0 else "in the future"
            report.error(
                f"self-fed input `{name}` reads `{ref}` {when}; it is fed what the network computed before",
                ref.span,
                f"write `{ref.name}[t-1]`",
            )


def _check_token_feed(name: str, feed: s.Expr, sizes: Sizes, report: Reporter) -> None:
    """A token input is fed `sample(...)` or `argmax(...)` of one vector as wide as its vocabulary."""
    vocab = sizes.of[name]
    if not (isinstance(feed, s.Call) and feed.fn in FEED_FUNCTIONS):
        report.error(
            f"token input `{name}` is fed token ids: pick them from a distribution",
            feed.span,
            f"write `= sample(softmax(...))` or `= argmax(...)` of a vector of size {vocab}",
        )
        return
    if len(feed.args) != 1:
        report.error(f"`{feed.fn}` takes one vector, not {len(feed.args)}", feed.span)
        return
    (arg,) = feed.args
    if feed.fn == "sample" and not _positive(arg, sizes.decls, set()):
        report.error(
            f"`sample` draws from a distribution, and `{s.show(arg)}` may be negative or all zero",
            arg.span,
            f"write `sample(softmax({s.show(arg)}))`: softmax turns scores into a distribution",
        )
    size = sizes.expr(arg, report)
    if size is not None and vocab is not None and size != vocab:
        shown = "a plain number" if size == SCALAR else f"size {size}"
        report.error(
            f"`{s.show(arg)}` has {shown}; token input `{name}` picks from {vocab} tokens",
            arg.span,
            _feed_fix(arg, size, vocab),
        )


def _check_vector_feed(name: str, feed: s.Expr, sizes: Sizes, report: Reporter) -> None:
    size, wanted = sizes.expr(feed, report), sizes.of[name]
    if size is not None and wanted is not None and size != wanted:
        shown = "a plain number" if size == SCALAR else f"size {size}"
        report.error(
            f"input `{name}` has size {wanted} but is fed `{s.show(feed)}` of {shown}",
            feed.span,
            _feed_fix(feed, size, wanted),
        )


def _feed_fix(expr: s.Expr, size: int, wanted: int) -> str:
    """The help line of a feed of the wrong size (a plain number cannot be projected: it has no size)."""
    fix = f"feed it a vector of size {wanted}"
    return fix if size == SCALAR else f"{fix}: {project(expr, wanted, feed=True)}"


def _positive(expr: s.Expr, decls: Declarations, seen: set[str]) -> bool:
    """Whether every entry of `expr` is provably > 0, so that `sample` can normalise it: softmax, sigmoid,
    exp and softplus (as functions or layer activations), positive numbers, and sums, products,
    quotients, min, max and concat of those, through the nodes that compute them."""
    if isinstance(expr, s.Num):
        return expr.value > 0
    if isinstance(expr, s.Ref):
        st = decls.defs.get(expr.name)
        if st is None or expr.name in seen:
            return False
        seen = seen | {expr.name}
        if isinstance(st, s.Layer):
            return st.activation in POSITIVE
        if isinstance(st, s.Assign):
            return _positive(st.expr, decls, seen)
        return isinstance(st, Alias) and _positive(st.target, decls, seen)
    if isinstance(expr, s.BinOp):
        return expr.op != "-" and _positive(expr.left, decls, seen) and _positive(expr.right, decls, seen)
    if isinstance(expr, s.Call) and expr.fn in POSITIVE:
        return True
    if isinstance(expr, s.Call) and expr.fn in ("min", "concat"):
        return all(_positive(a, decls, seen) for a in expr.args)
    if isinstance(expr, s.Call) and expr.fn == "max":
        return any(_positive(a, decls, seen) for a in expr.args)
    return False
