"""Parse: takes spec text, gives a `syntax.Program` with spans, or raises `SpecError`.

The grammar is `grammars/rnn.lark` (shipped inside the wheel as `rnndsl/grammars/rnn.lark`); the LALR
parser is built once and cached. Lark's errors never escape: they become diagnostics with a caret,
and common mistakes are recognised from a table of example inputs.
"""

from __future__ import annotations

import functools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Diagnostic, Source, Span, SpecError

__all__ = ["parse", "grammar_text", "MAX_SPEC_BYTES", "MAX_EXPR_DEPTH"]

MAX_SPEC_BYTES = 256_000  # parsing costs about 9 us a byte: a few seconds at most
MAX_EXPR_DEPTH = 100  # later passes recurse over expressions; this keeps them far from Python's limit


def grammar_text() -> str:
    """The grammar: from the installed package, else from the checkout's `grammars/`."""
    packaged = resources.files("rnndsl").joinpath("grammars/rnn.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammars" / "rnn.lark").read_text(encoding="utf-8")


@functools.cache
def _parser() -> Lark:
    # cache=True keeps the built LALR tables in the temp folder: about 230 ms once, then about 20 ms
    return Lark(
        grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True, cache=True
    )


def _span(meta: Any) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token) -> Span:
    return Span(tok.line or 1, tok.column or 1, tok.end_line or 0, tok.end_column or 0)


class _NumberTooLargeError(Exception):
    """A number literal too large for a float (`1e400`): reported at its token."""

    def __init__(self, token: Token) -> None:
        super().__init__(str(token))
        self.token = token


def _number(token: Token) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _NumberTooLargeError(token)
    return value


