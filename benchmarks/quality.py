"""Quality of the shipped model on the three bundled validation cases (prints figures).

    python benchmarks/quality.py [--weights W [W ...]] [--tta] [--device D] [--training-cases]

Per case: Dice, IoU, HD95 (mm), ASSD (mm), predicted and true LA volume (mL) and the volume
error (%), scored as ``lasegtut evaluate`` scores (:func:`lasegtut.metrics.score_masks`). With the
full data set present (:func:`lasegtut.paths.full_data_dir`) it also prints the two-annotator
agreement on la_005 / la_026, the ceiling a model can reasonably reach.

``--training-cases`` scores the 15 cases the shipped recipe trains on instead (full data set
needed). They are not held out: the figures say how closely a model fits what it has seen and
whether its volumes are biased there too (a bias seen on the training cases is the recipe's; one
seen only on the validation cases is a generalisation gap).
"""
from __future__ import annotations

import argparse

import numpy as np

from lasegtut.data import BUNDLED_SAMPLE, VALIDATION_CASES, load_case
from lasegtut.evaluation import ROW_KEYS, evaluate_cases, format_table
from lasegtut.inference import load_models
from lasegtut.metrics import evaluate_masks
from lasegtut.paths import full_data_dir
from lasegtut.volume import volume_error_pct



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=None, help="weights file(s); several are averaged")
    ap.add_argument("--device", default="cpu", help="cpu (default: the figures of record) or cuda / auto")
    ap.add_argument("--tta", action="store_true", help="flip test-time augmentation (off by default)")
    ap.add_argument("--training-cases", action="store_true",
                    help="score the 15 training cases of the full data set (not held out) instead")
    args = ap.parse_args()
    root, cases = BUNDLED_SAMPLE, None
    if args.training_cases:
        root = full_data_dir()
        if root is None:
            raise SystemExit("--training-cases needs the full data set (set LASEG_DATA_DIR)")
        ids = sorted(p.name[: -len(".nii.gz")] for p in (root / "imagesTr").glob("la_*.nii.gz"))
        cases = [c for c in ids if c not in VALIDATION_CASES]
    members = load_models(args.weights)
    name = " + ".join(args.weights) if args.weights else "shipped"
    print(f"model: {name}, slices across axes {[i.geometry.slice_axis for _, i in members]}, tta={args.tta}")
    rows = evaluate_cases(root, cases, members, None, tta=args.tta, device=args.device)
    for r in rows:
        r["volume_error_pct"] = volume_error_pct(r["volume_pred_ml"], r["volume_label_ml"])
    print(format_table(rows, ROW_KEYS + ("volume_error_pct", "seconds"),
                       digits={"dice": 4, "iou": 4, "hd95_mm": 2, "assd_mm": 2}))
    errors = [r["volume_error_pct"] for r in rows]
    print(f"{len(rows)} cases: mean Dice {np.mean([r['dice'] for r in rows]):.4f}, "
          f"mean |volume error| {np.mean(np.abs(errors)):.1f} %, mean signed {np.mean(errors):+.1f} % "
          f"({min(errors):+.1f} to {max(errors):+.1f})")
    full = full_data_dir()
    if full is not None and not args.training_cases:
        a, b = load_case(full, "la_005"), load_case(full, "la_026")
        m = evaluate_masks(a.label, b.label, a.spacing)
        print(f"two annotators, same scan (la_005 vs la_026): Dice {m['dice']:.4f}, HD95 {m['hd95_mm']:.2f} mm, "
              f"ASSD {m['assd_mm']:.2f} mm")


if __name__ == "__main__":
    main()
