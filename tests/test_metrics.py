"""Tests of lasegtut.metrics: hand-checked values, empty masks, speed, and agreement with MONAI."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from conftest import MSD_SPACING, SAMPLE
from lasegtut.data import load_mask
from lasegtut.errors import LasegError
from lasegtut.metrics import (NSD_TOLERANCE_MM, SCORE_KEYS, assd, best_worst_slices, dice, evaluate_masks, hd95,
                              iou, joint_bbox, nsd, per_slice_dice, score_masks, surface_distances, surface_voxels)
from lasegtut.volume import volume_ml

SAMPLE_LABELS = SAMPLE / "labelsTr"


def box(shape, lo, hi) -> np.ndarray:
    """uint8 mask with a filled box [lo, hi) per axis."""
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    return m


@pytest.fixture(scope="module")
def la009() -> tuple[np.ndarray, tuple[float, float, float]]:
    mask, spacing, _ = load_mask(SAMPLE_LABELS / "la_009.nii.gz")
    return mask, spacing


def perturbed(mask: np.ndarray, erode: int = 2, shift: int = 3) -> np.ndarray:
    """A realistic 'prediction': the label eroded by `erode` voxels and shifted along x."""
    e = ndimage.binary_erosion(mask, iterations=erode)
    return np.roll(e, shift, axis=0).astype(np.uint8)


# ----------------------------------------------------------------------------- MONAI reference
def _monai():
    """MONAI's metrics module and a function making a (1, 1, ...) float tensor of a mask (skip without them)."""
    torch = pytest.importorskip("torch")
    mm = pytest.importorskip("monai.metrics")
    return mm, lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]


def monai_distances(pred: np.ndarray, label: np.ndarray, spacing) -> tuple[float, float]:
    """MONAI's HD95 and symmetric ASSD (mm), given the same spacing."""
    mm, t = _monai()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = mm.compute_hausdorff_distance(t(pred), t(label), percentile=95, spacing=list(spacing))
        a = mm.compute_average_surface_distance(t(pred), t(label), symmetric=True, spacing=list(spacing))
    return float(h), float(a)


def cropped(pred, label, margin=3):
    b = joint_bbox(pred, label, margin=margin)
    return pred[b], label[b]


def assert_agrees_with_monai(pred, label, spacing, rel=0.01):
    ours = evaluate_masks(pred, label, spacing)
    h, a = monai_distances(*cropped(pred, label), spacing)
    assert ours["hd95_mm"] == pytest.approx(h, rel=rel)
    assert ours["assd_mm"] == pytest.approx(a, rel=rel)
    return ours, (h, a)


# ----------------------------------------------------------------------------- overlap
def test_dice_and_iou_of_overlapping_boxes():
    a = box((10, 10, 10), (0, 0, 0), (4, 4, 4))  # 64 voxels
    b = box((10, 10, 10), (2, 0, 0), (6, 4, 4))  # 64 voxels, 32 shared
    assert dice(a, b) == pytest.approx(2 * 32 / 128)
    assert iou(a, b) == pytest.approx(32 / 96)
    d = dice(a, b)
    assert iou(a, b) == pytest.approx(d / (2 - d))


def test_identical_masks_are_perfect(la009):
    mask, spacing = la009
    m = evaluate_masks(mask, mask, spacing)
    assert m == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "assd_mm": 0.0, "nsd": 1.0}
    assert all(type(v) is float for v in m.values())


def test_nonzero_values_count_as_foreground():
    a = box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    assert dice(a * 7, a.astype(bool)) == 1.0


# ----------------------------------------------------------------------------- empty masks
def test_both_empty_is_perfect_agreement():
    z = np.zeros((8, 8, 8), np.uint8)
    assert evaluate_masks(z, z, (1, 1, 1)) == {"dice": 1.0, "iou": 1.0, "hd95_mm": 0.0, "assd_mm": 0.0, "nsd": 1.0}
    assert nsd(z, z, (1, 1, 1)) == 1.0


@pytest.mark.parametrize("which", ["pred", "label"])
def test_one_empty_mask_is_the_worst_result_not_nan(which):
    full = box((8, 8, 8), (2, 2, 2), (5, 5, 5))
    empty = np.zeros_like(full)
    pred, label = (empty, full) if which == "pred" else (full, empty)
    m = evaluate_masks(pred, label, (1.25, 1.25, 1.37))
    assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["nsd"] == 0.0 and nsd(pred, label, (1, 1, 1), 100.0) == 0.0
    assert m["hd95_mm"] == math.inf and m["assd_mm"] == math.inf
    assert not any(math.isnan(v) for v in m.values())
    assert hd95(pred, label, (1, 1, 1)) == math.inf and assd(pred, label, (1, 1, 1)) == math.inf
    # a missed case must not vanish from a mean over cases
    assert np.mean([0.5, m["hd95_mm"]]) == math.inf


