"""How a scan is turned into network input: one frozen :class:`Geometry` per model.

A model only segments well what it was trained on, so everything that decides how a scan is cut
and fed to the network is recorded with its weights and applied again at prediction time:

- ``input_size``: the size (pixels) of the square slices the network sees;
- ``border``: the in-plane crop, voxels removed per side of a :data:`~lasegtut.data.MSD_SIZE`
  (320 x 320) MSD scan; the in-plane window is :attr:`Geometry.window_size` voxels wide;
- ``context`` and ``context_stride``: 2.5D input, each slice with ``context`` neighbours per side
  ``context_stride`` slices apart as extra channels (0: plain 2D slices);
- ``slice_axis``: the array axis of the ``(x, y, z)`` RAS volume the slices cut across (2: the
  files' own slices, see :func:`lasegtut.preprocess.reslice`);
- ``spacing_mm``: the voxel size (mm, x y z) the model was trained at.

Training writes it (:meth:`lasegtut.training.Profile.geometry`, the checkpoint's
hyper-parameters), the weights file stores it (:mod:`lasegtut.weightsfile`) and inference reads it
(:func:`lasegtut.inference.predict_volume`): adding a preprocessing option is one field here.
The defaults are the seed course's geometry, which is also what weights files from before a field
existed were trained with: the full 256 x 256 crop (border 32) of single slices across axis 2 at
the MSD voxel size.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from .data import MSD_SIZE, MSD_SPACING
from .preprocess import DEFAULT_BORDER

#: The fields that decide how a scan is sliced and fed to the network (all but the voxel size,
#: which training measures from its cases): two models agree on them to share a checkpoint.
SLICING_FIELDS = ("input_size", "border", "context", "context_stride", "slice_axis")


@dataclass(frozen=True)
class Geometry:
    """A model's input geometry (see the module docstring). Sizes in pixels, crop in voxels per
    side of a 320 x 320 scan, context in slices, ``slice_axis`` an axis of ``(x, y, z)``,
    ``spacing_mm`` in mm in ``(x, y, z)`` order."""

    input_size: int = MSD_SIZE - 2 * DEFAULT_BORDER
    border: int = DEFAULT_BORDER
    context: int = 0
    context_stride: int = 1
    slice_axis: int = 2
    spacing_mm: tuple[float, float, float] = MSD_SPACING

    @property
    def window_size(self) -> int:
        """In-plane size (voxels, at ``spacing_mm``) of the window the model was trained on: the
        crop of a 320 x 320 MSD scan (160 for the shipped model's ``border`` of 80)."""
        return MSD_SIZE - 2 * int(self.border)

    @property
    def channels(self) -> int:
        """Input channels of the network: the slice and its ``context`` neighbours per side."""
        return 2 * self.context + 1

    def slicing(self) -> dict[str, int]:
        """The :data:`SLICING_FIELDS` as a dict (pixels, voxels, slices, array axis)."""
        return {k: getattr(self, k) for k in SLICING_FIELDS}

    def same_slicing(self, other: "Geometry") -> bool:
        """True when ``other`` cuts and feeds a scan as this one does (voxel size aside)."""
        return self.slicing() == other.slicing()

    def with_spacing(self, spacing_mm: tuple[float, ...] | list[float]) -> "Geometry":
        """This geometry at another training voxel size (mm, x y z)."""
        return replace(self, spacing_mm=tuple(float(v) for v in spacing_mm))

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers and a list, in field order: what a weights file and a checkpoint store."""
        d = asdict(self)
        d["spacing_mm"] = [float(v) for v in self.spacing_mm]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Geometry":
        """The geometry of a mapping holding some of the fields (others: the defaults, see the
        module docstring; unknown keys are ignored). Values are taken as they are: a weights
        file's fields are checked by :func:`lasegtut.weightsfile.parse_weights`."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if "spacing_mm" in kwargs:
            kwargs["spacing_mm"] = tuple(float(v) for v in kwargs["spacing_mm"])
        return cls(**kwargs)
