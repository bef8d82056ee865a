"""Student versions of the course notebooks: solutions removed, outputs cleared, checks kept.

The course notebooks are the *solution* (teacher) versions. In each exercise the code a student
must write sits between two marker lines, the nbgrader convention::

    def left_atrium_volume(mask, spacing):
        ### BEGIN SOLUTION
        return mask.sum() * np.prod(spacing) / 1000
        ### END SOLUTION

:func:`build_student_notebooks` (``lasegtut assignments build OUT_DIR``) writes a copy of every
notebook in which each such block becomes, at the indentation of the ``BEGIN`` line::

        # YOUR CODE HERE
        raise NotImplementedError()

(a block in a markdown cell becomes ``YOUR ANSWER HERE``). Every output, execution count and
saved widget state is cleared, and every other cell - in particular the ``assert`` check cells
that follow each exercise - is kept as it is. Teachers who use nbgrader can take the source
notebooks as they are: nbgrader's ``ClearSolutions`` uses the same markers.

Notebooks are read and written as plain JSON (nbformat 4), so this module needs no dependency.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import LasegError

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)

# A comment line that looks like a marker but is not exactly one (``##BEGIN SOLUTION``, ``### begin solution``):
# nbgrader would not see it either, so the solution would reach the students. It is an error.
_NEAR_MISS_RE = re.compile(r"^\s*#.*\b(BEGIN|END)\s*SOLUTION\b", re.IGNORECASE)


def default_source_dir() -> Path:
    """The course's ``notebooks/`` folder (next to the ``lasegtut`` package in a source checkout)."""
    import lasegtut

    return Path(lasegtut.__file__).resolve().parents[1] / "notebooks"


def _source_lines(cell: dict[str, Any]) -> list[str]:
    """A cell's source as a list of lines without their line endings."""
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(src)
    return src.splitlines()


def _to_source(lines: list[str]) -> list[str]:
    """Lines back to nbformat's list-of-strings form (every line but the last ends in a newline)."""
    return [line + "\n" for line in lines[:-1]] + lines[-1:]


def strip_solutions(lines: list[str], stub: tuple[str, ...] = CODE_STUB, where: str = "cell") -> tuple[list[str], int]:
    """Replace each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of ``lines`` by ``stub``.

    A marker is a line that is exactly the marker once stripped of surrounding blanks (nbgrader's
    rule); the stub lines take the indentation of the ``BEGIN`` line. Returns the new lines and the
    number of blocks replaced. Raises :class:`LasegError` naming ``where`` for an ``END`` without
    ``BEGIN``, a ``BEGIN`` inside a block, a block that is never closed, or a comment that looks
    like a marker but is not exactly one (the solution would reach the students).
    """
    out: list[str] = []
    n_blocks = 0
    inside = False
    begin_line = 0
    for i, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise LasegError(f"{where}: '{BEGIN_SOLUTION}' on line {i} inside the block opened on line "
                                 f"{begin_line}; close it with '{END_SOLUTION}' first")
            inside, begin_line = True, i
            n_blocks += 1
            indent = line[:line.find(BEGIN_SOLUTION)]
            out.extend(indent + s for s in stub)
        elif marker == END_SOLUTION:
            if not inside:
                raise LasegError(f"{where}: '{END_SOLUTION}' on line {i} without a '{BEGIN_SOLUTION}' before it")
            inside = False
        elif _NEAR_MISS_RE.match(line):
            raise LasegError(f"{where}: line {i} {marker!r} looks like a solution marker but is not exactly "
                             f"'{BEGIN_SOLUTION}' or '{END_SOLUTION}'")
        elif not inside:
            out.append(line)
    if inside:
        raise LasegError(f"{where}: '{BEGIN_SOLUTION}' on line {begin_line} is never closed by '{END_SOLUTION}'")
    return out, n_blocks


def student_notebook(nb: dict[str, Any], name: str = "notebook") -> tuple[dict[str, Any], int]:
    """The student version of a notebook (an nbformat-4 dict, not modified): returns it and its number of exercises.

    Solution blocks are replaced (see :func:`strip_solutions`), outputs, execution counts and
    saved widget state are cleared; every cell is kept, in order.
    """
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise LasegError(f"{name} is not a Jupyter notebook (no list of cells)")
    nb = json.loads(json.dumps(nb))  # deep copy
    n_total = 0
    for k, cell in enumerate(nb["cells"], start=1):
        _check_cell(cell, f"{name}, cell {k}")
        kind = cell.get("cell_type")
        if kind in ("code", "markdown"):
            lines = _source_lines(cell)
            stub = CODE_STUB if kind == "code" else MARKDOWN_STUB
            new, n = strip_solutions(lines, stub, where=f"{name}, cell {k} ({kind})")
            if n:
                cell["source"] = _to_source(new)
                n_total += n
        if kind == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        md = cell.get("metadata", {})
        for key in ("execution", "collapsed", "scrolled"):
            md.pop(key, None)
    if not isinstance(nb.get("metadata", {}), dict):
        raise LasegError(f"{name}: the notebook's metadata is not a JSON object")
    nb.get("metadata", {}).pop("widgets", None)
    return nb, n_total


def _check_cell(cell: Any, where: str) -> None:
    """A cell as nbformat 4 has it, or a one-line LasegError: a JSON object whose ``source`` is a
    string or a list of strings and whose ``metadata``, if any, is an object."""
    if not isinstance(cell, dict):
        raise LasegError(f"{where} is not a JSON object but {type(cell).__name__}")
    src = cell.get("source", "")
    if not (isinstance(src, str) or (isinstance(src, list) and all(isinstance(x, str) for x in src))):
        raise LasegError(f"{where}: its source is neither text nor a list of lines")
    if not isinstance(cell.get("metadata", {}), dict):
        raise LasegError(f"{where}: its metadata is not a JSON object")


def _notebooks_in(source: Path) -> list[Path]:
    return sorted(p for p in source.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))


def build_student_notebooks(source: str | os.PathLike | None, out_dir: str | os.PathLike,
                            force: bool = False) -> list[Path]:
    """Write a student copy of every notebook of ``source`` into ``out_dir``; return the written paths.

    ``source`` defaults to the course's ``notebooks/`` folder. Every notebook is checked before
    anything is written, so a bad marker leaves ``out_dir`` untouched. Existing files are only
    replaced with ``force=True``, and ``out_dir`` may never be the source folder itself.
    """
    src = Path(source).expanduser() if source is not None else default_source_dir()
    if not src.is_dir():
        raise LasegError(f"no notebook folder at {src}")
    paths = _notebooks_in(src)
    if not paths:
        raise LasegError(f"no notebooks (*.ipynb) found in {src}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise LasegError(f"{out} exists and is not a folder")
    if out.is_dir() and out.resolve() == src.resolve():
        raise LasegError(f"the output folder is the source folder {src}: that would overwrite the solutions")

    students: list[tuple[Path, dict[str, Any]]] = []
    for p in paths:
        try:
            nb = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise LasegError(f"cannot read {p.name} as a notebook: {str(e).splitlines()[0]}") from None
        student, _ = student_notebook(nb, name=p.name)
        students.append((out / p.name, student))

    existing = [t.name for t, _ in students if t.exists()]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise LasegError(f"{out} already holds {shown}; use --force to overwrite")

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for target, student in students:
        text = json.dumps(student, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
