"""Check: takes a parsed `Program`, gives checked `ir.Network`s, or a `SpecError` listing every problem.

`check_network` runs one network through a sequence of passes. Each takes the statements, or the facts of
the passes before it, and gives facts (frozen data) or nothing; each reports what is wrong through the
file's `Reporter` and carries on, so one run finds every error. In order, "takes -> gives":

- `declare.own_names`: the network's own statements -> the names among them that are dotted or reserved
- `frontend.inline`: the program, the network -> its statements with every `use` block expanded
- `declare.declarations`: those statements -> `Declarations` (definitions, written sizes, inits,
  outputs, the blocks' exports)
- `references.check_references`: `Declarations` -> - (unknown or hidden names, delays, calls)
- `shapes.infer_sizes`: `Declarations` -> `Sizes` (every node's size, inferred where not written; the
  size of any expression)
- `shapes.check_layers`, `check_params`, `check_sizes`: `Sizes` -> - (activations, options, how params
  start, size mismatches)
- `loops.static_nodes`: `Declarations` -> the nodes whose value is the same at every step
- `boundaries.check_inits`, `check_outputs`: `Sizes` -> - (what inits read, what can be an output)
- `loops.check_loops`: `Declarations`, static nodes -> - (delayed static reads, algebraic loops, loops
  reading past and future)
- `feeds.check_feeds`: `Sizes`, static nodes -> - (what self-fed inputs are fed)
- `memories.node_memories`: `Sizes`, static nodes -> the memory whose positions each node runs over
- `build.build_nodes`: `Sizes`, static nodes, memories -> the IR's `Node`s
- `build.warn`, `build.check_limits`: `Declarations`, the nodes -> - (unused nodes, inits with no effect;
  the parameter limit)

After an error the network is not built. Otherwise the `ir.Network` is built once, from the nodes, the
outputs and the warnings reported since its check began, and nothing changes it afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from rnndsl.frontend import sizes
from rnndsl.frontend.check.boundaries import check_inits, check_outputs
from rnndsl.frontend.check.build import MAX_PARAMETERS, build_nodes, check_limits, warn
from rnndsl.frontend.check.declare import Hints, declarations, own_names
from rnndsl.frontend.check.feeds import check_feeds
from rnndsl.frontend.check.loops import check_loops, static_nodes
from rnndsl.frontend.check.memories import node_memories
from rnndsl.frontend.check.references import MAX_DELAY, check_references
from rnndsl.frontend.check.shapes import check_layers, check_params, check_sizes, infer_sizes, project
from rnndsl.frontend.inline import inline
from rnndsl.frontend.names import check_name, did_you_mean
from rnndsl.frontend.sizes import MAX_SIZE
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Reporter, Source, Span, SpecError
from rnndsl.lang.ir import Network, OutputSpec

if TYPE_CHECKING:
    from rnndsl.frontend.compose import Model

__all__ = [
    "check",
    "check_file",
    "check_network",
    "check_program",
    "check_name",
    "project",
    "resolve",
    "did_you_mean",
    "MAX_DELAY",
    "MAX_SIZE",
    "MAX_PARAMETERS",
    "MAX_ERRORS",
]

MAX_ERRORS = 100  # shown per file; the rest are counted in one last diagnostic
T = TypeVar("T", "Network", "Network | Model")


def check_network(program: s.Program, net: s.NetworkDecl, report: Reporter) -> Network | None:
    """One network of `program` (not a generic one) through every pass; None after an error.

    >>> from rnndsl.frontend.parse import parse
    >>> text = "network N { input x: 2\\n input u: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }"
    >>> program, report = parse(text), Reporter(Source(text, "<string>"))
    >>> net = check_network(program, program.networks[0], report)
    >>> [n.name for n in net.nodes], [w.message for w in net.warnings]
    (['x', 'u', 'h'], ['input `u` is never used by an output'])
    >>> program = parse("network N { input x: 2\\n output y }")
    >>> check_network(program, program.networks[0], report), report.errors[-1].message
    (None, 'output `y` is not defined')
    """
    errors_before, warnings_before = len(report.errors), len(report.warnings)
    bad_names = own_names(net, report)
    decls = declarations(net, inline(program, net, report), bad_names, report)
    hints = Hints(report, errors_before, decls)
    check_references(decls, hints, report)
    sized = infer_sizes(decls, report)
    check_layers(sized, report)
    check_params(decls, report)
    check_sizes(sized, report)
    static = static_nodes(decls)
    check_inits(sized, hints, report)
    check_outputs(decls, hints, report)
    check_loops(decls, static, report)
    check_feeds(sized, static, report)
    memory_of = node_memories(sized, static, report)
    if len(report.errors) > errors_before or decls.reported_elsewhere():
        return None
    nodes = build_nodes(sized, static, memory_of)
    warn(decls, nodes, report)
    check_limits(net.name, nodes, report)
    outputs = tuple(OutputSpec(o.name, o.last, o.span) for o in decls.outputs)
    return Network(net.name, nodes, outputs, report.source, tuple(report.warnings[warnings_before:]))


def check_program(program: s.Program, source: Source) -> list[Network]:
    """Check every network of a file (and its models); raise one SpecError holding all errors found."""
    return check_file(program, source)[0]


def check_file(program: s.Program, source: Source) -> tuple[list[Network], list[Model]]:
    """Check every network and model of a file; raise one SpecError holding all errors found.

    A generic network (`network Cell(H)`) is checked where it is used, with the sizes each use gives; here
    only its declaration is (its sizes and its names), and it is not among the networks returned."""
    from rnndsl.frontend.compose import check_models

    report = Reporter(source)
    seen = _networks(program, report)
    sizes.never_given(program, report)
    for net in seen.values():
        sizes.check_declaration(net, seen, report)
        if net.generic:
            own_names(net, report)
    checked = [
        n for n in (check_network(program, net, report) for net in seen.values() if not net.generic) if n is not None
    ]
    models = check_models(program, checked, report)
    _dedupe(report)
    _truncate(report)
    report.raise_if_errors()
    return checked, models


def _networks(program: s.Program, report: Reporter) -> dict[str, s.NetworkDecl]:
    """The file's networks by name (the last of two with one name); reports bad and repeated names."""
    seen: dict[str, s.NetworkDecl] = {}
    for net in program.networks:
        check_name(net.name, net.name_span, report)
        if net.name in seen:
            report.error(
                f"network `{net.name}` is defined twice (first at {seen[net.name].span})",
                net.span,
                "rename one of them",
            )
        seen[net.name] = net
    if not program.networks:
        report.error("no network in this file", Span(1, 1), "write `network NAME { ... }`")
    return seen


