"""The model's input geometry and the weights file: one format, written and read in one place."""
from __future__ import annotations

import pytest
import torch

from lasegtut.data import MSD_SPACING
from lasegtut.errors import LasegError
from lasegtut.geometry import Geometry
from lasegtut.inference import SHIPPED_WEIGHTS, load_model
from lasegtut.model import UNet, UNetConfig
from lasegtut.training import PROFILES
from lasegtut.weightsfile import WEIGHTS_FORMAT, ModelInfo, export_weights, load_weights


def test_geometry_round_trips_through_a_dict():
    g = Geometry(input_size=96, border=48, context=2, context_stride=3, slice_axis=1, spacing_mm=(1.0, 1.1, 2.0))
    d = g.to_dict()
    assert list(d) == ["input_size", "border", "context", "context_stride", "slice_axis", "spacing_mm"]
    assert d["spacing_mm"] == [1.0, 1.1, 2.0] and Geometry.from_dict(d) == g
    assert Geometry.from_dict({"border": 48, "unknown": 1}) == Geometry(border=48)
    assert g.window_size == 320 - 2 * 48 and g.channels == 5


def test_the_seed_geometry_is_the_default():
    """What a file gets for the fields it does not record: the full crop of single slices across axis 2."""
    g = Geometry()
    assert (g.input_size, g.border, g.context, g.context_stride, g.slice_axis) == (256, 32, 0, 1, 2)
    assert g.spacing_mm == MSD_SPACING


def test_profile_geometry_is_what_its_model_expects():
    """The shipped model was trained with the cpu profile: its file's geometry is the profile's."""
    _, info = load_model()
    assert isinstance(info, ModelInfo) and info.geometry.same_slicing(PROFILES["cpu"].geometry())


def test_a_file_without_spacing_gets_the_msd_spacing():
    assert "spacing_mm" not in torch.load(SHIPPED_WEIGHTS, weights_only=True)  # made before it was recorded
    _, info = load_weights(SHIPPED_WEIGHTS)
    assert info.geometry.spacing_mm == MSD_SPACING and info.meta["profile"] == "cpu"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_export_then_load_gives_the_same_network_and_geometry(tmp_path, dtype):
    net = UNet(UNetConfig(widths=(4, 8), in_channels=3)).eval()
    g = Geometry(input_size=64, border=40, context=1, context_stride=2, slice_axis=0, spacing_mm=(1.5, 1.5, 2.0))
    path = export_weights(net, g, tmp_path / "m.pt", meta={"profile": "test"}, dtype=dtype)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == WEIGHTS_FORMAT and payload["spacing_mm"] == [1.5, 1.5, 2.0]
    again, info = load_weights(path)
    assert info == ModelInfo(g, {"profile": "test"}) and again.config == net.config
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), atol=1e-2 if dtype == "float16" else 0, rtol=0)


def test_export_refuses_another_dtype(tmp_path):
    with pytest.raises(LasegError, match="float32 or float16"):
        export_weights(UNet(UNetConfig(widths=(4, 8))), Geometry(), tmp_path / "m.pt", dtype="int8")
    assert not (tmp_path / "m.pt").exists()
