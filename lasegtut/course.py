"""Small helpers for the notebooks' common skeleton (setup, versions, configuration).

Every notebook starts the same way: a setup cell (a no-op locally, installs on Colab), an
imports cell ending in :func:`print_versions`, and one configuration cell built with
:func:`notebook_config`. Environment variables switch a notebook from the bundled sample on a
CPU to the full data set on a GPU without editing it:

- ``LASEG_DATA_DIR``: an MSD Task02_Heart folder (default: the bundled sample),
- ``LASEG_PROFILE``: ``ci`` (default: minutes on a CPU), ``cpu`` or ``gpu``,
- ``LASEG_USE_PRETRAINED``: ``1`` (default) to use the shipped model, ``0`` to use your own
  (:attr:`NotebookConfig.weights`).

(Their names, and every well-known location, are defined in :mod:`lasegtut.paths`.)

Nothing here imports torch, Lightning or imgaug: a kernel that does not use them (notebooks 01-03;
04 uses only imgaug) should not pay their few hundred MB of memory (Binder gives a whole session
2 GB, for every kernel left running).
Versions are read from the installed packages' metadata, the device is asked of torch only where
a GPU driver exists, and torch and imgaug are seeded when they are first imported.
"""
from __future__ import annotations

import importlib.abc
import json
import os
import platform
import random
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from . import __version__
from .data import resolve_data_dir
from .paths import BUNDLED_SAMPLE, NOTEBOOKS, PROFILE_VAR, RUNS, USE_PRETRAINED_VAR, trained_weights

#: Where the course lives (used by the Colab setup cell and the badges).
REPO_URL = "https://github.com/lasegtut/lasegtut"

#: Every notebook's first code cell, word for word (``python -m lasegtut.course`` writes it into
#: the notebooks; a test checks that they hold it). On Colab it clones the course under a
#: temporary name and renames it once complete, installs it with pip and only then leaves a
#: marker, so that running it again after an interruption redoes what was not finished. It needs
#: no restart with Colab's packages (NumPy 2 and ipywidgets 7 are kept); it says so, and says
#: when one is needed (pip replaced a package the session had already imported).
SETUP_CELL = f'''\
# Setup: on Google Colab, fetch the course (with its bundled sample) and install it; elsewhere this does nothing.
# Safe to run again: an interrupted git clone or pip install is redone. It tells you whether to restart the runtime
# (only if pip replaced a package this session had already imported; with Colab's own packages it does not).
import os, sys
if "google.colab" in sys.modules:
    import importlib, importlib.metadata as md, shutil, subprocess
    COURSE = "/content/lasegtut"

    def run(cmd, what):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"setup: {{what}} failed; run this cell again to retry.\\n{{done.stderr.strip()[-800:]}}")

    if not os.path.isdir(COURSE):  # cloned under another name, renamed once complete
        shutil.rmtree(COURSE + ".part", ignore_errors=True)
        print("downloading the course ...")
        run(["git", "clone", "-q", "--depth", "1", "{REPO_URL}", COURSE + ".part"], "download")
        os.rename(COURSE + ".part", COURSE)
    if not os.path.isfile(COURSE + "/.installed"):  # written only once pip has succeeded
        loaded = {{d for m, ds in md.packages_distributions().items() if m in sys.modules for d in ds}}
        before = {{d: md.version(d) for d in loaded}}
        print("installing the course (a minute or two) ...")
        run([sys.executable, "-m", "pip", "install", "-q", "-e", COURSE], "install")
        importlib.invalidate_caches()
        changed = [f"{{d}} {{v}} -> {{md.version(d)}}" for d, v in before.items() if md.version(d) != v]
        open(COURSE + "/.installed", "w").close()
        print(f"RESTART NEEDED: pip replaced {{', '.join(changed)}}, already imported here. Runtime -> Restart "
              "session, then run the notebook from the top." if changed else "installed; no restart needed.")
    if COURSE not in sys.path:
        sys.path.insert(0, COURSE)
    os.chdir(COURSE + "/notebooks")'''

#: Every notebook's last cell: shut the kernel down, and why.
SHUTDOWN_CELL = """\
## Before you move on: shut this notebook's kernel down

A notebook's kernel (the Python process that ran its cells) keeps everything it loaded for as long as it
runs, even when you have closed the tab: a few hundred MB for each notebook of this course. Binder gives a
whole session 2 GB, so two or three kernels left running make the next notebook fail (a dead kernel or a
lost session). When you are done here, choose **Kernel -> Shut Down Kernel** (or *File -> Close and Shut
Down Notebook*); the *Running Terminals and Kernels* panel in the left sidebar lists any kernel still
running. You lose nothing that is saved: run the notebook from the top to get its results back. On Colab,
*Runtime -> Disconnect and delete runtime* frees the machine (and your GPU quota)."""


