"""Confine a grading kernel: what it may read and write, as whom it runs, how much memory it uses.

``python -m lasegtut.classroom.sandbox CONFIG_JSON -- COMMAND ...`` is a small **supervisor**: it
sets itself up as described by ``CONFIG_JSON`` (made by :meth:`Confinement.config`), starts
``COMMAND`` (the Jupyter kernel) as its child, passes ``SIGINT`` on to it, and when the kernel ends
(or the supervisor gets ``SIGTERM``, or the grader dies) it kills every process the kernel started
and exits as the kernel did. What it enforces, each where this system allows it
(:func:`probe` finds out once; :meth:`Confinement.missing` says what is not enforced):

- **every process is found**: the supervisor is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so
  a process started with ``setsid`` and an empty environment is still its descendant, and with a
  memory cgroup every process is in the kernel's own cgroup, whatever it does;
- **memory**: the resident memory of the kernel and everything it starts, not its address space
  (the CUDA build of PyTorch reserves tens of GiB it never uses): a memory cgroup of its own
  (cgroup v1 ``memory.limit_in_bytes`` or v2 ``memory.max``; the kernel's shared memory counts),
  else the grader's watchdog (:func:`tree_rss`, polled by :mod:`lasegtut.classroom.kernel_run`),
  which stops the notebook past the cap;
- **a private /dev/shm** (root): a mount namespace of its own with a ``tmpfs`` of at most the
  memory cap on ``/dev/shm``, gone with the kernel;
- **an unprivileged user** (root): the kernel runs as ``nobody`` (its scratch folder is chowned),
  without capabilities, so it cannot read the grader's ``/proc/PID/environ``, ``chattr``/``chmod``
  files it does not own, or signal the grader; folders it needs but ``nobody`` cannot reach (a
  Python under ``/root``) are grafted into an otherwise empty ``tmpfs`` in its mount namespace;
- **Landlock** (Linux >= 5.13): it writes only in its scratch folder (and ``/dev/shm``), and
  **reads** only the system (``/usr``, ``/etc``, ``/proc``, ...), Python and its packages, the
  course package and data (:func:`read_roots`) and its scratch folder: never the teacher's
  notebooks, other submissions or the grades; from ABI 4 it may bind only its own kernel ports and
  connect to no TCP port; from ABI 6 it may not signal processes outside the sandbox;
- ``RLIMIT_FSIZE`` (largest file), no core dumps, first in line for the OOM killer, and killed when
  the grader dies (``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

# Syscall numbers are the same on every Linux architecture for these (asm-generic, 5.13+).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_CHILD_SUBREAPER = 1, 38, 36
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18

# Landlock filesystem rights: EXECUTE, WRITE_FILE, READ_FILE, READ_DIR (ABI 1), the rights that
# modify a folder (ABI 1), REFER (ABI 2), TRUNCATE (ABI 3).
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_FS_WRITE_ABI1 = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

#: Folders of the system a kernel may read (what runs Python and its libraries; ``/proc`` and
#: ``/sys`` for CPU and memory facts). Home folders, ``/tmp``, ``/srv``, ``/mnt`` ... are not here.
SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/proc", "/sys",
                     "/dev", "/run/nvidia-persistenced")
NOBODY = "nobody"


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none, e.g. not Linux, too old, or disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        v = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(v), 0)


def describe(abi: int) -> str:
    """One line saying what Landlock enforces at this ABI."""
    if abi <= 0:
        return ("no Landlock on this system (needs Linux >= 5.13): submissions run with the memory and file-size "
                "caps and in their own scratch folder, but could read and write elsewhere; grade untrusted work "
                "in a container")
    parts = ["reads only Python, the course and its own folder", "writes only in its own folder"]
    if abi >= 4:
        parts.append("no TCP connections")
    if abi >= 6:
        parts.append("no signals to the grader")
    return f"Landlock ABI {abi}: " + ", ".join(parts)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


# ----------------------------------------------------------------------------- what a kernel may read
def read_roots() -> list[str]:
    """Folders a kernel may read besides the system's and its scratch folder: Python (its prefixes
    and site-packages), the ``lasegtut`` package, and the course's data (bundled sample, duplicate
    pair, trained runs, the shared data set, ``$LASEG_DATA_DIR``). Never the course's ``notebooks/``."""
    import site
    import sysconfig

    from .. import paths

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(sys.executable).resolve().parent.parent)}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        roots.add(sysconfig.get_paths().get(key, ""))
    try:
        roots.update(site.getsitepackages())
    except AttributeError:
        pass
    user_site = getattr(site, "USER_SITE", None)
    if user_site and os.path.isdir(user_site):
        roots.add(user_site)
    roots.update(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    roots.update(str(p) for p in (paths.PACKAGE, paths.BUNDLED_SAMPLE.parent, paths.RUNS, paths.SHARED_DATA,
                                             paths.BENCHMARK_RESULTS))  # 09 reads the committed OOF table
    if os.environ.get(paths.DATA_DIR_VAR):
        roots.add(os.environ[paths.DATA_DIR_VAR])
    out = []
    for r in sorted(roots):
        if r and os.path.exists(r):
            out.append(os.path.realpath(r))
    return sorted(set(out))


def _reachable_by_others(path: str) -> bool:
    """Whether a user who owns nothing here (``nobody``) can reach ``path`` (every folder above it
    searchable by others)."""
    p = Path(path)
    for d in [p, *p.parents][1:]:
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


# ----------------------------------------------------------------------------- memory cgroups
def _own_cgroup_dirs() -> list[tuple[int, str]]:
    """(version, folder) of this process's memory cgroup: v1 memory controller, then v2."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    v1_mount = v2_mount = None
    for m in mounts:
        left, _, right = m.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        if rfields[0] == "cgroup" and "memory" in rfields[2].split(",") and v1_mount is None:
            v1_mount = fields[4]
        elif rfields[0] == "cgroup2" and v2_mount is None:
            v2_mount = fields[4]
    out = []
    for line in lines:
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if v1_mount and "memory" in ctrls.split(","):
            out.append((1, os.path.join(v1_mount, path.lstrip("/"))))
        elif v2_mount and hid == "0" and ctrls == "":
            out.append((2, os.path.join(v2_mount, path.lstrip("/"))))
    return out


class MemoryCgroup:
    """A memory cgroup of one kernel: created by the grader, joined by the supervisor, removed at the end."""

    def __init__(self, parent: str, version: int, name: str) -> None:
        self.version = version
        self.path = os.path.join(parent, name)

    @classmethod
    def create(cls, parent: str, version: int, limit_bytes: int) -> "MemoryCgroup":
        """Make ``parent/lasegtut-<pid>-<random>`` with a memory limit; raises OSError if it cannot."""
        cg = cls(parent, version, f"lasegtut-{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(cg.path)
        try:
            if version == 1:
                cg._write("memory.limit_in_bytes", str(limit_bytes))
                try:  # memory + swap, where swap accounting is on
                    cg._write("memory.memsw.limit_in_bytes", str(limit_bytes))
                except OSError:
                    pass
            else:
                cg._write("memory.max", str(limit_bytes))
                try:
                    cg._write("memory.swap.max", "0")
                except OSError:
                    pass
        except OSError:
            cg.remove()
            raise
        return cg

    def _write(self, name: str, text: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(text)

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self._read("cgroup.procs").split()]
        except (OSError, ValueError):
            return []

    def oom_kills(self) -> int:
        """How many processes the memory limit killed so far."""
        try:
            text = self._read("memory.oom_control" if self.version == 1 else "memory.events")
        except OSError:
            return 0
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def peak(self) -> int | None:
        try:
            return int(self._read("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"))
        except (OSError, ValueError):
            return None

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the cgroup until none is left (or ``timeout`` s)."""
        if self.version == 2:
            try:
                self._write("cgroup.kill", "1")
            except OSError:
                pass
        kill_until_gone(self.pids, timeout, pause=0.01)

    def remove(self) -> None:
        deadline = time.monotonic() + 2.0
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)


