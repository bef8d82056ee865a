"""Segmenting a whole scan: NIfTI in, NIfTI mask out, on exactly the input's grid.

The steps mirror training, so the network sees what it was trained on:

1. reorient to RAS (:func:`lasegtut.data.load_image`),
2. resample to the model's voxel size if the scan's differs, place the model's in-plane window on
   the heart (:func:`predict_volume`), z-score, min-max and slice it across the
   array axis the model was trained on (:func:`lasegtut.preprocess.reslice`),
3. stack each slice with the neighbours the model was trained with (2.5D input, see
   :func:`lasegtut.preprocess.context_indices`), resize them only for a model trained on resized
   slices, and run them in batches (optionally also the mirrored slices, averaging the
   probabilities: flip test-time augmentation, off by default),
4. resize the probabilities back to the crop and put them back in the scan's layout (with
   several models, e.g. one per slicing direction, their probabilities are averaged here),
   threshold at 0.5, paste into the full grid,
5. optionally keep only the largest 3D connected component (the atrium is one object),
6. reorient back to the input's own orientation and save as uint8 with the input's affine.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from .data import INFERENCE_BYTES_PER_VOXEL, MAX_VOXELS, available_memory, load_image, load_nifti
from .errors import LasegError
from .geometry import Geometry
from .model import UNet, UNetConfig
from .orientation import from_ras
from .paths import SHIPPED_WEIGHTS
from .preprocess import (atomic_write, context_indices, paste_window, preprocess_window, resample, resampled_shape,
                         reslice, unreslice, window_origin)
from .safeio import check_output_file
from .volume import implausible, volume_ml
from .weightsfile import ModelInfo, load_weights

#: Models as :func:`load_model` returns them, to average (a :class:`~lasegtut.geometry.Geometry`
#: may stand for the info).
Members = Sequence[tuple[UNet, ModelInfo | Geometry]]


def geometry_of(info: ModelInfo | Geometry) -> Geometry:
    """The input geometry of a model's ``info`` (a Geometry is its own)."""
    return info if isinstance(info, Geometry) else info.geometry


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): the CUDA GPU when torch sees one, else the CPU; otherwise the
    device named (``"cpu"``, ``"cuda"``, ``"cuda:1"``), checked to exist."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise LasegError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LasegError("--device cuda was asked for, but torch sees no CUDA GPU on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise LasegError(f"device {device!r} is not supported; use auto, cpu or cuda")
    return dev


def load_models(weights: Sequence[str | os.PathLike] | None = None,
                device: str | torch.device = "cpu") -> list[tuple[UNet, ModelInfo]]:
    """:func:`load_model` for each file of ``weights`` (None or empty: the shipped model), e.g.
    the same recipe trained on slices across each of the three axes (``benchmarks/gpu_train.py``).
    :func:`predict_volume` averages their probabilities, so they must share the in-plane crop."""
    members = [load_model(w, device=device) for w in (weights or [None])]
    borders = {info.geometry.border for _, info in members}
    if len(borders) > 1:
        raise LasegError(f"the models crop the scans differently (borders {sorted(borders)} voxels); "
                         "only models trained on the same crop can be averaged")
    return members


