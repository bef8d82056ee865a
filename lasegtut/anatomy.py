"""A labelled schematic of the heart, drawn with matplotlib (no copyrighted pictures).

:func:`draw_heart` sketches the four chambers seen from the front, cut open like a textbook
"four-chamber" drawing: the patient's right is on the viewer's *left* (the radiological
convention, as on every scan in this course). Blue marks deoxygenated blood, red oxygenated
blood; the left atrium is outlined in the course's label colour. :func:`draw_circulation`
draws the same blood path as a loop: body -> right atrium -> right ventricle -> lungs -> left
atrium -> left ventricle -> body. :func:`heart_schematic` puts both side by side.

The shapes are deliberately simple (ellipses, tubes and arrows): a map, not an atlas.

**Where the scan's axes really point.** The MSD Task02_Heart files carry a plain diagonal affine,
so nibabel reports them as RAS, as if array axis 2 ran from the feet to the head. The anatomy
in the voxels says otherwise: the spine lies at low x and the aortic arch at high y, and the
descending aorta (which runs on the patient's left of the spine) lies at low z. So array axis 0
runs posterior -> anterior, axis 1 inferior -> superior and axis 2 from the patient's left to
right: :data:`MSD_HEART_AXCODES` = ``("A", "S", "R")``, so the files' own slices (across axis 2)
are *sagittal* sections and the shipped model's slices (across axis 0) are *coronal* sections.
This changes nothing for training or for volumes (the spacing per axis is right), but a picture
for anatomy should be reoriented first: :func:`to_anatomical` does it (a pure transpose), and
:func:`three_planes` / :func:`draw_plane` show true axial, coronal and sagittal planes in the
radiological convention (axial and coronal: patient's right on the viewer's left; sagittal:
anterior on the left), with the directions written on the image.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch

from .metrics import bounding_box
from .orientation import (MSD_HEART_AXCODES, PLANE_LETTERS, display_slice, plane_aspect, plane_slice, slice_aspect,
                          slice_letters, to_anatomical)
from .plots import FIG_DPI, LA_COLOR, display_range, draw_letters, la_center, overlay

# MSD_HEART_AXCODES and to_anatomical (from lasegtut.orientation, where the planes and every other
# orientation helper live): the true direction of the array axes of an MSD Task02_Heart volume.
#: Directions at the (top, bottom, left, right) edges of one of the files' own slices (across array
#: axis 2) of an MSD heart scan shown with :func:`lasegtut.orientation.display_slice`: a sagittal section,
#: ``("S", "I", "A", "P")`` (anterior on the viewer's left, as on every sagittal view of the course).
STORED_SLICE_LETTERS = slice_letters(2, MSD_HEART_AXCODES)

BLUE = "#4a7fc1"       # deoxygenated blood
BLUE_FILL = "#c9dcf2"
RED = "#c0392b"        # oxygenated blood
RED_FILL = "#f4c7c0"
WALL = "#7a4b3a"       # myocardium outline


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], color: str,
           rad: float = 0.0, lw: float = 2.2) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=color, lw=lw,
                                 connectionstyle=f"arc3,rad={rad}", zorder=6))


def _label(ax: plt.Axes, xy: tuple[float, float], text: str, color: str = "black", size: float = 8.5,
           weight: str = "normal", ha: str = "center", boxed: bool = False) -> None:
    """A label; ``boxed``: on a white patch, clear of the lines it sits near."""
    bbox = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9) if boxed else None
    ax.text(*xy, text, ha=ha, va="center", fontsize=size, color=color, weight=weight, zorder=8, bbox=bbox)


def _tube(ax: plt.Axes, points: list[tuple[float, float]], edge: str, fill: str, width: float = 16,
          zorder: int = 1) -> None:
    """A vessel: a thick polyline with an outline."""
    xs, ys = zip(*points)
    ax.plot(xs, ys, color=edge, lw=width + 3, solid_capstyle="butt", solid_joinstyle="round", zorder=zorder)
    ax.plot(xs, ys, color=fill, lw=width, solid_capstyle="butt", solid_joinstyle="round", zorder=zorder)


def draw_heart(ax: plt.Axes | None = None) -> plt.Axes:
    """Draw the four chambers, valves, great vessels and blood path on ``ax`` (frontal view,
    patient's right on the viewer's left). Coordinates are arbitrary drawing units."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5), dpi=FIG_DPI)
    # great vessels (behind the chambers)
    _tube(ax, [(-2.0, 3.5), (-2.0, 1.3)], BLUE, BLUE_FILL)                              # superior vena cava
    _tube(ax, [(-3.1, -2.9), (-3.1, -0.9), (-2.45, 0.45)], BLUE, BLUE_FILL)             # inferior vena cava
    _tube(ax, [(-0.35, -0.6), (-0.35, 3.5)], BLUE, BLUE_FILL, zorder=3)                 # pulmonary artery
    _tube(ax, [(0.55, -0.4), (0.55, 2.7), (0.8, 3.25), (1.35, 3.45), (1.9, 3.2), (2.1, 2.5)],
          RED, RED_FILL)                                                                # aorta
    for y0, y1 in ((1.55, 1.4), (0.75, 0.95)):                                          # pulmonary veins
        _tube(ax, [(3.9, y0), (2.6, y1)], RED, RED_FILL, width=11)
    # chambers
    ax.add_patch(Ellipse((-1.95, 0.85), 2.0, 1.6, fc=BLUE_FILL, ec=WALL, lw=2, zorder=2))            # RA
    ax.add_patch(Ellipse((-0.9, -1.3), 2.5, 2.7, angle=-25, fc=BLUE_FILL, ec=WALL, lw=3, zorder=2))   # RV
    ax.add_patch(Ellipse((1.95, 1.1), 1.9, 1.45, fc=RED_FILL, ec=LA_COLOR, lw=3.5, zorder=4))        # LA
    ax.add_patch(Ellipse((1.55, -1.1), 2.3, 2.9, angle=22, fc=RED_FILL, ec=WALL, lw=5, zorder=2))    # LV
    # valves: two leaflets where blood passes from an atrium into its ventricle (open, pointing down)
    for x, y in ((-1.95, 0.1), (1.95, 0.42)):
        ax.plot([x - 0.38, x - 0.14], [y, y - 0.38], color="dimgray", lw=2.5, zorder=5)
        ax.plot([x + 0.38, x + 0.14], [y, y - 0.38], color="dimgray", lw=2.5, zorder=5)
    # labels
    _label(ax, (-1.95, 1.05), "right\natrium", BLUE, 9, "bold")
    _label(ax, (-0.85, -1.6), "right\nventricle", BLUE, 9, "bold")
    _label(ax, (2.0, 1.25), "LEFT\nATRIUM", LA_COLOR, 9, "bold")
    _label(ax, (1.65, -1.4), "left\nventricle", RED, 9, "bold")
    # valve names beside their leaflets, not across them (the leaflets end 0.38 below the valve)
    _label(ax, (-2.0, -0.68), "tricuspid valve", "dimgray", 7, boxed=True)
    _label(ax, (2.42, 0.12), "mitral valve", "dimgray", 7, ha="left", boxed=True)
    _label(ax, (-2.0, 3.85), "superior\nvena cava", BLUE, 7.5)
    _label(ax, (-3.1, -3.2), "inferior\nvena cava", BLUE, 7.5)
    _label(ax, (-0.35, 3.85), "pulmonary artery\n(to the lungs)", BLUE, 7.5)
    _label(ax, (1.35, 3.85), "aorta (to the body)", RED, 7.5)
    _label(ax, (3.35, 2.1), "pulmonary veins\n(from the lungs)", RED, 7.5)
    # blood path
    _arrow(ax, (-2.0, 3.3), (-2.0, 1.75), BLUE)
    _arrow(ax, (-3.1, -2.6), (-3.1, -1.2), BLUE)
    _arrow(ax, (-2.35, 0.75), (-2.1, -0.45), BLUE)
    _arrow(ax, (-0.35, 0.1), (-0.35, 3.2), BLUE)
    _arrow(ax, (3.75, 1.15), (2.95, 1.15), RED)
    _arrow(ax, (1.6, 0.95), (1.5, -0.55), RED)
    _arrow(ax, (0.55, -0.1), (0.55, 2.5), RED)
    ax.set_xlim(-3.9, 4.0)
    ax.set_ylim(-3.5, 4.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.text(-3.85, 4.15, "patient's right", fontsize=7, color="gray", va="top")
    ax.text(3.95, 4.15, "patient's left", fontsize=7, color="gray", va="top", ha="right")
    return ax


def draw_circulation(ax: plt.Axes | None = None) -> plt.Axes:
    """Draw the double circulation as a loop of boxes and arrows, with the left atrium marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 5), dpi=FIG_DPI)
    boxes = {  # name: (x, y, text, edge colour, fill)
        "lungs": (0.0, 3.0, "lungs\n(pick up O$_2$)", "dimgray", "#eeeeee"),
        "RV": (-1.4, 1.2, "right\nventricle", BLUE, BLUE_FILL),
        "RA": (-1.4, -0.8, "right\natrium", BLUE, BLUE_FILL),
        "LA": (1.4, 1.2, "LEFT\nATRIUM", LA_COLOR, RED_FILL),
        "LV": (1.4, -0.8, "left\nventricle", RED, RED_FILL),
        "body": (0.0, -2.6, "body\n(deliver O$_2$)", "dimgray", "#eeeeee"),
    }
    for name, (x, y, text, ec, fc) in boxes.items():
        lw = 3.0 if name == "LA" else 1.5
        ax.add_patch(FancyBboxPatch((x - 0.75, y - 0.45), 1.5, 0.9, boxstyle="round,pad=0.05",
                                    fc=fc, ec=ec, lw=lw, zorder=2))
        _label(ax, (x, y), text, ec if name in ("LA",) else "black", 8.5, "bold" if name == "LA" else "normal")
    _arrow(ax, (-0.8, -2.6), (-1.4, -1.3), BLUE, rad=-0.3)       # body -> RA (venae cavae)
    _arrow(ax, (-1.4, -0.3), (-1.4, 0.7), BLUE)                  # RA -> RV (tricuspid)
    _arrow(ax, (-1.4, 1.7), (-0.8, 3.0), BLUE, rad=-0.3)         # RV -> lungs (pulmonary artery)
    _arrow(ax, (0.8, 3.0), (1.4, 1.7), RED, rad=-0.3)            # lungs -> LA (pulmonary veins)
    _arrow(ax, (1.4, 0.7), (1.4, -0.3), RED)                     # LA -> LV (mitral)
    _arrow(ax, (1.4, -1.3), (0.8, -2.6), RED, rad=-0.3)          # LV -> body (aorta)
    for xy, text, ha in (((-2.35, 2.4), "pulmonary\nartery", "center"), ((2.35, 2.4), "pulmonary\nveins", "center"),
                         ((-0.5, 0.2), "tricuspid", "right"), ((0.5, 0.2), "mitral", "left"),
                         ((-2.35, -2.0), "venae\ncavae", "center"), ((2.35, -2.0), "aorta", "center")):
        _label(ax, xy, text, "dimgray", 7.5, ha=ha)
    ax.set_xlim(-3.0, 3.0)
    ax.set_ylim(-3.4, 3.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return ax


def heart_schematic(dpi: int = FIG_DPI) -> Figure:
    """Both drawings side by side: the chambers (left) and the blood path as a loop (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.8), dpi=dpi, gridspec_kw={"width_ratios": [1.1, 0.9]})
    draw_heart(axes[0])
    draw_circulation(axes[1])
    axes[0].set_title("The four chambers (front view)", fontsize=10)
    axes[1].set_title("The blood path", fontsize=10)
    fig.text(0.5, 0.01, "blue: oxygen-poor blood   red: oxygen-rich blood", ha="center", fontsize=8, color="gray")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- real scans
