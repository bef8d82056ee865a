"""Evaluating a segmentation model on labelled cases: one row of numbers per case.

:func:`evaluate_cases` runs the whole chain for every case -- load (RAS), segment with
:func:`lasegtut.inference.predict_volume`, score with :func:`lasegtut.metrics.evaluate_masks`,
measure both volumes with :func:`lasegtut.volume.volume_ml` -- and returns plain dicts that
:func:`format_table` prints as a text table. Smaller helpers look *inside* a case
(:func:`per_slice_dice`, :func:`best_worst_slices`), compare two measurement methods
(:func:`bland_altman_stats`) and read Lightning's CSV training log (:func:`read_metrics_csv`).

Conventions: volumes are RAS arrays ``(x, y, z)``; per-slice helpers take the array ``axis`` their
slices cut across (default 2: the files' own slices; a model's is ``info.geometry.slice_axis``); spacing
and distances are in mm; volumes in mL.
"""
from __future__ import annotations

import csv
import math
import os
import time
from typing import Iterable, Sequence

import numpy as np

from .errors import LasegError

#: Columns of a row from :func:`evaluate_cases` (units: Dice and IoU unitless, distances mm, volumes mL).
ROW_KEYS = ("case", "dice", "iou", "hd95_mm", "assd_mm", "volume_pred_ml", "volume_label_ml")
#: Header text of each column in :func:`format_table`.
COLUMN_TITLES = {"case": "case", "dice": "Dice", "iou": "IoU", "hd95_mm": "HD95 mm", "assd_mm": "ASSD mm",
                 "volume_pred_ml": "V pred mL", "volume_label_ml": "V label mL", "seconds": "s"}


def evaluate_cases(root: str | os.PathLike | None = None, cases: Sequence[str] | None = None,
                   model=None, info: dict | None = None, *, keep_masks: bool = False,
                   keep_images: bool = False, tta: bool = False, progress: bool = False,
                   device: str = "auto") -> list[dict]:
    """Segment and score labelled cases, one row per case.

    Args:
        root: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        cases: case ids (default: the three bundled validation cases la_009, la_014, la_020).
        model, info: from :func:`lasegtut.inference.load_model` (default: the shipped model), or
            ``model`` a list of such pairs to average (:func:`lasegtut.inference.load_models`).
        keep_masks: also return ``"pred"`` and ``"label"`` (uint8 ``(x, y, z)``),
            ``"spacing"`` (mm) and ``"affine"`` (4 x 4, RAS) in each row, for figures and files.
        keep_images: also return ``"image"`` (float32 ``(x, y, z)``, raw intensities).
        tta: flip test-time augmentation (off by default, as in ``lasegtut predict``).
        progress: show a tqdm progress bar over the cases.
        device: where the network runs (``"auto"``: a CUDA GPU if there is one, else the CPU).

    Returns:
        A list of dicts with :data:`ROW_KEYS` (python floats; distances are ``inf`` when one
        mask is empty, see :mod:`lasegtut.metrics`) plus ``"seconds"`` (wall time of the
        prediction) and the arrays asked for.
    """
    from .data import VALIDATION_CASES, load_case, resolve_data_dir
    from .inference import load_model, predict_volume
    from .metrics import evaluate_masks
    from .volume import volume_ml

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
        pred = predict_volume(case.image, model, info, spacing=case.spacing, tta=tta, device=device)
        seconds = time.perf_counter() - t0
        row: dict = {"case": case_id, **evaluate_masks(pred, case.label, case.spacing),
                     "volume_pred_ml": volume_ml(pred, case.spacing),
                     "volume_label_ml": volume_ml(case.label, case.spacing), "seconds": seconds}
        if keep_masks:
            row.update(pred=pred, label=case.label, spacing=case.spacing, affine=case.affine)
        if keep_images:
            row["image"] = case.image
        rows.append(row)
    return rows


def _fmt(value, digits: int) -> str:
    if isinstance(value, str):
        return value
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
    (a mean with an ``inf`` in it is ``inf``: a failed case stays visible). Dice and IoU get 3
    decimals, everything else 1 (override with ``digits={"hd95_mm": 2}``).
    """
    if not rows:
        raise LasegError("no rows to format")
    nd = {"dice": 3, "iou": 3}
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
    p, lab = np.asarray(pred) != 0, np.asarray(label) != 0
    if p.shape != lab.shape:
        raise LasegError(f"prediction shape {p.shape} differs from label shape {lab.shape}")
    other = tuple(a for a in range(p.ndim) if a != axis)
    inter = np.count_nonzero(p & lab, axis=other).astype(float)
    n_p = np.count_nonzero(p, axis=other).astype(float)
    n_l = np.count_nonzero(lab, axis=other).astype(float)
    out = np.full(n_l.shape, np.nan)
    has = n_l > 0
    out[has] = 2 * inter[has] / (n_p[has] + n_l[has])
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


def bland_altman_stats(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Bland-Altman agreement of two measurement methods on the same subjects.

    Differences are ``a - b`` (e.g. predicted minus true volume, mL). Returns ``mean`` (the
    mean of each pair), ``bias`` (mean difference), ``sd`` (sample standard deviation of the
    differences, ddof=1; NaN for one pair) and the 95 % limits of agreement
    ``loa_low``/``loa_high`` = ``bias -/+ 1.96 sd``; ``means`` and ``diffs`` are the per-pair
    arrays.

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


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read Lightning's ``CSVLogger`` file (``out/logs/version_0/metrics.csv``) into columns.

    Lightning writes one row per logging event with blanks for the metrics not logged then;
    blanks become NaN. Returns ``{column: float array}``, all of the same length (the rows),
    e.g. ``epoch``, ``step``, ``train_loss_step``, ``train_loss_epoch``, ``val_loss``, ``val_dice``.
    Select the rows of one metric with ``~np.isnan(cols["val_dice"])``.

    Raises:
        LasegError: the file is missing or empty.
    """
    if not os.path.isfile(path):
        raise LasegError(f"training log {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    if not records:
        raise LasegError(f"training log {path} holds no rows")
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in records])
            for k in records[0]}
