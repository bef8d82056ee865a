"""The teacher's checks, run where the student's code cannot reach them.

A check cell used to run in the student's own kernel, after the student's code, so the student's
code could rewrite it (an input or AST transformer), fake a module it used (``sys.modules``),
swallow its errors (``set_custom_exc``) or print its source. Now the student's kernel only
*produces data* and the check runs in a **checker**: a separate Python process that never runs a
line of student code (``python -m lasegtut.classroom.checks``):

1. :func:`plan_check` reads the check cell's syntax tree once: the *free names* it reads (not
   assigned in the check, not builtins), minus the names the teacher's own cells import
   (``np``, ``torch``, ``volume``...: the checker imports them itself, so a faked module in the
   student's kernel changes nothing). A name only ever used as ``name.attr`` is asked for as
   ``name.attr``.
2. Where the check cell stood, the grader sends the kernel one line (:func:`export_source`): write
   those names' values into a folder as plain data (:func:`encode`: ``None``, bool, int, float,
   complex, str, list, tuple, dict, set, numpy arrays as ``.npy`` without pickles, torch tensors as
   arrays, dataclasses as records); a *function* is marked as callable.
3. The checker reads that folder (:func:`decode`: every file opened without following links,
   sizes, depths and counts bounded, dtypes checked, ``allow_pickle=False``), binds the names and
   executes the teacher's check source. A call of a student function sends its arguments (plain
   data again) to the kernel, which calls the function and sends back the result
   (:func:`kernel_call`), again read with :func:`decode`. The expected values and the check's
   source never enter the student's kernel; only the inputs of those calls do.

The outcome is ``correct``, ``wrong`` (an ``assert`` of the check failed: the feedback carries the
assert's message if the teacher wrote one, never the check's source), ``missing`` (the student's
function raised ``NotImplementedError``), ``error`` or ``timeout``.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import os
import re
import select
import stat
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MAX_DATA_BYTES = 1 * 2 ** 30  # all arrays of one export or one call's result together
MAX_MANIFEST_BYTES = 32 * 2 ** 20  # the JSON description of one export or result
MAX_NODES = 2_000_000  # values (list items, dict entries...) in one export or result
MAX_DEPTH = 40  # nesting of lists, dicts and records
MAX_INT_DIGITS = 4000
ARRAY_KINDS = "biufcUS"  # numpy dtypes a value may have: no objects, no structured or void types
MANIFEST = "manifest.json"
_FILE_RE = re.compile(r"^a[0-9]{1,9}\.npy$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class CodecError(ValueError):
    """A value that cannot be written or read as plain data (with the reason)."""


# ============================================================================ plan (static)
@dataclass
class CheckPlan:
    """What the checker needs for one exercise: the teacher's imports, the names to ask for, the source."""

    exercise: str
    source: str
    imports: list[str] = field(default_factory=list)  # one import statement per line, from the teacher's cells
    names: list[str] = field(default_factory=list)  # the names to export from the student's kernel
    attrs: dict[str, list[str]] = field(default_factory=dict)  # name -> attributes, for a name only used as name.attr


def _python_source(source: str) -> str:
    """A cell's source with IPython's line magics and shell escapes blanked (they are not Python)."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(_python_source(source))
    except (SyntaxError, ValueError, RecursionError):
        return None


def _stored_names(tree: ast.AST) -> set[str]:
    """Every name a piece of code binds anywhere (assignments, loops, imports, defs, arguments)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            out.update(node.names)
        elif hasattr(ast, "MatchAs") and isinstance(node, getattr(ast, "MatchAs")) and node.name:
            out.add(node.name)
    return out


def _import_lines(tree: ast.Module) -> dict[str, str]:
    """{bound name: one import statement binding it} for a cell's top-level absolute imports."""
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                out[(a.asname or a.name).split(".")[0]] = f"import {a.name}" + (f" as {a.asname}" if a.asname else "")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module != "__future__":
            for a in node.names:
                if a.name != "*":
                    out[a.asname or a.name] = f"from {node.module} import {a.name}" + \
                        (f" as {a.asname}" if a.asname else "")
    return out


