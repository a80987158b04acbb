"""Feed: takes what a caller gives of a self-fed input, gives what the generated code feeds at each step.

A self-fed input (`input w: tokens(N) = sample(softmax(y[t-1]))`) runs free when the caller does not
give it, or partly free: a prompt gives its first steps, scheduled sampling gives each step with some
probability. `Feed` holds, for each free input, the given values and a keep mask (True: take the given
value), draws samples with the call's `Sampler` (temperature, top-k, greedy, a torch.Generator), and
records what was fed so the caller gets it back (`out.fed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Feed", "Sampler", "refuse_undrawable"]

ALL_FREE, ALL_GIVEN, MIXED = 0, 1, 2


@dataclass(frozen=True)
class Sampler:
    """How `sample(...)` picks: `greedy` takes the most likely token; otherwise draws from the
    distribution sharpened by `temperature` (< 1) or flattened (> 1), among the `top_k` most likely
    (0: all), with `generator` (None: torch's global generator)."""

    temperature: float = 1.0
    top_k: int = 0
    greedy: bool = False
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        number = isinstance(self.temperature, (int, float)) and not isinstance(self.temperature, bool)
        if not number or not self.temperature > 0 or self.temperature == float("inf"):
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a whole number >= 0 (0: every token), got {self.top_k!r}")
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(self.generator).__name__}")

    def from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Token ids (...,) drawn from scores (..., N)."""
        if self.greedy:
            return logits.argmax(-1)
        logits = logits.detach() / self.temperature
        if self.top_k and self.top_k < logits.shape[-1]:
            low = logits.topk(self.top_k, -1).values[..., -1:]
            logits = logits.masked_fill(logits < low, float("-inf"))
        probs = torch.softmax(logits.float(), -1)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=self.generator).view(probs.shape[:-1])

    def from_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Token ids (...,) drawn from probabilities (..., N) (any non-negative weights)."""
        if self.greedy:
            return probs.argmax(-1)
        return self.from_logits(torch.log(probs.detach().clamp(min=0)))


@dataclass
class Feed:
    """The free self-fed inputs of one call: `given[name]` (B, T) ids or (B, T, S) vectors, with
    `keep[name]` (B, T) bool where the given value is used; None: every step is fed back."""

    given: dict[str, torch.Tensor | None]
    keep: dict[str, torch.Tensor | None]
    sampler: Sampler = Sampler()
    fed: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: list[torch.Tensor] | None = None  # when a list: each draw's log-probabilities (B, N), in order

    def plan(self, name: str, steps: int) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None], list[int]]:
        """Per step: the given value, the keep mask (None when all or none are kept) and the mode."""
        given, keep = self.given[name], self.keep[name]
        if given is None or keep is None:
            return [None] * steps, [None] * steps, [ALL_FREE] * steps
        host = keep.cpu()
        every, some = host.all(0).tolist(), host.any(0).tolist()
        modes = [ALL_GIVEN if a else MIXED if s else ALL_FREE for a, s in zip(every, some, strict=True)]
        masks = [m if mode == MIXED else None for m, mode in zip(keep.unbind(1), modes, strict=True)]
        return list(given.unbind(1)), masks, modes

    @staticmethod
    def pick(given: torch.Tensor | None, keep: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
        """The given value where `keep`, the fed-back one elsewhere."""
        if given is None or keep is None:
            return value
        if value.dim() > keep.dim():
            keep = keep.unsqueeze(-1)
        return torch.where(keep, given, value)

    def whole(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """`pick` over every step at once (a self-fed input outside any loop)."""
        return self.pick(self.given[name], self.keep[name], value)

    def sample(self, probs: torch.Tensor, name: str = "", step: int | None = None) -> torch.Tensor:
        """A draw from `probs`, the value of `sample(...)` feeding input `name` at `step` (None: every step)."""
        refuse_undrawable(probs, name, step, logits=False)
        if self.scores is not None:  # weights, as the draw takes them: normalised to probabilities first
            weights = probs.detach()
            self.scores.append(torch.log(weights / weights.sum(-1, keepdim=True)))
        return self.sampler.from_probs(probs)

    def sample_logits(self, logits: torch.Tensor, name: str = "", step: int | None = None) -> torch.Tensor:
        """A draw from `softmax(logits)`, the value of `sample(softmax(...))` feeding `name` at `step`."""
        refuse_undrawable(logits, name, step, logits=True)
        if self.scores is not None:
            self.scores.append(torch.log_softmax(logits.detach(), -1))
        return self.sampler.from_logits(logits)

    def record(self, name: str, value: torch.Tensor) -> None:
        self.fed[name] = value


def refuse_undrawable(values: torch.Tensor, name: str, step: int | None, logits: bool) -> None:
    """A ValueError naming the input, the step and what came, where no token can be drawn from `values`:
    NaN, +inf, (for weights) a negative entry or a row of zeros, (for scores) a row of -inf. torch's own
    message ("probability tensor contains either inf, nan or element < 0") names none of them, and on a
    GPU a bad draw is a device-side assert that ends the process. The checker only lets through
    arguments that are positive by construction, so this catches what overflows or turns NaN at run time."""
    v = values.detach()
    bad_entry = v.isnan() | (v == float("inf")) | (torch.zeros_like(v, dtype=torch.bool) if logits else v < 0)
    empty = (v == float("-inf")).all(-1) if logits else (v == 0).all(-1)
    bad = bad_entry.any(-1) | empty
    if not bool(bad.any()):  # one host sync per draw: the price of this message over a device-side assert
        return
    where = [int(i) for i in bad.nonzero()[0]]  # the first bad row: (sequence,) or (sequence, step)
    row = v[tuple(where)]
    if step is None and len(where) > 1:
        step = where[1]
    what = (
        "NaN"
        if bool(row.isnan().any())
        else "+inf"
        if bool((row == float("inf")).any())
        else "a negative weight"
        if not logits and bool((row < 0).any())
        else "only -inf scores"
        if logits
        else "only zeros"
    )
    shown = ", ".join(f"{x:.4g}" for x in row[:6].tolist()) + (", ..." if row.numel() > 6 else "")
    at = f" at step {step}" if step is not None else ""
    fix = "" if logits else "; `sample(softmax(scores))` neither overflows nor underflows"
    raise ValueError(
        f"self-fed input `{name}`{at}: `sample` cannot draw a token from {what} (sequence {where[0]} "
        f"got [{shown}]){fix}; check_finite=True names the node where NaN or inf first appears"
    )
