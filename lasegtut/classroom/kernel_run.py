"""Run a list of code cells, top to bottom, in a fresh and confined Jupyter kernel.

:func:`run_cells` is the grader's engine. One call = one kernel process, started under the
supervisor of :mod:`lasegtut.classroom.sandbox` (memory cap on what it really uses, file-size cap,
Landlock, an unprivileged user and a private ``/dev/shm`` where the system gives them) in its own
scratch folder, which is its working directory, ``HOME`` and ``TMPDIR``. Without a memory cgroup,
a watchdog here polls the resident memory of the kernel and everything it started a few times a
second and stops the notebook past the cap. Each cell gets a time
limit (the kernel is interrupted, then killed if it does not stop) and the whole run gets one too;
a cell's kept output is capped, and no single kernel message may exceed a size cap, so a cell that
prints gigabytes costs time (bounded by its limit), not memory. Whatever a cell does, the next
cells still run while the kernel lives, and every process the kernel started is killed at the end.

It talks to the kernel with ``jupyter_client`` directly (no nbclient): the error status of a cell
comes from the kernel's ``execute_reply``, which is not lost when the output channel is flooded.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import sandbox
from ..errors import LasegError

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_MESSAGE_BYTES = 32 * 2 ** 20  # one kernel message larger than this drops the connection (and the message)
WATCHDOG_PERIOD = 0.2  # seconds between two looks at the kernel's resident memory (without a memory cgroup)


@dataclass
class RunLimits:
    """Limits of one kernel run."""

    cell_timeout: float = 120.0
    total_timeout: float = 600.0
    memory_bytes: int = 4 * 2 ** 30
    file_bytes: int = 2 ** 30
    output_chars: int = 20_000
    startup_timeout: float = 60.0
    interrupt_grace: float = 5.0


@dataclass
class CellResult:
    """What happened to one cell: ``status`` is ``ok``, ``error``, ``timeout`` or ``not_run``."""

    status: str
    ename: str = ""
    evalue: str = ""
    traceback: str = ""
    output: str = ""
    reason: str = ""  # not_run: "timeout" or "died"; timeout: "killed" when the interrupt did not stop it
    seconds: float = 0.0


@dataclass
class RunReport:
    """The results of :func:`run_cells`, one per cell, and how the kernel ended."""

    cells: list[CellResult] = field(default_factory=list)
    note: str = ""  # e.g. why the run stopped early
    seconds: float = 0.0
    peak_rss_bytes: int | None = None


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes (IPython colours its tracebacks)."""
    return _ANSI_RE.sub("", text)


#: The grader's environment variables a student's kernel may see: what finds Python, its packages,
#: the locale and the hardware, and the course's own settings (``LASEG_*``). Everything else
#: (tokens, passwords, cloud keys, the teacher's own paths) stays with the grader.
KERNEL_ENV_NAMES = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONNOUSERSITE",
                    "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SYSTEMROOT")
KERNEL_ENV_PREFIXES = ("LC_", "LASEG_", "CONDA_", "CUDA_", "OMP_", "MKL_", "OPENBLAS_")


def kernel_environment(scratch: Path, token: str, threads: int | None = None) -> dict[str, str]:
    """The kernel's environment: only the grader's variables named in :data:`KERNEL_ENV_NAMES` /
    :data:`KERNEL_ENV_PREFIXES`, with every per-user folder moved into ``scratch``."""
    env = {k: v for k, v in os.environ.items() if k in KERNEL_ENV_NAMES or k.startswith(KERNEL_ENV_PREFIXES)}
    dirs = {"HOME": "home", "TMPDIR": "tmp", "IPYTHONDIR": "ipython", "MPLCONFIGDIR": "mpl",
            "XDG_CACHE_HOME": "cache", "XDG_CONFIG_HOME": "config", "XDG_DATA_HOME": "data",
            "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTER_DATA_DIR": "jupyter"}
    for var, sub in dirs.items():
        (scratch / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(scratch / sub)
    env.update(TEMP=env["TMPDIR"], TMP=env["TMPDIR"], MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
               PYDEVD_DISABLE_FILE_VALIDATION="1", LASEGTUT_GRADE_TOKEN=token)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(threads))
    return env


def kill_leftovers(token: str) -> int:
    """Kill every process whose environment carries ``LASEGTUT_GRADE_TOKEN=token``; return how many (Linux)."""
    needle = f"LASEGTUT_GRADE_TOKEN={token}".encode()
    killed: list[Path] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or not _running(entry):
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(entry)
            except OSError:
                pass
    n = len(killed)
    deadline = time.monotonic() + 2.0
    while killed and time.monotonic() < deadline:  # SIGKILL is asynchronous: wait until they are gone
        killed = [e for e in killed if _running(e)]
        time.sleep(0.02)
    return n


