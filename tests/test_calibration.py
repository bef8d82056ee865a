"""Reliability curve and expected calibration error (lasegtut.calibration), on cases computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from lasegtut.calibration import ReliabilityCurve, expected_calibration_error, reliability_curve
from lasegtut.errors import LasegError
from lasegtut.metrics import bounding_box


def test_hand_computed_curve_and_ece():
    """Four bins of width 0.25. Voxels 0.1, 0.2 (label 0, 1), 0.6 (label 1), 0.9, 1.0 (label 1, 0):
    bin 0 holds 0.1 and 0.2: confidence 0.15, accuracy 0.5; bin 1 is empty; bin 2 holds 0.6:
    confidence 0.6, accuracy 1; bin 3 holds 0.9 and 1.0 (1.0 belongs to the last bin): confidence
    0.95, accuracy 0.5. ECE = (2 * 0.35 + 1 * 0.4 + 2 * 0.45) / 5 = 0.4."""
    prob = np.array([0.1, 0.2, 0.6, 0.9, 1.0])
    label = np.array([0, 1, 1, 1, 0])
    c = reliability_curve(prob, label, 4)
    assert isinstance(c, ReliabilityCurve)
    np.testing.assert_allclose(c.edges, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(c.centres, [0.125, 0.375, 0.625, 0.875])
    assert c.counts.tolist() == [2, 0, 1, 2] and c.n_voxels == 5
    np.testing.assert_allclose(c.confidence, [0.15, np.nan, 0.6, 0.95])
    np.testing.assert_allclose(c.accuracy, [0.5, np.nan, 1.0, 0.5])
    assert expected_calibration_error(prob, label, 4) == pytest.approx(0.4)
    assert c.ece == pytest.approx(0.4)


def test_bin_edges_belong_to_the_upper_bin():
    """0.5 with 2 bins opens the second bin; 0 the first; 1 the last."""
    c = reliability_curve(np.array([0.0, 0.5, 1.0]), np.array([0, 1, 1]), 2)
    assert c.counts.tolist() == [1, 2]
    np.testing.assert_allclose(c.confidence, [0.0, 0.75])


def test_a_calibrated_map_has_no_error_and_an_overconfident_one_does():
    """In each bin, exactly the share of label voxels its probability says: ECE 0. The same label with
    every probability pushed to 0 or 1 (thresholded): ECE = the share of wrong voxels."""
    rng = np.random.default_rng(0)
    prob = np.repeat([0.05, 0.35, 0.65, 0.95], 20).reshape(8, 10)
    label = np.zeros(prob.shape, np.uint8)
    for p in (0.05, 0.35, 0.65, 0.95):
        where = np.flatnonzero(prob.ravel() == p)
        label.ravel()[rng.choice(where, int(round(p * 20)), replace=False)] = 1
    assert expected_calibration_error(prob, label, 10) == pytest.approx(0.0, abs=1e-12)
    hard = (prob >= 0.5).astype(float)
    wrong = np.mean(hard != label)
    assert expected_calibration_error(hard, label, 10) == pytest.approx(wrong)
    assert wrong > 0.1


def test_region_restricts_the_voxels():
    """Background far from the atrium (probability 0, label 0) is perfectly calibrated and dilutes the
    error; a box around the atrium measures where the decisions are made."""
    prob = np.zeros((20, 20, 20))
    label = np.zeros(prob.shape, np.uint8)
    label[8:12, 8:12, 8:12] = 1
    prob[7:13, 7:13, 7:13] = 0.5       # unsure at and around the atrium: 64 of 216 voxels are atrium
    box = bounding_box(prob > 0)
    err_box = expected_calibration_error(prob, label, 10, region=box)
    assert err_box == pytest.approx(0.5 - 64 / 216)
    err_all = expected_calibration_error(prob, label, 10)
    assert err_all == pytest.approx(err_box * 216 / 8000)
    as_mask = np.zeros(prob.shape, bool)
    as_mask[box] = True
    assert expected_calibration_error(prob, label, 10, region=as_mask) == pytest.approx(err_box)
    assert reliability_curve(prob, label, 10, region=box).n_voxels == 216


@pytest.mark.parametrize("prob, label, kw, what", [
    (np.zeros((3, 3)), np.zeros((3, 4)), {}, "differ in shape"),
    (np.full((3, 3), 1.2), np.zeros((3, 3)), {}, "in [0, 1]"),
    (np.full((3, 3), np.nan), np.zeros((3, 3)), {}, "in [0, 1]"),
    (np.zeros((3, 3)), np.zeros((3, 3)), {"n_bins": 0}, "n_bins"),
    (np.zeros((3, 3)), np.zeros((3, 3)), {"region": np.zeros((3, 3), bool)}, "empty region"),
    (np.zeros((3, 3)), np.zeros((3, 3)), {"region": np.zeros((2, 3), bool)}, "differ in shape"),
    (np.zeros((3, 3)), np.zeros((3, 3)), {"region": "all"}, "region must be"),
])
def test_bad_input_is_one_clear_error(prob, label, kw, what):
    with pytest.raises(LasegError, match=what.replace("[", r"\[").replace("]", r"\]")):
        reliability_curve(prob, label, **kw)
