"""Degraded copies of a scan: what other scanners and protocols do to an image.

A model trained on 15 scans of one centre sees one noise level, one sharpness and one contrast.
These functions make a scan look as if another scanner or protocol had acquired it, so that a
model's robustness can be *measured* (``benchmarks/robustness.py``) and its uncertainty checked
against its errors. Every function takes an RAS volume ``(x, y, z)`` of raw intensities (any
real dtype; returned as float32 of the same shape, on the same grid, so the label stays valid)
and, where it matters, the voxel size ``spacing`` in mm ``(x, y, z)`` and a ``seed`` (the same
seed gives the same copy).

- :func:`rician_noise` ``(snr)``: MRI magnitude noise. **SNR** is defined here as the mean
  intensity of the *signal* region divided by ``sigma``, the standard deviation of the Gaussian
  noise added to each of the real and imaginary channels before the magnitude is taken. The
  signal region is the left-atrium label when one is given (the blood pool, the brightest
  structure of these scans: :func:`signal_level`), else the bright foreground (voxels above
  Otsu's threshold). So at SNR 4 the noise sigma is a quarter of the mean atrium intensity.
- :func:`gaussian_blur` ``(sigma_mm)``: an isotropic Gaussian point-spread function, sigma in mm.
- :func:`gamma` ``(g)``: a contrast change ``I -> I_max * (I / I_max) ** g`` (intensities >= 0;
  the range is kept, the contrast between tissues changes: g < 1 brightens the dark tissue).
- :func:`low_through_plane` ``(factor)``: thicker sampling across ``axis`` (default 2, the files'
  own slice axis, 1.37 mm in MSD Task02): every ``factor``-th slice is kept, and the grid is
  filled back by linear interpolation between them (a 4x coarser acquisition, reformatted).
- :func:`ghosting` ``(strength)``: a phase-encoding ghost: a copy of the image shifted by half the
  field of view along ``axis`` (default 1) and scaled by ``strength``, added to it (the N/2 ghost
  of an odd/even k-space line mismatch).
- :func:`cut_fov` ``(fraction)``: a field of view too small: the outer ``fraction`` of ``axis``
  (default 1, from its high end) is set to 0, as outside a scan's field of view.

:data:`SEVERITIES` names the copies used by the robustness benchmark and the uncertainty work:
the ``"issue"`` level is what a robust model must survive (issue 24: Dice >= 0.80 on each case),
the ``"harsh"`` level goes beyond, to where a model fails (issue 25). :func:`degrade` builds one
by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import LasegError


def _as_float(volume: np.ndarray) -> np.ndarray:
    v = np.asarray(volume, dtype=np.float32)
    if v.ndim != 3:
        raise LasegError(f"a 3D volume (x, y, z) is needed, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise LasegError("the volume holds non-finite intensities")
    return v


def otsu_threshold(volume: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the intensities (the one that best splits them into two classes)."""
    v = np.asarray(volume, dtype=np.float64).ravel()
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def signal_level(volume: np.ndarray, label: np.ndarray | None = None) -> float:
    """The signal an SNR refers to: the mean intensity inside ``label`` (the left atrium, the
    definition used by :data:`SEVERITIES` and the benchmark) when given and not empty, else the mean
    of the bright foreground (voxels above Otsu's threshold)."""
    v = np.asarray(volume, dtype=np.float32)
    if label is not None:
        lab = np.asarray(label) > 0
        if lab.shape != v.shape:
            raise LasegError(f"label {lab.shape} and volume {v.shape} differ in shape")
        if lab.any():
            return float(v[lab].mean(dtype=np.float64))
    return float(v[v > otsu_threshold(v)].mean(dtype=np.float64))


