"""Every notebook has the frame of a tutorial: objectives with student times, key points, check questions
with answers that the student copies hide, and references."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lasegtut.classroom.assignments import BEGIN_SOLUTION, student_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: References every notebook cites (the data), and those cited where the notebook uses the idea.
ALWAYS = ("Tobon-Gomez", "Medical Segmentation Decathlon")
WHERE_USED = {"Ronneberger": ("04", "05", "06"), "Lang RM": ("01", "07"), "Bland JM": ("07",),
              "Dice LR": ("02", "04", "05", "06")}


def _src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _course():
    nbs = sorted(NOTEBOOKS.glob("0*.ipynb"))
    if not nbs:
        pytest.skip("no course notebooks")
    return nbs


@pytest.mark.parametrize("path", _course(), ids=lambda p: p.name[:2])
def test_tutorial_frame(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    md = [_src(c) for c in nb["cells"] if c["cell_type"] == "markdown"]
    head = next((m for m in md[:3] if "Learning objectives" in m), None)
    assert head, f"{path.name}: no learning objectives near the top"
    assert len(re.findall(r"^- ", head, re.M)) >= 3, f"{path.name}: objectives are not a bulleted list"
    assert "student time" in head and len(re.findall(r"\d+ min", head)) >= 4, f"{path.name}: no student time per section"
    assert any(m.startswith("## Key points") for m in md), f"{path.name}: no key points"
    questions = next((m for m in md if m.startswith("## Check your understanding")), "")
    n_q = len(re.findall(r"^\*\*\d+\.\*\*", questions, re.M))
    assert 3 <= n_q <= 5 and questions.count(BEGIN_SOLUTION) == n_q, f"{path.name}: {n_q} questions"
    refs = " ".join(next((m for m in md if m.startswith("## References")), "").split())
    for name in ALWAYS:
        assert name in refs, f"{path.name} does not cite {name}"
    for name, where in WHERE_USED.items():
        if path.name[:2] in where:
            assert name in refs, f"{path.name} does not cite {name}"
    # the student copy keeps the questions and hides the answers
    student, _ = student_notebook(nb, name=path.name)
    s_questions = next(_src(c) for c in student["cells"] if _src(c).startswith("## Check your understanding"))
    assert "*Answer.*" not in s_questions and s_questions.count("YOUR ANSWER HERE") == n_q
