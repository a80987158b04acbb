"""Cells: takes a loop stage of a checked network, gives the standard cell it computes, if any.

A loop that is exactly an Elman (tanh or relu), LSTM or GRU cell (torch's GRU: the reset gate scales
the hidden projection after the matmul) runs on torch's fused kernels (oneDNN on CPU, cuDNN on GPU)
with the spec's own parameters. The match is structural and strict: anything extra in the loop, a
dropout, a token source, or a value torch's kernel does not give back (an LSTM's `c` at every step)
keeps the loop on the generated code.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnndsl.backend.names import bias_name, weight_name
from rnndsl.backend.plan import Joins
from rnndsl.graphs.schedule import Stage
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network, Node

__all__ = ["Cell", "CellWeights", "cell_weights", "match_cell"]


@dataclass(frozen=True)
class Cell:
    """A recognised cell: `gates` are layer names in torch's order; `sources` the shared outside inputs.

    kind "lstm": gates (i, f, g, o), state nodes (h, c). kind "gru": gates (r, z) and the layers
    (nx, nh) of the candidate, state (h,). kind "rnn_tanh" / "rnn_relu": gates (h,), state (h,).
    """

    kind: str
    gates: tuple[str, ...]
    h: str
    c: str = ""
    nx: str = ""
    sources: tuple[s.Expr, ...] = ()


@dataclass(frozen=True)
class CellWeights:
    """A cell's four weight tensors as torch's fused kernels take them, (w_ih, w_hh, b_ih, b_hh), each its parts
    joined along the first dimension in torch's gate order: a parameter's generated name (`_W0_i`), or a number
    of zeros (a gate without a bias; the hidden-side bias is zero but for a GRU's candidate's). A row of `w_ih`
    joins one gate's weights of the cell's outside sources along the second dimension.
    """

    key: str  # the generated name of the cell's h
    kind: str  # the cell's (`Cell.kind`)
    w_ih: tuple[tuple[str, ...], ...]
    w_hh: tuple[str, ...]
    b_ih: tuple[str | int, ...]
    b_hh: tuple[str | int, ...]

    @property
    def flat(self) -> bool:
        """Whether every parameter can be a view of one buffer that holds the four one after another, as the
        kernel takes them: each a block of whole rows, so not where a cell reads several outside sources."""
        return all(len(row) == 1 for row in self.w_ih)

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters in the order they lie in that buffer."""
        biases = tuple(p for p in self.b_ih + self.b_hh if isinstance(p, str))
        return tuple(name for row in self.w_ih for name in row) + self.w_hh + biases

    def joins(self) -> Joins:
        """The four tensors as the buffer lays them out (a `flat` cell's: each row of `w_ih` is one parameter)."""
        assert self.flat, "a row of w_ih joins several parameters side by side: no buffer of whole rows"
        return Joins(self.key, self.kind, (tuple(row[0] for row in self.w_ih), self.w_hh, self.b_ih, self.b_hh))


def cell_weights(network: Network, stage: Stage, cell: Cell, key: str) -> CellWeights:
    """Which parameters make up each of a cell's four weight tensors, in order."""
    d = stage.direction
    ih = [network[g] for g in cell.gates] + ([network[cell.nx]] if cell.nx else [])
    # where each gate reads h[t-1]: that weight is the hidden-side one, the others the input side
    rec = {g: recurrent_index(network[g], cell.h, d) or 0 for g in cell.gates}
    hh = [(g, rec[g]) for g in cell.gates] + ([(gru_candidate_hidden(stage, cell, network), 0)] if cell.nx else [])
    rows = tuple(
        tuple(weight_name(n.name, j) for j in range(len(n.sources)) if n.name not in rec or j != rec[n.name])
        for n in ih
    )
    b_ih = tuple(_bias(n) for n in ih)
    if cell.nx:
        b_hh: tuple[str | int, ...] = (*(network[g].size for g in cell.gates), _bias(network[hh[-1][0]]))
    else:
        b_hh = (sum(network[g].size for g in cell.gates),)
    return CellWeights(key, cell.kind, rows, tuple(weight_name(g, j) for g, j in hh), b_ih, b_hh)


def gru_candidate_hidden(stage: Stage, cell: Cell, network: Network) -> str:
    """A GRU cell's layer of the candidate's hidden side (`nh`, torch's `W_hn h + b_hn`)."""
    return next(n for n in stage.nodes if network[n].op == "layer" and n not in cell.gates)


