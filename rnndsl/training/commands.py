"""`rnndsl train` and `rnndsl compare`: takes parsed arguments, gives trained runs, printed metrics and exit codes.

Every user mistake (a missing file, a spec that does not fit the task, a checkpoint of another spec, a
bad option) prints one clear message and exits 1; Ctrl-C exits 130 and points at the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from rnndsl.frontend.load import read_spec
from rnndsl.lang.errors import SpecError
from rnndsl.tasks import TASKS, Task, make_task, parse_options
from rnndsl.training.checkpoint import atomic_write, read_checkpoint
from rnndsl.training.distributed import World
from rnndsl.training.loop import Result, TrainConfig, train
from rnndsl.training.progress import duration
from rnndsl.training.report import markdown_table, plot_curves, require_matplotlib

__all__ = ["RUN_FILES", "add_commands", "claim", "cmd_compare", "cmd_generate", "cmd_train", "spec_ref"]

_OPTIONS = ("steps", "batch", "lr", "clip", "seed", "eval_every")

# One thread by default: the recurrent models these commands train are small, so a second thread buys little
# on an idle machine, and on a busy one threads that spin waiting for each other made a step 9x slower
# (digits_gru, 2 cores at load 1.5: 122 steps/s on 1 thread, 13 on 2; docs/performance.md).
THREADS = 1
THREADS_HELP = (f"torch's intra-op CPU threads for this process (default {THREADS}: these small models gain "
                "little from more, and on a busy machine extra threads wait on each other and make each step many "
                "times slower; give more for wide layers on an idle machine, and 1 per process under torchrun)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `train` and `compare` on the `rnndsl` command's subparsers."""
    defaults = TrainConfig()
    p = sub.add_parser("train", help="train a network (or model) on a task; write a checkpoint, results, curves",
                       description="Train one network of SPEC on a task. Writes DIR/checkpoint.pt (at each "
                                   "evaluation), DIR/results.json and DIR/curves.png, and prints the final "
                                   "validation and test metrics. Exit 1 on errors. Under torchrun "
                                   "(torchrun --nproc-per-node N -m rnndsl train ...) the N processes train one "
                                   "network data-parallel, each on 1/N of every batch (--batch must be a "
                                   "multiple of N); rank 0 alone prints and writes.")
    p.add_argument("spec", metavar="SPEC", help="spec file, or FILE:NETWORK for one network (or model) of a file")
    _add_options(p, defaults)
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint: options not given are taken from "
                                                    "it; --steps is the total to reach; the run goes on in the "
                                                    "checkpoint's folder unless --out says otherwise")
    p = sub.add_parser("compare", help="train several specs on one task; overlay their curves and tabulate",
                       description="Train each SPEC on the same task with the same options (each in DIR/NAME), "
                                   "then write DIR/compare.png (overlaid curves) and DIR/compare.md (a markdown "
                                   "table, also printed). Exit 1 on errors.")
    p.add_argument("specs", nargs="+", metavar="SPEC",
                   help="spec files, or FILE:NETWORK for one network (or model) of a file, so that two networks "
                        "of one file can be compared")
    _add_options(p, defaults)
    p = sub.add_parser("generate", help="sample from a trained generator, or pronounce words with a trained g2p model",
                       description="Load a checkpoint of `rnndsl train` and show what the network does on its task: "
                                   "names: COUNT generated names (for each sex with by_sex=1), each WORD a prompt "
                                   "to continue; g2p: the pronunciation of each WORD (or of COUNT held-out test "
                                   "words). Exit 1 on errors.")
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint.pt written by rnndsl train")
    p.add_argument("words", nargs="*", metavar="WORD", help="prompts (names) or words to pronounce (g2p)")
    p.add_argument("--count", type=int, help="how many samples or test words (default 10)")
    p.add_argument("--temperature", type=float, help="below 1: likelier tokens; above 1: more varied (default 1)")
    p.add_argument("--top-k", type=int, help="draw among the K likeliest tokens only (default 0: all)")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--beam", type=int, default=1, help="beam search with K beams: g2p's pronunciations, or the "
                                                       "likeliest name (for each sex) of a names generator "
                                                       "(default 1: g2p greedy, names sampled)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)


