"""Safe reading and writing for every command: no pickled code, no input lost, nothing half-written.

- :func:`load_torch_file` reads weights and checkpoints with ``torch.load(weights_only=True)``
  only: tensors, numbers, strings, lists and dicts. A crafted file that would run code when
  unpickled (``weights_only=False``) is refused with one line instead. Lightning checkpoints
  written by ``lasegtut train`` hold nothing else, so they load this way too.
- :func:`check_output_file` checks an output path before any work: the right suffix, not a
  folder, not one of the inputs (also through symbolic links, hard links or another spelling of
  the same path), not an existing file without ``force``, and a folder that really accepts a new
  file (a probe file is created there and removed at once).
- :func:`make_output_dir` creates an output folder or says in one line why it cannot.
- :func:`termination_as_exception` turns SIGTERM into :class:`Terminated`, so that the cleanup
  of temporary files (``finally`` blocks, see :func:`lasegtut.preprocess.atomic_write`) also runs
  when a job is stopped, exactly as it does on Ctrl-C (SIGINT, ``KeyboardInterrupt``).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import LasegError


def json_safe(obj: Any) -> Any:
    """``obj`` (dicts, lists, tuples, numbers) with every infinite or NaN float (no surface distance,
    no volume error) made None: JSON has no Infinity or NaN, and strict parsers refuse them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def check_torch_records(path: str | os.PathLike, what: str = "weights file") -> None:
    """Refuse, from the zip's table of contents alone, a torch file whose records would take more
    memory than the file's own size: ``torch.save`` stores its tensors uncompressed, so only a
    crafted file (e.g. 3.2 GB of zeros deflated into 3.3 MB) declares more. Nothing is decompressed
    here; a file that is not a zip is left to ``torch.load`` (the old format cannot expand).

    Raises:
        LasegError: one line with the declared size (MB) and the file's size (MB).
    """
    import zipfile

    p = Path(path)
    try:
        size = p.stat().st_size
        with zipfile.ZipFile(p) as z:
            declared = sum(i.file_size for i in z.infolist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return  # not a zip (or unreadable): torch.load says why in one line
    if declared > size:
        raise LasegError(f"{p} is refused: its records declare {declared / 1e6:.1f} MB of tensors in a file of "
                         f"{size / 1e6:.1f} MB (compressed records, which torch.save never writes); "
                         f"it is not a {what} made by lasegtut")


def load_torch_file(path: str | os.PathLike, what: str = "weights file", *, mmap: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with one-line errors.

    ``weights_only=True`` is passed explicitly, so neither the torch version's default nor the
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` environment variable can turn full unpickling back on.
    The records' declared sizes are checked first (:func:`check_torch_records`). ``mmap=True``
    maps the tensors' storage instead of reading it (a file of the old, non-zip format is read),
    so that their declared shapes can be checked before a byte of a large tensor is in memory.

    Raises:
        LasegError: the file is missing, unreadable, not a torch file, or holds pickled objects
            other than tensors and plain Python data (e.g. code that would run when loaded).
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise LasegError(f"{what} {p} does not exist")
    check_torch_records(p, what)
    try:
        if mmap:
            try:
                return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):  # only "mmap can only be used with files saved with ..." falls back
                    raise
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported (?:global|class)\W+(?:GLOBAL )?([\w.]+)", str(e))
        if found:  # a pickle that names a Python object: what an attack (or a foreign file) looks like
            raise LasegError(f"{p} is refused: it holds a pickled Python object ({found.group(1)}), not only "
                             "weights, and loading it could run code; only load files made by lasegtut") from None
        raise LasegError(f"{p} is not a readable {what} (UnpicklingError)") from None
    except MemoryError:
        raise LasegError(f"{p} is too large to load in this machine's memory") from None
    except Exception as e:  # zip errors, EOFError, RuntimeError for a non-torch file ...
        raise LasegError(f"{p} is not a readable {what} ({type(e).__name__})") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when paths ``a`` and ``b`` name one file: the same path once symbolic links, ``..``
    and relative parts are resolved, or (both existing) the same inode, e.g. hard links."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    except (OSError, RuntimeError):  # a symlink loop, a path we may not stat: not provably the same
        return False


def check_output_file(output: str | os.PathLike, *, force: bool = False,
                      inputs: Sequence[str | os.PathLike | None] = (),
                      suffixes: Sequence[str] = (), what: str = "output") -> Path:
    """Check, before any work, that ``output`` can be written without losing anything.

    Args:
        output: the file to write.
        force: an existing ``output`` may be replaced.
        inputs: the files the command reads; ``output`` may never be one of them, even with
            ``force`` (compared through :func:`same_file`).
        suffixes: the allowed endings (e.g. ``(".nii.gz", ".nii")``), case-sensitive; empty: any.
        what: how the path is named in messages.

    Returns:
        ``output`` as a :class:`~pathlib.Path`.

    Raises:
        LasegError: a wrong suffix; ``output`` is a folder, is an input, or exists without
            ``force``; its folder is missing, is not a folder, or refuses a new file
            (read-only, ``/proc``, no permission).
    """
    out = Path(output)
    if suffixes and not any(out.name.endswith(s) for s in suffixes):
        raise LasegError(f"{what} {out} must end in {' or '.join(suffixes)}")
    if out.is_dir():
        raise LasegError(f"{what} {out} is a folder; give a file name")
    for src in inputs:
        if src is not None and same_file(src, out):
            raise LasegError(f"{what} {out} is the input {src}; an input is never overwritten: "
                             "choose another output name")
    if (out.exists() or out.is_symlink()) and not force:
        raise LasegError(f"{out} already exists; use --force to overwrite it")
    parent = out.parent
    if not parent.exists():
        raise LasegError(f"output folder {parent} does not exist")
    if not parent.is_dir():
        raise LasegError(f"cannot write {out}: {parent} is a file, not a folder")
    try:  # the only sure test that a new file can be made there: make one, and remove it
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".probe")
    except OSError as e:
        raise LasegError(f"cannot write in {parent} ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    os.unlink(probe)
    return out


def make_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) if needed; one-line LasegError when it cannot be
    (a file of that name, a path under a file, no permission)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise LasegError(f"{what} {p} is a file, not a folder; give a folder name")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LasegError(f"cannot create {what} {p} ({e.strerror or type(e).__name__})") from None
    return p


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (see :func:`termination_as_exception`).

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it.
    """


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def termination_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (the previous handler is restored
    after). Only in the main thread; elsewhere the block runs unchanged."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
