"""Segmenting a whole scan: NIfTI in, NIfTI mask out, on exactly the input's grid.

The steps mirror training, so the network sees what it was trained on:

1. reorient to RAS (:func:`lasegtut.data.load_image`),
2. crop, z-score, min-max and slice (:func:`lasegtut.preprocess.preprocess_volume`) across the
   array axis the model was trained on (:func:`lasegtut.preprocess.reslice`),
3. stack each slice with the neighbours the model was trained with (2.5D input, see
   :func:`lasegtut.preprocess.stack_context`), resize to the model's input size and run them in batches (optionally also the
   mirrored slices, averaging the probabilities: flip test-time augmentation, off by default),
4. resize the probabilities back to the crop, back to the files' slice layout, threshold at 0.5, paste
   into the full grid,
5. optionally keep only the largest 3D connected component (the atrium is one object),
6. reorient back to the input's own orientation and save as uint8 with the input's affine.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from .errors import LasegError
from .model import UNet, UNetConfig
from .preprocess import DEFAULT_BORDER, preprocess_volume, stack_context, reslice, uncrop, unreslice

#: The model shipped inside the package (see ``lasegtut/weights/MODEL_CARD.md``).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "la_unet_cpu.pt"


def load_model(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> tuple[UNet, dict]:
    """Load a U-Net from exported weights (``model.pt``) or a Lightning checkpoint (``.ckpt``).

    Returns:
        ``(model in eval mode, info)`` where info holds ``input_size`` (pixels), ``border``
        (crop, voxels), ``context`` and ``context_stride`` (2.5D neighbour slices per side and
        their spacing in slices; 0 for a plain 2D model), ``slice_axis`` (the array axis of the
        ``(x, y, z)`` scan its slices cut across) and ``meta``.

    Raises:
        LasegError: missing or unreadable file, or not a lasegtut model.
    """
    path = Path(weights) if weights else SHIPPED_WEIGHTS
    if not path.is_file():
        hint = "" if weights else " (the shipped model is missing: reinstall lasegtut)"
        raise LasegError(f"weights file {path} does not exist{hint}")
    # Exported weights hold only tensors and numbers: load them with weights_only=True (no
    # pickled code can run). A Lightning checkpoint also pickles Python objects, so it is
    # loaded in full: only load checkpoints you made yourself or trust.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=path.suffix != ".ckpt")
    except Exception as e:
        raise LasegError(f"{path} is not a readable weights file ({type(e).__name__})") from None
    if isinstance(obj, dict) and obj.get("format") == "lasegtut-unet-v1":
        config, state = UNetConfig.from_dict(obj["config"]), obj["state_dict"]
        geometry = obj
        info = {"input_size": int(obj["input_size"]), "border": int(obj["border"]), "meta": obj.get("meta", {})}
    elif isinstance(obj, dict) and "state_dict" in obj and "hyper_parameters" in obj:
        hp = obj["hyper_parameters"]
        config = UNetConfig.from_dict(hp["model_config"])
        state = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        geometry = hp
        info = {"input_size": int(hp.get("input_size") or 256), "border": int(hp.get("border", DEFAULT_BORDER)), "meta": {}}
    else:
        raise LasegError(f"{path} is not a lasegtut model (expected model.pt from `lasegtut train`)")
    # 2.5D input and slice axis; weights from before they existed are 1-slice models across axis 2
    info.update(context=int(geometry.get("context", 0)), context_stride=int(geometry.get("context_stride", 1)),
                slice_axis=int(geometry.get("slice_axis", 2)))
    model = UNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise LasegError(f"{path}: the weights do not match the network they describe") from None
    return model.eval().to(device), info


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
def predict_slices(slices: np.ndarray, model: UNet, input_size: int, *, batch_size: int = 16,
                   tta: bool = False, context: int = 0, context_stride: int = 1,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Probabilities of "left atrium" for a stack of preprocessed slices.

    Args:
        slices: float32 ``(n, H, W)`` in [0, 1]: the output of ``preprocess_volume``, re-sliced with
            ``reslice`` for a model trained across another axis; neighbours are taken along ``n``.
        input_size: the model's training size in pixels; slices are resized to it and the
            probabilities resized back to ``(H, W)``.
        tta: also predict the mirrored slices (flip along the last axis) and average. Off by
            default: the heart is not mirror-symmetric and the seed augmentation has no flips,
            so a model trained without flips segments mirrored slices badly. Use it for a
            model trained with flip augmentation.
        context, context_stride: the model's 2.5D input (``info`` of :func:`load_model`): each
            slice is stacked with its neighbours exactly as in training.

    Returns:
        float32 ``(z, H, W)`` probabilities in [0, 1].
    """
    z, h, w = slices.shape
    out = np.empty((z, h, w), dtype=np.float32)
    model = inference_copy(model)
    for start in range(0, z, batch_size):
        stop = min(start + batch_size, z)
        stack = stack_context(slices, context, context_stride, start, stop)  # (n, C, H, W)
        x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        if (h, w) != (input_size, input_size):
            x = F.interpolate(x, size=(input_size, input_size), mode="area")
        logits = model(x)
        if tta:
            logits = (logits + model(x.flip(-1)).flip(-1)) / 2
        prob = torch.sigmoid(logits)
        if (h, w) != (input_size, input_size):
            prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        out[start:start + len(x)] = prob[:, 0].float().cpu().numpy()
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


