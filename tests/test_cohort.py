"""Many scans at once: a folder in, masks and volumes.csv out; safe to rerun; bad scans reported."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import SAMPLE
from lasegtut.cli import main


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    scans = tmp / "scans"
    scans.mkdir()
    for c in ("la_009", "la_020"):
        shutil.copy(SAMPLE / "imagesTr" / f"{c}.nii.gz", scans / f"{c}.nii.gz")
    (scans / "broken.nii.gz").write_bytes(b"not a nifti file")
    (tmp / "body.csv").write_text("case,height_cm,weight_kg\nla_009,170,70\nla_020,182,95\n")
    out = tmp / "out"
    rc = main(["predict", str(scans), str(out), "--body-sizes", str(tmp / "body.csv"), "--device", "cpu"])
    return tmp, scans, out, rc


def read(table):
    with open(table, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def test_folder_gives_masks_and_a_table_and_goes_on_after_a_bad_scan(cohort, capsys):
    tmp, scans, out, rc = cohort
    assert rc == 1  # every scan tried, and the exit status tells a script that one failed
    rows = read(out / "volumes.csv")
    assert set(rows) == {"la_009", "la_020", "broken"}
    assert rows["broken"]["status"].startswith("error:") and not (out / "broken.nii.gz").exists()
    for c in ("la_009", "la_020"):
        r = rows[c]
        assert r["status"] == "ok" and (out / f"{c}.nii.gz").is_file()
        assert 40 < float(r["volume_ml"]) < 200 and float(r["bsa_m2"]) > 1.5 and r["grade"]
    assert not list(out.glob(".*tmp"))  # no temporaries left


def test_rerun_skips_what_is_done_and_redoes_the_rest(cohort):
    tmp, scans, out, _ = cohort
    before = (out / "la_009.nii.gz").stat().st_mtime_ns
    (out / "la_020.nii.gz").unlink()  # as if the run had been interrupted before this mask
    assert main(["predict", str(scans), str(out), "--device", "cpu", "--json"]) == 1  # broken: tried again
    assert (out / "la_009.nii.gz").stat().st_mtime_ns == before  # skipped
    assert (out / "la_020.nii.gz").is_file() and read(out / "volumes.csv")["la_020"]["status"] == "ok"


def test_evaluate_folders_matches_single_evaluations(cohort, capsys):
    tmp, scans, out, _ = cohort
    labels = tmp / "labels"
    labels.mkdir()
    masks = tmp / "masks"
    masks.mkdir()
    for c in ("la_009", "la_020"):
        shutil.copy(SAMPLE / "labelsTr" / f"{c}.nii.gz", labels / f"{c}.nii.gz")
        shutil.copy(out / f"{c}.nii.gz", masks / f"{c}.nii.gz")
    capsys.readouterr()
    assert main(["evaluate", str(masks), str(labels), "--out", str(tmp / "scores.csv"), "--json"]) == 0
    folder = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", str(masks / "la_009.nii.gz"), str(labels / "la_009.nii.gz"), "--json"]) == 0
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = next(r for r in folder["cases"] if r["case"] == "la_009")
    assert row["dice"] == pytest.approx(single["dice"]) and row["hd95_mm"] == pytest.approx(single["hd95_mm"])
    assert folder["summary"]["dice"]["mean"] == pytest.approx(sum(r["dice"] for r in folder["cases"]) / 2)
    assert set(read(tmp / "scores.csv")) == {"la_009", "la_020"}


def test_evaluate_folders_json_is_strict_json_with_an_empty_mask(tmp_path, capsys):
    """An empty label has no surface distance and no volume error: before, the folder's --json line
    held Infinity and NaN (not JSON; strict parsers refuse it) and numpy printed a RuntimeWarning
    (two lines on stderr). Now they are null, as for one pair of masks."""
    import numpy as np

    from conftest import write_nifti

    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:6, 2:6, 1:3] = 1
    for folder in ("masks", "labels"):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "b.nii.gz", mask)
    write_nifti(tmp_path / "masks" / "a.nii.gz", mask)
    write_nifti(tmp_path / "labels" / "a.nii.gz", np.zeros_like(mask))
    assert main(["evaluate", str(tmp_path / "masks"), str(tmp_path / "labels"), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")
    result = json.loads(captured.out.strip().splitlines()[-1], parse_constant=no_constant)
    a = next(r for r in result["cases"] if r["case"] == "a")
    assert a["hd95_mm"] is None and a["assd_mm"] is None and a["volume_error_pct"] is None
    assert result["summary"]["hd95_mm"]["mean"] is None and result["summary"]["hd95_mm"]["worst"] == "a"
    assert result["summary"]["dice"]["mean"] == pytest.approx(0.5)


@pytest.mark.parametrize("lines, needle", [
    ("la_009,170,70\nla_009,182,95\n", "line 3: case la_009 is given twice"),
    ("la_009,1.70,70\n", "line 2 (la_009): height 1.7 cm is not plausible"),
    ("la_009,170,700000\n", "weight 700000.0 kg is not plausible")])
def test_body_sizes_are_checked_before_any_scan(tmp_path, capsys, no_voxels_read, lines, needle):
    """Before: a case given twice silently took its last line (another patient's index and grade);
    a height in metres was found only after the scan was segmented and its mask written (row 'error')."""
    from conftest import refused

    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(SAMPLE / "imagesTr" / "la_009.nii.gz", scans / "la_009.nii.gz")
    (tmp_path / "body.csv").write_text("case,height_cm,weight_kg\n" + lines)
    refused(capsys, main(["predict", str(scans), str(tmp_path / "out"), "--body-sizes", str(tmp_path / "body.csv"),
                          "--device", "cpu"]), needle)
    assert not (tmp_path / "out").exists()


def test_output_folder_may_not_be_the_scans_folder(cohort, capsys):
    tmp, scans, out, _ = cohort
    assert main(["predict", str(scans), str(scans)]) == 2
    assert "replace them" in capsys.readouterr().err
    assert sorted(p.name for p in scans.iterdir()) == ["broken.nii.gz", "la_009.nii.gz", "la_020.nii.gz"]


def test_an_implausible_volume_is_reported_and_never_graded(tmp_path, monkeypatch):
    """A mask far smaller than any adult atrium is written but flagged, one scan or a folder, and
    the folder's table gives it no volume index or grade even with the patient's body size."""
    import numpy as np

    from lasegtut import inference

    def speck(image, *a, **k):
        mask = np.zeros(image.shape, np.uint8)
        mask[150:152, 150:152, 50:52] = 1  # 8 voxels: 0.02 mL
        return (mask, mask.astype(np.float32)) if k.get("return_probability") else mask

    monkeypatch.setattr(inference, "predict_volume", speck)
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(SAMPLE / "imagesTr" / "la_009.nii.gz", scans / "la_009.nii.gz")
    report = inference.predict_file(scans / "la_009.nii.gz", tmp_path / "one.nii.gz", device="cpu")
    assert report["status"].startswith("implausible: 0.0 mL is outside any adult left atrium")
    assert report["qc"] == "review"  # however sure the model was
    assert (tmp_path / "one.nii.gz").is_file()
    (tmp_path / "body.csv").write_text("case,height_cm,weight_kg\nla_009,170,70\n")
    out = tmp_path / "out"
    assert main(["predict", str(scans), str(out), "--body-sizes", str(tmp_path / "body.csv"), "--device", "cpu"]) == 0
    row = read(out / "volumes.csv")["la_009"]
    assert row["status"].startswith("implausible:") and not row.get("grade") and not row.get("lavi_ml_m2")
    assert row["qc"] == "review"


def test_plausible_range():
    from lasegtut.volume import implausible

    assert implausible(145.9) is None and implausible(10.0) is None and implausible(400.0) is None
    assert "outside any adult left atrium (10-400 mL)" in implausible(9.9)
    assert implausible(401.0).startswith("401.0 mL")
