"""Issue 11, section 4 (and the header part of section 1): no traceback reaches a user.

Each hostile input gives one line on stderr, exit status 2 and nothing written: truncated files in
a non-RAS layout, huge or singular headers, headers nibabel would have to guess, broken
``dataset.json`` / ``index.json`` / weights, bad training settings, odd notebooks, argparse
errors, and scans too large for memory (refused from the header, before reading a voxel).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import refused, SAMPLE, write_nifti
from lasegtut import data
from lasegtut.cli import main
from lasegtut.inference import SHIPPED_WEIGHTS

SCAN = SAMPLE / "imagesTr" / "la_020.nii.gz"
RAS = np.diag([1.25, 1.25, 1.37, 1.0])






def _lps(shape=(64, 64, 8)) -> tuple[np.ndarray, np.ndarray]:
    """A random int16 volume and an LPS affine (not RAS: reorienting it reads the voxels)."""
    arr = (np.random.default_rng(0).random(shape) * 1000).astype(np.int16)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = shape[0] - 1, shape[1] - 1
    return arr, RAS @ flip


def _truncated_lps(path: Path) -> Path:
    arr, aff = _lps()
    write_nifti(path, arr, aff)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def _header_only(path: Path, shape: tuple[int, int, int], affine: np.ndarray, sparse: bool = False) -> Path:
    """A NIfTI header for ``shape`` with (``sparse``) a full-size file of zeros that uses no disk,
    or only 1 kB of voxel data."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(affine, code=2)
    hdr.set_qform(affine, code=2)
    with open(path, "wb") as f:
        f.write(hdr.binaryblock + b"\0" * 4)
        if sparse:
            f.truncate(352 + 2 * int(np.prod(shape)))
        else:
            f.write(b"\1" * 1000)
    return path


