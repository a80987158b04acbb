"""Size-generic blocks: `network Cell(H) { input x: H ... }` used as `use l1 = Cell(H = 128, x = e)`.

What a generic block parses to, that its uses check through it, that each use at its sizes is exactly the
hand-written copy at those sizes (the checked networks are equal, and compiled with the same parameters
they give the same outputs), size arithmetic in every place a size stands, and what `rnndsl check`
says of a file that holds one. The diagnostics are goldens in tests/golden/errors/generic_*.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import torch
from _differential import compare, random_inputs, randomize

import rnndsl
from rnndsl.cli import main
from rnndsl.frontend import sizes
from rnndsl.frontend.parse import parse
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import SpecError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "stacked_generic.rnn"

# The example's StackedLSTM written out by hand: LSTMCell copied once per width, as it had to be before.
HAND_WRITTEN = """
network LSTMCell32to128 {
    input  x: 32
    layer  i: 128 sigmoid <- x, h[t-1]
    layer  f: 128 sigmoid <- x, h[t-1]
    layer  g: 128 tanh    <- x, h[t-1]
    layer  o: 128 sigmoid <- x, h[t-1]
    c = f * c[t-1] + i * g
    h = o * tanh(c)
    output h
}
network LSTMCell128to64 {
    input  x: 128
    layer  i: 64 sigmoid <- x, h[t-1]
    layer  f: 64 sigmoid <- x, h[t-1]
    layer  g: 64 tanh    <- x, h[t-1]
    layer  o: 64 sigmoid <- x, h[t-1]
    c = f * c[t-1] + i * g
    h = o * tanh(c)
    output h
}
network StackedLSTM {
    input  x: 32
    use    l1 = LSTMCell32to128(x = x)
    use    l2 = LSTMCell128to64(x = l1.h)
    layer  y: 10 <- l2.h
    output y
}
"""


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        rnndsl.load_all(text)
    return info.value


# ---- parse -----------------------------------------------------------------------------------------


def test_a_generic_network_parses_to_its_sizes_and_size_expressions() -> None:
    (cell, top) = parse(
        "network Cell(X, H) {\n input x: X\n layer h: 2 * H + 1 tanh <- x\n c: (64) = h\n output h }\n"
        "network N { input x: 8\n use c = Cell(X = 8, H = 2 * 4, x = x)\n output c.h }"
    ).networks
    assert [n for n, _ in cell.sizes] == ["X", "H"] and cell.generic and not top.generic
    assert [(sp.line, sp.column) for _, sp in cell.sizes] == [(1, 14), (1, 17)]
    x, h, c, _ = cell.body
    assert isinstance(x, s.Input) and x.size == s.Ref("X")
    assert isinstance(h, s.Layer) and s.show(h.size) == "2 * H + 1"  # type: ignore[arg-type]
    assert isinstance(c, s.Assign) and c.size == 64.0  # a plain number stays a float, parenthesised or not
    (use,) = [st for st in top.body if isinstance(st, s.Use)]
    assert [(name, s.show(e)) for name, e, _ in use.args] == [("X", "8"), ("H", "2 * 4"), ("x", "x")]


def test_init_is_a_layer_option_right_after_a_size() -> None:
    """The word after a size is lexed where any size may end, and there `init` starts a statement: `layer h:
    H init=zeros <- x` read `init` as that keyword and failed, until the option key took it as well."""
    net = rnndsl.load(
        "network C(H) { input x: H\n layer h: H init=zeros <- x\n layer k: 2 * H init=xavier <- x\n output h\n"
        " output k }\nnetwork N { input x: 3\n layer j: 3 init=orthogonal <- x\n use c = C(H = 3, x = j)\n"
        " output c.h\n output c.k }"
    )
    assert [(n.name, n.size, n.weight_init) for n in net.nodes if n.op == "layer"] == [
        ("j", 3, "orthogonal"),
        ("c.h", 3, "zeros"),
        ("c.k", 6, "xavier"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("network N() { input x: 3\n output x }", "unexpected ')': a generic network's sizes are names"),
        ("network N(H,) { input x: H\n output x }", "unexpected ')': a generic network's sizes are names"),
        ("network N(8) { input x: 3\n output x }", "unexpected '8': a generic network's sizes are names"),
        ("network N { input x: 3 static\n output x last }\nmodel M { a = N(H = 3) }", "unexpected '3': a model"),
        ("network N(H) { input x: H / 2\n output x }", "unexpected '/'"),
    ],
)
def test_size_syntax_errors(text: str, message: str) -> None:
    (d,) = _error(text).diagnostics
    assert d.message.startswith(message), d.format()


def test_sizes_module_doctests() -> None:
    result = doctest.testmod(sizes)
    assert result.failed == 0 and result.attempted >= 2


# ---- what a use makes: the hand-written copy at its sizes -------------------------------------------


def test_each_use_is_the_hand_written_copy_at_its_sizes() -> None:
    generic = rnndsl.load(EXAMPLE)
    hand = rnndsl.load(HAND_WRITTEN, network="StackedLSTM")
    assert generic.nodes == hand.nodes  # names, sizes, sources, expressions: spans aside, the same network
    assert generic.outputs == hand.outputs
    assert generic.parameter_count() == hand.parameter_count() == 132_490


def test_compiled_with_the_same_parameters_they_compute_the_same() -> None:
    generic = randomize(rnndsl.compile(EXAMPLE).double().eval())
    hand = rnndsl.compile(HAND_WRITTEN, network="StackedLSTM").double().eval()
    assert generic.state_dict().keys() == hand.state_dict().keys()
    hand.load_state_dict(generic.state_dict())
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4])
    a, b = generic(x=x, lengths=lengths), hand(x=x, lengths=lengths)
    torch.testing.assert_close(a.y, b.y, rtol=0, atol=0)
    assert generic.code() == hand.code()


def test_two_widths_from_one_generic_lstm_cell() -> None:
    net = randomize(rnndsl.compile(EXAMPLE).double().eval())
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if ".weight." in k}
    assert shapes["layers.l1__i.weight.0"] == (128, 32) and shapes["layers.l1__i.weight.1"] == (128, 128)
    assert shapes["layers.l2__i.weight.0"] == (64, 128) and shapes["layers.l2__i.weight.1"] == (64, 64)
    out = compare(net, **random_inputs(net, "cpu", 2, 4))  # the generated code against the reference executor
    assert out.y.shape == (2, 4, 10)


def test_nested_generic_blocks_and_size_arithmetic_in_every_place() -> None:
    """A generic block using another with sizes computed from its own; a size expression stands as an input's
    size, a vocabulary size, a param's, a layer's and a sized assignment's."""
    text = """
network Cell(X, H) {
    input  x: X
    layer  h: H tanh <- x, h[t-1]
    output h
}
network Tower(V, H) {
    input  w: tokens(V + 1)
    param  g: 2 * H
    layer  e: H <- w
    use    a = Cell(X = H, H = 2 * H, x = e)
    use    b = Cell(X = 2 * H, H = (H - 1) * 3 - H + 3, x = a.h)
    both: 2 * H = a.h * g + b.h
    output both
}
network Top {
    input  w: tokens(100)
    use    t = Tower(V = 99, H = 8, w = w)
    output t.both
}
"""
    net = rnndsl.load(text)
    assert {n.name: n.size for n in net.nodes} == {
        "w": 100,
        "t.g": 16,
        "t.e": 8,
        "t.a.h": 16,
        "t.b.h": 16,
        "t.both": 16,
    }
    compare(randomize(rnndsl.compile(text).double().eval()), w=torch.randint(0, 100, (2, 5)))


