"""Declare: takes one network's statements (inlined), gives its `Declarations`, what every later pass reads.

`own_names` checks the names a network's own statements define (a generic network's only here);
`declarations` collects definitions, inits, outputs and the blocks' exports, reporting names defined twice and written
sizes that are not a positive whole number. `Hints` is the did-you-mean of an unknown name, quiet once a
network has many errors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Union

from rnndsl.frontend.inline import Alias, Exports
from rnndsl.frontend.names import RESERVED, check_name, did_you_mean
from rnndsl.frontend.sizes import MAX_SIZE
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter

__all__ = ["CALL_KEYWORDS", "MAX_HINTS", "Declarations", "Definition", "Hints", "declarations", "own_names"]

MAX_HINTS = 25  # did-you-mean suggestions per network
# CompiledNetwork.forward's own keywords
CALL_KEYWORDS = {"lengths", "memory_lengths", "state", "steps", "batch", "check_finite", "feed_back", "sampler", "self"}

Definition = Union[s.Input, s.Param, s.Layer, s.Assign, Alias]  # a statement that defines a name


@dataclass(frozen=True)
class Declarations:
    """What one network declares, in definition order; no pass changes it."""

    network: s.NetworkDecl
    defs: Mapping[str, Definition]
    written: Mapping[str, int | None]  # each definition's size as written; None: none given, or reported
    inits: Mapping[str, s.Init]
    outputs: tuple[s.Output, ...]
    exports: Mapping[str, Exports]
    bad_names: frozenset[str]  # dotted or reserved, reported once where defined

    def visible(self, name: str) -> bool:
        """Whether the network's own statements may read `name`: its own nodes and its blocks' outputs."""
        if name in self.defs and "." not in name:
            return True
        return any(name in e.names for e in self.exports.values())

    @functools.cached_property
    def visible_names(self) -> list[str]:
        return [n for n in self.defs if self.visible(n)]

    def in_failed_block(self, name: str) -> bool:
        """`b.h` where `use b = ...` failed (already reported)."""
        return any(e.failed and name.startswith(e.instance + ".") for e in self.exports.values())

    def kind(self, name: str) -> str:
        """An input's (or block input's) kind, "" for any other name."""
        return getattr(self.defs.get(name), "kind", "")

    def is_tokens(self, name: str) -> bool:
        return self.kind(name) == "tokens"

    def is_memory(self, name: str) -> bool:
        return isinstance(self.defs.get(name), (s.Input, Alias)) and self.kind(name) == "memory"

    def reported_elsewhere(self) -> bool:
        """Whether the network is broken by an error reported before its check began: a size that names no
        size of its network (left as written), or a `use` whose sizes could not be given (reported with the
        declarations, by `sizes.check_declaration`). It is not built then, as after an error of its own."""
        unbound = any(st.size is not None and not isinstance(st.size, float) for st in self.defs.values())
        return unbound or any(e.failed for e in self.exports.values())


@dataclass(frozen=True)
class Hints:
    """The did-you-mean of an unknown name among the visible names (or `known`); nothing once the network
    has MAX_HINTS errors, where comparing every unknown name with every known one would take minutes."""

    report: Reporter
    errors_before: int  # the report is the file's: count only this network's errors
    decls: Declarations

    def __call__(self, name: str, known: Iterable[str] | None = None) -> str:
        if len(self.report.errors) - self.errors_before >= MAX_HINTS:
            return ""
        return did_you_mean(name, self.decls.visible_names if known is None else known)


def own_names(net: s.NetworkDecl, report: Reporter) -> frozenset[str]:
    """Check the names the network's own statements define; gives those that are dotted or reserved."""
    bad = set()
    for st in net.body:
        name = getattr(st, "name", "")
        if isinstance(st, (s.Output, s.Init)):
            continue
        if "." in name or name in RESERVED:
            bad.add(name)
        if "." in name:
            report.error(
                f"`{name}`: a defined name cannot contain '.'",
                st.span,
                "dots only read a block's outputs, as in `enc.h`",
            )
        elif name in RESERVED:
            report.error(
                f"`{name}` is a reserved word and cannot name a node",
                st.span,
                f"call it `{name}_` or something else",
            )
        elif check_name(name, st.span, report) and isinstance(st, s.Input) and name in CALL_KEYWORDS:
            report.error(
                f"input `{name}` would clash with the `{name}=` argument of a call",
                st.span,
                f"call it `{name}_` or something else",
            )
    return frozenset(bad)


def declarations(
    net: s.NetworkDecl, stmts: list[s.Stmt | Alias | Exports], bad_names: frozenset[str], report: Reporter
) -> Declarations:
    """Collect what `stmts` (the network's statements, blocks inlined) declare, in order."""
    defs: dict[str, Definition] = {}
    written: dict[str, int | None] = {}
    inits: dict[str, s.Init] = {}
    outputs: list[s.Output] = []
    exports: dict[str, Exports] = {}
    for st in stmts:
        if isinstance(st, Exports):
            exports[st.instance] = st
        elif isinstance(st, s.Init):
            if st.name in inits:
                report.error(f"`init {st.name}` is given twice (first at {inits[st.name].span})", st.span, "keep one")
            inits[st.name] = st
        elif isinstance(st, s.Output):
            outputs.append(st)
        elif isinstance(st, (s.Input, s.Param, s.Layer, s.Assign, Alias)):
            _define(st, defs, written, report)
    return Declarations(net, defs, written, inits, tuple(outputs), exports, bad_names)


def _define(st: Definition, defs: dict[str, Definition], written: dict[str, int | None], report: Reporter) -> None:
    if st.name in defs:
        report.error(
            f"`{st.name}` is defined twice (first at {defs[st.name].span})",
            st.span,
            "rename one of them, or combine them into one definition",
        )
        return
    defs[st.name] = st
    written[st.name] = None if isinstance(st, s.Assign) and st.size is None else _size_literal(st, report)


def _size_literal(st: Definition, report: Reporter) -> int | None:
    raw = st.size
    what = "vocabulary size" if getattr(st, "kind", "") == "tokens" else "size"
    if raw is not None and not isinstance(raw, float):
        return None  # a size expression left unbound: reported by `sizes`
    if raw is None or raw != int(raw) or raw < 1:
        report.error(f"{what} of `{st.name}` must be a positive whole number, not {raw:g}", st.span)
        return None
    if raw > MAX_SIZE:
        report.error(
            f"{what} of `{st.name}` is {int(raw):,}, above the limit of {MAX_SIZE:,}",
            st.span,
            "a layer this wide would not fit in memory",
        )
        return None
    return int(raw)
