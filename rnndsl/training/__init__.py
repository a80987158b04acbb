"""Training: takes a spec and a task, gives a trained network, checkpoints, results and plots.

    loop        spec, task, TrainConfig -> Result     (Adam, clipping, seeds, evaluation, resume)
    checkpoint  a run's state           -> file       (atomic; refused by another spec, saying what differs)
    distributed torchrun's environment  -> a World    (the process group, DDP, each rank's slice of a batch)
    progress    steps and losses        -> a bar      (tqdm on a terminal; evaluation lines otherwise)
    events      steps and metrics       -> TensorBoard event files (--tensorboard)
    report      results                 -> results.json, curves.png, a markdown table (over seeds: mean ± sd)
    seeds       specs, a task, N seeds  -> N runs each (--seeds N, --jobs J: spawned processes)
    stats       values over seeds       -> means, 95% intervals, Welch's t-test (scipy)

>>> from rnndsl.tasks import Digits
>>> result = train("examples/tasks/digits_gru.rnn", Digits(), TrainConfig(steps=300), out="runs/gru")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnndsl._lazy import lazy_exports

if TYPE_CHECKING:
    from rnndsl.training.checkpoint import CheckpointError, atomic_write, load_model, read_checkpoint, save_checkpoint
    from rnndsl.training.config import TrainConfig
    from rnndsl.training.loop import TrainingError, evaluate, seed_everything, train
    from rnndsl.training.report import markdown_table, plot_curves, write_run
    from rnndsl.training.result import Result

__all__ = [
    "CheckpointError",
    "Result",
    "TrainConfig",
    "TrainingError",
    "atomic_write",
    "evaluate",
    "load_model",
    "markdown_table",
    "plot_curves",
    "read_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "train",
    "write_run",
]

# the names need torch: imported on first use, so the command line's parser needs none
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ["CheckpointError", "atomic_write", "load_model", "read_checkpoint", "save_checkpoint"],
            "rnndsl.training.checkpoint",
        ),
        "TrainConfig": "rnndsl.training.config",
        "Result": "rnndsl.training.result",
        **dict.fromkeys(["TrainingError", "evaluate", "seed_everything", "train"], "rnndsl.training.loop"),
        **dict.fromkeys(["markdown_table", "plot_curves", "write_run"], "rnndsl.training.report"),
    },
)
