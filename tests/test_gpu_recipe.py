"""The GPU recipe, proven on the CPU: the data path it uses, the time budget, and the whole
``benchmarks/gpu_train.py`` script end to end with a tiny network."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from lasegtut.dataset import DeviceSlices, SliceDataset
from lasegtut.pack import write_pack
from lasegtut.preprocess import write_cache
from lasegtut.training import TimeBudget, get_profile, train

from conftest import REPO, SAMPLE
from test_pack import make_msd


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    write_cache(SAMPLE, out, cases=["la_009", "la_014"], border=80, progress=False)
    return out


@pytest.mark.parametrize("axis", [0, 2])
def test_device_slices_give_the_datasets_own_items(cache, axis):
    ds = SliceDataset(cache, ["la_009", "la_014"], context=2, context_stride=2, slice_axis=axis,
                      empty_fraction=0.3, seed=1)
    dev = DeviceSlices(ds)
    assert len(dev) == len(ds)
    idx = torch.tensor([0, 5, len(ds) // 2, len(ds) - 1])
    image, mask, case = dev.batch(idx)
    for j, i in enumerate(idx.tolist()):
        x, y, c = ds[i]
        torch.testing.assert_close(image[j], x, atol=0, rtol=0)
        assert torch.equal(mask[j], y) and case[j].item() == c


def test_on_device_training_exports_the_last_epoch(tmp_path):
    # val_every beyond the run's length (the gpu profile's 10 in notebook 05's 2-epoch quick run,
    # which then had no validation Dice and no checkpoint to export on a GPU): still validated once
    prof = replace(get_profile("ci"), on_device=True, select="last", epochs=2, val_every=10)
    result = train(SAMPLE, prof, tmp_path / "run", progress=False)
    assert result.best_val_dice is not None and result.best_checkpoint is not None
    from lasegtut.inference import load_model

    _, info = load_model(result.weights)
    assert info.meta["selected"] == "last" and info.meta["epochs"] == 2
    assert info.meta["train_slices"] > 0


def test_time_budget_shortens_a_run_and_its_schedule(tmp_path):
    prof = replace(get_profile("ci"), epochs=40, limit_train_batches=2, limit_val_batches=1, val_every=50)
    result = train(SAMPLE, prof, tmp_path / "run", progress=False, max_minutes=1e-4)
    assert result.epochs == 6  # planned after 5 epochs: the budget is spent, one more epoch at least
    with pytest.raises(Exception, match="positive number of minutes"):
        TimeBudget(0)


def test_time_budget_counts_the_epochs_of_a_resumed_fit_from_its_start():
    # a run resumed at epoch 10 with an ample budget: its first planned epochs must not read the
    # time since an unset warm-up mark (which once cut it to one more epoch)
    from types import SimpleNamespace

    budget = TimeBudget(60.0)
    trainer = SimpleNamespace(current_epoch=10, fit_loop=SimpleNamespace(max_epochs=40), lr_scheduler_configs=[])
    module = SimpleNamespace(hparams=SimpleNamespace(epochs=40))
    budget.on_train_start(trainer, module)
    for epoch in range(10, 20):
        trainer.current_epoch = epoch
        budget.on_train_epoch_end(trainer, module)
    assert trainer.fit_loop.max_epochs == 40 and module.hparams.epochs == 40


def test_gpu_script_end_to_end_on_cpu(tmp_path):
    """Pack -> unpack -> two views trained in parallel processes -> scores -> figures.json."""
    data = make_msd(tmp_path / "msd", SAMPLE, {"la_901": "la_009", "la_902": "la_020"}, mirror=True)
    pack = write_pack(data, tmp_path / "pack.npz.xz", progress=False).path
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_train.py"), "--pack", str(pack),
                           "--out", str(out), "--views", "0", "2", "--tiny"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    fig = json.loads((out / "figures.json").read_text())
    assert set(fig["views"]) == {"axis0", "axis2"} and "average_of_views" in fig
    for v in fig["views"].values():
        assert set(v["cases"]) == {"la_009", "la_014", "la_020"}
        assert v["train"]["epochs"] == 2 and v["train_slices_per_s"] > 0
    assert fig["predict_seconds_la_014"]["one_view"] > 0
    from lasegtut.inference import load_model

    for axis in (0, 2):
        _, info = load_model(out / f"model_axis{axis}.pt")
        assert info.geometry.slice_axis == axis
        assert info.meta["train_cases"] == "la_901,la_902"  # the pack's cases, validated on the bundled ones


def test_gpu_script_refuses_without_a_gpu_or_a_pack(tmp_path):
    script = str(REPO / "benchmarks" / "gpu_train.py")
    proc = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--pack" in proc.stderr
    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, script, "--out", str(tmp_path), "--pack", "x"],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr


def test_data_loader_workers_follow_the_cpus_available(monkeypatch, tmp_path):
    """A profile asking for more workers than the machine has cores gets cores - 1 (Colab: 2 vCPUs)."""
    import lasegtut.training as training

    seen = {}
    real = training.datamodule

    def spy(prof, *a, **k):
        seen["workers"] = prof.num_workers
        return real(prof, *a, **k)

    monkeypatch.setattr(training, "available_cpus", lambda: 2)
    monkeypatch.setattr(training, "datamodule", spy)
    prof = replace(get_profile("ci"), num_workers=4, epochs=1, limit_train_batches=1, limit_val_batches=1)
    train(SAMPLE, prof, tmp_path / "run", progress=False)
    assert seen["workers"] == 1
