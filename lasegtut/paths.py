"""Where things are, and the environment variables that move them: decided here, once.

Locations (absolute paths):

- :data:`SHIPPED_WEIGHTS`: the model shipped inside the package;
- :data:`COURSE_ROOT`: the course checkout that holds this package (a clone, or an editable
  install of one), with :data:`BUNDLED_SAMPLE` (three real cases, always present in a clone),
  :data:`DUPLICATE_PAIR`, :data:`NOTEBOOKS`, :data:`BENCHMARK_RESULTS` (committed figures files)
  and :data:`RUNS` (where the notebooks train your own models: :func:`trained_weights`);
- :data:`SHARED_DATA`: the full data set beside the checkout on the project's own test machines.

Environment variables (read when a function asks, never at import):

- :data:`DATA_DIR_VAR` (``LASEG_DATA_DIR``): an MSD Task02_Heart folder, used wherever a data
  folder is not given (:func:`lasegtut.data.resolve_data_dir`) and where ``lasegtut download``
  puts the data;
- :data:`PROFILE_VAR` (``LASEG_PROFILE``) and :data:`USE_PRETRAINED_VAR`
  (``LASEG_USE_PRETRAINED``): the notebooks' training profile and their choice between the
  shipped model and your own (:func:`lasegtut.course.notebook_config`).

This module imports nothing of the package: every other module may use it.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The ``lasegtut`` package folder.
PACKAGE = Path(__file__).resolve().parent
#: The model shipped inside the package (see ``lasegtut/weights/MODEL_CARD.md``).
SHIPPED_WEIGHTS = PACKAGE / "weights" / "la_unet_cpu.pt"
#: The course checkout that holds the package.
COURSE_ROOT = PACKAGE.parent
#: The bundled sample: la_009, la_014, la_020 (the project's fixed validation cases).
BUNDLED_SAMPLE = COURSE_ROOT / "data" / "sample"
#: The scan Task02_Heart holds twice, with its two labels, cropped around the atrium (see its README.md).
DUPLICATE_PAIR = COURSE_ROOT / "data" / "duplicate_pair"
#: The course notebooks.
NOTEBOOKS = COURSE_ROOT / "notebooks"
#: The student edition: what the badges open (generated from NOTEBOOKS by
#: ``lasegtut assignments build student --self-study --force``; committed, kept in step by a test).
STUDENT_NOTEBOOKS = COURSE_ROOT / "student"
#: Where the notebooks train models: ``RUNS / <profile>`` is a ``lasegtut train --out`` folder.
RUNS = COURSE_ROOT / "runs"
#: Committed benchmark results (figures files that notebooks and docs quote; they ship with a clone).
BENCHMARK_RESULTS = COURSE_ROOT / "benchmarks" / "results"
#: The full Task02_Heart beside the checkout, on this project's own test machines.
SHARED_DATA = COURSE_ROOT.parent / "shared" / "data" / "msd-task02-heart"

#: An MSD Task02_Heart folder to use when none is given.
DATA_DIR_VAR = "LASEG_DATA_DIR"
#: The notebooks' training profile: ``ci``, ``cpu`` or ``gpu``.
PROFILE_VAR = "LASEG_PROFILE"
#: ``1`` (default): the notebooks use the shipped model; ``0``: the one you trained.
USE_PRETRAINED_VAR = "LASEG_USE_PRETRAINED"


def trained_weights(profile: str) -> Path:
    """The weights a notebook run of ``profile`` exports (notebook 05 trains into ``RUNS / profile``)."""
    return RUNS / profile / "model.pt"


def full_data_dir() -> Path | None:
    """The full data set for benchmarks and tests: ``$LASEG_DATA_DIR`` if it is an MSD task folder
    (holds ``dataset.json``; not the bundled sample), else :data:`SHARED_DATA` if present, else None
    (a student's clone has only the bundled sample)."""
    env = os.environ.get(DATA_DIR_VAR)
    for folder in ([Path(env).expanduser()] if env else []) + [SHARED_DATA]:
        for task in (folder, folder / "Task02_Heart"):  # the folder, or where `lasegtut download` put it
            if (task / "dataset.json").is_file() and task.resolve() != BUNDLED_SAMPLE:
                return task
    return None
