"""lasegtut.crossval: an arm of an experiment under grouped cross-validation (notebook 09), the paired
comparison of two arms, published anchors, the two experts' disagreement, and the out-of-fold results files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lasegtut.crossval import (ANCHORS, OOF_COLUMNS, TINY, against_anchor, compare_arms, expert_agreement,
                               read_oof_results, run_arm, split_changes, write_oof_results)
from lasegtut.data import duplicate_pair
from lasegtut.errors import LasegError
from lasegtut.evaluation import summarize_scores
from lasegtut.metrics import score_masks
from lasegtut.paths import BENCHMARK_RESULTS, BUNDLED_SAMPLE
from lasegtut.stats import bootstrap_ci


def test_changes_split_into_training_and_prediction():
    train, predict = split_changes({"slice_axis": 2, "context": 0, "threshold": 0.4, "tta": True})
    assert train == {"slice_axis": 2, "context": 0} and predict == {"threshold": 0.4, "tta": True}
    with pytest.raises(LasegError, match="cannot change 'learning_rate'"):
        split_changes({"learning_rate": 1e-3})


def test_paired_comparison_is_distinguishable_only_when_its_interval_excludes_zero():
    base = {"a": 0.80, "b": 0.90, "c": 0.70, "d": 0.85}
    better = {k: v + 0.01 for k, v in base.items()}  # every case 0.01 better: tiny, but consistent
    out = compare_arms(base, better)
    assert out["cases"] == 4 and out["mean_difference"] == pytest.approx(0.01)
    assert out["ci95"] == pytest.approx([0.01, 0.01]) and out["distinguishable"]
    mixed = {"a": 0.85, "b": 0.85, "c": 0.75, "d": 0.80}  # two better, two worse
    out = compare_arms(base, mixed, "dice")
    assert out["ci95"][0] < 0 < out["ci95"][1] and not out["distinguishable"]
    assert out["ci95"] == pytest.approx(list(bootstrap_ci([mixed[c] - base[c] for c in sorted(base)])))
    with pytest.raises(LasegError, match="different cases"):
        compare_arms(base, {"a": 0.8})


def test_anchor_against_an_interval():
    assert against_anchor([0.85, 0.90], ANCHORS["nnU-Net 3d_fullres"]) == "above"
    assert against_anchor([0.88, 0.92], ANCHORS["nnU-Net 2d"]) == "inside"
    assert against_anchor([0.95, 0.97], 0.933) == "below"
    assert ANCHORS == {"nnU-Net 2d": 0.910, "nnU-Net 3d_fullres": 0.933}


def test_summarize_scores_means_intervals_and_worst_case():
    rows = [{"case": "x", "dice": 0.9, "volume_error_pct": -10.0}, {"case": "y", "dice": 0.7, "volume_error_pct": 4.0},
            {"case": "z", "dice": 0.8, "volume_error_pct": 2.0}]
    s = summarize_scores(rows, ("dice", "volume_error_pct"))
    assert s["dice"]["mean"] == pytest.approx(0.8) and s["dice"]["worst"] == "y"
    assert s["dice"]["ci95"] == list(bootstrap_ci([0.9, 0.7, 0.8]))
    assert s["volume_error_pct"]["worst"] == "x"  # the largest absolute error
    assert s["mean_abs_volume_error_pct"] == pytest.approx(16 / 3) and s["bootstrap"]["cases"] == 3
    with pytest.raises(LasegError):
        summarize_scores([])


def test_expert_agreement_is_the_duplicate_pairs_scores():
    got = expert_agreement()
    a, b, _ = duplicate_pair()
    ref = score_masks(a.label, b.label, b.spacing)
    assert got["cases"] == ["la_005", "la_026"]
    for k, v in ref.items():
        assert got[k] == pytest.approx(v)
    assert got["volume_diff_ml"] == pytest.approx(ref["volume_pred_ml"] - ref["volume_label_ml"])
    assert round(got["dice"], 3) == 0.927 and round(got["volume_diff_ml"], 1) == 9.3  # as notebook 06 prints


def test_oof_results_round_trip_with_a_missed_atrium(tmp_path):
    rows = [{"case": "la_003", "fold": 0, "dice": 0.91, "nsd": 0.95, "hd95_mm": 4.5, "assd_mm": 1.2, "iou": 0.83,
             "volume_pred_ml": 101.0, "volume_label_ml": 100.0, "volume_error_pct": 1.0},
            {"case": "la_004", "fold": 1, "dice": 0.0, "nsd": 0.0, "hd95_mm": math.inf, "assd_mm": math.inf, "iou": 0.0,
             "volume_pred_ml": 0.0, "volume_label_ml": 80.0, "volume_error_pct": -100.0}]
    csv_path, json_path = write_oof_results(tmp_path / "r" / "oof.csv", rows, {"recipe": "x", "worst": math.inf})
    assert csv_path.read_text().splitlines()[0] == ",".join(OOF_COLUMNS)
    back, meta = read_oof_results(csv_path)
    assert back == rows and meta == {"recipe": "x", "worst": None}  # inf kept in the table, null in JSON
    assert json.loads(json_path.read_text())["recipe"] == "x"
    with pytest.raises(LasegError, match=".csv"):
        write_oof_results(tmp_path / "oof.txt", rows, {})
    (tmp_path / "bad.csv").write_text("case,dice\nx,1\n")
    with pytest.raises(LasegError, match="not an out-of-fold results table"):
        read_oof_results(tmp_path / "bad.csv")


def test_committed_oof_results_are_readable():
    """Notebook 09 reads the committed out-of-fold table: every file under benchmarks/results named
    oof_*.csv has its columns, one row per case, and a description beside it."""
    for path in sorted(BENCHMARK_RESULTS.glob("oof_*.csv")):
        rows, meta = read_oof_results(path)
        assert len({r["case"] for r in rows}) == len(rows) == meta["cases"]
        assert {"recipe", "date", "command", "summary", "bland_altman_ml", "experts"} <= set(meta)


def test_an_arm_runs_every_fold_and_scores_each_case_once(tmp_path):
    """The tiny arm of notebook 09 on the bundled cases (3 folds, one batch each: the figures mean
    nothing): every case is scored once, by the fold that held it out, with the last epoch exported."""
    import torch

    arm = run_arm("tiny", {**TINY, "limit_train_batches": 1, "limit_val_batches": 1, "threshold": 0.5},
                  data=BUNDLED_SAMPLE, folds=3, out=tmp_path)
    assert sorted(r["case"] for r in arm.rows) == ["la_009", "la_014", "la_020"]
    assert sorted(c for f in arm.folds for c in f) == ["la_009", "la_014", "la_020"]
    for r in arm.rows:
        assert [r["case"]] == arm.folds[r["fold"]]
        assert set(OOF_COLUMNS) <= set(r)
    for k, run in enumerate(arm.runs):
        meta = torch.load(run / "model.pt", weights_only=True)["meta"]
        assert meta["cv_fold"] == f"{k} of 3" and meta["selected"] == "last"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("cache")] == ["cache-border32"]
    text = arm.describe()
    assert "3 cases out of fold, 3 folds" in text and "means little" in text and "NSD @4 mm" in text
    assert np.isfinite(arm.summary["dice"]["mean"])
    with pytest.raises(LasegError, match="folder name"):
        run_arm("../x", TINY, data=BUNDLED_SAMPLE, out=tmp_path)


def test_fold_diagram_marks_each_case_held_out_once():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lasegtut.plots import fold_diagram

    folds = [["la_003", "la_005", "la_026"], ["la_004"], ["la_007"]]
    fig, ax = plt.subplots()
    fold_diagram(ax, folds)
    grid = np.asarray(ax.images[0].get_array())
    assert grid.shape == (3, 5) and (grid == 1.0).sum(axis=0).tolist() == [1] * 5  # one run holds out each case
    assert (grid[0, :3] == 1.0).all() and [t.get_text() for t in ax.get_xticklabels()][:3] == folds[0]
    plt.close(fig)
