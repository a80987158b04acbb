"""The parser: golden syntax-tree dumps of every example, and targeted tests of each construct.

The dump of examples/NAME.rnn is tests/golden/parse/NAME.txt: one line per statement with its span,
expressions as prefix S-expressions, so a change in precedence or in positions shows in the diff.
Regenerate after an intended change with `RNNDSL_UPDATE_GOLDEN=1 pytest tests/test_parse.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rnndsl.frontend.parse import parse
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Span, SpecError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.rnn"))
GOLDEN = ROOT / "tests" / "golden" / "parse"
UPDATE = os.environ.get("RNNDSL_UPDATE_GOLDEN") == "1"


# ---- the dump --------------------------------------------------------------------------------


def sexpr(e: s.Expr) -> str:
    """Prefix form: `(+ (* f c[t-1]) (* i g))`; numbers as written by %g."""
    if isinstance(e, s.Num):
        return f"{e.value:g}"
    if isinstance(e, s.Ref):
        return str(e)
    if isinstance(e, s.Neg):
        return f"(neg {sexpr(e.operand)})"
    if isinstance(e, s.BinOp):
        return f"({e.op} {sexpr(e.left)} {sexpr(e.right)})"
    return f"({e.fn}{''.join(' ' + sexpr(a) for a in e.args)})"


def _at(span: Span) -> str:
    return f"@{span.line}:{span.column}-{span.end_line}:{span.end_column}"


def size(z: s.Size) -> str:
    """A size: a number by %g, a size expression (a generic network's) in prefix form, `(* 2 H)`."""
    return f"{z:g}" if isinstance(z, float) else sexpr(z)


def dump_stmt(st: s.Stmt) -> str:
    if isinstance(st, s.Input):
        return f"input {st.name} {st.kind} {size(st.size)}" + ("" if st.feed is None else f" = {sexpr(st.feed)}")
    if isinstance(st, s.Param):
        return (
            f"param {st.name} {size(st.size)} = {st.init:g}"
            if isinstance(st.init, float)
            else f"param {st.name} {size(st.size)} = {st.init}"
        )
    if isinstance(st, s.Layer):
        opts = "".join(f" {k}={v:g}" if isinstance(v, float) else f" {k}={v}" for k, v, _ in st.options)
        return f"layer {st.name} {size(st.size)} {st.activation}{opts} <- {' ; '.join(sexpr(e) for e in st.sources)}"
    if isinstance(st, s.Assign):
        sized = "" if st.size is None else f" :{size(st.size)}"
        return f"assign {st.name}{sized} = {sexpr(st.expr)}"
    if isinstance(st, s.Init):
        return f"init {st.name} {st.policy}" + ("" if st.expr is None else f" {sexpr(st.expr)}")
    if isinstance(st, s.Output):
        return f"output {st.name}" + (" last" if st.last else "")
    args = ", ".join(f"{k} = {sexpr(e)}" for k, e, _ in st.args)
    return f"use {st.name} = {st.network}({args})"


def dump(program: s.Program) -> str:
    lines = []
    for net in program.networks:
        sizes = f"({', '.join(name for name, _ in net.sizes)})" if net.sizes else ""
        lines.append(f"network {net.name}{sizes} {_at(net.span)}")
        lines += [f"  {dump_stmt(st)}  {_at(st.span)}" for st in net.body]
    for model in program.models:
        lines.append(f"model {model.name} {_at(model.span)}")
        for inst in model.instances:
            binds = ", ".join(f"{a} = {b}" for a, b, _ in inst.bindings)
            lines.append(f"  {inst.name} = {inst.network}({binds})  {_at(inst.span)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_parse_golden(path: Path) -> None:
    actual = dump(parse(path.read_text(encoding="utf-8"), path.name))
    golden = GOLDEN / f"{path.stem}.txt"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with RNNDSL_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8")


def test_every_golden_has_an_example() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == [p.stem for p in EXAMPLES]


# ---- targeted tests --------------------------------------------------------------------------


def body(text: str) -> tuple[s.Stmt, ...]:
    """The statements of a one-network spec written as its body."""
    (net,) = parse("network N {\n" + text + "\n}").networks
    return net.body


def expr_of(text: str) -> s.Expr:
    (st,) = body(f"v = {text}")
    assert isinstance(st, s.Assign)
    return st.expr


@pytest.mark.parametrize(
    ("text", "name", "offset", "delay", "shown"),
    [
        ("h", "h", 0, 0, "h"),
        ("h[t-1]", "h", -1, 1, "h[t-1]"),
        ("h[t-2]", "h", -2, 2, "h[t-2]"),
        ("b[t+1]", "b", 1, -1, "b[t+1]"),
        ("b[ t + 3 ]", "b", 3, -3, "b[t+3]"),
        ("enc.h[t-1]", "enc.h", -1, 1, "enc.h[t-1]"),
        ("t[t-1]", "t", -1, 1, "t[t-1]"),  # `t` is only special inside the brackets
    ],
)
def test_delayed_references(text: str, name: str, offset: int, delay: int, shown: str) -> None:
    ref = expr_of(text)
    assert isinstance(ref, s.Ref)
    assert (ref.name, ref.offset, ref.delay, str(ref)) == (name, offset, delay, shown)
    assert ref.explicit == ("[" in text)


def test_zero_and_fractional_delays_parse_and_are_left_to_the_checker() -> None:
    assert expr_of("h[t-0]") == s.Ref("h", 0)
    assert expr_of("h[t-1.5]") == s.Ref("h", -1.5)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a + b * c", "(+ a (* b c))"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b / c", "(/ (/ a b) c)"),
        ("(a + b) * c", "(* (+ a b) c)"),
        ("-a * b", "(* (neg a) b)"),
        ("- -a", "(neg (neg a))"),
        ("1 - z", "(- 1 z)"),
        ("(1 - z) * n + z * h[t-1]", "(+ (* (- 1 z) n) (* z h[t-1]))"),
        ("f * c[t-1] + i * g", "(+ (* f c[t-1]) (* i g))"),
        ("tanh(nx + r * nh)", "(tanh (+ nx (* r nh)))"),
        ("concat(f, b, x[t+1])", "(concat f b x[t+1])"),
        ("f()", "(f)"),
        ("0.5 + .5 + 1e-3 + 2E2", "(+ (+ (+ 0.5 0.5) 0.001) 200)"),
    ],
)
def test_expression_shapes(text: str, tree: str) -> None:
    assert sexpr(expr_of(text)) == tree


