"""Robustness of a model to degraded scans: Dice and volume error per case per degradation (prints figures).

    python benchmarks/robustness.py [--weights W [W ...]] [--level issue|harsh|all] [--only NAME ...]
                                    [--cases C ...] [--no-clean] [--seed S] [--device D] [--json FILE]

Builds degraded copies of the three bundled validation cases (la_009, la_014, la_020) with
:func:`lasegtut.degrade.degrade` from the named severities of :data:`lasegtut.degrade.SEVERITIES`
(default: the ``issue`` level, the ones a robust model must survive; noise SNR is relative to the
mean intensity inside the atrium label, see :mod:`lasegtut.degrade`), segments each with
:func:`lasegtut.inference.predict_volume` and scores it with :func:`lasegtut.metrics.score_masks` (Dice,
HD95, volumes: the scoring of ``benchmarks/quality.py``, so the clean rows are its figures) and
:func:`lasegtut.volume.volume_error_pct`. The clean scans come first.

The last table has one row per degradation, one Dice column per case, and ``ok`` when every case
keeps Dice >= 0.80 (issue 24's criterion, per case, not on average).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from lasegtut.data import BUNDLED_SAMPLE, VALIDATION_CASES, load_case
from lasegtut.degrade import SEVERITIES, degrade
from lasegtut.errors import LasegError
from lasegtut.inference import load_models, predict_volume
from lasegtut.metrics import score_masks
from lasegtut.volume import volume_error_pct, volume_ml

#: Dice every case must keep on every issue-level degradation (issue 24).
THRESHOLD = 0.80


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=None, help="weights file(s); several are averaged (default: shipped)")
    ap.add_argument("--level", default="issue", choices=["mild", "issue", "harsh", "all"],
                    help="which severities of lasegtut.degrade.SEVERITIES (default: issue)")
    ap.add_argument("--only", nargs="+", default=None, help="these named severities only")
    ap.add_argument("--cases", nargs="+", default=list(VALIDATION_CASES), choices=list(VALIDATION_CASES),
                    help="bundled cases to degrade (default: all three)")
    ap.add_argument("--no-clean", action="store_true", help="skip the clean scans")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random degradations (noise)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda / auto")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    names = args.only or [n for n, s in SEVERITIES.items() if args.level in ("all", s.level)]
    unknown = [n for n in names if n not in SEVERITIES]
    if unknown:
        print(f"error: unknown degradation(s) {unknown}; choose from {', '.join(SEVERITIES)}", file=sys.stderr)
        return 2
    try:
        members = load_models(args.weights, device=args.device)
    except LasegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model: {' + '.join(args.weights) if args.weights else 'shipped'}; degradations: {', '.join(names)}; "
          f"seed {args.seed}")
    rows = []
    print(f"{'case':8s} {'degradation':14s} {'Dice':>6s} {'HD95 mm':>8s} {'V pred mL':>10s} {'V label mL':>10s} "
          f"{'V err %':>8s} {'s':>6s}")
    runs = names if args.no_clean else ["clean"] + names
    for case_id in args.cases:
        case = load_case(BUNDLED_SAMPLE, case_id)
        label_ml = volume_ml(case.label, case.spacing)
        for name in runs:
            image = case.image if name == "clean" else degrade(case.image, case.spacing, name, seed=args.seed,
                                                               label=case.label)
            t0 = time.perf_counter()
            pred = predict_volume(image, members, spacing=case.spacing, device=args.device)
            sec = time.perf_counter() - t0
            r = {"case": case_id, "degradation": name, **score_masks(pred, case.label, case.spacing), "seconds": sec}
            ml = r["volume_pred_ml"]
            r["volume_error_pct"] = volume_error_pct(ml, label_ml)
            rows.append(r)
            print(f"{case_id:8s} {name:14s} {r['dice']:6.3f} {r['hd95_mm']:8.2f} {ml:10.1f} {label_ml:10.1f} "
                  f"{r['volume_error_pct']:+8.1f} {sec:6.1f}", flush=True)
    print()
    cases = list(args.cases)
    print(f"{'degradation':14s} " + " ".join(f"{c:>7s}" for c in cases) + f" {'min':>6s} {'mean|Verr|%':>11s}  >= {THRESHOLD}")
    for name in runs:
        ds = [next(r["dice"] for r in rows if r["case"] == c and r["degradation"] == name) for c in cases]
        ve = [abs(next(r["volume_error_pct"] for r in rows if r["case"] == c and r["degradation"] == name)) for c in cases]
        ok = "ok" if min(ds) >= THRESHOLD else "FAIL"
        print(f"{name:14s} " + " ".join(f"{d:7.3f}" for d in ds) + f" {min(ds):6.3f} {np.mean(ve):11.1f}  {ok}")
    if args.json:
        from lasegtut.safeio import json_safe

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(json_safe({"weights": args.weights, "seed": args.seed, "rows": rows}), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
