"""Preprocessing: the seed course's recipe, one function per step.

1. :func:`crop` removes a fixed in-plane border (32 px by default): a 320 x 320 scan becomes
   256 x 256, centred on the heart, and the U-Net sees less empty chest.
2. :func:`zscore` subtracts the volume's mean and divides by its standard deviation, so that
   scans from different scanner settings share one intensity scale.
3. :func:`minmax` rescales to [0, 1].
4. :func:`file_slices` turns the ``(x, y, z)`` volume into a stack of 2D slices ``(z, x, y)``:
   the files' own slices, across array axis 2 (sagittal sections in the MSD heart scans, see
   :mod:`lasegtut.anatomy`); :func:`reslice` cuts that stack across another array axis.

Steps 2 + 3 are :func:`normalize`; all four are :func:`preprocess_volume`. Note that min-max
undoes any positive affine change of intensities, so z-score followed by min-max gives exactly
min-max alone (notebook 03 shows it): the z-score is kept because it is the seed course's recipe
and a step students meet everywhere, and because it makes the two steps' roles explicit. Crop first, then
normalise: the statistics then come from the same pixels whether the border held anatomy
(the official files) or zeros (the shared copies).

:func:`write_cache` stores a whole data set as one memory-mappable image array and one mask
array per case (``la_009.image.npy`` float16 ``(z, x, y)``, ``la_009.mask.npy`` uint8) plus an
``index.json``: a few files instead of the seed's 4,542 float64 ``.npy`` slices (1.3 GB).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import case_paths, image_hash, list_cases, load_case, resolve_data_dir
from .errors import LasegError
from .safeio import make_output_dir

DEFAULT_BORDER = 32
CACHE_VERSION = 1


def crop(volume: np.ndarray, border: int = DEFAULT_BORDER) -> np.ndarray:
    """Remove ``border`` voxels from each side of the two in-plane axes (0 and 1).

    Args:
        volume: array ``(x, y, ...)``; any trailing axes are kept.
        border: voxels removed per side (default 32: 320 x 320 -> 256 x 256).

    Returns:
        A view ``volume[border:-border, border:-border]``.
    """
    if border < 0:
        raise LasegError(f"crop border must be >= 0, got {border}")
    if border == 0:
        return volume
    if volume.ndim < 2 or min(volume.shape[:2]) <= 2 * border:
        raise LasegError(f"cannot crop {border} px per side from an image of shape {volume.shape}")
    return volume[border:-border, border:-border]


def uncrop(cropped: np.ndarray, shape: tuple[int, ...], border: int = DEFAULT_BORDER,
           fill: float = 0) -> np.ndarray:
    """Inverse of :func:`crop`: place ``cropped`` in the middle of an array of ``shape``."""
    out = np.full(shape, fill, dtype=cropped.dtype)
    if border == 0:
        out[...] = cropped
    else:
        out[border:-border, border:-border] = cropped
    return out


def zscore(volume: np.ndarray) -> np.ndarray:
    """Per-volume z-score: ``(v - mean) / std`` over all voxels, as float32.

    Raises:
        LasegError: the volume is constant (std = 0) or not finite.
    """
    v = np.asarray(volume, dtype=np.float32)
    mean = float(v.mean(dtype=np.float64))
    std = float(v.std(dtype=np.float64))
    if not np.isfinite(std) or std == 0:
        raise LasegError("the image has no contrast (constant intensities) or non-finite values")
    return (v - mean) / std


def minmax(volume: np.ndarray) -> np.ndarray:
    """Rescale linearly to [0, 1] (float32)."""
    v = np.asarray(volume, dtype=np.float32)
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        raise LasegError("the image has no contrast (constant intensities)")
    return (v - lo) / (hi - lo)


def normalize(volume: np.ndarray) -> np.ndarray:
    """z-score then min-max: float32 in [0, 1]. Idempotent (up to float rounding)."""
    return minmax(zscore(volume))


def file_slices(volume: np.ndarray) -> np.ndarray:
    """``(x, y, z)`` volume -> ``(z, x, y)`` stack of the files' own slices (across array axis 2),
    C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(volume, 2, 0))


