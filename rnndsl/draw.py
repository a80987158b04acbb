"""Draw: takes a folded graph or an unrolled DAG, gives Graphviz DOT text or an SVG / PNG picture.

    to_dot(g)                      DOT text, written here (neither Graphviz nor pydot is needed)
    figure(g)                      a matplotlib Figure, laid out here (matplotlib: `rnndsl[plot]`)
    draw(net, path, unroll=None)   the folded graph, or the DAG unrolled over `unroll` steps, to a
                                   .dot, .svg or .png file chosen by the path's suffix
    to_svg(net, unroll=None)       the same picture as SVG text (for a page: the playground)

The folded graph is laid out in layers, left to right, by its same-step (delay 0) edges, which form a
DAG in a checked network; a same-step edge that skips layers runs through their free space. Feedback
edges run as dashed buses above the layers (past, `t-k`) or below them (future, `t+k`), so they visibly
go backwards; a node's read of its own past is a small arch over its box. A self-fed input's feed
(`kind="feed"` in the graphs) is a bus of its own colour, "fed back as input". The unrolled DAG gets
one column per step and one row per node in definition order: initial values are greyed in the columns
before the first step (and after the last), static nodes sit in a column of their own at the left.
Feedback into the next step leaves its source's side for a riser in the gap between the columns, and
every feedback edge is labelled with its delay. Wider than MAX_ROW_WIDTH, the steps wrap into rows;
a row starts with dashed copies of what it reads from the row above, and an arrow off a row's end
marks a value read in the next.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from rnndsl.graphs.folded import folded, is_feed
from rnndsl.graphs.unroll import unroll as unroll_dag

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MAX_DRAW_STEPS", "FORMATS", "to_dot", "to_svg", "figure", "draw", "delay_text"]

MAX_DRAW_STEPS = 200  # beyond this a picture is a grey smear; the pattern repeats every step anyway

FONT = 9.0  # points; the layout below measures in inches, 1 data unit = 1 inch on the figure
CHAR_W = 0.62 * FONT / 72  # a generous average glyph width, so labels fit their boxes
LINE_H = 1.35 * FONT / 72


@dataclass(frozen=True)
class NodeStyle:
    """How one kind of node looks: fill and outline colours, corner rounding (a fraction of the height)."""

    fill: str
    line: str
    rounding: float
    legend: str
    dot: str  # Graphviz shape and style
    linestyle: str = "-"


@dataclass(frozen=True)
class EdgeStyle:
    """How one kind of edge looks, in matplotlib and in DOT."""

    color: str
    linestyle: str
    width: float
    legend: str
    dot: str = ""


NODE_STYLES = {
    "input": NodeStyle("#dbeafe", "#1d4ed8", 0.0, "input", "shape=box, style=filled"),
    "layer": NodeStyle("#fef3c7", "#b45309", 0.2, "layer", 'shape=box, style="rounded,filled"'),
    "param": NodeStyle("#fce7f3", "#be185d", 0.5, "learned vector (param)", "shape=octagon, style=filled"),
    "expr": NodeStyle("#dcfce7", "#15803d", 0.5, "expression", "shape=ellipse, style=filled"),
    "initial": NodeStyle("#f3f4f6", "#9ca3af", 0.2, "initial value", 'shape=box, style="rounded,dotted,filled"', ":"),
    "copy": NodeStyle(
        "#f9fafb",
        "#6b7280",
        0.2,
        "a value from the row above (below)",
        'shape=box, style="rounded,dashed,filled"',
        "--",
    ),  # drawings wrapped into rows only
}
EDGE_STYLES = {
    "step": EdgeStyle("#374151", "-", 1.1, "same step"),
    "past": EdgeStyle("#dc2626", "--", 1.4, "feedback from the past (t-k)", "style=dashed"),
    "future": EdgeStyle("#7c3aed", "--", 1.4, "from the future (t+k)", "style=dashed"),
    "static": EdgeStyle("#60a5fa", "-", 0.9, "static, read at every step"),
    "init": EdgeStyle("#9ca3af", ":", 1.1, "into an initial value", "style=dotted"),
    "feed": EdgeStyle("#0d9488", "-.", 1.6, "fed back as input (when not given)", 'style="dashed,bold"'),
}
DASHES: dict[str, Any] = {
    "-": "-",
    "--": (0, (4.0, 2.5)),
    ":": (0, (1.2, 2.0)),  # matplotlib dash patterns
    "-.": (0, (5.0, 1.8, 1.2, 1.8)),
}
INPUT_TEXT = {"seq": "input {}", "static": "static input {}", "tokens": "tokens({})"}


def delay_text(delay: int) -> str:
    """How a delay reads in the language: 1 -> 't-1', -2 -> 't+2', 0 -> 't'.

    >>> delay_text(1), delay_text(-2)
    ('t-1', 't+2')
    """
    return f"t{-delay:+d}" if delay else "t"


def _edge_kind(delay: int, attrs: dict[str, Any] | None = None) -> str:
    if attrs is not None and is_feed(attrs):
        return "feed"
    return "step" if delay == 0 else "past" if delay > 0 else "future"


def _unrolled_kind(g: nx.DiGraph, u: tuple[str, int | None], v: tuple[str, int | None]) -> str:
    attrs = g.edges[u, v]
    if attrs.get("init"):
        return "init"
    if is_feed(attrs):
        return "feed"
    if u[1] is None and v[1] is not None:
        return "static"
    return _edge_kind(attrs.get("delay", 0))


def _edge_label(delay: int, kind: str) -> str:
    """What DOT writes on an edge: its delay, and for a feed that it is one."""
    text = delay_text(delay) if delay else ""
    return f"{text} (fed)".lstrip() if kind == "feed" else text


def _folded_lines(name: str, attrs: dict[str, Any]) -> tuple[str, ...]:
    op, size = attrs.get("op", "expr"), attrs.get("size", "?")
    if op == "input":
        detail = INPUT_TEXT.get(attrs.get("input_kind", "seq"), "input {}").format(size)
    elif op == "layer":
        detail = f"{size} {attrs.get('activation', 'identity')}"
    elif op == "param":
        detail = f"param {size}"
    else:
        detail = f"{size}" + (" static" if attrs.get("static") else "")
    return name, detail


def _outputs(g: nx.Graph) -> dict[str, bool]:
    """Output name -> whether only its last step is an output."""
    return dict(g.graph.get("outputs", []))


# ---- DOT -----------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_id(node: Hashable) -> str:
    if isinstance(node, tuple):
        name, t = node
        return _quote(f"{name}@{'static' if t is None else t}")
    return _quote(str(node))


def _dot_node(node: Hashable, lines: Iterable[str], style: str, output: bool = False) -> str:
    st = NODE_STYLES[style]
    extra = ", peripheries=2, penwidth=2" if output else ""
    return (
        f"  {_dot_id(node)} [label={_quote(chr(10).join(lines))}, {st.dot}, fillcolor={_quote(st.fill)}, "
        f"color={_quote(st.line)}{extra}];"
    )


def _dot_edge(u: Hashable, v: Hashable, kind: str, label: str = "", extra: str = "") -> str:
    st = EDGE_STYLES[kind]
    attrs = [f"color={_quote(st.color)}", st.dot, extra]
    if label:
        attrs += [f"label={_quote(label)}", f"fontcolor={_quote(st.color)}"]
    return f"  {_dot_id(u)} -> {_dot_id(v)} [{', '.join(a for a in attrs if a)}];"


def _dot_head(title: str) -> list[str]:
    return [
        f"digraph {_quote(title)} {{",
        f"  graph [rankdir=LR, newrank=true, label={_quote(title)}, labelloc=t, fontname=Helvetica];",
        "  node [fontname=Helvetica, fontsize=10, penwidth=1.2];",
        "  edge [fontname=Helvetica, fontsize=9, arrowsize=0.7];",
    ]


def _folded_dot(g: nx.MultiDiGraph) -> list[str]:
    outs = _outputs(g)
    lines = _dot_head(str(g.graph.get("name", "network")))
    lines += [_dot_node(n, _folded_lines(n, a), a.get("op", "expr"), n in outs) for n, a in g.nodes(data=True)]
    for u, v, attrs in g.edges(data=True):
        d, kind = attrs["delay"], _edge_kind(attrs["delay"], attrs)
        # constraint=false: only same-step edges rank the layers, so feedback visibly runs backwards
        lines.append(_dot_edge(u, v, kind, _edge_label(d, kind), "constraint=false" if d else ""))
    return [*lines, "}"]


def _column_caption(t: int | None, steps: int) -> str:
    if t is None:
        return "static"
    return f"t={t}" + (" (initial)" if t < 0 else " (after the end)" if t >= steps else "")


def _unrolled_dot(g: nx.DiGraph) -> list[str]:
    outs, steps = _outputs(g), int(g.graph.get("steps", 0))
    lines = _dot_head(str(g.graph.get("name", "unrolled")))
    for t in _columns(g):
        lines.append(f"  subgraph {_quote(f'cluster_{t}')} {{")
        lines.append(f'    label={_quote(_column_caption(t, steps))}; rank=same; color="#d1d5db";')
        for node, attrs in g.nodes(data=True):
            if node[1] == t:
                lines.append("  " + _dot_node(node, (node[0],), _unrolled_style(attrs), _is_output(node, outs, g)))
        lines.append("  }")
    for u, v, d in g.edges(data="delay"):
        kind = _unrolled_kind(g, u, v)
        lines.append(_dot_edge(u, v, kind, _edge_label(d or 0, kind)))
    return [*lines, "}"]


def to_dot(g: nx.MultiDiGraph | nx.DiGraph) -> str:
    """Graphviz DOT text of a folded graph (a MultiDiGraph) or an unrolled DAG (a DiGraph of `(name, t)`).

    >>> from rnndsl import graph, load
    >>> to_dot(graph(load("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }"))).splitlines()[0]
    'digraph "E" {'
    """
    return "\n".join(_folded_dot(g) if g.is_multigraph() else _unrolled_dot(g)) + "\n"


# ---- the scene: boxes and links placed in inches, shared by both views -----------------------------


@dataclass(frozen=True)
class _Box:
    lines: tuple[str, ...]
    style: str
    w: float
    h: float
    x: float = 0.0
    y: float = 0.0
    output: bool = False


_Path = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class _Link:
    src: Hashable
    dst: Hashable
    kind: str
    path: _Path  # from the source's outline to the target's, in inches


@dataclass
class _Scene:
    title: str
    boxes: dict[Hashable, _Box]
    links: list[_Link] = field(default_factory=list)
    notes: list[tuple[float, float, str, str]] = field(default_factory=list)  # x, y, text, colour
    bands: list[tuple[float, float, float, float]] = field(default_factory=list)  # shaded x0, y0, x1, y1


def _sized(lines: tuple[str, ...], style: str, min_w: float = 0.0) -> _Box:
    w = max(max(len(line) for line in lines) * CHAR_W + 0.3, 0.6, min_w)
    h = len(lines) * LINE_H + 0.2
    return _Box(lines, style, w + NODE_STYLES[style].rounding * h, h)


_RADS = (0.0, 0.3, -0.3, 0.6, -0.6, 1.0, -1.0)  # bends tried in turn, as in matplotlib's `arc3`


def _curve(p0: np.ndarray, p1: np.ndarray, rad: float, ts: np.ndarray) -> np.ndarray:
    """Points at parameters `ts` of the quadratic curve from p0 to p1 bent sideways by `rad` (`arc3`)."""
    d = p1 - p0
    ctrl = (p0 + p1) / 2 + rad * np.array([d[1], -d[0]])
    t = ts[:, None]
    return (1 - t) ** 2 * p0 + 2 * t * (1 - t) * ctrl + t**2 * p1


def _inside(box: _Box, pts: np.ndarray) -> np.ndarray:
    """Which points lie inside a box's outline (rounded corners and an output's outer ring included)."""
    pad = 0.05 if box.output else 0.0
    r = NODE_STYLES[box.style].rounding * box.h
    q = np.abs(pts - np.array([box.x, box.y])) - np.array([box.w / 2 + pad - r, box.h / 2 + pad - r])
    return np.asarray(np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0) - r <= 0)


def _crossing(box: _Box, curve: Callable[[np.ndarray], np.ndarray], t_in: float, t_out: float) -> float:
    """The parameter, to 1/4000 of the curve, where it crosses a box's outline between t_in (inside)
    and t_out (outside)."""
    ts = np.linspace(t_in, t_out, 65)
    return float(ts[int(np.argmax(~_inside(box, curve(ts))))])


def _clipped(a: _Box, b: _Box, rad: float) -> _Path:
    """The curve from box a to box b, cut where it leaves a and where it reaches b's outline."""
    p0, p1 = np.array([a.x, a.y]), np.array([b.x, b.y])

    def curve(ts: np.ndarray) -> np.ndarray:
        return _curve(p0, p1, rad, ts)

    ts = np.linspace(0.0, 1.0, 65)
    pts = curve(ts)
    out_a, out_b = ~_inside(a, pts), ~_inside(b, pts)
    first, last = int(np.argmax(out_a)), len(ts) - 1 - int(np.argmax(out_b[::-1]))
    if not out_a.any() or not out_b.any() or first > last:  # overlapping boxes: nothing sensible to cut
        return tuple(map(tuple, pts[[0, -1]]))
    t0 = _crossing(a, curve, ts[max(first - 1, 0)], ts[first])
    t1 = _crossing(b, curve, ts[min(last + 1, len(ts) - 1)], ts[last])
    return tuple((float(x), float(y)) for x, y in curve(np.linspace(t0, t1, 2 if rad == 0 else 24)))


