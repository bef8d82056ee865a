"""A 2D U-Net for left-atrium segmentation of 2D MRI slices (any array axis; see ``slice_axis``).

Input tensors are ``(batch, 1, H, W)`` float32 images scaled to [0, 1]; the output is
``(batch, 1, H, W)`` *logits* (apply ``torch.sigmoid`` for a probability of "left atrium").
H and W must be divisible by ``2 ** depth``.

``UNetConfig.seed()`` reproduces the seed course's network exactly: widths 64-128-256-512,
two 3x3 convolutions + ReLU per level, max-pool down, bilinear up-sampling, skip
connections by concatenation and a 1x1 head (7.8 M parameters). Smaller widths and
batch/instance normalisation give networks that train on a laptop CPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
import torch.nn.functional as F

Norm = Literal["none", "batch", "instance"]


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet`.

    Attributes:
        widths: channels per level, from the top (full resolution) to the bottleneck.
            ``depth = len(widths) - 1`` max-pool steps are taken.
        norm: normalisation after each convolution: ``"none"`` (the seed), ``"batch"`` or
            ``"instance"``.
        in_channels: image channels (1 for MRI).
        out_channels: output logits (1 for a binary LA mask).
    """

    widths: tuple[int, ...] = (16, 32, 64, 128)
    norm: Norm = "batch"
    in_channels: int = 1
    out_channels: int = 1

    @classmethod
    def seed(cls) -> "UNetConfig":
        """The seed course's U-Net: 64-128-256-512, no normalisation, 7.8 M parameters."""
        return cls(widths=(64, 128, 256, 512), norm="none")

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions (padding 1), each followed by optional norm and ReLU."""

    def __init__(self, cin: int, cout: int, norm: Norm) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """2D U-Net: (B, in_channels, H, W) float -> (B, out_channels, H, W) logits."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        w = self.config.widths
        n = self.config.norm
        self.down = nn.ModuleList()
        cin = self.config.in_channels
        for c in w:
            self.down.append(DoubleConv(cin, c, n))
            cin = c
        self.up = nn.ModuleList()
        for lo, hi in zip(reversed(w[:-1]), reversed(w[1:])):
            # bilinear up-sampling keeps `hi` channels; concatenated with the skip (`lo`)
            self.up.append(DoubleConv(hi + lo, lo, n))
        self.head = nn.Conv2d(w[0], self.config.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for block in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([skips.pop(), x], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
