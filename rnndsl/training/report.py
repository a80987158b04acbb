"""Reports: takes finished runs, gives results.json, learning-curve PNGs and a markdown comparison table
(over seeds: each metric's mean ± sd with its 95% interval, the tests between specs, mean curves with bands);
takes attention weights, gives an alignment heatmap PNG (`rnndsl generate` on a g2p model with attention).

Plots use matplotlib's Agg backend (no display needed); every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnndsl.training.checkpoint import atomic_write
from rnndsl.training.result import Result

__all__ = [
    "Alignment",
    "Group",
    "markdown_table",
    "figure_format",
    "plot_alignments",
    "plot_curves",
    "plot_seed_curves",
    "require_matplotlib",
    "seeds_summary",
    "seeds_table",
    "write_run",
]


def write_run(result: Result, out: Path) -> None:
    """results.json and curves.png of one run into `out`."""
    text = json.dumps(result.to_json(), indent=1, allow_nan=True) + "\n"
    atomic_write(out / "results.json", lambda f: f.write(text.encode("utf-8")))
    plot_curves([result], out / "curves.png")


def require_matplotlib() -> Any:
    """matplotlib, or an ImportError that names the extra to install (checked before a run starts)."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "rnndsl writes its learning curves (curves.png) with matplotlib: pip install 'rnndsl[plot]'"
        ) from err
    return matplotlib


