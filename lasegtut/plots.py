"""Figures for the course: slices, overlays and animations (matplotlib + celluloid).

Conventions: volumes are ``(x, y, z)`` arrays as :func:`lasegtut.data.load_case` returns them,
spacing in mm in the same order. Functions that cut a volume are named by **array axis**, not
by anatomical plane, because which plane an array axis holds depends on the scan. How a slice
across an array axis is laid out on screen and what it is in the patient (``display_slice``,
``slice_aspect``, ``slice_letters``, ``plane_name``, ``axis_direction``, ``axcodes`` with the
default ``MSD_HEART_AXCODES``) is decided in :mod:`lasegtut.orientation`; the figures here use
it, so in the MSD heart scans the files' slices are labelled sagittal and the shipped model's
slices (across axis 0) coronal. Every helper that shows a slice lays it out with
:func:`lasegtut.orientation.display_slice` (a volume) or :func:`lasegtut.orientation.display_2d`
(a slice of a stack of network input), in the course's one display convention
(:data:`lasegtut.orientation.DISPLAY_CONVENTION`: radiological, the patient's right on the
viewer's left on axial and coronal views, anterior on the left on sagittal views, superior up),
and writes the direction letters computed there; pass ``axcodes=None`` for a scan whose
directions are unknown (no letters). Only the display is flipped, never the data.

Every function takes plain arrays and returns matplotlib objects, so notebooks stay short and
figures look the same everywhere. Figures are drawn at :data:`FIG_DPI` with image panels of at
least about 300 pixels.
"""
from __future__ import annotations

import shutil
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .metrics import bounding_box
from .orientation import (MSD_HEART_AXCODES, axis_direction, check_axis, display_2d, display_layout, display_slice,
                          plane_name, slice_aspect)
from .orientation import array_slice, slice_letters  # noqa: F401  (re-exported: older notebooks call plots.array_slice)
from .volume import bland_altman_stats

LA_COLOR = "#e4572e"    # label / left atrium
PRED_COLOR = "#17bebb"  # prediction
#: Resolution of the course's figures (dots per inch): sharp on a laptop screen, light in a notebook.
FIG_DPI = 120
# ============================================================ shared basics
def draw_letters(ax: plt.Axes, letters: Sequence[str], color: str = "yellow", size: float = 9) -> None:
    """Write four direction letters (top, bottom, left, right) just inside the edges of ``ax``."""
    top, bottom, left, right = letters
    kw = dict(color=color, fontsize=size, transform=ax.transAxes, ha="center", va="center", weight="bold")
    for (x, y), t in (((0.5, 0.95), top), ((0.5, 0.05), bottom), ((0.04, 0.5), left), ((0.96, 0.5), right)):
        ax.text(x, y, t, **kw)


def _shown(volume: np.ndarray | None, k: int, axis: int, axcodes: Sequence[str] | None) -> np.ndarray | None:
    """Slice ``k`` across ``axis`` of a volume laid out by :func:`display_slice` (None stays None)."""
    return None if volume is None else display_slice(volume, k, axis, axcodes)[0]


def overlay(ax: plt.Axes, image: np.ndarray, label: np.ndarray | None = None,
            pred: np.ndarray | None = None, *, title: str | None = None, aspect: float = 1.0,
            letters: Sequence[str] | None = None) -> plt.Axes:
    """Draw a 2D grey image with the label outlined (orange) and the prediction (teal, dashed).

    ``image`` is already laid out for the screen (:func:`lasegtut.orientation.display_slice`);
    ``aspect`` is the pixel height / width ratio in mm (e.g. :func:`slice_aspect`); ``letters``:
    the patient directions (top, bottom, left, right) to write at the edges, the letters
    :func:`lasegtut.orientation.display_slice` returns with the image.
    """
    ax.imshow(image, cmap="gray", aspect=aspect, interpolation="nearest")
    if label is not None and label.any():
        ax.contour(label, levels=[0.5], colors=[LA_COLOR], linewidths=1.2)
    if pred is not None and pred.any():
        ax.contour(pred, levels=[0.5], colors=[PRED_COLOR], linewidths=1.2, linestyles="--")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if letters is not None:
        draw_letters(ax, letters)
    return ax