def _least_bend(p0: np.ndarray, p1: np.ndarray, rect: np.ndarray, skip: list[int]) -> float:
    """The first of `_RADS` whose curve from p0 to p1 misses every rectangle (x0, y0, x1, y1) but `skip`."""
    reach = abs(p1 - p0).max() + 0.1
    lo, hi = np.minimum(p0, p1) - reach, np.maximum(p0, p1) + reach
    near = (rect[:, 2] > lo[0]) & (rect[:, 0] < hi[0]) & (rect[:, 3] > lo[1]) & (rect[:, 1] < hi[1])
    near[skip] = False
    r = rect[near]
    for rad in _RADS:
        pts = _curve(p0, p1, rad, np.linspace(0.08, 0.92, 22))[:, None, :]
        if not (
            (pts[..., 0] > r[:, 0]) & (pts[..., 0] < r[:, 2]) & (pts[..., 1] > r[:, 1]) & (pts[..., 1] < r[:, 3])
        ).any():
            return rad
    return _RADS[-1]


def _router(boxes: dict[Hashable, _Box], ports: bool = False) -> Callable[[Hashable, Hashable], _Path]:
    """A function giving an edge's path: the least-bent curve that misses every other box. It runs from
    centre to centre, cut at the outlines, or with `ports` from the middle of the source's right side
    to the middle of the target's left side (the folded view's layers run left to right)."""
    keys = {k: i for i, k in enumerate(boxes)}
    rect = np.array([[b.x - b.w / 2, b.y - b.h / 2, b.x + b.w / 2, b.y + b.h / 2] for b in boxes.values()])
    rect += np.array([-0.06, -0.06, 0.06, 0.06])

    def route(u: Hashable, v: Hashable) -> _Path:
        a, b = boxes[u], boxes[v]
        p0, p1 = (
            (np.array(_port(a, 1, 0.0)), np.array(_port(b, -1, 0.0)))
            if ports
            else (np.array([a.x, a.y]), np.array([b.x, b.y]))
        )
        rad = _least_bend(p0, p1, rect, [keys[u], keys[v]])
        if not ports:
            return _clipped(a, b, rad)
        return tuple((float(x), float(y)) for x, y in _curve(p0, p1, rad, np.linspace(0, 1, 2 if rad == 0 else 24)))

    return route