def _size(size: s.Expr) -> s.Size:
    """A size as the statements hold it: a plain number as a float (`64`, `(64)`), anything else as written."""
    return size.value if isinstance(size, s.Num) else size


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Shapes Lark's tree into `syntax` nodes; the grammar does the rest."""

    def start(self, meta: Any, decls: list[s.NetworkDecl | s.ModelDecl]) -> s.Program:
        return s.Program(
            tuple(d for d in decls if isinstance(d, s.NetworkDecl)),
            tuple(d for d in decls if isinstance(d, s.ModelDecl)),
        )

    def model(self, meta: Any, items: list[Any]) -> s.ModelDecl:
        name, *body = items
        return s.ModelDecl(str(name), tuple(b for b in body if isinstance(b, s.Instance)), _span(meta), _tok_span(name))

    def instance(self, meta: Any, items: list[Any]) -> s.Instance:
        name, network, *bindings = items
        kept = tuple(b for b in bindings if b is not None)
        return s.Instance(str(name), str(network), kept, _span(meta), _tok_span(network), _tok_span(name))

    def binding(self, meta: Any, items: list[Token]) -> tuple[str, str, Span]:
        return str(items[0]), str(items[1]), _span(meta)

    def network(self, meta: Any, items: list[Any]) -> s.NetworkDecl:
        name, sizes, *body = items
        stmts = tuple(b for b in body if not isinstance(b, Token))
        return s.NetworkDecl(str(name), stmts, _span(meta), _tok_span(name), sizes or ())

    def sizes(self, meta: Any, items: list[Token]) -> tuple[tuple[str, Span], ...]:
        return tuple((str(t), _tok_span(t)) for t in items)

    def input_vector(self, meta: Any, items: list[Any]) -> s.Input:
        name, size, kind, feed = items
        return s.Input(str(name), str(kind) if kind else "seq", _size(size), _span(meta), feed)

    def input_tokens(self, meta: Any, items: list[Any]) -> s.Input:
        name, size, feed = items
        return s.Input(str(name), "tokens", _size(size), _span(meta), feed)

    def param_stmt(self, meta: Any, items: list[Any]) -> s.Param:
        name, size, init = items
        span = _span(meta)
        if init is None:
            return s.Param(str(name), _size(size), "zeros", span, span)
        at = _tok_span(init) if isinstance(init, Token) else span
        value = _number(init) if isinstance(init, Token) and init.type == "NUMBER" else init
        return s.Param(str(name), _size(size), value if isinstance(value, float) else str(value), span, at)

    def feed(self, meta: Any, items: list[Any]) -> s.Expr:
        return items[0]

    def layer_stmt(self, meta: Any, items: list[Any]) -> s.Layer:
        name, size, act, *rest = items
        options = tuple(o for o in rest if isinstance(o, tuple))
        sources = tuple(e for e in rest if not isinstance(e, tuple))
        act_name, act_span = ("identity", _span(meta)) if act is None else act
        return s.Layer(str(name), _size(size), act_name, sources, options, _span(meta), act_span)

    def activation(self, meta: Any, items: list[Token]) -> tuple[str, Span]:
        return str(items[0]), _tok_span(items[0])

    def option(self, meta: Any, items: list[Any]) -> tuple[str, str | float, Span]:
        key, value = items
        if isinstance(value, Token):
            value = _number(value) if value.type == "NUMBER" else str(value)
        return str(key), value, _span(meta)

    def init_key(self, meta: Any, items: list[Token]) -> str:
        return "init"

    def negative(self, meta: Any, items: list[Token]) -> float:
        return -_number(items[0])

    def assign_stmt(self, meta: Any, items: list[Any]) -> s.Assign:
        name, size, expr = items
        return s.Assign(str(name), expr, None if size is None else _size(size), _span(meta))

    def init_stmt(self, meta: Any, items: list[Any]) -> s.Init:
        name, expr = items
        if isinstance(expr, s.Ref) and not expr.explicit and expr.name in ("zeros", "learned"):
            return s.Init(str(name), expr.name, None, _span(meta))
        return s.Init(str(name), "expr", expr, _span(meta))

    def output_stmt(self, meta: Any, items: list[Any]) -> s.Output:
        name, last = items
        return s.Output(str(name), last is not None, _span(meta))

    def use_stmt(self, meta: Any, items: list[Any]) -> s.Use:
        name, network, *args = items
        kept = tuple(a for a in args if a is not None)
        return s.Use(str(name), str(network), kept, _span(meta), _tok_span(network))

    def use_arg(self, meta: Any, items: list[Any]) -> tuple[str, s.Expr, Span]:
        return str(items[0]), items[1], _span(meta)

    def num(self, meta: Any, items: list[Token]) -> s.Num:
        return s.Num(_number(items[0]), _span(meta))

    def ref(self, meta: Any, items: list[Token]) -> s.Ref:
        return s.Ref(str(items[0]), 0, _span(meta))

    def delayed_ref(self, meta: Any, items: list[Token]) -> s.Ref:
        name, sign, k = items
        offset = _number(k) if str(sign) == "+" else -_number(k)
        return s.Ref(str(name), offset, _span(meta), explicit=True)

    def call(self, meta: Any, items: list[Any]) -> s.Call:
        fn, *args = items
        return s.Call(str(fn), tuple(a for a in args if a is not None), _span(meta))

    def add(self, meta: Any, items: list[Any]) -> s.BinOp:
        return s.BinOp("+", items[0], items[1], _span(meta))

    def sub(self, meta: Any, items: list[Any]) -> s.BinOp:
        return s.BinOp("-", items[0], items[1], _span(meta))

    def mul(self, meta: Any, items: list[Any]) -> s.BinOp:
        return s.BinOp("*", items[0], items[1], _span(meta))

    def div(self, meta: Any, items: list[Any]) -> s.BinOp:
        return s.BinOp("/", items[0], items[1], _span(meta))

    def neg(self, meta: Any, items: list[Any]) -> s.Neg:
        return s.Neg(items[0], _span(meta))


