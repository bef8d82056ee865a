"""The shipped model's recipe, read from its weights file without torch.

Notebooks 03 and 04 teach how a scan becomes the shipped model's input (crop, normalisation,
slicing, 2.5D context, augmentation), but must not import torch or Lightning (a Binder session
has 2 GB for every open kernel). The weights file (:data:`lasegtut.paths.SHIPPED_WEIGHTS`, see
:mod:`lasegtut.weightsfile`) is the single source of the geometry: :func:`read_header` reads
everything in it except the tensors, with a restricted unpickler that builds no tensor and runs
no code (only plain containers are allowed; each tensor becomes None). The augmentation is
:data:`lasegtut.augment.RECIPE_AUGMENTATION`, the object the ``cpu`` and ``gpu`` training profiles
use. :func:`describe` writes both out in words, the way notebook 03 prints them.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .augment import ALWAYS_SHOWN, RECIPE_AUGMENTATION, AugmentConfig
from .errors import LasegError
from .geometry import Geometry
from .orientation import MSD_HEART_AXCODES, axis_direction, plane_name
from .paths import SHIPPED_WEIGHTS


class _HeaderUnpickler(pickle.Unpickler):
    """Unpickles a ``torch.save`` archive's ``data.pkl`` without torch: tensors become None."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
            return lambda *args, **kwargs: None
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        return None


def read_header(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything a weights file of :func:`lasegtut.weightsfile.export_weights` holds except the
    network's tensors (format, config, geometry fields, meta), read without torch. ``None``: the
    shipped model. LasegError for a file that is not such an archive."""
    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            obj = _HeaderUnpickler(io.BytesIO(z.read(name))).load()
    except (OSError, zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError) as e:
        raise LasegError(f"{path}: not a readable lasegtut weights file ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise LasegError(f"{path}: not a lasegtut weights file")
    return {k: v for k, v in obj.items() if k != "state_dict"}


@dataclass(frozen=True)
class Recipe:
    """How the shipped model turns a scan into input: its :class:`Geometry` (from the weights
    file), its network ``config`` and training ``meta`` (same source) and the training
    ``augmentation`` (:data:`lasegtut.augment.RECIPE_AUGMENTATION`)."""

    geometry: Geometry
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    augmentation: AugmentConfig = RECIPE_AUGMENTATION


def shipped_recipe(path: str | os.PathLike | None = None) -> Recipe:
    """The recipe of the shipped model (or of the weights file at ``path``), without torch."""
    head = read_header(path)
    return Recipe(geometry=Geometry.from_dict(head), config=dict(head.get("config") or {}),
                  meta=dict(head.get("meta") or {}))


def augmentation_lines(config: AugmentConfig = RECIPE_AUGMENTATION) -> list[str]:
    """The steps of an :class:`AugmentConfig`, one ``name: value`` line each (angles in degrees, zoom as
    a factor, elastic in pixels): the seed's warp and the gamma always, every other field when it is
    set (not its default), so that a step added to the recipe shows up and an unused one does not."""
    return [f"{f.name}: {getattr(config, f.name)}" for f in fields(config)
            if f.name in ALWAYS_SHOWN or getattr(config, f.name) != f.default]


def describe(recipe: Recipe | None = None) -> str:
    """The recipe in words, one step per line: crop, normalisation, slicing, 2.5D channels,
    network input and augmentation."""
    r = recipe or shipped_recipe()
    g = r.geometry
    axis = g.slice_axis
    away = ", ".join(f"+-{n * g.context_stride}" for n in range(1, g.context + 1)) or "none"
    lines = [
        f"weights: profile {r.meta.get('profile', '?')!r}, {r.meta.get('epochs', '?')} epochs, "
        f"validated on {r.meta.get('val_cases', '?')}",
        f"crop: {g.border} voxels off each side of array axes 0 and 1 -> a {g.window_size} x {g.window_size} "
        f"window (voxels {g.border}-{g.border + g.window_size - 1} of 320), at {tuple(round(s, 2) for s in g.spacing_mm)} mm",
        "normalise: z-score then min-max over the window, per scan -> [0, 1]",
        f"slice: across array axis {axis} ({plane_name(axis, MSD_HEART_AXCODES)} sections, "
        f"{axis_direction(axis, MSD_HEART_AXCODES)}), the files' axis 2 zero-padded to a square",
        f"2.5D: {g.channels} channels per slice: the slice and its neighbours {away} slices away",
        f"network input: {g.channels} x {g.input_size} x {g.input_size}; U-Net widths "
        f"{tuple(r.config.get('widths', ()))}, {r.config.get('norm', '?')} norm",
        "augmentation (training only): " + "; ".join(augmentation_lines(r.augmentation)),
    ]
    return "\n".join(lines)
