"""From a mask to millilitres: left-atrium volume, body surface area and the LA volume index.

**Volume.** Every voxel is a small box of ``sx * sy * sz`` mm^3 (the spacing, in mm). The
volume of a mask is simply::

    volume (mL) = number of foreground voxels * sx * sy * sz / 1000      (1 mL = 1000 mm^3)

For the MSD heart scans (1.25 x 1.25 x 1.37 mm) one voxel is 2.14 mm^3, so 10 000 voxels are
21.4 mL. :func:`sphere_mask` voxelises a ball of known volume (4/3 pi r^3) so you can check the
formula yourself.

**Indexing to body size.** A tall adult has a bigger heart than a small one, so clinicians
divide the LA volume by the body surface area (BSA) to get the *LA volume index* (LAVI, mL/m^2).
We use the Mosteller formula ``BSA (m^2) = sqrt(height_cm * weight_kg / 3600)``.

**Grading.** :func:`grade_lavi` applies the ASE/EACVI 2015 chamber-quantification cut-offs
(Lang et al., J Am Soc Echocardiogr 2015;28:1-39):

==========  =======================
grade       LAVI (mL/m^2)
==========  =======================
normal      16-34
mild        35-41
moderate    42-48
severe      > 48
==========  =======================

The guideline writes its ranges in whole mL/m^2, its reporting precision. So do we: the index is
rounded to a whole number (halves up, :func:`reported_lavi`) and that number is graded, so 34.4 is
reported as 34 and graded normal, 34.5 as 35 and mild. Comparing the unrounded value against 34
would make a difference that the report cannot show (34.4 printed as 34) decide the grade. The
library, ``lasegtut volume``, the cohort table and notebook 07 all grade through :func:`grade_lavi`.

Caveat -- read before you grade an MRI mask: these cut-offs were set for *echocardiographic
biplane* (area-length / disc summation) volumes. A 3D segmentation of an MRI scan reads larger:
the MSD Task02 labels also include the pulmonary-vein ostia and the trunk of the left atrial
appendage, which an echo tracing leaves out. The grade is a teaching illustration, not a
diagnosis.

Arrays are indexed ``(x, y, z)``; ``spacing`` is the voxel size in mm in the same order.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import LasegError

#: Plausible human height range in cm (the tallest recorded adult was 272 cm).
HEIGHT_RANGE_CM = (30.0, 272.0)
#: Plausible human weight range in kg.
WEIGHT_RANGE_KG = (1.0, 700.0)
#: (upper bound in mL/m^2 inclusive, grade) for the ASE/EACVI 2015 LAVI cut-offs; above 48: severe.
LAVI_CUTOFFS = ((34.0, "normal"), (41.0, "mild"), (48.0, "moderate"))
#: Every value :func:`grade_lavi` can return, from best to worst.
LAVI_GRADES = ("normal", "mild", "moderate", "severe")
#: Left-atrium volumes (mL, pulmonary-vein ostia and appendage trunk included, as in the MSD
#: labels) outside this range are reported as implausible rather than measured or graded.
PLAUSIBLE_ML = (10.0, 400.0)


def check_spacing(spacing: Sequence[float], ndim: int | None = None) -> tuple[float, ...]:
    """A voxel size in mm as floats, checked: one positive finite number per array axis (``ndim``
    of them; any number if None). Every module that takes a spacing checks it here.

    Raises:
        LasegError: not numbers, the wrong count, or a size that is not positive and finite.
    """
    try:
        sp = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        count = "" if ndim is None else f"{ndim} "
        raise LasegError(f"spacing must be a sequence of {count}voxel sizes in mm, got {spacing!r}") from None
    if ndim is not None and len(sp) != ndim:
        raise LasegError(f"spacing {sp} has {len(sp)} values but the mask has {ndim} axes")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise LasegError(f"spacing {sp} must be positive and finite (mm)")
    return sp


def voxel_volume_mm3(spacing: Sequence[float]) -> float:
    """Volume of one voxel in mm^3: the product of the voxel sizes (mm)."""
    return float(np.prod(check_spacing(spacing)))


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a 3D mask in millilitres.

    Args:
        mask: array ``(x, y, z)``; every non-zero voxel counts as foreground.
        spacing: voxel size in mm ``(sx, sy, sz)``.

    Returns:
        ``count_nonzero(mask) * sx * sy * sz / 1000`` in mL (1 mL = 1000 mm^3).

    Raises:
        LasegError: the spacing does not have one positive value per axis.
    """
    m = np.asarray(mask)
    sp = check_spacing(spacing, m.ndim)
    return int(np.count_nonzero(m)) * float(np.prod(sp)) / 1000.0