def _msd(root: Path, image: Path, label: Path) -> Path:
    """An MSD folder of one case, la_001, from these two files."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTr" / "la_001.nii.gz").write_bytes(image.read_bytes())
    (root / "labelsTr" / "la_001.nii.gz").write_bytes(label.read_bytes())
    (root / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./imagesTr/la_001.nii.gz", "label": "./labelsTr/la_001.nii.gz"}]}))
    return root


# ----------------------------------------------------------------------------- files that cannot be read
@pytest.mark.parametrize("command", ["predict", "volume", "evaluate"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_file_in_a_non_ras_layout(tmp_path, capsys, command, suffix):
    bad = _truncated_lps(tmp_path / f"lps{suffix}")
    argv = {"predict": ["predict", str(bad), str(tmp_path / "o.nii.gz")], "volume": ["volume", str(bad)],
            "evaluate": ["evaluate", str(bad), str(bad)]}[command]
    refused(capsys, main(argv), "truncated or corrupt")
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("command", ["preprocess", "train"])
def test_truncated_non_ras_case_in_a_data_folder(tmp_path, capsys, command):
    arr, aff = _lps()
    label = write_nifti(tmp_path / "label.nii.gz", (arr > 500).astype(np.uint8), aff)
    root = _msd(tmp_path / "data", _truncated_lps(tmp_path / "image.nii.gz"), label)
    out = tmp_path / "out"
    argv = [command, "--data", str(root), "--out", str(out), "--quiet"]
    if command == "train":
        argv += ["--profile", "ci", "--epochs", "1"]
    refused(capsys, main(argv), "truncated or corrupt")


@pytest.mark.parametrize("command", ["predict", "volume"])
def test_huge_header_in_a_non_ras_layout(tmp_path, capsys, no_voxels_read, command):
    _, aff = _lps()
    huge = _header_only(tmp_path / "huge.nii", (4000, 4000, 4000), aff)
    argv = ["predict", str(huge), str(tmp_path / "o.nii.gz")] if command == "predict" else ["volume", str(huge)]
    refused(capsys, main(argv), "million voxels")


@pytest.mark.parametrize("command", ["predict", "volume"])
def test_singular_affine(tmp_path, capsys, no_voxels_read, command):
    sing = RAS.copy()
    sing[2, 2] = 0.0  # the third voxel axis has no length
    img = nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), None)
    img.header.set_sform(sing, code=2)
    path = tmp_path / "singular.nii.gz"
    nib.save(nib.Nifti1Image(img.dataobj, None, img.header), str(path))
    argv = ["predict", str(path), str(tmp_path / "o.nii.gz")] if command == "predict" else ["volume", str(path)]
    refused(capsys, main(argv), "singular")


# ----------------------------------------------------------------------------- the memory guard
@pytest.mark.parametrize("command", ["predict", "volume"])
def test_a_valid_1024x1024x512_scan_is_refused_before_reading(tmp_path, capsys, no_voxels_read, command):
    """A complete, valid 1 GB file (sparse: no disk used) once took 8.9 GB to segment."""
    big = _header_only(tmp_path / "big.nii", (1024, 1024, 512), RAS, sparse=True)
    assert big.stat().st_size == 352 + 2 * 1024 * 1024 * 512
    argv = ["predict", str(big), str(tmp_path / "o.nii.gz")] if command == "predict" else ["volume", str(big)]
    err = refused(capsys, main(argv), "537 million voxels")
    assert "134 million" in err  # the limit is stated
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_scan_larger_than_the_free_memory_is_refused_before_reading(tmp_path, capsys, no_voxels_read, monkeypatch):
    monkeypatch.setattr(data, "available_memory", lambda: 100 * 2 ** 20)  # 100 MiB free
    refused(capsys, main(["predict", str(SCAN), str(tmp_path / "o.nii.gz")]), "GB of memory")
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize("voxel_mm", [100.0, 1e6])
def test_a_small_scan_of_huge_voxels_is_refused_before_resampling(tmp_path, capsys, monkeypatch, voxel_mm):
    """32 x 32 x 16 voxels of 100 mm are 7.7 billion voxels at the model's 1.25 mm: before, the
    resampling asked torch for 30 GB (a RuntimeError traceback, or the machine's memory)."""
    from lasegtut import inference

    def resample(*args, **kwargs):
        raise AssertionError("the scan was resampled before the refusal")
    monkeypatch.setattr(inference, "resample", resample)
    arr = (np.random.default_rng(0).random((32, 32, 16)) * 1000).astype(np.int16)
    scan = write_nifti(tmp_path / "coarse.nii.gz", arr, np.diag([voxel_mm] * 3 + [1.0]))
    err = refused(capsys, main(["predict", str(scan), str(tmp_path / "o.nii.gz"), "--device", "cpu"]),
                  "million voxels")
    assert "voxel size in its header" in err and "134 million" in err
    assert not (tmp_path / "o.nii.gz").exists()
    # a folder: the scan's row says why, the batch goes on, and the exit status says one failed
    assert main(["predict", str(scan), str(tmp_path / "out"), "--device", "cpu"]) == 1
    assert "voxel size in its header" in (tmp_path / "out" / "volumes.csv").read_text()
    assert not (tmp_path / "out" / "coarse.nii.gz").exists()


def test_a_resampled_scan_larger_than_the_free_memory_is_refused(capsys, monkeypatch):
    from lasegtut import inference

    monkeypatch.setattr(inference, "available_memory", lambda: 100 * 2 ** 20)  # 100 MiB free
    with pytest.raises(data.LasegError, match="GB of memory"):
        inference.check_resampled_size((64, 64, 32), (10.0, 10.0, 10.96), (1.25, 1.25, 1.37))  # 2.4 GB
    inference.check_resampled_size((64, 64, 32), (1.25, 1.25, 1.37), (1.25, 1.25, 1.37))  # 10 MB: fits


@pytest.mark.parametrize("command", ["predict", "volume", "evaluate", "shape"])
@pytest.mark.parametrize("kind", ["complex", "rgb"])
def test_complex_or_colour_voxels_are_refused(tmp_path, capsys, command, kind):
    """Before: complex voxels lost their imaginary part with a numpy ComplexWarning on stderr (two
    more lines) and a binary-looking complex mask was measured; RGB was 'truncated or corrupt'."""
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:6, 2:6, 1:3] = 1
    if kind == "complex":
        arr, needle = mask.astype(np.complex64), "complex voxels (complex64)"
    else:
        arr = np.zeros(mask.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        arr["R"], needle = mask, "colour (RGB) voxels"
    bad = write_nifti(tmp_path / f"{kind}.nii.gz", arr)
    good = write_nifti(tmp_path / "good.nii.gz", mask)
    argv = {"predict": ["predict", str(bad), str(tmp_path / "o.nii.gz")], "volume": ["volume", str(bad)],
            "evaluate": ["evaluate", str(bad), str(good)], "shape": ["shape", str(bad)]}[command]
    refused(capsys, main(argv), needle)
    assert not (tmp_path / "o.nii.gz").exists()


# ----------------------------------------------------------------------------- headers nibabel would guess (section 1)
def _with_pixdim_zero(path: Path, array: np.ndarray) -> Path:
    """A .nii whose sform says 1.25 x 1.25 x 1.37 mm but whose pixdim is 0 (nibabel makes it 1 mm)."""
    img = nib.Nifti1Image(array, RAS)
    img.header.set_qform(RAS, code=1)
    nib.save(img, str(path))
    raw = bytearray(path.read_bytes())
    raw[80:92] = struct.pack("<3f", 0.0, 0.0, 0.0)  # pixdim[1:4]
    path.write_bytes(bytes(raw))
    return path


def test_pixdim_zero_is_refused_not_read_as_1_mm(tmp_path, capsys):
    """Before: exit 0 and a volume computed with 1 mm voxels (the issue's 70.5 mL instead of 151.0)."""
    mask = np.zeros((32, 32, 8), np.uint8)
    mask[8:24, 8:24, 2:6] = 1
    path = _with_pixdim_zero(tmp_path / "mask.nii", mask)
    refused(capsys, main(["volume", str(path)]), "no voxel size")
    scan = _with_pixdim_zero(tmp_path / "scan.nii", mask.astype(np.int16) * 500 + 10)
    refused(capsys, main(["predict", str(scan), str(tmp_path / "o.nii.gz")]), "no voxel size")
    assert not (tmp_path / "o.nii.gz").exists()


def _codes_zero(path: Path, array: np.ndarray) -> Path:
    img = nib.Nifti1Image(array, None)  # no affine: qform_code and sform_code 0
    img.header.set_zooms((1.25, 1.25, 1.37))
    nib.save(img, str(path))
    assert int(nib.load(str(path)).header["qform_code"]) == int(nib.load(str(path)).header["sform_code"]) == 0
    return path


def test_orientation_left_to_a_guess_is_refused_for_a_scan(tmp_path, capsys):
    """Before: exit 0, segmented in the mirrored layout nibabel guessed."""
    scan = _codes_zero(tmp_path / "scan.nii.gz", (np.random.default_rng(0).random((176, 176, 12)) * 1000).astype(np.int16))
    refused(capsys, main(["predict", str(scan), str(tmp_path / "o.nii.gz")]), "qform_code and sform_code are both 0")
    assert not (tmp_path / "o.nii.gz").exists()


def test_orientation_left_to_a_guess_is_one_warning_for_a_mask(tmp_path, capsys):
    """A mask's volume needs only its voxel size (pixdim): measured, with one warning line."""
    mask = np.zeros((48, 48, 12), np.uint8)
    mask[4:44, 4:44, 1:11] = 1  # 34 mL: a plausible atrium, so the guess is the only warning
    path = _codes_zero(tmp_path / "mask.nii.gz", mask)
    assert main(["volume", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and err.startswith("lasegtut volume: warning: "), err
    assert json.loads(out.strip().splitlines()[-1])["volume_ml"] == pytest.approx(mask.sum() * 1.25 * 1.25 * 1.37 / 1000, rel=1e-5)


def test_pixdim_that_contradicts_the_sform_isrefused(tmp_path, capsys):
    img = nib.Nifti1Image(np.ones((16, 16, 4), np.uint8), RAS)
    img.header.set_zooms((1.0, 1.0, 1.0))  # pixdim 1 mm, sform 1.25 x 1.25 x 1.37 mm
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(img.dataobj, RAS, img.header), str(path))
    refused(capsys, main(["volume", str(path)]), "contradicts itself")


# ----------------------------------------------------------------------------- broken folders and files
@pytest.mark.parametrize("entry", [{"label": "./labelsTr/la_014.nii.gz"}, "./imagesTr/la_014.nii.gz", {"image": 3, "label": "x"}])
@pytest.mark.parametrize("command", ["preprocess", "train"])
def test_dataset_json_entries_without_paths(tmp_path, capsys, entry, command):
    root = tmp_path / "data"
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps({"training": [entry]}))
    out = tmp_path / "out"
    argv = [command, "--data", str(root), "--out", str(out), "--quiet"] + (["--profile", "ci"] if command == "train" else [])
    refused(capsys, main(argv), "training entry 0")
    assert not out.exists()


@pytest.mark.parametrize("command", ["preprocess", "train", "demo"])
def test_out_pointing_at_a_file(tmp_path, capsys, command):
    target = tmp_path / "afile"
    target.write_text("precious")
    argv = {"preprocess": ["preprocess", "--out", str(target), "--quiet"],
            "train": ["train", "--profile", "ci", "--out", str(target), "--quiet"],
            "demo": ["demo", "--case", "la_020", "--out", str(target)]}[command]
    refused(capsys, main(argv), "is a file, not a folder")
    assert target.read_text() == "precious"


@pytest.mark.parametrize("index", [{"version": 1}, {"version": 1, "cases": ["la_009"]},
                                   {"version": 1, "cases": {"la_009": {"key": 1}}}, ["not", "a", "dict"]])
@pytest.mark.parametrize("command", ["preprocess", "train"])
def test_index_json_without_cases(tmp_path, capsys, index, command):
    out = tmp_path / "out"
    cache = out / "cache" if command == "train" else out
    cache.mkdir(parents=True)
    (cache / "index.json").write_text(json.dumps(index))
    argv = [command, "--out", str(out), "--quiet"] + (["--profile", "ci", "--epochs", "1"] if command == "train" else [])
    refused(capsys, main(argv), "index.json")
    assert sorted(p.name for p in cache.iterdir()) == ["index.json"]


def _damaged(payload: dict, field: str) -> dict:
    p = dict(payload)
    if field == "config":
        p["config"] = "nope"
    elif field == "input_size missing":
        del p["input_size"]
    elif field == "border":
        p["border"] = "x"
    elif field == "state_dict":
        p["state_dict"] = [1, 2]
    elif field == "huge widths":
        p["config"] = dict(p["config"], widths=[100000, 100000])
    elif field == "context":
        p["context"] = 3  # 7 input channels, the network has 5
    elif field == "input_size":
        p["input_size"] = 150  # not a multiple of 16 for a 5-level U-Net
    elif field == "unknown config key":
        p["config"] = dict(p["config"], extra=1)
    return p


@pytest.mark.parametrize("field", ["config", "input_size missing", "border", "state_dict", "huge widths",
                                   "context", "input_size", "unknown config key"])
def test_weights_with_the_right_format_key_but_bad_fields(tmp_path, capsys, field):
    good = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    w = tmp_path / "w.pt"
    torch.save(_damaged(good, field), w)
    refused(capsys, main(["predict", str(SCAN), str(tmp_path / "o.nii.gz"), "--weights", str(w)]), str(w))
    assert not (tmp_path / "o.nii.gz").exists()
    out = tmp_path / "run"
    refused(capsys, main(["train", "--profile", "cpu", "--init", str(w), "--out", str(out), "--quiet"]), str(w))
    assert not out.exists()


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize("setting", [["--epochs", "-1"], ["--epochs", "0"], ["--lr", "-1"], ["--lr", "nan"],
                                     ["--lr", "inf"], ["--max-minutes", "-1"], ["--max-minutes", "nan"]])
def test_bad_training_settings_are_one_line_before_any_work(tmp_path, capsys, setting):
    out = tmp_path / "run"
    refused(capsys, main(["train", "--profile", "ci", "--out", str(out), "--quiet", *setting]))
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["predict"], "the following arguments are required"),
    (["train", "--epochs", "x"], "invalid int value"),
    (["volume", "m.nii.gz", "--height-cm", "tall"], "invalid float value"),
    (["frobnicate"], "invalid choice"),
    (["assignments", "build"], "required"),
])
def test_argparse_errors_are_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lasegtut") and needle in err, err


