"""The U-Net: the seed's size exactly, and shapes for any configuration."""
from __future__ import annotations

import pytest
import torch

from lasegtut.model import UNet, UNetConfig, count_parameters


def test_seed_network_matches_the_course():
    cfg = UNetConfig.seed()
    net = UNet(cfg)
    assert cfg.widths == (64, 128, 256, 512) and cfg.norm == "none"
    assert count_parameters(net) == 7_781_761  # "7.8 M parameters"
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 14 and convs[-1].kernel_size == (1, 1)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in net.modules())


@pytest.mark.parametrize("widths,norm,size", [((8, 16), "none", 32), ((8, 16, 32, 64), "batch", 64),
                                              ((4, 8, 16, 32, 64), "instance", 64)])
def test_output_shape(widths, norm, size):
    net = UNet(UNetConfig(widths=widths, norm=norm)).eval()
    x = torch.rand(2, 1, size, size)
    assert net(x).shape == (2, 1, size, size)


def test_config_round_trip():
    cfg = UNetConfig(widths=(8, 16, 32), norm="instance")
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
