"""The notebooks' widgets and figures work without a front end, and react to their controls."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLE
from lasegtut.data import load_case


@pytest.fixture(scope="module")
def case():
    return load_case(SAMPLE, "la_020")


def _parts(box):
    import ipywidgets as W

    found = {}

    def walk(w):
        if isinstance(w, W.Image):
            found["image"] = w
        elif isinstance(w, W.IntSlider) and w.description == "slice":
            found["slider"] = w
        elif isinstance(w, W.Dropdown):
            found["plane"] = w
        for c in getattr(w, "children", ()):
            walk(c)

    walk(box)
    return found


@pytest.mark.parametrize("anatomical", [False, True])
def test_slice_viewer_redraws_on_slider(case, anatomical):
    box = __import__("lasegtut.widgets", fromlist=["slice_viewer"]).slice_viewer(
        case.image, case.label, spacing=case.spacing, anatomical=anatomical)
    p = _parts(box)
    first = bytes(p["image"].value)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    p["slider"].value = min(p["slider"].value + 5, p["slider"].max)
    assert bytes(p["image"].value) != first
    # switching plane keeps the slider inside the new axis
    p["plane"].value = p["plane"].options[-1]
    assert 0 <= p["slider"].value <= p["slider"].max


def test_augment_grid_png(case):
    from lasegtut.preprocess import preprocess_mask, preprocess_volume
    from lasegtut.widgets import augment_grid_png

    img, msk = preprocess_volume(case.image), preprocess_mask(case.label)
    z = int(np.argmax(msk.reshape(len(msk), -1).sum(1)))
    a = augment_grid_png(img[z], msk[z], rotate=45, scale=0.15, elastic_alpha=40, seed=0, n=2)
    b = augment_grid_png(img[z], msk[z], rotate=45, scale=0.15, elastic_alpha=40, seed=1, n=2)
    assert a[:4] == b"\x89PNG" and a != b


def test_anatomical_reorientation_is_a_transpose(case):
    from lasegtut.anatomy import to_anatomical

    out, spacing = to_anatomical(case.label, case.spacing)
    assert int(out.sum()) == int(case.label.sum())
    assert sorted(out.shape) == sorted(case.label.shape)
    assert sorted(spacing) == sorted(case.spacing)
