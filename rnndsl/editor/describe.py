"""Describe: takes an analysed spec and a resolved name, gives the hover text an editor shows (Markdown).

A node: its kind, size, what it reads, its parameter count, the loop it belongs to and the delays it is
read at (from the checked network; from the text as written when its network does not check, plus its
sizes where a block is used). A `use`: the block's inputs and outputs. A network, a size parameter, a
function, a model and an instance have their own short texts.

>>> from rnndsl.editor.analysis import analyse
>>> from rnndsl.editor.index import Symbol
>>> a = analyse("network N { input x: 4\\n layer h: 8 tanh <- x, h[t-1]\\n output h }")
>>> print(describe(a, Symbol("node", "N", "h")))
**layer** `h`: size 8, tanh
- reads `x`, `h[t-1]`
- 104 parameters (8 × 12 weights, 8 bias)
- in the loop {h} (delay t-1)
- read at t-1 by `h`; before the first step that reads zeros
- output, every step
"""

from __future__ import annotations

from collections.abc import Callable

from rnndsl.editor.analysis import Analysis
from rnndsl.editor.index import Symbol
from rnndsl.editor.vocabulary import ACTIVATIONS, FUNCTIONS, signature
from rnndsl.frontend.sizes import used_with
from rnndsl.graphs.folded import folded, loops
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Source, Span
from rnndsl.lang.ir import Network, Node

__all__ = ["describe"]

_INPUT_KINDS = {
    "seq": "a vector at every step",
    "static": "one vector per sequence",
    "tokens": "a token id at every step",
    "memory": "a whole sequence, for attention",
}


def describe(analysis: Analysis, symbol: Symbol) -> str | None:
    """The hover text of `symbol`, or None when there is nothing to say (a name no statement defines)."""
    return _KINDS[symbol.kind](analysis, symbol)


def _node(a: Analysis, sym: Symbol) -> str | None:
    net = a.networks.get(sym.scope)
    if net is not None and sym.name in net.by_name:
        return _checked(net, net[sym.name])
    st = _statement(a, sym.scope, sym.name)
    if st is None:
        return f"`{sym.name}`: not defined in network `{sym.scope}`" if a.declaration(sym.scope) else None
    lines = [f"**{_written_kind(st)}** `{st.name}`: size {_size(getattr(st, 'size', None))}"]
    decl = a.declaration(sym.scope)
    if decl is not None and not decl.generic:
        lines.append("- network does not check yet: the size as written")
    for other in a.networks.values():
        for node in other.nodes:
            if node.name.endswith("." + st.name) and node.span == st.span:
                count = f", {_params(node)}" if node.parameter_count() else ""
                lines.append(f"- as `{node.name}` in `{other.name}`: size {node.size}{count}")
    return "\n".join(lines)


def _checked(net: Network, node: Node) -> str:
    lines = [f"**{_kind(node)}** `{node.name}`: size {node.size}" + _activation(node)]
    if node.sources:
        lines.append("- reads " + ", ".join(f"`{s.show(e)}`" for e in node.sources))
    if node.op == "expr" and node.expr is not None:
        lines.append(f"- `{_written(net.source, node.span)}`")
    if node.feed is not None:
        lines.append(f"- when not given, fed `{s.show(node.feed)}`")
    if node.parameter_count():
        lines.append(f"- {_params(node)}")
    if node.static and node.op not in ("input", "param"):
        lines.append("- static: computed once per sequence")
    if node.memory and node.op != "input":
        lines.append(f"- one vector per position of memory `{node.memory}`")
    lines += _loop(net, node.name)
    lines += [f"- output, {'last step' if o.last else 'every step'}" for o in net.outputs if o.name == node.name]
    return "\n".join(lines)


def _kind(node: Node) -> str:
    if node.op == "input":
        return "token input" if node.is_tokens else f"{node.input_kind} input".replace("seq ", "")
    return {"param": "param", "layer": "layer", "expr": "expression"}.get(node.op, node.op)


def _activation(node: Node) -> str:
    if node.op == "input":
        return f" ({_INPUT_KINDS[node.input_kind]})" if node.input_kind in _INPUT_KINDS else ""
    return f", {node.activation}" if node.op == "layer" and node.activation != "identity" else ""


def delay_text(delay: int) -> str:
    """`t-1` for a delay of 1 (the past), `t+2` for -2 (the future), as the spec writes it."""
    return f"t{-delay:+d}"


def _params(node: Node) -> str:
    count = f"{node.parameter_count():,} parameters"
    if node.op == "layer" and node.init.kind == "zeros":
        bias = f", {node.size} bias" if node.bias else ""
        return f"{count} ({node.size} × {sum(node.source_sizes)} weights{bias})"
    if node.init.kind == "expr" and node.op != "layer":
        return f"{count} (the projection of its initial value)"
    return count


def _loop(net: Network, name: str) -> list[str]:
    g = folded(net)
    out = [
        f"- in the loop {{{', '.join(names)}}} (delay {', '.join(delay_text(d) for d in delays)})"
        for names, delays in loops(g)
        if name in names
    ]
    readers: dict[int, list[str]] = {}
    for _, reader, delay in g.out_edges(name, data="delay"):
        if delay:
            readers.setdefault(delay, []).append(reader)
    for delay, who in sorted(readers.items()):
        first = "first" if delay > 0 else "last"
        init = net[name].init
        start = s.show(init.expr) if init.kind == "expr" and init.expr is not None else init.kind
        out.append(
            f"- read at {delay_text(delay)} by {', '.join(f'`{r}`' for r in dict.fromkeys(who))}; "
            f"before the {first} step that reads {start}"
        )
    return out


