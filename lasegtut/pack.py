"""A training pack: the preprocessed training cases in one small file, to take to a GPU.

A GPU machine lent for a few minutes (a Colab session, a cluster job, a cloud box) should not
spend them downloading and preprocessing 435 MB of NIfTI files. ``lasegtut pack`` writes the
preprocessing cache of the training cases (:func:`lasegtut.preprocess.write_cache`: cropped,
z-scored and min-max scaled to [0, 1], one ``(z, x, y)`` stack per case) into a single
xz-compressed file, and ``lasegtut train --pack FILE`` (or :func:`unpack`) turns it back into
a cache on the other machine, with nothing but NumPy and the standard library.

Images are quantised to ``bits`` bits (7 by default: 128 grey levels over [0, 1]). A step of
1/127 is far below the noise of these scans (the network never sees the difference: the
shipped model's Dice on the validation cases moves by less than 0.001 when its input is
quantised the same way), and it makes the 15 training cases of the 160 x 160 crop fit in about
19 MB instead of 24 MB at 8 bits or 88 MB as float16. Masks are stored as they are (uint8
{0, 1}). An image two cases share (la_005 and la_026: one scan, two labels) is stored once.

File layout: an ``.npz`` archive (``image.{sha1}`` uint8 per distinct image, ``{case}.mask``
uint8 per case, and ``index``: the cache index entries plus ``bits`` as JSON), compressed as a
whole with xz.
"""
from __future__ import annotations

import io
import json
import lzma
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import VALIDATION_CASES, case_paths, list_cases, resolve_data_dir
from .errors import LasegError
from .preprocess import (CACHE_VERSION, atomic_write, load_index, save_npy_atomic, write_cache,
                         write_json_atomic)
from .safeio import check_output_file, make_output_dir

PACK_FORMAT = "lasegtut-pack-v1"
#: The crop a pack holds by default: the 160 x 160 voxels the shipped model's geometry uses.
PACK_BORDER = 80


@dataclass
class PackSummary:
    """What :func:`write_pack` wrote (sizes in bytes, time in seconds)."""

    path: Path
    cases: list[str]
    bytes: int
    raw_bytes: int
    seconds: float

    def describe(self) -> str:
        return (f"packed {len(self.cases)} cases into {self.path}: {self.bytes / 1e6:.1f} MB "
                f"({self.raw_bytes / 1e6:.1f} MB as 8-bit arrays), {self.seconds:.0f} s")


