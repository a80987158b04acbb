"""Property tests of the front end (parse, inline, check, graph, unroll): it never crashes.

Whatever text comes in, `rnndsl.load_all` gives a list of networks or raises `rnndsl.SpecError` whose
diagnostics each point at a real position and say something; no other exception may escape. Three
sources of text: arbitrary strings, mutations of the example specs, and specs built from the grammar.

The default suite runs a bounded, derandomized budget (5 x 40 = 200 examples, a few seconds); the
`fuzz`-marked variants run the same properties far longer: `pytest -m fuzz tests/test_fuzz_frontend.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnndsl
from rnndsl.graphs.folded import folded

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.rnn"))
TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]

FAST = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_total(text: str) -> list[rnndsl.Network] | rnndsl.SpecError:
    """Run the front end; return its networks or its SpecError. Any other exception fails the test."""
    if "\n" not in text and "{" not in text:
        text += "\n"  # load_all reads a one-line `NAME.rnn` as a path; keep the fuzzer on spec text
    try:
        nets = rnndsl.load_all(text)
    except rnndsl.SpecError as err:
        assert err.diagnostics, "a SpecError with no diagnostics"
        for d in err.diagnostics:
            _assert_diagnostic(d)
        assert str(err)
        return err
    for net in nets:
        for w in net.warnings:
            _assert_diagnostic(w)
        g = folded(net)
        assert set(g.nodes) == {n.name for n in net.nodes}
        assert nx.is_directed_acyclic_graph(rnndsl.unroll(net, 3))
    return nets


def _assert_diagnostic(d: rnndsl.Diagnostic) -> None:
    assert d.line >= 1 and d.column >= 1, d
    assert d.message.strip(), d
    text = d.format()
    assert text.startswith(f"{d.source.name}:{d.line}:{d.column}: {d.severity}: ")


# ---- (a) arbitrary text ----------------------------------------------------------------------

SPEC_ALPHABET = st.sampled_from([*"abhxyt0123456789 \n\t{}[]()<-+*/=:,;.#_", "\u00e9", "\u2190", "\x00"])


@FAST
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    load_total(text)


@FAST
@given(st.text(SPEC_ALPHABET, max_size=120).map(lambda body: "network N {" + body + "}"))
def test_arbitrary_network_body(text: str) -> None:
    load_total(text)


# ---- (b) mutations of the examples ---------------------------------------------------------

TOKEN_RE = re.compile(r"#[^\n]*|[A-Za-z_][A-Za-z0-9_.]*|\d+\.?\d*(?:[eE][+-]?\d+)?|<-|\s+|.", re.S)
VOCABULARY = [
    "network",
    "input",
    "layer",
    "init",
    "output",
    "use",
    "static",
    "tokens(7)",
    "last",
    "zeros",
    "learned",
    "h",
    "x",
    "y",
    "c",
    "s",
    "w",
    "t",
    "l1.h",
    "h[t-1]",
    "h[t+1]",
    "h[t-0]",
    "x[t-2]",
    "y[t-1000]",
    "h[t-1001]",
    "<-",
    "=",
    ":",
    ",",
    ";",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "+",
    "-",
    "*",
    "/",
    "0",
    "1",
    "-1",
    "0.5",
    "1e400",
    "64",
    "tanh",
    "softmax",
    "concat",
    "one_hot",
    "min",
    "tanh(h)",
    "bias=false",
    "dropout=0.1",
    "init=xavier",
    "dropout=2",
    "bias=maybe",
    "Cell(x = x)",
    "Cell(H = 4, x = x)",
    "network C(H)",
    "(H, X)",
    "H",
    "2 * H + 1",
    "H = 0",
    "\n",
    " ",
]


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    tokens = TOKEN_RE.findall(draw(st.sampled_from(TEXTS)))
    for _ in range(draw(st.integers(1, 4))):
        tokens = draw(st.sampled_from(_MUTATIONS))(draw, tokens)
    return "".join(tokens)


def _delete(draw: st.DrawFn, toks: list[str]) -> list[str]:
    i = draw(st.integers(0, len(toks) - 1))
    return toks[:i] + toks[i + draw(st.integers(1, 3)) :]


def _insert(draw: st.DrawFn, toks: list[str]) -> list[str]:
    i = draw(st.integers(0, len(toks)))
    return [*toks[:i], draw(st.sampled_from(VOCABULARY)), *toks[i:]]


def _replace(draw: st.DrawFn, toks: list[str]) -> list[str]:
    i = draw(st.integers(0, len(toks) - 1))
    return [*toks[:i], draw(st.sampled_from(VOCABULARY)), *toks[i + 1 :]]


def _duplicate(draw: st.DrawFn, toks: list[str]) -> list[str]:
    i = draw(st.integers(0, len(toks) - 1))
    j = draw(st.integers(i, min(len(toks), i + 30)))
    return toks[:j] + toks[i:j] + toks[j:]


def _swap(draw: st.DrawFn, toks: list[str]) -> list[str]:
    i, j = draw(st.integers(0, len(toks) - 1)), draw(st.integers(0, len(toks) - 1))
    toks = list(toks)
    toks[i], toks[j] = toks[j], toks[i]
    return toks


def _char_edit(draw: st.DrawFn, toks: list[str]) -> list[str]:
    text = "".join(toks)
    i = draw(st.integers(0, len(text)))
    ch = draw(st.sampled_from(list("{}[]()<-+*/=:,;.#_ \nat01\u00e9")))
    edited = draw(st.sampled_from([text[:i] + ch + text[i:], text[:i] + text[i + 1 :]]))
    return TOKEN_RE.findall(edited)


_MUTATIONS = [_delete, _insert, _replace, _duplicate, _swap, _char_edit]


@FAST
@given(mutated_example())
def test_mutated_examples(text: str) -> None:
    load_total(text)


# ---- (c) specs built from the grammar ------------------------------------------------------


@st.composite
def generated_spec(draw: st.DrawFn, valid: bool = True) -> str:
    """A network of H-wide layers and expressions over inputs of several kinds.

    With `valid`, every size agrees, every same-step reference points to an earlier node and every
    delay is in the past, so the spec must check; otherwise names, sizes and delays are drawn freely.
    When the network is used as a block, it may be generic, `network G(W)`, its layers sized by an
    expression of W that the uses make the width (`W`, `2 * W - W`...).
    """
    width = draw(st.integers(1, 8))
    blocks = draw(st.booleans())
    generic = blocks and draw(st.booleans())
    sized = draw(st.sampled_from(["W", "(W + 1) - 1", "2 * W - W", "W * 1"])) if generic else str(width)
    inputs = [
        f"input x: {draw(st.integers(1, 9))}",
        f"input s: {draw(st.integers(1, 9))} static",
        f"input w: tokens({draw(st.integers(1, 20))})",
    ]
    lines = list(inputs)
    count = draw(st.integers(1, 7))
    names = [f"n{i}" for i in range(count)]
    for i, name in enumerate(names):
        if draw(st.booleans()):
            lines.append(_layer(draw, name, i, names, sized, valid))
        else:
            declared = valid or draw(st.booleans())  # `n = n[t-1]` alone has no size to infer
            lines.append(f"{name}{f': {sized}' if declared else ''} = {_expr(draw, i, names, valid, 3)}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"init {name} = " + draw(st.sampled_from(["zeros", "learned", "s", "0.5", "2 * s"])))
    outputs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    lines += [f"output {name}" + draw(st.sampled_from(["", " last"])) for name in outputs]
    if not valid and draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(VOCABULARY)))
    text = f"network G{'(W)' if generic else ''} {{\n    " + "\n    ".join(lines) + "\n}\n"
    if blocks:  # the same network as a block, used twice, the second reading the first
        delay = draw(st.sampled_from(["", "[t-1]", "[t-2]"]))
        second = f"x = u1.{outputs[0]}{delay}" if valid and inputs[0] == f"input x: {width}" else "x = x"
        given = f"W = {width if valid else draw(st.sampled_from([width, 0, 'W', '2 * W']))}, " if generic else ""
        text += (
            "network U {\n    " + "\n    ".join(inputs) + f"\n    use u1 = G({given}x = x, s = s, w = w)\n"
            f"    use u2 = G({given}{second}, s = s, w = w[t-1])\n    output u2.{outputs[-1]}\n}}\n"
        )
    return text


def _ref(draw: st.DrawFn, i: int, names: list[str], valid: bool) -> str:
    if not valid:
        name = draw(st.sampled_from([*names, "x", "q"]))
        return name + draw(st.sampled_from(["", "", "[t-1]", "[t+1]", "[t-2]", "[t-0]"]))
    if i > 0 and draw(st.booleans()):
        return names[draw(st.integers(0, i - 1))]
    return f"{draw(st.sampled_from(names))}[t-{draw(st.integers(1, 3))}]"


def _expr(draw: st.DrawFn, i: int, names: list[str], valid: bool, depth: int) -> str:
    kind = draw(st.integers(0, 5 if depth > 0 else 0))
    if kind <= 1:
        return _ref(draw, i, names, valid)
    if kind == 2:
        return (
            f"{_expr(draw, i, names, valid, depth - 1)} {draw(st.sampled_from('+-*/'))} "
            f"{_expr(draw, i, names, valid, depth - 1)}"
        )
    if kind == 3:
        return f"{draw(st.sampled_from(['tanh', 'sigmoid', 'relu', 'exp']))}({_expr(draw, i, names, valid, depth - 1)})"
    if kind == 4:
        return f"({draw(st.sampled_from(['0.5', '1', '2']))} - {_expr(draw, i, names, valid, depth - 1)})"
    return f"max({_expr(draw, i, names, valid, depth - 1)}, {_expr(draw, i, names, valid, depth - 1)})"


def _layer(draw: st.DrawFn, name: str, i: int, names: list[str], width: str, valid: bool) -> str:
    sources = draw(st.lists(st.sampled_from(["x", "s", "w", "ref"]), min_size=1, max_size=4))
    if valid and set(sources) == {"s"}:
        sources.append("x")  # a layer of static inputs alone is static, and `n[t-1]` of it an error
    text = ", ".join(_ref(draw, i, names, valid) if src == "ref" else src for src in sources)
    act = draw(st.sampled_from(["", " tanh", " sigmoid", " relu", " softmax"]))
    opts = draw(st.sampled_from(["", " bias=false", " dropout=0.25", " init=orthogonal"]))
    return f"layer {name}: {width}{act}{opts} <- {text}"


@FAST
@given(generated_spec(valid=True))
def test_generated_valid_specs_check(text: str) -> None:
    result = load_total(text)
    assert not isinstance(result, rnndsl.SpecError), f"{text}\n{result}"


@FAST
@given(generated_spec(valid=False))
def test_generated_specs(text: str) -> None:
    load_total(text)


# ---- the same properties, run long ---------------------------------------------------------


@pytest.mark.fuzz
@LONG
@given(st.text(max_size=400))
def test_arbitrary_text_long(text: str) -> None:
    load_total(text)


@pytest.mark.fuzz
@LONG
@given(mutated_example())
def test_mutated_examples_long(text: str) -> None:
    load_total(text)


@pytest.mark.fuzz
@LONG
@given(generated_spec(valid=True))
def test_generated_valid_specs_long(text: str) -> None:
    result = load_total(text)
    assert not isinstance(result, rnndsl.SpecError), f"{text}\n{result}"


@pytest.mark.fuzz
@LONG
@given(generated_spec(valid=False))
def test_generated_specs_long(text: str) -> None:
    load_total(text)
