"""Many scans at once: a folder of scans -> a folder of masks and one table of volumes.

``lasegtut predict SCANS_DIR OUT_DIR`` (or several scan files, then the output folder) runs
:func:`predict_folder`: one mask per scan, ``OUT_DIR/<case>.nii.gz``, and ``OUT_DIR/volumes.csv``
with a row per scan (:data:`VOLUME_COLUMNS`). With a CSV of heights and weights (columns
``case,height_cm,weight_kg``) each row also gets the body-surface area, the LA volume index and
its grade.

- **Reruns never keep stale answers.** Each row records where it came from: the scan's size and
  SHA-256, the SHA-256 of the weights, the options (flip TTA, largest component) and the SHA-256
  of the mask written. A rerun skips a scan only when all of these still hold and the mask on disk
  hashes to what was written; anything else (a truncated mask, another patient's scan copied over
  the name, other weights) is done again. Rows of scans that are not in this run are kept.
- **Every entry named like a scan gets a row**: a folder, a broken link or a symbolic-link loop
  named ``x.nii.gz`` gets ``error: ... is a folder, not a scan`` (and a pipe is never read).
- **A bad scan does not stop the batch**: its row says ``error: <why>`` and the run goes on.
- **Parts of one cohort, at once, into one folder** (``--part K --parts N``, :func:`select_part`):
  part ``K`` (counted from 0, like nnU-Net's ``-part_id``) takes the scans at positions
  ``K, K + N, K + 2N ...`` of the scans sorted by case name, so N jobs of a batch scheduler cover
  the cohort with disjoint shares. ``volumes.csv`` is updated under an exclusive ``flock`` on
  ``OUT_DIR/.volumes.csv.lock`` (read, merge this scan's row, write, atomic rename), so
  concurrent parts never lose each other's rows. See ``docs/cluster.md``.
- **Nothing half-written, no temporaries left behind.** Every run writes its temporaries in a
  folder of its own, ``OUT_DIR/.lasegtut-run-<host>-<pid>-<random>/``, holds an exclusive
  ``flock`` on its ``lock`` file while it lives, and renames finished masks and tables into
  place. A run starts by removing the folders of runs that died (SIGKILL, a node lost): their
  lock is free. The temporaries of a run still working are never touched (its lock is held).
  (``flock`` must work across the machines sharing the folder: NFSv4 and most cluster file
  systems do; Lustre needs its ``flock`` mount option.)
- **Uses the machine**: the model is loaded once for the whole folder (a separate
  ``lasegtut predict`` per scan pays for starting Python, importing PyTorch and loading the
  weights every time), torch's threads run the network on every core, and the next scan is
  read and decompressed in a background thread while the network works on the current one.

``evaluate_folders`` scores a folder of predicted masks against a folder of labels: the same
per-case figures as ``benchmarks/quality.py`` and a summary (mean, SD, worst case).
"""
from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .data import load_image, load_mask_pair, load_nifti
from .errors import LasegError
from .evaluation import ROW_KEYS, summarize_scores
from .metrics import NSD_TOLERANCE_MM, score_masks
from .preprocess import atomic_write
from .safeio import make_output_dir
from .volume import bsa_mosteller, grade_lavi, implausible, lavi, volume_error_pct, volume_ml

#: Columns of ``volumes.csv`` (volume in mL, spacing in mm, time in s; height to grade only with
#: heights and weights; then where the row came from: the scan's size in bytes and SHA-256, the
#: mask's SHA-256, the weights' SHA-256 and the options, which decide whether a rerun may skip it;
#: last the scan's uncertainty and QC flag, :mod:`lasegtut.uncertainty`; a table written before
#: they existed is read as it is, and its rows, which lack them, are done again).
VOLUME_COLUMNS = ("case", "status", "volume_ml", "voxels", "spacing_mm", "seconds", "mask",
                  "height_cm", "weight_kg", "bsa_m2", "lavi_ml_m2", "grade",
                  "scan_bytes", "scan_sha256", "mask_sha256", "weights_sha256", "options",
                  "uncertainty", "qc")
