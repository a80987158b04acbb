"""The checker's diagnostics, word for word.

Each broken spec is a golden pair in tests/golden/errors/: NAME.rnn and NAME.txt, the exact text
`rnndsl check` prints for it (errors, or warnings for the `warn_*` specs; empty when it is clean); one
whose first line is `# network: NAME` is asked for that network by name. Regenerate after an intended
change with `RNNDSL_UPDATE_GOLDEN=1 pytest tests/test_check.py` and review the diff. Also here: every
example and every network in docs/language.md checks without a warning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import rnndsl
from rnndsl.frontend.check import check, check_program
from rnndsl.frontend.parse import parse
from rnndsl.lang.errors import Source, SpecError

ROOT = Path(__file__).resolve().parent.parent
ERRORS = ROOT / "tests" / "golden" / "errors"
CASES = sorted(p.stem for p in ERRORS.glob("*.rnn"))
EXAMPLES = sorted((ROOT / "examples").glob("*.rnn"))
UPDATE = os.environ.get("RNNDSL_UPDATE_GOLDEN") == "1"


def diagnose(path: Path) -> str:
    """What `rnndsl check` reports for a spec: its errors, else its warnings (reported as NAME.rnn). A spec whose
    first line is `# network: NAME` is asked for that network, as `rnndsl.load(path, network=NAME)`,
    `rnndsl.compile` and `rnndsl draw --network` ask."""
    text = path.read_text(encoding="utf-8")
    asked = re.match(r"# network: (\w+)\n", text)
    try:
        program, source = parse(text, path.name), Source(text, path.name)
        nets = [check(program, source, asked[1])] if asked else check_program(program, source)
    except SpecError as err:
        return str(err) + "\n"
    return "".join(w.format() + "\n" for net in nets for w in net.warnings)


def compare_golden(actual: str, golden: Path) -> None:
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with RNNDSL_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CASES)
def test_diagnostics_golden(name: str) -> None:
    compare_golden(diagnose(ERRORS / f"{name}.rnn"), ERRORS / f"{name}.txt")


def test_enough_broken_specs() -> None:
    broken = [n for n in CASES if not n.startswith("warn_")]
    assert len(broken) >= 25
    for name in broken:  # a broken spec must be broken, and say where
        assert re.match(rf"{name}\.rnn:\d+:\d+: error: ", (ERRORS / f"{name}.txt").read_text()), name


def test_every_size_mismatch_says_which_layer_to_add() -> None:
    """The fix docs/language.md gives (add a layer to project one side; for a param, declare it at the size
    it is used at) is in each size mismatch's help."""
    found = 0
    for golden in sorted(ERRORS.glob("*.txt")):
        for block in re.split(r"\n(?=\S)", golden.read_text(encoding="utf-8").strip()):
            head, *rest = block.splitlines() or [""]
            if re.search(r"(has|with) size \d+.* (but|picks from)", head):
                found += 1
                fix = re.search(r"`layer \w+: \d+ <- |`param \w+: \d+`", rest[-1])
                assert "help: " in rest[-1] and fix, (golden.name, block)
    assert found >= 10