def test_layer_with_activation_options_and_sources() -> None:
    (layer,) = body("layer h: 64 tanh dropout=0.1 bias=false init=orthogonal <- x, h[t-1], concat(a, b)")
    assert isinstance(layer, s.Layer)
    assert (layer.name, layer.size, layer.activation) == ("h", 64, "tanh")
    assert [(k, v) for k, v, _ in layer.options] == [("dropout", 0.1), ("bias", "false"), ("init", "orthogonal")]
    assert [sexpr(e) for e in layer.sources] == ["x", "h[t-1]", "(concat a b)"]
    assert layer.activation_span == Span(2, 13, 2, 17)


def test_layer_without_activation_is_identity_and_options_may_come_first() -> None:
    (plain, opts) = body("layer y: 10 <- h\nlayer z: 4 bias=false dropout=-0.5 <- h")
    assert isinstance(plain, s.Layer) and isinstance(opts, s.Layer)
    assert (plain.activation, plain.options) == ("identity", ())
    assert opts.activation == "identity"
    assert [(k, v) for k, v, _ in opts.options] == [("bias", "false"), ("dropout", -0.5)]


def test_keywords_are_names_where_no_keyword_fits() -> None:
    (layer,) = body("layer h: 8 init=zeros <- x")
    assert isinstance(layer, s.Layer)
    assert [(k, v) for k, v, _ in layer.options] == [("init", "zeros")]


@pytest.mark.parametrize(
    ("text", "kind", "size"),
    [
        ("input x: 16", "seq", 16),
        ("input s: 8 static", "static", 8),
        ("input w: tokens(100)", "tokens", 100),
    ],
)
def test_inputs(text: str, kind: str, size: int) -> None:
    (inp,) = body(text)
    assert isinstance(inp, s.Input)
    assert (inp.kind, inp.size) == (kind, size)