def _remove_stale_cgroups(folder: str) -> None:
    """Remove the (empty) cgroups of graders that were killed before they could."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith("lasegtut-")]
    except OSError:
        return
    for n in names:
        try:
            pid = int(n.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(folder, n))
            except OSError:
                pass


def _cgroup_parent(limit_bytes: int) -> tuple[str, int] | None:
    """Where this process may make memory cgroups for its kernels (tried by making one), or None."""
    for version, folder in _own_cgroup_dirs():
        _remove_stale_cgroups(folder)
        try:
            cg = MemoryCgroup.create(folder, version, limit_bytes)
        except OSError:
            continue
        cg.remove()
        return folder, version
    return None


# ----------------------------------------------------------------------------- processes
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    kids = _children_map()
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def tree_rss(pid: int) -> int:
    """Resident memory in bytes of ``pid`` and every process below it (pages shared between them
    are counted once per process, so this is an upper bound)."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total



def kill_until_gone(list_pids: Callable[[], Iterable[int]], timeout: float, pause: float) -> None:
    """SIGKILL every process ``list_pids()`` names, again every ``pause`` s, until it names none or
    ``timeout`` s have passed (a process that forks meanwhile is found by the next pass)."""
    deadline = time.monotonic() + timeout
    while (pids := list(list_pids())) and time.monotonic() < deadline:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(pause)

