"""Data augmentation with imgaug: the seed course's pipeline, applied to image *and* mask.

A U-Net trained on 15 scans has seen few hearts. Random geometric changes (a little zoom, a
rotation of up to 45 degrees, a gentle elastic warp) show it plausible new ones. The mask must
move with its image, pixel for pixel, or the network learns from wrong answers: imgaug's
``SegmentationMapsOnImage`` warps the mask with nearest-neighbour interpolation using the
same random parameters as the image, so it stays binary and aligned.

Optionally (``gamma``), a random gamma curve ``image ** g`` changes the contrast between blood
and tissue a little, as another scanner or another contrast timing would; the seed course had
no intensity augmentation, and its geometric steps cannot teach that invariance.

Optionally too, what other scanners and protocols do to an image (issue 24; the degraded copies
of :mod:`lasegtut.degrade` measure it): coarser sampling across the slices (``lowres``), blur
(``blur``), Rician noise (``noise``), and brightness and contrast changes (``brightness``,
``contrast``), each applied to a slice with its own probability, as nnU-Net does.
:data:`RECIPE_AUGMENTATION` is the shipped model's (and the ``cpu`` profile's); :data:`ROBUST_AUGMENTATION`
holds the ranges of the robust candidate recipe (the ``gpu`` profile's), and why.

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


#: The fields :meth:`AugmentConfig.__repr__` always prints (the seed's pipeline and the gamma).
ALWAYS_SHOWN = ("scale", "rotate", "elastic_alpha", "elastic_sigma", "elastic", "gamma")


@dataclass(frozen=True, repr=False)
class AugmentConfig:
    """Parameters of the pipeline (angles in degrees, scale as a factor, elastic in pixels).

    The defaults are the seed course's: ``Affine(scale=(0.85, 1.15), rotate=(-45, 45))``
    followed by ``ElasticTransformation()`` (alpha 0-40 px, sigma 4-8 px), set for 256 x 256
    slices: at 128 x 128 halve both elastic ranges for the same warp relative to the anatomy.
    ``gamma``: range of the random exponent applied to the image (in [0, 1]) after the
    geometric steps, e.g. ``(0.7, 1.5)``; None (the seed's) for no intensity change.
    ``gamma_split``: draw the exponent below 1 (uniformly in ``[gamma[0], 1]``) or above 1
    (``[1, gamma[1]]``) with equal chance, batchgenerators' rule, so that a wide range such as
    ``(0.4, 2.5)`` brightens as often as it darkens; False: uniformly in ``gamma``.

    The steps below are off by default (None), the seed's pipeline; each range is drawn uniformly,
    per slice, and the step is applied with its probability ``*_p``; all channels of a 2.5D stack get
    the same draw (they are neighbouring slices of one scan):

    ``lowres``: coarser sampling along the slice's first axis (rows; for slices across axis 0 of
    the scan, as the ``cpu`` profile's, the scan's z axis, across the files' own slices): an integer
    factor ``k`` drawn in ``lowres``, every ``k``-th row kept, the others interpolated linearly
    (:func:`lasegtut.degrade.low_through_plane`); done first, before the geometric steps warp it.
    ``blur``: Gaussian blur, sigma in pixels. ``noise``: Rician noise, sigma as a fraction of the
    [0, 1] range of the normalised image; the noisy image is then divided by
    ``1 + noise_rescale * sigma``, as min-max normalising a noisy scan divides it by its grown
    maximum. ``brightness``: a multiplier. ``contrast``: a factor about the slice's mean, the
    slice's range kept (``clip`` to its old min and max, as batchgenerators' ``preserve_range``).
    """

    scale: tuple[float, float] = (0.85, 1.15)
    rotate: tuple[float, float] = (-45.0, 45.0)
    elastic_alpha: tuple[float, float] = (0.0, 40.0)
    elastic_sigma: tuple[float, float] = (4.0, 8.0)
    elastic: bool = True
    gamma: tuple[float, float] | None = None
    gamma_split: bool = False
    lowres: tuple[int, int] | None = None
    lowres_p: float = 0.25
    blur: tuple[float, float] | None = None
    blur_p: float = 0.2
    noise: tuple[float, float] | None = None
    noise_p: float = 0.3
    noise_rescale: float = 2.5
    brightness: tuple[float, float] | None = None
    brightness_p: float = 0.15
    contrast: tuple[float, float] | None = None
    contrast_p: float = 0.15

    def __repr__(self) -> str:
        """The seed's fields and gamma always, the other steps' fields only where they differ from
        their defaults (so the seed's pipeline prints as it always has, e.g. in notebook 04)."""
        from dataclasses import fields

        shown = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ALWAYS_SHOWN or v != f.default:
                shown.append(f"{f.name}={v!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @classmethod
    def for_size(cls, size: int, **changes) -> "AugmentConfig":
        """The seed's pipeline with the elastic ranges scaled from 256 px to ``size`` px."""
        f = size / 256
        base = cls()
        return cls(elastic_alpha=(base.elastic_alpha[0] * f, base.elastic_alpha[1] * f),
                   elastic_sigma=(base.elastic_sigma[0] * f, base.elastic_sigma[1] * f), **changes)


#: The augmentation of the shipped model ``la_unet_cpu.pt`` and of the ``cpu`` profile (its recipe,
#: which notebooks 03-05 teach): the seed's zoom, rotation and elastic warp, then a random gamma drawn
#: in [0.7, 1.5] for every slice. Here, not in :mod:`lasegtut.training`, so that reading it imports
#: neither torch nor Lightning.
RECIPE_AUGMENTATION = AugmentConfig(gamma=(0.7, 1.5))

#: The candidate recipe robust to other scanners (issue 24), used by the ``gpu`` profile and by
#: ``lasegtut train --augmentation robust``; no shipped model has been trained with it yet (the
#: model card gives what a short fine-tune with it measured, not shipped).
#: nnU-Net v2's defaults (``nnUNetTrainer.get_training_transforms``) are the reference: noise
#: variance 0-0.1 of a z-scored image (p 0.1), blur sigma 0.5-1 px (p 0.2), brightness x0.75-1.25
#: (p 0.15), contrast 0.75-1.25 (p 0.15), low resolution down to 1/2 (p 0.25), gamma 0.7-1.5
#: (p 0.3, mean and spread kept). Where a degradation of :data:`lasegtut.degrade.SEVERITIES` at the
#: issue level lies beyond them, the range is widened to cover it with a margin:
#:
#: - gamma: the issue's changes are 0.5 and 2; a scan's gamma change stays exactly ``x ** g``
#:   after min-max normalisation (intensities start at 0), so the range is (0.4, 2.5), split at 1
#:   (batchgenerators' rule), on every slice as the previous recipe did;
#: - noise: at SNR 4 (:mod:`lasegtut.degrade`: relative to the mean atrium intensity, 0.56-0.62
#:   of the normalised range in five training scans) sigma is 0.14-0.16 of the [0, 1] range, far
#:   beyond nnU-Net's (a variance of 0.1 of a z-scored image): sigma 0-0.2 (down to SNR about 3),
#:   p 0.3, Rician as the scanner's, then divided by ``1 + 2.5 sigma``: in those five scans the
#:   window's maximum grew by 2.0-3.2 sigma at SNR 4, and min-max normalisation divides by it;
#: - low resolution: the issue's is 4x across the slices: factors 2-5 along the slices' z rows, p 0.25;
#: - blur: 1.5 mm is 1.2 px: sigma 0.5-1.5 px, p 0.2;
#: - brightness and contrast: nnU-Net's (0.75-1.25, p 0.15 each): min-max normalisation already
#:   removes a global scale, these add local variety.
ROBUST_AUGMENTATION = AugmentConfig(gamma=(0.4, 2.5), gamma_split=True, lowres=(2, 5), lowres_p=0.25,
                                    blur=(0.5, 1.5), blur_p=0.2, noise=(0.0, 0.2), noise_p=0.3,
                                    noise_rescale=2.5, brightness=(0.75, 1.25), brightness_p=0.15,
                                    contrast=(0.75, 1.25), contrast_p=0.15)


def build_pipeline(config: AugmentConfig | None = None):
    """The imgaug pipeline (an ``iaa.Sequential``) for ``config`` (default: the seed course's):
    ``LowResolution`` (if ``lowres``), ``Affine``, then ``ElasticTransformation`` (if ``elastic``),
    then ``RandomGamma`` (if ``gamma``), ``Blur``, ``RicianNoise``, ``Brightness``, ``Contrast``
    (each if its range is set)."""
    from .imgaug_compat import iaa

    c = config or AugmentConfig()
    steps = []
    if c.lowres is not None:
        steps.append(_intensity_step("LowResolution", _lowres, c.lowres, c.lowres_p))
    steps.append(iaa.Affine(scale=c.scale, rotate=c.rotate))
    if c.elastic:
        steps.append(iaa.ElasticTransformation(alpha=c.elastic_alpha, sigma=c.elastic_sigma))
    if c.gamma is not None:
        if c.gamma_split:
            steps.append(_intensity_step("RandomGamma", _gamma, c.gamma, 1.0))
        else:
            steps.append(_random_gamma_class()(c.gamma))
    if c.blur is not None:
        steps.append(_intensity_step("Blur", _blur, c.blur, c.blur_p))
    if c.noise is not None:
        steps.append(_intensity_step("RicianNoise", _rician(c.noise_rescale), c.noise, c.noise_p))
    if c.brightness is not None:
        steps.append(_intensity_step("Brightness", _brightness, c.brightness, c.brightness_p))
    if c.contrast is not None:
        steps.append(_intensity_step("Contrast", _contrast, c.contrast, c.contrast_p))
    return iaa.Sequential(steps)


# The intensity steps on one (H, W, C) float32 image: ``(image, value drawn in the range, rng)``.
def _lowres(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    from .degrade import low_through_plane

    k = int(np.clip(round(value), 1, image.shape[0]))
    return low_through_plane(image if image.ndim == 3 else image[..., None], k, axis=0).reshape(image.shape)


def _gamma(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image, 0.0, 1.0) ** np.float32(value)


def _blur(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    sigma = (value, value, 0) if image.ndim == 3 else (value, value)
    return ndimage.gaussian_filter(image, sigma=sigma, mode="nearest")


class _rician:
    """Rician noise of sigma ``value``, then the image divided by ``1 + rescale * value``."""

    def __init__(self, rescale: float) -> None:
        self.rescale = float(rescale)

    def __call__(self, image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
        n1 = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(value)
        n2 = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(value)
        return np.sqrt((np.maximum(image, 0) + n1) ** 2 + n2 ** 2) / np.float32(1 + self.rescale * value)


def _brightness(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    return image * np.float32(value)


def _contrast(image: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    lo, hi, mean = image.min(), image.max(), image.mean()
    return np.clip((image - mean) * np.float32(value) + mean, lo, hi)


def _draw(rng: np.random.Generator, lo: float, hi: float, split: bool) -> float:
    """Uniform in [lo, hi]; with ``split``: in [lo, 1] or [1, hi] with equal chance."""
    if split and lo < 1 < hi:
        return float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))
    return float(rng.uniform(lo, hi))


_STEP_CLASS = None


def _intensity_step(name: str, fn, value_range: tuple[float, float], p: float):
    """An imgaug augmenter that applies ``fn(image, value, rng)`` to each image with probability ``p``,
    ``value`` drawn in ``value_range`` (split at 1 for the gamma step) from the step's own random
    state (seeded with the pipeline); segmentation maps pass unchanged."""
    global _STEP_CLASS
    if _STEP_CLASS is None:
        from .imgaug_compat import iaa

        class IntensityStep(iaa.meta.Augmenter):  # type: ignore[name-defined, misc]
            def __init__(self, fn, value_range, p, split=False, seed=None, name=None) -> None:
                super().__init__(seed=seed, name=name)
                self.fn, self.value_range, self.p, self.split = fn, tuple(value_range), float(p), split

            def _augment_batch_(self, batch, random_state, parents, hooks):
                if batch.images is not None:
                    for i in range(len(batch.images)):
                        rng = np.random.default_rng(random_state.generate_seed_())
                        if rng.random() < self.p:
                            v = _draw(rng, *self.value_range, self.split)
                            batch.images[i] = np.asarray(self.fn(batch.images[i], v, rng), dtype=np.float32)
                return batch

            def get_parameters(self) -> list:
                return [self.value_range, self.p]

        _STEP_CLASS = IntensityStep
    return _STEP_CLASS(fn, value_range, p, split=fn is _gamma, name=name)


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

    noise = torch.rand(shape, device=device, generator=generator) * 2 - 1
    return _gaussian_smooth(noise, sigma, "constant")


def _gaussian_smooth(x: "torch.Tensor", sigma: "torch.Tensor", mode: str) -> "torch.Tensor":
    """Each of the n fields of ``x`` (n, H, W) smoothed with a Gaussian of its own ``sigma``
    (pixels, shape (n,); a sigma near 0 leaves a field as it is), radius 3 sigma, the image
    extended by ``mode`` (``"constant"``: zeros; ``"replicate"``: the edge, scipy's "nearest")."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    radius = int(torch.ceil(3 * sigma.max()).item()) if n else 0
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = k / k.sum(1, keepdim=True)  # (n, K)
    y = x[None]  # (1, n, H, W): one group per field
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), k[:, None, None, :], groups=n)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), k[:, None, :, None], groups=n)
    return y[0]


def _lowres_rows(x: "torch.Tensor", k: "torch.Tensor") -> "torch.Tensor":
    """Per sample of ``x`` (B, C, H, W): every ``k``-th row kept (``k`` (B,) whole numbers >= 1), the
    others interpolated linearly, as :func:`lasegtut.degrade.low_through_plane` along axis 0."""
    import torch

    b, c, h, w = x.shape
    kf = k.to(x.dtype)[:, None]
    last = ((h - 1) // k)[:, None].to(x.dtype)  # index of the last kept row among the kept ones
    pos = torch.minimum(torch.arange(h, device=x.device, dtype=x.dtype)[None] / kf, last)
    lo = torch.floor(pos)
    hi = torch.minimum(lo + 1, last)
    wt = (pos - lo)[:, None, :, None]

    def rows(i: "torch.Tensor") -> "torch.Tensor":
        idx = (i * kf).long()[:, None, :, None].expand(b, c, h, w)
        return x.gather(2, idx)

    return rows(lo) * (1 - wt) + rows(hi) * wt


def augment_batch(image: "torch.Tensor", mask: "torch.Tensor", config: AugmentConfig | None = None,
                  generator: "torch.Generator | None" = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Augment a batch on its own device (CPU or GPU) with the random steps of ``config``.

    Per sample, as :class:`Augmenter` does with imgaug: the optional coarser rows (``lowres``),
    a zoom by ``scale`` and a rotation by ``rotate`` degrees about the slice centre, then an
    elastic warp (uniform noise in [-1, 1] smoothed by a Gaussian of ``elastic_sigma`` pixels,
    times ``elastic_alpha`` pixels: imgaug's definition), then the optional gamma, blur, Rician
    noise, brightness and contrast (see :class:`AugmentConfig`). One warp moves all channels of a
    sample (a 2.5D stack) and its mask together; pixels warped in from outside the slice are 0.

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

    def chance(p: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=generator) < p

    scale = uniform(*c.scale)
    theta = torch.deg2rad(uniform(*c.rotate))
    image = image.float()
    if c.lowres is not None:
        k = torch.round(uniform(*c.lowres)).clamp(1, h).long()
        image = _lowres_rows(image, torch.where(chance(c.lowres_p), k, torch.ones_like(k)))
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
        g = uniform(*c.gamma)
        lo, hi = c.gamma
        if c.gamma_split and lo < 1 < hi:
            u = torch.rand(b, device=dev, generator=generator)
            g = torch.where(chance(0.5), lo + u * (1 - lo), 1 + u * (hi - 1))
        out = out.clamp(0.0, 1.0) ** g[:, None, None, None]
    nc = out.shape[1]
    if c.blur is not None:
        sig = torch.where(chance(c.blur_p), uniform(*c.blur), torch.zeros(b, device=dev))
        out = _gaussian_smooth(out.reshape(b * nc, h, w), sig.repeat_interleave(nc), "replicate").reshape(b, nc, h, w)
    if c.noise is not None:
        sig = torch.where(chance(c.noise_p), uniform(*c.noise), torch.zeros(b, device=dev))[:, None, None, None]
        n1 = torch.randn(out.shape, device=dev, generator=generator) * sig
        n2 = torch.randn(out.shape, device=dev, generator=generator) * sig
        out = torch.sqrt((out.clamp_min(0) + n1) ** 2 + n2 ** 2) / (1 + c.noise_rescale * sig)
    if c.brightness is not None:
        m = torch.where(chance(c.brightness_p), uniform(*c.brightness), torch.ones(b, device=dev))
        out = out * m[:, None, None, None]
    if c.contrast is not None:
        f = torch.where(chance(c.contrast_p), uniform(*c.contrast), torch.ones(b, device=dev))[:, None, None, None]
        flat = out.reshape(b, -1)
        mean = flat.mean(1)[:, None, None, None]
        lo_, hi_ = flat.amin(1)[:, None, None, None], flat.amax(1)[:, None, None, None]
        out = torch.minimum(torch.maximum((out - mean) * f + mean, lo_), hi_)
    return out, (warped >= 0.5).to(torch.uint8)
