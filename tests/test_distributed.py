"""Real torch.distributed: two processes train a compiled network under DistributedDataParallel.

Two ranks (gloo, on this machine, rendezvous over 127.0.0.1 like `torchrun`) each take half of a fixed
global batch and run a few SGD steps of DDP around a compiled network. Afterwards both ranks hold the
same parameters, and those match one process training on the whole batch with the same loss (the
mean over the global batch): DDP averages the two half-batch gradients, which is that gradient.

Two networks: an LSTM (a standard cell, run by torch's fused kernel) and a Jordan network (the output
fed back: a loop run by the generated code, with a learned initial value), in float64 so the
comparison can be tight; and the Jordan network trained by truncated backpropagation through time,
a chunk of steps per SGD step with the state carried over, where the learned initial value gets no
gradient after the first chunk and DDP needs `find_unused_parameters=True`. That search only works
through a wrapper returning a dict (`Plain`): DDP finds no tensors inside `Outputs` (a known limitation,
pinned at the end of the test).

The ranks are forked where the platform can (Linux): they inherit the imported torch, and the parent
imports `torch._dynamo` (which DDP's constructor loads) once before forking; spawned ranks would each
import torch and dynamo again, which costs seconds per process on a small machine.

Then `rnndsl train` itself under torchrun: two forked ranks given torchrun's environment run the command
(and a resume) and must record one process's losses and write one set of files; the real
`torchrun --nproc-per-node 2 -m rnndsl train` (seconds of start-up per process) is marked `slow`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817  (the name everyone uses)

import rnndsl
from rnndsl.cli import main
from rnndsl.tasks import Adding, Names
from rnndsl.tasks.names import load_names
from rnndsl.training import TrainConfig, load_model
from rnndsl.training import train as train_run

SPECS = {
    "lstm": """network LSTM {
        input  x: 4
        layer  i: 6 sigmoid <- x, h[t-1]
        layer  f: 6 sigmoid <- x, h[t-1]
        layer  g: 6 tanh    <- x, h[t-1]
        layer  o: 6 sigmoid <- x, h[t-1]
        c = f * c[t-1] + i * g
        h = o * tanh(c)
        output h
    }""",
    "jordan": """network J {
        input x: 4
        layer h: 8 tanh <- x, y[t-1]
        layer y: 3 softmax <- h
        init y = learned
        output y
    }""",
}
WORLD, BATCH, T, STEPS, LR, CHUNK = 2, 8, 6, 4, 0.5, 2


def data(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed global batch: inputs (BATCH, T, 4) and targets shaped like the network's output."""
    gen = torch.Generator().manual_seed(1)
    size = 6 if name == "lstm" else 3
    return (
        torch.randn(BATCH, T, 4, generator=gen, dtype=torch.float64),
        torch.rand(BATCH, T, size, generator=gen, dtype=torch.float64),
    )


