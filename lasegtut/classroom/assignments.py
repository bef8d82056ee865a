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

(a block in a markdown or raw cell becomes ``YOUR ANSWER HERE``), and each nbgrader hidden-test
block (``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``) is removed. Every output, execution
count and saved widget state is cleared, and every other cell - in particular the ``assert`` check
cells that follow each exercise - is kept as it is. Teachers who use nbgrader can take the source
notebooks as they are: nbgrader's ``ClearSolutions`` uses the same markers.

Nothing of a solution may reach a student copy (issue 11, section 5), so the build refuses
a line that mentions a marker without being exactly one (a marker after code on the same line,
hidden behind an invisible character such as a zero-width space, or misspelt), keeps only known,
harmless metadata (nbgrader's fields, tags, display flags; nothing else of the cell's or the
notebook's), keeps only the attachments that the student version of a cell still shows, and
finally checks the copy for any marker text or solution line left in metadata or attachments.

Two editions come out of the same teacher notebooks:

- the **class** edition (default; ``lasegtut assignments build OUT``): no answers at all, every
  output cleared, for a class that is graded;
- the **self-study** edition (``--self-study``; committed in ``student/``, what the badges open): the
  same stubs, but the lesson cells keep their outputs (the figures a reader learns from; the cells
  from the first exercise on are cleared) and each answered cell is followed by a model answer
  collapsed in a ``<details>`` block, one click away and out of sight until the student asks.

Notebooks are read and written as plain JSON (nbformat 4), so this module needs no dependency.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from ..errors import LasegError
from ..paths import NOTEBOOKS

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)
#: nbgrader's rule for a grade_id.
GRADE_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")

# Text that names a marker: a comment mark, then BEGIN/END SOLUTION or HIDDEN TESTS, in any case.
# A line with it that is not exactly a marker is refused: nbgrader sees a marker wherever the
# marker text occurs in a line, lasegtut only in a line that is the marker, so the two tools would
# disagree and one of them would hand out the solution.
_MARKER_TEXT_RE = re.compile(r"#.*\b(BEGIN|END)[\s_-]*(SOLUTION|HIDDEN[\s_-]*TESTS?)\b", re.IGNORECASE)
_TAG_RE = re.compile(r"^[A-Za-z0-9_.:=-]{1,100}$")
_ATTACHMENT_REF_RE = re.compile(r"attachment:([^\s)\"'>]+)")
_NBGRADER_FIELDS: dict[str, tuple[type, ...]] = {
    "grade": (bool,), "solution": (bool,), "locked": (bool,), "task": (bool,), "points": (int, float),
    "grade_id": (str,), "schema_version": (int,), "cell_type": (str,)}


def visible_text(text: str) -> str:
    """``text`` without invisible format characters (zero-width space, joiners, BOM...), NFKC-normalised."""
    return unicodedata.normalize("NFKC", "".join(ch for ch in text if unicodedata.category(ch) != "Cf"))


def default_source_dir() -> Path:
    """The course's ``notebooks/`` folder (next to the ``lasegtut`` package in a source checkout:
    :data:`lasegtut.paths.NOTEBOOKS`)."""
    return NOTEBOOKS


def _source_lines(cell: dict[str, Any]) -> list[str]:
    """A cell's source (checked by :func:`_check_cell`) as a list of lines without their line endings."""
    src = cell.get("source", "")
    return ("".join(src) if isinstance(src, list) else src).splitlines()


def _to_source(lines: list[str]) -> list[str]:
    """Lines back to nbformat's list-of-strings form (every line but the last ends in a newline)."""
    return [line + "\n" for line in lines[:-1]] + lines[-1:]


