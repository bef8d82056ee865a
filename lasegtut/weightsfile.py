"""The weights file: what ``model.pt`` holds, how it is written and how it is read back.

``lasegtut train`` exports its network as a plain dict of tensors, numbers and strings (readable
with ``torch.load(weights_only=True)``, nothing pickled that could run code)::

    {"format": "lasegtut-unet-v1",        # WEIGHTS_FORMAT
     "config": {"widths": [...], "norm": ..., "in_channels": ..., "out_channels": ...},
     "input_size": ..., "border": ..., "context": ..., "context_stride": ...,
     "slice_axis": ..., "spacing_mm": [...],   # the Geometry, see lasegtut.geometry
     "state_dict": {name: tensor}, "meta": {...}}   # meta: how it was trained (profile, cases ...)

A Lightning checkpoint of ``lasegtut train`` (``.ckpt``) is read too: the same fields sit in its
``hyper_parameters``. Files written before a field existed get the :class:`Geometry` default
(``spacing_mm``: the MSD voxel size; 2.5D context: none; slice axis: 2). Training writes with
:func:`export_weights`, inference reads with :func:`load_weights` (through
:func:`lasegtut.inference.load_model`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import LasegError
from .geometry import Geometry
from .model import UNet, UNetConfig
from .preprocess import atomic_write
from .safeio import load_torch_file

#: The ``format`` key of a weights file written by :func:`export_weights`.
WEIGHTS_FORMAT = "lasegtut-unet-v1"


@dataclass(frozen=True)
class ModelInfo:
    """What a weights file says besides the network: its input :class:`Geometry` and ``meta``
    (how it was trained: profile, cases, epochs, versions; empty for a checkpoint)."""

    geometry: Geometry = field(default_factory=Geometry)
    meta: dict[str, Any] = field(default_factory=dict)


def export_weights(network: UNet, geometry: Geometry, path: str | os.PathLike, *, meta: dict | None = None,
                   dtype: str = "float32") -> Path:
    """Save ``network`` and its input ``geometry`` as a weights file (see the module docstring),
    atomically (:func:`lasegtut.preprocess.atomic_write`).

    ``dtype="float16"`` stores the floating-point tensors at half the size (they are turned back
    into float32 when loaded).
    """
    path = Path(path)
    half = {"float32": False, "float16": True}.get(dtype)
    if half is None:
        raise LasegError(f"weights dtype must be float32 or float16, not {dtype}")
    state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"format": WEIGHTS_FORMAT, "config": network.config.to_dict(), **geometry.to_dict(),
               "state_dict": state, "meta": meta or {}}
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_weights(path: str | os.PathLike) -> tuple[UNet, ModelInfo]:
    """Read a weights file or a checkpoint of ``lasegtut train`` with ``torch.load(weights_only=True)``
    (:func:`lasegtut.safeio.load_torch_file`: a file that pickles anything else is refused, whatever
    its name) and build its network. Every field is checked before a network is built.

    Returns:
        ``(network in eval mode on the CPU, its ModelInfo)``.

    Raises:
        LasegError: missing or unreadable file, a pickled object other than weights, not a
            lasegtut model, or a field that is missing or malformed.
    """
    path = Path(path)
    # mapped, not read: a tensor's declared shape is checked before its bytes are in memory
    config, state, info = parse_weights(load_torch_file(path, mmap=True), path)
    with torch.device("meta"):  # the network's shapes, without allocating it (a crafted config may be huge)
        expected = {k: tuple(v.shape) for k, v in UNet(config).state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != expected:
        raise LasegError(f"{path}: the weights do not match the network they describe")
    model = UNet(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError):
        raise LasegError(f"{path}: the weights do not match the network they describe") from None
    del state  # the mapped file is no longer needed
    check_finite(model, path)
    return model.eval(), info


def check_finite(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Refuse a network with a NaN or infinite weight or buffer (a training run that diverged, a
    damaged file): its every answer would be NaN, read later as "no left atrium found".

    Raises:
        LasegError: naming how many tensors hold such values and the first of them.
    """
    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise LasegError(f"{path}: the weights file holds NaN/inf values ({len(bad)} tensors, e.g. {bad[0]}); "
                         "these are broken weights (a training run that diverged?): retrain or use other weights")


