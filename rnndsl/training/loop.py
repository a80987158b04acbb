"""The training loop: takes a spec, a task and a `TrainConfig`, gives a trained network and its `Result`.

Adam on the task's loss, gradient-norm clipping, every seed set (torch, numpy, python), periodic
evaluation on the validation split, a checkpoint at each evaluation, and the test split at the end.
A run resumed from a checkpoint takes the same steps as one never interrupted: the training batches
depend only on the task's options and the step, and the parameters, optimizer and RNG states are
restored exactly. Under torchrun (WORLD_SIZE > 1) the processes train one network data-parallel, each on
a slice of every batch (see `distributed`); rank 0 alone prints and writes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from rnndsl.frontend.load import read_spec
from rnndsl.frontend.parse import parse
from rnndsl.lang.errors import Source
from rnndsl.lang.ir import Network
from rnndsl.runtime.model import CompiledModel
from rnndsl.runtime.network import CompiledNetwork
from rnndsl.tasks import Batch, Binding, Task
from rnndsl.training.checkpoint import (
    CheckpointError,
    read_checkpoint,
    refusal,
    remove_partial_writes,
    restore_rng,
    save_checkpoint,
    spec_differences,
)
from rnndsl.training.config import TrainConfig
from rnndsl.training.distributed import World
from rnndsl.training.events import Events
from rnndsl.training.progress import Progress
from rnndsl.training.result import Result

Compiled = CompiledNetwork | CompiledModel  # what a spec compiles to: one network, or a model of several

__all__ = ["RESUME_MUST_MATCH", "Result", "TrainConfig", "TrainingError", "evaluate", "seed_everything", "train"]

# What a resumed run must share with its checkpoint for its steps to be the ones it would have taken.
RESUME_MUST_MATCH = ("batch", "lr", "clip", "seed", "lr_decay")


class TrainingError(ValueError):
    """A run that cannot go on: the loss became NaN or infinite, or a resume does not match its checkpoint."""


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (parameter init and dropout use torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    spec: str | Path,
    task: Task,
    config: TrainConfig | None = None,
    *,
    network: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = True,
    stream: TextIO | None = None,
    tensorboard: bool = False,
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None,
) -> Result:
    """Train a spec (a path or the text) on a task; with `out`, write checkpoint.pt there at each
    evaluation, and results.json and curves.png at the end. `resume` continues from a checkpoint.
    `tensorboard` also writes event files to `out`/tensorboard; `on_evaluation(step, metrics)` is called
    after each validation past step 0 (an Optuna trial reports there, and may stop the run by raising).

    >>> from rnndsl.tasks import Digits
    >>> result = train("examples/tasks/digits_gru.rnn", Digits(), TrainConfig(steps=20))  # doctest: +SKIP
    >>> result.test["accuracy"]  # doctest: +SKIP
    """
    config = config or TrainConfig()
    world = World.from_environment()
    world.check_batch(config.batch)
    text, name = read_spec(spec)
    saved = read_checkpoint(resume) if resume is not None else None
    if saved is not None:
        _check_resume(saved, task, config, str(resume))
    seed_everything(config.seed)  # the same on every rank: the same initial parameters and dropout stream
    net = compile_spec(text, name, network)
    with world.joined(net.like.device):
        mine = Path(out) if out is not None and world.main else None  # rank 0 alone writes
        run = _Run(net, task.bind(net.ir), task, config, text, mine, world)
        run.on_evaluation = on_evaluation
        if saved is not None:
            run.restore(saved, str(resume))
        progress = Progress(config.steps, run.step, stream or sys.stderr, quiet or not world.main)
        run.events = Events(mine, run.step) if tensorboard and mine is not None else None
        try:
            run.loop(progress)
            test = evaluate(net, task, run.binding, task.split("test"), config.eval_batch)
            if run.events is not None:
                run.events.metrics("test", run.step, test)
        finally:
            progress.close()
            if run.events is not None:
                run.events.close()
    result = Result(
        name,
        net.ir.name,
        task.config(),
        config,
        net.ir.parameter_count(),
        run.losses,
        run.evals,
        test,
        run.elapsed,
        task.primary,
        task.higher_is_better,
        net,
        run.out,
    )
    if run.out is not None:
        from rnndsl.training.report import write_run

        write_run(result, run.out)
    return result


def _check_resume(saved: dict[str, Any], task: Task, config: TrainConfig, path: str) -> None:
    if config.steps < saved["step"]:  # its results would record fewer steps than its losses hold
        raise TrainingError(
            f"cannot resume from {path} with steps={config.steps}: the checkpoint is at step {saved['step']}, and "
            f"steps is the run's total: give {saved['step']} or more (--steps)"
        )
    problems = []
    if _task_identity(saved["task"]) != _task_identity(task.config()):
        problems.append(f"task: {show_options(saved['task'])} in the checkpoint, {show_options(task.config())} here")
    for key in RESUME_MUST_MATCH:
        before = saved["train"].get(
            key, getattr(TrainConfig(), key)
        )  # a checkpoint from before the option: its default
        if before != getattr(config, key):
            problems.append(f"{key}: {before} in the checkpoint, {getattr(config, key)} here")
    if problems:
        raise TrainingError(
            f"cannot resume from {path}: the run would not continue the same way:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def _task_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run's task must share with its checkpoint's: every option, but a data file's path when
    its sha256 says which bytes it holds (a moved file is the same data)."""
    return {k: v for k, v in config.items() if not (k == "path" and config.get("sha256"))}


