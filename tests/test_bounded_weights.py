"""Issue 23 section 5: a weights file is bounded by what it declares, not by its payload; broken
(NaN/inf) weights are called broken; `lasegtut shape` warns about an implausible volume."""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SAMPLE, refused, write_nifti
from lasegtut.cli import main
from lasegtut.errors import LasegError
from lasegtut.geometry import Geometry
from lasegtut.model import UNet, UNetConfig
from lasegtut.weightsfile import export_weights, load_weights

#: numel of the tensor the crafted file declares: 100 M floats, 400 MB (the issue's had 3.2 GB)
HUGE = 100_000_000


def _tiny(tmp_path: Path, name: str = "m.pt") -> Path:
    return export_weights(UNet(UNetConfig(widths=(4, 8))).eval(), Geometry(input_size=64, border=128),
                          tmp_path / name)


def zip_bomb_weights(tmp_path: Path) -> Path:
    """A weights file with an extra tensor in its state_dict that declares HUGE floats of zeros,
    deflated: a file of about 0.4 MB that ``torch.load`` inflated to 400 MB before the shapes were
    compared ("the weights do not match")."""
    marker = 1237  # numel of the small tensor, rewritten in the pickle as HUGE
    src = tmp_path / "src.pt"
    payload = torch.load(_tiny(tmp_path), weights_only=True)
    payload["state_dict"]["extra"] = torch.zeros(marker)
    torch.save(payload, src)
    out = tmp_path / "bomb.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        pkl = next(n for n in zin.namelist() if n.endswith("data.pkl"))
        data = zin.read(pkl)
        small = b"M" + struct.pack("<H", marker)  # BININT2 1237
        assert data.count(small) >= 2  # the storage's numel and the tensor's size
        for info in zin.infolist():
            if info.filename == pkl:
                zout.writestr(pkl, data.replace(small, b"J" + struct.pack("<i", HUGE)))
            elif zin.read(info.filename) == bytes(4 * marker):  # the zeros' storage
                with zout.open(info.filename, "w", force_zip64=True) as f:
                    chunk = bytes(2 ** 24)
                    for _ in range(4 * HUGE // len(chunk)):
                        f.write(chunk)
                    f.write(bytes(4 * HUGE % len(chunk)))
            else:
                zout.writestr(info, zin.read(info.filename))
    return out


def test_a_zip_bomb_is_refused_from_its_table_of_contents(tmp_path, monkeypatch):
    """Before: torch.load inflated the tensor (400 MB here, 3.6 GB for the issue's 3.2 GB one)
    and only then said "weights do not match". Now the file is refused before torch.load runs."""
    bomb = zip_bomb_weights(tmp_path)
    assert bomb.stat().st_size < 2e6
    import lasegtut.safeio  # noqa: F401

    def no_load(*a, **k):
        raise AssertionError("torch.load was called on the crafted file")
    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(LasegError, match=r"declare 40\d\.\d MB of tensors in a file of 0\.\d MB"):
        load_weights(bomb)


def test_a_zip_bomb_is_one_line_on_the_command_line(tmp_path, capsys):
    bomb = zip_bomb_weights(tmp_path)
    refused(capsys, main(["predict", str(SAMPLE / "imagesTr" / "la_009.nii.gz"), str(tmp_path / "m.nii.gz"),
                          "--weights", str(bomb), "--device", "cpu"]), "compressed records")
    assert not (tmp_path / "m.nii.gz").exists()


def test_wrong_shapes_are_refused_before_the_tensors_are_read(tmp_path, monkeypatch):
    """An honest (uncompressed) file whose tensor is far larger than the network's: the declared
    shape is compared while the storage is only mapped, never read into memory."""
    payload = torch.load(_tiny(tmp_path), weights_only=True)
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.zeros(4_000_000)  # 16 MB where a few bytes belong
    torch.save(payload, tmp_path / "big.pt")
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("mmap")) or real(*a, **k))
    with pytest.raises(LasegError, match="do not match the network"):
        load_weights(tmp_path / "big.pt")
    assert calls == [True]  # mapped, not read


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_weights_are_broken_weights_not_an_empty_answer(tmp_path, capsys, value):
    """Before: all-NaN weights ran the whole scan and said "no left atrium found ... is it a
    cardiac MRI?", blaming the scan."""
    from lasegtut.inference import SHIPPED_WEIGHTS

    net, info = load_weights(SHIPPED_WEIGHTS)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    bad = export_weights(net, info.geometry, tmp_path / "nan.pt")
    refused(capsys, main(["predict", str(SAMPLE / "imagesTr" / "la_009.nii.gz"), str(tmp_path / "m.nii.gz"),
                          "--weights", str(bad), "--device", "cpu"]), "the weights file holds NaN/inf values")
    assert not (tmp_path / "m.nii.gz").exists()


def test_shape_warns_about_an_implausible_volume_like_volume_does(tmp_path, capsys):
    """Before: `lasegtut shape` printed 104857.6 mL with no word; `lasegtut volume` warned."""
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[3:9, 3:9, 3:9] = 1  # 216 voxels of 8 x 8 x 8 cm: 110,592 mL
    path = write_nifti(tmp_path / "m.nii.gz", mask, np.diag([80.0, 80.0, 80.0, 1.0]))
    lines = {}
    for cmd in ("volume", "shape"):
        assert main([cmd, str(path)]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        lines[cmd] = err[0]
    assert lines["shape"].startswith("lasegtut shape: warning: 110592.0 mL is outside any adult left atrium")
    assert lines["shape"].split(": ", 1)[1] == lines["volume"].split(": ", 1)[1]
