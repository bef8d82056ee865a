"""Issue 11, section 3: nothing lost, nothing half-written.

An input is never overwritten (``--force`` or not, through links or another spelling); an output
that cannot be written is refused before the work; a failed or interrupted write (full disk,
Ctrl-C, SIGTERM) leaves neither a temporary file nor a half-written file; two ``preprocess`` runs
into one cache both succeed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import refused, REPO, SAMPLE, write_nifti
from lasegtut import data
from lasegtut.cli import main
from lasegtut.inference import SHIPPED_WEIGHTS

SCAN = SAMPLE / "imagesTr" / "la_020.nii.gz"






def _small_scan(path: Path) -> Path:
    """la_014 cut to 176 x 176 voxels in-plane (just larger than the shipped model's 160-voxel
    window): a few seconds to segment, and an atrium to find, so a prediction gets as far as the
    write (a scan of noise is refused earlier: no atrium found)."""
    image = np.asanyarray(nib.load(SAMPLE / "imagesTr" / "la_014.nii.gz").dataobj)  # nibabel, not data.read_array (no_voxels_read blocks it)
    return write_nifti(path, image[72:248, 72:248].astype(np.int16))


# ----------------------------------------------------------------------------- inputs are never overwritten
@pytest.mark.parametrize("case", ["same path", "input is a symlink to the output", "output is a symlink to the input",
                                  "hard link", "another spelling", "the weights file"])
def test_predict_never_overwrites_an_input(tmp_path, capsys, monkeypatch, no_voxels_read, case):
    monkeypatch.chdir(tmp_path)
    scan = Path("scan.nii.gz")
    shutil.copy(SCAN, scan)
    original = scan.read_bytes()
    (tmp_path / "sub").mkdir()
    extra: list[str] = []
    if case == "same path":
        inp, out = "scan.nii.gz", "scan.nii.gz"
    elif case == "input is a symlink to the output":
        os.symlink(tmp_path / "scan.nii.gz", "link.nii.gz")
        inp, out = "link.nii.gz", "scan.nii.gz"
    elif case == "output is a symlink to the input":
        os.symlink(tmp_path / "scan.nii.gz", "link.nii.gz")
        inp, out = "scan.nii.gz", "link.nii.gz"
    elif case == "hard link":
        os.link("scan.nii.gz", "hard.nii.gz")
        inp, out = "scan.nii.gz", "hard.nii.gz"
    elif case == "another spelling":
        inp, out = "scan.nii.gz", str(tmp_path / "sub" / ".." / "scan.nii.gz")
    else:  # a weights file named like a mask, given as the output
        shutil.copy(SHIPPED_WEIGHTS, "w.nii.gz")
        inp, out, extra = "scan.nii.gz", "w.nii.gz", ["--weights", "w.nii.gz"]
    before = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    rc = main(["predict", inp, out, "--force", *extra])
    refused(capsys, rc, "an input is never overwritten")
    assert scan.read_bytes() == original
    assert {p.name: p.stat().st_size for p in tmp_path.iterdir()} == before  # nothing added or changed


# ----------------------------------------------------------------------------- unwritable outputs, before the work
@pytest.mark.parametrize("case, needle", [("under a file", "not a folder"), ("in /proc", "cannot write in /proc"),
                                          ("a folder named like the output", "is a folder"),
                                          ("missing folder", "does not exist")])
def test_predict_refuses_an_unwritable_output_before_the_work(tmp_path, capsys, no_voxels_read, case, needle):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "o.nii.gz").mkdir()
    out = {"under a file": tmp_path / "afile" / "o.nii.gz", "in /proc": Path("/proc/o.nii.gz"),
           "a folder named like the output": tmp_path / "o.nii.gz",
           "missing folder": tmp_path / "nope" / "o.nii.gz"}[case]
    rc = main(["predict", str(SCAN), str(out), "--force"])
    refused(capsys, rc, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "o.nii.gz"]
    assert (tmp_path / "afile").read_text() == "x" and not any((tmp_path / "o.nii.gz").iterdir())


def test_shape_mesh_refuses_a_folder_named_like_the_mesh(tmp_path, capsys):
    (tmp_path / "la.stl").mkdir()
    rc = main(["shape", str(SAMPLE / "labelsTr" / "la_020.nii.gz"), "--mesh", str(tmp_path / "la.stl"), "--force"])
    refused(capsys, rc, "is a folder")


# ----------------------------------------------------------------------------- failed and interrupted writes
_SUBPROCESS_ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")


def test_predict_on_a_full_disk_leaves_nothing(tmp_path):
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes every write past 4 KiB fail with
    EFBIG, as a full disk fails with ENOSPC: one line, exit 2, no mask, no temporary file."""
    resource = pytest.importorskip("resource")
    scan = _small_scan(tmp_path / "scan.nii.gz")
    out = tmp_path / "out" / "mask.nii"  # uncompressed: far larger than the limit
    out.parent.mkdir()

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    r = subprocess.run([sys.executable, "-m", "lasegtut", "predict", str(scan), str(out)], cwd=tmp_path,
                       capture_output=True, text=True, env=_SUBPROCESS_ENV, preexec_fn=limit, timeout=600)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "could not write" in r.stderr, r.stderr
    assert list(out.parent.iterdir()) == []


