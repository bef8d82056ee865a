"""The widget tests again under each major version of ipywidgets the course allows.

Colab preinstalls ipywidgets 7 (its front end renders that protocol; upgrading it to 8 there can
leave widgets and progress bars blank); Binder and a fresh ``pip install`` get 8. This
environment holds one version and runs ``tests/test_widgets.py`` directly; here the same file runs
in a fresh interpreter with another version put first on its path: pip installs it, without its
dependencies (the kernel side needs nothing else), into a temporary folder. A few hundred kB and
a few seconds each. Skips, saying why, where pip cannot fetch it (offline).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

#: (requirement, extra packages it imports that a modern environment may lack)
VERSIONS = [
    ("ipywidgets==7.7.1", ["ipython_genutils"]),   # the lowest the course allows
    ("ipywidgets>=7.8,<8", ["ipython_genutils"]),  # the newest 7.x (Colab's line)
    ("ipywidgets>=8,<9", []),                      # the newest 8.x (Binder, pip)
]


def project_requirement(name: str):
    """``name``'s requirement in pyproject.toml's dependencies."""
    from packaging.requirements import Requirement

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    for dep in re.findall(r'"([^"]+)"', deps):
        req = Requirement(dep)
        if req.name == name:
            return req
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def test_requirement_allows_colab_and_binder_versions():
    spec = project_requirement("ipywidgets").specifier
    for version in ("7.7.1", "7.8.1", "7.8.5", "8.0.0", "8.1.5"):
        assert spec.contains(version), f"pyproject's ipywidgets{spec} refuses {version}"
    assert not spec.contains("9.0.0"), "a new major version is allowed only once tested"
    for spec_text, _ in VERSIONS:  # every version tested here is one the project allows
        lowest = re.search(r"[\d.]+", spec_text).group(0)
        assert spec.contains(lowest), spec_text


@pytest.mark.parametrize("requirement,extra", VERSIONS, ids=[v[0] for v in VERSIONS])
def test_widget_tests_pass_under(requirement, extra, tmp_path):
    import ipywidgets
    from packaging.requirements import Requirement

    wanted = Requirement(requirement).specifier
    if wanted.contains(ipywidgets.__version__):
        pytest.skip(f"this environment's ipywidgets {ipywidgets.__version__} runs tests/test_widgets.py itself")
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                          "--target", str(site), requirement, *extra], capture_output=True, text=True, timeout=300)
    if pip.returncode:
        last = (pip.stderr.strip().splitlines() or ["(no message)"])[-1]
        pytest.skip(f"pip could not install {requirement} (offline?): {last}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), str(REPO), os.environ.get("PYTHONPATH")])))
    version = subprocess.run([sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert version.returncode == 0, version.stderr[-2000:]
    assert wanted.contains(version.stdout.strip()), f"{version.stdout.strip()} was imported instead of {requirement}"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_widgets.py"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, f"under ipywidgets {version.stdout.strip()}:\n{run.stdout[-4000:]}"