#: Columns of :func:`evaluate_folders`' table: :data:`lasegtut.evaluation.ROW_KEYS` and the volume error (%).
SCORE_COLUMNS = ROW_KEYS + ("volume_error_pct",)
#: The lock file beside ``volumes.csv`` that serialises its updates (kept; it holds no data).
TABLE_LOCK = ".volumes.csv.lock"
#: Prefix of each run's own folder of temporaries inside the output folder.
RUN_PREFIX = ".lasegtut-run-"
#: A run folder without its lock file is only being created, unless older than this (s): then
#: its run died in the instant between creating the folder and its lock.
ORPHAN_AGE_S = 3600.0
#: Temporaries that lasegtut versions before run folders wrote beside the masks
#: (``.<name>.<random>.tmp``); removed when older than this (s): no write takes that long.
LEGACY_TMP_AGE_S = 600.0


def case_name(path: str | os.PathLike) -> str:
    """``la_003`` for ``.../la_003.nii.gz`` or ``.../la_003.nii``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_scans(inputs: Sequence[str | os.PathLike], *, every_entry: bool = False) -> list[Path]:
    """The NIfTI files named, or found (sorted) in the folders named; LasegError if none.

    ``every_entry``: also list what is only *named* like a scan in a folder (a folder, a broken
    link, a symbolic-link loop, a pipe), and named links that lead nowhere, so that each gets a
    row saying what it is (:func:`entry_problem`) instead of vanishing from the table.
    """
    scans: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.name.endswith((".nii", ".nii.gz")) and not q.name.startswith("."))
            scans += found if every_entry else [q for q in found if q.is_file()]
        elif p.is_file() or (every_entry and p.is_symlink()):
            scans.append(p)
        else:
            raise LasegError(f"{p} does not exist")
    if not scans:
        raise LasegError(f"no .nii or .nii.gz scans in {', '.join(str(i) for i in inputs)}")
    names = [case_name(s) for s in scans]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LasegError(f"two scans share the case name {dupes[0]}; their masks would overwrite each other")
    return scans


def check_part(part: int | None, parts: int | None) -> None:
    """Check ``--part K --parts N`` (both or neither; ``N >= 1``; ``0 <= K < N``: parts count from
    0, like nnU-Net's ``-part_id``). Raises LasegError in one line."""
    if part is None and parts is None:
        return
    if part is None or parts is None:
        raise LasegError("give --part and --parts together, e.g. --part 0 --parts 4")
    if parts < 1:
        raise LasegError(f"--parts must be 1 or more, not {parts}")
    if not 0 <= part < parts:
        raise LasegError(f"--part {part} is out of range for --parts {parts}: parts count from 0 "
                         f"(like nnU-Net's -part_id), so give 0 to {parts - 1}")


def select_part(scans: Sequence[Path], part: int | None, parts: int | None) -> list[Path]:
    """Part ``part`` of ``parts`` disjoint, deterministic shares of ``scans``: those at positions
    ``part, part + parts, ...`` once sorted by case name (every part must be given the same scans).
    None, None: every scan, sorted."""
    check_part(part, parts)
    ordered = sorted(scans, key=case_name)
    if parts is None:
        return ordered
    return [s for i, s in enumerate(ordered) if i % parts == part]


def entry_problem(path: Path) -> str | None:
    """Why ``path`` is no scan to read (a folder, a link loop, a broken link, a pipe or device),
    in words; None for a regular file (or a link to one)."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path.name} is a symbolic link loop, not a scan"
        if path.is_symlink():
            return f"{path.name} is a broken symbolic link (what it points to does not exist)"
        return f"{path.name} cannot be read ({e.strerror or type(e).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return f"{path.name} is a folder, not a scan"
    if not stat.S_ISREG(st.st_mode):
        return f"{path.name} is not a regular file (a pipe or a device?), not a scan"
    return None


def file_sha256(path: str | os.PathLike) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex)`` of a file, read in 1 MiB blocks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(2 ** 20):
            h.update(block)
            n += len(block)
    return n, h.hexdigest()


def read_body_sizes(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``{case: (height_cm, weight_kg)}`` from a CSV with the columns ``case,height_cm,weight_kg``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise LasegError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from None
    out = {}
    for i, r in enumerate(rows, start=2):
        try:
            case, size = r["case"].strip(), (float(r["height_cm"]), float(r["weight_kg"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LasegError(f"{path} line {i}: need the columns case,height_cm,weight_kg with numbers") from None
        if case in out:  # which line is right? never pick one silently
            raise LasegError(f"{path} line {i}: case {case} is given twice; keep one line per case")
        try:  # before any scan is segmented: a height in metres, a weight in pounds
            bsa_mosteller(*size)
        except LasegError as e:
            raise LasegError(f"{path} line {i} ({case}): {e}") from None
        out[case] = size
    return out


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _read_done(table: Path) -> dict[str, dict]:
    """The rows of an existing ``volumes.csv`` by case (none: empty). An unreadable table is
    refused rather than replaced: it may hold the rows of scans this run does not redo."""
    if not (table.exists() or table.is_symlink()):
        return {}
    try:
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return {}  # an empty file
            if "case" not in reader.fieldnames:
                raise LasegError(f"{table} is not a lasegtut volumes table (no case column); it is never "
                                 "overwritten: move it away or choose another output folder")
            return {r["case"]: r for r in reader if r.get("case")}
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise LasegError(f"{table} cannot be read ({getattr(e, 'strerror', None) or type(e).__name__}); it is never "
                         "overwritten: move it away or choose another output folder") from None


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) within the block."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class RunSpace:
    """This run's own folder of temporaries inside the output folder, locked while the run lives
    (see the module docstring). Use as a context manager; ``.dir`` is the folder."""

    def __init__(self, out: Path) -> None:
        self.out, self.dir, self._fd = out, None, None

    def __enter__(self) -> "RunSpace":
        import fcntl

        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40] or "host"
        for _ in range(10):
            d = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{host}-{os.getpid()}-", dir=self.out))
            try:
                fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # a cleaner removed it in the instant before its lock existed
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:  # still ours, not removed meanwhile by another run's cleaner
                self.dir, self._fd = d, fd
                return self
            os.close(fd)
        raise LasegError(f"could not create a folder for temporary files in {self.out}")

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._fd)


def remove_leftovers(out: Path) -> list[str]:
    """Remove the temporaries of runs into ``out`` that died (SIGKILL, a lost node): run folders
    whose lock no process holds, run folders older than :data:`ORPHAN_AGE_S` without a lock file,
    and the ``.<name>.<random>.tmp`` files older versions wrote beside the masks, once older than
    :data:`LEGACY_TMP_AGE_S`. A living run's folder is never touched. Returns the names removed."""
    import fcntl

    removed = []
    now = time.time()
    for d in sorted(out.glob(RUN_PREFIX + "*")):
        if d.is_symlink() or not d.is_dir():
            continue
        try:
            fd = os.open(d / "lock", os.O_RDWR)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if now - d.stat().st_mtime > ORPHAN_AGE_S:
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d.name)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a living run holds it
            os.close(fd)
            continue
        try:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
        finally:
            os.close(fd)
    for f in out.glob(".*.tmp"):
        if re.fullmatch(r"\.(.+\.nii(\.gz)?|volumes\.csv)\.[A-Za-z0-9_]+\.tmp", f.name):
            with contextlib.suppress(OSError):
                if f.is_file() and not f.is_symlink() and now - f.stat().st_mtime > LEGACY_TMP_AGE_S:
                    f.unlink()
                    removed.append(f.name)
    return removed


