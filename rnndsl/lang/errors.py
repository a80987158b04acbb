"""Spans and diagnostics: every user-facing spec error goes through here.

Takes positions found by the parser and checker, gives `SpecError`, whose text is
`FILE:LINE:COL: error: MESSAGE`, the source line, a caret under the column and, when known, the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Span", "Diagnostic", "SpecError", "Source"]


@dataclass(frozen=True)
class Source:
    """The text of one spec and the name it is reported under (a path or `<string>`)."""

    text: str
    name: str = "<string>"

    def line(self, number: int) -> str:
        lines = self.text.split("\n")  # as Lark counts lines: only \n ends one
        return lines[number - 1] if 0 < number <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """Where a piece of syntax stands: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


NOWHERE = Span(1, 1)
TAB_SIZE = 8  # as terminals and `cat` show a tab


@dataclass(frozen=True)
class Diagnostic:
    """One finding: an error or a warning at a span, with an optional fix."""

    message: str
    span: Span
    source: Source
    severity: str = "error"
    hint: str = ""

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def format(self) -> str:
        """Render as `file:line:col: error: message`, the source line and a caret."""
        head = f"{self.source.name}:{self.span.line}:{self.span.column}: {self.severity}: {self.message}"
        raw = self.source.line(self.span.line)
        end = self.span.column + 1
        if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
            end = self.span.end_column
        # Tabs expanded in the echo and under it alike: a tab kept in the echo jumps to the terminal's next
        # tab stop while the caret row counted it as one column. The column in the head stays the real one.
        start, stop = _screen_column(raw, self.span.column), _screen_column(raw, end)
        text = raw.expandtabs(TAB_SIZE)
        caret = " " * start + "^" * max(1, min(stop, len(text)) - start)
        out = [head, f"    {text}", f"    {caret}"]
        if self.hint:
            out.append(f"    help: {self.hint}")
        return "\n".join(out)


def _screen_column(line: str, column: int) -> int:
    """Where 1-based `column` of `line` shows once tabs are expanded, counted from 0."""
    return len(line[: column - 1].expandtabs(TAB_SIZE)) + max(0, column - 1 - len(line))


@dataclass
class SpecError(Exception):
    """A spec that cannot be used; `.diagnostics` lists every error found in one run."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class Reporter:
    """Collects diagnostics for one source so a pass can report every error, not only the first."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def error(self, message: str, span: Span, hint: str = "") -> None:
        self.errors.append(Diagnostic(message, span, self.source, "error", hint))

    def warn(self, message: str, span: Span, hint: str = "") -> None:
        self.warnings.append(Diagnostic(message, span, self.source, "warning", hint))

    def raise_if_errors(self) -> None:
        if self.errors:
            ordered = sorted(self.errors, key=lambda d: (d.span.line, d.span.column))
            raise SpecError(ordered)
