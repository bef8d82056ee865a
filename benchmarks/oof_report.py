"""Report of out-of-fold (OOF) predictions: per-case scores, means with 95% intervals, Bland-Altman.

    python benchmarks/oof_report.py OOF_DIR LABELS_DIR --runs RUN [RUN ...] [--out results/NAME.csv]
                                    [--command "how OOF_DIR was made"] [--nsd-tolerance MM] [--force]

``OOF_DIR`` holds one predicted mask per labelled case, each made by the model of the one
cross-validation run that held the case out (``docs/protocol.md``: ``lasegtut train --folds N
--fold K`` then ``lasegtut predict IMAGES OOF_DIR --held-out RUN``); ``LABELS_DIR`` the labels
(``labelsTr``); ``--runs`` the fold runs' output folders (their ``split.json`` says which fold held
out which case; their ``model.pt`` metadata the recipe: profile, epochs, which epoch was exported).

It prints, and with ``--out`` writes (a CSV of :data:`lasegtut.crossval.OOF_COLUMNS` and a JSON
beside it with the recipe, folds, date, command and every summary figure):

- per case: its fold, Dice, NSD (the Decathlon's tolerance, 4 mm by default), HD95 and ASSD (mm),
  both volumes (mL) and the signed volume error (%) (``lasegtut.cohort.evaluate_folders``, the
  scoring of ``lasegtut evaluate``);
- the means with 95% percentile-bootstrap intervals over cases (``lasegtut.stats``), and where
  nnU-Net's cross-validation Dice (``lasegtut.crossval.ANCHORS``) lies relative to the Dice interval;
- Bland-Altman of predicted against labelled volumes across cases
  (``lasegtut.volume.bland_altman_stats``: bias, 95% limits of agreement, mL), next to the two
  experts' disagreement on the one scan labelled twice (la_005 / la_026,
  ``lasegtut.crossval.expert_agreement``).

Example (the committed ``benchmarks/results/oof_cpu_4epochs.csv``, see its ``.json``)::

    python benchmarks/oof_report.py oof/oof $D/labelsTr --runs oof/fold{0,1,2,3,4} \\
        --out benchmarks/results/oof_cpu_4epochs.csv --command "$(cat oof/run.sh)"

(``oof/`` holds the fold runs and ``oof/oof`` their out-of-fold masks, as in the model card; ``D``
the MSD Task02_Heart folder.)

Exit status 2 with one line on stderr for bad input (a missing folder, a run without split.json,
a case no run held out, an existing --out without --force).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from lasegtut.cohort import SCORE_COLUMNS, case_name, evaluate_folders, list_scans
from lasegtut.crossval import ANCHORS, OOF_COLUMNS, against_anchor, expert_agreement, write_oof_results
from lasegtut.errors import LasegError
from lasegtut.evaluation import _fmt, format_table
from lasegtut.metrics import NSD_TOLERANCE_MM
from lasegtut.stats import describe_bootstrap
from lasegtut.training import PROFILES
from lasegtut.volume import bland_altman_stats


def read_runs(runs: list[str]) -> tuple[dict[str, int], list[dict]]:
    """``({case: fold}, [one dict per run: folder, fold, folds, val cases, model metadata]``)."""
    from lasegtut.inference import load_model

    fold_of: dict[str, int] = {}
    described = []
    for run in runs:
        split_file = Path(run) / "split.json"
        try:
            split = json.loads(split_file.read_text(encoding="utf-8"))
            fold, folds, val = int(split["fold"]), int(split["folds"]), list(split["val"])
        except (OSError, ValueError, KeyError, TypeError):
            raise LasegError(f"{run} is not a cross-validation run of `lasegtut train --folds N --fold K` "
                             "(no readable split.json with folds, fold and val)") from None
        for c in val:
            if c in fold_of:
                raise LasegError(f"{c} is held out by two runs (folds {fold_of[c]} and {fold}): give each fold once")
            fold_of[c] = fold
        meta = {}
        if (Path(run) / "model.pt").is_file():
            _, info = load_model(Path(run) / "model.pt")
            meta = {k: info.meta.get(k) for k in ("profile", "epochs", "selected", "cv_fold", "train_seconds",
                                                   "last_val_dice_train_res", "device", "lasegtut_version",
                                                   "torch_version")}
        described.append({"run": str(run), "fold": fold, "folds": folds, "val_cases": val, "model": meta})
    return fold_of, sorted(described, key=lambda d: d["fold"])


def recipe_label(described: list[dict]) -> str:
    """One line naming the recipe as what it is (profile, epochs against the profile's own, the
    exported epoch), from the fold runs' weights metadata."""
    profiles = {d["model"].get("profile") for d in described}
    epochs = {d["model"].get("epochs") for d in described}
    selected = {d["model"].get("selected") for d in described}
    folds = {d["folds"] for d in described}
    if len(profiles) != 1 or None in profiles:
        return f"fold runs of profiles {sorted(map(str, profiles))}"
    prof = profiles.pop()
    shipped = PROFILES[prof].epochs if prof in PROFILES else None
    ep = ", ".join(str(e) for e in sorted(e for e in epochs if e is not None)) or "?"
    length = (f"shortened to {ep} epochs (the profile trains {shipped})" if shipped and epochs != {shipped}
              else f"{ep} epochs")
    which = "/".join(sorted(str(s) for s in selected))
    return (f"the `{prof}` recipe {length}, {which} epoch exported, grouped {'/'.join(map(str, sorted(folds)))}-fold "
            "cross-validation")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oof", help="folder of out-of-fold masks (one per case)")
    ap.add_argument("labels", help="folder of the labels (labelsTr)")
    ap.add_argument("--runs", nargs="+", required=True, help="the fold runs' output folders (split.json, model.pt)")
    ap.add_argument("--out", help="write the per-case CSV here (and its description beside it, .json)")
    ap.add_argument("--command", default="", help="how the OOF masks were made, recorded in the .json")
    ap.add_argument("--nsd-tolerance", type=float, default=NSD_TOLERANCE_MM, help="NSD tolerance, mm (default 4)")
    ap.add_argument("--force", action="store_true", help="overwrite --out and its .json")
    args = ap.parse_args(argv)
    try:
        return report(args)
    except LasegError as e:
        print(f"oof_report: error: {e}", file=sys.stderr)
        return 2


