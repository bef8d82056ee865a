"""Folder predict: reruns never keep stale answers (issue 23 section 4) and a cohort split into
parts that run at once into one folder (issue 24 section 4).

A tiny model stands in for the shipped one, so that several processes fit in seconds: every
convolution passes its input's first channel through, and the head thresholds it, so the mask is
the bright blob of each synthetic scan (exact arithmetic: the same on any number of threads)."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, write_nifti
from lasegtut.cli import main
from lasegtut.geometry import Geometry
from lasegtut.model import UNet, UNetConfig
from lasegtut.weightsfile import export_weights

SHAPE = (48, 48, 32)  # voxels of 1.25 x 1.25 x 1.37 mm: 60 x 60 x 44 mm


def tiny_model(path: Path, *, bias: float = -10.0) -> Path:
    """A 2-level U-Net that outputs 20 x (normalised intensity) + bias: the blob of a scan."""
    net = UNet(UNetConfig(widths=(2, 2), norm="none")).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
                if m.kernel_size == (3, 3):
                    m.weight[0, 0, 1, 1] = 1.0
        net.head.weight[0, 0] = 20.0
        net.head.bias[0] = bias
    return export_weights(net, Geometry(input_size=48, border=136), path)


def synthetic_scan(path: Path, seed: int) -> Path:
    """Noise around 100 and a bright ellipsoid (radius 12-15 voxels) somewhere: 14-28 mL."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 10, SHAPE).astype(np.float32)
    c = [rng.integers(18, 30), rng.integers(18, 30), rng.integers(13, 19)]
    r = rng.uniform(12, 15)
    x, y, z = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    img[((x - c[0]) ** 2 + (y - c[1]) ** 2 + ((z - c[2]) * 1.1) ** 2) < r * r] += 300
    return write_nifti(path, img)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


