"""Sizes: takes a generic network (`network Cell(H) { ... }`) and the sizes a `use` gives it, gives the network
with every size a number; checks once per network the sizes it declares and the sizes it writes.

A size is a whole number, or a network's size parameters and whole numbers joined by + - * (`2 * H + 1`).
It is evaluated here, over Python integers, from the syntax tree: no text is ever evaluated. `inline`
calls `given` and `bind` at each `use` of a generic block (a block used at two sizes is two different
expansions); `check` calls `check_declaration` once per network, so an error in a generic block's
declaration is reported once however many times it is used.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator, Mapping

from rnndsl.frontend.names import RESERVED, check_name, did_you_mean
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Diagnostic, Reporter, Source
from rnndsl.lang.ops import ACTIVATIONS

__all__ = [
    "MAX_SIZE",
    "asked_directly",
    "bind",
    "check_declaration",
    "evaluate",
    "example_use",
    "explain",
    "given",
    "never_given",
    "used_with",
]

MAX_SIZE = 1 << 20  # the widest node; sizes given to a generic block are held to it too
_SHOWN = 10**18  # values above this are only said to be far above the limit (a product can have 10^5 digits)
_RULE = "a size is whole numbers and size names joined by + - *, as in `2 * H + 1`"


def evaluate(size: s.Expr, env: Mapping[str, int]) -> int | None:
    """The value of a size expression, or None where it reads a name `env` lacks or has a part no size may
    have (a function, `/`, a delay, a fraction: reported by `check_declaration`).

    >>> evaluate(s.BinOp("+", s.BinOp("*", s.Num(2.0), s.Ref("H")), s.Num(1.0)), {"H": 64})
    129
    >>> evaluate(s.Ref("X"), {"H": 64}) is None
    True
    """

    def value(e: s.Expr, kids: list[int | None]) -> int | None:
        if isinstance(e, s.Num):
            return int(e.value) if e.value == int(e.value) else None
        if isinstance(e, s.Ref):
            return None if e.explicit else env.get(e.name)
        if isinstance(e, s.BinOp) and e.op in "+-*" and None not in kids:
            a, b = kids
            assert a is not None and b is not None
            return a + b if e.op == "+" else a - b if e.op == "-" else a * b
        return None

    return s.fold(size, value)


def _bad_part(size: s.Expr) -> s.Expr | None:
    """The first part of `size` that no size may have: a function, a negation, `/`, a delay, a fraction."""
    for e in s.walk(size):
        if isinstance(e, (s.Call, s.Neg)) or (isinstance(e, s.BinOp) and e.op == "/"):
            return e
        if (isinstance(e, s.Ref) and e.explicit) or (isinstance(e, s.Num) and e.value != int(e.value)):
            return e
    return None


def _statement_sizes(st: s.Stmt) -> Iterator[s.Expr]:
    """The sizes a statement writes with a name or an operator (a plain number is a float, checked as one)."""
    size = getattr(st, "size", None) if isinstance(st, (s.Input, s.Param, s.Layer, s.Assign)) else None
    if size is not None and not isinstance(size, float):
        yield size


def _size_args(use: s.Use, decls: Mapping[str, s.NetworkDecl]) -> list[tuple[str, s.Expr, s.Span]]:
    """The arguments of a `use` that give sizes: those named as a size of the generic block it uses (and not
    as one of its inputs too: that clash is reported where the block is declared)."""
    block = decls.get(use.network)
    if block is None:
        return []
    names = {n for n, _ in block.sizes} - {st.name for st in block.body if isinstance(st, s.Input)}
    return [arg for arg in use.args if arg[0] in names]


# ---- declarations ------------------------------------------------------------------------------------


def check_declaration(decl: s.NetworkDecl, decls: Mapping[str, s.NetworkDecl], report: Reporter) -> None:
    """Check what a network declares and writes about sizes, once: its size parameters' names (each once, none
    an input's name), and every size it writes (in a statement, or given to a generic block it uses) reads
    only its own size parameters, whole numbers and + - *."""
    declared: dict[str, s.Span] = {}
    inputs = {st.name: st for st in decl.body if isinstance(st, s.Input)}
    for name, span in decl.sizes:
        if name in declared:
            report.error(
                f"size `{name}` is declared twice in `{decl.name}` (first at {declared[name]})",
                span,
                "give each size its own name",
            )
            continue
        declared[name] = span
        if "." in name:
            report.error(f"`{name}`: a size's name cannot contain '.'", span, f"call it `{name.replace('.', '_')}`")
        elif name in RESERVED:
            report.error(f"`{name}` is a reserved word and cannot name a size", span, f"call it `{name}_`")
        elif check_name(name, span, report) and name in inputs:
            report.error(
                f"size `{name}` of `{decl.name}` has the name of its input `{name}` (at {inputs[name].span})",
                span,
                f"rename one of them: a `use` gives sizes and inputs by name, side by side, as in "
                f"`use b = {decl.name}({name} = ...)`",
            )
    for st in decl.body:
        for size in _statement_sizes(st):
            _check_size(size, st, decl, report)
        if isinstance(st, s.Use):
            for _, expr, _ in _size_args(st, decls):
                if not isinstance(expr, s.Num):  # a plain number is checked where it is given (`given`)
                    _check_size(expr, st, decl, report)


def _check_size(size: s.Expr, st: s.Stmt, decl: s.NetworkDecl, report: Reporter) -> None:
    bad = _bad_part(size)
    if isinstance(bad, s.Num):
        report.error(f"`{s.show(bad)}` is not a whole number", bad.span, _RULE)
    elif bad is not None:
        report.error(f"`{s.show(bad)}` cannot stand in a size", bad.span, _RULE)
    declared = [n for n, _ in decl.sizes]
    for ref in s.refs(size):
        if ref.name not in declared and not ref.explicit:
            _unknown_size(ref, size, st, decl, declared, report)


def _unknown_size(
    ref: s.Ref, size: s.Expr, st: s.Stmt, decl: s.NetworkDecl, declared: list[str], report: Reporter
) -> None:
    if isinstance(st, s.Layer) and size is ref and st.activation == "identity" and ref.name in ACTIVATIONS:
        report.error(
            f"layer `{st.name}` has no size: `{ref.name}` is an activation",
            ref.span,
            f"write the size before it: `layer {st.name}: 64 {ref.name} <- ...`",
        )
    elif declared:
        report.error(
            f"unknown size `{ref.name}`: the sizes of `{decl.name}` are {', '.join(declared)}",
            ref.span,
            did_you_mean(ref.name, declared)
            or f"declare it after the network's name: `network {decl.name}({', '.join([*declared, ref.name])})`",
        )
    else:
        report.error(
            f"unknown size `{ref.name}`: network `{decl.name}` has no size parameters",
            ref.span,
            f"write a whole number, or declare the size after the network's name: `network {decl.name}({ref.name})`",
        )


# ---- a use: the sizes it gives, and the block bound to them ------------------------------------------


def given(use: s.Use, block: s.NetworkDecl, env: Mapping[str, int], report: Reporter) -> dict[str, int] | None:
    """The sizes `use` gives the generic `block`, evaluated over `env` (the sizes of the network that writes
    the `use`), or None when one is missing, unknown, given twice or not a positive whole number (reported).
    An argument that is neither a size nor an input of the block is reported here too."""
    sizes = [n for n, _ in block.sizes]
    inputs = [st.name for st in block.body if isinstance(st, s.Input)]
    out: dict[str, int] = {}
    seen: set[str] = set()
    ok = True
    for name, expr, span in use.args:
        if name in inputs:
            continue
        if name not in sizes:
            ok = False
            report.error(
                f"`{block.name}` has no size or input `{name}`",
                span,
                did_you_mean(name, [*sizes, *inputs])
                or f"its sizes are: {', '.join(sizes)}; its inputs are: {', '.join(inputs) or 'none'}",
            )
        elif name in seen:
            ok = False
            report.error(f"size `{name}` given twice to `{block.name}`", span, "give each size once")
        else:
            seen.add(name)
            value = _given_value(name, expr, span, block, env, report)
            if value is None:
                ok = False
            else:
                out[name] = value
    for name in sizes:
        if all(n != name for n, _, _ in use.args):
            ok = False
            report.error(
                f"`use {use.name} = {block.name}(...)` does not give size `{name}`",
                use.span,
                f"add `{name} = ...`, a whole number, to the argument list",
            )
    return out if ok else None


def _given_value(
    name: str, expr: s.Expr, span: s.Span, block: s.NetworkDecl, env: Mapping[str, int], report: Reporter
) -> int | None:
    """The value of one size given at a use, or None (reported, or reported where the size is written)."""
    what = f"size `{name}` given to `{block.name}`"
    if isinstance(expr, s.Num):
        if expr.value != int(expr.value) or expr.value < 1:
            report.error(f"{what} must be a positive whole number, not {expr.value:g}", span, f"write `{name} = 64`")
            return None
        value = int(expr.value)
    else:
        found = evaluate(expr, env)
        if found is None:
            return None  # a name or a part no size may have: reported by check_declaration
        value = found
        if value < 1:
            report.error(
                f"{what} is `{s.show(expr)}` = {value}{_with(expr, env)}, not a positive whole number",
                span,
                "a size is at least 1: give a larger one",
            )
            return None
    if value > MAX_SIZE:
        report.error(f"{what} is {_number(value)}, above the limit of {MAX_SIZE:,}", span, "give a smaller size")
        return None
    return value


def bind(decl: s.NetworkDecl, sizes: Mapping[str, int], report: Reporter) -> s.NetworkDecl:
    """`decl` with every size it writes evaluated over `sizes`: a network with no sizes left to give.

    A size that reads an undeclared name stays as written (reported by `check_declaration`); one that comes
    out below 1 or above MAX_SIZE stays too, reported here with the values that made it, and the checker,
    which takes only numbers, says nothing more about it."""
    if not decl.sizes and not any(True for st in decl.body for _ in _statement_sizes(st)):
        return decl

    def number(size: s.Size, st: s.Stmt) -> s.Size:
        if isinstance(size, float):
            return size
        value = evaluate(size, sizes)
        if value is None:
            return size
        name = getattr(st, "name", "")
        written = f"size of `{name}` is `{s.show(size)}` = {_number(value)}{_with(size, sizes)}"
        if value < 1:
            report.error(
                f"{written}, not a positive whole number",
                size.span,
                f"use `{decl.name}` with sizes that keep it at least 1, or write it another way",
            )
            return size
        if value > MAX_SIZE:
            report.error(f"{written}, above the limit of {MAX_SIZE:,}", size.span, "give it a smaller size")
            return size
        return float(value)

    body = tuple(
        dataclasses.replace(st, size=number(st.size, st))
        if isinstance(st, (s.Input, s.Param, s.Layer, s.Assign)) and st.size is not None
        else st
        for st in decl.body
    )
    return dataclasses.replace(decl, body=body, sizes=(), given=tuple(sizes.items()))


def explain(size: s.Size, env: Mapping[str, int]) -> str:
    """How a block input's size came about, for a message: ` (H = 128)`, ` (2 * H with H = 128)`; empty for
    a size written as a number."""
    if isinstance(size, float):
        return ""
    if isinstance(size, s.Ref) and size.name in env:
        return f" ({size.name} = {env[size.name]})"
    return f" ({s.show(size)}{_with(size, env)})"


def _with(size: s.Expr, env: Mapping[str, int]) -> str:
    names = list(dict.fromkeys(r.name for r in s.refs(size) if r.name in env))
    return f" with {', '.join(f'{n} = {env[n]}' for n in names)}" if names else ""


def _number(value: int) -> str:
    return f"{value:,}" if abs(value) <= _SHOWN else ("far above" if value > 0 else "far below") + " 10^18"


# ---- generic networks as a whole ---------------------------------------------------------------------


def example_use(decl: s.NetworkDecl) -> str:
    """A `use` of the generic `decl` with sizes given, for a help line: `use cell = Cell(H = 64, x = ...)`."""
    args = [f"{n} = 64" for n, _ in decl.sizes] + [f"{st.name} = ..." for st in decl.body if isinstance(st, s.Input)]
    return f"use {decl.name.lower()} = {decl.name}({', '.join(args)})"


def asked_directly(decl: s.NetworkDecl, source: Source) -> Diagnostic:
    """A generic network asked for by name (`rnndsl.compile(path, network="Cell")`): say how to give sizes."""
    return Diagnostic(
        f"network `{decl.name}` is generic: its sizes ({', '.join(n for n, _ in decl.sizes)}) are given where "
        "it is used, so it cannot be compiled or loaded by itself",
        decl.name_span,
        source,
        hint=f"load a network that uses it with its sizes given, as in `{example_use(decl)}`",
    )


def never_given(program: s.Program, report: Reporter) -> None:
    """A file whose every network is generic has nothing to check or compile: say how to give sizes."""
    if program.networks and all(n.generic for n in program.networks):
        first = program.networks[0]
        report.error(
            f"network `{first.name}` is generic, and no network in this file gives it sizes",
            first.name_span,
            f"add a network that uses it, as in `{example_use(first)}`: a generic network is checked and "
            "compiled where it is used",
        )


def used_with(program: s.Program, max_depth: int = 16) -> dict[str, list[dict[str, int]]]:
    """For each generic network, the distinct sizes the file's other networks use it with (through generic
    blocks too), in the order first met; unused ones map to []. For `rnndsl check`'s summary."""
    decls = {n.name: n for n in program.networks}
    found: dict[str, list[dict[str, int]]] = {n.name: [] for n in program.networks if n.generic}
    seen: set[tuple[str, tuple[tuple[str, int], ...]]] = set()
    queue: deque[tuple[str, tuple[tuple[str, int], ...], int]]
    queue = deque((n.name, (), 0) for n in program.networks if not n.generic)
    while queue:
        name, env, depth = queue.popleft()
        if (name, env) in seen or depth > max_depth:
            continue
        seen.add((name, env))
        for st in decls[name].body:
            block = decls.get(st.network) if isinstance(st, s.Use) else None
            if block is None or not isinstance(st, s.Use):
                continue
            sizes = {n: evaluate(e, dict(env)) for n, e, _ in _size_args(st, decls)}
            if any(v is None for v in sizes.values()) or len(sizes) != len(block.sizes):
                continue
            binding = {n: v for n, v in sizes.items() if v is not None}
            if block.generic and binding not in found[block.name]:
                found[block.name].append(binding)
            queue.append((block.name, tuple(binding.items()), depth + 1))
    return found
