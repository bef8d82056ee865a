"""One display convention on every figure of a slice (lasegtut.orientation.DISPLAY_CONVENTION).

Axial and coronal views are radiological (the patient's right on the viewer's left), axial with
anterior up, coronal and sagittal with superior up, sagittal with anterior on the viewer's left.
A synthetic scan carries a bright marker at the patient's right / superior / anterior corner:
in each of the three conventions that corner is the top-left one of the screen. Every figure
helper that shows a slice is called on it, and the test looks at what was drawn: where the marker
lies in the image as matplotlib places it (the image array with its origin and extent, through
the axes' transforms) and where the direction letters are (``ax.texts``). A helper that draws R
to the right of L, S below I or anterior on the right of a sagittal view fails here.
"""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage
from matplotlib.text import Text

from lasegtut import anatomy, orientation, plots, preprocess, widgets
from lasegtut.orientation import MSD_HEART_AXCODES

SHAPE = (30, 32, 34)          # (x, y, z) of the synthetic MSD-layout scan: axes point A, S, R
#: the marker: 4 voxels from the high end of every axis (anterior, superior, right), inside a crop of 2
MARK = [slice(n - 8, n - 4) for n in SHAPE]
K = [n - 6 for n in SHAPE]    # the slice through the marker across each axis
BORDER = 2
#: For each set of in-plane direction families, the letters wanted (top, left).
WANTED = {frozenset("RLSI"): ("S", "R"), frozenset("RLAP"): ("A", "R"), frozenset("APSI"): ("S", "A")}


