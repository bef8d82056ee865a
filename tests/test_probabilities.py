"""`inference.predict_probabilities` / `segment_probabilities`: the probabilities before the threshold,
from which the course's experiments (notebook 06: the threshold, the largest component) segment again
without predicting again. A stub network keeps it fast (no shipped model)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLE
from lasegtut.data import load_case
from lasegtut.errors import LasegError
from lasegtut.geometry import Geometry
from lasegtut.inference import predict_probabilities, predict_volume, segment_probabilities


@pytest.fixture(scope="module")
def stub():
    """A network whose probability is the middle input channel's intensity (so many voxels lie near any threshold)."""
    import torch

    class Intensity(torch.nn.Module):
        def forward(self, x):
            p = x[:, x.shape[1] // 2:x.shape[1] // 2 + 1].clamp(1e-4, 1 - 1e-4)
            return torch.log(p / (1 - p))

    return Intensity(), Geometry(input_size=160, border=80, context=1, context_stride=2, slice_axis=0)


@pytest.mark.parametrize("spacing", [None, (1.0, 1.25, 1.37)])  # the model's grid, and a resampled scan
def test_defaults_give_predict_volumes_mask(stub, spacing):
    image = load_case(SAMPLE, "la_020").image[:, :, 40:70]
    model, info = stub
    prob = predict_probabilities(image, model, info, spacing=spacing, locate=False)
    assert prob.shape == image.shape and prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    if spacing is None:  # nothing outside the model's 160-voxel window (200 mm: wider on a 1 mm grid)
        assert not prob[:80].any() and prob[80:240].any()
    for largest in (True, False):
        assert np.array_equal(segment_probabilities(prob, largest_cc=largest),
                              predict_volume(image, model, info, spacing=spacing, largest_cc=largest, locate=False))


def test_threshold_and_largest_component():
    prob = np.zeros((12, 12, 12), np.float32)
    prob[1:5, 1:5, 1:5] = 0.9   # the big object
    prob[8:10, 8:10, 8:10] = 0.6  # a small one, far away
    assert segment_probabilities(prob).sum() == 64  # 0.5: both found, the largest kept
    assert segment_probabilities(prob, largest_cc=False).sum() == 64 + 8
    assert segment_probabilities(prob, 0.7, largest_cc=False).sum() == 64
    assert segment_probabilities(prob).dtype == np.uint8
    for bad in (0.0, 1.5, -1):
        with pytest.raises(LasegError, match="threshold"):
            segment_probabilities(prob, bad)