def predict_volume(image: np.ndarray, model: UNet | None = None, info: dict | None = None, *,
                   tta: bool = False, largest_cc: bool = True, batch_size: int = 16,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Segment an RAS volume ``(x, y, z)`` (raw intensities) -> uint8 mask ``(x, y, z)``.

    ``model`` and ``info`` come from :func:`load_model` (default: the shipped model).
    """
    if model is None or info is None:
        model, info = load_model(device=device)
    if image.ndim != 3:
        raise LasegError(f"a 3D volume is needed, got shape {image.shape}")
    border = info["border"]
    axis = info.get("slice_axis", 2)
    slices = reslice(preprocess_volume(image, border), axis)  # axis 2: (z, x', y')
    prob = predict_slices(slices, model, info["input_size"], batch_size=batch_size, tta=tta,
                          context=info.get("context", 0), context_stride=info.get("context_stride", 1),
                          device=device)
    prob = unreslice(prob, axis, image.shape[2])  # (z, x', y')
    mask = np.moveaxis((prob >= 0.5).astype(np.uint8), 0, 2)  # the crop, (x', y', z)
    if largest_cc:  # on the crop: the same answer as on the full grid (zeros outside), 4x fewer voxels
        mask = largest_component(mask)
    return uncrop(mask, image.shape, border)


def _to_original_orientation(mask_ras: np.ndarray, original: nib.Nifti1Image) -> np.ndarray:
    """Undo ``as_closest_canonical``: RAS array -> array on the original file's voxel grid."""
    orig_ornt = nib.orientations.io_orientation(original.affine)
    ras_ornt = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(ras_ornt, orig_ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(mask_ras, transform))


def _check_output(output: Path, force: bool) -> None:
    name = output.name
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise LasegError(f"output {output} must end in .nii.gz or .nii")
    if output.exists() and not force:
        raise LasegError(f"{output} already exists; use --force to overwrite it")
    if not output.parent.exists():
        raise LasegError(f"output folder {output.parent} does not exist")


def predict_file(input: str | os.PathLike, output: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                 force: bool = False, tta: bool = False, largest_component: bool = True,
                 device: str | torch.device = "cpu") -> dict:
    """Segment the scan ``input`` and write the mask to ``output`` (same shape and affine).

    Nothing is written when anything fails; an existing ``output`` is only replaced with
    ``force=True``, and then atomically (written to a temporary file, then renamed).

    Returns:
        A report: ``output``, ``volume_ml``, ``voxels``, ``spacing_mm``, ``shape``, ``seconds``,
        ``weights``.
    """
    from .data import load_image, load_nifti
    from .volume import volume_ml

    t0 = time.perf_counter()
    output = Path(output)
    _check_output(output, force)
    original = load_nifti(input)
    image, spacing, _ = load_image(input)
    model, info = load_model(weights, device=device)
    mask_ras = predict_volume(image, model, info, tta=tta, largest_cc=largest_component, device=device)
    mask = _to_original_orientation(mask_ras, original)
    header = original.header.copy()
    header.set_data_dtype(np.uint8)
    header["scl_slope"], header["scl_inter"] = 1, 0
    out_img = nib.Nifti1Image(mask, original.affine, header)
    tmp = output.with_name(".tmp-" + output.name)
    nib.save(out_img, str(tmp))
    os.replace(tmp, output)
    return {
        "output": str(output), "volume_ml": volume_ml(mask, spacing), "voxels": int(mask.sum()),
        "spacing_mm": [round(s, 4) for s in spacing], "shape": list(mask.shape),
        "seconds": round(time.perf_counter() - t0, 3),
        "weights": str(weights) if weights else "shipped:" + SHIPPED_WEIGHTS.name,
    }
