"""The notebooks' skeleton helpers: light on memory (no torch, Lightning or imgaug unless used), yet
seeding everything and printing the versions that matter."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from conftest import REPO

HEAVY = ("torch", "pytorch_lightning", "lightning", "imgaug", "cv2")


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (this checkout first on the path, no ``LASEG_*``); its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASEG_")}  # the defaults
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def notebook_imports(path) -> list[str]:
    """Every module a notebook's code cells import (``import a.b``, ``from a.b import c``: a.b and a.b.c)."""
    import ast
    import json

    mods: set[str] = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(line for line in "".join(cell["source"]).splitlines()
                        if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return sorted(mods)


@pytest.mark.parametrize("name", ["01_anatomy", "02_data_exploration", "03_preprocessing"])  # 04 runs the model (exercise 2)
def test_notebooks_without_a_model_never_load_torch(name):
    """torch and Lightning cost a kernel about 300 MiB, and Binder gives a whole session 2 GB: the
    notebooks that run no network import nothing that loads them (notebook 04 once did, to read
    one constant from lasegtut.training)."""
    mods = notebook_imports(REPO / "notebooks" / f"{name}.ipynb")
    assert any(m.startswith("lasegtut") for m in mods)
    out = run_python(f"""
        import importlib, sys
        for m in {mods!r}:
            try:
                importlib.import_module(m)
            except ImportError:  # a name imported from a module, or google.colab
                pass
        print(sorted(m for m in ("torch", "pytorch_lightning", "lightning") if m in sys.modules))
    """)
    assert out.strip() == "[]", f"{name} loads {out.strip()}"


def test_skeleton_loads_no_heavy_package():
    """print_versions + notebook_config, as every notebook's first cells call them, on a machine
    without a GPU driver: nothing heavy is imported, and the versions are still printed."""
    out = run_python(f"""
        import sys
        import lasegtut.course as course
        course._gpu_possible = lambda: False   # as on Binder / CI, whatever this machine has
        course.print_versions()
        cfg = course.notebook_config(seed=3)
        print("profile", cfg.profile, "device", course.device())
        print("loaded", sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert "loaded []" in out, out
    assert "profile ci device cpu" in out
    assert f"torch {metadata.version('torch')}" in out
    assert f"lightning {metadata.version('pytorch-lightning')}" in out
    assert "device: cpu" in out


def test_versions_of_imported_modules_are_their_own():
    from lasegtut.course import package_version

    import numpy

    assert package_version("numpy", "numpy") == numpy.__version__
    assert package_version("surely_not_a_module_xyz", "surely-not-a-distribution-xyz") == "not installed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the device-file check is Linux's")
def test_gpu_driver_files_decide_whether_torch_is_asked(monkeypatch, tmp_path):
    import lasegtut.course as course

    monkeypatch.setattr(course, "GPU_DEVICE_FILES", (str(tmp_path / "nvidiactl"),))
    assert course._gpu_possible() is False
    (tmp_path / "nvidiactl").touch()
    assert course._gpu_possible() is True


def test_torch_and_imgaug_imported_later_are_seeded():
    """notebook_config before torch / imgaug are imported seeds them on their first import."""
    out = run_python("""
        import sys
        from lasegtut.course import notebook_config
        notebook_config(seed=7)
        assert "torch" not in sys.modules and "imgaug" not in sys.modules
        import torch
        a = torch.rand(4).tolist()
        torch.manual_seed(7)
        assert a == torch.rand(4).tolist(), "torch not seeded on import"
        from lasegtut.imgaug_compat import ia
        b = ia.random.get_global_rng().integers(0, 10**9, size=4).tolist()
        ia.seed(7)
        assert b == ia.random.get_global_rng().integers(0, 10**9, size=4).tolist(), "imgaug not seeded on import"
        assert not any(type(f).__name__ == "_SeedOnImport" for f in sys.meta_path), "hook left behind"
        import numpy as np
        c = np.random.rand()
        np.random.seed(7)
        assert c == np.random.rand(), "seeding imgaug on import moved NumPy's stream"
        print("ok")
    """)
    assert out.strip().endswith("ok")


def test_torch_and_imgaug_imported_first_are_seeded():
    """Notebooks 04-07 import them before the configuration cell: seeded there and then."""
    out = run_python("""
        import random, sys
        import numpy as np
        import torch
        from lasegtut.imgaug_compat import ia
        from lasegtut.course import notebook_config
        notebook_config(seed=11)
        a, b = torch.rand(3).tolist(), ia.random.get_global_rng().integers(0, 10**9, size=3).tolist()
        c, d = np.random.rand(), random.random()
        torch.manual_seed(11); ia.seed(11); np.random.seed(11); random.seed(11)
        assert a == torch.rand(3).tolist() and b == ia.random.get_global_rng().integers(0, 10**9, size=3).tolist()
        assert c == np.random.rand() and d == random.random()
        assert not any(type(f).__name__ == "_SeedOnImport" for f in sys.meta_path)
        print("ok")
    """)
    assert out.strip().endswith("ok")


# --- the notebooks' shared cells -------------------------------------------------------------

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_has_the_setup_and_shutdown_cells(notebook, tmp_path):
    """Every notebook holds SETUP_CELL word for word and ends with SHUTDOWN_CELL (one source for
    seven copies: ``python -m lasegtut.course`` writes them)."""
    import json
    import shutil

    from lasegtut.course import SHUTDOWN_CELL, write_skeleton_cells

    copy = shutil.copy(notebook, tmp_path / notebook.name)
    assert not write_skeleton_cells(copy), f"{notebook.name} differs: run `python -m lasegtut.course`"
    last = json.loads(notebook.read_text(encoding="utf-8"))["cells"][-1]
    assert last["cell_type"] == "markdown" and "".join(last["source"]) == SHUTDOWN_CELL


def test_skeleton_writer_reports_a_bad_notebook_in_one_line(tmp_path):
    bad = tmp_path / "x.ipynb"
    bad.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    out = subprocess.run([sys.executable, "-m", "lasegtut.course", str(bad), str(tmp_path / "missing.ipynb")],
                         capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "lasegtut.course: " + str(bad) + ": x.ipynb: expected one setup cell " \
        "('# Setup: on Google Colab ...'), found 0"


# --- the setup cell on a (simulated) Colab ----------------------------------------------------

FAKE_PIP = """\
import pathlib, sys
here = pathlib.Path(__file__).parent
with open(here / "pip_calls", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
if (here / "pip_fail").exists():
    sys.exit("simulated interruption")
old = here / "site" / "fakedist_mod-1.0.dist-info"
if (here / "pip_bumps").exists() and old.exists():
    (old / "METADATA").write_text("Metadata-Version: 2.1\\nName: fakedist-mod\\nVersion: 2.0\\n")
    old.rename(old.with_name("fakedist_mod-2.0.dist-info"))
"""


@pytest.fixture
def colab(tmp_path):
    """A fake Colab: an origin repository to clone, a fake pip, and a runner for the setup cell
    with /content, the course's URL and pip replaced by those."""
    import shutil

    from lasegtut.course import SETUP_CELL

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    origin = tmp_path / "origin"
    (origin / "notebooks").mkdir(parents=True)
    (origin / "notebooks" / "README").write_text("course notebooks\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "course"], check=True)
    (tmp_path / "pip.py").write_text(FAKE_PIP)
    site = tmp_path / "site"
    (site / "fakedist_mod-1.0.dist-info").mkdir(parents=True)
    (site / "fakedist_mod.py").write_text("")
    (site / "fakedist_mod-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedist-mod\nVersion: 1.0\n")
    (site / "fakedist_mod-1.0.dist-info" / "top_level.txt").write_text("fakedist_mod\n")
    course = tmp_path / "content" / "lasegtut"
    course.parent.mkdir()

    def cell(url: str) -> str:
        src = SETUP_CELL
        for old, new in (('"/content/lasegtut"', repr(str(course))),
                         ('"https://github.com/lasegtut/lasegtut"', repr(url)),
                         ('sys.executable, "-m", "pip", "install", "-q", "-e", COURSE',
                          f'sys.executable, {str(tmp_path / "pip.py")!r}, "install", "-e", COURSE')):
            assert src.count(old) == 1, f"the setup cell no longer holds {old}: update this test"
            src = src.replace(old, new)
        return src

    def run(url: str = origin.as_uri()) -> subprocess.CompletedProcess:
        code = ("import sys, types, os\n"
                "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                f"sys.path.insert(0, {str(site)!r})\n"
                "import fakedist_mod\n"
                f"exec(compile({cell(url)!r}, 'setup cell', 'exec'))\n"
                "print('cwd', os.getcwd())\n")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)

    run.course, run.root = course, tmp_path
    return run


def pip_calls(root) -> int:
    calls = root / "pip_calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_setup_cell_retries_an_interrupted_install(colab):
    (colab.root / "pip_fail").touch()
    first = colab()
    assert first.returncode != 0 and "setup: install failed; run this cell again to retry." in first.stderr
    assert "simulated interruption" in first.stderr and "Traceback" not in first.stderr
    assert (colab.course / "notebooks").is_dir() and not (colab.course / ".installed").exists()

    (colab.root / "pip_fail").unlink()
    second = colab()
    assert second.returncode == 0, second.stderr
    assert "installed; no restart needed." in second.stdout
    assert second.stdout.strip().endswith(f"cwd {colab.course / 'notebooks'}")
    assert pip_calls(colab.root) == 2 and (colab.course / ".installed").exists()

    third = colab()  # nothing left to do
    assert third.returncode == 0 and "installing" not in third.stdout and "downloading" not in third.stdout
    assert pip_calls(colab.root) == 2


def test_setup_cell_retries_an_interrupted_download(colab):
    failed = colab(url=(colab.root / "no-such-repo").as_uri())
    assert failed.returncode != 0 and "setup: download failed; run this cell again to retry." in failed.stderr
    assert not colab.course.exists() and pip_calls(colab.root) == 0
    (colab.course.parent / "lasegtut.part" / "junk").mkdir(parents=True)  # left by an interrupted clone
    ok = colab()
    assert ok.returncode == 0, ok.stderr
    assert (colab.course / "notebooks" / "README").is_file() and not (colab.course.parent / "lasegtut.part").exists()


def test_setup_cell_says_when_a_restart_is_needed(colab):
    (colab.root / "pip_bumps").touch()  # pip replaces a package the session has imported
    out = colab()
    assert out.returncode == 0, out.stderr
    assert "RESTART NEEDED: pip replaced fakedist-mod 1.0 -> 2.0, already imported here." in out.stdout
    assert "no restart needed" not in out.stdout


# --- memory handed back after each cell -------------------------------------------------------

def test_release_memory_after_each_cell_registers_once(monkeypatch):
    import IPython
    from IPython.core.events import EventManager, available_events

    import lasegtut.course as course

    class Shell:
        pass

    shell = Shell()
    shell.events = EventManager(shell, available_events)
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    calls = []
    monkeypatch.setattr(course, "release_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(course, "_malloc_trim", lambda: (lambda n: 0))
    assert course.release_memory_after_each_cell() and course.release_memory_after_each_cell()
    course.notebook_config(seed=1)
    assert shell.events.callbacks["post_run_cell"].count(course._after_cell) == 1
    shell.events.trigger("post_run_cell", None)
    assert calls == [1]


def test_release_memory_outside_a_kernel_does_nothing_harmful():
    import lasegtut.course as course

    assert course.release_memory_after_each_cell() is False  # plain pytest: no IPython shell
    assert course.release_memory() is (course._malloc_trim() is not None)  # True on glibc Linux