def _add_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument("--task", choices=list(TASKS), help="the task: " + ", ".join(TASKS))
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option, e.g. length=50 for adding (repeatable)")
    p.add_argument("--network", "-n", metavar="NAME", help="the network to train, when a file holds several")
    p.add_argument("--steps", type=int, help=f"optimizer steps in all (default {d.steps})")
    p.add_argument("--batch", type=int, help=f"sequences per step, over all processes under torchrun "
                                             f"(default {d.batch})")
    p.add_argument("--lr", type=float, help=f"Adam's learning rate (default {d.lr})")
    p.add_argument("--clip", type=float, help=f"largest gradient norm, 0 for none (default {d.clip})")
    p.add_argument("--seed", type=int, help=f"seed of the parameters and dropout (default {d.seed}); the data "
                                            "follow the task's own seed (--task-arg seed=S)")
    p.add_argument("--eval-every", type=int, help=f"evaluate and checkpoint every K steps (default {d.eval_every})")
    p.add_argument("--out", metavar="DIR", help="where to write (default runs/SPEC-TASK, runs/SPEC-NETWORK-TASK "
                                                "when a network is named, or runs/compare-TASK)")
    p.add_argument("--force", action="store_true", help="write over a run already in the folder (without it, a "
                                                        "folder that holds a run is refused)")
    p.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no evaluation lines")