# Common mistakes, recognised by where the parser stops: the LALR state and the token it met there.
# (Lark's match_examples also compares the stack depth, so it only recognised a mistake in the first
# statement of the first network; `_classify` compares the state alone.)
_EXAMPLES: dict[str, list[str]] = {
    "a layer lists its sources after '<-': `layer h: 64 tanh <- x, h[t-1]`": [
        "network N { layer h: 4 tanh x }",
        "network N { layer h: 4 x }",
        "network N { layer h: 4 tanh = x }",
        "network N { layer h: 4 tanh x, y }",
    ],
    "a layer needs a size: `layer h: 64 tanh <- x`": [
        "network N { layer h tanh <- x }",
        "network N { layer h <- x }",
    ],
    "an input needs a size: `input x: 16`, `input s: 4 static` or `input w: tokens(100)`": [
        "network N { input x }",
        "network N { input x: }",
        "network N { input x 16 }",
    ],
    "a delayed reference is written `name[t-K]` (the past) or `name[t+K]` (the future)": [
        "network N { h = x[1] }",
        "network N { h = x[t] }",
        "network N { h = x[t-] }",
        "network N { h = x[-1] }",
        "network N { h = x[t-k] }",
        "network N { h = x[t-1 }",
        "network N { h = x[i-1] }",
    ],
    "an expression is missing: `h = x`, `layer h: 8 <- x, y`": [
        "network N { h = }",
        "network N { layer h: 4 <- }",
        "network N { layer h: 4 <- x, }",
        "network N { init h = }",
    ],
    "an operator is missing its right-hand side": [
        "network N { h = x + }",
        "network N { h = x * }",
        "network N { h = (x + y }",
    ],
    "a statement must start with input, param, layer, init, output, use or `NAME = EXPR`": [
        "network N { 3 }",
        "network N { = x }",
        "network N { x + y }",
        "network N { input x: 4 3 }",
        "network N { input s: 4 static 3 }",
        "network N { input w: tokens(4) 3 }",
        "network N { layer h: 4 <- x 3 }",
        "network N { h = x 3 }",
        "network N { output x 3 }",
        "network N { output x last 3 }",
        "network N { use b = B() 3 }",
        "network N { ; 3 }",
    ],
    "a generic network's sizes are names: `network Cell(H, X) { ... }` (a network without sizes has no parentheses)": [
        "network N() { }",
        "network N(H,) { }",
        "network N(H { }",
        "network N(2) { }",
    ],
    "a model binds inputs, not sizes: `dec = Speaker(context = enc.h)`; sizes are given in a `use`": [
        "network N { } model M { a = N(H = 1) }",
        "network N { } model M { a = N(H = ) }",
    ],
    "a network is written `network NAME { ... }`": [
        "network { }",
        "h = x",
        "layer h: 4 <- x",
        "network N",
    ],
}
_MISSING_BRACE = "missing '}' to close the network"

# Matched only with the same token: in these states another token means another mistake.
_EXACT_EXAMPLES: dict[str, list[str]] = {
    "an expression runs on into the next statement: does the line before end with an operator or ','?": [
        "network N { a = b *\n c = d }",
        "network N { a = b +\n c = d }",
        "network N { a = (b)\n - c = d }",
        "network N { layer h: 4 <- x,\n c = d }",
        "network N { a = f(b) *\n c = d }",
        "network N { a = b *\n c[t-1] = d }",
    ],
}


def _syntax_error(err: UnexpectedInput, source: Source) -> Diagnostic:
    late = _noticed_late(err, source) if isinstance(err, UnexpectedToken) and err.state is not None else None
    if late is not None:
        return late
    option = _option_among_sources(err, source)
    if option is not None:
        return option
    line = getattr(err, "line", None) or 1
    column = getattr(err, "column", None) or 1
    end = err.token if isinstance(err, UnexpectedToken) and err.token.type == "$END" else None
    if end is not None and end.end_line and end.end_column:
        line, column = end.end_line, end.end_column  # just after the last token (Lark gives its start)
    elif isinstance(err, UnexpectedEOF) or line < 1 or end is not None:
        lines = source.text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    found = _describe(err)
    label = _classify(err)
    message = f"unexpected {found}" if label is None else f"unexpected {found}: {label.split(':')[0]}"
    hint = "" if label is None else label
    if label is None and isinstance(err, UnexpectedToken) and err.expected:
        hint = "expected " + _expected(err.expected)
    elif isinstance(err, UnexpectedCharacters):
        hint = "names are letters, digits and '_'; operators are + - * /; '#' starts a comment"
    return Diagnostic(message, Span(line, column), source, "error", hint)


