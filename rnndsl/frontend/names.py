"""Names: the rule every name a spec defines follows, and the did-you-mean of a misspelt one.

Used by every front-end pass (check, inline, compose) and by the runtime's call checks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from rnndsl.lang.errors import Reporter, Span

__all__ = ["RESERVED", "check_name", "did_you_mean"]

# Keywords of the language: they cannot name a node or a size.
RESERVED = {
    "network",
    "input",
    "param",
    "layer",
    "init",
    "output",
    "use",
    "static",
    "memory",
    "tokens",
    "last",
    "zeros",
    "learned",
}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


def check_name(name: str, span: Span, report: Reporter) -> bool:
    """Report a defined name that starts with '_' or contains '__'; True when it is fine. The rule holds for
    every name a spec defines (networks, nodes, models, instances): generated code names its own temporaries
    `_KIND_NODE` and block members `b__h`, and Python's own attributes are `__NAME__` (an instance called
    `__class__` broke the model's module dict)."""
    if not (name.startswith("_") or "__" in name):
        return True
    fixed = re.sub("_+", "_", name).strip("_") or "n"
    report.error(f"`{name}`: names may not start with '_' or contain '__'", span, f"call it `{fixed}`")
    return False
