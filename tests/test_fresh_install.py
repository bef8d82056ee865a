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


def test_notebook_06_grades_right_under_the_default_limits(tmp_path):
    """06 is the notebook the CUDA build broke under the old cap (la_009 refused as 'too large for this machine's
    memory', so a correct answer was graded error and a blank copy error, not missing). Solved: correct (written
    answers: answered); blank: missing; and no lesson cell failed. With the default memory cap (RunLimits' 4 GiB)."""
    import csv

    from conftest import NOTEBOOKS
    from lasegtut.classroom.assignments import build_student_notebooks
    from lasegtut.classroom.exercises import load_teacher_notebooks
    from lasegtut.classroom.grading import grade_class

    name = "06_evaluation.ipynb"
    copies = tmp_path / "copies"
    build_student_notebooks(NOTEBOOKS, copies)
    subs = tmp_path / "subs"
    for student, src in (("solved", NOTEBOOKS / name), ("blank", copies / name)):
        (subs / student).mkdir(parents=True)
        (subs / student / name).write_bytes(src.read_bytes())
    limits = RunLimits(cell_timeout=600, total_timeout=1200)
    assert limits.memory_bytes == RunLimits().memory_bytes  # the default cap
    grade_class(subs, tmp_path / "out", source=NOTEBOOKS, notebooks=[name], limits=limits, jobs=2, progress=False)
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = {(r["student"], r["exercise"]): r["status"] for r in csv.DictReader(f)}
    teacher = next(t for t in load_teacher_notebooks(NOTEBOOKS) if t.name == name)
    expected = {(s, e.name): status for e in teacher.exercises for s, status in (("solved", "correct"), ("blank", "missing"))}
    # the written answers (predictions, judgements, questions): there in the teacher's copy, not in the blank one
    expected.update({(s, w.name): status for w in teacher.written for s, status in (("solved", "answered"), ("blank", "missing"))})
    assert rows == expected
    for student in ("solved", "blank"):
        assert "## Notes" not in (tmp_path / "out" / "feedback" / f"{student}.md").read_text()