_INTERRUPT = """
import os, signal, sys
from lasegtut.cli import main
real_replace = os.replace
def replace(src, dst):  # the signal arrives with the finished temporary file on disk, before the rename
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return real_replace(src, dst)
os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig, rc, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_an_interrupted_predict_leaves_nothing(tmp_path, sig, rc, word):
    scan = _small_scan(tmp_path / "scan.nii.gz")
    out = tmp_path / "out" / "mask.nii.gz"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, "-c", _INTERRUPT, sig, "predict", str(scan), str(out)], cwd=tmp_path,
                       capture_output=True, text=True, env=_SUBPROCESS_ENV, timeout=600)
    assert r.returncode == rc, r.stderr
    assert r.stderr.strip() == f"lasegtut predict: {word}"
    assert list(out.parent.iterdir()) == []


def test_demo_checks_its_outputs_first_and_writes_its_png_atomically(tmp_path, capsys, monkeypatch):
    """A folder where the overlay PNG should go is refused before the work; a PNG write that fails
    half-way (a full disk) keeps the previous PNG and leaves no temporary file."""
    out = tmp_path / "demo"
    (out / "la_020_overlay.png").mkdir(parents=True)
    monkeypatch.setattr(data, "read_array", lambda *a, **k: pytest.fail("the demo worked before checking its outputs"))
    refused(capsys, main(["demo", "--case", "la_020", "--out", str(out)]), "is a folder")
    monkeypatch.undo()

    (out / "la_020_overlay.png").rmdir()
    (out / "la_020_overlay.png").write_bytes(b"previous overlay")
    from matplotlib.figure import Figure

    def savefig_on_a_full_disk(self, fname, **kwargs):
        fname.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", savefig_on_a_full_disk)
    refused(capsys, main(["demo", "--case", "la_020", "--out", str(out)]), "No space left on device")
    assert (out / "la_020_overlay.png").read_bytes() == b"previous overlay"
    assert sorted(p.name for p in out.iterdir()) == ["la_020_overlay.png", "la_020_pred.nii.gz"]
    assert nib.load(str(out / "la_020_pred.nii.gz")).shape == nib.load(str(SCAN)).shape


# ----------------------------------------------------------------------------- concurrent preprocess runs
def test_two_preprocess_runs_into_one_cache_both_succeed(tmp_path, monkeypatch):
    """Two runs write the same case at the same moment: each thread waits at a barrier inside its
    first write, so both are half-way through writing la_009.image.npy together. With one shared
    temporary name, one run's rename found its temporary gone (FileNotFoundError); with unique
    temporaries both succeed, and the cache is complete and readable."""
    from lasegtut.preprocess import load_cached_case, load_index, write_cache

    barrier = threading.Barrier(2, timeout=120)
    real_save = np.save
    first_write: set[int] = set()

    def save(file, arr, *args, **kwargs):
        real_save(file, arr, *args, **kwargs)
        me = threading.get_ident()
        if me not in first_write:  # only the first write of each run waits for the other
            first_write.add(me)
            barrier.wait()

    monkeypatch.setattr(np, "save", save)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write_cache(SAMPLE, tmp_path / "cache", cases=["la_009", "la_020"], progress=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(load_index(tmp_path / "cache")["cases"]) == {"la_009", "la_020"}
    for cid in ("la_009", "la_020"):
        image, mask = load_cached_case(tmp_path / "cache", cid)
        assert image.shape == mask.shape and float(image.max()) == pytest.approx(1.0, abs=1e-3)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    json.loads((tmp_path / "cache" / "index.json").read_text())


def test_pack_never_overwrites_its_data_and_checks_its_output_first(tmp_path, capsys, no_voxels_read):
    """`pack --out` naming dataset.json (with --force) or a folder is refused before any case is read."""
    root = tmp_path / "data"
    shutil.copytree(SAMPLE, root)
    before = (root / "dataset.json").read_bytes()
    rc = main(["pack", "--data", str(root), "--out", str(root / "dataset.json"), "--force", "--quiet"])
    refused(capsys, rc, "an input is never overwritten")
    assert (root / "dataset.json").read_bytes() == before
    (tmp_path / "p.npz.xz").mkdir()
    refused(capsys, main(["pack", "--data", str(root), "--out", str(tmp_path / "p.npz.xz"), "--force", "--quiet"]),
             "is a folder")


def test_atomically_written_files_get_the_usual_permissions(tmp_path):
    """Temporary files are created 0600; the renamed result must be readable as any new file is
    (0666 less the umask), or a mask or cache shared with a group becomes unreadable to it."""
    import stat

    from lasegtut.preprocess import atomic_write

    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~umask


def test_evaluate_out_never_replaces_a_mask_or_an_existing_table(tmp_path, capsys, no_voxels_read):
    """Before: `evaluate masks/ labels/ --out masks/la_001.nii.gz` wrote the CSV over the predicted
    mask, and an existing table was replaced without --force (evaluate had no --force)."""
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:6, 2:6, 1:3] = 1
    for folder in ("masks", "labels"):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "la_001.nii.gz", mask)
    masks, labels = tmp_path / "masks", tmp_path / "labels"
    kept = {p: p.read_bytes() for p in (masks / "la_001.nii.gz", labels / "la_001.nii.gz")}
    (tmp_path / "link.csv").symlink_to(labels / "la_001.nii.gz")
    for target in (masks / "la_001.nii.gz", labels / "la_001.nii.gz", tmp_path / "link.csv"):
        refused(capsys, main(["evaluate", str(masks), str(labels), "--out", str(target), "--force"]),
                "an input is never overwritten")
    table = tmp_path / "scores.csv"
    table.write_text("precious\n")
    refused(capsys, main(["evaluate", str(masks), str(labels), "--out", str(table)]), "use --force")
    assert table.read_text() == "precious\n"
    assert all(p.read_bytes() == b for p, b in kept.items())


def test_evaluate_out_replaces_a_table_with_force(tmp_path, capsys):
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:6, 2:6, 1:3] = 1
    for folder in ("masks", "labels"):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "la_001.nii.gz", mask)
    table = tmp_path / "scores.csv"
    table.write_text("old\n")
    assert main(["evaluate", str(tmp_path / "masks"), str(tmp_path / "labels"), "--out", str(table), "--force"]) == 0
    assert table.read_text().startswith("case,dice")