def parse_weights(obj: object, path: Path) -> tuple[UNetConfig, dict, ModelInfo]:
    """``(config, state_dict, info)`` from what :func:`load_weights` read; LasegError naming the
    first missing or malformed field (sizes in pixels, crop in voxels, axes 0-2, spacing in mm)."""
    def bad(name: str, why: str) -> LasegError:
        return LasegError(f"{path} is a damaged lasegtut model: {name} {why}")

    def whole(name: str, value: object, lo: int, hi: int) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise bad(name, f"must be a whole number from {lo} to {hi}, not {value!r}"[:200])
        return value

    default = Geometry()
    if isinstance(obj, dict) and obj.get("format") == WEIGHTS_FORMAT:
        fields, raw_config, raw_state, meta = obj, obj.get("config"), obj.get("state_dict"), obj.get("meta", {})
        for name in ("input_size", "border"):
            if name not in obj:
                raise bad(name, "is missing")
        size, border = obj["input_size"], obj["border"]
    elif isinstance(obj, dict) and "state_dict" in obj and "hyper_parameters" in obj:
        fields, meta = obj["hyper_parameters"], {}
        if not isinstance(fields, dict):
            raise bad("hyper_parameters", "is not a dict")
        raw_config, raw_state = fields.get("model_config"), obj["state_dict"]
        if isinstance(raw_state, dict):
            raw_state = {k[len("model."):]: v for k, v in raw_state.items()
                         if isinstance(k, str) and k.startswith("model.")}
        size, border = fields.get("input_size") or default.input_size, fields.get("border", default.border)
    else:
        raise LasegError(f"{path} is not a lasegtut model (expected model.pt from `lasegtut train`)")
    if not isinstance(raw_config, dict):
        raise bad("config", "is missing or not a dict")
    widths = raw_config.get("widths")
    if not isinstance(widths, (list, tuple)) or not 1 <= len(widths) <= 8:
        raise bad("config.widths", "must be a list of 1 to 8 channel counts")
    norm = raw_config.get("norm", "batch")
    if norm not in ("none", "batch", "instance"):
        raise bad("config.norm", f"must be none, batch or instance, not {norm!r}"[:120])
    if set(raw_config) - {"widths", "norm", "in_channels", "out_channels"}:
        raise bad("config", f"has unknown keys {sorted(map(str, raw_config))}"[:200])
    config = UNetConfig(widths=tuple(whole("config.widths", w, 1, 4096) for w in widths), norm=norm,
                        in_channels=whole("config.in_channels", raw_config.get("in_channels", 1), 1, 255),
                        out_channels=whole("config.out_channels", raw_config.get("out_channels", 1), 1, 255))
    if not isinstance(raw_state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in raw_state.items()):
        raise bad("state_dict", "is missing or not a dict of tensors")
    step = 2 ** config.depth
    input_size, border = whole("input_size", size, step, 4096), whole("border", border, 0, 4096)
    if input_size % step:
        raise bad("input_size", f"{input_size} must be a multiple of {step} for this network")
    # 2.5D input and slice axis; weights from before they existed are 1-slice models across axis 2
    context = whole("context", fields.get("context", default.context), 0, 127)
    stride = whole("context_stride", fields.get("context_stride", default.context_stride), 1, 1024)
    axis = whole("slice_axis", fields.get("slice_axis", default.slice_axis), 0, 2)
    if config.in_channels != 2 * context + 1:
        raise bad("context", f"{context} needs {2 * context + 1} input channels, "
                             f"the network has {config.in_channels}")
    # the voxel size it was trained at; weights from before it was recorded: the MSD's
    spacing = fields.get("spacing_mm", default.spacing_mm)
    if not (isinstance(spacing, (list, tuple)) and len(spacing) == 3
            and all(isinstance(v, (int, float)) and 0.05 <= v <= 20 for v in spacing)):
        raise bad("spacing_mm", f"must be three voxel sizes in mm, not {spacing!r}"[:200])
    geometry = Geometry(input_size=input_size, border=border, context=context, context_stride=stride,
                        slice_axis=axis, spacing_mm=tuple(float(v) for v in spacing))
    return config, raw_state, ModelInfo(geometry, meta if isinstance(meta, dict) else {})