def plan_check(cells: list[dict[str, Any]], roles: list[str], check_cell: int, exercise: str) -> CheckPlan:
    """The :class:`CheckPlan` of the check cell ``check_cell`` of a teacher notebook (cells and their roles).

    Raises :class:`~lasegtut.errors.LasegError` when the check cell is not plain Python.
    """
    from ..errors import LasegError

    def src(c: dict[str, Any]) -> str:
        s = c.get("source", "")
        return "".join(s) if isinstance(s, list) else str(s)

    source = src(cells[check_cell])
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError) as e:
        raise LasegError(f"check cell {exercise} (cell {check_cell + 1}) is not plain Python, which the grader "
                         f"runs outside the student's kernel: {str(e).splitlines()[0][:120]}") from None
    imported: dict[str, str] = {}
    assigned: set[str] = set()
    for i, c in enumerate(cells[:check_cell]):
        if c.get("cell_type") != "code" or roles[i] == "check":
            continue
        t = _parse(src(c))
        if t is None:
            continue
        imports = _import_lines(t)
        stores = _stored_names(t) - set(imports) if roles[i] != "answer" else _stored_names(t)
        if roles[i] != "answer":
            imported.update(imports)
        assigned |= stores
    # a name the teacher imports but also assigns (or a student answer binds) is the notebook's data, not a module
    imported = {k: v for k, v in imported.items() if k not in assigned}
    own = _stored_names(tree)
    loaded: dict[str, bool] = {}  # name -> only ever used as name.attr
    attrs: dict[str, list[str]] = {}
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            parent = parents.get(id(node))
            dotted = isinstance(parent, ast.Attribute) and parent.value is node and isinstance(parent.ctx, ast.Load)
            loaded[node.id] = loaded.get(node.id, True) and dotted
            if dotted:
                attrs.setdefault(node.id, [])
                if parent.attr not in attrs[node.id]:
                    attrs[node.id].append(parent.attr)
    free = [n for n in loaded if n not in own and not hasattr(builtins, n) and n not in imported]
    used_imports = [imported[n] for n in loaded if n in imported and n not in own]
    return CheckPlan(exercise, source, used_imports, free, {n: attrs[n] for n in free if loaded[n]})


# ============================================================================ plain data
@dataclass
class _Budget:
    nodes: int = 0
    data_bytes: int = 0
    files: int = 0


def _is_tensor(v: Any) -> bool:
    return type(v).__module__.split(".")[0] == "torch" and hasattr(v, "detach") and hasattr(v, "numpy")


