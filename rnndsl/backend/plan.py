"""Loop plans: takes one loop stage of a network, gives the data both loop writers read.

The forward writer (`codegen`) and the backward writer (`loop_backward`) never search each other's text;
they read one `LoopPlan`, worked out once per loop: the matmul groups, which of them read only delayed
values (run first in a step), the ring of past values kept per node, the nodes whose every step is
collected, and the order of one step (the backward runs it reversed). `LoopWriter` is what the backward
writer needs of the forward writer, so neither imports the other. `Joins` names the weight tensors a loop's
code joins from its parameters (a group's, `group_joins`; a fused cell's, `cells.CellWeights.joins`), which the
module lays out in one buffer so that a call finds them joined.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from rnndsl.backend.names import bias_name, weight_name
from rnndsl.graphs.schedule import Stage
from rnndsl.lang import syntax as s
from rnndsl.lang.ir import Network, Node

__all__ = ["LEADING", "Group", "Joins", "LoopPlan", "LoopWriter", "group_joins", "shared_outer"]

# `kernels.loop`'s arguments before a loop's inputs (forward_fn, backward_fn, T, B, train, records): where a
# generated backward finds an input in `ctx.needs_input_grad`
LEADING = 6


@dataclass
class Group:
    """Layers of one loop whose recurrent matmuls run as one: they read the same delayed sources."""

    name: str
    members: list[Node]
    internal: dict[str, list[int]]  # member -> indices of its sources that read the loop, in key order

    @property
    def width(self) -> int:
        """How many loop-reading sources each member has (the same for all members)."""
        return len(self.internal[self.members[0].name])


@dataclass(frozen=True)
class LoopPlan:
    """One loop, as both writers see it."""

    stage: Stage
    groups: list[Group]
    early: frozenset[str]  # groups that read only delayed values: computed first in a step
    rings: dict[str, int]  # node -> how many past (future) values of it the loop reads
    collect: list[str]  # nodes whose every step is kept: read outside, outputs, or needed by the state
    order: list[Group | Node]  # one step, in order: groups and expression nodes
    function: bool  # runs as one autograd node with a generated backward
    attends: tuple[str, ...] = ()  # nodes whose value is `attend(...)`: their weights are kept at every step

    @property
    def members(self) -> set[str]:
        return set(self.stage.nodes)


def groups_of(net: Network, stage: Stage, var: object) -> tuple[list[Group], frozenset[str]]:
    """Fuse layers whose loop-dependent sources are the same delayed references; the groups that read only
    delayed values (`early`)."""
    members = set(stage.nodes)
    groups: dict[object, Group] = {}
    early: set[str] = set()
    for name in stage.nodes:
        node = net[name]
        if node.op != "layer":
            continue
        internal = [j for j, e in enumerate(node.sources) if any(r.name in members for r in s.refs(e))]
        exprs = tuple(node.sources[j] for j in internal)
        delayed = all(isinstance(e, s.Ref) and e.delay != 0 for e in exprs)
        key: object = exprs if delayed and exprs else name
        if key not in groups:
            groups[key] = Group(var(name), [], {})  # type: ignore[operator]
            if delayed:
                early.add(groups[key].name)
        groups[key].members.append(node)
        groups[key].internal[name] = internal
    for g in groups.values():
        g.members.sort(key=lambda n: n.activation)  # equal activations side by side: one call each
    return list(groups.values()), frozenset(early)


@dataclass(frozen=True)
class Joins:
    """Weight tensors generated code joins from parameters, each its parts one after another along the first
    dimension: a parameter's generated name (`_W0_i`), or a number of zero rows (a layer without a bias). The
    module lays each key's tensors out in one buffer, the parameters views of it (`runtime.network._lay_out`),
    and the code takes the buffer's views from `_J` (`K.flat`) where the parameters are still those views."""

    key: str
    kind: str  # a fused cell's (`Cell.kind`: torch's kernel takes the tensors), or "loop" (a group's products)
    parts: tuple[tuple[str | int, ...], ...]

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters in the order they lie in the buffer."""
        return tuple(p for join in self.parts for p in join if isinstance(p, str))


def shared_outer(net: Network, g: Group) -> list[list[int]] | None:
    """Where a group's members (two or more) project the same outside sequences (not static, not token ids), in
    the same order: each member's indices of those sources. Their projections are then one `F.linear` per
    source with the members' weights and biases joined; else None."""
    if len(g.members) == 1:
        return None
    outer = [[j for j in range(len(n.sources)) if j not in g.internal[n.name]] for n in g.members]
    first = [g.members[0].sources[j] for j in outer[0]]
    if (
        not first
        or any([n.sources[j] for j in js] != first for n, js in zip(g.members, outer, strict=True))
        or any(net[r.name].static or net[r.name].is_tokens for e in first for r in s.refs(e))
    ):
        return None
    return outer


def group_joins(net: Network, g: Group) -> Joins | None:
    """The weights a group of two or more layers joins: per loop-reading source, the members' weights (`_WT<j>`);
    where they share their outside sources (`shared_outer`), per such source the members' weights, then their
    biases. None for a group of one layer, which joins nothing."""
    if len(g.members) == 1:
        return None
    parts: list[tuple[str | int, ...]] = [
        tuple(weight_name(n.name, g.internal[n.name][j]) for n in g.members) for j in range(g.width)
    ]
    outer = shared_outer(net, g)
    if outer is not None:
        parts += [
            tuple(weight_name(n.name, js[i]) for n, js in zip(g.members, outer, strict=True))
            for i in range(len(outer[0]))
        ]
        parts.append(tuple(bias_name(n.name) if n.bias else n.size for n in g.members))
    # keyed by the count of tensors too: a network running free reads a self-fed input inside the loop, which
    # can leave the same parameters in the same order joined into fewer tensors (no bias part of zero rows)
    return Joins(f"_j{len(parts)}_{g.name}", "loop", tuple(parts))


def rings_of(net: Network, stage: Stage) -> dict[str, int]:
    """How many past (or future) values the loop itself reads of each of its nodes."""
    rings: dict[str, int] = {}
    for name in stage.nodes:
        for r in net[name].refs():
            if r.name in stage.nodes and r.delay:
                rings[r.name] = max(rings.get(r.name, 0), abs(r.delay))
    return rings


def step_order(net: Network, stage: Stage, groups: list[Group], early: frozenset[str]) -> list[Group | Node]:
    """What one step computes, in order: the groups that read only delayed values first, then each node in
    schedule order, a group where its first member stands."""
    order: list[Group | Node] = [g for g in groups if g.name in early]
    for name in stage.nodes:
        node = net[name]
        if node.op == "expr":
            order.append(node)
        else:
            g = next(g for g in groups if node in g.members)
            if g.name not in early and g.members[0] is node:
                order.append(g)
    return order


class LoopWriter(Protocol):
    """What the backward writer asks of the forward writer."""

    net: Network
    kinds: frozenset[str]
    loops: int
    guard: bool
    with_lengths: bool
    defined: set[str]
    functions: list[str]
    constant_addend: set[str]

    def emit(self, line: str) -> None: ...

    def expr(self, e: s.Expr, ref: object) -> str: ...

    def memory_of(self, e: s.Expr) -> str: ...

    def seq_ref(self, ref: s.Ref, before_loop: bool = False) -> str: ...

    def loop_steps(self, plan: LoopPlan, save: bool = False) -> None: ...

    def function_body(self) -> AbstractContextManager[list[str]]: ...
