"""Runs: takes a spec, a built-in task and a small budget, gives a short training run on a thread of its
own whose steps, validation and samples come out as events while it goes, and that stops when asked.

The playground trains at most one run at a time (`Slot`), for at most `MAX_STEPS` steps of at most
`MAX_BATCH` sequences. The loop is written here rather than calling `training.train`: a run must report
every step as it is taken and stop between two steps, and it writes nothing to disk; it uses the same
pieces (`compile_spec`, the task's batches, loss and metrics, Adam with gradient clipping).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rnndsl.lang.ir import Network

__all__ = ["MAX_BATCH", "MAX_STEPS", "TASKS", "Options", "Slot", "train"]

MAX_STEPS = 500
MAX_BATCH = 64
TASKS = ("digits", "names")  # quick to load and to learn something in a few hundred steps on a CPU
SAMPLES = 6  # names generated at the end of a run on `names` by a self-fed network

Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Options:
    """What one run trains: the spec's text, which network of it (None: the file's one), the task and its
    budget."""

    spec: str
    network: str | None = None
    task: str = "digits"
    steps: int = 200
    batch: int = 32
    lr: float = 3e-3

    def problems(self) -> list[str]:
        """What is out of bounds, each said as the fix."""
        out = []
        if self.task not in TASKS:
            out.append(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if not 1 <= self.steps <= MAX_STEPS:
            out.append(f"steps must be 1 to {MAX_STEPS}, not {self.steps}")
        if not 1 <= self.batch <= MAX_BATCH:
            out.append(f"batch must be 1 to {MAX_BATCH}, not {self.batch}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            out.append(f"lr must be in (0, 1], not {self.lr}")
        return out


class Slot:
    """The one run the server may have going: `take` gives a stop event, or None while another runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._free = threading.Event()
        self._free.set()

    def take(self, wait: float = 0.0) -> threading.Event | None:
        """A stop event for a new run, waiting up to `wait` seconds for the slot: a page that stops its run
        and starts another at once is here before the server has seen the first request close."""
        if not self._free.wait(wait):
            return None
        with self._lock:
            if self._stop is not None:  # another request took it first
                return None
            self._stop = threading.Event()
            self._free.clear()
            return self._stop

    def give_back(self) -> None:
        with self._lock:
            self._stop = None
            self._free.set()


def _task(name: str, net: Network) -> Any:
    """The task; `names` conditions on the sex when the network has a static input of size 2 for it."""
    from rnndsl.tasks import make_task

    if name == "names" and any(n.input_kind == "static" and n.size == 2 for n in net.inputs):
        return make_task("names", by_sex=1)
    return make_task(name)


def train(options: Options, stop: threading.Event, emit: Emit) -> None:
    """Train as `options` says, calling `emit(kind, data)` for each event: "start", "step" (step, loss),
    "validation" (metrics), "samples" (lines), then "done", "stopped" or "error" (message)."""
    try:
        _train(options, stop, emit)
    except Exception as err:  # the boundary of a run: any mistake becomes one message on the page
        emit("error", {"message": str(err) or type(err).__name__})


def _train(options: Options, stop: threading.Event, emit: Emit) -> None:
    import torch

    from rnndsl.runtime.network import CompiledNetwork
    from rnndsl.training.loop import compile_spec, evaluate, seed_everything

    torch.set_num_threads(1)  # a page's run shares the machine with everything else on it
    seed_everything(0)
    net = compile_spec(options.spec, "<playground>", options.network)
    if not isinstance(net, CompiledNetwork):
        raise ValueError("the playground trains one network; pick a network, not a model")
    task = _task(options.task, net.ir)
    binding = task.bind(net.ir)
    emit("start", {"network": net.ir.name, "parameters": net.ir.parameter_count(), "task": task.config()})
    optimizer = torch.optim.Adam(net.parameters(), lr=options.lr)
    began = time.perf_counter()
    for step in range(options.steps):
        if stop.is_set():
            emit("stopped", {"step": step})
            return
        net.train()
        batch = task.train_batch(step, options.batch)
        loss = task.loss(binding.run(net, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        value = loss.item()  # float(loss) warns of a tensor that requires grad
        if not math.isfinite(value):
            raise ValueError(f"the loss became {value} at step {step + 1}: try a smaller learning rate")
        emit("step", {"step": step + 1, "loss": value, "seconds": round(time.perf_counter() - began, 3)})
    metrics = evaluate(net, task, binding, task.split("validation"), 500)
    emit("validation", {"metrics": metrics, "primary": task.primary})
    if net.ir.self_fed:
        with torch.no_grad():
            lines = task.show(net.eval(), [], SAMPLES, {"generator": torch.Generator().manual_seed(0)})
        emit("samples", {"lines": lines})
    emit("done", {"steps": options.steps, "seconds": round(time.perf_counter() - began, 3)})
