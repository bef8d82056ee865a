"""When not to trust a prediction: a voxel uncertainty map, one number per scan, and a QC flag.

The network gives, for every voxel, a probability ``p`` of "left atrium". Where ``p`` is near 0 or
1 the model is sure; near 0.5 it hesitates. This module turns that into

* a **voxel map** (:func:`voxel_uncertainty`): the binary entropy of ``p`` in bits,
  ``H(p) = -p log2 p - (1 - p) log2 (1 - p)``, 0 (certain) to 1 (``p = 0.5``), float32, on the
  grid of the probability map it is given: :func:`lasegtut.inference.predict_volume` with
  ``return_probability=True`` gives that map on the scan's own grid, in RAS, indexed ``(x, y, z)``
  (0 outside the model's window, where the map is 0 too); ``lasegtut predict --uncertainty-map``
  writes it back in the scan's own orientation, with its affine (:func:`write_uncertainty_map`);
* a **scan uncertainty** (:func:`scan_uncertainty`, the number ``lasegtut predict`` reports as
  ``uncertainty``; 0 or more, higher = less trustworthy): the entropy summed over the voxels in
  and near the predicted atrium (the mask dilated by :data:`NEAR_MM` mm), divided by the number
  of voxels of the mask. In words: *how many "undecided voxels" the atrium carries per voxel
  of atrium*. A clean scan has a thin undecided rim around a large atrium (0.18-0.24 bit per
  voxel for the shipped model on the bundled scans); a degraded one has a wide rim, holes and
  fragments around a smaller one. An empty mask has an infinite uncertainty. It is computed in a
  box around the mask: 0.08 s per scan (``benchmarks/uncertainty.py`` prints the time);
* a **QC flag** (:func:`qc_flag`): ``"review"`` when the uncertainty is above the threshold stored
  with the model, or the volume is implausible (:func:`lasegtut.volume.implausible`); ``"ok"``
  otherwise; ``"unknown"`` when the weights carry no threshold for this estimator (a model
  trained before issue 25, or several models averaged: the threshold was fitted to one model's
  probabilities). An implausible volume is ``"review"`` whatever the threshold.

**Why this estimator** (issue 25, chosen by measurement on the 15 training cases and their
degraded copies, ``benchmarks/fit_qc.py``): it ranked the errors best of the cheap candidates
tried (entropy near the atrium per atrium voxel; entropy over the whole map per atrium voxel; the
share of voxels with 0.25 < p < 0.75 per atrium voxel; the thresholded voxels the largest
component drops; one minus the soft Dice between ``p`` and the mask); the figures are in
``benchmarks/results/uncertainty.md``. A model can be wrong *with confidence*: the shipped model
segments blurred copies of la_009 below Dice 0.80 with an uncertainty under the threshold, so
``ok`` is no proof. Test-time variants (several predictions per scan) would
cost a multiple of the prediction time, over the 5 s budget of ``predict`` on a 2-core CPU.

**Where the threshold lives.** ``benchmarks/fit_qc.py`` chooses it on the *training* cases (never
the bundled validation cases) and stores it in the weights file's ``meta`` beside the network,
with the name of the estimator it was fitted for (:data:`ESTIMATOR`) and a calibration
temperature (:func:`fit_temperature`), so that a retrained model never silently reuses another
model's threshold. :func:`qc_settings` reads them (torch-free: :func:`lasegtut.recipe.read_header`).

**Sidecar.** Each mask ``predict`` writes gets ``<mask name>.qc.json`` beside it
(:func:`sidecar_path`, :func:`write_sidecar`): uncertainty, qc, threshold, the weights' names and
SHA-256, the mask's SHA-256, the lasegtut version. ``lasegtut volume`` and ``lasegtut shape``
read it (:func:`read_sidecar`) and say in one line when they measure a mask flagged ``review``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from .errors import LasegError

#: Name (and version) of the scan-level estimator :func:`scan_uncertainty` computes; a threshold
#: stored in a weights file is only used for the estimator it was fitted for.
ESTIMATOR = "entropy-near-atrium-per-voxel-v1"
#: How far around the predicted atrium (mm) the entropy is summed.
NEAR_MM = 5.0
#: The values of the QC flag.
QC_VALUES = ("ok", "review", "unknown")
#: Keys of the weights file's ``meta`` (see :func:`qc_settings`).
META_THRESHOLD, META_ESTIMATOR, META_TEMPERATURE = "qc_threshold", "qc_estimator", "calibration_temperature"
#: Suffix of the JSON sidecar written beside a mask (``la_009.nii.gz`` -> ``la_009.qc.json``).
SIDECAR_SUFFIX = ".qc.json"
#: Probabilities are clipped to [EPS, 1 - EPS] before a logarithm.
EPS = 1e-7


class QCSettings(NamedTuple):
    """What a weights file says about QC: ``threshold`` on :func:`scan_uncertainty` above which a
    scan is ``"review"`` (None: no threshold for :data:`ESTIMATOR`), and the voxel-logit
    ``temperature`` of :func:`fit_temperature` (None: not fitted; 1 would change nothing)."""

    threshold: float | None
    temperature: float | None


def voxel_uncertainty(probability: np.ndarray) -> np.ndarray:
    """Binary entropy (bits, 0..1) of each voxel's probability of "left atrium".

    Args:
        probability: float array of any shape (a volume ``(x, y, z)`` from
            :func:`lasegtut.inference.predict_volume`), values in [0, 1].

    Returns:
        float32 array of the same shape and grid: 0 where ``p`` is 0 or 1, 1 where ``p = 0.5``.
    """
    p = np.clip(np.asarray(probability, dtype=np.float32), EPS, 1 - EPS)
    q = 1 - p
    return (-(p * np.log2(p) + q * np.log2(q))).astype(np.float32)


def _near_box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``margin`` voxels per axis, inside the array."""
    idx = np.flatnonzero(mask.any(axis=(1, 2))), np.flatnonzero(mask.any(axis=(0, 2))), \
        np.flatnonzero(mask.any(axis=(0, 1)))
    return tuple(slice(max(int(i[0]) - m, 0), min(int(i[-1]) + m + 1, n))
                 for i, m, n in zip(idx, margin, mask.shape))


