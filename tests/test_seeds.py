"""Several seeds: `train --seeds N` and `compare --seeds N --jobs J` (the runs, the table of means, sds and
95% intervals checked against the runs' own results.json, Welch's t-test between specs, the band plot),
the same numbers (to float32 rounding) from the same command with one process or several, and the statistics
themselves."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from rnndsl.cli import main
from rnndsl.training.stats import _holm, differences, summarize

pytestmark = pytest.mark.usefixtures("one_thread")  # as the commands run: one thread

scipy_stats = pytest.importorskip("scipy.stats")
pytest.importorskip("matplotlib")

QUICK = ["--steps", "6", "--batch", "8", "--eval-every", "3", "--lr", "0.02", "--quiet"]


def _metrics(summary: dict) -> list:
    """What the same command must give again: every run's metrics (the times differ)."""
    runs = [[{k: v for k, v in run.items() if k != "out"} for run in s["runs"]] for s in summary["specs"]]
    return [runs, [s["summary"] for s in summary["specs"]], summary["differences"]]


def _same_to_rounding(a: object, b: object, where: str = "") -> None:
    """`a == b` but for floats, equal to float32 rounding: a spawned worker rarely rounds a weight gradient's
    matrix product differently from another process (seen in 1 of 60 `compare --jobs 2` runs of this test's
    command on a 2-core AMD EPYC, 1 of 9 of this test on another machine: the last step's gradients of the
    three weights, ~1e-8 relative; histories, biases and accuracies equal; not found in the code generated,
    which is the same in every process, nor in the inputs' alignment)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same_to_rounding(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_to_rounding(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_train_seeds_summarises_its_runs(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, _ = tiny_data
    out = tmp_path / "runs"
    assert main(["train", str(a), "--data", str(data), *QUICK, "--seeds", "3", "--seed", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"seed-5", "seed-6", "seed-7", "seeds.md", "seeds.json", "curves.png"}
    runs = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (5, 6, 7)]
    assert [r["train"]["seed"] for r in runs] == [5, 6, 7]
    assert len({tuple(r["history"]["loss"]) for r in runs}) == 3  # the seeds give different runs
    summary = json.loads((out / "seeds.json").read_text())
    for split in ("validation", "test"):
        for metric in ("accuracy", "loss"):
            values = [r["metrics"][split][metric] for r in runs]
            got = summary["specs"][0]["summary"][split][metric]
            low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy_stats.sem(values))
            assert got["mean"] == pytest.approx(np.mean(values)) and got["sd"] == pytest.approx(np.std(values, ddof=1))
            assert (got["low"], got["high"]) == (pytest.approx(low), pytest.approx(high))
    test = summary["specs"][0]["summary"]["test"]["accuracy"]
    row = f"| `{a}` | Tiny | 114 | 3 | "
    assert (
        row in printed and f"{test['mean']:.4f} ± {test['sd']:.4f} [{test['low']:.4f}, {test['high']:.4f}]" in printed
    )
    assert "over 3 runs (parameter seeds 5..7) [95% interval of the mean, Student's t]" in printed
    assert (out / "seeds.md").read_text().endswith((out / "seeds.md").read_text().split("\n\n", 1)[1])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_seeds_the_same_numbers_with_one_process_or_two(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, b = tiny_data
    command = ["compare", str(a), str(b), "--data", str(data), *QUICK, "--seeds", "2"]
    assert main([*command, "--out", str(tmp_path / "one")]) == 0  # in this process, one run after another
    printed = capsys.readouterr().out
    assert main([*command, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0  # two worker processes
    one, two = (json.loads((tmp_path / d / "compare.json").read_text()) for d in ("one", "two"))
    _same_to_rounding(_metrics(one), _metrics(two))
    assert {p.name for p in (tmp_path / "two").iterdir()} == {"a", "b", "compare.md", "compare.json", "compare.png"}
    assert {p.name for p in (tmp_path / "two" / "a").iterdir()} == {"seed-0", "seed-1"}
    (diff,) = one["differences"]
    va, vb = ([r["test"]["accuracy"] for r in s["runs"]] for s in one["specs"])
    if np.ptp(va) or np.ptp(vb):
        with warnings.catch_warnings():  # scipy warns when one side has no spread; the test still holds
            warnings.simplefilter("ignore", RuntimeWarning)
            assert diff["p"] == pytest.approx(scipy_stats.ttest_ind(va, vb, equal_var=False).pvalue)
    assert "| spec | network | parameters | runs | validation accuracy | test accuracy | test loss | time |" in printed
    assert "Welch's t-test between the specs on the test accuracy (p-values adjusted over the 1 pair" in printed
    assert f"| `{a}` | `{b}` | {diff['difference']:+.4f} | " in printed


def test_compare_jobs_with_one_seed_keeps_each_run_in_its_folder(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, _ = tiny_data
    out = tmp_path / "c"
    assert main(["compare", str(a), "--data", str(data), *QUICK, "--jobs", "2", "--out", str(out)]) == 0
    assert (out / "a" / "checkpoint.pt").exists() and (out / "a" / "results.json").exists()
    printed = capsys.readouterr().out
    assert "One run of each spec (parameter seed 0): give --seeds N for intervals and tests." in printed


def test_a_spec_given_twice_is_named_by_its_folder_in_the_tables(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, _ = tiny_data
    out = tmp_path / "twice"
    assert main(["compare", str(a), str(a), "--data", str(data), *QUICK, "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"| `{a} (a-1)` |" in printed and f"| `{a} (a-2)` |" in printed  # both rows were `a.rnn`
    assert f"`{a} (a-1)` | `{a} (a-2)` |" in printed
    summary = json.loads((out / "compare.json").read_text())
    assert [s["spec"] for s in summary["specs"]] == [f"{a} (a-1)", f"{a} (a-2)"]


def test_seed_options_are_checked(
    tiny_data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, a, _ = tiny_data
    for flag in ("--seeds", "--jobs"):
        assert main(["compare", str(a), "--data", str(data), flag, "0"]) == 1
        assert f"{flag} takes a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["train", str(a), "--data", str(data), "--jobs", "2"]) == 1
    assert "--jobs J trains several runs at once: give --seeds N for several runs of the spec" in (
        capsys.readouterr().err
    )
    assert main(["train", str(a), "--data", str(data), "--seeds", "2", "--resume", "x.pt"]) == 1
    assert "--resume continues one run: resume each seed's run on its own" in capsys.readouterr().err
    out = tmp_path / "r"
    assert main(["train", str(a), "--data", str(data), *QUICK, "--seeds", "2", "--out", str(out)]) == 0
    assert main(["train", str(a), "--data", str(data), *QUICK, "--seeds", "2", "--out", str(out)]) == 1
    assert f"{out} already holds seeds.json, seeds.md, curves.png of earlier runs" in capsys.readouterr().err


def test_without_scipy_the_extra_is_named_before_anything_runs(
    tiny_data: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, a, b = tiny_data
    monkeypatch.setitem(sys.modules, "scipy", None)  # what an environment without scipy gives: ImportError
    out = tmp_path / "c"
    assert main(["compare", str(a), str(b), "--data", str(data), *QUICK, "--seeds", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        "rnndsl compare: error: --seeds reports intervals and Welch's t-test with scipy: "
        "pip install 'rnndsl[experiments]'" in err
    )
    assert not out.exists()


# ---- the statistics --------------------------------------------------------------------------------


def test_summaries_and_tests() -> None:
    s = summarize([0.8, 0.82, 0.79, 0.81])
    low, high = scipy_stats.t.interval(0.95, 3, loc=0.805, scale=scipy_stats.sem([0.8, 0.82, 0.79, 0.81]))
    assert (s.mean, s.low, s.high) == (pytest.approx(0.805), pytest.approx(low), pytest.approx(high))
    assert s.show() == "0.8050 ± 0.0129 [0.7845, 0.8255]"
    one = summarize([0.5])
    assert math.isnan(one.sd) and one.show() == "0.5000"
    # Holm: sorted p 0.01, 0.03, 0.04 times 3, 2, 1, each at least the one before
    assert _holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(_holm([math.nan, 0.2])[0]) and _holm([math.nan, 0.2])[1] == 0.2
    (same,) = differences([("a", [1.0, 1.0]), ("b", [1.0, 1.0])])
    assert math.isnan(same.p) and not same.significant
    g = np.random.default_rng(0)
    far, near = g.normal(0, 1, 10).tolist(), g.normal(3, 1, 10).tolist()
    (d,) = differences([("a", far), ("b", near)])
    assert d.significant and d.p == pytest.approx(scipy_stats.ttest_ind(far, near, equal_var=False).pvalue)