def load_model(weights: str | os.PathLike | None = None,
               device: str | torch.device = "cpu") -> tuple[UNet, ModelInfo]:
    """Load a U-Net from exported weights (``model.pt``) or a Lightning checkpoint (``.ckpt``);
    None: the shipped model (:data:`SHIPPED_WEIGHTS`).

    Both are read with ``torch.load(weights_only=True)`` and every field is checked before a
    network is built (:func:`lasegtut.weightsfile.load_weights`).

    Returns:
        ``(model in eval mode on device, info)``: ``info.geometry`` is the model's input
        :class:`~lasegtut.geometry.Geometry` (input size in pixels, crop in voxels, 2.5D context
        in slices, the array axis of ``(x, y, z)`` its slices cut across, the voxel size in mm it
        was trained at) and ``info.meta`` how it was trained.

    Raises:
        LasegError: missing or unreadable file, a pickled object other than weights, not a
            lasegtut model, or a field that is missing or malformed.
    """
    path = Path(weights) if weights else SHIPPED_WEIGHTS
    if not path.is_file():
        hint = "" if weights else " (the shipped model is missing: reinstall lasegtut)"
        raise LasegError(f"weights file {path} does not exist{hint}")
    model, info = load_weights(path)
    return model.to(resolve_device(device)), info


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A faster copy of a trained network for prediction only (same outputs up to float rounding).

    Each batch norm is folded into the convolution before it (in eval mode it is a fixed
    per-channel scale and shift), and the weights are stored channels-last, the layout the
    CPU convolution kernels prefer: together about 1.5x faster on a 2-core CPU. The copy
    cannot be trained further; the original is left untouched.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(model).eval()
    for seq in net.modules():
        if isinstance(seq, torch.nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], torch.nn.Conv2d) and isinstance(seq[i + 1], torch.nn.BatchNorm2d):
                    seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                    seq[i + 1] = torch.nn.Identity()
    return net.to(memory_format=torch.channels_last)


@torch.inference_mode()
def predict_slices(slices: np.ndarray, model: UNet, input_size: int | None, *, batch_size: int = 16,
                   tta: bool = False, context: int = 0, context_stride: int = 1,
                   device: str | torch.device = "auto", indices: Sequence[int] | None = None) -> np.ndarray:
    """Probabilities of "left atrium" for a stack of preprocessed slices.

    Args:
        slices: float32 ``(n, H, W)`` in [0, 1]: the output of ``preprocess_volume``, re-sliced with
            ``reslice`` for a model trained across another axis; neighbours are taken along ``n``.
        input_size: for a model trained on resized slices, the size (pixels) it was trained at:
            slices are resized to it and the probabilities resized back to ``(H, W)``. None for a
            model trained at full resolution: slices of any size go in as they are (zero-padded
            to a multiple of the network's 2 ** depth, the padding cut off again).
        tta: also predict the mirrored slices (flip along the last axis) and average. Off by
            default: the heart is not mirror-symmetric and the seed augmentation has no flips,
            so a model trained without flips segments mirrored slices badly. Use it for a
            model trained with flip augmentation.
        context, context_stride: the model's 2.5D input (``info.geometry`` of :func:`load_model`): each
            slice is stacked with its neighbours exactly as in training.
        device: where the network runs (:func:`resolve_device`; ``"auto"``: a CUDA GPU if
            there is one); the model may live anywhere, a copy of it is moved there.
        indices: predict only these slices (their neighbours still come from ``slices``).

    Returns:
        float32 ``(len(indices) or n, H, W)`` probabilities in [0, 1].
    """
    z, h, w = slices.shape
    todo = np.arange(z) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.empty((len(todo), h, w), dtype=np.float32)
    device = resolve_device(device)
    model = inference_copy(model).to(device)
    multiple = 2 ** model.config.depth if isinstance(getattr(model, "config", None), UNetConfig) else 1
    ph, pw = -h % multiple, -w % multiple
    resize = input_size is not None and (h, w) != (input_size, input_size)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        idx = [context_indices(int(i), z, context, context_stride) for i in batch]
        stack = np.asarray(slices)[np.asarray(idx, dtype=np.int64).reshape(len(idx), 2 * context + 1)]
        x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)).to(device)
        if resize:
            x = F.interpolate(x, size=(input_size, input_size), mode="area")
        elif ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        if tta:
            logits = (logits + model(x.flip(-1)).flip(-1)) / 2
        prob = torch.sigmoid(logits)
        if resize:
            prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        out[start:start + len(batch)] = prob[:, 0, :h, :w].float().cpu().numpy()
    return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 26-connected component of a binary 3D mask (uint8 in, uint8 out)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask.astype(np.uint8)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == sizes.argmax()).astype(np.uint8)