def _running(entry: Path) -> bool:
    """Whether /proc/PID is a process that has not exited (zombies have)."""
    try:
        return entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _peak_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


class _Kernel:
    """A sandboxed ipykernel process (under its supervisor) and a blocking client connected to it."""

    def __init__(self, scratch: Path, limits: RunLimits, confine: sandbox.Confinement, threads: int | None) -> None:
        import zmq
        from jupyter_client.blocking import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.limits = limits
        self.token = secrets.token_hex(16)
        self.cgroup: sandbox.MemoryCgroup | None = None
        self.over_memory = False
        self.next_watch = 0.0
        self.proc: subprocess.Popen | None = None
        self.context = zmq.Context()
        runtime = scratch / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        conn_file, conn = write_connection_file(str(runtime / "kernel.json"), ip="127.0.0.1",
                                                key=secrets.token_hex(32).encode())
        ports = [conn[k] for k in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")]
        if confine.cgroup_parent and limits.memory_bytes:
            try:
                self.cgroup = sandbox.MemoryCgroup.create(confine.cgroup_parent, confine.cgroup_version,
                                                          limits.memory_bytes)
            except OSError:
                self.cgroup = None  # the watchdog caps it instead
        sandbox_cfg = {"scratch": str(scratch), "memory_bytes": limits.memory_bytes, "file_bytes": limits.file_bytes,
                       "landlock_abi": confine.landlock_abi, "ports": ports, "parent_pid": os.getpid(),
                       "cgroup": self.cgroup.path if self.cgroup else None, "uid": confine.uid, "gid": confine.gid,
                       "private_shm": confine.private_shm, "read_roots": confine.read_roots or None}
        cmd = [sys.executable, "-m", "lasegtut.classroom.sandbox", json.dumps(sandbox_cfg), "--",
               sys.executable, "-m", "ipykernel_launcher", "-f", conn_file, "--HistoryManager.enabled=False"]
        work = scratch / "work"
        work.mkdir(parents=True, exist_ok=True)
        env = kernel_environment(scratch, self.token, threads)
        if confine.uid is not None:
            _chown_tree(scratch, confine.uid, confine.gid if confine.gid is not None else confine.uid)
        self.stderr_path = scratch / "kernel-stderr.txt"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=work, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        self.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.client = BlockingKernelClient(context=self.context)
        self.client.load_connection_file(conn_file)
        self.client.start_channels(hb=False)
        self.poller = zmq.Poller()
        self.poller.register(self.client.shell_channel.socket, zmq.POLLIN)
        self.poller.register(self.client.iopub_channel.socket, zmq.POLLIN)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, n: int = 300) -> str:
        try:
            text = self.stderr_path.read_bytes()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return (lines[-1] if lines else "")[:n]

    def wait_ready(self) -> None:
        """Wait until the kernel answers on the shell channel and publishes on the output channel."""
        deadline = time.monotonic() + self.limits.startup_timeout
        shell_ok = iopub_ok = False
        next_ping = 0.0
        while not (shell_ok and iopub_ok):
            now = time.monotonic()
            if not self.alive():
                raise LasegError(f"the kernel exited at start-up ({self.stderr_tail() or 'no message'})")
            if now > deadline:
                raise LasegError(f"the kernel did not start within {self.limits.startup_timeout:.0f} s")
            if now >= next_ping:
                self.client.kernel_info()
                next_ping = now + 1.0
            self.poller.poll(100)
            while self.client.shell_channel.msg_ready():
                if self.client.get_shell_msg(timeout=0)["msg_type"] == "kernel_info_reply":
                    shell_ok = True
            while self.client.iopub_channel.msg_ready():
                self.client.get_iopub_msg(timeout=0)
                iopub_ok = True

    def reset_iopub(self) -> None:
        """Replace the output channel's socket (ZeroMQ does not reconnect after an oversized message)."""
        self.poller.unregister(self.client.iopub_channel.socket)
        self.client.iopub_channel.close()
        self.client._iopub_channel = None  # the property makes a new, connected channel
        import zmq  # as in __init__: only a running kernel needs it

        self.poller.register(self.client.iopub_channel.socket, zmq.POLLIN)
        try:
            self.wait_ready()
        except LasegError:
            pass  # the next cell will find a dead kernel, or run without output

    def memory_exceeded(self) -> bool:
        """Whether the kernel's processes use more resident memory than the cap: then they are all
        killed. A look every :data:`WATCHDOG_PERIOD` s, only without a memory cgroup (which caps it itself)."""
        if self.cgroup is not None or not self.limits.memory_bytes:
            return False
        now = time.monotonic()
        if now < self.next_watch:
            return False
        self.next_watch = now + WATCHDOG_PERIOD
        if sandbox.tree_rss(self.proc.pid) <= self.limits.memory_bytes:
            return False
        self.over_memory = True
        sandbox.kill_tree(self.proc.pid)
        return True

    def death_message(self) -> str:
        """Why the kernel is gone: the memory cap, or the signal / status it ended with."""
        if self.over_memory or (self.cgroup is not None and self.cgroup.oom_kills() > 0):
            return memory_message(self.limits.memory_bytes)
        return _death_message(self.proc.returncode, self.limits.memory_bytes)

    def interrupt(self) -> None:
        try:
            os.kill(self.proc.pid, signal.SIGINT)
        except OSError:
            pass

    def run_cell(self, source: str, timeout: float) -> CellResult:
        """Execute one cell; never raises for anything the cell does."""
        lim = self.limits
        start = time.monotonic()
        msg_id = self.client.execute(source, store_history=True, allow_stdin=False, stop_on_error=False)
        out: list[str] = []
        kept = dropped = 0
        reply = None
        idle = False
        interrupted_at: float | None = None
        reply_at = 0.0

        def keep(text: str) -> None:
            nonlocal kept, dropped
            room = lim.output_chars - kept
            if room > 0:
                out.append(text[:room])
            kept += min(len(text), max(room, 0))
            dropped += max(len(text) - max(room, 0), 0)

        while True:
            now = time.monotonic()
            if reply is not None and (idle or now - reply_at > 2.0):
                break
            if self.memory_exceeded() or not self.alive():
                if self.over_memory:
                    self.proc.wait()
                return CellResult("error", "KernelDied", self.death_message(), output="".join(out),
                                  seconds=now - start)
            if reply is None and interrupted_at is None and now - start > timeout:
                self.interrupt()
                interrupted_at = now
            if interrupted_at is not None and reply is None and now - interrupted_at > lim.interrupt_grace:
                return CellResult("timeout", "Timeout", f"still running after {timeout:.0f} s; the kernel was stopped",
                                  output="".join(out), reason="killed", seconds=now - start)
            self.poller.poll(50)
            n = 0
            while n < 2000 and self.client.iopub_channel.msg_ready():
                n += 1
                msg = self.client.get_iopub_msg(timeout=0)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    keep(content.get("text", ""))
                elif kind in ("execute_result", "display_data"):
                    keep(str(content.get("data", {}).get("text/plain", "")) + "\n")
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
            while reply is None and self.client.shell_channel.msg_ready():
                msg = self.client.get_shell_msg(timeout=0)
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    reply, reply_at = msg["content"], time.monotonic()
        text = "".join(out) + (f"\n[... {dropped:,d} more characters of output not kept]" if dropped else "")
        if not idle:  # the output channel dropped a message over MAX_MESSAGE_BYTES and closed: open a new one
            text += f"\n[output lost: one message was larger than {MAX_MESSAGE_BYTES // 2 ** 20} MiB]"
            self.reset_iopub()
        seconds = time.monotonic() - start
        if interrupted_at is not None:
            return CellResult("timeout", "Timeout", f"still running after {timeout:.0f} s; it was interrupted",
                              output=text, seconds=seconds)
        if reply.get("status") == "ok":
            return CellResult("ok", output=text, seconds=seconds)
        tb = strip_ansi("\n".join(reply.get("traceback", []) or []))
        evalue = strip_ansi(str(reply.get("evalue", "")))[:lim.output_chars]  # the grader puts it in the feedback
        return CellResult("error", str(reply.get("ename", "Error")), evalue,
                          traceback=tb[-lim.output_chars:], output=text, seconds=seconds)

    def close(self) -> int | None:
        """Stop the kernel and every process it started; return its peak resident memory (bytes) if known."""
        peak = None
        if self.proc is not None and self.alive():
            kids = sandbox.descendants(self.proc.pid)
            peak = max((_peak_rss(p) or 0 for p in kids), default=0) or None
        with contextlib.suppress(Exception):  # closing must not fail
            self.client.stop_channels()
        _close_event_loop()
        if self.proc is not None:
            try:  # the supervisor kills what the kernel started, even what left its session
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.poll() is None:
                sandbox.kill_tree(self.proc.pid)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.cgroup is not None:
            self.cgroup.kill_all()
            self.cgroup.remove()
        kill_leftovers(self.token)
        self.context.destroy(linger=0)
        return peak


