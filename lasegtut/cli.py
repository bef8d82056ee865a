"""The ``lasegtut`` command line: one sub-command per pipeline stage.

Every user error (LasegError) becomes one line on stderr and exit status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from .errors import LasegError, LasegWarning
from .safeio import Terminated, check_output_file, json_safe, termination_as_exception


class _Parser(argparse.ArgumentParser):
    """argparse with the contract of every other error: one line on stderr, exit status 2 (the
    usage lines argparse prints first are left out; ``--help`` shows them)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(obj: dict) -> None:
    print(json.dumps(json_safe(obj), sort_keys=True, allow_nan=False))


# ----------------------------------------------------------------------------- commands
def cmd_download(args: argparse.Namespace) -> int:
    from .download import download

    path = download(dest=args.dest, url=args.url, md5=args.md5, progress=not args.quiet)
    print(f"Task02_Heart is ready in {path}")
    print(f"use it with: export LASEG_DATA_DIR={path}   (or --data {path})")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from .preprocess import write_cache

    summary = write_cache(args.data, args.out, dtype=args.dtype, progress=not args.quiet)
    print(summary.describe())
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from .pack import write_pack

    summary = write_pack(args.data, args.out, bits=args.bits, force=args.force, progress=not args.quiet)
    print(summary.describe())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    overrides = {"lr": args.lr} if args.lr is not None else {}
    if args.slice_axis is not None:
        overrides["slice_axis"] = args.slice_axis
    if args.devices is not None:
        overrides["devices"] = args.devices
    if args.strategy is not None:
        overrides["strategy"] = args.strategy
    if args.select is not None:
        overrides["select"] = args.select
    if args.augmentation is not None:
        from .augment import RECIPE_AUGMENTATION, ROBUST_AUGMENTATION

        overrides["augment_config"] = {"shipped": RECIPE_AUGMENTATION, "robust": ROBUST_AUGMENTATION}[args.augmentation]
    result = train(data=args.data, profile=args.profile, out=args.out, max_epochs=args.epochs,
                   resume=not args.no_resume, init=args.init, pack=args.pack,
                   max_minutes=args.max_minutes, progress=not args.quiet,
                   folds=(args.folds or 5) if args.fold is not None else args.folds, fold=args.fold, **overrides)
    from .training import is_primary_process

    if is_primary_process():  # one report, not one per DDP process
        print(result.describe())
    return 0


def _is_cohort(inputs: Sequence[str], output: str) -> bool:
    # a folder or several scans in, or an output without a NIfTI suffix: a folder of masks out (an
    # existing folder named like a mask is refused as an output by the one-scan path)
    return len(inputs) > 1 or Path(inputs[0]).is_dir() or not output.endswith((".nii", ".nii.gz"))


