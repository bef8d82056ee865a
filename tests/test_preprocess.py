"""Preprocessing invariants and the memory-mappable cache."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLE
from lasegtut import preprocess as pp
from lasegtut.data import load_case
from lasegtut.errors import LasegError


@pytest.fixture(scope="module")
def case():
    return load_case(SAMPLE, "la_020")


def test_crop_320_to_256(case):
    c = pp.crop(case.image)
    assert c.shape == (256, 256, case.image.shape[2])
    np.testing.assert_array_equal(c, case.image[32:-32, 32:-32])
    assert pp.crop(case.image, 0) is case.image
    back = pp.uncrop(pp.crop(case.label), case.label.shape)
    np.testing.assert_array_equal(back, case.label)  # every label voxel lies in the crop


def test_crop_rejects_too_small():
    with pytest.raises(LasegError, match="cannot crop"):
        pp.crop(np.zeros((60, 60, 3)))


def test_normalize_range_and_idempotence(case):
    v = pp.normalize(pp.crop(case.image))
    assert v.dtype == np.float32
    assert v.min() == 0.0 and v.max() == 1.0
    again = pp.normalize(v)
    np.testing.assert_allclose(again, v, atol=1e-5)
    z = pp.zscore(pp.crop(case.image))
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-4


def test_normalize_is_invariant_to_intensity_scale(case):
    v = pp.crop(case.image)
    np.testing.assert_allclose(pp.normalize(3 * v + 100), pp.normalize(v), atol=1e-5)


def test_constant_image_is_an_error():
    with pytest.raises(LasegError, match="no contrast"):
        pp.normalize(np.ones((4, 4, 4)))


def test_preprocess_volume_layout(case):
    s = pp.preprocess_volume(case.image)
    m = pp.preprocess_mask(case.label)
    assert s.shape == m.shape == (case.image.shape[2], 256, 256)
    assert s.flags.c_contiguous and m.dtype == np.uint8
    k = case.image.shape[2] // 2
    np.testing.assert_array_equal(m[k], case.label[32:-32, 32:-32, k])


def test_write_cache_on_sample(tmp_path):
    out = tmp_path / "cache"
    summary = pp.write_cache(SAMPLE, out, progress=False)
    assert summary.cases == ["la_009", "la_014", "la_020"]
    assert summary.slices == 100 + 120 + 110
    files = sorted(p.name for p in out.iterdir())
    assert files == ["index.json"] + sorted(f"{c}.{k}.npy" for c in summary.cases for k in ("image", "mask"))
    img, msk = pp.load_cached_case(out, "la_009")
    assert isinstance(img, np.memmap) and img.dtype == np.float16 and msk.dtype == np.uint8
    assert img.shape == (100, 256, 256)
    ref = load_case(SAMPLE, "la_009")
    np.testing.assert_allclose(img[50].astype(np.float32), pp.preprocess_volume(ref.image)[50], atol=1e-3)
    index = pp.load_index(out)
    la = index["cases"]["la_009"]["la_slices"]
    assert la == [int(z) for z in np.flatnonzero(msk.reshape(100, -1).any(1))]
    # far smaller than the seed's per-slice float64 files (image + mask, 8 bytes each)
    assert summary.bytes < summary.slices * 256 * 256 * 16 / 5
    # a second run finds everything up to date
    again = pp.write_cache(SAMPLE, out, progress=False)
    assert again.skipped == summary.cases


def test_cache_errors(tmp_path):
    with pytest.raises(LasegError, match="not a lasegtut cache"):
        pp.load_index(tmp_path)
    (tmp_path / "index.json").write_text("{broken")
    with pytest.raises(LasegError, match="corrupt"):
        pp.load_index(tmp_path)


def test_context_indices_clamp_at_the_ends():
    assert pp.context_indices(5, 10) == [5]
    assert pp.context_indices(5, 10, context=2, stride=2) == [1, 3, 5, 7, 9]
    assert pp.context_indices(1, 10, context=2, stride=2) == [0, 0, 1, 3, 5]
    assert pp.context_indices(9, 10, context=1, stride=3) == [6, 9, 9]


def test_stack_context_puts_the_slice_in_the_middle(case):
    slices = pp.preprocess_volume(case.image)
    stack = pp.stack_context(slices, context=2, stride=2, start=10, stop=14)
    assert stack.shape == (4, 5) + slices.shape[1:]
    np.testing.assert_array_equal(stack[:, 2], slices[10:14])  # channel `context` = the slice
    np.testing.assert_array_equal(stack[0, 0], slices[6])      # z=10, offset -4
    np.testing.assert_array_equal(stack[3, 4], slices[17])     # z=13, offset +4
    np.testing.assert_array_equal(pp.stack_context(slices)[:, 0], slices)


def test_reslice_is_lossless_and_pads_z_to_square_slices(case):
    """reslice gives one square slice per position along the chosen array axis, z padded with
    zeros, centred; unreslice undoes it exactly; axis 2 is the stack itself."""
    slices = pp.preprocess_volume(case.image, border=80)  # (110, 160, 160) for la_020: (z, x, y)
    z = slices.shape[0]
    off = (160 - z) // 2
    across0 = pp.reslice(slices, 0)  # one (z, y) slice per x
    assert across0.shape == (160, 160, 160)
    np.testing.assert_array_equal(across0[70, off + 5], slices[5, 70])  # x=70, z=5, all y
    assert not across0[:, :off].any() and not across0[:, off + z:].any()
    across1 = pp.reslice(slices, 1)  # one (z, x) slice per y
    np.testing.assert_array_equal(across1[40, off + 5], slices[5, :, 40])  # y=40, z=5, all x
    for axis in (0, 1, 2):
        np.testing.assert_array_equal(pp.unreslice(pp.reslice(slices, axis), axis, z), slices)
    assert pp.reslice(slices, 2) is slices
    tall = np.ones((200, 8, 16), dtype=np.float32)  # more slices than the slice is wide: no padding
    assert pp.reslice(tall, 0).shape == (8, 200, 16)
    with pytest.raises(LasegError, match="slice axis must be"):
        pp.reslice(slices, 3)
