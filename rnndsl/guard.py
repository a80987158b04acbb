"""Kept for code written before the layer packages: `rnndsl.guard` is `rnndsl.runtime.guard`."""

from __future__ import annotations

from rnndsl.runtime.guard import *  # noqa: F403
from rnndsl.runtime.guard import __all__  # noqa: F401
