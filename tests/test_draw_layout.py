"""Readable drawings of larger nets (issue 11, item 14): self-loops at their own node, same-step edges
through the layers rather than around them, the unrolled view wrapped into rows, delays on its feedback."""

from __future__ import annotations

from pathlib import Path

import pytest

import rnndsl
from rnndsl.draw import _folded_scene

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
