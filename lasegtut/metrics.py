"""How good is a segmentation? Overlap and surface-distance metrics on binary 3D masks.

Two families of metrics answer two different questions:

*Overlap* -- how many voxels agree? (unitless, 0 = no overlap, 1 = identical)

- **Dice** ``2 |P & L| / (|P| + |L|)``: the standard score of the field.
- **IoU** (Jaccard) ``|P & L| / |P | L|``; always ``IoU = Dice / (2 - Dice)``, so IoU <= Dice.

Overlap is dominated by the bulk of a large structure: a prediction that misses a whole
pulmonary vein can still score Dice 0.9.

*Surface distance* -- how far apart are the two boundaries? (millimetres)

- **HD95**: the 95th-percentile Hausdorff distance. For each surface voxel of P take the
  distance to the nearest surface voxel of L, and vice versa; HD95 is the larger of the two
  directed 95th percentiles. The percentile (not the maximum) ignores a few stray voxels.
- **ASSD**: average symmetric surface distance, the mean of *both* directed distance sets put
  together (so the surface with more voxels weighs more).

- **NSD** (normalised surface distance, also called surface Dice; Nikolov et al. 2021): the
  fraction of both surfaces that lies within a tolerance ``tau`` (mm) of the other surface,
  ``(|{d(P -> L) <= tau}| + |{d(L -> P) <= tau}|) / (|S_P| + |S_L|)`` (unitless, 0..1). It is the
  Decathlon's second ranking metric next to Dice, with a tolerance per task set by the
  Decathlon's clinicians (Antonelli et al., "The Medical Segmentation Decathlon", Nature
  Communications 13:4128, 2022, Methods). Our default :data:`NSD_TOLERANCE_MM` is 4 mm for the
  left atrium, a value we attribute to that paper but have **not verified** against its table of
  tolerances (docs/protocol.md says what was checked); pass the tolerance explicitly when it matters. Unlike HD95 it does not care how far a wrong boundary strays, only
  how much of the boundary is wrong.

These follow MONAI's definitions exactly (``compute_hausdorff_distance(percentile=95)`` and
``compute_average_surface_distance(symmetric=True)`` and ``compute_surface_dice`` (voxel surfaces,
``use_subvoxels=False``) with ``spacing``; the test suite checks the agreement on real masks):

1. A *surface voxel* is a foreground voxel with at least one of its 6 face neighbours in the
   background: ``mask XOR binary_erosion(mask)`` (voxels outside the array count as background).
2. Distances run from surface voxel centres to the nearest surface voxel centre of the other
   mask, in mm, using the anisotropic voxel size (``distance_transform_edt(sampling=spacing)``).
3. Percentiles use linear interpolation (``numpy.percentile``'s default, like ``torch.quantile``).

Speed: a distance transform of a full 320 x 320 x 130 volume takes seconds. Both surfaces lie
inside the joint bounding box of the two masks, and the Euclidean distance transform is exact on
any sub-array that still holds every target voxel, so we crop to that box plus a 1-voxel margin
first: a few tens of milliseconds for a left atrium.

Empty masks (a decision, documented because averages depend on it):

========================  ======  ======  ======  ===========  ===========
case                      Dice    IoU     NSD     HD95 (mm)    ASSD (mm)
========================  ======  ======  ======  ===========  ===========
both empty                1.0     1.0     1.0     0.0          0.0
one empty, other not      0.0     0.0     0.0     inf          inf
========================  ======  ======  ======  ===========  ===========

A missed atrium is the worst possible result and must count as one: ``inf`` makes a mean over
cases ``inf`` too, which is loud. MONAI returns NaN for HD95 there, and a ``nanmean`` then
silently drops the failed case from the average -- we deliberately do not copy that. (MONAI's
NSD of two empty masks is NaN too; ours is 1.0, like Dice.) Summarise
HD95 over cases with the median, or report the number of failures next to the mean.

Arrays are indexed ``(x, y, z)`` and ``spacing`` holds the voxel size in mm in the same order.
Any non-zero voxel counts as foreground. The functions work for 2D masks too (give 2 spacings).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from .errors import LasegError
from .volume import check_spacing, volume_ml

#: NSD tolerance (mm) used by default for the left atrium (Task02_Heart), attributed to the Medical
#: Segmentation Decathlon (Antonelli et al., Nature Communications 13:4128, 2022); not verified
#: against the paper's table of per-task tolerances (docs/protocol.md).
NSD_TOLERANCE_MM = 4.0
#: Keys returned by :func:`evaluate_masks` (``nsd`` at the tolerance given to it).
METRIC_KEYS = ("dice", "iou", "hd95_mm", "assd_mm", "nsd")
#: Keys returned by :func:`score_masks`: the metrics and both volumes (mL).
SCORE_KEYS = METRIC_KEYS + ("volume_pred_ml", "volume_label_ml")


# ----------------------------------------------------------------------------- helpers
def _as_bool(mask: np.ndarray) -> np.ndarray:
    """Any array -> boolean foreground mask (non-zero = foreground)."""
    m = np.asarray(mask)
    return m if m.dtype == bool else m != 0


def _check_pair(pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as booleans; raise LasegError if their shapes differ."""
    p, lab = _as_bool(pred), _as_bool(label)
    if p.shape != lab.shape:
        raise LasegError(f"prediction shape {p.shape} differs from label shape {lab.shape}; "
                         "resample one onto the other first")
    return p, lab


