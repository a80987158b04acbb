from __future__ import annotations

import rnndsl


def test_load_elman() -> None:
    net = rnndsl.load("network E { input x: 2\n layer h: 3 tanh <- x, h[t-1]\n output h }")
    assert [n.name for n in net.nodes] == ["x", "h"]