def report(args: argparse.Namespace) -> int:
    for folder in (args.oof, args.labels):
        if not Path(folder).is_dir():
            raise LasegError(f"{folder} is not a folder")
    if args.out:
        out = Path(args.out)
        if out.suffix != ".csv":
            raise LasegError(f"--out {out} must end in .csv")
        if not args.force and (out.exists() or out.with_suffix(".json").exists()):
            raise LasegError(f"{out} or its .json exists; use --force to replace them")
    fold_of, described = read_runs(args.runs)
    masks = {case_name(p) for p in list_scans([args.oof])}
    missing = sorted(set(fold_of) - masks)
    if missing:
        raise LasegError(f"no out-of-fold mask for {', '.join(missing)} in {args.oof}: the table would look complete "
                         "without them; predict them (lasegtut predict ... --held-out RUN)")
    stray = sorted(masks - set(fold_of))
    if stray:
        raise LasegError(f"{', '.join(stray)} in {args.oof} were held out by none of the runs given: give every fold's run")

    rows, summary = evaluate_folders(args.oof, args.labels, nsd_tolerance_mm=args.nsd_tolerance)
    for r in rows:
        r["fold"] = fold_of[r["case"]]
    rows.sort(key=lambda r: (r["fold"], r["case"]))
    label = recipe_label(described)
    print(f"out-of-fold predictions of {len(rows)} cases: {label}")
    print(format_table(rows, ("case", "fold") + SCORE_COLUMNS[1:], summary=False, digits={"hd95_mm": 2, "assd_mm": 2}))

    print(describe_bootstrap(len(rows)) + ":")
    intervals = {}
    for key in ("dice", "nsd", "hd95_mm", "assd_mm", "volume_error_pct"):
        s = summary[key]
        intervals[key] = {"mean": s["mean"], "ci95": s["ci95"]}
        nd = 3 if key in ("dice", "nsd") else 2 if key.endswith("_mm") else 1
        print(f"  {key:<18} mean {_fmt(s['mean'], nd):>8}  95% CI [{_fmt(s['ci95'][0], nd)}, {_fmt(s['ci95'][1], nd)}]")
    intervals["abs_volume_error_pct"] = {"mean": summary["mean_abs_volume_error_pct"],
                                         "ci95": summary["mean_abs_volume_error_pct_ci95"]}
    print(f"  {'|volume error| %':<18} mean {summary['mean_abs_volume_error_pct']:>8.1f}  95% CI "
          f"[{summary['mean_abs_volume_error_pct_ci95'][0]:.1f}, {summary['mean_abs_volume_error_pct_ci95'][1]:.1f}]")

    anchors = {}
    for name, value in ANCHORS.items():
        where = against_anchor(summary["dice"]["ci95"], value)
        anchors[name] = {"dice": value, "relative_to_dice_ci95": where,
                         "distinguishable": where != "inside"}
        verdict = {"above": "above the interval: distinguishable (nnU-Net higher)",
                   "below": "below the interval: distinguishable (nnU-Net lower)",
                   "inside": "inside the interval: not distinguishable on these cases"}[where]
        print(f"  {name} cross-validation Dice {value:.3f} (Isensee et al. 2021, 20 cases): {verdict}")

    pred_ml = [r["volume_pred_ml"] for r in rows]
    true_ml = [r["volume_label_ml"] for r in rows]
    ba = bland_altman_stats(pred_ml, true_ml)
    ba_out = {k: float(ba[k]) for k in ("bias", "sd", "loa_low", "loa_high")}
    print(f"Bland-Altman, predicted - labelled volume over {len(rows)} cases: bias {ba['bias']:+.1f} mL, "
          f"95% limits of agreement {ba['loa_low']:+.1f} to {ba['loa_high']:+.1f} mL (SD {ba['sd']:.1f} mL)")
    experts = expert_agreement(nsd_tolerance_mm=args.nsd_tolerance)
    print(f"two experts on one scan ({' vs '.join(experts['cases'])}): {experts['volume_diff_ml']:+.1f} mL "
          f"({experts['volume_diff_pct']:+.1f}% of their mean {experts['volume_mean_ml']:.1f} mL); Dice "
          f"{experts['dice']:.3f}, NSD {experts['nsd']:.3f}, HD95 {experts['hd95_mm']:.2f} mm")
    inside = sum(abs(r["volume_pred_ml"] - r["volume_label_ml"]) <= abs(experts["volume_diff_ml"]) for r in rows)
    print(f"cases whose |volume error| is within the experts' {abs(experts['volume_diff_ml']):.1f} mL: {inside} of {len(rows)}")

    if args.out:
        meta = {"recipe": label, "cases": len(rows), "folds": sorted({d["folds"] for d in described}),
                "runs": described, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "command": args.command, "report_command": " ".join(["python", "benchmarks/oof_report.py", *sys.argv[1:]]),
                "labels": str(args.labels), "nsd_tolerance_mm": args.nsd_tolerance, "columns": list(OOF_COLUMNS),
                "units": {"hd95_mm": "mm", "assd_mm": "mm", "volume_pred_ml": "mL", "volume_label_ml": "mL",
                          "volume_error_pct": "% of the label's volume"},
                "summary": intervals, "bootstrap": summary["bootstrap"], "anchors": anchors,
                "bland_altman_ml": ba_out, "experts": {k: experts[k] for k in ("cases", "dice", "nsd", "hd95_mm",
                                                                              "volume_pred_ml", "volume_label_ml",
                                                                              "volume_diff_ml", "volume_diff_pct")},
                "cases_within_experts_volume_difference": int(inside)}
        csv_path, json_path = write_oof_results(args.out, rows, meta)
        print(f"wrote {csv_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
