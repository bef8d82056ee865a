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

Two implementations of one :class:`AugmentConfig`:

- :class:`Augmenter` (imgaug, one slice at a time on the CPU): what notebook 04 teaches and what
  the ``ci`` and ``cpu`` training profiles use inside the DataLoader workers;
- :func:`augment_batch` (PyTorch, a whole batch at once on the batch's device): the same random
  zoom, rotation, elastic warp and gamma, for the ``gpu`` profile, where a few CPU cores running
  imgaug could not keep a GPU busy (a Colab GPU comes with 2 vCPUs). imgaug is not needed there.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


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


#: The augmentation of the shipped model's recipe (the ``cpu`` and ``gpu`` profiles): the seed's
#: zoom, rotation and elastic warp, then a random gamma drawn in [0.7, 1.5] for every slice. Here,
#: not in :mod:`lasegtut.training`, so that reading it imports neither torch nor Lightning.
RECIPE_AUGMENTATION = AugmentConfig(gamma=(0.7, 1.5))


def build_pipeline(config: AugmentConfig | None = None):
    """The imgaug pipeline (an ``iaa.Sequential``) for ``config`` (default: the seed course's):
    ``Affine``, then ``ElasticTransformation`` (if ``elastic``), then ``RandomGamma`` (if ``gamma``)."""
    from .imgaug_compat import iaa

    c = config or AugmentConfig()
    steps = [iaa.Affine(scale=c.scale, rotate=c.rotate)]
    if c.elastic:
        steps.append(iaa.ElasticTransformation(alpha=c.elastic_alpha, sigma=c.elastic_sigma))
    if c.gamma is not None:
        steps.append(_random_gamma_class()(c.gamma))
    return iaa.Sequential(steps)


_RANDOM_GAMMA = None


def _random_gamma_class():
    """imgaug's augmenter of the gamma step: ``image -> clip(image, 0, 1) ** g`` with ``g`` drawn
    uniformly in ``gamma`` for every image (from the step's own random state, seeded with the
    pipeline); segmentation maps pass unchanged. Built on first use: imgaug is imported only where
    the CPU pipeline runs."""
    global _RANDOM_GAMMA
    if _RANDOM_GAMMA is None:
        import imgaug.parameters as iap

        from .imgaug_compat import iaa

        class RandomGamma(iaa.meta.Augmenter):  # type: ignore[name-defined, misc]
            def __init__(self, gamma: tuple[float, float], seed=None, name=None) -> None:
                super().__init__(seed=seed, name=name)
                self.gamma = iap.Uniform(float(gamma[0]), float(gamma[1]))

            def _augment_batch_(self, batch, random_state, parents, hooks):
                if batch.images is not None:
                    gs = self.gamma.draw_samples((len(batch.images),), random_state=random_state)
                    for i, g in enumerate(gs):
                        batch.images[i] = np.clip(batch.images[i], 0.0, 1.0) ** np.float32(g)
                return batch

            def get_parameters(self) -> list:
                return [self.gamma]

        _RANDOM_GAMMA = RandomGamma
    return _RANDOM_GAMMA


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
        from imgaug.augmentables.segmaps import SegmentationMapsOnImage

        self.pipeline.seed_(int(seed))
        hwc = image if image.ndim == 2 else np.moveaxis(image, 0, -1)  # imgaug wants (H, W, C)
        seg = SegmentationMapsOnImage(mask.astype(np.int32), shape=hwc.shape)
        img_aug, seg_aug = self.pipeline(image=np.ascontiguousarray(hwc, dtype=np.float32),
                                         segmentation_maps=seg)
        img_aug = img_aug.astype(np.float32)
        if image.ndim == 3:
            img_aug = np.ascontiguousarray(np.moveaxis(img_aug, -1, 0))
        return img_aug, seg_aug.get_arr().astype(np.uint8)


def augment_pair(image: np.ndarray, mask: np.ndarray, seed: int = 0,
                 config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Augment one (image, mask) slice pair; see :class:`Augmenter`."""
    return Augmenter(config)(image, mask, seed)


def _smooth_noise(shape: tuple[int, int, int], sigma: "torch.Tensor", device, generator=None) -> "torch.Tensor":
    """Uniform noise in [-1, 1] of ``shape`` (n, H, W), each of the n fields smoothed with a
    Gaussian of its own ``sigma`` (pixels, shape (n,)), zero outside the image (as
    ``scipy.ndimage.gaussian_filter(mode="constant")``, which imgaug uses)."""
    import torch
    import torch.nn.functional as F

    n, h, w = shape
    noise = torch.rand(shape, device=device, generator=generator) * 2 - 1
    radius = int(torch.ceil(3 * sigma.max()).item()) if n else 0
    if radius == 0:
        return noise
    t = torch.arange(-radius, radius + 1, device=device, dtype=noise.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = k / k.sum(1, keepdim=True)  # (n, K)
    x = noise[None]  # (1, n, H, W): one group per field
    x = F.conv2d(x, k[:, None, None, :], padding=(0, radius), groups=n)
    x = F.conv2d(x, k[:, None, :, None], padding=(radius, 0), groups=n)
    return x[0]


def augment_batch(image: "torch.Tensor", mask: "torch.Tensor", config: AugmentConfig | None = None,
                  generator: "torch.Generator | None" = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Augment a batch on its own device (CPU or GPU) with the random steps of ``config``.

    Per sample, as :class:`Augmenter` does with imgaug: a zoom by ``scale`` and a rotation by
    ``rotate`` degrees about the slice centre, then an elastic warp (uniform noise in [-1, 1]
    smoothed by a Gaussian of ``elastic_sigma`` pixels, times ``elastic_alpha`` pixels: imgaug's
    definition), then the optional gamma. One warp moves all channels of a sample (a 2.5D stack)
    and its mask together; pixels warped in from outside the slice are 0.

    Args:
        image: float ``(B, C, H, W)`` in [0, 1].
        mask: ``(B, 1, H, W)`` in {0, 1} (any dtype); warped bilinearly and thresholded at 0.5.
        generator: a ``torch.Generator`` on the batch's device (None: torch's global one).

    Returns:
        ``(image float32 (B, C, H, W), mask uint8 (B, 1, H, W))``.
    """
    import torch
    import torch.nn.functional as F

    c = config or AugmentConfig()
    b, _, h, w = image.shape
    dev = image.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=generator) * (hi - lo) + lo

    scale = uniform(*c.scale)
    theta = torch.deg2rad(uniform(*c.rotate))
    # output pixel p (relative to the centre, in pixels) samples the input at R(theta) p / scale
    ys = torch.arange(h, device=dev, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=dev, dtype=torch.float32) - (w - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.expand(b, h, w), gy.expand(b, h, w)
    if c.elastic:
        alpha, sigma = uniform(*c.elastic_alpha), uniform(*c.elastic_sigma)
        d = _smooth_noise((2 * b, h, w), sigma.repeat(2), dev, generator) * alpha.repeat(2)[:, None, None]
        gx, gy = gx + d[:b], gy + d[b:]
    cos, sin = (torch.cos(theta) / scale)[:, None, None], (torch.sin(theta) / scale)[:, None, None]
    sx, sy = cos * gx - sin * gy, sin * gx + cos * gy
    grid = torch.stack([2 * sx / w, 2 * sy / h], dim=-1)  # normalised, align_corners=False
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = F.grid_sample(mask.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if c.gamma is not None:
        g = uniform(*c.gamma)[:, None, None, None]
        out = out.clamp(0.0, 1.0) ** g
    return out, (warped >= 0.5).to(torch.uint8)
