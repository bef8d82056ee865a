"""Download the full MSD Task02_Heart data set, verify it and unpack it safely.

The Medical Segmentation Decathlon (MSD) publishes the left-atrium data set as one tar
archive, ``Task02_Heart.tar`` (about 435 MB). ``lasegtut download`` (or :func:`download`)
turns that archive into a ready-to-use task folder::

    DEST/Task02_Heart/
      dataset.json   imagesTr/   labelsTr/   imagesTs/

in four steps, each of which guards against a real way a download goes wrong:

1. **Skip work already done.** If ``DEST/Task02_Heart`` is complete (``dataset.json`` parses
   and ``imagesTr``/``labelsTr`` are not empty) nothing is downloaded; not even a request is
   sent. An existing folder is never deleted or overwritten.
2. **Stream, and resume after a cut.** The archive is written chunk by chunk to
   ``DEST/Task02_Heart.tar.part`` (memory use stays small) under a tqdm progress bar. If the
   connection drops, fewer bytes than the server announced (``Content-Length``) arrive: the
   part file is kept and the next run asks only for the rest with an HTTP ``Range: bytes=N-``
   header. A server that ignores ``Range`` answers ``200`` with the whole file; then the
   download restarts cleanly from byte 0 instead of gluing two copies together.
3. **Verify before trusting.** The MD5 checksum of the finished file is compared with the
   published one (``06ee5936...``, the value MONAI hard-codes). A mismatch means a corrupt or
   wrong file: it is deleted and nothing is unpacked.
4. **Unpack safely and atomically.** A tar member may be named ``../../.bashrc`` or
   ``/etc/passwd``, or be a link pointing outside the folder ("tar slip"). Every member is
   checked *before* anything is written; one bad member refuses the whole archive. macOS
   ``._*`` resource-fork files and ``__MACOSX/`` folders (the real archive contains them)
   are skipped. Files go to a hidden temporary folder ``DEST/.Task02_Heart.extracting-*``
   that is renamed to ``DEST/Task02_Heart`` only when complete, so an interrupted run never
   leaves a half-filled data folder behind.

Sources: by default the official MSD bucket that MONAI's ``DecathlonDataset`` uses, then
its EU mirror. ``url`` may instead be another ``http(s)://`` URL, a ``file://`` URL or a
plain local path (for an archive downloaded by hand). With a custom ``url`` and no ``md5``
the archive cannot be verified: a warning says so on stderr. The downloaded ``.part`` file
is deleted after a successful extraction (it is 435 MB); a local archive you point to is
never deleted or modified.

Every failure a user can fix (offline, wrong checksum, unsafe archive, full disk) raises
:class:`~lasegtut.errors.LasegError` with a one-line message; the command line prints it and
exits with status 2.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, url2pathname, urlopen

from tqdm.auto import tqdm

from .errors import LasegError
from .paths import DATA_DIR_VAR

#: Official archive, from ``DecathlonDataset.resource["Task02_Heart"]`` in MONAI's
#: ``monai/apps/datasets.py`` (MONAI 1.6). The EU copy is the ``msd-for-monai-eu`` bucket
#: (eu-west-2) listed in the AWS Open Data registry entry for the MSD; MONAI itself names no
#: mirror. They are tried in this order.
OFFICIAL_URLS: tuple[str, ...] = (
    "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task02_Heart.tar",
    "https://msd-for-monai-eu.s3.eu-west-2.amazonaws.com/Task02_Heart.tar",
)
#: MD5 of the official archive, as hard-coded in MONAI's ``DecathlonDataset.md5``.
OFFICIAL_MD5 = "06ee59366e1e5124267b774dbd654057"

TASK_DIR = "Task02_Heart"
ARCHIVE_NAME = "Task02_Heart.tar"
PART_NAME = ARCHIVE_NAME + ".part"
TMP_PREFIX = f".{TASK_DIR}.extracting-"

CHUNK_BYTES = 1 << 20        # read/write/hash in 1 MiB pieces
TIMEOUT_S = 30.0             # seconds without any data before a connection counts as dead
USER_AGENT = "lasegtut-download/1"

# Errors that mean "the connection broke while data was flowing".
_STREAM_ERRORS = (OSError, http.client.HTTPException)
# Python >= 3.12 (and 3.11.4+) can strip unsafe metadata while extracting; we use it as a
# second layer on top of our own member checks, which also run on older Pythons.
_FILTER_KW: dict = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class _BadArchive(LasegError):
    """The archive itself is unusable (unsafe, unreadable, wrong content): retrying won't help."""


