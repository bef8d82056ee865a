"""Written answers (nbgrader's manually graded markdown cells) under `lasegtut assignments grade` (issue 22 §4).

The grader does not grade them; it reports, from the submitted notebook file and never from the
student's kernel, whether each is ``answered`` (its points ``manual``: the teacher's to give) or
``missing`` (the question as handed out, ``YOUR ANSWER HERE`` still there, or the cell gone).
"""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from lasegtut.classroom.assignments import build_student_notebooks
from lasegtut.classroom.exercises import teacher_notebook, written_answered, written_status
from lasegtut.classroom.grading import Grade, feedback_markdown, grade_class, grades_csv
from lasegtut.errors import LasegError
from test_grading import with_sources
from test_grading import FAST, answer_md, cell, check_md, notebook, write


def written_md(gid: str, points: float) -> dict:
    """nbgrader's metadata of a manually graded answer."""
    return {"grade": True, "grade_id": gid, "locked": False, "points": points, "schema_version": 3,
            "solution": True, "task": False}


PROMPT = "*Predict before you run: will the mirrored scan score lower?*"
JUDGEMENT = "**Your judgement.** Should the course add flips?"
TEACHER = notebook([
    cell("markdown", "# Homework", "m1"),
    cell("markdown", PROMPT + "\n\n### BEGIN SOLUTION\n*A prediction.* Much lower.\n### END SOLUTION\n", "p1",
         written_md("predict1", 0)),
    cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n", "a1",
         answer_md("ex1_answer")),
    cell("code", "assert double(3) == 6", "k1", check_md("ex1", 1)),
    cell("markdown", JUDGEMENT + "\n\n### BEGIN SOLUTION\n*Answer.* No: the heart is not symmetric.\n"
         "### END SOLUTION\n", "w1", written_md("judge1", 2)),
])


@pytest.fixture
def course(tmp_path) -> tuple[Path, dict]:
    write(tmp_path / "teacher" / "hw.ipynb", TEACHER)
    build_student_notebooks(tmp_path / "teacher", tmp_path / "student")
    return tmp_path / "teacher", json.loads((tmp_path / "student" / "hw.ipynb").read_text())




def test_teacher_notebook_lists_written_answers():
    t = teacher_notebook(TEACHER, "hw.ipynb")
    assert [(w.name, w.points, w.cell) for w in t.written] == [("predict1", 0.0, 1), ("judge1", 2.0, 4)]
    assert [e.name for e in t.exercises] == ["ex1"] and t.max_points == 1  # the autograded points only
    bad = copy.deepcopy(TEACHER)
    del bad["cells"][4]["metadata"]["nbgrader"]["points"]
    with pytest.raises(LasegError, match="manually graded answer needs 'points'"):
        teacher_notebook(bad, "hw.ipynb")


def test_written_answered_reads_only_new_text():
    teacher = TEACHER["cells"][4]["source"]
    assert written_answered(teacher, teacher)  # the model answer counts as an answer
    assert not written_answered(teacher, JUDGEMENT + "\n\nYOUR ANSWER HERE")  # as handed out
    assert not written_answered(teacher, JUDGEMENT + "\n\n   \n")  # placeholder deleted, nothing written
    assert not written_answered(teacher, "YOUR ANSWER HERE\n\n" + JUDGEMENT)  # moved around, nothing new
    assert written_answered(teacher, "Yes, with care.")  # the question deleted, an answer kept
    assert written_answered(teacher, JUDGEMENT + "\n\nYOUR ANSWER HERE\nNo.")


