"""The shipped crop of the duplicated scan (la_005 / la_026) teaches the same lesson as the full scans."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLE
from lasegtut import data, paths
from lasegtut.metrics import evaluate_masks


def test_the_crop_is_one_image_with_two_labels(monkeypatch):
    monkeypatch.delenv(paths.DATA_DIR_VAR, raising=False)
    a, b, folder = data.duplicate_pair()
    assert folder == data.DUPLICATE_PAIR and (a.case_id, b.case_id) == data.DUPLICATE_CASES
    assert data.image_hash(a.image) == data.image_hash(b.image)
    assert a.spacing == b.spacing and np.allclose(a.affine, b.affine)
    assert not np.array_equal(a.label, b.label)
    # every voxel of both labels is inside the crop, away from its faces
    for lab in (a.label, b.label):
        idx = np.argwhere(lab)
        assert idx.min() >= 1 and (np.array(lab.shape) - 1 - idx.max(axis=0)).min() >= 1
    m = evaluate_masks(a.label, b.label, a.spacing)
    assert round(m["dice"], 3) == 0.927
    # the crop keeps its place in the scanner's world: the affine's corner is not the origin
    assert np.any(a.affine[:3, 3] != 0)
    # licence and provenance travel with the files
    readme = (data.DUPLICATE_PAIR / "README.md").read_text()
    assert "CC-BY-SA 4.0" in readme and "build.py" in readme
    meta = json.loads((data.DUPLICATE_PAIR / "dataset.json").read_text())
    assert meta["licence"] == "CC-BY-SA 4.0" and meta["numTraining"] == 2


def test_the_bundled_sample_falls_back_to_the_crop():
    _, _, folder = data.duplicate_pair(SAMPLE)
    assert folder == data.DUPLICATE_PAIR


def test_a_missing_data_folder_is_an_error(tmp_path):
    with pytest.raises(data.LasegError):
        data.duplicate_pair(tmp_path / "nowhere")


@pytest.mark.shared
def test_the_crop_scores_like_the_full_scans(shared_root):
    full_a, full_b, folder = data.duplicate_pair(shared_root)
    assert folder == shared_root
    crop_a, crop_b, _ = data.duplicate_pair(SAMPLE)
    assert evaluate_masks(crop_a.label, crop_b.label, crop_a.spacing) == pytest.approx(
        evaluate_masks(full_a.label, full_b.label, full_a.spacing), rel=1e-9)
    assert int(crop_a.label.sum()) == int(full_a.label.sum()) and int(crop_b.label.sum()) == int(full_b.label.sum())