def _held_out(inputs: Sequence[str], run: str, weights: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """``predict --held-out RUN``: the scans of ``inputs`` that the cross-validation run ``RUN``
    (a ``lasegtut train --folds N --fold K`` output folder) held out for validation, and its
    weights (``RUN/model.pt`` unless ``weights`` are given). Every held-out case must be there:
    an out-of-fold evaluation that silently lacks a case would look complete."""
    from .cohort import case_name, list_scans

    split_file, model = Path(run) / "split.json", Path(run) / "model.pt"
    try:
        split = json.loads(split_file.read_text(encoding="utf-8"))
        val, folds = list(split["val"]), split.get("folds")
    except (OSError, ValueError, KeyError, TypeError):
        raise LasegError(f"{run} is not the output folder of a `lasegtut train` run (no readable split.json)") from None
    if folds is None:
        raise LasegError(f"{run} is not a cross-validation run (train it with --folds N --fold K)")
    if weights is None and not model.is_file():
        raise LasegError(f"{model} does not exist: the run has not finished")
    scans = {case_name(s): str(s) for s in list_scans(inputs)}
    missing = [c for c in val if c not in scans]
    if missing:
        raise LasegError(f"{run} held out {', '.join(missing)}, not among the scans given; give the data set's imagesTr")
    return [scans[c] for c in val], list(weights) if weights else [str(model)]


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict_file

    if args.held_out:  # the out-of-fold predictions of one cross-validation run (README: cross-validation)
        args.input, args.weights = _held_out(args.input, args.held_out, args.weights)
        if args.output.endswith((".nii", ".nii.gz")):
            raise LasegError("with --held-out, OUTPUT is a folder for the held-out cases' masks")
    if _is_cohort(args.input, args.output):
        from .cohort import check_part, predict_folder

        check_part(args.part, args.parts)  # before any work

        table, rows = predict_folder(args.input, args.output, weights=args.weights, device=args.device,
                                     body_sizes=args.body_sizes, force=args.force, tta=args.tta,
                                     largest_component=not args.no_lcc, progress=not args.json,
                                     part=args.part, parts=args.parts, uncertainty_maps=args.uncertainty_map)
        bad = [r for r in rows if r["status"] != "ok"]
        failed = [r for r in bad if r["status"].startswith("error")]
        share = f"part {args.part} of {args.parts}: " if args.parts is not None else ""
        review = [r["case"] for r in rows if r.get("qc") == "review"]
        print(f"{share}wrote {len(rows) - len(failed)} masks and {table} ({len(rows)} scans; QC: "
              f"{len(review)} to review{': ' + ', '.join(review) if review else ''})")
        for r in bad:
            print(f"lasegtut predict: {r['case']}: {r['status']}", file=sys.stderr)
        if args.json:
            _print_json({"table": str(table), "scans": len(rows), "ok": len(rows) - len(bad), "failed": len(failed),
                         "review": len(review),
                         "cases": {r["case"]: {"uncertainty": _number(r.get("uncertainty")), "qc": r.get("qc") or None}
                                   for r in rows}})
        # every scan was tried; a script still learns that some could not be segmented
        return 1 if failed else 0
    if args.part is not None or args.parts is not None:
        raise LasegError("--part and --parts split a folder (or several scans) into shares; one scan has one")
    if args.body_sizes:
        raise LasegError("--body-sizes is for a folder of scans; for one scan use `lasegtut volume MASK --height-cm --weight-kg`")
    from .uncertainty import describe_qc

    report = predict_file(args.input[0], args.output, weights=args.weights, force=args.force,
                          tta=args.tta, largest_component=not args.no_lcc, device=args.device,
                          uncertainty_map=args.uncertainty_map)
    print(f"wrote {report['output']}")
    print(f"left-atrium volume: {report['volume_ml']:.1f} mL ({report['voxels']} voxels, "
          f"{report['seconds']:.1f} s); {describe_qc(report)}")
    if report["status"] != "ok":
        print(f"lasegtut predict: warning: {report['status']}", file=sys.stderr)
    if args.json:
        _print_json(report)
    return 0


def _number(text) -> float | None:
    """A number of a volumes.csv cell (None when empty or not a number)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.nsd_tolerance is None:
        from .metrics import NSD_TOLERANCE_MM

        args.nsd_tolerance = NSD_TOLERANCE_MM
    if Path(args.pred).is_dir() or Path(args.label).is_dir():
        return _evaluate_folders(args)
    from .data import load_mask_pair
    from .metrics import score_masks

    if args.out:
        raise LasegError("--out (a per-case table) is for two folders; for two masks use --json")
    pred, label, sp_p, sp_l = load_mask_pair(args.pred, args.label)
    m = score_masks(pred, label, sp_l, pred_spacing=sp_p, nsd_tolerance_mm=args.nsd_tolerance)
    m["nsd_tolerance_mm"] = args.nsd_tolerance
    print(f"Dice {m['dice']:.4f}  IoU {m['iou']:.4f}  HD95 {m['hd95_mm']:.2f} mm  "
          f"ASSD {m['assd_mm']:.2f} mm  NSD {m['nsd']:.4f} (at {args.nsd_tolerance:g} mm)")
    print(f"volume: predicted {m['volume_pred_ml']:.1f} mL, label {m['volume_label_ml']:.1f} mL")
    if args.json:
        _print_json(m)  # an infinite distance (an empty mask) becomes null
    return 0


def _evaluate_folders(args: argparse.Namespace) -> int:
    from .cohort import SCORE_COLUMNS, _write_csv, evaluate_folders, list_scans
    from .evaluation import format_table

    if not (Path(args.pred).is_dir() and Path(args.label).is_dir()):
        raise LasegError("give two folders (predictions, labels) or two mask files")
    if args.out:  # before the work: never a mask or label, an existing table only with --force
        check_output_file(args.out, force=args.force, what="--out",
                          inputs=[*list_scans([args.pred]), *list_scans([args.label])])
    rows, summary = evaluate_folders(args.pred, args.label, nsd_tolerance_mm=args.nsd_tolerance)
    print(format_table(rows, SCORE_COLUMNS, summary=False, digits={"hd95_mm": 2, "assd_mm": 2}))
    means = "  ".join(f"{k} {v['mean']:.3f} (SD {v['sd']:.3f})" for k, v in summary.items()
                      if k in ("dice", "nsd", "hd95_mm", "assd_mm"))
    print(f"mean over {len(rows)} cases: {means}; mean |volume error| {summary['mean_abs_volume_error_pct']:.1f}%; "
          f"worst Dice: {summary['dice']['worst']}")
    print(_interval_lines(summary, args.nsd_tolerance))
    if args.out:
        _write_csv(Path(args.out), SCORE_COLUMNS, rows)
        print(f"wrote {args.out}")
    if args.json:
        _print_json({"cases": rows, "summary": summary})
    return 0


def _interval_lines(summary: dict, tolerance_mm: float) -> str:
    """The mean of each metric with its 95% bootstrap interval over cases, and how they were made."""
    from .evaluation import COLUMN_TITLES, _fmt
    from .stats import describe_bootstrap

    digits = {"dice": 3, "iou": 3, "nsd": 3, "hd95_mm": 2, "assd_mm": 2}
    lines = [describe_bootstrap(summary["bootstrap"]["cases"], n_resamples=summary["bootstrap"]["resamples"],
                                seed=summary["bootstrap"]["seed"]) + ":"]
    items = [(k, v["mean"], v["ci95"]) for k, v in summary.items() if isinstance(v, dict) and "ci95" in v
             and not k.startswith("volume_") or k == "volume_error_pct"]
    items.append(("|V err| %", summary["mean_abs_volume_error_pct"], summary["mean_abs_volume_error_pct_ci95"]))
    for key, mean, (lo, hi) in items:
        title = COLUMN_TITLES.get(key, key) + (f" @{tolerance_mm:g} mm" if key == "nsd" else "")
        nd = digits.get(key, 1)
        lines.append(f"  {title:<16} mean {_fmt(mean, nd):>8}  95% CI [{_fmt(lo, nd)}, {_fmt(hi, nd)}]")
    if any(math.isinf(v["mean"]) for v in summary.values() if isinstance(v, dict) and "mean" in v):
        lines.append("  (inf: a mask is empty on one side, a missed atrium; it is kept in the mean and the "
                     "intervals, which then reach inf)")
    return "\n".join(lines)


def cmd_volume(args: argparse.Namespace) -> int:
    from .data import load_mask
    from .volume import bsa_mosteller, grade_lavi, implausible, lavi, reported_lavi, volume_ml, warn_implausible

    if (args.height_cm is None) != (args.weight_kg is None):
        raise LasegError("give both --height-cm and --weight-kg for the volume index")

    from .uncertainty import sidecar_warning

    mask, spacing, _ = load_mask(args.mask)
    if not mask.any():
        raise LasegError(f"{args.mask} is empty: there is no atrium to measure or grade")
    sidecar_warning(args.mask)  # one line when predict flagged this mask for review
    out = {"volume_ml": volume_ml(mask, spacing)}
    why = implausible(out["volume_ml"])
    if why is not None and args.height_cm is not None:
        raise LasegError(f"{why}: not graded; check the mask")
    if why is not None:
        warn_implausible(out["volume_ml"])
    if args.height_cm is not None:
        bsa = bsa_mosteller(args.height_cm, args.weight_kg)
        index = lavi(out["volume_ml"], bsa)
        out.update(bsa_m2=bsa, lavi_ml_m2=index, lavi_reported_ml_m2=reported_lavi(index), grade=grade_lavi(index))
    print(f"left-atrium volume: {out['volume_ml']:.1f} mL")
    if args.height_cm is not None:
        print(f"BSA {out['bsa_m2']:.2f} m^2, LA volume index {out['lavi_reported_ml_m2']} mL/m^2 "
              f"({out['lavi_ml_m2']:.2f} before rounding to the guideline's whole numbers): {out['grade']} "
              "(ASE/EACVI cut-offs, set for echo volumes)")
    if args.json:
        _print_json(out)
    return 0


def cmd_shape(args: argparse.Namespace) -> int:
    from .data import load_mask
    from .shape import check_mesh_path, shape_metrics, write_mesh
    from .volume import warn_implausible

    if args.mesh:
        check_mesh_path(args.mesh, args.force, inputs=[args.mask])  # fail before any work
    from .uncertainty import sidecar_warning

    mask, spacing, affine = load_mask(args.mask)
    report = shape_metrics(mask, spacing, components="error" if args.strict else "largest")
    sidecar_warning(args.mask)  # one line when predict flagged this mask for review
    warn_implausible(report.volume_ml)  # the same one warning line as `lasegtut volume`
    print(f"left-atrium shape of {args.mask}")
    print(report.describe())
    out = report.to_dict()
    if args.mesh:
        path = write_mesh(args.mesh, report.mesh, affine, force=args.force)
        out["mesh_file"] = str(path)
        print(f"wrote {path} ({len(report.mesh.faces)} triangles, mm, LPS patient coordinates)")
    if args.json:
        _print_json(out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(case_id=args.case, out=args.out, weights=args.weights, device=args.device)
    return 0


def cmd_assignments(args: argparse.Namespace) -> int:
    if args.action == "grade":
        return cmd_assignments_grade(args)
    from .classroom.assignments import build_student_notebooks

    written = build_student_notebooks(args.source, args.out_dir, force=args.force, self_study=args.self_study)
    print(f"wrote {len(written)} student notebooks ({'self-study' if args.self_study else 'class'} edition) "
          f"to {args.out_dir}")
    return 0


def cmd_assignments_grade(args: argparse.Namespace) -> int:
    from .classroom.grading import grade_class
    from .classroom.kernel_run import RunLimits

    for name, value in (("--timeout", args.timeout), ("--cell-timeout", args.cell_timeout),
                        ("--memory-gb", args.memory_gb)):
        if not value > 0 or value == float("inf"):
            raise LasegError(f"{name} must be a positive number, not {value}")
    if args.memory_gb < 0.5:
        raise LasegError(f"--memory-gb {args.memory_gb} is too little for a Python kernel; give at least 0.5")
    limits = RunLimits(cell_timeout=args.cell_timeout, total_timeout=args.timeout,
                       memory_bytes=int(args.memory_gb * 2 ** 30))
    report = grade_class(args.submissions, args.out, source=args.source, notebooks=args.notebook, limits=limits,
                         jobs=args.jobs, force=args.force, progress=not args.quiet,
                         warn=lambda line: print(line, file=sys.stderr))
    for line in report.warnings:
        print(line, file=sys.stderr)
    print(report.describe())
    return 0


# ----------------------------------------------------------------------------- parser
def _tolerance(text: str) -> float:
    """argparse type of ``--nsd-tolerance``: a finite distance in mm >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of mm") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a distance in mm >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="lasegtut", description=(
        "Left-atrium segmentation in cardiac MRI, from voxels to millilitres. "
        "Pipeline: download -> preprocess -> train -> predict -> evaluate -> volume."))
    p.add_argument("--version", action="version", version=f"lasegtut {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable, help: str) -> argparse.ArgumentParser:
        # argparse %-formats a sub-command's help (not its description): a literal % must be doubled there
        sp = sub.add_parser(name, help=help.replace("%", "%%"), description=help)
        sp.set_defaults(func=fn)
        return sp

    data_help = "MSD task folder (default: $LASEG_DATA_DIR, else the bundled sample data/sample)"

    sp = add("download", cmd_download, "download and verify the full MSD Task02_Heart data set")
    sp.add_argument("--dest", help="destination folder (default: $LASEG_DATA_DIR, else a user cache folder)")
    sp.add_argument("--url", help="archive URL, file:// URL or local path (default: the official MSD archive)")
    sp.add_argument("--md5", help="expected MD5 of the archive (default: the official one)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = add("preprocess", cmd_preprocess, "crop, normalise and cache every case as memory-mappable arrays")
    sp.add_argument("--data", help=data_help)
    sp.add_argument("--out", default="cache", help="cache folder (default: ./cache)")
    sp.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="image dtype in the cache")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = add("pack", cmd_pack, "preprocess the training cases into one small file to train on elsewhere (a GPU)")
    sp.add_argument("--data", help=data_help)
    sp.add_argument("--out", default="la_pack.npz.xz", help="pack file to write (default: ./la_pack.npz.xz)")
    sp.add_argument("--bits", type=int, default=7, help="grey levels of the stored images, as bits (default: 7)")
    sp.add_argument("--force", action="store_true", help="replace OUT if it exists")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = add("train", cmd_train, "train the U-Net (profiles: ci, cpu, gpu)")
    sp.add_argument("--data", help=data_help)
    sp.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"], help="training recipe (default: cpu)")
    sp.add_argument("--augmentation", choices=["shipped", "robust"], default=None,
                    help="override the profile's augmentation: the shipped model's (cpu's default) or the candidate "
                         "robust to other scanners' noise, blur, contrast and gamma (gpu's default)")
    sp.add_argument("--out", default="runs", help="output folder for checkpoints and logs (default: ./runs)")
    sp.add_argument("--epochs", type=int, default=None, help="override the profile's number of epochs")
    sp.add_argument("--select", choices=["best", "last"], default=None, help="which epoch's weights model.pt "
                    "holds: the best validation Dice (the cpu profile's) or the last (the gpu profile's; use it for "
                    "cross-validation figures no choice has seen)")
    sp.add_argument("--no-resume", action="store_true", help="start afresh even if OUT holds a last checkpoint")
    sp.add_argument("--init", help="start from these weights (e.g. the shipped model) to fine-tune")
    sp.add_argument("--lr", type=float, help="override the profile's learning rate")
    sp.add_argument("--slice-axis", type=int, choices=[0, 1, 2], help="override the profile's slicing axis")
    sp.add_argument("--pack", help="train on the cases of this pack (from `lasegtut pack`) instead of --data's")
    sp.add_argument("--max-minutes", type=float, help="shorten the run to fit this many minutes of training")
    sp.add_argument("--fold", type=int, metavar="K", help="cross-validation: train fold K (0 .. N-1) of --folds N, "
                    "validating on fold K and training on the others (all cases at hand, the bundled ones "
                    "included; identical images stay in one fold); the folds are printed and kept in OUT/split.json")
    sp.add_argument("--folds", type=int, metavar="N", help="number of cross-validation folds (default with --fold: 5)")
    sp.add_argument("--devices", type=int, metavar="N", help="train in N processes, one per device (GPUs; with "
                    "the ci/cpu profiles CPU processes), each on its share of the slices (default: the profile's)")
    sp.add_argument("--strategy", choices=["auto", "ddp", "ddp_spawn"], help="Lightning's strategy for several "
                    "devices: ddp (distributed data parallel; tested on a CPU with 2 processes)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = add("predict", cmd_predict, "segment the left atrium in NIfTI scans and print their volumes")
    sp.add_argument("input", nargs="+", help="input scan (.nii or .nii.gz, any orientation), several scans, "
                    "or a folder of them")
    sp.add_argument("output", help="output mask (.nii.gz, uint8, same grid as the input); for several scans "
                    "or a folder: an output folder (one mask per scan and volumes.csv)")
    sp.add_argument("--body-sizes", help="with a folder: CSV with the columns case,height_cm,weight_kg, "
                    "to add BSA, LA volume index and grade to volumes.csv")
    sp.add_argument("--weights", nargs="+", help="weights file(s) (default: the shipped model); several "
                    "are averaged, e.g. models trained on slices across different axes")
    sp.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu or cuda")
    sp.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    sp.add_argument("--tta", action="store_true",
                    help="also predict mirrored slices and average (only helps models trained with flips)")
    sp.add_argument("--no-lcc", action="store_true", help="keep every component, not only the largest")
    sp.add_argument("--held-out", metavar="RUN", help="cross-validation: only the scans the run RUN (from `train "
                    "--folds N --fold K --out RUN`) held out, with its RUN/model.pt: out-of-fold predictions")
    sp.add_argument("--part", type=int, metavar="K", help="with a folder: segment only the K-th share "
                    "(counted from 0, like nnU-Net's -part_id) of --parts N; see docs/cluster.md")
    sp.add_argument("--parts", type=int, metavar="N", help="with a folder: split the scans, sorted by name, "
                    "into N disjoint shares (scan i goes to part i %% N); parts may run at once into one OUTPUT")
    sp.add_argument("--uncertainty-map", metavar="FILE", help="also write the voxel uncertainty map (entropy of the "
                    "probability, bits, float32 NIfTI on the scan's grid) to FILE; with a folder of scans: a folder, "
                    "one map per scan")
    sp.add_argument("--json", action="store_true", help="print a JSON summary as the last line")

    sp = add("evaluate", cmd_evaluate, "compare predicted masks with labels: Dice, IoU, HD95, ASSD, NSD, volumes; "
                                       "for folders also 95% bootstrap intervals over cases")
    sp.add_argument("pred", help="predicted mask (NIfTI), or a folder of them")
    sp.add_argument("label", help="reference mask (NIfTI) on the same grid, or a folder (same case names)")
    sp.add_argument("--out", help="with folders: write the per-case table to this CSV")
    sp.add_argument("--nsd-tolerance", type=_tolerance, metavar="MM",
                    help="tolerance of the normalised surface distance (NSD), mm (default: 4, attributed to the "
                         "Medical Segmentation Decathlon for the left atrium, Antonelli et al. 2022; unverified, see docs/protocol.md)")
    sp.add_argument("--force", action="store_true", help="overwrite the --out file if it exists")
    sp.add_argument("--json", action="store_true", help="print a JSON summary as the last line")

    sp = add("volume", cmd_volume, "left-atrium volume (mL), and with height and weight the volume index and grade")
    sp.add_argument("mask", help="binary mask (NIfTI)")
    sp.add_argument("--height-cm", type=float, help="patient height in cm")
    sp.add_argument("--weight-kg", type=float, help="patient weight in kg")
    sp.add_argument("--json", action="store_true", help="print a JSON summary as the last line")

    sp = add("shape", cmd_shape, "left-atrium shape: surface area, sphericity, principal diameters; "
                                 "optional STL/PLY surface")
    sp.add_argument("mask", help="binary mask (NIfTI)")
    sp.add_argument("--mesh", help="also write the surface to this .stl or .ply file (mm, LPS, opens in 3D Slicer)")
    sp.add_argument("--force", action="store_true", help="overwrite the --mesh file if it exists")
    sp.add_argument("--strict", action="store_true",
                    help="refuse a mask with several connected components (default: measure the largest)")
    sp.add_argument("--json", action="store_true", help="print a JSON summary as the last line")

    sp = add("demo", cmd_demo, "segment a bundled case with the shipped model: Dice, HD95, volumes, overlay PNG")
    sp.add_argument("--case", default="la_014", help="bundled case id (default: la_014)")
    sp.add_argument("--out", default="outputs/demo", help="output folder (default: ./outputs/demo)")
    sp.add_argument("--weights", help="a checkpoint or weights file (default: the shipped model)")
    sp.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu or cuda")

    sp = add("assignments", cmd_assignments, "build student versions of the notebooks, grade submissions")
    sp_sub = sp.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sp_sub.add_parser("build", help="write student copies (solutions removed, outputs cleared)")
    b.set_defaults(func=cmd_assignments)
    b.add_argument("out_dir", help="folder for the student notebooks")
    b.add_argument("--source", default=None, help="folder of solution notebooks (default: the course's notebooks/)")
    b.add_argument("--force", action="store_true", help="overwrite existing files in OUT_DIR")
    b.add_argument("--self-study", action="store_true",
                   help="the self-study edition (as in student/): keep the lesson cells' outputs and add each "
                        "model answer collapsed under its exercise (default: the class edition, no answers)")
    g = sp_sub.add_parser("grade", help="execute the students' notebooks and grade every exercise",
                          description="Execute each submitted notebook in its own confined kernel, grade every "
                                      "exercise with the teacher's check cells, and write OUT/grades.csv and "
                                      "OUT/feedback/<student>.md. See docs/teaching.md.")
    g.set_defaults(func=cmd_assignments)
    g.add_argument("submissions", help="folder with one sub-folder or one .ipynb per student")
    g.add_argument("--out", required=True, help="output folder for grades.csv and feedback/")
    g.add_argument("--source", default=None, help="folder of teacher notebooks (default: the course's notebooks/)")
    g.add_argument("--notebook", action="append", metavar="NAME",
                   help="grade only this teacher notebook (repeatable; default: every one that was submitted)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per notebook (default: 600)")
    g.add_argument("--cell-timeout", type=float, default=120.0, help="seconds per cell (default: 120)")
    g.add_argument("--memory-gb", type=float, default=4.0, help="memory cap per kernel in GiB (default: 4)")
    g.add_argument("--jobs", type=int, default=1, help="notebooks run at once (default: 1)")
    g.add_argument("--force", action="store_true", help="replace an existing OUT/grades.csv and OUT/feedback/")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user error prints one line on stderr and returns 2; Ctrl-C returns 130
    and SIGTERM 143, each after one line and after temporary files are removed; a
    :class:`~lasegtut.errors.LasegWarning` is one line on stderr too."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = f"lasegtut {args.command}"

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, LasegWarning):
            print(f"{name}: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings(), termination_as_exception():
        default_show = warnings.showwarning
        warnings.simplefilter("always", LasegWarning)
        warnings.showwarning = show
        try:
            return int(args.func(args) or 0)
        except LasegError as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print(f"{name}: terminated", file=sys.stderr)
            return 143


if __name__ == "__main__":
    sys.exit(main())
