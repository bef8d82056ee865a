"""One *arm* of an experiment under grouped cross-validation, scored out of fold (notebook 09).

An experiment compares two recipes that differ in one decision of the pipeline (the slicing
axis, the 2.5D context, the loss, the crop, the network width, test-time flips, the threshold):
the *baseline* arm and the *changed* arm. :func:`run_arm` runs one arm the way
``docs/protocol.md`` describes: for each fold ``k`` of a grouped ``folds``-fold cross-validation
(:func:`lasegtut.split.kfold_cases`: la_005 and la_026, one scan labelled twice, always in one
fold) it trains on the other folds (:func:`lasegtut.training.train`, the **last** epoch exported,
so that no epoch is chosen by looking at the held-out cases), segments the held-out cases and
scores them (:func:`lasegtut.evaluation.evaluate_cases`). Every case is then predicted once, by a
model that never saw it: the *out-of-fold* scores, one row per case.

:func:`compare_arms` pairs two arms case by case and bootstraps the mean difference
(:func:`lasegtut.stats.bootstrap_ci`): a difference is *distinguishable* on the cases at hand
only where its 95% interval excludes 0. :func:`against_anchor` places a published figure (nnU-Net's
cross-validation, :data:`ANCHORS`) relative to an arm's interval.

Units: Dice and NSD unitless, distances mm, volumes mL, volume errors % of the label's volume.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import LasegError
from .evaluation import COLUMN_TITLES, _fmt, format_table, summarize_scores
from .metrics import NSD_TOLERANCE_MM
from .paths import RUNS
from .stats import bootstrap_ci, describe_bootstrap

#: Options of an arm that change the prediction, not the training (given to
#: :func:`lasegtut.evaluation.evaluate_cases`): test-time flips and the probability threshold.
PREDICTION_OPTIONS = ("tta", "threshold")

#: The decisions a capstone arm can change, and the option that changes each (training: a
#: :class:`lasegtut.training.Profile` field; prediction: :data:`PREDICTION_OPTIONS`).
DECISIONS = {
    "slicing axis": "slice_axis",
    "flips (test-time)": "tta",
    "2.5D context": "context",
    "loss (Dice + BCE weights)": "bce_weight",
    "crop": "border",
    "threshold": "threshold",
    "network width": "widths",
}

#: Settings that make an arm a *tiny* one: a few batches per fold, for nbval, CI and a student's
#: clone with the three bundled cases (its figures mean nothing).
TINY = {"epochs": 1, "limit_train_batches": 6, "limit_val_batches": 2}

#: Published anchors: nnU-Net's mean Dice in its 5-fold cross-validation on MSD Task02_Heart (all
#: 20 labelled cases): Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH. nnU-Net: a
#: self-configuring method for deep learning-based biomedical image segmentation. Nature Methods
#: 2021;18:203-211.
ANCHORS = {"nnU-Net 2d": 0.910, "nnU-Net 3d_fullres": 0.933}

#: Columns :meth:`ArmResult.table` prints.
TABLE_COLUMNS = ("case", "fold", "dice", "nsd", "hd95_mm", "volume_pred_ml", "volume_label_ml", "volume_error_pct")
#: The metrics the capstone reports, with their intervals.
REPORTED = ("dice", "nsd", "hd95_mm", "volume_error_pct")


@dataclass
class ArmResult:
    """The out-of-fold scores of one arm.

    ``rows``: one dict per case (``case``, ``fold``, Dice, IoU, HD95 and ASSD in mm, NSD, both
    volumes in mL, ``volume_error_pct``, ``seconds`` of prediction); ``folds``: the case ids of
    each fold; ``seconds``: wall time of the whole arm (training and prediction).
    """

    name: str
    changes: dict[str, Any]
    profile: str
    rows: list[dict]
    folds: list[list[str]]
    seconds: float
    nsd_tolerance_mm: float = NSD_TOLERANCE_MM
    runs: list[Path] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        """:func:`lasegtut.evaluation.summarize_scores` of the rows: means with 95% intervals."""
        return summarize_scores(self.rows, nsd_tolerance_mm=self.nsd_tolerance_mm)

    def values(self, metric: str) -> dict[str, float]:
        """``{case: value}`` of one metric column."""
        return {r["case"]: float(r[metric]) for r in self.rows}

    def table(self) -> str:
        """The per-case table (one line per case, its fold)."""
        return format_table(self.rows, TABLE_COLUMNS, summary=False, digits={"hd95_mm": 2})

    def describe(self) -> str:
        """The means of Dice, NSD, HD95 and the volume errors with their 95% intervals, and how the
        intervals were made (with a warning below 8 cases)."""
        s = self.summary
        change = ", ".join(f"{k}={v}" for k, v in self.changes.items()) or "the profile as it is"
        lines = [f"arm {self.name!r} ({self.profile} profile; {change}): {len(self.rows)} cases out of fold, "
                 f"{len(self.folds)} folds, {self.seconds:.0f} s"]
        for key in REPORTED:
            lines.append("  " + _interval_line(key, s[key]["mean"], s[key]["ci95"], self.nsd_tolerance_mm))
        lines.append("  " + _interval_line("|V err| %", s["mean_abs_volume_error_pct"],
                                           s["mean_abs_volume_error_pct_ci95"], self.nsd_tolerance_mm))
        lines.append("  " + describe_bootstrap(len(self.rows)))
        return "\n".join(lines)


def _interval_line(key: str, mean: float, ci: Sequence[float], tolerance_mm: float) -> str:
    digits = 3 if key in ("dice", "iou", "nsd") else 2 if key.endswith("_mm") else 1
    title = COLUMN_TITLES.get(key, key) + (f" @{tolerance_mm:g} mm" if key == "nsd" else "")
    return f"{title:<16} mean {_fmt(mean, digits):>8}  95% CI [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]"


def split_changes(changes: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training overrides, prediction options)`` of an arm's ``changes``.

    Raises:
        LasegError: a name that is neither a :class:`lasegtut.training.Profile` field nor one of
            :data:`PREDICTION_OPTIONS`.
    """
    from .training import Profile

    allowed = {f.name for f in fields(Profile)} - {"name"}
    train_opts, predict_opts = {}, {}
    for key, value in dict(changes or {}).items():
        if key in PREDICTION_OPTIONS:
            predict_opts[key] = value
        elif key in allowed:
            train_opts[key] = value
        else:
            raise LasegError(f"an arm cannot change {key!r}: give a training profile field "
                             f"({', '.join(sorted(allowed))}) or a prediction option ({', '.join(PREDICTION_OPTIONS)})")
    return train_opts, predict_opts


