"""The benchmark at the tiny size: every case runs, matches rnndsl's numbers, and lands in both files.

A smoke test only (it times nothing worth reading): it keeps `python -m benchmarks.bench` working.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import rnndsl  # noqa: E402
from benchmarks import bench, floor, memory  # noqa: E402
from benchmarks.cases import CASES  # noqa: E402

# the memory comparison starts three fresh Pythons: its child is tested in-process below instead
TINY = [
    "--size",
    "tiny",
    "--threads",
    "1",
    "--repeat",
    "1",
    "--min-repeat",
    "1",
    "--memory-size",
    "none",
    "--spec-steps",
    "10",
    "20",
    "--no-cold-start",
]


def test_bench_writes_every_case(tmp_path: Path) -> None:
    stem = tmp_path / "perf"
    assert bench.main([*TINY, "--out", str(stem)]) == 0
    data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    text = stem.with_suffix(".md").read_text(encoding="utf-8")

    rows = {row["case"]: row for row in data["cases"]}
    assert set(rows) == set(CASES)
    for name, row in rows.items():
        expected = {"rnndsl", "plain loop", "hand-optimised", "hand-optimised TorchScript"}
        if not CASES[name].custom:
            expected.add("torch.nn")
        if CASES[name].custom:  # the generated torch loop beside the kernels (linear scan, C steps)
            expected.add("rnndsl generated loop")
        assert set(row["impls"]) == expected, name
        for impl, times in row["impls"].items():
            assert times["forward_ms"] > 0 and times["train_ms"] > 0, (name, impl)
        assert all(d <= 1e-4 for d in row["max_abs_diff"].values()), name
        assert f"| {name} " in text

    examples = sorted(p.name for p in (ROOT / "examples").glob("*.rnn"))
    assert sorted({r["spec"] for r in data["spec_compile"]}) == examples
    assert {r["steps"] for r in data["spec_compile"]} == {10, 20}
    assert [t["key"] for t in data["targets"]] == ["cells", "plain", "hand", "linear", "compile", "memory"]
    assert data["linear_kernel_build_s"] is None or 0 < data["linear_kernel_build_s"] < 120
    assert data["step_kernel_build_s"] is None or 0 < data["step_kernel_build_s"] < 120
    for heading in (
        "## Targets",
        "## Time ratios, tiny",
        "## Compile time of the example specs",
        "## Training-step memory (LSTM spec)",
        "below 1.0 means rnndsl is faster",
    ):
        assert heading in text


def test_memory_child_reports_a_peak(capsys: object) -> None:
    """At the tiny size the step's rise is below what the RSS figures resolve: Linux counts RSS per thread or per
    CPU and folds the counts in batches, so VmRSS and VmHWM read a few pages off (run in this process, not a
    fresh one, 2 of 20 runs read -8 KiB and -32 KiB)."""
    for impl in memory.IMPLS:
        assert memory.main(["--impl", impl, "--size", "tiny"]) == 0
        row = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
        assert row["impl"] == impl and row["method"]
        assert row["peak_bytes"] is None or row["peak_bytes"] >= -(1 << 20)


def test_bench_prints_without_writing(tmp_path: Path, capsys: object, monkeypatch: object) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[attr-defined]
    assert bench.main([*TINY, "--case", "jordan", "--spec-steps", "--out", "-"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "| jordan " in out and "## Targets" in out
    assert not list(tmp_path.iterdir())


def test_floor_counts_each_loop_source_once_a_step(capsys: object) -> None:
    """Top-down: a reads x (hoisted), a[t-1], b[t-1]; b reads a and b[t-1]: four per-step products, one hoisted."""
    kinds = [what.rsplit(" ", 2)[-2:] for what, _ in floor.products("topdown", "tiny")]
    assert kinds.count(["per", "step"]) == 4 and kinds.count(["0", "hoisted"]) == 1
    assert floor.main(["--size", "tiny", "--case", "topdown", "--repeat", "1"]) == 0
    assert "| topdown |" in capsys.readouterr().out  # type: ignore[attr-defined]


def test_custom_cell_cases_are_the_example_specs() -> None:
    """The layer-norm LSTM and IndRNN cases are examples/ at the examples' sizes (32 in, 128 hidden)."""
    for name, example in (("layernorm_lstm", "layernorm_lstm.rnn"), ("indrnn", "indrnn.rnn")):
        ours = rnndsl.compile(CASES[name].spec(32, 128))
        theirs = rnndsl.compile(ROOT / "examples" / example)
        assert ours.code(grad=True) == theirs.code(grad=True), name


