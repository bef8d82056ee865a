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


def test_augment_explorer_redraws_on_release(case):
    from lasegtut.preprocess import preprocess_mask, preprocess_volume
    from lasegtut.widgets import augment_explorer

    import ipywidgets as W

    img, msk = preprocess_volume(case.image), preprocess_mask(case.label)
    z = int(np.argmax(msk.reshape(len(msk), -1).sum(1)))
    box = augment_explorer(img[z], msk[z], n=2)
    found = {}

    def walk(w):
        if isinstance(w, W.Image):
            found["image"] = w
        elif isinstance(w, (W.IntSlider, W.FloatSlider)):
            found[w.description] = w
        for c in getattr(w, "children", ()):
            walk(c)

    walk(box)
    assert {"rotation (deg)", "zoom +-", "elastic alpha (px)", "seed"} <= set(found)
    assert not found["seed"].continuous_update  # redraws when the slider is released
    first = bytes(found["image"].value)
    assert first[:4] == b"\x89PNG"
    found["seed"].value = 7
    assert bytes(found["image"].value) not in (b"", first)


def test_notebook_progress_bar_is_a_widget():
    """tqdm's notebook bar (used by the course's loops and by Lightning in a notebook) builds
    its ipywidgets bar and follows the count."""
    import ipywidgets as W
    from tqdm.notebook import tqdm

    bar = tqdm(total=4, desc="demo", display=False, mininterval=0)
    bar.update(3)
    progress = [w for w in bar.container.children if isinstance(w, W.FloatProgress)]
    assert isinstance(bar.container, W.HBox) and len(progress) == 1
    assert progress[0].value == 3 and progress[0].max == 4
    bar.update(1)
    bar.close()
    assert progress[0].bar_style == "success"
