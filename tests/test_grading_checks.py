"""The teacher's checks run where the student's code cannot reach them (issue 23, section 1).

Each hostile submission below answers wrongly and then attacks the check from its own kernel: an
IPython input transformer that turns every cell with an ``assert`` into ``print('ok')``, a fake
``hashlib`` in ``sys.modules``, a transformer that makes the check raise its own source, an AST
transformer that drops ``assert``, a custom exception handler that swallows every error. Each must
get no marks, and neither the check's source nor its expected values may reach the feedback or the
grades. Plus: the plain-data format refuses what the student's kernel could forge.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lasegtut.classroom.checks import CodecError, decode, encode, folder_ident, plan_check
from lasegtut.classroom.grading import grade_class
from lasegtut.classroom.kernel_run import RunLimits

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from test_grading import answer_md, cell, check_md, notebook, read_grades, write  # noqa: E402

FAST = RunLimits(cell_timeout=8, total_timeout=60, memory_bytes=2 * 2 ** 30)
SECRET = "82a208225582"  # sha256("atrium")[:12]: an expected value that must never leave the grader
# ex1: a function; ex2: a value checked through its hash, as notebook 01's ex2 does
TEACHER = notebook([
    cell("code", "import hashlib\nimport numpy as np", "c1"),
    cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n", "a1",
         answer_md("ex1_answer")),
    cell("code", "assert double(21) == 42, 'double(21) should be 42'\n"
                 "assert np.allclose(double(np.arange(3)), [0, 2, 4])", "k1", check_md("ex1", 2)),
    cell("code", "### BEGIN SOLUTION\nword = 'atrium'\n### END SOLUTION", "a2", answer_md("ex2_answer")),
    cell("code", f"assert hashlib.sha256(word.encode()).hexdigest()[:12] == {SECRET!r}", "k2", check_md("ex2", 3)),
])
WRONG = {"a1": "def double(x):\n    return x + 1\n", "a2": "word = 'ventricle'"}

TRANSFORMER = """
def _cheat(lines):
    return ["print('ok')\\n"] if any("assert" in ln for ln in lines) else lines
get_ipython().input_transformers_cleanup.append(_cheat)
"""
FAKE_MODULE = """
import sys, types
class _Equal(str):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __getitem__(self, k): return self
class _Digest:
    def __init__(self, *a): pass
    def hexdigest(self): return _Equal("")
fake = types.ModuleType("hashlib")
fake.sha256 = _Digest
sys.modules["hashlib"] = fake
import numpy
numpy.allclose = lambda *a, **k: True
"""
LEAK = """
def _leak(lines):
    src = "".join(lines)
    return [f"raise RuntimeError({src!r})\\n"] if "assert" in src else lines
