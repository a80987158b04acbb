"""The options of `rnndsl train`, `compare`, `tune` and `generate`: the argparse definitions, which import no
torch (the commands themselves, in `commands`, are imported when one of them runs)."""

from __future__ import annotations

import argparse

from rnndsl.training.config import LR_DECAYS, TrainConfig

__all__ = ["THREADS", "add_commands"]

# One thread by default: the recurrent models these commands train are small, so a second thread buys little
# on an idle machine, and on a busy one threads that spin waiting for each other made a step 9x slower
# (digits_gru, 2 cores at load 1.5: 122 steps/s on 1 thread, 13 on 2). Idle, 2 threads gained nothing on
# digits_gru (133-139 steps/s on 1, 126-128 on 2) and 13% on names_gen at batch 64 (47.6 -> 53.6).
THREADS = 1
THREADS_HELP = (
    f"torch's intra-op CPU threads for this process (default {THREADS}: these small models gain "
    "little from more, and on a busy machine extra threads wait on each other and make each step many "
    "times slower; give more for wide layers on an idle machine, and 1 per process under torchrun)"
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `train`, `compare`, `tune`, `generate` and `evaluate` on the `rnndsl` command's subparsers."""
    defaults = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a network (or model) on a task; write a checkpoint, results, curves",
        description="Train one network of SPEC on a task. Writes DIR/checkpoint.pt (at each "
        "evaluation), DIR/results.json and DIR/curves.png, and prints the final "
        "validation and test metrics. Exit 1 on errors. Under torchrun "
        "(torchrun --nproc-per-node N -m rnndsl train ...) the N processes train one "
        "network data-parallel, each on 1/N of every batch (--batch must be a "
        "multiple of N); rank 0 alone prints and writes. With --seeds N the spec is trained N times "
        "(DIR/seed-S), summarised in DIR/seeds.md, seeds.json and curves.png. --data FILE trains on your "
        "own sequences.",
    )
    p.add_argument("spec", metavar="SPEC", help="spec file, or FILE:NETWORK for one network (or model) of a file")
    _add_options(p, defaults, "train")
    p.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue from a checkpoint: options not given are taken from "
        "it; --steps is the total to reach; the run goes on in the "
        "checkpoint's folder unless --out says otherwise",
    )
    p = sub.add_parser(
        "compare",
        help="train several specs on one task; overlay their curves and tabulate",
        description="Train each SPEC on the same task with the same options (each in DIR/NAME), "
        "then write DIR/compare.png (overlaid curves) and DIR/compare.md (a markdown "
        "table, also printed). With --seeds N each spec is trained N times (DIR/NAME/seed-S), --jobs J at "
        "a time, and the table gives each metric's mean ± sd with its 95% interval and Welch's t-test "
        "between the specs (also DIR/compare.json); with --tune each spec is first tuned with Optuna and "
        "trained at its own best options. Exit 1 on errors.",
    )
    p.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC",
        help="spec files, or FILE:NETWORK for one network (or model) of a file, so that two networks "
        "of one file can be compared",
    )
    _add_options(p, defaults, "compare")
    p.add_argument(
        "--tune",
        metavar="OPTIONS",
        help="first search each spec's own best setting of OPTIONS (comma-separated: "
        + ", ".join(SPACE_NAMES)
        + ") with Optuna, --trials trials each (a study in DIR/NAME/study.db, or --storage), then train "
        "each spec at its best",
    )
    _add_search_options(p, compare=True)
    _add_tune_command(sub, defaults)
    p = sub.add_parser(
        "generate",
        help="sample from a trained generator, or pronounce words with a trained g2p model",
        description="Load a checkpoint of `rnndsl train` and show what the network does on its task: "
        "names: COUNT generated names (for each sex with by_sex=1), each WORD a prompt "
        "to continue; g2p: the pronunciation of each WORD (or of COUNT held-out test "
        "words), and for a model with attention (`c = attend(score, values)`) a heatmap of "
        "what each phoneme's step weighed of each letter, written to attention.png beside "
        "the checkpoint (or --attention PATH; `wrote PATH` goes to stderr). Exit 1 on errors.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint.pt written by rnndsl train")
    p.add_argument("words", nargs="*", metavar="WORD", help="prompts (names) or words to pronounce (g2p)")
    p.add_argument("--count", type=int, help="how many samples or test words (default 10)")
    p.add_argument("--temperature", type=float, help="below 1: likelier tokens; above 1: more varied (default 1)")
    p.add_argument("--top-k", type=int, help="draw among the K likeliest tokens only (default 0: all)")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument(
        "--beam",
        type=int,
        default=1,
        help="beam search with K beams: g2p's pronunciations, or the "
        "likeliest name (for each sex) of a names generator "
        "(default 1: g2p greedy, names sampled)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument(
        "--attention",
        metavar="PATH",
        help="where a g2p model with attention writes its alignment heatmap of letters against the phonemes "
        "said, one panel per word, as .png, .svg or .pdf (default: attention.png beside the checkpoint)",
    )
    p.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)
    p = sub.add_parser(
        "evaluate",
        help="measure a checkpoint on its task's test (or validation) split",
        description="Load a checkpoint of `rnndsl train` and print its task's metrics on the held-out split, "
        "as `rnndsl train` prints them at its end; --task-arg sets the options that change how it is "
        "evaluated but not the data (g2p: beam=K, beam search of width K). Exit 1 on errors.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="a checkpoint.pt written by rnndsl train")
    p.add_argument("--split", choices=["test", "validation"], default="test", help="the split (default test)")
    p.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE", help="e.g. beam=4 (repeatable)")
    p.add_argument(
        "--data",
        metavar="FILE",
        help="a --data run's file where it is now, if it has moved since (its bytes must be those trained on)",
    )
    p.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)