def weights_fingerprint(weights: Sequence[str | os.PathLike] | None) -> str:
    """SHA-256 of the weights file (the shipped model's when None), or for several files the
    SHA-256 of their SHA-256s in order: what ``weights_sha256`` of a row records."""
    from .paths import SHIPPED_WEIGHTS

    hashes = [file_sha256(w)[1] for w in (weights or [SHIPPED_WEIGHTS])]
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def options_fingerprint(*, tta: bool, largest_component: bool) -> str:
    """The options that change a mask, as ``volumes.csv`` records them (``tta=0 largest_component=1``)."""
    return f"tta={int(bool(tta))} largest_component={int(bool(largest_component))}"


def _still_valid(old: dict | None, out: Path, case: str, scan: Path, provenance: dict) -> bool:
    """True when ``old`` (a row of the table) may be kept for ``scan``: it holds a mask (``ok`` or
    ``implausible``) made with the same weights and options from a scan of the same size and
    SHA-256, with its QC flag (a row from before QC existed is done again) and its sidecar, and
    the mask on disk hashes to what was written."""
    from .uncertainty import QC_VALUES, sidecar_path

    if not old or not (old.get("status") == "ok" or str(old.get("status", "")).startswith("implausible")):
        return False
    if old.get("qc") not in QC_VALUES or not old.get("uncertainty") \
            or not sidecar_path(out / f"{case}.nii.gz").is_file():
        return False
    if any(old.get(k) != v for k, v in provenance.items()) or old.get("mask") != f"{case}.nii.gz":
        return False
    mask = out / f"{case}.nii.gz"
    try:
        if entry_problem(scan) or entry_problem(mask) or mask.is_symlink():
            return False
        n, sha = file_sha256(scan)
        return str(n) == old.get("scan_bytes") and sha == old.get("scan_sha256") \
            and file_sha256(mask)[1] == old.get("mask_sha256")
    except OSError:
        return False