def trim_box(image: np.ndarray) -> tuple[slice, slice, slice]:
    """Index box of the non-zero voxels of a volume (to leave out a blank border when showing it;
    :func:`lasegtut.metrics.bounding_box`), the whole volume if it is all zero."""
    box = bounding_box(image)
    return tuple(slice(0, n) for n in image.shape) if box is None else box  # type: ignore[return-value]


def orientation_letters(ax: plt.Axes, plane: str | Sequence[str], color: str = "yellow", size: float = 9) -> None:
    """Write the anatomical directions (A/P, R/L, S/I) at the edges of a :func:`plane_slice` image;
    ``plane`` may also be the four letters (top, bottom, left, right), e.g. :data:`STORED_SLICE_LETTERS`."""
    draw_letters(ax, PLANE_LETTERS[plane] if isinstance(plane, str) else plane, color=color, size=size)


def draw_plane(ax: plt.Axes, volume: np.ndarray, plane: str, index: int, label: np.ndarray | None = None,
               pred: np.ndarray | None = None, spacing: Sequence[float] | None = None,
               window: tuple[float, float] | None = None, title: str | None = None, letters: bool = True) -> None:
    """Draw one anatomical plane of a true-RAS volume with the label (orange) and prediction (teal,
    dashed) outlined, in mm proportions (``spacing``), with direction letters."""
    lo, hi = window or display_range(volume)
    overlay(ax, np.clip(plane_slice(volume, plane, index), lo, hi),
            None if label is None else plane_slice(label, plane, index),
            None if pred is None else plane_slice(pred, plane, index), title=title,
            aspect=plane_aspect(plane, spacing), letters=PLANE_LETTERS[plane] if letters else None)


