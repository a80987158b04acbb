"""Parse: takes spec text, gives a `syntax.Program` with spans, or raises `SpecError`.

The grammar is `grammars/rnn.lark` (shipped inside the wheel as `rnndsl/grammars/rnn.lark`); the LALR
parser is built once and cached. Lark's errors never escape: they become diagnostics with a caret,
and common mistakes are recognised from a table of example inputs.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from rnndsl import syntax as s
from rnndsl.errors import Diagnostic, Source, Span, SpecError

__all__ = ["parse", "grammar_text", "MAX_SPEC_BYTES"]

MAX_SPEC_BYTES = 1_000_000


def grammar_text() -> str:
    """The grammar: from the installed package, else from the checkout's `grammars/`."""
    packaged = resources.files("rnndsl").joinpath("grammars/rnn.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammars" / "rnn.lark").read_text(encoding="utf-8")


@functools.cache
def _parser() -> Lark:
    return Lark(grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)


def _span(meta: Any) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token) -> Span:
    return Span(tok.line or 1, tok.column or 1, tok.end_line or 0, tok.end_column or 0)


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Shapes Lark's tree into `syntax` nodes; the grammar does the rest."""

    def start(self, meta: Any, nets: list[s.NetworkDecl]) -> s.Program:
        return s.Program(tuple(nets))

    def network(self, meta: Any, items: list[Any]) -> s.NetworkDecl:
        name, *body = items
        stmts = tuple(b for b in body if not isinstance(b, Token))
        return s.NetworkDecl(str(name), stmts, _span(meta))

    def input_vector(self, meta: Any, items: list[Any]) -> s.Input:
        name, size, static = items
        return s.Input(str(name), "static" if static else "seq", float(size), _span(meta))

    def input_tokens(self, meta: Any, items: list[Any]) -> s.Input:
        name, size = items
        return s.Input(str(name), "tokens", float(size), _span(meta))

    def layer_stmt(self, meta: Any, items: list[Any]) -> s.Layer:
        name, size, act, *rest = items
        options = tuple(o for o in rest if isinstance(o, tuple))
        sources = tuple(e for e in rest if not isinstance(e, tuple))
        act_name, act_span = ("identity", _span(meta)) if act is None else act
        return s.Layer(str(name), float(size), act_name, sources, options, _span(meta), act_span)

    def activation(self, meta: Any, items: list[Token]) -> tuple[str, Span]:
        return str(items[0]), _tok_span(items[0])

    def option(self, meta: Any, items: list[Any]) -> tuple[str, str | float, Span]:
        key, value = items
        if isinstance(value, Token):
            value = float(value) if value.type == "NUMBER" else str(value)
        return str(key), value, _span(meta)

    def negative(self, meta: Any, items: list[Token]) -> float:
        return -float(items[0])

    def assign_stmt(self, meta: Any, items: list[Any]) -> s.Assign:
        name, size, expr = items
        return s.Assign(str(name), expr, None if size is None else float(size), _span(meta))

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
        return s.Num(float(items[0]), _span(meta))

    def ref(self, meta: Any, items: list[Token]) -> s.Ref:
        return s.Ref(str(items[0]), 0, _span(meta))

    def delayed_ref(self, meta: Any, items: list[Token]) -> s.Ref:
        name, sign, k = items
        offset = float(k) if str(sign) == "+" else -float(k)
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


# Common mistakes, recognised by where the parser stops (Lark's match_examples).
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
        "network N { layer h: tanh <- x }",
    ],
    "an input needs a size: `input x: 16`, `input s: 4 static` or `input w: tokens(100)`": [
        "network N { input x }",
        "network N { input x: }",
        "network N { input x: foo }",
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
    "an operator is missing its right-hand side": [
        "network N { h = x + }",
        "network N { h = x * }",
        "network N { h = (x + y }",
    ],
    "a statement must start with input, layer, init, output, use or `NAME = EXPR`": [
        "network N { 3 }",
        "network N { = x }",
        "network N { x + y }",
    ],
    "a network is written `network NAME { ... }`": [
        "network { }",
        "h = x",
        "layer h: 4 <- x",
        "network N",
    ],
    "missing '}' to close the network": [
        "network N { input x: 4",
        "network N { input x: 4 network M { }",
    ],
}


def _syntax_error(err: UnexpectedInput, source: Source) -> Diagnostic:
    line = getattr(err, "line", None) or 1
    column = getattr(err, "column", None) or 1
    if isinstance(err, UnexpectedEOF) or line < 1:
        lines = source.text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    found = _describe(err)
    label = None
    try:
        label = err.match_examples(_parser().parse, _EXAMPLES, use_accepts=True)
    except Exception:  # match_examples re-parses; any trouble there only loses the hint
        label = None
    message = f"unexpected {found}" if label is None else f"unexpected {found}: {label.split(':')[0]}"
    hint = "" if label is None else label
    if label is None and isinstance(err, UnexpectedToken) and err.expected:
        hint = "expected " + _expected(err.expected)
    return Diagnostic(message, Span(line, column), source, "error", hint)


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
    "NAME": "a name", "NUMBER": "a number", "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('",
    "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COLON": "':'", "EQUAL": "'='", "COMMA": "','",
    "SIGN": "'-' or '+'", "SEMICOLON": "';'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "__ANON_0": "'<-'", "$END": "end of file", "STATIC": "'static'", "LAST": "'last'",
}


def _expected(names: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(n, "'" + n.lower() + "'") for n in names})
    return ", ".join(words[:8]) + (" ..." if len(words) > 8 else "")


def parse(text: str, name: str = "<string>") -> s.Program:
    """Parse spec text into a syntax tree.

    >>> parse("network N { input x: 2\\n output x }").networks[0].name
    'N'
    """
    source = Source(text, name)
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        d = Diagnostic(f"spec is larger than {MAX_SPEC_BYTES} bytes", Span(1, 1), source,
                       hint="split it into several files")
        raise SpecError([d])
    try:
        tree = _parser().parse(text)
        return _ToSyntax().transform(tree)
    except UnexpectedInput as err:
        raise SpecError([_syntax_error(err, source)]) from None
    except lark.exceptions.VisitError as err:  # a number too large for float and the like
        raise SpecError([Diagnostic(f"cannot read this: {err.orig_exc}", Span(1, 1), source)]) from None
    except RecursionError:
        raise SpecError([Diagnostic("expression is nested too deeply", Span(1, 1), source,
                                    hint="split it into named nodes")]) from None
