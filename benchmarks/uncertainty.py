"""Does the uncertainty rank the errors, and does QC flag the failures? On degraded copies of the
bundled validation cases (prints figures).

    python benchmarks/uncertainty.py [--weights W] [--cases C ...] [--only NAME ...] [--seed S]
                                     [--timing-runs N] [--json FILE]

Issue 25. Builds degraded copies of the three bundled validation cases (la_009, la_014, la_020:
never used to choose the QC threshold, see ``benchmarks/fit_qc.py``) with
:func:`lasegtut.degrade.degrade` at every named severity of :data:`lasegtut.degrade.SEVERITIES`
(noise SNR 8, 4, 2, 1; blur 1.5 and 3 mm; gamma 0.3, 0.5, 2, 3; 4x and 8x coarser slices; ghost
at 30% and 60%; a field of view cut by 30% and 40%: up to where the model fails), segments each
with :func:`lasegtut.inference.predict_volume` and prints, per scan, Dice, the uncertainty
(:func:`lasegtut.uncertainty.scan_uncertainty`) and the QC flag with the threshold stored in the
weights file; then

- the Spearman correlation between uncertainty and 1 - Dice over all scans (target >= 0.6),
- how many scans below Dice 0.80 came out ``review`` (target: all) and how many clean scans did
  (target: none),
- the time of a prediction (``predict_volume``) without and with the uncertainty (the probability
  map kept and :func:`lasegtut.uncertainty.assess` run), median over ``--timing-runs`` runs on
  each clean case, and the time to write a voxel map.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lasegtut.data import BUNDLED_SAMPLE, VALIDATION_CASES, load_case
from lasegtut.degrade import SEVERITIES, degrade
from lasegtut.errors import LasegError
from lasegtut.inference import load_models, predict_volume
from lasegtut.metrics import dice
from lasegtut.uncertainty import assess, members_threshold, voxel_uncertainty

#: A scan segmented below this Dice must come out ``review`` (issue 25).
FAIL_DICE = 0.80


def run(cases, names, members, seed: int, threshold, progress=print) -> list[dict]:
    """Predict every case clean and degraded by each of ``names``; one row per scan."""
    rows = []
    for case_id in cases:
        case = load_case(BUNDLED_SAMPLE, case_id)
        for name in ["clean", *names]:
            image = case.image if name == "clean" else degrade(case.image, case.spacing, name, seed=seed,
                                                               label=case.label)
            t0 = time.perf_counter()
            mask, prob = predict_volume(image, members, spacing=case.spacing, device="cpu", return_probability=True)
            qc = assess(prob, mask, case.spacing, threshold)
            r = {"case": case_id, "degradation": name, "dice": float(dice(mask, case.label)), **qc,
                 "seconds": time.perf_counter() - t0}
            rows.append(r)
            progress(f"{case_id:8s} {name:12s} Dice {r['dice']:6.3f}  uncertainty {r['uncertainty']:8.4f}  "
                     f"{r['qc']:7s} {r['seconds']:5.1f} s")
    return rows


def summary(rows: list[dict]) -> dict:
    """Spearman(uncertainty, 1 - Dice), failures flagged, clean scans flagged."""
    from scipy.stats import spearmanr

    u = np.array([r["uncertainty"] for r in rows], dtype=float)
    d = np.array([r["dice"] for r in rows])
    fails = [r for r in rows if r["dice"] < FAIL_DICE]
    clean = [r for r in rows if r["degradation"] == "clean"]
    return {"scans": len(rows), "spearman": float(spearmanr(u, 1 - d).correlation),
            "failures": len(fails), "failures_flagged": sum(r["qc"] == "review" for r in fails),
            "good": len(rows) - len(fails),
            "good_flagged": sum(r["qc"] == "review" for r in rows if r["dice"] >= FAIL_DICE),
            "clean": len(clean), "clean_flagged": sum(r["qc"] == "review" for r in clean)}


def timing(cases, members, runs: int, threshold) -> dict:
    """Median seconds of predict_volume without and with the uncertainty, and of writing a map."""
    import nibabel as nib

    from lasegtut.uncertainty import write_uncertainty_map

    plain, with_u, assess_s, map_s = [], [], [], []
    for case_id in cases:
        case = load_case(BUNDLED_SAMPLE, case_id)
        for _ in range(runs):
            t0 = time.perf_counter()
            predict_volume(case.image, members, spacing=case.spacing, device="cpu")
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            mask, prob = predict_volume(case.image, members, spacing=case.spacing, device="cpu",
                                        return_probability=True)
            t1 = time.perf_counter()
            assess(prob, mask, case.spacing, threshold)
            t2 = time.perf_counter()
            with_u.append(t2 - t0)
            assess_s.append(t2 - t1)
        original = nib.load(str(BUNDLED_SAMPLE / "imagesTr" / f"{case_id}.nii.gz"))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_uncertainty_map(voxel_uncertainty(prob), original, Path(tmp) / "u.nii.gz")
            map_s.append(time.perf_counter() - t0)
    med = lambda v: float(np.median(v))  # noqa: E731
    return {"predict_s": med(plain), "predict_with_uncertainty_s": med(with_u), "assess_s": med(assess_s),
            "write_map_s": med(map_s), "runs": len(plain)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="weights file (default: the shipped model)")
    ap.add_argument("--cases", nargs="+", default=list(VALIDATION_CASES), choices=list(VALIDATION_CASES))
    ap.add_argument("--only", nargs="+", default=None, help="these named severities only (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random degradations (noise)")
    ap.add_argument("--timing-runs", type=int, default=1, help="timed predictions per clean case (0: none)")
    ap.add_argument("--json", default=None, help="also write the rows and figures to this JSON file")
    args = ap.parse_args()
    names = args.only or list(SEVERITIES)
    unknown = [n for n in names if n not in SEVERITIES]
    if unknown:
        print(f"error: unknown degradation(s) {unknown}; choose from {', '.join(SEVERITIES)}", file=sys.stderr)
        return 2
    try:
        members = load_models([args.weights] if args.weights else None, device="cpu")
    except LasegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threshold = members_threshold([info for _, info in members])
    print(f"model: {args.weights or 'shipped'}; QC threshold {threshold}; cases {', '.join(args.cases)}; "
          f"degradations: {', '.join(names)}; seed {args.seed}", flush=True)
    rows = run(args.cases, names, members, args.seed, threshold, progress=lambda s: print(s, flush=True))
    s = summary(rows)
    print(f"\nSpearman(uncertainty, 1 - Dice) over {s['scans']} scans: {s['spearman']:.3f} (target >= 0.6)")
    print(f"scans below Dice {FAIL_DICE}: {s['failures']}, flagged review: {s['failures_flagged']} (target: all)")
    print(f"scans at or above Dice {FAIL_DICE}: {s['good']}, flagged review: {s['good_flagged']}")
    print(f"clean scans: {s['clean']}, flagged review: {s['clean_flagged']} (target: 0)")
    t = timing(args.cases, members, args.timing_runs, threshold) if args.timing_runs > 0 else {}
    if t:
        print(f"predict_volume: {t['predict_s']:.2f} s without the uncertainty, {t['predict_with_uncertainty_s']:.2f} s "
              f"with it (the assessment alone {t['assess_s']:.2f} s); writing a voxel map {t['write_map_s']:.2f} s "
              f"(medians of {t['runs']} runs)")
    if args.json:
        from lasegtut.safeio import json_safe

        Path(args.json).write_text(json.dumps(json_safe({"rows": rows, "summary": s, "timing": t,
                                                          "threshold": threshold, "seed": args.seed}), indent=1))
    return 0 if s["failures_flagged"] == s["failures"] and s["clean_flagged"] == 0 and s["spearman"] >= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
