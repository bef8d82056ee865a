"""Interactive notebook widgets (ipywidgets): a slice viewer, an augmentation explorer and a 3D
surface viewer.

Each widget draws its figure with matplotlib *off screen* and shows it as PNG bytes in an
``ipywidgets.Image``, so it works the same in JupyterLab, classic Notebook, VS Code and a
headless browser, and never depends on an interactive matplotlib backend. Without a live
kernel (a notebook read on GitHub) a widget shows nothing: the course always draws a static
figure of the same data just before it.

Works with ipywidgets 7.7+ and 8: Colab preinstalls 7.x and its front end has a history of not
rendering 8 (colabtools issues 3020, 4525), so the course keeps what Colab has, while Binder and
JupyterLab 4 use 8. Only widgets, traits and calls that both majors have are used (``Image``
with PNG bytes, sliders, ``Dropdown``, ``HBox``/``VBox``, ``Layout``, ``add_class``,
``observe``/``unobserve``), and ipywidgets is imported only when a widget is built.
``tests/test_widgets_versions.py`` runs the widget tests under both majors.

CSS classes, for tests and styling: the viewer's box is ``lasegtut-slice-viewer`` and its
picture ``lasegtut-slice-image``; its slider is a plain ``IntSlider`` described ``"slice"``.
The explorer's box is ``lasegtut-augment-explorer`` and its picture ``lasegtut-augment-image``;
the surface viewer's ``lasegtut-surface-viewer`` and ``lasegtut-surface-image``.

Arrays follow the library's convention: volumes ``(x, y, z)`` as loaded by
:func:`lasegtut.data.load_case`, spacing in mm; the explorer takes one 2D ``(x, y)`` slice as
stored in the preprocessing cache.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import anatomy, plots
from .augment import AugmentConfig, Augmenter
from .orientation import PLANES, SLICE_AXES, display_slice, fixed_axis, plane_name, slice_aspect, to_anatomical


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG bytes (Agg, no display needed)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def render_plane(image: np.ndarray, plane: str, index: int, label: np.ndarray | None = None,
                 pred: np.ndarray | None = None, spacing: Sequence[float] | None = None,
                 window: tuple[float, float] | None = None, size: float = 4.0, dpi: int = 80) -> bytes:
    """PNG bytes of one plane of a volume at voxel ``index`` along that plane's fixed axis, with
    label (orange) / prediction (teal) outlines and orientation letters. ``plane`` is ``"z"``,
    ``"y"`` or ``"x"`` (slices across that axis of the stored ``(x, y, z)`` arrays of an MSD heart
    scan, shown with :func:`lasegtut.orientation.display_slice`) or ``"axial"``, ``"coronal"``,
    ``"sagittal"`` (a true-RAS volume, see :func:`lasegtut.orientation.to_anatomical`)."""
    fig = Figure(figsize=(size, size), dpi=dpi)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
    if plane in PLANES:
        anatomy.draw_plane(ax, image, plane, index, label, pred, spacing, window, title=f"{plane} slice {index}")
    else:
        axis = SLICE_AXES[plane]
        lo, hi = window or plots.display_range(image)
        img, letters = display_slice(image, index, axis)
        plots.overlay(ax, np.clip(img, lo, hi),
                      None if label is None else display_slice(label, index, axis)[0],
                      None if pred is None else display_slice(pred, index, axis)[0],
                      title=f"{plane} = {index} ({plane_name(axis)})", aspect=slice_aspect(axis, spacing),
                      letters=letters)
    return figure_png(fig, dpi)


def slice_viewer(image: np.ndarray, label: np.ndarray | None = None, pred: np.ndarray | None = None,
                 spacing: Sequence[float] | None = None, *, anatomical: bool = False, size: float = 4.0):
    """An interactive viewer of an ``(x, y, z)`` volume as loaded by :func:`lasegtut.data.load_case`:
    a plane menu, an ``IntSlider`` (description ``"slice"``) and the slice as a PNG
    ``ipywidgets.Image`` with the label (orange) and prediction (teal, dashed) outlined.

    ``anatomical=False`` (default) browses the stored arrays across each array axis (``z``: the
    files' own slices, sagittal in the MSD heart scans), with orientation letters.
    ``anatomical=True`` first reorients an MSD heart volume to true RAS
    (:func:`lasegtut.orientation.to_anatomical`) and offers true axial / coronal / sagittal planes with
    direction letters. ``spacing`` (mm) keeps proportions true. Starts on the slice through the
    label's centre. Returns an ``ipywidgets.VBox``.
    """
    import ipywidgets as W

    if anatomical:
        (image, sp), label, pred = to_anatomical(image, spacing), *(
            None if a is None else to_anatomical(a)[0] for a in (label, pred))
        spacing = sp if spacing is not None else None
        box = anatomy.trim_box(image)
        image, label, pred = image[box], *(None if a is None else a[box] for a in (label, pred))
        planes, axis_of = PLANES, fixed_axis
    else:
        planes, axis_of = tuple(SLICE_AXES), SLICE_AXES.__getitem__
    window = plots.display_range(image)
    center = plots.la_center(label, image.shape)
    dropdown = W.Dropdown(options=planes, value=planes[0], description="plane")
    axis = axis_of(planes[0])
    slider = W.IntSlider(value=center[axis], min=0, max=image.shape[axis] - 1, step=1, description="slice",
                         continuous_update=True)
    picture = W.Image(format="png", layout=W.Layout(width=f"{int(size * 80)}px", height=f"{int(size * 80)}px"))
    picture.add_class("lasegtut-slice-image")

    def redraw(*_) -> None:
        picture.value = render_plane(image, dropdown.value, slider.value, label, pred, spacing, window, size)

    def change_plane(change) -> None:
        ax = axis_of(change["new"])
        slider.unobserve(redraw, names="value")
        slider.max = image.shape[ax] - 1
        slider.value = min(center[ax], slider.max)
        slider.observe(redraw, names="value")
        redraw()

    dropdown.observe(change_plane, names="value")
    slider.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([dropdown, slider]), picture])
    box.add_class("lasegtut-slice-viewer")
    return box


def augment_grid_png(image: np.ndarray, mask: np.ndarray, rotate: float, scale: float, elastic_alpha: float,
                     seed: int = 0, n: int = 5, dpi: int = 80, *, axis: int = 2) -> bytes:
    """PNG bytes of the original slice (a slice of a stack across array ``axis``, as
    :func:`lasegtut.plots.show_xy` takes it) and ``n`` augmentations with rotation up to
    +-``rotate`` degrees, zoom in ``1 +- scale`` and elastic alpha up to ``elastic_alpha`` px, all
    in the course's display convention with direction letters."""
    cfg = AugmentConfig(scale=(1 - scale, 1 + scale), rotate=(-rotate, rotate),
                        elastic_alpha=(0.0, elastic_alpha), elastic=elastic_alpha > 0)
    aug = Augmenter(cfg)
    ncols = 3
    nrows = -(-(n + 1) // ncols)
    fig = Figure(figsize=(1.9 * ncols, 1.9 * nrows + 0.2), dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    lo, hi = plots.display_range(image)
    plots.show_xy(axes[0, 0], image, mask, "original", vmin=lo, vmax=hi, axis=axis)
    for i, ax in enumerate(axes.ravel()[1:n + 1]):
        img, msk = aug(image, mask, seed=seed + i)
        plots.show_xy(ax, img, msk, f"seed {seed + i}", vmin=lo, vmax=hi, axis=axis)
    fig.tight_layout()
    return figure_png(fig, dpi)


def augment_explorer(image: np.ndarray, mask: np.ndarray, n: int = 5, *, axis: int = 2):
    """Sliders for the augmentation's rotation range (degrees), zoom range and elastic alpha (px),
    and a seed, showing the original slice (across array ``axis``, as
    :func:`lasegtut.plots.show_xy` takes it; the shipped model's: 0) and ``n`` augmented pairs with
    the mask outlined. The picture updates when a slider is released. Returns an ``ipywidgets.VBox``."""
    import ipywidgets as W

    style = {"description_width": "110px"}
    rotate = W.IntSlider(value=45, min=0, max=90, step=5, description="rotation (deg)",
                         continuous_update=False, style=style)
    scale = W.FloatSlider(value=0.15, min=0.0, max=0.4, step=0.05, description="zoom +-",
                          continuous_update=False, style=style)
    alpha = W.IntSlider(value=40, min=0, max=120, step=10, description="elastic alpha (px)",
                        continuous_update=False, style=style)
    seed = W.IntSlider(value=0, min=0, max=100, step=1, description="seed", continuous_update=False, style=style)
    picture = W.Image(format="png")
    picture.add_class("lasegtut-augment-image")

    def redraw(*_) -> None:
        picture.value = augment_grid_png(image, mask, rotate.value, scale.value, alpha.value, seed.value, n,
                                         axis=axis)

    for w in (rotate, scale, alpha, seed):
        w.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([W.VBox([rotate, scale]), W.VBox([alpha, seed])]), picture])
    box.add_class("lasegtut-augment-explorer")
    return box


def surface_viewer(scenes: dict, *, elev: float = 0.0, azim: float = -90.0, size: float = 3.0):
    """Turn 3D surfaces around: a scene menu, azimuth and elevation sliders (degrees) and the
    picture drawn by :func:`lasegtut.plots.surface_figure`.

    ``scenes`` maps a name (e.g. a case id) to that function's list of ``(title, vertices, faces,
    colour)`` panels, vertices in mm in RAS. The picture updates when a slider is released; it
    starts at ``elev``, ``azim`` (default: from behind). The box has the CSS class
    ``lasegtut-surface-viewer`` and its picture ``lasegtut-surface-image``. Returns an
    ``ipywidgets.VBox``.
    """
    import ipywidgets as W

    names = list(scenes)
    if not names:
        raise ValueError("surface_viewer needs at least one scene")
    scene = W.Dropdown(options=names, value=names[0], description="case")
    az = W.IntSlider(value=int(azim), min=-180, max=180, step=15, description="azimuth", continuous_update=False)
    el = W.IntSlider(value=int(elev), min=-90, max=90, step=15, description="elevation", continuous_update=False)
    picture = W.Image(format="png")
    picture.add_class("lasegtut-surface-image")

    def redraw(*_) -> None:
        fig = plots.surface_figure(scenes[scene.value], elev=el.value, azim=az.value, size=size, dpi=80)
        picture.value = figure_png(fig)

    for w in (scene, az, el):
        w.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([scene, az, el]), picture])
    box.add_class("lasegtut-surface-viewer")
    return box