def make_scans(folder: Path, n: int, first_seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        synthetic_scan(folder / f"s{i:02d}.nii.gz", first_seed + i)
    return folder


def read(table: Path) -> dict[str, dict]:
    with open(table, newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def predict(*args) -> int:
    return main(["predict", *map(str, args), "--device", "cpu", "--json"])


def test_rerun_with_fewer_scans_keeps_the_other_rows(tmp_path, model):
    """Before: rerunning with one scan left a table of one row (the other masks stayed on disk)."""
    scans, out = make_scans(tmp_path / "scans", 3), tmp_path / "out"
    assert predict(scans, out, "--weights", model) == 0
    first = read(out / "volumes.csv")
    assert set(first) == {"s00", "s01", "s02"} and all(r["status"] == "ok" for r in first.values())
    assert predict(scans / "s01.nii.gz", scans / "s02.nii.gz", out, "--weights", model) == 0
    again = read(out / "volumes.csv")
    assert set(again) == {"s00", "s01", "s02"} and again["s00"] == first["s00"]


def test_a_rerun_redoes_what_changed_and_skips_only_what_holds(tmp_path, model):
    """Before: a truncated mask, and another scan copied over a name, kept their old 'ok' rows."""
    scans, out = make_scans(tmp_path / "scans", 4), tmp_path / "out"
    assert predict(scans, out, "--weights", model) == 0
    first = read(out / "volumes.csv")
    assert len({r["volume_ml"] for r in first.values()}) == 4  # four different blobs
    for r in first.values():
        assert len(r["scan_sha256"]) == 64 and len(r["mask_sha256"]) == 64 and len(r["weights_sha256"]) == 64
        assert int(r["scan_bytes"]) == (scans / f"{r['case']}.nii.gz").stat().st_size
    mtimes = {c: (out / f"{c}.nii.gz").stat().st_mtime_ns for c in first}
    shutil.copy(scans / "s03.nii.gz", scans / "s00.nii.gz")  # another patient under s00's name
    data = (out / "s01.nii.gz").read_bytes()
    (out / "s01.nii.gz").write_bytes(data[: len(data) // 2])  # a truncated mask
    assert predict(scans, out, "--weights", model) == 0
    again = read(out / "volumes.csv")
    assert again["s00"]["volume_ml"] == first["s03"]["volume_ml"]  # s03's answer, not the stale one
    assert again["s00"]["scan_sha256"] == first["s03"]["scan_sha256"]
    assert (out / "s00.nii.gz").read_bytes() == (out / "s03.nii.gz").read_bytes()
    assert again["s01"] == {**first["s01"], "seconds": again["s01"]["seconds"]}  # redone, same answer
    assert (out / "s01.nii.gz").read_bytes() != data[: len(data) // 2]
    assert again["s02"] == first["s02"] and (out / "s02.nii.gz").stat().st_mtime_ns == mtimes["s02"]  # skipped
    # other weights, or another option: done again
    other = tiny_model(tmp_path / "other.pt", bias=-9.0)
    assert predict(scans / "s02.nii.gz", out, "--weights", other) == 0
    assert read(out / "volumes.csv")["s02"]["weights_sha256"] != first["s02"]["weights_sha256"]
    assert predict(scans / "s03.nii.gz", out, "--weights", model, "--no-lcc") == 0
    assert read(out / "volumes.csv")["s03"]["options"] == "tta=0 largest_component=0"


def test_every_entry_named_like_a_scan_gets_a_row(tmp_path, model):
    """Before: a folder, a symbolic-link loop or a pipe named like a scan vanished from the table."""
    scans, out = make_scans(tmp_path / "scans", 1), tmp_path / "out"
    (scans / "folder.nii.gz").mkdir()
    os.symlink("loop.nii.gz", scans / "loop.nii.gz")
    os.symlink("nowhere.nii", scans / "dangling.nii")
    os.mkfifo(scans / "pipe.nii.gz")  # never opened: reading it would wait forever
    assert predict(scans, out, "--weights", model) == 1
    rows = read(out / "volumes.csv")
    assert rows["s00"]["status"] == "ok"
    assert rows["folder"]["status"] == "error: folder.nii.gz is a folder, not a scan"
    assert rows["loop"]["status"] == "error: loop.nii.gz is a symbolic link loop, not a scan"
    assert rows["dangling"]["status"].startswith("error: dangling.nii is a broken symbolic link")
    assert rows["pipe"]["status"].startswith("error: pipe.nii.gz is not a regular file")


def test_an_unreadable_table_is_refused_not_replaced(tmp_path, model, capsys):
    """Before: a table that could not be read was silently replaced by this run's rows."""
    from conftest import refused

    scans, out = make_scans(tmp_path / "scans", 1), tmp_path / "out"
    out.mkdir()
    (out / "volumes.csv").write_bytes(b"\xff\xfe\x00 not a table")
    refused(capsys, predict(scans, out, "--weights", model), "volumes.csv cannot be read")
    assert (out / "volumes.csv").read_bytes() == b"\xff\xfe\x00 not a table"


HOLD = """
import sys, time
from pathlib import Path
from lasegtut.cohort import RunSpace
with RunSpace(Path(sys.argv[1])) as run:
    (run.dir / ".s00.nii.gz.abc123.tmp").write_bytes(b"half a mask")
    print(run.dir, flush=True)
    time.sleep(600)
"""


def test_leftovers_of_a_killed_run_go_but_a_living_runs_stay(tmp_path, model):
    """A run killed with SIGKILL leaves its folder of temporaries; the next run removes it, but
    never the temporaries of a run still working in the same folder (its flock is held). Before:
    a SIGKILL left '.<case>.nii.gz.<random>.tmp' beside the masks for ever."""
    from lasegtut.cohort import RunSpace

    scans, out = make_scans(tmp_path / "scans", 1), tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dead = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    killed = Path(dead.stdout.readline().strip())
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    legacy_old, legacy_new = out / ".s07.nii.gz.k3j4h5.tmp", out / ".volumes.csv.a1b2c3.tmp"
    legacy_old.write_bytes(b"x")
    legacy_new.write_bytes(b"x")
    os.utime(legacy_old, (time.time() - 3600, time.time() - 3600))  # an old version's, an hour ago
    with RunSpace(out) as living:  # another run, still working
        (living.dir / ".s00.nii.gz.zz.tmp").write_bytes(b"in progress")
        assert killed.is_dir()
        assert predict(scans, out, "--weights", model) == 0
        assert not killed.exists() and not legacy_old.exists()
        assert (living.dir / ".s00.nii.gz.zz.tmp").is_file() and legacy_new.is_file()
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [".volumes.csv.a1b2c3.tmp", ".volumes.csv.lock"]


@pytest.mark.parametrize("args, needle", [
    (["--part", "3", "--parts", "3"], "--part 3 is out of range for --parts 3: parts count from 0"),
    (["--part", "-1", "--parts", "3"], "give 0 to 2"),
    (["--part", "0", "--parts", "0"], "--parts must be 1 or more"),
    (["--part", "1"], "give --part and --parts together")])
def test_part_and_parts_are_checked_first(tmp_path, capsys, no_voxels_read, args, needle):
    from conftest import refused

    scans = make_scans(tmp_path / "scans", 2)
    refused(capsys, predict(scans, tmp_path / "out", *args), needle)
    assert not (tmp_path / "out").exists()


def test_parts_are_disjoint_and_cover_every_scan(tmp_path):
    from lasegtut.cohort import select_part

    names = [Path(f"x/c{i:03d}.nii.gz") for i in (5, 1, 9, 3, 7, 2, 8)]
    shares = [select_part(names, k, 3) for k in range(3)]
    assert sorted(sum(shares, [])) == sorted(names)
    assert [p.name for p in shares[0]] == ["c001.nii.gz", "c005.nii.gz", "c009.nii.gz"]  # sorted, i % 3 == 0
    assert select_part(list(reversed(names)), 1, 3) == shares[1]  # whatever order they were listed in


MERGE = """
import sys
from pathlib import Path
from lasegtut.cohort import RunSpace, _merge_rows
out, k = Path(sys.argv[1]), sys.argv[2]
with RunSpace(out) as run:
    for i in range(40):
        _merge_rows(out, run, {f"p{k}_{i:02d}": {"case": f"p{k}_{i:02d}", "status": "ok"}})
"""


def test_table_updates_from_processes_at_once_lose_no_row(tmp_path):
    """Four processes each add 40 rows to one volumes.csv at the same time: all 160 are there
    (read-merge-write under the table's flock; without it, rows written meanwhile were lost)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", MERGE, str(tmp_path), str(k)], env=env) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    assert len(read(tmp_path / "volumes.csv")) == 160
    assert sorted(p.name for p in tmp_path.iterdir()) == [".volumes.csv.lock", "volumes.csv"]


def test_parts_at_once_into_one_folder_match_a_single_run(tmp_path, model):
    """Three parts run at the same time into one folder (two processes and this one), then a single
    run into another: each scan has exactly one row and one mask, byte for byte the single run's;
    a rerun of a part skips everything it did."""
    scans = make_scans(tmp_path / "scans", 8)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lasegtut", "predict", str(scans)]
    tail = ["--weights", str(model), "--device", "cpu", "--json"]
    procs = [subprocess.Popen([*cmd, str(tmp_path / "parts"), "--part", str(k), "--parts", "3", *tail],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    for _ in range(3):  # part 2 here, meanwhile, as often as the others take (they start torch first)
        assert predict(scans, tmp_path / "parts", "--part", "2", "--parts", "3", "--weights", model, "--force") == 0
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 2, results
    assert [r[0].splitlines()[0].split(":")[0] for r in results] == ["part 0 of 3", "part 1 of 3"]
    assert predict(scans, tmp_path / "single", "--weights", model) == 0
    parts, single = read(tmp_path / "parts" / "volumes.csv"), read(tmp_path / "single" / "volumes.csv")
    with open(tmp_path / "parts" / "volumes.csv") as f:
        assert len(f.read().splitlines()) == 1 + 8  # one header, one row per scan
    assert sorted(parts) == sorted(single) == [f"s{i:02d}" for i in range(8)]
    for case in single:
        assert (tmp_path / "parts" / f"{case}.nii.gz").read_bytes() == (tmp_path / "single" / f"{case}.nii.gz").read_bytes()
        assert {**parts[case], "seconds": ""} == {**single[case], "seconds": ""}
    masks = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert masks == sorted([".volumes.csv.lock", "volumes.csv", *(f"s{i:02d}.nii.gz" for i in range(8)),
                            *(f"s{i:02d}.qc.json" for i in range(8))])  # each mask with its QC sidecar
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "parts").glob("*.nii.gz")}
    assert predict(scans, tmp_path / "parts", "--part", "1", "--parts", "3", "--weights", model) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "parts").glob("*.nii.gz")} == before
    assert read(tmp_path / "parts" / "volumes.csv") == parts