def test_deploy_benchmark_writes_its_section_and_bench_keeps_it(tmp_path: Path) -> None:
    from benchmarks import deploy

    perf = tmp_path / "perf.md"
    perf.write_text("# Performance\n\nbench's own text\n", encoding="utf-8")
    assert deploy.main(["--size", "tiny", "--case", "jordan", "--repeat", "1", "--write", str(perf)]) == 0
    text = perf.read_text(encoding="utf-8")
    assert text.startswith("# Performance\n\nbench's own text\n") and deploy.MARK in text
    assert "| jordan | tiny (4, 6, 8, 8) |" in text
    assert deploy.kept_section(perf) == "\n" + text[text.index(deploy.MARK) :]
    deploy.write_section(perf, ["## again"])  # a second run replaces the section, not the text before it
    assert perf.read_text(encoding="utf-8") == f"# Performance\n\nbench's own text\n\n{deploy.MARK}\n## again\n"


def test_attention_benchmark_checks_and_times(capsys: object) -> None:
    """The hand-written decoder equals rnndsl's (checked inside) and both modes are timed."""
    from benchmarks import attention

    assert attention.main(["--batch", "3", "--letters", "4", "--phonemes", "3", "--repeat", "1"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "| forward |" in out and "| forward+backward |" in out


def test_every_target_has_its_reason_for_a_miss() -> None:
    """A missed target prints its reason (`report.REASONS`); a target without one crashed a 17-minute run."""
    from benchmarks import report

    keys = {t["key"] for t in report.targets({"cases": []})}
    assert keys <= set(report.REASONS), keys - set(report.REASONS)


def test_linear_scan_benchmark_runs(capsys: Any) -> None:
    from benchmarks import linear_scan

    assert linear_scan.main(["--batch", "2", "--steps", "5", "--hidden", "3", "--repeat", "1"]) == 0
    assert "linear_scan:" in capsys.readouterr().out


def test_native_ab_runs_each_choice(capsys: Any) -> None:
    """`python -m benchmarks.native_ab`: both variants of each choice run (their code is what the choice says)."""
    from benchmarks import native_ab

    for choice, case in (("whole", "indrnn"), ("rings", "layernorm_lstm"), ("scan", "qrnn")):
        argv = [choice, "--case", case, "--size", "tiny", "--threads", "1", "--repeat", "1"]
        assert native_ab.main(argv) == 0
        assert f"{case:15} tiny" in capsys.readouterr().out
    spec = CASES["indrnn"].spec(3, 4)
    with native_ab._per_step():
        assert "K.run_whole(" not in rnndsl.compile(spec).code(grad=True)
    assert "K.run_whole(" in rnndsl.compile(spec).code(grad=True)


def test_calls_ab_runs_both_variants(capsys: Any) -> None:
    """`python -m benchmarks.calls`: A validates every call, B skips matching ones."""
    from benchmarks import calls

    net = rnndsl.compile(CASES["elman"].spec(3, 4))
    x = torch.randn(2, 1, 3)
    net(x)
    with calls._validating():
        net(x)
        assert "_seen" in net.__dict__ and net.__dict__["_seen"] is None
    net(x)
    assert net.__dict__["_seen"] is not None
    assert calls.main(["--case", "elman", "--calls", "1", "--repeat", "1"]) == 0
    assert calls.main(["--streaming", "--example", "elman", "--steps", "2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "elman fwd+bwd" in out and "elman.rnn 2 steps" in out and "names_gen beam" in out
