"""Kept for code written before the layer packages: `rnndsl.reference` is `rnndsl.runtime.reference`."""

from __future__ import annotations

from rnndsl.runtime.reference import *  # noqa: F403
from rnndsl.runtime.reference import __all__  # noqa: F401
