"""Progress: takes steps and losses as training goes, gives a one-line bar on a terminal (`\\r` updates).

Nothing is drawn when the stream is not a terminal or the run is quiet; evaluation lines are still
printed unless quiet, so a log file gets one line per evaluation instead of a bar.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress", "duration"]


def duration(seconds: float) -> str:
    """`duration(75) == "1m15s"`, `duration(2.5) == "2.5s"`; hours when long."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """`step k/N loss L  R steps/s  ETA T`, redrawn at most ten times a second."""

    def __init__(self, total: int, start: int, stream: TextIO, quiet: bool) -> None:
        self.total, self.start, self.stream, self.quiet = total, start, stream, quiet
        self.bar = not quiet and stream.isatty()
        self.began = self.last_draw = time.perf_counter()
        self.width = 0

    def update(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        if not self.bar or (now - self.last_draw < 0.1 and step < self.total):
            return
        self.last_draw = now
        rate = (step - self.start) / max(now - self.began, 1e-9)
        eta = duration((self.total - step) / rate) if rate > 0 else "?"
        text = f"step {step}/{self.total}  loss {loss:.4f}  {rate:.1f} steps/s  ETA {eta}"
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def message(self, text: str) -> None:
        """A line of its own (an evaluation), above the bar."""
        if self.quiet:
            return
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.bar and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