def test_sized_and_unsized_assignments() -> None:
    sized, plain = body("c: 64 = f * c[t-1]\nh = tanh(c)")
    assert isinstance(sized, s.Assign) and isinstance(plain, s.Assign)
    assert (sized.name, sized.size, sexpr(sized.expr)) == ("c", 64, "(* f c[t-1])")
    assert (plain.name, plain.size) == ("h", None)


@pytest.mark.parametrize(
    ("text", "policy", "expr"),
    [
        ("init h = zeros", "zeros", None),
        ("init h = learned", "learned", None),
        ("init h = s", "expr", "s"),
        ("init h = tanh(s) * 0.5", "expr", "(* (tanh s) 0.5)"),
        ("init h = 1", "expr", "1"),
        ("init h = zeros[t-1]", "expr", "zeros[t-1]"),  # not the policy: the checker reports it
        ("init h = zeros + 1", "expr", "(+ zeros 1)"),
    ],
)
def test_init_policies(text: str, policy: str, expr: str | None) -> None:
    (init,) = body(text)
    assert isinstance(init, s.Init)
    assert init.policy == policy
    assert (None if init.expr is None else sexpr(init.expr)) == expr


def test_outputs() -> None:
    every, last = body("output y\noutput h last")
    assert every == s.Output("y", False) and last == s.Output("h", True)


def test_use_with_arguments() -> None:
    (use,) = body("use l2 = Cell(x = l1.h, s = 2 * s, w = w[t-1])")
    assert isinstance(use, s.Use)
    assert (use.name, use.network) == ("l2", "Cell")
    assert [(k, sexpr(e)) for k, e, _ in use.args] == [("x", "l1.h"), ("s", "(* 2 s)"), ("w", "w[t-1]")]
    assert use.network_span == Span(2, 10, 2, 14)
    (empty,) = body("use b = Block()")
    assert isinstance(empty, s.Use) and empty.args == ()


def test_separators_comments_and_several_networks() -> None:
    program = parse("# head\nnetwork A { input x: 4; output x } # tail\n\nnetwork B{input y:2\noutput y;;}")
    assert [n.name for n in program.networks] == ["A", "B"]
    assert [len(n.body) for n in program.networks] == [2, 2]
    assert program.networks[1].span.line == 4


def test_empty_file_parses_to_no_networks() -> None:
    assert parse("") == s.Program(())
    assert parse("# nothing here\n") == s.Program(())


