"""Splits are by subject, and identical images never straddle them."""
from __future__ import annotations

import pytest

from lasegtut.data import image_hash, load_case
from lasegtut.errors import LasegError
from lasegtut.split import describe_folds, fold_split, group_identical, kfold_cases, split_cases

IDS = [f"la_{i:03d}" for i in range(20)]
HASHES = {c: c for c in IDS} | {"la_005": "dup", "la_015": "dup"}


def test_group_identical():
    groups = group_identical(HASHES)
    assert ["la_005", "la_015"] in groups and len(groups) == 19


@pytest.mark.parametrize("seed", range(25))
def test_random_split_keeps_duplicates_together(seed):
    train, val = split_cases(IDS, HASHES, val_fraction=0.3, seed=seed)
    assert sorted(train + val) == IDS and not set(train) & set(val)
    assert ("la_005" in val) == ("la_015" in val)


def test_fixed_validation_pulls_in_the_duplicate():
    train, val = split_cases(IDS, HASHES, val_cases=["la_015", "la_001"])
    assert val == ["la_001", "la_005", "la_015"]
    assert "la_005" not in train


def test_split_errors():
    with pytest.raises(LasegError, match="not in the data set"):
        split_cases(IDS, HASHES, val_cases=["la_999"])
    with pytest.raises(LasegError, match="val_fraction"):
        split_cases(IDS, HASHES, val_fraction=1.5)


@pytest.mark.shared
def test_real_duplicate_la005_la026(shared_root):
    a, b = load_case(shared_root, "la_005"), load_case(shared_root, "la_026")
    assert image_hash(a.image) == image_hash(b.image)
    assert (a.label != b.label).any()  # same scan, two annotations
    ids = ["la_003", "la_005", "la_009", "la_026"]
    hashes = {"la_005": image_hash(a.image), "la_026": image_hash(b.image), "la_003": "x", "la_009": "y"}
    for seed in range(10):
        train, val = split_cases(ids, hashes, val_fraction=0.5, seed=seed)
        assert ("la_005" in val) == ("la_026" in val)
    real_ids = sorted(p.name[:-7] for p in (shared_root / "labelsTr").glob("la_*.nii.gz"))
    hashes = {c: c for c in real_ids} | {"la_005": hashes["la_005"], "la_026": hashes["la_026"]}
    for seed in range(5):
        assert any({"la_005", "la_026"} <= set(f) for f in kfold_cases(real_ids, hashes, 5, seed))


# ----------------------------------------------------------------------------- grouped k-fold
@pytest.mark.parametrize("n_folds", [2, 3, 5, 7, 10, 19])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kfold_is_disjoint_covering_balanced_and_keeps_duplicates_together(n_folds, seed):
    folds = kfold_cases(IDS, HASHES, n_folds, seed)
    assert len(folds) == n_folds and all(folds)
    flat = [c for f in folds for c in f]
    assert sorted(flat) == IDS and len(flat) == len(set(flat))  # every case in exactly one fold
    assert any({"la_005", "la_015"} <= set(f) for f in folds)  # the identical images share a fold
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert folds == kfold_cases(list(reversed(IDS)), dict(HASHES), n_folds, seed)  # deterministic


def test_kfold_folds_are_pinned():
    """The same folds on every machine and Python version (random.Random's shuffle): a
    cross-validation trained over several sessions must not change its folds half way."""
    assert kfold_cases(IDS, HASHES, 5) == [
        ["la_003", "la_005", "la_015", "la_016"], ["la_000", "la_008", "la_009", "la_018"],
        ["la_001", "la_004", "la_011", "la_017"], ["la_006", "la_010", "la_013", "la_014"],
        ["la_002", "la_007", "la_012", "la_019"]]


def test_fold_split_validates_each_case_exactly_once():
    seen = []
    for k in range(5):
        train, val, folds = fold_split(IDS, HASHES, 5, k)
        assert val == folds[k] and sorted(train + val) == IDS and not set(train) & set(val)
        assert ("la_005" in val) == ("la_015" in val)
        seen += val
    assert sorted(seen) == IDS
    text = describe_folds(folds, 2)
    assert "5-fold" in text and "fold 2: " + " ".join(folds[2]) + "  <- validation" in text


def test_kfold_errors():
    with pytest.raises(LasegError, match="at least 5 labelled subjects, but only 3"):
        kfold_cases(["la_009", "la_014", "la_020"], None, 5)
    with pytest.raises(LasegError, match="identical images counted once"):
        kfold_cases(["a", "b", "c"], {"a": "x", "b": "x", "c": "y"}, 3)
    with pytest.raises(LasegError, match=">= 2"):
        kfold_cases(IDS, HASHES, 1)
    with pytest.raises(LasegError, match="from 0 to 4"):
        fold_split(IDS, HASHES, 5, 5)
    with pytest.raises(LasegError, match="from 0 to 4"):
        fold_split(IDS, HASHES, 5, -1)
