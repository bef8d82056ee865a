"""What a new user's plain `pip install` gives must work: whichever torch build pip chose (on Linux
the CUDA build, several GB of libraries that reserve far more virtual memory than they use).

`.ci/run` runs this file a second time in a fresh venv where pip chose torch itself (the CUDA
build), beside the slow course-grading test; in the main run it checks the CPU build the same way.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import lasegtut
from lasegtut.classroom.kernel_run import RunLimits, run_cells


def test_every_module_imports_with_the_installed_torch():
    names = sorted(m.name for m in pkgutil.walk_packages(lasegtut.__path__, "lasegtut.")
                   if not m.name.endswith("__main__"))
    assert "lasegtut.training" in names and "lasegtut.classroom.grading" in names
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_graded_kernel_uses_torch_under_the_default_memory_cap(tmp_path):
    """The grader's default limits must let a kernel import torch and Lightning and compute: with a
    cap on virtual memory (RLIMIT_AS) the CUDA build's import failed ('can't allocate memory')."""
    cells = ["import torch, pytorch_lightning\nx = torch.ones(256, 256)\ny = float((x @ x).sum())",
             "assert y == 256.0 ** 3, y\nprint(torch.__version__, torch.version.cuda)"]
    report = run_cells(cells, tmp_path / "scratch", RunLimits(cell_timeout=240, total_timeout=400))
    assert [c.status for c in report.cells] == ["ok", "ok"], [(c.ename, c.evalue[:300]) for c in report.cells]
    assert torch_version() in report.cells[1].output


def torch_version() -> str:
    import torch
    return torch.__version__