def _scan(axcodes=MSD_HEART_AXCODES, shape=SHAPE):
    """A scan whose array axes point along ``axcodes``, with a bright marker at the patient's
    right / superior / anterior corner, a dim box 'atrium' in the middle (label) and a prediction."""
    image = np.full(shape, 100.0, np.float32)
    image[tuple(slice(n - 8, n - 4) if c in "RAS" else slice(4, 8) for c, n in zip(axcodes, shape))] = 1000.0
    label = np.zeros(shape, np.uint8)
    label[tuple(slice(n // 2 - 4, n // 2 + 4) for n in shape)] = 1
    image[label > 0] = 300.0
    return image, label, label.copy()


def _axes_xy(ax, display_xy):
    return ax.transAxes.inverted().transform(display_xy)


def _marker_position(ax, im: AxesImage):
    """Where the marker (the brightest pixels) is drawn, in axes coordinates (0..1, y up)."""
    arr = np.ma.getdata(im.get_array()).astype(float)
    rows, cols = np.nonzero(arr >= arr.max() * 0.9)
    h, w = arr.shape[:2]
    left, right, bottom, top = im.get_extent()
    x = left + (cols.mean() + 0.5) * (right - left) / w
    if im.origin == "upper":
        y = top + (rows.mean() + 0.5) * (bottom - top) / h
    else:
        y = bottom + (rows.mean() + 0.5) * (top - bottom) / h
    return _axes_xy(ax, ax.transData.transform((x, y)))


def _letters(ax, texts=None) -> dict[str, np.ndarray]:
    """The single-letter direction labels of a panel and their positions (axes coordinates)."""
    out = {}
    for t in (ax.texts if texts is None else texts):
        if isinstance(t, Text) and t.get_text() in tuple("RLAPSI") and t.get_visible():
            out[t.get_text()] = _axes_xy(ax, t.get_transform().transform(t.get_position()))
    return out


def check_panel(ax, im: AxesImage | None = None, texts=None, *, marker: bool = True, letters: bool = True,
                where: str = "") -> None:
    """Assert that a panel follows the convention: the marker top-left, and its letters placed
    as :data:`WANTED` says (R left of L, S above I, A above P on axial and left of P on sagittal)."""
    im = im if im is not None else ax.images[0]
    ax.figure.canvas.draw()
    if marker:
        x, y = _marker_position(ax, im)
        assert x < 0.5 and y > 0.5, f"{where}: the right/superior/anterior corner is drawn at ({x:.2f}, {y:.2f})"
    found = _letters(ax, texts)
    if not letters:
        assert not found, f"{where}: letters {sorted(found)} on a panel meant to have none"
        return
    assert len(found) == 4, f"{where}: letters {sorted(found)}"
    top, left = WANTED[frozenset(found)]
    bottom, right = orientation._OPPOSITE[top], orientation._OPPOSITE[left]
    assert found[top][1] > found[bottom][1], f"{where}: {top} is drawn below {bottom}"
    assert found[left][0] < found[right][0], f"{where}: {left} is drawn right of {right}"
    assert found[top][1] > 0.8 and found[left][0] < 0.2, f"{where}: letters not at the edges {found}"


# ----------------------------------------------------------------------------- the one place
@pytest.mark.parametrize("axcodes", ["".join(p) for p in itertools.permutations("RAS")] + ["LPI", "PIL", "SLA"])
def test_display_slice_puts_the_right_superior_anterior_corner_top_left(axcodes):
    """For any orientation of the array, every slice through the marker shows it top-left, and
    the letters are those of the plane: (S, I, R, L) coronal, (A, P, R, L) axial, (S, I, A, P)
    sagittal. Network input (a stack of reslices) is laid out the same way."""
    image, _, _ = _scan(tuple(axcodes))
    corner = [n - 6 if c in "RAS" else 5 for c, n in zip(axcodes, image.shape)]
    stack_files = preprocess.file_slices(image)
    for axis in range(3):
        img, letters = orientation.display_slice(image, corner[axis], axis, tuple(axcodes))
        rows, cols = np.nonzero(img == img.max())
        assert rows.mean() < img.shape[0] / 2 and cols.mean() < img.shape[1] / 2, (axcodes, axis)
        plane = orientation.plane_name(axis, tuple(axcodes))
        assert letters == orientation.PLANE_LETTERS[plane]
        net, net_letters = orientation.display_2d(preprocess.reslice(stack_files, axis)[corner[axis]], axis,
                                                  tuple(axcodes))
        rows, cols = np.nonzero(net == net.max())
        assert rows.mean() < net.shape[0] / 2 and cols.mean() < net.shape[1] / 2 and net_letters == letters


def test_the_convention_is_declared_once():
    assert orientation.DISPLAY_CONVENTION == {"axial": ("A", "R"), "coronal": ("S", "R"), "sagittal": ("S", "A")}
    assert orientation.slice_letters(0) == ("S", "I", "R", "L")   # the shipped model's slices: coronal
    assert orientation.slice_letters(1) == ("A", "P", "R", "L")   # axial
    assert orientation.slice_letters(2) == ("S", "I", "A", "P")   # the files' own slices: sagittal
    vol = np.random.default_rng(0).random((5, 6, 7))
    for plane in orientation.PLANES:   # the true planes of a RAS volume go through the same place
        assert np.array_equal(orientation.plane_slice(vol, plane, 2),
                              orientation.display_slice(vol, 2, orientation.fixed_axis(plane), "RAS")[0])


def test_display_is_a_view_the_data_are_not_flipped():
    image, _, _ = _scan()
    before = image.copy()
    orientation.display_slice(image, K[0], 0)
    orientation.display_2d(preprocess.file_slices(image)[K[2]], 2)
    assert np.array_equal(image, before)


# ----------------------------------------------------------------------------- every figure helper
def _figures():
    """(name, figure) of every helper of lasegtut.plots and lasegtut.anatomy that shows a slice."""
    image, label, pred = _scan()
    spacing = (1.25, 1.25, 1.37)
    out = []
    for axis in range(3):
        stack = preprocess.reslice(preprocess.file_slices(image), axis)
        masks = preprocess.reslice(preprocess.file_slices(label), axis)
        k = K[axis]
        out += [(f"compare_slices axis {axis}", plots.compare_slices(image, label, pred, [k], axis=axis,
                                                                     spacing=spacing)),
                (f"compare_labels axis {axis}", plots.compare_labels(image, label, pred, k=k, axis=axis,
                                                                     spacing=spacing)),
                (f"crop_figure axis {axis}", plots.crop_figure(image, label, k, border=BORDER, axis=axis)),
                (f"slice_strip axis {axis}", plots.slice_strip(stack, masks, [k], axis=axis)),
                (f"augmentation_grid axis {axis}", plots.augmentation_grid(stack[k], masks[k],
                                                                           [(stack[k], masks[k])], axis=axis)),
                (f"alignment_figure axis {axis}",
                 plots.alignment_figure(stack[k] / stack[k].max(), (stack[k] > 500).astype(np.uint8), axis=axis,
                                        margin=100))]
        fig, ax = plt.subplots()
        plots.show_xy(ax, stack[k], masks[k], axis=axis)
        out.append((f"show_xy axis {axis}", fig))
    ras, ras_spacing = orientation.to_anatomical(image, spacing)
    ras_label = orientation.to_anatomical(label)[0]
    centre = [n - 6 for n in ras.shape]
    out.append(("anatomy.three_planes", anatomy.three_planes(ras, ras_label, ras_spacing, center=centre)))
    for plane in orientation.PLANES:
        fig, ax = plt.subplots()
        anatomy.draw_plane(ax, ras, plane, centre[orientation.fixed_axis(plane)], ras_label, spacing=ras_spacing)
        out.append((f"anatomy.draw_plane {plane}", fig))
    return out


def test_every_figure_helper_follows_the_convention():
    try:
        for name, fig in _figures():
            for n, ax in enumerate(a for a in fig.axes if a.images):
                marker = not name.startswith("alignment_figure") or n == 0   # its 2nd panel: a difference map
                check_panel(ax, marker=marker, where=f"{name}, panel {n}")
    finally:
        plt.close("all")


def test_every_animation_frame_follows_the_convention(monkeypatch):
    image, label, pred = _scan()
    frames = {}

    def capture(anim):
        frames["data"] = anim._framedata
        anim._draw_was_started = True  # not rendered: only the frames' artists are inspected
        return ""

    monkeypatch.setattr(plots, "animation_html", capture)
    try:
        for axis in range(3):
            plots.animate_slices(image, label, pred, axis=axis, step=1)
            shown = 0
            for k, artists in enumerate(frames["data"]):
                ims = [a for a in artists if isinstance(a, AxesImage)]
                texts = [a for a in artists if isinstance(a, Text)]
                ax = ims[0].axes
                for a in ax.texts:   # celluloid keeps every frame's artists: look at this frame's only
                    a.set_visible(a in texts)
                has_marker = MARK[axis].start <= k < MARK[axis].stop
                check_panel(ax, ims[0], texts, marker=has_marker, where=f"animate_slices axis {axis} frame {k}")
                shown += has_marker
            assert shown == MARK[axis].stop - MARK[axis].start
    finally:
        plt.close("all")


def test_widgets_follow_the_convention(monkeypatch):
    """The slice viewer's picture (stored axes and true planes) and the augmentation explorer's."""
    image, label, pred = _scan()
    figs = []
    monkeypatch.setattr(widgets, "figure_png", lambda fig, dpi=80: figs.append(fig) or b"")
    for plane in ("z", "y", "x"):
        widgets.render_plane(image, plane, K[orientation.SLICE_AXES[plane]], label, pred, spacing=(1.25, 1.25, 1.37))
    ras = orientation.to_anatomical(image)[0]
    for plane in orientation.PLANES:
        widgets.render_plane(ras, plane, ras.shape[orientation.fixed_axis(plane)] - 6)
    stack = preprocess.file_slices(image)
    for axis in (2, 0):
        st, k = preprocess.reslice(stack, axis), K[axis]
        widgets.augment_grid_png(st[k], (st[k] > 500).astype(np.uint8), 0, 0.0, 0, n=2, axis=axis)
    for n, fig in enumerate(figs):
        for m, ax in enumerate(a for a in fig.axes if a.images):
            check_panel(ax, where=f"widget figure {n}, panel {m}")


def test_the_plane_quiz_is_letter_free_but_in_the_convention():
    """01 exercise 2 asks the student to find the planes: no letters, the same layout."""
    image, _, _ = _scan()
    fig = anatomy.plane_quiz(image, (1.25, 1.25, 1.37), centre=K)
    try:
        panels = [a for a in fig.axes if a.images]
        assert [a.get_title() for a in panels] == ["panel A", "panel B", "panel C"]
        for n, ax in enumerate(panels):
            check_panel(ax, letters=False, where=f"plane_quiz panel {n}")
    finally:
        plt.close("all")


@pytest.mark.parametrize("elev, azim, left, right", [(0, -90, "L", "R"), (0, 90, "R", "L"), (0, 0, "P", "A")])
def test_3d_views_carry_the_directions_of_their_viewpoint(elev, azim, left, right):
    """A 3D surface is seen from a chosen side (from behind by default: the patient's right on the
    right); its letters name that side's directions, and a point at high x (the patient's right)
    is drawn on the side the letters say."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from mpl_toolkits.mplot3d import proj3d

    verts = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], float)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    fig = plots.surface_figure([("t", verts, faces, None)], elev=elev, azim=azim)
    ax = fig.axes[0]
    FigureCanvasAgg(fig).draw()
    found = {t.get_text(): t.get_position() for t in ax.texts if t.get_text() in tuple("RLAPSI")}
    assert found[left][0] < 0.5 < found[right][0] and found["S"][1] > found["I"][1]
    if "R" in found:
        (xr, _, _), (xl, _, _) = (proj3d.proj_transform(*p, ax.get_proj()) for p in ([10, 0, 0], [0, 0, 0]))
        assert (xr > xl) == (found["R"][0] > 0.5)
