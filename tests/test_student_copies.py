"""An unanswered exercise always shows as *missing*, never as *wrong*: every exercise of every course notebook.

In a student copy each solution block is a stub that raises ``NotImplementedError``. Grading counts the check
cell after each exercise: ``NotImplementedError`` or ``NameError`` there means *missing*, ``AssertionError``
means *wrong*. A missing answer reads as wrong when the check cell finds an old value under the answer's name
(bound earlier in the notebook, e.g. by a loop), or when the check cell does not look at the answer at all.

``test_every_exercise_shows_as_missing`` proves the rule for every exercise without running the notebooks, from
the cells' Python syntax: what the student copy leaves unbound, and what each check cell reads.
``test_student_copy_run_shows_every_exercise_as_missing`` runs whole student copies (the quick notebooks) and
compares the errors each exercise and check cell really raise with that analysis.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import NOTEBOOKS
from lasegtut.classroom.assignments import BEGIN_SOLUTION, MARKDOWN_STUB, student_notebook

MISSING = {"NameError", "NotImplementedError"}


def _src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _parse(source: str) -> ast.Module:
    """Python of a cell, with IPython's ``!shell`` and ``%magic`` lines turned into ``pass``."""
    lines = []
    for line in source.splitlines():
        body = line.lstrip()
        lines.append(line[: len(line) - len(body)] + "pass" if body.startswith(("!", "%")) else line)
    return ast.parse("\n".join(lines))


def _targets(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def bound(stmts: list[ast.stmt]) -> set[str]:
    """Names that module-level statements bind (function bodies excluded, blocks included)."""
    out: set[str] = set()
    for s in stmts:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(s.name)
            continue
        if isinstance(s, (ast.Import, ast.ImportFrom)):
            for a in s.names:
                if a.name == "*":
                    raise AssertionError("a star import hides which names a cell binds")
                out.add(a.asname or a.name.split(".")[0])
        elif isinstance(s, ast.Assign):
            for t in s.targets:
                out |= _targets(t)
        elif isinstance(s, (ast.AnnAssign, ast.AugAssign)):
            out |= _targets(s.target)
        elif isinstance(s, (ast.For, ast.AsyncFor)):
            out |= _targets(s.target)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            out |= {n for item in s.items if item.optional_vars is not None for n in _targets(item.optional_vars)}
        out |= {n.target.id for n in ast.walk(s) if isinstance(n, ast.NamedExpr)}
        for attr in ("body", "orelse", "finalbody"):
            inner = getattr(s, attr, None)
            if isinstance(inner, list) and not isinstance(s, (ast.FunctionDef, ast.ClassDef)):
                out |= bound(inner)
        for h in getattr(s, "handlers", []):
            out |= ({h.name} if h.name else set()) | bound(h.body)
    return out


def reads(node: ast.AST) -> set[str]:
    """Names read from the enclosing (module) scope, roughly: every name loaded, less the names that are local
    to a comprehension, a lambda or a function inside ``node``."""
    local: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.comprehension):
            local |= _targets(n.target)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local |= {a.arg for a in ast.walk(n.args) if isinstance(a, ast.arg)}
            if not isinstance(n, ast.Lambda):
                local |= bound(n.body)
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - local


def _raises_not_implemented(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Raise) and n.exc is not None and "NotImplementedError" in ast.unparse(n.exc)
               for n in ast.walk(node))


@dataclass
class Exercise:
    notebook: str
    cell: int                 # index of the exercise cell
    check: int                # index of its check cell (the next code cell)
    stubs: set[str]           # functions whose body the student copy replaces by a stub
    fails_at: int | None      # index of the exercise cell's first top-level statement that raises, if any
    missing: set[str]         # names the teacher binds in the exercise cell and the student copy leaves unbound
    check_reads: set[str] = field(default_factory=set)