def test_a_block_used_at_two_sizes_reports_what_each_use_gets_wrong() -> None:
    """Errors inside a generic block depend on the sizes: each use's own values are named."""
    err = _error(
        "network C(H) { input x: H\n layer k: H - 100 <- x\n output k }\n"
        "network N { input x: 64\n input y: 128\n use a = C(H = 64, x = x)\n use b = C(H = 128, x = y)\n"
        " use c = C(H = 99, x = x)\n output a.k\n output b.k\n output c.k }"
    )
    assert [(d.line, d.message) for d in err.diagnostics] == [
        (2, "size of `k` is `H - 100` = -36 with H = 64, not a positive whole number"),
        (2, "size of `k` is `H - 100` = -1 with H = 99, not a positive whole number"),
        (8, "block input `c.x` has size 99 (H = 99) but `x` has size 64 (input at 4:13)"),
    ]


def test_a_generic_block_used_twice_at_one_size_is_expanded_once() -> None:
    text = (
        "network C(H) { input x: H\n layer h: H tanh <- x, h[t-1]\n output h }\n"
        "network N { input x: 4\n use a = C(H = 4, x = x)\n use b = C(H = 2 + 2, x = a.h)\n output b.h }"
    )
    assert [n.name for n in rnndsl.load(text).nodes] == ["x", "a.h", "b.h"]


