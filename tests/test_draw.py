"""Drawing: DOT text, SVG and PNG pictures of the folded graph and the unrolled DAG, and `rnndsl draw`."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest

import rnndsl
from rnndsl.cli import main
from rnndsl.draw import EDGE_STYLES, MAX_DRAW_STEPS, _folded_scene, _unrolled_scene, draw, to_dot

ELMAN = "network Elman {\n input x: 16\n layer h: 64 tanh <- x, h[t-1]\n layer y: 10 <- h\n output y\n}\n"
JORDAN = (
    "network Jordan {\n input x: 16\n layer h: 64 tanh <- x, y[t-1]\n layer y: 10 softmax <- h\n"
    " init y = learned\n output y\n}\n"
)
LSTM = """network LSTM {
  input x: 16
  layer i: 32 sigmoid <- x, h[t-1]
  layer f: 32 sigmoid <- x, h[t-1]
  layer o: 32 sigmoid <- x, h[t-1]
  layer g: 32 tanh <- x, h[t-1]
  c = f * c[t-1] + i * g
  h = o * tanh(c)
  output h
}
"""
BIDIRECTIONAL = """network Bi {
  input x: 8
  input s: 4 static
  layer f: 16 tanh <- x, f[t-1], s
  layer b: 16 tanh <- x, b[t+1]
  layer y: 5 <- f, b, y[t-2]
  output y last
}
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

try:  # loaded once here, so that the picture tests time the drawing rather than matplotlib's import
    import matplotlib.backends.backend_agg
    import matplotlib.backends.backend_svg  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
needs_matplotlib = pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib: pip install 'rnndsl[plot]'")


def edge_lines(dot: str, u: str, v: str) -> list[str]:
    return [line for line in dot.splitlines() if line.strip().startswith(f'"{u}" -> "{v}"')]


# ---- DOT -----------------------------------------------------------------------------------------


def test_folded_dot_has_every_node_with_its_label() -> None:
    dot = to_dot(rnndsl.graph(rnndsl.load(ELMAN)))
    assert dot.startswith('digraph "Elman" {') and dot.rstrip().endswith("}")
    assert '"x" [label="x\\ninput 16", shape=box' in dot
    assert '"h" [label="h\\n64 tanh"' in dot
    assert '"y" [label="y\\n10 identity"' in dot and "peripheries=2" in dot.split('"y" [')[1].split("\n")[0]
    assert "rankdir=LR" in dot


def test_folded_dot_feedback_edges_are_labelled_and_styled_apart() -> None:
    dot = to_dot(rnndsl.graph(rnndsl.load(ELMAN)))
    [feedback] = edge_lines(dot, "h", "h")
    assert 'label="t-1"' in feedback and "style=dashed" in feedback and "constraint=false" in feedback
    assert EDGE_STYLES["past"].color in feedback
    [same_step] = edge_lines(dot, "x", "h")
    assert "dashed" not in same_step and "label" not in same_step and "constraint" not in same_step


def test_folded_dot_lstm_has_every_gate_and_both_loops() -> None:
    dot = to_dot(rnndsl.graph(rnndsl.load(LSTM)))
    for name in "xifogch":
        assert re.search(rf'^  "{name}" \[label="{name}\\n', dot, re.M), name
    for gate in "ifog":
        [edge] = edge_lines(dot, "h", gate)
        assert 'label="t-1"' in edge
    assert 'label="t-1"' in edge_lines(dot, "c", "c")[0]
    assert '"c" [label="c\\n32", shape=ellipse' in dot  # expressions look unlike layers


def test_folded_dot_future_and_past_differ_in_colour() -> None:
    dot = to_dot(rnndsl.graph(rnndsl.load(BIDIRECTIONAL)))
    [future] = edge_lines(dot, "b", "b")
    [past] = edge_lines(dot, "f", "f")
    [two_back] = edge_lines(dot, "y", "y")
    assert 'label="t+1"' in future and EDGE_STYLES["future"].color in future
    assert 'label="t-1"' in past and EDGE_STYLES["past"].color in past
    assert 'label="t-2"' in two_back
    assert EDGE_STYLES["future"].color != EDGE_STYLES["past"].color


