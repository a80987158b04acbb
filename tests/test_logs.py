"""TensorBoard logs: `--tensorboard` writes event files that TensorBoard reads back (every step's loss, each
evaluation, the test metrics), a resumed run's events replace what the stopped run logged past its
checkpoint, and without the tensorboard package the option is one clear message before anything runs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rnndsl.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # as the commands run: one thread

pytest.importorskip("matplotlib")

SPEC = "network Tiny {\n input x: 3\n layer h: 6 tanh <- x, h[t-1]\n layer y: 2 <- h\n output y last\n}\n"


def _setup(tmp_path: Path) -> list[str]:
    g = np.random.default_rng(0)
    x = g.normal(size=(40, 5, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, :, 0].sum(1) > 0).astype(np.int64))
    (tmp_path / "t.rnn").write_text(SPEC)
    return ["train", str(tmp_path / "t.rnn"), "--data", str(tmp_path / "d.npz"), "--batch", "8", "--quiet"]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_events_hold_the_run_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    train = _setup(tmp_path)
    out = tmp_path / "run"
    assert main([*train, "--steps", "3", "--eval-every", "3", "--out", str(out), "--tensorboard"]) == 0
    assert f"{out / 'curves.png'}, {out / 'tensorboard'}\n" in capsys.readouterr().out
    shutil.copy(out / "checkpoint.pt", tmp_path / "at3.pt")
    resume = ["--resume", str(out / "checkpoint.pt"), "--steps", "6", "--tensorboard"]
    assert main([*train, *resume]) == 0
    first = _scalars(out / "tensorboard")
    # the run goes back to its step-3 checkpoint, as one killed after step 6 would, and trains steps 4-6 again
    shutil.copy(tmp_path / "at3.pt", out / "checkpoint.pt")
    assert main([*train, *resume]) == 0
    scalars = _scalars(out / "tensorboard")
    assert set(scalars) == {"train/loss", "validation/accuracy", "validation/loss", "test/accuracy", "test/loss"}
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]  # each step once
    assert scalars["train/loss"] == first["train/loss"]
    assert [step for step, _ in scalars["validation/accuracy"]] == [0, 3, 6]
    results = json.loads((out / "results.json").read_text())
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], results["history"]["loss"], rtol=1e-6)
    assert scalars["test/accuracy"][-1] == (6, pytest.approx(results["metrics"]["test"]["accuracy"]))


def test_without_tensorboard_the_option_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _setup(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what an environment without it gives: ImportError
    out = tmp_path / "run"
    assert main([*train, "--steps", "2", "--out", str(out), "--tensorboard"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "rnndsl train: error: --tensorboard writes event files with the tensorboard package, which is not "
        "installed: pip install 'rnndsl[experiments]' (or pip install tensorboard), or leave --tensorboard out\n"
    )
    assert not out.exists()
    assert main([*train, "--steps", "2", "--out", str(out)]) == 0  # without the option nothing needs it
