"""The folded graph and the unrolled DAG: counts derived by hand, acyclicity, boundaries, feedback edges.

Counting rules used in the comments below, for T steps: every time-varying node gives T step nodes,
a static node one node `(name, None)`; a reference `h[t-k]` adds the initial nodes `(h, t-k)` that fall
before 0 (`h[t+k]`: at or past T); every reference gives one edge per step of its reader (one edge in
all for a static reader), and an `init` expression one edge per static input it reads into each
initial node.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

import rnndsl
from rnndsl.graphs.folded import feedback_edges, loops
from rnndsl.graphs.unroll import MAX_UNROLL_STEPS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.rnn"))


def example(name: str, network: str | None = None) -> rnndsl.Network:
    return rnndsl.load(ROOT / "examples" / f"{name}.rnn", network)


def initial(g: nx.DiGraph) -> set[tuple[str, int]]:
    return {v for v, kind in g.nodes(data="kind") if kind == "initial"}


def counts(net: rnndsl.Network, steps: int) -> tuple[int, int]:
    g = rnndsl.unroll(net, steps)
    return g.number_of_nodes(), g.number_of_edges()


# ---- counts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 5, 40])
def test_elman_counts(steps: int) -> None:
    # nodes: x, h, y per step (3T) + (h, -1) read by h[t-1] at step 0
    # edges: x -> h, h[t-1] -> h, h -> y per step (3T)
    assert counts(example("elman"), steps) == (3 * steps + 1, 3 * steps)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_lstm_counts(steps: int) -> None:
    # nodes: x, i, f, g, o, c, h per step (7T) + (h, -1) for the gates' h[t-1] + (c, -1) for c[t-1]
    # edges per step: four gates read x and h[t-1] (8); c reads f, c[t-1], i, g (4); h reads o, c (2)
    assert counts(example("lstm"), steps) == (7 * steps + 2, 14 * steps)


@pytest.mark.parametrize("steps", [1, 2, 6])
def test_skip2_counts(steps: int) -> None:
    # nodes: x, h, y per step (3T) + (h, -1) and (h, -2): h[t-2] at step 0 reaches -2, h[t-1] reaches -1
    # edges per step: x -> h, h[t-1] -> h, h[t-2] -> h, h -> y (4)
    assert counts(example("skip2"), steps) == (3 * steps + 2, 4 * steps)


@pytest.mark.parametrize("steps", [1, 4, 9])
def test_bidirectional_counts(steps: int) -> None:
    # nodes: x, f, b, y per step (4T) + (f, -1) before the start + (b, T) past the end
    # edges per step: x -> f, f[t-1] -> f, x -> b, b[t+1] -> b, f -> y, b -> y (6)
    assert counts(example("bidirectional"), steps) == (4 * steps + 2, 6 * steps)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_static_generator_counts(steps: int) -> None:
    # nodes: (s, None) once; w, h, y per step (3T); (h, -1) for h[t-1], its value computed from s
    # edges per step: w -> h, (s, None) -> h, h[t-1] -> h, h -> y (4); plus (s, None) -> (h, -1) for init h = s
    assert counts(example("generator"), steps) == (3 * steps + 2, 4 * steps + 1)


@pytest.mark.parametrize("steps", [1, 5])
def test_stacked_blocks_counts(steps: int) -> None:
    # nodes: x, l1.h, l2.h, y per step (4T) + (l1.h, -1) and (l2.h, -1)
    # edges per step: x -> l1.h, l1.h[t-1] -> l1.h, l1.h -> l2.h, l2.h[t-1] -> l2.h, l2.h -> y (5)
    assert counts(example("stacked", "Stacked"), steps) == (4 * steps + 2, 5 * steps)


def test_static_nodes_are_single_nodes_with_static_edges() -> None:
    net = rnndsl.load("network S { input s: 3 static\n input x: 3\n g = 2 * s\n h = g + x\n output h }")
    g = rnndsl.unroll(net, 4)
    # nodes: (s, None), (g, None): static; x and h per step (8); no delays, so no initial nodes
    assert g.number_of_nodes() == 10
    assert g.nodes["s", None]["kind"] == g.nodes["g", None]["kind"] == "static"
    # edges: (s, None) -> (g, None) once; (g, None) -> h and x -> h per step (8)
    assert g.number_of_edges() == 9
    assert sorted(g.successors(("g", None))) == [("h", t) for t in range(4)]
    assert all(d == 0 for *_, d in g.edges(data="delay"))


# ---- acyclicity ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_every_example_unrolls_to_a_dag(path: Path, steps: int) -> None:
    for net in rnndsl.load_all(path):
        g = rnndsl.unroll(net, steps)
        assert nx.is_directed_acyclic_graph(g)
        step_nodes = [v for v, kind in g.nodes(data="kind") if kind == "step"]
        assert len(step_nodes) == steps * sum(not n.static for n in net.nodes)


# ---- boundaries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (1, {("h", -2)}),  # h[t-2] at step 0 only
        (2, {("h", -2), ("h", -1)}),  # steps 0 and 1 both reach before the start
        (6, {("h", -2), ("h", -1)}),
    ],
)
def test_initial_nodes_only_where_a_delay_reaches_before_zero(steps: int, expected: set[tuple[str, int]]) -> None:
    net = rnndsl.load("network D { input x: 2\n layer h: 3 tanh <- x, h[t-2]\n output h }")
    g = rnndsl.unroll(net, steps)
    assert initial(g) == expected
    assert all(g.nodes[v]["side"] == "past" for v in expected)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (1, {("x", 3)}),  # x[t+3] at step 0 reads step 3, past the end of 1 step
        (2, {("x", 3), ("x", 4)}),
        (5, {("x", 5), ("x", 6), ("x", 7)}),  # steps 2, 3, 4 read past the end
    ],
)
def test_initial_nodes_past_the_end_for_future_reads(steps: int, expected: set[tuple[str, int]]) -> None:
    net = rnndsl.load("network L { input x: 2\n layer h: 3 <- x, x[t+3], h[t-1]\n output h }")
    g = rnndsl.unroll(net, steps)
    assert initial(g) == expected | {("h", -1)}
    assert {v for v in expected if g.nodes[v]["side"] == "future"} == expected


def test_no_initial_nodes_without_delays() -> None:
    net = rnndsl.load("network F { input x: 2\n layer h: 3 <- x\n output h }")
    assert initial(rnndsl.unroll(net, 5)) == set()


def test_init_expression_edges_into_initial_nodes() -> None:
    g = rnndsl.unroll(example("generator"), 3)
    assert g.nodes["h", -1]["kind"] == "initial"
    assert list(g.predecessors(("h", -1))) == [("s", None)]
    assert g.edges[("s", None), ("h", -1)] == {"delay": 0, "init": True}
    jordan = rnndsl.unroll(example("jordan"), 3)
    assert list(jordan.predecessors(("y", -1))) == []  # learned: a parameter, read from nowhere


# ---- feedback edges ----------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 4])
def test_feedback_edges_go_from_t_minus_k_to_t(steps: int) -> None:
    g = rnndsl.unroll(example("skip2"), steps)
    for t in range(steps):
        for k in (1, 2):
            assert g.edges[("h", t - k), ("h", t)]["delay"] == k
        assert g.edges[("x", t), ("h", t)]["delay"] == 0
    feedback = {(u, v, d) for u, v, d in g.edges(data="delay") if d}
    assert len(feedback) == 2 * steps


def test_future_feedback_goes_from_t_plus_k_to_t() -> None:
    g = rnndsl.unroll(example("bidirectional"), 3)
    assert [(u, v) for u, v, d in g.edges(data="delay") if d == -1] == [
        (("b", 1), ("b", 0)),
        (("b", 2), ("b", 1)),
        (("b", 3), ("b", 2)),
    ]
    assert g.nodes["b", 3]["side"] == "future"


def test_jordan_feedback_is_from_the_output() -> None:
    g = rnndsl.unroll(example("jordan"), 4)
    assert {(u, v) for u, v, d in g.edges(data="delay") if d} == {(("y", t - 1), ("h", t)) for t in range(4)}


# ---- the folded graph --------------------------------------------------------------------------


def folded_edges(name: str, network: str | None = None) -> list[tuple[str, str, int]]:
    return sorted(rnndsl.graph(example(name, network)).edges(data="delay"))


def test_folded_edge_delays() -> None:
    assert folded_edges("elman") == [("h", "h", 1), ("h", "y", 0), ("x", "h", 0)]
    assert folded_edges("skip2") == [("h", "h", 1), ("h", "h", 2), ("h", "y", 0), ("x", "h", 0)]
    assert folded_edges("bidirectional") == [
        ("b", "b", -1),
        ("b", "y", 0),
        ("f", "f", 1),
        ("f", "y", 0),
        ("x", "b", 0),
        ("x", "f", 0),
    ]
    assert folded_edges("jordan") == [("h", "y", 0), ("x", "h", 0), ("y", "h", 1)]
    assert folded_edges("topdown") == [
        ("h1", "h1", 1),
        ("h1", "h2", 0),
        ("h2", "h1", 1),
        ("h2", "h2", 1),
        ("h2", "y", 0),
        ("x", "h1", 0),
    ]


def test_folded_lstm_feedback_and_loops() -> None:
    g = rnndsl.graph(example("lstm"))
    assert sorted(feedback_edges(g)) == [("c", "c", 1), ("h", "f", 1), ("h", "g", 1), ("h", "i", 1), ("h", "o", 1)]
    ((names, delays),) = loops(g)
    assert set(names) == {"i", "f", "g", "o", "c", "h"} and delays == [1]


def test_folded_graph_repeated_reference_is_one_edge() -> None:
    net = rnndsl.load("network R { input x: 2\n h = x * x + x[t-1] * x[t-1]\n output h }")
    assert sorted(rnndsl.graph(net).edges(data="delay")) == [("x", "h", 0), ("x", "h", 1)]


def test_folded_graph_attributes() -> None:
    g = rnndsl.graph(example("generator"))
    assert g.nodes["s"] | {"line": 0} == {
        "op": "input",
        "size": 8,
        "static": True,
        "input_kind": "static",
        "activation": "identity",
        "line": 0,
        "init": "zeros",
    }
    assert (g.nodes["h"]["op"], g.nodes["h"]["activation"], g.nodes["h"]["init"]) == ("layer", "tanh", "expr")
    assert g.graph["outputs"] == [("y", False)]
    assert rnndsl.graph(example("reader")).graph["outputs"] == [("y", True)]


# ---- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -1, 2.5, MAX_UNROLL_STEPS + 1])
def test_bad_step_counts(steps: int) -> None:
    with pytest.raises(ValueError, match="steps"):
        rnndsl.unroll(example("elman"), steps)
