"""Kept for code written before the layer packages: `rnndsl.feed` is `rnndsl.runtime.feed`."""

from __future__ import annotations

from rnndsl.runtime.feed import *  # noqa: F403
from rnndsl.runtime.feed import __all__  # noqa: F401