def _bias(node: Node) -> str | int:
    return bias_name(node.name) if node.bias else node.size


def match_cell(network: Network, stage: Stage) -> Cell | None:
    """The standard cell a loop stage computes, or None."""
    if not stage.is_loop:
        return None
    nodes = [network[n] for n in stage.nodes]
    match = {1: _elman, 5: _gru, 6: _lstm}.get(len(nodes))
    return None if match is None else match(network, stage, {n.name: n for n in nodes})


def _elman(network: Network, stage: Stage, nodes: dict[str, Node]) -> Cell | None:
    (h,) = nodes.values()
    if h.op != "layer" or h.activation not in ("tanh", "relu"):
        return None
    sources = _gate_sources(h, h.name, stage.direction)
    if sources is None or not _only_step_reads(network, stage, {h.name: 1}):
        return None
    return Cell(f"rnn_{h.activation}", (h.name,), h.name, sources=sources)


def _lstm(network: Network, stage: Stage, nodes: dict[str, Node]) -> Cell | None:
    exprs = [n for n in nodes.values() if n.op == "expr"]
    if len(exprs) != 2:
        return None
    for h, c in (exprs, exprs[::-1]):
        cell = _lstm_roles(network, stage, nodes, h, c)
        if cell is not None:
            return cell
    return None


def _lstm_roles(network: Network, stage: Stage, nodes: dict[str, Node], h: Node, c: Node) -> Cell | None:
    d = stage.direction
    o_ref, tanh_c = _product(h.expr)
    if not (isinstance(tanh_c, s.Call) and tanh_c.fn == "tanh" and _is_ref(tanh_c.args[0], c.name, 0)):
        o_ref, tanh_c = tanh_c, o_ref
    if not (
        isinstance(tanh_c, s.Call)
        and tanh_c.fn == "tanh"
        and len(tanh_c.args) == 1
        and _is_ref(tanh_c.args[0], c.name, 0)
    ) or not isinstance(o_ref, s.Ref):
        return None
    terms = _sum(c.expr)
    if terms is None:
        return None
    f = i = g = None
    for term in terms:
        a, b = _product(term)
        if _is_ref(b, c.name, d) or _is_ref(a, c.name, d):
            f = a if _is_ref(b, c.name, d) else b
        elif isinstance(a, s.Ref) and isinstance(b, s.Ref) and a.delay == 0 and b.delay == 0:
            i, g = (a, b) if nodes.get(a.name, h).activation == "sigmoid" else (b, a)
    refs = [o_ref, f, i, g]
    if not all(isinstance(r, s.Ref) and r.delay == 0 and r.name in nodes for r in refs):
        return None
    names = [r.name for r in refs]  # type: ignore[union-attr]
    o, fn, in_, gn = (nodes[n] for n in names)
    if len(set(names)) != 4 or [x.activation for x in (in_, fn, gn, o)] != ["sigmoid", "sigmoid", "tanh", "sigmoid"]:
        return None
    gates = (in_, fn, gn, o)
    sources = _shared_sources(gates, h.name, d)
    if sources is None or not _only_step_reads(network, stage, {h.name: 1, c.name: 1}):
        return None
    return Cell("lstm", tuple(x.name for x in gates), h.name, c=c.name, sources=sources)


def _gru(network: Network, stage: Stage, nodes: dict[str, Node]) -> Cell | None:
    d = stage.direction
    exprs = [n for n in nodes.values() if n.op == "expr"]
    layers = [n for n in nodes.values() if n.op == "layer"]
    if len(exprs) != 2 or len(layers) != 3:
        return None
    for n, h in (exprs, exprs[::-1]):
        roles = _gru_update(h, n.name, d)
        cand = _gru_candidate(n)
        if roles is None or cand is None:
            continue
        z, (nx, r, nh) = roles, cand
        if {z, r, nh} != {x.name for x in layers} or nx not in network.by_name:
            continue
        rz = (nodes[r], nodes[z])
        sources = _shared_sources(rz, h.name, d)
        nxn, nhn = network[nx], nodes[nh]
        if (
            sources is None
            or any(x.activation != "sigmoid" for x in rz)
            or nxn.op != "layer"
            or nxn.activation != "identity"
            or nxn.dropout
            or nxn.sources != sources
            or nhn.activation != "identity"
            or nhn.dropout
            or not _is_ref_tuple(nhn.sources, h.name, d)
            or not _only_step_reads(network, stage, {h.name: 1})
        ):
            continue
        return Cell("gru", (r, z), h.name, nx=nx, sources=sources)
    return None


