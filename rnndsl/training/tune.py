"""Hyperparameter search: takes a spec, a task, a `TrainConfig` and the options to tune, gives an Optuna study
whose trials train the spec, and the best setting it found.

Each trial trains the spec with the options the sampler proposes (TPE, Optuna's tree-structured Parzen
estimator) and reports the validation's primary metric at each evaluation; the median pruner stops a trial
whose metric is worse than the median of earlier trials at the same step. The value of a trial is the
validation metric at its end: the test split plays no part in the choice. A trial whose loss diverges
fails and the search goes on.

The study lives in a database (SQLite in the run folder by default, or any URL Optuna's RDB storage
takes), so several processes, on one machine or several, can search one study at once; each runs its own
`trials`. A study remembers the spec, task and training options it searches for and refuses others.
Optuna comes with `pip install 'rnndsl[experiments]'`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnndsl.tasks import Task
from rnndsl.training.checkpoint import sha256
from rnndsl.training.config import LR_DECAYS, TrainConfig
from rnndsl.training.loop import TrainingError, train

__all__ = [
    "SPACE",
    "Search",
    "Trial",
    "best_config",
    "finished",
    "parse_params",
    "report",
    "require_optuna",
    "search",
    "storage_url",
]

# option -> (what it searches, its suggestion); ranges wide enough for the small recurrent models rnndsl trains
SPACE: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "lr": ("log-uniform in [1e-4, 3e-2]", lambda t: t.suggest_float("lr", 1e-4, 3e-2, log=True)),
    "clip": ("log-uniform in [0.1, 10]", lambda t: t.suggest_float("clip", 0.1, 10.0, log=True)),
    "batch": ("one of 16, 32, 64, 128", lambda t: t.suggest_categorical("batch", [16, 32, 64, 128])),
    "lr_decay": (f"one of {', '.join(LR_DECAYS)}", lambda t: t.suggest_categorical("lr_decay", list(LR_DECAYS))),
}


def require_optuna() -> Any:
    """optuna, or an ImportError naming the extra to install (checked before any trial starts)."""
    try:
        import optuna
    except ImportError as err:
        raise ImportError("tuning searches with Optuna: pip install 'rnndsl[experiments]'") from err
    return optuna


def parse_params(text: str) -> tuple[str, ...]:
    """`"lr,clip"` -> ("lr", "clip"), each one of `SPACE`.

    >>> parse_params("lr, clip")
    ('lr', 'clip')
    """
    names = tuple(dict.fromkeys(p.strip().replace("-", "_") for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in SPACE]
    if unknown or not names:
        raise ValueError(
            "--tune takes options to search, comma-separated, among: "
            + "; ".join(f"{k} ({what})" for k, (what, _) in SPACE.items())
            + f"; got `{text}`"
        )
    return names


def storage_url(folder: Path) -> str:
    """The default storage: study.db in the run folder (an absolute path, so every process finds it)."""
    return f"sqlite:///{(folder / 'study.db').resolve()}"


@dataclass(frozen=True)
class Search:
    """What one process searches: the spec (a path), its network, the task, the base training options, the
        options to tune, the storage URL and the study's name, the trials to run and the sampler's seed (plus the
    trials the study held when this process opened it)."""

    spec: str
    network: str | None
    task: Task
    config: TrainConfig
    params: tuple[str, ...]
    storage: str
    study: str
    trials: int
    seed: int = 0


@dataclass(frozen=True)
class Trial:
    """A finished trial: its number, state (COMPLETE, PRUNED, FAIL), options, value and the last step it
    reported (for a pruned one, where it stopped)."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    step: int | None
    worker: str


def search(s: Search, text: str, on_trial: Callable[[Trial], None] | None = None) -> Any:
    """Run `s.trials` trials on the study (made or loaded); give the `optuna.Study`. `text` is the spec's
    text, whose hash the study records."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # rnndsl prints a line per trial instead
    study = _open(optuna, s)
    _claim(study, s, text)
    primary, worker = s.task.primary, f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: Any) -> float:
        trial.set_user_attr("worker", worker)
        config = dataclasses.replace(s.config, **{name: SPACE[name][1](trial) for name in s.params})

        def report(step: int, metrics: dict[str, float]) -> None:
            trial.report(metrics[primary], step)
            if step < config.steps and trial.should_prune():  # at the last step there is nothing left to save
                raise optuna.TrialPruned(f"pruned at step {step}")

        result = train(Path(s.spec), s.task, config, network=s.network, quiet=True, on_evaluation=report)
        value = result.validation[primary]
        if not math.isfinite(value):
            raise TrainingError(f"the validation {primary} is {value}")
        return float(value)

    def done(study: Any, frozen: Any) -> None:
        if on_trial is not None:
            on_trial(finished(frozen))

    study.optimize(objective, n_trials=s.trials, catch=(TrainingError,), callbacks=[done])
    return study


def finished(frozen: Any) -> Trial:
    steps = list(frozen.intermediate_values)
    return Trial(
        frozen.number,
        frozen.state.name,
        dict(frozen.params),
        frozen.value,
        max(steps) if steps else None,
        frozen.user_attrs.get("worker", ""),
    )


def _storage(optuna: Any, url: str) -> Any:
    """Optuna's RDB storage of `url`. Two processes that start on a new database both create its tables, and
    the slower one fails on the rows the other wrote; by then the tables exist, so it tries again."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    # SQLite: processes wait up to a minute for each other's writes instead of failing at once
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except SQLAlchemyError as err:
            if attempt == 4 or isinstance(err, ArgumentError):  # a URL no database answers: no use waiting
                said = str(err).splitlines()[0]
                raise ValueError(
                    f"--storage {url}: cannot open it as a study's database ({said}); expected a database URL "
                    "such as sqlite:///study.db, in a folder that exists"
                ) from None
            time.sleep(0.2 * (attempt + 1))
    return None


