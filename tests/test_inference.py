"""``lasegtut predict``: same grid as the input, any orientation, safe with outputs and bad input."""
from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import SAMPLE, write_nifti
from lasegtut.cli import main
from lasegtut.inference import largest_component, predict_file, predict_volume, load_model
from lasegtut.data import load_case
from lasegtut.geometry import Geometry
from lasegtut.metrics import dice

SCAN = SAMPLE / "imagesTr" / "la_020.nii.gz"
LABEL = SAMPLE / "labelsTr" / "la_020.nii.gz"


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "mask.nii.gz"
    report = predict_file(SCAN, out)
    return out, report


class ConstNet(torch.nn.Module):
    """A stand-in network whose every output logit is ``value`` (1000: "atrium everywhere",
    -1000: "nowhere")."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((len(x), 1, *x.shape[-2:]), self.value)


def test_mask_on_the_input_grid(predicted):
    out, report = predicted
    src, mask = nib.load(str(SCAN)), nib.load(str(out))
    assert mask.shape == src.shape and np.allclose(mask.affine, src.affine)
    assert mask.get_data_dtype() == np.uint8
    arr = np.asarray(mask.dataobj)
    assert set(np.unique(arr)) <= {0, 1}
    assert report["voxels"] == int(arr.sum()) > 0
    assert report["volume_ml"] == pytest.approx(arr.sum() * 1.25 * 1.25 * 1.37 / 1000, rel=1e-4)


def test_shipped_model_finds_the_atrium(predicted):
    """The shipped model on a validation case it never saw: a real segmentation, not noise."""
    out, _ = predicted
    label = np.asarray(nib.load(str(LABEL)).dataobj)
    assert dice(np.asarray(nib.load(str(out)).dataobj), label) > 0.8


def test_any_orientation(tmp_path, predicted):
    """An LPS copy of the scan gives the same mask, stored LPS like its input."""
    out, _ = predicted
    src = nib.load(str(SCAN))
    data = np.asarray(src.dataobj)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = data.shape[0] - 1, data.shape[1] - 1
    lps = write_nifti(tmp_path / "lps.nii.gz", data[::-1, ::-1].copy(), src.affine @ flip)
    out_lps = tmp_path / "lps_mask.nii.gz"
    predict_file(lps, out_lps)
    m_lps = nib.load(str(out_lps))
    assert np.allclose(m_lps.affine, src.affine @ flip)
    np.testing.assert_array_equal(np.asarray(m_lps.dataobj)[::-1, ::-1], np.asarray(nib.load(str(out)).dataobj))


def test_never_overwrites_without_force(tmp_path):
    out = tmp_path / "mask.nii.gz"
    out.write_bytes(b"precious")
    rc = main(["predict", str(SCAN), str(out)])
    assert rc == 2 and out.read_bytes() == b"precious"


def test_cli_json_last_line(tmp_path, capsys):
    out = tmp_path / "m.nii.gz"
    assert main(["predict", str(SCAN), str(out), "--json", "--tta"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert {"volume_ml", "voxels", "spacing_mm", "seconds"} <= set(report)
    assert report["spacing_mm"] == [1.25, 1.25, 1.37]


@pytest.mark.parametrize("problem", ["text", "truncated", "2d", "4d", "nan", "constant", "missing"])
def test_bad_input(tmp_path, capsys, problem):
    p = tmp_path / "scan.nii.gz"
    good = np.random.default_rng(0).random((96, 96, 8)).astype(np.float32)
    if problem == "text":
        p.write_text("not an image")
    elif problem == "truncated":
        raw = SCAN.read_bytes()
        p.write_bytes(raw[: len(raw) // 3])
    elif problem == "2d":
        write_nifti(p, good[:, :, 0])
    elif problem == "4d":
        write_nifti(p, np.stack([good, good], -1))
    elif problem == "nan":
        good[5, 5, 5] = np.nan
        write_nifti(p, good)
    elif problem == "constant":
        write_nifti(p, np.zeros_like(good))
    out = tmp_path / "out.nii.gz"
    rc = main(["predict", str(p), str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_bad_weights(tmp_path, capsys):
    w = tmp_path / "w.pt"
    w.write_bytes(b"garbage")
    rc = main(["predict", str(SCAN), str(tmp_path / "o.nii.gz"), "--weights", str(w)])
    assert rc == 2 and "not a readable weights file" in capsys.readouterr().err


def test_largest_component():
    m = np.zeros((10, 10, 10), np.uint8)
    m[1:4, 1:4, 1:4] = 1
    m[7:9, 7:9, 7:9] = 1
    kept = largest_component(m)
    assert kept.sum() == 27 and kept[8, 8, 8] == 0


def test_2_5d_model_sees_the_neighbours_it_was_trained_with():
    """predict_slices stacks each slice with its neighbours as in training: a stub network that
    answers with its first channel must return slice z - context * stride (clamped at 0)."""
    import torch

    from lasegtut.inference import predict_slices

    class FirstChannel(torch.nn.Module):
        def forward(self, x):
            return (x[:, :1] - 0.5) * 1000

    rng = np.random.default_rng(0)
    slices = rng.random((9, 16, 16), dtype=np.float32)
    prob = predict_slices(slices, FirstChannel(), 16, batch_size=4, context=2, context_stride=2)
    expect = slices[[max(z - 4, 0) for z in range(9)]] > 0.5
    np.testing.assert_array_equal(prob > 0.5, expect)
    plain = predict_slices(slices, FirstChannel(), 16, batch_size=4)
    np.testing.assert_array_equal(plain > 0.5, slices > 0.5)


def test_inference_copy_is_the_same_network():
    """Folding batch norm into the convolutions changes speed, not answers; the original keeps its BN."""
    import torch

    from lasegtut.inference import inference_copy

    model, _ = load_model()
    fast = inference_copy(model)
    x = torch.rand(2, model.config.in_channels, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(x.contiguous(memory_format=torch.channels_last)).numpy(),
                                   model(x).numpy(), atol=1e-3, rtol=0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_prediction_comes_back_on_the_scan_grid_for_each_slice_axis(axis):
    """Whatever array axis a model slices across, its answer is put back voxel for voxel: a stub
    network that answers "atrium where the middle input channel is bright" must give exactly
    the thresholded preprocessed image, on the scan's own grid."""
    import torch

    from lasegtut.preprocess import normalize, crop, uncrop

    class MiddleChannel(torch.nn.Module):
        def forward(self, x):
            return (x[:, x.shape[1] // 2:x.shape[1] // 2 + 1] - 0.5) * 1000

    image = load_case(SAMPLE, "la_020").image
    info = Geometry(input_size=160, border=80, context=1, context_stride=2, slice_axis=axis)
    mask = predict_volume(image, MiddleChannel(), info, largest_cc=False, locate=False)
    expect = uncrop((normalize(crop(image, 80)) > 0.5).astype(np.uint8), image.shape, 80)
    assert mask.shape == image.shape
    assert (mask != expect).sum() < 1e-4 * mask.size  # voxels exactly at 0.5 may round either way


def test_several_models_are_averaged_across_their_axes():
    """Two stubs that slice across different axes, one saying "atrium" everywhere (logit +1000)
    and one nowhere (-1000): their average is exactly 0.5 everywhere, so the mask is all 1; with a
    third 'nowhere' model the average is 1/3 and the mask empty."""
    import torch

    image = load_case(SAMPLE, "la_020").image
    info = lambda axis: Geometry(input_size=160, border=80, context=0, context_stride=1, slice_axis=axis)  # noqa: E731
    yes, no = (ConstNet(1000.0), info(0)), (ConstNet(-1000.0), info(2))
    both = predict_volume(image, [yes, no], largest_cc=False, locate=False)
    assert both[80:-80, 80:-80].all() and not both[:80].any()  # the crop, and nothing outside it
    assert not predict_volume(image, [yes, no, (ConstNet(-1000.0), info(1))], largest_cc=False, locate=False).any()
    with pytest.raises(Exception, match="same crop"):
        predict_volume(image, [yes, (ConstNet(1.0), replace(info(1), border=32))])


def test_device_choice(tmp_path, capsys):
    import torch

    from lasegtut.inference import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    out = tmp_path / "m.nii.gz"
    assert main(["predict", str(SCAN), str(out), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["device"] == "cpu"
    assert main(["predict", str(SCAN), str(tmp_path / "x.nii.gz"), "--device", "tpu"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    if not torch.cuda.is_available():
        assert main(["predict", str(SCAN), str(tmp_path / "y.nii.gz"), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert "no CUDA GPU" in err and err.count("\n") == 1
        assert not (tmp_path / "y.nii.gz").exists()


# ----------------------------------------------------------------- other scanners' geometries
@pytest.fixture(scope="module")
def la014_native():
    case = load_case(SAMPLE, "la_014")
    model, info = load_model()
    return case, model, info, predict_volume(case.image, model, info, spacing=case.spacing)


def _reframed(case, how: str):
    """la_014 as another scanner could have stored it: (image, label, spacing)."""
    from lasegtut.preprocess import resample

    sp = case.spacing
    if how == "0.625 mm, 200 mm field of view":  # finer voxels, a field of view around the heart
        fine = (0.625, 0.625, sp[2])
        img = resample(case.image, sp, fine)[160:480, 160:480]
        lab = (resample(case.label.astype(np.float32), sp, fine) >= 0.5).astype(np.uint8)[160:480, 160:480]
        return img, lab, fine
    if how == "heart off-centre in a 640 x 640 field of view":
        img = np.zeros((640, 640, case.image.shape[2]), np.float32)
        lab = np.zeros(img.shape, np.uint8)
        img[:320, 300:620], lab[:320, 300:620] = case.image, case.label
        return img, lab, sp
    if how == "1 mm isotropic":
        iso = (1.0, 1.0, 1.0)
        return (resample(case.image, sp, iso), (resample(case.label.astype(np.float32), sp, iso) >= 0.5)
                .astype(np.uint8), iso)
    raise ValueError(how)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["0.625 mm, 200 mm field of view", "heart off-centre in a 640 x 640 field of view",
                                 "1 mm isotropic"])
def test_other_geometries_give_the_native_answer(la014_native, how):
    """Resampled to the model's voxel size and its window placed on the heart, a scan stored on
    another grid gets the native scan's answer (before: 0 mL at 0.625 mm and with the heart off
    the centre of a large field of view)."""
    from lasegtut.volume import volume_ml

    case, model, info, native = la014_native
    img, lab, sp = _reframed(case, how)
    mask = predict_volume(img, model, info, spacing=sp)
    assert mask.shape == img.shape
    assert abs(dice(mask, lab) - dice(native, case.label)) < 0.02
    assert abs(volume_ml(mask, sp) / volume_ml(native, case.spacing) - 1) < 0.04


def test_native_scans_take_the_training_window(la014_native, monkeypatch):
    """A scan of the MSD geometry is segmented in the model's own training crop, in one pass."""
    import lasegtut.inference as inference

    case, model, info, native = la014_native
    monkeypatch.setattr(inference, "locate_heart", lambda *a, **k: pytest.fail("second pass on a native scan"))
    assert np.array_equal(predict_volume(case.image, model, info, spacing=case.spacing), native)
    assert not native[:80].any() and not native[240:].any()  # nothing outside the central 160 x 160
    # la_020's raw answer has a stray speck near the window's edge: only the atrium itself may
    # send a native scan to a second pass
    la020 = load_case(SAMPLE, "la_020")
    predict_volume(la020.image, model, info, spacing=la020.spacing)


def test_no_atrium_is_refused_and_never_graded(tmp_path, capsys):
    """A scan without a heart gives no mask and no volume (exit 2), and `volume` refuses to grade
    an empty mask (before: 0.0 mL, "normal")."""
    rng = np.random.default_rng(0)
    scan = write_nifti(tmp_path / "noise.nii.gz", rng.normal(100, 5, (96, 96, 40)).astype(np.float32))
    assert main(["predict", str(scan), str(tmp_path / "m.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "no left atrium found" in err and err.count("\n") == 1 and not (tmp_path / "m.nii.gz").exists()
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros((16, 16, 8), np.uint8))
    assert main(["volume", str(empty), "--height-cm", "175", "--weight-kg", "70"]) == 2
    assert "empty" in capsys.readouterr().err
    tiny = np.zeros((16, 16, 8), np.uint8)
    tiny[4:6, 4:6, 2:4] = 1  # 8 voxels: 0.02 mL
    small = write_nifti(tmp_path / "tiny.nii.gz", tiny)
    assert main(["volume", str(small), "--height-cm", "175", "--weight-kg", "70"]) == 2
    assert "not graded" in capsys.readouterr().err
    assert main(["volume", str(small)]) == 0  # the volume itself is still reported


def test_threshold_sets_the_probability_a_voxel_needs():
    """Three stubs averaged: one 'atrium everywhere', two 'nowhere' give a probability of 1/3 in the
    crop: atrium at a threshold of 0.3, nothing at the default 0.5; a threshold that is not a
    probability strictly between 0 and 1 is refused."""
    import torch

    from lasegtut.errors import LasegError

    image = load_case(SAMPLE, "la_020").image
    info = Geometry(input_size=160, border=80, context=0, context_stride=1, slice_axis=2)
    third = [(ConstNet(1000.0), info), (ConstNet(-1000.0), info), (ConstNet(-1000.0), info)]
    assert not predict_volume(image, third, largest_cc=False, locate=False).any()
    low = predict_volume(image, third, largest_cc=False, locate=False, threshold=0.3)
    assert low[80:-80, 80:-80].all() and not low[:80].any()
    for bad in (0, 1, 1.5, -0.1, "0.5"):
        with pytest.raises(LasegError, match="threshold"):
            predict_volume(image, third, threshold=bad)