def test_monai_returns_nan_for_a_missed_atrium_and_we_do_not():
    """Documents why we do not copy MONAI here: its NaN would be dropped by a nanmean."""
    full = box((8, 8, 8), (2, 2, 2), (5, 5, 5))
    empty = np.zeros_like(full)
    h, _ = monai_distances(empty, full, (1, 1, 1))
    assert math.isnan(h)
    assert hd95(empty, full, (1, 1, 1)) == math.inf


# ----------------------------------------------------------------------------- surfaces and distances
def test_surface_of_a_cube_is_its_shell():
    cube = box((7, 7, 7), (2, 2, 2), (5, 5, 5))  # 3x3x3: only the centre voxel is interior
    s = surface_voxels(cube)
    assert s.sum() == 26 and not s[3, 3, 3]


def test_mask_touching_the_array_edge_has_a_surface_there():
    m = np.ones((4, 4, 4), np.uint8)
    assert surface_voxels(m).sum() == 4 ** 3 - 2 ** 3


def test_distances_use_anisotropic_spacing():
    a = box((5, 5, 9), (2, 2, 2), (3, 3, 3))  # one voxel at z = 2
    b = box((5, 5, 9), (2, 2, 5), (3, 3, 6))  # one voxel at z = 5: 3 voxels apart along z
    d_ab, d_ba = surface_distances(a, b, (1.0, 1.0, 2.0))
    assert d_ab.tolist() == [6.0] and d_ba.tolist() == [6.0]
    assert hd95(a, b, (1.0, 1.0, 2.0)) == 6.0
    assert assd(a, b, (1.0, 1.0, 2.0)) == 6.0
    assert hd95(a, b, (2.0, 2.0, 1.0)) == 3.0


def test_hd95_is_the_max_of_the_directed_percentiles_and_assd_pools_both_sets():
    label = box((20, 20, 20), (5, 5, 5), (15, 15, 15))
    pred = box((20, 20, 20), (5, 5, 5), (15, 15, 19))  # sticks out 4 voxels along z
    sp = (1.0, 1.0, 1.5)
    d_pl, d_lp = surface_distances(pred, label, sp)
    expected_hd = max(np.percentile(d_pl, 95), np.percentile(d_lp, 95))
    assert hd95(pred, label, sp) == pytest.approx(expected_hd)
    assert assd(pred, label, sp) == pytest.approx(np.concatenate([d_pl, d_lp]).mean())
    assert hd95(pred, label, sp, percentile=100) == pytest.approx(4 * 1.5)
    assert hd95(pred, label, sp) > 0 and assd(pred, label, sp) < hd95(pred, label, sp)


def test_bounding_box_crop_gives_the_full_volume_answer(la009):
    mask, spacing = la009
    pred = perturbed(mask)
    # reference: no tight crop, a 25-voxel margin of background all round (the full 320 x 320
    # volume gives the same numbers but takes seconds; the answer cannot depend on the margin)
    wide = joint_bbox(pred, mask, margin=25)
    pred, mask = pred[wide], mask[wide]
    sp_p = pred.astype(bool) ^ ndimage.binary_erosion(pred.astype(bool))
    sp_l = mask.astype(bool) ^ ndimage.binary_erosion(mask.astype(bool))
    d_pl = ndimage.distance_transform_edt(~sp_l, sampling=spacing)[sp_p]
    d_lp = ndimage.distance_transform_edt(~sp_p, sampling=spacing)[sp_l]
    ours_pl, ours_lp = surface_distances(pred, mask, spacing)
    np.testing.assert_allclose(ours_pl, d_pl)
    np.testing.assert_allclose(ours_lp, d_lp)


def test_joint_bbox_is_clipped_to_the_array():
    a = box((10, 10, 10), (0, 3, 3), (2, 5, 9))
    b = box((10, 10, 10), (4, 4, 4), (5, 5, 10))
    assert joint_bbox(a, b, margin=1) == (slice(0, 6), slice(2, 6), slice(2, 10))


# ----------------------------------------------------------------------------- errors
def test_shape_mismatch_is_a_user_error():
    with pytest.raises(LasegError, match="shape"):
        evaluate_masks(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), (1, 1, 1))