@dataclass
class NotebookConfig:
    """The one configuration of a notebook run."""

    seed: int
    profile: str
    data_dir: Path
    use_pretrained: bool

    @property
    def data_name(self) -> str:
        """A short, machine-independent name of the data folder for printing."""
        return "bundled sample (data/sample)" if self.data_dir == BUNDLED_SAMPLE else self.data_dir.name

    @property
    def run_dir(self) -> Path:
        """Where notebook 05 trains this profile on the full data (a ``lasegtut train --out`` folder)."""
        return RUNS / self.profile

    @property
    def weights(self) -> Path | None:
        """The model notebooks 06 and 07 use: None (the shipped model) with ``use_pretrained``, else
        the one notebook 05 trained with this profile (:func:`lasegtut.paths.trained_weights`)."""
        return None if self.use_pretrained else trained_weights(self.profile)


#: Device files that exist where a GPU driver torch could use is loaded (NVIDIA, AMD ROCm, WSL2).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version", "/dev/kfd", "/dev/dxg")


def _gpu_possible() -> bool:
    """False where torch cannot see a GPU, decided without importing torch: on macOS (no CUDA)
    and on Linux without a GPU driver's device files (Binder, CI, machines without an NVIDIA or
    AMD GPU)."""
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(f) for f in GPU_DEVICE_FILES)
    return True  # Windows & co.: ask torch


def device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``. Imports torch only where a GPU
    driver is present (or torch is already imported)."""
    if "torch" not in sys.modules and not _gpu_possible():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: The packages :func:`print_versions` names: (printed name, import name, distribution name).
VERSIONED = (("torch", "torch", "torch"), ("lightning", "pytorch_lightning", "pytorch-lightning"),
             ("numpy", "numpy", "numpy"), ("nibabel", "nibabel", "nibabel"))


def package_version(module: str, distribution: str) -> str:
    """The version of an installed package without importing it (the module's ``__version__``
    where it is already imported), or ``"not installed"``."""
    if module in sys.modules:
        version = getattr(sys.modules[module], "__version__", None)
        if version:
            return str(version)
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def quiet_lightning() -> None:
    """Keep only real problems from Lightning in a notebook's output: its hardware lines, tips and
    deprecation warnings print file paths of the machine that ran it (a saved notebook must not)."""
    import logging
    import warnings

    import pytorch_lightning  # noqa: F401  (its import sets its loggers to INFO: import it first)

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)  # e.g. "the dataloader does not have many workers"
    warnings.filterwarnings("ignore", module="pytorch_lightning|lightning_fabric")  # deprecations inside Lightning


def print_versions() -> None:
    """Print the versions that matter for reproducing a notebook, and the device (without
    importing torch or Lightning: see the module's docstring)."""
    versions = " | ".join(f"{name} {package_version(module, dist)}" for name, module, dist in VERSIONED)
    print(f"python {platform.python_version()} | lasegtut {__version__} | {versions}")
    print(f"device: {device()}")


def _seed_torch(torch, seed: int) -> None:
    torch.manual_seed(seed)


def _seed_imgaug(ia, seed: int) -> None:
    # imgaug's first seeding draws from NumPy's global RNG (to create its own): keep NumPy's
    # stream as np.random.seed left it, whenever this runs.
    state = np.random.get_state()
    ia.seed(seed)
    np.random.set_state(state)


#: Seeded by :func:`notebook_config`: top-level module name -> how to seed it.
SEEDERS = {"torch": _seed_torch, "imgaug": _seed_imgaug}


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Seeds a module of :data:`SEEDERS` right after its first import (an import hook).

    :func:`notebook_config` seeds the modules already imported and leaves the others to this
    hook, so that a kernel that never uses torch or imgaug never loads them, and one that
    imports them later gets them seeded all the same. The hook finds the module with the
    other finders, runs the module's own loader, then seeds it; it removes itself once it has
    nothing left to seed.
    """

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module) -> None:
            run(module)
            seed = self.pending.get(fullname)
            if seed is not None:
                SEEDERS[fullname](module, seed)
            self.forget(fullname)

        loader.exec_module = exec_module  # this module's loader only
        return spec

    def seed_later(self, name: str, seed: int) -> None:
        self.pending[name] = seed
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def forget(self, name: str) -> None:
        self.pending.pop(name, None)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)


_SEED_ON_IMPORT = _SeedOnImport()


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy, torch and imgaug: torch and imgaug now if they are
    imported, else the moment they are first imported (so this never loads them)."""
    random.seed(seed)
    np.random.seed(seed)
    for name, seeder in SEEDERS.items():
        if name in sys.modules:
            _SEED_ON_IMPORT.forget(name)
            seeder(sys.modules[name], seed)
        else:
            _SEED_ON_IMPORT.seed_later(name, seed)


_MALLOC_TRIM = None


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is none (macOS, Windows, musl)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None).malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _MALLOC_TRIM = fn
            except (OSError, AttributeError):
                pass
    return _MALLOC_TRIM or None