def context_indices(z: int, depth: int, context: int = 0, stride: int = 1) -> list[int]:
    """Indices of slice ``z`` and its ``context`` neighbours on each side, ``stride`` slices apart.

    Indices past either end of the stack are clamped (the edge slice is repeated), so every
    slice gets ``2 * context + 1`` channels. ``context=0`` gives ``[z]``.
    """
    return [min(max(z + k * stride, 0), depth - 1) for k in range(-context, context + 1)]


def stack_context(slices: np.ndarray, context: int = 0, stride: int = 1,
                  start: int = 0, stop: int | None = None) -> np.ndarray:
    """2.5D input: slices ``(z, H, W)`` -> ``(n, 2 * context + 1, H, W)`` for ``z`` in ``[start, stop)``.

    Channel ``context`` (the middle one) is the slice itself; the others are its neighbours
    ``stride`` slices apart along axis 0 (see :func:`context_indices`). A 2D network fed these
    channels sees a little of the third dimension at almost no extra cost: whether a bright
    blob is the atrium or a vessel is often clearer a few millimetres away.
    """
    depth = len(slices)
    stop = depth if stop is None else stop
    idx = [context_indices(z, depth, context, stride) for z in range(start, stop)]
    return np.asarray(slices)[np.asarray(idx, dtype=np.int64).reshape(len(idx), 2 * context + 1)]


def _is_file_axis(axis: int) -> bool:
    """True for axis 2 (the cache's own slices, nothing to do), False for 0 or 1; LasegError else."""
    if axis not in (0, 1, 2):
        raise LasegError(f"slice axis must be 0, 1 or 2, not {axis!r}")
    return axis == 2


def reslice(stack: np.ndarray, axis: int = 2) -> np.ndarray:
    """Re-slice a stack of the files' slices ``(z, x', y')`` into the 2D slices across array ``axis`` of the
    ``(x, y, z)`` volume, the slices a model trained on that axis segments.

    ``axis=2``: the stack itself, one ``(x', y')`` slice per z. ``axis=0``: one ``(z, y')`` slice
    per x, shape ``(x', D, y')``; ``axis=1``: one ``(z, x')`` slice per y, ``(y', D, x')``. The z
    axis is zero-padded, centred, to ``D = max(z, width)`` voxels, so that scans with different
    numbers of slices all give square slices of one size. Which anatomical plane an axis is
    depends on the scan: in the MSD heart scans array axis 2 holds the patient's left-right
    position fixed (sagittal sections) and axis 0 the front-back position (coronal sections),
    see :mod:`lasegtut.anatomy`. Undo with :func:`unreslice`.
    """
    if _is_file_axis(axis):
        return stack
    z = stack.shape[0]
    arr = np.moveaxis(np.asarray(stack), 0, 1) if axis == 0 else np.asarray(stack).transpose(2, 0, 1)
    depth = max(z, arr.shape[2])
    off = (depth - z) // 2
    out = np.zeros((arr.shape[0], depth, arr.shape[2]), dtype=stack.dtype)
    out[:, off:off + z] = arr
    return out


def unreslice(stack: np.ndarray, axis: int, depth: int) -> np.ndarray:
    """Inverse of :func:`reslice`: back to the files' ``(z, x', y')`` layout with ``z = depth``."""
    if _is_file_axis(axis):
        return stack
    off = (stack.shape[1] - depth) // 2
    core = stack[:, off:off + depth]
    return np.ascontiguousarray(np.moveaxis(core, 1, 0) if axis == 0 else core.transpose(1, 2, 0))


def preprocess_volume(image: np.ndarray, border: int = DEFAULT_BORDER) -> np.ndarray:
    """The full recipe for an ``(x, y, z)`` image: crop, normalise, slice -> float32 ``(z, x', y')``."""
    return file_slices(normalize(crop(image, border)))


def preprocess_mask(mask: np.ndarray, border: int = DEFAULT_BORDER) -> np.ndarray:
    """The same geometry for a label: crop and slice -> uint8 ``(z, x', y')``."""
    return file_slices(crop(mask, border).astype(np.uint8))


