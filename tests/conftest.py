"""Shared test helpers: where things are, the full data set and its skip, small (and broken)
NIfTI files, and the command-line contract for bad input."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lasegtut.paths import full_data_dir

#: The checkout under test, and its bundled sample.
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
NOTEBOOKS = REPO / "notebooks"
#: The full data set (``$LASEG_DATA_DIR``, else ../shared/data/msd-task02-heart; None in a
#: student's clone): :func:`lasegtut.paths.full_data_dir`.
FULL_DATA = full_data_dir()
#: Voxel size of the MSD heart scans (mm), the default of :func:`write_nifti`.
MSD_SPACING = (1.25, 1.25, 1.37)


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The bundled real sample (always present in a clone)."""
    return SAMPLE


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The full data set (:data:`FULL_DATA`); tests using it skip where it is absent."""
    if FULL_DATA is None:
        pytest.skip("real data not found ($LASEG_DATA_DIR or ../shared/data/msd-task02-heart beside the "
                    "checkout); a student's clone has only data/sample")
    return FULL_DATA


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None, *,
                spacing: tuple[float, ...] | None = None, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    """Save ``array`` as NIfTI. ``affine`` as given, else RAS with voxels of ``spacing`` mm (default
    1.25 x 1.25 x 1.37) at ``offset`` mm; with ``spacing`` the header's voxel size is set to it too
    (also for a 2D array, whose affine is then the identity)."""
    if affine is None:
        sp = MSD_SPACING if spacing is None else spacing
        affine = np.diag([*sp[:3], 1.0]) if len(sp) >= 3 else np.eye(4)
        affine[:3, 3] = offset
    img = nib.Nifti1Image(array, affine)
    if spacing is not None:
        img.header.set_zooms(tuple(spacing) + (1.0,) * (array.ndim - len(spacing)))
    nib.save(img, str(path))
    return path


#: What :func:`bad_nifti` can make.
BAD_NIFTI_KINDS = ("missing", "text", "truncated", "2D", "4D", "NaN", "constant", "not binary")


def bad_nifti(path: Path, kind: str, good: np.ndarray) -> Path:
    """A broken variant of the 3D array ``good`` at ``path`` (:data:`BAD_NIFTI_KINDS`): a file that
    does not exist, text, the first half of the file's bytes, its first slice (2D), two copies
    (4D), one NaN voxel, constant voxels, or labels 0 and 3 where ``good`` is 0 and not 0."""
    if kind == "missing":
        return path
    if kind == "text":
        path.write_text("this is not a NIfTI file\n")
    elif kind == "truncated":
        raw = write_nifti(path, good).read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "2D":
        write_nifti(path, good[:, :, 0], spacing=MSD_SPACING[:2])
    elif kind == "4D":
        write_nifti(path, np.stack([good, good], -1))
    elif kind == "NaN":
        bad = good.astype(np.float32)
        bad[tuple(s // 2 for s in bad.shape)] = np.nan
        write_nifti(path, bad)
    elif kind == "constant":
        write_nifti(path, np.ones_like(good))
    elif kind == "not binary":
        write_nifti(path, np.where(good != 0, 3, 0).astype(np.uint8))
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {BAD_NIFTI_KINDS}")
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