def _refuse_marker_lookalike(line: str, i: int, where: str) -> None:
    """Raise if ``line`` mentions a marker without being exactly one (see ``_MARKER_TEXT_RE``)."""
    shown = visible_text(line)
    if not _MARKER_TEXT_RE.search(shown):
        return
    marker = shown.strip()
    if shown != line:
        why = "it contains invisible characters (e.g. a zero-width space); retype it"
    elif not marker.startswith("#"):
        why = "a marker must be alone on its line, without code before it"
    else:
        why = "a marker is a line that is exactly the marker"
    raise LasegError(f"{where}: line {i} {marker[:60]!r} looks like a solution marker but is not exactly "
                     f"'{BEGIN_SOLUTION}' or '{END_SOLUTION}' ({why})")


def strip_solutions(lines: list[str], stub: tuple[str, ...] = CODE_STUB, where: str = "cell") -> tuple[list[str], int]:
    """Replace each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of ``lines`` by ``stub``.

    A marker is a line that is exactly the marker once stripped of surrounding blanks; the stub
    lines take the indentation of the ``BEGIN`` line. nbgrader's hidden-test blocks
    (``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``) are removed with their markers.
    Returns the new lines and the number of solution blocks replaced. Raises :class:`LasegError`
    naming ``where`` for an ``END`` without ``BEGIN``, a ``BEGIN`` inside a block, a block that is
    never closed, or a line that mentions a marker without being exactly one (a near miss, code
    before the marker, an invisible character): the solution would reach the students.
    """
    pairs = {BEGIN_SOLUTION: END_SOLUTION, BEGIN_HIDDEN_TESTS: END_HIDDEN_TESTS}
    out: list[str] = []
    n_blocks = 0
    open_marker: str | None = None
    begin_line = 0
    for i, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker in pairs:
            if open_marker is not None:
                raise LasegError(f"{where}: '{marker}' on line {i} inside the block opened on line "
                                 f"{begin_line}; close it with '{pairs[open_marker]}' first")
            open_marker, begin_line = marker, i
            if marker == BEGIN_SOLUTION:
                n_blocks += 1
                indent = line[:line.find(BEGIN_SOLUTION)]
                out.extend(indent + s for s in stub)
        elif marker in pairs.values():
            if open_marker is None or pairs[open_marker] != marker:
                begin = next(b for b, e in pairs.items() if e == marker)
                raise LasegError(f"{where}: '{marker}' on line {i} without a '{begin}' before it")
            open_marker = None
        else:
            _refuse_marker_lookalike(line, i, where)
            if open_marker is None:
                out.append(line)
    if open_marker is not None:
        raise LasegError(f"{where}: '{open_marker}' on line {begin_line} is never closed by '{pairs[open_marker]}'")
    return out, n_blocks


def _solution_lines(lines: list[str]) -> set[str]:
    """The stripped lines inside the solution blocks of a cell (for the leak check)."""
    found, inside = set(), False
    for line in lines:
        m = line.strip()
        if m == BEGIN_SOLUTION:
            inside = True
        elif m == END_SOLUTION:
            inside = False
        elif inside and len(m) >= 8:
            found.add(m)
    return found


def _clean_cell_metadata(md: Any) -> dict[str, Any]:
    """Only the metadata a student copy needs: nbgrader's fields, tags and display flags."""
    if not isinstance(md, dict):
        return {}
    out: dict[str, Any] = {}
    nbg = md.get("nbgrader")
    if isinstance(nbg, dict):
        clean = {k: v for k, v in nbg.items() if k in _NBGRADER_FIELDS and isinstance(v, _NBGRADER_FIELDS[k])
                 and not (k == "grade_id" and not GRADE_ID_RE.match(v))
                 and not (k == "cell_type" and v not in ("code", "markdown", "raw"))}
        if clean:
            out["nbgrader"] = clean
    tags = md.get("tags")
    if isinstance(tags, list):
        kept = [t for t in tags if isinstance(t, str) and _TAG_RE.match(t)]
        if kept:
            out["tags"] = kept
    for key in ("editable", "deletable"):
        if isinstance(md.get(key), bool):
            out[key] = md[key]
    jup = md.get("jupyter")
    if isinstance(jup, dict):
        flags = {k: v for k, v in jup.items() if k in ("source_hidden", "outputs_hidden") and isinstance(v, bool)}
        if flags:
            out["jupyter"] = flags
    return out