def _option_among_sources(err: UnexpectedInput, source: Source) -> Diagnostic | None:
    """`layer h: 3 <- x, dropout=0.5`: the `=` of a layer option written as one more source."""
    if not isinstance(err, UnexpectedToken) or err.token != "=" or not err.line or not err.column:
        return None
    before = source.text.splitlines()[err.line - 1][: err.column - 1]
    found = re.search(r"\blayer\s+(\w+).*<-.*,\s*(\w+)\s*$", before)
    if found is None or found.group(2) not in s.LAYER_OPTIONS:
        return None
    name, key = found.groups()
    return Diagnostic(
        f"unexpected '=': `{key}=` is a layer option, and options go before `<-`",
        Span(err.line, found.start(2) + 1, err.line, err.column + 1),
        source,
        "error",
        f"write `layer {name}: ... {key}=... <- ...`",
    )


_ARROW = "__ANON_0"  # Lark's name for the '<-' token
_SOURCES_LABEL = "a layer lists its sources after '<-': `layer h: 64 tanh <- x, h[t-1]`"


def _noticed_late(err: UnexpectedToken, source: Source) -> Diagnostic | None:
    """Mistakes the parser only notices at a later token, often on the next line, reported where they are.

    `layer h: 16 tanh = x` reads as the option `tanh=x`, and the next statement's first word as one more
    option; `layer h: 16 tanh` then a newline reads on the same way; `output last h` is the output `last`
    followed by a statement `h ...` that never comes right."""
    stack = err.state.value_stack
    layer = next(
        (i for i in range(len(stack) - 1, -1, -1) if isinstance(stack[i], Token) and stack[i].type == "LAYER"), None
    )
    if layer is not None:
        return _layer_mistake(stack[layer:], err.token, source)
    return _output_last_first(stack, source)


def _layer_mistake(items: list[Any], found: Token, source: Source) -> Diagnostic | None:
    """In an unfinished layer: `=` where `<-` belongs, or the end of the line with no `<-` at all."""
    for key, value in _options(items):
        at = source.text.find("=", key.end_pos or 0)  # `tanh = x`: the `=` comes right after the key
        if str(key) not in s.LAYER_OPTIONS and value.type == "NAME" and at >= 0:
            line, column = source.text.count("\n", 0, at) + 1, at - source.text.rfind("\n", 0, at)
            return Diagnostic(
                "unexpected '=': a layer lists its sources after '<-'",
                Span(line, column, line, column + 1),
                source,
                "error",
                f"write `<-` instead of `=`; {_SOURCES_LABEL}",
            )
    top, end = items[-1], _end(items[-2]) if len(items) > 1 else None
    arrow = any(isinstance(v, Token) and v.type == _ARROW for v in items)
    if (
        not arrow
        and isinstance(top, Token)
        and top.type == "NAME"
        and end is not None
        and (top.line or 0) > end[0]
        and found.type != "EQUAL"
    ):
        return Diagnostic(
            f"layer `{items[1]}` has no sources: a layer lists its sources after '<-'",
            Span(*end),
            source,
            "error",
            _SOURCES_LABEL,
        )
    return None


