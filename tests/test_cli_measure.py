"""Tests of `lasegtut evaluate` and `lasegtut volume`: JSON output and one-line user errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import BAD_NIFTI_KINDS, SAMPLE, bad_nifti, write_nifti
from lasegtut.cli import main
from lasegtut.metrics import evaluate_masks
from lasegtut.volume import sphere_mask, volume_ml

SAMPLE_LABEL = SAMPLE / "labelsTr" / "la_009.nii.gz"
SPACING = (1.25, 1.25, 1.37)
SHAPE = (40, 40, 36)
EVAL_KEYS = {"dice", "iou", "hd95_mm", "assd_mm", "nsd", "nsd_tolerance_mm", "volume_pred_ml", "volume_label_ml"}


def ball(radius_mm: float, center_mm=None) -> np.ndarray:
    return sphere_mask(SHAPE, SPACING, radius_mm, center_mm)


@pytest.fixture
def label_path(tmp_path) -> Path:
    return write_nifti(tmp_path / "label.nii.gz", ball(15.0))


@pytest.fixture
def pred_path(tmp_path) -> Path:
    return write_nifti(tmp_path / "pred.nii.gz", ball(14.0, center_mm=(26.0, 24.0, 24.0)))


def run(capsys, argv) -> tuple[int, list[str], list[str]]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out.splitlines(), cap.err.splitlines()


def assert_one_line_error(rc, err):
    assert rc == 2
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and "error" in err[0]


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_prints_metrics_and_json(capsys, pred_path, label_path):
    rc, out, err = run(capsys, ["evaluate", pred_path, label_path, "--json"])
    assert rc == 0 and err == []
    report = json.loads(out[-1])
    assert set(report) == EVAL_KEYS
    expected = evaluate_masks(ball(14.0, (26.0, 24.0, 24.0)), ball(15.0), SPACING)
    for k, v in expected.items():
        assert report[k] == pytest.approx(v)
    assert 0.5 < report["dice"] < 1.0 and report["hd95_mm"] > 0
    assert report["volume_label_ml"] == pytest.approx(volume_ml(ball(15.0), SPACING))
    assert report["volume_label_ml"] == pytest.approx(4 / 3 * math.pi * 15 ** 3 / 1000, rel=0.02)
    assert any(line.startswith("Dice ") for line in out)


def test_evaluate_reports_nsd_at_the_decathlon_tolerance_or_the_one_given(capsys, pred_path, label_path):
    from lasegtut.metrics import NSD_TOLERANCE_MM, nsd

    pred, label = ball(14.0, (26.0, 24.0, 24.0)), ball(15.0)
    rc, out, _ = run(capsys, ["evaluate", pred_path, label_path, "--json"])
    report = json.loads(out[-1])
    assert rc == 0 and report["nsd_tolerance_mm"] == NSD_TOLERANCE_MM == 4.0
    assert report["nsd"] == pytest.approx(nsd(pred, label, SPACING, 4.0))
    rc, out, _ = run(capsys, ["evaluate", pred_path, label_path, "--json", "--nsd-tolerance", "0.5"])
    tight = json.loads(out[-1])
    assert tight["nsd_tolerance_mm"] == 0.5 and tight["nsd"] == pytest.approx(nsd(pred, label, SPACING, 0.5))
    assert tight["nsd"] < report["nsd"]  # a tighter tolerance forgives less
    assert any("NSD" in line and "0.5 mm" in line for line in out)


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "four"])
def test_evaluate_bad_nsd_tolerance_is_one_line_exit_2(capsys, pred_path, label_path, bad):
    with pytest.raises(SystemExit) as e:  # argparse's exit, with the contract of every other error
        main(["evaluate", str(pred_path), str(label_path), f"--nsd-tolerance={bad}"])
    cap = capsys.readouterr()
    assert_one_line_error(e.value.code, cap.err.splitlines())
    assert "nsd-tolerance" in cap.err and cap.out == ""


def test_evaluate_without_json_prints_no_json(capsys, pred_path, label_path):
    rc, out, _ = run(capsys, ["evaluate", pred_path, label_path])
    assert rc == 0 and not out[-1].startswith("{")


def test_evaluate_empty_prediction_reports_a_miss_not_nan(capsys, tmp_path, label_path):
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.uint8))
    rc, out, _ = run(capsys, ["evaluate", empty, label_path, "--json"])
    assert rc == 0
    assert "NaN" not in out[-1]  # strict JSON
    report = json.loads(out[-1])
    assert report["dice"] == 0.0 and report["iou"] == 0.0
    assert report["hd95_mm"] is None and report["assd_mm"] is None  # inf is written as null
    assert report["volume_pred_ml"] == 0.0


def test_evaluate_real_label_against_itself(capsys):
    rc, out, _ = run(capsys, ["evaluate", SAMPLE_LABEL, SAMPLE_LABEL, "--json"])
    report = json.loads(out[-1])
    assert rc == 0 and report["dice"] == 1.0 and report["hd95_mm"] == 0.0
    assert report["volume_pred_ml"] == report["volume_label_ml"] > 20


@pytest.mark.parametrize("grid", ["shape", "spacing", "origin"])
def test_evaluate_refuses_masks_on_different_grids(capsys, tmp_path, label_path, grid):
    if grid == "shape":
        other = write_nifti(tmp_path / "other.nii.gz", np.zeros((40, 40, 30), np.uint8))
    elif grid == "spacing":
        other = write_nifti(tmp_path / "other.nii.gz", ball(15.0), spacing=(1.0, 1.0, 1.0))
    else:
        other = write_nifti(tmp_path / "other.nii.gz", ball(15.0), offset=(10.0, 0.0, 0.0))
    rc, _, err = run(capsys, ["evaluate", other, label_path])
    assert_one_line_error(rc, err)
    assert "different grids" in err[0]


# ----------------------------------------------------------------------------- bad input files
#: Broken masks (:func:`conftest.bad_nifti` of a ball): every one is one line, exit status 2.
BAD_INPUTS = [k for k in BAD_NIFTI_KINDS if k != "constant"]


@pytest.mark.parametrize("kind", BAD_INPUTS)
@pytest.mark.parametrize("position", ["pred", "label"])
def test_evaluate_bad_input_is_one_line_exit_2(capsys, tmp_path, label_path, kind, position):
    bad = bad_nifti(tmp_path / f"{kind}.nii.gz", kind, ball(15.0))
    argv = ["evaluate", bad, label_path] if position == "pred" else ["evaluate", label_path, bad]
    rc, out, err = run(capsys, argv)
    assert_one_line_error(rc, err)
    assert bad.name in err[0]
    assert not any(line.startswith("{") for line in out)


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_volume_bad_input_is_one_line_exit_2(capsys, tmp_path, kind):
    bad = bad_nifti(tmp_path / f"{kind}.nii.gz", kind, ball(15.0))
    rc, _, err = run(capsys, ["volume", bad, "--json"])
    assert_one_line_error(rc, err)
    assert bad.name in err[0]


# ----------------------------------------------------------------------------- volume
def test_volume_json(capsys, label_path):
    rc, out, err = run(capsys, ["volume", label_path, "--json"])
    assert rc == 0 and err == []
    report = json.loads(out[-1])
    assert set(report) == {"volume_ml"}
    assert report["volume_ml"] == pytest.approx(volume_ml(ball(15.0), SPACING))


def test_volume_of_an_implausible_mask_is_measured_with_a_warning(capsys, tmp_path):
    """A volume no adult atrium has (here a voxel size in the wrong unit: 1.25 m) is still measured,
    but said in one warning line; with a body size it is refused (not graded)."""
    mask = np.zeros((12, 12, 6), np.uint8)
    mask[4:8, 4:8, 2:4] = 1
    path = write_nifti(tmp_path / "metres.nii.gz", mask, spacing=(1250.0, 1250.0, 1370.0))
    rc, out, err = run(capsys, ["volume", path])
    assert rc == 0 and out[-1].startswith("left-atrium volume: 68500000.0 mL")
    assert len(err) == 1 and err[0].startswith("lasegtut volume: warning: ") and "outside any adult left atrium" in err[0]
    rc, _, err = run(capsys, ["volume", path, "--height-cm", "175", "--weight-kg", "70"])
    assert rc == 2 and "not graded" in err[0]


def test_volume_with_height_and_weight_gives_index_and_grade(capsys):
    rc, out, err = run(capsys, ["volume", SAMPLE_LABEL, "--height-cm", "175", "--weight-kg", "70", "--json"])
    assert rc == 0 and err == []
    report = json.loads(out[-1])
    assert set(report) == {"volume_ml", "bsa_m2", "lavi_ml_m2", "lavi_reported_ml_m2", "grade"}
    assert report["lavi_reported_ml_m2"] == round(report["lavi_ml_m2"])  # graded at whole mL/m^2
    assert report["bsa_m2"] == pytest.approx(math.sqrt(175 * 70 / 3600))
    assert report["lavi_ml_m2"] == pytest.approx(report["volume_ml"] / report["bsa_m2"])
    assert report["grade"] in {"normal", "mild", "moderate", "severe"}
    assert any("mL/m^2" in line for line in out)


@pytest.mark.parametrize("extra", [["--height-cm", "175"], ["--weight-kg", "70"]])
def test_volume_needs_both_height_and_weight(capsys, label_path, extra):
    rc, _, err = run(capsys, ["volume", label_path, *extra])
    assert_one_line_error(rc, err)
    assert "both" in err[0]


@pytest.mark.parametrize("height, weight", [("1.75", "70"), ("175", "0"), ("175", "-70"), ("175", "nan")])
def test_volume_rejects_implausible_height_or_weight(capsys, label_path, height, weight):
    rc, _, err = run(capsys, ["volume", label_path, "--height-cm", height, "--weight-kg", weight])
    assert_one_line_error(rc, err)


def test_evaluate_out_with_two_mask_files_is_refused_not_ignored(tmp_path, capsys):
    """Before: exit 0 and no table written, the --out option silently dropped."""
    from conftest import refused

    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:6, 2:6, 1:3] = 1
    a, b = write_nifti(tmp_path / "a.nii.gz", mask), write_nifti(tmp_path / "b.nii.gz", mask)
    refused(capsys, main(["evaluate", str(a), str(b), "--out", str(tmp_path / "scores.csv")]), "--out")
    assert not (tmp_path / "scores.csv").exists()
