"""Bootstrap intervals over cases (lasegtut.stats) and folder evaluate's report of them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import write_nifti
from lasegtut.cli import main
from lasegtut.errors import LasegError
from lasegtut.stats import FEW_CASES, N_RESAMPLES, bootstrap_ci


def test_interval_of_two_values_by_hand():
    """Means of resamples of [0, 1]: 0, 0.5 and 1 with probabilities 1/4, 1/2, 1/4, so the 2.5th
    percentile is 0 and the 97.5th is 1."""
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.8] * 5) == (0.8, 0.8)


def test_fixed_seed_gives_the_same_interval_and_it_holds_the_mean():
    v = np.random.default_rng(3).normal(0.88, 0.04, 12)
    lo, hi = bootstrap_ci(v)
    assert (lo, hi) == bootstrap_ci(list(v)) and lo < v.mean() < hi
    assert bootstrap_ci(v, seed=1) != (lo, hi)  # the seed is what fixes it
    lo90, hi90 = bootstrap_ci(v, confidence=0.9)
    assert lo < lo90 < hi90 < hi


def test_agrees_with_scipys_percentile_bootstrap():
    stats = pytest.importorskip("scipy.stats")
    v = np.random.default_rng(5).normal(0.9, 0.03, 15)
    ref = stats.bootstrap((v,), np.mean, method="percentile", n_resamples=N_RESAMPLES, random_state=0,
                          confidence_level=0.95).confidence_interval
    lo, hi = bootstrap_ci(v)
    width = ref.high - ref.low
    assert lo == pytest.approx(ref.low, abs=0.03 * width) and hi == pytest.approx(ref.high, abs=0.03 * width)


def test_a_missed_atrium_reaches_inf_and_a_nan_gives_no_interval():
    hd = [5.0, 6.0, 4.5, 7.0, 5.5, 6.5, 5.2, 4.8, 6.1, math.inf]
    lo, hi = bootstrap_ci(hd)
    assert hi == math.inf and 4.5 < lo < 7.0  # ~35% of the resamples miss the failed case
    assert bootstrap_ci([1.0, math.inf]) == (1.0, math.inf)
    assert all(math.isnan(x) for x in bootstrap_ci([1.0, float("nan")]))


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"n_resamples": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(LasegError):
        bootstrap_ci([1.0, 2.0], **kwargs)
    with pytest.raises(LasegError, match="no values"):
        bootstrap_ci([])


def masks_folders(tmp_path, n: int):
    """n cases: a label box and a prediction shifted by 0..2 voxels (different scores per case)."""
    for folder in ("masks", "labels"):
        (tmp_path / folder).mkdir()
    for i in range(n):
        label = np.zeros((14, 14, 10), np.uint8)
        label[3:10, 3:10, 2:8] = 1
        pred = np.roll(label, i % 3, axis=0)
        write_nifti(tmp_path / "labels" / f"c{i:02d}.nii.gz", label)
        write_nifti(tmp_path / "masks" / f"c{i:02d}.nii.gz", pred)
    return tmp_path / "masks", tmp_path / "labels"


@pytest.mark.parametrize("n", [3, FEW_CASES])
def test_folder_evaluate_reports_intervals_and_says_when_there_are_too_few_cases(tmp_path, capsys, n):
    masks, labels = masks_folders(tmp_path, n)
    assert main(["evaluate", str(masks), str(labels), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])["summary"]
    dice = [r["dice"] for r in json.loads(out[-1])["cases"]]
    for key in ("dice", "iou", "nsd", "hd95_mm", "assd_mm", "volume_error_pct"):
        lo, hi = summary[key]["ci95"]
        assert lo <= summary[key]["mean"] <= hi, key
    assert summary["dice"]["ci95"] == list(bootstrap_ci(dice))
    assert summary["bootstrap"] == {"cases": n, "resamples": N_RESAMPLES, "seed": 0, "confidence": 0.95,
                                    "method": "percentile bootstrap of the mean over cases"}
    assert summary["nsd_tolerance_mm"] == 4.0 and len(summary["mean_abs_volume_error_pct_ci95"]) == 2
    text = "\n".join(out[:-1])
    assert f"{N_RESAMPLES} resamples" in text and "95% CI [" in text
    assert ("means little" in text) == (n < FEW_CASES)
