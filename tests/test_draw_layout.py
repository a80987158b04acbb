"""Readable drawings of larger nets (issue 11, item 14): self-loops at their own node, same-step edges
through the layers rather than around them, the unrolled view wrapped into rows, delays on its feedback."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import rnndsl
from rnndsl.draw import _folded_scene, _inside, _unrolled_scene, draw, figure
from rnndsl.graphs.unroll import unroll

try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.rnn"))
PEEPHOLE = """network PeepholeLSTM {
    input x: 32
    layer i: 128 sigmoid <- x, h[t-1], c[t-1]
    layer f: 128 sigmoid <- x, h[t-1], c[t-1]
    layer g: 128 tanh    <- x, h[t-1]
    c = f * c[t-1] + i * g
    layer o: 128 sigmoid <- x, h[t-1], c
    h = o * tanh(c)
    output h
}
"""


def networks() -> list[rnndsl.Network]:
    return [net for path in EXAMPLES for net in rnndsl.load_all(path)] + [rnndsl.load(PEEPHOLE)]


@pytest.mark.parametrize("net", networks(), ids=lambda n: n.name)
def test_folded_self_loops_stay_at_their_own_node(net: rnndsl.Network) -> None:
    scene = _folded_scene(rnndsl.graph(net))
    selfs = [link for link in scene.links if link.src == link.dst]
    assert len(selfs) == sum(u == v for u, v in rnndsl.graph(net).edges())
    for link in selfs:
        box = scene.boxes[link.src]
        xs, ys = zip(*link.path, strict=True)
        assert box.x - box.w / 2 <= min(xs) and max(xs) <= box.x + box.w / 2  # over its own box
        assert max(abs(y - box.y) for y in ys) <= box.h / 2 + 0.6  # just above (or below) it
        for other, b in scene.boxes.items():  # and around no other node
            if other != link.src:
                assert not (min(xs) <= b.x <= max(xs) and min(ys) <= b.y <= max(ys)), (link.src, other)


def test_a_same_step_edge_skipping_layers_runs_through_them() -> None:
    scene = _folded_scene(rnndsl.graph(rnndsl.load(PEEPHOLE)))
    bottom = min(b.y - b.h / 2 for b in scene.boxes.values())
    top = max(b.y + b.h / 2 for b in scene.boxes.values())
    [x_to_o] = [link for link in scene.links if (link.src, link.dst) == ("x", "o")]
    assert all(bottom <= y <= top for _, y in x_to_o.path)  # no wide arc below every box


# ---- the unrolled view -----------------------------------------------------------------------------


def figure_texts(fig: object) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]  # type: ignore[attr-defined]


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib")
def test_forty_steps_of_a_peephole_lstm_wrap_into_rows_under_a_width(tmp_path: Path) -> None:
    png = draw(rnndsl.load(PEEPHOLE), tmp_path / "p.png", unroll=40).read_bytes()
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width <= 2700 and height < 8000  # was 26,014 x 820 in one row


def test_a_wrapped_drawing_keeps_every_node_and_edge() -> None:
    g = unroll(rnndsl.load(ROOT / "examples" / "skip2.rnn"), 40, feeds=True)
    scene = _unrolled_scene(g)
    assert "10 to a row" in scene.title
    assert all(node in scene.boxes for node in g.nodes)
    copies = [k for k in scene.boxes if len(k) == 3]
    assert {k[2] for k in copies} == {("h", t) for t in (8, 9, 18, 19, 28, 29)}  # h[t-2] reaches two back
    stubs = [link for link in scene.links if link.dst in copies and link.src in g.nodes]
    assert len(scene.links) - len(stubs) == g.number_of_edges()
    assert {link.src for link in stubs} == {("h", t) for t in (8, 9, 18, 19, 28, 29)}


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib")
def test_unrolled_feedback_edges_carry_their_delays() -> None:
    texts = figure_texts(figure(unroll(rnndsl.load(ROOT / "examples" / "skip2.rnn"), 4, feeds=True)))
    assert texts.count("t-2") == 4 and texts.count("t-1") == 4  # one per source and delay
    texts = figure_texts(figure(unroll(rnndsl.load(ROOT / "examples" / "bidirectional.rnn"), 3, feeds=True)))
    assert "t+1" in texts and "t-1" in texts


def test_feedback_into_the_next_step_crosses_no_box() -> None:
    scene = _unrolled_scene(unroll(rnndsl.load(PEEPHOLE), 3, feeds=True))
    for link in scene.links:
        if link.kind != "past" or link.src == link.dst:
            continue
        pts = np.concatenate([np.linspace(a, b, 20) for a, b in zip(link.path, link.path[1:], strict=False)])
        for key, box in scene.boxes.items():
            if key not in (link.src, link.dst):
                assert not _inside(box, pts[3:-3]).any(), (link.src, link.dst, key)
