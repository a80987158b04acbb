"""Analysis: takes a spec's text, gives what an editor shows of it: the checker's diagnostics (errors and
warnings, the messages `rnndsl check` prints), the syntax tree when the text parses, and the checked
networks and models.

When the file as a whole does not check, each network is checked again alone, with the blocks it uses,
so one broken network leaves the others' facts (sizes, loops, parameters) for hover.

>>> a = analyse("network N { input x: 4\\n layer h: 8 tanh <- x, h[t-1]\\n output h }")
>>> a.ok, a.networks["N"]["h"].size
(True, 8)
>>> [d.message for d in analyse("network N { input x: 4\\n output y }").diagnostics]
['output `y` is not defined']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rnndsl.frontend.check import check_file
from rnndsl.frontend.compose import Model
from rnndsl.frontend.parse import parse
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Diagnostic, Source, SpecError
from rnndsl.lang.ir import Network

__all__ = ["Analysis", "analyse", "uses"]


@dataclass(frozen=True)
class Analysis:
    """One version of a spec's text as the checker sees it. `program` is None when the text does not parse;
    `networks` holds every network that checks (alone, when the file does not), `models` the file's models
    when the whole file checks."""

    source: Source
    program: s.Program | None
    diagnostics: tuple[Diagnostic, ...]
    networks: Mapping[str, Network] = field(default_factory=dict)
    models: Mapping[str, Model] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the text checks: no error (warnings allowed)."""
        return not any(d.severity == "error" for d in self.diagnostics)

    def declaration(self, name: str) -> s.NetworkDecl | None:
        """The network declared as `name`, from the syntax tree."""
        if self.program is None:
            return None
        return next((n for n in self.program.networks if n.name == name), None)


def analyse(text: str, name: str = "<string>") -> Analysis:
    """Parse and check `text`; never raises for a mistake in it (a mistake is a diagnostic)."""
    source = Source(text, name)
    try:
        program = parse(text, name)
    except SpecError as err:
        return Analysis(source, None, tuple(err.diagnostics))
    try:
        nets, models = check_file(program, source)
    except SpecError as err:
        alone = _each_alone(program, source)
        return Analysis(source, program, _ordered(err.diagnostics, _warnings(alone)), {n.name: n for n in alone})
    return Analysis(
        source, program, _ordered([], _warnings(nets)), {n.name: n for n in nets}, {m.name: m for m in models}
    )


def _each_alone(program: s.Program, source: Source) -> list[Network]:
    """Every network of the file that checks with only the blocks it uses beside it."""
    decls = {n.name: n for n in program.networks}
    found = []
    for decl in program.networks:
        if decl.generic:
            continue
        try:
            nets, _ = check_file(s.Program(tuple(decls[n] for n in uses(decl.name, decls))), source)
        except SpecError:
            continue
        found += [n for n in nets if n.name == decl.name]
    return found


def uses(name: str, decls: Mapping[str, s.NetworkDecl]) -> list[str]:
    """`name` and every network it uses, directly or through its blocks, in the file's order."""
    seen, todo = {name}, [name]
    while todo:
        decl = decls.get(todo.pop())
        for st in decl.body if decl else ():
            if isinstance(st, s.Use) and st.network in decls and st.network not in seen:
                seen.add(st.network)
                todo.append(st.network)
    return [n for n in decls if n in seen]


def _warnings(nets: list[Network]) -> list[Diagnostic]:
    return [w for n in nets for w in n.warnings]


def _ordered(errors: list[Diagnostic], warnings: list[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Errors and warnings by position, each (position, message) once: a block used twice warns twice."""
    seen: dict[tuple[int, int, str, str], Diagnostic] = {}
    for d in [*errors, *warnings]:
        seen.setdefault((d.span.line, d.span.column, d.severity, d.message), d)
    return tuple(sorted(seen.values(), key=lambda d: (d.span.line, d.span.column, d.severity != "error")))
