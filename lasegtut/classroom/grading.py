"""``lasegtut assignments grade``: execute a class's notebooks and grade every exercise.

:func:`grade_class` takes a folder of submissions, as teachers download them from a learning
platform: one sub-folder per student holding their notebooks, or one ``.ipynb`` per student (the
student is the folder's or the file's name). Each submitted notebook is matched to a teacher
notebook (by its cells' ids and nbgrader ``grade_id``, else by file name), assembled with the
teacher's own check cells (:mod:`lasegtut.classroom.exercises`) and executed top to bottom in its own
confined kernel (:mod:`lasegtut.classroom.kernel_run`, :mod:`lasegtut.classroom.sandbox`); each check
runs outside that kernel, in a checker process that only reads plain data from it
(:mod:`lasegtut.classroom.checks`). Each exercise gets one status:

``correct``   the answer ran and the teacher's check cell passed;
``wrong``     the check cell failed an ``assert``;
``missing``   the stub was left (``NotImplementedError``) or the answer cell is not there;
``error``     the answer or the check raised something else, or the notebook cannot be read;
``timeout``   the answer or the check ran past its time limit, or was never reached in time.

A written answer (a markdown cell that nbgrader calls a *manually graded answer*) is for the teacher
to grade by hand; the grader only says, from the submitted file (never from the student's kernel),
whether it is there:

``answered``  the cell holds writing of the student's own: its points are ``manual`` in ``grades.csv``;
``missing``   the question is still as handed out (``YOUR ANSWER HERE``), or the cell is gone: 0 points.

Outputs: ``OUT/grades.csv`` (``student, notebook, exercise, status, points, max_points``; a text
cell that a spreadsheet would take for a formula is escaped with ``'``) and
``OUT/feedback/<student>.md``. Submissions are read one student at a time (each notebook at most
:data:`~lasegtut.classroom.exercises.MAX_NOTEBOOK_BYTES`) to be matched, and each notebook again
just before it runs, so the grader holds a few notebooks, not the class. Outputs are written only at
the end, all or nothing (the feedback is written into a new folder that replaces the old one), and
existing ones are replaced only with ``force``. A lesson (non-exercise) cell is bounded only by the
notebook's whole time (``RunLimits.total_timeout``), not by the per-cell limit meant for answers and
checks; when it runs out of time anyway, the exercises after it are ``timeout`` and the feedback
says the grader's limit stopped it, not the student's code.
"""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import sandbox
from .assignments import default_source_dir
from ..errors import LasegError
from .exercises import (GradedRun, TeacherNotebook, assemble, load_teacher_notebooks, match_score, read_notebook,
                        written_status)
from .checks import CheckOutcome, CheckRunner
from .kernel_run import CellResult, RunLimits, RunReport, run_cells
from ..safeio import termination_as_exception

STATUSES = ("correct", "wrong", "missing", "error", "timeout")
#: The statuses of a written answer (graded by hand): there, or not.
WRITTEN_STATUSES = ("answered", "missing")
#: What ``grades.csv`` says in the points column of an answered written answer: the teacher's to give.
MANUAL = "manual"
CSV_COLUMNS = ("student", "notebook", "exercise", "status", "points", "max_points")


@dataclass
class Grade:
    """One exercise of one student: a row of ``grades.csv`` plus the message shown in the feedback."""

    student: str
    notebook: str
    exercise: str
    status: str
    points: float
    max_points: float
    message: str = ""
    written: bool = False  # a written answer, graded by hand: status "answered" or "missing"

    @property
    def points_text(self) -> str:
        """The points as ``grades.csv`` writes them: ``manual`` for an answered written answer."""
        return MANUAL if self.written and self.status == "answered" else _num(self.points)


@dataclass
class StudentWork:
    """One student's notebooks as read from disk: cells per file, or why a file could not be read."""

    name: str
    notebooks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # where each notebook is (to read it again to run it)


