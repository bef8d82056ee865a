"""Tests of `lasegtut assignments grade` (issue 14) on tiny synthetic notebooks: matching, statuses,
points, outputs, isolation of a hostile submission, and the command line's contract.

The real course is graded in tests/test_grading_course.py.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from lasegtut.classroom.assignments import build_student_notebooks
from lasegtut.cli import main
from lasegtut.errors import LasegError
from lasegtut.classroom.exercises import _main as exercises_main
from lasegtut.classroom.exercises import CHECK_PLACEHOLDER, assemble, load_teacher_notebooks, match_cells, tag_notebook, teacher_notebook
from lasegtut.classroom.grading import exercise_status, feedback_markdown, grade_class, Grade
from lasegtut.classroom.kernel_run import CellResult, RunLimits, RunReport, run_cells
from lasegtut.classroom.sandbox import landlock_abi

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

FAST = RunLimits(cell_timeout=8, total_timeout=60, memory_bytes=2 * 2 ** 30)
needs_landlock = pytest.mark.skipif(landlock_abi() < 6, reason="needs Landlock ABI 6 (Linux >= 6.12)")


def answer_md(gid: str) -> dict:
    return {"grade": False, "grade_id": gid, "locked": False, "schema_version": 3, "solution": True, "task": False}


def check_md(gid: str, points: float) -> dict:
    return {"grade": True, "grade_id": gid, "locked": True, "points": points, "schema_version": 3,
            "solution": False, "task": False}


def cell(kind: str, source: str, cid: str, nbgrader: dict | None = None) -> dict:
    c = {"cell_type": kind, "id": cid, "metadata": {"nbgrader": nbgrader} if nbgrader else {}, "source": source}
    if kind == "code":
        c.update(outputs=[], execution_count=None)
    return c


def notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                        "display_name": "Python 3"}},
            "nbformat": 4, "nbformat_minor": 5}


TEACHER = notebook([
    cell("markdown", "# Homework", "m1"),
    cell("code", "import math\nbase = 10", "c1"),
    cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n", "a1",
         answer_md("ex1_answer")),
    cell("code", "assert double(3) == 6, 'double(3) should be 6'\nassert double(base) == 20", "k1", check_md("ex1", 2)),
    cell("code", "### BEGIN SOLUTION\nanswer = math.sqrt(16)\n### END SOLUTION\nprint(answer)", "a2",
         answer_md("ex2_answer")),
    cell("code", "assert answer == 4", "k2", check_md("ex2", 3)),
])


def write(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture
def course(tmp_path) -> tuple[Path, dict]:
    """The teacher folder and the student copy of its one notebook."""
    write(tmp_path / "teacher" / "hw.ipynb", TEACHER)
    build_student_notebooks(tmp_path / "teacher", tmp_path / "student")
    return tmp_path / "teacher", json.loads((tmp_path / "student" / "hw.ipynb").read_text())


def with_sources(nb: dict, **sources: str) -> dict:
    """A copy of ``nb`` with the cells of the given ids given new sources."""
    nb = copy.deepcopy(nb)
    for c in nb["cells"]:
        if c["id"] in sources:
            c["source"] = sources[c["id"]]
    return nb


def read_grades(out: Path) -> dict[tuple[str, str], tuple[str, str, str]]:
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["student", "notebook", "exercise", "status", "points", "max_points"]
    return {(r["student"], r["exercise"]): (r["status"], r["points"], r["max_points"]) for r in rows}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- teacher notebooks
def test_teacher_exercises_and_points():
    t = teacher_notebook(TEACHER, "hw.ipynb")
    assert [(e.name, e.points, e.answer_cells, e.check_cell) for e in t.exercises] == [
        ("ex1", 2.0, [2], 3), ("ex2", 3.0, [4], 5)]
    assert t.max_points == 5


@pytest.mark.parametrize("edit, message", [
    (lambda nb: nb["cells"][3]["metadata"]["nbgrader"].pop("points"), "needs 'points'"),
    (lambda nb: nb["cells"][5]["metadata"]["nbgrader"].update(grade_id="ex1"), "used by cells"),
    (lambda nb: nb["cells"][2]["metadata"].clear(), "without nbgrader metadata"),
    (lambda nb: nb["cells"][3]["metadata"]["nbgrader"].update(grade_id="ex 1"), "grade_id of letters"),
])
def test_teacher_metadata_errors(edit, message):
    nb = copy.deepcopy(TEACHER)
    edit(nb)
    with pytest.raises(LasegError, match=message):
        teacher_notebook(nb, "hw.ipynb")


def test_teacher_folder_without_graded_cells(tmp_path):
    write(tmp_path / "t" / "a.ipynb", notebook([cell("code", "x = 1", "c")]))
    with pytest.raises(LasegError, match="no notebook in .* has graded cells"):
        load_teacher_notebooks(tmp_path / "t")


def test_tag_notebook_adds_nbgrader_metadata_only():
    nb = copy.deepcopy(TEACHER)
    for c in nb["cells"]:
        c["metadata"] = {}
    before = copy.deepcopy(nb)
    assert tag_notebook(nb) == 4
    t = teacher_notebook(nb, "hw.ipynb")
    assert [(e.name, e.points, e.answer_cells) for e in t.exercises] == [("ex1", 1.0, [2]), ("ex2", 1.0, [4])]
    for a, b in zip(nb["cells"], before["cells"]):
        assert {k: v for k, v in a.items() if k != "metadata"} == {k: v for k, v in b.items() if k != "metadata"}
    assert tag_notebook(nb) == 0  # idempotent: a teacher's own points are kept


def test_tag_command_reports_a_bad_file_in_one_line(tmp_path, capsys):
    assert exercises_main(["tag", str(tmp_path / "missing.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lasegtut.classroom.exercises: error: ") and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- matching and assembling
def test_assemble_runs_teacher_checks_in_teacher_order(course):
    _, stub = course
    t = teacher_notebook(TEACHER, "hw.ipynb")
    sub = with_sources(stub, a1="def double(x):\n    return x * 2", k1="pass  # the student deleted the checks")
    sub["cells"] = [sub["cells"][i] for i in (0, 5, 4, 3, 2, 1)]  # reordered
    del sub["cells"][1]  # and the ex2 check deleted
    extra = cell("code", "helper = 1", "new1")
    sub["cells"].insert(4, extra)  # after the ex1 answer cell (teacher cell 2)
    run = assemble(t, sub["cells"])
    # the checks run in the grader's checker: the kernel gets a placeholder where each stood
    assert run.sources == ["import math\nbase = 10", "def double(x):\n    return x * 2", "helper = 1",
                           CHECK_PLACEHOLDER,
                           "# YOUR CODE HERE\nraise NotImplementedError()\nprint(answer)", CHECK_PLACEHOLDER]
    assert run.answer_pos == {"ex1": [1], "ex2": [4]} and run.check_pos == {"ex1": 3, "ex2": 5}
    assert run.unanswered == set()


def test_match_without_ids_or_metadata(course):
    """Cells that lost their id and metadata (another editor) are found by their source or the code around the stub."""
    _, stub = course
    sub = with_sources(stub, a1="def double(x):\n    return x + x\n")
    for c in sub["cells"]:
        c.pop("id")
        c["metadata"] = {}
    t = teacher_notebook(TEACHER, "hw.ipynb")
    m = match_cells(t, sub["cells"])
    # answers by the code around the stub ('def double(x):', 'print(answer)'), the lesson cell by its source
    assert m[2] == 2 and m[4] == 4 and m[1] == 1
    run = assemble(t, sub["cells"])
    assert run.sources[1] == "def double(x):\n    return x + x\n" and not run.unanswered


def test_deleted_answer_is_missing(course):
    _, stub = course
    sub = copy.deepcopy(stub)
    del sub["cells"][2]
    run = assemble(teacher_notebook(TEACHER, "hw.ipynb"), sub["cells"])
    assert run.unanswered == {"ex1"}


# ----------------------------------------------------------------------------- statuses (no kernel)
@pytest.mark.parametrize("answer, check, status", [
    (CellResult("ok"), CellResult("ok"), "correct"),
    (CellResult("ok"), CellResult("error", "AssertionError", "too big"), "wrong"),
    (CellResult("error", "NotImplementedError"), CellResult("error", "NameError", "x"), "missing"),
    (CellResult("ok"), CellResult("error", "NotImplementedError"), "missing"),
    (CellResult("error", "ZeroDivisionError", "division by zero"), CellResult("ok"), "error"),
    (CellResult("ok"), CellResult("error", "TypeError", "bad"), "error"),
    (CellResult("error", "AssertionError", "own assert"), CellResult("ok"), "error"),
    (CellResult("timeout", "Timeout"), CellResult("ok"), "timeout"),
    (CellResult("ok"), CellResult("not_run", reason="timeout"), "timeout"),
    (CellResult("error", "KernelDied", "the kernel died"), CellResult("not_run", reason="died"), "error"),
])
def test_exercise_status(course, answer, check, status):
    run = assemble(teacher_notebook(TEACHER, "hw.ipynb"), course[1]["cells"])
    cells = [CellResult("ok") for _ in run.sources]
    cells[run.answer_pos["ex1"][0]], cells[run.check_pos["ex1"]] = answer, check
    assert exercise_status(run, RunReport(cells, note="n"), "ex1")[0] == status


def test_feedback_shows_status_and_failing_message():
    grades = [Grade("ann", "hw.ipynb", "ex1", "wrong", 0, 2, "the check failed: assert f(3) == 6\nAssertionError: ```"),
              Grade("ann", "hw.ipynb", "ex2", "correct", 3, 3)]
    text = feedback_markdown("ann", grades, ["a note"])
    assert "Total: 3 / 5 points" in text and "| ex1 | wrong | 0 / 2 |" in text and "| ex2 | correct | 3 / 3 |" in text
    assert "assert f(3) == 6" in text and "````text" in text  # a fence longer than any backtick run inside
    assert "- a note" in text


# ----------------------------------------------------------------------------- the kernel
def test_run_cells_limits(tmp_path):
    cells = ["x = 1\nprint('hi')", "raise NotImplementedError()", "assert x == 2, 'x should be 2'",
             "while True:\n    pass", "print(x)", "print('z' * (40 * 2 ** 20))", "print('after')",
             "import sys\nfor i in range(300_000):\n    sys.stdout.write(f'{i}\\n')",
             "import os\nos._exit(3)", "print('never')"]
    r = run_cells(cells, tmp_path / "s", RunLimits(cell_timeout=10, total_timeout=200, memory_bytes=2 * 2 ** 30,
                                                   output_chars=1000), landlock_abi=landlock_abi())
    got = [(c.status, c.ename) for c in r.cells]
    assert got == [("ok", ""), ("error", "NotImplementedError"), ("error", "AssertionError"), ("timeout", "Timeout"),
                   ("ok", ""), ("ok", ""), ("ok", ""), ("ok", ""),
                   ("error", "KernelDied"), ("not_run", "")]
    assert r.cells[0].output == "hi\n" and r.cells[2].evalue == "x should be 2" and r.cells[4].output == "1\n"
    assert "output lost" in r.cells[5].output and r.cells[6].output == "after\n"  # a new output channel
    assert len(r.cells[7].output) < 1100 and "more characters of output not kept" in r.cells[7].output
    assert r.cells[9].reason == "died" and "exited" in r.note


def _confinements() -> list:
    """The memory caps this machine can test: its cgroup (if it can make one) and the watchdog."""
    from lasegtut.classroom.sandbox import probe

    c = probe(2 * 2 ** 30)
    return [pytest.param(c, id="cgroup", marks=pytest.mark.skipif(c.cgroup_parent is None, reason="no memory cgroup "
                                                                 "can be made here")),
            pytest.param(dataclasses.replace(c, cgroup_parent=None), id="watchdog")]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("confine", _confinements())
def test_memory_cap_counts_what_is_used_not_what_is_reserved(tmp_path, confine):
    """The CUDA build of PyTorch reserves tens of GiB of address space it never touches: a cap on the
    address space (RLIMIT_AS) made its imports fail. The cap is on resident memory: 24 GiB reserved and
    untouched is fine; 3 GiB used, by the kernel or by a process it starts, is stopped with a clear message."""
    reserve = ("import ctypes, mmap\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "libc.mmap.restype = ctypes.c_void_p\n"
               "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, "
               "ctypes.c_long]\n"
               "a = libc.mmap(None, 16 * 2 ** 30, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000, -1, 0)\n"
               "assert a not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()\n"
               "b = mmap.mmap(-1, 8 * 2 ** 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)\n"
               "print('reserved')")
    child = ("import subprocess, sys\n"
             "p = subprocess.run([sys.executable, '-c', 'b = bytearray(3 * 2 ** 30); import time; time.sleep(60)'])\n"
             "print(p.returncode)")
    cells = [reserve, "x = bytearray(200 * 2 ** 20)\nprint(len(x))", child, "big = bytearray(3 * 2 ** 30)",
             "print('never')"]
    r = run_cells(cells, tmp_path / "s", RunLimits(cell_timeout=60, total_timeout=200, memory_bytes=2 * 2 ** 30),
                  landlock_abi=landlock_abi(), confine=dataclasses.replace(confine, landlock_abi=landlock_abi()))
    assert (r.cells[0].status, r.cells[0].output) == ("ok", "reserved\n"), r.cells[0]
    assert r.cells[1].output == f"{200 * 2 ** 20}\n"
    # the greedy child: killed alone (cgroup OOM killer) or with the whole kernel (watchdog)
    assert r.cells[2].output.strip() == "-9" or r.cells[2].ename == "KernelDied", r.cells[2]
    died = next(c for c in r.cells if c.ename == "KernelDied")
    assert "used more than 2.0 GiB of memory" in died.evalue and r.cells[-1].status == "not_run"
    assert "used more than 2.0 GiB" in r.note


def test_run_cells_caps_an_error_message(tmp_path):
    r = run_cells(["raise ValueError('v' * 100_000)"], tmp_path / "s", RunLimits(output_chars=1000),
                  landlock_abi=landlock_abi())
    assert r.cells[0].ename == "ValueError" and r.cells[0].evalue == "v" * 1000


def test_run_cells_kills_a_cell_that_ignores_interrupts(tmp_path):
    cells = ["import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass", "print('next')"]
    r = run_cells(cells, tmp_path / "s", RunLimits(cell_timeout=2, interrupt_grace=2), landlock_abi=landlock_abi())
    assert [(c.status, c.reason) for c in r.cells] == [("timeout", "killed"), ("not_run", "timeout")]


def test_kernel_sees_no_secrets_of_the_grader(tmp_path, monkeypatch):
    """A submission could print the grader's environment into its own feedback: it sees only what
    runs Python and the course's settings, and its home is its scratch folder."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("LASEG_PROFILE", "ci")
    r = run_cells(["import os\nprint(sorted(os.environ))\nprint(os.environ['LASEG_PROFILE'], os.environ['HOME'])"],
                  tmp_path / "s", FAST, landlock_abi=landlock_abi())
    out = r.cells[0].output
    assert r.cells[0].status == "ok" and "s3cr3t" not in out and "t0ken" not in out
    assert "AWS_SECRET_ACCESS_KEY" not in out and "GITHUB_TOKEN" not in out
    assert f"ci {tmp_path / 's'}" in out


