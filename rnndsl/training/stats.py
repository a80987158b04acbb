"""Statistics over seeds: takes a metric's values over the runs of each spec, gives mean, standard deviation
and a 95% interval per spec, and Welch's t-test between specs (p-values Holm-adjusted over the pairs).

scipy gives the t distribution and the test; it comes with `pip install 'rnndsl[experiments]'`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TEST_NAME", "Difference", "Summary", "differences", "require_scipy", "summarize"]

TEST_NAME = "Welch's t-test"
ALPHA = 0.05


def require_scipy() -> Any:
    """scipy.stats, or an ImportError naming the extra to install (checked before any run starts)."""
    try:
        from scipy import stats
    except ImportError as err:
        raise ImportError(
            "--seeds reports intervals and Welch's t-test with scipy: pip install 'rnndsl[experiments]'"
        ) from err
    return stats


@dataclass(frozen=True)
class Summary:
    """A metric over n runs: mean, sample standard deviation, and the 95% t interval of the mean (nan for
    the standard deviation and interval of a single run)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    def show(self, digits: int = 4) -> str:
        """`0.8123 ± 0.0112 [0.7985, 0.8262]`, or the value alone for one run."""
        if self.n < 2 or math.isnan(self.sd):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def summarize(values: Sequence[float]) -> Summary:
    """Mean, standard deviation (n-1) and the 95% interval of the mean from Student's t with n-1 degrees.

    >>> s = summarize([1.0, 2.0, 3.0])
    >>> round(s.mean, 4), round(s.sd, 4), round(s.low, 4), round(s.high, 4)
    (2.0, 1.0, -0.4841, 4.4841)
    """
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(require_scipy().t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """Spec `a` against spec `b` on one metric: the difference of the means (a - b), Welch's p-value and the
    Holm-adjusted one (nan when a test is impossible: fewer than two runs, or no variance on either side)."""

    a: str
    b: str
    difference: float
    p: float
    adjusted: float

    @property
    def significant(self) -> bool:
        return self.adjusted < ALPHA


def differences(groups: Sequence[tuple[str, Sequence[float]]]) -> list[Difference]:
    """Welch's t-test between every pair of groups, p-values adjusted by Holm's method over the pairs (so
    that, over all of them, the chance of calling any equal pair different stays below 5%).

    >>> [(d.a, d.b, round(d.difference, 2), d.significant) for d in differences([("x", [1.0, 1.1, 0.9]),
    ...     ("y", [2.0, 2.1, 1.9]), ("z", [1.0, 1.2, 0.8])])]
    [('x', 'y', -1.0, True), ('x', 'z', 0.0, False), ('y', 'z', 1.0, True)]
    """
    stats = require_scipy()
    pairs = []
    for i, (a, va) in enumerate(groups):
        for b, vb in groups[i + 1 :]:
            p = math.nan
            if len(va) > 1 and len(vb) > 1 and (_spread(va) or _spread(vb)):
                with warnings.catch_warnings():  # one side without spread: scipy warns, and the test still holds
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
            pairs.append((a, b, math.fsum(va) / len(va) - math.fsum(vb) / len(vb), p))
    adjusted = _holm([p for *_, p in pairs])
    return [Difference(a, b, d, p, q) for (a, b, d, p), q in zip(pairs, adjusted, strict=True)]


def _spread(values: Sequence[float]) -> bool:
    return max(values) > min(values)


def _holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment; nan stays nan and does not count as a test."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out
