"""Confine a grading kernel: a memory cap, a file-size cap, and (Linux) a Landlock sandbox.

``python -m lasegtut.classroom.sandbox CONFIG_JSON -- COMMAND ...`` applies the limits described by
``CONFIG_JSON`` to itself and then replaces itself with ``COMMAND`` (the Jupyter kernel), so the
kernel and everything it starts inherit them:

- ``RLIMIT_AS`` (memory cap): an allocation past it raises ``MemoryError`` in the student's code;
- ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_CORE`` = 0, and the kernel first in line for the
  out-of-memory killer (``oom_score_adj``), and killed when the grader dies (``PR_SET_PDEATHSIG``);
- Landlock (Linux >= 5.13, unprivileged): the process may **write only inside its scratch
  folder** (and ``/dev/shm``, ``/dev/null``); from Landlock ABI 4 it may bind only its own
  kernel ports and connect to no TCP port (so no other student's kernel); from ABI 6 it may not
  signal processes outside the sandbox (the grader) nor reach abstract Unix sockets. Landlock
  also forbids ptrace of processes outside the sandbox.

Reading is not restricted. Where Landlock is missing (another OS, an old kernel) the limits still
apply and :func:`landlock_abi` returns 0, so the grader can say so.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

# Syscall numbers are the same on every Linux architecture for these (asm-generic, 5.13+).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_NO_NEW_PRIVS, _PR_SET_PDEATHSIG = 38, 1

# Filesystem rights that modify something (Landlock ABI 1), then REFER (ABI 2) and TRUNCATE (ABI 3).
_FS_WRITE_FILE = 1 << 1
_FS_WRITE_ABI1 = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


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
    """One line saying what the sandbox enforces at this ABI."""
    if abi <= 0:
        return ("no Landlock on this system (needs Linux >= 5.13): submissions run with the memory and file-size "
                "caps and in their own scratch folder, but could write elsewhere; grade untrusted work in a container")
    parts = ["writes only in the scratch folder"]
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


def apply_landlock(scratch: str, ports: list[int], abi: int) -> None:
    """Restrict this process (and its future children) to writing under ``scratch``; see the module doc."""
    libc = _libc()
    fs = _FS_WRITE_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    fd = _check(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
                "landlock_create_ruleset")
    try:
        def allow_path(path: str, access: int) -> None:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return  # e.g. no /dev/shm here: nothing to allow
            try:
                rule = _PathBeneathAttr(access, pfd)
                _check(libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)),
                       f"landlock_add_rule({path})")
            finally:
                os.close(pfd)

        allow_path(scratch, fs)
        allow_path("/dev/shm", fs)
        for dev in ("/dev/null", "/dev/zero", "/dev/full"):
            allow_path(dev, _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0))
        if net:
            for port in ports:
                rule = _NetPortAttr(_NET_BIND_TCP, int(port))
                _check(libc.syscall(_SYS_ADD_RULE, fd, _RULE_NET_PORT, ctypes.byref(rule), ctypes.c_uint32(0)),
                       f"landlock_add_rule(port {port})")
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(libc.syscall(_SYS_RESTRICT_SELF, fd, ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(fd)


def apply_limits(memory_bytes: int | None, file_bytes: int | None) -> None:
    """Memory (address space) and file-size caps, no core dumps, first in line for the OOM killer."""
    import resource

    limits = [(resource.RLIMIT_CORE, 0)]
    if memory_bytes:
        limits.append((resource.RLIMIT_AS, memory_bytes))
    if file_bytes:
        limits.append((resource.RLIMIT_FSIZE, file_bytes))
    for which, value in limits:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):  # e.g. macOS does not enforce RLIMIT_AS: run without that cap
            pass
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m lasegtut.classroom.sandbox CONFIG_JSON -- COMMAND ...``: confine this process, then exec COMMAND."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m lasegtut.classroom.sandbox CONFIG_JSON -- COMMAND ...", file=sys.stderr)
        return 2
    cfg = json.loads(argv[0])
    command = argv[2:]
    if sys.platform.startswith("linux") and cfg.get("parent_pid"):
        # die with the grader, even if it is killed outright (kept across exec, not by the kernel's children)
        _libc().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if os.getppid() != int(cfg["parent_pid"]):
            return 1  # the grader is already gone
    apply_limits(cfg.get("memory_bytes"), cfg.get("file_bytes"))
    abi = int(cfg.get("landlock_abi", 0))
    if abi > 0:
        apply_landlock(cfg["scratch"], list(cfg.get("ports", [])), abi)
    os.execv(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
