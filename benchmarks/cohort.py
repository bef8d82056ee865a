"""A folder of scans in one command vs one ``lasegtut predict`` per scan (prints figures).

    python benchmarks/cohort.py [--data DIR] [--limit N]

Segments every scan of an MSD folder (default: the full data set, :func:`lasegtut.paths.full_data_dir`,
else the bundled 3) twice,
into temporary folders: once with ``lasegtut predict SCANS_DIR OUT_DIR`` (one process, the
model loaded once, the next scan read while the current one is segmented) and once with a
separate ``lasegtut predict scan mask`` process per scan, as a shell loop would. Prints the wall
time and scans per minute of both, and checks that both wrote the same masks.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from lasegtut.paths import BUNDLED_SAMPLE, COURSE_ROOT, full_data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=full_data_dir() or BUNDLED_SAMPLE)
    ap.add_argument("--limit", type=int, default=None, help="only the first N scans")
    args = ap.parse_args()
    scans = sorted((args.data / "imagesTr").glob("*.nii.gz"))[: args.limit]
    if not scans:
        ap.error(f"no scans (*.nii.gz) in {args.data / 'imagesTr'}")
    cli = [sys.executable, "-m", "lasegtut", "predict"]
    env = dict(os.environ, PYTHONPATH=str(COURSE_ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "scans").mkdir()
        for s in scans:
            (tmp / "scans" / s.name).symlink_to(s.resolve())
        t0 = time.perf_counter()
        subprocess.run(cli + [str(tmp / "scans"), str(tmp / "folder"), "--device", "cpu", "--json"],
                       check=True, env=env, capture_output=True)
        folder_s = time.perf_counter() - t0
        (tmp / "single").mkdir()
        t0 = time.perf_counter()
        for s in scans:
            subprocess.run(cli + [str(s), str(tmp / "single" / s.name), "--device", "cpu"], check=True, env=env,
                           capture_output=True)
        single_s = time.perf_counter() - t0
        same = all(np.array_equal(np.asanyarray(nib.load(tmp / "folder" / s.name).dataobj),
                                  np.asanyarray(nib.load(tmp / "single" / s.name).dataobj)) for s in scans)
    n = len(scans)
    print(f"{n} scans from {args.data.name}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    print(f"one command for the folder:   {folder_s:7.1f} s  {60 * n / folder_s:5.1f} scans/min")
    print(f"one command per scan:         {single_s:7.1f} s  {60 * n / single_s:5.1f} scans/min")
    print(f"speed-up {single_s / folder_s:.2f}x; identical masks: {same}")


if __name__ == "__main__":
    main()
