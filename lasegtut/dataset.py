"""PyTorch datasets of 2D slices (across any array axis) read from the preprocessing cache.

:class:`SliceDataset` yields ``(image, mask, case_index)`` with ``image`` a C x H x W float32
tensor in [0, 1] (C = 1, or ``2 * context + 1`` neighbouring slices for a 2.5D model) and ``mask`` a 1 x H x W uint8 tensor in {0, 1}. Slices across
array axis 2 (the cache's own layout) are memory-mapped, so a data set of any size costs almost
no RAM and starts at once; slices across another axis are re-sliced into memory once (about
8 MB per MSD case at the ``cpu`` profile's crop).

:class:`LADataModule` wires the cache, the subject-level split and augmentation into a
Lightning ``LightningDataModule``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .augment import AugmentConfig, Augmenter, augment_batch
from .errors import LasegError
from .preprocess import context_indices, load_index, load_cached_case, reslice


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a slice pair to ``size`` x ``size``: image ``(H, W)`` or ``(C, H, W)`` by area
    averaging, mask ``(H, W)`` by bilinear interpolation thresholded at 0.5 (smoother than
    nearest-neighbour)."""
    if image.shape[-2:] == (size, size):
        return image, mask
    img_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).reshape(1, -1, *image.shape[-2:])
    img = F.interpolate(img_t, size=(size, size), mode="area")[0].numpy().reshape(*image.shape[:-2], size, size)
    msk_t = torch.from_numpy(mask.astype(np.float32))[None, None]
    msk = F.interpolate(msk_t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    return img, (msk >= 0.5).astype(np.uint8)


class SliceDataset(Dataset):
    """All slices of the given cases from a preprocessing cache, across one array axis.

    Args:
        cache: folder written by :func:`lasegtut.preprocess.write_cache`.
        cases: case ids to include.
        size: resize slices to ``size`` x ``size`` pixels (None: keep the cropped 256 x 256).
        augment: an :class:`Augmenter` (or True for the default one), None for no augmentation.
        empty_fraction: keep this fraction of the slices that contain no atrium (1.0 = all),
            chosen at random with ``seed``; slices with atrium are always kept.
        context, context_stride: 2.5D input (see :func:`lasegtut.preprocess.stack_context`):
            the image gets ``2 * context + 1`` channels, the slice and its neighbours
            ``context_stride`` slices apart; 0 gives the plain 1-channel slice.
        slice_axis: the array axis of the ``(x, y, z)`` volume the slices cut across: 2 (one
            slice per z, the default) or 0 / 1 (see :func:`lasegtut.preprocess.reslice`).
    """

    def __init__(self, cache: str | os.PathLike, cases: Sequence[str], *, size: int | None = None,
                 augment: Augmenter | bool | None = None, empty_fraction: float = 1.0,
                 seed: int = 0, context: int = 0, context_stride: int = 1, slice_axis: int = 2) -> None:
        self.cache = Path(cache)
        self.context, self.context_stride = context, context_stride
        index = load_index(self.cache)
        missing = [c for c in cases if c not in index["cases"]]
        if missing:
            raise LasegError(f"cases {missing} are not in the cache {cache}; run `lasegtut preprocess`")
        self.cases = list(cases)
        self.size = size
        self.augment = Augmenter() if augment is True else (augment or None)
        self._arrays = [tuple(reslice(a, slice_axis) for a in load_cached_case(self.cache, c)) for c in self.cases]
        rng = np.random.default_rng(seed)
        items = []
        for ci, c in enumerate(self.cases):
            masks = self._arrays[ci][1]
            with_la = (set(index["cases"][c]["la_slices"]) if slice_axis == 2
                       else set(np.flatnonzero(masks.reshape(len(masks), -1).any(1)).tolist()))
            for z in range(len(masks)):
                if z in with_la or empty_fraction >= 1.0 or rng.random() < empty_fraction:
                    items.append((ci, z))
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        ci, z = self.items[i]
        image_stack, mask_stack = self._arrays[ci]
        idx = context_indices(z, len(image_stack), self.context, self.context_stride)
        image = np.asarray(image_stack[idx], dtype=np.float32)  # (C, H, W)
        mask = np.asarray(mask_stack[z], dtype=np.uint8)
        if self.size:
            image, mask = resize_pair(image, mask, self.size)
        if self.augment is not None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            image, mask = self.augment(image, mask, seed)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(mask))[None], ci