def train(model: nn.Module, net: rnndsl.CompiledNetwork, x: torch.Tensor, target: torch.Tensor) -> list[float]:
    """STEPS of SGD on the mean squared error over the batch given; returns the losses."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    out_name = net.network.outputs[0].name
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = ((model(x)[out_name] - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def train_chunks(model: nn.Module, net: rnndsl.CompiledNetwork, x: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Truncated backpropagation through time: one SGD step per chunk of CHUNK steps, the state carried over
    (detached). From the second chunk on, the learned initial value is not read: it gets no gradient.
    `model` returns a dict (see `Plain`)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    state, losses = None, []
    for start in range(0, T, CHUNK):
        opt.zero_grad()
        out = model(x[:, start : start + CHUNK], state=state)
        loss = ((out["y"] - target[:, start : start + CHUNK]) ** 2).mean()
        loss.backward()
        opt.step()
        state = out["state"].detach()
        losses.append(float(loss.detach()))
    return losses


def bare(net: rnndsl.CompiledNetwork) -> nn.Module:
    return net


class Plain(nn.Module):
    """The network with its outputs as a plain dict and its state: DDP looks for the output tensors (to see which
    parameters the backward will reach) in tensors, lists, tuples, dicts and dataclasses only, and `Outputs`
    is none of these. With find_unused_parameters=True, a bare CompiledNetwork fails (see test below)."""

    def __init__(self, net: rnndsl.CompiledNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, state: rnndsl.State | None = None) -> dict[str, torch.Tensor | rnndsl.State]:
        out = self.net(x, state=state)
        assert out.state is not None
        return {**out, "state": out.state}


def fresh(name: str, initial: Path) -> rnndsl.CompiledNetwork:
    net = rnndsl.compile(SPECS[name]).double()
    net.load_state_dict(torch.load(initial))
    return net


# (run, spec, trainer, wrapper, DDP options): chunks with a carried state leave `learned_init.y` unused from
# the second chunk on, so DDP must look for unused parameters (without it the second step raises "Expected to
# have finished reduction in the prior iteration"), which it can only do through `Plain`
RUNS = [
    ("lstm", "lstm", train, bare, {}),
    ("jordan", "jordan", train, bare, {}),
    ("static", "jordan", train, bare, {"static_graph": True}),  # DDP sees into Outputs through torch's pytree
    ("chunks", "jordan", train_chunks, Plain, {"find_unused_parameters": True}),
]


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    # a bounded wait: a rank stuck in a collective fails the test instead of hanging the suite
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        for run, spec, trainer, wrap, options in RUNS:
            net = fresh(spec, Path(folder) / f"{spec}-initial.pt")
            x, target = data(spec)
            losses = trainer(DDP(wrap(net), **options), net, x[half], target[half])
            torch.save({"params": net.state_dict(), "losses": losses}, Path(folder) / f"{run}-rank{rank}.pt")
        (Path(folder) / f"unwrapped-rank{rank}.txt").write_text(_unused_search_on_outputs(folder, half))
    finally:
        dist.destroy_process_group()


def _unused_search_on_outputs(folder: str, half: slice) -> str:
    """DDP(find_unused_parameters=True) on the bare network: the error it raises, or "" if none."""
    net = fresh("jordan", Path(folder) / "jordan-initial.pt")
    model = DDP(net, find_unused_parameters=True)
    try:
        model(data("jordan")[0][half]).y.sum().backward()
    except RuntimeError as err:
        return str(err)
    return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed without gloo")
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    for name in SPECS:
        torch.manual_seed(0)
        torch.save(rnndsl.compile(SPECS[name]).double().state_dict(), tmp_path / f"{name}-initial.pt")
    importlib.import_module("torch._dynamo")  # DDP's constructor imports it: once here, not once per rank

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method=method)
    for name, spec, trainer, wrap, _ in RUNS:
        ranks = [torch.load(tmp_path / f"{name}-rank{r}.pt") for r in range(WORLD)]
        net = fresh(spec, tmp_path / f"{spec}-initial.pt")
        losses = trainer(wrap(net), net, *data(spec))
        # the loss each step is the mean over the global batch: the mean of the two halves' means
        torch.testing.assert_close(
            [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)],
            losses,
            rtol=1e-9,
            atol=0,
        )
        single = net.state_dict()
        assert single.keys() == ranks[0]["params"].keys() == ranks[1]["params"].keys()
        for key, value in single.items():
            # (a) the ranks agree exactly: each applies the same all-reduced gradient
            assert torch.equal(ranks[0]["params"][key], ranks[1]["params"][key]), f"{name}: {key} differs by rank"
            # (b) and they agree with one process on the whole batch, to rounding
            torch.testing.assert_close(ranks[0]["params"][key], value, rtol=1e-6, atol=1e-6, msg=f"{name}: {key}")
            assert not torch.equal(value, torch.load(tmp_path / f"{spec}-initial.pt")[key]), f"{key} never trained"
    # `Outputs` is a dict, so DDP(find_unused_parameters=True) finds the output tensors on a bare network
    for r in range(WORLD):
        assert (tmp_path / f"unwrapped-rank{r}.txt").read_text() == ""


# ---- `rnndsl train` under torchrun -----------------------------------------------------------------

# The names task: padded words, so the ranks' slices hold different numbers of counted targets and their
# losses must be weighted; `z`, an output the task does not read, leaves parameters without a gradient.
NAMES_SPEC = """network N {
    input  w: tokens(27)
    layer  h: 12 tanh <- w, h[t-1]
    layer  y: 27 <- h
    layer  z: 3 <- h
    output y
    output z
}"""
OPTIONS = ["--task", "names", "--batch", "8", "--lr", "1e-2", "--eval-every", "2", "--threads", "1", "--quiet"]


def _train_rank(rank: int, port: int, argv: list[str], folder: str) -> None:
    """One rank of `torchrun --nproc-per-node 2 -m rnndsl train ARGV`: torchrun's environment, then the command
    line's entry point, in a working directory of its own; what it prints goes to rankN.txt."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    torch.set_num_threads(1)  # the parent's OpenMP threads do not survive the fork: a parallel region would hang
    here = Path(folder) / f"cwd{rank}"
    here.mkdir()
    os.chdir(here)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        status = main(argv)
    (Path(folder) / f"rank{rank}.txt").write_text(printed.getvalue())
    assert status == 0, printed.getvalue()


