"""The validation overlays that training writes to TensorBoard follow the course's display convention
(issue 22 §5): the network-input slices are laid out by ``orientation.display_2d`` and carry their
direction letters, checked with the same synthetic marker scan as every other figure."""
from __future__ import annotations

import numpy as np
import pytest

from lasegtut import preprocess
from lasegtut.training import overlay_figure
from test_display_convention import BORDER, K, _scan, check_panel


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_tensorboard_overlays_follow_the_display_convention(axis):
    image, label, pred = _scan()
    stack = preprocess.reslice(preprocess.preprocess_volume(image, BORDER), axis)   # what the network is fed
    masks = preprocess.reslice(preprocess.preprocess_mask(label, BORDER), axis)
    k = K[axis] - (BORDER if axis < 2 else 0)  # the marker's slice in the cropped stack
    fig = overlay_figure([(stack[k], masks[k] > 0, masks[k] > 0)] * 2, axis)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    for ax in panels:
        check_panel(ax, where=f"TensorBoard overlay, slices across axis {axis}")