def test_spans_are_one_based_and_end_exclusive() -> None:
    (layer,) = body("layer h: 4 <- x, h[t-1]")
    assert isinstance(layer, s.Layer)
    assert layer.span == Span(2, 1, 2, 24)
    assert [src.span for src in layer.sources] == [Span(2, 15, 2, 16), Span(2, 18, 2, 24)]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("network N { layer h: 4 tanh x, y }", 1, 30, "unexpected ',': a layer lists its sources after '<-'"),
        ("network N { input x: 4\n layer h tanh <- x }", 2, 10, "unexpected 'tanh': a layer needs a size"),
        ("network N { input x: 4\n h = x[1] }", 2, 8, "unexpected '1': a delayed reference is written"),
        ("network N { input x: 4", 1, 23, "unexpected end of file: missing '}' to close the network"),
        ("network N { h = x ? y }", 1, 19, "unexpected character '?'"),
        ("h = x", 1, 1, "unexpected 'h': a network is written `network NAME { ... }`"),
    ],
)
def test_syntax_errors_point_at_the_mistake(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse(text)
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (line, column)
    assert d.message.startswith(message)


def test_a_mistake_is_recognised_in_any_statement_not_only_the_first() -> None:
    """Lark's match_examples compares stack depth too, so only the first statement got a hint."""
    first = "network N { layer h: 4 tanh x }"
    later = "network A { input x: 1\n output x }\nnetwork N { input x: 4\n layer g: 4 <- x\n layer h: 4 tanh x }"
    for text in (first, later):
        with pytest.raises(SpecError) as info:
            parse(text)
        assert "a layer lists its sources after '<-'" in info.value.diagnostics[0].message


def test_a_name_after_empty_statements_is_a_diagnostic_not_a_crash() -> None:
    """`network N {;_0t/}` (a fuzz draw) raised IndexError: the classifier looked for a statement before the
    name among the `;`s."""
    with pytest.raises(SpecError) as info:
        parse("network N {;_0t/}")
    d = info.value.diagnostics[0]
    assert (d.line, d.column) == (1, 16) and d.message.startswith("unexpected '/'")


def test_a_byte_order_mark_is_skipped() -> None:
    """Editors that save UTF-8 with a BOM gave `1:1: error: unexpected character '\\ufeff'`."""
    assert [n.name for n in parse("\ufeffnetwork N { input x: 2\n output x }").networks] == ["N"]
    with pytest.raises(SpecError) as info:
        parse("\ufeffnetwork N { h = x ? y }")
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (1, 19)  # counted without the mark, as the editor shows the line
    assert d.format().splitlines()[1:3] == ["    network N { h = x ? y }", "                      ^"]


@pytest.mark.parametrize(
    ("text", "line", "column", "message", "hint"),
    [
        # read as the option `tanh=x`; it was reported at the next line's `h`
        (
            "network N {\n    input x: 4\n    layer h: 16 tanh = x\n    output h\n}\n",
            3,
            22,
            "unexpected '=': a layer lists its sources after '<-'",
            "write `<-` instead of `=`",
        ),
        (
            "network N {\n    input x: 4\n    layer h: 16 tanh = x[t-1], x\n    output h\n}\n",
            3,
            22,
            "unexpected '=': a layer lists its sources after '<-'",
            "write `<-` instead of `=`",
        ),
        (
            "network N { input x: 4\n layer h: 16 tanh = x }",
            2,
            19,
            "unexpected '=': a layer lists its sources after '<-'",
            "write `<-` instead of `=`",
        ),
        # the option list ran on into the next statement; it was reported there
        (
            "network N {\n    input x: 4\n    layer h: 16 tanh dropout=0.1\n    output h\n}\n",
            3,
            33,
            "layer `h` has no sources: a layer lists its sources after '<-'",
            "a layer lists its sources after '<-'",
        ),
        # the output `last`, then a statement `h ...`; it was reported at the `}` (or the next statement)
        (
            "network N {\n    input x: 4\n    layer h: 16 tanh <- x\n    output last h\n}\n",
            4,
            12,
            "unexpected 'last': `last` comes after the output's name",
            "write `output h last`",
        ),
        (
            "network N {\n    input x: 4\n    output last x\n    layer h: 16 tanh <- x\n    output h\n}\n",
            3,
            12,
            "unexpected 'last': `last` comes after the output's name",
            "write `output x last`",
        ),
    ],
)
def test_mistakes_noticed_a_statement_later_are_reported_where_they_are(
    text: str, line: int, column: int, message: str, hint: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse(text)
    (d,) = info.value.diagnostics
    assert (d.line, d.column, d.message) == (line, column, message)
    assert d.hint.startswith(hint)


def test_layer_options_and_an_output_called_last_still_parse() -> None:
    """What the late mistakes look like, written right: options with `=`, an output named like a keyword."""
    (layer, out) = body("layer h: 16 tanh bias=false init=xavier <- x\noutput last")
    assert isinstance(layer, s.Layer) and [k for k, _, _ in layer.options] == ["bias", "init"]
    assert out == s.Output("last", False)  # the checker refuses the name; the parser reads it


def test_the_expression_walker() -> None:
    """One walker (children, walk, fold, map_refs) under every pass; deep expressions need no recursion."""
    from rnndsl.lang import syntax as s

    e = s.BinOp("+", s.Call("tanh", (s.Ref("a", -1, explicit=True),)), s.Neg(s.Ref("b")))
    assert [type(x).__name__ for x in s.walk(e)] == ["BinOp", "Call", "Ref", "Neg", "Ref"]
    assert [r.name for r in s.refs(e)] == ["a", "b"] and s.calls(e) == {"tanh"} and s.depth(e) == 3
    assert s.show(e) == "tanh(a[t-1]) + -b"
    renamed = s.map_refs(e, lambda r: s.Ref("enc." + r.name, r.offset, explicit=r.explicit))
    assert s.show(renamed) == "tanh(enc.a[t-1]) + -enc.b" and s.show(e) == "tanh(a[t-1]) + -b"
    deep: s.Expr = s.Ref("x")
    for _ in range(20_000):  # far past Python's recursion limit
        deep = s.Neg(deep)
    assert s.depth(deep) == 20_001 and len(s.refs(deep)) == 1
