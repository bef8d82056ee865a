"""Tests of `lasegtut assignments build` (student copies), of the notebooks' shared skeleton, and of the pins.

That the *solution* notebooks pass their own check cells is proven by nbval in CI
(`pytest --nbval-lax notebooks/` executes every notebook top to bottom; an assert that fails is a
failed test). Here we test the student copies: no solution text left, checks kept, and running
one stops at the first exercise with NotImplementedError.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from conftest import NOTEBOOKS
from lasegtut.classroom.assignments import build_student_notebooks, strip_solutions, student_notebook
from lasegtut.cli import main
from lasegtut.errors import LasegError

N_COURSE_NOTEBOOKS = 7

SOLUTION_SRC = """def volume_ml(mask, spacing):
    \"\"\"Volume of a binary mask in mL.\"\"\"
    ### BEGIN SOLUTION
    voxel_mm3 = spacing[0] * spacing[1] * spacing[2]
    return float(mask.sum()) * voxel_mm3 / 1000.0
    ### END SOLUTION

### BEGIN SOLUTION
answer = 42
### END SOLUTION
print("done")"""

CHECK_SRC = "assert volume_ml(__import__('numpy').ones((10, 10, 10)), (1, 1, 1)) == 1.0\nassert answer == 42"


def cell(kind: str, source: str, **extra) -> dict:
    c = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
    if kind == "code":
        c.update(execution_count=extra.pop("execution_count", 3), outputs=extra.pop("outputs", []))
    c.update(extra)
    return c


def write_nb(path: Path, cells: list[dict]) -> Path:
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"},
                                       "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}},
          "nbformat": 4, "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def src(c: dict) -> str:
    s = c["source"]
    return "".join(s) if isinstance(s, list) else s


@pytest.fixture
def course(tmp_path) -> Path:
    out = [{"output_type": "stream", "name": "stdout", "text": ["done\n"]}]
    write_nb(tmp_path / "src" / "01_demo.ipynb", [
        cell("markdown", "# 01 · Demo\n\nExercise: write `volume_ml`."),
        cell("code", "import numpy as np\nprint(np.pi)", execution_count=1,
             outputs=[{"output_type": "stream", "name": "stdout", "text": ["3.14\n"]}]),
        cell("code", SOLUTION_SRC, execution_count=2, outputs=out),
        cell("code", CHECK_SRC, execution_count=3),
        cell("markdown", "Explain:\n### BEGIN SOLUTION\nBecause the voxels are 1 mm^3.\n### END SOLUTION"),
    ])
    write_nb(tmp_path / "src" / "02_other.ipynb", [cell("code", "x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION")])
    return tmp_path / "src"


# ----------------------------------------------------------------------------- unit tests
def test_solution_blocks_replaced_with_indentation(course, tmp_path):
    written = build_student_notebooks(course, tmp_path / "student")
    assert [p.name for p in written] == ["01_demo.ipynb", "02_other.ipynb"]
    nb = json.loads((tmp_path / "student" / "01_demo.ipynb").read_text())
    code = src(nb["cells"][2])
    assert code.splitlines() == [
        "def volume_ml(mask, spacing):",
        '    """Volume of a binary mask in mL."""',
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
        "",
        "# YOUR CODE HERE",
        "raise NotImplementedError()",
        'print("done")',
    ]
    assert "voxel_mm3" not in code and "42" not in code and "SOLUTION" not in code
    compile(code, "student-cell", "exec")  # the student's stub is valid Python
    assert src(nb["cells"][4]) == "Explain:\nYOUR ANSWER HERE"


def test_outputs_cleared_checks_kept(course, tmp_path):
    build_student_notebooks(course, tmp_path / "student")
    before = json.loads((course / "01_demo.ipynb").read_text())
    after = json.loads((tmp_path / "student" / "01_demo.ipynb").read_text())
    assert len(after["cells"]) == len(before["cells"])
    for c in after["cells"]:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None
    assert src(after["cells"][3]) == CHECK_SRC  # the check cell, untouched
    assert src(after["cells"][1]) == src(before["cells"][1])  # cells without markers, untouched
    assert "widgets" not in after["metadata"]
    assert after["metadata"]["kernelspec"]["name"] == "python3"
    assert after["nbformat"] == 4
    # the source is not modified
    assert json.loads((course / "01_demo.ipynb").read_text()) == before


@pytest.mark.parametrize("source, message", [
    ("a = 1\n### BEGIN SOLUTION\nb = 2", "never closed"),
    ("a = 1\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside"),
    ("##BEGIN SOLUTION\nsecret = 1\n### END SOLUTION", "looks like a solution marker"),
    ("### BEGIN SOLUTION\nsecret = 1\n# end solution", "looks like a solution marker"),
])
def test_unbalanced_markers_exit_2_with_one_line(tmp_path, capsys, source, message):
    write_nb(tmp_path / "src" / "03_bad.ipynb", [cell("markdown", "# t"), cell("code", source)])
    rc = main(["assignments", "build", str(tmp_path / "out"), "--source", str(tmp_path / "src")])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "03_bad.ipynb" in err and "cell 2" in err and message in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_no_overwrite_without_force(course, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["assignments", "build", str(out), "--source", str(course)]) == 0
    assert "wrote 2 student notebooks" in capsys.readouterr().out
    (out / "01_demo.ipynb").write_text("my work")
    rc = main(["assignments", "build", str(out), "--source", str(course)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--force" in err
    assert (out / "01_demo.ipynb").read_text() == "my work"
    assert main(["assignments", "build", str(out), "--source", str(course), "--force"]) == 0
    assert json.loads((out / "01_demo.ipynb").read_text())["nbformat"] == 4


def test_user_errors(tmp_path, capsys):
    for argv, needle in [
        (["assignments", "build", str(tmp_path / "o"), "--source", str(tmp_path / "missing")], "no notebook folder"),
        (["assignments", "build", str(tmp_path / "o"), "--source", str(tmp_path)], "no notebooks"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and needle in err
    write_nb(tmp_path / "src" / "01.ipynb", [cell("code", "x = 1")])
    with pytest.raises(LasegError, match="source folder"):
        build_student_notebooks(tmp_path / "src", tmp_path / "src", force=True)


def test_student_notebook_counts_exercises():
    nb = {"cells": [cell("code", SOLUTION_SRC), cell("code", CHECK_SRC)], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    student, n = student_notebook(nb)
    assert n == 2 and student is not nb and src(nb["cells"][0]) == SOLUTION_SRC


# ----------------------------------------------------------------------------- no leaks (issue 11, section 5)
def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def built_text(tmp_path: Path, cells: list[dict], nb_metadata: dict | None = None) -> tuple[int, str, str]:
    """Build a one-notebook course with ``cells``; return the exit status, the student copy's text, stderr."""
    path = write_nb(tmp_path / "src" / "01_leak.ipynb", cells)
    if nb_metadata:
        nb = json.loads(path.read_text())
        nb["metadata"].update(nb_metadata)
        path.write_text(json.dumps(nb))
    rc = main(["assignments", "build", str(tmp_path / "out"), "--source", str(tmp_path / "src")])
    out = tmp_path / "out" / "01_leak.ipynb"
    return rc, out.read_text() if out.exists() else "", ""