def near_region(mask: np.ndarray, spacing: Sequence[float], near_mm: float = NEAR_MM
                ) -> tuple[tuple[slice, ...], np.ndarray]:
    """Where the scan uncertainty is summed: ``(box, region)``, ``region`` the voxels of ``mask``
    ``(x, y, z)`` and those within about ``near_mm`` mm of it (a dilation by
    ``round(near_mm / spacing)`` voxels per axis, ``spacing`` in mm), inside ``box`` (slices of
    the full grid). ``mask`` must not be empty."""
    from scipy import ndimage

    steps = [max(1, int(round(near_mm / float(s)))) for s in spacing]
    box = _near_box(mask, [s + 1 for s in steps])
    sub = np.asarray(mask[box], dtype=bool)
    region = sub
    # a box-shaped structuring element of (2 s + 1) voxels per axis: separable, so fast
    for axis, s in enumerate(steps):
        shape = [1, 1, 1]
        shape[axis] = 2 * s + 1
        region = ndimage.binary_dilation(region, structure=np.ones(shape, dtype=bool))
    return box, region


def scan_uncertainty(probability: np.ndarray, mask: np.ndarray, spacing: Sequence[float], *,
                     near_mm: float = NEAR_MM, temperature: float | None = None) -> float:
    """The scan's uncertainty (0 or more; higher = less trustworthy; :data:`ESTIMATOR`).

    ``sum of H(p) over the mask and the voxels within near_mm mm of it / voxels of the mask``,
    with ``H`` the entropy of :func:`voxel_uncertainty` (bits).

    Args:
        probability: float ``(x, y, z)`` in [0, 1] (:func:`lasegtut.inference.predict_volume`
            with ``return_probability=True``).
        mask: the predicted mask ``(x, y, z)`` on the same grid (non-zero = atrium).
        spacing: voxel size in mm ``(x, y, z)``.
        near_mm: how far around the mask (mm) the entropy counts.
        temperature: if given, the probabilities are first recalibrated with it
            (:func:`apply_temperature`); the stored thresholds are fitted without it.

    Returns:
        A float >= 0; ``inf`` for an empty mask (nothing found: no atrium to trust).
    """
    m = np.asarray(mask)
    p = np.asarray(probability)
    if m.shape != p.shape or m.ndim != 3:
        raise LasegError(f"probability {p.shape} and mask {m.shape} must be two volumes of one shape")
    if not m.any():
        return math.inf
    box, region = near_region(m != 0, spacing, near_mm)
    sub = p[box]
    if temperature is not None:
        sub = apply_temperature(sub, temperature)
    h = voxel_uncertainty(sub[region])
    return float(h.sum(dtype=np.float64) / np.count_nonzero(m))


