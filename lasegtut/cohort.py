"""Many scans at once: a folder of scans -> a folder of masks and one table of volumes.

``lasegtut predict SCANS_DIR OUT_DIR`` (or several scan files, then the output folder) runs
:func:`predict_folder`: one mask per scan, ``OUT_DIR/<case>.nii.gz``, and ``OUT_DIR/volumes.csv``
with a row per scan (:data:`VOLUME_COLUMNS`). With a CSV of heights and weights (columns
``case,height_cm,weight_kg``) each row also gets the body-surface area, the LA volume index and
its grade.

- **Safe to rerun.** A scan whose mask and ``ok`` row are already there is skipped; masks and
  the table are written under temporary names and renamed, so an interrupted run never leaves
  a half-written file (the table is rewritten after every scan).
- **A bad scan does not stop the batch**: its row says ``error: <why>`` and the run goes on.
- **Uses the machine**: the model is loaded once for the whole folder (a separate
  ``lasegtut predict`` per scan pays for starting Python, importing PyTorch and loading the
  weights every time), torch's threads run the network on every core, and the next scan is
  read and decompressed in a background thread while the network works on the current one.

``evaluate_folders`` scores a folder of predicted masks against a folder of labels: the same
per-case figures as ``benchmarks/quality.py`` and a summary (mean, SD, worst case).
"""
from __future__ import annotations

import csv
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import load_image, load_mask_pair, load_nifti
from .errors import LasegError
from .evaluation import ROW_KEYS
from .metrics import NSD_TOLERANCE_MM, score_masks
from .preprocess import atomic_write
from .safeio import make_output_dir
from .stats import N_RESAMPLES, SEED, bootstrap_ci
from .volume import bsa_mosteller, grade_lavi, implausible, lavi, volume_error_pct, volume_ml

#: Columns of ``volumes.csv`` (volume in mL, spacing in mm, time in s; the last four only with
#: heights and weights).
VOLUME_COLUMNS = ("case", "status", "volume_ml", "voxels", "spacing_mm", "seconds", "mask",
                  "height_cm", "weight_kg", "bsa_m2", "lavi_ml_m2", "grade")
#: Columns of :func:`evaluate_folders`' table: :data:`lasegtut.evaluation.ROW_KEYS` and the volume error (%).
SCORE_COLUMNS = ROW_KEYS + ("volume_error_pct",)


def case_name(path: str | os.PathLike) -> str:
    """``la_003`` for ``.../la_003.nii.gz`` or ``.../la_003.nii``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_scans(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The NIfTI files named, or found (sorted) in the folders named; LasegError if none."""
    scans: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            scans += sorted(q for q in p.iterdir() if q.is_file() and q.name.endswith((".nii", ".nii.gz"))
                            and not q.name.startswith("."))
        elif p.is_file():
            scans.append(p)
        else:
            raise LasegError(f"{p} does not exist")
    if not scans:
        raise LasegError(f"no .nii or .nii.gz scans in {', '.join(str(i) for i in inputs)}")
    names = [case_name(s) for s in scans]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LasegError(f"two scans share the case name {dupes[0]}; their masks would overwrite each other")
    return scans


