"""The training pack: what goes in comes back (up to the stated quantisation), bad files refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lasegtut.errors import LasegError
from lasegtut.pack import dequantise, quantise, read_pack, unpack, write_pack
from lasegtut.preprocess import load_cached_case, load_index, write_cache


def make_msd(root: Path, sample: Path, cases: dict[str, str], mirror: bool = False) -> Path:
    """An MSD folder whose case ``new`` is a copy of the bundled case ``old``, for each item;
    ``mirror=True`` flips image and label along array axis 1, so that the copies are new images
    (the split keeps identical images together, so an exact copy of a validation case would
    never be trained on)."""
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for new, old in cases.items():
        for sub in ("imagesTr", "labelsTr"):
            src, dst = sample / sub / f"{old}.nii.gz", root / sub / f"{new}.nii.gz"
            if mirror:
                img = nib.load(src)
                nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, ::-1].copy(), img.affine, img.header), dst)
            else:
                shutil.copy(src, dst)
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]
    (root / "dataset.json").write_text(json.dumps({"name": "test", "training": training}))
    return root


@pytest.fixture(scope="module")
def packed(sample_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pack")
    # two cases with the same image (as la_005 / la_026), one other, and a validation case that
    # must stay out of the pack
    data = make_msd(tmp / "msd", sample_root, {"la_901": "la_009", "la_902": "la_009", "la_903": "la_020",
                                               "la_014": "la_014"})
    summary = write_pack(data, tmp / "p.npz.xz", border=80, progress=False)
    return data, summary


def test_pack_holds_the_training_cases_and_shared_images_once(packed):
    data, summary = packed
    assert summary.cases == ["la_901", "la_902", "la_903"]  # la_014 is a validation case
    meta, arrays = read_pack(summary.path)
    assert sorted(k for k in arrays if k.startswith("image.")).__len__() == 2  # la_901 = la_902's image
    assert meta["bits"] == 7 and meta["border"] == 80


def test_unpacked_cache_matches_the_preprocessing_up_to_quantisation(packed, tmp_path):
    data, summary = packed
    unpack(summary.path, tmp_path / "cache")
    write_cache(data, tmp_path / "ref", cases=["la_903"], border=80, progress=False)
    img, msk = load_cached_case(tmp_path / "cache", "la_903")
    ref_img, ref_msk = load_cached_case(tmp_path / "ref", "la_903")
    assert img.shape == ref_img.shape == (110, 160, 160)
    np.testing.assert_array_equal(msk, ref_msk)
    err = np.abs(img.astype(np.float32) - ref_img.astype(np.float32))
    assert err.max() <= 0.5 / 127 + 1e-3  # half a grey level of 7 bits (+ float16 rounding)
    assert err.max() > 0  # it really was quantised
    entry = load_index(tmp_path / "cache")["cases"]["la_903"]
    assert entry["la_slices"] == load_index(tmp_path / "ref")["cases"]["la_903"]["la_slices"]


def test_quantise_round_trip():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    for bits in (1, 7, 8):
        q = quantise(x, bits)
        assert q.max() == 2 ** bits - 1
        assert np.abs(dequantise(q, bits, "float32") - x).max() <= 0.5 / (2 ** bits - 1) + 1e-6
    with pytest.raises(LasegError):
        quantise(x, 9)


def test_pack_refuses_to_overwrite_and_bad_files_get_one_line(packed, tmp_path):
    data, summary = packed
    with pytest.raises(LasegError, match="already exists"):
        write_pack(data, summary.path, progress=False)
    bad = tmp_path / "bad.npz.xz"
    bad.write_bytes(summary.path.read_bytes()[: 1000])  # truncated download
    with pytest.raises(LasegError, match="not a readable lasegtut pack"):
        read_pack(bad)
    with pytest.raises(LasegError, match="does not exist"):
        read_pack(tmp_path / "missing.npz.xz")


def test_cli_pack(packed, tmp_path, capsys):
    from lasegtut.cli import main

    data, _ = packed
    out = tmp_path / "cli.npz.xz"
    assert main(["pack", "--data", str(data), "--out", str(out), "--quiet", "--bits", "6"]) == 0
    assert read_pack(out)[0]["bits"] == 6
    assert main(["pack", "--data", str(data), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_unpack_refuses_a_pack_of_another_crop(packed, tmp_path):
    # a border-80 pack in a border-32 training (the ci profile) would mix two crops silently
    _, summary = packed
    with pytest.raises(LasegError, match="crop of 80 voxels per side, this training uses 32"):
        unpack(summary.path, tmp_path / "cache", border=32)
    assert not (tmp_path / "cache").exists()
    assert unpack(summary.path, tmp_path / "cache", border=80) == summary.cases


def test_a_crafted_pack_gets_one_line_and_writes_nothing_outside_the_cache(packed, tmp_path):
    import io
    import lzma

    _, summary = packed
    meta, arrays = read_pack(summary.path)
    cid = summary.cases[0]
    for change in ({"cases": [1]}, {"border": "80"},
                   {"cases": {cid: dict(meta["cases"][cid], image_file="../../outside.npy")}}):
        buf = io.BytesIO()
        np.savez(buf, index=np.frombuffer(json.dumps(dict(meta, **change)).encode(), dtype=np.uint8), **arrays)
        bad = tmp_path / "bad.npz.xz"
        bad.write_bytes(lzma.compress(buf.getvalue()))
        with pytest.raises(LasegError, match="damaged"):
            unpack(bad, tmp_path / "a" / "b" / "cache")
    assert not (tmp_path / "outside.npy").exists() and not (tmp_path / "a").exists()
