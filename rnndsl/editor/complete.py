"""Complete: takes a spec's text and a cursor, gives completion items: the names in scope, functions,
activations, keywords, layer options and their values, block inputs and outputs, networks.

Text being typed rarely parses, so this reads the text itself, not the syntax tree: the declaration the
cursor is in (the last `network NAME` or `model NAME` before it), the names its statements define, and
what the line says so far before the cursor.

>>> text = "network N {\\n input x: 4\\n layer h: 8 tanh <- x, h[t-1]\\n layer y: 2 "
>>> [i.label for i in complete(text, 4, 13)][:3]
['identity', 'tanh', 'sigmoid']
>>> sorted(i.label for i in complete(text + "<- ", 4, 16) if i.kind == "node")
['h', 'x', 'y']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rnndsl.editor.vocabulary import (
    ACTIVATIONS,
    DECLARATIONS,
    FUNCTIONS,
    LAYER_OPTIONS,
    STATEMENTS,
    signature,
)
from rnndsl.lang.ops import FEED_FUNCTIONS

__all__ = ["Item", "complete"]

_N = r"[A-Za-z_][A-Za-z0-9_]*"
_DECL = re.compile(rf"^[ \t]*(network|model)[ \t]+({_N})[ \t]*(?:\(([^)]*)\))?", re.M)
_DEFINES = re.compile(rf"^[ \t;]*(?:(input|param|layer)[ \t]+({_N})|({_N})[ \t]*(?::[^=\n]*)?=(?!=))", re.M)
_USE = re.compile(rf"\buse[ \t]+({_N})[ \t]*=[ \t]*({_N})")
_INPUT = re.compile(rf"^[ \t;]*input[ \t]+({_N})", re.M)
_OUTPUT = re.compile(rf"^[ \t;]*output[ \t]+({_N})", re.M)
_INSTANCE = re.compile(rf"^[ \t;]*({_N})[ \t]*=[ \t]*({_N})", re.M)
_PARAM_INITS = ("zeros", "ones", "normal", "uniform")  # or a number


@dataclass(frozen=True)
class Item:
    """One completion: what is shown, its kind ("node", "function", "activation", "keyword", "option",
    "value", "network", "input", "size", "output", "instance"), a detail line and the text inserted."""

    label: str
    kind: str
    detail: str = ""
    insert: str = ""


@dataclass(frozen=True)
class _Decl:
    kind: str  # "network" | "model"
    name: str
    sizes: tuple[str, ...]
    body: str


def _blank_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text)


def _declarations(text: str) -> list[_Decl]:
    """Each `network NAME` / `model NAME` and its text up to the next one."""
    found = list(_DECL.finditer(text))
    out = []
    for m, after in zip(found, [*found[1:], None][: len(found)], strict=True):
        body = text[m.end() : after.start() if after else len(text)]
        sizes = tuple(n.strip() for n in (m.group(3) or "").split(",") if n.strip())
        out.append(_Decl(m.group(1), m.group(2), sizes, body))
    return out


def complete(text: str, line: int, column: int) -> list[Item]:
    """Completion items at 1-based `line`, `column` (the cursor is before that column's character)."""
    text = _blank_comments(text)
    rows = text.split("\n")
    row = rows[line - 1] if 0 < line <= len(rows) else ""
    before = row[: column - 1]
    offset = sum(len(r) + 1 for r in rows[: line - 1]) + len(before)
    decls = _declarations(text)
    here = _declarations(text[:offset])
    if not here:
        return [Item(w, "keyword") for w in DECLARATIONS]
    current = next(d for d in decls if d.name == here[-1].name and d.kind == here[-1].kind)
    by_name = {d.name: d for d in decls if d.kind == "network"}
    if current.kind == "model":
        return _in_model(before, current, by_name)
    for pattern, items in _CONTEXTS:
        m = re.search(pattern, before)
        if m:
            return items(m, current, by_name)
    if re.fullmatch(r"[ \t;{]*\w*", before):
        return [Item(w, "keyword") for w in STATEMENTS] + _names(current, by_name)
    return _names(current, by_name) + _functions()


def _names(decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    """The nodes `decl` defines, each block output `b.h` of its uses, and its size parameters."""
    items: dict[str, Item] = {}
    for m in _DEFINES.finditer(decl.body):
        kind, name = (m.group(1), m.group(2)) if m.group(1) else ("expression", m.group(3))
        if name not in STATEMENTS and name not in DECLARATIONS:
            items.setdefault(name, Item(name, "node", kind))
    for m in _USE.finditer(decl.body):
        block = networks.get(m.group(2))
        for out in _OUTPUT.findall(block.body) if block else ():
            label = f"{m.group(1)}.{out}"
            items[label] = Item(label, "node", f"output of {m.group(2)}")
    for size in decl.sizes:
        items.setdefault(size, Item(size, "size", f"size of {decl.name}"))
    return list(items.values())


def _functions() -> list[Item]:
    return [
        Item(name, "function", f"{signature(name)}: {doc}", f"{name}(")
        for name, doc in FUNCTIONS.items()
        if name != "identity"
    ]


def _activations(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    acts = [Item(name, "activation", op.doc) for name, op in ACTIVATIONS.items()]
    return acts + [Item(key, "option", _option_detail(key), f"{key}=") for key in LAYER_OPTIONS]


def _option_detail(key: str) -> str:
    values = LAYER_OPTIONS[key]
    return "a number in [0, 1)" if values is None else " | ".join(values)


def _option_values(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    return [Item(v, "value") for v in LAYER_OPTIONS.get(m.group(1)) or ()]


def _input_kinds(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    return [Item("static", "keyword", "one vector per sequence"), Item("memory", "keyword", "a whole sequence")]


def _input_size(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    sizes = [Item(size, "size", f"size of {decl.name}") for size in decl.sizes]
    return [Item("tokens", "keyword", "token ids: tokens(N)", "tokens("), *sizes]


def _param_inits(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    return [Item(v, "value", "the param's start") for v in _PARAM_INITS]


def _inits(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    policies = [Item(v, "value", "initial value") for v in ("zeros", "learned")]
    return policies + _names(decl, networks) + _functions()


def _outputs(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    return [i for i in _names(decl, networks) if i.kind == "node"]


def _last(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    return [Item("last", "keyword", "each sequence's last step only")]


def _feeds(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    feeds = [Item(n, "function", doc, f"{n}(") for n, doc in FEED_FUNCTIONS.items()]
    return feeds + _names(decl, networks) + _functions()


def _blocks(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    return [Item(n, "network", _ports(d)) for n, d in networks.items() if n != decl.name]


def _block_args(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    block = networks.get(m.group(1))
    if block is None:
        return []
    sizes = [Item(n, "size", f"size of {block.name}", f"{n} = ") for n in block.sizes]
    return sizes + [Item(n, "input", f"input of {block.name}", f"{n} = ") for n in _INPUT.findall(block.body)]


def _block_outputs(m: re.Match[str], decl: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    blocks = dict(_USE.findall(decl.body))
    block = networks.get(blocks.get(m.group(1), ""))
    return [Item(o, "output", f"output of {block.name}") for o in _OUTPUT.findall(block.body)] if block else []


def _ports(decl: _Decl) -> str:
    ins, outs = _INPUT.findall(decl.body), _OUTPUT.findall(decl.body)
    return f"inputs {', '.join(ins) or 'none'}; outputs {', '.join(outs) or 'none'}"


def _in_model(before: str, model: _Decl, networks: dict[str, _Decl]) -> list[Item]:
    m = re.search(rf"({_N})[ \t]*\((?:[^)]*,)?[ \t]*\w*$", before)
    if m:
        block = networks.get(m.group(1))
        inputs = _INPUT.findall(block.body) if block else []
        return [Item(n, "input", f"input of {m.group(1)}", f"{n} = ") for n in inputs]
    if re.search(rf"{_N}[ \t]*=[ \t]*\w*$", before) and "(" not in before:
        return [Item(n, "network", _ports(d)) for n, d in networks.items()]
    m = re.search(rf"=[ \t]*({_N})\.\w*$", before)
    if m:
        instances = dict(_INSTANCE.findall(model.body))
        block = networks.get(instances.get(m.group(1), ""))
        return [Item(o, "output", f"output of {block.name}") for o in _OUTPUT.findall(block.body)] if block else []
    return [Item(n, "instance", f"instance of {net}") for n, net in _INSTANCE.findall(model.body)]


Context = Callable[[re.Match[str], _Decl, dict[str, _Decl]], list[Item]]

# What the line before the cursor says, tried in order: the first pattern found decides.
_CONTEXTS: list[tuple[str, Context]] = [
    (rf"\buse[ \t]+{_N}[ \t]*=[ \t]*\w*$", _blocks),
    (rf"\buse[ \t]+{_N}[ \t]*=[ \t]*({_N})[ \t]*\((?:[^)]*,)?[ \t]*\w*$", _block_args),
    (rf"\blayer[ \t]+{_N}[ \t]*:[^<]*\b(bias|dropout|init)[ \t]*=[ \t]*\w*$", _option_values),
    (rf"\blayer[ \t]+{_N}[ \t]*:[ \t]*[^<\s]+[ \t]+[^<]*$", _activations),
    (rf"\binput[ \t]+{_N}[ \t]*:[ \t]*\w*$", _input_size),
    (rf"\binput[ \t]+{_N}[ \t]*:[ \t]*[\w*+() -]*\w[ \t]+\w*$", _input_kinds),
    (rf"\binput[ \t]+{_N}[ \t]*:.*=[^=]*$", _feeds),
    (rf"\bparam[ \t]+{_N}[ \t]*:[^=]*=[ \t]*\w*$", _param_inits),
    (rf"\binit[ \t]+{_N}[ \t]*=", _inits),
    (rf"\boutput[ \t]+{_N}[ \t]+\w*$", _last),
    (r"\boutput[ \t]+\w*$", _outputs),
    (rf"(?<![\w.])({_N})\.\w*$", _block_outputs),
]