def _open(optuna: Any, s: Search) -> Any:
    storage = _storage(optuna, s.storage)
    study = optuna.create_study(
        storage=storage,
        study_name=s.study,
        direction="maximize" if s.task.higher_is_better else "minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        load_if_exists=True,
    )
    study.sampler = _trial_seeded(optuna, s.seed, startup_trials(s.trials))
    return study


def startup_trials(trials: int) -> int:
    """How many of a search's trials TPE draws at random before it models the results: half of them, 3 to 10
    (Optuna's default, 10, left a search of 12 trials or fewer almost all random)."""
    return min(10, max(3, trials // 2))


def _trial_seeded(optuna: Any, seed: int, startup: int) -> Any:
    """TPE seeded afresh for each trial by (seed, the trial's number). The storage numbers the trials of
    all processes as one sequence, so a search alone proposes the same options every time, and processes
    sharing a study never draw each other's proposals (with one seed per process, two that start together
    would propose the same options trial for trial). The random start-up trials are the same for every spec
    of a comparison: common random numbers, so no spec is luckier in its draws than another."""

    def tpe(seed: int) -> Any:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    class TrialSeeded(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = tpe(seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.inner = tpe((seed * 1_000_003 + trial.number) % 2**32)
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, space: Any) -> Any:
            return self.inner.sample_relative(study, trial, space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self.inner.sample_independent(study, trial, name, distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

    return TrialSeeded()


def _claim(study: Any, s: Search, text: str) -> None:
    """Record what the study searches for; refuse a study made for another spec, task or options."""
    base = {k: v for k, v in dataclasses.asdict(s.config).items() if k not in s.params}
    wanted = {"spec_sha256": sha256(text), "task": s.task.config(), "train": base, "tune": list(s.params)}
    held = study.user_attrs
    if not held:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    problems = [
        f"{key}: {held.get(key)} in the study, {value} here" for key, value in wanted.items() if held.get(key) != value
    ]
    if problems:
        raise ValueError(
            f"study `{s.study}` ({s.storage}) searches for another run, so its trials are not comparable:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\ngive another --study NAME or --out DIR"
        )


def best_config(study: Any, s: Search) -> tuple[TrainConfig, Trial]:
    """The base options with the best trial's; a ValueError when no trial has finished."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        states = ", ".join(f"{t.number}: {t.state.name.lower()}" for t in study.trials) or "none"
        raise ValueError(
            f"study `{s.study}` has no finished trial (trials {states}); give more --trials, or --steps for a "
            "trial to reach its end"
        )
    best = finished(study.best_trial)
    return dataclasses.replace(s.config, **best.params), best


def report(study: Any, s: Search) -> tuple[str, dict[str, Any]]:
    """tune.md's text (every trial of the study, best first) and best.json's contents."""
    config, best = best_config(study, s)
    primary, maximize = s.task.primary, s.task.higher_is_better
    trials = [finished(t) for t in study.trials if t.state.name != "RUNNING"]
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}  # best first: finished by value, then pruned, then failed
    trials.sort(key=lambda t: (order.get(t.state, 3), -(t.value or 0) if maximize else (t.value or 0), t.number))
    counts = {word: sum(t.state == state for t in trials) for state, word in _STATES.items()}
    rows = [["trial", "state", *s.params, f"validation {primary}", "last step", "worker"]]
    rows.append(["---"] * len(rows[0]))
    for t in trials:
        rows.append(
            [
                str(t.number),
                _STATES.get(t.state, t.state.lower()),
                *(_show(t.params.get(p)) for p in s.params),
                "-" if t.value is None else f"{t.value:.4f}",
                "-" if t.step is None else str(t.step),
                t.worker,
            ]
        )
    text = (
        f"# Study `{s.study}`: {', '.join(s.params)} of {s.spec} on {s.task.name}\n\n"
        f"Storage {s.storage}; Optuna's TPE sampler and median pruner; value: the validation {primary} at a "
        f"trial's end ({'higher' if maximize else 'lower'} is better). Trials: "
        + ", ".join(f"{n} {state}" for state, n in counts.items())
        + f". Best: trial {best.number}, {primary} {best.value:.4f}, "
        + ", ".join(f"{k}={_show(v)}" for k, v in best.params.items())
        + ".\n\n"
        + "\n".join("| " + " | ".join(r) + " |" for r in rows)
        + "\n"
    )
    summary = {
        "study": s.study,
        "storage": s.storage,
        "tuned": list(s.params),
        "primary_metric": primary,
        "direction": "maximize" if maximize else "minimize",
        "best": {"trial": best.number, "value": best.value, "params": best.params},
        "train": dataclasses.asdict(config),
        "trials": counts,
    }
    return text, summary


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