def _alive_with(marker: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "cmdline").read_bytes():
                    found.append(int(p.name))
            except OSError:
                pass
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_processes_started_by_a_cell_are_killed(tmp_path):
    cells = ["import subprocess\np = subprocess.Popen(['sleep', '987.25'], start_new_session=True)\nprint(p.pid)"]
    r = run_cells(cells, tmp_path / "s", FAST, landlock_abi=landlock_abi())
    assert r.cells[0].status == "ok" and r.cells[0].output.strip().isdigit()
    assert _alive_with("987.25") == []


@needs_landlock
def test_sandbox_confines_the_kernel(tmp_path):
    outside = tmp_path / "teacher.txt"
    outside.write_text("teacher")
    cells = [f"open({str(outside)!r}, 'w').write('changed')",
             "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)",
             "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
             "open('inside.txt', 'w').write('fine')\nimport tempfile\ntempfile.mkstemp()"]
    r = run_cells(cells, tmp_path / "s", FAST, landlock_abi=landlock_abi())
    assert [(c.status, c.ename) for c in r.cells] == [("error", "PermissionError"), ("error", "PermissionError"),
                                                      ("error", "PermissionError"), ("ok", "")]
    assert outside.read_text() == "teacher"


# ----------------------------------------------------------------------------- a class
def test_grade_class_statuses_points_and_outputs(course, tmp_path, capsys):
    teacher, stub = course
    subs = tmp_path / "subs"
    write(subs / "good" / "hw.ipynb", TEACHER)
    write(subs / "blank.ipynb", stub)
    write(subs / "wrong.ipynb", with_sources(stub, a1="def double(x):\n    return x + 2\n",
                                             a2="answer = 4\nprint(answer)"))
    write(subs / "edited" / "hw.ipynb", with_sources(stub, a1="def double(x):\n    return 2 * x\n", k1="pass",
                                                     k2="pass", a2="answer = 1 / 0"))
    moved = copy.deepcopy(TEACHER)
    moved["cells"] = [moved["cells"][i] for i in (0, 5, 4, 3, 2, 1)]
    write(subs / "reordered.ipynb", moved)
    write(subs / "loop.ipynb", with_sources(stub, a1="def double(x):\n    while True:\n        pass\n"))
    (subs / "corrupt").mkdir()
    (subs / "corrupt" / "hw.ipynb").write_text('{"cells": [')
    write(subs / "stranger" / "notes.ipynb", notebook([cell("code", "x = 1", "zz")]))
    write(subs / "copies" / "hw.ipynb", TEACHER)
    write(subs / "copies" / "hw-Copy1.ipynb", stub)
    before = digest(teacher)
    out = tmp_path / "out"
    report = grade_class(subs, out, source=teacher, limits=FAST, jobs=2, progress=True)
    g = read_grades(out)
    assert g == {
        ("good", "ex1"): ("correct", "2", "2"), ("good", "ex2"): ("correct", "3", "3"),
        ("blank", "ex1"): ("missing", "0", "2"), ("blank", "ex2"): ("missing", "0", "3"),
        ("wrong", "ex1"): ("wrong", "0", "2"), ("wrong", "ex2"): ("correct", "3", "3"),
        ("edited", "ex1"): ("correct", "2", "2"), ("edited", "ex2"): ("error", "0", "3"),
        ("reordered", "ex1"): ("correct", "2", "2"), ("reordered", "ex2"): ("correct", "3", "3"),
        ("loop", "ex1"): ("timeout", "0", "2"), ("loop", "ex2"): ("missing", "0", "3"),
        ("corrupt", "ex1"): ("error", "0", "2"), ("corrupt", "ex2"): ("error", "0", "3"),
        ("stranger", "ex1"): ("missing", "0", "2"), ("stranger", "ex2"): ("missing", "0", "3"),
        ("copies", "ex1"): ("correct", "2", "2"), ("copies", "ex2"): ("correct", "3", "3"),
    }
    assert digest(teacher) == before
    fb = (out / "feedback" / "wrong.md").read_text()
    assert "the check failed\nAssertionError: double(3) should be 6" in fb
    assert "assert double" not in fb  # the check's source is never quoted
    assert "ZeroDivisionError: division by zero" in (out / "feedback" / "edited.md").read_text()
    assert "not a readable notebook" in (out / "feedback" / "corrupt.md").read_text()
    assert "notes.ipynb could not be matched to hw.ipynb" in (out / "feedback" / "stranger.md").read_text()
    assert "hw-Copy1.ipynb: another copy of hw.ipynb; hw.ipynb was graded" in \
        (out / "feedback" / "copies.md").read_text()
    assert any("notes.ipynb could not be matched" in w for w in report.warnings)
    err = capsys.readouterr().err
    assert "grading" in err and "9/9" in err  # the progress bar, over students


