"""The student edition (`student/`): what the badges open, generated from the teacher edition (`notebooks/`).

Kept in step (a rebuild must give the committed files byte for byte, the way fastbook keeps its `clean/`
copies); every answer of the teacher edition appears only inside a collapsed model-answer cell; lesson cells
keep their figures, exercise cells none; and run top to bottom, only the exercises and their checks fail.
"""
from __future__ import annotations

import json

import pytest

from conftest import NOTEBOOKS, REPO
from lasegtut.classroom.assignments import ANSWER_SUMMARY, BEGIN_SOLUTION, build_student_notebooks
from lasegtut.paths import STUDENT_NOTEBOOKS

STUDENT = REPO / "student"
REBUILD = "lasegtut assignments build student --self-study --force"


def src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def is_answer(cell: dict) -> bool:
    return "model-answer" in cell.get("metadata", {}).get("tags", [])


def test_the_student_edition_is_in_step_with_the_teacher_edition(tmp_path):
    assert STUDENT_NOTEBOOKS == STUDENT
    built = build_student_notebooks(NOTEBOOKS, tmp_path, self_study=True)
    committed = sorted(p.name for p in STUDENT.glob("*.ipynb"))
    assert committed == sorted(p.name for p in built), f"student/ lists other notebooks: run `{REBUILD}`"
    stale = [p.name for p in built if p.read_bytes() != (STUDENT / p.name).read_bytes()]
    assert not stale, f"student/ is out of date for {stale}: run `{REBUILD}`"


def test_answers_only_collapsed_and_lessons_keep_their_figures():
    for teacher_path in sorted(NOTEBOOKS.glob("0*.ipynb")):
        teacher = json.loads(teacher_path.read_text())
        student = json.loads((STUDENT / teacher_path.name).read_text())
        answers = [c for c in student["cells"] if is_answer(c)]
        n_solutions = sum(BEGIN_SOLUTION in src(c) for c in teacher["cells"])
        assert len(answers) == n_solutions >= 2, teacher_path.name
        assert len(student["cells"]) == len(teacher["cells"]) + n_solutions
        for a in answers:
            text = src(a)
            assert a["cell_type"] == "markdown" and text.startswith("<details>\n<summary>" + ANSWER_SUMMARY)
            assert text.rstrip().endswith("</details>") and "<details open" not in text
        # every solution line of the teacher edition appears in the student edition only inside an answer
        elsewhere = "\n".join(src(c) + json.dumps(c.get("outputs", [])) for c in student["cells"] if not is_answer(c))
        inside = False
        for cell in teacher["cells"]:
            for line in src(cell).splitlines():
                m = line.strip()
                if m == BEGIN_SOLUTION:
                    inside = True
                elif m == "### END SOLUTION":
                    inside = False
                elif inside and len(m) >= (12 if cell["cell_type"] == "code" else 40) and not m.startswith("#"):
                    assert m not in elsewhere, f"{teacher_path.name}: an answer shows outside its collapsed cell: {m!r}"
        first_exercise = next(i for i, c in enumerate(student["cells"])
                              if "YOUR CODE HERE" in src(c) or "YOUR ANSWER HERE" in src(c))
        lesson, rest = student["cells"][:first_exercise], student["cells"][first_exercise:]
        images = sum("image/png" in o.get("data", {}) for c in lesson for o in c.get("outputs", []))
        assert images >= 1 or teacher_path.name.startswith("05"), f"{teacher_path.name}: the lessons lost their figures"
        assert not any(c.get("outputs") for c in rest), f"{teacher_path.name}: an exercise cell keeps an output"


def test_the_class_edition_has_no_answers_at_all(tmp_path):
    for p in build_student_notebooks(NOTEBOOKS, tmp_path):
        nb = json.loads(p.read_text())
        assert not any(is_answer(c) for c in nb["cells"]) and ANSWER_SUMMARY not in p.read_text(), p.name
        assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), p.name


def test_a_student_edition_notebook_runs_only_its_exercises_into_errors():
    """Run the committed student edition of 01 top to bottom: each exercise stops at its stub, each check
    fails with NameError/NotImplementedError, and no lesson cell fails."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(str(STUDENT / "01_anatomy.ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(STUDENT)}})
    client.execute()
    errors = {i: o["ename"] for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"}
    graded = {i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and (c.metadata.get("nbgrader", {}).get("solution") or c.metadata.get("nbgrader", {}).get("grade"))}
    assert errors, "the exercises of the student edition raised nothing: are the answers still in?"
    assert set(errors) <= graded, f"lesson cells failed: {sorted(set(errors) - graded)}"
    assert set(errors.values()) <= {"NameError", "NotImplementedError"}, errors