# ----------------------------------------------------------------------------- other grids
def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """The shape :func:`resample` gives a volume of ``shape`` voxels of ``spacing`` mm at ``target``
    mm: ``round(shape * spacing / target)``, at least 1 voxel per axis."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample(volume: np.ndarray, spacing: tuple[float, float, float], target: tuple[float, float, float],
             *, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Trilinear resampling of an ``(x, y, z)`` volume from ``spacing`` to about ``target`` mm.

    The field of view is kept: the new shape is ``round(shape * spacing / target)`` (or
    ``shape`` when given, e.g. to go back to a scan's own grid), and the first and last voxels'
    outer edges stay where they were, so resampling there and back returns the same grid.
    Returns float32.
    """
    import torch
    import torch.nn.functional as F

    if shape is None:
        shape = resampled_shape(volume.shape, spacing, target)
    if tuple(shape) == tuple(volume.shape):
        return np.asarray(volume, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    return F.interpolate(x, size=tuple(int(n) for n in shape), mode="trilinear", align_corners=False)[0, 0].numpy()


def window_origin(shape: tuple[int, ...], centre: tuple[float, float], size: int) -> tuple[int, int]:
    """In-plane corner ``(x0, y0)`` of a ``size`` x ``size`` window centred on ``centre`` (voxels;
    the window may stick out of the image). For a 320 x 320 scan, its centre and ``size`` 160 this
    is (80, 80): exactly :func:`crop` with ``border=80``."""
    return int(round(centre[0] - size / 2)), int(round(centre[1] - size / 2))


def preprocess_window(image: np.ndarray, origin: tuple[int, int], size: int) -> np.ndarray:
    """The recipe of :func:`preprocess_volume` on an in-plane window that may stick out of the
    image: the part inside is normalised (its own z-score and min-max, as a crop in training),
    the part outside is 0. Returns float32 slices ``(z, size, size)``."""
    x0, y0 = origin
    out = np.zeros((size, size, image.shape[2]), dtype=np.float32)
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + size, image.shape[0]), min(y0 + size, image.shape[1])
    if xa >= xb or ya >= yb:
        raise LasegError(f"the window at {origin} of {size} voxels lies outside the image {image.shape}")
    out[xa - x0:xb - x0, ya - y0:yb - y0] = normalize(image[xa:xb, ya:yb])
    return file_slices(out)


