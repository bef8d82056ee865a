"""Choose the QC threshold and the calibration temperature of a model on its TRAINING cases (prints figures).

    python benchmarks/fit_qc.py [--weights W] [--data DIR] [--cache DIR] [--stride N]
                                [--write OUT.pt [--force]]

Issue 25. The threshold of ``lasegtut predict``'s QC flag (:mod:`lasegtut.uncertainty`) and a
temperature for its voxel probabilities are chosen here, **never on the bundled validation cases**
(la_009, la_014, la_020): on the other 15 labelled cases of the full data set (the cases the
shipped model was trained on; out-of-fold predictions would be better once the cross-validation
work provides models for them), clean and degraded with :func:`lasegtut.degrade.degrade`:

1. every training case (sorted; case number ``i`` from 0) is predicted clean and degraded by a
   quarter of :data:`lasegtut.degrade.SEVERITIES` (mild, issue and harsh levels): severity number
   ``j`` (in the table's order) when ``i + j`` is a multiple of ``--stride`` (default 4), so that
   every severity is seen on 3 or 4 cases; noise seed ``i``. That is 75 predictions, about 45
   minutes on a 2-core CPU shared with other work (``--stride 1``: all 16 on every case, 255);
2. each scan's Dice against its label and several cheap uncertainty estimators are computed from
   the probability map; the script prints, per estimator, the Spearman correlation with
   ``1 - Dice`` and how well it separates the scans below Dice 0.80 (the measurement that chose
   :data:`lasegtut.uncertainty.ESTIMATOR`);
3. the **threshold** for the chosen estimator: a scan is ``review`` when its uncertainty is above
   it. It is put in the gap below the least uncertain failure (Dice < 0.80): the geometric mean of
   that failure's uncertainty and of the largest uncertainty of a good scan (Dice >= 0.80) below
   it, so that every training failure is flagged with the widest margin on both sides;
4. the **temperature** (:func:`lasegtut.uncertainty.fit_temperature`): fitted on the voxels of
   the clean training scans in a box around the atrium (the label and every voxel with p > 0.001,
   grown by 10 voxels), 2 million voxels drawn at random (seed 0);
5. ``--write OUT.pt``: a copy of the weights file with ``qc_threshold``, ``qc_estimator``,
   ``calibration_temperature`` and ``qc_fit`` (how they were chosen) in its ``meta``; the network's
   tensors are kept byte for byte (checked; :func:`lasegtut.uncertainty.store_qc_settings`).
   Replace the shipped file with it in a commit.

``--cache DIR`` keeps each scan's probabilities (a box around the atrium, float16, ``.npz``) so
that a rerun only computes what is missing.
"""
from __future__ import annotations

import argparse
import datetime
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lasegtut.data import VALIDATION_CASES, list_cases, load_case
from lasegtut.degrade import SEVERITIES, degrade
from lasegtut.errors import LasegError
from lasegtut.inference import load_models, predict_volume
from lasegtut.metrics import dice
from lasegtut.paths import SHIPPED_WEIGHTS, full_data_dir
from lasegtut.uncertainty import (ESTIMATOR, META_ESTIMATOR, META_TEMPERATURE, META_THRESHOLD, fit_temperature,
                                  logits_of, near_region, scan_uncertainty, store_qc_settings, voxel_uncertainty)

#: A scan segmented below this Dice is a failure that QC must flag (issue 25).
FAIL_DICE = 0.80
#: Voxels drawn for the temperature fit.
TEMPERATURE_VOXELS = 2_000_000


def schedule(cases: list[str], stride: int) -> list[tuple[int, str, str]]:
    """``(case number, case, severity or "clean")`` of every scan to predict (see the docstring)."""
    names = list(SEVERITIES)
    out = []
    for i, c in enumerate(cases):
        out.append((i, c, "clean"))
        out += [(i, c, n) for j, n in enumerate(names) if (i + j) % stride == 0]
    return out


