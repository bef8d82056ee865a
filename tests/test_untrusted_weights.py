"""Issue 11, section 2: a weights file or checkpoint never runs code.

Every path that accepts weights (``predict --weights``, ``demo --weights``, ``train --init``,
resuming from ``OUT/checkpoints/last.ckpt``, ``load_model``, ``export_checkpoint``) reads them with
``torch.load(weights_only=True)``. A crafted pickle that would create a file when unpickled is
refused with one line and exit status 2, the file never appears, and nothing is written.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import SAMPLE
from lasegtut.cli import main
from lasegtut.errors import LasegError
from lasegtut.inference import SHIPPED_WEIGHTS, load_model
from lasegtut.training import export_checkpoint

SCAN = SAMPLE / "imagesTr" / "la_020.nii.gz"


class _RunsCode:
    """Pickles as a call of ``open(path, "w")``: unpickling it creates ``path``, which is all an
    attacker needs to show that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def evil(tmp_path) -> dict[str, Path]:
    """A crafted Lightning-style checkpoint, a crafted model.pt (with the right format key) and the
    file their unpickling would create."""
    marker = tmp_path / "CODE_RAN"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_config": _RunsCode(marker)},
                "pytorch-lightning_version": "2.6.6", "epoch": 0}, ckpt)
    pt = tmp_path / "evil.pt"
    torch.save({"format": "lasegtut-unet-v1", "config": _RunsCode(marker), "state_dict": {}}, pt)
    return {"ckpt": ckpt, "pt": pt, "marker": marker}


def _one_line_refusal(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "refused" in err and "pickled Python object" in err, err
    return err


@pytest.mark.parametrize("kind", ["ckpt", "pt"])
def test_predict_refuses_a_crafted_pickle(tmp_path, capsys, evil, kind):
    out = tmp_path / "mask.nii.gz"
    rc = main(["predict", str(SCAN), str(out), "--weights", str(evil[kind])])
    _one_line_refusal(capsys, rc)
    assert not evil["marker"].exists() and not out.exists()


def test_predict_refuses_a_crafted_pickle_among_several_weights(tmp_path, capsys, evil):
    out = tmp_path / "mask.nii.gz"
    rc = main(["predict", str(SCAN), str(out), "--weights", str(SHIPPED_WEIGHTS), str(evil["ckpt"])])
    _one_line_refusal(capsys, rc)
    assert not evil["marker"].exists() and not out.exists()


def test_demo_refuses_a_crafted_pickle(tmp_path, capsys, evil):
    out = tmp_path / "demo"
    rc = main(["demo", "--case", "la_020", "--out", str(out), "--weights", str(evil["ckpt"])])
    _one_line_refusal(capsys, rc)
    assert not evil["marker"].exists() and not out.exists()


def test_train_init_refuses_a_crafted_pickle(tmp_path, capsys, evil):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(SAMPLE), "--profile", "ci", "--epochs", "1", "--quiet",
               "--out", str(out), "--init", str(evil["ckpt"])])
    _one_line_refusal(capsys, rc)
    assert not evil["marker"].exists() and not out.exists()  # refused before the cache is made


def test_resume_refuses_a_crafted_last_checkpoint(tmp_path, capsys, evil, monkeypatch):
    """Resuming is done by Lightning; lasegtut reads last.ckpt with weights_only=True first and
    passes weights_only=True to Lightning, so even TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which turns
    torch.load's default back to full unpickling) cannot make it run the pickle."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(evil["ckpt"], out / "checkpoints" / "last.ckpt")
    rc = main(["train", "--data", str(SAMPLE), "--profile", "ci", "--epochs", "1", "--quiet", "--out", str(out)])
    err = _one_line_refusal(capsys, rc)
    assert "--no-resume" in err
    assert not evil["marker"].exists()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # no cache, no logs: nothing written


@pytest.mark.parametrize("kind", ["ckpt", "pt"])
def test_load_model_and_export_checkpoint_refuse_a_crafted_pickle(tmp_path, evil, kind, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(LasegError, match="refused"):
        load_model(evil[kind])
    with pytest.raises(LasegError, match="refused"):
        export_checkpoint(evil[kind], tmp_path / "exported.pt")
    assert not evil["marker"].exists() and not (tmp_path / "exported.pt").exists()


def test_a_garbage_file_is_unreadable_not_an_attack(tmp_path):
    """The refusal names a pickled object only when there is one; other junk is 'not readable'."""
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x80\x02 this is not a torch file")
    with pytest.raises(LasegError, match="not a readable weights file"):
        load_model(junk)
