"""How sure is a mean over a few cases? Percentile-bootstrap confidence intervals.

A mean Dice over three validation cases is one draw from many possible sets of three cases; the
bootstrap estimates how much it would move with other cases like these: draw ``n`` cases *with
replacement* from the ``n`` at hand, take the mean, repeat ``n_resamples`` times, and read the
2.5th and 97.5th percentiles of those means (the *percentile bootstrap*, Efron & Tibshirani,
"An Introduction to the Bootstrap", 1993, ch. 13). The draws come from a fixed seed, so the
same cases always give the same interval.

What it cannot do: with few cases the interval is itself unreliable and too narrow (3 cases
give only 10 distinct resampled means); below :data:`FEW_CASES` cases it is printed with a
warning, not hidden. Nor does it include the uncertainty of training (another seed, another
split): that is what cross-validation folds and repeated runs measure.

Infinite values (an HD95 or ASSD of ``inf``: a missed atrium, see :mod:`lasegtut.metrics`) are
kept, not dropped: every resample that draws the failed case has an infinite mean, so the upper
bound is ``inf``, and the lower bound is finite only when more than 2.5% of the resamples miss
that case (with ``n`` cases a resample misses a given case with probability ``(1 - 1/n)^n``,
about 0.35 for n >= 5). The interval ``[lo, inf]`` says "a failure is in there" as loudly as the
mean does. A NaN (a volume error against an empty label: undefined) makes the interval
``(nan, nan)``, like the mean, rather than an interval over the other cases that would look
like one over all of them.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import LasegError

#: Resamples of :func:`bootstrap_ci` (enough for the 2.5th percentile to move less than the
#: third decimal of a Dice between seeds).
N_RESAMPLES = 10_000
#: Fixed seed of the resampling: the same cases give the same interval on every machine.
SEED = 0
#: Below this many cases an interval is printed with a warning that it is too wide (and too
#: unreliable) to mean much.
FEW_CASES = 8


def _quantile_sorted(s: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of the sorted array ``s``, also where it
    holds ``inf`` (numpy's interpolation would give NaN between two infinities)."""
    pos = q * (len(s) - 1)
    i = int(math.floor(pos))
    frac = pos - i
    if frac == 0 or i + 1 >= len(s) or s[i] == s[i + 1]:
        return float(s[i])
    return float(s[i] + frac * (s[i + 1] - s[i]))


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (one value per case).

    Args:
        values: one number per case (any unit; ``inf`` allowed, see the module docstring).
        confidence: the interval's coverage, 0 < confidence < 1 (default 95%).
        n_resamples: number of resamples with replacement.
        seed: seed of :func:`numpy.random.default_rng`.

    Returns:
        ``(lo, hi)`` in the unit of ``values``; a single value gives ``(v, v)``; ``(nan, nan)``
        if a value is NaN.

    Raises:
        LasegError: no values, or a confidence / resample count out of range.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise LasegError("no values to bootstrap")
    if not 0 < confidence < 1:
        raise LasegError(f"confidence must be between 0 and 1, not {confidence}")
    if not (isinstance(n_resamples, int) and n_resamples >= 1):
        raise LasegError(f"the number of resamples must be a whole number >= 1, not {n_resamples}")
    if np.isnan(v).any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_resamples, v.size))
    with np.errstate(invalid="ignore"):
        means = np.sort(v[idx].mean(axis=1))  # inf + finite = inf; never -inf + inf for distances
    alpha = (1 - confidence) / 2
    return _quantile_sorted(means, alpha), _quantile_sorted(means, 1 - alpha)


def describe_bootstrap(n_cases: int, *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                       seed: int = SEED) -> str:
    """One line saying how the intervals were made, and a warning when there are too few cases."""
    text = (f"{confidence:.0%} intervals: percentile bootstrap over {n_cases} cases, {n_resamples} resamples, "
            f"seed {seed}")
    if n_cases < FEW_CASES:
        text += (f"; with only {n_cases} case{'s' if n_cases != 1 else ''} an interval means little: it is wide, "
                 f"and a bootstrap over so few cases still understates the uncertainty ({FEW_CASES} or more "
                 "cases are needed)")
    return text