def _options(items: list[Any]) -> list[tuple[Token, Token]]:
    """The (key, value) tokens of the options on the stack: reduced (`option` trees, alone or in a list) or
    not yet (NAME '=' value, when the parser stopped right after the value)."""
    found: list[tuple[Token, Token]] = []
    for i, item in enumerate(items):
        if isinstance(item, lark.Tree):
            trees = [item] if item.data == "option" else item.children
            pairs = [o.children for o in trees if isinstance(o, lark.Tree) and o.data == "option"]
            found += [(key, value) for key, value in pairs if isinstance(key, Token) and isinstance(value, Token)]
        elif (
            isinstance(item, Token)
            and item.type == "EQUAL"
            and 0 < i < len(items) - 1
            and isinstance(items[i - 1], Token)
            and isinstance(items[i + 1], Token)
        ):
            found.append((items[i - 1], items[i + 1]))
    return found


def _end(item: Any) -> tuple[int, int] | None:
    """(line, column) just after a token or a tree of the parser's stack."""
    if isinstance(item, Token):
        return (item.end_line, item.end_column) if item.end_line and item.end_column else None
    if isinstance(item, lark.Tree) and not item.meta.empty:
        return item.meta.end_line, item.meta.end_column
    return None


def _output_last_first(stack: list[Any], source: Source) -> Diagnostic | None:
    """`output last h`: the statement before the dangling name is `output last`."""
    if len(stack) < 2 or not (isinstance(stack[-1], Token) and stack[-1].type == "NAME"):
        return None
    prev = stack[-2]
    if isinstance(prev, lark.Tree) and prev.data.startswith("__network_star"):
        if not prev.children:  # only `;` before the name: no statement to blame
            return None
        prev = prev.children[-1]
    if not (isinstance(prev, lark.Tree) and prev.data == "output_stmt"):
        return None
    name, last = prev.children
    if not isinstance(name, Token) or str(name) != "last" or last is not None:
        return None
    written = stack[-1]
    return Diagnostic(
        "unexpected 'last': `last` comes after the output's name",
        _tok_span(name),
        source,
        "error",
        f"write `output {written} last`",
    )


@functools.cache
def _example_table() -> dict[tuple[Any, str], str]:
    """(LALR state, token type) where each example mistake stops -> its label; token type "" for any."""
    table: dict[tuple[Any, str], str] = {}
    for label, texts in _EXACT_EXAMPLES.items():
        for text in texts:
            try:
                _parser().parse(text)
            except UnexpectedToken as ex:
                table.setdefault((ex.state.position, ex.token.type), label)
    for label, texts in _EXAMPLES.items():
        for text in texts:
            try:
                _parser().parse(text)
            except UnexpectedToken as ex:
                table.setdefault((ex.state.position, ex.token.type), label)
                table.setdefault((ex.state.position, ""), label)
    return table


def _classify(err: UnexpectedInput) -> str | None:
    """The label of the example mistake that stops where `err` does; None for a stray character."""
    if not isinstance(err, UnexpectedToken) or err.state is None:
        return None
    if err.token.type == "$END" and "RBRACE" in err.accepts:
        return _MISSING_BRACE
    before = err.state.value_stack[-1] if err.state.value_stack else None
    if isinstance(before, Token) and str(before) == "network" and before.type == "NAME":
        return _MISSING_BRACE  # `network` read as a statement: the previous network was not closed
    table = _example_table()
    position = err.state.position
    return table.get((position, err.token.type)) or table.get((position, ""))


def _describe(err: UnexpectedInput) -> str:
    if isinstance(err, UnexpectedCharacters):
        return f"character {err.char!r}"
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            return "end of file"
        return f"{str(tok)!r}"
    return "end of file"


_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COLON": "':'",
    "EQUAL": "'='",
    "COMMA": "','",
    "SIGN": "'-' or '+'",
    "SEMICOLON": "';'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    _ARROW: "'<-'",
    "$END": "end of file",
    "INPUT_KIND": "'static' or 'memory'",
    "LAST": "'last'",
}


def _expected(names: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(n, "'" + n.lower() + "'") for n in names})
    return ", ".join(words[:8]) + (" ..." if len(words) > 8 else "")


