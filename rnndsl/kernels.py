"""Kernels: the small tensor helpers that generated code calls, outside the per-step loop.

Takes tensors, gives tensors. Sequences are (batch, time, ...); a history is (batch, k, ...) oldest
first; token ids are int64 with -1 meaning "no token" (before the first step or past the last).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["past", "future", "valid_mask", "embed", "one_hot", "cat", "last", "last_k", "masked", "drop_mask"]


def past(seq: torch.Tensor, hist: torch.Tensor, d: int) -> torch.Tensor:
    """`seq[t-d]` for every t: the first d steps read the end of `hist`."""
    k, steps = hist.shape[1], seq.shape[1]
    return torch.cat([hist[:, k - d:], seq[:, : max(steps - d, 0)]], 1)[:, :steps]


def future(seq: torch.Tensor, bound: torch.Tensor, d: int, lengths: torch.Tensor | None) -> torch.Tensor:
    """`seq[t+d]` for every t: steps at or past each sequence's end read `bound`."""
    steps = seq.shape[1]
    fill = bound.unsqueeze(1).expand(-1, d, *bound.shape[1:]) if bound.dim() else seq.new_full(
        (seq.shape[0], d), int(bound))
    out = torch.cat([seq[:, d:], fill], 1)[:, :steps]
    if lengths is None:
        return out
    ok = torch.arange(steps, device=seq.device).unsqueeze(0) + d < lengths.unsqueeze(1)
    if out.dim() == 3:
        return torch.where(ok.unsqueeze(2), out, bound.unsqueeze(1))
    return torch.where(ok, out, torch.full_like(out, -1))


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(batch, time, 1) bool: True where a step lies inside its sequence."""
    return (torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)


def embed(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`weight @ one_hot(ids)` for a weight written (out, vocabulary); id -1 gives zeros."""
    table = weight.t()
    if bool((ids >= 0).all()):
        return F.embedding(ids, table)
    return F.embedding(ids.clamp(min=0), table) * (ids >= 0).unsqueeze(-1).to(weight.dtype)


def one_hot(ids: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """One-hot vectors of size n in the dtype of `like`; id -1 gives zeros."""
    return F.one_hot(ids.clamp(min=0), n).to(like.dtype) * (ids >= 0).unsqueeze(-1).to(like.dtype)


def cat(*xs: torch.Tensor) -> torch.Tensor:
    """Join vectors along the last axis, broadcasting the leading axes (a static value meets a sequence)."""
    lead = torch.broadcast_shapes(*(x.shape[:-1] for x in xs))
    return torch.cat([x.expand(*lead, x.shape[-1]) for x in xs], -1)


def last(seq: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence's value at its own last step."""
    if lengths is None:
        return seq[:, -1]
    index = (lengths - 1).view(-1, 1, *([1] * (seq.dim() - 2))).expand(-1, 1, *seq.shape[2:])
    return seq.gather(1, index).squeeze(1)


def last_k(full: torch.Tensor, lengths: torch.Tensor | None, k: int) -> torch.Tensor:
    """The last k values of each sequence, oldest first; `full` is the k-long history then the steps."""
    if lengths is None:
        return full[:, full.shape[1] - k:]
    # `full` holds k history values then the steps, so step L-k+j sits at index L+j.
    start = lengths
    index = start.view(-1, 1) + torch.arange(k, device=full.device).view(1, -1)
    index = index.view(*index.shape, *([1] * (full.dim() - 2))).expand(-1, -1, *full.shape[2:])
    return full.gather(1, index)


def masked(seq: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Zero the steps past each sequence's end."""
    return seq if valid is None else seq.masked_fill(~valid, 0)


def drop_mask(batch: int, size: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """One dropout mask per sequence, the same at every step (scaled by 1/(1-p))."""
    keep = torch.full((batch, size), 1 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1 - p)