def paste_window(window: np.ndarray, shape: tuple[int, int, int], origin: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`preprocess_window`'s placement for a ``(x', y', z)`` array: the part of
    the window inside an image of ``shape``, at its place, zeros elsewhere."""
    x0, y0 = origin
    size_x, size_y = window.shape[:2]
    out = np.zeros(shape, dtype=window.dtype)
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + size_x, shape[0]), min(y0 + size_y, shape[1])
    out[xa:xb, ya:yb] = window[xa - x0:xb - x0, ya - y0:yb - y0]
    return out


# ----------------------------------------------------------------------------- the cache
@dataclass
class CacheSummary:
    """What :func:`write_cache` did (sizes in bytes, time in seconds)."""

    out: Path
    cases: list[str]
    slices: int
    bytes: int
    seconds: float
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"cached {len(self.cases)} cases ({self.slices} slices) in {self.out}: "
                f"{self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s"
                + (f"; {len(self.skipped)} already up to date" if self.skipped else ""))


def _cache_key(root: Path, case_id: str, border: int, dtype: str) -> dict:
    img, lab = case_paths(root, case_id)
    st_i, st_l = img.stat(), lab.stat()
    return {"image": str(img.resolve()), "image_size": st_i.st_size, "image_mtime": int(st_i.st_mtime),
            "label_size": st_l.st_size, "label_mtime": int(st_l.st_mtime),
            "border": border, "dtype": dtype, "version": CACHE_VERSION}


def write_cache(data: str | os.PathLike | None, out: str | os.PathLike = "cache", *,
                cases: list[str] | None = None, border: int = DEFAULT_BORDER,
                dtype: str = "float16", progress: bool = True) -> CacheSummary:
    """Preprocess every case of an MSD folder into ``out`` (see the module docstring).

    Up-to-date cases (same source files and settings) are not redone. Files are written to
    a temporary name and renamed, so an interrupted run never leaves a half-written case.

    Args:
        data: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        out: cache folder, created if needed.
        cases: subset of case ids (default: all listed in dataset.json).
        border: in-plane crop per side, voxels.
        dtype: ``"float16"`` (half the disk, ample for [0, 1] images) or ``"float32"``.
    """
    from tqdm.auto import tqdm

    if dtype not in ("float16", "float32"):
        raise LasegError(f"dtype must be float16 or float32, not {dtype}")
    root = resolve_data_dir(data)
    ids = cases or list_cases(root)  # dataset.json is checked before anything is written
    out = make_output_dir(out, "cache folder")
    index_path = out / "index.json"
    index = load_index(out) if index_path.exists() else {"version": CACHE_VERSION, "cases": {}}
    t0 = time.perf_counter()
    done, skipped = [], []
    for cid in tqdm(ids, desc="preprocess", disable=not progress):
        key = _cache_key(root, cid, border, dtype)
        entry = index["cases"].get(cid)
        if entry and entry.get("key") == key and (out / entry["image_file"]).exists():
            skipped.append(cid)
            done.append(cid)
            continue
        case = load_case(root, cid)
        img = preprocess_volume(case.image, border).astype(dtype)
        msk = preprocess_mask(case.label, border)
        for name, arr in ((f"{cid}.image.npy", img), (f"{cid}.mask.npy", msk)):
            save_npy_atomic(out / name, arr)
        index["cases"][cid] = {
            "key": key, "image_file": f"{cid}.image.npy", "mask_file": f"{cid}.mask.npy",
            "shape_zxy": list(img.shape), "spacing_mm": list(case.spacing),
            "original_shape_xyz": list(case.image.shape), "affine": case.affine.tolist(),
            "image_sha1": image_hash(case.image), "la_voxels": int(case.label.sum()),
            "la_slices": [int(i) for i in np.flatnonzero(msk.reshape(len(msk), -1).any(1))],
        }
        done.append(cid)
        del case, img, msk  # before the next case is read: one case in memory at a time
        write_json_atomic(index_path, index)
    index["data_root"] = str(root)
    write_json_atomic(index_path, index)
    nbytes = sum((out / index["cases"][c][k]).stat().st_size for c in done for k in ("image_file", "mask_file"))
    slices = sum(index["cases"][c]["shape_zxy"][0] for c in done)
    return CacheSummary(out, done, slices, nbytes, time.perf_counter() - t0, skipped)


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file of a unique name in the same folder, then rename:
    readers never see a half-written file, and two processes writing at once never share a
    temporary (the last complete write wins). The data are flushed to disk before the rename, so
    a full disk fails here, not later. The temporary is removed on any failure, Ctrl-C included
    (and SIGTERM under the command line, see :func:`lasegtut.safeio.termination_as_exception`).
    The file gets the permissions a newly created file would (the umask), not the 0600 of a
    temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux), else 0o022."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(Path(path), lambda f: f.write(json.dumps(obj, indent=1).encode()))


def load_index(cache: str | os.PathLike) -> dict:
    """Read ``cache/index.json``; LasegError if absent, unreadable, of another version, or without a
    ``cases`` table of entries that name their image and mask files."""
    p = Path(cache) / "index.json"
    try:
        index = json.loads(p.read_text())
    except FileNotFoundError:
        raise LasegError(f"{cache} is not a lasegtut cache (no index.json); run `lasegtut preprocess`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LasegError(f"{p} is corrupt; delete the cache folder and run `lasegtut preprocess` again") from None
    except OSError as e:
        raise LasegError(f"cannot read {p} ({e.strerror or type(e).__name__})") from None
    if not isinstance(index, dict):
        raise LasegError(f"{p} is corrupt; delete the cache folder and run `lasegtut preprocess` again")
    if index.get("version") != CACHE_VERSION:
        raise LasegError(f"{cache} was written by another lasegtut version; run `lasegtut preprocess` again")
    cases = index.get("cases")
    if not isinstance(cases, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("image_file"), str) and isinstance(e.get("mask_file"), str)
            for e in cases.values()):
        raise LasegError(f"{p} has no valid 'cases' table; delete the cache folder and run "
                         "`lasegtut preprocess` again")
    return index


def load_cached_case(cache: str | os.PathLike, case_id: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(image ``(z, x, y)`` float16/32, mask ``(z, x, y)`` uint8) of one cached case, memory-mapped."""
    index = load_index(cache)
    entry = index["cases"].get(case_id)
    if entry is None:
        raise LasegError(f"case {case_id!r} is not in the cache {cache}")
    mode = "r" if mmap else None
    return (np.load(Path(cache) / entry["image_file"], mmap_mode=mode),
            np.load(Path(cache) / entry["mask_file"], mmap_mode=mode))
