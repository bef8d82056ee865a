"""Repository hygiene: pins that agree across pyproject, conda and Binder, the README's badges,
the teacher notes that cover every notebook."""
from __future__ import annotations

import json
import re

import pytest

from conftest import NOTEBOOKS, REPO


def course_notebooks():
    return sorted(NOTEBOOKS.glob("0*.ipynb"))


def major_pins(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """{name: major version} for the first `name==X...`, `name=X.*`, `name>=X...` found for each name."""
    found = {}
    for name in names:
        m = re.search(rf"(?<![\w-]){re.escape(name)}\s*(?:==|=|>=|~=)\s*(\d+)", text)
        if m:
            found[name] = m.group(1)
    return found


def test_binder_and_conda_pins_match_pyproject():
    names = ("torch", "pytorch-lightning")
    py = major_pins((REPO / "pyproject.toml").read_text(), names)
    assert set(py) == set(names)
    env = (REPO / "environment.yml").read_text()
    conda = major_pins(env.replace("\"pytorch[version='", "torch"), names)  # conda-forge names torch "pytorch"
    for name in names:  # and the same lower bounds as the package metadata
        low = re.search(rf"\"{name}>=([\d.]+)", (REPO / "pyproject.toml").read_text()).group(1)
        assert re.search(rf"{'pytorch.version=.' if name == 'torch' else name}>={re.escape(low)},<", env), name
    binder = major_pins((REPO / "binder" / "requirements.txt").read_text() + "\n"
                        + (REPO / "binder" / "postBuild").read_text(), names)
    assert conda == py, f"environment.yml {conda} vs pyproject.toml {py}"
    assert binder == py, f"binder/ {binder} vs pyproject.toml {py}"
    # Binder: CPU wheels only, no pip cache, ffmpeg from apt, and the package itself installed
    post = (REPO / "binder" / "postBuild").read_text()
    assert "download.pytorch.org/whl/cpu" in post and "--no-cache-dir" in post and "-e ." in post
    assert "ffmpeg" in (REPO / "binder" / "apt.txt").read_text().split()
    reqs = [line.split("#")[0].strip() for line in (REPO / "binder" / "requirements.txt").read_text().splitlines()]
    assert not any(r.startswith(("torch", "pytorch-lightning", "nvidia")) for r in reqs), "torch from PyPI is the CUDA build"


def test_teaching_notes_cover_every_notebook():
    text = (REPO / "docs" / "teaching.md").read_text()
    for path in course_notebooks():
        assert path.name in text, f"docs/teaching.md does not mention {path.name}"
    for needle in ("lasegtut assignments build", "LASEG_PROFILE", "nbgrader", "Colab"):
        assert needle in text


def test_readme_badges():
    readme = REPO / "README.md"
    if not readme.exists():
        pytest.skip("README.md does not exist yet")
    text = readme.read_text()
    assert "https://mybinder.org/badge_logo.svg" in text
    assert "https://mybinder.org/v2/gh/lasegtut/lasegtut/main?urlpath=lab/tree/student)" in text
    assert "https://colab.research.google.com/assets/colab-badge.svg" in text
    assert "https://colab.research.google.com/github/lasegtut/lasegtut/blob/main/student/" in text
    # students meet the student edition: no badge or course-table link opens a teacher notebook
    assert "blob/main/notebooks/" not in text and "tree/notebooks" not in text
    assert not re.search(r"\]\(notebooks/\d\d_", text)


def _figures(text: str) -> set[float]:
    """Dice-like figures (0.xyz) and percentages (6.8%, 8.5-9%) found in a text."""
    dice = {float(m) for m in re.findall(r"(?<![\d.])0\.\d{3}(?!\d)", text)}
    percent = {float(m) for m in re.findall(r"(\d+(?:\.\d+)?)(?=%)", text)}
    return dice | percent


def test_readme_model_figures_come_from_the_model_card():
    """Results live in the model card; the README's summary of the models may only quote figures found there,
    so the two cannot drift apart."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The shipped model", 1)[1].split("\n## ", 1)[0]
    card = _figures((REPO / "lasegtut" / "weights" / "MODEL_CARD.md").read_text())
    quoted = _figures(section)
    assert {0.892, 0.9} <= quoted, "the README's model section no longer quotes the headline figures"
    assert quoted <= card, f"figures in the README but not in the model card: {sorted(quoted - card)}"


def _imported_modules(path) -> set[str]:
    """Absolute names of the lasegtut modules one source file imports (relative imports resolved)."""
    import ast
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return names


def test_the_pipeline_never_imports_the_classroom():
    """Two rooms: lasegtut/classroom/ (student copies, grading) reads the course; the pipeline
    (data ... volume, plots, widgets) never imports it. Only the command line dispatches to it."""
    pipeline = [p for p in (REPO / "lasegtut").glob("*.py") if p.name != "cli.py"]
    assert len(pipeline) > 20
    offenders = {p.name: sorted(n for n in _imported_modules(p) if n.startswith("lasegtut.classroom"))
                 for p in pipeline}
    assert not {k: v for k, v in offenders.items() if v}
    # the check sees a relative import of the classroom (it is not vacuous)
    assert "lasegtut.classroom.grading" in _imported_modules(REPO / "lasegtut" / "cli.py")


def test_binder_culls_idle_kernels():
    """Kernels left open on Binder (2 GB a session) are culled when idle; the settings are valid JSON."""
    import json
    post = (REPO / "binder" / "postBuild").read_text()
    body = post.split("<<'JSON'\n", 1)[1].split("\nJSON\n", 1)[0]
    mkm = json.loads(body)["MappingKernelManager"]
    assert 0 < mkm["cull_idle_timeout"] <= 1800 and mkm["cull_connected"] is True and mkm["cull_busy"] is False
    assert "jupyter_server_config.json" in post


def test_the_glossary_defines_the_course_words():
    text = (REPO / "docs" / "glossary.md").read_text()
    for term in ("RAS / LPS", "Array axis vs anatomical plane", "Slice vs section", "Dice", "IoU", "HD95",
                 "ASSD", "NSD", "LAVI", "BSA", "2.5D input", "TTA", "Display convention"):
        assert f"**{term}" in text, term


def test_saved_notebooks_hold_no_machine_paths():
    """A saved output must not show where the authors' machine keeps things (a warning printed by a
    library inside a virtual environment, a temporary folder): both editions."""
    folders = ("tmp", "home", "root", "work")  # written apart, so this test does not contain the paths it looks for
    leaks = re.compile("site-packages|" + "|".join(f"/{f}/" for f in folders) + r"|[A-Z]:\\\\Users")
    for folder in ("notebooks", "student"):
        for path in sorted((REPO / folder).glob("*.ipynb")):
            nb = json.loads(path.read_text(encoding="utf-8"))
            for i, cell in enumerate(nb["cells"]):
                for out in cell.get("outputs", []):
                    text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
                    m = leaks.search(text)
                    assert not m, f"{folder}/{path.name} cell {i}: an output shows a machine path ({m.group(0)!r})"