class _Unreachable(Exception):
    """No usable HTTP answer from one URL (refused, DNS failure, timeout, HTTP error)."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416: the server has nothing from the requested byte on."""

    def __init__(self, total: int | None) -> None:
        super().__init__(f"range not satisfiable (file size {total})")
        self.total = total  # size of the file on the server in bytes, if it said


class _Interrupted(Exception):
    """The transfer stopped early; the part file holds what arrived and can be resumed."""


# ---------------------------------------------------------------------------- locations
def default_dest() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/lasegtut``, else ``~/.cache/lasegtut``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lasegtut"


def resolve_dest(dest: str | os.PathLike | None = None) -> Path:
    """The folder that will hold ``Task02_Heart/``: ``dest``, else ``$LASEG_DATA_DIR``, else
    :func:`default_dest`.

    ``lasegtut download`` tells users to ``export LASEG_DATA_DIR=DEST/Task02_Heart``; a
    destination whose own name is ``Task02_Heart`` therefore means its parent folder, so the
    data is not nested as ``Task02_Heart/Task02_Heart``.
    """
    if dest is None or str(dest) == "":
        dest = os.environ.get(DATA_DIR_VAR) or default_dest()
    path = Path(dest).expanduser()
    return path.parent if path.name == TASK_DIR else path


def _incomplete_reason(folder: Path) -> str | None:
    """Why ``folder`` is not a complete MSD task folder, or None when it is complete."""
    if not folder.is_dir():
        return "it is not a folder" if folder.exists() else "it does not exist"
    try:
        with open(folder / "dataset.json", encoding="utf-8") as f:
            if not isinstance(json.load(f), dict):
                return "dataset.json is not a JSON object"
    except FileNotFoundError:
        return "dataset.json is missing"
    except (OSError, ValueError):
        return "dataset.json cannot be read as JSON"
    for sub in ("imagesTr", "labelsTr"):
        d = folder / sub
        if not d.is_dir() or not any(d.iterdir()):
            return f"{sub}/ is missing or empty"
    return None


