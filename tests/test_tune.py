"""Tuning: `rnndsl tune` (an Optuna study in SQLite in the run folder, continued by a second command, shared by
two processes at once, refused to another spec), `compare --tune` (each spec trained at its own best), and
the hook that lets a trial be pruned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnndsl.cli import main
from rnndsl.tasks import Data
from rnndsl.training import TrainConfig, train
from rnndsl.training.options import SPACE_NAMES
from rnndsl.training.tune import SPACE, startup_trials

pytestmark = pytest.mark.usefixtures("one_thread")  # as the commands run: one thread

optuna = pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

QUICK = ["--steps", "6", "--batch", "8", "--eval-every", "3", "--quiet"]


def _study(path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


def test_tune_keeps_its_study_in_the_run_folder_and_continues_it(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, b = tiny_data
    out = tmp_path / "tune"
    command = ["tune", str(a), "--data", str(data), *QUICK, "--trials", "3", "--tune", "lr,clip", "--out", str(out)]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"study.db", "tune.md", "best.json"}
    study = _study(out / "study.db", "a-d")
    assert len(study.trials) == 3 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = json.loads((out / "best.json").read_text())
    assert best["best"]["value"] == max(t.value for t in study.trials if t.value is not None)
    assert best["best"]["params"] == study.best_trial.params and set(best["best"]["params"]) == {"lr", "clip"}
    assert best["train"]["lr"] == study.best_trial.params["lr"] and best["train"]["steps"] == 6
    for t in study.trials:  # within the search space
        assert 1e-4 <= t.params["lr"] <= 3e-2 and 0.1 <= t.params["clip"] <= 10
    assert f"best of 3 trials in study `a-d`: trial {best['best']['trial']}, validation accuracy " in printed
    assert f"train with it: rnndsl train {a} --data {data} --steps 6 --batch 8 --lr " in printed
    assert "| trial | state | lr | clip | validation accuracy | last step | worker |" in (out / "tune.md").read_text()
    # the trial's value is a training run's: the same options give the same validation accuracy
    config = TrainConfig(**best["train"])
    again = train(a, Data(path=str(data)), config)
    assert again.validation["accuracy"] == pytest.approx(best["best"]["value"])
    # alone, a search proposes the same options every time
    assert main([*command[:-2], "--out", str(tmp_path / "again")]) == 0
    repeated = _study(tmp_path / "again" / "study.db", "a-d")
    assert [t.params for t in repeated.trials] == [t.params for t in study.trials]
    assert [t.value for t in repeated.trials] == [t.value for t in study.trials]
    # the same command again continues the study; another spec is refused it
    assert main([*command[:-2], "--trials", "2", "--out", str(out)]) == 0
    assert len(_study(out / "study.db", "a-d").trials) == 5
    capsys.readouterr()
    assert main(["tune", str(b), "--data", str(data), *QUICK, "--out", str(out), "--study", "a-d"]) == 1
    err = capsys.readouterr().err
    assert "study `a-d` (sqlite:///" in err and "searches for another run, so its trials are not comparable" in err
    assert "spec_sha256: " in err and "give another --study NAME or --out DIR" in err


def test_two_processes_search_one_sqlite_study(tiny_data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, a, _ = tiny_data
    db = tmp_path / "shared.db"
    command = [
        sys.executable, "-m", "rnndsl", "tune", str(a), "--data", str(data), *QUICK, "--trials", "3",
        "--storage", f"sqlite:///{db}", "--study", "shared",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for i in range(2)
    ]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()
    study = _study(db, "shared")
    assert sorted(t.number for t in study.trials) == list(range(6))  # each process ran its 3, numbered as one
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    assert len({t.params["lr"] for t in study.trials}) == 6  # no process repeated the other's proposals
    for i in range(2):  # each report shows the whole study
        assert json.loads((tmp_path / f"w{i}" / "best.json").read_text())["trials"]["complete"] <= 6


def test_compare_tune_trains_each_spec_at_its_own_best(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, b = tiny_data
    out = tmp_path / "cmp"
    command = ["compare", str(a), str(b), "--data", str(data), *QUICK, "--tune", "lr", "--trials", "2"]
    assert main([*command, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "compare.json").read_text())
    for label, spec in (("a", a), ("b", b)):
        study = _study(out / label / "study.db", f"{label}-d")
        assert len(study.trials) == 2
        assert summary["tuned"][str(spec)]["params"] == study.best_trial.params
        run = json.loads((out / label / "results.json").read_text())
        assert run["train"]["lr"] == study.best_trial.params["lr"]
        assert summary["tuned"][str(spec)]["trials"] == 2
        best = f"lr={study.best_trial.params['lr']:.4g} (trial {study.best_trial.number} of the 2 its study holds"
        assert f"- `{spec}`: {best}" in printed
    assert "lr" not in summary["train"]  # not the first spec's tuned lr, as if every spec had trained at it
    assert "searched with Optuna (TPE sampler, median pruner; trials of 6 steps, 2 a spec in this call" in printed


def test_compare_tunes_the_specs_in_parallel_with_the_same_results(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """--jobs 2 searches the two specs' studies in two processes at once: the same trials, the same best."""
    data, a, b = tiny_data
    command = ["compare", str(a), str(b), "--data", str(data), *QUICK, "--tune", "lr", "--trials", "3"]
    found = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main([*command, "--jobs", jobs, "--out", str(out)]) == 0
        studies = [_study(out / label / "study.db", f"{label}-d") for label in ("a", "b")]
        found.append([[(t.params, t.value) for t in s.trials] for s in studies])
    assert found[0] == found[1]


