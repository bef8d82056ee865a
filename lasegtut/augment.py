"""Data augmentation with imgaug: the seed course's pipeline, applied to image *and* mask.

A U-Net trained on 15 scans has seen few hearts. Random geometric changes (a little zoom, a
rotation of up to 45 degrees, a gentle elastic warp) show it plausible new ones. The mask must
move with its image, pixel for pixel, or the network learns from wrong answers: imgaug's
``SegmentationMapsOnImage`` warps the mask with nearest-neighbour interpolation using the
same random parameters as the image, so it stays binary and aligned.

Optionally (``gamma``), a random gamma curve ``image ** g`` changes the contrast between blood
and tissue a little, as another scanner or another contrast timing would; the seed course had
no intensity augmentation, and its geometric steps cannot teach that invariance.

imgaug 0.4.0 needs a one-line shim on NumPy 2: see :mod:`lasegtut.imgaug_compat`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imgaug_compat import iaa
from imgaug.augmentables.segmaps import SegmentationMapsOnImage


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the pipeline (angles in degrees, scale as a factor, elastic in pixels).

    The defaults are the seed course's: ``Affine(scale=(0.85, 1.15), rotate=(-45, 45))``
    followed by ``ElasticTransformation()`` (alpha 0-40 px, sigma 4-8 px), set for 256 x 256
    slices: at 128 x 128 halve both elastic ranges for the same warp relative to the anatomy.
    ``gamma``: range of the random exponent applied to the image (in [0, 1]) after the
    geometric steps, e.g. ``(0.7, 1.5)``; None (the seed's) for no intensity change.
    """

    scale: tuple[float, float] = (0.85, 1.15)
    rotate: tuple[float, float] = (-45.0, 45.0)
    elastic_alpha: tuple[float, float] = (0.0, 40.0)
    elastic_sigma: tuple[float, float] = (4.0, 8.0)
    elastic: bool = True
    gamma: tuple[float, float] | None = None

    @classmethod
    def for_size(cls, size: int, **changes) -> "AugmentConfig":
        """The seed's pipeline with the elastic ranges scaled from 256 px to ``size`` px."""
        f = size / 256
        base = cls()
        return cls(elastic_alpha=(base.elastic_alpha[0] * f, base.elastic_alpha[1] * f),
                   elastic_sigma=(base.elastic_sigma[0] * f, base.elastic_sigma[1] * f), **changes)


def build_pipeline(config: AugmentConfig | None = None) -> iaa.Sequential:
    """The imgaug pipeline for ``config`` (default: the seed course's)."""
    c = config or AugmentConfig()
    steps = [iaa.Affine(scale=c.scale, rotate=c.rotate)]
    if c.elastic:
        steps.append(iaa.ElasticTransformation(alpha=c.elastic_alpha, sigma=c.elastic_sigma))
    return iaa.Sequential(steps)


class Augmenter:
    """Callable ``(image, mask, seed) -> (image, mask)`` for 2D slices.

    ``image`` is float32 ``(H, W)``, or ``(C, H, W)`` for a 2.5D stack whose channels all get
    the same warp; ``mask`` is uint8 ``(H, W)`` in {0, 1}. Both come back with the same shape
    and dtype. The same ``seed`` gives the same augmentation, in any process: inside a
    DataLoader each sample draws its seed from torch's per-worker generator, so a run is
    reproducible with ``seed_everything`` and the workers never repeat each other.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        self.pipeline = build_pipeline(self.config)

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if image.shape[-2:] != mask.shape or image.ndim not in (2, 3) or mask.ndim != 2:
            raise ValueError(f"image {image.shape} must be (H, W) or (C, H, W) and mask {mask.shape} (H, W) of the same size")
        self.pipeline.seed_(int(seed))
        hwc = image if image.ndim == 2 else np.moveaxis(image, 0, -1)  # imgaug wants (H, W, C)
        seg = SegmentationMapsOnImage(mask.astype(np.int32), shape=hwc.shape)
        img_aug, seg_aug = self.pipeline(image=np.ascontiguousarray(hwc, dtype=np.float32),
                                         segmentation_maps=seg)
        img_aug = img_aug.astype(np.float32)
        if self.config.gamma is not None:
            g = np.random.default_rng(int(seed)).uniform(*self.config.gamma)
            img_aug = np.clip(img_aug, 0.0, 1.0) ** np.float32(g)
        if image.ndim == 3:
            img_aug = np.ascontiguousarray(np.moveaxis(img_aug, -1, 0))
        return img_aug, seg_aug.get_arr().astype(np.uint8)


def augment_pair(image: np.ndarray, mask: np.ndarray, seed: int = 0,
                 config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Augment one (image, mask) slice pair; see :class:`Augmenter`."""
    return Augmenter(config)(image, mask, seed)