def rician_noise(volume: np.ndarray, snr: float, *, seed: int = 0, label: np.ndarray | None = None,
                 signal: float | None = None) -> np.ndarray:
    """Rician (magnitude) noise at ``snr`` = signal / sigma (see the module docstring):
    ``sqrt((I + n1) ** 2 + n2 ** 2)`` with ``n1, n2`` independent ``N(0, sigma)``; negative
    intensities are taken as 0 first (a magnitude image). ``signal`` (intensity units) overrides
    :func:`signal_level` of ``volume`` and ``label``."""
    if not snr > 0:
        raise LasegError(f"the SNR must be > 0, not {snr}")
    v = np.maximum(_as_float(volume), 0)
    sigma = (signal if signal is not None else signal_level(v, label)) / float(snr)
    rng = np.random.default_rng(seed)
    n1 = rng.standard_normal(v.shape, dtype=np.float32) * np.float32(sigma)
    n2 = rng.standard_normal(v.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt((v + n1) ** 2 + n2 ** 2).astype(np.float32)


def gaussian_blur(volume: np.ndarray, spacing: tuple[float, float, float], sigma_mm: float) -> np.ndarray:
    """Blur with an isotropic Gaussian of ``sigma_mm`` mm (``sigma_mm / spacing`` voxels per axis)."""
    from scipy import ndimage

    if not sigma_mm >= 0:
        raise LasegError(f"the blur sigma must be >= 0 mm, not {sigma_mm}")
    v = _as_float(volume)
    return ndimage.gaussian_filter(v, sigma=[sigma_mm / float(s) for s in spacing], mode="nearest").astype(np.float32)


def gamma(volume: np.ndarray, g: float) -> np.ndarray:
    """``I_max * (I / I_max) ** g`` on intensities clipped at 0 (``I_max``: the volume's maximum)."""
    if not g > 0:
        raise LasegError(f"gamma must be > 0, not {g}")
    v = np.maximum(_as_float(volume), 0)
    top = float(v.max())
    if top == 0:
        return v
    return (top * (v / top) ** np.float32(g)).astype(np.float32)


def low_through_plane(volume: np.ndarray, factor: int, *, axis: int = 2) -> np.ndarray:
    """Keep every ``factor``-th slice along ``axis`` (from the first) and fill the others by linear
    interpolation between the kept ones (beyond the last kept slice it is repeated)."""
    if not (isinstance(factor, (int, np.integer)) and factor >= 1):
        raise LasegError(f"the through-plane factor must be a whole number >= 1, not {factor}")
    v = np.moveaxis(_as_float(volume), axis, 0)
    n = len(v)
    kept = np.arange(0, n, int(factor))
    pos = np.clip(np.arange(n, dtype=np.float64) / factor, 0, len(kept) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(kept) - 1)
    w = (pos - lo).astype(np.float32)[:, None, None]
    out = v[kept[lo]] * (1 - w) + v[kept[hi]] * w
    return np.ascontiguousarray(np.moveaxis(out, 0, axis)).astype(np.float32)


def ghosting(volume: np.ndarray, strength: float, *, axis: int = 1) -> np.ndarray:
    """Add ``strength`` times the image shifted (wrapped) by half its extent along ``axis``."""
    if not strength >= 0:
        raise LasegError(f"the ghost strength must be >= 0, not {strength}")
    v = _as_float(volume)
    return (v + np.float32(strength) * np.roll(v, v.shape[axis] // 2, axis=axis)).astype(np.float32)


def cut_fov(volume: np.ndarray, fraction: float, *, axis: int = 1) -> np.ndarray:
    """Set the last ``fraction`` (0-1) of the voxels along ``axis`` to 0."""
    if not 0 <= fraction < 1:
        raise LasegError(f"the cut fraction must be in [0, 1), not {fraction}")
    v = _as_float(volume).copy()
    n = v.shape[axis]
    cut = int(round(n * fraction))
    if cut:
        idx = [slice(None)] * 3
        idx[axis] = slice(n - cut, n)
        v[tuple(idx)] = 0
    return v


@dataclass(frozen=True)
class Severity:
    """One named degraded copy: ``kind`` (a function of this module), its parameters, and its
    ``level``: ``"issue"`` (a robust model must keep Dice >= 0.80 there), ``"mild"`` (below the
    issue's, a step on the way for the uncertainty work) or ``"harsh"`` (beyond)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    level: str = "issue"


#: Named degradations. Issue level (issue 24: the shipped model was seen to fail on the first two):
#: Rician noise at SNR 4, a gamma change (0.5 and 2, both directions), Gaussian blur of 1.5 mm
#: (about one voxel), 4x coarser sampling through the slices, a ghost at 30% strength. Harsh level:
#: the same further, and a cut field of view, for the uncertainty work; mild: noise at SNR 8.
SEVERITIES: dict[str, Severity] = {
    "noise_snr8": Severity("rician_noise", {"snr": 8.0}, "mild"),
    "noise_snr4": Severity("rician_noise", {"snr": 4.0}, "issue"),
    "blur_1.5mm": Severity("gaussian_blur", {"sigma_mm": 1.5}, "issue"),
    "gamma_0.5": Severity("gamma", {"g": 0.5}, "issue"),
    "gamma_2": Severity("gamma", {"g": 2.0}, "issue"),
    "thick_4x": Severity("low_through_plane", {"factor": 4}, "issue"),
    "ghost_0.3": Severity("ghosting", {"strength": 0.3}, "issue"),
    "noise_snr2": Severity("rician_noise", {"snr": 2.0}, "harsh"),
    "noise_snr1": Severity("rician_noise", {"snr": 1.0}, "harsh"),
    "blur_3mm": Severity("gaussian_blur", {"sigma_mm": 3.0}, "harsh"),
    "gamma_0.3": Severity("gamma", {"g": 0.3}, "harsh"),
    "gamma_3": Severity("gamma", {"g": 3.0}, "harsh"),
    "thick_8x": Severity("low_through_plane", {"factor": 8}, "harsh"),
    "ghost_0.6": Severity("ghosting", {"strength": 0.6}, "harsh"),
    "fov_cut_0.3": Severity("cut_fov", {"fraction": 0.3}, "harsh"),
    "fov_cut_0.4": Severity("cut_fov", {"fraction": 0.4}, "harsh"),
}


def degrade(volume: np.ndarray, spacing: tuple[float, float, float], name: str | Severity, *,
            seed: int = 0, label: np.ndarray | None = None) -> np.ndarray:
    """The copy of ``volume`` (``(x, y, z)``, ``spacing`` mm) degraded as :data:`SEVERITIES` ``[name]``
    (or a :class:`Severity`); ``seed`` for the random ones, ``label`` (the atrium) for the noise's
    signal level. Returns float32 ``(x, y, z)`` on the same grid."""
    sev = name if isinstance(name, Severity) else SEVERITIES.get(name)
    if sev is None:
        raise LasegError(f"unknown degradation {name!r}; choose one of {', '.join(SEVERITIES)}")
    p = dict(sev.params)
    fns: dict[str, Callable[[], np.ndarray]] = {
        "rician_noise": lambda: rician_noise(volume, seed=seed, label=label, **p),
        "gaussian_blur": lambda: gaussian_blur(volume, spacing, **p),
        "gamma": lambda: gamma(volume, **p),
        "low_through_plane": lambda: low_through_plane(volume, **p),
        "ghosting": lambda: ghosting(volume, **p),
        "cut_fov": lambda: cut_fov(volume, **p),
    }
    if sev.kind not in fns:
        raise LasegError(f"unknown degradation kind {sev.kind!r}")
    return fns[sev.kind]()