# ----------------------------------------------------------------------------- overlap
def dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Dice similarity coefficient ``2|P & L| / (|P| + |L|)`` (unitless, 0..1).

    Both masks empty -> 1.0 (perfect agreement on "nothing here"); one empty -> 0.0.

    Raises:
        LasegError: the shapes differ.
    """
    p, lab = _check_pair(pred, label)
    n_p, n_l = int(np.count_nonzero(p)), int(np.count_nonzero(lab))
    if n_p + n_l == 0:
        return 1.0
    return _dice_of_counts(int(np.count_nonzero(p & lab)), n_p, n_l)


def _dice_of_counts(inter, n_pred, n_label):
    """Dice ``2 |P & L| / (|P| + |L|)`` from voxel counts (numbers or arrays of them); the caller
    handles ``|P| + |L| = 0``."""
    return 2.0 * inter / (n_pred + n_label)


def iou(pred: np.ndarray, label: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|P & L| / |P | L|`` (unitless, 0..1).

    Both masks empty -> 1.0; one empty -> 0.0.

    Raises:
        LasegError: the shapes differ.
    """
    p, lab = _check_pair(pred, label)
    union = int(np.count_nonzero(p | lab))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & lab)) / union


# ----------------------------------------------------------------------------- surfaces
def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the surface voxels: foreground voxels with a background face neighbour.

    Computed as ``mask XOR binary_erosion(mask)`` with the 6-connected (face) structuring
    element; voxels beyond the array edge count as background, so a mask that touches the
    edge of the array has a surface there. This is MONAI's ``get_mask_edges`` definition.
    """
    m = _as_bool(mask)
    return m ^ ndimage.binary_erosion(m)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices (voxels, one per axis) of the smallest box that holds every non-zero voxel of
    ``mask``, grown by ``margin`` voxels and clipped to the array; None for an empty mask."""
    m = _as_bool(mask)
    slices = []
    for axis in range(m.ndim):
        other = tuple(a for a in range(m.ndim) if a != axis)
        nz = np.flatnonzero(m.any(axis=other))
        if nz.size == 0:
            return None
        slices.append(slice(max(int(nz[0]) - margin, 0), min(int(nz[-1]) + 1 + margin, m.shape[axis])))
    return tuple(slices)


