"""Are the model's probabilities honest? Reliability curves and the expected calibration error.

A network's output in a voxel is a number in [0, 1] (the *probability map*, before the 0.5
threshold). It is **calibrated** when it can be read as a frequency: of all voxels given about
0.8, about 80 % are left atrium in the label. A model can segment well and still be badly
calibrated (typically over-confident: almost every voxel at 0 or 1, including the wrong ones).

- :func:`reliability_curve` bins the voxels by their predicted probability into ``n_bins``
  equal-width bins of [0, 1] and returns, per bin, the mean predicted probability
  (``confidence``) and the observed fraction of label voxels (``accuracy``, the observed
  frequency), with the number of voxels (``counts``): the points of a *reliability diagram*,
  on the diagonal for a calibrated model.
- :func:`expected_calibration_error` (ECE) is their gap weighted by the share of voxels in each
  bin, ``sum_b (n_b / N) |accuracy_b - confidence_b|``: 0 for a calibrated model, in units of
  probability (0..1).

This is the probability of the positive class (left atrium) against its frequency, the usual
reliability diagram of a binary segmentation; it is not the "top-label" confidence
``max(p, 1 - p)`` of multi-class classification. Bins: bin ``i`` holds ``i / n <= p < (i + 1) / n``,
the last bin also holds ``p = 1``.

**Where to measure.** Almost every voxel of a scan is far-away background that the model gives a
probability near 0 and is right about: over a whole scan the ECE is tiny whatever the model does
at the atrium's border. Pass ``region`` (a boolean mask of the same shape, or a box of slices such
as :func:`lasegtut.metrics.bounding_box` of the label with a margin) to measure where the decisions
are made.

Arrays are ``(x, y, z)`` volumes (any shape works, 2D too, as long as ``prob``, ``label`` and a mask
``region`` share it); probabilities are unitless in [0, 1]; the label counts any non-zero voxel as
left atrium, as :mod:`lasegtut.metrics` does. Temperature scaling (dividing the logits by a fitted
``T`` before the sigmoid) changes the probabilities, not the mask at 0.5; it is fitted and stored
with the weights elsewhere, not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import LasegError

#: Number of equal-width bins of [0, 1] used unless told otherwise (the usual choice in the literature).
DEFAULT_BINS = 10


@dataclass(frozen=True)
class ReliabilityCurve:
    """The points of a reliability diagram (all arrays of length ``n_bins`` but ``edges``).

    ``edges``: the ``n_bins + 1`` bin edges on [0, 1]; ``centres``: the bins' midpoints;
    ``confidence``: mean predicted probability of the voxels in each bin; ``accuracy``: fraction
    of them that are left atrium in the label (the observed frequency); ``counts``: voxels per bin.
    ``confidence`` and ``accuracy`` are NaN in an empty bin."""

    edges: np.ndarray
    centres: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def n_voxels(self) -> int:
        """How many voxels the curve was computed on (all bins together)."""
        return int(self.counts.sum())

    @property
    def ece(self) -> float:
        """The expected calibration error of these bins (see :func:`expected_calibration_error`)."""
        filled = self.counts > 0
        gap = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.counts[filled] * gap) / self.counts.sum())


def _values(prob: np.ndarray, label: np.ndarray, region) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities and the label (bool) of the voxels in ``region``, as flat arrays, checked."""
    p, lab = np.asarray(prob), np.asarray(label)
    if p.shape != lab.shape:
        raise LasegError(f"probability map {p.shape} and label {lab.shape} differ in shape")
    if region is not None:
        if isinstance(region, np.ndarray) and region.dtype == bool:
            if region.shape != p.shape:
                raise LasegError(f"region {region.shape} and probability map {p.shape} differ in shape")
        elif isinstance(region, (tuple, list)) and len(region) == p.ndim and all(isinstance(s, slice) for s in region):
            region = tuple(region)
        else:
            raise LasegError("region must be a boolean mask of the map's shape or one slice per axis "
                             "(e.g. lasegtut.metrics.bounding_box(label, margin))")
        p, lab = p[region], lab[region]
    p = np.asarray(p, dtype=np.float64).ravel()
    if p.size == 0:
        raise LasegError("no voxels to measure calibration on (an empty region?)")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise LasegError("probabilities must be finite and in [0, 1]")
    return p, np.asarray(lab).ravel() != 0


def reliability_curve(prob: np.ndarray, label: np.ndarray, n_bins: int = DEFAULT_BINS, *,
                      region: np.ndarray | Sequence[slice] | None = None) -> ReliabilityCurve:
    """Bin the voxels of ``prob`` (probability of left atrium, [0, 1]) into ``n_bins`` equal-width
    bins and compare, in each, the mean probability with the fraction of ``label`` voxels.

    Args:
        prob: probability map, any shape (an ``(x, y, z)`` volume), values in [0, 1].
        label: the reference mask of the same shape (non-zero = left atrium).
        n_bins: number of equal-width bins of [0, 1] (bin ``i``: ``i/n <= p < (i+1)/n``; ``p = 1``
            in the last).
        region: only these voxels: a boolean mask of the same shape, or one slice per axis (a box).

    Raises:
        LasegError: shapes differ, probabilities outside [0, 1] or not finite, an empty region,
            ``n_bins`` below 1.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise LasegError(f"n_bins must be a whole number >= 1, not {n_bins!r}")
    p, y = _values(prob, label, region)
    n = int(n_bins)
    idx = np.minimum((p * n).astype(np.int64), n - 1)
    counts = np.bincount(idx, minlength=n)
    sum_p = np.bincount(idx, weights=p, minlength=n)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, sum_p / counts, np.nan)
        accuracy = np.where(counts > 0, sum_y / counts, np.nan)
    edges = np.linspace(0.0, 1.0, n + 1)
    return ReliabilityCurve(edges=edges, centres=(edges[:-1] + edges[1:]) / 2, confidence=confidence,
                            accuracy=accuracy, counts=counts)


def expected_calibration_error(prob: np.ndarray, label: np.ndarray, n_bins: int = DEFAULT_BINS, *,
                               region: np.ndarray | Sequence[slice] | None = None) -> float:
    """ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the bins of :func:`reliability_curve`
    (same arguments), a probability in [0, 1]; 0 for a perfectly calibrated model."""
    return reliability_curve(prob, label, n_bins, region=region).ece
