"""Small helpers for the notebooks' common skeleton (setup, versions, configuration).

Every notebook starts the same way: a setup cell (a no-op locally, installs on Colab), an
imports cell ending in :func:`print_versions`, and one configuration cell built with
:func:`notebook_config`. Environment variables switch a notebook from the bundled sample on a
CPU to the full data set on a GPU without editing it:

- ``LASEG_DATA_DIR``: an MSD Task02_Heart folder (default: the bundled sample),
- ``LASEG_PROFILE``: ``ci`` (default: minutes on a CPU), ``cpu`` or ``gpu``,
- ``LASEG_USE_PRETRAINED``: ``1`` (default) to use the shipped model, ``0`` to use your own.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: Where the course lives (used by the Colab setup cell and the badges).
REPO_URL = "https://github.com/lasegtut/lasegtut"


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
        from .data import BUNDLED_SAMPLE

        return "bundled sample (data/sample)" if self.data_dir == BUNDLED_SAMPLE else self.data_dir.name


def device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def print_versions() -> None:
    """Print the versions that matter for reproducing a notebook, and the device."""
    import lightning_utilities  # noqa: F401  (part of Lightning's install)
    import nibabel
    import numpy
    import pytorch_lightning
    import torch

    import lasegtut

    print(f"python {platform.python_version()} | lasegtut {lasegtut.__version__} | torch {torch.__version__} | "
          f"lightning {pytorch_lightning.__version__} | numpy {numpy.__version__} | nibabel {nibabel.__version__}")
    print(f"device: {device()}")


def notebook_config(seed: int = 42, profile: str | None = None, data_dir: str | os.PathLike | None = None,
                    use_pretrained: bool | None = None) -> NotebookConfig:
    """Seed everything (Python, NumPy, torch, imgaug) and resolve the run's configuration.

    Arguments left as None come from ``LASEG_PROFILE``, ``LASEG_DATA_DIR`` and
    ``LASEG_USE_PRETRAINED``; on a machine with a GPU the default profile is ``gpu``.
    """
    import random

    import numpy as np
    import torch

    from .data import resolve_data_dir
    from .imgaug_compat import ia

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    ia.seed(seed)
    if profile is None:
        profile = os.environ.get("LASEG_PROFILE") or ("gpu" if device() == "cuda" else "ci")
    if use_pretrained is None:
        use_pretrained = os.environ.get("LASEG_USE_PRETRAINED", "1") != "0"
    return NotebookConfig(seed, profile, resolve_data_dir(data_dir), use_pretrained)
