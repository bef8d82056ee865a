"""Tests of lasegtut.losses: soft Dice (batch-pooled, smooth = 1) and Dice + BCE on logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lasegtut.losses import DiceBCELoss, SoftDiceLoss, dice_bce_loss, soft_dice, soft_dice_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 16, 16, generator=g)
    target = (torch.rand(3, 1, 16, 16, generator=g) > 0.7).float()
    return logits, target


def test_soft_dice_loss_by_hand():
    logits = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, :2, :2] = 1  # 4 ones among 16
    expected = 1 - (2 * 0.5 * 4 + 1) / (0.5 * 16 + 4 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected)


def test_perfect_and_inverted_predictions():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 50  # +50 inside, -50 outside
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    inverted = -perfect
    # 1 - smooth / (sum p + sum t + smooth), sum p = 2 * 48 background pixels, sum t = 2 * 16:
    # the smooth term keeps it just below 1
    assert soft_dice_loss(inverted, target).item() == pytest.approx(1 - 1 / (96 + 32 + 1), abs=1e-6)


def test_empty_target_and_empty_prediction_give_zero_loss():
    target = torch.zeros(2, 1, 8, 8)
    logits = torch.full((2, 1, 8, 8), -50.0)
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(dice_bce_loss(logits, target))


def test_dice_is_pooled_over_the_batch_not_averaged_per_sample(batch):
    logits, target = batch
    pooled = soft_dice_loss(logits, target)
    # pooling = treating the whole batch as one big image
    as_one_image = soft_dice_loss(logits.reshape(1, 1, -1, 16), target.reshape(1, 1, -1, 16))
    assert pooled.item() == pytest.approx(as_one_image.item(), rel=1e-6)
    per_sample_mean = torch.stack([soft_dice_loss(logits[i:i + 1], target[i:i + 1]) for i in range(3)]).mean()
    assert pooled.item() != pytest.approx(per_sample_mean.item(), rel=1e-4)


def test_uint8_and_channel_less_targets_are_accepted(batch):
    logits, target = batch
    ref = soft_dice_loss(logits, target)
    assert soft_dice_loss(logits, target.to(torch.uint8)).item() == pytest.approx(ref.item())
    assert soft_dice_loss(logits, target[:, 0]).item() == pytest.approx(ref.item())
    assert dice_bce_loss(logits, target[:, 0].to(torch.uint8)).item() == pytest.approx(
        dice_bce_loss(logits, target).item())


def test_shape_mismatch_raises(batch):
    logits, target = batch
    with pytest.raises(ValueError, match="shape"):
        soft_dice_loss(logits, target[:, :, :8])
    with pytest.raises(ValueError):
        soft_dice(torch.rand(2, 3), torch.rand(3, 2))


def test_dice_bce_weights(batch):
    logits, target = batch
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dl = soft_dice_loss(logits, target)
    assert dice_bce_loss(logits, target, bce_weight=0.0).item() == pytest.approx(dl.item())
    assert dice_bce_loss(logits, target, bce_weight=1.0).item() == pytest.approx(bce.item())
    assert dice_bce_loss(logits, target).item() == pytest.approx(0.5 * bce.item() + 0.5 * dl.item())
    assert dice_bce_loss(logits, target, bce_weight=0.2).item() == pytest.approx(
        0.2 * bce.item() + 0.8 * dl.item())
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            DiceBCELoss(bce_weight=bad)
        with pytest.raises(ValueError):
            dice_bce_loss(logits, target, bce_weight=bad)


def test_modules_match_functional_forms(batch):
    logits, target = batch
    assert SoftDiceLoss()(logits, target).item() == pytest.approx(soft_dice_loss(logits, target).item())
    assert SoftDiceLoss(smooth=5)(logits, target).item() == pytest.approx(
        soft_dice_loss(logits, target, smooth=5).item())
    assert DiceBCELoss(0.3)(logits, target).item() == pytest.approx(dice_bce_loss(logits, target, 0.3).item())
    assert "bce_weight=0.3" in repr(DiceBCELoss(0.3))


def test_gradients_flow_and_lower_the_loss(batch):
    logits, target = batch
    z = logits.clone().requires_grad_(True)
    loss_fn = DiceBCELoss()
    opt = torch.optim.Adam([z], lr=0.5)
    first = loss_fn(z, target)
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(z, target)
        loss.backward()
        assert torch.isfinite(z.grad).all()
        opt.step()
    assert loss_fn(z, target).item() < 0.5 * first.item()


def test_half_precision_logits_give_a_float32_loss(batch):
    logits, target = batch
    loss = dice_bce_loss(logits.half(), target)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(dice_bce_loss(logits, target).item(), rel=1e-2)
