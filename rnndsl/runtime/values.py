"""Values: what a call of a compiled network gives back (`Outputs`, its `State`), and a token input's start.

`Outputs` is registered as a torch pytree node, so DistributedDataParallel and torch.export see into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rnndsl.lang.ir import Node

__all__ = ["Outputs", "State", "token_start"]


class State(dict):
    """What delayed references need to continue a sequence: node -> (batch, k, size), oldest first."""

    def __init__(self, values: Mapping[str, torch.Tensor], signature: str) -> None:
        super().__init__(values)
        self.signature = signature

    def detach(self) -> State:
        """The same state cut from the graph (truncated backpropagation through time)."""
        return State({k: v.detach() for k, v in self.items()}, self.signature)


class Outputs(dict[str, torch.Tensor]):
    """The outputs of one call, a dict: `out["h"]`, or `out.h` where the name is no dict method;
    `out.state` to carry into the next call. Being a dict, it is seen by DistributedDataParallel."""

    def __init__(
        self,
        values: dict[str, torch.Tensor],
        state: State | None,
        fed: dict[str, torch.Tensor] | None = None,
        attention: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(values)
        self.state = state
        self.fed = fed or {}  # what each self-fed input that ran free was fed: (B, T) ids or (B, T, S)
        self.attention = attention or {}  # `c = attend(...)`: its weights, (B, T, memory positions), no gradient

    def __getattr__(self, name: str) -> torch.Tensor:
        if name in self:
            return self[name]
        raise AttributeError(f"no output `{name}`; outputs are: {', '.join(self)}")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.items())
        return f"Outputs({shapes})"


def _register_outputs_with_pytree() -> None:
    """Let torch's pytree see into `Outputs` (a dict subclass is a leaf to it otherwise): DDP finds the output
    tensors through it, and with `static_graph=True` it would otherwise never average the gradients."""
    from torch.utils import _pytree

    Context = tuple[list[str], list[str] | None, str, list[str], list[str]]  # noqa: N806 (a type alias)

    def flatten(out: Outputs) -> tuple[list[torch.Tensor], Context]:
        state = out.state
        leaves = [
            *out.values(),
            *(state.values() if state is not None else ()),
            *out.fed.values(),
            *out.attention.values(),
        ]
        return leaves, (
            list(out),
            None if state is None else list(state),
            getattr(state, "signature", ""),
            list(out.fed),
            list(out.attention),
        )

    def unflatten(leaves: Any, context: Context) -> Outputs:
        keys, state_keys, signature, fed_keys, attention_keys = context
        it = iter(leaves)
        values = {k: next(it) for k in keys}
        state = None if state_keys is None else State({k: next(it) for k in state_keys}, signature)
        fed = {k: next(it) for k in fed_keys}
        return Outputs(values, state, fed, {k: next(it) for k in attention_keys})

    _pytree.register_pytree_node(Outputs, flatten, unflatten, serialized_type_name="rnndsl.Outputs")


_register_outputs_with_pytree()


def token_start(node: Node) -> int:
    """The id a token input reads before the first step (and a self-fed one starts from): its
    `init NAME = ID`, or -1, "no token" (a zero vector)."""
    return node.token_start