class DeviceSlices:
    """The slices of a :class:`SliceDataset` held as tensors on one device, batches gathered there.

    A GPU trains a small U-Net on thousands of slices a second; DataLoader workers that copy
    each slice and its 2.5D neighbours through the CPU would keep it waiting. The slices of the
    15 training scans take about 120 MB as float16, so they all go to the GPU once, and a batch
    is an index lookup there (:meth:`batch`). The same slices, neighbours and resizing as the
    dataset's own ``__getitem__``; augmentation is :func:`lasegtut.augment.augment_batch`.
    """

    def __init__(self, dataset: SliceDataset) -> None:
        offsets, n = [], 0
        for image_stack, _ in dataset._arrays:
            offsets.append(n)
            n += len(image_stack)
        self.images = torch.from_numpy(np.concatenate([np.asarray(a, dtype=np.float16) for a, _ in dataset._arrays]))
        self.masks = torch.from_numpy(np.concatenate([np.asarray(m, dtype=np.uint8) for _, m in dataset._arrays]))
        self.table = torch.tensor([[offsets[ci] + k for k in context_indices(z, len(dataset._arrays[ci][0]),
                                                                             dataset.context, dataset.context_stride)]
                                   for ci, z in dataset.items], dtype=torch.long).reshape(len(dataset.items), -1)
        self.centre = torch.tensor([offsets[ci] + z for ci, z in dataset.items], dtype=torch.long)
        self.case = torch.tensor([ci for ci, _ in dataset.items], dtype=torch.long)
        self.size = dataset.size

    def __len__(self) -> int:
        return len(self.centre)

    def to(self, device: torch.device | str) -> "DeviceSlices":
        """Move the tensors to ``device`` (once; later calls with the same device do nothing)."""
        if self.images.device != torch.device(device):
            for name in ("images", "masks", "table", "centre", "case"):
                setattr(self, name, getattr(self, name).to(device))
        return self

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items ``idx`` -> ``(image float32 (B, C, H, W), mask uint8 (B, 1, H, W), case (B,))``."""
        self.to(idx.device)
        image = self.images[self.table[idx]].float()
        mask = self.masks[self.centre[idx]][:, None]
        if self.size and image.shape[-2:] != (self.size, self.size):
            image = F.interpolate(image, size=(self.size, self.size), mode="area")
            mask = (F.interpolate(mask.float(), size=(self.size, self.size), mode="bilinear",
                                  align_corners=False) >= 0.5).to(torch.uint8)
        return image, mask, self.case[idx]


class LADataModule(pl.LightningDataModule):
    """Training and validation slices for Lightning.

    Args:
        cache: preprocessing cache folder.
        train_cases, val_cases: case ids (split by subject, see :mod:`lasegtut.split`).
        batch_size: slices per batch.
        num_workers: DataLoader worker processes (0 = load in the main process).
        size: slice size in pixels (None: 256).
        augment: augment training slices with the seed's imgaug pipeline.
        empty_fraction: fraction of atrium-free training slices kept (validation keeps all).
        context, context_stride: 2.5D input channels (see :class:`SliceDataset`).
        slice_axis: the array axis the slices cut across (see :class:`SliceDataset`).
        on_device: keep the training slices on the training device and gather and augment
            each batch there (:class:`DeviceSlices`, :func:`lasegtut.augment.augment_batch`)
            instead of in DataLoader workers with imgaug: the ``gpu`` profile.
    """

    def __init__(self, cache: str | os.PathLike, train_cases: Sequence[str], val_cases: Sequence[str], *,
                 batch_size: int = 16, num_workers: int = 0, size: int | None = None,
                 augment: bool = True, augment_config: AugmentConfig | None = None,
                 empty_fraction: float = 1.0, seed: int = 0, context: int = 0,
                 context_stride: int = 1, slice_axis: int = 2, on_device: bool = False) -> None:
        super().__init__()
        self.on_device = on_device
        self.context, self.context_stride, self.slice_axis = context, context_stride, slice_axis
        self.cache, self.train_cases, self.val_cases = Path(cache), list(train_cases), list(val_cases)
        self.batch_size, self.num_workers, self.size = batch_size, num_workers, size
        self.augment, self.augment_config = augment, augment_config
        self.empty_fraction, self.seed = empty_fraction, seed

    def setup(self, stage: str | None = None) -> None:
        aug = Augmenter(self.augment_config) if self.augment and not self.on_device else None
        self.train_set = SliceDataset(self.cache, self.train_cases, size=self.size, augment=aug,
                                      empty_fraction=self.empty_fraction, seed=self.seed,
                                      context=self.context, context_stride=self.context_stride, slice_axis=self.slice_axis)
        self.val_set = SliceDataset(self.cache, self.val_cases, size=self.size, context=self.context,
                                    context_stride=self.context_stride, slice_axis=self.slice_axis)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=False,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        if self.on_device:  # batches of item indices; on_after_batch_transfer turns them into slices
            self.device_slices = DeviceSlices(self.train_set)
            # whole batches only: a short last batch would cost cuDNN a new kernel search every epoch
            return DataLoader(range(len(self.device_slices)), batch_size=self.batch_size, shuffle=True,
                              drop_last=len(self.device_slices) > self.batch_size,
                              generator=torch.Generator().manual_seed(self.seed))
        return self._loader(self.train_set, shuffle=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.on_device and isinstance(batch, torch.Tensor) and batch.ndim == 1:
            image, mask, case = self.device_slices.batch(batch)
            if self.augment:
                image, mask = augment_batch(image, mask, self.augment_config)
            return image, mask, case
        return batch

    def val_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            # DDP: each process validates its own slices and none twice (Lightning's default
            # DistributedSampler pads with repeated slices, which would count them twice)
            from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, shuffle=False)
            return DataLoader(self.val_set, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return self._loader(self.val_set, shuffle=False)