def _close_event_loop() -> None:
    """Close the asyncio loop jupyter_client made for this thread (left open, it is collected at
    exit with ``Exception ignored in BaseEventLoop.__del__``)."""
    try:
        import asyncio

        from jupyter_core.utils import ensure_event_loop

        loop = ensure_event_loop()
        if not loop.is_running():
            loop.close()
            asyncio.set_event_loop(None)
    except Exception:  # noqa: BLE001 - only tidying
        pass


def memory_message(memory_bytes: int) -> str:
    """What a student reads when the notebook went past the memory cap."""
    return (f"the notebook used more than {memory_bytes / 2 ** 30:.1f} GiB of memory (the grader's cap, "
            "--memory-gb); the kernel was stopped")


def _death_message(returncode: int | None, memory_bytes: int) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = f" (out of memory? the cap is {memory_bytes / 2 ** 30:.1f} GiB)" if name == "SIGKILL" else ""
        return f"the kernel died ({name}){hint}"
    return f"the kernel exited (status {returncode})"


def _after(hook: Callable[[int, CellResult, Callable[[str, float], CellResult]], None], i: int, res: CellResult,
           kernel: _Kernel, limits: RunLimits, start: float) -> CellResult:
    """Call ``hook`` after cell ``i``; return the extra cell that killed or lost the kernel, if one did, else ``res``."""
    fatal: list[CellResult] = []

    def run_extra(source: str, timeout: float) -> CellResult:
        left = limits.total_timeout - (time.monotonic() - start)
        if fatal or left <= 0:
            return CellResult("not_run", reason="died" if fatal and fatal[0].ename == "KernelDied" else "timeout")
        extra = kernel.run_cell(source, min(timeout, left))
        if extra.ename == "KernelDied" or extra.reason == "killed":
            fatal.append(extra)
        return extra

    hook(i, res, run_extra)
    return fatal[0] if fatal else res