def test_docstring_examples() -> None:
    import doctest
    import importlib

    for name in ("rnndsl.frontend.check", "rnndsl.lang.errors", "rnndsl.frontend.parse"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0, name
    assert doctest.testmod(importlib.import_module("rnndsl.frontend.check")).attempted >= 2


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        rnndsl.load_all(text)
    return info.value


# ---- the format of one diagnostic ----------------------------------------------------------


def test_diagnostic_format_exact() -> None:
    err = _error("network N {\n    input x: 4\n    layer h: 8 tanh <- x, hh[t-1]\n    output h\n}\n")
    assert str(err) == (
        "<string>:3:27: error: unknown name `hh`\n"
        "        layer h: 8 tanh <- x, hh[t-1]\n"
        "                              ^^^^^^^\n"
        "    help: did you mean `h`?"
    )
    (d,) = err.diagnostics
    assert (d.line, d.column, d.severity, d.hint) == (3, 27, "error", "did you mean `h`?")


def test_tabs_are_expanded_in_the_echo_and_under_it() -> None:
    """A tab was echoed as a tab (the terminal's next tab stop) but counted as one column by the caret."""
    err = _error("network N {\n\tinput x: 4\n\tlayer\th: 8 tanh <-\tx, hh[t-1]\n\toutput h\n}\n")
    assert str(err) == (
        "<string>:3:24: error: unknown name `hh`\n"  # the real column: a tab is one character
        "            layer   h: 8 tanh <-    x, hh[t-1]\n"
        "                                       ^^^^^^^\n"
        "    help: did you mean `h`?"
    )
    (d,) = _error("network N {\n\tinput x: 4\n\th = x\t?\n\toutput h\n}\n").diagnostics
    assert (d.line, d.column) == (3, 8)
    assert d.format().splitlines()[1:3] == ["            h = x   ?", "                    ^"]


def test_several_errors_are_all_reported_sorted_by_position() -> None:
    err = _error((ERRORS / "several_errors.rnn").read_text())
    found = [(d.line, d.column, d.message) for d in err.diagnostics]
    assert found == sorted(found)
    messages = [m for _, _, m in found]
    assert messages == [
        "unknown activation `tanhh` for layer `h`",
        "unknown name `hh`",
        "size mismatch in `h * x`: `h` has size 64 (layer at 4:5) but `x` has size 16 (input at 3:5)",
        "unknown function `sigmod`",
        "output `q` is not defined",
    ]


def test_errors_in_a_block_used_twice_are_reported_once() -> None:
    text = (
        "network Cell { input x: 4\n layer h: 4 tanh <- x, hh[t-1]\n output h }\n"
        "network M { input x: 4\n use a = Cell(x = x)\n use b = Cell(x = a.h)\n output b.h }\n"
    )
    assert [(d.line, d.message) for d in _error(text).diagnostics] == [(2, "unknown name `hh`")]


def test_each_network_keeps_its_own_warnings() -> None:
    """The file's report was shared, so a network's warnings held every earlier network's too, and `rnndsl
    check` printed the first network's warnings once per network."""
    a, b = rnndsl.load_all("network A { input x: 4\n input u: 4\n output x }\nnetwork B { input x: 4\n output x }")
    assert [w.message for w in a.warnings] == ["input `u` is never used by an output"]
    assert b.warnings == ()


# ---- load / load_all -----------------------------------------------------------------------


def test_load_several_networks_needs_a_name() -> None:
    path = ROOT / "examples" / "stacked.rnn"
    with pytest.raises(ValueError, match=r"holds several networks \(Cell, Stacked\); pick one with network=NAME"):
        rnndsl.load(path)
    assert rnndsl.load(path, network="Stacked").name == "Stacked"
    with pytest.raises(ValueError) as info:
        rnndsl.load(path, network="Stacke")
    assert str(info.value).endswith("has no network `Stacke`; it has: Cell, Stacked (did you mean `Stacked`?)")


def test_spec_error_from_a_file_names_the_file() -> None:
    path = ERRORS / "algebraic_loop.rnn"
    with pytest.raises(SpecError) as info:
        rnndsl.load(path)
    assert str(info.value).startswith(f"{path}:4:32: error: algebraic loop: h -> y -> h")


# ---- what checks cleanly -------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_check_without_warnings(path: Path) -> None:
    nets = rnndsl.load_all(path)
    assert nets
    assert [w.format() for n in nets for w in n.warnings] == []
    first = path.read_text(encoding="utf-8").lstrip()
    assert first.startswith("#"), "each example starts with a comment saying what it is"


def _doc_blocks(lang: str) -> list[str]:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


@pytest.mark.parametrize("block", _doc_blocks("rnn"), ids=lambda b: b.split("network ")[1].split()[0])
def test_language_reference_examples(block: str) -> None:
    nets = rnndsl.load_all(block)
    assert [w.format() for n in nets for w in n.warnings] == []


def test_language_reference_walkthrough_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    (code,) = _doc_blocks("python")
    exec(compile(code, "docs/language.md", "exec"), {})


def test_language_reference_shows_real_diagnostics() -> None:
    """The algebraic loop shown in the walk-through is what the checker prints for it."""
    jordan = (ROOT / "examples" / "jordan.rnn").read_text(encoding="utf-8")
    broken = re.sub(r"<- x, y\[t-1\].*", "<- x, y", jordan)
    with pytest.raises(SpecError) as info:
        check_program(parse(broken, "examples/jordan.rnn"), Source(broken, "examples/jordan.rnn"))
    assert str(info.value) in (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


# ---- regressions found by fuzzing and review -----------------------------------------------


def test_block_that_outputs_its_own_input() -> None:
    """The input was inlined as an alias, not a node, so reading `b.x` outside crashed (KeyError)."""
    net = rnndsl.load(
        "network B { input x: 4\n output x }\n"
        "network M { input y: 4\n use b = B(x = y)\n layer h: 4 <- b.x\n output h }",
        network="M",
    )
    assert [n.name for n in net.nodes] == ["y", "b.x", "h"]
    assert sorted(rnndsl.graph(net).edges(data="delay")) == [("b.x", "h", 0), ("y", "b.x", 0)]


def test_delays_through_a_block_argument_add_up_to_zero() -> None:
    """`x[t-1]` inside, with `x = y[t+1]`, reads `y` at the same step; it was reported as `y[t+0]`."""
    net = rnndsl.load(
        "network C { input x: 4\n layer h: 4 tanh <- x[t-1], h[t-1]\n output h }\n"
        "network M { input y: 4\n use c = C(x = y[t+1])\n output c.h }",
        network="M",
    )
    assert sorted(rnndsl.graph(net).edges(data="delay")) == [("c.h", "c.h", 1), ("y", "c.h", 0)]


def test_number_init_broadcasts_without_a_projection() -> None:
    net = rnndsl.load("network N { input x: 4\n layer h: 4 <- x, h[t-1]\n init h = 0.5\n output h }")
    assert net["h"].init.size == 4
    assert net.parameter_count() == 4 * (4 + 4) + 4  # no projection for the number


@pytest.mark.parametrize(
    "text",
    [
        "network N { input x: 1e400\n output x }",
        "network N { input x: 4\n h = x[t-1e400]\n output h }",
        "network N { input x: 4\n layer h: 4 dropout=-1e999 <- x\n output h }",
        "network N { input x: 4\n h = x + " + " + ".join(["x"] * 400) + "\n output h }",
        "network N { input x: 4\n h = " + "tanh(" * 350 + "x" + ")" * 350 + "\n output h }",
    ],
)
def test_huge_numbers_and_deep_expressions_are_spec_errors(text: str) -> None:
    """These raised OverflowError / RecursionError from the checker."""
    assert _error(text).diagnostics[0].line >= 1


def _chain(depth: int) -> str:
    """B1 uses B0, B2 uses B1, ...: blocks nested `depth` deep."""
    parts = ["network B0 { input x: 2\n y = tanh(x)\n output y }"]
    parts += [
        f"network B{i} {{ input x: 2\n use b = B{i - 1}(x = x)\n y = b.y\n output y }}" for i in range(1, depth + 1)
    ]
    return "\n".join(parts)


def test_blocks_nest_16_deep_and_no_deeper() -> None:
    assert len(rnndsl.load(_chain(16), network="B16").nodes) == 18  # x and a y at each of 17 levels
    err = _error(_chain(17))
    assert [d.message for d in err.diagnostics] == ["blocks nested more than 16 deep"]


def test_a_use_explosion_is_refused_before_it_is_expanded() -> None:
    """A block used 30 times by a block used 30 times: 1 + 30 * (1 + 30 * 12 + 2) + 2 = 10,893 statements
    from a 2 KB spec. Expanding such specs took minutes; now the count is known before expanding."""
    body = "\n".join(f" h{i} = tanh(x)" for i in range(10))
    uses = "\n".join(f" use u{i} = B0(x = x)" for i in range(30))
    uses1 = "\n".join(f" use u{i} = B1(x = x)" for i in range(30))
    text = (
        f"network B0 {{ input x: 2\n{body}\n output h0 }}\n"
        f"network B1 {{ input x: 2\n{uses}\n y = u0.h0\n output y }}\n"
        f"network B2 {{ input x: 2\n{uses1}\n y = u0.y\n output y }}\n"
    )
    (d,) = _error(text).diagnostics
    assert d.message == (
        "network `B2` expands to 10,893 statements through its `use` blocks, above the limit of 10,000"
    )


def test_long_chains_written_backwards_are_inferred() -> None:
    """Sizes and static-ness used to settle one link per sweep over all nodes (cubic: 2,000 links took 35 s)."""
    n = 800
    chain = "\n".join(f" n{i} = tanh(n{i + 1})" for i in range(n))
    text = f"network C {{ input s: 3 static\n input x: 3\n{chain}\n n{n} = tanh(s)\n y = n0 + x\n output y }}"
    net = rnndsl.load(text)
    assert all(net[f"n{i}"].static and net[f"n{i}"].size == 3 for i in range(n + 1))
    assert not net["y"].static


def test_many_errors_are_capped() -> None:
    """Each unknown name was compared with every known one: 2,000 unknown names took 15 s."""
    names = "\n".join(f" n{i} = tanh(q{i})" for i in range(150))
    err = _error(f"network E {{ input x: 2\n{names}\n output n0 }}")
    assert len(err.diagnostics) == 101
    assert err.diagnostics[-1].message == "50 more errors not shown"
    assert err.diagnostics[-1].line == 102  # where the first error left out is


def test_a_spec_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.rnn"
    path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "examples" / "elman.rnn").read_bytes())
    elman = rnndsl.load(ROOT / "examples" / "elman.rnn")
    assert rnndsl.load(path).nodes == elman.nodes
    assert rnndsl.load(path).source.text == elman.source.text  # the echo of a diagnostic shows no mark
    assert rnndsl.load(path.read_text(encoding="utf-8")).name == "Elman"  # the text itself, mark and all
    path.write_bytes("\ufeffnetwork N { input x: 4; output y }\n".encode())
    with pytest.raises(SpecError) as info:
        rnndsl.load(path)
    assert str(info.value).startswith(
        f"{path}:1:25: error: output `y` is not defined\n"
        "    network N { input x: 4; output y }\n"
        "                            ^^^^^^^^\n"
    )
