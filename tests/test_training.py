"""Training mechanics on the bundled sample (the ``ci`` profile): checkpoints, logs, resume, export."""
from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
import torch

from conftest import SAMPLE
from lasegtut.augment import RECIPE_AUGMENTATION, ROBUST_AUGMENTATION
from lasegtut.cli import main
from lasegtut.errors import LasegError
from lasegtut.inference import load_model
from lasegtut.training import PROFILES, choose_split, export_checkpoint, get_profile, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    result = train(SAMPLE, "ci", out, progress=False, max_epochs=1, limit_train_batches=4, limit_val_batches=3)
    return out, result


def test_outputs(run):
    out, result = run
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert (out / "tb").is_dir() and result.weights == out / "model.pt"
    rows = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    assert any(r.get("val_dice") for r in rows) and any(r.get("train_loss_step") for r in rows)
    # split by subject on the sample: one case held out, none shared
    assert len(result.val_cases) == 1 and not set(result.val_cases) & set(result.train_cases)


def test_exported_weights_load_safely(run):
    out, _ = run
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["format"] == "lasegtut-unet-v1" and payload["input_size"] == PROFILES["ci"].size
    model, info = load_model(out / "model.pt")
    assert info.geometry.border == 32
    x = torch.rand(1, model.config.in_channels, info.geometry.input_size, info.geometry.input_size)
    assert model(x).shape == (1, 1) + x.shape[2:]
    assert model.config == PROFILES["ci"].model_config() and info.geometry.context == PROFILES["ci"].context
    # a Lightning checkpoint loads too, with weights_only=True (nothing but tensors and plain data in it)
    load_model(out / "checkpoints" / "last.ckpt")
    torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    exported = export_checkpoint(out / "checkpoints" / "last.ckpt", out / "exported.pt")
    again, info_again = load_model(exported)
    assert again.config == model.config and info_again.geometry.context == info.geometry.context


def test_resume_continues_from_last_checkpoint(run):
    out, _ = run
    result = train(SAMPLE, "ci", out, progress=False, max_epochs=2, limit_train_batches=4, limit_val_batches=3)
    first = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    second = list(csv.DictReader(open(out / "logs" / "version_1" / "metrics.csv")))
    assert [int(r["epoch"]) for r in first if r.get("val_dice")] == [0]
    assert [int(r["epoch"]) for r in second if r.get("val_dice")] == [1]  # epoch 0 was not trained again
    assert result.epochs == 2


