"""The exercises of a teacher notebook, and what to run to grade one student's copy of it.

The teacher (solution) notebooks carry nbgrader's cell metadata (``metadata.nbgrader``):

- an **answer cell** (nbgrader's *autograded answer*): ``solution: true, grade: false``, with a
  ``grade_id``; its solution sits between ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
- a **check cell** (nbgrader's *autograder tests*): ``grade: true, solution: false, locked: true``,
  with a ``grade_id`` and ``points``.

Each check cell is one exercise, named by its ``grade_id``; its answer cells are the answer cells
since the previous check cell. A markdown cell marked ``grade: true, solution: true`` (nbgrader's
*manually graded answer*, with its ``points``) is a **written answer**: the teacher grades it by hand,
and :func:`written_status` says, from the submitted notebook file alone (never from the student's
kernel), whether the student wrote one (``answered``) or left the question as handed out (``missing``). :func:`assemble` builds the list of code cells to execute for one
submission: the submission's own cells in the **teacher's order**, except that every locked cell
is the teacher's own source and every check cell is :data:`CHECK_PLACEHOLDER`: the teacher's check
runs outside the student's kernel (:mod:`lasegtut.classroom.checks`), so an edited or deleted
assert grades as the teacher wrote it and the student's code never sees the check. Submitted
cells are matched to the teacher's by ``grade_id``, then cell ``id``, then identical source, then (answer cells only) the code around the solution block, so cells that
were moved, or lost their id, are still found; cells the student added run after the cell they
followed. This is nbgrader's ``autograde`` rule (locked and test cells are restored from the
source) plus matching that survives reordering.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assignments import (BEGIN_SOLUTION, CODE_STUB, END_SOLUTION, GRADE_ID_RE, MARKDOWN_STUB, _notebooks_in,
                          strip_solutions, visible_text)
from .checks import CheckPlan, plan_check
from ..errors import LasegError

#: What the kernel runs where a check cell stood: the check runs in the grader's checker, never in the
#: student's kernel (:mod:`lasegtut.classroom.checks`), which is asked for the data the check reads here.
CHECK_PLACEHOLDER = "pass  # the teacher's check runs in the grader, outside this kernel"

#: A submitted notebook larger than this is refused (an answer does not need it; reading it would).
MAX_NOTEBOOK_BYTES = 100 * 2 ** 20


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat stores a string or a list of lines)."""
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    return src if isinstance(src, str) else ""


def nbgrader_meta(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's ``metadata.nbgrader`` dict ({} when absent or malformed)."""
    md = cell.get("metadata")
    meta = md.get("nbgrader") if isinstance(md, dict) else None
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: dict[str, Any]) -> str | None:
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def _cell_id(cell: dict[str, Any]) -> str | None:
    cid = cell.get("id")
    return cid if isinstance(cid, str) and cid else None


@dataclass
class Exercise:
    """One autograded exercise: its check cell, its answer cells (teacher cell indices) and points."""

    name: str
    points: float
    check_cell: int
    answer_cells: list[int] = field(default_factory=list)
    check: CheckPlan | None = None  # what the grader's checker runs (set by teacher_notebook)


@dataclass
class WrittenAnswer:
    """A written answer graded by hand (nbgrader's *manually graded answer*): its teacher cell and points."""

    name: str
    points: float
    cell: int


@dataclass
class TeacherNotebook:
    """A teacher notebook's cells, exercises and written answers."""

    name: str
    cells: list[dict[str, Any]]
    exercises: list[Exercise]
    written: list[WrittenAnswer] = field(default_factory=list)

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises)

    def role(self, i: int) -> str:
        """``answer``, ``check``, ``locked`` or ``lesson`` for teacher cell ``i``."""
        meta = nbgrader_meta(self.cells[i])
        if meta.get("solution"):
            return "answer"
        if meta.get("grade"):
            return "check"
        if meta.get("locked"):
            return "locked"
        return "lesson"