def test_written_status_of_solved_blank_and_edited_copies(course):
    _, stub = course
    t = teacher_notebook(TEACHER, "hw.ipynb")
    assert written_status(t, TEACHER["cells"]) == {"predict1": "answered", "judge1": "answered"}
    assert written_status(t, stub["cells"]) == {"predict1": "missing", "judge1": "missing"}
    answered = with_sources(stub, w1=JUDGEMENT + "\n\nNo: mirrored hearts are rare.")
    assert written_status(t, answered["cells"]) == {"predict1": "missing", "judge1": "answered"}
    lost = copy.deepcopy(answered)  # another editor dropped ids and metadata: found by the question's text
    for c in lost["cells"]:
        c.pop("id")
        c["metadata"] = {}
    assert written_status(t, lost["cells"])["judge1"] == "answered"
    as_code = copy.deepcopy(answered)  # turned into a code cell: not a written answer any more
    as_code["cells"][-1]["cell_type"] = "code"
    assert written_status(t, as_code["cells"])["judge1"] == "missing"
    deleted = copy.deepcopy(answered)
    del deleted["cells"][-1]
    assert written_status(t, deleted["cells"])["judge1"] == "missing"


def test_csv_and_feedback_show_written_answers_for_the_teacher():
    grades = [Grade("ann", "hw.ipynb", "ex1", "correct", 1, 1),
              Grade("ann", "hw.ipynb", "judge1", "answered", 0, 2, written=True),
              Grade("ann", "hw.ipynb", "predict1", "missing", 0, 1, "not answered", written=True)]
    rows = list(csv.reader(grades_csv(grades).splitlines()))
    assert rows[1:] == [["ann", "hw.ipynb", "ex1", "correct", "1", "1"],
                        ["ann", "hw.ipynb", "judge1", "answered", "manual", "2"],
                        ["ann", "hw.ipynb", "predict1", "missing", "0", "1"]]
    text = feedback_markdown("ann", grades, [])
    assert "Total: 1 / 1 points (+ up to 2 points for written answers, graded by hand)" in text
    assert "| judge1 | answered | graded by hand, of 2 |" in text and "| predict1 | missing | 0 / 1 |" in text


def test_grade_class_reports_written_answers(course, tmp_path):
    """A solved and a blank notebook: answered / missing, with points manual / 0; the code part as before."""
    teacher, stub = course
    subs = tmp_path / "subs"
    write(subs / "solved.ipynb", TEACHER)
    write(subs / "blank.ipynb", stub)
    # the judgement written, the code left: written parts are read from the file, whatever the code does
    write(subs / "half.ipynb", with_sources(stub, w1=JUDGEMENT + "\n\nNo, the heart is not symmetric.",
                                             a1="import os\nos.remove('hw.ipynb')\ndef double(x):\n    return 0"))
    report = grade_class(subs, tmp_path / "out", source=teacher, limits=FAST, progress=False)
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = {(r["student"], r["exercise"]): (r["status"], r["points"], r["max_points"]) for r in csv.DictReader(f)}
    assert rows == {
        ("solved", "predict1"): ("answered", "manual", "0"), ("solved", "ex1"): ("correct", "1", "1"),
        ("solved", "judge1"): ("answered", "manual", "2"),
        ("blank", "predict1"): ("missing", "0", "0"), ("blank", "ex1"): ("missing", "0", "1"),
        ("blank", "judge1"): ("missing", "0", "2"),
        ("half", "predict1"): ("missing", "0", "0"), ("half", "ex1"): ("error", "0", "1"),
        ("half", "judge1"): ("answered", "manual", "2"),
    }
    with open(tmp_path / "out" / "grades.csv", newline="") as f:  # the notebook's order: predict, code, judge
        assert [r["exercise"] for r in csv.DictReader(f) if r["student"] == "solved"] == ["predict1", "ex1", "judge1"]
    blank = (tmp_path / "out" / "feedback" / "blank.md").read_text()
    assert "| judge1 | missing | 0 / 2 |" in blank and "YOUR ANSWER HERE" in blank
    solved = (tmp_path / "out" / "feedback" / "solved.md").read_text()
    assert "| judge1 | answered | graded by hand, of 2 |" in solved
    assert "| predict1 | answered | read by the teacher (0 points) |" in solved
    assert "3 exercises (1 correct, 0 wrong, 1 missing, 1 error, 0 timeout), 6 written answers for you to grade " \
           "by hand (3 answered, 3 missing)" in report.describe()
