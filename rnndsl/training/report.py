"""Reports: takes finished runs, gives results.json, learning-curve PNGs and a markdown comparison table;
takes attention weights, gives an alignment heatmap PNG (`rnndsl generate` on a g2p model with attention).

Plots use matplotlib's Agg backend (no display needed); every file is written atomically.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnndsl.training.checkpoint import atomic_write
from rnndsl.training.result import Result

__all__ = ["Alignment", "markdown_table", "plot_alignments", "plot_curves", "require_matplotlib", "write_run"]


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
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


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
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


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
