"""Quality of the shipped model on the three bundled validation cases (prints figures).

    python benchmarks/quality.py [--weights W [W ...]] [--tta] [--device D]

Per case: Dice, IoU, HD95 (mm), ASSD (mm), predicted and true LA volume (mL) and the volume
error. With ../shared present it also prints the two-annotator agreement on la_005 / la_026,
the ceiling a model can reasonably reach.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lasegtut.data import BUNDLED_SAMPLE, load_case
from lasegtut.evaluation import evaluate_cases
from lasegtut.inference import load_models
from lasegtut.metrics import evaluate_masks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "msd-task02-heart"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=None, help="weights file(s); several are averaged")
    ap.add_argument("--device", default="cpu", help="cpu (default: the figures of record) or cuda / auto")
    ap.add_argument("--tta", action="store_true", help="flip test-time augmentation (off by default)")
    args = ap.parse_args()
    members = load_models(args.weights)
    name = " + ".join(args.weights) if args.weights else "shipped"
    print(f"model: {name}, slices across axes {[i.geometry.slice_axis for _, i in members]}, tta={args.tta}")
    print(f"{'case':8} {'Dice':>6} {'IoU':>6} {'HD95mm':>7} {'ASSDmm':>7} {'pred mL':>8} {'true mL':>8} {'err %':>6} {'s':>5}")
    rows = []
    for r in evaluate_cases(BUNDLED_SAMPLE, None, members, None, tta=args.tta, device=args.device):
        vp, vt = r["volume_pred_ml"], r["volume_label_ml"]
        err = 100 * (vp - vt) / vt
        rows.append((r["dice"], r["hd95_mm"], r["assd_mm"], abs(err)))
        print(f"{r['case']:8} {r['dice']:6.4f} {r['iou']:6.4f} {r['hd95_mm']:7.2f} {r['assd_mm']:7.2f} "
              f"{vp:8.1f} {vt:8.1f} {err:+6.1f} {r['seconds']:5.1f}")
    a = np.array(rows)
    print(f"{'mean':8} {a[:, 0].mean():6.4f} {'':6} {a[:, 1].mean():7.2f} {a[:, 2].mean():7.2f} "
          f"{'':8} {'':8} {a[:, 3].mean():6.1f}  (mean |volume error| %)")
    if (SHARED / "dataset.json").is_file():
        a, b = load_case(SHARED, "la_005"), load_case(SHARED, "la_026")
        m = evaluate_masks(a.label, b.label, a.spacing)
        print(f"two annotators, same scan (la_005 vs la_026): Dice {m['dice']:.4f}, HD95 {m['hd95_mm']:.2f} mm, "
              f"ASSD {m['assd_mm']:.2f} mm")


if __name__ == "__main__":
    main()
