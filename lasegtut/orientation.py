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
3. **Array <-> screen.** :func:`array_slice` lays out the slice across an array axis for
   ``imshow`` (:data:`SCREEN_AXES`, the layout of :func:`lasegtut.preprocess.reslice`) and
   :func:`slice_aspect` gives its pixel's height / width in mm; :func:`plane_slice` and
   :func:`plane_aspect` do the same for the true anatomical :data:`PLANES` of a true-RAS volume
   (radiological convention), with :data:`PLANE_LETTERS` at their edges.

The figure modules (:mod:`lasegtut.plots`, :mod:`lasegtut.anatomy`, :mod:`lasegtut.widgets`) draw
with these; nothing here draws. Spacing is in mm in ``(x, y, z)`` order.
"""
from __future__ import annotations

import os
from typing import Sequence

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
#: Directions at the (top, bottom, left, right) edges of each plane in the radiological convention.
PLANE_LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}

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


def array_slice(volume: np.ndarray, index: int, axis: int = 2) -> np.ndarray:
    """The 2D slice ``index`` across array ``axis`` of an ``(x, y, z)`` volume, laid out for
    ``imshow``: the first axis of :data:`SCREEN_AXES` ``[axis]`` runs left to right, the second
    bottom to top. ``axis=2`` gives the files' own slices (``volume[:, :, index]``, x to the right,
    y up)."""
    cols, rows = SCREEN_AXES[check_axis(axis)]
    return np.flipud(np.transpose(volume, (rows, cols, axis))[:, :, int(index)])


def slice_aspect(axis: int, spacing: Sequence[float] | None) -> float:
    """Height / width of one displayed pixel of :func:`array_slice` (``axis``) in mm."""
    if spacing is None:
        return 1.0
    cols, rows = SCREEN_AXES[check_axis(axis)]
    return float(spacing[rows]) / float(spacing[cols])


def slice_letters(axis: int = 2, axcodes: Sequence[str] = MSD_HEART_AXCODES) -> tuple[str, str, str, str]:
    """The patient directions (top, bottom, left, right) at the edges of a slice across array
    ``axis`` shown like :func:`array_slice` or :func:`lasegtut.plots.show_xy`, for a scan whose array axes point
    towards ``axcodes`` (one of R/L, A/P, S/I per axis). For the MSD heart scans the files' slices
    (axis 2) give ``("S", "I", "P", "A")``: head up, the back on the left."""
    cols, rows = SCREEN_AXES[check_axis(axis)]
    right, up = str(axcodes[cols]).upper(), str(axcodes[rows]).upper()
    return up, _OPPOSITE[up], _OPPOSITE[right], right


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
    """A true-RAS ``(x, y, z)`` volume's ``plane`` at voxel ``index``, oriented for display in the
    radiological convention: axial anterior up and coronal superior up, both with the patient's
    right on the viewer's left; sagittal superior up with anterior on the left."""
    index = int(index)
    if plane == "axial":
        img = volume[:, :, index].T          # rows y (P -> A), columns x (L -> R)
    elif plane == "coronal":
        img = volume[:, index, :].T          # rows z (I -> S), columns x
    elif plane == "sagittal":
        img = volume[index, :, :].T          # rows z, columns y (P -> A)
    else:
        raise ValueError(f"plane must be one of {PLANES}, not {plane!r}")
    return np.fliplr(np.flipud(img))


def plane_aspect(plane: str, spacing: Sequence[float] | None) -> float:
    """Height / width of a display pixel of ``plane`` in mm, for RAS voxel ``spacing`` (sx, sy, sz)."""
    sx, sy, sz = spacing if spacing is not None else (1.0, 1.0, 1.0)
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[plane]