def test_hostile_submission_cannot_touch_others(course, tmp_path):
    """A submission that writes to the teacher's notebook, another student's file and the grades, and signals
    the grader, changes nothing but its own grade."""
    teacher, stub = course
    subs, out = tmp_path / "subs", tmp_path / "out"
    honest = write(subs / "honest.ipynb", TEACHER)
    targets = [teacher / "hw.ipynb", honest, out / "grades.csv", out / "feedback" / "honest.md"]
    evil = "\n".join([
        "import os, signal",
        *[f"try:\n    os.makedirs(os.path.dirname({str(p)!r}), exist_ok=True)\n    open({str(p)!r}, 'w').write('x')"
          f"\nexcept OSError:\n    pass" for p in targets],
        # signalling the grader (this test process) is only tried where the sandbox forbids it
        *(["for sig in (signal.SIGTERM, signal.SIGKILL):\n    try:\n        os.kill(os.getppid(), sig)\n"
           "    except OSError:\n        pass"] if landlock_abi() >= 6 else []),
        "def double(x):\n    return 2 * x"])
    write(subs / "evil.ipynb", with_sources(stub, a1=evil))
    before_teacher, before_honest = digest(teacher), honest.read_bytes()
    grade_class(subs, out, source=teacher, limits=FAST, progress=False)
    g = read_grades(out)
    assert g[("honest", "ex1")] == ("correct", "2", "2") and g[("honest", "ex2")] == ("correct", "3", "3")
    assert g[("evil", "ex1")][0] in ("correct", "error")  # its own business
    assert "Total: 5 / 5 points" in (out / "feedback" / "honest.md").read_text()
    if landlock_abi() >= 6:
        assert digest(teacher) == before_teacher and honest.read_bytes() == before_honest
        assert g[("evil", "ex1")] == ("correct", "2", "2")  # every write and signal was refused, then it answered