def _body_size_columns(row: dict, case: str, sizes: dict[str, tuple[float, float]]) -> None:
    """Add BSA, LA volume index and grade to an ``ok`` row for a case with a height and weight."""
    if case in sizes and row.get("status") == "ok":
        h, w = sizes[case]
        bsa = bsa_mosteller(h, w)
        index = lavi(float(row["volume_ml"]), bsa)
        row.update(height_cm=h, weight_kg=w, bsa_m2=round(bsa, 3), lavi_ml_m2=round(index, 2), grade=grade_lavi(index))


def _merge_rows(out: Path, run: RunSpace, rows: dict[str, dict]) -> None:
    """Put ``rows`` into ``out/volumes.csv``, keeping every other row: read, merge, write in the
    run's folder and rename, all under the table's lock, so parts running at once lose nothing."""
    table = out / "volumes.csv"
    with _flocked(out / TABLE_LOCK):
        current = _read_done(table)
        current.update(rows)
        staged = run.dir / "volumes.csv"
        _write_csv(staged, VOLUME_COLUMNS, [current[c] for c in sorted(current)])
        os.replace(staged, table)


def predict_folder(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                   weights: Sequence[str | os.PathLike] | None = None, device: str = "auto",
                   body_sizes: str | os.PathLike | None = None, force: bool = False, tta: bool = False,
                   largest_component: bool = True, progress: bool = True,
                   part: int | None = None, parts: int | None = None,
                   uncertainty_maps: str | os.PathLike | None = None) -> tuple[Path, list[dict]]:
    """Segment every scan of ``inputs`` (or part ``part`` of ``parts``, :func:`select_part`) into
    ``out_dir``; returns (``volumes.csv``, the rows of this run's scans).

    ``force``: redo this run's scans even where their rows are still valid. Every mask gets its
    QC sidecar ``<case>.qc.json`` (:mod:`lasegtut.uncertainty`) and its row the ``uncertainty``
    and ``qc`` columns. ``uncertainty_maps``: a folder (created if needed; not the output folder
    nor a scans' folder) for one voxel uncertainty map per scan, ``<case>.nii.gz``, replaced if
    there; the maps come from the probabilities, which are not kept, so with it every scan of
    this run is segmented again. See the module docstring for the rest.
    """
    from tqdm.auto import tqdm

    check_part(part, parts)
    everything = list_scans(inputs, every_entry=True)
    scans = select_part(everything, part, parts)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LasegError(f"output {out} is a file; give a folder for the masks and volumes.csv")
    inputs_dirs = {s.parent.resolve() for s in everything}
    if out.exists() and out.resolve() in inputs_dirs:
        raise LasegError(f"the output folder {out} holds the scans themselves; masks would replace them: "
                         "give another folder")
    maps = Path(uncertainty_maps) if uncertainty_maps is not None else None
    if maps is not None:
        if maps.exists() and not maps.is_dir():
            raise LasegError(f"--uncertainty-map {maps} is a file; with a folder of scans give a folder for the maps")
        if maps.resolve() in inputs_dirs or maps.resolve() == out.resolve():
            raise LasegError(f"--uncertainty-map {maps} is the output folder or holds the scans; the maps "
                             "would replace masks or scans: give a folder of their own")
    sizes = read_body_sizes(body_sizes) if body_sizes else {}
    table = out / "volumes.csv"
    done = _read_done(table)  # before any work: an unreadable table is refused, never replaced

    # torch only where a model runs: `lasegtut evaluate` on folders (evaluate_folders) needs none
    from .inference import load_models, predict_volume, resolve_device, write_mask
    from .paths import SHIPPED_WEIGHTS
    from .uncertainty import (assess, members_threshold, sidecar, sidecar_path, voxel_uncertainty,
                              write_sidecar, write_uncertainty_map)

    dev = resolve_device(device)
    members = load_models(weights, device=dev)
    threshold = members_threshold([info for _, info in members])
    provenance = {"weights_sha256": weights_fingerprint(weights),
                  "options": options_fingerprint(tta=tta, largest_component=largest_component)}
    weight_names = [str(w) for w in weights] if weights else ["shipped:" + SHIPPED_WEIGHTS.name]
    make_output_dir(out)
    if maps is not None:
        make_output_dir(maps, what="uncertainty map folder")
    remove_leftovers(out)
    rows: dict[str, dict] = {}

    def load(path: Path):
        try:
            why = entry_problem(path)
            if why:
                raise LasegError(why)
            n, sha = file_sha256(path)
            original = load_nifti(path)
            return original, load_image(path, original), n, sha
        except LasegError as e:
            return e
        except OSError as e:
            return LasegError(f"{path.name} cannot be read ({e.strerror or type(e).__name__})")

    with RunSpace(out) as run:
        todo, kept = [], {}
        for scan in scans:
            case = case_name(scan)
            if not force and maps is None and _still_valid(done.get(case), out, case, scan, provenance):
                row = dict(done[case])
                _body_size_columns(row, case, sizes)  # a height or weight given anew
                kept[case] = row
            else:
                todo.append(scan)
        rows.update(kept)
        if kept:
            _merge_rows(out, run, kept)
        bar = tqdm(total=len(scans), initial=len(scans) - len(todo), desc="scans", unit="scan", disable=not progress)
        with ThreadPoolExecutor(max_workers=1) as reader:  # reads scan i + 1 while scan i is segmented
            pending = reader.submit(load, todo[0]) if todo else None
            for i, scan in enumerate(todo):
                case, t0 = case_name(scan), time.perf_counter()
                loaded = pending.result()
                pending = reader.submit(load, todo[i + 1]) if i + 1 < len(todo) else None
                row: dict = {"case": case, **provenance}
                final = out / f"{case}.nii.gz"
                try:
                    if isinstance(loaded, LasegError):
                        raise loaded
                    original, (image, spacing, _), n, sha = loaded
                    row.update(scan_bytes=n, scan_sha256=sha)
                    mask_ras, prob = predict_volume(image, members, spacing=spacing, tta=tta,
                                                    largest_cc=largest_component, device=dev,
                                                    return_probability=True)
                    if not mask_ras.any():
                        raise LasegError("no left atrium found (the model's answer is empty)")
                    ml = volume_ml(mask_ras, spacing)
                    qc = assess(prob, mask_ras, spacing, threshold, ml)
                    if maps is not None:
                        write_uncertainty_map(voxel_uncertainty(prob), original, maps / final.name)
                    del prob
                    staged = write_mask(mask_ras, original, run.dir / final.name)
                    row["mask_sha256"] = file_sha256(staged)[1]
                    side = write_sidecar(run.dir / sidecar_path(final).name,
                                         sidecar({**qc, "volume_ml": round(ml, 2)}, staged, weights=weight_names,
                                                 weights_sha256=provenance["weights_sha256"]))
                    os.replace(staged, final)
                    os.replace(side, sidecar_path(final))
                    why = implausible(ml)
                    row.update(status="ok" if why is None else f"implausible: {why}",
                               volume_ml=round(ml, 2), voxels=int(mask_ras.sum()),
                               spacing_mm=" ".join(f"{s:.4g}" for s in spacing), mask=final.name,
                               uncertainty=qc["uncertainty"], qc=qc["qc"])
                    _body_size_columns(row, case, sizes)
                except LasegError as e:
                    row["status"] = f"error: {e}"
                except MemoryError:
                    row["status"] = "error: not enough memory for this scan"
                if row["status"].startswith("error"):  # an old answer for what is no longer this scan:
                    for old in (final, sidecar_path(final)):  # no mask (nor its sidecar) beside an error row
                        if old.is_file() or old.is_symlink():
                            old.unlink()
                row["seconds"] = round(time.perf_counter() - t0, 2)
                rows[case] = row
                _merge_rows(out, run, {case: row})
                bar.update(1)
        bar.close()
    return table, [rows[c] for c in sorted(rows)]


