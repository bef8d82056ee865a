"""What the install recipes tell a student's machine: Binder's system packages, the README's CPU torch."""
from __future__ import annotations

import re

from conftest import REPO


def apt_packages() -> list[str]:
    """binder/apt.txt as repo2docker reads it: one name a line, text after ``#`` ignored."""
    lines = (REPO / "binder" / "apt.txt").read_text().splitlines()
    return [name for name in (line.partition("#")[0].strip() for line in lines) if name]


def test_binder_apt_lists_what_opencv_loads():
    """OpenCV (through imgaug) needs libGL and GLib on import; they must not depend on ffmpeg
    happening to pull them in (repo2docker installs without recommends)."""
    packages = apt_packages()
    assert {"libgl1", "libglib2.0-0"} <= set(packages), packages
    assert all(re.fullmatch(r"[a-z0-9.+-]+", p) for p in packages), packages  # repo2docker's check
    notes = (REPO / "docs" / "teaching.md").read_text()
    assert "libgl1 libglib2.0-0" in notes and "ffmpeg" in notes


def test_readme_gives_the_cpu_index_that_binder_uses():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- cpu-torch -->\s*```bash\n(.+?)\n```", readme)
    assert block, "the README has no <!-- cpu-torch --> command"
    cmd = block.group(1)
    post = (REPO / "binder" / "postBuild").read_text()
    index = re.search(r"--index-url (\S+)", post).group(1)
    assert f"--index-url {index}" in cmd and index == "https://download.pytorch.org/whl/cpu"
    torch_req = re.search(r'"(torch[<>=!~][^"]*)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert f'"{torch_req}"' in cmd  # the project's major version of torch
    assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install ")  # the same .venv as the two commands
    assert "keeps pip from pulling" not in readme  # the old advice: true only on the CI's index
