"""Inline: takes a parsed `Program`, gives each network's statements with every `use` expanded.

`use b = Block(x = e)` copies Block's statements under the prefix `b.`; Block's input `x` becomes the
node `b.x = e` (or, when `e` is a plain reference, every `b.x[t+k]` is rewritten to read that name
directly, which keeps token inputs usable). Outside the block only Block's outputs may be read, as `b.h`.
A generic block (`network Cell(H)`) is first bound to the sizes its `use` gives (`sizes.bind`), so each
use at other sizes is its own expansion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rnndsl.frontend import sizes
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter, Span

__all__ = ["inline", "MAX_NESTING", "MAX_INLINED"]

MAX_NESTING = 16
MAX_INLINED = 10_000  # statements after expansion: a block used twice per level doubles at every level


def inline(program: s.Program, net: s.NetworkDecl, report: Reporter) -> list[s.Stmt | Alias | Exports]:
    """Expand every `use` in `net`, recursively, reporting unknown or recursive blocks."""
    decls = {n.name: n for n in program.networks}
    size = _expanded_size(net.name, decls, {}, ())
    if size > MAX_INLINED and not any(isinstance(st, s.Use) for st in net.body):
        report.error(
            f"network `{net.name}` has {size:,} statements, above the limit of {MAX_INLINED:,}",
            net.span,
            "rnndsl compiles networks of at most that many statements",
        )
    elif size > MAX_INLINED:
        report.error(
            f"network `{net.name}` expands to {size:,} statements through its `use` blocks, above the "
            f"limit of {MAX_INLINED:,}",
            net.span,
            "use fewer blocks, or blocks with fewer statements",
        )
        return [
            _Exports(st.name, st.network, frozenset(), st.span, failed=True) if isinstance(st, s.Use) else st
            for st in net.body
        ]
    return _expand(sizes.bind(net, {}, report), decls, report, (net.name,), {})


def _expanded_size(name: str, decls: dict[str, s.NetworkDecl], memo: dict[str, int], stack: tuple[str, ...]) -> int:
    """How many statements `name` expands to, counted without expanding (unknown or recursive uses: 0)."""
    decl = decls.get(name)
    if name in memo or decl is None or name in stack or len(stack) > MAX_NESTING:
        return memo.get(name, 0)
    total = sum(
        _expanded_size(st.network, decls, memo, (*stack, name)) if isinstance(st, s.Use) else 1 for st in decl.body
    )
    memo[name] = total
    return total


def _expand(
    net: s.NetworkDecl,
    decls: dict[str, s.NetworkDecl],
    report: Reporter,
    stack: tuple[str, ...],
    memo: dict[tuple[str, tuple[tuple[str, int], ...]], list[s.Stmt | Alias | Exports]],
) -> list[s.Stmt | Alias | Exports]:
    out: list[s.Stmt | Alias | Exports] = []
    instances: dict[str, Span] = {}
    for stmt in net.body:
        if not isinstance(stmt, s.Use):
            out.append(stmt)
            continue
        if stmt.name in instances:
            report.error(
                f"`use {stmt.name}` is given twice (first at {instances[stmt.name]})",
                stmt.span,
                "give each use its own name, as in `use l1 = ...` and `use l2 = ...`",
            )
            continue
        instances[stmt.name] = stmt.span
        block = _block(stmt, decls, report, stack)
        given = None if block is None or not block.generic else sizes.given(stmt, block, dict(net.given), report)
        if block is None or (block.generic and given is None):
            # reported; mark the use as failed, so that reading `b.h` is not reported again
            out.append(_Exports(stmt.name, stmt.network, frozenset(), stmt.span, failed=True))
            continue
        notes: dict[str, str] = {}
        if given is not None:  # the sizes are not inputs: the block is bound to them instead
            notes = {st.name: sizes.explain(st.size, given) for st in block.body if isinstance(st, s.Input)}
            stmt = dataclasses.replace(stmt, args=tuple(a for a in stmt.args if a[0] not in given))
        bound = sizes.bind(block, given or {}, report)
        out.extend(_instantiate(stmt, _expand_block(bound, decls, report, stack, memo), report, notes))
    return out


def _expand_block(
    block: s.NetworkDecl,
    decls: dict[str, s.NetworkDecl],
    report: Reporter,
    stack: tuple[str, ...],
    memo: dict[tuple[str, tuple[tuple[str, int], ...]], list[s.Stmt | Alias | Exports]],
) -> list[s.Stmt | Alias | Exports]:
    """A block's expanded body, computed once per network and sizes: a block used n times is expanded once,
    not n times at every level. A body with errors is not kept (its messages depend on the chain of uses)."""
    key = (block.name, block.given)
    if key in memo:
        return memo[key]
    before = len(report.errors)
    body = _expand(block, decls, report, (*stack, block.name), memo)
    if len(report.errors) == before:
        memo[key] = body
    return body


def _block(
    use: s.Use, decls: dict[str, s.NetworkDecl], report: Reporter, stack: tuple[str, ...]
) -> s.NetworkDecl | None:
    """The network a `use` names, or None (reported) when it is unknown, recursive or nested too deep."""
    block = decls.get(use.network)
    if block is None:
        from rnndsl.frontend.names import did_you_mean

        report.error(
            f"unknown network `{use.network}` in `use {use.name}`",
            use.network_span,
            did_you_mean(use.network, decls) or f"networks in this file: {', '.join(decls)}",
        )
    elif use.network in stack:
        chain = " -> ".join((*stack, use.network))
        report.error(
            f"network `{use.network}` uses itself ({chain})",
            use.network_span,
            "a block cannot contain itself; feed its output back with a delay instead",
        )
    elif len(stack) > MAX_NESTING:
        report.error(f"blocks nested more than {MAX_NESTING} deep", use.span)
    else:
        return block
    return None


def _instantiate(
    use: s.Use, body: list[s.Stmt | Alias | Exports], report: Reporter, notes: dict[str, str] | None = None
) -> list[s.Stmt | Alias | Exports]:
    """The block's statements under the use's prefix, its inputs bound to the arguments; `notes` says how a
    generic block's input sizes came about (` (H = 128)`), for the message of an argument of another size."""
    notes = notes or {}
    prefix = use.name + "."
    inputs = {st.name: st for st in body if isinstance(st, s.Input)}
    args: dict[str, tuple[s.Expr, Span]] = {}
    for name, expr, span in use.args:
        if name in args:
            report.error(f"input `{name}` given twice to `{use.network}`", span)
        elif name not in inputs:
            report.error(
                f"`{use.network}` has no input `{name}`", span, f"its inputs are: {', '.join(inputs) or 'none'}"
            )
        args[name] = (expr, span)
    for name in inputs:
        if name not in args:
            report.error(
                f"`use {use.name} = {use.network}(...)` does not give input `{name}`",
                use.span,
                f"add `{name} = ...` to the argument list",
            )
    aliases: dict[str, s.Expr] = {prefix + n: e for n, (e, _) in args.items() if isinstance(e, s.Ref)}
    local = {st.name for st in body if isinstance(st, (s.Input, s.Param, s.Layer, s.Assign, _Alias))}
    failed = tuple(st.instance + "." for st in body if isinstance(st, _Exports) and st.failed)
    rename = _renamer(prefix, local, aliases, failed)
    exported = {st.name for st in body if isinstance(st, s.Output)}
    out: list[s.Stmt | Alias | Exports] = []
    for st in body:
        if isinstance(st, s.Input) and st.feed is not None:
            report.error(
                f"input `{st.name}` of block `{use.network}` is self-fed; a block's inputs are given by "
                "the network that uses it",
                st.feed.span,
                f"declare the self-fed input in the network that writes `use {use.name} = ...`",
            )
        if isinstance(st, s.Input):
            arg = args.get(st.name)
            # An input the block also outputs is read from outside as `b.x`: it needs a node of its own.
            copied = st.name in exported and st.kind != "tokens"
            if arg is not None and (copied or not isinstance(arg[0], s.Ref)):
                if st.kind == "tokens":
                    report.error(
                        f"token input `{st.name}` of `{use.network}` needs a token input, not an expression",
                        arg[1],
                        "pass the name of a `tokens(N)` input",
                    )
                out.append(s.Assign(prefix + st.name, arg[0], st.size, arg[1]))
            elif arg is not None and isinstance(arg[0], s.Ref):
                out.append(_Alias(prefix + st.name, arg[0], st.kind, st.size, arg[1], notes.get(st.name, "")))
            else:  # not given (reported above): keep it defined, so the block's reads of it are not reported too
                out.append(dataclasses.replace(st, name=prefix + st.name))
        elif not isinstance(st, s.Output):
            out.append(_rename_stmt(st, prefix, rename))
    out.append(_Exports(use.name, use.network, frozenset(prefix + n for n in exported), use.span))
    return out