def predict_scan(root: Path, members, i: int, case_id: str, name: str, cache: Path, loaded: dict) -> Path:
    """Predict one (case, severity) and keep its probabilities in a box around the atrium in ``cache``."""
    f = cache / f"{case_id}__{name}.npz"
    if f.exists():
        return f
    if loaded.get("id") != case_id:
        loaded.clear()
        loaded.update(id=case_id, case=load_case(root, case_id))
    case = loaded["case"]
    img = case.image if name == "clean" else degrade(case.image, case.spacing, name, seed=i, label=case.label)
    t0 = time.perf_counter()
    mask, prob = predict_volume(img, members, spacing=case.spacing, device="cpu", return_probability=True)
    sec = time.perf_counter() - t0
    lab = case.label > 0
    d = float(dice(mask, lab))
    idx = np.argwhere(lab | (prob > 1e-3))
    lo, hi = np.maximum(idx.min(0) - 10, 0), np.minimum(idx.max(0) + 11, prob.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    tmp = f.with_name(f".{f.name}.tmp.npz")
    np.savez_compressed(tmp, prob=prob[box].astype(np.float16), label=lab[box], mask=mask[box].astype(bool),
                        lo=lo, shape=np.array(prob.shape), spacing=np.array(case.spacing), dice=d, sec=sec,
                        mask_total=int(mask.sum()))
    tmp.replace(f)
    print(f"  {case_id} {name:12s} Dice {d:.3f}  ({sec:.1f} s)", flush=True)
    return f


def candidates(z) -> dict[str, float]:
    """The estimators compared (all from one probability map; higher = less trustworthy)."""
    p, m, sp = z["prob"].astype(np.float32), z["mask"], tuple(float(s) for s in z["spacing"])
    if not m.any():
        return {k: math.inf for k in ("entropy near atrium / V (default)", "entropy near 2 mm / V",
                                      "entropy whole map / V", "0.25<p<0.75 voxels / V",
                                      "dropped by largest comp.", "1 - soft Dice(p, mask)")}
    n = int(m.sum())
    h = voxel_uncertainty(p)
    near2 = np.zeros(m.shape, bool)
    box, region = near_region(m, sp, 2.0)
    near2[box] = region
    thr = p >= 0.5
    return {
        "entropy near atrium / V (default)": scan_uncertainty(p, m, sp),
        "entropy near 2 mm / V": float(h[near2].sum(dtype=np.float64) / n),
        "entropy whole map / V": float(h.sum(dtype=np.float64) / n),
        "0.25<p<0.75 voxels / V": float(((p > 0.25) & (p < 0.75)).sum() / n),
        "dropped by largest comp.": float((thr & ~m).sum() / max(int(thr.sum()), 1)),
        "1 - soft Dice(p, mask)": float(1 - 2 * (p * m).sum(dtype=np.float64) / (p.sum(dtype=np.float64) + n)),
    }


def choose_threshold(u: np.ndarray, d: np.ndarray) -> float:
    """The threshold of step 3 of the docstring (``u`` uncertainties, ``d`` Dice per scan)."""
    fail = u[d < FAIL_DICE]
    if not len(fail):
        raise LasegError("no training scan fell below Dice 0.80: nothing to set the threshold on")
    lowest = float(fail.min())
    below = u[(d >= FAIL_DICE) & (u < lowest)]
    return float(math.sqrt(lowest * float(below.max()))) if len(below) else lowest / 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    ap.add_argument("--data", default=None, help="the full data set (default: $LASEG_DATA_DIR or ../shared)")
    ap.add_argument("--cache", default=None, help="keep each scan's probabilities here (reruns reuse them)")
    ap.add_argument("--stride", type=int, default=4, help="case i gets severity j when (i + j) %% stride == 0 "
                    "(default 4; 1: every severity on every case)")
    ap.add_argument("--write", default=None, help="write a copy of the weights with the QC keys to this .pt file")
    ap.add_argument("--force", action="store_true", help="replace --write's file if it exists")
    args = ap.parse_args()
    root = Path(args.data) if args.data else full_data_dir()
    if root is None:
        print("error: the full data set is needed (the training cases); see `lasegtut download`", file=sys.stderr)
        return 2
    weights = Path(args.weights) if args.weights else SHIPPED_WEIGHTS
    try:
        cases = [c for c in list_cases(root) if c not in VALIDATION_CASES]
        members = load_models([weights], device="cpu")
        if args.write:  # before the work
            from lasegtut.safeio import check_output_file

            check_output_file(args.write, force=args.force, inputs=[weights], suffixes=(".pt",), what="--write")
    except LasegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.stride < 1:
        print("error: --stride must be 1 or more", file=sys.stderr)
        return 2
    todo = schedule(cases, args.stride)
    print(f"model {weights}; {len(cases)} training cases ({', '.join(cases)}); {len(todo)} scans "
          f"(validation cases {', '.join(VALIDATION_CASES)} never used)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        loaded: dict = {}
        files = [(c, n, predict_scan(root, members, i, c, n, cache, loaded)) for i, c, n in todo]
        rows, logits, labels = [], [], []
        rng = np.random.default_rng(0)
        for c, n, f in files:
            z = np.load(f)
            rows.append({"case": c, "severity": n, "dice": float(z["dice"]), **candidates(z)})
            if n == "clean":
                logits.append(logits_of(z["prob"].astype(np.float32)).ravel().astype(np.float32))
                labels.append(z["label"].ravel())
    names = [k for k in rows[0] if k not in ("case", "severity", "dice")]
    d = np.array([r["dice"] for r in rows])
    fails = d < FAIL_DICE
    print(f"\n{len(rows)} scans, {int(fails.sum())} below Dice {FAIL_DICE}; clean scans: "
          f"Dice {np.mean([r['dice'] for r in rows if r['severity'] == 'clean']):.3f} on average")
    from scipy.stats import spearmanr

    print(f"\n{'estimator':36s} {'Spearman':>9s} {'clean max':>10s} {'fail min':>9s} {'good >= fail min':>17s}")
    for k in names:
        u = np.array([r[k] for r in rows])
        rho = spearmanr(u, 1 - d).correlation
        clean = max(r[k] for r in rows if r["severity"] == "clean")
        lo = u[fails].min() if fails.any() else math.nan
        fa = int(((u >= lo) & ~fails).sum())
        print(f"{k:36s} {rho:9.3f} {clean:10.4g} {lo:9.4g} {fa:>10d} of {int((~fails).sum())}")
    u = np.array([r["entropy near atrium / V (default)"] for r in rows])
    threshold = choose_threshold(u, d)
    flagged = u > threshold
    print(f"\nper scan (default estimator {ESTIMATOR}):")
    for r, ui, fl in sorted(zip(rows, u, flagged), key=lambda t: t[1]):
        print(f"  {r['case']} {r['severity']:12s} Dice {r['dice']:.3f}  uncertainty {ui:8.4f}  "
              f"{'review' if fl else 'ok'}")
    print(f"\nthreshold {threshold:.4f}: flags {int((flagged & fails).sum())} of {int(fails.sum())} failures, "
          f"{int((flagged & ~fails).sum())} of {int((~fails).sum())} good scans "
          f"({int(sum(fl for fl, r in zip(flagged, rows) if r['severity'] == 'clean'))} clean)")
    z_all, y_all = np.concatenate(logits), np.concatenate(labels)
    pick = rng.choice(len(z_all), size=min(TEMPERATURE_VOXELS, len(z_all)), replace=False)
    temperature = fit_temperature(z_all[pick], y_all[pick])
    print(f"temperature {temperature:.4f} (fitted on {len(pick)} voxels of the {len(cases)} clean training scans)")
    if args.write:
        fit = {"script": "benchmarks/fit_qc.py", "date": datetime.date.today().isoformat(),
               "cases": cases, "scans": len(rows), "failures": int(fails.sum()),
               "fail_dice": FAIL_DICE, "stride": args.stride,
               "temperature_voxels": int(len(pick)), "temperature_on": "clean training scans"}
        try:
            store_qc_settings(weights, args.write, threshold=round(threshold, 4),
                              temperature=round(temperature, 4), fit=fit, force=args.force)
        except LasegError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.write} (network tensors unchanged; meta: {META_THRESHOLD}, {META_ESTIMATOR}, "
              f"{META_TEMPERATURE}, qc_fit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