def show_options(options: dict[str, Any]) -> str:
    """A task's options as `name(key=value, ...)`."""
    return f"{options.get('name')}(" + ", ".join(f"{k}={v}" for k, v in options.items() if k != "name") + ")"


def compile_spec(text: str, name: str, network: str | None) -> Compiled:
    """The network or model `network` of a spec's text (the file's one model, else its one network)."""
    from rnndsl.frontend.check import resolve
    from rnndsl.runtime.model import CompiledModel

    found = resolve(parse(text, name), Source(text, name), network)
    return CompiledNetwork(found) if isinstance(found, Network) else CompiledModel(found)


def evaluate(net: Compiled, task: Task, binding: Binding, batch: Batch, chunk: int) -> dict[str, float]:
    """The task's metrics of the network on `batch`, run in eval mode in chunks of `chunk` sequences."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return task.evaluate(net, binding, batch, chunk)
    finally:
        net.train(was_training)


class _Run:
    """The state of one run between steps: what a checkpoint saves and a resume restores."""

    def __init__(
        self,
        net: Compiled,
        binding: Binding,
        task: Task,
        config: TrainConfig,
        spec: str,
        out: Path | None,
        world: World,
    ) -> None:
        self.net, self.binding, self.task, self.config, self.spec, self.out = net, binding, task, config, spec, out
        self.world, self.model = world, world.wrap(net, binding)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
        self.step = 0
        self.losses: list[float] = []
        self.evals: list[dict[str, float]] = []
        self.elapsed = 0.0
        self._validation: Batch | None = None
        self.events: Events | None = None
        self.on_evaluation: Callable[[int, dict[str, float]], None] | None = None

    def restore(self, saved: dict[str, Any], path: str) -> None:
        problems = spec_differences(saved, self.spec, self.net)
        if problems:
            raise CheckpointError(refusal(path, problems))
        self.net.load_state_dict(saved["parameters"])
        self.optimizer.load_state_dict(saved["optimizer"])
        restore_rng(saved["rng"])
        self.step = saved["step"]
        self.losses = list(saved["history"]["loss"])
        self.evals = [dict(e) for e in saved["history"]["validation"]]
        self.elapsed = saved["elapsed"]

    def loop(self, progress: Progress) -> None:
        if self.out is not None:  # what a process killed while writing left behind
            for name in ("checkpoint.pt", "results.json", "curves.png"):
                remove_partial_writes(self.out / name)
        if self.step == 0 and not self.evals:
            self.validate(progress, 0.0)
        began, before = time.perf_counter(), self.elapsed
        every = self.config.eval_every
        while self.step < self.config.steps:
            loss = self.train_step()
            self.elapsed = before + time.perf_counter() - began
            progress.update(self.step, loss)
            if self.events is not None:
                self.events.loss(self.step, loss)
            if (every and self.step % every == 0) or self.step == self.config.steps:
                self.validate(progress, self.elapsed)
                self.save()

    def train_step(self) -> float:
        self.model.train()
        # alone: the whole batch and factor 1; under torchrun: this rank's slice, weighted (see distributed)
        batch, factor = self.world.share(self.task.train_batch(self.step, self.config.batch))
        loss = self.task.loss(self.model(batch), batch)
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(self.step)
        (loss * factor).backward()
        if self.config.clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.clip)
        self.optimizer.step()
        self.step += 1
        value = self.world.global_loss(loss, factor)
        if not math.isfinite(value):
            raise TrainingError(
                f"the training loss became {value} at step {self.step}; try a smaller --lr or "
                f"--clip (now {self.config.lr} and {self.config.clip})"
            )
        self.losses.append(value)
        return value

    def validate(self, progress: Progress, elapsed: float) -> None:
        if self._validation is None:
            self._validation = self.task.split("validation")
        metrics = evaluate(self.net, self.task, self.binding, self._validation, self.config.eval_batch)
        self.evals.append({"step": self.step, "time": round(elapsed, 3), **metrics})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        progress.message(f"step {self.step}/{self.config.steps}  validation: {shown}")
        if self.events is not None:
            self.events.metrics("validation", self.step, metrics)
        if self.on_evaluation is not None and self.step > 0:
            self.on_evaluation(self.step, metrics)

    def save(self) -> None:
        if self.out is None:
            return
        save_checkpoint(
            self.out / "checkpoint.pt",
            spec=self.spec,
            net=self.net,
            optimizer=self.optimizer,
            step=self.step,
            task=self.task.config(),
            train=dataclasses.asdict(self.config),
            history={"loss": self.losses, "validation": self.evals},
            elapsed=self.elapsed,
        )
