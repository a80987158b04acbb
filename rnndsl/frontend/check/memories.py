"""Memories: takes `Sizes` and the static nodes, gives the memory whose positions each node's value runs
over (one vector per position: a memory input, and what reads one other than through `attend`, which sums
its positions up), reporting the misuse of memories and of `attend`.
"""

from __future__ import annotations

from collections.abc import Mapping

from rnndsl.frontend.check.declare import Declarations
from rnndsl.frontend.check.loops import node_exprs
from rnndsl.frontend.check.shapes import Sizes
from rnndsl.frontend.inline import Alias
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter
from rnndsl.lang.ops import OPS

__all__ = ["node_memories"]

Over = Mapping[str, set[str]]  # node -> the memories whose positions it runs over


def node_memories(sizes: Sizes, static: frozenset[str], report: Reporter) -> dict[str, str]:
    """node -> the memory its value runs over, for the nodes over one; {} without any memory input."""
    decls = sizes.decls
    over = _positions(decls)
    if not over:
        _check_attend_calls(sizes, {}, report)
        return {}
    _check_mixed(sizes, over, static, report)
    _check_reads(decls, over, static, report)
    for out in decls.outputs:
        if over.get(out.name):
            report.error(
                f"`{out.name}` runs over the positions of memory `{sorted(over[out.name])[0]}`: it has one "
                "vector per position, not per step",
                out.span,
                f"output what `attend` gives (`c = attend(score, {out.name})`), or the memory's own network",
            )
    _check_attend_calls(sizes, over, report)
    return {n: sorted(m)[0] for n, m in over.items() if m}


def _positions(decls: Declarations) -> dict[str, set[str]]:
    """node -> the memories whose positions its value runs over (empty sets left out); {} without any
    memory input. A fixed point: the sets only grow."""
    over = {n: {n} for n, st in decls.defs.items() if decls.is_memory(n) and isinstance(st, s.Input)}
    if not over and not any(decls.is_memory(n) for n in decls.defs):
        return {}
    changed = True
    while changed:
        changed = False
        for name, st in decls.defs.items():
            if name in over and isinstance(st, s.Input):
                continue
            found = set().union(*(_over(e, over) for e in node_exprs(st)))
            if found and found != over.get(name):
                over[name] = found
                changed = True
    return over


def _over(expr: s.Expr, over: Over) -> set[str]:
    """The memories an expression's value runs over: `attend` sums its memory's positions up."""

    def step(x: s.Expr, kids: list[set[str]]) -> set[str]:
        if isinstance(x, s.Ref):
            return over.get(x.name, set())
        if isinstance(x, s.Call) and x.fn in OPS and OPS[x.fn].memory:
            return set()
        return set().union(*kids)

    return s.fold(expr, step)


def _check_mixed(sizes: Sizes, over: Over, static: frozenset[str], report: Reporter) -> None:
    """A node over one memory at most; a layer over one reads nothing else; a block input takes a memory
    only where it is declared one."""
    for name, found in over.items():
        st = sizes.decls.defs[name]
        if len(found) > 1:
            report.error(
                f"`{name}` mixes the positions of memories {', '.join(f'`{m}`' for m in sorted(found))}",
                st.span,
                "attend to each memory apart, `c1 = attend(s1, m1)`, then combine what attend gives",
            )
        elif isinstance(st, s.Layer) and name not in static and found:
            (memory,) = found
            report.error(
                f"layer `{name}` projects memory `{memory}` together with values that change at every step",
                st.span,
                "a layer over a memory's positions reads only the memory (it runs once per sequence): "
                "project the step's value with a layer of its own and add them, as in `e = tanh(k + q)`",
            )
        elif isinstance(st, Alias) and st.kind != "memory" and found:
            report.error(
                f"block input `{st.name}` takes a vector at every step, but `{s.show(st.target)}` is "
                f"over the positions of memory `{sorted(found)[0]}`",
                st.span,
                f"declare it `input {st.name.split('.')[-1]}: {sizes.of[name] or 'SIZE'} memory` in the block",
            )


def _check_reads(decls: Declarations, over: Over, static: frozenset[str], report: Reporter) -> None:
    """A memory block input is bound to a memory; a value over positions is read at the same step only,
    and no self-fed input is fed one."""
    for name, st in decls.defs.items():
        if isinstance(st, Alias) and st.kind == "memory" and not over.get(st.target.name):
            report.error(
                f"block input `{st.name}` is a memory, but `{s.show(st.target)}` is not",
                st.span,
                "bind it to a memory input of this network (`input NAME: SIZE memory`)",
            )
        for e in node_exprs(st) + ([st.feed] if isinstance(st, s.Input) and st.feed is not None else []):
            for ref in s.refs(e):
                if over.get(ref.name) and ref.offset != 0 and ref.name not in static:
                    report.error(
                        f"`{ref.name}` runs over the positions of memory `{sorted(over[ref.name])[0]}`, "
                        f"so it has no value {'before' if ref.delay > 0 else 'after'} this step",
                        ref.span,
                        f"read `{ref.name}` at the same step, or attend to it and read what attend gives",
                    )
        if isinstance(st, s.Input) and st.feed is not None and _over(st.feed, over):
            report.error(
                f"self-fed input `{name}` is fed a value over a memory's positions",
                st.feed.span,
                "feed it what `attend` gives, one vector per step",
            )


def _check_attend_calls(sizes: Sizes, over: Over, report: Reporter) -> None:
    """`attend(score, values)`: a node's whole value, over one memory, with one score per position."""
    defs = sizes.decls.defs
    whole = {id(st.expr) for st in defs.values() if isinstance(st, s.Assign)}
    places = [e for st in defs.values() for e in node_exprs(st)]
    places += [st.feed for st in defs.values() if isinstance(st, s.Input) and st.feed]
    places += [st.expr for st in sizes.decls.inits.values() if st.expr is not None]
    for top in places:
        for call in s.walk(top):
            if isinstance(call, s.Call) and call.fn in OPS and OPS[call.fn].memory and len(call.args) == 2:
                if id(call) not in whole:
                    report.error(
                        f"`{call.fn}(...)` must be the whole value of a node, so its weights have a name",
                        call.span,
                        f"write `c = {s.show(call)}` and read `c` here",
                    )
                _check_attend(call, sizes, over, report)


def _check_attend(call: s.Call, sizes: Sizes, over: Over, report: Reporter) -> None:
    score, values = call.args
    found = _over(values, over)
    if not found:
        report.error(
            f"`{call.fn}` weighs the positions of a memory, and `{s.show(values)}` is not over one",
            values.span,
            "declare the sequence to attend to as `input NAME: SIZE memory` (in a model, bind it to "
            "an encoder's every-step output), and attend to it or a projection of it",
        )
    elif _over(score, over) != found:
        mem = sorted(found)[0]
        report.error(
            f"the score `{s.show(score)}` must give one number per position of memory `{mem}`",
            score.span,
            f"compute it from the memory, as in `dot({s.show(values)}, q)` or "
            f"`dot(v, tanh(k + q))` with `layer k: N <- {mem}`",
        )
    elif (size := sizes.expr(score)) not in (None, 1):
        report.error(
            f"the score `{s.show(score)}` has size {size} at each position; attention needs one number",
            score.span,
            f"reduce it: `sum(...)`, `dot(v, ...)` with `param v: {size}`, or `dot(k, q)`",
        )