def release_memory() -> bool:
    """Hand the memory this process has freed back to the system (glibc's ``malloc_trim``).

    The C allocator keeps freed memory for reuse, so a kernel that has loaded and dropped large
    arrays goes on holding them: after notebook 05 about 90 MB. Takes a millisecond or two.
    False where the platform has no ``malloc_trim`` (its allocator then returns memory itself)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _after_cell(*_args) -> None:
    release_memory()


def release_memory_after_each_cell() -> bool:
    """In a Jupyter kernel, call :func:`release_memory` after every cell (once registered, never
    twice), so that a notebook left open holds what its variables need and little more. True
    if registered (or already), False outside IPython or without ``malloc_trim``."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or _malloc_trim() is None:
        return False
    if _after_cell not in shell.events.callbacks.get("post_run_cell", []):
        shell.events.register("post_run_cell", _after_cell)
    return True


def notebook_config(seed: int = 42, profile: str | None = None, data_dir: str | os.PathLike | None = None,
                    use_pretrained: bool | None = None) -> NotebookConfig:
    """Seed everything (Python, NumPy, torch, imgaug: :func:`seed_everything`), hand freed
    memory back to the system after each cell (:func:`release_memory_after_each_cell`), and
    resolve the run's configuration.

    Arguments left as None come from ``LASEG_PROFILE``, ``LASEG_DATA_DIR`` and
    ``LASEG_USE_PRETRAINED``; on a machine with a GPU the default profile is ``gpu``.
    """
    seed_everything(seed)
    release_memory_after_each_cell()
    if profile is None:
        profile = os.environ.get(PROFILE_VAR) or ("gpu" if device() == "cuda" else "ci")
    if use_pretrained is None:
        use_pretrained = os.environ.get(USE_PRETRAINED_VAR, "1") != "0"
    return NotebookConfig(seed, profile, resolve_data_dir(data_dir), use_pretrained)


SHUTDOWN_CELL_ID = "shut-down-kernel"


def _lines(text: str) -> list[str]:
    """A cell's source as notebook JSON stores it: lines with their line ends."""
    return text.splitlines(keepends=True)


def write_skeleton_cells(notebook: str | os.PathLike) -> bool:
    """Put :data:`SETUP_CELL` into the notebook's setup cell (the code cell that starts with
    ``# Setup: on Google Colab``) and :data:`SHUTDOWN_CELL` as its last cell (moved there, or
    added). Outputs and every other cell are kept. True if the file changed."""
    path = Path(notebook)
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    cells = nb["cells"]
    setup = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).startswith("# Setup: on Google Colab")]
    if len(setup) != 1:
        raise ValueError(f"{path.name}: expected one setup cell ('# Setup: on Google Colab ...'), found {len(setup)}")
    setup[0]["source"] = _lines(SETUP_CELL)
    first_line = SHUTDOWN_CELL.splitlines()[0]
    cells[:] = [c for c in cells if not (c["cell_type"] == "markdown" and "".join(c["source"]).startswith(first_line))]
    cells.append({"cell_type": "markdown", "id": SHUTDOWN_CELL_ID, "metadata": {}, "source": _lines(SHUTDOWN_CELL)})
    out = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"  # nbformat's own layout
    if out == raw:
        return False
    path.write_text(out, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m lasegtut.course [NOTEBOOK ...]``: write the setup and shutdown cells into the
    course notebooks (default: every ``notebooks/NN_*.ipynb`` of this checkout)."""
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a) for a in args] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print("lasegtut.course: no notebooks found (give their paths)", file=sys.stderr)
        return 2
    for path in paths:
        try:
            changed = write_skeleton_cells(path)
        except (OSError, ValueError, KeyError) as exc:  # JSONDecodeError is a ValueError
            print(f"lasegtut.course: {path}: {exc}", file=sys.stderr)
            return 2
        print(f"{path.name}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