def test_memory_cap_stops_the_notebook_with_a_clear_message(course, tmp_path):
    teacher, stub = course
    subs = tmp_path / "subs"
    greedy = "big = bytearray(6 * 2 ** 30)\ndef double(x):\n    return 2 * x"
    write(subs / "greedy.ipynb", with_sources(TEACHER, a1=greedy))
    write(subs / "honest.ipynb", TEACHER)
    grade_class(subs, tmp_path / "out", source=teacher, limits=FAST, progress=False)
    g = read_grades(tmp_path / "out")
    assert g[("greedy", "ex1")] == ("error", "0", "2") and g[("greedy", "ex2")] == ("error", "0", "3")
    assert g[("honest", "ex1")] == ("correct", "2", "2") and g[("honest", "ex2")] == ("correct", "3", "3")
    assert "the notebook used more than 2.0 GiB of memory" in (tmp_path / "out" / "feedback" / "greedy.md").read_text()


# ----------------------------------------------------------------------------- the command line
def test_cli_grade_and_no_overwrite(course, tmp_path, capsys):
    teacher, stub = course
    write(tmp_path / "subs" / "ann.ipynb", stub)
    out = tmp_path / "out"
    argv = ["assignments", "grade", str(tmp_path / "subs"), "--out", str(out), "--source", str(teacher), "--quiet",
            "--cell-timeout", "8"]
    assert main(argv) == 0
    assert "graded 1 students, 2 exercises (0 correct, 0 wrong, 2 missing" in capsys.readouterr().out
    (out / "grades.csv").write_text("the teacher's edits")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--force" in err
    assert (out / "grades.csv").read_text() == "the teacher's edits"
    (out / "feedback" / "bob.md").write_text("feedback of a student no longer in the class")
    assert main(argv + ["--force"]) == 0
    assert read_grades(out)[("ann", "ex1")] == ("missing", "0", "2")
    assert sorted(p.name for p in (out / "feedback").iterdir()) == ["ann.md"]  # replaced, not mixed