def qc_flag(uncertainty: float, threshold: float | None, volume_ml: float | None = None) -> str:
    """``"review"`` when ``uncertainty`` is above ``threshold`` (or not finite), or the volume (mL,
    if given) is implausible; ``"unknown"`` when there is no threshold (and the volume is
    plausible); else ``"ok"``."""
    from .volume import implausible

    if volume_ml is not None and implausible(volume_ml) is not None:
        return "review"
    if threshold is None:
        return "unknown"
    return "review" if not (uncertainty <= threshold) else "ok"


# ----------------------------------------------------------------------------- calibration
def apply_temperature(probability: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)``: probabilities recalibrated with a temperature ``T`` > 0 (T > 1
    softens them towards 0.5, T < 1 sharpens them). float32, same shape."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise LasegError(f"a temperature must be a positive number, not {temperature}")
    p = np.clip(np.asarray(probability, dtype=np.float64), EPS, 1 - EPS)
    logit = np.log(p) - np.log1p(-p)
    return (1 / (1 + np.exp(-logit / temperature))).astype(np.float32)


def logits_of(probability: np.ndarray) -> np.ndarray:
    """The voxel logits ``log(p / (1 - p))`` behind probabilities (clipped to [EPS, 1 - EPS]); float64."""
    p = np.clip(np.asarray(probability, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature scaling (Guo et al., ICML 2017) for voxel logits: the one number ``T`` > 0 that
    minimises the mean binary cross-entropy of ``sigmoid(logits / T)`` against ``labels``.

    A single parameter cannot change which side of 0.5 a voxel falls on (the mask stays the same);
    it only makes the probabilities say more honestly how often they are right. ``T`` > 1 means
    the model was over-confident.

    Args:
        logits: float voxel logits (any shape; e.g. :func:`logits_of` of a probability map, taken
            in a box around the atrium).
        labels: 0/1 of the same shape.
        bounds: the range searched (a bounded scalar minimisation of the convex loss in ``log T``).

    Returns:
        ``T`` (float, unitless).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.float64)
    if z.shape != y.shape or z.size == 0:
        raise LasegError(f"logits ({z.size}) and labels ({y.size}) must be two non-empty arrays of one size")
    if not np.isfinite(z).all():
        raise LasegError("the logits hold non-finite values")
    s = 2 * y - 1  # +1 / -1

    def loss(log_t: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -s * z / math.exp(log_t))))  # BCE = log(1 + exp(-s z / T))

    res = minimize_scalar(loss, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    return float(math.exp(res.x))


# ----------------------------------------------------------------------------- stored settings
def _meta_of(info_or_path: Any) -> dict:
    """The ``meta`` dict of a ModelInfo, a header dict (:func:`lasegtut.recipe.read_header`), a
    meta dict, or a weights file path (None: the shipped model; read without torch)."""
    if info_or_path is None or isinstance(info_or_path, (str, os.PathLike)):
        from .recipe import read_header

        head = read_header(info_or_path)
        return dict(head.get("meta") or {})
    meta = getattr(info_or_path, "meta", None)
    if isinstance(meta, dict):
        return meta
    if isinstance(info_or_path, dict):
        inner = info_or_path.get("meta")
        return dict(inner) if isinstance(inner, dict) else dict(info_or_path)
    raise LasegError(f"cannot read QC settings from a {type(info_or_path).__name__}")


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def qc_settings(info_or_path: Any = None) -> QCSettings:
    """The QC threshold and calibration temperature stored with a model.

    Args:
        info_or_path: a :class:`~lasegtut.weightsfile.ModelInfo` (from
            :func:`lasegtut.inference.load_model`), a dict from :func:`lasegtut.recipe.read_header`
            (or its ``meta``), a weights file path, or None for the shipped model (paths are read
            without torch).

    Returns:
        :class:`QCSettings` ``(threshold, temperature)``. ``threshold`` is None when the file has
        none, or has one fitted for another estimator than :data:`ESTIMATOR`; ``temperature`` is
        None when none was fitted. A malformed value counts as absent.
    """
    meta = _meta_of(info_or_path)
    threshold = _positive(meta.get(META_THRESHOLD))
    if meta.get(META_ESTIMATOR) != ESTIMATOR:
        threshold = None
    return QCSettings(threshold, _positive(meta.get(META_TEMPERATURE)))


def store_qc_settings(weights: str | os.PathLike, output: str | os.PathLike, *, threshold: float,
                      temperature: float | None = None, fit: dict | None = None, force: bool = False) -> Path:
    """Write a copy of the weights file ``weights`` to ``output`` with the QC keys in its ``meta``:
    ``qc_threshold``, ``qc_estimator`` (:data:`ESTIMATOR`), ``calibration_temperature`` (if given)
    and ``qc_fit`` (how they were chosen, plain data). Everything else, the network's tensors
    above all, is kept byte for byte (checked: the zip records of the tensors are compared).
    ``output`` is checked first (never ``weights`` itself; an existing file only with ``force``)
    and written atomically. Used by ``benchmarks/fit_qc.py``.

    Raises:
        LasegError: a bad output path, a weights file that is not lasegtut's, or tensors that changed.
    """
    import zipfile

    import torch

    from .preprocess import atomic_write
    from .safeio import check_output_file, load_torch_file
    from .weightsfile import WEIGHTS_FORMAT

    src, out = Path(weights), Path(output)
    check_output_file(out, force=force, inputs=[src], suffixes=(".pt",))
    if _positive(threshold) is None or (temperature is not None and _positive(temperature) is None):
        raise LasegError(f"the threshold ({threshold}) and the temperature ({temperature}) must be positive numbers")
    payload = load_torch_file(src)
    if not (isinstance(payload, dict) and payload.get("format") == WEIGHTS_FORMAT):
        raise LasegError(f"{src} is not a weights file of lasegtut train (format {WEIGHTS_FORMAT})")
    keys = {META_THRESHOLD: float(threshold), META_ESTIMATOR: ESTIMATOR}
    if temperature is not None:
        keys[META_TEMPERATURE] = float(temperature)
    if fit is not None:
        keys["qc_fit"] = fit
    payload["meta"] = {**dict(payload.get("meta") or {}), **keys}
    atomic_write(out, lambda f: torch.save(payload, f))

    def records(path: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(path) as z:
            return {n.split("/", 1)[1]: z.read(n) for n in z.namelist() if "/data/" in n}

    if records(src) != records(out):
        out.unlink()
        raise LasegError("the network's tensors changed on the way; nothing written")
    return out


def members_threshold(infos: Sequence[Any]) -> float | None:
    """The QC threshold for a prediction by ``infos`` (the ModelInfo of each model averaged): the
    model's own for one model; None for several (the threshold was fitted to one model's
    probabilities, an average is another estimator)."""
    if len(infos) != 1:
        return None
    return qc_settings(infos[0]).threshold


def assess(probability: np.ndarray, mask: np.ndarray, spacing: Sequence[float], threshold: float | None,
           volume_ml: float | None = None) -> dict:
    """``{"uncertainty": float, "qc": str, "qc_threshold": float | None}`` for one prediction
    (:func:`scan_uncertainty`, :func:`qc_flag`); the uncertainty rounded to 4 decimals."""
    u = scan_uncertainty(probability, mask, spacing)
    return {"uncertainty": round(u, 4) if math.isfinite(u) else u, "qc": qc_flag(u, threshold, volume_ml),
            "qc_threshold": threshold}


def describe_qc(report: dict) -> str:
    """One line for people: ``uncertainty 0.123, QC ok (threshold 0.2)``."""
    u, qc, t = report.get("uncertainty"), report.get("qc"), report.get("qc_threshold")
    us = f"{u:.3f}" if isinstance(u, (int, float)) and math.isfinite(u) else "inf"
    why = f"threshold {t:.3g}" if t is not None else "these weights carry no QC threshold"
    return f"uncertainty {us}, QC {qc} ({why})"


# ----------------------------------------------------------------------------- files
def write_uncertainty_map(map_ras: np.ndarray, original, output: str | os.PathLike) -> Path:
    """Save a voxel map ``(x, y, z)`` in RAS (:func:`voxel_uncertainty` of the probability map) on
    the grid of the scan ``original`` (a nibabel image) it was predicted from: in the scan's own
    orientation, with its affine, float32 rounded to 0.001 bit; atomically (no half-written file on
    any failure)."""
    import nibabel as nib

    from .inference import _save_mask
    from .orientation import from_ras

    # rounded to 0.001 bit: the near-zero entropy of the far background becomes 0, and the file ~10x smaller
    data = from_ras(np.round(np.asarray(map_ras, dtype=np.float32), 3), original)
    header = original.header.copy()
    header.set_data_dtype(np.float32)
    header["scl_slope"], header["scl_inter"] = 1, 0
    header["descrip"] = b"lasegtut voxel uncertainty: entropy of p, bits"
    output = Path(output)
    _save_mask(nib.Nifti1Image(data, original.affine, header), output)
    return output


def sidecar_path(mask_path: str | os.PathLike) -> Path:
    """``<folder>/<name>.qc.json`` for the mask ``<folder>/<name>.nii.gz`` (or ``.nii``)."""
    p = Path(mask_path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + SIDECAR_SUFFIX)


def sidecar(report: dict, mask_path: str | os.PathLike, *, weights: Sequence[str], weights_sha256: str) -> dict:
    """What the sidecar of a mask holds (plain JSON)."""
    from . import __version__
    from .cohort import file_sha256
    from .safeio import json_safe

    u = report.get("uncertainty")
    return json_safe({"mask": Path(mask_path).name, "mask_sha256": file_sha256(mask_path)[1],
                      "uncertainty": u, "qc": report.get("qc"), "qc_threshold": report.get("qc_threshold"),
                      "estimator": ESTIMATOR, "volume_ml": report.get("volume_ml"),
                      "weights": list(weights), "weights_sha256": weights_sha256,
                      "lasegtut_version": __version__})


def write_sidecar(path: str | os.PathLike, content: dict) -> Path:
    """Write a sidecar (JSON) atomically (:func:`lasegtut.preprocess.atomic_write`)."""
    from .preprocess import atomic_write

    path = Path(path)
    data = (json.dumps(content, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as e:
        raise LasegError(f"could not write {path} ({e.strerror or type(e).__name__})") from None
    return path


def read_sidecar(mask_path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """The sidecar of a mask: ``(content, None)``; ``(None, None)`` when there is none; ``(None,
    why)`` when there is one that cannot be used (unreadable, or written for another mask: its
    SHA-256 differs from the mask's)."""
    from .cohort import file_sha256

    path = sidecar_path(mask_path)
    if not path.is_file():
        return None, None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(content, dict):
            raise ValueError
    except (OSError, ValueError, UnicodeDecodeError):
        return None, f"{path.name} beside the mask is not a readable lasegtut sidecar; ignored"
    try:
        sha = file_sha256(mask_path)[1]
    except OSError:
        return None, None
    if content.get("mask_sha256") != sha:
        return None, f"{path.name} was written for another mask (its SHA-256 differs); ignored"
    return content, None


def sidecar_warning(mask_path: str | os.PathLike) -> str | None:
    """For ``lasegtut volume`` and ``lasegtut shape``: the one line to say about the mask's sidecar
    (flagged ``review``, or an unusable sidecar), or None. Issued as a
    :class:`~lasegtut.errors.LasegWarning` (one ``warning:`` line on stderr under the CLI)."""
    import warnings

    from .errors import LasegWarning

    content, why = read_sidecar(mask_path)
    line = why
    if content is not None and content.get("qc") == "review":
        line = (f"this mask was flagged for review by lasegtut predict (uncertainty "
                f"{content.get('uncertainty')}, threshold {content.get('qc_threshold')}): "
                "check it before using what is measured")
    if line:
        warnings.warn(line, LasegWarning, stacklevel=2)
    return line
