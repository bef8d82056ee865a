"""Training losses for binary segmentation: soft Dice and Dice + binary cross-entropy.

The network outputs *logits* ``z`` of shape ``(B, 1, H, W)`` (one channel: left atrium);
``p = sigmoid(z)`` is the predicted probability of each pixel being atrium. Targets hold 0/1
(float or uint8) with the same shape; ``(B, H, W)`` targets are accepted and get the channel
axis added.

**Soft Dice loss.** Dice needs hard 0/1 masks, which have no gradient; the *soft* Dice uses the
probabilities instead::

    soft_dice = (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)
    loss      = 1 - soft_dice

Choices made here (and why):

- **Batch-pooled**: the sums run over *every pixel of the whole batch* at once, not per image
  then averaged. We train on 2D slices and most slices contain no atrium at all; a
  per-slice Dice on such a slice is ``smooth / (sum(p) + smooth)``, which punishes a handful of
  false-positive pixels as hard as missing a whole atrium and makes training noisy. Pooling
  weighs every pixel equally across the batch and stays well defined.
- **smooth = 1**: added to numerator and denominator, so an empty target with an empty
  prediction gives loss 0 (not 0/0) and gradients stay finite.

**Dice + BCE.** Binary cross-entropy gives every pixel a well-behaved gradient from the first
step (Dice alone can stall while predictions are all near 0.5); Dice keeps the small atrium from
being swamped by the background. :class:`DiceBCELoss` is the weighted sum::

    loss = bce_weight * BCE(z, t) + (1 - bce_weight) * soft_dice_loss(z, t)

with ``bce_weight = 0.5`` by default (0 gives pure Dice, 1 pure BCE). BCE is computed from the
logits (``binary_cross_entropy_with_logits``), which is numerically stable, and averaged over
pixels.

All losses are computed in float32 even if the logits are float16/bfloat16 (mixed precision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Default smoothing term of the soft Dice (added to numerator and denominator).
DEFAULT_SMOOTH = 1.0
#: Default weight of BCE in :class:`DiceBCELoss` (Dice gets ``1 - bce_weight``).
DEFAULT_BCE_WEIGHT = 0.5


def _prepare(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 logits and targets of the same shape; add the channel axis to ``(B, H, W)`` targets."""
    if target.ndim == logits.ndim - 1 and logits.ndim >= 2 and logits.shape[1] == 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits shape "
                         f"{tuple(logits.shape)}; expected (B, 1, H, W) for both")
    return logits.float(), target.to(device=logits.device, dtype=torch.float32)


def soft_dice(probs: torch.Tensor, target: torch.Tensor, smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """Batch-pooled soft Dice coefficient (a 0-d tensor, 1 = perfect) of probabilities vs targets.

    ``(2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)`` with the sums over all elements.
    ``probs`` and ``target`` must have the same shape and hold values in [0, 1].
    """
    if probs.shape != target.shape:
        raise ValueError(f"probs shape {tuple(probs.shape)} != target shape {tuple(target.shape)}")
    p, t = probs.float(), target.float()
    intersection = (p * t).sum()
    return (2.0 * intersection + smooth) / (p.sum() + t.sum() + smooth)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """``1 - soft_dice(sigmoid(logits), target)``, batch-pooled (a 0-d tensor in [0, 1)).

    Args:
        logits: raw network outputs ``(B, 1, H, W)`` (any float dtype).
        target: 0/1 targets ``(B, 1, H, W)`` or ``(B, H, W)``, float or uint8.
        smooth: smoothing term (default 1).
    """
    z, t = _prepare(logits, target)
    return 1.0 - soft_dice(torch.sigmoid(z), t, smooth)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = DEFAULT_BCE_WEIGHT,
                  smooth: float = DEFAULT_SMOOTH) -> torch.Tensor:
    """``bce_weight * BCE + (1 - bce_weight) * soft Dice loss`` (a 0-d tensor).

    Args:
        logits: raw network outputs ``(B, 1, H, W)``.
        target: 0/1 targets ``(B, 1, H, W)`` or ``(B, H, W)``, float or uint8.
        bce_weight: weight of the pixel-mean binary cross-entropy, in [0, 1].
        smooth: smoothing term of the soft Dice.
    """
    if not 0.0 <= bce_weight <= 1.0:
        raise ValueError(f"bce_weight must be in [0, 1], got {bce_weight}")
    z, t = _prepare(logits, target)
    bce = F.binary_cross_entropy_with_logits(z, t)
    dice = 1.0 - soft_dice(torch.sigmoid(z), t, smooth)
    return bce_weight * bce + (1.0 - bce_weight) * dice


class SoftDiceLoss(nn.Module):
    """Batch-pooled soft Dice loss on logits; see :func:`soft_dice_loss`."""

    def __init__(self, smooth: float = DEFAULT_SMOOTH) -> None:
        super().__init__()
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_dice_loss(logits, target, self.smooth)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}"


class DiceBCELoss(nn.Module):
    """``bce_weight * BCE + (1 - bce_weight) * soft Dice`` on logits; see :func:`dice_bce_loss`."""

    def __init__(self, bce_weight: float = DEFAULT_BCE_WEIGHT, smooth: float = DEFAULT_SMOOTH) -> None:
        super().__init__()
        if not 0.0 <= bce_weight <= 1.0:
            raise ValueError(f"bce_weight must be in [0, 1], got {bce_weight}")
        self.bce_weight = float(bce_weight)
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return dice_bce_loss(logits, target, self.bce_weight, self.smooth)

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, smooth={self.smooth}"