def read_body_sizes(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``{case: (height_cm, weight_kg)}`` from a CSV with the columns ``case,height_cm,weight_kg``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise LasegError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    out = {}
    for i, r in enumerate(rows, start=2):
        try:
            case, size = r["case"].strip(), (float(r["height_cm"]), float(r["weight_kg"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LasegError(f"{path} line {i}: need the columns case,height_cm,weight_kg with numbers") from None
        if case in out:  # which line is right? never pick one silently
            raise LasegError(f"{path} line {i}: case {case} is given twice; keep one line per case")
        try:  # before any scan is segmented: a height in metres, a weight in pounds
            bsa_mosteller(*size)
        except LasegError as e:
            raise LasegError(f"{path} line {i} ({case}): {e}") from None
        out[case] = size
    return out


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _read_done(table: Path) -> dict[str, dict]:
    if not table.is_file():
        return {}
    try:
        with open(table, newline="", encoding="utf-8") as f:
            return {r["case"]: r for r in csv.DictReader(f) if r.get("case")}
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}  # an unreadable old table: every scan is done again


def predict_folder(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                   weights: Sequence[str | os.PathLike] | None = None, device: str = "auto",
                   body_sizes: str | os.PathLike | None = None, force: bool = False, tta: bool = False,
                   largest_component: bool = True, progress: bool = True) -> tuple[Path, list[dict]]:
    """Segment every scan of ``inputs`` into ``out_dir``; returns (``volumes.csv``, its rows).

    ``force``: redo scans already done. See the module docstring for the rest.
    """
    from tqdm.auto import tqdm

    # torch only where a model runs: `lasegtut evaluate` on folders (evaluate_folders) needs none
    from .inference import load_models, predict_volume, resolve_device, write_mask

    scans = list_scans(inputs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LasegError(f"output {out} is a file; give a folder for the masks and volumes.csv")
    inputs_dirs = {s.parent.resolve() for s in scans}
    if out.exists() and out.resolve() in inputs_dirs:
        raise LasegError(f"the output folder {out} holds the scans themselves; masks would replace them: "
                         "give another folder")
    sizes = read_body_sizes(body_sizes) if body_sizes else {}
    dev = resolve_device(device)
    members = load_models(weights, device=dev)
    make_output_dir(out)
    table = out / "volumes.csv"
    done = {} if force else _read_done(table)
    rows: dict[str, dict] = {}

    def load(path: Path):
        try:
            original = load_nifti(path)
            return original, load_image(path, original)
        except LasegError as e:
            return e

    todo = []
    for scan in scans:
        case = case_name(scan)
        old = done.get(case)
        if old and old.get("status") == "ok" and (out / f"{case}.nii.gz").is_file():
            rows[case] = old
        else:
            todo.append(scan)
    bar = tqdm(total=len(scans), initial=len(scans) - len(todo), desc="scans", unit="scan", disable=not progress)
    with ThreadPoolExecutor(max_workers=1) as reader:  # reads scan i + 1 while scan i is segmented
        pending = reader.submit(load, todo[0]) if todo else None
        for i, scan in enumerate(todo):
            case, t0 = case_name(scan), time.perf_counter()
            loaded = pending.result()
            pending = reader.submit(load, todo[i + 1]) if i + 1 < len(todo) else None
            row: dict = {"case": case}
            try:
                if isinstance(loaded, LasegError):
                    raise loaded
                original, (image, spacing, _) = loaded
                mask_ras = predict_volume(image, members, spacing=spacing, tta=tta,
                                          largest_cc=largest_component, device=dev)
                if not mask_ras.any():
                    raise LasegError("no left atrium found (the model's answer is empty)")
                mask_path = write_mask(mask_ras, original, out / f"{case}.nii.gz")
                ml = volume_ml(mask_ras, spacing)
                why = implausible(ml)
                row.update(status="ok" if why is None else f"implausible: {why}",
                           volume_ml=round(ml, 2), voxels=int(mask_ras.sum()),
                           spacing_mm=" ".join(f"{s:.4g}" for s in spacing), mask=mask_path.name)
                if case in sizes and row["status"] == "ok":
                    h, w = sizes[case]
                    bsa = bsa_mosteller(h, w)
                    index = lavi(ml, bsa)
                    row.update(height_cm=h, weight_kg=w, bsa_m2=round(bsa, 3), lavi_ml_m2=round(index, 2),
                               grade=grade_lavi(index))
            except LasegError as e:
                row["status"] = f"error: {e}"
            except MemoryError:
                row["status"] = "error: not enough memory for this scan"
            row["seconds"] = round(time.perf_counter() - t0, 2)
            rows[case] = row
            _write_csv(table, VOLUME_COLUMNS, [rows[c] for c in sorted(rows)])
            bar.update(1)
    bar.close()
    _write_csv(table, VOLUME_COLUMNS, [rows[c] for c in sorted(rows)])
    return table, [rows[c] for c in sorted(rows)]


def evaluate_folders(pred_dir: str | os.PathLike, label_dir: str | os.PathLike, *,
                     nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> tuple[list[dict], dict]:
    """Score every mask of ``pred_dir`` against the label of the same case name in ``label_dir``.

    Returns ``(rows, summary)``: one dict per case with :data:`SCORE_COLUMNS` (Dice, IoU, HD95
    and ASSD in mm, NSD at ``nsd_tolerance_mm``, volumes in mL, volume error in %), and for each
    numeric column its ``mean``, ``sd``, ``ci95`` (``[lo, hi]``, the 95% percentile-bootstrap
    interval of the mean over cases: :func:`lasegtut.stats.bootstrap_ci`) and the ``worst`` case
    (lowest Dice, IoU and NSD, largest distances and absolute volume error); also
    ``mean_abs_volume_error_pct`` with its ``mean_abs_volume_error_pct_ci95``, and ``bootstrap``
    (cases, resamples, seed). A prediction without a label is an error; labels without a
    prediction are ignored.
    """
    preds = list_scans([pred_dir])
    labels = {case_name(p): p for p in list_scans([label_dir])}
    rows = []
    for p in preds:
        case = case_name(p)
        if case not in labels:
            raise LasegError(f"no label for {p.name} in {label_dir}")
        pred, lab, sp_p, sp_l = load_mask_pair(p, labels[case])
        m = score_masks(pred, lab, sp_l, pred_spacing=sp_p, nsd_tolerance_mm=nsd_tolerance_mm)
        rows.append({"case": case, **m, "volume_error_pct": volume_error_pct(m["volume_pred_ml"], m["volume_label_ml"])})
    summary = {}
    with np.errstate(invalid="ignore"):  # an empty mask's infinite distances give an SD of nan, not a RuntimeWarning
        for key in SCORE_COLUMNS[1:]:
            vals = np.array([r[key] for r in rows], dtype=float)
            worst_of = vals if key not in ("dice", "iou", "nsd") else -vals
            if key == "volume_error_pct":
                worst_of = np.abs(vals)
            summary[key] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                            "ci95": list(bootstrap_ci(vals)), "worst": rows[int(np.nanargmax(worst_of))]["case"]}
    abs_err = [abs(r["volume_error_pct"]) for r in rows]
    summary["mean_abs_volume_error_pct"] = float(np.mean(abs_err))
    summary["mean_abs_volume_error_pct_ci95"] = list(bootstrap_ci(abs_err))
    summary["nsd_tolerance_mm"] = float(nsd_tolerance_mm)
    summary["bootstrap"] = {"cases": len(rows), "resamples": N_RESAMPLES, "seed": SEED, "confidence": 0.95,
                            "method": "percentile bootstrap of the mean over cases"}
    return rows, summary