def cmd_train(args: argparse.Namespace) -> int:
    """Train one spec; print its final metrics."""
    out = None
    try:
        spec, network = spec_ref(args.spec, args.network)
        saved = read_checkpoint(args.resume) if args.resume else None
        task, config = _task(args, saved), _config(args, saved)
        out = Path(args.out) if args.out else Path(args.resume).parent if args.resume \
            else Path("runs") / "-".join([Path(spec).stem, *([network] if network else []), task.name])
        claim(out, args.resume, args.force)
        require_matplotlib()
        speaks = World.from_environment().main  # under torchrun, rank 0 alone prints and writes
        if saved is not None and saved["step"] >= config.steps and not args.quiet and speaks:
            print(f"the checkpoint is at step {saved['step']}; give --steps above it to train on", file=sys.stderr)
        _threads(args)
        result = train(Path(spec), task, config, network=network, out=out, resume=args.resume, quiet=args.quiet)
    except KeyboardInterrupt:
        return _interrupted("train", out)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("train", err)
    if not speaks:
        return 0
    print(_summary(result))
    print("wrote " + ", ".join(str(out / name) for name in RUN_FILES if (out / name).exists()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train each spec with the same task and options; overlay the curves and print a table."""
    out = None
    try:
        refs = [spec_ref(spec, args.network) for spec in args.specs]
        task, config = _task(args, None), _config(args, None)
        out = Path(args.out or f"runs/compare-{task.name}")
        labels = _labels(refs)
        for label in labels:
            claim(out / label, None, args.force)
        require_matplotlib()
        _check_all(refs, task)
        _threads(args)
        world = World.from_environment()
        world.check_batch(config.batch)
        with world.joined(torch.device("cpu")):  # one process group for every run (train() trains on the CPU)
            results = _train_each(args, refs, task, config, out, labels, world.main)
        table = markdown_table(results, args.specs)
        if world.main:
            plot_curves(results, out / "compare.png", labels)
            heading = f"# Task {task.name} ({_options(task)}); training: {_config_text(config)}\n\n"
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


def _train_each(args: argparse.Namespace, refs: list[tuple[str, str | None]], task: Task, config: TrainConfig,
                out: Path, labels: list[str], main: bool) -> list[Result]:
    results = []
    for i, ((spec, network), label, given) in enumerate(zip(refs, labels, args.specs, strict=True)):
        if not args.quiet and main:
            print(f"[{i + 1}/{len(labels)}] {given}", file=sys.stderr)
        results.append(train(Path(spec), task, config, network=network, out=out / label, quiet=args.quiet))
    return results


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


def claim(out: Path, resume: str | None, force: bool) -> None:
    """Refuse to write a run into a folder that holds another one, unless `force`: a resumed run may only
    go on where its checkpoint is."""
    held = [name for name in RUN_FILES[:2] if (out / name).exists()]
    if not held or force:
        return
    if resume is not None and Path(resume).resolve() == (out / "checkpoint.pt").resolve():
        return
    what = f"a run at step {read_checkpoint(out / 'checkpoint.pt')['step']}" if "checkpoint.pt" in held else "a run"
    raise ValueError(f"{out} already holds {what} ({', '.join(held)}); continue it with --resume "
                     f"{out / 'checkpoint.pt'}, write elsewhere with --out DIR, or replace it with --force")


def _task(args: argparse.Namespace, saved: dict[str, Any] | None) -> Task:
    name = args.task or (saved["task"]["name"] if saved else None)
    if name is None:
        raise ValueError("give the task with --task (" + ", ".join(TASKS) + ")")
    options = {k: v for k, v in saved["task"].items() if k != "name"} if saved and saved["task"]["name"] == name \
        else {}
    return make_task(name, **{**options, **parse_options(name, args.task_arg)})


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
    return [stem if stems.count(stem) == 1 else f"{stem}-{stems[:i + 1].count(stem)}" for i, stem in enumerate(stems)]


def _check_all(refs: list[tuple[str, str | None]], task: Task) -> None:
    """Every spec loads and fits the task, before any training starts."""
    from rnndsl.training.loop import compile_spec

    for spec, network in refs:
        text, name = read_spec(Path(spec))
        task.bind(compile_spec(text, name, network).ir)


def _summary(result: Result) -> str:
    steps = len(result.losses)
    rate = f" ({steps / result.elapsed:.1f} steps/s)" if result.elapsed else ""
    lines = [f"{result.network} on {result.task['name']}: {steps} steps in {duration(result.elapsed)}{rate}, "
             f"{result.parameters:,} parameters"]
    for split, metrics in (("validation", result.validation), ("test", result.test)):
        lines.append(f"  {split + ':':<12}" + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return "\n".join(lines)


def _options(task: Task) -> str:
    return ", ".join(f"{k}={v}" for k, v in task.config().items() if k != "name") or "default options"


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
    """Load a checkpoint and print what its network generates for its task."""
    from rnndsl.training.checkpoint import load_model

    try:
        if (args.count is not None and args.count < 1) or args.beam < 1:
            raise ValueError("--count and --beam take a whole number >= 1")
        _threads(args)
        saved = read_checkpoint(args.checkpoint)
        task = make_task(**saved["task"])
        net = load_model(args.checkpoint)
        options = _generate_options(args, task.name)
        with torch.no_grad():
            lines = task.show(net, args.words, 10 if args.count is None else args.count, options)
    except KeyboardInterrupt:
        return _interrupted("generate", None)
    except Exception as err:  # the boundary: user mistakes become one message
        return _error("generate", err)
    print("\n".join(lines))
    return 0


def _generate_options(args: argparse.Namespace, task: str) -> dict[str, Any]:
    """What `task.show` is given; a flag that would be ignored is refused, with the reason."""
    sampling = [flag for flag, given in (("--temperature", args.temperature is not None),
                                         ("--top-k", args.top_k is not None), ("--greedy", args.greedy)) if given]
    if task == "g2p" or args.beam > 1:
        why = ("a g2p model pronounces each word by greedy or beam search (--beam K)" if task == "g2p"
               else f"--beam {args.beam} searches for the likeliest name")
        if sampling:
            raise ValueError(f"{why}; it draws nothing, so {', '.join(sampling)} would be ignored")
        if args.beam > 1 and task != "g2p" and args.count is not None:
            raise ValueError(f"{why}, one for each sex (or the one), so --count would be ignored")
        return {"beam": args.beam}
    return {"temperature": 1.0 if args.temperature is None else args.temperature,
            "top_k": args.top_k or 0, "greedy": args.greedy, "generator": torch.Generator().manual_seed(args.seed)}


def _interrupted(command: str, out: Path | None) -> int:
    where = f"; the last checkpoint is {out / 'checkpoint.pt'}" if out and (out / "checkpoint.pt").exists() else ""
    print(f"rnndsl {command}: interrupted{where}", file=sys.stderr)
    return 130
