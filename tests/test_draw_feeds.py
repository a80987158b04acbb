"""Self-fed inputs in the graphs and the drawings: the feed is an edge of its own kind (issue 11, item 13),
and it changes none of the compiler's loops or stages."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import rnndsl
from rnndsl.draw import EDGE_STYLES, _folded_scene, _unrolled_scene, draw, to_dot
from rnndsl.graphs.folded import folded, is_feed, loops
from rnndsl.graphs.schedule import schedule
from rnndsl.graphs.unroll import unroll

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "examples" / "generator.rnn"
NAMES = ROOT / "examples" / "tasks" / "names_gen.rnn"
TWO_BACK = "network G2 {\n input v: 3 = y[t-2]\n layer h: 4 tanh <- v, h[t-1]\n layer y: 3 <- h\n output y\n}\n"


def feed_edges(g: object) -> list[tuple[object, object, int]]:
    return [(u, v, d["delay"]) for u, v, d in g.edges(data=True) if is_feed(d)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", [GENERATOR, NAMES], ids=lambda p: p.stem)
def test_the_folded_graph_has_the_feed_edge_with_its_delay(path: Path) -> None:
    net = rnndsl.load(path)
    assert feed_edges(rnndsl.graph(net)) == [("y", "w", 1)]
    assert feed_edges(rnndsl.compile(path).graph) == [("y", "w", 1)]  # net.graph too
    assert feed_edges(rnndsl.graph(rnndsl.load(TWO_BACK))) == [("y", "v", 2)]
    assert feed_edges(folded(net, feeds=False)) == []


@pytest.mark.parametrize("path", [GENERATOR, NAMES], ids=lambda p: p.stem)
def test_a_feed_closes_no_loop_and_moves_no_stage(path: Path) -> None:
    net = rnndsl.load(path)
    assert loops(rnndsl.graph(net)) == loops(folded(net, feeds=False))
    assert all("w" not in names for names, _ in loops(rnndsl.graph(net)))
    stages = schedule(net)
    assert all("w" not in s.nodes for s in stages)  # given, w is an input: no stage computes it
    free = schedule(net.running_free(frozenset({"w"})))  # running free, w joins the loop through y
    assert any("w" in s.nodes and "y" in s.nodes and s.is_loop for s in free)


def test_the_unrolled_dag_has_feed_edges_from_step_k_on() -> None:
    g = unroll(rnndsl.load(TWO_BACK), 5, feeds=True)
    assert sorted(feed_edges(g)) == [(("y", t - 2), ("v", t), 2) for t in range(2, 5)]
    assert not any(t < 0 for (_, t), _, _ in feed_edges(g))  # the first steps take the init or the state
    assert feed_edges(unroll(rnndsl.load(TWO_BACK), 5)) == []  # the reference executor's DAG: all given


def test_dot_marks_the_feed() -> None:
    [line] = [x for x in to_dot(rnndsl.graph(rnndsl.load(GENERATOR))).splitlines() if x.startswith('  "y" -> "w"')]
    assert EDGE_STYLES["feed"].color in line and 'label="t-1 (fed)"' in line and "constraint=false" in line
    assert EDGE_STYLES["feed"].color != EDGE_STYLES["past"].color
    dot = to_dot(unroll(rnndsl.load(GENERATOR), 3, feeds=True))
    assert '"y@0" -> "w@1"' in dot and '"y@1" -> "w@2"' in dot and '"w@0" [' in dot


def test_drawings_show_the_feed_in_its_own_style(tmp_path: Path) -> None:
    net = rnndsl.load(NAMES)
    folded_links = [(link.src, link.dst) for link in _folded_scene(rnndsl.graph(net)).links if link.kind == "feed"]
    assert folded_links == [("y", "w")]
    dag = unroll(net, 4, feeds=True)
    links = {(link.src, link.dst) for link in _unrolled_scene(dag).links if link.kind == "feed"}
    assert links == {(("y", t - 1), ("w", t)) for t in range(1, 4)}
    pytest.importorskip("matplotlib")
    for steps in (None, 4):
        svg = draw(net, tmp_path / f"names-{steps}.svg", unroll=steps).read_text(encoding="utf-8")
        assert ET.fromstring(svg).tag.endswith("svg")
        assert "fed back as input" in svg  # its legend entry
        assert draw(net, tmp_path / "n.dot", unroll=steps).read_text(encoding="utf-8").count("(fed)") == (
            3 if steps else 1
        )