def parse(text: str, name: str = "<string>") -> s.Program:
    """Parse spec text into a syntax tree.

    >>> parse("network N { input x: 2\\n output x }").networks[0].name
    'N'
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark, from an editor that saves UTF-8 with one
    source = Source(text, name)
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        d = Diagnostic(
            f"spec is larger than {MAX_SPEC_BYTES} bytes", Span(1, 1), source, hint="split it into several files"
        )
        raise SpecError([d])
    tree = None
    try:
        tree = _parser().parse(text)
        program = _ToSyntax().transform(tree)
    except UnexpectedInput as err:
        raise SpecError([_syntax_error(err, source)]) from None
    except lark.exceptions.VisitError as err:
        if isinstance(err.orig_exc, _NumberTooLargeError):
            tok = err.orig_exc.token
            raise SpecError(
                [
                    Diagnostic(
                        f"number `{tok}` is too large",
                        _tok_span(tok),
                        source,
                        hint="sizes, delays and constants must be finite numbers",
                    )
                ]
            ) from None
        raise SpecError([Diagnostic(f"cannot read this: {err.orig_exc}", Span(1, 1), source)]) from None
    except RecursionError:  # the tree parsed, and turning it into syntax went too deep: said where it is deepest
        where = _deepest(tree) if tree is not None else Span(1, 1)
        raise SpecError(
            [Diagnostic("expression is nested too deeply", where, source, hint="split it into named nodes")]
        ) from None
    deep = [
        Diagnostic(
            f"expression is nested {depth} deep, above the limit of {MAX_EXPR_DEPTH}",
            expr.span,
            source,
            hint="split it into named nodes",
        )
        for expr, depth in _deep_exprs(program)
    ]
    if deep:
        raise SpecError(deep)
    late = _options_after_sources(program, source)
    if late:
        raise SpecError(late)
    return program


def _deepest(tree: lark.Tree) -> Span:
    """Where the deepest token of a parse tree stands (walked without recursion: the tree is too deep for it)."""
    best, where = -1, Span(1, 1)
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Token):
            if depth > best and node.line is not None and node.column is not None:
                best, where = depth, Span(node.line, node.column)
        elif isinstance(node, lark.Tree):
            stack.extend((child, depth + 1) for child in node.children)
    return where


def _options_after_sources(program: s.Program, source: Source) -> list[Diagnostic]:
    """`layer h: 3 tanh <- x, h[t-1] dropout=0.5` parses, the grammar being newline-free, as the layer and then a
    statement `dropout = 0.5` on the same line: said as what it is, not as what that statement gets wrong."""
    out = []
    for net in program.networks:
        for before, st in zip(net.body, net.body[1:], strict=False):
            if (
                isinstance(before, s.Layer)
                and isinstance(st, s.Assign)
                and st.name in s.LAYER_OPTIONS
                and st.span.line == (before.span.end_line or before.span.line)
                and not source.text.splitlines()[st.span.line - 1][
                    before.span.end_column - 1 : st.span.column - 1
                ].strip()
            ):  # nothing between them, not even a `;`
                out.append(
                    Diagnostic(
                        f"`{st.name}=` after a layer's sources: layer options go before `<-`",
                        st.span,
                        source,
                        hint=f"write `layer {before.name}: ... {st.name}=... <- ...`; after the sources it reads as a "
                        f"node named `{st.name}`",
                    )
                )
    return out


def _deep_exprs(program: s.Program) -> list[tuple[s.Expr, int]]:
    """Expressions nested deeper than MAX_EXPR_DEPTH (`x + x + ... + x` nests once per `+`); sizes written as
    expressions (`H + H + ... + H`) too."""
    out = []
    for net in program.networks:
        for st in net.body:
            size = getattr(st, "size", None)
            for expr in (*s.exprs(st), *((size,) if size is not None and not isinstance(size, float) else ())):
                depth = s.depth(expr)
                if depth > MAX_EXPR_DEPTH:
                    out.append((expr, depth))
    return out