# ---- folded view: layers by same-step edges, feedback as buses above and below ---------------------


def _generations(g: nx.MultiDiGraph) -> list[list[str]]:
    same = nx.DiGraph()
    same.add_nodes_from(g.nodes)
    same.add_edges_from((u, v) for u, v, d in g.edges(data="delay") if d == 0)
    try:
        gens = list(nx.topological_generations(same))
    except nx.NetworkXUnfeasible:
        raise ValueError(
            "the same-step (delay 0) edges form a loop, so there is no layered drawing; "
            "check the spec first (`rnndsl check`)"
        ) from None
    order = {n: i for i, n in enumerate(g.nodes)}
    return [sorted(gen, key=order.__getitem__) for gen in gens]


@dataclass(frozen=True)
class _Bus:
    """The feedback edges that read one node at one delay: one lane, one label, a branch per reader."""

    src: str
    delay: int
    dsts: tuple[str, ...]
    kind: str = "past"
    lane: int = 0
    out_rank: int = 0  # how far out its riser stands in the gutter right of the source's layer
    in_ranks: tuple[int, ...] = ()  # the same, left of each reader's layer


def _gutter_off(rank: int) -> float:
    return 0.2 + 0.14 * rank


def _feedback_groups(g: nx.MultiDiGraph) -> dict[tuple[str, int, str], list[str]]:
    """The readers of each (source, delay, kind) of the feedback edges."""
    groups: dict[tuple[str, int, str], list[str]] = {}
    for u, v, attrs in g.edges(data=True):
        if attrs["delay"]:
            groups.setdefault((u, attrs["delay"], _edge_kind(attrs["delay"], attrs)), []).append(v)
    return groups


def _buses(g: nx.MultiDiGraph, gen_of: dict[str, int]) -> list[_Bus]:
    """A bus for each group of feedback edges, its self-loop left out (that one is drawn at the node)."""
    groups = {key: [v for v in vs if v != key[0]] for key, vs in _feedback_groups(g).items()}
    buses = [_Bus(u, d, tuple(vs), kind) for (u, d, kind), vs in groups.items() if vs]
    lanes = _lanes(buses, gen_of)
    gutters: dict[tuple[int, int], list[_Bus]] = {}
    for b in sorted(buses, key=lambda b: (b.delay < 0, lanes[b])):
        gutters.setdefault((gen_of[b.src], 1), []).append(b)
        for k in dict.fromkeys(gen_of[v] for v in b.dsts):
            gutters.setdefault((k, -1), []).append(b)
    return [
        replace(
            b,
            lane=lanes[b],
            out_rank=gutters[gen_of[b.src], 1].index(b),
            in_ranks=tuple(gutters[gen_of[v], -1].index(b) for v in b.dsts),
        )
        for b in buses
    ]