def evaluate_folders(pred_dir: str | os.PathLike, label_dir: str | os.PathLike, *,
                     nsd_tolerance_mm: float = NSD_TOLERANCE_MM) -> tuple[list[dict], dict]:
    """Score every mask of ``pred_dir`` against the label of the same case name in ``label_dir``.

    Returns ``(rows, summary)``: one dict per case with :data:`SCORE_COLUMNS` (Dice, IoU, HD95
    and ASSD in mm, NSD at ``nsd_tolerance_mm``, volumes in mL, volume error in %), and for each
    numeric column its ``mean``, ``sd``, ``ci95`` (``[lo, hi]``, the 95% percentile-bootstrap
    interval of the mean over cases: :func:`lasegtut.stats.bootstrap_ci`) and the ``worst`` case
    (lowest Dice, IoU and NSD, largest distances and absolute volume error); also
    ``mean_abs_volume_error_pct`` with its ``mean_abs_volume_error_pct_ci95``, and ``bootstrap``
    (cases, resamples, seed). A prediction without a label is an error; labels without a
    prediction are ignored.
    """
    preds = list_scans([pred_dir])
    labels = {case_name(p): p for p in list_scans([label_dir])}
    rows = []
    for p in preds:
        case = case_name(p)
        if case not in labels:
            raise LasegError(f"no label for {p.name} in {label_dir}")
        pred, lab, sp_p, sp_l = load_mask_pair(p, labels[case])
        m = score_masks(pred, lab, sp_l, pred_spacing=sp_p, nsd_tolerance_mm=nsd_tolerance_mm)
        rows.append({"case": case, **m, "volume_error_pct": volume_error_pct(m["volume_pred_ml"], m["volume_label_ml"])})
    return rows, summarize_scores(rows, SCORE_COLUMNS[1:], nsd_tolerance_mm=nsd_tolerance_mm)