def resolve(program: s.Program, source: Source, name: str | None = None) -> Network | Model:
    """The network or model called `name`; without a name, the file's one model, else its one network."""
    nets, models = check_file(program, source)
    found: list[Network | Model] = [*nets, *models]
    if name is None and len(models) == 1:
        return models[0]
    _refuse_generic(program, source, name)
    return _pick(found, name, source, "network or model", "models" if models else "networks")


def check(program: s.Program, source: Source, network: str | None = None) -> Network:
    """Check a file and pick one network by name (needed when the file holds several)."""
    checked = check_program(program, source)
    _refuse_generic(program, source, network)
    return _pick(checked, network, source, "network", "networks")


def _refuse_generic(program: s.Program, source: Source, name: str | None) -> None:
    """A generic network asked for by name has no sizes yet: a SpecError at its name says how to give them."""
    decl = next((n for n in program.networks if n.name == name and n.generic), None)
    if decl is not None:
        raise SpecError([sizes.asked_directly(decl, source)])


def _pick(found: list[T], name: str | None, source: Source, what: str, several: str) -> T:
    """The one item of `found` called `name` (or the only one), else a ValueError listing them."""
    if name is None:
        if len(found) == 1:
            return found[0]
        names = ", ".join(n.name for n in found)
        raise ValueError(f"{source.name} holds several {several} ({names}); pick one with network=NAME")
    for item in found:
        if item.name == name:
            return item
    hint = did_you_mean(name, [n.name for n in found])
    raise ValueError(
        f"{source.name} has no {what} `{name}`; it has: "
        f"{', '.join(n.name for n in found)}" + (f" ({hint})" if hint else "")
    )


def _truncate(report: Reporter) -> None:
    """Keep the first MAX_ERRORS errors and say how many more there are, at the first one left out."""
    if len(report.errors) <= MAX_ERRORS:
        return
    ordered = sorted(report.errors, key=lambda d: (d.span.line, d.span.column))
    rest = ordered[MAX_ERRORS:]
    report.errors = ordered[:MAX_ERRORS]
    report.error(f"{len(rest):,} more errors not shown", rest[0].span, "fix the ones above first")


def _dedupe(report: Reporter) -> None:
    """A block used twice repeats the errors inside it; report each position once."""
    for attr in ("errors", "warnings"):
        seen, kept = set(), []
        for d in getattr(report, attr):
            key = (d.span.line, d.span.column, d.message)
            if key not in seen:
                seen.add(key)
                kept.append(d)
        setattr(report, attr, kept)