def _lanes(buses: list[_Bus], gen_of: dict[str, int]) -> dict[_Bus, int]:
    """The lowest free lane for each bus, shortest first, so nested buses stack like brackets and
    buses side by side share a lane."""
    spans = {b: (min(gen_of[n] for n in (b.src, *b.dsts)), max(gen_of[n] for n in (b.src, *b.dsts))) for b in buses}
    taken: dict[tuple[bool, int], list[tuple[int, int]]] = {}
    lanes = {}
    for b in sorted(buses, key=lambda b: (spans[b][1] - spans[b][0], spans[b])):
        lo, hi = spans[b]
        lane = 0
        while any(lo <= h and l <= hi for l, h in taken.get((b.delay > 0, lane), [])):
            lane += 1
        taken.setdefault((b.delay > 0, lane), []).append((lo, hi))
        lanes[b] = lane
    return lanes


def _gaps(n_layers: int, buses: list[_Bus], gen_of: dict[str, int]) -> list[float]:
    """The space between each pair of layers: room for the risers on both sides and the arrows between."""
    right, left = [0.0] * n_layers, [0.0] * n_layers
    for b in buses:
        right[gen_of[b.src]] = max(right[gen_of[b.src]], _gutter_off(b.out_rank))
        for v, rank in zip(b.dsts, b.in_ranks, strict=True):
            left[gen_of[v]] = max(left[gen_of[v]], _gutter_off(rank))
    return [max(1.1, right[k] + left[k + 1] + 0.7) for k in range(n_layers - 1)]


ROW_GAP = 0.5  # inches between boxes stacked in a layer: room for two self-loops and their labels


def _place_layers(g: nx.MultiDiGraph, gens: list[list[str]], gaps: list[float]) -> dict[Hashable, _Box]:
    outs = _outputs(g)
    sized = {
        n: replace(_sized(_folded_lines(n, a), a.get("op", "expr")), output=n in outs) for n, a in g.nodes(data=True)
    }
    widths = [max(sized[n].w for n in gen) for gen in gens]
    pitch = max(b.h for b in sized.values()) + ROW_GAP
    boxes: dict[Hashable, _Box] = {}
    x = widths[0] / 2
    for k, gen in enumerate(gens):
        x += (widths[k - 1] / 2 + gaps[k - 1] + widths[k] / 2) if k else 0.0
        for i, n in enumerate(gen):
            boxes[n] = replace(sized[n], x=x, y=((len(gen) - 1) / 2 - i) * pitch)
    return boxes


def _layer_edge(gen: list[str], boxes: dict[Hashable, _Box], side: int) -> float:
    """The x of a layer's right (side=1) or left (side=-1) edge."""
    edges = [boxes[n].x + side * boxes[n].w / 2 for n in gen]
    return max(edges) if side > 0 else min(edges)


def _port(box: _Box, side: int, lift: float) -> tuple[float, float]:
    """A point on a box's left (side=-1) or right (side=1) outline, `lift` quarter-heights above the middle;
    feedback attaches off-centre so it never shares an arrowhead with a same-step edge."""
    dy = lift * box.h / 4
    r = NODE_STYLES[box.style].rounding * box.h
    inset = r - (r * r - dy * dy) ** 0.5 if abs(dy) < r else 0.0
    pad = 0.05 if box.output else 0.0  # an output's outer ring
    return box.x + side * (box.w / 2 + pad - inset), box.y + dy


def _bus_links(
    bus: _Bus, boxes: dict[Hashable, _Box], gens: list[list[str]], gen_of: dict[str, int], lane_y: float
) -> tuple[list[_Link], tuple[float, float, str, str]]:
    s, lift = boxes[bus.src], 1.0 if bus.delay > 0 else -1.0
    gx = _layer_edge(gens[gen_of[bus.src]], boxes, 1) + _gutter_off(bus.out_rank)
    start = _port(s, 1, lift)
    links, ends = [], []
    for v, rank in zip(bus.dsts, bus.in_ranks, strict=True):
        end = _port(boxes[v], -1, lift)
        vx = _layer_edge(gens[gen_of[v]], boxes, -1) - _gutter_off(rank)
        ends.append(vx)
        path = (start, (gx, start[1]), (gx, lane_y), (vx, lane_y), (vx, end[1]), end)
        links.append(_Link(bus.src, v, bus.kind, path))
    nearest = min(ends, key=lambda x: abs(x - gx))
    return links, ((gx + nearest) / 2, lane_y, delay_text(bus.delay), EDGE_STYLES[bus.kind].color)


SELF_LOOP_RISE, SELF_LOOP_STEP = 0.2, 0.17  # an arch's height over its node, and how much higher each next one


_Note = tuple[float, float, str, str]  # x, y, text, colour


def _self_loops(g: nx.MultiDiGraph, boxes: dict[Hashable, _Box]) -> tuple[list[_Link], list[_Note]]:
    """Each node's reads of its own past (future) as small arches over (under) its box, nested when there
    are several, each labelled with its delay right of the outermost: near the node, inside no other box."""
    arches: dict[tuple[str, bool], list[tuple[int, str]]] = {}
    for (u, d, kind), vs in sorted(_feedback_groups(g).items(), key=lambda item: abs(item[0][1])):
        if u in vs:
            arches.setdefault((u, d > 0), []).append((d, kind))
    links, notes = [], []
    for (u, past), reads in arches.items():
        b, up = boxes[u], 1.0 if past else -1.0
        edge = b.y + up * (b.h / 2 + (0.05 if b.output else 0.0))
        halves = [min(0.16 + 0.12 * j, b.w / 2 - NODE_STYLES[b.style].rounding * b.h) for j in range(len(reads))]
        for j, (d, kind) in enumerate(reads):
            top, half, text = edge + up * (SELF_LOOP_RISE + SELF_LOOP_STEP * j), halves[j], delay_text(d)
            links.append(
                _Link(u, u, kind, ((b.x + half, edge), (b.x + half, top), (b.x - half, top), (b.x - half, edge)))
            )
            notes.append((b.x + halves[-1] + 0.06 + len(text) * CHAR_W / 2, top, text, EDGE_STYLES[kind].color))
    return links, notes


