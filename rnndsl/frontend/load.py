"""Front-end entry points: take a spec (a path or the text itself), give checked networks.

`read_spec` reads a file (UTF-8, a byte-order mark allowed) or passes text through; `load` and `load_all`
parse and check. They are re-exported as `rnndsl.read_spec`, `rnndsl.load` and `rnndsl.load_all`.
"""

from __future__ import annotations

from pathlib import Path

from rnndsl.frontend.check import check, check_program
from rnndsl.frontend.parse import parse
from rnndsl.lang.errors import Source
from rnndsl.lang.ir import Network

__all__ = ["load", "load_all", "read_spec"]


def read_spec(spec: str | Path) -> tuple[str, str]:
    """(text, name) of a spec given as a path or as the text itself; a file may start with a byte-order mark."""
    if isinstance(spec, Path) or _a_path(spec):
        path = Path(spec)
        try:
            return path.read_text(encoding="utf-8-sig"), str(spec)
        except FileNotFoundError:
            raise FileNotFoundError(f"no spec file at {spec}") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"{spec} is a folder, not a spec file") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{spec} is not UTF-8 text: {err}") from None
    return spec.removeprefix("\ufeff"), "<string>"


def _a_path(spec: str) -> bool:
    """Whether a string names a file rather than holding a spec: one line without a brace (every network has
    braces) that ends in .rnn, has a path separator or names something that exists."""
    if "\n" in spec or "{" in spec:
        return False
    return spec.lower().endswith(".rnn") or "/" in spec or "\\" in spec or Path(spec).exists()


def load_all(spec: str | Path) -> list[Network]:
    """Parse and check every network of a spec (a path or the text itself)."""
    text, name = read_spec(spec)
    return check_program(parse(text, name), Source(text, name))


def load(spec: str | Path, network: str | None = None) -> Network:
    """Parse and check one network of a spec; `network=` picks it when the file holds several.

    >>> load("network N { input x: 2\\n output x }").name
    'N'
    """
    text, name = read_spec(spec)
    return check(parse(text, name), Source(text, name), network)