@pytest.mark.parametrize("spacing", [(1, 1), (1, 0, 1), (1, -1, 1), (1, float("nan"), 1), "abc"])
def test_bad_spacing_is_a_user_error(spacing):
    a = box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    with pytest.raises(LasegError):
        evaluate_masks(a, a, spacing)


def test_percentile_out_of_range():
    a = box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    with pytest.raises(LasegError):
        hd95(a, a, (1, 1, 1), percentile=150)


# ----------------------------------------------------------------------------- speed
def test_full_size_volume(la009):
    """A full 320 x 320 x 130 volume (the bounding-box crop must not change the answer).
    Its speed is measured by benchmarks/speed.py, not asserted here."""
    mask, spacing = la009
    label = np.zeros((320, 320, 130), np.uint8)
    label[:, :, : mask.shape[2]] = mask
    pred = perturbed(label)
    m = evaluate_masks(pred, label, spacing)
    assert 0.5 < m["dice"] < 0.95 and 0 < m["assd_mm"] < m["hd95_mm"] < 20
    assert m["hd95_mm"] == pytest.approx(monai_distances(pred, label, spacing)[0], rel=1e-4)


# ----------------------------------------------------------------------------- agreement with MONAI
def test_cropping_does_not_change_monais_answer(la009):
    """The tests feed MONAI a bounding-box crop (for speed): check that this changes nothing."""
    mask, spacing = la009
    pred = perturbed(mask)
    full = monai_distances(pred, mask, spacing)  # whole 320 x 320 x Z volume, ~1 s
    crop = monai_distances(*cropped(pred, mask), spacing)
    assert crop == pytest.approx(full, rel=1e-6)


def test_agrees_with_monai_on_synthetic_blobs_touching_the_edge():
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.standard_normal((40, 36, 30)), 3)
    label = (noise > 0.02).astype(np.uint8)  # several blobs, some touch the array edge
    pred = (noise > 0.0).astype(np.uint8)
    assert label[0].any() and label.sum() > 100
    assert_agrees_with_monai(pred, label, (0.8, 1.1, 2.5), rel=1e-4)


def test_agrees_with_monai_on_a_real_label_vs_its_eroded_shifted_copy(la009):
    mask, spacing = la009
    pred = perturbed(mask, erode=2, shift=3)
    ours, _ = assert_agrees_with_monai(pred, mask, spacing, rel=1e-4)
    assert ours["hd95_mm"] > 3 * spacing[0] - 1e-6


@pytest.mark.shared
def test_two_labels_of_the_same_image_la005_la026(shared_root):
    """la_005 and la_026 are one image labelled twice: a real inter-rater comparison."""
    a, sp_a, aff_a = load_mask(shared_root / "labelsTr" / "la_005.nii.gz")
    b, sp_b, aff_b = load_mask(shared_root / "labelsTr" / "la_026.nii.gz")
    assert a.shape == b.shape and np.allclose(aff_a, aff_b)
    ours, (h, s) = assert_agrees_with_monai(a, b, sp_a, rel=1e-4)
    assert round(ours["dice"], 3) == 0.927
    assert ours["iou"] == pytest.approx(ours["dice"] / (2 - ours["dice"]))
    assert 1.0 < ours["assd_mm"] < ours["hd95_mm"] < 15.0
    # MONAI on the whole volume gives the same answer as on the crop used above
    assert monai_distances(a, b, sp_a) == pytest.approx((h, s), rel=1e-6)


# ----------------------------------------------------------------------------- NSD (surface Dice)
def monai_nsd(pred: np.ndarray, label: np.ndarray, spacing, tolerance_mm: float) -> float:
    """MONAI's ``compute_surface_dice`` (voxel surfaces) of one binary pair, in mm."""
    mm, t = _monai()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one channel that is the foreground: include_background=True keeps it
        return float(mm.compute_surface_dice(t(pred), t(label), [tolerance_mm], include_background=True,
                                             spacing=list(spacing)))


def test_nsd_default_is_the_decathlons_left_atrium_tolerance():
    assert NSD_TOLERANCE_MM == 4.0  # Antonelli et al. 2022, Task02_Heart


def test_nsd_by_hand_on_two_shifted_slabs():
    """Two 1-voxel-thick sheets 3 voxels apart along z (2 mm voxels there): every surface voxel
    is 6 mm from the other surface, so NSD is 0 below 6 mm and 1 from 6 mm on."""
    a, b = box((6, 6, 10), (1, 1, 2), (5, 5, 3)), box((6, 6, 10), (1, 1, 5), (5, 5, 6))
    sp = (1.0, 1.0, 2.0)
    assert nsd(a, b, sp, 5.9) == 0.0 and nsd(a, b, sp, 6.0) == 1.0 and nsd(a, b, sp, 100) == 1.0
    assert nsd(a, a, sp, 0.0) == 1.0
    assert evaluate_masks(a, b, sp, nsd_tolerance_mm=6.0)["nsd"] == 1.0