def _free_y(gen: list[str], boxes: dict[Hashable, _Box], want: float, used: list[float]) -> float:
    """The height nearest `want` at which a line crosses a layer without touching its boxes or an
    edge that crossed it before."""
    blocked = [(b.y - b.h / 2 - 0.15, b.y + b.h / 2 + 0.15) for b in (boxes[n] for n in gen)]
    blocked += [(y - 0.1, y + 0.1) for y in used]
    candidates = [want] + [y for lo, hi in blocked for y in (lo, hi)]
    free = [y for y in candidates if not any(lo < y < hi for lo, hi in blocked)]
    return min(free, key=lambda y: abs(y - want))


def _long_link(
    u: str,
    v: str,
    boxes: dict[Hashable, _Box],
    gens: list[list[str]],
    gen_of: dict[str, int],
    used: dict[int, list[float]],
) -> _Link:
    """A same-step edge that skips layers: a path through the free space of each layer it crosses
    (as dummy nodes do in a layered drawing), rather than a wide arc around everything."""
    start, end = _port(boxes[u], 1, 0.0), _port(boxes[v], -1, 0.0)
    path = [start]
    for k in range(gen_of[u] + 1, gen_of[v]):
        lo, hi = _layer_edge(gens[k], boxes, -1) - 0.1, _layer_edge(gens[k], boxes, 1) + 0.1
        want = start[1] + ((lo + hi) / 2 - start[0]) / (end[0] - start[0]) * (end[1] - start[1])
        y = _free_y(gens[k], boxes, want, used.setdefault(k, []))
        used[k].append(y)
        path += [(lo, y), (hi, y)]
    return _Link(u, v, "step", (*path, end))


def _folded_scene(g: nx.MultiDiGraph) -> _Scene:
    gens = _generations(g)
    gen_of = {n: k for k, gen in enumerate(gens) for n in gen}
    buses = _buses(g, gen_of)
    boxes = _place_layers(g, gens, _gaps(len(gens), buses, gen_of))
    route, used = _router(boxes, ports=True), dict[int, list[float]]()
    scene = _Scene(f"{g.graph.get('name', 'network')}: folded graph", boxes)
    for u, v, attrs in g.edges(data=True):
        if attrs["delay"] == 0:
            link = (
                _long_link(u, v, boxes, gens, gen_of, used)
                if gen_of[v] - gen_of[u] > 1
                else _Link(u, v, "step", route(u, v))
            )
            scene.links.append(replace(link, kind=_edge_kind(0, attrs)))
    loops, notes = _self_loops(g, boxes)
    scene.links += loops
    scene.notes += notes
    top = max([b.y + b.h / 2 for b in boxes.values()] + [y for _, y, _, _ in notes]) + 0.1
    bottom = min([b.y - b.h / 2 for b in boxes.values()] + [y for _, y, _, _ in notes]) - 0.1
    for bus in buses:
        lane_y = top + 0.45 + 0.32 * bus.lane if bus.delay > 0 else bottom - 0.45 - 0.32 * bus.lane
        links, note = _bus_links(bus, boxes, gens, gen_of, lane_y)
        scene.links += links
        scene.notes.append(note)
    return scene


# ---- unrolled view: a column per step, a row per node, rows of steps when wide ---------------------

MAX_ROW_WIDTH = 22.0  # inches (about 2,400 pixels): a wider unrolled drawing wraps into rows of steps
COLUMN_GAP = 1.0  # inches between step columns
SLANT = 0.6  # how far right each same-step layer sits in a slanted column, in box widths


def _check_steps(steps: int) -> None:
    if isinstance(steps, int) and steps > MAX_DRAW_STEPS:
        raise ValueError(
            f"cannot draw {steps} unrolled steps: a drawing shows at most {MAX_DRAW_STEPS} "
            "(every step repeats the same pattern, so a few steps show it all)"
        )


def _columns(g: nx.DiGraph) -> list[int | None]:
    ts = {t for _, t in g.nodes}
    return ([None] if None in ts else []) + sorted(t for t in ts if t is not None)


def _unrolled_style(attrs: dict[str, Any]) -> str:
    return "initial" if attrs.get("kind") == "initial" else str(attrs.get("op", "expr"))


def _is_output(node: tuple[str, int | None], outs: dict[str, bool], g: nx.DiGraph) -> bool:
    name, t = node
    if name not in outs or g.nodes[node].get("kind") == "initial":
        return False
    return not outs[name] or t == int(g.graph.get("steps", 0)) - 1


def _step_slant(g: nx.DiGraph, rows: dict[str, int]) -> dict[str, int]:
    """How far right each name sits within its step column: 0 throughout when every same-step edge joins
    neighbouring rows (a plain column), else its layer by the same-step edges, so that the edges
    jumping over rows run as short diagonals instead of through the boxes in between."""
    same = nx.DiGraph()
    same.add_nodes_from(rows)
    same.add_edges_from((u[0], v[0]) for u, v in g.edges if u[1] is not None and u[1] == v[1])
    step_rows = sorted({rows[n] for n, t in g.nodes if t is not None})
    if all(abs(step_rows.index(rows[u]) - step_rows.index(rows[v])) == 1 for u, v in same.edges):
        return dict.fromkeys(rows, 0)
    return {n: k for k, gen in enumerate(nx.topological_generations(same)) for n in gen}


_Node = tuple[str, int | None]