def plot_curves(results: Sequence[Result], path: Path, labels: Sequence[str] | None = None) -> Path:
    """Training loss (left) and the validation's primary metric (right) over steps, one line per run."""
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels) if labels is not None else [r.network for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for result, label in zip(results, labels, strict=True):
        steps = range(1, len(result.losses) + 1)
        (line,) = left.plot(steps, _smooth(result.losses), label=label, linewidth=1.2)
        left.plot(steps, result.losses, color=line.get_color(), alpha=0.2, linewidth=0.6)
        evals = [e for e in result.evals if result.primary in e]
        right.plot(
            [e["step"] for e in evals],
            [e[result.primary] for e in evals],
            marker=".",
            label=label,
            color=line.get_color(),
        )
    metric = results[0].primary if results else ""
    left.set(xlabel="step", ylabel="training loss", title="training loss (raw, faint; smoothed)")
    right.set(xlabel="step", ylabel=metric, title=f"validation {metric}")
    if results and min(min(r.losses, default=1.0) for r in results) > 0:
        left.set_yscale("log")
    values = [e[metric] for r in results for e in r.evals if metric in e]
    if results and not results[0].higher_is_better and values and min(values) > 0:
        right.set_yscale("log")  # errors fall by orders of magnitude (mse); the first one would flatten the rest
    return _save_panels(fig, (left, right), path)


@dataclass(frozen=True)
class Alignment:
    """One heatmap of `plot_alignments`: `weights` (len(rows), len(columns)), row i what the output `rows[i]`
    (a phoneme said) weighed of each input `columns[j]` (a letter), as a nested sequence, array or tensor."""

    title: str
    columns: Sequence[str]
    rows: Sequence[str]
    weights: Any


def plot_alignments(
    alignments: Sequence[Alignment],
    path: Path,
    title: str = "",
    xlabel: str = "letters",
    ylabel: str = "phonemes said",
) -> Path:
    """A grid of heatmaps, one per alignment (five to a row), on one colour scale from 0 to 1.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "a.png"
    >>> plot_alignments([Alignment("ab", "ab", ["B", "."], [[0.9, 0.1], [0.2, 0.8]])], p).read_bytes()[:4]
    b'\\x89PNG'
    """
    if not alignments:
        raise ValueError("plot_alignments needs at least one alignment")
    kind = figure_format(path)
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ncols = min(len(alignments), 5)
    nrows = math.ceil(len(alignments) / ncols)
    widest = max(len(a.columns) for a in alignments)
    tallest = max(len(a.rows) for a in alignments)
    cell = 0.24  # inches: a letter's width and a phoneme's height
    size = (ncols * max(2.4, widest * cell + 0.9) + 1.0, nrows * max(2.2, tallest * cell + 1.0) + 0.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, constrained_layout=True)
    image = None
    for ax, alignment in zip(axes.flat, alignments, strict=False):
        weights = np.asarray(alignment.weights, dtype=float).reshape(len(alignment.rows), len(alignment.columns))
        image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
        ax.set_xticks(range(len(alignment.columns)), list(alignment.columns), fontsize=9)
        ax.set_yticks(range(len(alignment.rows)), list(alignment.rows), fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(alignment.title, fontsize=11)
    for ax in axes.flat[len(alignments) :]:
        ax.axis("off")
    assert image is not None
    fig.colorbar(image, ax=axes, shrink=min(1.0, 3.0 / size[1] + 0.3), label="attention weight")
    fig.supxlabel(xlabel, fontsize=10)
    fig.supylabel(ylabel, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_format(path: Path) -> str:
    """The format a figure's file name asks for (its suffix), or a ValueError naming the ones written."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in FIGURE_FORMATS:
        raise ValueError(f"{path}: a figure is written as {', '.join('.' + k for k in FIGURE_FORMATS)}")
    return kind


def _smooth(values: Sequence[float], window: int = 0) -> list[float]:
    """A trailing moving average over about 2% of the run (at least 1 step)."""
    window = window or max(1, len(values) // 50)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def markdown_table(results: Sequence[Result], labels: Sequence[str] | None = None) -> str:
    """One row per run: spec, network, parameters, validation and test metrics, time, steps/s."""
    labels = list(labels) if labels is not None else [r.spec for r in results]
    metrics = list(dict.fromkeys(k for r in results for k in r.test))
    primary = results[0].primary if results else ""
    head = [
        "spec",
        "network",
        "parameters",
        "steps",
        f"validation {primary}",
        *(f"test {m}" for m in metrics),
        "time",
        "steps/s",
    ]
    rows = [head, ["---"] * len(head)]
    for result, label in zip(results, labels, strict=True):
        steps = len(result.losses)
        rows.append(
            [
                f"`{label}`",
                result.network,
                f"{result.parameters:,}",
                str(steps),
                _number(result.validation.get(primary)),
                *(_number(result.test.get(m)) for m in metrics),
                f"{result.elapsed:.1f} s",
                f"{steps / result.elapsed:.1f}" if result.elapsed else "-",
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# ---- several seeds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """The runs of one spec over seeds: its label and each run's results.json record, in seed order."""

    label: str
    runs: Sequence[dict[str, Any]]

    @property
    def first(self) -> dict[str, Any]:
        return self.runs[0]

    def values(self, split: str, metric: str) -> list[float]:
        return [float(run["metrics"][split][metric]) for run in self.runs if metric in run["metrics"][split]]


def seeds_summary(groups: Sequence[Group]) -> dict[str, Any]:
    """Every run's metrics, each spec's summaries (mean, sd, 95% interval) and the tests between specs:
    what seeds.json / compare.json hold, and what `seeds_table` shows."""
    from rnndsl.training.stats import TEST_NAME, differences, summarize

    first = groups[0].first
    primary = first["primary_metric"]
    specs = []
    for group in groups:
        summaries = {
            split: {m: dataclasses.asdict(summarize(group.values(split, m))) for m in group.first["metrics"][split]}
            for split in ("validation", "test")
        }
        runs = [
            {"seed": r["train"]["seed"], "out": r.get("out"), **{s: r["metrics"][s] for s in ("validation", "test")}}
            for r in group.runs
        ]
        specs.append(
            {
                "spec": group.label,
                "network": group.first["network"],
                "parameters": group.first["parameters"],
                "runs": runs,
                "summary": summaries,
                "elapsed_s": [r["elapsed_s"] for r in group.runs],
            }
        )
    tests = differences([(g.label, g.values("test", primary)) for g in groups]) if len(groups) > 1 else []
    return {
        "task": first["task"],
        "train": {k: v for k, v in first["train"].items() if k != "seed"},
        "seeds": [r["train"]["seed"] for r in groups[0].runs],
        "primary_metric": primary,
        "higher_is_better": first["higher_is_better"],
        "specs": specs,
        "test": TEST_NAME,
        "differences": [{"metric": f"test {primary}", **dataclasses.asdict(d)} for d in tests],
    }


def seeds_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per spec, each metric as mean ± standard deviation [95% interval] over the seeds;
    then, for several specs, the test between each pair on the primary test metric."""
    from rnndsl.training.stats import ALPHA, Summary

    primary, specs = summary["primary_metric"], summary["specs"]
    metrics = list(dict.fromkeys(m for s in specs for m in s["summary"]["test"]))
    head = ["spec", "network", "parameters", "runs", f"validation {primary}", *(f"test {m}" for m in metrics), "time"]
    rows = [head, ["---"] * len(head)]
    for spec in specs:
        shown = {
            (split, m): Summary(**v).show()
            for split in ("validation", "test")
            for m, v in spec["summary"][split].items()
        }
        times = spec["elapsed_s"]
        rows.append(
            [
                f"`{spec['spec']}`",
                spec["network"],
                f"{spec['parameters']:,}",
                str(len(spec["runs"])),
                shown.get(("validation", primary), "-"),
                *(shown.get(("test", m), "-") for m in metrics),
                f"{sum(times) / len(times):.1f} s",
            ]
        )
    seeds = summary["seeds"]
    text = _rows(rows) + (
        f"\nEach metric: mean ± standard deviation over {len(seeds)} runs (parameter seeds "
        f"{seeds[0]}..{seeds[-1]}) [95% interval of the mean, Student's t]; time: the mean per run.\n"
        if len(seeds) > 1
        else f"\nOne run of each spec (parameter seed {seeds[0]}): give --seeds N for intervals and tests.\n"
    )
    if not summary["differences"]:
        return text
    pairs = [["spec", "against", f"difference in test {primary}", "p", "Holm-adjusted p", f"significant (< {ALPHA})"]]
    pairs.append(["---"] * len(pairs[0]))
    for d in summary["differences"]:
        pairs.append(
            [
                f"`{d['a']}`",
                f"`{d['b']}`",
                f"{d['difference']:+.4f}",
                _p(d["p"]),
                _p(d["adjusted"]),
                "-" if math.isnan(d["adjusted"]) else "yes" if d["adjusted"] < ALPHA else "no",
            ]
        )
    return (
        text + f"\n{summary['test']} between the specs on the test {primary} (p-values adjusted over the "
        f"{_pairs(sum(not math.isnan(d['adjusted']) for d in summary['differences']))} tested by Holm's method; - "
        "where a test needs two runs a side and some spread):\n\n" + _rows(pairs)
    )


def _pairs(count: int) -> str:
    return "1 pair" if count == 1 else f"{count} pairs"


def _rows(rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def plot_seed_curves(groups: Sequence[Group], path: Path) -> Path:
    """Training loss (left) and the validation's primary metric (right) over steps: one mean curve per spec
    with a band of ± one standard deviation over its seeds."""
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    primary = groups[0].first["primary_metric"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for group in groups:
        losses = np.array([_smooth(r["history"]["loss"]) for r in group.runs])
        steps = np.arange(1, losses.shape[1] + 1)
        label = f"{group.label} ({len(group.runs)} runs)"
        (line,) = left.plot(steps, losses.mean(0), label=label, linewidth=1.2)
        left.fill_between(steps, *_band(losses), color=line.get_color(), alpha=0.2, linewidth=0)
        evals = [[e for e in r["history"]["validation"] if primary in e] for r in group.runs]
        at = [e["step"] for e in evals[0]]
        values = np.array([[e[primary] for e in run] for run in evals])
        right.plot(at, values.mean(0), marker=".", label=label, color=line.get_color())
        right.fill_between(at, *_band(values), color=line.get_color(), alpha=0.2, linewidth=0)
    left.set(xlabel="step", ylabel="training loss", title="training loss (smoothed): mean ± sd over seeds")
    right.set(xlabel="step", ylabel=primary, title=f"validation {primary}: mean ± sd over seeds")
    if all(min(r["history"]["loss"], default=1.0) > 0 for g in groups for r in g.runs):
        left.set_yscale("log")
    scores = [e[primary] for g in groups for r in g.runs for e in r["history"]["validation"] if primary in e]
    if scores and min(scores) > 0 and max(scores) > 100 * min(scores):  # an mse from 1e-4 to 1: a log scale
        right.set_yscale("log")
    return _save_panels(fig, (left, right), path)


def _band(values: Any) -> tuple[Any, Any]:
    """mean - sd and mean + sd over the runs (axis 0); the mean alone for one run."""
    mean = values.mean(0)
    sd = values.std(0, ddof=1) if len(values) > 1 else 0 * mean
    return mean - sd, mean + sd


def _save_panels(fig: Any, axes: tuple[Any, ...], path: Path) -> Path:
    """Grid and legend on each panel, then the figure as a PNG written atomically (a reader never sees half)."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))
