"""The degradations of lasegtut.degrade: shapes kept, deterministic, and the SNR they claim."""
from __future__ import annotations

import numpy as np
import pytest

from lasegtut.degrade import (SEVERITIES, cut_fov, degrade, gamma, gaussian_blur, ghosting, low_through_plane,
                              rician_noise, signal_level)
from lasegtut.errors import LasegError

SPACING = (1.25, 1.25, 1.37)


@pytest.fixture(scope="module")
def phantom():
    """A 40 x 36 x 30 volume: background 0, a tissue block at 300, a bright 'atrium' ball at 1000."""
    x, y, z = np.meshgrid(np.arange(40), np.arange(36), np.arange(30), indexing="ij")
    vol = np.zeros((40, 36, 30), dtype=np.float32)
    vol[5:35, 5:31, 4:26] = 300
    ball = (x - 20) ** 2 + (y - 18) ** 2 + (z - 15) ** 2 <= 8 ** 2
    vol[ball] = 1000
    return vol, ball.astype(np.uint8)


@pytest.mark.parametrize("name", list(SEVERITIES))
def test_every_severity_keeps_grid_and_is_deterministic(phantom, name):
    vol, lab = phantom
    a = degrade(vol, SPACING, name, seed=3, label=lab)
    b = degrade(vol, SPACING, name, seed=3, label=lab)
    assert a.shape == vol.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, vol), "the degradation changed nothing"


def test_noise_seed_changes_the_copy(phantom):
    vol, lab = phantom
    assert not np.array_equal(rician_noise(vol, 4, seed=0, label=lab), rician_noise(vol, 4, seed=1, label=lab))


@pytest.mark.parametrize("snr", [2.0, 4.0, 8.0])
def test_rician_noise_achieves_its_snr(phantom, snr):
    """sigma measured two ways: from the Rayleigh background (mean = sigma * sqrt(pi / 2)) and from the
    spread inside the bright ball; SNR = mean atrium intensity / sigma as documented."""
    vol, lab = phantom
    big = np.tile(vol, (3, 3, 3))  # more voxels for a tight estimate
    big_lab = np.tile(lab, (3, 3, 3))
    out = rician_noise(big, snr, seed=0, label=big_lab)
    sigma_bg = out[big == 0].mean() / np.sqrt(np.pi / 2)
    assert 1000 / sigma_bg == pytest.approx(snr, rel=0.02)
    if snr >= 4:  # at high SNR the Rician spread inside the signal is close to sigma
        assert 1000 / out[big_lab > 0].std() == pytest.approx(snr, rel=0.05)


def test_signal_level_is_the_atrium_mean_or_the_foreground(phantom):
    vol, lab = phantom
    assert signal_level(vol, lab) == pytest.approx(1000)
    fg = signal_level(vol)  # Otsu splits background from tissue + ball
    assert 300 < fg < 1000


def test_gaussian_blur_sigma_in_mm():
    vol = np.zeros((41, 41, 41), dtype=np.float32)
    vol[20, 20, 20] = 1
    out = gaussian_blur(vol, (1.0, 2.0, 0.5), 2.0)
    assert out.sum() == pytest.approx(1, rel=1e-4)
    for axis, s in enumerate((1.0, 2.0, 0.5)):
        profile = out.sum(axis=tuple(a for a in range(3) if a != axis))
        pos = np.arange(41) - 20
        measured_mm = np.sqrt((profile * pos ** 2).sum() / profile.sum()) * s
        assert measured_mm == pytest.approx(2.0, rel=0.03)


def test_gamma_keeps_range_and_orders():
    vol = np.linspace(0, 1000, 27, dtype=np.float32).reshape(3, 3, 3)
    out = gamma(vol, 0.5)
    assert out.min() == 0 and out.max() == pytest.approx(1000)
    assert out[1, 1, 1] == pytest.approx(1000 * (vol[1, 1, 1] / 1000) ** 0.5, rel=1e-5)
    assert np.all(np.diff(out.ravel()) >= 0)


def test_low_through_plane_keeps_every_kth_slice_and_interpolates():
    vol = np.random.default_rng(0).random((4, 5, 17)).astype(np.float32)
    out = low_through_plane(vol, 4, axis=2)
    np.testing.assert_allclose(out[..., ::4], vol[..., ::4], rtol=1e-6)
    np.testing.assert_allclose(out[..., 1], 0.75 * vol[..., 0] + 0.25 * vol[..., 4], rtol=1e-5)
    np.testing.assert_allclose(low_through_plane(vol, 1), vol)
    # a linear ramp along the axis survives exactly
    ramp = np.broadcast_to(np.arange(17, dtype=np.float32), (4, 5, 17))
    np.testing.assert_allclose(low_through_plane(ramp, 4)[..., :17], ramp, atol=1e-5)


def test_ghost_and_cut_fov():
    vol = np.zeros((8, 10, 4), dtype=np.float32)
    vol[1, 2, 0] = 100
    g = ghosting(vol, 0.3, axis=1)
    assert g[1, 2, 0] == 100 and g[1, 7, 0] == pytest.approx(30) and g.sum() == pytest.approx(130)
    c = cut_fov(np.ones((8, 10, 4), dtype=np.float32), 0.3, axis=1)
    assert (c[:, :7] == 1).all() and (c[:, 7:] == 0).all()


def test_bad_parameters_are_refused(phantom):
    vol, _ = phantom
    with pytest.raises(LasegError):
        degrade(vol, SPACING, "no_such_thing")
    for call in (lambda: rician_noise(vol, 0), lambda: gamma(vol, -1), lambda: low_through_plane(vol, 0),
                 lambda: cut_fov(vol, 1.0), lambda: rician_noise(vol[0], 4)):
        with pytest.raises(LasegError):
            call()


def test_issue_levels_present():
    issue = {n for n, s in SEVERITIES.items() if s.level == "issue"}
    kinds = {SEVERITIES[n].kind for n in issue}
    assert kinds == {"rician_noise", "gaussian_blur", "gamma", "low_through_plane", "ghosting"}
    assert SEVERITIES["noise_snr4"].params == {"snr": 4.0} and SEVERITIES["thick_4x"].params == {"factor": 4}
    assert {s.level for s in SEVERITIES.values()} == {"mild", "issue", "harsh"}
