"""Rebuild this folder from a Task02_Heart folder that holds la_005 and la_026.

    python data/duplicate_pair/build.py PATH/TO/Task02_Heart

Crops both cases to one box: the bounding box of the union of the two labels plus MARGIN voxels
on every side (clipped to the scan), in the RAS orientation that ``lasegtut.data.load_case``
gives. The images are written as int16, the labels as uint8, each with the scan's affine moved to
the box's corner, so every voxel keeps its place in the scanner's world coordinates. The gzip
streams carry no time stamp, so a rebuild from the same data gives the same bytes.
"""
from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from lasegtut.data import DUPLICATE_CASES, load_case

MARGIN = 16  # voxels of context around the two labels (20 mm in-plane)
HERE = Path(__file__).resolve().parent


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    raw = io.BytesIO()
    nib.Nifti1Image.to_file_map(img, {"image": nib.FileHolder(fileobj=raw), "header": nib.FileHolder(fileobj=raw)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())


def main(source: str) -> None:
    a, b = (load_case(source, c) for c in DUPLICATE_CASES)
    if not np.array_equal(a.image, b.image):
        raise SystemExit(f"{DUPLICATE_CASES} do not hold the same image in {source}")
    both = (a.label > 0) | (b.label > 0)
    lo = np.maximum(np.argwhere(both).min(0) - MARGIN, 0)
    hi = np.minimum(np.argwhere(both).max(0) + 1 + MARGIN, both.shape)
    box = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
    affine = a.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ lo
    for case in (a, b):
        _save(np.asarray(np.rint(case.image[box]), dtype=np.int16), affine, HERE / "imagesTr" / f"{case.case_id}.nii.gz")
        _save(case.label[box].astype(np.uint8), affine, HERE / "labelsTr" / f"{case.case_id}.nii.gz")
    meta = {
        "name": "LeftAtrium",
        "description": ("lasegtut: the scan that MSD Task02_Heart holds twice (la_005, la_026), with its two labels, "
                        f"cropped around the atrium (voxels {lo.tolist()} to {(hi - 1).tolist()} of the "
                        f"{list(a.image.shape)} RAS grid); see README.md"),
        "tensorImageSize": "3D", "reference": "King\u2019s College London", "licence": "CC-BY-SA 4.0",
        "relase": "1.0 04/05/2018", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
        "numTraining": 2, "numTest": 0,
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in DUPLICATE_CASES],
        "test": [],
    }
    (HERE / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"crop {tuple(h - l for l, h in zip(lo, hi))} voxels at {lo.tolist()}; wrote {HERE}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
