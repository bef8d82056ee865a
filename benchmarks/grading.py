"""How long `lasegtut assignments grade` takes for a class on this machine (prints figures).

    python benchmarks/grading.py [--notebook 01_anatomy.ipynb] [--students 30] [--jobs 1 2]

Builds the student copy of one course notebook, submits it blank for every student (each blank
submission runs top to bottom in its own kernel, stopping at nothing: the stubs raise and the
notebook goes on), and grades the class once per ``--jobs`` value. Prints the wall time of the
class, the seconds per submission, the kernels' median run time and their largest peak memory,
and the statuses the exercises came out with (all should be "missing").
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lasegtut.classroom.assignments import build_student_notebooks, default_source_dir
from lasegtut.classroom.grading import grade_class
from lasegtut.classroom.sandbox import probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebook", default="01_anatomy.ipynb")
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    source = default_source_dir()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_student_notebooks(source, tmp / "student")
        blank = (tmp / "student" / args.notebook).read_bytes()
        subs = tmp / "subs"
        subs.mkdir()
        for i in range(args.students):
            (subs / f"student{i:03d}.ipynb").write_bytes(blank)
        print(f"grading {args.students} blank submissions of {args.notebook} | sandbox: {probe().describe()}")
        for jobs in args.jobs:
            t0 = time.perf_counter()
            report = grade_class(subs, tmp / f"out{jobs}", source=source, notebooks=[args.notebook], jobs=jobs,
                                 progress=False)
            wall = time.perf_counter() - t0
            statuses = {g.status for g in report.grades}
            runs = [r.seconds for r in report.runs]
            peak = max((r.peak_rss_bytes or 0) for r in report.runs) / 2 ** 20
            print(f"  --jobs {jobs}: {wall:.1f} s for the class, {wall / args.students:.2f} s per submission | "
                  f"one notebook's kernel: median {statistics.median(runs):.1f} s, peak memory {peak:.0f} MiB | "
                  f"statuses {sorted(statuses)}")


if __name__ == "__main__":
    main()
