"""`rnndsl train`, `compare`, `tune` and `generate`: takes parsed arguments, gives trained runs (over seeds, in
parallel, at tuned options), searches, printed metrics,
generated samples (and a g2p model's attention heatmap) and exit codes.

Every user mistake (a missing file, a spec that does not fit the task, a checkpoint of another spec, a
bad option) prints one clear message and exits 1; Ctrl-C exits 130 and points at the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rnndsl.frontend.load import read_spec
from rnndsl.lang.errors import SpecError
from rnndsl.tasks import FILE_TASK, TASKS, Task, make_task, parse_options, task_class
from rnndsl.tasks.arrays import ArrayTask
from rnndsl.training.checkpoint import atomic_write, read_checkpoint
from rnndsl.training.config import TrainConfig
from rnndsl.training.distributed import World
from rnndsl.training.events import FOLDER, require_tensorboard
from rnndsl.training.loop import show_options, train
from rnndsl.training.progress import duration
from rnndsl.training.report import (
    Alignment,
    Group,
    figure_format,
    markdown_table,
    plot_alignments,
    plot_curves,
    plot_seed_curves,
    require_matplotlib,
    seeds_summary,
    seeds_table,
)
from rnndsl.training.result import Result
from rnndsl.training.seeds import Job, run_all, seeds, with_seed
from rnndsl.training.stats import require_scipy
from rnndsl.training.tune import Search, Trial, best_config, parse_params, report, require_optuna, search, storage_url

if TYPE_CHECKING:
    from rnndsl.tasks.g2p import Pronunciation

__all__ = ["RUN_FILES", "claim", "cmd_compare", "cmd_generate", "cmd_train", "cmd_tune", "spec_ref"]

_OPTIONS = ("steps", "batch", "lr", "lr_decay", "clip", "seed", "eval_every")


def cmd_train(args: argparse.Namespace) -> int:
    """Train one spec; print its final metrics (with --seeds N, each metric's mean, sd and interval)."""
    if args.seeds != 1:
        return _train_seeds(args)
    out = None
    try:
        _check_counts(args)
        if args.jobs != 1:
            raise ValueError("--jobs J trains several runs at once: give --seeds N for several runs of the spec")
        spec, network = spec_ref(args.spec, args.network)
        saved = read_checkpoint(args.resume) if args.resume else None
        task, config = _task(args, saved), _config(args, saved)
        out = (
            Path(args.out)
            if args.out
            else Path(args.resume).parent
            if args.resume
            else Path("runs") / "-".join([Path(spec).stem, *([network] if network else []), task.label])
        )
        claim(out, args.resume, args.force)
        require_matplotlib()
        if args.tensorboard:
            require_tensorboard()
        speaks = World.from_environment().main  # under torchrun, rank 0 alone prints and writes
        if saved is not None and saved["step"] == config.steps and not args.quiet and speaks:
            print(f"the checkpoint is at step {saved['step']}; give --steps above it to train on", file=sys.stderr)
        _threads(args)
        result = train(
            Path(spec),
            task,
            config,
            network=network,
            out=out,
            resume=args.resume,
            quiet=args.quiet,
            tensorboard=args.tensorboard,
        )
    except KeyboardInterrupt:
        return _interrupted("train", out)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("train", err)
    if not speaks:
        return 0
    print(_summary(result))
    names = [*RUN_FILES, *([FOLDER + "/"] if args.tensorboard else [])]
    print("wrote " + ", ".join(str(out / name) for name in names if (out / name).exists()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train each spec with the same task and options; overlay the curves and print a table (with --seeds N
    or --jobs J, the seeded comparison: `_compare_seeds`)."""
    if args.seeds != 1 or args.jobs != 1 or args.tune:
        return _compare_seeds(args)
    out = None
    try:
        refs = [spec_ref(spec, args.network) for spec in args.specs]
        task, config = _task(args, None), _config(args, None)
        out = Path(args.out or f"runs/compare-{task.label}")
        labels = _labels(refs)
        claim_summary(out, COMPARE_FILES, args.force)
        for label in labels:
            claim(out / label, None, args.force, resumable=False)
        require_matplotlib()
        if args.tensorboard:
            require_tensorboard()
        _check_all(refs, task)
        _threads(args)
        world = World.from_environment()
        world.check_batch(config.batch)
        with world.joined(torch.device("cpu")):  # one process group for every run (train() trains on the CPU)
            results = _train_each(args, refs, task, config, out, labels, world.main)
        table = markdown_table(results, _shown(args.specs, labels))
        if world.main:
            plot_curves(results, out / "compare.png", labels)
            heading = f"# Task {_task_text(task)}; training: {_config_text(config)}\n\n"
            atomic_write(out / "compare.md", lambda f: f.write((heading + table).encode("utf-8")))
    except KeyboardInterrupt:
        return _interrupted("compare", out)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("compare", err)
    if not world.main:
        return 0
    print(table, end="")
    print(f"wrote {out / 'compare.png'}, {out / 'compare.md'}")
    return 0


def _train_each(
    args: argparse.Namespace,
    refs: list[tuple[str, str | None]],
    task: Task,
    config: TrainConfig,
    out: Path,
    labels: list[str],
    main: bool,
) -> list[Result]:
    results = []
    for i, ((spec, network), label, given) in enumerate(zip(refs, labels, args.specs, strict=True)):
        if not args.quiet and main:
            print(f"[{i + 1}/{len(labels)}] {given}", file=sys.stderr)
        results.append(
            train(
                Path(spec),
                task,
                config,
                network=network,
                out=out / label,
                quiet=args.quiet,
                tensorboard=args.tensorboard,
            )
        )
    return results


def _train_seeds(args: argparse.Namespace) -> int:
    """`train --seeds N`: the spec trained with N parameter seeds, in DIR/seed-S; DIR/seeds.md, seeds.json
    and curves.png summarise them."""
    out = None
    try:
        _check_counts(args)
        if args.resume:
            raise ValueError(
                "--resume continues one run: resume each seed's run on its own (--resume DIR/seed-S/checkpoint.pt)"
            )
        spec, network = spec_ref(args.spec, args.network)
        task, config = _task(args, None), _config(args, None)
        out = (
            Path(args.out)
            if args.out
            else Path("runs") / "-".join([Path(spec).stem, *([network] if network else []), task.label])
        )
        _prepare(args, [(spec, network)], [out], task, out, SEEDS_FILES)
        groups = _run_seeds(args, [(spec, network)], [args.spec], [out], task, [config])
        summary = seeds_summary(groups)
        table = seeds_table(summary)
        plot_seed_curves(groups, out / "curves.png")
        _write_summary(
            out / "seeds", summary, f"# {args.spec} on {_task_text(task)}; training: {_config_text(config)}\n\n" + table
        )
    except KeyboardInterrupt:
        return _interrupted("train", None)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("train", err)
    print(table, end="")
    print(f"wrote {out / 'seeds.md'}, {out / 'seeds.json'}, {out / 'curves.png'}")
    return 0


def _compare_seeds(args: argparse.Namespace) -> int:
    """`compare --seeds N` (or --jobs J, --tune OPTIONS): every spec trained with N parameter seeds (in
    DIR/NAME/seed-S, or DIR/NAME for one seed), J runs at a time, each spec at its own best options when
    tuned; DIR/compare.md, compare.json and compare.png summarise them, with Welch's t-test between specs."""
    out = None
    try:
        _check_counts(args)
        refs = [spec_ref(spec, args.network) for spec in args.specs]
        task, config = _task(args, None), _config(args, None)
        params = parse_params(args.tune) if args.tune else ()
        out = Path(args.out or f"runs/compare-{task.label}")
        labels = _labels(refs)
        folders = [out / label for label in labels]
        _prepare(args, refs, folders, task, out, COMPARE_FILES, tuning=bool(params))
        searches = [
            _search(args, ref, label, folder, task, config, params)
            for ref, label, folder in zip(refs, labels, folders, strict=True)
        ]
        if params and not args.quiet:
            print(f"tuning {len(searches)} specs, {args.trials} trials each, {args.jobs} at a time", file=sys.stderr)
        # each spec's search is its own study: searched J at a time in J processes, with the same results
        jobs = [(s, args.quiet, args.threads) for s in searches]
        tuned = run_all(jobs, args.jobs, lambda i, r: None, _tune) if params else []
        configs = [c for c, _, _ in tuned] or [config] * len(refs)
        groups = _run_seeds(args, refs, _shown(args.specs, labels), folders, task, configs)
        summary = seeds_summary(groups)
        if tuned:  # the options every spec shares; each spec's tuned ones are under "tuned"
            summary["train"] = {k: v for k, v in summary["train"].items() if k not in params}
            summary["tuned"] = {
                g.label: {"trial": b.number, "trials": n, "value": b.value, "params": b.params}
                for g, (_, b, n) in zip(groups, tuned, strict=True)
            }
        table = seeds_table(summary)
        if tuned:
            table += _tuned_text(args, summary, task)
        plot_seed_curves(groups, out / "compare.png")
        training = _config_text(config) + (f"; {', '.join(params)} tuned for each spec" if params else "")
        _write_summary(out / "compare", summary, f"# Task {_task_text(task)}; training: {training}\n\n" + table)
    except KeyboardInterrupt:
        return _interrupted("compare", None)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("compare", err)
    print(table, end="")
    print(f"wrote {out / 'compare.png'}, {out / 'compare.md'}, {out / 'compare.json'}")
    return 0


def _tuned_text(args: argparse.Namespace, summary: dict[str, Any], task: Task) -> str:
    lines = [
        f"- `{label}`: "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        + f" (trial {t['trial']} of the {t['trials']} its study holds, validation {task.primary} {t['value']:.4f})"
        for label, t in summary["tuned"].items()
    ]
    return (
        "\nEach spec trained at its own best options, searched with Optuna (TPE sampler, median pruner; "
        f"trials of {args.steps or TrainConfig().steps} steps, {args.trials} a spec in this call, on the "
        f"validation {task.primary}):\n\n" + "\n".join(lines) + "\n"
    )


def _shown(specs: list[str], labels: list[str]) -> list[str]:
    """How a compare's tables name each spec: as given, or with its folder's name where it is given twice."""
    return [spec if specs.count(spec) == 1 else f"{spec} ({label})" for spec, label in zip(specs, labels, strict=True)]


def _search(
    args: argparse.Namespace,
    ref: tuple[str, str | None],
    label: str,
    folder: Path,
    task: Task,
    config: TrainConfig,
    params: tuple[str, ...],
) -> Search:
    """One spec's search: its study in folder/study.db, or in --storage as LABEL-TASK."""
    spec, network = ref
    folder.mkdir(parents=True, exist_ok=True)
    storage = args.storage or storage_url(folder)
    return Search(spec, network, task, config, params, storage, f"{label}-{task.label}", args.trials, config.seed)


def _tune(job: tuple[Search, bool, int]) -> tuple[TrainConfig, Trial, int]:
    """Run one spec's search (here or in a worker process); its best options, and how many trials its study
    holds (a study continued keeps its earlier ones). A line per trial unless quiet."""
    s, quiet, threads = job
    torch.set_num_threads(threads)
    line = _trial_line(s.params, s.task, prefix=f"{s.study}: ")
    study = search(s, read_spec(Path(s.spec))[0], on_trial=None if quiet else line)
    return (*best_config(study, s), len(study.trials))


def cmd_tune(args: argparse.Namespace) -> int:
    """Search one spec's training options with Optuna; write tune.md and best.json, print the best."""
    try:
        if args.trials < 1:
            raise ValueError(f"--trials takes a whole number >= 1, got {args.trials}")
        spec, network = spec_ref(args.spec, args.network)
        task, config = _task(args, None), _config(args, None)
        params = parse_params(args.tune)
        stem = "-".join([Path(spec).stem, *([network] if network else []), task.label])
        out = Path(args.out or f"runs/tune-{stem}")
        require_optuna()
        if World.from_environment().size > 1:
            raise ValueError(
                "tune runs its trials in this process: run it without torchrun (several tune processes share a study)"
            )
        _check_all([(spec, network)], task)
        _threads(args)
        out.mkdir(parents=True, exist_ok=True)
        s = Search(
            spec,
            network,
            task,
            config,
            params,
            args.storage or storage_url(out),
            args.study or stem,
            args.trials,
            config.seed,
        )
        study = search(s, read_spec(Path(spec))[0], on_trial=None if args.quiet else _trial_line(params, task))
        text, summary = report(study, s)
        summary["command"] = _train_command(args, summary["train"])
        atomic_write(out / "tune.md", lambda f: f.write(text.encode("utf-8")))
        atomic_write(out / "best.json", lambda f: f.write((json.dumps(summary, indent=1) + "\n").encode("utf-8")))
    except KeyboardInterrupt:
        return _interrupted("tune", None)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("tune", err)
    best = summary["best"]
    print(
        f"best of {sum(summary['trials'].values())} trials in study `{s.study}`: trial {best['trial']}, "
        f"validation {task.primary} {best['value']:.4f}, " + ", ".join(f"{k}={v}" for k, v in best["params"].items())
    )
    print(f"train with it: {summary['command']}")
    print(f"wrote {out / 'tune.md'}, {out / 'best.json'}")
    return 0


def _trial_line(params: tuple[str, ...], task: Task, prefix: str = "") -> Callable[[Trial], None]:
    def line(t: Trial) -> None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        how = {
            "COMPLETE": f"validation {task.primary} {t.value:.4f}" if t.value is not None else "",
            "PRUNED": f"pruned at step {t.step}",
            "FAIL": "failed (the loss diverged)",
        }.get(t.state, t.state.lower())
        print(f"{prefix}trial {t.number}: {shown}: {how}", file=sys.stderr)

    return line


def _train_command(args: argparse.Namespace, train: dict[str, Any]) -> str:
    """`rnndsl train SPEC --task T ... --lr X`: the options that differ from the defaults, the best ones among them."""
    defaults = dataclasses.asdict(TrainConfig())
    source = [f"--data {args.data}"] if args.data else [f"--task {args.task}"]
    source += [f"--task-arg {a}" for a in args.task_arg]
    source += [f"--loss {args.loss}"] * bool(args.loss) + [f"--split {args.split}"] * bool(args.split)
    options = [f"--{k.replace('_', '-')} {v}" for k, v in train.items() if k != "eval_batch" and v != defaults[k]]
    return " ".join(["rnndsl train", args.spec, *source, *options])


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value in (("--seeds", args.seeds), ("--jobs", args.jobs)):
        if value < 1:
            raise ValueError(f"{flag} takes a whole number >= 1, got {value}")


def _prepare(
    args: argparse.Namespace,
    refs: list[tuple[str, str | None]],
    folders: list[Path],
    task: Task,
    summary_folder: Path,
    summary: tuple[str, ...],
    tuning: bool = False,
) -> None:
    """Before the first run: every folder claimed (the summary's files in `summary_folder` too), every library
    there, every spec checked against the task."""
    if World.from_environment().size > 1:
        raise ValueError("--seeds, --jobs and --tune start processes of their own: run them without torchrun")
    compare = summary == COMPARE_FILES
    claim_summary(summary_folder, summary, args.force)
    for folder in folders:
        for seed in seeds(TrainConfig(seed=args.seed or 0), args.seeds):
            claim(folder / f"seed-{seed}" if args.seeds > 1 else folder, None, args.force, resumable=not compare)
    require_matplotlib()
    require_scipy()
    if tuning:
        require_optuna()
    if args.tensorboard:
        require_tensorboard()
    _check_all(refs, task)
    _threads(args)


def _run_seeds(
    args: argparse.Namespace,
    refs: list[tuple[str, str | None]],
    shown: list[str],
    folders: list[Path],
    task: Task,
    configs: list[TrainConfig],
) -> list[Group]:
    """Each spec's runs over the seeds at its options, in its folder (seed-S inside it for several seeds)."""
    jobs = []
    for (spec, network), folder, config in zip(refs, folders, configs, strict=True):
        for seed in seeds(config, args.seeds):
            run = folder / f"seed-{seed}" if args.seeds > 1 else folder
            jobs.append(
                Job(spec, network, task.config(), with_seed(config, seed), str(run), args.threads, args.tensorboard)
            )

    def done(i: int, record: dict[str, Any]) -> None:
        if not args.quiet:
            job, primary = jobs[i], record["primary_metric"]
            print(
                f"[{i + 1}/{len(jobs)}] {shown[i // args.seeds]} seed {job.config.seed}: test {primary} "
                f"{record['metrics']['test'][primary]:.4f} ({duration(record['elapsed_s'])})",
                file=sys.stderr,
            )

    records = run_all(jobs, args.jobs, done)
    return [Group(label, records[i * args.seeds : (i + 1) * args.seeds]) for i, label in enumerate(shown)]


def _write_summary(stem: Path, summary: dict[str, Any], markdown: str) -> None:
    text = json.dumps(summary, indent=1, allow_nan=True) + "\n"
    atomic_write(stem.with_suffix(".json"), lambda f: f.write(text.encode("utf-8")))
    atomic_write(stem.with_suffix(".md"), lambda f: f.write(markdown.encode("utf-8")))


def spec_ref(text: str, network: str | None = None) -> tuple[str, str | None]:
    """(file, network) of a SPEC argument: a file, or FILE:NETWORK naming one network or model of it.

    A path that exists is a file even with a colon in its name; otherwise the part after the last colon,
    when it is a name, picks the network (and must agree with `--network` when both are given).

    >>> spec_ref("examples/elman.rnn:Elman")
    ('examples/elman.rnn', 'Elman')
    """
    path, colon, name = text.rpartition(":")
    if not colon or Path(text).exists() or not name.isidentifier():
        return text, network
    if network is not None and network != name:
        raise ValueError(f"{text} names network `{name}` and --network names `{network}`: give one of them")
    return path, name


RUN_FILES = ("checkpoint.pt", "results.json", "curves.png")  # what a run writes into its folder


def claim(out: Path, resume: str | None, force: bool, resumable: bool = True) -> None:
    """Refuse to write a run into a folder that holds another one, unless `force`: a resumed run may only
    go on where its checkpoint is (`resumable`: the command can resume one; `compare` cannot)."""
    held = [name for name in RUN_FILES[:2] if (out / name).exists()]
    if not force and not held:  # a summary of runs (its curves where this run would write its own)
        claim_summary(out, ("seeds.json", "compare.json"), force)
    if not held or force:
        return
    if resume is not None and Path(resume).resolve() == (out / "checkpoint.pt").resolve():
        return
    what = f"a run at step {read_checkpoint(out / 'checkpoint.pt')['step']}" if "checkpoint.pt" in held else "a run"
    go_on = f"continue it with rnndsl train --resume {out / 'checkpoint.pt'}, " if resumable else ""
    raise ValueError(
        f"{out} already holds {what} ({', '.join(held)}); {go_on}write elsewhere with --out DIR, or replace it "
        "with --force"
    )


SEEDS_FILES = ("seeds.json", "seeds.md", *RUN_FILES)  # a seeds summary's, and a single run's it would write over
COMPARE_FILES = ("compare.json", "compare.md", "compare.png")


def claim_summary(out: Path, names: tuple[str, ...], force: bool) -> None:
    """Refuse to write a summary (`train --seeds`, `compare`) over an earlier one's files, or over a run's, in
    `out`, unless `force`."""
    held = [name for name in names if (out / name).exists()]
    if held and not force:
        raise ValueError(
            f"{out} already holds {', '.join(held)} of earlier runs: write elsewhere with --out DIR, or write over "
            "them with --force"
        )


def _task(args: argparse.Namespace, saved: dict[str, Any] | None) -> Task:
    """The task of --task or --data with their options, else the checkpoint's; its data checked now."""
    if args.data and args.task:
        raise ValueError("give --task NAME or --data FILE, not both")
    name = FILE_TASK if args.data else args.task or (saved["task"]["name"] if saved else None)
    if name is None:
        raise ValueError(
            "give the task with --task NAME (" + ", ".join(TASKS) + ") or your own sequences with --data FILE"
        )
    options = {k: v for k, v in saved["task"].items() if k != "name"} if saved and saved["task"]["name"] == name else {}
    given = {**parse_options(name, args.task_arg), **_data_options(args, name)}
    task = make_task(name, **{**options, **given})
    return task.check() if isinstance(task, ArrayTask) else task


def _data_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """--data, --loss and --split as the options of a task over arrays."""
    out: dict[str, Any] = {"path": args.data} if args.data else {}
    if args.loss is None and args.split is None:
        return out
    if not issubclass(task_class(name), ArrayTask):
        raise ValueError(f"--loss and --split are for --data (or a task over arrays); task `{name}` has its own")
    if args.loss is not None:
        out["criterion"] = args.loss
    if args.split is not None:
        out.update(_split(args.split))
    return out


def _split(text: str) -> dict[str, float]:
    """`0.8,0.1,0.1` -> the validation and test fractions; three fractions in (0, 1) that sum to 1."""
    try:
        fractions = [float(part) for part in text.split(",")]
    except ValueError:
        fractions = []
    if len(fractions) != 3 or not all(0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"--split takes three fractions TRAIN,VALIDATION,TEST, each between 0 and 1, summing to 1 (such as "
            f"0.8,0.1,0.1); got `{text}`"
        )
    return {"validation": fractions[1], "test": fractions[2]}


def _config(args: argparse.Namespace, saved: dict[str, Any] | None) -> TrainConfig:
    base = dict(saved["train"]) if saved else {}
    given = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    return TrainConfig(**{**base, **given})


def _threads(args: argparse.Namespace) -> None:
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)


def _labels(refs: list[tuple[str, str | None]]) -> list[str]:
    """A directory name per spec: its file stem (with the network when one is named), numbered when two are
    the same."""
    stems = [Path(spec).stem + (f"-{network}" if network else "") for spec, network in refs]
    return [stem if stems.count(stem) == 1 else f"{stem}-{stems[: i + 1].count(stem)}" for i, stem in enumerate(stems)]


def _check_all(refs: list[tuple[str, str | None]], task: Task) -> None:
    """Every spec loads and fits the task, before any training starts."""
    from rnndsl.training.loop import compile_spec

    for spec, network in refs:
        text, name = read_spec(Path(spec))
        task.bind(compile_spec(text, name, network).ir)


def _task_name(config: dict[str, Any]) -> str:
    """`digits`, or `data (seqs.npz)` for a data file."""
    return config["name"] + (f" ({Path(config['path']).name})" if config["name"] == FILE_TASK else "")


def _summary(result: Result) -> str:
    steps = len(result.losses)
    rate = f" ({steps / result.elapsed:.1f} steps/s)" if result.elapsed else ""
    lines = [
        f"{result.network} on {_task_name(result.task)}: {steps} steps in {duration(result.elapsed)}{rate}, "
        f"{result.parameters:,} parameters"
    ]
    for split, metrics in (("validation", result.validation), ("test", result.test)):
        lines.append(f"  {split + ':':<12}" + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return "\n".join(lines)


def _task_text(task: Task) -> str:
    options = ", ".join(f"{k}={v}" for k, v in task.config().items() if k != "name") or "default options"
    return f"{task.name} ({options})"


def _config_text(config: TrainConfig) -> str:
    return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items())


def _error(command: str, err: BaseException) -> int:
    if isinstance(err, SpecError):
        print(err, file=sys.stderr)
    elif isinstance(err, OSError) and err.filename and err.strerror:
        print(f"rnndsl {command}: error: {err.filename}: {err.strerror}", file=sys.stderr)
    elif isinstance(err, (ValueError, ImportError, OSError)):
        text = str(err).replace("network=NAME", "--network NAME")
        print(f"rnndsl {command}: error: {text}", file=sys.stderr)
    else:
        raise err
    return 1


def cmd_generate(args: argparse.Namespace) -> int:
    """Load a checkpoint and print what its network generates for its task; for a g2p model with attention,
    also write the alignment heatmap of the words it pronounces (stderr says where: stdout is theirs)."""
    from rnndsl.tasks.g2p import G2P
    from rnndsl.training.checkpoint import load_model

    try:
        if (args.count is not None and args.count < 1) or args.beam < 1:
            raise ValueError("--count and --beam take a whole number >= 1")
        _threads(args)
        saved = read_checkpoint(args.checkpoint)
        task = make_task(**saved["task"])
        net = load_model(args.checkpoint)
        options = _generate_options(args, task.name)
        heatmap = _heatmap(args, task, net)
        count = 10 if args.count is None else args.count
        with torch.no_grad():
            if isinstance(task, G2P) and heatmap is not None:
                said = task.pronounce(net, args.words, count, options)
                lines = [p.line() for p in said]
                plot_alignments(_alignments(said), heatmap, title=_ALIGNMENT_TITLE)
            else:
                lines = task.show(net, args.words, count, options)
    except KeyboardInterrupt:
        return _interrupted("generate", None)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("generate", err)
    print("\n".join(lines))
    if heatmap is not None:
        print(f"wrote {heatmap}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Load a checkpoint and print its task's metrics on a held-out split (with evaluation options changed)."""
    from rnndsl.training.checkpoint import load_model
    from rnndsl.training.loop import evaluate

    try:
        _threads(args)
        saved = read_checkpoint(args.checkpoint)
        options = dict(saved["task"])
        name = options.pop("name")
        changes = parse_options(name, args.task_arg)
        allowed = task_class(name).evaluation_options
        for key in changes:
            if key not in allowed:
                raise ValueError(
                    f"--task-arg {key}: it would change the data the checkpoint was trained and measured on; "
                    + (
                        f"evaluate sets only {', '.join(allowed)} of task `{name}`"
                        if allowed
                        else f"task `{name}` has no evaluation options"
                    )
                )
        if args.data is not None:  # the file moved: its sha256, kept in the options, says it holds the same bytes
            if name != FILE_TASK:
                raise ValueError(f"--data gives a --data run's file; this run trained on task `{name}`")
            changes["path"] = args.data
        task = make_task(name, **{**options, **changes})
        net = load_model(args.checkpoint)
        start = time.perf_counter()
        metrics = evaluate(net, task, task.bind(net.ir), task.split(args.split), TrainConfig().eval_batch)
        seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        return _interrupted("evaluate", None)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("evaluate", err)
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    print(f"{args.split} of {show_options(task.config())}, step {saved['step']} ({seconds:.1f} s): {shown}")
    return 0


_ALIGNMENT_TITLE = 'attention: what the step saying each phoneme weighed of each letter ("." ends the word)'


def _heatmap(args: argparse.Namespace, task: Task, net: Any) -> Path | None:
    """Where the alignment heatmap goes (--attention, else attention.png beside the checkpoint), or None for
    a model without attention; --attention on one is refused (the task's own refusal is `_generate_options`)."""
    from rnndsl.tasks.g2p import G2P

    if not isinstance(task, G2P):
        return None
    if not task.attends(net):
        if args.attention is not None:
            raise ValueError(
                f"--attention draws what a decoder's `attend(...)` weighed, and model `{net.model.name}` has no "
                "attention node (its decoder reads the encoder's summary only); train one with attention, such "
                "as examples/tasks/g2p_attention.rnn, or leave --attention out"
            )
        return None
    require_matplotlib()
    if args.attention is None:
        return Path(args.checkpoint).parent / "attention.png"
    figure_format(Path(args.attention))  # before any generating: .png, .svg or .pdf
    return Path(args.attention)


def _alignments(said: list[Pronunciation]) -> list[Alignment]:
    """One heatmap per word and attention node (the node named when the decoder has several)."""
    return [
        Alignment(p.word + (f" ({node})" if len(p.attention) > 1 else ""), p.word, p.said, weights)
        for p in said
        for node, weights in p.attention.items()
    ]


def _generate_options(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """What `task.show` is given; a flag that would be ignored is refused, with the reason."""
    if args.attention is not None and task != "g2p":
        raise ValueError(
            f"--attention draws a g2p model's alignment of letters and phonemes; task `{task}` has none to draw"
        )
    sampling = [
        flag
        for flag, given in (
            ("--temperature", args.temperature is not None),
            ("--top-k", args.top_k is not None),
            ("--greedy", args.greedy),
        )
        if given
    ]
    if task == "g2p" or args.beam > 1:
        why = (
            "a g2p model pronounces each word by greedy or beam search (--beam K)"
            if task == "g2p"
            else f"--beam {args.beam} searches for the likeliest name"
        )
        if sampling:
            raise ValueError(f"{why}; it draws nothing, so {', '.join(sampling)} would be ignored")
        if args.beam > 1 and task != "g2p" and args.count is not None:
            raise ValueError(f"{why}, one for each sex (or the one), so --count would be ignored")
        return {"beam": args.beam}
    return {
        "temperature": 1.0 if args.temperature is None else args.temperature,
        "top_k": args.top_k or 0,
        "greedy": args.greedy,
        "generator": torch.Generator().manual_seed(args.seed),
    }


def _interrupted(command: str, out: Path | None) -> int:
    where = f"; the last checkpoint is {out / 'checkpoint.pt'}" if out and (out / "checkpoint.pt").exists() else ""
    print(f"rnndsl {command}: interrupted{where}", file=sys.stderr)
    return 130