@pytest.mark.parametrize("tol", [-1.0, float("nan"), float("inf"), "four"])
def test_nsd_bad_tolerance_is_a_user_error(tol):
    a = box((6, 6, 6), (1, 1, 1), (4, 4, 4))
    with pytest.raises(LasegError, match="tolerance"):
        nsd(a, a, (1, 1, 1), tol)
    with pytest.raises(LasegError, match="tolerance"):
        score_masks(a, a, (1, 1, 1), nsd_tolerance_mm=tol)


@pytest.mark.parametrize("tol", [1.0, 2.0, NSD_TOLERANCE_MM, 8.0])
def test_nsd_agrees_with_monai_on_the_two_experts_labels(tol):
    """data/duplicate_pair: one scan labelled by two experts (la_005 / la_026), a real pair of
    labels; anisotropic voxels (1.25 x 1.25 x 1.37 mm). MONAI on the whole array."""
    from lasegtut.data import DUPLICATE_PAIR

    a, sp, _ = load_mask(DUPLICATE_PAIR / "labelsTr" / "la_005.nii.gz")
    b, _, _ = load_mask(DUPLICATE_PAIR / "labelsTr" / "la_026.nii.gz")
    ours = nsd(a, b, sp, tol)
    assert ours == pytest.approx(monai_nsd(a, b, sp, tol), abs=1e-6)  # MONAI returns float32
    assert evaluate_masks(a, b, sp, nsd_tolerance_mm=tol)["nsd"] == ours
    if tol == NSD_TOLERANCE_MM:
        assert round(ours, 3) == 0.941  # the two experts agree on 94% of the surface within 4 mm


def test_nsd_agrees_with_monai_on_a_real_label_and_on_blobs_touching_the_edge(la009):
    mask, spacing = la009
    pred = perturbed(mask, erode=2, shift=3)
    p, lab = cropped(pred, mask)
    for tol in (1.0, NSD_TOLERANCE_MM):
        assert nsd(pred, mask, spacing, tol) == pytest.approx(monai_nsd(p, lab, spacing, tol), abs=1e-6)  # MONAI returns float32
    rng = np.random.default_rng(1)
    noise = ndimage.gaussian_filter(rng.standard_normal((40, 36, 30)), 3)
    label, pred = (noise > 0.02).astype(np.uint8), (noise > 0.0).astype(np.uint8)
    assert nsd(pred, label, (0.8, 1.1, 2.5), 1.5) == pytest.approx(monai_nsd(pred, label, (0.8, 1.1, 2.5), 1.5),
                                                                    abs=1e-6)  # MONAI returns float32


# ----------------------------------------------------------------------------- scoring and slices
def test_score_masks_is_the_metrics_and_both_volumes():
    label, pred = box((20, 20, 10), (4, 4, 2), (12, 12, 8)), box((20, 20, 10), (5, 4, 2), (13, 12, 8))
    s = score_masks(pred, label, MSD_SPACING, pred_spacing=(1.0, 1.0, 1.0))
    assert tuple(s) == SCORE_KEYS
    assert {k: s[k] for k in evaluate_masks(pred, label, MSD_SPACING)} == evaluate_masks(pred, label, MSD_SPACING)
    assert s["volume_pred_ml"] == volume_ml(pred, (1.0, 1.0, 1.0)) and s["volume_label_ml"] == volume_ml(label, MSD_SPACING)


def test_per_slice_dice_is_nan_without_atrium_and_dice_elsewhere():
    label = box((6, 6, 5), (1, 1, 1), (5, 5, 4))
    pred = box((6, 6, 5), (1, 1, 0), (3, 5, 4))  # half of every label slice, plus a stray slice 0
    d = per_slice_dice(pred, label)
    assert np.isnan(d[0]) and np.isnan(d[4]) and np.allclose(d[1:4], dice(pred[..., 2], label[..., 2]))
    assert np.allclose(per_slice_dice(label, label, axis=0)[1:5], 1.0)
    assert best_worst_slices(pred, label, min_label_voxels=1) == (1, 1)
    with pytest.raises(LasegError, match="empty"):
        best_worst_slices(pred, np.zeros_like(label))

