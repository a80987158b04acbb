"""Compose: takes a program's `model` declarations and its checked networks, gives `Model`s or diagnostics.

A model runs networks one after another, each on its own time axis (an encoder over the letters, a
decoder over the phonemes). `dec = Speaker(context = enc.h)` binds the static input `context` of the
decoder to the output `h` of the earlier instance `enc`, which must be one value per sequence (an
`output h last`, or a static node); `dec = Speaker(enc = enc.h)` binds a memory input to an output at
every step (`output h`), which the decoder attends to, masked by the encoder's lengths. Inputs nobody
binds are the model's inputs; the outputs of instances nobody reads are its outputs. Both keep their own
names, which must not collide. A model runs networks whose sizes are fixed: a generic network
(`network Cell(H)`) is refused, with how to fix its sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnndsl.lang import syntax as s
from rnndsl.lang.errors import NOWHERE, Reporter, Source, Span
from rnndsl.lang.ir import Network, Node, OutputSpec

__all__ = ["Instance", "Model", "check_models"]


@dataclass(frozen=True)
class Instance:
    """One network of a model; `bindings` are (input, source instance, source output)."""

    name: str
    network: Network
    bindings: tuple[tuple[str, str, str], ...] = ()
    span: Span = field(default=NOWHERE, compare=False)

    @property
    def bound(self) -> set[str]:
        return {b[0] for b in self.bindings}


@dataclass(frozen=True)
class Model:
    """Networks run in order; each reads the inputs it is given and the bound outputs of earlier ones."""

    name: str
    instances: tuple[Instance, ...]
    source: Source
    span: Span = field(default=NOWHERE, compare=False)

    @property
    def inputs(self) -> list[tuple[Instance, Node]]:
        """The inputs the caller gives: every instance input no binding feeds."""
        return [(inst, n) for inst in self.instances for n in inst.network.inputs if n.name not in inst.bound]

    @property
    def outputs(self) -> list[tuple[Instance, OutputSpec]]:
        """The outputs of the instances no other instance reads."""
        read = {src for inst in self.instances for _, src, _ in inst.bindings}
        return [(inst, o) for inst in self.instances if inst.name not in read for o in inst.network.outputs]

    def parameter_count(self) -> int:
        return sum(i.network.parameter_count() for i in self.instances)

    def instance(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)


def check_models(program: s.Program, networks: list[Network], report: Reporter) -> list[Model]:
    """Check every model of a program against its (already checked) networks; report what is wrong."""
    from rnndsl.frontend.names import check_name

    by_name = {n.name: n for n in networks}
    declared = {n.name for n in program.networks}
    generic = {n.name: n for n in program.networks if n.generic}
    models = []
    seen: dict[str, Span] = {n.name: n.span for n in program.networks}
    for decl in program.models:
        if decl.name in seen:
            report.error(
                f"`{decl.name}` is defined twice (first at {seen[decl.name]})",
                decl.span,
                "give the model and the network different names",
            )
            continue
        seen[decl.name] = decl.span
        check_name(decl.name, decl.name_span, report)
        model = _Composer(decl, by_name, declared, report, generic).run()
        if model is not None:
            models.append(model)
    return models


class _Composer:
    def __init__(
        self,
        decl: s.ModelDecl,
        networks: dict[str, Network],
        declared: set[str],
        report: Reporter,
        generic: dict[str, s.NetworkDecl] | None = None,
    ) -> None:
        self.decl, self.networks, self.declared, self.report = decl, networks, declared, report
        self.generic = generic or {}
        self.errors_before = len(report.errors)

    def run(self) -> Model | None:
        instances: list[Instance] = []
        for st in self.decl.instances:
            inst = self._instance(st, instances)
            if inst is not None:
                instances.append(inst)
        if not self.decl.instances:
            self.report.error(
                f"model `{self.decl.name}` runs no network",
                self.decl.span,
                "add `NAME = NETWORK` lines, e.g. `enc = Encoder`",
            )
        if len(self.report.errors) > self.errors_before or len(instances) != len(self.decl.instances):
            return None
        model = Model(self.decl.name, tuple(instances), self.report.source, self.decl.span)
        self._check_names(model)
        return model if len(self.report.errors) == self.errors_before else None

    def _instance(self, st: s.Instance, earlier: list[Instance]) -> Instance | None:
        from rnndsl.frontend.names import check_name, did_you_mean

        if any(i.name == st.name for i in earlier):
            self.report.error(
                f"instance `{st.name}` is defined twice in model `{self.decl.name}`",
                st.span,
                "give each instance its own name",
            )
            return None
        if "." in st.name:
            self.report.error(f"`{st.name}`: an instance name cannot contain '.'", st.name_span)
            return None
        check_name(st.name, st.name_span, self.report)  # reported; bindings that read it are checked as usual
        network = self.networks.get(st.network)
        if network is None and st.network in self.generic:
            self._refuse_generic(st, self.generic[st.network])
            return None
        if network is None:
            if st.network not in self.declared:  # a declared network with errors is reported already
                self.report.error(
                    f"unknown network `{st.network}`",
                    st.network_span,
                    did_you_mean(st.network, self.declared) or "define it with `network NAME { ... }`",
                )
            return None
        inputs = {n.name: n for n in network.inputs}
        bindings: list[tuple[str, str, str]] = []
        for name, target, span in st.bindings:
            node = inputs.get(name)
            if node is None:
                self.report.error(
                    f"network `{network.name}` has no input `{name}`",
                    span,
                    f"its inputs are: {', '.join(inputs) or 'none'}",
                )
                continue
            if any(b[0] == name for b in bindings):
                self.report.error(f"input `{name}` is bound twice", span)
                continue
            source = self._source(target, span, earlier, every_step=node.input_kind == "memory")
            if source is None:
                continue
            src_inst, src_node = source
            projected = f"{src_node.name.replace('.', '_')}_{node.size}"
            if node.input_kind == "memory" and src_node.size != node.size:
                self.report.error(
                    f"`{target}` has size {src_node.size} but memory `{name}` of `{network.name}` has size {node.size}",
                    span,
                    f"add a layer to network `{src_inst.network.name}` to project it, `layer {projected}: "
                    f"{node.size} <- {src_node.name}` and `output {projected}`, and bind `{name} = "
                    f"{src_inst.name}.{projected}`; or declare `input {name}: {src_node.size} memory`",
                )
            elif node.input_kind == "memory":
                bindings.append((name, src_inst.name, src_node.name))
            elif node.input_kind != "static":
                self.report.error(
                    f"input `{name}` of `{network.name}` is a sequence on `{st.name}`'s own time "
                    f"axis; `{target}` is one value per sequence",
                    span,
                    f"declare `input {name}: {node.size} static`",
                )
            elif src_node.size != node.size:
                projected = f"{src_node.name.replace('.', '_')}_{node.size}"
                self.report.error(
                    f"`{target}` has size {src_node.size} but input `{name}` of `{network.name}` has size {node.size}",
                    span,
                    f"make them the same size: add a layer to network `{src_inst.network.name}` to "
                    f"project it, `layer {projected}: {node.size} <- {src_node.name}` and "
                    f"`output {projected} last`, and bind `{name} = {src_inst.name}.{projected}`",
                )
            else:
                bindings.append((name, src_inst.name, src_node.name))
        return Instance(st.name, network, tuple(bindings), st.span)

    def _refuse_generic(self, st: s.Instance, decl: s.NetworkDecl) -> None:
        """A model's instances run networks as they are; a generic one has no sizes until a `use` gives them."""
        from rnndsl.frontend.sizes import example_use

        names = ", ".join(n for n, _ in decl.sizes)
        self.report.error(
            f"network `{decl.name}` is generic ({names}): a model runs networks whose sizes are fixed",
            st.network_span,
            f"write a network that uses it with its sizes, `{example_use(decl)}`, outputs what the model "
            "needs, and run that one",
        )

    def _source(
        self, target: str, span: Span, earlier: list[Instance], every_step: bool = False
    ) -> tuple[Instance, Node] | None:
        """The instance and node an argument names; `every_step`: for a memory, which takes every step."""
        inst_name, dot, out_name = target.partition(".")
        inst = next((i for i in earlier if i.name == inst_name), None)
        if not dot or inst is None:
            names = ", ".join(i.name for i in earlier) or "none yet"
            self.report.error(
                f"`{target}` is not an output of an earlier instance",
                span,
                f"write INSTANCE.OUTPUT with an instance defined above (here: {names})",
            )
            return None
        outs = {o.name: o for o in inst.network.outputs}
        out = outs.get(out_name)
        if out is None:
            self.report.error(
                f"`{inst.name}` ({inst.network.name}) has no output `{out_name}`",
                span,
                f"its outputs are: {', '.join(outs)}",
            )
            return None
        node = inst.network[out_name]
        if every_step and (out.last or node.static):
            self.report.error(
                f"`{target}` is one value per sequence; a memory takes every step of `{inst.name}`",
                span,
                f"write `output {out_name}` (every step) in network `{inst.network.name}`, or declare the "
                "input `static` to read one summary",
            )
            return None
        if not every_step and not (out.last or node.static):
            self.report.error(
                f"`{target}` gives a value at every step of `{inst.name}`'s time axis; a binding "
                "takes one value per sequence",
                span,
                f"write `output {out_name} last` in network `{inst.network.name}`",
            )
            return None
        return inst, node

    def _check_names(self, model: Model) -> None:
        """The model's inputs and outputs are called by their own names: no two may share one."""
        for what, pairs in (
            ("input", [(i, n.name) for i, n in model.inputs]),
            ("output", [(i, o.name) for i, o in model.outputs]),
        ):
            owner: dict[str, Instance] = {}
            for inst, name in pairs:
                if name in owner:
                    self.report.error(
                        f"{what} `{name}` of both `{owner[name].name}` and `{inst.name}`: the model "
                        f"calls its {what}s by name",
                        inst.span,
                        f"rename the {what} in network `{inst.network.name}`",
                    )
                owner.setdefault(name, inst)
