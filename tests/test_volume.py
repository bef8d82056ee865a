"""Tests of lasegtut.volume: mL from voxels, BSA, LA volume index and its grade."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import MSD_SPACING, SAMPLE
from lasegtut.data import load_mask
from lasegtut.errors import LasegError
from lasegtut.volume import (LAVI_GRADES, bland_altman_stats, bsa_mosteller, grade_lavi, lavi, sphere_mask,
                             volume_error_pct, voxel_volume_mm3, volume_ml)



# ----------------------------------------------------------------------------- volume
def test_volume_is_voxel_count_times_voxel_volume():
    m = np.zeros((20, 20, 20), np.uint8)
    m[:10, :10, :10] = 1  # 1000 voxels
    assert volume_ml(m, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert volume_ml(m, MSD_SPACING) == pytest.approx(1000 * 1.25 * 1.25 * 1.37 / 1000)
    assert voxel_volume_mm3(MSD_SPACING) == pytest.approx(2.140625)
    assert volume_ml(np.zeros((3, 3, 3)), MSD_SPACING) == 0.0
    assert volume_ml(m.astype(bool), (2, 2, 2)) == pytest.approx(8.0)


def test_volume_returns_a_python_float():
    m = np.ones((2, 2, 2), np.uint8)
    assert type(volume_ml(m, (1, 1, 1))) is float


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -1.0, 1.0), (1.0, math.inf, 1.0)])
def test_volume_rejects_bad_spacing(spacing):
    with pytest.raises(LasegError, match="spacing"):
        volume_ml(np.ones((2, 2, 2)), spacing)


def test_sphere_of_radius_20mm_has_the_textbook_volume():
    r = 20.0
    m = sphere_mask((48, 48, 44), MSD_SPACING, r)
    assert m.dtype == np.uint8 and set(np.unique(m).tolist()) == {0, 1}
    expected_ml = 4.0 / 3.0 * math.pi * r ** 3 / 1000.0  # 33.51 mL
    assert volume_ml(m, MSD_SPACING) == pytest.approx(expected_ml, rel=0.01)
    # the ball fits inside the array: nothing on the faces of the array
    assert not (m[0].any() or m[-1].any() or m[:, :, 0].any() or m[:, :, -1].any())


def test_sphere_center_and_extent_in_mm():
    sp = (1.0, 2.0, 1.0)
    m = sphere_mask((30, 30, 30), sp, 4.0, center_mm=(10.0, 20.0, 10.0))
    assert m[10, 10, 10] == 1  # the centre voxel (10 mm, 20 mm, 10 mm)
    assert m[14, 10, 10] == 1 and m[15, 10, 10] == 0  # 4 mm along x = 4 voxels
    assert m[10, 12, 10] == 1 and m[10, 13, 10] == 0  # 4 mm along y = 2 voxels
    xs = np.flatnonzero(m.any(axis=(1, 2)))
    assert (xs.min(), xs.max()) == (6, 14)


@pytest.mark.parametrize("kwargs", [dict(radius_mm=0), dict(radius_mm=-3), dict(radius_mm=math.nan),
                                    dict(radius_mm=5, center_mm=(1, 2)), dict(radius_mm=5, shape=(0, 4, 4))])
def test_sphere_rejects_bad_arguments(kwargs):
    args = dict(shape=(8, 8, 8), spacing=(1, 1, 1))
    args.update(kwargs)
    with pytest.raises(LasegError):
        sphere_mask(**args)


def test_real_left_atrium_has_a_plausible_volume():
    mask, spacing, _ = load_mask(SAMPLE / "labelsTr" / "la_009.nii.gz")
    v = volume_ml(mask, spacing)
    assert v == pytest.approx(int(mask.sum()) * np.prod(spacing) / 1000)
    assert 20 < v < 250  # adult left atria (with veins and appendage trunk): tens to ~200 mL


# ----------------------------------------------------------------------------- BSA and LAVI
def test_mosteller_bsa():
    assert bsa_mosteller(175, 70) == pytest.approx(math.sqrt(175 * 70 / 3600))
    assert bsa_mosteller(175, 70) == pytest.approx(1.8447, abs=1e-4)
    assert bsa_mosteller(180, 80) > bsa_mosteller(160, 60)


@pytest.mark.parametrize("height, weight", [
    (1.75, 70),      # metres instead of cm
    (175, 0),        # zero weight
    (175, -70),
    (0, 70),
    (300, 70),       # taller than anyone
    (175, 900),
    (math.nan, 70),
    (175, math.inf),
    ("tall", 70),
])
def test_bsa_rejects_implausible_height_or_weight(height, weight):
    with pytest.raises(LasegError):
        bsa_mosteller(height, weight)


def test_bsa_accepts_the_edges_of_the_plausible_range():
    assert bsa_mosteller(30, 1) > 0 and bsa_mosteller(272, 700) > 0


def test_lavi_is_volume_over_bsa():
    assert lavi(70.0, 1.75) == pytest.approx(40.0)
    assert lavi(0.0, 2.0) == 0.0
    for bad in [(70, 0), (70, -1), (-1, 2), (math.nan, 2), (70, math.inf)]:
        with pytest.raises(LasegError):
            lavi(*bad)


@pytest.mark.parametrize("value, grade", [
    (0, "normal"), (20, "normal"), (34, "normal"), (34.2, "normal"), (34.4, "normal"), (34.49, "normal"),
    (34.5, "mild"), (35, "mild"), (41, "mild"), (41.49, "mild"),
    (41.5, "moderate"), (42, "moderate"), (48, "moderate"), (48.4, "moderate"),
    (48.5, "severe"), (120, "severe"),
])
def test_grade_lavi_ase_eacvi_2015_cutoffs(value, grade):
    """Graded at the guideline's reporting precision (whole mL/m^2): 34.4 is reported 34, normal."""
    assert grade_lavi(value) == grade
    assert grade in LAVI_GRADES


@pytest.mark.parametrize("value", [-1, math.nan, math.inf])
def test_grade_lavi_rejects_impossible_values(value):
    with pytest.raises(LasegError):
        grade_lavi(value)


# ----------------------------------------------------------------------------- two methods compared
def test_volume_error_is_a_percentage_of_the_label():
    assert volume_error_pct(110.0, 100.0) == pytest.approx(10.0)
    assert volume_error_pct(60.0, 80.0) == pytest.approx(-25.0)
    assert math.isnan(volume_error_pct(5.0, 0.0))


def test_bland_altman_bias_and_limits_of_agreement():
    s = bland_altman_stats([110.0, 95.0, 110.0], [100.0, 100.0, 100.0])
    assert s["bias"] == pytest.approx(5.0) and s["sd"] == pytest.approx(np.std([10, -5, 10], ddof=1))
    assert s["loa_high"] == pytest.approx(5.0 + 1.96 * s["sd"]) and list(s["means"]) == [105.0, 97.5, 105.0]
    assert math.isnan(bland_altman_stats([1.0], [2.0])["sd"])
    with pytest.raises(LasegError, match="equally long"):
        bland_altman_stats([1.0, 2.0], [1.0])