def three_planes(image: np.ndarray, label: np.ndarray | None = None, spacing: Sequence[float] | None = None,
                 center: Sequence[int] | None = None, *, title: str = "", size: float = 3.2,
                 trim: bool = True, dpi: int = FIG_DPI) -> Figure:
    """True axial, coronal and sagittal planes through ``center`` (RAS voxel indices; default the
    label's centre of mass) of a true-RAS volume (see :func:`to_anatomical`), label outlined,
    dotted lines where the other two planes cut, in mm proportions. ``trim`` leaves out the
    blank (all-zero) border."""
    if center is None:
        center = la_center(label, image.shape)
    if trim:
        box = trim_box(image)
        image = image[box]
        label = None if label is None else label[box]
        center = [c - b.start for c, b in zip(center, box)]
    i, j, k = center
    nx, ny, nz = image.shape
    window = display_range(image)
    sx, sy, sz = spacing if spacing is not None else (1.0, 1.0, 1.0)
    widths = [nx * sx, nx * sx, ny * sy]
    height = max(ny * sy, nz * sz)
    fig, axes = plt.subplots(1, 3, figsize=(size * sum(widths) / height * 1.2 + 0.3, size + 0.4), dpi=dpi,
                             gridspec_kw={"width_ratios": widths})
    # (fixed index, [(display row of a cut, or None), (display column of a cut, or None)])
    cuts = {"axial": (k, ny - 1 - j, nx - 1 - i), "coronal": (j, nz - 1 - k, nx - 1 - i),
            "sagittal": (i, nz - 1 - k, ny - 1 - j)}
    for ax, (plane, (idx, row, col)) in zip(axes, cuts.items()):
        draw_plane(ax, image, plane, idx, label, None, spacing, window, title=plane)
        ax.axhline(row, color="yellow", lw=0.6, ls=":", alpha=0.7)
        ax.axvline(col, color="yellow", lw=0.6, ls=":", alpha=0.7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


#: The array axes of the three panels A, B, C of :func:`plane_quiz` (notebook 01, exercise 2):
#: kept here, out of the student's sight, so that the plane of each panel is theirs to find.
_QUIZ_AXES = (1, 2, 0)


def plane_quiz(image: np.ndarray, spacing: Sequence[float] | None = None, centre: Sequence[int] | None = None, *,
               axcodes: Sequence[str] = MSD_HEART_AXCODES, size: float = 3.2, dpi: int = FIG_DPI) -> Figure:
    """Three panels "A", "B", "C": slices of an ``(x, y, z)`` MSD heart volume through ``centre``
    (voxels; default its middle) across its three array axes in an order this function keeps to
    itself, laid out in the course's display convention
    (:data:`lasegtut.orientation.DISPLAY_CONVENTION`: head or front up) in mm proportions
    (``spacing``), **without** direction letters: notebook 01's exercise asks the student which
    panel is axial, coronal and sagittal."""
    centre = [int(n) // 2 for n in image.shape] if centre is None else [int(c) for c in centre]
    window = display_range(image)
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size + 0.4), dpi=dpi)
    for ax, panel, axis in zip(axes, "ABC", _QUIZ_AXES):
        img, _letters = display_slice(image, centre[axis], axis, axcodes)
        overlay(ax, np.clip(img, *window), aspect=slice_aspect(axis, spacing, axcodes), title=f"panel {panel}")
    fig.tight_layout()
    return fig