def kill_tree(pid: int, timeout: float = 2.0) -> None:
    """SIGKILL every process below ``pid`` until none is left (or ``timeout`` s), then ``pid``: while
    it lives (a subreaper), what is orphaned comes back under it and is found by the next pass."""
    kill_until_gone(lambda: descendants(pid), timeout, pause=0.005)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# ----------------------------------------------------------------------------- what this system gives
@dataclass
class Confinement:
    """What the grader will enforce on each kernel here; :func:`probe` fills it in."""

    landlock_abi: int = 0
    cgroup_parent: str | None = None
    cgroup_version: int = 0
    uid: int | None = None  # run kernels as this user (root only)
    gid: int | None = None
    private_shm: bool = False  # a mount namespace with its own /dev/shm (root only)
    read_roots: list[str] = field(default_factory=list)  # besides the system's and the scratch folder
    notes: list[str] = field(default_factory=list)  # what could not be enforced, one line each

    def describe(self) -> str:
        """One line: what is enforced."""
        parts = [describe(self.landlock_abi)]
        parts.append(f"memory: cgroup v{self.cgroup_version}" if self.cgroup_parent else "memory: watchdog on RSS")
        if self.uid is not None:
            parts.append(f"runs as uid {self.uid}")
        if self.private_shm:
            parts.append("private /dev/shm")
        return "; ".join(parts)

    def missing(self) -> list[str]:
        """One line per protection this system does not give (for the grader to say at start)."""
        return list(self.notes)


def _nobody() -> tuple[int, int]:
    try:
        import pwd

        pw = pwd.getpwnam(NOBODY)
        return pw.pw_uid, pw.pw_gid
    except (ImportError, KeyError):
        return 65534, 65534


@functools.lru_cache(maxsize=4)
def probe(memory_bytes: int = 4 * 2 ** 30) -> Confinement:
    """Find out once which confinements this system gives the grader (see the module doc)."""
    c = Confinement(landlock_abi=landlock_abi())
    if not sys.platform.startswith("linux"):
        c.notes.append("not Linux: kernels run without a memory cap, Landlock, an unprivileged user or a private "
                       "/dev/shm (only the time and file-size limits); grade untrusted work in a Linux container")
        return c
    if c.landlock_abi <= 0:
        c.notes.append(describe(0))
    c.read_roots = read_roots()  # what Landlock lets it read; as root, also what is grafted for nobody
    found = _cgroup_parent(memory_bytes)
    if found:
        c.cgroup_parent, c.cgroup_version = found
    else:
        c.notes.append("no memory cgroup can be made here: the memory cap is a watchdog that polls the kernels' "
                       "resident memory (a fast allocation can overshoot it briefly), and /dev/shm is not capped")
    if os.geteuid() == 0:
        c.uid, c.gid = _nobody()
        c.private_shm, can_drop = _try_root_confinement(c.uid, c.gid)
        if not c.private_shm:
            c.notes.append("run as root, but no mount namespace can be made here (no CAP_SYS_ADMIN?): kernels "
                           "share /dev/shm (what they leave there is removed at the end) and a Python or course "
                           "folder that nobody cannot reach makes kernels run as root")
        if not can_drop:
            c.notes.append(f"run as root, but kernels cannot run as {NOBODY} here (no CAP_SETUID, or Python or the "
                           "course is in a folder that user cannot reach): they run as root without that protection")
            c.uid = c.gid = None
    else:
        c.notes.append("not run as root: kernels run as your own user (they may change the permissions of your "
                       "files, though Landlock keeps them from reading or writing them), share /dev/shm (what "
                       "they leave there is removed at the end)")
    return c