def test_unrolled_dot_has_initial_and_static_nodes_in_their_columns() -> None:
    net = rnndsl.load(BIDIRECTIONAL)
    dot = to_dot(rnndsl.unroll(net, 3))
    for node in ("y@-2", "y@-1", "f@-1", "b@3"):  # before the first step and after the last
        assert re.search(rf'"{node}" \[label="{node.split("@")[0]}", shape=box, style="rounded,dotted,filled"', dot)
    assert '"s@static"' in dot and 'label="static"' in dot
    assert 'label="t=-1 (initial)"' in dot and 'label="t=3 (after the end)"' in dot
    assert '"y@-2" -> "y@0"' in dot and '"b@3" -> "b@2"' in dot and '"s@static" -> "f@1"' in dot
    assert dot.count(" -> ") == rnndsl.unroll(net, 3).number_of_edges()


def test_dot_quotes_names() -> None:
    g = nx.MultiDiGraph(name='say "hi"')
    g.add_node('a"b\\c', op="input", size=2, input_kind="seq")
    g.add_node("enc.h", op="layer", size=3, activation="tanh")
    g.add_edge('a"b\\c', "enc.h", delay=0)
    g.add_edge("enc.h", "enc.h", delay=1)
    dot = to_dot(g)
    assert 'digraph "say \\"hi\\"" {' in dot
    assert '"a\\"b\\\\c" -> "enc.h"' in dot and '"enc.h" -> "enc.h"' in dot


def test_dot_of_a_spec_with_use_blocks_keeps_dotted_names() -> None:
    spec = (
        "network Cell {\n input x: 8\n layer h: 8 tanh <- x, h[t-1]\n output h\n}\n"
        "network Stack {\n input x: 8\n use enc = Cell(x = x)\n layer y: 4 <- enc.h\n output y\n}\n"
    )
    dot = to_dot(rnndsl.graph(rnndsl.load(spec, "Stack")))
    assert '"enc.h" -> "enc.h"' in dot and '"enc.h" -> "y"' in dot


# ---- layout --------------------------------------------------------------------------------------


def test_folded_layout_runs_same_step_edges_forward_and_feedback_back() -> None:
    g = rnndsl.graph(rnndsl.load(JORDAN))
    boxes = _folded_scene(g).boxes
    for u, v, d in g.edges(data="delay"):
        assert (boxes[u].x < boxes[v].x) == (d == 0), (u, v, d)  # y -> h (t-1) runs right to left


def test_unrolled_layout_is_a_column_per_step_in_definition_order() -> None:
    boxes = _unrolled_scene(rnndsl.unroll(rnndsl.load(JORDAN), 3)).boxes
    assert boxes["y", -1].x < boxes["x", 0].x < boxes["x", 1].x < boxes["x", 2].x  # initial values first
    for t in range(3):
        assert boxes["x", t].y > boxes["h", t].y > boxes["y", t].y
        assert boxes["x", t].x == boxes["h", t].x == boxes["y", t].x  # plain columns: no edge skips a row
    assert boxes["y", -1].style == "initial" and boxes["y", 0].style == "layer"


def test_unrolled_layout_slants_a_step_when_an_edge_would_cross_a_row() -> None:
    boxes = _unrolled_scene(rnndsl.unroll(rnndsl.load(LSTM), 2)).boxes
    for t in range(2):  # x feeds i, f, o and g in one step: later layers sit further right
        assert boxes["x", t].x < boxes["i", t].x == boxes["g", t].x < boxes["c", t].x < boxes["h", t].x
    assert boxes["h", 0].x < boxes["x", 1].x  # steps do not overlap


# ---- pictures ------------------------------------------------------------------------------------