def run_arm(name: str, changes: Mapping[str, Any] | None = None, *, data: str | os.PathLike | None = None,
            folds: int = 3, profile: str = "ci", out: str | os.PathLike | None = None,
            device: str = "cpu", progress: bool = False,
            nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> ArmResult:
    """Run one arm under grouped ``folds``-fold cross-validation and score every case out of fold.

    Args:
        name: the arm's name (its runs go to ``out/name/fold<k>``; letters, digits, ``-`` and ``_``).
        changes: what this arm changes: :class:`lasegtut.training.Profile` fields (``slice_axis``,
            ``context``, ``bce_weight``, ``border``, ``widths``, ``epochs``, ...) and prediction
            options (``tta``, ``threshold``). ``select`` defaults to ``"last"``: the held-out fold
            must not choose the exported epoch.
        data: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        folds: number of folds (3 for the three bundled cases; 5 with the full data set).
        profile: the training profile the arm starts from (``ci``, ``cpu``, ``gpu``).
        out: folder for the runs (each fold is trained afresh) and the preprocessing caches
            (default: ``runs/capstone`` in the course checkout, :data:`lasegtut.paths.RUNS`).
        device: where the held-out cases are segmented.
        progress: show Lightning's progress bars and the folds.
        nsd_tolerance_mm: the NSD's tolerance (default: 4 mm, :data:`lasegtut.metrics.NSD_TOLERANCE_MM`).

    Returns:
        An :class:`ArmResult`, the rows in fold order.

    Raises:
        LasegError: an unknown change, a bad arm name, fewer subjects than folds, or as
            :func:`lasegtut.training.train`.
    """
    import re

    from .data import resolve_data_dir
    from .evaluation import evaluate_cases
    from .inference import load_model
    from .training import get_profile, train

    if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
        raise LasegError(f"an arm's name is letters, digits, '-' and '_' (a folder name), not {name!r}")
    train_opts, predict_opts = split_changes(changes)
    train_opts.setdefault("select", "last")
    try:
        border = replace(get_profile(profile), **train_opts).border
    except TypeError as e:
        raise LasegError(f"arm {name}: {e}") from None
    root = resolve_data_dir(data)
    out = Path(out) if out is not None else RUNS / "capstone"
    cache = out / f"cache-border{border}"  # shared by the arms and folds that crop alike
    t0 = time.perf_counter()
    rows: list[dict] = []
    runs: list[Path] = []
    fold_cases: list[list[str]] = []
    for k in range(folds):
        run = out / name / f"fold{k}"
        result = train(root, profile, run, folds=folds, fold=k, resume=False, cache=cache, progress=progress,
                       **train_opts)
        fold_cases = result.folds or []
        model, info = load_model(result.weights, device=device)
        for row in evaluate_cases(root, result.val_cases, model, info, device=device,
                                  nsd_tolerance_mm=nsd_tolerance_mm, **predict_opts):
            rows.append({"case": row.pop("case"), "fold": k, **row})
        runs.append(run)
    return ArmResult(name, dict(changes or {}), profile, rows, fold_cases, time.perf_counter() - t0,
                     float(nsd_tolerance_mm), runs)


def compare_arms(baseline: ArmResult | Mapping[str, float], changed: ArmResult | Mapping[str, float],
                 metric: str = "dice") -> dict:
    """The paired difference ``changed - baseline`` of one metric, case by case, with its 95%
    bootstrap interval over cases.

    Pairing removes what the cases share (an easy scan is easy for both arms), so the interval
    of the difference is narrower than the two arms' intervals suggest. The difference is
    *distinguishable* on these cases only when the interval excludes 0.

    Args:
        baseline, changed: two :class:`ArmResult` (or ``{case: value}`` mappings) over the same cases.
        metric: a column of the rows (``dice``, ``nsd``, ``hd95_mm``, ``volume_error_pct``, ...).

    Returns:
        ``{"metric", "cases", "mean_difference", "ci95": [lo, hi], "distinguishable": bool}``.

    Raises:
        LasegError: the arms do not hold the same cases.
    """
    a = baseline.values(metric) if isinstance(baseline, ArmResult) else dict(baseline)
    b = changed.values(metric) if isinstance(changed, ArmResult) else dict(changed)
    if set(a) != set(b) or not a:
        raise LasegError(f"the two arms hold different cases ({sorted(set(a) ^ set(b))}); compare arms run on "
                         "the same data and folds")
    cases = sorted(a)
    diffs = np.array([b[c] - a[c] for c in cases], dtype=float)
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(diffs))
    lo, hi = bootstrap_ci(diffs)
    return {"metric": metric, "cases": len(cases), "mean_difference": mean, "ci95": [lo, hi],
            "distinguishable": bool(not math.isnan(lo) and (lo > 0 or hi < 0))}


