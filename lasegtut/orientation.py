"""Orientation in one room: how array axes, files and patients line up, and how slices are shown.

Three layers of "which way is up", each a pair of transforms or a table here:

1. **File <-> RAS.** Every scan is brought to RAS as its *header* states it (:func:`to_ras`,
   ``nibabel.as_closest_canonical``: flips and transposes only) so that arrays are ``(x, y, z)``
   for every scan; a mask predicted on that array goes back to the file's own grid with
   :func:`from_ras`.
2. **Array axes <-> anatomy.** The MSD Task02_Heart headers do not match the anatomy: its array
   axes point towards :data:`MSD_HEART_AXCODES` (``("A", "S", "R")``). :func:`to_anatomical`
   reorients such a volume to true RAS (:func:`anatomical_vertices`: a surface's vertices);
   :func:`plane_name`, :func:`axis_direction` and
   :func:`slice_letters` name what a slice across an array axis is in the patient.
3. **Array <-> screen: one display convention.** Every slice the course shows is laid out by
   :func:`display_layout` in the convention of :data:`DISPLAY_CONVENTION` (radiological: axial and
   coronal with the patient's right on the viewer's *left*; axial anterior up, coronal superior
   up; sagittal superior up with anterior on the viewer's *left*), and its direction letters are
   computed there from the array's axis codes. :func:`display_slice` cuts a volume,
   :func:`display_2d` lays out one slice of a stack of network input (:data:`SCREEN_AXES`, the
   layout of :func:`lasegtut.preprocess.reslice`): the library flips for display only, never the
   data. :func:`array_slice`, :func:`slice_letters` and :func:`slice_aspect` are its image,
   letters and pixel height / width in mm; :func:`plane_slice` and :func:`plane_aspect` the same
   for the true anatomical :data:`PLANES` of a true-RAS volume, with :data:`PLANE_LETTERS`.

The figure modules (:mod:`lasegtut.plots`, :mod:`lasegtut.anatomy`, :mod:`lasegtut.widgets`) draw
with these; nothing here draws. Spacing is in mm in ``(x, y, z)`` order.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import nibabel as nib
import numpy as np

from .errors import LasegError

#: True anatomical direction of array axes 0, 1, 2 of an MSD Task02_Heart volume as loaded by
#: :func:`lasegtut.data.load_case` (read from the anatomy: spine, aortic arch, descending aorta; the header
#: says RAS). Figures use it for their orientation letters (:func:`slice_letters`).
MSD_HEART_AXCODES = ("A", "S", "R")
#: Slices across each array axis, as shown on screen: (the array axis that runs left -> right,
#: the one that runs bottom -> top). The same layout as the slices of
#: :func:`lasegtut.preprocess.reslice` shown with :func:`lasegtut.plots.show_xy`, so a slice of a volume and the
#: network's input look alike.
SCREEN_AXES = {2: (0, 1), 0: (2, 1), 1: (2, 0)}
_OPPOSITE = dict(zip("RLAPSI", "LRPAIS"))
_SIDE = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
_PLANE = {"R": "sagittal", "L": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}
#: The three anatomical planes, and the RAS array axis each one holds fixed.
PLANES = ("axial", "coronal", "sagittal")
_FIXED_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: The course's one display convention: for each plane, (the direction at the top of the screen,
#: the direction on the viewer's left). Radiological for axial and coronal views (the patient's
#: right on the viewer's left, as if facing the patient; axial seen from the feet, anterior up;
#: coronal superior up); sagittal views superior up with anterior on the viewer's left, as most
#: radiology viewers show them. Every slice figure, animation frame and widget goes through
#: :func:`display_layout`, which applies it.
DISPLAY_CONVENTION = {"axial": ("A", "R"), "coronal": ("S", "R"), "sagittal": ("S", "A")}
#: Directions at the (top, bottom, left, right) edges of each plane in :data:`DISPLAY_CONVENTION`.
PLANE_LETTERS = {plane: (up, _OPPOSITE[up], left, _OPPOSITE[left]) for plane, (up, left) in DISPLAY_CONVENTION.items()}

#: The viewer's choices on stored ``(x, y, z)`` arrays: the array axis each one cuts across
#: (``"z"``: the files' own slices), shown with :func:`array_slice`.
SLICE_AXES = {"z": 2, "y": 1, "x": 0}


# ----------------------------------------------------------------------------- file <-> RAS
def to_ras(img: nib.Nifti1Image, path: str | os.PathLike = "") -> nib.Nifti1Image:
    """Reorient to the closest RAS orientation (no resampling, only flips and transposes).

    An image that is not RAS already has its voxels read here, so a truncated or corrupt file,
    or one too large for memory, raises the same one-line LasegError as :func:`lasegtut.data.read_array`.
    """
    try:
        return nib.as_closest_canonical(img)
    except MemoryError:
        raise LasegError(f"{path or 'image'} {tuple(img.shape)} is too large for this machine's memory") from None
    except nib.orientations.OrientationError as e:
        raise LasegError(f"{path or 'image'}: its affine gives no orientation ({e})") from None
    except Exception as e:  # EOFError, zlib.error, OSError, ValueError ... while reading the voxels
        raise LasegError(f"{path or 'image'} could not be read: truncated or corrupt "
                         f"({type(e).__name__})") from None


def from_ras(mask_ras: np.ndarray, original: nib.Nifti1Image) -> np.ndarray:
    """The inverse of :func:`to_ras` for an array: an ``(x, y, z)`` RAS array (e.g. a predicted mask)
    -> the same voxels on the original file's own grid and axis order (only flips and transposes)."""
    orig_ornt = nib.orientations.io_orientation(original.affine)
    ras_ornt = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(ras_ornt, orig_ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(mask_ras, transform))