def run_cells(sources: list[str], scratch: str | os.PathLike, limits: RunLimits | None = None,
              landlock_abi: int = 0, threads: int | None = None, timeouts: list[float | None] | None = None,
              confine: sandbox.Confinement | None = None,
              after_cell: Callable[[int, CellResult, Callable[[str, float], CellResult]], None] | None = None
              ) -> RunReport:
    """Run ``sources`` one after the other in a new sandboxed kernel working in ``scratch``.

    Returns one :class:`CellResult` per source. A cell that raises is recorded and the next one
    runs; a cell past its time limit (``timeouts[i]`` if given and not None, else
    ``limits.cell_timeout``; seconds) is interrupted (status ``timeout``) and the run goes
    on, or, if the interrupt does not stop it, the kernel is killed and the remaining cells are
    ``not_run`` (reason ``timeout``); the same when ``limits.total_timeout`` is reached. When the
    kernel dies (memory cap, ``os._exit``), its cell is an ``error`` (``KernelDied``) and the rest
    are ``not_run`` (reason ``died``). Raises :class:`LasegError` only when the kernel cannot start.

    ``confine``: what to enforce (default: all this system gives, :func:`sandbox.probe`, with
    Landlock at ``landlock_abi``).

    ``after_cell(i, result, run_extra)``, when given, is called after each cell that neither killed
    nor lost the kernel; ``run_extra(source, timeout)`` runs one more cell in the same kernel (not
    in the report; within the run's time). The grader uses it to ask the kernel for data where a
    check cell stood (:mod:`lasegtut.classroom.checks`).
    """
    limits = limits or RunLimits()
    scratch = Path(scratch)
    if confine is None:
        import dataclasses

        confine = dataclasses.replace(sandbox.probe(limits.memory_bytes), landlock_abi=landlock_abi)
    start = time.monotonic()
    report = RunReport()
    kernel = _Kernel(scratch, limits, confine, threads)
    try:
        kernel.wait_ready()
        for i, src in enumerate(sources):
            left = limits.total_timeout - (time.monotonic() - start)
            if left <= 0:
                report.note = f"the notebook ran out of its {limits.total_timeout:.0f} s"
                report.cells += [CellResult("not_run", reason="timeout") for _ in sources[i:]]
                break
            own = timeouts[i] if timeouts is not None and i < len(timeouts) else None
            res = kernel.run_cell(src, min(own if own is not None else limits.cell_timeout, left))
            report.cells.append(res)
            if after_cell is not None and res.ename != "KernelDied" and res.reason != "killed":
                res = _after(after_cell, i, res, kernel, limits, start)
            if res.ename == "KernelDied" or res.reason == "killed":
                why = "died" if res.ename == "KernelDied" else "timeout"
                report.note = res.evalue if why == "died" else f"cell {i + 1} would not stop; the kernel was killed"
                report.cells += [CellResult("not_run", reason=why) for _ in sources[i + 1:]]
                break
    finally:
        report.peak_rss_bytes = kernel.close()
        report.seconds = time.monotonic() - start
    return report
