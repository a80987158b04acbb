"""Progress: takes steps and losses as training goes, gives a tqdm bar on a terminal and evaluation lines.

The bar (tqdm: steps, rate, time left, the last loss) is drawn only when the stream is a terminal and the
run is not quiet; evaluation lines are printed unless quiet, above the bar, so a log file gets one line
per evaluation instead of a bar.
"""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm

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
    """`step  40%|████      | 400/1000 [00:03<00:05, 118.2 steps/s, loss=0.4312]`, redrawn by tqdm at
    most ten times a second."""

    def __init__(self, total: int, start: int, stream: TextIO, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self.bar = (
            None
            if quiet or not stream.isatty()
            else tqdm(
                total=total,
                initial=start,
                file=stream,
                desc="step",
                unit=" steps",
                mininterval=0.1,
                dynamic_ncols=True,
                leave=False,
            )
        )

    def update(self, step: int, loss: float) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)
        self.bar.update(step - self.bar.n)
        if step >= (self.bar.total or 0):  # the last step is drawn, however soon after the one before
            self.bar.refresh()

    def message(self, text: str) -> None:
        """A line of its own (an evaluation), above the bar."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
