"""Generated names: every name generated code uses for a node or a parameter, and every parameter key.

Node names never start with `_` nor hold `__` (the front end refuses them), so the names made here, of
the form `_KIND_NODE` (`_r1_h`: h one step back, `_W0_h`: h's first weight), cannot meet a node's. A name
made from another generated name is `_KIND_` before it whole (`_s__tm1_h`: the steps of `_tm1_h`, h shifted
one step), so the `_` that starts the inner name tells it from `_KIND_` before a node's (`_s_tm1_h`: the
steps of a node named `tm1_h`).
"""

from __future__ import annotations

import keyword

from torch import nn

__all__ = [
    "attention_name",
    "bias_name",
    "collected_name",
    "keep_name",
    "learned_name",
    "param_key",
    "steps_name",
    "var",
    "weight_name",
]


# names the generated code itself uses: a node called so gets a `__` suffix
_USED = {
    "torch",
    "F",
    "K",
    "P",
    "X",
    "I",
    "H",
    "B",
    "T",
    "t",
    "lengths",
    "train",
    "valid",
    "values",
    "state",
    "math",
    "range",
    "len",
    "float",
    "watch",
    "feed",
    "ctx",  # a loop function's autograd context
}


def var(name: str) -> str:
    """A node's Python name in generated code: dots become `__`; clashes with names the code uses get `__`."""
    v = name.replace(".", "__")
    return v + "__" if keyword.iskeyword(v) or v in _USED else v  # user names never hold `__`


def weight_name(layer: str, j: int) -> str:
    return f"_W{j}_{var(layer)}"


def bias_name(layer: str) -> str:
    return f"_b_{var(layer)}"


def learned_name(param: str) -> str:
    """The generated name of a `param` node's learned vector (`_p_pi`)."""
    return f"_p_{var(param)}"


def keep_name(memory: str) -> str:
    """The variable of a memory input's keep mask (the positions inside each memory's length)."""
    return f"_keep_{var(memory)}"


def attention_name(node: str) -> str:
    """The variable of an attention node's weights."""
    return f"_aw_{var(node)}"


def steps_name(value: str) -> str:
    """The list of a sequence's steps that a loop reads it from (`_s_x`, `_s__tm1_h`, the clock's `_s__t`);
    `value` is a node's variable or a generated name."""
    return f"_s_{value}"


def collected_name(value: str) -> str:
    """The list a loop gathers a value into, one entry a step (`_seq_h`; attention weights `_seq__aw_c`)."""
    return f"_seq_{value}"


def param_key(name: str) -> str:
    """A node's key in the module's dicts: '.' (block members, `enc.h`) becomes `__`, and a name that
    is already an attribute of nn.ModuleDict/ParameterDict, of the class (`update`, `keys`, `to`) or of
    every instance (`training`), gets a `__` suffix. User names never hold `__`, so keys cannot clash."""
    k = name.replace(".", "__")
    return k + "__" if k in _KEYS_TAKEN else k


_KEYS_TAKEN = frozenset(dir(nn.ModuleDict()) + dir(nn.ParameterDict()))  # what a key of theirs may not be
