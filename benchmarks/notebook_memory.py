"""Memory of each notebook's kernel, as a student on Binder (2 GB for everything) meets it (prints figures).

    python benchmarks/notebook_memory.py [notebooks/01_anatomy.ipynb ...] [--clone] [--cells] [--settle 5] [--interval 0.05]

Runs each notebook top to bottom in a fresh Jupyter kernel, one notebook after the other (the
default: every notebook in ``notebooks/``), the way JupyterLab runs it, and prints for each one:

- **peak**: the most memory the kernel held while the notebook ran: its resident memory (RSS)
  plus the memory unique to its child processes (data-loader workers, a command run from a
  cell), sampled every ``--interval`` seconds; the kernel's own high-water mark (``VmHWM``) is
  counted too, so a peak of the kernel between two samples is not missed;
- **idle**: the kernel's resident memory ``--settle`` seconds after the last cell, which is what
  JupyterLab keeps for as long as the student leaves the kernel running.

Resident memory (RSS) is what Binder's 2 GB limit counts. The last lines add up what a student
who opens the notebooks one after the other *without* shutting their kernels down would hold.
Executes with the environment's ``LASEG_*`` settings (default: bundled sample, ``ci`` profile,
shipped model) and the inline matplotlib backend, like a student's kernel. Linux only (``/proc``).

Where the real data lies beside the checkout (``../shared/data/msd-task02-heart``, the
development machine), notebooks 02, 03 and 06 also read its 18 scans. ``--clone`` runs a copy of
the checkout in a temporary folder with nothing beside it, as in a student's clone on Binder.
``--cells`` also prints, after each code cell, the kernel's memory and its peak so far (to find
the cell that costs most).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
#: Not copied by ``--clone``: environments, caches and outputs.
NOT_CLONED = (".git", ".venv", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", "runs", "outputs", "cache",
              "lightning_logs", "*.egg-info", "student")
MIB = 1024 * 1024


def tree_memory(pid: int) -> int:
    """Bytes a kernel holds: its resident memory plus the memory unique to each of its child
    processes (a forked data-loader worker shares most of its pages with the kernel; a command
    the notebook runs holds its own). 0 once the kernel is gone."""
    import psutil

    try:
        kernel = psutil.Process(pid)
        total, children = kernel.memory_info().rss, kernel.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for child in children:
        try:
            total += child.memory_full_info().uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def high_water_mark(pid: int) -> int:
    """The process's own peak resident bytes (``VmHWM``), 0 where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Samples :func:`tree_memory` of ``pid`` every ``interval`` seconds and keeps the maximum."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, tree_memory(self.pid))
            self.stopped.wait(self.interval)


def run_notebook(path: Path, settle: float, interval: float, cells: bool = False) -> dict:
    """Execute one notebook in a fresh kernel; its peak and idle bytes, seconds, and any error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    error = None
    t0 = time.perf_counter()
    with client.setup_kernel(stderr=subprocess.DEVNULL):  # not the kernel's start-up chatter
        pid = client.km.provisioner.pid
        sampler = Sampler(pid, interval)
        sampler.start()
        try:
            for index, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as exc:
                    error = f"cell {index}: {str(exc).strip().splitlines()[-1][:120]}"
                    break
                if cells and cell.cell_type == "code":
                    first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:60]
                    print(f"    cell {index:2d}: now {tree_memory(pid) / MIB:5.0f} MiB, peak so far"
                          f" {max(sampler.peak, high_water_mark(pid)) / MIB:5.0f} MiB  | {first}", flush=True)
            seconds = time.perf_counter() - t0
            time.sleep(settle)
            idle = tree_memory(pid)
        finally:
            sampler.stopped.set()
            sampler.join()
        peak = max(sampler.peak, high_water_mark(pid), idle)
    return {"peak": peak, "idle": idle, "seconds": seconds, "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all in notebooks/)")
    parser.add_argument("--clone", action="store_true",
                        help="run a copy of the checkout with nothing beside it (a student's clone: no ../shared)")
    parser.add_argument("--cells", action="store_true", help="print the memory after each code cell too")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after the last cell (default 5)")
    parser.add_argument("--interval", type=float, default=0.05, help="sampling interval in seconds (default 0.05)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file() or p.suffix != ".ipynb"]
    if missing:
        print(f"notebook_memory: not a notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not Path("/proc/self/status").is_file():
        print("notebook_memory: needs Linux (/proc) to read a kernel's memory", file=sys.stderr)
        return 2
    try:
        import nbclient  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        print(f"notebook_memory: needs nbclient and psutil (pip install -e '.[test]'): {exc}", file=sys.stderr)
        return 2
    os.environ.pop("MPLBACKEND", None)  # a student's kernel draws with the inline backend
    if args.clone:
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="lasegtut-clone-") as tmp:
            clone = Path(tmp) / "lasegtut"
            shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(*NOT_CLONED))
            # the kernel imports the copy's package, so the copy's data/sample and weights are used
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(clone), os.environ.get("PYTHONPATH")]))
            paths = [clone / "notebooks" / p.resolve().name for p in paths]
            print(f"running a copy of the checkout in {clone} (nothing beside it)")
            return report(paths, args.settle, args.interval, args.cells)
    return report(paths, args.settle, args.interval, args.cells)


def report(paths: list[Path], settle: float, interval: float, cells: bool = False) -> int:
    """Run each notebook, print its figures; 1 if one failed, else 0."""
    print(f"{'notebook':<32} {'run s':>6} {'peak MiB':>9} {'idle MiB':>9} {'all open MiB':>13}")
    failed, held_idle, largest = 0, 0, 0
    for path in paths:
        if cells:
            print(f"{path.name}:")
        r = run_notebook(path.resolve(), settle, interval, cells)
        all_open = held_idle + r["peak"]  # this kernel at its peak, the earlier ones left idle
        print(f"{path.name:<32} {r['seconds']:6.1f} {r['peak'] / MIB:9.0f} {r['idle'] / MIB:9.0f} {all_open / MIB:13.0f}"
              + (f"  FAILED at {r['error']}" if r["error"] else ""), flush=True)
        failed += r["error"] is not None
        held_idle += r["idle"]
        largest = max(largest, r["peak"])
    print(f"largest peak of one kernel: {largest / MIB:.0f} MiB ({largest / 1e9:.2f} GB; target about 0.9 GB)."
          " 'all open': this kernel's peak plus the idle kernels of the notebooks before it"
          " (Binder's limit: 2 GB for everything)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
