"""Evaluating a segmentation model on labelled cases: one row of numbers per case.

:func:`evaluate_cases` runs the whole chain for every case -- load (RAS), segment with
:func:`lasegtut.inference.predict_volume`, score with :func:`lasegtut.metrics.score_masks` (Dice,
IoU, HD95, ASSD and both volumes: the same scoring as ``lasegtut evaluate``) -- and returns plain
dicts that :func:`format_table` prints as a text table. The numbers themselves, also slice by
slice, live in :mod:`lasegtut.metrics`; the agreement of two volume measurements (Bland-Altman) in
:mod:`lasegtut.volume`.

Conventions: volumes are RAS arrays ``(x, y, z)``; spacing and distances are in mm; volumes in mL.
"""
from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .data import VALIDATION_CASES, load_case, resolve_data_dir
from .errors import LasegError
from .metrics import NSD_TOLERANCE_MM, SCORE_KEYS, score_masks
from .stats import N_RESAMPLES, SEED, bootstrap_ci
from .volume import volume_error_pct

if TYPE_CHECKING:
    from .geometry import Geometry
    from .weightsfile import ModelInfo

#: Columns of a row from :func:`evaluate_cases` (units: Dice and IoU unitless, distances mm, volumes mL).
ROW_KEYS = ("case",) + SCORE_KEYS
#: Header text of each column in :func:`format_table`.
COLUMN_TITLES = {"case": "case", "dice": "Dice", "iou": "IoU", "hd95_mm": "HD95 mm", "assd_mm": "ASSD mm", "nsd": "NSD",
                 "volume_pred_ml": "V pred mL", "volume_label_ml": "V label mL", "volume_error_pct": "V err %",
                 "seconds": "s", "fold": "fold"}
#: The numeric columns :func:`summarize_scores` summarises by default: the metrics, both volumes (mL) and the
#: signed volume error (%).
SUMMARY_KEYS = SCORE_KEYS + ("volume_error_pct",)
#: Metrics where a higher value is better (for the other columns, lower is better).
HIGHER_IS_BETTER = ("dice", "iou", "nsd")


def evaluate_cases(root: str | os.PathLike | None = None, cases: Sequence[str] | None = None,
                   model=None, info: ModelInfo | Geometry | None = None, *, keep_masks: bool = False,
                   keep_images: bool = False, tta: bool = False, progress: bool = False,
                   device: str = "auto", keep_probabilities: bool = False, threshold: float = 0.5,
                   nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> list[dict]:
    """Segment and score labelled cases, one row per case.

    Args:
        root: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        cases: case ids (default: the three bundled validation cases la_009, la_014, la_020).
        model, info: from :func:`lasegtut.inference.load_model` (default: the shipped model), or
            ``model`` a list of such pairs to average (:func:`lasegtut.inference.load_models`).
        keep_masks: also return ``"pred"`` and ``"label"`` (uint8 ``(x, y, z)``),
            ``"spacing"`` (mm) and ``"affine"`` (4 x 4, RAS) in each row, for figures and files.
        keep_images: also return ``"image"`` (float32 ``(x, y, z)``, raw intensities).
        keep_probabilities: also return ``"prob"``, the model's probabilities (float32 ``(x, y, z)``
            in [0, 1], :func:`lasegtut.inference.predict_probabilities`; about 50 MB for a scan of
            320 x 320 x 130 voxels), to try another threshold or no largest-component step
            (:func:`lasegtut.inference.segment_probabilities`) without predicting again. The
            prediction, the scores and ``"pred"`` are the same with or without it.
        tta: flip test-time augmentation (off by default, as in ``lasegtut predict``).
        progress: show a tqdm progress bar over the cases.
        device: where the network runs (``"auto"``: a CUDA GPU if there is one, else the CPU).
        threshold: the probability a voxel needs to be called atrium (default 0.5; see
            :func:`lasegtut.inference.predict_volume`).
        nsd_tolerance_mm: the tolerance of the NSD in mm (default: 4 mm, :data:`lasegtut.metrics.NSD_TOLERANCE_MM`).

    Returns:
        A list of dicts with :data:`ROW_KEYS` (python floats; distances are ``inf`` when one
        mask is empty, see :mod:`lasegtut.metrics`) plus ``"volume_error_pct"`` (signed, % of the
        label's volume), ``"seconds"`` (wall time of the prediction) and the arrays asked for.
    """
    # torch only where a model runs: format_table (``lasegtut evaluate`` on folders) needs none
    from .inference import load_model, predict_volume

    root = resolve_data_dir(root)
    cases = list(VALIDATION_CASES if cases is None else cases)
    if model is None:
        model, info = load_model(device=device)
    iterator: Iterable[str] = cases
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cases, desc="cases")
    rows = []
    for case_id in iterator:
        case = load_case(root, case_id)
        t0 = time.perf_counter()
        pred = predict_volume(case.image, model, info, spacing=case.spacing, tta=tta, device=device,
                              threshold=threshold, return_probability=keep_probabilities)
        if keep_probabilities:
            pred, prob = pred
        seconds = time.perf_counter() - t0
        scores = score_masks(pred, case.label, case.spacing, nsd_tolerance_mm=nsd_tolerance_mm)
        row: dict = {"case": case_id, **scores,
                     "volume_error_pct": volume_error_pct(scores["volume_pred_ml"], scores["volume_label_ml"]),
                     "seconds": seconds}
        if keep_masks:
            row.update(pred=pred, label=case.label, spacing=case.spacing, affine=case.affine)
        if keep_images:
            row["image"] = case.image
        if keep_probabilities:
            row["prob"] = prob
        rows.append(row)
    return rows


