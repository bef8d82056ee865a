"""The course's own exercises under `lasegtut assignments grade` (issue 14), and nbgrader on the course.

- every notebook carries nbgrader metadata on each exercise's answer and check cells;
- a synthetic class built from the student copy of notebook 01 grades exactly (every status,
  every point total);
- the exercises of every course notebook grade "correct" when solved and "missing" when blank;
- nbgrader's own ``generate_assignment`` accepts the course as its source and releases the same
  stubs as ``lasegtut assignments build``, with cells our grader matches.
"""
from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NOTEBOOKS
from lasegtut.classroom.assignments import build_student_notebooks
from lasegtut.classroom.exercises import cell_source, load_teacher_notebooks, match_cells, nbgrader_meta, teacher_notebook
from lasegtut.classroom.grading import grade_class
from lasegtut.classroom.kernel_run import RunLimits

COURSE = sorted(NOTEBOOKS.glob("0*.ipynb"))
N_EXERCISES = {"01": 2, "02": 2, "03": 2, "04": 2, "05": 2, "06": 4, "07": 3, "08": 2, "09": 2}
# Generous limits: the slowest course cell (a short training run in 05) takes ~20 s on a quiet 2-core
# CPU, and two notebooks run at once. Notebook 01's cells take a few seconds at most; its infinite
# loop below costs exactly LIMITS_01's cell limit.
LIMITS = RunLimits(cell_timeout=300, total_timeout=900)
LIMITS_01 = RunLimits(cell_timeout=30, total_timeout=300)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def cell_by_grade_id(nb: dict, gid: str) -> dict:
    return next(c for c in nb["cells"] if nbgrader_meta(c).get("grade_id") == gid)


def read_rows(out: Path) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return {(r["student"], r["notebook"], r["exercise"]): (r["status"], r["points"], r["max_points"])
                for r in csv.DictReader(f)}


def test_course_notebooks_carry_nbgrader_metadata():
    """Each exercise: its answer cell is an nbgrader 'autograded answer', the next code cell its 'autograder tests'."""
    assert len(COURSE) == len(N_EXERCISES)
    for path in COURSE:
        nb = load(path)
        t = teacher_notebook(nb, path.name)
        assert len(t.exercises) == N_EXERCISES[path.name[:2]], path.name
        for k, ex in enumerate(t.exercises, start=1):
            assert ex.name == f"ex{k}" and ex.points > 0 and len(ex.answer_cells) == 1, (path.name, ex)
            answer = nb["cells"][ex.answer_cells[0]]
            assert "### BEGIN SOLUTION" in cell_source(answer)
            code_after = [i for i in range(ex.answer_cells[0] + 1, len(nb["cells"]))
                          if nb["cells"][i]["cell_type"] == "code"]
            assert code_after[0] == ex.check_cell and "assert" in cell_source(nb["cells"][ex.check_cell])
            assert nbgrader_meta(nb["cells"][ex.check_cell])["locked"] is True
        solution_cells = [c for c in nb["cells"] if "### BEGIN SOLUTION" in cell_source(c)]
        assert all(nbgrader_meta(c).get("solution") is True for c in solution_cells), path.name


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    build_student_notebooks(NOTEBOOKS, out)
    return out


