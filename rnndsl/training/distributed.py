"""Data parallelism under torchrun: takes the environment torchrun sets, gives this process's `World`.

`torchrun --nproc-per-node N -m rnndsl train ...` starts N processes with `RANK`, `LOCAL_RANK`,
`WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` set. Each builds the same network from the same seed and
the same global batch at each step (a batch depends only on the task's options and the step); each
runs the forward and backward on its own contiguous slice of that batch, under DistributedDataParallel,
which averages the gradients. The slices' losses are weighted so that the average is the gradient of the
global batch's loss, and the loss recorded is the global batch's: the run takes the steps one process
would take on the whole batch, up to rounding.

Weighting assumes what every task's loss is: a mean over the target positions not marked `IGNORE`
(padding). Evaluation runs on every rank outside DDP (no collective, so no rank waits on another); only
rank 0 prints and writes files. Without `WORLD_SIZE` > 1 everything here does nothing.

>>> world = World.from_environment({})
>>> world.size, world.main, world.part(32)
(1, True, slice(0, 32, None))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from rnndsl.tasks import Batch, Binding
from rnndsl.tasks.base import IGNORE

__all__ = ["ReadOne", "World"]


@dataclass(frozen=True)
class World:
    """This process's place among the `size` processes training one network; `size == 1`: alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in `environ` (default: os.environ), or the process group a caller
        has already set up."""
        import torch.distributed as dist

        env = os.environ if environ is None else environ
        local = int(env.get("LOCAL_RANK", "0"))
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), local)
        size = int(env.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        rank = int(env.get("RANK", "0"))
        if not 0 <= rank < size:
            raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={size})")
        return cls(rank, size, local)

    @property
    def main(self) -> bool:
        """Whether this process prints and writes files (rank 0)."""
        return self.rank == 0

    def check_batch(self, batch: int) -> None:
        if batch % self.size:
            lower, upper = batch // self.size * self.size, (batch // self.size + 1) * self.size
            some = f"{lower} or {upper}" if lower else str(upper)
            raise ValueError(
                f"the global batch ({batch} sequences, --batch) does not split evenly over the "
                f"{self.size} processes (WORLD_SIZE); give a multiple of {self.size}, such as {some}"
            )

    def part(self, size: int) -> slice:
        """This rank's contiguous share of a global batch of `size` sequences."""
        return slice(size * self.rank // self.size, size * (self.rank + 1) // self.size)

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[World]:
        """The process group for the run (gloo on CPU, nccl on CUDA), destroyed at the end; one already set up
        by the caller is used and left alone."""
        import torch.distributed as dist

        if self.size == 1:
            yield self
            return
        if not dist.is_available():
            raise RuntimeError(
                f"WORLD_SIZE={self.size} asks for {self.size} processes, but this torch has no torch.distributed"
            )
        owned = not dist.is_initialized()
        if owned:
            if device.type == "cuda":
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            yield self
        finally:
            if owned:
                dist.destroy_process_group()

    def wrap(self, net: nn.Module, binding: Binding) -> nn.Module:
        """The module to train through, called on a `Batch`: `net` run by the task's `binding`, which gives the
        output the task reads, inside DDP when there are several processes.

        `static_graph`: the parameters that reach the task's output are the same at every step, and DDP learns
        them on the first; a network with another output that the task does not read would otherwise stall
        DDP, whose default expects a gradient for every parameter."""
        model = ReadOne(net, binding)
        if self.size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, static_graph=True)

    def share(self, batch: Batch) -> tuple[Batch, float]:
        """This rank's slice of the global batch, and the factor that makes DDP's average of the slices'
        gradients the global batch's gradient: `size` times the slice's share of the counted targets."""
        if self.size == 1:
            return batch, 1.0
        part = self.part(len(batch))
        mine, counted = batch.slice(part.start, part.stop), _counted(batch)
        return mine, self.size * _counted(mine) / counted if counted else 1.0

    def global_loss(self, loss: torch.Tensor, factor: float) -> float:
        """The global batch's loss from this slice's (the weighted mean over the ranks), the same on every rank."""
        if self.size == 1:
            return float(loss.detach())
        import torch.distributed as dist

        total = loss.detach().double().reshape(1) * (factor / self.size)
        dist.all_reduce(total)
        return float(total)


class ReadOne(nn.Module):
    """`binding.run(net, batch)`: the output the task reads, one plain tensor. DDP finds a forward's output
    tensors with torch's pytree, which takes `Outputs` (a dict subclass it has no entry for) for a leaf holding
    none: with `static_graph` the gradients are then never averaged, silently (found while building this)."""

    def __init__(self, net: nn.Module, binding: Binding) -> None:
        super().__init__()
        self.net, self.binding = net, binding

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.binding.run(self.net, batch)


def _counted(batch: Batch) -> int:
    """The target positions a task's mean loss counts: all but padding."""
    return int((batch.y != IGNORE).sum())