def is_complete(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a parseable ``dataset.json`` and non-empty ``imagesTr``
    and ``labelsTr`` folders."""
    return _incomplete_reason(Path(folder)) is None


def _check_target_free(target: Path) -> None:
    """Refuse to touch an existing, incomplete ``Task02_Heart`` that is not empty."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return  # an empty folder: we may replace it
    why = _incomplete_reason(target)
    raise LasegError(f"{target} exists but is not a complete data set ({why}); "
                     "move it away or delete it, then run `lasegtut download` again")


def _remove_stale_tmp(dest_dir: Path) -> None:
    """Delete extraction folders left by a run that was killed (``kill -9``, power cut)."""
    for p in dest_dir.glob(TMP_PREFIX + "*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------- checksums
def _normalise_md5(md5: str) -> str:
    """Lower-case, stripped MD5; LasegError unless it is 32 hexadecimal digits."""
    value = md5.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", value):
        raise LasegError(f"--md5 must be 32 hexadecimal digits, got {md5!r}")
    return value


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file, read in ``CHUNK_BYTES`` pieces (constant memory)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(archive: Path, expected: str | None, *, downloaded: bool, progress: bool) -> None:
    """Compare the archive's MD5 with ``expected`` (skip when None).

    On a mismatch a downloaded part file is deleted (it is corrupt and would otherwise be
    "resumed"); a user's local file is left untouched.
    """
    if expected is None:
        return
    _say(f"verifying MD5 of {archive.name} ...", progress)
    actual = file_md5(archive)
    if actual == expected:
        return
    if downloaded:
        archive.unlink(missing_ok=True)
        fate = "the downloaded file was deleted; run the same command to download it again"
    else:
        fate = f"{archive} was left untouched"
    raise LasegError(f"MD5 mismatch for {archive.name}: expected {expected}, "
                     f"actual {actual}; {fate}")


# ---------------------------------------------------------------------------- HTTP
def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """Parse ``Content-Range: bytes START-END/TOTAL`` (or ``bytes */TOTAL``) into
    ``(START, TOTAL)`` in bytes; unknown parts are None."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _one_line(err: object) -> str:
    """An exception (or reason) as text on a single line."""
    return " ".join(str(err).split()) or type(err).__name__


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    """Send a GET for ``url``, asking only for bytes ``offset``.. when offset > 0.

    Returns the response. Raises _RangeNotSatisfiable (HTTP 416: nothing to send from
    ``offset``) or _Unreachable (refused, DNS failure, timeout, other HTTP error).
    """
    req = Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return urlopen(req, timeout=TIMEOUT_S)
    except HTTPError as e:
        total = _content_range(e.headers.get("Content-Range"))[1] if e.headers else None
        e.close()
        if e.code == 416 and offset:
            raise _RangeNotSatisfiable(total) from None
        raise _Unreachable(f"HTTP {e.code} {_one_line(e.reason)}") from None
    except URLError as e:
        raise _Unreachable(_one_line(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:  # e.g. a timeout while connecting
        raise _Unreachable(_one_line(e)) from None


def _fetch(url: str, part: Path, *, progress: bool) -> None:
    """Download ``url`` into ``part``, resuming from the bytes already in ``part``.

    Raises _Unreachable (no usable answer) or _Interrupted (transfer stopped early; the
    part file keeps what arrived).
    """
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset)
    except _RangeNotSatisfiable as e:
        if e.total == offset:
            return  # the part file already holds the whole archive
        part.unlink()  # larger than the file on the server: start again
        return _fetch(url, part, progress=progress)
    with resp:
        if offset and resp.status == 206:
            start, _ = _content_range(resp.headers.get("Content-Range"))
            if start != offset:  # an odd answer: start over rather than corrupt the file
                part.unlink()
                resp.close()
                return _fetch(url, part, progress=progress)
        elif offset:
            offset = 0  # HTTP 200: the server ignored Range and sends the whole file again
            _say("the server does not support resuming; restarting the download", progress)
        length = resp.headers.get("Content-Length")
        expected_end = offset + int(length) if length and length.isdigit() else None
        received = _stream(resp, part, offset, expected_end, progress=progress)
    if expected_end is not None and offset + received < expected_end:
        raise _Interrupted(f"the connection closed after {_mb(offset + received)} "
                           f"of {_mb(expected_end)}")


def _stream(resp: BinaryIO, part: Path, offset: int, total: int | None, *,
            progress: bool) -> int:
    """Copy the response body to ``part`` (appending when offset > 0) and return the number
    of bytes received. A broken connection raises _Interrupted after flushing what came."""
    received = 0
    try:
        out = open(part, "ab" if offset else "wb")
    except OSError as e:
        raise LasegError(f"cannot write {part}: {_one_line(e.strerror or e)}") from None
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
               desc=ARCHIVE_NAME, disable=not progress, file=sys.stderr)
    with out, bar:
        while True:
            try:
                chunk = resp.read(CHUNK_BYTES)
            except _STREAM_ERRORS as e:
                raise _Interrupted(f"the connection broke after {_mb(offset + received)} "
                                   f"({_one_line(e)})") from None
            if not chunk:
                return received
            try:
                out.write(chunk)
            except OSError as e:
                raise LasegError(f"cannot write {part}: {_one_line(e.strerror or e)}") from None
            received += len(chunk)
            bar.update(len(chunk))


def _download_any(urls: list[str], part: Path, dest_dir: Path, *, progress: bool) -> None:
    """Fetch the archive into ``part`` from the first URL that answers.

    Raises LasegError: every URL is unreachable (with how to download by hand), or the
    transfer was cut (the part file is kept for the next run to resume).
    """
    reasons = []
    for url in urls:
        _say(f"downloading {url}", progress)
        try:
            _fetch(url, part, progress=progress)
            return
        except _Unreachable as e:
            reasons.append(f"{url}: {e}")
        except _Interrupted as e:
            raise LasegError(f"download of {url} stopped early ({e}); {part} was kept: "
                             "run the same command again to resume it") from None
    raise LasegError(f"could not download {ARCHIVE_NAME} ({'; '.join(reasons)}). "
                     f"Download {urls[0]} by hand (e.g. in a web browser), then run: "
                     f"lasegtut download --url /path/to/{ARCHIVE_NAME} --dest {dest_dir}")


# ---------------------------------------------------------------------------- extraction
def _skipped(name: str) -> bool:
    """True for macOS metadata: ``._*`` resource-fork files and ``__MACOSX/`` folders."""
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or (bool(parts) and parts[-1].startswith("._"))


def _inside(path: str, base: str) -> bool:
    """True when the archive-relative ``path`` (after resolving ``..``) stays in ``base``
    ("" = the extraction folder itself)."""
    if posixpath.isabs(path) or PureWindowsPath(path).drive:
        return False
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        return False
    return base == "" or norm == base or norm.startswith(base + "/")


def _member_problem(m: tarfile.TarInfo, base: str) -> str | None:
    """Why extracting member ``m`` would be unsafe, or None when it is a harmless file,
    folder or link. ``base`` is the folder that will be moved into place."""
    name = m.name.replace("\\", "/")
    if not name or name.startswith("/") or PureWindowsPath(m.name).drive:
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a '..' path component"
    if m.ischr() or m.isblk() or m.isfifo():
        return "a device or FIFO"
    if m.issym() and not _inside(posixpath.join(posixpath.dirname(name), m.linkname), base):
        return f"a symbolic link to {m.linkname!r} outside the data folder"
    if m.islnk() and not _inside(m.linkname, base):
        return f"a hard link to {m.linkname!r} outside the data folder"
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        return "an unsupported member type"
    return None


def _safe_members(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """All members worth extracting, after checking every single one is safe.

    Raises _BadArchive naming the first unsafe member; nothing has been written yet.
    """
    members = tf.getmembers()
    names = [posixpath.normpath(m.name.replace("\\", "/")) for m in members]
    has_top = any(n.rstrip("/") == TASK_DIR or n.startswith(TASK_DIR + "/") for n in names)
    base = TASK_DIR if has_top else ""
    keep = []
    for m in members:
        problem = _member_problem(m, base)
        if problem:
            raise _BadArchive(f"refusing to extract {archive.name}: member {m.name!r} has "
                              f"{problem}; nothing was extracted")
        if _skipped(m.name):
            continue
        # Readable by everyone, writable by the owner only; no setuid/sticky bits.
        m.mode = (m.mode | (0o700 if m.isdir() else 0o600)) & 0o755
        keep.append(m)
    return keep


def _extract(archive: Path, dest_dir: Path, *, progress: bool) -> Path:
    """Unpack ``archive`` into ``dest_dir/Task02_Heart`` via a temporary folder.

    The archive may hold a top folder ``Task02_Heart/`` (the official layout) or the task
    files directly. Returns the final folder. Raises _BadArchive for an unsafe or unusable
    archive; on any failure the temporary folder is removed and nothing is left behind.
    """
    target = dest_dir / TASK_DIR
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as e:
        raise _BadArchive(f"{archive} is not a readable tar archive ({_one_line(e)})") from None
    with tf:
        try:
            members = _safe_members(tf, archive)
        except tarfile.TarError as e:
            raise _BadArchive(f"{archive} is damaged ({_one_line(e)})") from None
        _say(f"extracting {archive.name} into {dest_dir}", progress)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest_dir))
        try:
            bar = tqdm(members, unit="file", desc="extracting", disable=not progress,
                       file=sys.stderr)
            try:
                tf.extractall(tmp, members=bar, **_FILTER_KW)
            except tarfile.TarError as e:  # includes the "data" filter's refusals
                raise _BadArchive(f"refusing to extract {archive.name} "
                                  f"({_one_line(e)}); nothing was extracted") from None
            finally:
                bar.close()
            root = tmp / TASK_DIR if (tmp / TASK_DIR).is_dir() else tmp
            why = _incomplete_reason(root)
            if why:
                raise _BadArchive(f"{archive.name} does not hold an MSD task folder ({why})")
            os.chmod(root, 0o755)  # mkdtemp made it private
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()  # only ever an empty folder (see _check_target_free)
            os.rename(root, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------- sources
def _local_source(url: str) -> Path | None:
    """The local path ``url`` names (``file://`` URL or plain path), or None for http(s)."""
    try:
        parsed = urlparse(url)
    except ValueError as e:  # e.g. "Invalid IPv6 URL" for an unclosed "["
        raise LasegError(f"--url {url} is not a valid URL ({_one_line(e)})") from None
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise LasegError(f"cannot read {url}: only local file:// URLs are supported")
        return Path(url2pathname(parsed.path))
    if scheme == "" or len(scheme) == 1:  # a plain path, or a Windows drive letter "C:\"
        return Path(url).expanduser()
    raise LasegError(f"unsupported URL scheme {parsed.scheme!r} in {url}; "
                     "use http(s)://, file:// or a local path")


def _say(message: str, progress: bool) -> None:
    """A status line on stderr (only when progress output is on)."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def _mb(n_bytes: int) -> str:
    """A byte count as megabytes for messages, e.g. ``'174.3 MB'``."""
    return f"{n_bytes / 1e6:.1f} MB"


# ---------------------------------------------------------------------------- public API
def download(dest: str | os.PathLike | None = None, url: str | None = None,
             md5: str | None = None, *, progress: bool = True) -> Path:
    """Download, verify and unpack MSD Task02_Heart; return ``DEST/Task02_Heart``.

    Args:
        dest: folder that will hold ``Task02_Heart/`` (default: ``$LASEG_DATA_DIR``, else
            ``$XDG_CACHE_HOME/lasegtut`` or ``~/.cache/lasegtut``). A folder named
            ``Task02_Heart`` stands for its parent.
        url: where to get the archive: ``http(s)://`` URL, ``file://`` URL or local path.
            Default: the official MSD bucket, then its EU mirror; an archive saved by hand
            as ``DEST/Task02_Heart.tar`` is used instead of downloading.
        md5: expected MD5 (32 hex digits) of the archive. Default: the official sum when
            ``url`` is None; with a custom ``url`` and no ``md5`` nothing is verified and a
            warning is printed on stderr.
        progress: show status lines and tqdm progress bars on stderr.

    Returns:
        The complete task folder ``DEST/Task02_Heart``.

    Raises:
        LasegError: with a one-line message: unreachable server (says how to download by
            hand), interrupted transfer (run again to resume), MD5 mismatch, unsafe or
            invalid archive, or an unusable destination.
    """
    dest_dir = resolve_dest(dest)
    target = dest_dir / TASK_DIR
    if is_complete(target):
        return target
    _check_target_free(target)
    expected = _normalise_md5(md5) if md5 else (OFFICIAL_MD5 if url is None else None)
    local = _local_source(url) if url else None
    if url is None and (dest_dir / ARCHIVE_NAME).is_file():
        local = dest_dir / ARCHIVE_NAME  # saved there by hand
    if local is not None and not local.is_file():
        raise LasegError(f"archive {local} not found")
    if expected is None:
        print(f"lasegtut download: warning: no --md5 given for {url}; "
              "the archive's integrity will not be verified", file=sys.stderr)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LasegError(f"cannot create {dest_dir}: {_one_line(e.strerror or e)}") from None
    _remove_stale_tmp(dest_dir)

    if local is not None:  # the user's own file: read it, never delete it
        _verify(local, expected, downloaded=False, progress=progress)
        return _extract_or_explain(local, dest_dir, progress=progress)

    part = dest_dir / PART_NAME
    _download_any([url] if url else list(OFFICIAL_URLS), part, dest_dir, progress=progress)
    _verify(part, expected, downloaded=True, progress=progress)
    try:
        result = _extract_or_explain(part, dest_dir, progress=progress)
    except _BadArchive:
        part.unlink(missing_ok=True)  # downloading it again would give the same archive
        raise
    part.unlink(missing_ok=True)  # 435 MB we no longer need
    return result


def _extract_or_explain(archive: Path, dest_dir: Path, *, progress: bool) -> Path:
    """:func:`_extract`, turning file-system errors (disk full, permissions) into LasegError."""
    try:
        return _extract(archive, dest_dir, progress=progress)
    except OSError as e:
        raise LasegError(f"could not extract {archive.name} into {dest_dir}: "
                         f"{_one_line(e)}; nothing was left behind") from None


__all__ = ["download", "default_dest", "resolve_dest", "is_complete", "file_md5",
           "OFFICIAL_URLS", "OFFICIAL_MD5"]
