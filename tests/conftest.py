"""Shared fixtures: where the real data lives, and small synthetic NIfTI files."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED = REPO.parent / "shared" / "data" / "msd-task02-heart"


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The bundled real sample (always present in a clone)."""
    return SAMPLE


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The 18 real cases beside the checkout; tests using it skip where it is absent."""
    if not (SHARED / "dataset.json").is_file():
        pytest.skip(f"real data not found beside the checkout (../shared/data/msd-task02-heart); "
                    "a student's clone has only data/sample")
    return SHARED


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``array`` as NIfTI (default affine: 1.25 x 1.25 x 1.37 mm, RAS)."""
    if affine is None:
        affine = np.diag([1.25, 1.25, 1.37, 1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def refused(capsys, rc: int, needle: str = "") -> str:
    """Assert the command-line contract for bad input: exit 2 and one line on stderr, no
    traceback, mentioning ``needle``; returns that line."""
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


@pytest.fixture
def no_voxels_read(monkeypatch):
    """Fail the test if any scan's voxels are read: a refusal must come before the work
    (from the header alone, or from checking the output)."""
    from lasegtut import data

    def read_array(*args, **kwargs):
        raise AssertionError("voxels were read before the refusal")
    monkeypatch.setattr(data, "read_array", read_array)
