"""``lasegtut demo``: the whole pipeline on one bundled scan, in seconds, on a CPU.

Segments a bundled validation case with the shipped model, compares the mask with the expert
label (Dice, HD95) and turns both into a left-atrium volume in mL. Writes the predicted mask
(NIfTI, on the scan's own grid) and an overlay PNG into the output folder; re-running the demo
replaces those two files and nothing else.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import BUNDLED_SAMPLE, case_paths, resolve_data_dir
from .errors import LasegError
from .evaluation import evaluate_cases
from .inference import load_model, resolve_device
from .orientation import array_slice, plane_name, slice_aspect, slice_letters
from .preprocess import atomic_write
from .safeio import check_output_file, make_output_dir
from .volume import volume_error_pct


def save_overlay_png(image: np.ndarray, label: np.ndarray, pred: np.ndarray, path: str | os.PathLike,
                     spacing: tuple[float, float, float], title: str = "") -> Path:
    """Three orthogonal views through the atrium's centre (across array axes 2, 1 and 0) with the
    label (orange) and prediction (teal, dashed) outlined and orientation letters. Arrays are
    ``(x, y, z)`` of an MSD heart scan as :func:`lasegtut.data.load_case` returns them."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plots import FIG_DPI, la_center, overlay  # after the backend is chosen: plots imports pyplot

    centre = la_center(label if label.any() else pred, image.shape)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), dpi=FIG_DPI)
    for ax, axis in zip(axes, (2, 1, 0)):
        k = centre[axis]
        overlay(ax, array_slice(image, k, axis), array_slice(label, k, axis), array_slice(pred, k, axis),
                title=f"{'xyz'[axis]} = {k}: {plane_name(axis)}", aspect=slice_aspect(axis, spacing),
                letters=slice_letters(axis))
    fig.suptitle(title + "   orange: expert label, teal dashed: model", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    try:  # under a temporary name, then renamed: never a truncated PNG under the final name
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return path


def run_demo(case_id: str = "la_014", out: str | os.PathLike = "outputs/demo",
             weights: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
             device: str = "auto") -> dict:
    """Segment ``case_id`` of the bundled sample (or ``data``) and print the comparison.

    ``device``: where the network runs (see :func:`lasegtut.inference.resolve_device`).

    Returns the figures as a dict (``dice``, ``hd95_mm``, ``volume_pred_ml``, ...).
    """
    import gzip

    import nibabel as nib

    dev = resolve_device(device)
    model, info = load_model(weights, device=dev)
    root = resolve_data_dir(data or BUNDLED_SAMPLE)
    case_paths(root, case_id)  # an unknown case is refused before the output folder is made
    # the output folder and both files are checked before the work (a file named like the folder,
    # a folder named like a file, a place where nothing can be written); the demo's own files are
    # replaced on every run, so they may exist
    out = make_output_dir(out)
    mask_path, png_path = out / f"{case_id}_pred.nii.gz", out / f"{case_id}_overlay.png"
    for p in (mask_path, png_path):
        check_output_file(p, force=True)
    m = evaluate_cases(root, [case_id], model, info, keep_masks=True, keep_images=True,
                       device=dev)[0]
    pred, seconds = m["pred"], m["seconds"]
    # written under a temporary name, then renamed: never a truncated mask under the final name
    mask_img = nib.Nifti1Image(pred.astype(np.uint8), m["affine"])
    try:
        atomic_write(mask_path, lambda f: f.write(gzip.compress(mask_img.to_bytes(), compresslevel=6)))
        png = save_overlay_png(m["image"], m["label"], pred, png_path, m["spacing"],
                               title=f"{case_id}: Dice {m['dice']:.3f}")
    except OSError as e:
        raise LasegError(f"could not write into {out} ({e.strerror or type(e).__name__})") from None
    err = volume_error_pct(m["volume_pred_ml"], m["volume_label_ml"])
    print(f"case {case_id} (bundled validation case, never seen in training), segmented in {seconds:.1f} s")
    print(f"Dice {m['dice']:.3f}   IoU {m['iou']:.3f}   HD95 {m['hd95_mm']:.1f} mm   ASSD {m['assd_mm']:.2f} mm")
    print(f"left-atrium volume: predicted {m['volume_pred_ml']:.1f} mL, expert label "
          f"{m['volume_label_ml']:.1f} mL ({err:+.1f}%)")
    print(f"wrote {mask_path} and {png}")
    return m
