"""Guard: takes a network's values as it computes them, gives the node and step where NaN or Inf begins.

`net(x, check_finite=True)` runs a variant of the generated code in which every node's value passes
through a `Watch`: forward, the earliest step (then the earliest node in execution order) holding a
non-finite value inside its sequence is reported; backward, a hook on every value reports the first
non-finite gradient autograd produces. Steps past a sequence's length are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NonFiniteError", "Watch", "check_inputs"]


class NonFiniteError(FloatingPointError, ValueError):
    """A NaN or Inf appeared: `.node`, `.step` (None for a static node) and `.phase` ("input", "value" or
    "gradient") say where. One class for all three, so `except NonFiniteError` catches a bad input too; it
    is also a ValueError, like every other refused input."""

    def __init__(self, node: str, step: int | None, phase: str, kind: str, message: str | None = None) -> None:
        where = "" if step is None else f" at step {step}"
        super().__init__(message or f"{kind} first appears in the {phase} of node `{node}`{where}")
        self.node, self.step, self.phase = node, step, phase


def _kind(x: torch.Tensor) -> str:
    return "NaN" if bool(torch.isnan(x).any()) else "Inf"


def check_inputs(inputs: dict[str, torch.Tensor], lengths: torch.Tensor | None) -> None:
    """Refuse NaN or Inf in float inputs, naming the input and the first (sequence, step) holding one."""
    for name, x in inputs.items():
        if not x.dtype.is_floating_point:
            continue
        bad = ~torch.isfinite(x)
        if x.dim() == 3:
            bad = bad.any(2) & _valid(lengths, x.shape[0], x.shape[1], x.device)
        if bool(bad.any()):
            b, *rest = (int(i) for i in bad.nonzero()[0])
            at = f"sequence {b}, step {rest[0]}" if x.dim() == 3 else f"sequence {b}"
            raise NonFiniteError(
                name,
                rest[0] if rest else None,
                "input",
                _kind(x[b]),
                f"input `{name}`: expected finite values, got {_kind(x[b])} at {at}",
            )


def _valid(lengths: torch.Tensor | None, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device).unsqueeze(0) < lengths.unsqueeze(1)


class Watch:
    """Called by guarded generated code with each node's value: `watch(value, node, step or None)`."""

    def __init__(self, order: Sequence[str], lengths: torch.Tensor | None) -> None:
        self.order = {name: i for i, name in enumerate(order)}
        self.lengths = lengths
        self.first: tuple[int, int, str, str] | None = None  # (step, node order, node, kind)
        self.seen = 0  # execution order, to break ties between nodes of the same step

    def __call__(self, value: torch.Tensor, node: str, step: int | None) -> None:
        self.seen += 1
        bad = self._bad(value, step)
        if bad is not None:
            at = -1 if bad < 0 else bad
            if self.first is None or (at, self.seen) < self.first[:2]:
                self.first = (at, self.seen, node, _kind(value))
        if value.requires_grad:
            value.register_hook(lambda g: self._gradient(g, node, step))

    def _bad(self, value: torch.Tensor, step: int | None) -> int | None:
        """The first step inside the sequences where `value` is not finite (-1: static), or None."""
        bad = ~torch.isfinite(value)
        if step is not None:  # one step of a loop: (B, S)
            rows = bad.flatten(1).any(1) & _valid(self.lengths, value.shape[0], step + 1, value.device)[:, step]
            return step if bool(rows.any()) else None
        if value.dim() == 3:  # all steps: (B, T, S)
            steps = (bad.any(2) & _valid(self.lengths, value.shape[0], value.shape[1], value.device)).any(0)
            return int(steps.nonzero()[0]) if bool(steps.any()) else None
        return -1 if bool(bad.any()) else None

    def _gradient(self, grad: torch.Tensor, node: str, step: int | None) -> None:
        if not bool(torch.isfinite(grad).all()):
            at = step
            if step is None and grad.dim() == 3:
                at = int((~torch.isfinite(grad)).any(2).any(0).nonzero()[-1])  # backward meets late steps first
            raise NonFiniteError(node, at, "gradient", _kind(grad))

    def raise_first(self) -> None:
        if self.first is not None:
            step, _, node, kind = self.first
            raise NonFiniteError(node, None if step < 0 else step, "value", kind)
