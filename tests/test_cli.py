"""The command line: every sub-command exists, answers --help, and fails cleanly."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, SAMPLE
from lasegtut.cli import main

COMMANDS = ["download", "preprocess", "train", "predict", "evaluate", "volume", "demo", "assignments"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: lasegtut " + cmd in capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    """`lasegtut --help` formats every sub-command's one-line help (a bare % in one, '95% bootstrap', made
    argparse raise ValueError here while each `lasegtut CMD --help` worked)."""
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(cmd in out for cmd in COMMANDS)
    assert "95% bootstrap" in out


def test_python_m_and_version():
    r = subprocess.run([sys.executable, "-m", "lasegtut", "--version"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.startswith("lasegtut ")


def test_preprocess_command(tmp_path, capsys):
    assert main(["preprocess", "--data", str(SAMPLE), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "cached 3 cases (330 slices)" in capsys.readouterr().out


def test_missing_data_folder_is_one_line(tmp_path, capsys):
    rc = main(["preprocess", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "does not exist" in err


def test_demo(tmp_path, capsys):
    assert main(["demo", "--case", "la_020", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Dice" in out and "HD95" in out and "expert label" in out
    assert (tmp_path / "la_020_pred.nii.gz").is_file() and (tmp_path / "la_020_overlay.png").is_file()
    # the README's main command is rerunnable: demo replaces its own files (and the README says so)
    (tmp_path / "la_020_pred.nii.gz").write_bytes(b"stale")
    assert main(["demo", "--case", "la_020", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "la_020_pred.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # a gzip NIfTI again
    readme = (REPO / "README.md").read_text()
    assert "`lasegtut demo` replaces its own two files" in readme


def test_demo_unknown_case(tmp_path, capsys):
    assert main(["demo", "--case", "la_999", "--out", str(tmp_path)]) == 2
    assert "not listed" in capsys.readouterr().err
