"""lasegtut.recipe: the shipped model's recipe, read from its weights file without torch (notebooks
03 and 04), the same as what the weights loader reads; notebook 03's words on the ``ci`` profile
match the profile."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lasegtut import augment, recipe
from lasegtut.errors import LasegError

ROOT = Path(__file__).resolve().parents[1]


def test_the_recipe_is_the_weights_files_geometry():
    from lasegtut.paths import SHIPPED_WEIGHTS
    from lasegtut.weightsfile import load_weights

    _, info = load_weights(SHIPPED_WEIGHTS)
    r = recipe.shipped_recipe()
    assert r.geometry == info.geometry
    assert r.meta == info.meta
    assert r.augmentation is augment.RECIPE_AUGMENTATION
    text = recipe.describe(r)
    g = r.geometry
    assert f"{g.window_size} x {g.window_size}" in text and f"array axis {g.slice_axis}" in text
    assert f"{g.channels} x {g.input_size} x {g.input_size}" in text


def test_reading_the_recipe_imports_no_torch():
    code = ("import sys; from lasegtut import recipe; print(recipe.describe()); "
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]"), out


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"format": "x", "payload": Evil()}))
    with pytest.raises(LasegError, match="not a readable lasegtut weights file"):
        recipe.read_header(path)
    (tmp_path / "plain.pt").write_text("not a zip")
    with pytest.raises(LasegError):
        recipe.read_header(tmp_path / "plain.pt")


def test_notebook_03_says_how_the_ci_profile_differs():
    """The one place the course describes the ``ci`` profile (notebook 03) says what the profile is."""
    pytest.importorskip("pytorch_lightning")
    from lasegtut.training import PROFILES

    ci = PROFILES["ci"]
    nb = json.loads((ROOT / "notebooks" / "03_preprocessing.ipynb").read_text())
    text = "".join(next(c for c in nb["cells"] if c.get("id") == "recipe-ci")["source"])
    crop = 320 - 2 * ci.border
    assert f"{crop} × {crop} crop ({ci.border} voxels per side) shrunk to {ci.size} × {ci.size}" in text
    assert f"across array axis {ci.slice_axis}" in text and ci.slice_axis == 2
    assert f"{2 * ci.context + 1} channels" in text and f"{ci.context_stride} slices away" in text
    assert ci.augment_config is None and "without gamma" in text
    assert f"{ci.epochs} short epochs" in text