def joint_bbox(pred: np.ndarray, label: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Slices of the bounding box of ``pred | label``, grown by ``margin`` voxels (clipped to the array).

    Returns a slice per axis (in voxels); for two empty masks, the whole array.
    """
    p, lab = _check_pair(pred, label)
    box = bounding_box(p | lab, margin)
    return tuple(slice(None) for _ in range(p.ndim)) if box is None else box


def _directed(src_surface: np.ndarray, dst_surface: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from every ``src`` surface voxel to the nearest ``dst`` surface voxel."""
    # distance_transform_edt measures the distance to the nearest *zero*: make dst the zeros.
    dist = ndimage.distance_transform_edt(~dst_surface, sampling=spacing)
    return dist[src_surface]


def surface_distances(pred: np.ndarray, label: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: ``(pred -> label, label -> pred)``.

    The first array has one entry per surface voxel of ``pred``: its distance to the nearest
    surface voxel of ``label``; the second array the reverse. Both are computed inside the joint
    bounding box (+1 voxel), which gives exactly the full-volume answer, much faster.

    If one mask is empty its own array is empty and the other array is all ``inf`` (no surface
    to reach); if both are empty both arrays are empty.

    Args:
        pred, label: masks of the same shape, indexed ``(x, y, z)``.
        spacing: voxel size in mm, same axis order.

    Raises:
        LasegError: the shapes differ or the spacing is invalid.
    """
    p, lab = _check_pair(pred, label)
    sp = check_spacing(spacing, p.ndim)
    box = joint_bbox(p, lab, margin=1)
    sp_p, sp_l = surface_voxels(p[box]), surface_voxels(lab[box])
    has_p, has_l = bool(sp_p.any()), bool(sp_l.any())
    if not has_p or not has_l:
        n_p, n_l = int(np.count_nonzero(sp_p)), int(np.count_nonzero(sp_l))
        return np.full(n_p, np.inf), np.full(n_l, np.inf)
    return _directed(sp_p, sp_l, sp), _directed(sp_l, sp_p, sp)


def _empty_case(p: np.ndarray, lab: np.ndarray) -> float | None:
    """0.0 if both masks are empty, inf if exactly one is, None if neither is."""
    any_p, any_l = bool(p.any()), bool(lab.any())
    if not any_p and not any_l:
        return 0.0
    if not any_p or not any_l:
        return float("inf")
    return None


def _distance_sets(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]
                   ) -> tuple[float | None, np.ndarray, np.ndarray]:
    """``(special, d(P -> L), d(L -> P))`` for the surface-distance metrics, after checking the
    shapes and the spacing: ``special`` is the answer for empty masks (0.0 both empty, inf one
    empty; the distance arrays are then empty) or None."""
    p, lab = _check_pair(pred, label)
    sp = check_spacing(spacing, p.ndim)
    special = _empty_case(p, lab)
    if special is not None:
        return special, np.empty(0), np.empty(0)
    return None, *surface_distances(p, lab, sp)


def _hd_of(d_pl: np.ndarray, d_lp: np.ndarray, percentile: float = 95.0) -> float:
    """The larger of the two directed ``percentile``-th distances (mm)."""
    return float(max(np.percentile(d_pl, percentile), np.percentile(d_lp, percentile)))


def _assd_of(d_pl: np.ndarray, d_lp: np.ndarray) -> float:
    """The mean of both directed distance sets pooled (mm)."""
    return float(np.concatenate([d_pl, d_lp]).mean())


def hd95(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float], percentile: float = 95.0) -> float:
    """95th-percentile symmetric Hausdorff distance in mm.

    ``max(percentile(d(P -> L), 95), percentile(d(L -> P), 95))`` over surface voxels, with
    linear interpolation between ranks. ``percentile=100`` gives the classic Hausdorff distance.
    Both masks empty -> 0.0; exactly one empty -> ``inf`` (never NaN).

    Raises:
        LasegError: the shapes differ, the spacing is invalid, or percentile is outside 0..100.
    """
    if not 0 <= percentile <= 100:
        raise LasegError(f"percentile must be in 0..100, got {percentile}")
    special, d_pl, d_lp = _distance_sets(pred, label, spacing)
    return special if special is not None else _hd_of(d_pl, d_lp, percentile)


def assd(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm.

    The mean of the concatenation of both directed distance sets (``P -> L`` and ``L -> P``), so
    each surface voxel of either mask counts once. Both masks empty -> 0.0; exactly one empty
    -> ``inf`` (never NaN).

    Raises:
        LasegError: the shapes differ or the spacing is invalid.
    """
    special, d_pl, d_lp = _distance_sets(pred, label, spacing)
    return special if special is not None else _assd_of(d_pl, d_lp)


def _nsd_of(d_pl: np.ndarray, d_lp: np.ndarray, tolerance_mm: float) -> float:
    """The fraction of both surfaces' voxels within ``tolerance_mm`` of the other surface."""
    within = int(np.count_nonzero(d_pl <= tolerance_mm)) + int(np.count_nonzero(d_lp <= tolerance_mm))
    return within / (d_pl.size + d_lp.size)


def _check_tolerance(tolerance_mm: float) -> float:
    try:
        t = float(tolerance_mm)
    except (TypeError, ValueError):
        t = float("nan")
    if not (np.isfinite(t) and t >= 0):
        raise LasegError(f"the NSD tolerance must be a distance in mm >= 0, not {tolerance_mm}")
    return t


def nsd(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float],
        tolerance_mm: float = NSD_TOLERANCE_MM) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance_mm`` (unitless, 0..1).

    ``(|{d(P -> L) <= tol}| + |{d(L -> P) <= tol}|) / (|S_P| + |S_L|)``: the share of the surface
    voxels of both masks that lie within the tolerance of the other mask's surface, distances in
    mm with the anisotropic voxel size (as for :func:`hd95`). The default, 4 mm, is attributed to
    the Medical Segmentation Decathlon's tolerance for the left atrium (Antonelli et al., Nature
    Communications 13:4128, 2022), not verified (:data:`NSD_TOLERANCE_MM`). Equals MONAI's ``compute_surface_dice`` (voxel surfaces), except
    that both masks empty gives 1.0 here (NaN in MONAI); exactly one empty gives 0.0.

    Raises:
        LasegError: the shapes differ, the spacing is invalid, or the tolerance is not a
            distance >= 0.
    """
    tol = _check_tolerance(tolerance_mm)
    special, d_pl, d_lp = _distance_sets(pred, label, spacing)
    if special is not None:
        return 1.0 if special == 0.0 else 0.0
    return _nsd_of(d_pl, d_lp, tol)


# ----------------------------------------------------------------------------- all at once
def evaluate_masks(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float], *,
                   nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> dict[str, float]:
    """Dice, IoU, HD95, ASSD and NSD of a predicted mask against a reference label.

    Args:
        pred: predicted mask ``(x, y, z)``, non-zero = left atrium.
        label: reference mask, same shape and grid.
        spacing: voxel size in mm ``(sx, sy, sz)``.
        nsd_tolerance_mm: the tolerance of :func:`nsd` (default: 4 mm, :data:`NSD_TOLERANCE_MM`).

    Returns:
        ``{"dice": float, "iou": float, "hd95_mm": float, "assd_mm": float, "nsd": float}``,
        python floats. See the module docstring for empty masks (``inf`` distances, never NaN).

    Raises:
        LasegError: the shapes differ, the spacing or the tolerance is invalid.
    """
    tol = _check_tolerance(nsd_tolerance_mm)
    p, lab = _check_pair(pred, label)
    # Everything outside the joint bounding box is background in both masks: it adds nothing
    # to the overlap counts and holds no surface voxel, so work on the (much smaller) box only.
    box = joint_bbox(p, lab, margin=1)
    p, lab = p[box], lab[box]
    special, d_pl, d_lp = _distance_sets(p, lab, spacing)  # computed once for both distance metrics
    return {"dice": dice(p, lab), "iou": iou(p, lab),
            "hd95_mm": special if special is not None else _hd_of(d_pl, d_lp),
            "assd_mm": special if special is not None else _assd_of(d_pl, d_lp),
            "nsd": (1.0 if special == 0.0 else 0.0) if special is not None else _nsd_of(d_pl, d_lp, tol)}


def score_masks(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float], *,
                pred_spacing: Sequence[float] | None = None,
                nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> dict[str, float]:
    """Score a predicted mask against its label: what every evaluation reports (:data:`SCORE_KEYS`).

    Args:
        pred, label: masks ``(x, y, z)`` on the same grid, non-zero = left atrium.
        spacing: the label's voxel size in mm ``(sx, sy, sz)``, used for the distances.
        pred_spacing: the prediction's voxel size for its volume (default: ``spacing``), as its
            own file states it.
        nsd_tolerance_mm: the tolerance of :func:`nsd` in mm (default: 4 mm, :data:`NSD_TOLERANCE_MM`).

    Returns:
        :func:`evaluate_masks` plus ``volume_pred_ml`` and ``volume_label_ml``
        (:func:`lasegtut.volume.volume_ml`), python floats.
    """
    out = evaluate_masks(pred, label, spacing, nsd_tolerance_mm=nsd_tolerance_mm)
    out["volume_pred_ml"] = volume_ml(pred, spacing if pred_spacing is None else pred_spacing)
    out["volume_label_ml"] = volume_ml(label, spacing)
    return out


# ----------------------------------------------------------------------------- slice by slice
def per_slice_dice(pred: np.ndarray, label: np.ndarray, axis: int = 2) -> np.ndarray:
    """Dice of every slice across array ``axis`` (default 2: the files' own slices of an
    ``(x, y, z)`` volume).

    Returns:
        float array with one value per slice; NaN where the *label* slice is empty (there is no
        atrium to find: Dice would be 1 for an empty prediction and 0 for a single stray voxel,
        which says nothing about how well the atrium is outlined).

    Raises:
        LasegError: the shapes differ.
    """
    p, lab = _check_pair(pred, label)
    other = tuple(a for a in range(p.ndim) if a != axis)
    inter = np.count_nonzero(p & lab, axis=other).astype(float)
    n_p = np.count_nonzero(p, axis=other).astype(float)
    n_l = np.count_nonzero(lab, axis=other).astype(float)
    out = np.full(n_l.shape, np.nan)
    has = n_l > 0
    out[has] = _dice_of_counts(inter[has], n_p[has], n_l[has])
    return out


def best_worst_slices(pred: np.ndarray, label: np.ndarray, *, min_label_voxels: int = 200,
                      axis: int = 2) -> tuple[int, int]:
    """Indices of the slices (along ``axis``) with the highest and the lowest Dice.

    Only slices whose label holds at least ``min_label_voxels`` voxels compete, so the tiny
    first and last slices of the atrium (where one voxel changes the Dice a lot) do not win.
    Falls back to every slice with any label if none is that large.

    Raises:
        LasegError: the label is empty.
    """
    d = per_slice_dice(pred, label, axis)
    other = tuple(a for a in range(np.ndim(label)) if a != axis)
    area = np.count_nonzero(np.asarray(label) != 0, axis=other)
    ok = area >= min_label_voxels
    if not ok.any():
        ok = area > 0
    if not ok.any():
        raise LasegError("the label is empty: no slice to rank")
    idx = np.flatnonzero(ok)
    return int(idx[np.argmax(d[idx])]), int(idx[np.argmin(d[idx])])