# ----------------------------------------------------------------------------- notebooks with odd cells
@pytest.mark.parametrize("cells, needle", [
    ([{"cell_type": "code", "source": None, "metadata": {}}], "cell 1"),
    ([{"cell_type": "code", "source": 5, "metadata": {}}], "cell 1"),
    ([{"cell_type": "markdown", "source": ["a\n", None], "metadata": {}}], "cell 1"),
    ([{"cell_type": "code", "source": "x = 1", "metadata": {}}, "a string, not a cell"], "cell 2"),
    ([{"cell_type": "code", "source": "x = 1", "metadata": ["not", "a", "dict"]}], "cell 1"),
])
def test_assignments_build_with_odd_cells(tmp_path, capsys, cells, needle):
    src = tmp_path / "src"
    src.mkdir()
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (src / "01_odd.ipynb").write_text(json.dumps(nb))
    rc = main(["assignments", "build", str(tmp_path / "out"), "--source", str(src)])
    refused(capsys, rc, needle)
    assert not (tmp_path / "out").exists()


def test_assignments_build_with_odd_notebook_metadata(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "01_odd.ipynb").write_text(json.dumps({"cells": [], "metadata": [1], "nbformat": 4}))
    refused(capsys, main(["assignments", "build", str(tmp_path / "out"), "--source", str(src)]), "metadata")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("voxel_mm", [0.001, 0.05])
def test_a_scan_too_small_to_hold_an_atrium_is_refused_with_the_reason(tmp_path, capsys, voxel_mm):
    """320 x 320 x 100 voxels of 0.001 mm cover 0.3 mm: before, refused as 'no contrast' (the
    resampled grid was one voxel), the wrong reason."""
    arr = (np.random.default_rng(0).random((64, 64, 32)) * 1000).astype(np.int16)
    scan = write_nifti(tmp_path / "tiny.nii.gz", arr, np.diag([voxel_mm] * 3 + [1.0]))
    err = refused(capsys, main(["predict", str(scan), str(tmp_path / "o.nii.gz"), "--device", "cpu"]),
                  "too little to hold a left atrium")
    assert "voxel size in its header" in err and not (tmp_path / "o.nii.gz").exists()