get_ipython().input_transformers_cleanup.append(_leak)
"""
AST_DROP = """
import ast
class _NoAssert(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()
get_ipython().ast_transformers.append(_NoAssert())
"""
SWALLOW = """
def _swallow(shell, etype, value, tb, tb_offset=None):
    return None
def _forget(result):
    result.error_in_exec = None  # the kernel then replies "ok"
get_ipython().set_custom_exc((BaseException,), _swallow)
get_ipython().events.register("post_run_cell", _forget)
"""


def _submission(stub: dict, attack: str) -> dict:
    nb = json.loads(json.dumps(stub))
    for c in nb["cells"]:
        if c["id"] in WRONG:
            c["source"] = WRONG[c["id"]]
    nb["cells"].insert(1, cell("code", attack, "attack"))  # runs before everything else of the student's
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """One class: the solution, a blank copy, and each attack on wrong answers."""
    from lasegtut.classroom.assignments import build_student_notebooks

    tmp = tmp_path_factory.mktemp("checks")
    write(tmp / "teacher" / "hw.ipynb", TEACHER)
    build_student_notebooks(tmp / "teacher", tmp / "student")
    stub = json.loads((tmp / "student" / "hw.ipynb").read_text())
    subs = tmp / "subs"
    write(subs / "good.ipynb", TEACHER)
    write(subs / "blank.ipynb", stub)
    for name, attack in (("transformer", TRANSFORMER), ("fakemodule", FAKE_MODULE), ("leak", LEAK),
                         ("astdrop", AST_DROP), ("swallow", SWALLOW)):
        write(subs / f"{name}.ipynb", _submission(stub, attack))
    grade_class(subs, tmp / "out", source=tmp / "teacher", limits=FAST, jobs=2, progress=False)
    return tmp / "out"


def test_solution_and_blank_still_grade(graded):
    g = read_grades(graded)
    assert g[("good", "ex1")] == ("correct", "2", "2") and g[("good", "ex2")] == ("correct", "3", "3")
    assert g[("blank", "ex1")][0] == "missing" and g[("blank", "ex2")][0] == "missing"


@pytest.mark.parametrize("student", ["transformer", "fakemodule", "leak", "astdrop", "swallow"])
def test_hostile_submission_gets_no_marks_and_no_check_source(graded, student):
    g = read_grades(graded)
    assert g[(student, "ex1")][:2] == ("wrong", "0") and g[(student, "ex2")][:2] == ("wrong", "0")
    feedback = (graded / "feedback" / f"{student}.md").read_text()
    everything = feedback + (graded / "grades.csv").read_text()
    assert SECRET not in everything and "hexdigest" not in everything and "allclose" not in everything
    assert "double(21) should be 42" in feedback  # the teacher's own assert message is given


def test_plan_asks_the_kernel_only_for_the_names_the_check_reads():
    cells = [cell("code", "import numpy as np\nfrom lasegtut import volume\nimport json\ndata = 1", "c"),
             cell("code", "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION", "a",
                  answer_md("ex1_answer")),
             cell("code", "import math\ny = f(np.ones(2))\nassert case.label.sum() == 0 and y[0] == math.pi\n"
                          "assert all(v > 0 for v in volume.x(data)) and len(case.spacing) == 3", "k",
                  check_md("ex1", 1))]
    plan = plan_check(cells, ["lesson", "answer", "check"], 2, "ex1")
    assert sorted(plan.names) == ["case", "data", "f"]
    assert list(plan.attrs) == ["case"] and sorted(plan.attrs["case"]) == ["label", "spacing"]
    assert sorted(plan.imports) == ["from lasegtut import volume", "import numpy as np"]


def test_plain_data_round_trip(tmp_path):
    from types import SimpleNamespace

    values = {"b": b"\x00\xff", "a": np.arange(6, dtype=np.float32).reshape(2, 3),
              "d": {"x": [1, 2.5, None, True], (1, "k"): "v"},
              "s": {1, 2}, "t": (np.int64(3), 1 + 2j), "r": SimpleNamespace(volume_ml=12.5), "f": len}
    encode(values, tmp_path / "e")
    got = decode(tmp_path / "e", make_function=lambda n: f"<fn {n}>")
    assert np.array_equal(got["a"], values["a"]) and got["a"].dtype == np.float32
    assert got["d"] == values["d"] and got["s"] == {1, 2} and got["t"] == (3, 1 + 2j)
    assert got["b"] == b"\x00\xff" and got["r"].volume_ml == 12.5 and got["f"] == "<fn f>"
    with pytest.raises(CodecError):
        decode(tmp_path / "e")  # a function where data was expected


def _manifest(folder: Path, entries: dict) -> None:
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"entries": entries}))


@pytest.mark.parametrize("forge", ["symlink", "object", "short", "bigint", "key", "deep", "replaced"])
def test_forged_data_is_refused(tmp_path, forge):
    """What the student's kernel may write instead of plain data: each is one CodecError, never read further."""
    d = tmp_path / "x" / "e"
    (tmp_path / "x").mkdir()
    ident = folder_ident(tmp_path / "x")
    if forge == "symlink":
        _manifest(d, {"v": {"a": "a0.npy"}})
        os.symlink("/etc/passwd", d / "a0.npy")
    elif forge == "object":
        _manifest(d, {"v": {"a": "a0.npy"}})
        with open(d / "a0.npy", "wb") as f:
            np.save(f, np.array([{}, 1], dtype=object), allow_pickle=True)
    elif forge == "short":  # a header that declares 8 GB
        _manifest(d, {"v": {"a": "a0.npy"}})
        with open(d / "a0.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (2 ** 30,)})
    elif forge == "bigint":
        _manifest(d, {"v": {"i": "9" * 10 ** 5}})
    elif forge == "key":
        _manifest(d, {"v": {"d": [[{"l": []}, {"n": 0}]]}})
    elif forge == "deep":
        node: dict = {"n": 0}
        for _ in range(100):
            node = {"l": [node]}
        _manifest(d, {"v": node})
    else:  # the exchange folder swapped for another one
        os.rename(tmp_path / "x", tmp_path / "y")
        (tmp_path / "x").mkdir()
        _manifest(d, {"v": {"n": 0}})
    with pytest.raises(CodecError):
        decode(d, ident=ident)


def test_a_forged_export_cannot_rebind_builtins_or_imports(tmp_path):
    """A kernel that writes more than it was asked (``abs`` as its own function, ``hashlib`` and
    ``__builtins__`` as data) changes nothing: the checker binds only the names the check reads."""
    import re

    from lasegtut.classroom.checks import CheckRunner
    from lasegtut.classroom.kernel_run import CellResult

    cells = [cell("code", "import hashlib", "c"),
             cell("code", "### BEGIN SOLUTION\nresult = 0.93\n### END SOLUTION", "a", answer_md("ex1_answer")),
             cell("code", "assert abs(result - 0.93) < 0.01\n"
                          "assert hashlib.sha256(b'x').hexdigest() != 'forged'", "k", check_md("ex1", 1))]
    plan = plan_check(cells, ["lesson", "answer", "check"], 2, "ex1")
    assert plan.names == ["result"]
    calls = []

    def kernel(source: str, timeout: float) -> CellResult:
        calls.append(source)
        folder = re.findall(r"'([^']*check\d+)'", source)[-1]
        encode({"result": 5.0, "abs": len, "hashlib": {"sha256": 1}, "__builtins__": {}}, folder)
        return CellResult("ok")

    runner = CheckRunner(tmp_path / "exchange", timeout=30)
    try:
        outcome = runner.run(plan, kernel)
    finally:
        runner.close()
    assert outcome.status == "wrong" and len(calls) == 1  # abs was never called in the kernel


def test_the_checker_never_imports_from_the_kernels_folders(tmp_path):
    """A kernel that plants a ``json.py`` / ``numpy.py`` in the exchange folder does not run code in the checker."""
    import re

    from lasegtut.classroom.checks import CheckRunner
    from lasegtut.classroom.kernel_run import CellResult

    exchange = tmp_path / "exchange"
    exchange.mkdir()
    for name in ("json.py", "numpy.py", "hashlib.py"):
        (exchange / name).write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')\n")
    cells = [cell("code", "import numpy as np", "c"),
             cell("code", "### BEGIN SOLUTION\nresult = 1\n### END SOLUTION", "a", answer_md("ex1_answer")),
             cell("code", "import hashlib, json\nassert np.sum([result]) == 2", "k", check_md("ex1", 1))]
    plan = plan_check(cells, ["lesson", "answer", "check"], 2, "ex1")

    def kernel(source: str, timeout: float) -> CellResult:
        encode({"result": 1}, re.findall(r"'([^']*check\d+)'", source)[-1])
        return CellResult("ok")

    runner = CheckRunner(exchange, timeout=30)
    try:
        assert runner.run(plan, kernel).status == "wrong"
    finally:
        runner.close()
    assert not (tmp_path / "pwned").exists()