def _encode(v: Any, folder: int, budget: _Budget, depth: int, top: bool) -> dict[str, Any]:
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise CodecError(f"more than {MAX_NODES:,d} values")
    if depth > MAX_DEPTH:
        raise CodecError(f"nested deeper than {MAX_DEPTH} levels")
    import numpy as np

    if v is None:
        return {"n": 0}
    if isinstance(v, (bool, np.bool_)):
        return {"b": bool(v)}
    if isinstance(v, np.ndarray) or isinstance(v, np.generic) or _is_tensor(v):
        kind = "pt" if _is_tensor(v) else "np0" if isinstance(v, np.generic) else "a"
        arr = v.detach().cpu().numpy() if kind == "pt" else np.asarray(v)
        if arr.dtype.kind not in ARRAY_KINDS or arr.dtype.fields is not None:
            raise CodecError(f"an array of dtype {arr.dtype} (only numbers, booleans and text)")
        budget.data_bytes += arr.nbytes
        if budget.data_bytes > MAX_DATA_BYTES:
            raise CodecError(f"more than {MAX_DATA_BYTES // 2 ** 20} MiB of arrays")
        name = f"a{budget.files}.npy"
        budget.files += 1
        with _create(folder, name) as f:
            np.save(f, arr, allow_pickle=False)
        return {kind: name}
    if isinstance(v, int):
        return {"i": str(int(v))}
    if isinstance(v, float):
        return {"f": float(v)}
    if isinstance(v, complex):
        return {"c": [v.real, v.imag]}
    if isinstance(v, str):
        return {"s": str(v)}
    if isinstance(v, (bytes, bytearray)):
        return {"y": bytes(v).hex()}
    if isinstance(v, (list, tuple, set, frozenset)):
        tag = "l" if isinstance(v, list) else "t" if isinstance(v, tuple) else "set"
        return {tag: [_encode(x, folder, budget, depth + 1, False) for x in v]}
    if isinstance(v, dict):
        return {"d": [[_encode(k, folder, budget, depth + 1, False), _encode(x, folder, budget, depth + 1, False)]
                      for k, x in v.items()]}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"r": [[f.name, _encode(getattr(v, f.name), folder, budget, depth + 1, False)]
                      for f in dataclasses.fields(v)]}
    if isinstance(v, types.SimpleNamespace):
        return {"r": [[k, _encode(x, folder, budget, depth + 1, False)] for k, x in vars(v).items()]}
    if top and callable(v):
        return {"fn": 0}
    raise CodecError(f"a {type(v).__name__}, which is not plain data (numbers, text, lists, dicts, arrays)")


