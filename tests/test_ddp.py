"""Training in several processes with Lightning's DDP, for real, on the CPU: 2 processes (gloo).

Lightning's ``ddp`` launcher starts the extra process by running the same command again, so the
run is a script in a subprocess (not pytest itself). What was not run: several GPUs, several nodes.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import SAMPLE
from lasegtut.dataset import SliceDataset
from lasegtut.inference import load_model
from lasegtut.model import UNet
from lasegtut.training import PROFILES, LitSegmenter
from lasegtut.weightsfile import export_weights

SCRIPT = textwrap.dedent('''
    import sys
    from lasegtut.training import is_primary_process, train
    data, out, init = sys.argv[1:4]
    result = train(data, "ci", out, progress=False, max_epochs=1, limit_train_batches=2, limit_val_batches=1.0,
                   devices=2, strategy="ddp", init=init, lr=0.0)
    if is_primary_process():
        print("VAL_CASES", ",".join(result.val_cases))
''')


@pytest.mark.slow  # two Python processes importing torch and Lightning: about a minute on a 2-core CPU
def test_two_process_ddp_on_the_cpu(tmp_path):
    """Weights that call every voxel atrium (output bias +50, learning rate 0) make the validation
    Dice exactly computable: 2 |L| / (|L| + N) per case over the N validation voxels. A Dice
    averaged over processes, or a slice counted twice (Lightning's default sampler pads), would
    differ from it (with this input only slightly: the unit tests below pin both)."""
    prof = PROFILES["ci"]
    net = UNet(prof.model_config())
    with torch.no_grad():
        net.head.bias.fill_(50.0)  # every pixel atrium, whatever the input
    init = export_weights(net, prof.geometry(), tmp_path / "all_atrium.pt")
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(script), str(SAMPLE), str(out), str(init)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("VAL_CASES") == 1  # one report, from the first process
    assert "Starting with 2 processes" in done.stdout + done.stderr

    assert sorted(p.name for p in out.rglob("*.pt")) == ["model.pt"]  # exactly one weights file
    load_model(out / "model.pt")  # loadable (weights_only)
    assert torch.load(out / "model.pt", weights_only=True)["meta"]["processes"] == 2
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]  # one writer of the logs
    split = json.loads((out / "split.json").read_text())
    val_cases = done.stdout.split("VAL_CASES", 1)[1].split()[0].split(",")
    assert split["val"] == val_cases

    rows = [r for r in csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")) if r.get("val_dice")]
    assert len(rows) == 1
    ds = SliceDataset(out / "cache", val_cases, size=prof.size, context=prof.context,
                      context_stride=prof.context_stride, slice_axis=prof.slice_axis)
    expected = []
    for ci in range(len(val_cases)):
        items = [i for i, (c, _) in enumerate(ds.items) if c == ci]
        label = sum(int(ds[i][1].sum()) for i in items)
        voxels = len(items) * prof.size * prof.size
        expected.append(2 * label / (label + voxels))
    assert float(rows[0]["val_dice"]) == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_validation_counts_of_all_processes_are_summed_before_the_dice(monkeypatch):
    """Process 0 saw case 0's slices with atrium, process 1 its empty slices (all false positives):
    the case's Dice is 2 tp / (2 tp + fp + fn) over both, not the mean of the two processes'."""
    from types import SimpleNamespace

    module = LitSegmenter(PROFILES["ci"].model_config().to_dict())
    module._counts = {0: np.array([90, 10, 0]), 1: np.array([50, 0, 50])}  # this process (rank 0)
    other = torch.tensor([[0, 100, 0, 1], [0, 0, 0, 0]], dtype=torch.float64)  # rank 1: case 0 only
    module._trainer = SimpleNamespace(world_size=2, datamodule=SimpleNamespace(val_cases=["a", "b"]))

    def all_gather(t):
        return torch.stack([t, t]) if t.ndim == 0 else torch.stack([t, other])

    monkeypatch.setattr(module, "all_gather", all_gather)
    counts = module._gathered_counts()
    assert counts[0].tolist() == [90, 110, 0] and counts[1].tolist() == [50, 0, 50]
    dice0 = 2 * 90 / (2 * 90 + 110)
    assert 2 * counts[0][0] / (2 * counts[0][0] + counts[0][1] + counts[0][2]) == pytest.approx(dice0)


def test_each_validation_slice_goes_to_exactly_one_process(tmp_path):
    """An odd number of validation slices over 2 processes: Lightning's default sampler would pad
    with a repeated slice; ours gives each slice to one process."""
    from types import SimpleNamespace

    from lasegtut.dataset import LADataModule
    from lasegtut.preprocess import write_cache

    write_cache(SAMPLE, tmp_path, cases=["la_020"], border=PROFILES["ci"].border, progress=False)
    seen = []
    for rank in (0, 1):
        dm = LADataModule(tmp_path, ["la_020"], ["la_020"], batch_size=4, size=32, context=0)
        dm.setup()
        dm.val_set.items = dm.val_set.items[:-1] if len(dm.val_set.items) % 2 == 0 else dm.val_set.items
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        seen.append(list(dm.val_dataloader().sampler))
    n = len(dm.val_set)
    assert n % 2 == 1 and sorted(seen[0] + seen[1]) == list(range(n))
