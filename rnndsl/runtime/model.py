"""Model: takes a checked `compose.Model`, gives `CompiledModel`, a `torch.nn.Module` that runs its networks.

Each instance is a `CompiledNetwork` (parameters `instances.<instance>.layers...`). A call runs them in
order, each over its own time axis with its own lengths, handing each bound output to the static
input it feeds; the model returns the outputs of its last instances. `generate` encodes once and lets
the instance with a self-fed token input generate, by sampling or beam search.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnndsl.backend.names import param_key
from rnndsl.frontend.compose import Instance, Model
from rnndsl.frontend.names import did_you_mean
from rnndsl.runtime.generation import Generation
from rnndsl.runtime.network import CompiledNetwork
from rnndsl.runtime.values import Outputs

__all__ = ["CompiledModel"]

_GENERATE_OPTIONS = {
    "input",
    "prompt",
    "temperature",
    "top_k",
    "greedy",
    "stop",
    "batch",
    "generator",
    "length_penalty",
}


class CompiledModel(nn.Module):
    """A model compiled to PyTorch: `model(letters=x, lengths={"enc": n})` runs every instance in order.

    `lengths` and `steps` are keyed by instance name (each instance has its own time axis).
    """

    def __init__(self, model: Model, fuse_cells: bool | Collection[str] = True) -> None:
        super().__init__()
        self.model = model
        # keyed as node names are, so an instance named `train` or `keys` is no clash with nn.ModuleDict's own
        self.instances = nn.ModuleDict(
            {param_key(i.name): CompiledNetwork(i.network, fuse_cells) for i in model.instances}
        )

    def net(self, instance: str) -> CompiledNetwork:
        """The compiled network of one instance."""
        names = [i.name for i in self.model.instances]
        if instance not in names:
            raise KeyError(f"model `{self.model.name}` has no instance `{instance}`; it has: {', '.join(names)}")
        net = self.instances[param_key(instance)]
        assert isinstance(net, CompiledNetwork)
        return net

    @property
    def ir(self) -> Model:
        """What was compiled: the checked model."""
        return self.model

    @property
    def like(self) -> torch.Tensor:
        return self.net(self.model.instances[0].name).like

    def code(self, lengths: bool = False, free: bool = False) -> str:
        """The generated code of every instance, in order."""
        return "\n".join(
            f"# ---- instance {i.name} ({i.network.name})\n" + self.net(i.name).code(lengths, free)
            for i in self.model.instances
        )

    def forward(
        self,
        *,
        lengths: Mapping[str, torch.Tensor] | None = None,
        steps: Mapping[str, int] | None = None,
        batch: int | None = None,
        feed_back: float = 0.0,
        sampler: Any = None,
        **inputs: torch.Tensor,
    ) -> Outputs:
        """Run every instance in order. Inputs by name; `lengths` and `steps` keyed by instance name;
        `feed_back` and `sampler` go to the instances with self-fed inputs (see CompiledNetwork.forward)."""
        self._check_call(inputs, lengths, steps)
        values, fed = self._run(self.model.instances, inputs, lengths or {}, steps or {}, batch, feed_back, sampler)
        outputs = {o.name: values[inst.name][o.name] for inst, o in self.model.outputs}
        return Outputs(outputs, None, fed)

    def generate(
        self, steps: int, *, beam: int | None = None, lengths: Mapping[str, torch.Tensor] | None = None, **kwargs: Any
    ) -> Generation:
        """Run the instances before the generating one on the inputs given, then generate from it (the one
        instance with a self-fed token input): sampling, or beam search with `beam=K`. Options as
        `CompiledNetwork.generate`; inputs by name; `lengths` keyed by instance name."""
        options = {k: v for k, v in kwargs.items() if k in _GENERATE_OPTIONS}
        inputs = {k: v for k, v in kwargs.items() if k not in _GENERATE_OPTIONS}
        gen = self._generator()
        before = self.model.instances[: self.model.instances.index(gen)]
        given = {n.name for _, n in self.model.inputs}
        self._check_call(inputs, lengths, None, allowed=given - {n.name for n in gen.network.self_fed})
        values, _ = self._run(before, inputs, lengths or {}, {}, None, 0.0, None)
        own = {n.name: inputs[n.name] for n in gen.network.inputs if n.name in inputs and n.name not in gen.bound}
        bound = {name: values[src][out] for name, src, out in gen.bindings}
        memories = self._memory_lengths(gen, lengths or {})
        if memories:
            options["memory_lengths"] = memories
        return self.net(gen.name).generate(steps, beam=beam, **own, **bound, **options)

    def to_onnx(
        self, path: str | os.PathLike[str], lengths: bool = False, greedy: bool = False, stop: int | None = None
    ) -> Path:
        """Write this model as one ONNX file: its instances in order, each bound input the output it is bound
        to. Inputs by name as a call takes them, `lengths.INSTANCE` for each instance when `lengths=True`;
        `greedy=True` writes greedy generation (see `CompiledNetwork.to_onnx`). Gives the path written."""
        from rnndsl.runtime.export import model_to_onnx, save

        return save(model_to_onnx(self, lengths=lengths, greedy=greedy, stop=stop), path)

    def _generator(self) -> Instance:
        found = [i for i in self.model.instances if any(n.is_tokens for n in i.network.self_fed)]
        if len(found) != 1:
            raise ValueError(
                f"model `{self.model.name}` needs one instance with a self-fed token input to "
                f"generate; it has {len(found)}"
            )
        return found[0]

    def _run(
        self,
        instances: tuple[Instance, ...],
        inputs: dict[str, torch.Tensor],
        lengths: Mapping[str, torch.Tensor],
        steps: Mapping[str, int],
        batch: int | None,
        feed_back: float,
        sampler: Any,
    ) -> tuple[dict[str, Outputs], dict[str, torch.Tensor]]:
        values: dict[str, Outputs] = {}
        fed: dict[str, torch.Tensor] = {}
        for inst in instances:
            own = {n.name: inputs[n.name] for n in inst.network.inputs if n.name in inputs and n.name not in inst.bound}
            bound = {name: values[src][out] for name, src, out in inst.bindings}
            options: dict[str, Any] = {}
            if inst.network.self_fed:
                options = {"feed_back": feed_back, "sampler": sampler}
            memories = self._memory_lengths(inst, lengths)
            if memories:
                options["memory_lengths"] = memories
            if not own and not bound:
                options["batch"] = batch
            try:
                out = self.net(inst.name)(
                    **own, **bound, lengths=lengths.get(inst.name), steps=steps.get(inst.name), **options
                )
            except ValueError as err:
                raise ValueError(f"instance `{inst.name}` ({inst.network.name}): {err}") from None
            values[inst.name] = out
            fed.update(out.fed)
        return values, fed

    @staticmethod
    def _memory_lengths(inst: Instance, lengths: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each memory input's lengths: those of the instance whose every step it holds."""
        memories = {n.name for n in inst.network.inputs if n.input_kind == "memory"}
        return {
            name: lengths[src] for name, src, _ in inst.bindings if name in memories and lengths.get(src) is not None
        }

    def _check_call(self, inputs: dict[str, Any], lengths: Any, steps: Any, allowed: set[str] | None = None) -> None:
        names = {n.name for _, n in self.model.inputs} if allowed is None else allowed
        for name in inputs:
            if name not in names:
                hint = did_you_mean(name, names)
                raise ValueError(
                    f"unknown input `{name}`; model `{self.model.name}` takes: "
                    f"{', '.join(sorted(names))}" + (f" ({hint})" if hint else "")
                )
        instances = [i.name for i in self.model.instances]
        for what, given in (("lengths", lengths), ("steps", steps)):
            if given is None:
                continue
            if not isinstance(given, Mapping):
                raise ValueError(
                    f"{what}: a model's instances each have their own time axis: give a dict by "
                    f"instance name ({', '.join(instances)}), got {type(given).__name__}"
                )
            for key in given:
                if key not in instances:
                    raise ValueError(f"{what}: no instance `{key}`; the instances are: {', '.join(instances)}")

    def extra_repr(self) -> str:
        ins = ", ".join(f"{n.name}: {n.input_kind} {n.size}" for _, n in self.model.inputs)
        outs = ", ".join(o.name for _, o in self.model.outputs)
        return f"model={self.model.name}, inputs=({ins}), outputs=({outs})"
