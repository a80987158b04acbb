"""Several runs of one command: takes specs, a task and a `TrainConfig`, gives each spec's runs over seeds
`seed, seed+1, ...`, trained one after another or in J processes at once, as their results.json records.

A run depends only on its spec, its task's options and its `TrainConfig` (the parameter seed among them),
never on the process it ran in or on the runs beside it: the same command gives the same numbers, with
one job or many, to float32 rounding (a worker process rarely rounds a weight gradient's matrix product
differently, ~1e-8 relative: 1 in 60 runs of tests/test_seeds.py's command). Worker processes are started
with `spawn` (no state copied from the parent, so no torch thread pool or RNG state carried over) and
rebuild the task from its configuration.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from rnndsl.tasks import make_task
from rnndsl.training.config import TrainConfig
from rnndsl.training.loop import train

__all__ = ["Job", "run_all", "run_one", "seeds"]


@dataclass(frozen=True)
class Job:
    """One run: what `train` needs, in plain values that pickle to a worker process."""

    spec: str
    network: str | None
    task: dict[str, Any]
    config: TrainConfig
    out: str
    threads: int = 1
    tensorboard: bool = False


def seeds(config: TrainConfig, count: int) -> list[int]:
    """The parameter seeds of `count` runs: the config's seed and the ones after it.

    >>> seeds(TrainConfig(seed=3), 4)
    [3, 4, 5, 6]
    """
    return [config.seed + i for i in range(count)]


def with_seed(config: TrainConfig, seed: int) -> TrainConfig:
    return dataclasses.replace(config, seed=seed)


def run_one(job: Job) -> dict[str, Any]:
    """Train one job in this process; its results.json record (the network stays in the run's checkpoint)."""
    torch.set_num_threads(job.threads)
    result = train(
        Path(job.spec),
        make_task(**job.task),
        job.config,
        network=job.network,
        out=job.out,
        quiet=True,
        tensorboard=job.tensorboard,
    )
    return {**result.to_json(), "out": job.out}


J = TypeVar("J")
R = TypeVar("R")


def run_all(
    jobs: Sequence[J],
    workers: int,
    done: Callable[[int, R], None],
    work: Callable[[J], R] = run_one,  # type: ignore[assignment]
) -> list[R]:
    """`work(job)` of every job (a run's record by default), in the jobs' order; `done(i, result)` as each one
    finishes. With `workers` > 1, that many processes work at once (`work` a module-level function, the jobs
    plain values); the first failure cancels the jobs not yet started and is raised."""
    if workers <= 1 or len(jobs) <= 1:
        records = []
        for i, job in enumerate(jobs):
            records.append(work(job))
            done(i, records[-1])
        return records
    found: dict[int, R] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        pending: dict[Future[R], int] = {pool.submit(work, job): i for i, job in enumerate(jobs)}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = pending.pop(future)
                    found[i] = future.result()
                    done(i, found[i])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [found[i] for i in range(len(jobs))]