def test_a_trial_stops_where_the_pruner_says(tiny_data: tuple[Path, Path, Path]) -> None:
    """The hook a trial reports through: called after each evaluation past step 0; raising there ends the run."""
    data, a, _ = tiny_data
    seen: list[int] = []

    def report(step: int, metrics: dict[str, float]) -> None:
        seen.append(step)
        assert set(metrics) == {"accuracy", "loss"}
        if step == 4:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        train(a, Data(path=str(data)), TrainConfig(steps=10, batch=8, eval_every=2), on_evaluation=report)
    assert seen == [2, 4]


def test_a_trial_is_pruned_only_before_its_last_step(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pruner that stops every trial it is asked about: a trial evaluated at steps 3 and 6 of 6 stops at 3; one
    evaluated only at its end (--eval-every 0) trained every step, and is complete, not pruned at step 6."""

    class Always(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **kw: Always())
    data, a, _ = tiny_data
    base = ["tune", str(a), "--data", str(data), "--steps", "6", "--batch", "8", "--trials", "2", "-q"]
    assert main([*base, "--eval-every", "3", "--out", str(tmp_path / "p")]) == 1  # no trial finished
    assert main([*base, "--eval-every", "0", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "best.json").read_text())["trials"]["complete"] == 2


def test_tune_options_are_checked(
    tiny_data: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, _ = tiny_data
    assert tuple(SPACE) == SPACE_NAMES  # the command line names the search space without importing it
    assert main(["tune", str(a), "--data", str(data), "--tune", "lr,momentum"]) == 1
    assert "--tune takes options to search, comma-separated, among: lr (log-uniform in [1e-4, 3e-2]);" in (
        capsys.readouterr().err
    )
    assert main(["tune", str(a), "--data", str(data), "--trials", "0"]) == 1
    assert "--trials takes a whole number >= 1, got 0" in capsys.readouterr().err
    for url in ("bogus://x", f"sqlite:///{tiny_data[0].parent}/no/such/folder/s.db"):  # not a traceback
        assert main(["tune", str(a), "--data", str(data), "--trials", "1", "--storage", url, "-q"]) == 1
        said = capsys.readouterr().err
        assert said.startswith(f"rnndsl tune: error: --storage {url}: cannot open it as a study's database (")
        assert said.endswith("expected a database URL such as sqlite:///study.db, in a folder that exists\n")
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(["tune", str(a), "--data", str(data)]) == 1
    assert (
        capsys.readouterr().err
        == "rnndsl tune: error: tuning searches with Optuna: pip install 'rnndsl[experiments]'\n"
    )


def test_tpe_models_the_results_after_half_the_trials() -> None:
    """A short search is not all random start-up (Optuna's default is 10 random trials)."""
    assert [startup_trials(n) for n in (1, 4, 6, 12, 20, 40)] == [3, 3, 3, 6, 10, 10]