def _window_probabilities(work: np.ndarray, origin: tuple[int, int], size: int, members: Members, *,
                          tta: bool, batch_size: int, device) -> np.ndarray:
    """Average probability ``(x', y', z)`` of the members in one in-plane window of ``work``."""
    stack = preprocess_window(work, origin, size)  # (z, x', y')
    prob = np.zeros(stack.shape, dtype=np.float32)
    for net, inf in members:
        g = geometry_of(inf)
        full_res = g.input_size == size
        p = predict_slices(reslice(stack, g.slice_axis), net, None if full_res else g.input_size,
                           batch_size=batch_size, tta=tta, context=g.context,
                           context_stride=g.context_stride, device=device)
        prob += unreslice(p, g.slice_axis, work.shape[2])
    prob /= len(members)
    return np.moveaxis(prob, 0, 2)


def _cut_off(mask: np.ndarray, origin: tuple[int, int], shape: tuple[int, ...]) -> bool:
    """True when the atrium found in a window (its largest component: a stray speck near an edge
    does not count) is empty, or comes within ``size / 16`` voxels (10 for the shipped model:
    12.5 mm) of a window edge beyond which the image goes on, so that part of it may lie outside.
    (In the 18 MSD scans at hand every label keeps 19 voxels, about 24 mm, or more from the edges
    of the centred window, so a native scan never takes the second pass.)"""
    if not mask.any():
        return True
    mask = largest_component(mask.astype(np.uint8)).astype(bool)
    xs, ys = np.flatnonzero(mask.any((1, 2))), np.flatnonzero(mask.any((0, 2)))
    size = mask.shape[0]
    m = size // 16
    x0, y0 = origin
    return bool((xs[0] < m and x0 > 0) or (ys[0] < m and y0 > 0)
                or (xs[-1] >= size - m and x0 + size < shape[0]) or (ys[-1] >= size - m and y0 + size < shape[1]))