@pytest.mark.slow
def test_course_class_grades_exactly(student_copies, tmp_path):
    """Eight synthetic submissions of notebook 01: every status and every point total."""
    name = "01_anatomy.ipynb"
    teacher, stub = load(NOTEBOOKS / name), load(student_copies / name)
    solved = {g: cell_source(cell_by_grade_id(teacher, g)) for g in ("ex1_answer", "ex2_answer")}

    def submission(**sources: str) -> dict:
        nb = copy.deepcopy(stub)
        for gid, text in sources.items():
            cell_by_grade_id(nb, gid)["source"] = text
        return nb

    ok = dict(ex1_answer=solved["ex1_answer"], ex2_answer=solved["ex2_answer"])
    extent = "n = idx.max(axis=0) - idx.min(axis=0) + 1"
    assert extent in solved["ex1_answer"]
    # a wrong answer to exercise 2 (naming the planes): two panels swapped
    swap_from, swap_to = '"B": "sagittal", "C": "coronal"', '"B": "coronal", "C": "sagittal"'
    assert swap_from in solved["ex2_answer"]
    subs = tmp_path / "subs"
    class_ = {
        "correct": submission(**ok),
        "blank": stub,
        "wrong": submission(**(ok | {"ex1_answer": solved["ex1_answer"].replace(extent, extent[:-4])})),
        "raises": submission(**(ok | {"ex1_answer": solved["ex1_answer"].replace(
            "idx = np.argwhere(label > 0)", "raise ValueError('not like this')")})),
        "loop": submission(**(ok | {"ex1_answer": "while True:\n    pass\n" + solved["ex1_answer"]})),
        "edited": submission(**(ok | {"ex2_answer": solved["ex2_answer"].replace(swap_from, swap_to)})),
        "huge": submission(**(ok | {"ex1_answer": solved["ex1_answer"] + "\nprint('x' * 100_000_000)\n"
                                                  "for i in range(200_000):\n    print(i)"})),
    }
    # the edited submission also deleted the asserts of both check cells: the teacher's checks still run
    cell_by_grade_id(class_["edited"], "ex1")["source"] = "print('all checks passed')"
    cell_by_grade_id(class_["edited"], "ex2")["source"] = "assert True"
    for student, nb in class_.items():
        (subs / student).mkdir(parents=True)
        (subs / student / name).write_text(json.dumps(nb))
    (subs / "corrupt").mkdir()
    (subs / "corrupt" / name).write_text(json.dumps(class_["correct"])[:5000])
    before = (NOTEBOOKS / name).read_bytes()

    report = grade_class(subs, tmp_path / "out", source=NOTEBOOKS, limits=LIMITS_01, jobs=2, progress=False)
    rows = read_rows(tmp_path / "out")
    expected = {
        "correct": ("correct", "correct"), "blank": ("missing", "missing"), "wrong": ("wrong", "correct"),
        "raises": ("error", "correct"), "loop": ("timeout", "correct"), "edited": ("correct", "wrong"),
        "corrupt": ("error", "error"), "huge": ("correct", "correct")}
    got = {s: (rows[(s, name, "ex1")][0], rows[(s, name, "ex2")][0]) for s in expected}
    assert got == expected
    totals = {s: sum(float(rows[(s, name, e)][1]) for e in ("ex1", "ex2")) for s in expected}
    assert totals == {"correct": 2, "blank": 0, "wrong": 1, "raises": 1, "loop": 1, "edited": 1, "corrupt": 0,
                      "huge": 2}
    written = {k: v for k, v in rows.items() if k[2] not in ("ex1", "ex2")}  # the written answers, by hand
    rows = {k: v for k, v in rows.items() if k[2] in ("ex1", "ex2")}
    assert all(rows[k][2] == "1" for k in rows) and len(rows) == 16
    assert {v[0] for k, v in written.items() if k[0] == "correct"} == {"missing"}  # the stub's, none written
    assert {v[0] for k, v in written.items() if k[0] == "corrupt"} == {"error"}
    fb = tmp_path / "out" / "feedback"
    wrong = (fb / "wrong.md").read_text()  # the check ran in the grader's checker: its source is never quoted
    assert "the check failed" in wrong and "la_extent_mm(box" not in wrong
    assert "ValueError: not like this" in (fb / "raises.md").read_text()
    assert "still running after 30 s" in (fb / "loop.md").read_text()
    edited = (fb / "edited.md").read_text()  # the teacher's assert message, not the check's source or hash
    assert "not yet: where is the spine" in edited and "hexdigest" not in edited and "90245ce93561" not in edited
    assert "not a readable notebook" in (fb / "corrupt.md").read_text()
    assert (NOTEBOOKS / name).read_bytes() == before
    assert not report.warnings


@pytest.mark.slow
def test_every_course_exercise_grades_solved_and_blank(student_copies, tmp_path):
    """Every notebook: the solutions are 'correct', the student copies 'missing', exercise by exercise."""
    subs = tmp_path / "subs"
    (subs / "solved").mkdir(parents=True)
    (subs / "blank").mkdir(parents=True)
    for path in COURSE:
        (subs / "solved" / path.name).write_bytes(path.read_bytes())
        (subs / "blank" / path.name).write_bytes((student_copies / path.name).read_bytes())
    grade_class(subs, tmp_path / "out", source=NOTEBOOKS, limits=LIMITS, jobs=2, progress=False)
    rows = read_rows(tmp_path / "out")
    expected = {}
    n_written = 0
    for t in load_teacher_notebooks(NOTEBOOKS):
        for e in t.exercises:
            expected[("solved", t.name, e.name)] = ("correct", "1", "1")
            expected[("blank", t.name, e.name)] = ("missing", "0", "1")
        for w in t.written:  # written answers: there or not, graded by hand
            n_written += 1
            expected[("solved", t.name, w.name)] = ("answered", "manual", f"{w.points:g}")
            expected[("blank", t.name, w.name)] = ("missing", "0", f"{w.points:g}")
    assert len(expected) == 2 * (sum(N_EXERCISES.values()) + n_written) and n_written >= 3 * 7
    assert rows == expected
    for student in ("solved", "blank"):  # and no lesson cell failed on the way
        assert "## Notes" not in (tmp_path / "out" / "feedback" / f"{student}.md").read_text()


def test_nbgrader_generate_assignment_accepts_the_course(student_copies, tmp_path):
    """nbgrader's own generate_assignment, with its metadata checks on, releases the course as lasegtut does."""
    pytest.importorskip("nbgrader", reason="nbgrader is in the test extras (pip install -e '.[test]')")
    source = tmp_path / "course" / "source" / "lasegtut"
    source.mkdir(parents=True)
    for path in COURSE:
        (source / path.name).write_bytes(path.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "lasegtut", "--no-db",
                           f"--CourseDirectory.root={tmp_path / 'course'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path / "course")
    assert proc.returncode == 0, proc.stderr[-3000:]
    release = tmp_path / "course" / "release" / "lasegtut"
    for path in COURSE:
        theirs, ours = load(release / path.name), load(student_copies / path.name)
        assert [c.get("id") for c in theirs["cells"]] == [c.get("id") for c in ours["cells"]], path.name
        for a, b in zip(theirs["cells"], ours["cells"]):
            assert cell_source(a) == cell_source(b), (path.name, cell_source(a)[:200])
            meta = nbgrader_meta(a)
            assert {k: v for k, v in meta.items() if k not in ("checksum", "cell_type")} == nbgrader_meta(b)
        # a student who received nbgrader's release is graded by lasegtut: every teacher cell is matched
        teacher = teacher_notebook(load(path), path.name)
        assert len(match_cells(teacher, theirs["cells"])) == len(teacher.cells), path.name
