"""Orientation in one room (lasegtut.orientation): file <-> RAS, array axes <-> anatomy, array <-> screen.

The MSD heart files say RAS in their headers, but their array axes really point (A, S, R): the
files' own slices (across axis 2) are sagittal sections and the shipped model's slices (across
axis 0) coronal ones. These tests pin that down with known voxels.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from lasegtut import anatomy, orientation
from lasegtut.orientation import MSD_HEART_AXCODES


# ----------------------------------------------------------------------------- known voxels
def test_reorientation_moves_a_known_voxel_to_its_anatomical_place():
    """In the MSD layout, array axis 0 runs posterior -> anterior, 1 inferior -> superior and 2
    left -> right. A voxel at (x, y, z) = (1, 2, 3) must land at (R, A, S) = (3, 1, 2)."""
    vol = np.zeros((5, 6, 7), np.uint8)
    vol[1, 2, 3] = 1
    out, spacing = orientation.to_anatomical(vol, (1.0, 2.0, 3.0))
    assert out.shape == (7, 5, 6)
    assert tuple(int(i) for i in np.argwhere(out)[0]) == (3, 1, 2)
    assert spacing == (3.0, 1.0, 2.0)


def test_msd_axis_directions_and_letters():
    assert MSD_HEART_AXCODES == ("A", "S", "R")
    # the files' slices (sagittal): head up, front on the left, back on the right
    assert orientation.slice_letters(2) == ("S", "I", "A", "P") == anatomy.STORED_SLICE_LETTERS
    # the shipped model's slices (across axis 0, coronal): head up, patient's right on the left
    assert orientation.slice_letters(0) == ("S", "I", "R", "L")
    assert orientation.slice_letters(1) == ("A", "P", "R", "L")
    assert [orientation.plane_name(a) for a in (0, 1, 2)] == ["coronal", "axial", "sagittal"]
    assert orientation.axis_direction(2) == "patient's left -> right"
    assert orientation.axis_direction(0) == "posterior -> anterior"
    # a scan that truly is RAS gets the textbook names
    assert orientation.plane_name(2, ("R", "A", "S")) == "axial"
    with pytest.raises(ValueError):
        orientation.array_slice(np.zeros((3, 3, 3)), 0, axis=3)


def test_array_slice_puts_a_known_voxel_where_the_letters_say():
    """A voxel one step towards the head (higher y) shows higher up; one step anterior (higher x)
    shows further left, as the letters ("S", "I", "A", "P") say."""
    vol = np.zeros((5, 6, 7), np.uint8)
    vol[1, 2, 3] = 1
    img = orientation.array_slice(vol, 3, axis=2)
    assert img.shape == (6, 5)                       # rows y, columns x
    r, c = np.argwhere(img)[0]
    assert (r, c) == (6 - 1 - 2, 5 - 1 - 1)
    vol[2, 3, 3] = 1                                  # anterior and superior of the first voxel
    pts = np.argwhere(orientation.array_slice(vol, 3, axis=2))
    (r_hi, c_hi) = min(pts.tolist())                 # the higher one on screen (smaller row)
    assert r_hi < r and c_hi < c


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("A", "S", "R"), ("P", "I", "L")])
def test_from_ras_undoes_to_ras(axcodes):
    """A file in any axis order and direction, brought to RAS and back, is the file again."""
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    ornt = nib.orientations.axcodes2ornt(axcodes)
    affine = nib.orientations.inv_ornt_aff(nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS")),
                                           data.shape)
    img = nib.Nifti1Image(data, affine)
    ras = orientation.to_ras(img)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    back = orientation.from_ras(np.asarray(ras.dataobj), img)
    assert back.shape == data.shape and np.array_equal(back, data)


def test_aspects_are_mm_per_displayed_pixel():
    assert orientation.slice_aspect(2, (1.25, 2.5, 1.37)) == 2.0  # rows y, columns x
    assert orientation.slice_aspect(0, None) == 1.0
    assert orientation.plane_aspect("coronal", (1.0, 2.0, 3.0)) == 3.0
    assert [orientation.fixed_axis(p) for p in orientation.PLANES] == [2, 1, 0]


def test_anatomical_vertices_for_the_msd_layout():
    v = np.array([[1.0, 2.0, 3.0]])  # array axes point A, S, R in the MSD heart scans
    assert np.allclose(orientation.anatomical_vertices(v, ("A", "S", "R")), [[3.0, 1.0, 2.0]])
    assert np.allclose(orientation.anatomical_vertices(v, ("L", "P", "S")), [[-1.0, -2.0, 3.0]])
    assert orientation.anatomical_vertices(v) is not None and np.allclose(orientation.anatomical_vertices(v), v)