def locate_heart(work: np.ndarray, members: Members, size: int, *, every: int = 8, batch_size: int = 16,
                 device="auto") -> tuple[float, float] | None:
    """In-plane centre ``(x, y)`` (voxels of ``work``) of the left atrium, found by the first model
    itself: the field of view is tiled with windows of ``size`` (half overlapping, each
    normalised as in training), every ``every``-th slice of each is segmented, and the centre of
    the largest region found is returned (None if nothing is found). About as much work as one
    ordinary prediction; only done when the centred window misses or cuts the atrium."""
    from scipy import ndimage

    net, inf = members[0]
    g = geometry_of(inf)
    axis = g.slice_axis
    full_res = g.input_size == size

    def starts(n: int) -> list[int]:
        if n <= size:
            return [(n - size) // 2]
        return sorted(set(list(range(0, n - size + 1, size // 2)) + [n - size]))

    hits = np.zeros(work.shape[:2], dtype=np.float32)
    for x0 in starts(work.shape[0]):
        for y0 in starts(work.shape[1]):
            try:
                sl = reslice(preprocess_window(work, (x0, y0), size), axis)
            except LasegError:  # a tile of constant padding: nothing to find there
                continue
            idx = list(range(every // 2, len(sl), every))
            p = predict_slices(sl, net, None if full_res else g.input_size, batch_size=batch_size,
                               context=g.context, context_stride=g.context_stride,
                               device=device, indices=idx) >= 0.5
            counts = np.zeros((size, size), dtype=np.float32)  # (x', y') of the window
            if axis == 2:
                counts += p.sum(0)
            elif axis == 0:
                counts[idx] += p.sum(1)
            else:
                counts[:, idx] += p.sum(1).T
            tile = paste_window(counts[..., None], (*work.shape[:2], 1), (x0, y0))[..., 0]
            hits = np.maximum(hits, tile)
    labels, n = ndimage.label(hits > 0)
    if n == 0:
        return None
    sizes = ndimage.sum(hits, labels, index=np.arange(1, n + 1))
    cx, cy = ndimage.center_of_mass(hits, labels, int(np.argmax(sizes)) + 1)
    return float(cx), float(cy)


#: The least extent (mm) a scan must cover on every axis to hold a left atrium (an adult's is
#: about 30-60 mm across); less means a slab, a crop, or a voxel size in the wrong unit.
MIN_EXTENT_MM = 20.0


def check_extent(shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    """Refuse a scan that covers less than :data:`MIN_EXTENT_MM` along an axis (``shape`` voxels of
    ``spacing`` mm): no atrium fits in it (e.g. a voxel size of 0.001 mm in the header).

    Raises:
        LasegError: one line with the scan's extent in mm.
    """
    extent = [n * s for n, s in zip(shape, spacing)]
    if min(extent) < MIN_EXTENT_MM:
        raise LasegError(f"the scan covers only {' x '.join(f'{e:.3g}' for e in extent)} mm, too little to hold "
                         f"a left atrium (at least {MIN_EXTENT_MM:g} mm on every axis); "
                         "is the voxel size in its header right?")


def check_resampled_size(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> None:
    """Refuse, before any resampling, a scan that becomes too large at the model's voxel size: more
    than :data:`lasegtut.data.MAX_VOXELS` voxels, or more memory than is available (e.g. a header
    with a voxel size of 100 mm, or metres where millimetres were meant).

    Raises:
        LasegError: one line with the scan's voxel size, the model's, and the grid it would need.
    """
    new = resampled_shape(shape, spacing, target)
    n = int(np.prod(new, dtype=np.float64))
    have = available_memory()
    too_many = n > MAX_VOXELS
    if too_many or (have is not None and n * INFERENCE_BYTES_PER_VOXEL > have):
        limit = (f"more than the {MAX_VOXELS / 1e6:.0f} million lasegtut segments" if too_many else
                 f"about {n * INFERENCE_BYTES_PER_VOXEL / 1e9:.1f} GB of memory, {have / 1e9:.1f} GB available")
        raise LasegError(f"a scan of {tuple(shape)} voxels of {' x '.join(f'{s:g}' for s in spacing)} mm becomes "
                         f"{n / 1e6:.0f} million voxels {new} at the model's "
                         f"{' x '.join(f'{t:g}' for t in target)} mm, {limit}; is the voxel size in its header right?")


def check_threshold(threshold: float) -> float:
    """``threshold``, a probability strictly between 0 and 1; LasegError otherwise."""
    if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 < threshold < 1):
        raise LasegError(f"the threshold must be a probability strictly between 0 and 1, not {threshold!r}")
    return float(threshold)


def _predict_window(image: np.ndarray, model, info, *, spacing, tta: bool, batch_size: int, device,
                    locate: bool) -> tuple[np.ndarray, tuple[int, int], np.ndarray, tuple[float, float, float], bool]:
    """Steps 1-3 of :func:`predict_volume`: the probabilities ``(x', y', z)`` in the model's window of the
    (resampled) scan, the window's origin, the scan as predicted, the model's spacing, and whether it was
    resampled."""
    if model is None:
        members = [load_model(device=device)]
    elif isinstance(model, (list, tuple)):
        members = list(model)
    elif info is None:
        raise LasegError("predict_volume needs the info that load_model returns with the model")
    else:
        members = [(model, info)]
    if image.ndim != 3:
        raise LasegError(f"a 3D volume is needed, got shape {image.shape}")
    first = geometry_of(members[0][1])
    size, target = first.window_size, first.spacing_mm
    for _, inf in members[1:]:
        if geometry_of(inf).window_size != size or geometry_of(inf).spacing_mm != target:
            raise LasegError("only models trained on the same crop and spacing can be averaged")
    if spacing is not None:
        check_extent(image.shape, spacing)
    rescale = spacing is not None and any(abs(s / t - 1) > 0.01 for s, t in zip(spacing, target))
    if rescale:
        check_resampled_size(image.shape, spacing, target)
    work = resample(image, spacing, target) if rescale else image
    run = dict(tta=tta, batch_size=batch_size, device=device)
    origin = window_origin(work.shape, ((work.shape[0] - 1) / 2 + 0.5, (work.shape[1] - 1) / 2 + 0.5), size)
    prob = _window_probabilities(work, origin, size, members, **run)
    if locate and _cut_off(prob >= 0.5, origin, work.shape):
        centre = locate_heart(work, members, size, batch_size=batch_size, device=device)
        if centre is not None:
            moved = window_origin(work.shape, centre, size)
            if moved != origin:
                origin, prob = moved, _window_probabilities(work, moved, size, members, **run)
    return prob, origin, work, target, rescale


def predict_volume(image: np.ndarray, model: UNet | Members | None = None,
                   info: ModelInfo | Geometry | None = None, *,
                   spacing: tuple[float, float, float] | None = None, tta: bool = False,
                   largest_cc: bool = True, batch_size: int = 16, device: str | torch.device = "auto",
                   locate: bool = True, return_probability: bool = False, threshold: float = 0.5
                   ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Segment an RAS volume ``(x, y, z)`` (raw intensities) -> uint8 mask ``(x, y, z)``.

    ``return_probability``: return ``(mask, probability)`` instead, ``probability`` the float32
    map ``(x, y, z)`` on the same grid as ``image`` and the mask (the members' average
    probability of "left atrium", in [0, 1], before the 0.5 threshold and the largest component;
    0 outside the model's window), from which :mod:`lasegtut.uncertainty` computes its maps
    (:func:`predict_probabilities` gives the map alone).

    ``model`` and ``info`` come from :func:`load_model` (default: the shipped model; ``info`` may
    also be a bare :class:`~lasegtut.geometry.Geometry`); or ``model`` is a list of ``(model,
    info)`` pairs (:func:`load_models`) whose probabilities are averaged, e.g. models that slice
    the scan across different axes.

    Any scan is brought to the model's own geometry and back:

    1. ``spacing`` (mm; None: already the model's) differs from the spacing the model was
       trained at (``info.geometry.spacing_mm``) by more than 1%: the scan is resampled to it
       (trilinear), and the probabilities are resampled back to the scan's grid at the end;
    2. the model's in-plane window (:attr:`~lasegtut.geometry.Geometry.window_size`: 160 x 160
       voxels for the shipped model, 200 mm) is centred on the field of view, where cardiac scans
       put the heart, and stuck out of the image with zeros where the field of view is smaller;
    3. if the atrium found there is empty or cut by a window edge (``locate``), the heart is
       looked for over the whole field of view (:func:`locate_heart`) and the window is centred on
       it for a second, final prediction.

    For a scan of the MSD geometry (320 x 320 at 1.25 x 1.25 x 1.37 mm) steps 1-3 change nothing:
    the window is the model's training crop.

    A voxel is atrium where the probability is at least ``threshold`` (default 0.5, strictly
    between 0 and 1; the search for the heart in step 3 always uses 0.5). A threshold chosen by
    looking at the cases it is then scored on flatters them: choose it on other cases (e.g. under
    cross-validation, :mod:`lasegtut.crossval`).
    """
    check_threshold(threshold)
    prob, origin, work, target, rescale = _predict_window(image, model, info, spacing=spacing, tta=tta,
                                                           batch_size=batch_size, device=device, locate=locate)
    if rescale:
        full = np.clip(resample(paste_window(prob, work.shape, origin), target, spacing, shape=image.shape),
                       0.0, 1.0).astype(np.float32, copy=False)
        mask = (full >= threshold).astype(np.uint8)
        mask = largest_component(mask) if largest_cc else mask
        return (mask, full) if return_probability else mask
    mask = (prob >= threshold).astype(np.uint8)
    if largest_cc:  # on the window: the same answer as on the full grid (zeros outside), 4x fewer voxels
        mask = largest_component(mask)
    mask = paste_window(mask, image.shape, origin)
    return (mask, paste_window(prob, image.shape, origin)) if return_probability else mask


def predict_probabilities(image: np.ndarray, model: UNet | Members | None = None,
                          info: ModelInfo | Geometry | None = None, *,
                          spacing: tuple[float, float, float] | None = None, tta: bool = False,
                          batch_size: int = 16, device: str | torch.device = "auto", locate: bool = True) -> np.ndarray:
    """The model's probability of "left atrium" for every voxel of an RAS volume ``(x, y, z)``: float32
    ``(x, y, z)`` in [0, 1] on the scan's own grid (0 outside the model's window).

    The same steps as :func:`predict_volume` (same arguments), stopped before the threshold, so that
    :func:`segment_probabilities` with its defaults gives exactly :func:`predict_volume`'s mask, and
    other thresholds, or no largest-component step, can be tried without predicting again.
    """
    prob, origin, work, target, rescale = _predict_window(image, model, info, spacing=spacing, tta=tta,
                                                           batch_size=batch_size, device=device, locate=locate)
    if rescale:
        full = paste_window(prob, work.shape, origin)
        return np.clip(resample(full, target, spacing, shape=image.shape), 0.0, 1.0).astype(np.float32, copy=False)
    return paste_window(prob, image.shape, origin).astype(np.float32, copy=False)


def segment_probabilities(prob: np.ndarray, threshold: float = 0.5, largest_cc: bool = True) -> np.ndarray:
    """A uint8 mask from probabilities (:func:`predict_probabilities`): voxels with ``prob >= threshold``,
    and of those only the largest 26-connected component when ``largest_cc`` (the atrium is one
    object). The defaults are the course's: :func:`predict_volume` segments this way."""
    check_threshold(threshold)
    mask = (np.asarray(prob) >= threshold).astype(np.uint8)
    return largest_component(mask) if largest_cc else mask


def _check_output(output: Path, force: bool, inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """Before any work: ``output`` ends in .nii.gz or .nii, is none of ``inputs`` (the scan and the
    weights, also through links or another spelling), exists only with ``force``, and its folder
    accepts a new file (see :func:`lasegtut.safeio.check_output_file`)."""
    check_output_file(output, force=force, inputs=inputs, suffixes=(".nii.gz", ".nii"))


def _save_mask(img: nib.Nifti1Image, output: Path) -> None:
    """Write ``img`` to ``output`` (gzip-compressed for .nii.gz) through a temporary file of a unique
    name that is renamed at the end: never a half-written mask under its final name, and no
    temporary left behind on any failure (a full disk) or on Ctrl-C / SIGTERM."""
    import gzip

    raw = img.to_bytes()
    # mtime=0: the same mask gives the same bytes (a run split in parts writes what one run writes)
    data = gzip.compress(raw, compresslevel=6, mtime=0) if output.name.endswith(".gz") else raw
    try:
        atomic_write(output, lambda f: f.write(data))
    except OSError as e:
        raise LasegError(f"could not write {output} ({e.strerror or type(e).__name__}); nothing was written") from None


def write_mask(mask_ras: np.ndarray, original: nib.Nifti1Image, output: str | os.PathLike) -> Path:
    """Save an RAS mask on the grid of the scan it was predicted from: back in the scan's own
    orientation, with its affine and header, as uint8, through :func:`_save_mask` (atomic, no
    temporary left on any failure)."""
    output = Path(output)
    mask = from_ras(mask_ras, original)
    header = original.header.copy()
    header.set_data_dtype(np.uint8)
    header["scl_slope"], header["scl_inter"] = 1, 0
    _save_mask(nib.Nifti1Image(mask, original.affine, header), output)
    return output


def predict_file(input: str | os.PathLike, output: str | os.PathLike, *,
                 weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 force: bool = False, tta: bool = False, largest_component: bool = True,
                 device: str | torch.device = "auto",
                 uncertainty_map: str | os.PathLike | None = None) -> dict:
    """Segment the scan ``input`` and write the mask to ``output`` (same shape and affine), with its
    QC sidecar ``<output name>.qc.json`` beside it (:mod:`lasegtut.uncertainty`).

    ``weights``: one weights file, or several whose probabilities are averaged (default: the
    shipped model). ``device``: see :func:`resolve_device`. ``uncertainty_map``: also write the
    voxel uncertainty map (:func:`lasegtut.uncertainty.voxel_uncertainty`, float32 NIfTI on the
    scan's grid) to this ``.nii.gz`` / ``.nii`` file.

    Nothing is written when anything fails; every output location (mask, sidecar, map) is checked
    before any work; an input (the scan, a weights file) is never overwritten; an existing output
    is only replaced with ``force=True``, and then atomically (written to a temporary file, then
    renamed).

    Returns:
        A report: ``output``, ``volume_ml``, ``voxels``, ``status`` (``"ok"``, or why the volume
        cannot be trusted), ``uncertainty`` (>= 0, higher = less trustworthy), ``qc`` (``"ok"``,
        ``"review"`` or ``"unknown"``), ``qc_threshold``, ``sidecar``, ``uncertainty_map`` (or
        None), ``spacing_mm``, ``shape``, ``seconds``, ``weights``, ``device``.

    Raises:
        LasegError: bad input, or no atrium found (an empty answer is never written as a result).
    """
    from .cohort import weights_fingerprint
    from .uncertainty import (assess, members_threshold, sidecar, sidecar_path, voxel_uncertainty, write_sidecar,
                              write_uncertainty_map)

    t0 = time.perf_counter()
    output = Path(output)
    paths = [weights] if isinstance(weights, (str, os.PathLike)) else weights
    inputs = [input, *(paths or [])]
    _check_output(output, force, inputs=inputs)
    side = check_output_file(sidecar_path(output), force=force, inputs=inputs, what="sidecar")
    umap = Path(uncertainty_map) if uncertainty_map is not None else None
    if umap is not None:
        from .safeio import same_file

        if same_file(umap, output):
            raise LasegError(f"--uncertainty-map {umap} is the mask's own path; give the map a name of its own")
        check_output_file(umap, force=force, inputs=inputs, suffixes=(".nii.gz", ".nii"), what="--uncertainty-map")
    device = resolve_device(device)
    original = load_nifti(input)
    image, spacing, _ = load_image(input, original)
    members = load_models(paths, device=device)
    mask_ras, prob = predict_volume(image, members, spacing=spacing, tta=tta, largest_cc=largest_component,
                                    device=device, return_probability=True)
    if not mask_ras.any():
        raise LasegError(f"no left atrium found in {input}: the model's answer is empty (is it a cardiac MRI "
                         "that covers the heart?); nothing written")
    ml = volume_ml(mask_ras, spacing)  # the same voxels as the written mask, only flipped and transposed
    qc = assess(prob, mask_ras, spacing, members_threshold([info for _, info in members]), ml)
    names = [str(p) for p in paths] if paths else ["shipped:" + SHIPPED_WEIGHTS.name]
    written: list[Path] = []
    try:  # all or nothing: a failure on the way removes what this call wrote
        if umap is not None:
            written.append(write_uncertainty_map(voxel_uncertainty(prob), original, umap))
        del prob
        written.append(write_mask(mask_ras, original, output))
        written.append(write_sidecar(side, sidecar({**qc, "volume_ml": round(ml, 2)}, output, weights=names,
                                                   weights_sha256=weights_fingerprint(paths))))
    except BaseException:
        for f in written:
            f.unlink(missing_ok=True)
        raise
    why = implausible(ml)
    status = "ok" if why is None else f"implausible: {why}; check the mask before using it"
    return {
        "output": str(output), "volume_ml": ml, "voxels": int(mask_ras.sum()), "status": status, **qc,
        "sidecar": str(side), "uncertainty_map": str(umap) if umap is not None else None,
        "spacing_mm": [round(s, 4) for s in spacing], "shape": list(original.shape),
        "seconds": round(time.perf_counter() - t0, 3),
        "weights": names, "device": str(device),
    }