def _attachment_texts(attachments: dict[str, Any]) -> list[str]:
    """The text a reader could get out of a cell's attachments (decoded where they are base64)."""
    texts = []
    for bundle in attachments.values():
        if not isinstance(bundle, dict):
            continue
        for mime, data in bundle.items():
            data = "".join(data) if isinstance(data, list) else str(data)
            texts.append(data)
            if not (mime.startswith("text/") or mime.endswith(("json", "xml", "javascript"))):
                continue
            try:
                texts.append(base64.b64decode(data, validate=False).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                pass
    return texts


def _check_no_leak(cell: dict[str, Any], solution: set[str], where: str) -> None:
    """Refuse a student cell whose metadata or attachments still carry marker text or a solution line."""
    blobs = [json.dumps(cell.get("metadata", {}), ensure_ascii=False)] + _attachment_texts(cell.get("attachments", {}))
    blobs += [json.dumps(o, ensure_ascii=False) for o in cell.get("outputs", [])]
    for blob in blobs:
        shown = visible_text(blob)
        if _MARKER_TEXT_RE.search(shown) or any(line in shown for line in solution):
            raise LasegError(f"{where}: its metadata or attachments would show solution text to the students")


#: The summary line of a collapsed model answer in the self-study edition.
ANSWER_SUMMARY = "Model answer (try it yourself first)"
#: Output types a self-study copy keeps, and the MIME types of their data it keeps: text, images and the
#: HTML of the course's slice animations (:func:`lasegtut.plots.animation_html`); no widget views (their
#: saved state is dropped, so they would show as errors), no bare JavaScript.
_KEPT_OUTPUTS = ("stream", "display_data", "execute_result")
_KEPT_MIME = ("text/plain", "text/html", "image/png", "image/jpeg", "image/svg+xml")


def _solution_blocks(lines: list[str]) -> list[list[str]]:
    """The lines inside each ``### BEGIN SOLUTION`` block of a (checked) cell, dedented."""
    blocks: list[list[str]] = []
    inside = False
    for line in lines:
        m = line.strip()
        if m == BEGIN_SOLUTION:
            blocks.append([])
            inside = True
        elif m == END_SOLUTION:
            inside = False
        elif inside:
            blocks[-1].append(line)
    out = []
    for block in blocks:
        indent = min((len(b) - len(b.lstrip()) for b in block if b.strip()), default=0)
        out.append([b[indent:] for b in block])
    return out


def answer_cell(kind: str, blocks: list[list[str]], cell_id: str | None) -> dict[str, Any]:
    """A markdown cell holding ``blocks`` (a cell's solution) in a collapsed ``<details>`` block."""
    parts = []
    for block in blocks:
        body = "\n".join(block).strip("\n")
        parts.append(f"```python\n{body}\n```" if kind == "code" else body)
    text = f"<details>\n<summary>{ANSWER_SUMMARY}</summary>\n\n" + "\n\n".join(parts) + "\n\n</details>"
    cell: dict[str, Any] = {"cell_type": "markdown", "metadata": {"tags": ["model-answer"]},
                            "source": _to_source(text.splitlines())}
    if cell_id:
        cell["id"] = f"{cell_id}-answer"[:64]
    return cell


def _lesson_outputs(outputs: Any) -> list[dict[str, Any]]:
    """The outputs of a lesson cell a self-study copy keeps: text, images; no widgets, HTML or errors."""
    kept = []
    for o in outputs if isinstance(outputs, list) else []:
        if not isinstance(o, dict) or o.get("output_type") not in _KEPT_OUTPUTS:
            continue
        if o["output_type"] == "stream":
            if o.get("name") in ("stdout", "stderr") and isinstance(o.get("text"), (str, list)):
                kept.append({"output_type": "stream", "name": o["name"], "text": json.loads(json.dumps(o["text"]))})
            continue
        data = o.get("data")
        if not isinstance(data, dict) or any("widget" in m for m in data):  # a widget's text is only its repr
            continue
        data = {m: json.loads(json.dumps(v)) for m, v in data.items() if m in _KEPT_MIME}
        if not data:
            continue
        out = {"output_type": o["output_type"], "data": data, "metadata": {}}
        if o["output_type"] == "execute_result":
            out["execution_count"] = None
        kept.append(out)
    return kept


def student_notebook(nb: dict[str, Any], name: str = "notebook",
                     self_study: bool = False) -> tuple[dict[str, Any], int]:
    """The student version of a notebook (an nbformat-4 dict, not modified): returns it and its number of exercises.

    Solution blocks are replaced and hidden tests removed (see :func:`strip_solutions`) in code,
    markdown and raw cells; outputs, execution counts, saved widget state, unknown metadata and
    attachments the student version no longer shows are dropped; every cell is kept, in order.
    ``self_study=True`` (the committed student edition): the code cells before the first exercise
    keep their text and image outputs, and each cell that had a solution is followed by a markdown
    cell with that solution in a collapsed ``<details>`` block.
    """
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise LasegError(f"{name} is not a Jupyter notebook (no list of cells)")
    solution: set[str] = set()
    students = []
    answers: list[int] = []  # indices in `students` of the model-answer cells (exempt from the leak check)
    n_total = 0
    lesson = True  # before the first cell with a solution
    for k, cell in enumerate(nb["cells"], start=1):
        _check_cell(cell, f"{name}, cell {k}")
        kind = cell.get("cell_type")
        where = f"{name}, cell {k} ({kind})"
        if kind not in ("code", "markdown", "raw"):
            raise LasegError(f"{name}, cell {k}: unknown cell type {kind!r}")
        lines = _source_lines(cell)
        solution |= _solution_lines(lines)
        new, n = strip_solutions(lines, CODE_STUB if kind == "code" else MARKDOWN_STUB, where=where)
        n_total += n
        source = _to_source(new) if new != lines else json.loads(json.dumps(cell.get("source", "")))
        out: dict[str, Any] = {"cell_type": kind, "metadata": _clean_cell_metadata(cell.get("metadata")),
                               "source": source}
        if isinstance(cell.get("id"), str):
            out["id"] = cell["id"]
        lesson = lesson and n == 0
        if kind == "code":
            out.update(outputs=_lesson_outputs(cell.get("outputs")) if self_study and lesson else [],
                       execution_count=None)
        attachments = cell.get("attachments")
        if kind != "code" and isinstance(attachments, dict):
            shown = set(_ATTACHMENT_REF_RE.findall("\n".join(new)))
            kept = {a: v for a, v in attachments.items() if a in shown}
            if kept:
                out["attachments"] = json.loads(json.dumps(kept))
        students.append(out)
        if self_study and n:
            answers.append(len(students))
            students.append(answer_cell(kind, _solution_blocks(lines), cell.get("id") if isinstance(cell.get("id"), str) else None))
    for k, cell in enumerate(students, start=1):
        if k - 1 not in answers:
            _check_no_leak(cell, solution, f"{name}, cell {k}")
    if not isinstance(nb.get("metadata", {}), dict):
        raise LasegError(f"{name}: the notebook's metadata is not a JSON object")
    md = nb.get("metadata", {})
    student = {"cells": students,
               "metadata": {k: json.loads(json.dumps(md[k])) for k in ("kernelspec", "language_info") if k in md},
               "nbformat": nb.get("nbformat", 4), "nbformat_minor": nb.get("nbformat_minor", 5)}
    _check_no_leak({"metadata": student["metadata"]}, solution, f"{name}, notebook metadata")
    return student, n_total


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
                            force: bool = False, self_study: bool = False) -> list[Path]:
    """Write a student copy of every notebook of ``source`` into ``out_dir``; return the written paths.

    ``self_study=True`` writes the self-study edition (lesson outputs kept, model answers collapsed:
    see :func:`student_notebook`), the one committed in ``student/``.

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
        student, _ = student_notebook(nb, name=p.name, self_study=self_study)
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