@dataclass(frozen=True)
class _Rows:
    """How the steps wrap: `per_row` steps in each row of the picture."""

    steps: int
    per_row: int

    def of(self, t: int | None) -> int:
        """The row showing step t (static and initial values before the start: the first row; after the
        end: the last)."""
        if t is None or t < 0:
            return 0
        return min(t, self.steps - 1) // self.per_row

    def place(self, node: _Node, row: int) -> Hashable:
        """The key of the box showing `node` in `row`: itself, or a copy standing in for it there."""
        return node if self.of(node[1]) == row else ("copy", row, node)

    @property
    def count(self) -> int:
        return -(-self.steps // self.per_row)


def _wrap(g: nx.DiGraph, width: float, col_w: float) -> _Rows:
    """As many steps a row as keep it under MAX_ROW_WIDTH, the same number in every row."""
    steps = int(g.graph.get("steps", 0))
    others = sum(1 for t in _columns(g) if t is None or not 0 <= t < steps)  # static and initial columns
    fit = int((MAX_ROW_WIDTH - others * (width + COLUMN_GAP) + COLUMN_GAP) // (col_w + COLUMN_GAP))
    rows = -(-steps // max(fit, 1))
    return _Rows(steps, -(-steps // rows))


def _shown(g: nx.DiGraph, rows: _Rows) -> list[dict[_Node, Hashable]]:
    """For each row, the nodes it shows (its own, and copies of what its steps read from other rows),
    mapped to their box keys, in column order."""
    shown: list[dict[_Node, Hashable]] = [{} for _ in range(rows.count)]
    for node in g.nodes:
        shown[rows.of(node[1])][node] = node
    for u, v in g.edges:
        r = rows.of(v[1])
        shown[r].setdefault(u, rows.place(u, r))

    def order(n: _Node) -> tuple[bool, int]:
        return (n[1] is not None, n[1] if n[1] is not None else 0)

    return [dict(sorted(row.items(), key=lambda item: order(item[0]))) for row in shown]


_Gaps = dict[Hashable, tuple[int, int]]  # box key -> (row, column index in the row)


def _place_grid(g: nx.DiGraph) -> tuple[dict[Hashable, _Box], _Rows, _Gaps]:
    names = {n: i for i, n in enumerate(dict.fromkeys(n for n, _ in g.nodes))}
    outs, steps = _outputs(g), int(g.graph.get("steps", 0))
    width = max(_sized((n,), "layer").w for n in names)
    ranks = _step_slant(g, names)
    slant = {n: k * SLANT * width for n, k in ranks.items()}
    rows = _wrap(g, width, width + max(slant.values()))
    pitch = _sized(("x",), "layer").h + 0.45
    row_pitch = len(names) * pitch + 0.8
    boxes: dict[Hashable, _Box] = {}
    cols: _Gaps = {}
    for r, shown in enumerate(_shown(g, rows)):
        left = 0.0
        for c, t in enumerate(dict.fromkeys(node[1] for node in shown)):
            column = [(node, key) for node, key in shown.items() if node[1] == t]
            own = t is not None and 0 <= t < steps and rows.of(t) == r
            for node, key in column:
                style = _unrolled_style(g.nodes[node]) if key == node else "copy"
                box = replace(_sized((node[0],), style, width), output=key == node and _is_output(node, outs, g))
                boxes[key] = replace(
                    box,
                    x=left + width / 2 + (slant[node[0]] if own else 0.0),
                    y=-names[node[0]] * pitch - r * row_pitch,
                )
                cols[key] = (r, c)
            left = max(boxes[key].x + boxes[key].w / 2 for _, key in column) + COLUMN_GAP
    return boxes, rows, cols


def _riser_router(boxes: dict[Hashable, _Box], cols: _Gaps) -> Callable[[Hashable, Hashable, str], _Path | None]:
    """Paths for edges between neighbouring columns of a row (a step's feedback into the next, an
    initial value or a copy into the first step): out of the source's side, along its own row to a
    riser in the gap between the columns, and along the target's row into its side, one riser per
    source and kind, so a value read by several nodes fans out like a bus. Each row of the grid holds
    one name, so those runs cross no box. None for any other edge."""
    edges: dict[tuple[int, int], tuple[float, float]] = {}
    for key, (r, c) in cols.items():
        b = boxes[key]
        lo, hi = edges.get((r, c), (np.inf, -np.inf))
        edges[r, c] = (min(lo, b.x - b.w / 2), max(hi, b.x + b.w / 2))
    ranks: dict[tuple[int, int], list[tuple[Hashable, str]]] = {}

    def route(u: Hashable, v: Hashable, kind: str) -> _Path | None:
        (ru, cu), (rv, cv) = cols[u], cols[v]
        if ru != rv or abs(cu - cv) != 1:
            return None
        side = 1 if cu < cv else -1
        start, end = _port(boxes[u], side, 0.0), _port(boxes[v], -side, 0.0)
        if abs(start[1] - end[1]) < 1e-9:
            return start, end
        gap = ranks.setdefault((ru, min(cu, cv)), [])
        if (u, kind) not in gap:
            gap.append((u, kind))
        x0, x1 = edges[ru, min(cu, cv)][1], edges[ru, max(cu, cv)][0]
        rx = (
            min(x0 + 0.25 + 0.14 * gap.index((u, kind)), x1 - 0.15)
            if side > 0
            else max(x1 - 0.25 - 0.14 * gap.index((u, kind)), x0 + 0.15)
        )
        return start, (rx, start[1]), (rx, end[1]), end

    return route


def _static_link(u: Hashable, v: Hashable, kind: str, boxes: dict[Hashable, _Box], rank: int) -> _Link:
    """A static value rides along its own (otherwise empty) row and drops into each step that reads it."""
    start, end = _port(boxes[u], 1, 0.0), _port(boxes[v], -1, 1.0)
    gx = end[0] - 0.25 - 0.12 * rank
    return _Link(u, v, kind, (start, (gx, start[1]), (gx, end[1]), end))


def _stub(u: Hashable, side: int, kind: str, boxes: dict[Hashable, _Box], rows: _Rows) -> _Link:
    """A value read in another row: an arrow from its box off the end of its own row (the reader's row
    shows a copy of it in a column of its own)."""
    row = rows.of(u[1])  # type: ignore[index]
    ends = [b.x + side * b.w / 2 for k, b in boxes.items() if _row_key(k, rows) == row]
    start = _port(boxes[u], side, 0.0)
    return _Link(u, u, kind, (start, ((max(ends) if side > 0 else min(ends)) + side * 0.45, start[1])))


def _row_key(key: Hashable, rows: _Rows) -> int:
    return key[1] if len(key) == 3 else rows.of(key[1])  # type: ignore[arg-type, index]


def _along(path: _Path, frac: float) -> tuple[float, float]:
    """The point a fraction of the way along a path."""
    pts = np.array(path)
    lengths = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    at = frac * lengths.sum()
    i = min(int(np.searchsorted(np.cumsum(lengths), at)), len(lengths) - 1)
    part = (at - lengths[:i].sum()) / max(lengths[i], 1e-9)
    x, y = pts[i] + part * (pts[i + 1] - pts[i])
    return float(x), float(y)


def _delay_notes(links: list[tuple[_Link, int]]) -> list[_Note]:
    """One delay label for each source, delay and kind of feedback, halfway along its shortest edge
    (where one value fans out to several readers, on the riser they share)."""
    groups: dict[tuple[Hashable, int, str], list[_Link]] = {}
    for link, delay in links:
        if delay and link.kind in ("past", "future", "feed"):
            groups.setdefault((link.src, delay, link.kind), []).append(link)
    return [
        (*_along(min(ls, key=_length).path, 0.5), delay_text(d), EDGE_STYLES[kind].color)
        for (_, d, kind), ls in groups.items()
    ]


def _length(link: _Link) -> float:
    return float(np.linalg.norm(np.diff(np.array(link.path), axis=0), axis=1).sum())


def _unrolled_scene(g: nx.DiGraph) -> _Scene:
    steps = int(g.graph.get("steps", 0))
    _check_steps(steps)
    boxes, rows, cols = _place_grid(g)
    route, riser = _router(boxes), _riser_router(boxes, cols)
    statics = {n: i for i, n in enumerate(n for n in g.nodes if n[1] is None)}
    title = f"{g.graph.get('name', 'network')} over {steps} step{'s' * (steps != 1)}"
    scene = _Scene(title + (f", {rows.per_row} to a row" if rows.count > 1 else ""), boxes)
    feedback: list[tuple[_Link, int]] = []
    stubs: dict[tuple[Hashable, int, str], _Link] = {}
    for u, v, d in g.edges(data="delay"):
        kind, src = _unrolled_kind(g, u, v), rows.place(u, rows.of(v[1]))
        if u[1] is None and v[1] is not None:
            scene.links.append(_static_link(src, v, kind, boxes, statics[u]))
            continue
        link = _Link(src, v, kind, riser(src, v, kind) or route(src, v))
        scene.links.append(link)
        feedback.append((link, d))
        if src != u and g.nodes[u].get("kind") == "step":
            side = 1 if rows.of(v[1]) > rows.of(u[1]) else -1
            stubs.setdefault((u, side, kind), replace(_stub(u, side, kind, boxes, rows), dst=src))
    scene.links += stubs.values()
    scene.notes += _delay_notes(feedback)
    _caption_columns(scene, rows)
    return scene


def _column_of(key: Hashable) -> tuple[str, int | None]:
    return key[2] if len(key) == 3 else key  # type: ignore[arg-type, index, return-value]


def _caption_columns(scene: _Scene, rows: _Rows) -> None:
    """A caption over each column of each row, and a pale band behind each step so its slanted column
    reads as one."""
    for r in range(rows.count):
        keys = [k for k in scene.boxes if _row_key(k, rows) == r]
        top = max(scene.boxes[k].y + scene.boxes[k].h / 2 for k in keys) + 0.35
        bottom = min(scene.boxes[k].y - scene.boxes[k].h / 2 for k in keys) - 0.2
        for t in dict.fromkeys(_column_of(k)[1] for k in keys):
            column = [scene.boxes[k] for k in keys if _column_of(k)[1] == t]
            xs = [b.x + s * b.w / 2 for b in column for s in (-1, 1)]
            copies = all(b.style == "copy" for b in column)
            own = t is not None and 0 <= t < rows.steps and not copies
            text = _column_caption(t, rows.steps)
            if copies and t is not None:
                text = f"t={t} ({'row above' if rows.of(t) < r else 'row below'})"
            scene.notes.append(((min(xs) + max(xs)) / 2, top, text, "#111827" if own else "#6b7280"))
            if own:
                scene.bands.append((min(xs) - 0.15, bottom, max(xs) + 0.15, top - 0.17))


# ---- rendering with matplotlib -------------------------------------------------------------------


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "drawing .svg and .png files needs matplotlib: pip install 'rnndsl[plot]' "
            "(or write .dot, which needs nothing more)"
        ) from None


def _bounds(scene: _Scene) -> tuple[float, float, float, float]:
    pts = [
        (b.x + sx * b.w / 2 * 1.1, b.y + sy * b.h / 2 * 1.2)
        for b in scene.boxes.values()
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    pts += [p for link in scene.links for p in link.path]
    pts += [
        (x + sx * (len(text) * CHAR_W / 2 + 0.1), y + sy * 0.15)
        for x, y, text, _ in scene.notes
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    xs, ys = zip(*pts, strict=True)
    return min(xs) - 0.3, min(ys) - 0.3, max(xs) + 0.3, max(ys) + 0.3


def _draw_box(ax: Axes, box: _Box) -> None:
    from matplotlib.patches import FancyBboxPatch

    st = NODE_STYLES[box.style]
    corner = f"round,pad=0,rounding_size={st.rounding * box.h:.3f}" if st.rounding else "square,pad=0"
    patch = FancyBboxPatch(
        (box.x - box.w / 2, box.y - box.h / 2),
        box.w,
        box.h,
        boxstyle=corner,
        zorder=3,
        facecolor=st.fill,
        edgecolor=st.line,
        linewidth=2.0 if box.output else 1.1,
        linestyle=st.linestyle,
    )
    ax.add_artist(patch)  # add_patch would recompute the data limits, which are set already
    if box.output:  # a second ring, as Graphviz's peripheries=2
        ax.add_artist(
            FancyBboxPatch(
                (box.x - box.w / 2, box.y - box.h / 2),
                box.w,
                box.h,
                zorder=3,
                boxstyle=corner.replace("pad=0", "pad=0.05"),
                facecolor="none",
                edgecolor=st.line,
                linewidth=1.0,
            )
        )
    color = "#6b7280" if box.style == "initial" else "#111827"
    top = box.y + (len(box.lines) - 1) * LINE_H / 2
    ax.text(box.x, top, box.lines[0], ha="center", va="center", fontsize=FONT, fontweight="bold", color=color, zorder=4)
    for i, line in enumerate(box.lines[1:], 1):
        ax.text(box.x, top - i * LINE_H, line, ha="center", va="center", fontsize=FONT - 0.5, color=color, zorder=4)


def _rounded(points: _Path, r: float = 0.1) -> Any:
    """A matplotlib Path through the points with each corner rounded off."""
    from matplotlib.path import Path as MplPath

    pts = np.array(points, dtype=float)
    verts, codes = [pts[0]], [MplPath.MOVETO]
    for prev, here, nxt in zip(pts, pts[1:], pts[2:], strict=False):
        a, b = here - prev, nxt - here
        ra = min(r, float(np.linalg.norm(a)) / 2, float(np.linalg.norm(b)) / 2)
        if ra <= 1e-9:
            continue
        verts += [here - a / np.linalg.norm(a) * ra, here, here + b / np.linalg.norm(b) * ra]
        codes += [MplPath.LINETO, MplPath.CURVE3, MplPath.CURVE3]
    verts.append(pts[-1])
    codes.append(MplPath.LINETO)
    return MplPath(np.array(verts), codes)


def _draw_link(ax: Axes, link: _Link) -> None:
    from matplotlib.patches import FancyArrowPatch

    st = EDGE_STYLES[link.kind]
    ax.add_artist(
        FancyArrowPatch(
            path=_rounded(link.path),
            arrowstyle="-|>",
            mutation_scale=10.0,
            color=st.color,
            linewidth=st.width,
            linestyle=DASHES[st.linestyle],
            zorder=2,
            joinstyle="round",
            capstyle="round",
        )
    )


def _legend(ax: Axes, scene: _Scene) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch as PatchProxy

    handles: list[Any] = [
        PatchProxy(
            facecolor=NODE_STYLES[s].fill,
            edgecolor=NODE_STYLES[s].line,
            linestyle=DASHES[NODE_STYLES[s].linestyle],
            label=NODE_STYLES[s].legend,
        )
        for s in NODE_STYLES
        if any(b.style == s for b in scene.boxes.values())
    ]
    if any(b.output for b in scene.boxes.values()):
        handles.append(PatchProxy(facecolor="white", edgecolor="#111827", linewidth=2.0, label="output"))
    handles += [
        Line2D([], [], color=e.color, linestyle=DASHES[e.linestyle], linewidth=e.width, label=e.legend)
        for k, e in EDGE_STYLES.items()
        if any(link.kind == k for link in scene.links)
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), 4),
        frameon=False,
        fontsize=FONT - 1,
        handlelength=2.2,
        columnspacing=1.5,
    )


def _render(scene: _Scene) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = _bounds(scene)
    fig = Figure(figsize=(x1 - x0, y1 - y0))  # 1 data unit = 1 inch, so the text sizes above hold
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    for bx0, by0, bx1, by1 in scene.bands:
        ax.add_artist(Rectangle((bx0, by0), bx1 - bx0, by1 - by0, facecolor="#f3f6fa", edgecolor="none", zorder=0))
    for box in scene.boxes.values():
        _draw_box(ax, box)
    for link in scene.links:
        _draw_link(ax, link)
    for x, y, text, color in scene.notes:
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=FONT - 1,
            color=color,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
        )
    _legend(ax, scene)
    ax.set_title(scene.title, fontsize=FONT + 2, fontweight="bold", pad=6)
    return fig


def figure(g: nx.MultiDiGraph | nx.DiGraph) -> Figure:
    """A matplotlib Figure of a folded graph or an unrolled DAG (needs matplotlib: `rnndsl[plot]`).

    >>> from rnndsl import graph, load
    >>> fig = figure(graph(load("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }")))
    """
    _require_matplotlib()
    return _render(_folded_scene(g) if g.is_multigraph() else _unrolled_scene(g))


# ---- files ---------------------------------------------------------------------------------------


def _write_dot(g: nx.MultiDiGraph | nx.DiGraph, path: Path) -> None:
    path.write_text(to_dot(g), encoding="utf-8")


def _write_picture(g: nx.MultiDiGraph | nx.DiGraph, path: Path | IO[bytes], fmt: str = "") -> None:
    fig = figure(g)  # first: it says how to install matplotlib when it is missing
    import matplotlib

    w, h = fig.get_size_inches()
    dpi = min(110.0, 60000.0 / max(w, h))  # very wide drawings stay under Agg's limit of 65536 pixels
    fmt = fmt or Path(str(path)).suffix.lower()[1:]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rnndsl"}):
        fig.savefig(
            path,
            format=fmt,
            dpi=dpi,
            bbox_inches="tight",
            pad_inches=0.2,
            facecolor="white",
            metadata={"Date": None} if fmt == "svg" else None,
        )


def to_svg(network: Any, unroll: int | None = None) -> str:
    """SVG text of a network's folded graph (or its DAG unrolled over `unroll` steps), as `draw` writes to a
    .svg file, for a page to show inline (the playground)."""
    buffer = io.BytesIO()
    _write_picture(_view(network, unroll), buffer, "svg")
    return buffer.getvalue().decode("utf-8")


FORMATS: dict[str, Callable[[Any, Path], None]] = {".dot": _write_dot, ".svg": _write_picture, ".png": _write_picture}


def _view(network: Any, steps: int | None) -> nx.MultiDiGraph | nx.DiGraph:
    net = getattr(network, "network", network)
    if steps is None:
        return folded(net)
    _check_steps(steps)
    g = unroll_dag(net, steps, feeds=True)
    g.graph["outputs"] = [(o.name, o.last) for o in net.outputs]  # so the drawing can mark them
    return g


def draw(network: Any, path: str | Path, unroll: int | None = None) -> Path:
    """Draw a network (or a compiled module) to `path`: the folded graph, or with `unroll=STEPS` the
    unrolled DAG; the format (.dot, .svg or .png) follows the suffix. Gives the path written.

    >>> from rnndsl import load
    >>> draw(load("network E { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }"), "/tmp/e.dot")
    PosixPath('/tmp/e.dot')
    """
    path = Path(path)
    writer = FORMATS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"cannot draw to {path}: the file name must end in .dot, .svg or .png")
    if not path.parent.is_dir():  # as export says it
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    writer(_view(network, unroll), path)
    return path