@dataclass
class ClassReport:
    """What :func:`grade_class` did."""

    grades: list[Grade]
    notes: dict[str, list[str]]  # per student
    csv_path: Path
    feedback_dir: Path
    sandbox: str
    warnings: list[str] = field(default_factory=list)  # for the teacher: files not graded, unmatched notebooks
    seconds: float = 0.0
    runs: list[RunReport] = field(default_factory=list)

    def describe(self) -> str:
        n_students = len({g.student for g in self.grades} | set(self.notes))
        auto = [g for g in self.grades if not g.written]
        counts = {s: sum(g.status == s for g in auto) for s in STATUSES}
        written = [g for g in self.grades if g.written]
        by_hand = (f", {len(written)} written answers for you to grade by hand "
                   f"({', '.join(f'{sum(g.status == s for g in written)} {s}' for s in WRITTEN_STATUSES)})"
                   if written else "")
        return (f"graded {n_students} students, {len(auto)} exercises "
                f"({', '.join(f'{v} {k}' for k, v in counts.items())}){by_hand} in {self.seconds:.1f} s\n"
                f"sandbox: {self.sandbox}\n"
                f"wrote {self.csv_path} and {n_students} feedback files "
                f"in {self.feedback_dir}")


# ----------------------------------------------------------------------------- reading the class
def _visible(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def list_submissions(folder: str | os.PathLike) -> list[StudentWork]:
    """Every student of ``folder`` (sub-folders or single ``.ipynb`` files) with the paths of their
    notebooks (``files``), none of them read yet."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise LasegError(f"no submissions folder at {root}")
    students: dict[str, StudentWork] = {}
    sources: dict[str, str] = {}
    for entry in sorted(root.iterdir()):
        if not _visible(entry, root):
            continue
        if entry.is_dir():
            name, files = entry.name, sorted(p for p in entry.rglob("*.ipynb") if p.is_file() and _visible(p, entry))
        elif entry.suffix == ".ipynb" and entry.is_file():
            name, files = entry.stem, [entry]
        else:
            continue
        if name in students:
            raise LasegError(f"two submissions for student {name!r}: {sources[name]} and {entry.name}")
        work = StudentWork(name)
        for f in files:
            work.files[str(f.relative_to(entry)) if entry.is_dir() else f.name] = f
        students[name], sources[name] = work, entry.name
    if not students:
        raise LasegError(f"no submissions in {root} (expected one folder or one .ipynb per student)")
    return list(students.values())


def read_work(work: StudentWork) -> StudentWork:
    """Read (size-bounded) the notebooks of ``work.files`` into ``work.notebooks``, or say why not; returns ``work``."""
    for key, f in work.files.items():
        try:
            work.notebooks[key] = read_notebook(f)["cells"]
        except LasegError as e:
            work.unreadable[key] = str(e)
    return work


def collect_submissions(folder: str | os.PathLike) -> list[StudentWork]:
    """Read every student's notebooks from ``folder`` (sub-folders or single ``.ipynb`` files)."""
    return [read_work(w) for w in list_submissions(folder)]


def _stem_key(name: str) -> str:
    return Path(name).stem.lower()


def match_notebooks(work: StudentWork, teachers: list[TeacherNotebook]) -> tuple[dict[str, str], list[str], list[str]]:
    """Pair one student's files with teacher notebooks: by cell ids and grade_ids, else by file name.

    Returns {teacher notebook: submitted file}, the files that matched nothing, and notes (copies).
    """
    notes: list[str] = []
    chosen: dict[str, tuple[tuple[int, bool], str]] = {}
    unmatched: list[str] = []
    names = {_stem_key(t.name): t.name for t in teachers}
    for key, cells in work.notebooks.items():
        score, same_name, tname = max((match_score(t, cells), _stem_key(key) == _stem_key(t.name), t.name)
                                      for t in teachers)
        if score == 0 and not same_name:
            unmatched.append(key)
            continue
        rank = (score, same_name)
        if tname in chosen:
            prev_rank, prev = chosen[tname]
            if rank <= prev_rank:
                notes.append(f"{key}: another copy of {tname}; {prev} was graded")
                continue
            notes.append(f"{prev}: another copy of {tname}; {key} was graded")
        chosen[tname] = (rank, key)
    for key in work.unreadable:
        tname = names.get(_stem_key(key))
        if tname is None or tname in chosen:
            unmatched.append(key)
        else:
            chosen[tname] = ((0, True), key)
    return {t: k for t, (_, k) in chosen.items()}, unmatched, notes


# ----------------------------------------------------------------------------- statuses
_ARROW_RE = re.compile(r"^-+>\s*(\d+)\s?(.*)$")


def failing_line(result: CellResult) -> str:
    """The source line a traceback points at (IPython's ``----> 3 assert ...``), or ''."""
    lines = [m.group(2).rstrip() for ln in result.traceback.splitlines() if (m := _ARROW_RE.match(ln.strip()))]
    return lines[-1].strip() if lines else ""


def _error_text(result: CellResult) -> str:
    return f"{result.ename}: {result.evalue}".rstrip(": ") if result.evalue else result.ename


def exercise_status(run: GradedRun, report: RunReport, name: str,
                    checks: dict[str, CheckOutcome] | None = None) -> tuple[str, str]:
    """(status, message) of exercise ``name`` from the results of its answer cells and its check.

    ``checks``: the outcomes of the checks run by the grader's checker; an exercise without one
    gets its status from the cell where its check stood (not run, out of time...), and with
    ``checks`` given, a check that should have run and did not is an ``error``. The feedback
    never quotes the check's source: a failed check gives the teacher's assert message, if any.
    """
    outcome = (checks or {}).get(name)
    if name in run.unanswered:
        return "missing", "your notebook has no answer cell for this exercise (deleted, or its id was changed)"
    for pos in run.answer_pos.get(name, []) + [run.check_pos[name]]:
        res = report.cells[pos]
        where = "your answer" if pos != run.check_pos[name] else "the check"
        if res.status == "ok":
            if where == "the check" and outcome is not None and outcome.status != "correct":
                if outcome.status == "wrong":
                    return "wrong", "the check failed" + (f"\nAssertionError: {outcome.message}" if outcome.message
                                                          else "")
                return outcome.status, outcome.message
            if where == "the check" and outcome is None and checks is not None:
                return "error", "the check could not be run"
            continue
        if res.status == "timeout":
            return "timeout", f"{where}: {res.evalue or 'ran out of time'}"
        if res.status == "not_run":
            if res.reason == "died":
                return "error", f"not run: {report.note}"
            return "timeout", f"not run: {report.note or 'the notebook ran out of time'}"
        if res.ename == "NotImplementedError":
            return "missing", "not answered: the stub (raise NotImplementedError()) is still there"
        if where == "the check":
            if res.ename == "AssertionError":
                return "wrong", "the check failed" + (f"\nAssertionError: {res.evalue}" if res.evalue else "")
            return "error", f"the check raised {res.ename}"
        line = failing_line(res)
        return "error", f"{where} raised {_error_text(res)}" + (f"\n  at: {line}" if line else "")
    return "correct", ""


#: The feedback's word for an answered written answer, and for one that is not there.
WRITTEN_MESSAGES = {"answered": "", "missing": "not answered: the question is still as it was handed out "
                    "(YOUR ANSWER HERE), or its cell is not in your notebook"}


def grades_for(student: str, teacher: TeacherNotebook, run: GradedRun | None, report: RunReport | None,
               failure: str = "", status: str = "error", checks: dict[str, CheckOutcome] | None = None,
               written: dict[str, str] | None = None) -> list[Grade]:
    """One :class:`Grade` per exercise and per written answer of ``teacher``, in the notebook's order.

    Without a run, each exercise gets ``status`` and ``failure``. ``written``: the statuses of the written
    answers read from the submitted file (:func:`~lasegtut.classroom.exercises.written_status`); without
    it (no readable file) they get ``status`` and ``failure`` too (``missing`` or ``error``, 0 points).
    """
    rows: list[tuple[int, Grade]] = []
    for e in teacher.exercises:
        if run is None or report is None:
            rows.append((e.check_cell, Grade(student, teacher.name, e.name, status, 0.0, e.points, failure)))
            continue
        st, msg = exercise_status(run, report, e.name, checks)
        rows.append((e.check_cell, Grade(student, teacher.name, e.name, st, e.points if st == "correct" else 0.0,
                                         e.points, msg)))
    for w in teacher.written:
        if written is None:
            st, msg = ("missing" if status == "missing" else "error"), failure
        else:
            st = written.get(w.name, "missing")
            msg = WRITTEN_MESSAGES[st]
        rows.append((w.cell, Grade(student, teacher.name, w.name, st, 0.0, w.points, msg, written=True)))
    return [g for _, g in sorted(rows, key=lambda r: r[0])]


# ----------------------------------------------------------------------------- writing
def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def csv_text(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula: one starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'`` (as OWASP recommends against CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def grades_csv(grades: list[Grade]) -> str:
    """``grades.csv``'s text (text cells escaped by :func:`csv_text`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for g in grades:
        w.writerow([csv_text(g.student), csv_text(g.notebook), csv_text(g.exercise), g.status, g.points_text,
                    _num(g.max_points)])
    return buf.getvalue()


def _fence(text: str) -> str:
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def _by_hand(rows: list[Grade]) -> str:
    """`` (+ N points of written answers, graded by hand)`` when ``rows`` hold answered written answers."""
    manual = sum(g.max_points for g in rows if g.written and g.status == "answered")
    return f" (+ up to {_num(manual)} points for written answers, graded by hand)" if manual else ""


def feedback_markdown(student: str, grades: list[Grade], notes: list[str]) -> str:
    """One student's feedback: per notebook, each exercise's status and the failing check's message, and
    whether each written answer is there (its points are the teacher's to give, by hand)."""
    auto = [g for g in grades if not g.written]
    total = sum(g.points for g in auto)
    top = sum(g.max_points for g in auto)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Feedback for {student}", "",
             f"Graded {when}. **Total: {_num(total)} / {_num(top)} points{_by_hand(grades)}.**", ""]
    for nb in dict.fromkeys(g.notebook for g in grades):
        rows = [g for g in grades if g.notebook == nb]
        auto = [g for g in rows if not g.written]
        lines += [f"## {nb}: {_num(sum(g.points for g in auto))} / {_num(sum(g.max_points for g in auto))} points"
                  f"{_by_hand(rows)}", "", "| exercise | status | points |", "|---|---|---|"]
        lines += [f"| {g.exercise} | {g.status} | "
                  + (("read by the teacher (0 points) |" if not g.max_points else
                      f"graded by hand, of {_num(g.max_points)} |") if g.written and g.status == "answered"
                     else f"{_num(g.points)} / {_num(g.max_points)} |") for g in rows]
        lines.append("")
        for g in rows:
            if g.message:
                lines += [f"**{g.exercise}: {g.status}**", "", _fence(g.message), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _safe_name(name: str) -> str:
    s = re.sub(r"[^\w.@+-]+", "_", name).strip("._") or "student"
    return s[:120]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output(out: Path, submissions: Path, source: Path, force: bool) -> None:
    """Refuse an output folder that would overwrite grades without ``force`` or mix with the inputs."""
    if out.exists() and not out.is_dir():
        raise LasegError(f"{out} exists and is not a folder")
    o = out.resolve()
    for other, what in ((submissions, "the submissions"), (source, "the teacher notebooks")):
        r = other.resolve()
        if o == r or r in o.parents:
            raise LasegError(f"the output folder {out} is inside {what} folder {other}; choose another --out")
    if not force:
        for p in (out / "grades.csv", out / "feedback"):
            if p.exists():
                raise LasegError(f"{p} already exists; use --force to replace it")


# ----------------------------------------------------------------------------- the batch
def _grade_one(student: str, teacher: TeacherNotebook, key: str, cells: list[dict[str, Any]] | Path,
               scratch_root: Path, limits: RunLimits, abi: int,
               threads: int | None) -> tuple[list[Grade], RunReport | None, list[str]]:
    """Grade one submitted notebook (its cells, or the file to read them from); whatever goes wrong
    becomes its grades' message, never the batch's end."""
    try:
        if isinstance(cells, Path):
            try:
                cells = read_notebook(cells)["cells"]
            except LasegError as e:
                return grades_for(student, teacher, None, None, str(e)), None, [f"{e}; not graded"]
        return _grade_notebook(student, teacher, key, cells, scratch_root, limits, abi, threads)
    except Exception as e:  # noqa: BLE001 - one notebook must not stop the class
        why = f"{key} could not be graded: {type(e).__name__}: {str(e)[:200]}"
        return grades_for(student, teacher, None, None, why), None, [why + "; not graded"]


def _grade_notebook(student: str, teacher: TeacherNotebook, key: str, cells: list[dict[str, Any]],
                    scratch_root: Path, limits: RunLimits, abi: int,
                    threads: int | None) -> tuple[list[Grade], RunReport | None, list[str]]:
    run = assemble(teacher, cells)
    if run.matched == 0:
        why = (f"{key} could not be matched to {teacher.name}: none of its cells carries the teacher's "
               "cell ids, grade_ids or code, so it was not run")
        return grades_for(student, teacher, None, None, why, status="missing"), None, [why]
    written = written_status(teacher, cells)  # from the submitted file, before (and outside) the kernel
    scratch = Path(tempfile.mkdtemp(prefix="job-", dir=scratch_root))
    checker = CheckRunner(scratch / "exchange", limits.cell_timeout)
    outcomes: dict[str, CheckOutcome] = {}
    try:
        checker.start()
        report = run_cells(run.sources, scratch, limits, landlock_abi=abi, threads=threads,
                           timeouts=lesson_timeouts(run, limits),
                           after_cell=_check_hook(teacher, run, checker, outcomes))
    except LasegError as e:
        return grades_for(student, teacher, None, None, f"could not run the notebook: {e}", written=written), None, []
    finally:
        checker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    notes = []
    if report.note:
        notes.append(f"{teacher.name}: {report.note}")
    stopped = first_lesson_timeout(run, report)
    failed = [(i, r) for i, r in enumerate(report.cells) if r.status == "error" and _is_lesson(run, i)
              and (stopped is None or i < stopped)]
    for i, r in failed[:3]:
        notes.append(f"{teacher.name}: {run.origins[i]} raised {_error_text(r)[:200]}")
    grades = grades_for(student, teacher, run, report, checks=outcomes, written=written)
    if stopped is not None:
        why = lesson_timeout_message(run, report, stopped)
        notes.append(f"{teacher.name}: {why}")
        grades = after_lesson_timeout(run, stopped, grades, why)
    return grades, report, notes


# ----------------------------------------------------------------------------- lesson cells and time
def _is_lesson(run: GradedRun, i: int) -> bool:
    """Whether cell ``i`` of the run is a lesson cell (neither an answer nor a check)."""
    return i not in run.check_pos.values() and not any(i in v for v in run.answer_pos.values())


def lesson_timeouts(run: GradedRun, limits: RunLimits) -> list[float | None]:
    """Per-cell time limits (s): answers and checks get ``limits.cell_timeout`` (None: the default);
    lesson cells get the notebook's whole budget, ``limits.total_timeout`` (a training cell is long
    by design; what it may take on the grader's machine is the notebook's time, not an answer's)."""
    return [None if not _is_lesson(run, i) else max(limits.total_timeout, limits.cell_timeout)
            for i in range(len(run.sources))]


def first_lesson_timeout(run: GradedRun, report: RunReport) -> int | None:
    """The first lesson cell the grader stopped for time (interrupted, or never reached), or None."""
    for i, res in enumerate(report.cells):
        if res.status == "timeout" or (res.status == "not_run" and res.reason == "timeout"):
            return i if _is_lesson(run, i) else None
    return None


def lesson_timeout_message(run: GradedRun, report: RunReport, i: int) -> str:
    """Says that the grader's time limit stopped lesson cell ``i``, not the student."""
    res = report.cells[i]
    what = (f"{run.origins[i]} (a lesson cell, not an exercise) was stopped by the grader's time limit"
            if res.status == "timeout" else f"{run.origins[i]} (a lesson cell) was never run: "
            f"{report.note or 'the notebook ran out of time'}")
    return (f"{what}; this is the grading machine's limit (--timeout), not a fault of your code, and the "
            "exercises after it could not be graded")


def after_lesson_timeout(run: GradedRun, stopped: int, grades: list[Grade], why: str) -> list[Grade]:
    """Exercises with a cell after lesson cell ``stopped`` that did not pass become ``timeout``, with ``why``."""
    out = []
    for g in grades:
        if g.written:  # read from the file: no time limit touches it
            out.append(g)
            continue
        cells = run.answer_pos.get(g.exercise, []) + ([run.check_pos[g.exercise]] if g.exercise in run.check_pos
                                                      else [])
        if g.status not in ("correct", "missing") and any(p > stopped for p in cells):
            g = Grade(g.student, g.notebook, g.exercise, "timeout", 0.0, g.max_points, "not graded: " + why)
        out.append(g)
    return out


def _check_hook(teacher: TeacherNotebook, run: GradedRun, checker: CheckRunner, outcomes: dict[str, CheckOutcome]
                ) -> Callable[[int, CellResult, Callable[[str, float], CellResult]], None]:
    """The :func:`run_cells` hook that runs each exercise's check where its check cell stood.

    A check runs only when its answer cells all ran without error (otherwise their error is the status)."""
    plans = {e.name: e.check for e in teacher.exercises}
    check_at = {pos: name for name, pos in run.check_pos.items()}
    results: dict[int, CellResult] = {}

    def hook(i: int, res: CellResult, run_extra: Callable[[str, float], CellResult]) -> None:
        results[i] = res
        name = check_at.get(i)
        if name is None or res.status != "ok" or name in run.unanswered or plans.get(name) is None:
            return
        if all(p in results and results[p].status == "ok" for p in run.answer_pos.get(name, [])):
            outcomes[name] = checker.run(plans[name], run_extra)

    return hook


def grade_class(submissions: str | os.PathLike, out: str | os.PathLike, source: str | os.PathLike | None = None,
                notebooks: list[str] | None = None, limits: RunLimits | None = None, jobs: int = 1,
                force: bool = False, progress: bool = True,
                warn: Callable[[str], None] | None = None) -> ClassReport:
    """Grade every submission in ``submissions``; write ``out/grades.csv`` and ``out/feedback/``.

    ``source``: the teacher notebooks (default: the course's ``notebooks/``); ``notebooks``: grade
    only these (default: every teacher notebook that at least one student submitted). ``jobs``
    notebooks run at once. Nothing is written before every submission has been graded.
    """
    t0 = time.monotonic()
    limits = limits or RunLimits()
    if jobs < 1:
        raise LasegError("--jobs must be at least 1")
    _require_kernel()
    src = Path(source).expanduser() if source is not None else default_source_dir()
    sub_root = Path(submissions).expanduser()
    out = Path(out).expanduser()
    check_output(out, sub_root, src, force)
    teachers = load_teacher_notebooks(src, notebooks)
    students = list_submissions(sub_root)

    plan: dict[str, dict[str, str]] = {}
    unmatched: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    for w in students:  # one student's notebooks in memory at a time; read again when they run
        plan[w.name], unmatched[w.name], notes[w.name] = match_notebooks(read_work(w), teachers)
        w.notebooks.clear()
    wanted = list(teachers) if notebooks else [t for t in teachers if any(t.name in p for p in plan.values())]
    if not wanted and len(teachers) == 1:
        wanted = list(teachers)
    if not wanted:
        raise LasegError(f"no submitted notebook matches a notebook of {src} (by cell ids, grade_ids or name)")
    for w in students:
        free = [t.name for t in wanted if t.name not in plan[w.name]]
        left_over = unmatched[w.name]
        if len(free) == 1 and len(left_over) == 1:  # by elimination: one notebook expected, one file left
            plan[w.name][free[0]] = left_over.pop()
            notes[w.name].append(f"{plan[w.name][free[0]]}: graded as {free[0]}, the one notebook left "
                                 "(its name and cell ids do not match)")
        for key in left_over:
            why = w.unreadable.get(key)
            notes[w.name].append(f"{why}; not graded" if why else
                                 f"{key}: matches no notebook of the assignment (none of its cell ids or "
                                 "grade_ids, nor its name); not graded")

    confine = sandbox.probe(limits.memory_bytes)
    abi = confine.landlock_abi
    if warn is not None:
        for line in confine.missing():
            warn("warning: " + line)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    by_student: dict[str, list[Grade]] = {w.name: [] for w in students}
    runs: list[RunReport] = []
    tasks = []
    for w in students:
        for t in wanted:
            key = plan[w.name].get(t.name)
            if key is None:
                by_student[w.name] += grades_for(w.name, t, None, None, f"no submitted notebook matches {t.name}",
                                                 status="missing")
            elif key in w.unreadable:
                by_student[w.name] += grades_for(w.name, t, None, None, w.unreadable[key])
            else:
                tasks.append((w.name, t, key, w.files[key]))
    left = {w.name: sum(1 for task in tasks if task[0] == w.name) for w in students}
    bar = _progress(len(students), progress)
    bar.update(sum(1 for n in left.values() if n == 0))
    scratch_root = Path(tempfile.mkdtemp(prefix="lasegtut-grade-"))
    shm_before = None if confine.private_shm else _shm_entries()
    lock = threading.Lock()
    stop = contextlib.ExitStack()
    stop.enter_context(termination_as_exception())  # SIGTERM: the kernels are stopped, nothing is written
    results: dict[tuple[str, str], list[Grade]] = {}
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_grade_one, s, t, key, cells, scratch_root, limits, abi, threads): (s, t.name)
                       for s, t, key, cells in tasks}
            try:
                for fut in as_completed(futures):
                    s, tname = futures[fut]
                    grades, report, run_notes = fut.result()
                    with lock:
                        results[(s, tname)] = grades
                        notes[s] += run_notes
                        if report is not None:
                            runs.append(report)
                        left[s] -= 1
                        if left[s] == 0:
                            bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                _stop_all_kernels(scratch_root)
                raise
    finally:
        stop.close()
        bar.close()
        shutil.rmtree(scratch_root, ignore_errors=True)
        if shm_before is not None:
            _remove_new_shm(shm_before)

    order = {t.name: i for i, t in enumerate(teachers)}
    grades: list[Grade] = []
    for w in students:
        mine = by_student[w.name] + [g for t in wanted for g in results.get((w.name, t.name), [])]
        grades += sorted(mine, key=lambda g: order[g.notebook])  # stable: exercises keep their order

    feedback = out / "feedback"
    files: dict[str, str] = {}
    for w in students:
        fname = _safe_name(w.name)
        while fname in files:
            fname += "_"
        files[fname] = feedback_markdown(w.name, [g for g in grades if g.student == w.name], notes[w.name])
    write_outputs(out, grades_csv(grades), files)
    warnings = [f"{s}: {n}" for s, ns in notes.items() for n in ns
                if n.endswith("not graded") or "could not be matched" in n]
    return ClassReport(grades, notes, out / "grades.csv", feedback, confine.describe(), warnings,
                       time.monotonic() - t0, runs)


def write_outputs(out: Path, csv_text_: str, feedback: dict[str, str]) -> None:
    """Write ``out/grades.csv`` and ``out/feedback/<name>.md`` all or nothing: the feedback goes into a
    new folder that then replaces the old one (files other than ``.md`` a teacher put there are kept),
    right before ``grades.csv`` is replaced. Raises :class:`LasegError` saying what could not be
    written; then ``out`` is as it was."""
    new = old = tmp_csv = None
    fb = out / "feedback"
    try:
        out.mkdir(parents=True, exist_ok=True)
        new = Path(tempfile.mkdtemp(prefix=".feedback-new-", dir=out))
        for fname, text in feedback.items():
            _write_atomic(new / f"{fname}.md", text)
        if fb.is_dir():
            for keep in fb.iterdir():
                if keep.suffix != ".md" and not (new / keep.name).exists():
                    if keep.is_dir():
                        shutil.copytree(keep, new / keep.name, symlinks=True)
                    else:
                        shutil.copy2(keep, new / keep.name, follow_symlinks=False)
        tmp_csv = out / f".grades.csv.tmp-{os.getpid()}"
        tmp_csv.write_text(csv_text_, encoding="utf-8")
        if fb.exists():
            old = out / f".feedback-old-{os.getpid()}"
            os.rename(fb, old)
        try:
            os.rename(new, fb)
            new = None
            os.replace(tmp_csv, out / "grades.csv")
            tmp_csv = None
        except OSError:
            if new is None:  # the new feedback is in place: put the old one back
                os.rename(fb, out / f".feedback-new-{os.getpid()}")
                new = out / f".feedback-new-{os.getpid()}"
            if old is not None:
                os.rename(old, fb)
                old = None
            raise
    except OSError as e:
        raise LasegError(f"could not write the grades into {out} ({e.strerror or e}: {e.filename or ''}); "
                         "the grades and feedback already there were left as they were") from None
    finally:
        for leftover in (new, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
        if tmp_csv is not None:
            with contextlib.suppress(OSError):
                tmp_csv.unlink()


def _shm_entries() -> set[str] | None:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return None


def _remove_new_shm(before: set[str] | None) -> None:
    """Remove what the kernels left in a shared ``/dev/shm`` (kernels without a private one): entries
    made since ``before``, owned by this user, and open or mapped by no process."""
    if before is None:
        return
    new = [n for n in (_shm_entries() or set()) - before
           if os.lstat(os.path.join("/dev/shm", n)).st_uid == os.geteuid()] if os.path.isdir("/dev/shm") else []
    if not new:
        return
    in_use: set[str] = set()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            in_use.update(line.split("/dev/shm/", 1)[1].split(" ")[0] for line in
                          (entry / "maps").read_text(errors="replace").splitlines() if "/dev/shm/" in line)
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("/dev/shm/"):
                        in_use.add(target[len("/dev/shm/"):])
    for n in new:
        if n not in in_use:
            path = os.path.join("/dev/shm", n)
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def _stop_all_kernels(scratch_root: Path) -> None:
    """Kill every kernel still running under ``scratch_root`` (on Ctrl-C): by its working folder, or
    by its environment (``HOME`` and ``TMPDIR`` are in its scratch folder), which ``os.chdir`` does not change."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    root = str(scratch_root.resolve())
    needle = os.fsencode(root + os.sep)
    for entry in proc.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if os.readlink(entry / "cwd").startswith(root) or needle in (entry / "environ").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def _require_kernel() -> None:
    if os.name != "posix":
        raise LasegError("lasegtut assignments grade runs on Linux or macOS (use WSL on Windows)")
    missing = [m for m in ("jupyter_client", "ipykernel", "zmq") if importlib.util.find_spec(m) is None]
    if missing:
        raise LasegError(f"grading needs {', '.join(missing)}: pip install 'lasegtut[grade]'")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="student", desc="grading", leave=True)