def _open_parent(folder: Path, ident: tuple[int, int] | None) -> int:
    """An open descriptor of ``folder``'s parent, not followed if it is a link; with ``ident``
    ((st_dev, st_ino)), it must be that very folder (the kernel cannot swap it for a link elsewhere)."""
    try:
        fd = os.open(folder.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise CodecError(f"no exchange folder ({e.strerror})") from None
    st = os.fstat(fd)
    if ident is not None and (st.st_dev, st.st_ino) != tuple(ident):
        os.close(fd)
        raise CodecError("the exchange folder was replaced")
    return fd


def folder_ident(folder: str | os.PathLike) -> tuple[int, int]:
    """(st_dev, st_ino) of a folder, to recognise it later."""
    st = os.stat(folder, follow_symlinks=False)
    return st.st_dev, st.st_ino


def remove_flat(folder: str | os.PathLike, ident: tuple[int, int] | None = None) -> None:
    """Remove ``folder`` and the files in it without following links (what is left, the scratch cleanup removes)."""
    folder = Path(folder)
    try:
        pfd = _open_parent(folder, ident)
    except CodecError:
        return
    try:
        dfd = os.open(folder.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
        try:
            for name in os.listdir(dfd):
                try:
                    os.unlink(name, dir_fd=dfd)
                except OSError:
                    pass
        finally:
            os.close(dfd)
        os.rmdir(folder.name, dir_fd=pfd)
    except OSError:
        pass
    finally:
        os.close(pfd)


def encode(entries: dict[str, Any], folder: str | os.PathLike, ident: tuple[int, int] | None = None,
           missing: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Write ``entries`` ({name: value}) into the new folder ``folder`` as plain data (see the module doc).

    A value that cannot be written becomes ``{"u": reason}``, a name in ``missing`` ``{"missing": 0}``.
    Returns what was written for each name (arrays as file names).
    ``ident``: see :func:`_open_parent`. Files are created anew, never through a link.
    """
    folder = Path(folder)
    pfd = _open_parent(folder, ident)
    try:
        os.mkdir(folder.name, 0o755, dir_fd=pfd)
        dfd = os.open(folder.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
    finally:
        os.close(pfd)
    try:
        budget = _Budget()
        out: dict[str, Any] = {}
        for name, value in entries.items():
            try:
                out[name] = _encode(value, dfd, budget, 0, True)
            except CodecError as e:
                out[name] = {"u": str(e)[:300]}
            except RecursionError:
                out[name] = {"u": "nested too deep"}
        out.update({name: {"missing": 0} for name in missing})
        with _create(dfd, MANIFEST) as f:
            f.write(json.dumps({"entries": out}).encode())
    finally:
        os.close(dfd)
    return out


def _create(dir_fd: int, name: str) -> Any:
    return os.fdopen(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd), "wb")


class StudentFunction:
    """Stands for a function of the student's notebook in the checker: calling it calls it in the kernel."""

    def __init__(self, name: str, caller: Callable[[str, tuple, dict], Any]) -> None:
        self.name = name
        self._caller = caller

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._caller(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<your function {self.name}>"


class Unavailable:
    """A value of the student's notebook that could not be sent to the check (with why)."""

    def __init__(self, name: str, why: str) -> None:
        self.name, self.why = name, why


def _open_in(dir_fd: int, name: str, limit: int) -> bytes:
    """The bytes of the regular file ``name`` in the open folder ``dir_fd`` (no links, at most ``limit``)."""
    if "/" in name or name in (".", ".."):
        raise CodecError(f"bad file name {name!r}")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as e:
        raise CodecError(f"{name}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CodecError(f"{name} is not a regular file")
        if st.st_size > limit:
            raise CodecError(f"{name} is larger than {limit // 2 ** 20} MiB")
        chunks, left = [], limit + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 24))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > limit:
            raise CodecError(f"{name} is larger than {limit // 2 ** 20} MiB")
        return data
    finally:
        os.close(fd)


def _load_array(dir_fd: int, name: str, budget: _Budget) -> Any:
    import io

    import numpy as np

    if not isinstance(name, str) or not _FILE_RE.match(name):
        raise CodecError("bad array file name")
    raw = _open_in(dir_fd, name, MAX_DATA_BYTES - budget.data_bytes + 4096)
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(f)
        if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.hasobject:
            raise CodecError(f"an array of dtype {dtype}")
        n = 1
        for s in shape:
            n *= int(s)
        if n * dtype.itemsize > len(raw):
            raise CodecError("an array file shorter than its header says")
        f.seek(0)
        arr = np.load(f, allow_pickle=False)
    except CodecError:
        raise
    except (ValueError, OSError, EOFError, TypeError, SyntaxError) as e:
        raise CodecError(f"an unreadable array ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") \
            from None
    budget.data_bytes += arr.nbytes
    if budget.data_bytes > MAX_DATA_BYTES:
        raise CodecError(f"more than {MAX_DATA_BYTES // 2 ** 20} MiB of arrays")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _hashable(k: Any) -> bool:
    if isinstance(k, tuple):
        return all(_hashable(x) for x in k)
    return k is None or isinstance(k, (bool, int, float, complex, str))


def _decode(node: Any, dir_fd: int, budget: _Budget, depth: int) -> Any:
    budget.nodes += 1
    if budget.nodes > MAX_NODES or depth > MAX_DEPTH:
        raise CodecError("too many or too deeply nested values")
    if not isinstance(node, dict) or len(node) != 1:
        raise CodecError("a malformed value")
    (tag, v), = node.items()
    if tag == "n":
        return None
    if tag == "b" and isinstance(v, bool):
        return v
    if tag == "i" and isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,%d}" % MAX_INT_DIGITS, v):
        return int(v)
    if tag == "f" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if tag == "c" and isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return complex(v[0], v[1])
    if tag == "s" and isinstance(v, str):
        return v
    if tag == "y" and isinstance(v, str):
        try:
            return bytes.fromhex(v)
        except ValueError:
            raise CodecError("malformed bytes") from None
    if tag in ("l", "t", "set") and isinstance(v, list):
        items = [_decode(x, dir_fd, budget, depth + 1) for x in v]
        if tag == "set":
            if not all(_hashable(x) for x in items):
                raise CodecError("a set of unhashable values")
            return set(items)
        return items if tag == "l" else tuple(items)
    if tag == "d" and isinstance(v, list):
        out = {}
        for kv in v:
            if not isinstance(kv, list) or len(kv) != 2:
                raise CodecError("a malformed dict")
            k = _decode(kv[0], dir_fd, budget, depth + 1)
            if not _hashable(k):
                raise CodecError("a dict key that is not a number, text or tuple")
            out[k] = _decode(kv[1], dir_fd, budget, depth + 1)
        return out
    if tag == "r" and isinstance(v, list):
        fields = {}
        for kv in v:
            if not (isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) and kv[0].isidentifier()):
                raise CodecError("a malformed record")
            fields[kv[0]] = _decode(kv[1], dir_fd, budget, depth + 1)
        return types.SimpleNamespace(**fields)
    if tag in ("a", "np0", "pt"):
        arr = _load_array(dir_fd, v, budget)
        if tag == "np0":
            if arr.ndim != 0:
                raise CodecError("a malformed number")
            return arr[()]
        if tag == "pt":
            import torch

            return torch.from_numpy(arr)
        return arr
    raise CodecError("a malformed value")


def decode(folder: str | os.PathLike, make_function: Callable[[str], Any] | None = None,
           ident: tuple[int, int] | None = None) -> dict[str, Any]:
    """Read what :func:`encode` wrote in ``folder``, as untrusted input: {name: value}.

    A callable becomes ``make_function(name)`` (refused when ``None``); a value the kernel could
    not write becomes :class:`Unavailable`. Raises :class:`CodecError` for anything malformed.
    """
    folder = Path(folder)
    pfd = _open_parent(folder, ident)
    try:
        dir_fd = os.open(folder.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
    except OSError as e:
        raise CodecError(f"no data ({e.strerror})") from None
    finally:
        os.close(pfd)
    try:
        try:
            manifest = json.loads(_open_in(dir_fd, MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise CodecError(f"a malformed manifest ({type(e).__name__})") from None
        entries = manifest.get("entries") if isinstance(manifest, dict) else None
        if not isinstance(entries, dict):
            raise CodecError("a malformed manifest")
        budget = _Budget()
        out: dict[str, Any] = {}
        for name, node in entries.items():
            if not isinstance(name, str) or not (_NAME_RE.match(name) or name in ("args", "kwargs", "result")):
                raise CodecError("a malformed name")
            if node == {"fn": 0}:
                if make_function is None:
                    raise CodecError("a function where plain data was expected")
                out[name] = make_function(name)
            elif isinstance(node, dict) and set(node) == {"u"}:
                out[name] = Unavailable(name, str(node["u"])[:300])
            elif node == {"missing": 0}:
                continue
            else:
                try:
                    out[name] = _decode(node, dir_fd, budget, 0)
                except RecursionError:
                    raise CodecError("nested too deep") from None
        return out
    finally:
        os.close(dir_fd)


# ============================================================================ the kernel's side
def _plain_type(v: Any) -> bool:
    import numpy as np

    return (v is None or isinstance(v, (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset,
                                        np.ndarray, np.generic, types.SimpleNamespace)) or _is_tensor(v)
            or (dataclasses.is_dataclass(v) and not isinstance(v, type)) or callable(v))


def kernel_export(ns: dict[str, Any], names: list[str], attrs: dict[str, list[str]], folder: str) -> None:
    """In the student's kernel: write the values of ``names`` into ``folder``; a name in ``attrs`` whose
    value is not plain data (an object) is written as its attributes ``name.attr``."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    for name in names:
        if name not in ns:
            missing.append(name)
            continue
        v = ns[name]
        if name not in attrs or _plain_type(v):
            found[name] = v
            continue
        for a in attrs[name]:
            try:
                found[f"{name}.{a}"] = getattr(v, a)
            except Exception:  # noqa: BLE001 - an attribute that is not there is missing
                missing.append(f"{name}.{a}")
    encode(found, folder, missing=missing)


def kernel_call(ns: dict[str, Any], name: str, arg_folder: str, out_folder: str) -> None:
    """In the student's kernel: call ``name`` with the arguments in ``arg_folder``, write the result to ``out_folder``.

    An exception of the function propagates (the cell fails with it, which the checker re-raises).
    """
    base, *path = name.split(".")
    fn = ns[base]
    for a in path:
        fn = getattr(fn, a)
    given = decode(arg_folder)
    result = fn(*given["args"], **given["kwargs"])
    m = encode({"result": result}, out_folder)
    if "u" in m["result"]:
        raise TypeError(f"{name} returned {m['result']['u']}")


_MODULE = "lasegtut.classroom.checks"


def export_source(names: list[str], attrs: dict[str, list[str]], folder: str) -> str:
    """The one line the grader sends the kernel to export ``names`` into ``folder``."""
    return (f"__import__({_MODULE!r}, fromlist=['_']).kernel_export(get_ipython().user_ns, "
            f"{names!r}, {attrs!r}, {folder!r})")


def call_source(name: str, arg_folder: str, out_folder: str) -> str:
    """The one line the grader sends the kernel to call the student's function ``name``."""
    return (f"__import__({_MODULE!r}, fromlist=['_']).kernel_call(get_ipython().user_ns, "
            f"{name!r}, {arg_folder!r}, {out_folder!r})")


# ============================================================================ the checker process
class _StudentRaised(Exception):
    """The student's function raised an exception that is not one of Python's own."""


class _Stop(BaseException):
    """The kernel could not answer a call (time limit, died): the check stops (a check cannot catch it)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _student_exception(ename: str, evalue: str) -> BaseException:
    cls = getattr(builtins, ename, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc: BaseException = cls(evalue)
        except Exception:  # noqa: BLE001 - exceptions that take other arguments
            exc = _StudentRaised(f"{ename}: {evalue}")
    else:
        exc = _StudentRaised(f"{ename}: {evalue}")
    exc.lasegtut_student = (ename, evalue)  # type: ignore[attr-defined]
    return exc


class _Checker:
    """The checker's loop: read a request on the protocol pipe, run the check, answer."""

    def __init__(self, proto_in: Any, proto_out: Any) -> None:
        self.inp, self.out = proto_in, proto_out
        self.calls = 0

    def send(self, msg: dict[str, Any]) -> None:
        self.out.write((json.dumps(msg) + "\n").encode())
        self.out.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self.inp.readline()
        return json.loads(line) if line else None

    def call(self, exchange: str, ident: tuple[int, int], name: str, args: tuple, kwargs: dict) -> Any:
        self.calls += 1
        arg_dir = Path(exchange) / f"call{self.calls}-in"
        out_dir = Path(exchange) / f"call{self.calls}-out"
        try:
            m = encode({"args": list(args), "kwargs": dict(kwargs)}, arg_dir, ident)
        except (OSError, CodecError) as e:
            raise _Stop("error", f"the grader could not pass the check's values to {name} "
                                 f"({getattr(e, 'strerror', None) or e})") from None
        if any("u" in v for v in m.values()):
            raise TypeError(f"the check passes {name} a value that is not plain data")
        self.send({"op": "call", "name": name, "in": str(arg_dir), "out": str(out_dir)})
        reply = self.receive()
        if reply is None:
            raise _Stop("error", "the grader stopped")
        try:
            if reply.get("ok"):
                try:
                    got = decode(out_dir, ident=ident)
                except CodecError as e:
                    raise _Stop("error", f"{name} returned something the check cannot read: {e}") from None
                if "result" not in got or isinstance(got["result"], Unavailable):
                    raise _Stop("error", f"{name} returned something the check cannot read")
                return got["result"]
            if reply.get("status") in ("timeout", "not_run"):
                raise _Stop("timeout", f"{name} (called by the check) {reply.get('evalue') or 'ran out of time'}")
            if reply.get("ename") == "KernelDied":
                raise _Stop("error", f"{name} (called by the check): {reply.get('evalue')}")
            raise _student_exception(str(reply.get("ename", "Error")), str(reply.get("evalue", "")))
        finally:
            remove_flat(arg_dir, ident)
            remove_flat(out_dir, ident)

    def check(self, req: dict[str, Any]) -> dict[str, Any]:
        import io

        ns: dict[str, Any] = {"__name__": "__check__", "__builtins__": builtins}
        try:
            exec(compile("\n".join(req["imports"]), "<the teacher's imports>", "exec"), ns)
        except Exception as e:  # noqa: BLE001 - the teacher's environment, reported as such
            return {"status": "error", "message": f"the grader could not import what the check uses "
                                                  f"({type(e).__name__}: {str(e)[:200]})"}
        exchange, ident = req["exchange"], tuple(req["ident"])

        def call(name: str, args: tuple, kwargs: dict) -> Any:
            return self.call(exchange, ident, name, args, kwargs)

        try:
            values = decode(req["data"], lambda n: StudentFunction(n, call), ident)
        except CodecError as e:
            return {"status": "error", "message": f"the values your notebook holds for this check could not be "
                                                  f"read: {e}"}
        wanted = set(req["names"]) | {f"{n}.{a}" for n, attrs in req["attrs"].items() for a in attrs}
        unavailable = {}
        for name, v in values.items():
            if name not in wanted:  # only what the check reads: never a builtin, an import or __builtins__
                continue
            if isinstance(v, Unavailable):
                unavailable[name.split(".")[0]] = v
                continue
            base, *path = name.split(".")
            if not path:
                ns[base] = v
            else:
                holder = ns.setdefault(base, types.SimpleNamespace())
                if isinstance(holder, types.SimpleNamespace):
                    setattr(holder, path[0], v)
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = io.StringIO()
        try:
            exec(compile(req["source"], f"<check {req['exercise']}>", "exec"), ns)
        except _Stop as e:
            return {"status": e.status, "message": e.message}
        except BaseException as e:  # noqa: BLE001 - every outcome of the check is a status
            student = getattr(e, "lasegtut_student", None)
            if student is not None:
                ename, evalue = student
                if ename == "NotImplementedError":
                    return {"status": "missing",
                            "message": "not answered: the stub (raise NotImplementedError()) is still there"}
                return {"status": "error", "message": f"your code raised {ename}: {evalue}".rstrip(": ")}
            if isinstance(e, AssertionError):
                return {"status": "wrong", "message": str(e)[:2000] if e.args and str(e) else ""}
            if isinstance(e, NameError) and getattr(e, "name", None):
                if e.name in unavailable:
                    u = unavailable[e.name]
                    return {"status": "error", "message": f"`{e.name}` cannot be sent to the check: it holds {u.why}"}
                return {"status": "error", "message": f"the check needs `{e.name}`, which your notebook "
                                                      "does not define"}
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                return {"status": "error", "message": "the check stopped"}
            return {"status": "error", "message": f"the check raised {type(e).__name__}: your answer is not of the "
                                                  "kind (type, shape, length) the check expects"}
        finally:
            sys.stdout, sys.stderr = old
        return {"status": "correct", "message": ""}

    def loop(self) -> None:
        self.send({"op": "ready"})
        while True:
            req = self.receive()
            if req is None:
                return
            self.send({"op": "done", **self.check(req)})


def _serve() -> None:
    """``python -m lasegtut.classroom.checks``: the checker, speaking JSON lines on its stdin/stdout."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # a check's prints must not reach the protocol
        os.dup2(null, fd)
    import numpy  # noqa: F401 - every check reads arrays; imported before the first one

    _Checker(proto_in, proto_out).loop()


# ============================================================================ the grader's side
@dataclass
class CheckOutcome:
    """The result of one exercise's check: a status and the message for the feedback."""

    status: str
    message: str = ""


class CheckRunner:
    """The grader's side for one submitted notebook: a checker process, and the kernel's exports and calls.

    ``exchange`` is a new folder in the kernel's scratch folder (made writable to all, sticky, as
    ``/tmp``, for a kernel run as another user); the grader reads what the kernel writes there. :meth:`run` is called
    where a check cell stood, with a function that runs one extra cell in the student's kernel.
    """

    def __init__(self, exchange: Path, timeout: float) -> None:
        self.exchange = Path(exchange)
        self.exchange.mkdir(parents=True, exist_ok=True)
        # like /tmp: a kernel that runs as another (unprivileged) user can add its own folders, and
        # can neither remove nor rename the checker's (the sticky bit)
        os.chmod(self.exchange, 0o1777)
        self.ident = folder_ident(self.exchange)
        self.timeout = timeout
        self.n = 0
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self._ready_for: int | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self._buf = b""
            # never in a folder the kernel can write: "python -m" imports from its working folder first
            self.proc = subprocess.Popen([sys.executable, "-m", _MODULE], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
                                         env={**os.environ, "PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1"},
                                         start_new_session=True)
        return self.proc

    def start(self) -> None:
        """Start the checker now (it imports numpy while the kernel starts)."""
        self._start()

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """The checker's next message, or None when it died or ``deadline`` passed."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            return None
        return msg if isinstance(msg, dict) else None

    def _send(self, msg: dict[str, Any]) -> bool:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except OSError:
            return False

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
            self.proc = None

    def run(self, plan: CheckPlan, run_in_kernel: Callable[[str, float], Any]) -> CheckOutcome:
        """Export the plan's names from the kernel and run the check in the checker.

        Never raises for anything the student's code does: that is the outcome's status."""
        self.n += 1
        data = self.exchange / f"check{self.n}"
        res = run_in_kernel(export_source(plan.names, plan.attrs, str(data)), self.timeout)
        if res.status != "ok":
            if res.status in ("timeout", "not_run"):
                return CheckOutcome("timeout", "not checked: your notebook ran out of time")
            return CheckOutcome("error", f"your notebook's values could not be read for the check "
                                         f"({res.ename or res.status})")
        try:
            return self._check(plan, data, run_in_kernel)
        finally:
            remove_flat(data, self.ident)

    def _check(self, plan: CheckPlan, data: Path, run_in_kernel: Callable[[str, float], Any]) -> CheckOutcome:
        proc = self._start()
        if self._ready_for != proc.pid:  # a new checker says "ready" once it has imported numpy
            ready = self._read(time.monotonic() + 120)
            if not ready or ready.get("op") != "ready":
                self._kill()
                return CheckOutcome("error", "the grader's checker did not start")
            self._ready_for = proc.pid
        if not self._send({"exercise": plan.exercise, "source": plan.source, "imports": plan.imports,
                           "names": plan.names, "attrs": plan.attrs,
                           "data": str(data), "exchange": str(self.exchange), "ident": list(self.ident)}):
            self._kill()
            return CheckOutcome("error", "the grader's checker stopped")
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read(deadline)
            if msg is None:
                late = time.monotonic() >= deadline
                self._kill()
                return CheckOutcome("timeout", f"the check ran past its {self.timeout:.0f} s") if late else \
                    CheckOutcome("error", "the grader's checker stopped")
            if msg.get("op") == "done":
                status = msg.get("status")
                return CheckOutcome(status if status in ("correct", "wrong", "missing", "error", "timeout")
                                    else "error", str(msg.get("message", ""))[:4000])
            if msg.get("op") == "call":
                t0 = time.monotonic()
                res = run_in_kernel(call_source(str(msg.get("name")), str(msg.get("in")), str(msg.get("out"))),
                                    self.timeout)
                deadline += time.monotonic() - t0  # the kernel's time is not the check's
                reply = {"ok": res.status == "ok", "status": res.status, "ename": res.ename, "evalue": res.evalue}
                if not self._send(reply):
                    self._kill()
                    return CheckOutcome("error", "the grader's checker stopped")
            else:
                self._kill()
                return CheckOutcome("error", "the grader's checker stopped")

    def close(self) -> None:
        """Stop the checker."""
        self._kill()


if __name__ == "__main__":
    _serve()