@dataclasses.dataclass(frozen=True)
class _Alias:
    """A block input bound to a plain reference; checked (sizes) but not a node of its own."""

    name: str
    target: s.Ref
    kind: str
    size: s.Size
    span: Span
    note: str = ""  # how a generic block's size came about: ` (H = 128)`


@dataclasses.dataclass(frozen=True)
class _Exports:
    """Marks which inlined names may be read from outside the block."""

    instance: str
    network: str
    names: frozenset[str]
    span: Span
    failed: bool = False  # the use could not be expanded (unknown or recursive network)


Alias = _Alias
Exports = _Exports


def _renamer(
    prefix: str, local: set[str], aliases: dict[str, s.Expr], failed: tuple[str, ...] = ()
) -> Callable[[s.Ref], s.Expr]:
    def rename(ref: s.Ref) -> s.Expr:
        if ref.name not in local and not any(ref.name.startswith(f) for f in failed):
            return ref  # a name the block does not define: reported as unknown by the checker
        new = prefix + ref.name
        target = aliases.get(new)
        if isinstance(target, s.Ref):
            offset = target.offset + ref.offset  # `x[t-1]` with x bound to `y[t+1]` reads `y`, a same-step read
            return s.Ref(target.name, offset, ref.span, explicit=(target.explicit or ref.explicit) and offset != 0)
        return dataclasses.replace(ref, name=new)

    return rename


def _rename_stmt(
    st: s.Stmt | Alias | Exports, prefix: str, rename: Callable[[s.Ref], s.Expr]
) -> s.Stmt | Alias | Exports:
    if isinstance(st, s.Layer):
        return dataclasses.replace(st, name=prefix + st.name, sources=tuple(s.map_refs(e, rename) for e in st.sources))
    if isinstance(st, s.Assign):
        return dataclasses.replace(st, name=prefix + st.name, expr=s.map_refs(st.expr, rename))
    if isinstance(st, s.Param):  # each use of a block learns its own
        return dataclasses.replace(st, name=prefix + st.name)
    if isinstance(st, s.Init):
        target = rename(s.Ref(st.name))
        name = target.name if isinstance(target, s.Ref) else prefix + st.name
        return dataclasses.replace(st, name=name, expr=None if st.expr is None else s.map_refs(st.expr, rename))
    if isinstance(st, _Alias):
        target = rename(st.target)
        return dataclasses.replace(st, name=prefix + st.name, target=target if isinstance(target, s.Ref) else st.target)
    if isinstance(st, _Exports):
        return dataclasses.replace(st, instance=prefix + st.instance, names=frozenset(prefix + n for n in st.names))
    return st