@pytest.mark.parametrize("extra, needle", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--timeout", "nan"], "--timeout must be a positive number"),
    (["--memory-gb", "-1"], "--memory-gb must be a positive number"),
    (["--memory-gb", "0.1"], "give at least 0.5"),
    (["--notebook", "nope.ipynb"], "no notebook 'nope.ipynb'"),
])
def test_cli_grade_bad_options(course, tmp_path, capsys, extra, needle):
    teacher, stub = course
    write(tmp_path / "subs" / "ann.ipynb", stub)
    rc = main(["assignments", "grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--source",
               str(teacher), "--quiet"] + extra)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()


def test_cli_grade_bad_folders(course, tmp_path, capsys):
    teacher, stub = course
    (tmp_path / "empty").mkdir()
    write(tmp_path / "subs" / "ann.ipynb", stub)
    (tmp_path / "subs" / "ann").mkdir()
    write(tmp_path / "subs" / "ann" / "hw.ipynb", stub)
    write(tmp_path / "other" / "bob.ipynb", notebook([cell("code", "x = 1", "q")]))
    write(tmp_path / "two" / "bob.ipynb", notebook([cell("code", "x = 1", "q")]))
    write(tmp_path / "t2" / "a.ipynb", TEACHER)
    write(tmp_path / "t2" / "b.ipynb", TEACHER)
    for subs, src, out, needle in [
        (tmp_path / "missing", teacher, tmp_path / "o", "no submissions folder"),
        (tmp_path / "empty", teacher, tmp_path / "o", "no submissions in"),
        (tmp_path / "subs", teacher, tmp_path / "o", "two submissions for student 'ann'"),
        (tmp_path / "two", tmp_path / "t2", tmp_path / "o", "no submitted notebook matches"),
        (tmp_path / "other", teacher, teacher / "grades", "inside the teacher notebooks"),
        (tmp_path / "other", tmp_path / "nowhere", tmp_path / "o", "no notebook folder"),
    ]:
        rc = main(["assignments", "grade", str(subs), "--out", str(out), "--source", str(src), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, (needle, err)
        assert not out.exists()
    assert not os.path.exists(tmp_path / "o")


def test_hidden_tests_are_removed_for_students_and_run_by_the_grader(tmp_path):
    teacher = copy.deepcopy(TEACHER)
    teacher["cells"][3]["source"] += "\n### BEGIN HIDDEN TESTS\nassert double(-1) == -2, 'hidden'\n### END HIDDEN TESTS"
    write(tmp_path / "teacher" / "hw.ipynb", teacher)
    build_student_notebooks(tmp_path / "teacher", tmp_path / "student")
    stub = json.loads((tmp_path / "student" / "hw.ipynb").read_text())
    assert "hidden" not in json.dumps(stub)
    cheat = "def double(x):\n    return 6 if x == 3 else 20"  # passes the visible checks only
    write(tmp_path / "subs" / "ann.ipynb", with_sources(stub, a1=cheat))
    grade_class(tmp_path / "subs", tmp_path / "out", source=tmp_path / "teacher", limits=FAST, progress=False)
    assert read_grades(tmp_path / "out")[("ann", "ex1")] == ("wrong", "0", "2")
    assert "AssertionError: hidden" in (tmp_path / "out" / "feedback" / "ann.md").read_text()


def _processes_mentioning(text: str) -> list[int]:
    return [pid for pid in _alive_with(text) if pid != os.getpid()]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig, rc", [(15, 143), (9, -9)])
def test_stopping_the_grader_stops_its_kernels(course, tmp_path, sig, rc):
    """SIGTERM: the kernels are stopped and nothing is written (exit 143, as for every command). SIGKILL: the kernels die with it."""
    import signal
    import subprocess
    import sys
    import time

    teacher, stub = course
    write(tmp_path / "subs" / "ann.ipynb", with_sources(stub, a1="while True:\n    pass"))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen([sys.executable, "-m", "lasegtut", "assignments", "grade", str(tmp_path / "subs"),
                             "--out", str(tmp_path / "out"), "--source", str(teacher), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any("ipykernel" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
                      for p in _processes_mentioning(str(scratch))):
            assert time.monotonic() < deadline and proc.poll() is None, "no kernel started"
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == rc
    if sig == signal.SIGTERM:
        assert err.strip().splitlines()[-1] == "lasegtut assignments: terminated"
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(scratch)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(scratch)) == []
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_sigterm_stops_a_kernel_that_left_its_scratch_folder(course, tmp_path):
    """A kernel found by its working folder alone would escape by os.chdir and keep the grader waiting."""
    import subprocess
    import sys
    import time

    teacher, stub = course
    write(tmp_path / "subs" / "ann.ipynb", with_sources(stub, a1="import os\nos.chdir('/')\nwhile True:\n    pass"))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "lasegtut", "assignments", "grade", str(tmp_path / "subs"),
                             "--out", str(tmp_path / "out"), "--source", str(teacher), "--quiet"],
                            env=dict(os.environ, TMPDIR=str(scratch)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def kernel_left_its_folder() -> bool:
        for p in _processes_mentioning(str(scratch)):
            try:
                if "ipykernel" in Path(f"/proc/{p}/cmdline").read_text(errors="replace") and \
                        os.readlink(f"/proc/{p}/cwd") == "/":
                    return True
            except OSError:
                pass
        return False

    try:
        deadline = time.monotonic() + 60
        while not kernel_left_its_folder():
            assert time.monotonic() < deadline and proc.poll() is None, "no kernel left its folder"
            time.sleep(0.2)
        proc.terminate()
        _, err = proc.communicate(timeout=30)  # not the cell's 120 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "lasegtut assignments: terminated"
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(scratch)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(scratch)) == []
