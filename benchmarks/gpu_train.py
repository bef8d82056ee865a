"""The GPU recipe in one command: train on a pack, export the weights, score them, write figures.

    python benchmarks/gpu_train.py --pack la_pack.npz.xz --out OUT [--minutes 5] [--views 0 1 2]

Made for a short loan of one GPU (a Colab session, a cluster job, a lent cloud machine). It
trains the ``gpu`` profile (:data:`lasegtut.training.PROFILES`) once per slicing axis in
``--views``, all at once on the one GPU (one process each: a small U-Net leaves most of a big
GPU idle, so the views share it), each shortened to ``--minutes`` of training if its 400 epochs
would not fit. Then it scores every view alone and their average on the three bundled validation
cases (full resolution, on the scans' own grids) and times the prediction of one scan.

What it needs beside the repository:

- the pack: ``lasegtut pack --data /path/to/Task02_Heart --out la_pack.npz.xz`` on any machine
  with the full data set (about 20 MB; the 15 training cases, preprocessed and quantised);
- Python with torch, pytorch-lightning, numpy, scipy, tqdm, tensorboard (every deep-learning
  image has them) and **nibabel** (to read the bundled validation scans): where pip cannot reach
  the network, carry its wheel (``pip download nibabel`` elsewhere, ``pip install nibabel-*.whl``
  there). imgaug is not needed: the ``gpu`` profile augments on the GPU. The repository itself
  is used from its folder (no install): run this from the repository root.

Writes into ``--out``: ``figures.json`` (per view and for the average: per-case Dice, IoU,
HD95, ASSD, volumes; training epochs, minutes and slices/s; prediction seconds per scan; the
GPU and versions), ``model_axis{N}.pt`` (the exported weights of each view, as
``lasegtut.inference.load_model`` reads them) and ``train_axis{N}.log``. Checkpoints, logs and
the cache go to ``--work`` (default ``OUT/work``).

``--tiny`` runs the same steps with a tiny network for two short epochs on the CPU: the test
suite runs it end to end (``tests/test_gpu_recipe.py``), so the script is known to work before a
GPU is at hand.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # use the repository's lasegtut, installed or not

from lasegtut.data import BUNDLED_SAMPLE  # noqa: E402
from lasegtut.errors import LasegError  # noqa: E402
from lasegtut.safeio import json_safe  # noqa: E402

TINY = dict(accelerator="cpu", precision="32-true", epochs=2, limit_train_batches=2, limit_val_batches=2,
            widths=(4, 8, 16, 32, 64), batch_size=4, val_every=1, channels_last=False)


def profile(view: int, tiny: bool):
    from lasegtut.training import get_profile

    prof = replace(get_profile("gpu"), slice_axis=view)
    return replace(prof, **TINY) if tiny else prof


def worker(args: argparse.Namespace) -> int:
    """One view: train and export (runs in its own process)."""
    from lasegtut.training import train

    result = train(data=BUNDLED_SAMPLE, profile=profile(args.view, args.tiny), out=args.work / f"axis{args.view}",
                   cache=args.work / "cache", progress=False, max_minutes=args.minutes, resume=False)
    print(result.describe(), flush=True)
    return 0


def score(members, device) -> dict:
    """Per-case figures and means on the bundled validation cases for one model or an average."""
    from lasegtut.evaluation import evaluate_cases
    from lasegtut.volume import volume_error_pct

    rows = evaluate_cases(BUNDLED_SAMPLE, None, members, None, device=str(device))
    cases = {}
    for r in rows:
        err = volume_error_pct(r["volume_pred_ml"], r["volume_label_ml"])
        cases[r["case"]] = {k: round(float(r[k]), 4) for k in ("dice", "iou", "hd95_mm", "assd_mm",
                                                                  "volume_pred_ml", "volume_label_ml", "seconds")}
        cases[r["case"]]["volume_error_pct"] = round(err, 2)
    mean = lambda key: round(sum(c[key] for c in cases.values()) / len(cases), 4)  # noqa: E731
    return {"cases": cases, "mean_dice": mean("dice"), "mean_hd95_mm": mean("hd95_mm"),
            "mean_assd_mm": mean("assd_mm"),
            "mean_abs_volume_error_pct": round(sum(abs(c["volume_error_pct"]) for c in cases.values()) / len(cases), 2)}


def val_curve(run: Path) -> list:
    """(epoch, validation Dice at the training crop) pairs from Lightning's CSV log."""
    from lasegtut.training import read_metrics_csv

    logs = sorted((run / "logs").glob("version_*/metrics.csv"))
    if not logs:
        return []
    log = read_metrics_csv(logs[-1])
    return [(int(e), round(float(d), 4)) for e, d in zip(log.get("epoch", []), log.get("val_dice", []))
            if math.isfinite(d)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, help="training pack from `lasegtut pack`")
    ap.add_argument("--out", type=Path, required=True, help="folder for figures.json, the weights and logs")
    ap.add_argument("--work", type=Path, help="folder for the cache, checkpoints and full logs (default OUT/work)")
    ap.add_argument("--views", type=int, nargs="+", default=[0, 1, 2], choices=[0, 1, 2],
                    help="slicing axes to train, one model each (default: 0 1 2)")
    ap.add_argument("--minutes", type=float, default=5.0, help="training time budget per view (default 5)")
    ap.add_argument("--tiny", action="store_true", help="a tiny CPU run of every step (for the tests)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--view", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work = args.work or args.out / "work"
    try:
        return worker(args) if args.worker else run(args)
    except LasegError as e:
        print(f"gpu_train: error: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    import torch

    from lasegtut.inference import load_model, resolve_device
    from lasegtut.pack import unpack
    from lasegtut.preprocess import write_cache

    if args.pack is None:
        raise LasegError("--pack is required (make one with `lasegtut pack --data FULL_DATA`)")
    if not args.tiny and not torch.cuda.is_available():
        raise LasegError("no CUDA GPU is visible; use --tiny for a CPU check of the script")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cache = args.work / "cache"
    border = profile(0, args.tiny).border
    trained = unpack(args.pack, cache, border=border)
    write_cache(BUNDLED_SAMPLE, cache, border=border, progress=False)
    print(f"cache ready: {len(trained)} training cases from {args.pack.name} + the bundled validation cases "
          f"({time.perf_counter() - t_start:.0f} s)", flush=True)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    procs = {}
    t_train = time.perf_counter()
    for v in args.views:
        cmd = [sys.executable, __file__, "--worker", "--view", str(v), "--out", str(args.out),
               "--work", str(args.work), "--minutes", str(args.minutes)] + (["--tiny"] if args.tiny else [])
        log = open(args.out / f"train_axis{v}.log", "w")
        procs[v] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = []
    for v, (p, log) in procs.items():
        if p.wait() != 0:
            failed.append(v)
        log.close()
    train_minutes = (time.perf_counter() - t_train) / 60
    for v in failed:
        print(f"view {v} failed; the end of its log:\n" + (args.out / f"train_axis{v}.log").read_text()[-3000:])
    views = [v for v in args.views if v not in failed]
    if not views:
        return 1

    device = resolve_device("cpu" if args.tiny else "cuda")
    figures: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "views": {}, "train_wall_minutes": round(train_minutes, 2),
                     "minutes_budget_per_view": args.minutes, "concurrent_views": len(args.views)}
    members = []
    for v in views:
        shutil.copy2(args.work / f"axis{v}" / "model.pt", args.out / f"model_axis{v}.pt")
        model, info = load_model(args.out / f"model_axis{v}.pt", device=device)
        members.append((model, info))
        meta = info.meta
        slices_per_s = meta["epochs"] * meta["train_slices"] / max(meta["train_seconds"], 1e-9)
        figures["views"][f"axis{v}"] = {"train": {k: meta[k] for k in ("epochs", "train_seconds", "train_slices",
                                                                       "precision", "device")},
                                        "train_slices_per_s": round(slices_per_s, 1),
                                        "val_dice_curve": val_curve(args.work / f"axis{v}"),
                                        **score([(model, info)], device)}
        print(f"axis {v}: {figures['views'][f'axis{v}']['mean_dice']:.4f} mean Dice", flush=True)
    if len(members) > 1:
        figures["average_of_views"] = score(members, device)
        print(f"average of views {views}: {figures['average_of_views']['mean_dice']:.4f} mean Dice", flush=True)
    # prediction time of one scan on this device (after a warm-up), the first view and the average
    from lasegtut.data import load_case
    from lasegtut.inference import predict_volume

    case = load_case(BUNDLED_SAMPLE, "la_014")
    timing = {}
    for name, m in (("one_view", members[:1]), ("average_of_views", members)):
        predict_volume(case.image, m, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(3):
            predict_volume(case.image, m, device=device)
        timing[name] = round((time.perf_counter() - t0) / 3, 3)
    figures["predict_seconds_la_014"] = timing
    figures["total_minutes"] = round((time.perf_counter() - t_start) / 60, 2)
    (args.out / "figures.json").write_text(json.dumps(json_safe(figures), indent=1))
    print(json.dumps(json_safe({k: v for k, v in figures.items() if k != "views"}), indent=1))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
