"""Index: takes a parsed program and its text, gives every name as written in it, each resolved to what it
names (`Symbol`): where a node, block, size, network, model or instance is defined and each place it is
read. Go to definition, rename and hover read it.

A block's output read as `l1.h` is two names: the use `l1` and the node `h` of the block's network, so going
to the definition of `h` opens the block, and renaming the block's `h` renames every `l1.h`. A use's
argument `x = e` names the block's input (or size) `x`; a model's binding `context = enc.h` names the
instance's input `context`, the instance `enc` and its network's output `h`.

>>> from rnndsl.frontend.parse import parse
>>> text = "network N { input x: 4\\n layer h: 8 tanh <- x, h[t-1]\\n output h }"
>>> index = Index(parse(text), text)
>>> [(o.span.line, o.span.column, o.definition) for o in index.occurrences(Symbol("node", "N", "h"))]
[(2, 8, True), (2, 24, False), (3, 9, False)]
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Span

__all__ = ["Index", "Occurrence", "Symbol", "NAME"]

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")  # as grammars/rnn.lark has it


@dataclass(frozen=True)
class Symbol:
    """What a name stands for: `kind` is "network", "model", "node", "use", "size", "instance" or "function";
    `scope` the network or model it belongs to ("" for networks, models and functions)."""

    kind: str
    scope: str
    name: str


@dataclass(frozen=True)
class Occurrence:
    """A name as written: its symbol, its span (the name alone, on one line) and whether it defines it."""

    symbol: Symbol
    span: Span
    definition: bool = False


class _Text:
    """Offsets and positions (1-based line and column) of one text; comments blanked for searching."""

    def __init__(self, text: str) -> None:
        self.text = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text)
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def offset(self, line: int, column: int) -> int:
        return self.starts[min(line, len(self.starts)) - 1] + column - 1

    def span(self, offset: int, length: int) -> Span:
        line = bisect.bisect_right(self.starts, offset)
        column = offset - self.starts[line - 1] + 1
        return Span(line, column, line, column + length)

    def find(self, name: str, start: Span, after: int = 0) -> Span | None:
        """The first place `name` stands as a whole name at or after `start` (plus `after` characters)."""
        pattern = re.compile(r"(?<![A-Za-z0-9_.])" + re.escape(name) + r"(?![A-Za-z0-9_])")
        found = pattern.search(self.text, self.offset(start.line, start.column) + after)
        return None if found is None else self.span(found.start(), len(name))


class Index:
    """Every name of a program, resolved. `at` finds the one under a cursor, `definition` and `occurrences`
    the places of a symbol."""

    def __init__(self, program: s.Program, text: str) -> None:
        self._text = _Text(text)
        self._decls = {n.name: n for n in program.networks}
        self.entries: list[Occurrence] = []
        for net in program.networks:
            self._network(net)
        for model in program.models:
            self._model(model)

    def at(self, line: int, column: int) -> Occurrence | None:
        """The name under (or just after) the cursor at 1-based `line`, `column`."""
        for o in self.entries:
            if o.span.line == line and o.span.column <= column <= o.span.end_column:
                return o
        return None

    def definition(self, symbol: Symbol) -> Occurrence | None:
        return next((o for o in self.entries if o.symbol == symbol and o.definition), None)

    def occurrences(self, symbol: Symbol) -> list[Occurrence]:
        """Every place `symbol` is written, in text order."""
        return sorted((o for o in self.entries if o.symbol == symbol), key=lambda o: (o.span.line, o.span.column))

    # ---- building -------------------------------------------------------------------------------------

    def _add(self, symbol: Symbol, span: Span | None, definition: bool = False) -> None:
        if span is not None:
            self.entries.append(Occurrence(symbol, span, definition))

    def _network(self, net: s.NetworkDecl) -> None:
        self._add(Symbol("network", "", net.name), net.name_span, True)
        for size, span in net.sizes:
            self._add(Symbol("size", net.name, size), self._text.find(size, span), True)
        nodes = {st.name for st in net.body if isinstance(st, (s.Input, s.Param, s.Layer, s.Assign))}
        blocks = {st.name: st.network for st in net.body if isinstance(st, s.Use)}
        for st in net.body:
            self._statement(net, st, nodes, blocks)

    def _statement(self, net: s.NetworkDecl, st: s.Stmt, nodes: set[str], blocks: dict[str, str]) -> None:
        name_at = self._text.find(st.name, st.span)
        if isinstance(st, s.Use):
            self._add(Symbol("use", net.name, st.name), name_at, True)
            self._add(Symbol("network", "", st.network), st.network_span)
            self._use_args(net, st, nodes, blocks)
            return
        self._add(Symbol("node", net.name, st.name), name_at, not isinstance(st, (s.Init, s.Output)))
        size = getattr(st, "size", None)
        if isinstance(size, (s.Num, s.Ref, s.BinOp, s.Neg, s.Call)):
            for ref in s.refs(size):
                self._add(Symbol("size", net.name, ref.name), self._name_span(ref))
        if isinstance(st, s.Layer) and self._text.find(st.activation, st.activation_span) == st.activation_span:
            self._add(Symbol("function", "", st.activation), st.activation_span)
        for expr in s.exprs(st):
            self._expr(net, expr, nodes, blocks)

    def _use_args(self, net: s.NetworkDecl, use: s.Use, nodes: set[str], blocks: dict[str, str]) -> None:
        block = self._decls.get(use.network)
        sizes = {n for n, _ in block.sizes} if block else set()
        for key, expr, span in use.args:
            kind = "size" if key in sizes else "node"
            self._add(Symbol(kind, use.network, key), self._text.find(key, span))
            self._expr(net, expr, nodes, blocks)

    def _expr(self, net: s.NetworkDecl, expr: s.Expr, nodes: set[str], blocks: dict[str, str]) -> None:
        sizes = {n for n, _ in net.sizes}
        for e in s.walk(expr):
            if isinstance(e, s.Call):
                self._add(Symbol("function", "", e.fn), self._text.span(self._offset(e.span), len(e.fn)))
            if not isinstance(e, s.Ref):
                continue
            head, _, rest = e.name.partition(".")
            if rest and head in blocks:
                start = self._offset(e.span)
                self._add(Symbol("use", net.name, head), self._text.span(start, len(head)))
                self._add(Symbol("node", blocks[head], rest), self._text.span(start + len(head) + 1, len(rest)))
            elif e.name in sizes and e.name not in nodes:
                self._add(Symbol("size", net.name, e.name), self._name_span(e))
            else:
                self._add(Symbol("node", net.name, e.name), self._name_span(e))

    def _model(self, model: s.ModelDecl) -> None:
        self._add(Symbol("model", "", model.name), model.name_span, True)
        networks = {i.name: i.network for i in model.instances}
        for inst in model.instances:
            self._add(Symbol("instance", model.name, inst.name), inst.name_span, True)
            self._add(Symbol("network", "", inst.network), inst.network_span)
            for key, source, span in inst.bindings:
                self._add(Symbol("node", inst.network, key), self._text.find(key, span))
                head, _, rest = source.partition(".")
                at = self._text.find(source, span, after=len(key))
                if at is None:
                    continue
                start = self._text.offset(at.line, at.column)
                self._add(Symbol("instance", model.name, head), self._text.span(start, len(head)))
                if rest:
                    symbol = Symbol("node", networks.get(head, ""), rest)
                    self._add(symbol, self._text.span(start + len(head) + 1, len(rest)))

    def _offset(self, span: Span) -> int:
        return self._text.offset(span.line, span.column)

    def _name_span(self, ref: s.Ref) -> Span:
        return self._text.span(self._offset(ref.span), len(ref.name))