def quantise(image: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] float image -> uint8 levels ``0 .. 2**bits - 1`` (rounded to the nearest)."""
    if not 1 <= bits <= 8:
        raise LasegError(f"bits must be 1..8, not {bits}")
    top = 2 ** bits - 1
    return np.rint(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * top).astype(np.uint8)


def dequantise(levels: np.ndarray, bits: int, dtype: str = "float16") -> np.ndarray:
    """Inverse of :func:`quantise`: uint8 levels -> [0, 1] float image."""
    return (levels.astype(np.float32) / (2 ** bits - 1)).astype(dtype)


def _image_key(entry: dict) -> str:
    """The pack's array name of a case's image: by content, so identical images are stored once."""
    return "image." + entry["image_sha1"]


def write_pack(data: str | os.PathLike | None, out: str | os.PathLike, *,
               cases: Sequence[str] | None = None, border: int = PACK_BORDER, bits: int = 7,
               force: bool = False, progress: bool = True) -> PackSummary:
    """Preprocess the training cases of an MSD folder and write them as one pack file.

    Args:
        data: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        out: the pack file to write (``.npz.xz`` by convention).
        cases: case ids (default: every labelled case except the fixed validation cases
            :data:`lasegtut.data.VALIDATION_CASES`, which stay out of any training set).
        border: in-plane crop per side, voxels (default 80: the central 160 x 160).
        bits: grey levels of the stored images, as bits (1..8).
        force: replace an existing ``out``.
    """
    quantise(np.zeros(1), bits)  # validates bits before any work
    root = resolve_data_dir(data)
    ids = list(cases) if cases else [c for c in list_cases(root) if c not in VALIDATION_CASES]
    # before any work: not a folder, none of the files read, existing only with force, a folder that accepts it
    inputs = [root / "dataset.json"] + [p for cid in ids for p in case_paths(root, cid)]
    out = check_output_file(out, force=force, inputs=inputs, what="pack")
    if not ids:
        raise LasegError(f"{root} holds no training cases outside the validation cases {', '.join(VALIDATION_CASES)}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lasegtut-pack-") as tmp:
        write_cache(root, tmp, cases=ids, border=border, progress=progress)
        index = load_index(tmp)
        images: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        entries = {}
        for cid in ids:
            entry = dict(index["cases"][cid])
            key = _image_key(entry)
            if key not in images:  # one copy of an image that two cases share (la_005 / la_026)
                images[key] = quantise(np.load(Path(tmp) / entry["image_file"]), bits)
            masks[f"{cid}.mask"] = np.load(Path(tmp) / entry["mask_file"])
            entry.pop("key", None)  # the source files' paths and times mean nothing elsewhere
            entries[cid] = entry
    meta = {"format": PACK_FORMAT, "bits": bits, "border": border, "cases": entries,
            "source": root.name}
    buf = io.BytesIO()
    np.savez(buf, index=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **images, **masks)
    raw = buf.getbuffer().nbytes
    packed = lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    atomic_write(out, lambda f: f.write(packed))
    return PackSummary(out, ids, len(packed), raw, time.perf_counter() - t0)


def read_pack(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a pack file; LasegError for anything that is not a valid pack."""
    path = Path(path)
    if not path.is_file():
        raise LasegError(f"pack {path} does not exist; make one with `lasegtut pack`")
    try:
        raw = lzma.decompress(path.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("index").tobytes().decode())
    except (lzma.LZMAError, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError):
        raise LasegError(f"{path} is not a readable lasegtut pack (truncated or another kind of file)") from None
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT:
        raise LasegError(f"{path} is not a {PACK_FORMAT} pack")
    bits, border, cases = meta.get("bits"), meta.get("border"), meta.get("cases")
    if not (isinstance(bits, int) and 1 <= bits <= 8 and isinstance(border, int) and border >= 0
            and isinstance(cases, dict)):
        raise LasegError(f"{path} is a damaged {PACK_FORMAT} pack (bits, border or cases)")
    for cid, entry in cases.items():
        # the file names are written into the cache folder: plain names only, nothing outside it
        if not (isinstance(entry, dict) and isinstance(entry.get("image_sha1"), str)
                and all(isinstance(entry.get(k), str) and entry[k] == Path(entry[k]).name
                        and not entry[k].startswith(".") for k in ("image_file", "mask_file"))):
            raise LasegError(f"{path} is a damaged {PACK_FORMAT} pack (the entry of case {cid})"[:200])
        if _image_key(entry) not in arrays or f"{cid}.mask" not in arrays:
            raise LasegError(f"{path} lacks the arrays of case {cid}")
    return meta, arrays


def unpack(path: str | os.PathLike, cache: str | os.PathLike, *, border: int | None = None) -> list[str]:
    """Write the cases of a pack into a preprocessing cache folder (created if needed).

    Cases already in the cache are replaced; other cases there (e.g. the bundled validation
    cases) are kept. ``border``: the crop (voxels per side) the cache's other cases have and the
    training uses; a pack of another crop is refused before anything is written (None: not
    checked). Returns the case ids.
    """
    meta, arrays = read_pack(path)
    pack_border, bits = int(meta["border"]), int(meta["bits"])
    if border is not None and pack_border != border:
        raise LasegError(f"{path} holds a crop of {pack_border} voxels per side, this training uses {border}: "
                         f"its cases would not match the others (`lasegtut pack` writes a crop of {PACK_BORDER})")
    cache = make_output_dir(cache, "cache folder")
    index_path = cache / "index.json"
    index = load_index(cache) if index_path.exists() else {"version": CACHE_VERSION, "cases": {}}
    for cid, entry in meta["cases"].items():
        image = dequantise(arrays[_image_key(entry)], bits)
        for name, arr in ((entry["image_file"], image), (entry["mask_file"], arrays[f"{cid}.mask"])):
            save_npy_atomic(cache / name, arr)
        index["cases"][cid] = dict(entry, key={"pack": Path(path).name, "border": pack_border, "bits": bits,
                                               "version": CACHE_VERSION})
    write_json_atomic(index_path, index)
    return list(meta["cases"])