SPACE_NAMES = ("lr", "clip", "batch", "lr_decay")  # rnndsl.training.tune.SPACE, named here without importing it
TRIALS = 20


def _add_tune_command(sub: argparse._SubParsersAction, defaults: TrainConfig) -> None:
    p = sub.add_parser(
        "tune",
        help="search a spec's training options (learning rate, clipping, ...) with Optuna",
        description="Search the training options of one spec on a task with Optuna: TPE proposes each trial's "
        "options, the median pruner stops trials that fall behind at an evaluation, and a trial's "
        "value is the validation's primary metric at its end (the test split is not used). The study is "
        "kept in DIR/study.db (SQLite) unless --storage names a database: several `rnndsl tune` "
        "processes, on one machine or several, given the same study search it together, each running "
        "its --trials trials; running the command again continues the study. Writes DIR/tune.md (every "
        "trial, best first) and DIR/best.json, and prints the best options as a train command. Options "
        "not tuned keep their values (--steps, --batch, ...). Exit 1 on errors.",
    )
    p.add_argument("spec", metavar="SPEC", help="spec file, or FILE:NETWORK for one network (or model) of a file")
    _add_options(p, defaults, "tune")
    p.add_argument(
        "--tune",
        metavar="OPTIONS",
        default="lr",
        help="the options to search, comma-separated: lr (log-uniform in [1e-4, 3e-2]), clip (log-uniform "
        "in [0.1, 10]), batch (16, 32, 64 or 128), lr_decay (none or cosine); default lr",
    )
    _add_search_options(p, compare=False)
    p.add_argument("--study", metavar="NAME", help="the study's name in the storage (default SPEC-TASK)")


def _add_search_options(p: argparse.ArgumentParser, compare: bool) -> None:
    p.add_argument(
        "--trials",
        type=int,
        default=TRIALS,
        metavar="N",
        help=f"trials this process runs (default {TRIALS})" + (" for each spec, with --tune" if compare else ""),
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="the study's database, an SQLAlchemy URL Optuna takes (sqlite:///PATH, postgresql://...), for "
        "processes on several machines to share one search (default: SQLite in the run folder)",
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="FILE",
        help="train on your own sequences instead of a --task: an .npz with arrays x ((N, T, S) floats or "
        "(N, T) token ids), y ((N,) class ids: one class per sequence; (N, T) ids: one per step; (N, K) or "
        "(N, T, K) floats: regression) and optionally lengths ((N,)); or a .jsonl file, one sequence a line "
        '({"x": [...], "y": ...})',
    )
    p.add_argument(
        "--loss",
        choices=("cross_entropy", "mse"),
        help="the loss of --data (default: cross_entropy for whole-number y, mse for floats)",
    )
    p.add_argument(
        "--split",
        metavar="TRAIN,VALIDATION,TEST",
        help="the fractions of --data's sequences in each split, summing to 1 (default 0.8,0.1,0.1), drawn "
        "with the task's seed (--task-arg seed=S)",
    )


def _add_options(p: argparse.ArgumentParser, d: TrainConfig, command: str = "train") -> None:
    """The options train, compare and tune share (tune has neither --force nor --seeds, --jobs, --tensorboard:
    its trials keep no run folders)."""
    p.add_argument(
        "--task",
        metavar="NAME",
        help="the task: digits, adding, copy, names, g2p, or one that an installed package declares in the "
        "`rnndsl.tasks` entry-point group",
    )
    p.add_argument(
        "--task-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task option, e.g. length=50 for adding, seed=S for the split of --data (repeatable)",
    )
    _add_data_options(p)
    p.add_argument("--network", "-n", metavar="NAME", help="the network to train, when a file holds several")
    p.add_argument("--steps", type=int, help=f"optimizer steps in all (default {d.steps})")
    p.add_argument(
        "--batch", type=int, help=f"sequences per step, over all processes under torchrun (default {d.batch})"
    )
    p.add_argument("--lr", type=float, help=f"Adam's learning rate (default {d.lr})")
    p.add_argument(
        "--lr-decay",
        choices=LR_DECAYS,
        help="cosine: anneal the learning rate from --lr to a twentieth of it over --steps (default none)",
    )
    p.add_argument("--clip", type=float, help=f"largest gradient norm, 0 for none (default {d.clip})")
    p.add_argument(
        "--seed",
        type=int,
        help=f"seed of the parameters and dropout (default {d.seed}); the data "
        "follow the task's own seed (--task-arg seed=S)",
    )
    p.add_argument("--eval-every", type=int, help=f"evaluate and checkpoint every K steps (default {d.eval_every})")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write (default runs/SPEC-TASK, runs/SPEC-NETWORK-TASK "
        "when a network is named, or runs/compare-TASK; TASK is the file's name for --data)"
        if command != "tune"
        else "where the study and its report go (default runs/tune-SPEC-TASK)",
    )
    p.add_argument("--threads", type=int, default=THREADS, metavar="N", help=THREADS_HELP)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no evaluation lines")
    if command != "tune":
        _add_experiment_options(p)


def _add_experiment_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="write over a run already in the folder (without it, a folder that holds a run is refused)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="train each spec N times, with parameter seeds --seed, --seed+1, ... (in DIR/seed-S): the table "
        "gives each metric as mean ± standard deviation with its 95%% interval, and compare tests the "
        "differences between specs (Welch's t-test); the plot shows mean curves with bands (default 1)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="J",
        help="train J runs at a time, in J processes of --threads threads each (and with compare --tune, search "
        "J specs' studies at a time) (default 1); the numbers are the same as with one",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to DIR/tensorboard (train/loss, validation/METRIC, "
        "test/METRIC; needs the tensorboard package: pip install 'rnndsl[experiments]')",
    )