def read_notebook(path: str | os.PathLike, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict[str, Any]:
    """Read an ``.ipynb`` file as a dict with a list of cells; :class:`LasegError` says why it cannot be."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise LasegError(f"{p.name} is {size / 2 ** 20:.0f} MB, more than the {max_bytes / 2 ** 20:.0f} MB "
                             "a notebook may be")
        nb = json.loads(p.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise LasegError(f"{p.name} is not a readable notebook ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or \
            not all(isinstance(c, dict) for c in nb["cells"]):
        raise LasegError(f"{p.name} is not a Jupyter notebook (no list of cells)")
    return nb


def teacher_notebook(nb: dict[str, Any], name: str) -> TeacherNotebook:
    """The exercises of a teacher notebook, with its nbgrader metadata checked (as nbgrader does)."""
    cells = nb["cells"]
    exercises: list[Exercise] = []
    written: list[WrittenAnswer] = []
    pending: list[int] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        meta = nbgrader_meta(cell)
        if not (meta.get("grade") or meta.get("solution") or meta.get("locked")):
            if BEGIN_SOLUTION in cell_source(cell) and cell.get("cell_type") == "code":
                raise LasegError(f"{name}, cell {i + 1}: a solution block in a cell without nbgrader metadata "
                                 "'solution: true' (mark it as an autograded answer)")
            continue
        gid = _grade_id(cell)
        if (meta.get("grade") or meta.get("solution")) and (gid is None or not GRADE_ID_RE.match(gid)):
            raise LasegError(f"{name}, cell {i + 1}: graded and answer cells need a grade_id of letters, digits, "
                             "'_' and '-'")
        if gid is not None:
            if gid in seen:
                raise LasegError(f"{name}: grade_id {gid!r} is used by cells {seen[gid] + 1} and {i + 1}")
            seen[gid] = i
        if meta.get("grade") and meta.get("solution"):  # a manually graded (written) answer
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or not points >= 0:
                raise LasegError(f"{name}, cell {i + 1} ({gid}): a manually graded answer needs 'points', a number >= 0")
            written.append(WrittenAnswer(gid, float(points), i))
        elif meta.get("solution") and not meta.get("grade"):
            if cell.get("cell_type") == "code":
                pending.append(i)
        elif meta.get("grade") and not meta.get("solution"):
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or not points >= 0:
                raise LasegError(f"{name}, cell {i + 1} ({gid}): a graded cell needs 'points', a number >= 0")
            if cell.get("cell_type") != "code":
                raise LasegError(f"{name}, cell {i + 1} ({gid}): a graded test cell must be a code cell")
            exercises.append(Exercise(gid, float(points), i, pending))
            pending = []
    teacher = TeacherNotebook(name, cells, exercises, written)
    roles = [teacher.role(i) for i in range(len(cells))]
    for e in exercises:
        try:
            e.check = plan_check(cells, roles, e.check_cell, e.name)
        except LasegError as err:
            raise LasegError(f"{name}: {err}") from None
    return teacher


def load_teacher_notebooks(source: str | os.PathLike, only: list[str] | None = None) -> list[TeacherNotebook]:
    """Every notebook of ``source`` that has graded cells (or just the ones named in ``only``)."""
    src = Path(source).expanduser()
    if not src.is_dir():
        raise LasegError(f"no notebook folder at {src}")
    paths = _notebooks_in(src)
    if only:
        by_name = {p.name: p for p in paths} | {p.stem: p for p in paths}
        missing = [n for n in only if n not in by_name]
        if missing:
            raise LasegError(f"no notebook {missing[0]!r} in {src}")
        paths = sorted({by_name[n] for n in only})
    notebooks = [teacher_notebook(read_notebook(p), p.name) for p in paths]
    graded = [t for t in notebooks if t.exercises]
    if only and len(graded) < len(notebooks):
        bare = next(t.name for t in notebooks if not t.exercises)
        raise LasegError(f"{bare} has no graded cells (nbgrader metadata 'grade: true' with points)")
    if not graded:
        raise LasegError(f"no notebook in {src} has graded cells (nbgrader metadata 'grade: true' with points); "
                         "see docs/teaching.md")
    return graded


def match_score(teacher: TeacherNotebook, cells: list[dict[str, Any]]) -> int:
    """How many of the teacher's cell ids and grade_ids the submitted cells carry."""
    keys = {k for c in teacher.cells for k in (_cell_id(c), _grade_id(c)) if k}
    found = {k for c in cells for k in (_cell_id(c), _grade_id(c)) if k}
    return len(keys & found)


def _stub_anchor(teacher_source: str) -> str | None:
    """The first line of an answer cell's student version that is neither blank, a comment nor the stub."""
    lines, _ = strip_solutions(teacher_source.splitlines())
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#") and s not in CODE_STUB:
            return s
    return None


@dataclass
class GradedRun:
    """The code cells to execute for one submission and where each exercise's cells are among them."""

    sources: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # "teacher cell N (role)" or "your added cell"
    answer_pos: dict[str, list[int]] = field(default_factory=dict)
    check_pos: dict[str, int] = field(default_factory=dict)
    unanswered: set[str] = field(default_factory=set)  # exercises with no answer cell in the submission
    matched: int = 0  # how many submitted cells correspond to a teacher cell


def match_cells(teacher: TeacherNotebook, cells: list[dict[str, Any]]) -> dict[int, int]:
    """{teacher cell index: submitted cell index} for the submitted cells that correspond to teacher cells."""
    t_by_gid = {g: i for i, c in enumerate(teacher.cells) if (g := _grade_id(c))}
    t_by_id = {g: i for i, c in enumerate(teacher.cells) if (g := _cell_id(c))}
    matched: dict[int, int] = {}
    used: set[int] = set()

    def pair(t: int, s: int) -> None:
        if t not in matched and s not in used:
            matched[t] = s
            used.add(s)

    for key, table in ((_grade_id, t_by_gid), (_cell_id, t_by_id)):
        for s, c in enumerate(cells):
            k = key(c)
            if k is not None and k in table:
                pair(table[k], s)
    # cells that lost their id and metadata: an unchanged source, or (answers) the code around the stub
    free = [s for s, c in enumerate(cells) if s not in used and c.get("cell_type") == "code"]
    by_source: dict[str, list[int]] = {}
    for s in free:
        by_source.setdefault(cell_source(cells[s]).strip(), []).append(s)
    for t, c in enumerate(teacher.cells):
        if t in matched or c.get("cell_type") != "code":
            continue
        for s in by_source.get(cell_source(c).strip(), []):
            if s not in used:
                pair(t, s)
                break
    for t, c in enumerate(teacher.cells):
        if t in matched or teacher.role(t) != "answer":
            continue
        anchor = _stub_anchor(cell_source(c))
        if anchor is None:
            continue
        hits = [s for s in free if s not in used
                and anchor in (ln.strip() for ln in cell_source(cells[s]).splitlines())]
        if len(hits) == 1:
            pair(t, hits[0])
    return matched


def assemble(teacher: TeacherNotebook, cells: list[dict[str, Any]]) -> GradedRun:
    """What to execute for a submission whose cells are ``cells``; see the module doc for the rules."""
    matched = match_cells(teacher, cells)
    by_sub = {s: t for t, s in matched.items()}
    # a student's own code cells run after the matched cell that precedes them in their notebook
    added: dict[int, list[int]] = {}
    last = -1
    for s, c in enumerate(cells):
        if s in by_sub:
            last = by_sub[s]
        elif c.get("cell_type") == "code" and cell_source(c).strip():
            added.setdefault(last, []).append(s)
    run = GradedRun(matched=len(matched))

    def emit(source: str, origin: str) -> int:
        run.sources.append(source)
        run.origins.append(origin)
        return len(run.sources) - 1

    for s in added.get(-1, []):
        emit(cell_source(cells[s]), "a cell you added")
    exercise_of = {a: e for e in teacher.exercises for a in e.answer_cells}
    checks = {e.check_cell: e for e in teacher.exercises}
    for t, tc in enumerate(teacher.cells):
        if tc.get("cell_type") == "code":
            role = teacher.role(t)
            s = matched.get(t)
            sub_ok = s is not None and cells[s].get("cell_type") == "code"
            if role == "answer":
                ex = exercise_of.get(t)
                if sub_ok:
                    pos = emit(cell_source(cells[s]), f"your answer cell {s + 1}")
                else:
                    pos = emit("\n".join(strip_solutions(cell_source(tc).splitlines())[0]), "the exercise's stub")
                    if ex is not None:
                        run.unanswered.add(ex.name)
                if ex is not None:
                    run.answer_pos.setdefault(ex.name, []).append(pos)
            elif t in checks:  # the check itself runs outside the kernel (lasegtut.classroom.checks)
                run.check_pos[checks[t].name] = emit(CHECK_PLACEHOLDER, "the teacher's check cell")
            elif role in ("check", "locked"):
                emit(cell_source(tc), f"the teacher's {role} cell")
            else:
                emit(cell_source(cells[s]) if sub_ok else cell_source(tc),
                     f"your cell {s + 1}" if sub_ok else f"the teacher's cell {t + 1} (not in your notebook)")
        for s in added.get(t, []):
            emit(cell_source(cells[s]), f"your added cell {s + 1}")
    for e in teacher.exercises:  # an answer is there when at least one of its cells was found
        if any(matched.get(a) is not None and cells[matched[a]].get("cell_type") == "code" for a in e.answer_cells):
            run.unanswered.discard(e.name)
    return run


def _line_key(line: str) -> str:
    """A line as written answers are compared: visible characters, blanks collapsed."""
    return " ".join(visible_text(line).split())


#: Lines that never count as a student's own writing: the placeholder and the solution markers.
_NOT_AN_ANSWER = {_line_key(s) for s in MARKDOWN_STUB + (BEGIN_SOLUTION, END_SOLUTION)}


def _handed_out_lines(teacher_source: str) -> tuple[set[str], str | None]:
    """The (compared) lines of a written answer's cell as students receive it, and its first line of text."""
    lines, _ = strip_solutions(teacher_source.splitlines(), MARKDOWN_STUB)
    keys = [k for k in map(_line_key, lines) if k]
    anchor = next((k for k in keys if k not in _NOT_AN_ANSWER), None)
    return set(keys), anchor


def written_answered(teacher_source: str, submitted_source: str) -> bool:
    """Whether ``submitted_source`` (a submitted written-answer cell) holds writing of the student's own:
    a line that is in neither the question as handed out nor the placeholder ``YOUR ANSWER HERE``.

    Only text counts, never code: the cell is read from the submitted file, nothing of it runs. A
    question left as handed out, with or without its placeholder, is not an answer; a student who
    deleted the question and kept only their answer has answered.
    """
    given, _ = _handed_out_lines(teacher_source)
    return any(k and k not in given and k not in _NOT_AN_ANSWER for k in map(_line_key, submitted_source.splitlines()))


def written_status(teacher: TeacherNotebook, cells: list[dict[str, Any]]) -> dict[str, str]:
    """``{written answer: "answered" | "missing"}`` for a submission whose cells are ``cells``.

    Read from the submitted file, outside any kernel. The student's cell is found by ``grade_id``,
    then cell id (:func:`match_cells`), then, for a cell that lost both, as the one markdown cell not
    matched otherwise that still holds the question's first line. A cell that is not there, that
    is no longer markdown, or that holds nothing but the question and the placeholder is ``missing``.
    """
    if not teacher.written:
        return {}
    matched = match_cells(teacher, cells)
    used = set(matched.values())
    out: dict[str, str] = {}
    for w in teacher.written:
        source = cell_source(teacher.cells[w.cell])
        s = matched.get(w.cell)
        if s is None:
            _, anchor = _handed_out_lines(source)
            hits = [k for k, c in enumerate(cells) if k not in used and c.get("cell_type") == "markdown"
                    and anchor is not None and anchor in map(_line_key, cell_source(c).splitlines())]
            s = hits[0] if len(hits) == 1 else None
        ok = s is not None and cells[s].get("cell_type") in ("markdown", "raw") and \
            written_answered(source, cell_source(cells[s]))
        out[w.name] = "answered" if ok else "missing"
    return out


def tag_notebook(nb: dict[str, Any], points: float = 1) -> int:
    """Add nbgrader metadata to a marker-only notebook, in place; return the number of cells tagged.

    Every code cell with a ``### BEGIN SOLUTION`` block becomes an autograded answer
    (``ex<k>_answer``) and the next code cell its check (``ex<k>``, ``points``), the course's
    skeleton; a markdown cell with one (a written answer) becomes a manually graded answer
    (``written<m>``, 0 points: the teacher reads it). Cells that already carry nbgrader metadata are left as they are, so a teacher's
    points survive. Only ``metadata`` changes. ``python -m lasegtut.classroom.exercises tag NB.ipynb ...``
    does it to files.
    """
    cells = nb["cells"]
    k = n = 0
    answers: list[int] = []
    written = 0
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "markdown" and BEGIN_SOLUTION in cell_source(cell):
            written += 1  # a written answer: nbgrader's "manually graded answer" (0 points: set your own)
            if not nbgrader_meta(cell):
                cell.setdefault("metadata", {})["nbgrader"] = {
                    "grade": True, "grade_id": f"written{written}", "locked": False, "points": 0,
                    "schema_version": 3, "solution": True, "task": False}
                n += 1
            continue
        if cell.get("cell_type") != "code":
            continue
        if BEGIN_SOLUTION in cell_source(cell):
            answers.append(i)
            continue
        if not answers:
            continue
        k += 1
        for j, a in enumerate(answers):
            if not nbgrader_meta(cells[a]):
                cells[a].setdefault("metadata", {})["nbgrader"] = {
                    "grade": False, "grade_id": f"ex{k}_answer" + (str(j + 1) if j else ""), "locked": False,
                    "schema_version": 3, "solution": True, "task": False}
                n += 1
        if not nbgrader_meta(cell):
            cell.setdefault("metadata", {})["nbgrader"] = {
                "grade": True, "grade_id": f"ex{k}", "locked": True, "points": points, "schema_version": 3,
                "solution": False, "task": False}
            n += 1
        answers = []
    return n


def _main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "tag":
        print("usage: python -m lasegtut.classroom.exercises tag NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for name in args[1:]:
        path = Path(name)
        try:
            nb = read_notebook(path)
            n = tag_notebook(nb)
            if n:  # nbformat's own layout, so that only the metadata lines change
                path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                encoding="utf-8")
        except (LasegError, OSError) as e:
            print(f"lasegtut.classroom.exercises: error: {e}", file=sys.stderr)
            return 2
        print(f"{path.name}: {n} cells tagged")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