def _check_range(value: float, name: str, unit: str, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LasegError(f"{name} must be a number in {unit}, got {value!r}") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise LasegError(f"{name} {value} {unit} is not plausible: expected {lo:g}-{hi:g} {unit}")
    return v


def implausible(volume_ml: float) -> str | None:
    """Why a left-atrium volume (mL) cannot be trusted, in one line, or None when it lies within
    :data:`PLAUSIBLE_ML`. ``predict`` writes such a mask but reports it as implausible;
    ``volume`` and the cohort table never grade it."""
    lo, hi = PLAUSIBLE_ML
    if lo <= volume_ml <= hi:
        return None
    return f"{volume_ml:.1f} mL is outside any adult left atrium ({lo:.0f}-{hi:.0f} mL)"


def warn_implausible(volume_ml: float) -> str | None:
    """:func:`implausible`, and when the volume (mL) is, one :class:`~lasegtut.errors.LasegWarning`
    (one ``warning:`` line on stderr under the command line) saying what to check. The one warning
    of ``lasegtut volume`` and ``lasegtut shape``."""
    import warnings

    from .errors import LasegWarning

    why = implausible(volume_ml)
    if why is not None:  # measured, but said: a toy mask, or a header whose voxel size is wrong
        warnings.warn(f"{why}; check the mask and the voxel size in its header", LasegWarning, stacklevel=2)
    return why


def bsa_mosteller(height_cm: float, weight_kg: float) -> float:
    """Body surface area in m^2 by the Mosteller formula ``sqrt(height_cm * weight_kg / 3600)``.

    Example: 175 cm and 70 kg give 1.84 m^2.

    Raises:
        LasegError: height outside 30-272 cm or weight outside 1-700 kg (or not a finite number);
            a typical cause is metres or pounds given instead of cm or kg.
    """
    h = _check_range(height_cm, "height", "cm", *HEIGHT_RANGE_CM)
    w = _check_range(weight_kg, "weight", "kg", *WEIGHT_RANGE_KG)
    return math.sqrt(h * w / 3600.0)


def lavi(volume_ml: float, bsa_m2: float) -> float:
    """Left-atrial volume index in mL/m^2: LA volume (mL) divided by body surface area (m^2).

    Raises:
        LasegError: the volume is negative or not finite, or the BSA is not positive and finite.
    """
    v, b = float(volume_ml), float(bsa_m2)
    if not math.isfinite(v) or v < 0:
        raise LasegError(f"LA volume must be a finite number of mL >= 0, got {volume_ml}")
    if not math.isfinite(b) or b <= 0:
        raise LasegError(f"body surface area must be a positive number of m^2, got {bsa_m2}")
    return v / b


def reported_lavi(lavi_ml_m2: float) -> int:
    """An LA volume index (mL/m^2) at the guideline's reporting precision: a whole number, halves up
    (34.4 -> 34, 34.5 -> 35).

    Raises:
        LasegError: the index is negative or not finite.
    """
    x = float(lavi_ml_m2)
    if not math.isfinite(x) or x < 0:
        raise LasegError(f"LA volume index must be a finite number of mL/m^2 >= 0, got {lavi_ml_m2}")
    return int(math.floor(x + 0.5))


def grade_lavi(lavi_ml_m2: float) -> str:
    """Grade an LA volume index (mL/m^2) against the ASE/EACVI 2015 cut-offs.

    The index is first rounded to the guideline's reporting precision (:func:`reported_lavi`), then
    graded: ``"normal"`` up to 34, ``"mild"`` 35-41, ``"moderate"`` 42-48, ``"severe"`` above (so
    34.4 is normal, 34.5 mild). The cut-offs were set for echo biplane volumes; a 3D MRI label with
    pulmonary-vein ostia and appendage trunk reads larger (see the module docstring).

    Raises:
        LasegError: the index is negative or not finite.
    """
    x = reported_lavi(lavi_ml_m2)
    for upper, grade in LAVI_CUTOFFS:
        if x <= upper:
            return grade
    return "severe"


def sphere_mask(shape: Sequence[int], spacing: Sequence[float], radius_mm: float,
                center_mm: Sequence[float] | None = None) -> np.ndarray:
    """A voxelised ball: uint8 mask of the voxels whose *centre* lies within ``radius_mm``.

    Voxel ``(i, j, k)`` has its centre at ``(i * sx, j * sy, k * sz)`` mm. Use it to check
    :func:`volume_ml`: the result approaches ``4/3 * pi * radius_mm**3 / 1000`` mL as the voxels
    shrink relative to the radius (within 1 % for r = 20 mm at 1.25 x 1.25 x 1.37 mm).

    Args:
        shape: array shape ``(nx, ny, nz)`` in voxels (2 values give a disc).
        spacing: voxel size in mm ``(sx, sy, sz)``.
        radius_mm: radius in mm, > 0.
        center_mm: centre in mm in the same frame; default the centre of the array,
            ``((nx - 1) * sx / 2, ...)``.

    Returns:
        uint8 array of ``shape`` with values in {0, 1}.

    Raises:
        LasegError: bad shape, spacing, radius or centre.
    """
    shp = tuple(int(n) for n in shape)
    if not shp or any(n < 1 for n in shp):
        raise LasegError(f"shape {tuple(shape)} must hold positive voxel counts")
    sp = check_spacing(spacing, len(shp))
    r = float(radius_mm)
    if not math.isfinite(r) or r <= 0:
        raise LasegError(f"radius must be a positive number of mm, got {radius_mm}")
    if center_mm is None:
        c = tuple((n - 1) * s / 2.0 for n, s in zip(shp, sp))
    else:
        c = tuple(float(v) for v in center_mm)
        if len(c) != len(shp) or not all(math.isfinite(v) for v in c):
            raise LasegError(f"center_mm {tuple(center_mm)} must hold {len(shp)} finite values in mm")
    # Squared distance (mm^2) of every voxel centre from the centre, built axis by axis with
    # broadcasting so no full coordinate grid is stored per axis.
    d2 = np.zeros(shp, dtype=np.float64)
    for axis, (n, s, ci) in enumerate(zip(shp, sp, c)):
        coord = np.arange(n, dtype=np.float64) * s - ci
        d2 = d2 + (coord ** 2).reshape([-1 if a == axis else 1 for a in range(len(shp))])
    return (d2 <= r * r).astype(np.uint8)


# ----------------------------------------------------------------------------- two methods compared
def volume_error_pct(pred_ml: float, label_ml: float) -> float:
    """Volume error of a prediction in % of the label's volume: ``100 (pred - label) / label``
    (NaN for an empty label: no volume to compare with)."""
    return 100 * (pred_ml - label_ml) / label_ml if label_ml else float("nan")


def bland_altman_stats(a: Sequence[float], b: Sequence[float]) -> dict:
    """Bland-Altman agreement of two measurement methods on the same subjects.

    Differences are ``a - b`` (e.g. predicted minus true volume, mL). Returns ``bias`` (mean
    difference), ``sd`` (sample standard deviation of the differences, ddof=1; NaN for one pair)
    and the 95 % limits of agreement ``loa_low``/``loa_high`` = ``bias -/+ 1.96 sd``, plus the
    per-pair arrays ``means`` (the mean of each pair) and ``diffs``.

    Raises:
        LasegError: lengths differ or fewer than one pair.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 1:
        raise LasegError(f"need two equally long 1D sequences, got shapes {x.shape} and {y.shape}")
    diffs = x - y
    bias = float(diffs.mean())
    sd = float(diffs.std(ddof=1)) if x.size > 1 else float("nan")
    return {"means": (x + y) / 2, "diffs": diffs, "bias": bias, "sd": sd,
            "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}