def _gru_update(h: Node, n: str, d: int) -> str | None:
    """`h = (1 - z) * n + z * h[t-1]` (terms and factors in any order): gives z."""
    terms = _sum(h.expr)
    if terms is None:
        return None
    z_keep = z_new = None
    for term in terms:
        a, b = _product(term)
        for x, y in ((a, b), (b, a)):
            if _is_ref(y, h.name, d) and isinstance(x, s.Ref) and x.delay == 0:
                z_keep = x.name
            if (
                _is_ref(y, n, 0)
                and isinstance(x, s.BinOp)
                and x.op == "-"
                and isinstance(x.left, s.Num)
                and x.left.value == 1
                and isinstance(x.right, s.Ref)
                and x.right.delay == 0
            ):
                z_new = x.right.name
    return z_keep if z_keep is not None and z_keep == z_new else None


def _gru_candidate(n: Node) -> tuple[str, str, str] | None:
    """`n = tanh(nx + r * nh)`: gives (nx, r, nh); r is told from nh by the caller's check."""
    e = n.expr
    if not (isinstance(e, s.Call) and e.fn == "tanh" and len(e.args) == 1):
        return None
    terms = _sum(e.args[0])
    if terms is None:
        return None
    for nx, prod in (terms, terms[::-1]):
        a, b = _product(prod)
        if (
            _is_ref(nx, getattr(nx, "name", ""), 0)
            and isinstance(a, s.Ref)
            and isinstance(b, s.Ref)
            and a.delay == 0
            and b.delay == 0
        ):
            assert isinstance(nx, s.Ref)
            return nx.name, a.name, b.name
    return None


def recurrent_index(gate: Node, h: str, d: int) -> int | None:
    """Where a gate reads exactly `h[t-1]` (or `h[t+1]` going backward) among its sources."""
    found = [j for j, e in enumerate(gate.sources) if _is_ref(e, h, d)]
    return found[0] if len(found) == 1 else None


def _gate_sources(gate: Node, h: str, d: int) -> tuple[s.Expr, ...] | None:
    """A gate reads outside sources and, at any position, exactly `h[t-1]` (`h[t+1]` going backward)."""
    j = recurrent_index(gate, h, d)
    if gate.dropout or j is None:
        return None
    outer = gate.sources[:j] + gate.sources[j + 1 :]
    if not outer or any(h in {r.name for r in s.refs(e)} for e in outer):
        return None
    return outer


def _shared_sources(gates: tuple[Node, ...], h: str, d: int) -> tuple[s.Expr, ...] | None:
    sources = [_gate_sources(g, h, d) for g in gates]
    first = sources[0]
    return first if first is not None and all(x == first for x in sources) else None


def _only_step_reads(network: Network, stage: Stage, ring: dict[str, int]) -> bool:
    """Only `h` leaves the loop (torch's kernels give back h at every step, nothing else), and the
    loop reads its members only at the delays of the pattern (`ring`)."""
    h = next(iter(ring))
    hidden = set(stage.nodes) - {h}
    for node in network.nodes:
        inside = node.name in stage.nodes
        for r in node.refs():
            if inside and r.name in stage.nodes and r.delay and abs(r.delay) > ring.get(r.name, 0):
                return False
            if not inside and r.name in hidden:
                return False
    if any(o.name in hidden for o in network.outputs):
        return False
    past, future = (1, 0) if stage.direction > 0 else (0, 1)
    return all(network.delays[n][0] <= past and network.delays[n][1] <= future for n in hidden)


def _sum(e: s.Expr | None) -> list[s.Expr] | None:
    return [e.left, e.right] if isinstance(e, s.BinOp) and e.op == "+" else None


def _product(e: s.Expr | None) -> tuple[s.Expr | None, s.Expr | None]:
    return (e.left, e.right) if isinstance(e, s.BinOp) and e.op == "*" else (None, None)


def _is_ref(e: object, name: str, delay: int) -> bool:
    return isinstance(e, s.Ref) and e.name == name and e.delay == delay


def _is_ref_tuple(sources: tuple[s.Expr, ...], name: str, d: int) -> bool:
    return len(sources) == 1 and _is_ref(sources[0], name, d)