def test_resume_into_a_folder_of_another_recipe_is_one_line(run, tmp_path, capsys):
    """Issue 11: `train --profile cpu` into a folder whose last.ckpt a ci run left printed a 110-line
    size-mismatch traceback after preprocessing; now one line with the way out, before any work."""
    out, _ = run
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(out / "checkpoints" / "last.ckpt", other / "checkpoints" / "last.ckpt")
    rc = main(["train", "--data", str(SAMPLE), "--profile", "cpu", "--out", str(other), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "another recipe" in err and "--no-resume" in err and "another --out" in err
    assert sorted(p.name for p in other.iterdir()) == ["checkpoints"]  # no cache, no logs


def test_profiles():
    assert set(PROFILES) == {"ci", "cpu", "gpu"}
    gpu, cpu = get_profile("gpu"), get_profile("cpu")
    # the gpu recipe trains the shipped network on the same input, so its model runs as fast on a laptop
    assert gpu.model_config() == cpu.model_config() and gpu.geometry() == cpu.geometry()
    assert gpu.on_device and gpu.select == "last" and "16" in gpu.precision and gpu.epochs > 10 * cpu.epochs
    # notebook 04 shows augment.RECIPE_AUGMENTATION as the shipped recipe's augmentation (without importing torch)
    assert cpu.augment_config == RECIPE_AUGMENTATION  # the shipped model's, as notebooks 03-05 teach it
    assert gpu.augment_config == ROBUST_AUGMENTATION  # the candidate for the next GPU run (issue 24)
    with pytest.raises(LasegError, match="unknown profile"):
        get_profile("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LasegError, match="needs a CUDA GPU"):
            train(SAMPLE, "gpu", "unused")


@pytest.mark.shared
def test_full_data_split_uses_bundled_cases_for_validation(shared_root, tmp_path):
    from lasegtut.preprocess import write_cache

    write_cache(shared_root, tmp_path / "cache", progress=False)
    train_ids, val_ids = choose_split(tmp_path / "cache")
    assert val_ids == ["la_009", "la_014", "la_020"]
    assert len(train_ids) == 15 and {"la_005", "la_026"} <= set(train_ids)
    # grouped 5-fold cross-validation over all 18, the bundled cases included: the duplicate pair
    # is found by its image hash and validated in one fold
    vals = [choose_split(tmp_path / "cache", 5, k)[1] for k in range(5)]
    assert sorted(c for v in vals for c in v) == sorted(train_ids + val_ids)
    assert any({"la_005", "la_026"} <= set(v) for v in vals)


def test_last_checkpoint_is_the_last_epoch(tmp_path):
    """last.ckpt must follow every epoch, not only the epochs that improved the best score
    (with one all-background validation batch, val_dice stays 0 and never improves)."""
    train(SAMPLE, "ci", tmp_path, progress=False, max_epochs=3, limit_train_batches=2, limit_val_batches=1)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2


def test_init_from_weights(run, tmp_path):
    """Fine-tuning starts from given weights; weights of another shape are refused clearly."""
    out, _ = run
    result = train(SAMPLE, "ci", tmp_path / "ft", progress=False, max_epochs=1, limit_train_batches=1,
                   limit_val_batches=1, init=out / "model.pt", lr=0.0)
    start = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    tuned = torch.load(result.weights, weights_only=True)["state_dict"]
    conv = "down.0.0.weight"
    assert torch.equal(start[conv], tuned[conv])  # lr 0: the initial weights come through unchanged
    with pytest.raises(LasegError, match="network at"):
        train(SAMPLE, "cpu", tmp_path / "bad", progress=False, init=out / "model.pt")


def test_input_geometry_travels_with_the_weights(tmp_path):
    """A profile's 2.5D context and crop border reach the exported weights, so inference
    prepares a scan exactly as training did: 2 * context + 1 input channels, same crop."""
    import numpy as np

    from lasegtut.data import load_case
    from lasegtut.inference import predict_volume

    result = train(SAMPLE, "ci", tmp_path, progress=False, max_epochs=1, limit_train_batches=2,
                   limit_val_batches=1, context=2, context_stride=3, border=48)
    model, info = load_model(result.weights)
    assert model.config.in_channels == 5 and (info.geometry.context, info.geometry.context_stride) == (2, 3)
    assert info.geometry.border == 48 and info.geometry.input_size == PROFILES["ci"].size
    index = __import__("json").loads((tmp_path / "cache" / "index.json").read_text())
    assert all(e["key"]["border"] == 48 for e in index["cases"].values())  # trained on the same crop
    image = load_case(SAMPLE, "la_009").image
    with torch.no_grad():
        model.head.bias.fill_(100.0)  # "atrium everywhere": the mask then shows the crop
    mask = predict_volume(image, model, info, largest_cc=False)
    assert mask.shape == image.shape and mask[48:-48, 48:-48].all()
    assert mask.sum() == mask[48:-48, 48:-48].size
    assert get_profile("cpu").context == 2  # the shipped recipe is 2.5D


def test_slice_axis_trains_and_travels_with_the_weights(tmp_path):
    """slice_axis=0 trains on one (z, y) slice per x (square, z padded) and the axis travels
    with the weights, so inference slices a scan the same way."""
    from lasegtut.dataset import SliceDataset
    from lasegtut.preprocess import load_cached_case, reslice

    result = train(SAMPLE, "ci", tmp_path, progress=False, max_epochs=1, limit_train_batches=2,
                   limit_val_batches=1, border=80, size=None, slice_axis=0)
    _, info = load_model(result.weights)
    assert info.geometry.slice_axis == 0 and info.geometry.input_size == 160
    ds = SliceDataset(tmp_path / "cache", ["la_020"], context=1, context_stride=2, slice_axis=0)
    assert len(ds) == 160 and [x for _, x in ds.items] == list(range(160))  # one slice per x
    x = ds.items[80][1]
    image, mask, _ = ds[80]
    assert image.shape == (3, 160, 160) and mask.shape == (1, 160, 160)
    across0 = reslice(load_cached_case(tmp_path / "cache", "la_020")[1], 0)
    assert (mask[0].numpy() == across0[x]).all() and across0[x].any()
    assert get_profile("cpu").slice_axis == 0  # the shipped recipe slices across axis 0


# ----------------------------------------------------------------------------- cross-validation
@pytest.fixture(scope="module")
def cv_run(run, tmp_path_factory):
    """Fold 1 of a grouped 3-fold cross-validation of the three bundled cases (the ``run``
    fixture's cache, so nothing is preprocessed again; a few batches)."""
    out = tmp_path_factory.mktemp("cv") / "fold1"
    result = train(SAMPLE, "ci", out, cache=run[0] / "cache", progress=False, max_epochs=1,
                   limit_train_batches=2, limit_val_batches=1, folds=3, fold=1, select="last")
    return out, result


def test_cross_validation_fold_trains_on_the_other_folds(cv_run):
    out, result = cv_run
    split = json.loads((out / "split.json").read_text())
    assert split["folds"] == 3 and split["fold"] == 1
    assert split["val"] == split["fold_cases"][1] == result.val_cases and len(result.val_cases) == 1
    assert sorted(c for f in split["fold_cases"] for c in f) == ["la_009", "la_014", "la_020"]
    assert sorted(result.train_cases + result.val_cases) == ["la_009", "la_014", "la_020"]
    meta = torch.load(result.weights, weights_only=True)["meta"]
    assert meta["cv_fold"] == "1 of 3" and meta["selected"] == "last"  # `train --select last`: no epoch chosen on the fold
    assert f"fold 1: {result.val_cases[0]}  <- validation" in result.describe()


def test_cross_validation_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    for argv, why in ((["--fold", "0"], "5 folds need at least 5 labelled subjects, but only 3"),
                      (["--folds", "3", "--fold", "3"], "from 0 to 2"),
                      (["--folds", "3"], "give both")):
        rc = main(["train", "--data", str(SAMPLE), "--profile", "ci", "--out", str(tmp_path / "x"), "--quiet", *argv])
        err = capsys.readouterr().err.splitlines()
        assert rc == 2 and len(err) == 1 and why in err[0], err
        assert not (tmp_path / "x").exists()


def test_out_of_fold_predictions_of_a_run(cv_run, run, tmp_path, capsys):
    """The README's recipe on one fold: predict --held-out RUN segments exactly the cases the run
    held out, with the run's model (a ci model trained for two batches may find no atrium: its
    row then says so; folder evaluate's scoring is tested in test_stats.py and test_cohort.py)."""
    out, result = cv_run
    oof = tmp_path / "oof"
    rc = main(["predict", str(SAMPLE / "imagesTr"), str(oof), "--held-out", str(out), "--device", "cpu", "--json"])
    assert rc in (0, 1)
    with open(oof / "volumes.csv", newline="") as f:
        assert [r["case"] for r in csv.DictReader(f)] == result.val_cases
    assert {p.name for p in oof.glob("*.nii.gz")} <= {f"{c}.nii.gz" for c in result.val_cases}
    capsys.readouterr()
    # a scans folder without the held-out case, and a run that is not a cross-validation run
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(SAMPLE / "imagesTr" / f"{result.train_cases[0]}.nii.gz", other)
    for argv, why in (([str(other), str(tmp_path / "o2"), "--held-out", str(out)], "not among the scans given"),
                      ([str(SAMPLE / "imagesTr"), str(tmp_path / "o3"), "--held-out", str(run[0])],
                       "not a cross-validation run")):
        assert main(["predict", *argv]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and why in err[0], err
        assert not os.path.exists(argv[1])