def against_anchor(ci95: Sequence[float], anchor: float) -> str:
    """Where a published figure lies relative to an interval: ``"above"`` (the interval lies
    entirely below it: distinguishable, worse for Dice), ``"below"``, or ``"inside"`` (not
    distinguishable on these cases)."""
    lo, hi = float(ci95[0]), float(ci95[1])
    if math.isnan(lo) or math.isnan(hi):
        return "inside"
    if anchor > hi:
        return "above"
    if anchor < lo:
        return "below"
    return "inside"


# ----------------------------------------------------------------------------- out-of-fold results files
#: Columns of an out-of-fold results table (``benchmarks/results/oof_*.csv``): the case, the fold
#: that held it out, the metrics (distances mm), both volumes (mL) and the signed volume error (%).
OOF_COLUMNS = ("case", "fold", "dice", "nsd", "hd95_mm", "assd_mm", "iou", "volume_pred_ml", "volume_label_ml",
               "volume_error_pct")


def expert_agreement(data: str | os.PathLike | None = None, *,
                     nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> dict:
    """How far the two expert labels of the one scan Task02_Heart holds twice (la_005 / la_026)
    disagree: the scale against which a model's errors can be read (one scan, one pair of
    annotators: an anecdote, not a ceiling).

    Read with :func:`lasegtut.data.duplicate_pair` (the full scans where ``data`` holds them,
    else the crop shipped in ``data/duplicate_pair``, which gives the same figures).

    Returns:
        ``{"cases": [la_005, la_026], "read_from": folder}``, :func:`lasegtut.metrics.score_masks`
        of la_005's label against la_026's (``volume_pred_ml`` is la_005's, ``volume_label_ml``
        la_026's), and ``volume_diff_ml`` (la_005 - la_026), ``volume_mean_ml``,
        ``volume_diff_pct`` (% of their mean).
    """
    from .data import duplicate_pair
    from .metrics import score_masks

    a, b, folder = duplicate_pair(data)
    m = score_masks(a.label, b.label, b.spacing, pred_spacing=a.spacing, nsd_tolerance_mm=nsd_tolerance_mm)
    diff, mean = m["volume_pred_ml"] - m["volume_label_ml"], (m["volume_pred_ml"] + m["volume_label_ml"]) / 2
    return {"cases": [a.case_id, b.case_id], "read_from": str(folder), **m, "volume_diff_ml": diff,
            "volume_mean_ml": mean, "volume_diff_pct": 100 * diff / mean}


def write_oof_results(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write an out-of-fold results table ``path`` (CSV, :data:`OOF_COLUMNS`, one row per case,
    ``inf`` for the distances of a missed atrium) and its description beside it (``path`` with
    ``.json``: ``meta``, e.g. the recipe, epochs, folds, date and command, with ``inf``/NaN as
    null). Both are written atomically. Returns the two paths."""
    import csv
    import io
    import json

    from .preprocess import atomic_write
    from .safeio import json_safe, make_output_dir

    path = Path(path)
    if path.suffix != ".csv":
        raise LasegError(f"an out-of-fold results table is a .csv file, not {path.name}")
    make_output_dir(path.parent)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(OOF_COLUMNS)
    for r in rows:
        w.writerow([r[c] if isinstance(r[c], (str, int)) else format(float(r[c]), ".6g") for c in OOF_COLUMNS])
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))
    side = path.with_suffix(".json")
    text = json.dumps(json_safe(dict(meta)), indent=1, sort_keys=True, allow_nan=False) + "\n"
    atomic_write(side, lambda f: f.write(text.encode()))
    return path, side


def read_oof_results(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Read an out-of-fold results table written by :func:`write_oof_results`: ``(rows, meta)``,
    the rows with float metrics (``inf`` kept) and an int ``fold``; ``meta`` from the ``.json``
    beside it ({} if there is none).

    Raises:
        LasegError: the file is missing or lacks a column of :data:`OOF_COLUMNS`.
    """
    import csv
    import json

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    except OSError as e:
        raise LasegError(f"cannot read {path} ({e.strerror or type(e).__name__})") from None
    if not records or any(c not in records[0] for c in OOF_COLUMNS):
        raise LasegError(f"{path} is not an out-of-fold results table (columns {', '.join(OOF_COLUMNS)})")
    rows = [{"case": r["case"], "fold": int(r["fold"]), **{c: float(r[c]) for c in OOF_COLUMNS[2:]}}
            for r in records]
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    return rows, meta
