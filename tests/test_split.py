"""Splits are by subject, and identical images never straddle them."""
from __future__ import annotations

import pytest

from lasegtut.data import image_hash, load_case
from lasegtut.errors import LasegError
from lasegtut.split import group_identical, split_cases

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