def outline_legend(fig: plt.Figure, label: str | None = "label", pred: str | None = "prediction", *,
                   loc: str = "lower center", fontsize: float = 8, **kw):
    """A figure legend for the outlines of :func:`overlay`: ``label`` orange (the label, or a
    first annotator), ``pred`` teal dashed (the prediction, or a second annotator); None leaves
    an entry out."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], lw=1.5, label=n, **st) for n, st in
               ((label, dict(color=LA_COLOR)), (pred, dict(color=PRED_COLOR, ls="--"))) if n]
    return fig.legend(handles=handles, loc=loc, ncol=max(len(handles), 1), fontsize=fontsize, frameon=False, **kw)


def animation_html(anim) -> str:
    """HTML for a matplotlib animation: an MP4 video where ffmpeg exists, else a JavaScript
    player (``to_jshtml``) whose frames are embedded as JPEG (a few times lighter than PNG for
    MRI), so animations work headless and on machines without ffmpeg."""
    if shutil.which("ffmpeg"):
        return anim.to_html5_video()
    with plt.rc_context({"animation.frame_format": "jpeg"}):
        return anim.to_jshtml(default_mode="loop")


def animate_slices(image: np.ndarray, label: np.ndarray | None = None, pred: np.ndarray | None = None,
                   *, axis: int = 2, step: int = 4, size: float = 3.4, interval: int = 150, title: str = "",
                   names: Sequence[str] = ("label", "prediction"), spacing: Sequence[float] | None = None,
                   axcodes: Sequence[str] | None = MSD_HEART_AXCODES, dpi: int = 100) -> str:
    """Animate through the slices across array ``axis`` (default 2: the files' own slices) of an
    ``(x, y, z)`` volume, with the label (orange) and prediction (teal, dashed) outlined, the
    orientation letters on every frame and a legend; returns HTML.

    Every ``step``-th slice is a frame; ``size`` inches at ``dpi`` (340 px by default). Keep the
    number of frames small so the notebook stays light.
    """
    from celluloid import Camera

    check_axis(axis)
    fig, ax = plt.subplots(figsize=(size, size + 0.35), dpi=dpi)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.1)
    if label is not None or pred is not None:
        outline_legend(fig, names[0] if label is not None else None, names[1] if pred is not None else None)
    aspect = slice_aspect(axis, spacing, axcodes)
    name = "xyz"[axis]
    camera = Camera(fig)
    for k in range(0, image.shape[axis], step):
        img, letters = display_slice(image, k, axis, axcodes)
        overlay(ax, img, _shown(label, k, axis, axcodes), _shown(pred, k, axis, axcodes), aspect=aspect,
                letters=letters)
        ax.text(0.02, 0.985, f"{title} {name} = {k}".strip(), color="w", fontsize=8, transform=ax.transAxes,
                ha="left", va="top")
        camera.snap()
    anim = camera.animate(interval=interval)
    html = animation_html(anim)
    plt.close(fig)
    return html


# ============================================================ notebooks 01-04
def la_center(label: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    """Voxel index ``(i, j, k)`` of the label's centre of mass (rounded), or the volume's centre
    when there is no label."""
    if label is None or not np.any(label):
        return tuple(int(s) // 2 for s in shape[:3])  # type: ignore[return-value]
    return tuple(int(round(c)) for c in np.argwhere(label).mean(axis=0))  # type: ignore[return-value]


def display_range(image: np.ndarray) -> tuple[float, float]:
    """Grey-level window for showing an MRI: the 0.5th-99.5th percentiles of its non-zero voxels."""
    v = image[image != 0] if np.any(image != 0) else image.ravel()
    lo, hi = np.percentile(v[:: max(1, v.size // 200_000)], [0.5, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def intensity_histograms(images: dict[str, np.ndarray], labels: dict[str, np.ndarray] | None = None, *,
                         bins: int = 100, ignore_zeros: bool = True, size: float = 3.0,
                         dpi: int = FIG_DPI) -> plt.Figure:
    """One histogram per scan of its voxel intensities (grey, log counts) with the left-atrium
    voxels in orange, over the whole range up to the brightest voxel (its value in the title), with
    the 99.9th percentile marked (dotted): above it lie the last 0.1 % of the voxels, a thin tail of a few bright spots.
    ``ignore_zeros`` leaves out voxels that are exactly 0 (the blank border)."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size * 0.8), dpi=dpi, squeeze=False)
    for ax, (name, img) in zip(axes[0], images.items()):
        v = img[img != 0] if ignore_zeros else img.ravel()
        p999 = float(np.percentile(v, 99.9))
        edges = np.linspace(float(v.min()), float(v.max()), bins + 1)
        ax.hist(v, bins=edges, color="gray", alpha=0.7, label="all voxels")
        ax.axvline(p999, color="0.3", ls=":", lw=1, label="99.9th percentile")
        if labels is not None and name in labels:
            ax.hist(img[labels[name] > 0], bins=edges, color=LA_COLOR, alpha=0.8, label="left atrium")
        ax.set_yscale("log")
        ax.set_title(f"{name} (brightest voxel {float(v.max()):.0f})", fontsize=9)
        ax.set_xlabel("intensity (scanner units)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("voxels", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def la_area_profile(labels: dict[str, np.ndarray], spacings: dict[str, Sequence[float]], *,
                    axis: int = 2, axcodes: Sequence[str] | None = MSD_HEART_AXCODES,
                    dpi: int = FIG_DPI) -> plt.Figure:
    """Left-atrium cross-section area (cm^2) of every 2D slice across array ``axis`` (default 2: the
    files' own slices), one line per case, against the slice position in mm from the first slice."""
    fig, ax = plt.subplots(figsize=(6, 2.8), dpi=dpi)
    other = tuple(a for a in range(3) if a != check_axis(axis))
    for name, lab in labels.items():
        sp = spacings[name]
        area = (lab > 0).sum(axis=other) * sp[other[0]] * sp[other[1]] / 100.0
        ax.plot(np.arange(lab.shape[axis]) * sp[axis], area, label=name)
    where = f", {axis_direction(axis, axcodes)}" if axcodes is not None else ""
    ax.set_xlabel(f"position of the slice along array axis {axis} ({'xyz'[axis]}, mm{where})", fontsize=8)
    ax.set_ylabel("LA area (cm$^2$)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def compare_labels(image: np.ndarray, label_a: np.ndarray, label_b: np.ndarray, names: tuple[str, str] = ("A", "B"),
                   k: int | None = None, *, axis: int = 2, spacing: Sequence[float] | None = None,
                   axcodes: Sequence[str] | None = MSD_HEART_AXCODES, dpi: int = FIG_DPI) -> plt.Figure:
    """Two labels of the same ``(x, y, z)`` scan on its slice ``k`` across array ``axis`` (shown like
    :func:`display_slice`; default: the slice where they disagree most): label A orange, label B teal
    dashed; right panel: the voxels only one of them marks (red). Orientation letters from
    ``axcodes``; ``spacing`` (mm) keeps the proportions true."""
    diff = (label_a > 0) != (label_b > 0)
    if k is None:
        k = int(np.argmax(diff.sum(axis=tuple(a for a in range(3) if a != check_axis(axis)))))
    lo, hi = display_range(image)
    img, letters = display_slice(image, k, axis, axcodes)
    img = np.clip(img, lo, hi)
    aspect = slice_aspect(axis, spacing, axcodes)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.9), dpi=dpi)
    overlay(axes[0], img, _shown(label_a, k, axis, axcodes), _shown(label_b, k, axis, axcodes),
            title=f"slice {'xyz'[axis]} = {k}", aspect=aspect, letters=letters)
    overlay(axes[1], img, title="voxels only one label marks (red)", aspect=aspect, letters=letters)
    d = _shown(diff, k, axis, axcodes)
    axes[1].imshow(np.ma.masked_where(~d, d), cmap="autumn", alpha=0.9, interpolation="nearest", aspect=aspect)
    outline_legend(fig, *names)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def show_xy(ax: plt.Axes, image: np.ndarray, mask: np.ndarray | None = None, title: str | None = None,
            vmin: float | None = None, vmax: float | None = None, letters: bool = True, *, axis: int = 2,
            axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> plt.Axes:
    """Show one 2D slice of a stack of network input across array ``axis`` (``stack[k]``, from
    ``preprocess_volume``, ``preprocess_window`` or ``reslice``; a cropped or augmented copy too)
    laid out by :func:`lasegtut.orientation.display_2d` like a slice of the volume, with the mask
    outlined and, if ``letters``, the direction letters from ``axcodes``. Display only: the
    array the network sees is not flipped."""
    img, names = display_2d(image, axis, axcodes)
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    if mask is not None and mask.any():
        ax.contour(display_2d(mask, axis, axcodes)[0], levels=[0.5], colors=[LA_COLOR], linewidths=1.2)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if letters and names is not None:
        draw_letters(ax, names)
    return ax


def crop_figure(image: np.ndarray, label: np.ndarray, k: int, border: int = 32, *, axis: int = 2,
                axcodes: Sequence[str] | None = MSD_HEART_AXCODES, dpi: int = FIG_DPI) -> plt.Figure:
    """Slice ``k`` across array ``axis`` (default 2: the files' own slices; the shipped model
    cuts across 0) of an ``(x, y, z)`` volume, shown like :func:`display_slice`, before (crop box
    dashed) and after removing ``border`` voxels per side of the in-plane axes 0 and 1 (the crop of
    :func:`lasegtut.preprocess.crop`), with orientation letters from ``axcodes``. Across axis 0 or
    1 the box spans the slice's whole extent along axis 2, which the crop keeps."""
    from matplotlib.patches import Rectangle

    check_axis(axis)
    lo, hi = display_range(image)
    img, letters = display_slice(image, k, axis, axcodes)
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.9), dpi=dpi, gridspec_kw={"width_ratios": [1.25, 1]})
    overlay(axes[0], np.clip(img, lo, hi), _shown(label, k, axis, axcodes),
            title=f"original {image.shape[0]} x {image.shape[1]}", letters=letters)
    layout = display_layout(axis, axcodes)  # the border along whichever shown axis is array axis 0 or 1
    b_rows, b_cols = (border if a in (0, 1) else 0 for a in (layout.rows, layout.cols))
    axes[0].add_patch(Rectangle((b_cols - 0.5, b_rows - 0.5), img.shape[1] - 2 * b_cols, img.shape[0] - 2 * b_rows,
                                fill=False, ec="yellow", ls="--", lw=1))
    c_img, c_lab = image[border:-border, border:-border], label[border:-border, border:-border]
    c_k = k - border if axis in (0, 1) else k
    overlay(axes[1], np.clip(display_slice(c_img, c_k, axis, axcodes)[0], lo, hi), _shown(c_lab, c_k, axis, axcodes),
            title=f"cropped {c_img.shape[0]} x {c_img.shape[1]}", letters=letters)
    fig.tight_layout()
    return fig


