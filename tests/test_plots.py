"""Orientation, vocabulary and legibility of the course's figures.

The orientation itself (known voxels, letters, plane names) is pinned down in
test_orientation.py; these tests check that every helper that shows a slice of a scan writes
orientation letters on it and never calls the files' slices "axial", and that figures are drawn
large enough to read.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lasegtut import metrics, orientation, plots, preprocess


def _volume(shape=(40, 44, 36)):
    """A smooth synthetic 'scan' with a box-shaped 'atrium' and a slightly shifted 'prediction'."""
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[12:28, 14:30, 10:26] = 1
    pred = np.zeros(shape, np.uint8)
    pred[13:29, 14:31, 11:26] = 1
    image[label > 0] += 200.0
    return image, label, pred


def _texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.texts]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images()]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_array_slice_shows_the_model_input_layout(axis):
    """A slice of a volume and the same slice of ``reslice(file_slices(volume), axis)`` shown with
    ``show_xy`` are the same picture (so one set of letters fits both)."""
    n = 8
    vol = np.arange(n ** 3, dtype=np.float32).reshape(n, n, n)
    stack = preprocess.reslice(preprocess.file_slices(vol), axis)
    for i in (0, 3, n - 1):
        assert np.array_equal(plots.array_slice(vol, i, axis), orientation.display_2d(stack[i], axis)[0])


# ----------------------------------------------------------------------------- figure helpers
def _helper_figures():
    image, label, pred = _volume()
    spacing = (1.25, 1.25, 1.37)
    stack, masks = preprocess.file_slices(image), preprocess.file_slices(label)
    figs = {
        "crop_figure": plots.crop_figure(image, label, 18, border=4),
        "compare_labels": plots.compare_labels(image, label, pred, ("a", "b"), spacing=spacing),
        "compare_slices": plots.compare_slices(image, label, pred, [15, 20], spacing=spacing),
        "compare_slices_axis0": plots.compare_slices(image, label, pred, [15, 20], axis=0, spacing=spacing),
        "slice_strip": plots.slice_strip(stack, masks, [12, 18, 24]),
        "augmentation_grid": plots.augmentation_grid(stack[18], masks[18], [(stack[18], masks[18])]),
        "alignment_figure": plots.alignment_figure(masks[18].astype(np.float32), masks[18], masks[17]),
    }
    fig, ax = plt.subplots(dpi=plots.FIG_DPI)
    plots.slice_dice_curve(ax, metrics.per_slice_dice(pred, label), {"best": 18}, label="case")
    figs["slice_dice_curve"] = fig
    figs["la_area_profile"] = plots.la_area_profile({"case": label}, {"case": spacing})
    return figs


def test_no_figure_calls_the_files_slices_axial():
    figs = _helper_figures()
    try:
        for name, fig in figs.items():
            text = " ".join(_texts(fig)).lower()
            assert "axial" not in text, f"{name} calls a slice of these scans axial: {text!r}"
        xlabel = figs["slice_dice_curve"].axes[0].get_xlabel()
        assert "sagittal" in xlabel and "left -> right" in xlabel, xlabel
    finally:
        plt.close("all")


def test_every_slice_figure_has_orientation_letters_and_readable_panels():
    figs = _helper_figures()
    try:
        for name, fig in figs.items():
            assert 110 <= fig.dpi <= 150, f"{name} is drawn at {fig.dpi} dpi"
            panels = _image_axes(fig)
            if not panels:
                continue
            fig.canvas.draw()
            lettered = [ax for ax in panels if {t.get_text() for t in ax.texts} >= {"S", "I"}]
            assert lettered, f"{name}: no panel carries orientation letters"
            for ax in panels:
                box = ax.get_window_extent()
                assert max(box.width, box.height) >= 280, f"{name}: a panel is only {box.width:.0f} x {box.height:.0f} px"
        # the model's slices (across axis 0) carry the coronal letters
        axis0 = figs["compare_slices_axis0"].axes[0]
        assert {t.get_text() for t in axis0.texts} >= {"S", "I", "L", "R"}
    finally:
        plt.close("all")


def test_animation_has_letters_and_a_legend(monkeypatch):
    image, label, pred = _volume()
    seen = {}

    def capture(anim):
        seen["fig"] = anim._fig
        anim._draw_was_started = True  # not rendered on purpose: only the figure is inspected
        return "<html/>"

    monkeypatch.setattr(plots, "animation_html", capture)
    assert plots.animate_slices(image, label, pred, step=8, title="t") == "<html/>"
    fig = seen["fig"]
    assert min(fig.get_size_inches()) * fig.dpi >= 300, "frames of at least 300 px"
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend == ["label", "prediction"]
    letters = {t.get_text() for t in fig.axes[0].texts}
    assert {"S", "I", "A", "P"} <= letters
    plt.close("all")


def test_animation_frames_are_light_jpeg():
    image, label, _ = _volume((40, 44, 12))
    html = plots.animate_slices(image, label, step=4)
    if "data:image/jpeg" not in html and "<video" not in html:
        pytest.fail("the JavaScript player should embed JPEG frames")
    plt.close("all")


def test_score_bars_write_their_values():
    fig, ax = plt.subplots(dpi=plots.FIG_DPI)
    plots.score_bars(ax, ["a", "b"], [0.8654, 0.9], reference=0.927, ylim=(0, 1))
    texts = _texts(fig)
    assert "0.865" in texts and "0.900" in texts
    assert any("0.927" in t for t in texts), texts
    plt.close(fig)