def _try_root_confinement(uid: int, gid: int) -> tuple[bool, bool]:
    """(a private mount namespace works, a kernel can then run Python as ``uid``), tried in a child
    process that does what the supervisor will do."""
    import subprocess

    code = ("import os, sys\nfrom lasegtut.classroom import sandbox as s\n"
            "needed = s.read_roots() + [os.path.dirname(os.path.realpath(sys.executable))]\n"
            "try:\n    s._private_mounts(2 ** 20, %d, needed)\nexcept OSError:\n    sys.exit(3)\n"
            "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n"
            "os.execv(sys.executable, [sys.executable, '-c', 'import encodings, lasegtut'])") % (uid, gid, uid)
    try:
        rc = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=60, cwd="/").returncode
    except (OSError, subprocess.SubprocessError):
        return False, False
    return rc != 3, rc == 0


# ----------------------------------------------------------------------------- the supervisor
def apply_landlock(scratch: str, ports: list[int], abi: int, read_roots: list[str] | None = None) -> None:
    """Restrict this process (and its future children) to writing under ``scratch`` and, when
    ``read_roots`` is given, to reading only those, :data:`SYSTEM_READ_ROOTS` and ``scratch``."""
    libc = _libc()
    write = _FS_WRITE_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fs = write | (_FS_READ if read_roots is not None else 0)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    fd = _check(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
                "landlock_create_ruleset")
    file_rights = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
    try:
        def allow_path(path: str, access: int) -> None:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return  # e.g. no /dev/shm here: nothing to allow
            try:
                if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                    access &= file_rights
                rule = _PathBeneathAttr(access & fs, pfd)
                _check(libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)),
                       f"landlock_add_rule({path})")
            finally:
                os.close(pfd)

        if read_roots is not None:
            for root in (*SYSTEM_READ_ROOTS, *read_roots):
                allow_path(root, _FS_READ)
        allow_path(scratch, fs)
        allow_path("/dev/shm", fs)
        import glob

        gpus = glob.glob("/dev/nvidia*") + ["/dev/kfd", "/dev/dri", "/dev/dxg"]  # a GPU the course may use
        for dev in ("/dev/null", "/dev/zero", "/dev/full", *gpus):
            allow_path(dev, _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0))
        if net:
            for port in ports:
                rule = _NetPortAttr(_NET_BIND_TCP, int(port))
                _check(libc.syscall(_SYS_ADD_RULE, fd, _RULE_NET_PORT, ctypes.byref(rule), ctypes.c_uint32(0)),
                       f"landlock_add_rule(port {port})")
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(libc.syscall(_SYS_RESTRICT_SELF, fd, ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(fd)


def apply_limits(file_bytes: int | None) -> None:
    """File-size cap, no core dumps, first in line for the OOM killer. (The memory cap is the
    cgroup's or the grader's watchdog: an address-space limit would break the CUDA build of PyTorch.)"""
    import resource

    limits = [(resource.RLIMIT_CORE, 0)]
    if file_bytes:
        limits.append((resource.RLIMIT_FSIZE, file_bytes))
    for which, value in limits:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _mount(libc: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _private_mounts(memory_bytes: int | None, uid: int | None, needed: list[str]) -> None:
    """A mount namespace of this process's own: a fresh ``/dev/shm`` (at most ``memory_bytes``), and
    for ``uid``, every folder of ``needed`` that ``uid`` cannot reach grafted into an otherwise
    empty ``tmpfs`` over the first folder above it that ``uid`` cannot search (e.g. ``/root``)."""
    libc = _libc()
    _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)
    if os.path.isdir("/dev/shm"):
        size = f",size={int(memory_bytes)}" if memory_bytes else ""
        _mount(libc, "tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777" + size)
    if uid is None:
        return
    grafts: dict[str, list[str]] = {}
    for p in needed:
        if not os.path.exists(p) or _reachable_by_others(p):
            continue
        top = next(str(d) for d in reversed(Path(p).parents) if str(d) != "/" and not os.stat(d).st_mode & stat.S_IXOTH)
        grafts.setdefault(top, []).append(p)
    for top, inner in grafts.items():
        inner = [p for p in inner if not any(q != p and Path(p).is_relative_to(q) for q in inner)]
        fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in inner}
        _mount(libc, "tmpfs", top, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
        for p, pfd in fds.items():
            target = os.path.join(top, os.path.relpath(p, top))
            os.makedirs(target, mode=0o755, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{pfd}", target, None, _MS_BIND | _MS_REC, None)
            os.close(pfd)


def _reap_and_kill_descendants(timeout: float = 5.0) -> None:
    """Kill every process below this one (a subreaper: orphans come back to it) and reap them."""
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = descendants(me)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = -1
            if pid <= 0:
                break
        if not pids:
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
        time.sleep(0.01)


class _Stop(Exception):
    pass


def _supervise(kernel: int) -> int:
    """Wait for the kernel (passing SIGINT on), then kill what it left; its wait status."""
    def on_int(signum: int, frame: Any) -> None:
        try:
            os.kill(kernel, signal.SIGINT)
        except OSError:
            pass

    def on_term(signum: int, frame: Any) -> None:
        raise _Stop

    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    status = 0
    try:
        while True:
            try:
                pid, st = os.wait()
            except ChildProcessError:
                break
            if pid == kernel:
                status = st
                break
    except _Stop:
        status = signal.SIGKILL  # the wait status of a process killed by SIGKILL
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _reap_and_kill_descendants()
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m lasegtut.classroom.sandbox CONFIG_JSON -- COMMAND ...``: supervise COMMAND, confined."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m lasegtut.classroom.sandbox CONFIG_JSON -- COMMAND ...", file=sys.stderr)
        return 2
    cfg = json.loads(argv[0])
    command = argv[2:]
    linux = sys.platform.startswith("linux")
    libc = _libc() if linux else None
    if linux and cfg.get("parent_pid"):
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the grader died: clean up, then go
        if os.getppid() != int(cfg["parent_pid"]):
            return 1  # the grader is already gone
    if cfg.get("cgroup"):
        with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if linux and cfg.get("private_shm"):
        _private_mounts(cfg.get("memory_bytes"), uid, [cfg["scratch"], *(cfg.get("read_roots") or []),
                                                       os.path.dirname(os.path.realpath(command[0]))])
    if linux:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    kernel = os.fork()
    if kernel == 0:
        try:
            apply_limits(cfg.get("file_bytes"))
            if uid is not None:
                os.setgroups([])
                os.setgid(int(gid))
                os.setuid(int(uid))
            if linux:
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
            abi = int(cfg.get("landlock_abi", 0))
            if abi > 0:
                roots = cfg.get("read_roots")
                apply_landlock(cfg["scratch"], list(cfg.get("ports", [])), abi, list(roots) if roots else None)
            os.execv(command[0], command)
        except BaseException as e:  # noqa: BLE001 - the child must never return into the supervisor
            print(f"sandbox: {type(e).__name__}: {e}", file=sys.stderr)
            os._exit(127)
    status = _supervise(kernel)
    if os.WIFSIGNALED(status):  # die as the kernel died, so the grader can say why
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(1)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main())