def analyse(path: Path) -> tuple[list[Exercise], list[str]]:
    """The exercises of a notebook, and every reason an unanswered one could be graded *wrong* (empty: none)."""
    teacher = json.loads(path.read_text(encoding="utf-8"))
    student, _ = student_notebook(teacher, name=path.name)
    cells_t, cells_s = teacher["cells"], student["cells"]
    problems: list[str] = []
    exercises: list[Exercise] = []
    bound_before: set[str] = set()
    for i, (ct, cs) in enumerate(zip(cells_t, cells_s)):
        if ct["cell_type"] != "code":
            continue
        tree_t = _parse(_src(ct))
        if BEGIN_SOLUTION in _src(ct):
            tree_s = _parse(_src(cs))
            stubs = {s.name for s in tree_s.body if isinstance(s, ast.FunctionDef) and _raises_not_implemented(s)}
            fails_at = next((k for k, s in enumerate(tree_s.body)
                             if (isinstance(s, ast.Raise) and _raises_not_implemented(s))
                             or (not isinstance(s, ast.FunctionDef) and reads(s) & stubs)), None)
            before = bound(tree_s.body[:fails_at] if fails_at is not None else tree_s.body)
            missing = bound(tree_t.body) - before if fails_at is not None else set()
            check = next((k for k in range(i + 1, len(cells_t)) if cells_t[k]["cell_type"] == "code"), None)
            ex = Exercise(path.name, i, check if check is not None else -1, stubs, fails_at, missing)
            where = f"{path.name}, exercise in cell {i + 1}"
            if check is None:
                problems.append(f"{where}: no check cell after it")
            else:
                tree_c = _parse(_src(cells_t[check]))
                ex.check_reads = reads(tree_c) - bound(tree_c.body)  # what it reads from earlier cells
                stale = ex.missing & bound_before & ex.check_reads
                if stale:
                    problems.append(f"{where}: the check reads {sorted(stale)}, already set before the exercise: "
                                    "an unanswered exercise would be graded wrong, not missing")
                if not ex.check_reads & (ex.missing | ex.stubs):
                    problems.append(f"{where}: the check cell reads none of the answer's names "
                                    f"{sorted(ex.missing | ex.stubs)}: an unanswered exercise could pass")
            if fails_at is None and not stubs:
                problems.append(f"{where}: its student copy raises nothing")
            for other in exercises:  # one unanswered exercise must not make another one fail
                used = ((reads(tree_t) - bound(tree_t.body)) | ex.check_reads) & (other.missing | other.stubs)
                if used:
                    problems.append(f"{where} uses {sorted(used)} from the exercise in cell {other.cell + 1}")
            exercises.append(ex)
        bound_before |= bound(tree_t.body)
    for ct, cs in zip(cells_t, cells_s):  # written answers: the student copy asks for them
        if ct["cell_type"] == "markdown" and BEGIN_SOLUTION in _src(ct):
            assert MARKDOWN_STUB[0] in _src(cs), f"{path.name}: a written answer was not replaced"
    return exercises, problems


def course_notebooks() -> list[Path]:
    nbs = sorted(NOTEBOOKS.glob("0*.ipynb"))
    if not nbs:
        pytest.skip("notebooks/ holds no course notebooks")
    return nbs


def test_every_exercise_shows_as_missing():
    total = 0
    problems: list[str] = []
    for path in course_notebooks():
        exercises, found = analyse(path)
        assert exercises, f"{path.name} has no exercise"
        total += len(exercises)
        problems += found
    assert not problems, "\n".join(problems)
    assert total >= 7


def test_the_analysis_catches_a_stale_answer(tmp_path):
    """The old bug of notebook 07: the answer's name was set earlier by a loop, so the check found a stale value."""
    cells = [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "for index in range(3):\n    pass"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "### BEGIN SOLUTION\nindex = 7\n### END SOLUTION\nprint(index)"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": "assert index == 7"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": "assert True"},
    ]
    nb = tmp_path / "09_bad.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    _, problems = analyse(nb)
    assert any("cell 2" in p and "already set" in p for p in problems), problems
    assert any("cell 4" in p and "reads none" in p for p in problems), problems


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_anatomy.ipynb", "07_volume_measurement.ipynb"])
def test_student_copy_run_shows_every_exercise_as_missing(tmp_path, name):
    """Run a whole student copy, errors allowed: each exercise cell stops where the analysis says, each check
    cell fails with NameError or NotImplementedError, and no other cell fails."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    path = NOTEBOOKS / name
    if not path.exists():
        pytest.skip(f"{name} is not in the course")
    exercises, problems = analyse(path)
    assert not problems
    student, _ = student_notebook(json.loads(path.read_text(encoding="utf-8")), name=name)
    nb = nbformat.reads(json.dumps(student), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = {i: o["ename"] for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"}
    expected_cells = set()
    for ex in exercises:
        if ex.fails_at is not None:
            assert errors.get(ex.cell) == "NotImplementedError", (ex, errors)
            expected_cells.add(ex.cell)
        assert errors.get(ex.check) in MISSING, f"{name}: check cell {ex.check + 1} raised {errors.get(ex.check)}"
        expected_cells.add(ex.check)
    assert set(errors) == expected_cells, f"{name}: unexpected errors in cells {sorted(set(errors) - expected_cells)}"