def _run_ranks(argv: list[str], folder: Path) -> list[str]:
    """Both ranks of one run (forked, bounded in time); what each printed."""
    for rank in range(WORLD):
        shutil.rmtree(folder / f"cwd{rank}", ignore_errors=True)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ranks = mp.start_processes(
        _train_rank, args=(_free_port(), argv, str(folder)), nprocs=WORLD, join=False, start_method=method
    )
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            raise AssertionError(f"the ranks of `rnndsl {' '.join(argv)}` did not finish in 120 s")
    for rank in range(WORLD):
        assert not any((folder / f"cwd{rank}").iterdir()), f"rank {rank} wrote into its working directory"
    return [(folder / f"rank{rank}.txt").read_text() for rank in range(WORLD)]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed without gloo")
def test_rnndsl_train_on_two_ranks_matches_one_process(tmp_path: Path) -> None:
    """`rnndsl train` as torchrun runs it (its environment, two ranks, gloo), then resumed on two ranks: the loss
    history of one process on the whole batch, to 1e-5; one set of files, written by rank 0; rank 1 prints
    nothing. The ranks are forked from this process (torch, dynamo, matplotlib and the names loaded once)."""
    pytest.importorskip("names")
    pytest.importorskip("matplotlib.pyplot")
    importlib.import_module("torch._dynamo")
    load_names()
    spec = tmp_path / "n.rnn"
    spec.write_text(NAMES_SPEC)
    single = train_run(spec, Names(), TrainConfig(steps=6, batch=8, lr=1e-2, eval_every=2))

    first = _run_ranks(["train", str(spec), *OPTIONS, "--steps", "4", "--out", str(tmp_path / "a")], tmp_path)
    resumed = _run_ranks(
        [
            "train",
            str(spec),
            "--resume",
            str(tmp_path / "a" / "checkpoint.pt"),
            "--steps",
            "6",
            "--out",
            str(tmp_path / "b"),
            "--threads",
            "1",
            "--quiet",
        ],
        tmp_path,
    )
    for run, steps, printed in (("a", 4, first), ("b", 6, resumed)):
        assert sorted(p.name for p in (tmp_path / run).iterdir()) == ["checkpoint.pt", "curves.png", "results.json"]
        history = json.loads((tmp_path / run / "results.json").read_text())["history"]
        torch.testing.assert_close(history["loss"], single.losses[:steps], rtol=0, atol=1e-5)
        assert [e["step"] for e in history["validation"]] == list(range(0, steps + 1, 2))
        assert printed[0].startswith(f"N on names: {steps} steps in ") and printed[1] == ""
    final = json.loads((tmp_path / "b" / "results.json").read_text())["metrics"]
    assert final["test"]["bits_per_char"] == pytest.approx(single.test["bits_per_char"], abs=1e-5)
    assert load_model(tmp_path / "b" / "checkpoint.pt").state_dict().keys() == single.net.state_dict().keys()


def test_rnndsl_train_refuses_a_batch_the_ranks_cannot_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "n.rnn"
    spec.write_text(NAMES_SPEC)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", str(spec), "--task", "names", "--batch", "30", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == (
        "rnndsl train: error: the global batch (30 sequences, --batch) does not split "
        "evenly over the 4 processes (WORLD_SIZE); give a multiple of 4, such as 28 "
        "or 32\n"
    )
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed without gloo")
def test_torchrun_rnndsl_train(tmp_path: Path) -> None:
    """The real thing: `python -m torch.distributed.run --standalone --nproc-per-node 2 -m rnndsl train ...`.
    About 15 to 25 s here: torchrun and each rank import torch (and dynamo, and matplotlib on rank 0)."""
    spec = tmp_path / "add.rnn"
    spec.write_text(
        "network A { input x: 2\n layer h: 8 tanh <- x, h[t-1]\n layer y: 1 <- h\n layer z: 2 <- h\n"
        " output y last\n output z }"
    )
    task = [
        "--task",
        "adding",
        "--task-arg",
        "length=6",
        "--task-arg",
        "validation_size=16",
        "--task-arg",
        "test_size=16",
    ]
    single = train_run(
        spec, Adding(length=6, validation_size=16, test_size=16), TrainConfig(steps=20, batch=8, lr=1e-2, eval_every=5)
    )
    here = tmp_path / "cwd"
    here.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(WORLD),
        "-m",
        "rnndsl",
        "train",
        str(spec),
        *task,
        "--steps",
        "20",
        "--batch",
        "8",
        "--lr",
        "1e-2",
        "--eval-every",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(command, cwd=here, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("A on adding: 20 steps in ") == 1 and not any(here.iterdir())
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "curves.png", "results.json"]
    losses = json.loads((tmp_path / "run" / "results.json").read_text())["history"]["loss"]
    torch.testing.assert_close(losses, single.losses, rtol=0, atol=1e-5)