def _written(source: Source, span: Span) -> str:
    """A statement as the spec writes it, on one line, without comments: `h = (1 - z) * n + z * h[t-1]`."""
    rows = [source.line(n) for n in range(span.line, max(span.line, span.end_line) + 1)]
    if span.end_line == span.line and span.end_column > span.column:
        rows = [rows[0][: span.end_column - 1]]
    rows[0] = rows[0][span.column - 1 :]
    return " ".join(" ".join(r.split("#", 1)[0].split()) for r in rows).strip()


def _statement(a: Analysis, network: str, name: str) -> s.Stmt | None:
    decl = a.declaration(network)
    found = [st for st in decl.body if st.name == name] if decl else []
    return next((st for st in found if isinstance(st, (s.Input, s.Param, s.Layer, s.Assign))), None)


def _written_kind(st: s.Stmt) -> str:
    if isinstance(st, s.Input):
        return "token input" if st.kind == "tokens" else f"{st.kind} input".replace("seq ", "")
    return {s.Param: "param", s.Layer: "layer", s.Assign: "expression"}.get(type(st), "node")


def _size(size: s.Size | None) -> str:
    if size is None:
        return "from its expression"
    return str(int(size)) if isinstance(size, float) else s.show(size)


def _ports(decl: s.NetworkDecl) -> list[str]:
    ins = [
        f"`{st.name}`: "
        + (f"tokens({_size(st.size)})" if st.kind == "tokens" else _size(st.size))
        + ("" if st.kind in ("seq", "tokens") else f" {st.kind}")
        for st in decl.body
        if isinstance(st, s.Input)
    ]
    outs = [f"`{st.name}`" + (" last" if st.last else "") for st in decl.body if isinstance(st, s.Output)]
    return [f"- inputs: {', '.join(ins) or 'none'}", f"- outputs: {', '.join(outs) or 'none'}"]


def _use(a: Analysis, sym: Symbol) -> str | None:
    decl = a.declaration(sym.scope)
    use = next((st for st in decl.body if isinstance(st, s.Use) and st.name == sym.name), None) if decl else None
    block = a.declaration(use.network) if use else None
    if use is None or block is None:
        return None
    lines = [f"**use** `{use.name}` = network `{block.name}`", *_ports(block)]
    sizes = {n for n, _ in block.sizes}
    given = [f"{k} = {s.show(e)}" for k, e, _ in use.args if k in sizes]
    if given:
        lines.append(f"- sizes: {', '.join(given)}")
    net = a.networks.get(sym.scope)
    if net is not None:
        own = [n for n in net.nodes if n.name.startswith(use.name + ".")]
        lines.append(f"- {len(own)} nodes here, {sum(n.parameter_count() for n in own):,} parameters")
    return "\n".join(lines)


def _network(a: Analysis, sym: Symbol) -> str | None:
    decl = a.declaration(sym.name)
    if decl is None:
        return None
    head = decl.name + (f"({', '.join(n for n, _ in decl.sizes)})" if decl.generic else "")
    lines = [f"**network** `{head}`", *_ports(decl)]
    net = a.networks.get(decl.name)
    if net is not None:
        lines.append(f"- {len(net.nodes)} nodes, {net.parameter_count():,} parameters, {len(loops(folded(net)))} loops")
    if decl.generic and a.program is not None:
        lines.append(_used(used_with(a.program)[decl.name]))
    return "\n".join(lines)


def _used(bindings: list[dict[str, int]]) -> str:
    if not bindings:
        return "- generic, not used here: sizes come with each `use`"
    return "- generic, used with " + "; ".join(", ".join(f"{k} = {v}" for k, v in b.items()) for b in bindings)


def _size_param(a: Analysis, sym: Symbol) -> str | None:
    decl = a.declaration(sym.scope)
    if decl is None or sym.name not in {n for n, _ in decl.sizes}:
        return None
    values = sorted({b[sym.name] for b in used_with(a.program)[decl.name]}) if a.program else []
    shown = f"; given {', '.join(map(str, values))} here" if values else ""
    return f"**size** `{sym.name}` of network `{decl.name}`: a whole number each `use` gives{shown}"


def _function(a: Analysis, sym: Symbol) -> str | None:
    doc = FUNCTIONS.get(sym.name)
    if doc is None:
        return None
    also = f"\n- also a layer's activation: `layer h: 64 {sym.name} <- x`" if sym.name in ACTIVATIONS else ""
    return f"**{signature(sym.name)}**: {doc}{also}"


def _model(a: Analysis, sym: Symbol) -> str | None:
    decl = next((m for m in a.program.models if m.name == sym.name), None) if a.program else None
    if decl is None:
        return None
    runs = ", ".join(f"`{i.name}` = `{i.network}`" for i in decl.instances)
    model = a.models.get(sym.name)
    count = f"\n- {model.parameter_count():,} parameters" if model is not None else ""
    return f"**model** `{decl.name}`: runs {runs} in order{count}"


def _instance(a: Analysis, sym: Symbol) -> str | None:
    model = next((m for m in a.program.models if m.name == sym.scope), None) if a.program else None
    inst = next((i for i in model.instances if i.name == sym.name), None) if model else None
    decl = a.declaration(inst.network) if inst else None
    if inst is None or decl is None:
        return None
    bound = [f"{k} = {v}" for k, v, _ in inst.bindings]
    lines = [f"**instance** `{inst.name}` of model `{sym.scope}`: network `{decl.name}`", *_ports(decl)]
    return "\n".join(lines + ([f"- bound: {', '.join(bound)}"] if bound else []))


_KINDS: dict[str, Callable[[Analysis, Symbol], str | None]] = {
    "node": _node,
    "use": _use,
    "network": _network,
    "size": _size_param,
    "function": _function,
    "model": _model,
    "instance": _instance,
}
