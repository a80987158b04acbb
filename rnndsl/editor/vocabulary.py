"""The language's words by role: takes the op table and the grammar's keywords, gives the word lists that
highlighting (the Pygments lexer, the TextMate grammar) and completion share, so none of them keeps a copy.

>>> "tanh" in FUNCTIONS and "layer" in STATEMENTS and "dropout" in LAYER_OPTIONS
True
"""

from __future__ import annotations

from rnndsl.lang import syntax as s
from rnndsl.lang.ops import ACTIVATIONS, FEED_FUNCTIONS, OPS, TOKEN_FUNCTIONS

__all__ = [
    "ACTIVATIONS",
    "CONSTANTS",
    "DECLARATIONS",
    "FUNCTIONS",
    "LAYER_OPTIONS",
    "MODIFIERS",
    "STATEMENTS",
    "signature",
]

DECLARATIONS = ("network", "model")  # what starts a declaration at the top of a file
STATEMENTS = ("input", "param", "layer", "init", "output", "use")  # what starts a statement in a network
MODIFIERS = ("static", "memory", "tokens", "last")  # what follows a size or a name
# Words that stand for a value: init policies, param starts, option values.
CONSTANTS = tuple(
    dict.fromkeys(
        ["zeros", "learned", "ones", "normal", "uniform"]
        + [v for values in s.LAYER_OPTIONS.values() if values for v in values]
    )
)
LAYER_OPTIONS = s.LAYER_OPTIONS

# Every function a spec may call, with a one-line description.
FUNCTIONS: dict[str, str] = {
    **{name: op.doc for name, op in OPS.items()},
    **TOKEN_FUNCTIONS,
    **FEED_FUNCTIONS,
}


def signature(name: str) -> str:
    """How a function is called: `tanh(x)`, `concat(x, ...)`, `every(k)`.

    >>> signature("concat"), signature("attend"), signature("every")
    ('concat(x, ...)', 'attend(score, values)', 'every(k)')
    """
    op = OPS.get(name)
    if op is None:
        return f"{name}(x)"
    if op.literal:
        return f"{name}(k)"
    if op.memory:
        return f"{name}(score, values)"
    if op.arity < 0:
        return f"{name}(x, ...)"
    return f"{name}({', '.join(('x', 'y', 'z')[: op.arity])})"


assert set(ACTIVATIONS) <= set(FUNCTIONS)  # an activation is also a function: one list highlights both
