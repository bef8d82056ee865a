"""The data layer: MSD folders, RAS orientation, data-root resolution and clear errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import SAMPLE, bad_nifti, write_nifti
from lasegtut import data, paths
from lasegtut.errors import LasegError
from lasegtut.preprocess import crop

# LA voxel counts from ../shared/data/msd-task02-heart/README.md
README_VOXELS = {"la_003": 45003, "la_004": 58475, "la_005": 58211, "la_007": 55444, "la_009": 47111,
                 "la_010": 37618, "la_011": 58455, "la_014": 68148, "la_016": 48256, "la_017": 37779,
                 "la_018": 40333, "la_019": 54279, "la_020": 32040, "la_021": 39164, "la_022": 33551,
                 "la_023": 43204, "la_024": 46490, "la_026": 53865}


def make_msd(root: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]], affine=None) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    entries = []
    for cid, (img, lab) in cases.items():
        write_nifti(root / "imagesTr" / f"{cid}.nii.gz", img, affine)
        write_nifti(root / "labelsTr" / f"{cid}.nii.gz", lab, affine)
        entries.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": "test", "training": entries}))
    return root


def test_sample_cases_load():
    ids = data.list_cases(SAMPLE)
    assert ids == ["la_009", "la_014", "la_020"] == list(data.VALIDATION_CASES)
    for cid in ids:
        case = data.load_case(SAMPLE, cid)
        assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
        assert case.image.shape == case.label.shape and case.image.shape[:2] == (320, 320)
        assert case.spacing == pytest.approx((1.25, 1.25, 1.37))
        assert nib.aff2axcodes(case.affine) == ("R", "A", "S")
        assert set(np.unique(case.label)) == {0, 1}
        assert int(case.label.sum()) == README_VOXELS[cid]


def test_sample_is_small_and_attributed():
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 40e6
    readme = (SAMPLE / "README.md").read_text()
    assert "CC-BY-SA 4.0" in readme and "Medical Segmentation Decathlon" in readme


@pytest.mark.shared
def test_every_shared_case_loads(shared_root):
    ids = data.list_cases(shared_root)
    assert len(ids) == 18
    for cid in ids:
        case = data.load_case(shared_root, cid)
        assert case.image.shape == case.label.shape
        assert int(case.label.sum()) == README_VOXELS[cid], cid


def test_lps_scan_is_brought_to_ras(tmp_path):
    """The same anatomy stored LPS (axes 0 and 1 reversed) loads to identical RAS arrays."""
    case = data.load_case(SAMPLE, "la_009")
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3] = case.image.shape[0] - 1
    flip[1, 3] = case.image.shape[1] - 1
    lps_affine = case.affine @ flip  # voxel (i, j) of the flipped array is voxel (n-1-i, n-1-j)
    img_lps = case.image[::-1, ::-1].astype(np.int16)
    lab_lps = case.label[::-1, ::-1]
    root = make_msd(tmp_path / "lps", {"la_009": (img_lps, lab_lps)}, lps_affine)
    assert nib.aff2axcodes(nib.load(str(root / "imagesTr/la_009.nii.gz")).affine) == ("L", "P", "S")
    again = data.load_case(root, "la_009")
    np.testing.assert_array_equal(again.image, case.image)
    np.testing.assert_array_equal(again.label, case.label)
    np.testing.assert_allclose(again.affine, case.affine, atol=1e-4)
    np.testing.assert_array_equal(crop(again.label), crop(case.label))


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_DIR_VAR, raising=False)
    assert data.resolve_data_dir(None) == data.BUNDLED_SAMPLE
    other = make_msd(tmp_path / "env", {"la_001": (np.random.rand(8, 8, 4).astype(np.float32),
                                                   np.zeros((8, 8, 4), np.uint8))})
    monkeypatch.setenv(paths.DATA_DIR_VAR, str(other))
    assert data.resolve_data_dir(None) == other
    assert data.resolve_data_dir(SAMPLE) == SAMPLE  # the argument wins
    # what `lasegtut download` leaves: DEST/Task02_Heart/
    shutil.copytree(other, tmp_path / "dest" / "Task02_Heart")
    assert data.resolve_data_dir(tmp_path / "dest") == tmp_path / "dest" / "Task02_Heart"


@pytest.mark.parametrize("stored,ok", [
    (np.uint8, [0, 1]), (np.int16, [0, 1]), (np.float32, [0.0, 1.0]), (np.float64, [0.0, 1.0]),
    (np.uint8, [0, 2]), (np.int16, [-1, 1]), (np.float32, [0.0, 0.5]), (np.float32, [1.0, np.nan]),
])
def test_label_values_checked_in_the_files_own_type(tmp_path, stored, ok):
    """A label is read in the type it is stored in (no float copy of a uint8 label), and any
    value other than 0 and 1 is refused whatever that type."""
    img = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    lab = np.zeros((8, 8, 4), stored)
    lab[2:4, 2:4, 1:3] = ok[1]
    lab[0, 0, 0] = ok[0]
    root = make_msd(tmp_path / "msd", {"la_001": (img, lab)})
    if all(v in (0, 1) for v in ok):
        case = data.load_case(root, "la_001")
        assert case.label.dtype == np.uint8 and int(case.label.sum()) == 8
    else:
        with pytest.raises(LasegError, match=r"label values .* outside \{0, 1\}"):
            data.load_case(root, "la_001")


@pytest.mark.parametrize("problem,message", [
    ("missing_folder", "does not exist"),
    ("no_json", "dataset.json is missing"),
    ("bad_json", "not valid JSON"),
    ("not_listed", "is not listed"),
    ("file_absent", "is listed in dataset.json but"),
    ("shape", "differs from image shape"),
    ("affine", "affine differs"),
    ("values", "outside {0, 1}"),
])
def test_clear_errors(tmp_path, problem, message):
    img = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    lab = np.zeros((8, 8, 4), np.uint8)
    lab[2:4, 2:4, 1:3] = 1
    root = make_msd(tmp_path / "msd", {"la_001": (img, lab)})
    cid = "la_001"
    if problem == "missing_folder":
        root = tmp_path / "nope"
    elif problem == "no_json":
        (root / "dataset.json").unlink()
    elif problem == "bad_json":
        (root / "dataset.json").write_text("{not json")
    elif problem == "not_listed":
        cid = "la_999"
    elif problem == "file_absent":
        (root / "labelsTr" / "la_001.nii.gz").unlink()
    elif problem == "shape":
        write_nifti(root / "labelsTr" / "la_001.nii.gz", np.zeros((8, 8, 5), np.uint8))
    elif problem == "affine":
        write_nifti(root / "labelsTr" / "la_001.nii.gz", lab, np.diag([1.0, 1.0, 1.0, 1.0]))
    elif problem == "values":
        write_nifti(root / "labelsTr" / "la_001.nii.gz", lab * 2)
    with pytest.raises(LasegError, match=message.replace("{", r"\{").replace("}", r"\}")) as e:
        data.load_case(root, cid)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("problem,message", [
    ("missing", "does not exist"), ("text", "not a readable NIfTI"), ("truncated", "truncated or corrupt"),
    ("2D", "2D"), ("4D", "4D"), ("NaN", "NaN"), ("constant", "no contrast"),
])
def test_load_image_rejects_bad_input(tmp_path, problem, message):
    good = np.random.default_rng(1).random((16, 16, 8)).astype(np.float32)
    p = bad_nifti(tmp_path / "scan.nii.gz", problem, good)
    with pytest.raises(LasegError, match=message):
        data.load_image(p)


def test_image_hash_finds_identical_voxels():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert data.image_hash(a) == data.image_hash(a.copy())
    b = a.copy()
    b[0, 0, 0] += 1
    assert data.image_hash(a) != data.image_hash(b)
    assert data.image_hash(a) != data.image_hash(a.reshape(3, 2, 4))


def test_image_hash_is_the_sha1_of_shape_and_float32_bytes():
    """The definition stays put (caches and splits store these hashes) whatever the array's
    layout or type; it is computed plane by plane, without a copy of the volume."""
    import hashlib

    for a in (np.arange(60, dtype=np.int16).reshape(3, 4, 5).transpose(2, 0, 1)[:, ::-1],
              np.random.default_rng(1).random((4, 3, 2)), np.float32(2.5), np.arange(3.0)):
        c = np.ascontiguousarray(a, dtype=np.float32)
        assert data.image_hash(a) == hashlib.sha1(str(c.shape).encode() + c.tobytes()).hexdigest()