def test_a_generic_block_names_are_checked_once_though_it_has_no_network_of_its_own() -> None:
    err = _error(
        "network C(H) { input x: H\n layer __h: H <- x\n output __h }\n"
        "network N { input x: 4\n use a = C(H = 4, x = x)\n use b = C(H = 4, x = x)\n output a.__h }"
    )
    assert [(d.line, d.message) for d in err.diagnostics] == [
        (2, "`__h`: names may not start with '_' or contain '__'"),
    ]


# ---- whole files: load, compile, check -----------------------------------------------------------------


def test_load_and_compile_skip_the_generic_network_and_refuse_it_by_name() -> None:
    assert [n.name for n in rnndsl.load_all(EXAMPLE)] == ["StackedLSTM"]
    assert rnndsl.load(EXAMPLE).name == "StackedLSTM"  # the one network with its sizes
    for call in (lambda: rnndsl.load(EXAMPLE, network="LSTMCell"), lambda: rnndsl.compile(EXAMPLE, "LSTMCell")):
        with pytest.raises(SpecError) as info:
            call()
        (d,) = info.value.diagnostics
        assert (d.line, d.column) == (3, 9)
        assert "use lstmcell = LSTMCell(X = 64, H = 64, x = ...)" in d.hint


def test_rnndsl_check_checks_the_generic_block_through_its_uses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines()[:3] == [
        f"{EXAMPLE}: ok",
        "  network LSTMCell(X, H): generic, checked where it is used, with X = 32, H = 128; X = 128, H = 64",
        "  network StackedLSTM: 14 nodes, 132,490 parameters",
    ]


def test_rnndsl_check_says_when_a_generic_block_is_not_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "unused.rnn"
    spec.write_text("network C(H) { input x: H\n output x }\nnetwork N { input x: 2\n output x }\n")
    assert main(["check", str(spec)]) == 0
    assert "  network C(H): generic, not used by any network here: only its declaration is checked" in (
        capsys.readouterr().out.splitlines()
    )


def test_rnndsl_draw_of_a_generic_network_says_how_to_give_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["draw", str(EXAMPLE), "--network", "LSTMCell", "-o", str(tmp_path / "cell.dot")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{EXAMPLE}:3:9: error: network `LSTMCell` is generic") and "help: " in err
    assert not (tmp_path / "cell.dot").exists()


def test_used_with_follows_sizes_through_generic_blocks() -> None:
    program = parse(
        "network C(H) { input x: H\n output x }\nnetwork P(K) { input x: K\n use c = C(H = 2 * K, x = x)\n"
        " output c.x }\nnetwork U(H) { input x: H\n output x }\n"
        "network N { input x: 3\n use p = P(K = 3, x = x)\n use q = P(K = 5, x = x)\n output p.c.x }"
    )
    assert sizes.used_with(program) == {"C": [{"H": 6}, {"H": 10}], "P": [{"K": 3}, {"K": 5}], "U": []}


def test_the_language_reference_shows_what_rnndsl_check_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check", "examples/stacked_generic.rnn"]) == 0
    shown = "$ rnndsl check examples/stacked_generic.rnn\n" + capsys.readouterr().out
    assert shown in (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