@needs_matplotlib
def test_png_of_the_folded_graph(tmp_path: Path) -> None:
    out = draw(rnndsl.load(LSTM), tmp_path / "lstm.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


@needs_matplotlib
def test_png_of_the_unrolled_dag(tmp_path: Path) -> None:
    out = draw(rnndsl.load(BIDIRECTIONAL), tmp_path / "bi.png", unroll=3)
    assert out.read_bytes()[:8] == PNG_MAGIC


@needs_matplotlib
def test_svg_of_the_unrolled_dag(tmp_path: Path) -> None:
    svg = draw(rnndsl.load(BIDIRECTIONAL), tmp_path / "bi.svg", unroll=3).read_text(encoding="utf-8")
    assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
    for text in ("Bi unrolled over 3 steps", "t=-2 (initial)", "t=3 (after the end)", "static", "initial value"):
        assert text in svg


@needs_matplotlib
def test_svg_of_the_folded_graph_keeps_its_text(tmp_path: Path) -> None:
    svg = draw(rnndsl.load(JORDAN), tmp_path / "jordan.svg").read_text(encoding="utf-8")
    assert ET.fromstring(svg).tag.endswith("svg")
    for text in ("Jordan: folded graph", "64 tanh", "10 softmax", "t-1"):
        assert text in svg


def test_dot_file_of_the_unrolled_dag_marks_the_outputs(tmp_path: Path) -> None:
    dot = draw(rnndsl.load(ELMAN), tmp_path / "elman.DOT", unroll=2).read_text(encoding="utf-8")
    assert dot.startswith('digraph "Elman unrolled"')
    assert [line.split()[0] for line in dot.splitlines() if "peripheries=2" in line] == ['"y@0"', '"y@1"']
    last = draw(rnndsl.load(BIDIRECTIONAL), tmp_path / "bi.dot", unroll=2).read_text(encoding="utf-8")
    assert [line.split()[0] for line in last.splitlines() if "peripheries=2" in line] == ['"y@1"']  # `last`


def test_draw_refuses_unknown_formats_and_too_many_steps(tmp_path: Path) -> None:
    net = rnndsl.load(ELMAN)
    with pytest.raises(ValueError, match=r"must end in \.dot, \.svg or \.png"):
        draw(net, tmp_path / "elman.jpg")
    with pytest.raises(ValueError, match=f"at most {MAX_DRAW_STEPS}"):
        draw(net, tmp_path / "elman.png", unroll=MAX_DRAW_STEPS + 1)
    assert not list(tmp_path.iterdir())


def test_pictures_without_matplotlib_say_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    net = rnndsl.load(ELMAN)
    with pytest.raises(ImportError, match=r"pip install 'rnndsl\[plot\]'"):
        draw(net, tmp_path / "elman.png")
    assert draw(net, tmp_path / "elman.dot").exists()  # DOT needs nothing


# ---- the command line ----------------------------------------------------------------------------


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    (tmp_path / "elman.rnn").write_text(ELMAN, encoding="utf-8")
    (tmp_path / "two.rnn").write_text(ELMAN + JORDAN, encoding="utf-8")
    (tmp_path / "broken.rnn").write_text(
        "network B {\n input x: 2\n layer h: 3 <- x, q\n output h\n}\n", encoding="utf-8"
    )
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["draw", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_draws(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, str(specs / "two.rnn"), "--network", "Jordan", "--unroll", "3", "-o", str(specs / "j.dot")
    )
    assert code == 0 and "wrote" in out
    assert '"y@-1"' in (specs / "j.dot").read_text(encoding="utf-8")


def test_cli_missing_file(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(specs / "nope.rnn"), "-o", str(specs / "x.dot"))
    assert code == 1 and "no spec file at" in err and "nope.rnn" in err


def test_cli_spec_error_prints_the_diagnostic(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(specs / "broken.rnn"), "-o", str(specs / "x.dot"))
    assert code == 1
    assert "broken.rnn:3:19: error: unknown name `q`" in err and "^" in err
    assert not (specs / "x.dot").exists()


def test_cli_bad_extension(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(specs / "elman.rnn"), "-o", str(specs / "x.jpg"))
    assert code == 1 and "must end in .dot, .svg or .png" in err


def test_cli_several_networks_need_a_name(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(specs / "two.rnn"), "-o", str(specs / "x.dot"))
    assert code == 1 and "Elman, Jordan" in err and "--network NAME" in err
    code, _, err = run(capsys, str(specs / "two.rnn"), "--network", "Jordn", "-o", str(specs / "x.dot"))
    assert code == 1 and "no network `Jordn`" in err and "Elman, Jordan" in err


def test_cli_too_many_steps(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(specs / "elman.rnn"), "--unroll", "5000", "-o", str(specs / "x.png"))
    assert code == 1 and f"at most {MAX_DRAW_STEPS}" in err
    code, _, err = run(capsys, str(specs / "elman.rnn"), "--unroll", "0", "-o", str(specs / "x.png"))
    assert code == 1 and "positive" in err


def test_cli_unwritable_output(specs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(specs / "elman.rnn"), "-o", str(specs / "no" / "such" / "dir.dot"))
    assert code == 1 and err == f"rnndsl draw: error: {specs / 'no' / 'such'}: no such folder\n"  # as export says