def summarize_scores(rows: Sequence[dict], keys: Sequence[str] = SUMMARY_KEYS, *,
                     nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> dict:
    """Means over cases, each with its 95% bootstrap interval: the summary of every table of scores
    (``lasegtut evaluate`` on folders, the out-of-fold report, the capstone's arms).

    Args:
        rows: one dict per case (``"case"`` and the numeric ``keys``; a ``"volume_error_pct"``
            column, % of the label's volume, adds the mean absolute volume error).
        keys: the numeric columns to summarise.
        nsd_tolerance_mm: the NSD's tolerance the rows were scored with, recorded in the summary.

    Returns:
        For each key ``{"mean", "sd", "ci95": [lo, hi], "worst": case}`` (``ci95``: the 95%
        percentile-bootstrap interval of the mean over cases, :func:`lasegtut.stats.bootstrap_ci`;
        ``worst``: lowest Dice, IoU and NSD, largest distances and absolute volume error); then
        ``mean_abs_volume_error_pct`` and its ``mean_abs_volume_error_pct_ci95`` (with a volume
        error column), ``nsd_tolerance_mm``, and ``bootstrap`` (cases, resamples, seed).

    Raises:
        LasegError: no rows.
    """
    if not rows:
        raise LasegError("no cases to summarise")
    summary: dict = {}
    with np.errstate(invalid="ignore"):  # an empty mask's infinite distances give an SD of nan, not a RuntimeWarning
        for key in keys:
            vals = np.array([r[key] for r in rows], dtype=float)
            worst_of = -vals if key in HIGHER_IS_BETTER else vals
            if key == "volume_error_pct":
                worst_of = np.abs(vals)
            worst = rows[int(np.nanargmax(worst_of))]["case"] if not np.isnan(worst_of).all() else None
            summary[key] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                            "ci95": list(bootstrap_ci(vals)), "worst": worst}
    if "volume_error_pct" in keys:
        abs_err = [abs(r["volume_error_pct"]) for r in rows]
        summary["mean_abs_volume_error_pct"] = float(np.mean(abs_err))
        summary["mean_abs_volume_error_pct_ci95"] = list(bootstrap_ci(abs_err))
    summary["nsd_tolerance_mm"] = float(nsd_tolerance_mm)
    summary["bootstrap"] = {"cases": len(rows), "resamples": N_RESAMPLES, "seed": SEED, "confidence": 0.95,
                            "method": "percentile bootstrap of the mean over cases"}
    return summary


def _fmt(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))  # a count or a fold number, not a measurement
    v = float(value)
    if math.isinf(v):
        return "inf"
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def format_table(rows: Sequence[dict], columns: Sequence[str] = ROW_KEYS, *, summary: bool = True,
                 digits: dict[str, int] | None = None) -> str:
    """A plain-text table of ``rows`` (dicts from :func:`evaluate_cases`), one line per case.

    With ``summary=True`` two lines follow: the mean and the median of every numeric column
    (a mean with an ``inf`` in it is ``inf``: a failed case stays visible). Dice, IoU and NSD get 3
    decimals, everything else 1 (override with ``digits={"hd95_mm": 2}``).
    """
    if not rows:
        raise LasegError("no rows to format")
    nd = {"dice": 3, "iou": 3, "nsd": 3}
    nd.update(digits or {})
    table = [[COLUMN_TITLES.get(c, c) for c in columns]]
    for r in rows:
        table.append([_fmt(r[c], nd.get(c, 1)) for c in columns])
    if summary and len(rows) > 1:
        for name, fn in (("mean", np.mean), ("median", np.median)):
            line = [name]
            for c in columns[1:]:
                vals = [r[c] for r in rows]
                line.append(_fmt(fn(np.asarray(vals, dtype=float)), nd.get(c, 1))
                            if all(isinstance(v, (int, float)) for v in vals) else "")
            table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    if summary and len(rows) > 1:
        lines.insert(len(rows) + 2, "-" * len(lines[0]))
    return "\n".join(lines)