def histograms_before_after(before: dict[str, np.ndarray], after: dict[str, np.ndarray], *, bins: int = 80,
                            ignore_zeros: bool = True, log: bool = True, dpi: int = FIG_DPI) -> plt.Figure:
    """Intensity distributions of several scans before and after normalisation (density, one line
    per scan, log scale if ``log``); voxels that are exactly 0 in ``before`` (the blank border) are
    left out of both."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8), dpi=dpi)
    for name in before:
        keep = before[name] != 0 if ignore_zeros else np.ones(before[name].shape, bool)
        for ax, arr in ((axes[0], before[name]), (axes[1], after[name])):
            v = np.asarray(arr[keep], dtype=np.float32)
            hist, edges = np.histogram(v, bins=bins, range=(float(v.min()), float(v.max())), density=True)
            ax.plot((edges[:-1] + edges[1:]) / 2, np.where(hist > 0, hist, np.nan), label=name)
    axes[0].set_title("raw (scanner units)", fontsize=9)
    axes[1].set_title("after normalize: z-score then min-max", fontsize=9)
    axes[0].set_xlabel("intensity (scanner units, no physical unit)", fontsize=8)
    axes[1].set_xlabel("normalised intensity (0 = the scan's darkest voxel, 1 = its brightest)", fontsize=8)
    for ax in axes:
        if log:
            ax.set_yscale("log")
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def slice_strip(stack: np.ndarray, masks: np.ndarray | None, ks: Sequence[int], *, axis: int = 2,
                titles: Sequence[str] | None = None, size: float = 2.6,
                axcodes: Sequence[str] | None = MSD_HEART_AXCODES, dpi: int = FIG_DPI) -> plt.Figure:
    """A row of slices ``stack[k]`` of a stack of slices across array ``axis`` (``(z, x, y)`` from
    :func:`lasegtut.preprocess.preprocess_volume` for the files' own slices, axis 2, or the output
    of :func:`lasegtut.preprocess.reslice` for another axis), masks outlined, orientation letters
    from ``axcodes`` on every panel."""
    n = len(ks)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size + 0.35), dpi=dpi, squeeze=False)
    lo, hi = display_range(np.asarray(stack[list(ks)], dtype=np.float32))
    titles = list(titles) if titles is not None else [f"{'xyz'[check_axis(axis)]} = {k}" for k in ks]
    for ax, k, t in zip(axes[0], ks, titles):
        show_xy(ax, stack[k], None if masks is None else masks[k], title=t, vmin=lo, vmax=hi, axis=axis,
                axcodes=axcodes)
    fig.tight_layout()
    return fig


def neighbour_correlation(stack: np.ndarray, max_lag: int = 20, ks: Sequence[int] | None = None) -> np.ndarray:
    """Mean Pearson correlation between slice ``k`` and slice ``k + lag`` of a ``(z, x, y)`` stack,
    for lag = 0 .. max_lag (``ks``: the slices k to average over; default all that fit)."""
    flat = stack.reshape(len(stack), -1).astype(np.float64)
    flat = (flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-12)
    ks = list(ks) if ks is not None else list(range(len(stack)))
    out = []
    for lag in range(max_lag + 1):
        pairs = [k for k in ks if k + lag < len(stack)]
        out.append(float(np.mean([np.mean(flat[k] * flat[k + lag]) for k in pairs])))
    return np.array(out)


def correlation_plot(curves: dict[str, np.ndarray], spacing_z: float | None = None, *,
                     baseline: float | None = None, dpi: int = FIG_DPI) -> plt.Figure:
    """Plot correlation-versus-distance curves (from :func:`neighbour_correlation`); ``baseline``:
    the correlation between slices of *different* scans, drawn as a dashed line."""
    fig, ax = plt.subplots(figsize=(5.5, 2.8), dpi=dpi)
    for name, c in curves.items():
        lags = np.arange(len(c))
        ax.plot(lags * (spacing_z or 1), c, marker=".", label=name)
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", lw=1, label="slices of two different scans")
    ax.set_xlabel("distance between slices (mm)" if spacing_z else "distance between slices (slices)", fontsize=8)
    ax.set_ylabel("correlation", fontsize=8)
    ax.set_ylim(min(0.0, *(float(c.min()) for c in curves.values())), 1.02)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def augmentation_grid(image: np.ndarray, mask: np.ndarray, pairs: Sequence[tuple[np.ndarray, np.ndarray]], *,
                      ncols: int = 4, size: float = 2.6, titles: Sequence[str] | None = None, axis: int = 2,
                      axcodes: Sequence[str] | None = MSD_HEART_AXCODES, dpi: int = FIG_DPI) -> plt.Figure:
    """The original slice (one slice of a stack across array ``axis``, as :func:`show_xy` takes
    it) and its augmented (image, mask) ``pairs`` in a grid, each mask outlined on its own image.
    Every panel is laid out like the original and carries its letters (``axcodes``); on the
    augmented copies, rotated by up to a few tens of degrees, they give the sides, not exact directions."""
    n = len(pairs) + 1
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.2), dpi=dpi, squeeze=False)
    titles = list(titles) if titles is not None else [f"augmented #{i}" for i in range(1, n)]
    lo, hi = display_range(image)
    for ax in axes.ravel():
        ax.set_axis_off()
    show_xy(axes[0, 0], image, mask, title="original", vmin=lo, vmax=hi, axis=axis, axcodes=axcodes)
    for ax, (img, msk), t in zip(axes.ravel()[1:], pairs, titles):
        show_xy(ax, img, msk, title=t, vmin=lo, vmax=hi, axis=axis, axcodes=axcodes)
    fig.tight_layout()
    return fig


def alignment_figure(mask_image: np.ndarray, mask: np.ndarray, wrong_mask: np.ndarray | None = None, *,
                     margin: int = 12, axis: int = 2, axcodes: Sequence[str] | None = MSD_HEART_AXCODES,
                     dpi: int = FIG_DPI) -> plt.Figure:
    """Visual alignment check of an augmentation on ``(x, y)`` slices: the augmented *image* made from
    the mask (grey) with the augmented mask outlined, and where the two disagree (red).
    ``wrong_mask``: optionally, a mask augmented with other random parameters (the bug to avoid).
    The view is zoomed on the masks (``margin`` pixels around them)."""
    union = (mask_image > 0.5) | (mask > 0) | (wrong_mask > 0 if wrong_mask is not None else False)
    box = bounding_box(union, margin)
    if box is not None:
        mask_image, mask = mask_image[box], mask[box]
        wrong_mask = None if wrong_mask is None else wrong_mask[box]
    panels = [(mask, "augmented mask on\naugmented mask-image")]
    if wrong_mask is not None:
        panels.append((wrong_mask, "bug: mask augmented\nwith other parameters"))
    fig, axes = plt.subplots(1, 2 * len(panels), figsize=(2.6 * 2 * len(panels), 3.0), dpi=dpi)
    for n, (m, title) in enumerate(panels):
        show_xy(axes[2 * n], mask_image, m, title=title, vmin=0, vmax=1, axis=axis, axcodes=axcodes)
        diff = (mask_image > 0.5) != (m > 0)
        show_xy(axes[2 * n + 1], np.zeros_like(mask_image), None, title=f"disagreeing pixels: {int(diff.sum())}",
                vmin=0, vmax=1, axis=axis, axcodes=axcodes)
        shown = display_2d(diff, axis, axcodes)[0]
        axes[2 * n + 1].imshow(np.ma.masked_where(~shown, shown), cmap="autumn", interpolation="nearest")
    fig.tight_layout()
    return fig


# ============================================================ notebooks 05-07
def training_curves(cols: dict[str, np.ndarray], *, dpi: int = FIG_DPI) -> plt.Figure:
    """Loss and validation Dice of a training run, from the columns of its CSV log
    (:func:`lasegtut.training.read_metrics_csv`: one float array per metric, NaN where it was not
    logged). Left: training loss per logged step (thin) and per epoch, validation loss per epoch,
    against the training step. Right: validation Dice (3D, per case, averaged) against the epoch
    (0 = first).
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.0), dpi=dpi)
    for key, style, name in (("train_loss_step", dict(lw=0.8, alpha=0.6, color="0.5"), "train loss (step)"),
                             ("train_loss_epoch", dict(marker="o", color="C0"), "train loss (epoch)"),
                             ("val_loss", dict(marker="s", color="C1"), "validation loss")):
        if key in cols:
            sel = ~np.isnan(cols[key])
            ax1.plot(cols["step"][sel], cols[key][sel], label=name, **style)
    ax1.set_xlabel("training step (batches)")
    ax1.set_ylabel("Dice + BCE loss")
    ax1.legend(fontsize=8)
    ax1.set_title("loss", fontsize=10)
    if "val_dice" in cols:
        sel = ~np.isnan(cols["val_dice"])
        ax2.plot(cols["epoch"][sel], cols["val_dice"][sel], marker="o", color="C2")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation Dice (3D)")
    ax2.set_title("validation Dice", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def unet_diagram(config, input_size: int = 128, *, dpi: int = FIG_DPI) -> plt.Figure:
    """Draw the U of a :class:`lasegtut.model.UNetConfig`: one box per level with its channels
    and feature-map size (pixels, for a square ``input_size`` input), max-pool arrows down,
    up-sampling arrows up and the skip connections (concatenation) across; the legend names the
    layers of each block, with the config's normalisation (batch norm in the shipped network)."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    widths = tuple(config.widths)
    depth = len(widths) - 1
    fig, ax = plt.subplots(figsize=(1.15 * (2 * depth + 3), 0.75 * (depth + 2.2)), dpi=dpi)

    def box(x: float, y: float, c: int, s: int, color: str) -> None:
        w = 0.35 + 0.12 * np.log2(c)
        ax.add_patch(Rectangle((x - w / 2, y - 0.28), w, 0.56, facecolor=color, edgecolor="k", lw=0.8))
        ax.text(x, y, f"{c} ch\n{s}x{s}", ha="center", va="center", fontsize=7.5)

    def arrow(x0, y0, x1, y1, **kw) -> None:
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, lw=1, **kw))

    for i, c in enumerate(widths):
        s = input_size // 2 ** i
        box(i, -i, c, s, "#cfe3f3")
        if i < depth:
            box(2 * depth - i, -i, c, s, "#f6d8c6")
            arrow(i + 0.55, -i, 2 * depth - i - 0.55, -i, color="0.45", ls="--")
            arrow(i + 0.1, -i - 0.3, i + 0.9, -i - 0.72, color="C0")
            arrow(2 * depth - i - 0.9, -i - 0.72, 2 * depth - i - 0.1, -i - 0.3, color="C1")
    cin = getattr(config, "in_channels", 1)
    label = "image\n1 ch" if cin == 1 else f"{cin} slices\n{cin} ch"
    ax.text(-1.0, 0, f"{label}\n{input_size}x{input_size}", ha="center", va="center", fontsize=7.5)
    arrow(-0.65, 0, -0.45, 0, color="k")
    ax.text(2 * depth + 1.05, 0, "1x1 conv\nlogits\n1 ch", ha="center", va="center", fontsize=7.5)
    arrow(2 * depth + 0.5, 0, 2 * depth + 0.7, 0, color="k")
    ax.text(depth, 0.55, "skip connections (copy + concatenate)", ha="center", fontsize=8, color="0.35")
    norm = {"batch": "batch norm, ", "instance": "instance norm, "}.get(str(getattr(config, "norm", "none")), "")
    ax.text(-1.5, -depth - 0.45, f"down: 2 x (3x3 conv, {norm}ReLU), then max-pool", fontsize=8, color="C0",
            ha="left", va="top")
    ax.text(2 * depth + 1.5, -depth - 0.45, f"up: bilinear x2, concatenate skip, 2 x (3x3 conv, {norm}ReLU)",
            fontsize=8, color="C1", ha="right", va="top")
    ax.set_xlim(-1.6, 2 * depth + 1.6)
    ax.set_ylim(-depth - 0.85, 0.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def annotated_grid(ax: plt.Axes, array: np.ndarray, title: str = "", *, fmt: str = "{:.2f}",
                   cmap: str = "viridis", vmin: float = 0.0, vmax: float = 1.0) -> plt.Axes:
    """Show a small 2D array (e.g. 4 x 4) as coloured cells with each value written in its cell
    (row 0 at the top, as the array is printed)."""
    a = np.asarray(array, dtype=float)
    ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    for (r, c), v in np.ndenumerate(a):
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8,
                color="w" if (v - vmin) < 0.6 * (vmax - vmin) else "k")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def compare_slices(image: np.ndarray, label: np.ndarray, pred: np.ndarray, ks: Sequence[int],
                   titles: Sequence[str] | None = None, *, axis: int = 2, zoom: bool = True, margin: int = 20,
                   size: float = 2.9, spacing: Sequence[float] | None = None,
                   axcodes: Sequence[str] | None = MSD_HEART_AXCODES, dpi: int = FIG_DPI) -> plt.Figure:
    """Slices ``ks`` across array ``axis`` (default 2: the files' own slices) of an ``(x, y, z)``
    volume side by side, label outlined (orange) and prediction dashed (teal), orientation letters
    from ``axcodes`` on every panel. ``zoom`` crops every panel to the in-plane bounding box of
    label | prediction over the whole volume, plus ``margin`` voxels."""
    check_axis(axis)
    if zoom and (np.any(label) or np.any(pred)):
        box = list(bounding_box((np.asarray(label) != 0) | (np.asarray(pred) != 0), margin))
        box[axis] = slice(None)  # in-plane only: every slice keeps its index
        image, label, pred = image[tuple(box)], label[tuple(box)], pred[tuple(box)]
    fig, axes = plt.subplots(1, len(ks), figsize=(size * len(ks), size + 0.4), dpi=dpi, squeeze=False)
    aspect = slice_aspect(axis, spacing, axcodes)
    for n, (ax, k) in enumerate(zip(axes[0], ks)):
        img, letters = display_slice(image, k, axis, axcodes)
        overlay(ax, img, _shown(label, k, axis, axcodes) > 0, _shown(pred, k, axis, axcodes) > 0,
                title=titles[n] if titles else f"{'xyz'[axis]} = {k}", aspect=aspect, letters=letters)
    outline_legend(fig)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def score_bars(ax: plt.Axes, names: Sequence[str], values: Sequence[float], *, reference: float | None = None,
               label: str = "model vs label", reference_label: str = "label vs label (la_005 / la_026)",
               ylabel: str = "", fmt: str = "{:.3f}", ylim: tuple[float, float] | None = None,
               color: str = "C0") -> plt.Axes:
    """One bar per case with its value written on it, and an optional dashed ``reference`` line
    (e.g. the agreement of two human labels) with its value; a legend names both."""
    vals = np.asarray(values, dtype=float)
    bars = ax.bar(list(names), vals, color=color, label=label)
    for b, v in zip(bars, vals):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, v), textcoords="offset points", xytext=(0, 2),
                    ha="center", va="bottom", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="C3", ls="--", lw=1.2, label=f"{reference_label}: {fmt.format(reference)}")
    top = max(float(np.nanmax(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else 1.0,
              reference if reference is not None else 0.0)
    ax.set_ylim(*(ylim if ylim is not None else (0, top * 1.3)))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return ax


def slice_dice_curve(ax: plt.Axes, dices: np.ndarray, marks: dict[str, int] | None = None, *,
                     label: str | None = None, color: str = "C0", axis: int = 2,
                     axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> plt.Axes:
    """Per-slice Dice (from :func:`lasegtut.metrics.per_slice_dice` along array ``axis``) against
    the slice index (NaN slices, without atrium, are gaps); ``marks`` such as
    ``{"best": 52, "worst": 31}`` are drawn as small labelled triangles on the curve. Call it once
    per case (``label``, ``color``) to compare cases in one axes. The x label names the array axis
    and, from ``axcodes``, which way it runs in the patient."""
    ax.plot(np.arange(len(dices)), dices, marker=".", ms=3, lw=1, color=color, label=label)
    for name, k in (marks or {}).items():
        ax.plot([k], [dices[k]], marker="v" if name == "worst" else "^", color=color, ms=8, mec="k")
        ax.annotate(name, (k, dices[k]), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize=7, color=color)
    if label:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_ylim(-0.06, 1.1)
    where = "" if axcodes is None else f": {plane_name(axis, axcodes)} sections, {axis_direction(axis, axcodes)}"
    ax.set_xlabel(f"slice {'xyz'[check_axis(axis)]} across array axis {axis}{where}", fontsize=9)
    ax.set_ylabel("Dice of the slice")
    ax.grid(alpha=0.3)
    return ax


def sphere_slice(ax: plt.Axes, mask: np.ndarray, spacing: Sequence[float], radius_mm: float) -> plt.Axes:
    """The middle slice across array axis 2 of a voxelised ball (:func:`lasegtut.volume.sphere_mask`)
    in mm, with the true circle of ``radius_mm`` drawn over it: the staircase edge is the
    voxelisation."""
    k = mask.shape[2] // 2
    sx, sy = float(spacing[0]), float(spacing[1])
    nx, ny = mask.shape[:2]
    ax.imshow(mask[:, :, k].T, origin="lower", cmap="Blues", vmin=0, vmax=1.5, interpolation="nearest",
              extent=(-sx / 2, (nx - 0.5) * sx, -sy / 2, (ny - 0.5) * sy))
    theta = np.linspace(0, 2 * np.pi, 200)
    cx, cy = (nx - 1) * sx / 2, (ny - 1) * sy / 2
    ax.plot(cx + radius_mm * np.cos(theta), cy + radius_mm * np.sin(theta), color="C3", lw=1.2)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_title(f"middle slice, true circle r = {radius_mm:g} mm", fontsize=9)
    return ax


def volume_scatter(ax: plt.Axes, true_ml: Sequence[float], pred_ml: Sequence[float],
                   names: Sequence[str] | None = None) -> plt.Axes:
    """Predicted against true volume (mL) per case, with the line of perfect agreement."""
    t, p = np.asarray(true_ml, dtype=float), np.asarray(pred_ml, dtype=float)
    hi = max(float(t.max()), float(p.max())) * 1.15
    ax.plot([0, hi], [0, hi], color="0.6", ls="--", lw=1, label="prediction = truth")
    ax.scatter(t, p, color="C0", zorder=3)
    for n, name in enumerate(names or []):
        ax.annotate(name, (t[n], p[n]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("true LA volume (mL, label)")
    ax.set_ylabel("predicted LA volume (mL)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return ax


def bland_altman(ax: plt.Axes, a: Sequence[float], b: Sequence[float], names: Sequence[str] | None = None,
                 *, units: str = "mL") -> plt.Axes:
    """Bland-Altman plot of two methods: the difference ``a - b`` against the mean of each pair,
    with the mean difference (bias) and the 95 % limits of agreement (bias +/- 1.96 SD of the
    differences; see :func:`lasegtut.volume.bland_altman_stats`)."""
    s = bland_altman_stats(a, b)
    ax.scatter(s["means"], s["diffs"], color="C0", zorder=3)
    for n, name in enumerate(names or []):
        ax.annotate(name, (s["means"][n], s["diffs"][n]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axhline(s["bias"], color="C3", lw=1.2)
    ax.text(1.0, s["bias"], f" bias {s['bias']:+.1f}", color="C3", fontsize=8, va="center",
            transform=ax.get_yaxis_transform())
    if np.isfinite(s["sd"]):
        for key, name in (("loa_high", "+1.96 SD"), ("loa_low", "-1.96 SD")):
            ax.axhline(s[key], color="C3", ls="--", lw=1)
            ax.text(1.0, s[key], f" {name} {s[key]:+.1f}", color="C3", fontsize=8, va="center",
                    transform=ax.get_yaxis_transform())
        span = max(abs(s["loa_low"]), abs(s["loa_high"]), float(np.abs(s["diffs"]).max())) * 1.2 + 1e-9
        ax.set_ylim(-span, span)
    ax.set_xlabel(f"mean of the two ({units})")
    ax.set_ylabel(f"difference ({units})")
    ax.grid(alpha=0.3)
    return ax



def fold_diagram(ax: plt.Axes, folds: Sequence[Sequence[str]]) -> plt.Axes:
    """Grouped k-fold cross-validation as a grid: one row per run (fold ``k`` held out), one column
    per case (grouped by fold), each cell *held out* (dark) or *trained on* (light). Every case is
    held out exactly once: the out-of-fold predictions cover all cases."""
    cases = [c for f in folds for c in f]
    grid = np.array([[1.0 if c in set(f) else 0.25 for c in cases] for f in folds])
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=90, fontsize=7)
    ax.set_yticks(range(len(folds)))
    ax.set_yticklabels([f"run {k}: fold {k} held out" for k in range(len(folds))], fontsize=8)
    edges = np.cumsum([len(f) for f in folds])[:-1] - 0.5
    for x in edges:
        ax.axvline(x, color="white", lw=2)
    ax.set_title("dark: held out (scored), light: trained on", fontsize=9)
    return ax


# ============================================================ 3D surfaces
def camera_direction(elev: float, azim: float) -> np.ndarray:
    """Unit vector from the scene towards matplotlib's 3D camera at ``elev``, ``azim`` degrees."""
    e, a = np.radians(elev), np.radians(azim)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


#: Named viewpoints for RAS scenes: (elevation, azimuth) in degrees -> where the camera is.
STANDARD_VIEWS = {(0, -90): "from behind (posterior), the patient's right on the right",
                  (0, 90): "from the front (anterior), the patient's right on the left",
                  (0, 0): "from the patient's right", (0, 180): "from the patient's left",
                  (0, -180): "from the patient's left", (90, -90): "from above (superior)",
                  (-90, -90): "from below (inferior)"}


def screen_directions(elev: float, azim: float) -> tuple[str, str, str, str]:
    """The patient directions (top, bottom, left, right) at the edges of matplotlib's 3D view of a
    RAS scene from ``elev``, ``azim`` degrees: the RAS axis closest to the screen's up and right.
    From behind (0, -90): ``("S", "I", "L", "R")``; from the front (0, 90): ``("S", "I", "R", "L")``."""
    cam = camera_direction(elev, azim)
    a = np.radians(azim)
    right = np.array([-np.sin(a), np.cos(a), 0.0])
    up = np.cross(cam, right)

    def name(v: np.ndarray) -> str:
        i = int(np.argmax(np.abs(v)))
        return "RAS"[i] if v[i] > 0 else "LPI"[i]

    top, rgt = name(up), name(right)
    opposite = dict(zip("RLAPSI", "LRPAIS"))
    return top, opposite[top], opposite[rgt], rgt


def view_name(elev: float, azim: float) -> str:
    """Words for a camera position on a RAS scene (matplotlib's ``elev``, ``azim`` in degrees)."""
    key = (int(round(elev)), int(round(azim)))
    return STANDARD_VIEWS.get(key, f"elevation {elev:g} deg, azimuth {azim:g} deg")


def draw_surface(ax, vertices: np.ndarray, faces: np.ndarray, *, color: str | None = None,
                 values: np.ndarray | None = None, vlim: float = 5.0, cmap: str = "RdBu_r",
                 elev: float = 0.0, azim: float = -90.0):
    """Draw a triangle surface on a 3D axes with simple lighting from the camera.

    ``vertices`` ``(n, 3)`` in mm (already in the frame to show), ``faces`` ``(m, 3)`` outward.
    With ``values`` (one per vertex, e.g. a distance in mm) the faces are coloured by their mean
    value on ``cmap`` from ``-vlim`` to ``+vlim``; else in ``color``. Returns the collection.
    """
    from matplotlib.colors import Normalize, to_rgb
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    tri = np.asarray(vertices, dtype=float)[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    # a light a little above and to the left of the camera, so that curvature reads as shading
    cam = camera_direction(elev, azim)
    up = camera_direction(elev + 90.0, azim)
    light = cam + 0.6 * up + 0.4 * np.cross(cam, up)
    shade = 0.25 + 0.75 * np.clip(n @ (light / np.linalg.norm(light)), 0.0, 1.0)
    if values is None:
        rgb = np.tile(to_rgb(color or LA_COLOR), (len(faces), 1))
    else:
        rgb = plt.get_cmap(cmap)(Normalize(-vlim, vlim)(np.asarray(values)[faces].mean(axis=1)))[:, :3]
    coll = Poly3DCollection(tri, facecolors=np.clip(rgb * shade[:, None], 0, 1), linewidths=0, antialiased=False)
    ax.add_collection3d(coll)
    return coll


def surface_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray, str | np.ndarray | None]], *,
                   elev: float = 0.0, azim: float = -90.0, vlim: float = 5.0, size: float = 3.2,
                   dpi: int = FIG_DPI, view: str | None = None):
    """Surfaces side by side, same scale and viewpoint: one panel per ``(title, vertices, faces,
    colour)``, vertices in mm in RAS (see :func:`lasegtut.orientation.anatomical_vertices`). ``colour`` is a colour
    name (``None``: the label colour) or per-vertex signed distances in mm, drawn on a red-blue
    scale from ``-vlim`` to ``+vlim`` with a colour bar (red: outside the reference surface, blue:
    inside it). Default view: from behind (posterior), superior up, the patient's right on the
    right. ``view`` names the viewpoint in the caption (default: :func:`view_name`). Each panel
    carries the direction letters of the screen's edges for that viewpoint
    (:func:`screen_directions`). Returns a ``matplotlib.figure.Figure``."""
    from matplotlib.figure import Figure

    is_values = [p[3] is not None and not isinstance(p[3], str) for p in panels]
    fig = Figure(figsize=(size * len(panels) + (0.9 if any(is_values) else 0), size + 0.4), dpi=dpi)
    allv = np.concatenate([np.asarray(p[1]) for p in panels])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    mid, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.02
    mappable = None
    for i, (title, v, f, colour) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        values = colour if is_values[i] else None
        coll = draw_surface(ax, v, f, values=values, color=None if is_values[i] else colour, vlim=vlim,
                            elev=elev, azim=azim)
        if is_values[i]:
            mappable = coll
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[1] - half, mid[1] + half)
        ax.set_zlim(mid[2] - half, mid[2] + half)
        ax.set_box_aspect((1, 1, 1), zoom=1.35)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
        for (x, y), t in zip(((0.5, 0.97), (0.5, 0.03), (0.03, 0.5), (0.97, 0.5)), screen_directions(elev, azim)):
            ax.text2D(x, y, t, transform=ax.transAxes, ha="center", va="center", fontsize=9, weight="bold",
                      color="0.25")
    if mappable is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        sm = ScalarMappable(norm=Normalize(-vlim, vlim), cmap="RdBu_r")
        right = size * len(panels) / (size * len(panels) + 0.9)
        cax = fig.add_axes((right + 0.01, 0.2, 0.015, 0.6))
        cb = fig.colorbar(sm, cax=cax)
        cb.set_label("signed distance (mm)", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    fig.text(0.01, 0.01, f"view {view or view_name(elev, azim)}; one scale for all panels "
             f"(the box is {2 * half:.0f} mm wide)",
             fontsize=8.5, color="0.3")
    fig.subplots_adjust(left=0.0, right=right if mappable is not None else 1.0, bottom=0.05, top=0.9, wspace=0.0)
    return fig
