"""Reading a Medical Segmentation Decathlon (MSD) task folder.

An MSD task folder looks like::

    Task02_Heart/
      dataset.json            lists the labelled cases ("training") and test images
      imagesTr/la_003.nii.gz  3D MRI, int16
      labelsTr/la_003.nii.gz  uint8 {0 = background, 1 = left atrium}

Every volume is brought to RAS orientation (``nibabel.as_closest_canonical``) so that array
axis 0 points right, axis 1 anterior and axis 2 superior for *every* scan, whatever its
header said. Arrays are indexed ``(x, y, z)``; spacing is in millimetres in the same order.
(RAS as the header states it: the Task02_Heart headers are plain diagonal matrices that do not
match the anatomy. Read from the anatomy, array axis 0 runs posterior -> anterior, axis 1
inferior -> superior and axis 2 from the patient's left to right: :data:`MSD_HEART_AXCODES`,
kept with the other orientation helpers in :mod:`lasegtut.orientation`.
So the files' own slices, across axis 2, are sagittal sections; see :mod:`lasegtut.anatomy`.)

Where the data comes from (first match wins):

1. the ``root`` argument / ``--data DIR`` on the command line,
2. the environment variable ``LASEG_DATA_DIR``,
3. the bundled real sample ``data/sample`` (three cases, always present in a clone).

Nothing is ever downloaded implicitly: use ``lasegtut download`` for the full data set.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from .errors import LasegError, LasegWarning
from .orientation import MSD_HEART_AXCODES, to_ras
from .paths import BUNDLED_SAMPLE, DATA_DIR_VAR, DUPLICATE_PAIR
from .volume import voxel_volume_mm3

#: The three bundled cases; they are never used for training the shipped model.
VALIDATION_CASES = ("la_009", "la_014", "la_020")
#: Labelled cases in the official Task02_Heart release (it also has 10 unlabelled test scans).
MSD_LABELLED_CASES = 20
#: Task02_Heart holds one scan twice, with two different labels: la_005 and la_026.
DUPLICATE_CASES = ("la_005", "la_026")
# DUPLICATE_PAIR (:mod:`lasegtut.paths`): that scan and its two labels, cropped around the atrium,
# shipped with the course (about 1 MB; CC-BY-SA 4.0, see its README.md): the duplicate-scan lesson
# runs in any clone.
#: Voxel size (mm, x y z) of the MSD Task02_Heart scans: what a model trained on them expects, and
#: the training spacing of weights files that do not record their own.
MSD_SPACING = (1.25, 1.25, 1.37)
#: In-plane size (voxels, x and y) of the MSD Task02_Heart scans, on which a model's crop
#: (:attr:`lasegtut.geometry.Geometry.border`) is measured.
MSD_SIZE = 320

#: The largest scan any command loads: 2**27 voxels (134 M, e.g. 512 x 512 x 512), seven times the
#: largest MSD heart scan (320 x 320 x 180). Larger files are refused from their header, before
#: a byte of voxel data is read (a 1024 x 1024 x 512 scan once took 8.9 GB to segment).
MAX_VOXELS = 2 ** 27
#: Memory one input voxel costs while it is segmented, bytes (the float32 image, its normalised
#: crop, probabilities and masks; measured 34 B on la_014: 420 MB for 12.3 M voxels, rounded up).
INFERENCE_BYTES_PER_VOXEL = 40


@dataclass
class Case:
    """One labelled scan in RAS orientation.

    Attributes:
        case_id: e.g. ``"la_009"``.
        image: float32 array ``(x, y, z)``, raw scanner intensities.
        label: uint8 array ``(x, y, z)`` with values in {0, 1}, or None for an unlabelled scan.
        spacing: voxel size in mm ``(sx, sy, sz)``.
        affine: 4 x 4 voxel-to-world (mm) matrix of the RAS arrays.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3 (:func:`lasegtut.volume.voxel_volume_mm3`)."""
        return voxel_volume_mm3(self.spacing)


def resolve_data_dir(root: str | os.PathLike | None = None) -> Path:
    """Return the MSD task folder to use: ``root``, else ``$LASEG_DATA_DIR``, else the sample.

    A folder that holds ``Task02_Heart/dataset.json`` (what ``lasegtut download`` leaves in its
    destination) is accepted too and resolved to that sub-folder.

    Raises:
        LasegError: the folder does not exist or holds no ``dataset.json``.
    """
    if root is None or str(root) == "":
        env = os.environ.get(DATA_DIR_VAR)
        root = env if env else BUNDLED_SAMPLE
        source = f"${DATA_DIR_VAR}" if env else "the bundled sample"
    else:
        source = "--data"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise LasegError(f"data folder {path} (from {source}) does not exist; "
                         "run `lasegtut download` or pass --data DIR")
    if not (path / "dataset.json").is_file() and (path / "Task02_Heart" / "dataset.json").is_file():
        path = path / "Task02_Heart"
    if not (path / "dataset.json").is_file():
        raise LasegError(f"{path} is not an MSD task folder: dataset.json is missing")
    return path


def read_dataset_json(root: str | os.PathLike) -> dict:
    """Parse ``root/dataset.json``; raise LasegError if it is missing or not valid JSON."""
    p = Path(root) / "dataset.json"
    try:
        with open(p, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise LasegError(f"{p} is missing: not an MSD task folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LasegError(f"{p} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        raise LasegError(f"{p} has no 'training' list")
    for i, e in enumerate(meta["training"]):
        if not (isinstance(e, dict) and all(isinstance(e.get(k), str) and e[k] for k in ("image", "label"))):
            raise LasegError(f"{p}: training entry {i} is not an object with 'image' and 'label' paths "
                             f"(got {json.dumps(e)[:80]})")
    return meta


def _case_id(entry_path: str) -> str:
    name = Path(entry_path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_cases(root: str | os.PathLike | None = None) -> list[str]:
    """Case ids of the labelled cases listed in ``dataset.json``, sorted (e.g. ``["la_003", ...]``)."""
    root = resolve_data_dir(root)
    meta = read_dataset_json(root)
    return sorted(_case_id(e["image"]) for e in meta["training"])


def case_paths(root: str | os.PathLike, case_id: str) -> tuple[Path, Path]:
    """(image path, label path) of a case listed in ``dataset.json``.

    Raises:
        LasegError: the case is not listed, or listed but its files are absent.
    """
    root = Path(root)
    meta = read_dataset_json(root)
    for e in meta["training"]:
        if _case_id(e["image"]) == case_id:
            img, lab = root / e["image"], root / e["label"]
            for p in (img, lab):
                if not p.is_file():
                    raise LasegError(f"case {case_id} is listed in dataset.json but {p} is missing")
            return img, lab
    raise LasegError(f"case {case_id!r} is not listed in {root / 'dataset.json'}")


def load_nifti(path: str | os.PathLike, *, what: str = "image", guessed: str = "refuse") -> nib.Nifti1Image:
    """Open a 3D NIfTI file and check it is usable (no voxel data is read yet).

    The header is checked (:func:`check_header`) and the size limited to :data:`MAX_VOXELS`.

    Args:
        what: how the file is named in messages (``"image"``, ``"label"``, ``"mask"``).
        guessed: what to do with a header whose orientation nibabel would have to guess
            (qform and sform codes both 0): ``"refuse"`` (scans: a mirrored guess changes the
            segmentation) or ``"warn"`` (masks: their volume needs only the voxel size).

    Raises:
        LasegError: missing file, not a NIfTI, not 3D, a header without a voxel size or with a
            singular or self-contradicting geometry, complex or RGB voxels, too many voxels.
    """
    p = Path(path)
    if not p.is_file():
        raise LasegError(f"{what} {p} does not exist")
    try:
        with _quiet_nibabel():  # nibabel would print its header fixes ("setting 0 dims to 1")
            img = nib.load(str(p))
    except Exception as e:  # nibabel raises many types for non-NIfTI input
        raise LasegError(f"{p} is not a readable NIfTI file ({type(e).__name__})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise LasegError(f"{p} is not a NIfTI file")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise LasegError(f"{p} is {len(shape)}D with shape {tuple(shape)}; a 3D volume is needed")
    check_header(img, p, guessed=guessed)
    stored = img.get_data_dtype()
    if stored.kind == "c":  # numpy would drop the imaginary part with a ComplexWarning
        hint = " (e.g. the magnitude image)" if what == "image" else ""
        raise LasegError(f"{p} holds complex voxels ({stored.name}); give a real-valued {what}{hint}")
    if stored.kind not in "biuf":  # RGB colour voxels (a structured type): no grey level to read
        raise LasegError(f"{p} holds {stored.names and 'colour (RGB)' or stored.name} voxels; "
                         f"give a single-channel (grey-level) {what}")
    n = int(np.prod(img.shape, dtype=np.int64))
    if n > MAX_VOXELS:
        raise LasegError(f"{p} has {n / 1e6:.0f} million voxels {tuple(img.shape)}, more than the "
                         f"{MAX_VOXELS / 1e6:.0f} million lasegtut loads; crop or resample it first")
    return img


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's header-fix messages within the block (:func:`check_header` says what
    matters, in one line). nibabel's own ``LoggingOutputSuppressor`` drops its handler for good."""
    logger = logging.getLogger("nibabel.global")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def check_header(img: nib.Nifti1Image, path: str | os.PathLike, *, guessed: str = "refuse") -> None:
    """Refuse a NIfTI header whose geometry nibabel would have to guess or that contradicts itself.

    - a voxel size (pixdim 1-3) of 0 or not finite: nibabel silently makes it 1 mm (checked in
      the header as stored, before nibabel's fixes);
    - qform and sform codes both 0: nibabel then assumes the voxel size of pixdim and a mirrored
      (LAS) layout; refused with ``guessed="refuse"``, a :class:`lasegtut.errors.LasegWarning`
      with ``"warn"``;
    - an affine that is not finite or is singular (a voxel axis of length 0, or two parallel);
    - a voxel size (pixdim) that differs from the affine's (sform) by more than 0.1 %: volumes use
      the one, orientation the other.

    Raises:
        LasegError: one line naming the problem.
    """
    import warnings

    from nibabel.openers import ImageOpener

    hdr = img.header
    try:  # the header as stored: nibabel has already replaced a pixdim of 0 by 1 in img.header
        with ImageOpener(str(path)) as f:
            raw = type(hdr).from_fileobj(f, check=False)
        pixdim = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    except Exception:  # the header was read once by nib.load already; fall back on its (fixed) copy
        pixdim = np.asarray(hdr["pixdim"][1:4], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise LasegError(f"{path}: the header gives no voxel size (pixdim {pixdim.tolist()}), so nibabel "
                         "would assume 1 mm; set the voxel size in mm in the header and try again")
    if int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 0:
        msg = (f"{path}: the header does not say how the voxels lie in the patient (qform_code and "
               "sform_code are both 0), so nibabel would guess a mirrored (LAS) layout")
        if guessed == "refuse":
            raise LasegError(msg + "; set a qform or sform (e.g. in 3D Slicer) and try again")
        size = " x ".join(f"{v:g}" for v in np.abs(pixdim))
        warnings.warn(LasegWarning(f"{msg}; its voxel size is taken from pixdim ({size} mm)"), stacklevel=3)
    aff = np.asarray(img.affine, dtype=np.float64)
    sizes = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    if not np.all(np.isfinite(aff)) or np.any(sizes == 0) or \
            abs(np.linalg.det(aff[:3, :3])) < 1e-6 * float(np.prod(sizes)):
        raise LasegError(f"{path}: the header's affine is singular or not finite (voxel axes of "
                         f"{np.round(sizes, 4).tolist()} mm); its voxels have no position in space")
    zooms = np.abs(np.asarray(hdr.get_zooms()[:3], dtype=np.float64))
    if not np.allclose(zooms, sizes, rtol=1e-3, atol=1e-5):
        raise LasegError(f"{path}: the header contradicts itself: pixdim gives voxels of "
                         f"{' x '.join(f'{v:g}' for v in zooms)} mm, the affine (sform) "
                         f"{' x '.join(f'{v:.4g}' for v in sizes)} mm")


def read_array(img: nib.Nifti1Image, path: str | os.PathLike = "", dtype=np.float32) -> np.ndarray:
    """Load the voxels of ``img`` as ``dtype``; raise LasegError on a truncated or corrupt file, or
    one too large for the memory left."""
    try:
        arr = np.asarray(img.dataobj, dtype=dtype)
    except MemoryError:
        raise LasegError(f"{path or 'image'} {tuple(img.shape)} is too large for this machine's memory") from None
    except Exception as e:  # EOFError, zlib.error, OSError, ValueError ...
        raise LasegError(f"{path or 'image'} could not be read: truncated or corrupt "
                         f"({type(e).__name__})") from None
    return arr


def available_memory() -> int | None:
    """Memory the system can still give this process without swapping, bytes (Linux's
    ``MemAvailable``); None where it cannot be known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(img: nib.Nifti1Image, path: str | os.PathLike,
                 bytes_per_voxel: int = INFERENCE_BYTES_PER_VOXEL) -> None:
    """Refuse, from the header alone, a scan whose segmentation needs more memory than is available
    (``bytes_per_voxel`` bytes per voxel against :func:`available_memory`); nothing is refused
    where the available memory cannot be known.

    Raises:
        LasegError: one line with the memory needed and available, in GB.
    """
    need = int(np.prod(img.shape, dtype=np.int64)) * bytes_per_voxel
    have = available_memory()
    if have is not None and need > have:
        raise LasegError(f"{path} {tuple(img.shape)} needs about {need / 1e9:.1f} GB of memory to segment, "
                         f"and only {have / 1e9:.1f} GB are available; crop or resample it first")


def spacing_of(img: nib.Nifti1Image) -> tuple[float, float, float]:
    """Voxel size in mm ``(sx, sy, sz)`` from the header."""
    z = img.header.get_zooms()[:3]
    return (float(z[0]), float(z[1]), float(z[2]))


def load_case(root: str | os.PathLike | None, case_id: str) -> Case:
    """Load one labelled case in RAS orientation.

    Args:
        root: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        case_id: e.g. ``"la_009"``.

    Returns:
        A :class:`Case` with float32 image and uint8 label, both ``(x, y, z)``.

    Raises:
        LasegError: missing folder or files, label on another grid than its image, label
            values outside {0, 1}.
    """
    root = resolve_data_dir(root)
    img_path, lab_path = case_paths(root, case_id)
    img = load_nifti(img_path)
    lab = load_nifti(lab_path, what="label")
    if img.shape != lab.shape:
        raise LasegError(f"{case_id}: label shape {lab.shape} differs from image shape {img.shape}")
    if not np.allclose(img.affine, lab.affine, atol=1e-3):
        raise LasegError(f"{case_id}: label affine differs from the image affine")
    img, lab = to_ras(img, img_path), to_ras(lab, lab_path)
    image = read_array(img, img_path)
    label = read_array(lab, lab_path, dtype=None)  # the file's own type (uint8 in MSD): no float copy
    bad = non_binary_values(label)
    if bad:
        raise LasegError(f"{case_id}: label values {bad} outside {{0, 1}}")
    return Case(case_id, image, label.astype(np.uint8), spacing_of(img), img.affine.copy())


def duplicate_pair(root: str | os.PathLike | None = None) -> tuple[Case, Case, Path]:
    """The scan that Task02_Heart holds twice (:data:`DUPLICATE_CASES`), once with each label.

    Read from ``root`` (None: ``$LASEG_DATA_DIR``) when that folder lists both cases, e.g. the full
    data set after ``lasegtut download``; otherwise from the crop shipped with the course
    (:data:`DUPLICATE_PAIR`), which holds every voxel of both labels, so overlap and surface
    distances between them are the same as on the full scans.

    Returns:
        ``(case la_005, case la_026, the folder they were read from)``.
    """
    folder = DUPLICATE_PAIR
    try:
        resolved = resolve_data_dir(root)
        if set(DUPLICATE_CASES) <= set(list_cases(resolved)):
            folder = resolved
    except LasegError:
        if root is not None:
            raise
    a, b = (load_case(folder, c) for c in DUPLICATE_CASES)
    return a, b, folder


def image_hash(image: np.ndarray) -> str:
    """SHA-1 of the voxel values (shape and float32 bytes): equal hashes mean identical images."""
    import hashlib

    a = np.asarray(image)
    a = a.reshape(1) if a.ndim == 0 else a  # as np.ascontiguousarray has it
    h = hashlib.sha1(str(a.shape).encode())
    # the float32 bytes in C order, one plane at a time: no copy of the whole volume
    for plane in a:
        h.update(np.ascontiguousarray(plane, dtype=np.float32).data)
    return h.hexdigest()


def non_binary_values(mask: np.ndarray, limit: int = 5) -> list:
    """Up to ``limit`` distinct values of ``mask`` outside {0, 1}, smallest first (empty: a binary
    mask). An integer array is checked by its minimum and maximum alone, without sorting it."""
    a = np.asarray(mask)
    if a.dtype.kind in "biu":
        binary = a.size == 0 or (a.min() >= 0 and a.max() <= 1)
    else:
        binary = not ((a != 0) & (a != 1)).any()
    return [] if binary else [v for v in np.unique(a).tolist() if v not in (0, 1)][:limit]


def load_image(path: str | os.PathLike, img: nib.Nifti1Image | None = None
               ) -> tuple[np.ndarray, tuple[float, float, float], nib.Nifti1Image]:
    """Load a 3D scan for inference, in RAS.

    ``img``: the file already opened with :func:`load_nifti` (its header is then not read and
    checked again); None: it is opened here.

    Returns:
        ``(image, spacing, ras_img)``: float32 array ``(x, y, z)``, spacing in mm, and the
        reoriented nibabel image (its affine is the RAS affine).

    Raises:
        LasegError: missing / not NIfTI / truncated / not 3D / a guessed or inconsistent header
            (:func:`check_header`) / too large (:data:`MAX_VOXELS`, :func:`check_memory`) /
            NaN or infinite voxels / a constant image (no contrast).
    """
    img = load_nifti(path) if img is None else img
    check_memory(img, path)
    ras = to_ras(img, path)
    arr = read_array(ras, path)
    if not np.isfinite(arr).all():
        raise LasegError(f"{path} has NaN or infinite voxels")
    if arr.size == 0 or float(arr.max()) == float(arr.min()):
        raise LasegError(f"{path} has no contrast: every voxel has the same value")
    return arr, spacing_of(ras), ras


def load_mask(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Load a binary 3D mask in RAS.

    Returns:
        ``(mask, spacing, affine)``: uint8 array ``(x, y, z)`` in {0, 1}, spacing in mm,
        RAS affine.

    A mask whose header leaves the orientation to nibabel's guess (qform and sform codes 0) is
    loaded with a :class:`lasegtut.errors.LasegWarning`: its voxel size (pixdim) is all a
    volume needs.

    Raises:
        LasegError: missing / not NIfTI / truncated / not 3D / no voxel size or an inconsistent
            header / NaN / values outside {0, 1}.
    """
    img = to_ras(load_nifti(path, what="mask", guessed="warn"), path)
    arr = read_array(img, path)
    if not np.isfinite(arr).all():
        raise LasegError(f"{path} has NaN or infinite voxels")
    bad = non_binary_values(arr)
    if bad:
        raise LasegError(f"{path} is not a binary mask: values {bad} outside {{0, 1}}")
    return arr.astype(np.uint8), spacing_of(img), img.affine.copy()


def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray) -> bool:
    """True when two volumes lie on one voxel grid: the same shape (voxels) and affines that agree
    within 0.001 (mm)."""
    return tuple(shape_a) == tuple(shape_b) and bool(np.allclose(affine_a, affine_b, atol=1e-3))


def load_mask_pair(pred_path: str | os.PathLike, label_path: str | os.PathLike
                   ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """A predicted mask and its label (:func:`load_mask` each), checked to lie on one grid.

    Returns:
        ``(pred, label, pred spacing, label spacing)``: uint8 arrays ``(x, y, z)`` in RAS, mm.

    Raises:
        LasegError: as :func:`load_mask`, or the two are on different grids.
    """
    pred, sp_p, aff_p = load_mask(pred_path)
    label, sp_l, aff_l = load_mask(label_path)
    if not same_grid(pred.shape, aff_p, label.shape, aff_l):
        raise LasegError(f"{pred_path} and {label_path} are on different grids "
                         f"(shapes {pred.shape} vs {label.shape}); resample one onto the other first")
    return pred, label, sp_p, sp_l