# ----------------------------------------------------------------------------- array axes <-> anatomy
def _to_ras_transform(axcodes: Sequence[str]) -> np.ndarray:
    """nibabel's orientation transform from axes pointing along ``axcodes`` to true RAS."""
    return nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(tuple(axcodes)),
                                           nib.orientations.axcodes2ornt(("R", "A", "S")))


def to_anatomical(volume: np.ndarray, spacing: Sequence[float] | None = None,
                  axcodes: Sequence[str] = MSD_HEART_AXCODES) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorient a volume whose array axes point along ``axcodes`` (default: the MSD heart layout)
    to true RAS ``(right, anterior, superior)``; returns ``(array view, spacing in mm)``.

    Only transposes and flips, no resampling: every voxel keeps its value and size.
    """
    transform = _to_ras_transform(axcodes)
    sp = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
    new_sp = [0.0, 0.0, 0.0]
    for old_axis, (new_axis, _flip) in enumerate(transform):
        new_sp[int(new_axis)] = float(sp[old_axis])
    return nib.orientations.apply_orientation(volume, transform), (new_sp[0], new_sp[1], new_sp[2])


def anatomical_vertices(vertices: np.ndarray, axcodes: Sequence[str] | None = None) -> np.ndarray:
    """Vertices (mm, ``(n, 3)``) whose axes point along ``axcodes`` (e.g.
    :data:`MSD_HEART_AXCODES`), permuted and flipped to true RAS (right, anterior,
    superior). ``None``: already RAS (the array frame as the header states it); returned as is."""
    if axcodes is None:
        return np.asarray(vertices, dtype=float)
    out = np.empty_like(np.asarray(vertices, dtype=float))
    transform = _to_ras_transform(axcodes)
    for old_axis, (new_axis, flip) in enumerate(transform):
        out[:, int(new_axis)] = vertices[:, old_axis] * flip
    return out


# ----------------------------------------------------------------------------- array <-> screen
def check_axis(axis: int) -> int:
    """``axis`` as an int, checked to be an array axis of an ``(x, y, z)`` volume (0, 1 or 2)."""
    if axis not in SCREEN_AXES:
        raise ValueError(f"axis must be 0, 1 or 2, not {axis!r}")
    return int(axis)


class Layout(NamedTuple):
    """How a slice across one array axis is put on screen (see :func:`display_layout`).

    ``rows``/``cols``: the array axes (of the ``(x, y, z)`` volume) that run down the screen's rows
    and along its columns; ``flip_rows``/``flip_cols``: whether that axis runs bottom -> top
    (right -> left) on screen; ``letters``: the patient directions at the (top, bottom, left,
    right) edges, None when the axis codes are unknown. The image is meant for ``imshow`` with its
    default ``origin="upper"`` (row 0 at the top) and no ``extent``."""

    rows: int
    cols: int
    flip_rows: bool
    flip_cols: bool
    letters: tuple[str, str, str, str] | None


def _check_axcodes(axcodes: Sequence[str]) -> tuple[str, str, str]:
    codes = tuple(str(c).upper() for c in axcodes)
    if len(codes) != 3 or any(c not in _OPPOSITE for c in codes) or len({_PLANE[c] for c in codes}) != 3:
        raise ValueError(f"axcodes must name one of R/L, A/P and S/I per axis, not {tuple(axcodes)!r}")
    return codes  # type: ignore[return-value]


def display_layout(axis: int, axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> Layout:
    """The one place that decides how the slice across array ``axis`` of an ``(x, y, z)`` volume
    whose axes point towards ``axcodes`` (one of R/L, A/P, S/I each) is shown: rows, columns,
    flips and the direction letters, in :data:`DISPLAY_CONVENTION`.

    ``axcodes=None`` (directions unknown): the plain :data:`SCREEN_AXES` layout (the slice's
    first in-plane axis to the right, the second up), no letters.
    """
    a, b = SCREEN_AXES[check_axis(axis)]
    if axcodes is None:
        return Layout(rows=b, cols=a, flip_rows=True, flip_cols=False, letters=None)
    codes = _check_axcodes(axcodes)
    up, left = DISPLAY_CONVENTION[_PLANE[codes[axis]]]
    rows = a if _PLANE[codes[a]] == _PLANE[up] else b
    cols = b if rows == a else a
    # imshow puts row 0 at the top and column 0 on the left: flip an axis that runs towards the
    # direction wanted at the top (on the left), so that its high end comes first
    return Layout(rows=rows, cols=cols, flip_rows=codes[rows] == up, flip_cols=codes[cols] == left,
                  letters=(up, _OPPOSITE[up], left, _OPPOSITE[left]))


def _lay_out(plane2d: np.ndarray, layout: Layout, transpose: bool) -> np.ndarray:
    img = plane2d.T if transpose else plane2d
    if layout.flip_rows:
        img = np.flipud(img)
    if layout.flip_cols:
        img = np.fliplr(img)
    return img


def display_slice(volume: np.ndarray, index: int, axis: int = 2,
                  axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> tuple[np.ndarray, tuple[str, str, str, str] | None]:
    """The slice ``index`` across array ``axis`` of an ``(x, y, z)`` volume, ready for ``imshow``
    (``origin="upper"``, no extent) in :data:`DISPLAY_CONVENTION`, and its direction letters
    (top, bottom, left, right; None for ``axcodes=None``). A view: the data are not changed."""
    layout = display_layout(axis, axcodes)
    plane2d = np.take(volume, int(index), axis=axis)   # its axes: the other two, in order
    first = min(layout.rows, layout.cols)
    return _lay_out(plane2d, layout, transpose=layout.rows != first), layout.letters


def display_2d(slice2d: np.ndarray, axis: int = 2,
               axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> tuple[np.ndarray, tuple[str, str, str, str] | None]:
    """One 2D slice of a stack of network input across array ``axis`` (``stack[k]`` of
    :func:`lasegtut.preprocess.file_slices` for axis 2 or :func:`lasegtut.preprocess.reslice`; its
    two axes are :data:`SCREEN_AXES` ``[axis]``, cropped or not), laid out like
    :func:`display_slice`, with its letters. Also right for any array of that layout (a mask, a
    difference map, an augmented copy)."""
    layout = display_layout(axis, axcodes)
    a, _b = SCREEN_AXES[check_axis(axis)]
    return _lay_out(np.asarray(slice2d), layout, transpose=layout.rows != a), layout.letters


def array_slice(volume: np.ndarray, index: int, axis: int = 2,
                axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> np.ndarray:
    """The image of :func:`display_slice`: slice ``index`` across array ``axis`` of an
    ``(x, y, z)`` volume laid out for ``imshow`` in :data:`DISPLAY_CONVENTION` (for the MSD heart
    scans the files' own slices, ``axis=2``, are sagittal: superior up, anterior on the left)."""
    return display_slice(volume, index, axis, axcodes)[0]


def slice_aspect(axis: int, spacing: Sequence[float] | None,
                 axcodes: Sequence[str] | None = MSD_HEART_AXCODES) -> float:
    """Height / width of one displayed pixel of :func:`array_slice` (``axis``) in mm."""
    if spacing is None:
        return 1.0
    layout = display_layout(axis, axcodes)
    return float(spacing[layout.rows]) / float(spacing[layout.cols])


def slice_letters(axis: int = 2, axcodes: Sequence[str] = MSD_HEART_AXCODES) -> tuple[str, str, str, str]:
    """The patient directions (top, bottom, left, right) at the edges of a slice across array
    ``axis`` shown with :func:`display_slice` (or :func:`array_slice`, :func:`lasegtut.plots.show_xy`),
    for a scan whose array axes point towards ``axcodes``. For the MSD heart scans: the files'
    slices (axis 2, sagittal) ``("S", "I", "A", "P")``, the shipped model's (axis 0, coronal)
    ``("S", "I", "R", "L")``, axis 1 (axial) ``("A", "P", "R", "L")``."""
    letters = display_layout(axis, axcodes).letters
    assert letters is not None
    return letters


def plane_name(axis: int, axcodes: Sequence[str] = MSD_HEART_AXCODES) -> str:
    """The anatomical plane (``"sagittal"``, ``"coronal"`` or ``"axial"``) of the slices across
    array ``axis`` of a scan whose axes point towards ``axcodes``: in the MSD heart scans axis 2
    (the files' slices) is sagittal, axis 0 coronal and axis 1 axial."""
    return _PLANE[str(axcodes[check_axis(axis)]).upper()]


def axis_direction(axis: int, axcodes: Sequence[str] = MSD_HEART_AXCODES) -> str:
    """Which way array ``axis`` runs in the patient, e.g. ``"patient's left -> right"`` for axis 2
    of the MSD heart scans."""
    to = str(axcodes[check_axis(axis)]).upper()
    a, b = _SIDE[_OPPOSITE[to]], _SIDE[to]
    return f"patient's {a} -> {b}" if to in "RL" else f"{a} -> {b}"


def fixed_axis(plane: str) -> int:
    """The RAS array axis (0 = x, 1 = y, 2 = z) a plane holds fixed: sagittal 0, coronal 1, axial 2."""
    return _FIXED_AXIS[plane]


def plane_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A true-RAS ``(x, y, z)`` volume's ``plane`` at voxel ``index``, laid out by
    :func:`display_slice` in :data:`DISPLAY_CONVENTION`: axial anterior up and coronal superior up,
    both with the patient's right on the viewer's left; sagittal superior up with anterior on the
    left."""
    if plane not in _FIXED_AXIS:
        raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")
    return display_slice(volume, index, _FIXED_AXIS[plane], ("R", "A", "S"))[0]


def plane_aspect(plane: str, spacing: Sequence[float] | None) -> float:
    """Height / width of a display pixel of ``plane`` in mm, for RAS voxel ``spacing`` (sx, sy, sz)."""
    sx, sy, sz = spacing if spacing is not None else (1.0, 1.0, 1.0)
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[plane]