def assert_no_secret(text: str, secret: str) -> None:
    assert text, "nothing was written"
    assert secret not in text and b64(secret) not in text


def test_leak_raw_cell_is_stripped(tmp_path):
    """Before: a solution block in a raw cell was copied as it is (exit 0)."""
    rc, text, _ = built_text(tmp_path, [cell("raw", "Answer:\n### BEGIN SOLUTION\nsecret_raw = 42\n### END SOLUTION")])
    assert rc == 0
    assert_no_secret(text, "secret_raw")
    raw = json.loads(text)["cells"][0]
    assert src(raw) == "Answer:\nYOUR ANSWER HERE"


@pytest.mark.parametrize("source, why", [
    # before: the marker after code was not seen, and the line reached the students (exit 0)
    ("### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2  ### BEGIN SOLUTION\nsecret = 3  ### END SOLUTION",
     "without code before it"),
    ("x = 1  ### BEGIN SOLUTION", "without code before it"),
    # before: markers behind a zero-width space were not seen (exit 0, the whole solution copied)
    ("\u200b### BEGIN SOLUTION\nsecret = 1\n\u200b### END SOLUTION", "invisible characters"),
    ("### BEGIN SOLUTION\u200b\nsecret = 1\n### END SOLUTION\u2060", "invisible characters"),
    ("\uff03\uff03\uff03 BEGIN SOLUTION\nsecret = 1\n### END SOLUTION", "looks like a solution marker"),
])
def test_leak_marker_lookalikes_refused(tmp_path, capsys, source, why):
    rc, text, _ = built_text(tmp_path, [cell("markdown", "# t"), cell("code", source)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "01_leak.ipynb" in err and "cell 2" in err and why in err
    assert not (tmp_path / "out").exists()


def test_leak_cell_and_notebook_metadata_stripped(tmp_path):
    """Before: every metadata key but 'execution' was copied, so a solution kept there reached the students."""
    sol = cell("code", "def f():\n    ### BEGIN SOLUTION\n    return 41 + 1\n    ### END SOLUTION")
    sol["metadata"] = {"solution_source": "secret_meta = 99", "tags": ["ok-tag", "secret_tag = 1"],
                       "nbgrader": {"grade": False, "grade_id": "ex1_answer", "solution": True, "locked": False,
                                    "schema_version": 3, "hint": "secret_hint"},
                       "jupyter": {"source_hidden": False, "note": "secret_jup"}}
    rc, text, _ = built_text(tmp_path, [sol], nb_metadata={"answers": "secret_nb"})
    assert rc == 0
    for secret in ("secret_meta", "secret_tag", "secret_hint", "secret_jup", "secret_nb", "41 + 1"):
        assert_no_secret(text, secret)
    md = json.loads(text)["cells"][0]["metadata"]
    assert md == {"tags": ["ok-tag"], "jupyter": {"source_hidden": False},
                  "nbgrader": {"grade": False, "grade_id": "ex1_answer", "solution": True, "locked": False,
                               "schema_version": 3}}


def test_leak_attachments_dropped_unless_still_shown(tmp_path):
    """Before: attachments were copied, including one shown only inside a solution block."""
    answer = cell("markdown", "Why?\n### BEGIN SOLUTION\n![s](attachment:sol.txt)\n### END SOLUTION")
    answer["attachments"] = {"sol.txt": {"text/plain": b64("secret_attachment = 7")}}
    lesson = cell("markdown", "A figure: ![f](attachment:fig.png)")
    lesson["attachments"] = {"fig.png": {"image/png": "iVBORw0KGgo="},
                             "hidden.txt": {"text/plain": b64("secret_unshown")}}
    rc, text, _ = built_text(tmp_path, [answer, lesson])
    assert rc == 0
    assert_no_secret(text, "secret_attachment")
    assert_no_secret(text, "secret_unshown")
    cells = json.loads(text)["cells"]
    assert "attachments" not in cells[0]
    assert cells[1]["attachments"] == {"fig.png": {"image/png": "iVBORw0KGgo="}}


def test_leak_text_attachment_with_solution_refused(tmp_path, capsys):
    """An attachment the student copy still shows, whose text is a solution line: refused, nothing written."""
    sol = cell("code", "### BEGIN SOLUTION\nanswer_value = 6 * 7\n### END SOLUTION")
    shown = cell("markdown", "See ![n](attachment:n.txt)")
    shown["attachments"] = {"n.txt": {"text/plain": b64("answer_value = 6 * 7")}}
    rc, _, _ = built_text(tmp_path, [sol, shown])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cell 2" in err and "solution text" in err
    assert not (tmp_path / "out").exists()


def test_hidden_tests_removed(tmp_path):
    check = cell("code", "assert f() == 42\n### BEGIN HIDDEN TESTS\nassert f() != 43  # secret_hidden\n"
                         "### END HIDDEN TESTS\nprint('ok')")
    rc, text, _ = built_text(tmp_path, [cell("code", "def f():\n    ### BEGIN SOLUTION\n    return 42\n"
                                                      "    ### END SOLUTION"), check])
    assert rc == 0
    assert_no_secret(text, "secret_hidden")
    assert src(json.loads(text)["cells"][1]) == "assert f() == 42\nprint('ok')"


# ----------------------------------------------------------------------------- the real notebooks
def course_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("0*.ipynb"))


def require_course() -> list[Path]:
    nbs = course_notebooks()
    if not nbs:
        pytest.skip("notebooks/ holds no course notebooks yet")
    assert len(nbs) >= N_COURSE_NOTEBOOKS, f"expected {N_COURSE_NOTEBOOKS} notebooks, found {[p.name for p in nbs]}"
    return nbs


def solution_lines(nb: dict) -> set[str]:
    """Every non-trivial line written inside a solution block of the notebook."""
    lines: set[str] = set()
    for c in nb["cells"]:
        inside = False
        for line in src(c).splitlines():
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif inside and line.strip():
                lines.add(line.strip())
    return lines


def test_real_notebooks_skeleton():
    """Each notebook: both badges in the first cell, the Colab setup cell first, exercises followed by checks."""
    for path in require_course():
        nb = json.loads(path.read_text())
        cells = nb["cells"]
        first = src(cells[0])
        assert cells[0]["cell_type"] == "markdown" and first.lstrip().startswith("#"), path.name
        assert "colab-badge.svg" in first and "colab.research.google.com/github/" in first, path.name
        # the badges open the student edition (answers collapsed), not this teacher notebook
        assert f"/blob/main/student/{path.name}" in first, path.name
        assert "mybinder.org/badge_logo.svg" in first and f"urlpath=lab/tree/student/{path.name}" in first, path.name
        assert "docs/glossary.md" in first and "Shut Down Kernel" in first, path.name
        code = [c for c in cells if c["cell_type"] == "code"]
        setup = src(code[0])
        assert setup.startswith("# Setup:") and '"google.colab" in sys.modules' in setup, path.name
        assert "git clone" in setup and "pip install" in setup and "/content/lasegtut" in setup, path.name
        assert "numpy" not in setup.lower(), f"{path.name}: the setup cell must not touch NumPy (Colab has NumPy 2)"
        n_ex = 0
        for i, c in enumerate(cells):
            if c["cell_type"] == "code" and "### BEGIN SOLUTION" in src(c):
                n_ex += 1
                following = [d for d in cells[i + 1:] if d["cell_type"] == "code"]
                assert following and re.search(r"^\s*assert\b", src(following[0]), re.M), \
                    f"{path.name}: the exercise in cell {i + 1} has no assert cell after it"
        assert n_ex >= 1, f"{path.name} has no exercise"


def test_real_student_copies_have_no_solution_text(tmp_path):
    nbs = require_course()
    written = build_student_notebooks(NOTEBOOKS, tmp_path / "student")
    assert {p.name for p in written} >= {p.name for p in nbs}
    for path in nbs:
        sol = solution_lines(json.loads(path.read_text()))
        assert sol, f"{path.name} has no solution block"
        student = json.loads((tmp_path / "student" / path.name).read_text())
        text = {line.strip() for c in student["cells"] for line in src(c).splitlines()}
        # lines that also occur outside the blocks (e.g. `return x`) are not solution text
        outside = set()
        for c in json.loads(path.read_text())["cells"]:
            stripped, _ = strip_solutions(src(c).splitlines())
            outside.update(line.strip() for line in stripped)
        leaked = (sol & text) - outside
        assert not leaked, f"{path.name}: solution text left in the student copy: {sorted(leaked)[:3]}"
        assert "SOLUTION" not in "".join(src(c) for c in student["cells"])
        assert all(c.get("outputs", []) == [] for c in student["cells"])


def test_real_student_copy_stops_at_first_exercise(tmp_path):
    """Execute the student copy of the first notebook (01, the shortest run): it must stop with
    NotImplementedError at the first exercise (its cell, or the check cell after it when the stub is
    inside a function body), and nowhere before."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    path = require_course()[0]
    student_dir = tmp_path / "student"
    build_student_notebooks(NOTEBOOKS, student_dir)
    cells = json.loads(path.read_text())["cells"]
    first_ex = next(i for i, c in enumerate(cells) if "### BEGIN SOLUTION" in src(c))
    its_check = next(i for i in range(first_ex + 1, len(cells)) if cells[i]["cell_type"] == "code")
    nb = nbformat.read(str(student_dir / path.name), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError", str(info.value)[-2000:]
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(errors) == 1 and errors[0] in (first_ex, its_check), \
        f"{path.name}: error in cells {errors}, the first exercise is cell {first_ex}, its check cell {its_check}"
