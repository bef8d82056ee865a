"""Tests for ``lasegtut download`` against a loopback HTTP server (127.0.0.1 only).

Small fake MSD archives are built in ``tmp_path`` and served by a ThreadingHTTPServer that
supports ``Range`` (206 + Content-Range), can ignore it, can cut a transfer after 40 % of
the bytes (while announcing the full Content-Length) and records every request.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lasegtut import paths
from lasegtut.cli import main
from lasegtut.errors import LasegError

# The module itself, even where a package re-exports a function named `download`.
dl = importlib.import_module("lasegtut.download")

REAL_OFFICIAL_URLS = dl.OFFICIAL_URLS  # saved before the autouse fixture replaces them
ARCHIVE_PATH = "/Task02_Heart.tar"
IMAGE_BYTES = bytes(range(256)) * 400          # 100 kB "image": big enough to cut at 40 %
LABEL_BYTES = b"\x01\x00" * 1000
DATASET_JSON = {"name": "LeftAtrium", "training": [
    {"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"}]}


# ----------------------------------------------------------------------------- archives
def _add(tf: tarfile.TarFile, name: str, data: bytes | None = None, *,
         kind: bytes = tarfile.REGTYPE, linkname: str = "") -> None:
    """Add one member: a file with ``data``, a folder (data None, DIRTYPE) or a special."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if data is not None:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


def make_archive(path: Path, *, top: str = "Task02_Heart/",
                 extra: tuple | list = (), macos: bool = True) -> tuple[bytes, str]:
    """Write a fake Task02_Heart tar to ``path``; return its bytes and MD5.

    ``extra`` holds ``(name, data, kind, linkname)`` tuples for hostile members.
    """
    with tarfile.open(path, "w") as tf:
        for d in ("", "imagesTr", "labelsTr", "imagesTs"):
            if top or d:
                _add(tf, f"{top}{d}".rstrip("/"), kind=tarfile.DIRTYPE)
        _add(tf, f"{top}dataset.json", json.dumps(DATASET_JSON).encode())
        _add(tf, f"{top}imagesTr/la_003.nii.gz", IMAGE_BYTES)
        _add(tf, f"{top}labelsTr/la_003.nii.gz", LABEL_BYTES)
        _add(tf, f"{top}imagesTs/la_001.nii.gz", b"test image")
        if macos:  # like the real archive: AppleDouble files next to the real ones
            _add(tf, f"{top}._dataset.json", b"\x00\x05\x16\x07mac")
            _add(tf, f"{top}imagesTr/._la_003.nii.gz", b"\x00\x05\x16\x07mac")
            _add(tf, "__MACOSX/Task02_Heart/._imagesTr", b"\x00\x05\x16\x07mac")
        for name, data, kind, linkname in extra:
            _add(tf, name, data, kind=kind, linkname=linkname)
    payload = path.read_bytes()
    return payload, hashlib.md5(payload).hexdigest()


# ----------------------------------------------------------------------------- server
@dataclass
class Server:
    """A loopback server for one archive; knobs change how it answers."""

    payload: bytes
    url: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    ignore_range: bool = False
    cut_fraction: float | None = None  # cut the next response after this share of bytes
    status: int = 200                  # e.g. 404 to answer with an error

    def set_archive(self, payload: bytes) -> None:
        self.payload = payload


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            server.requests.append((self.path, rng))
            if self.path != ARCHIVE_PATH or server.status != 200:
                self.send_error(404 if self.path != ARCHIVE_PATH else server.status)
                return
            data, start = server.payload, 0
            if rng and not server.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))  # always the full length
            self.end_headers()
            if server.cut_fraction is not None:
                body = body[:int(len(data) * server.cut_fraction)]
                server.cut_fraction = None  # cut only once
            self.wfile.write(body)
            self.wfile.flush()  # HTTP/1.0: the connection closes when we return

    return Handler


@pytest.fixture(autouse=True)
def _no_proxies_no_env(monkeypatch, tmp_path):
    """Never route 127.0.0.1 through a proxy; never read the user's real cache."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv(paths.DATA_DIR_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Default URLs must never be contacted by a test.
    monkeypatch.setattr(dl, "OFFICIAL_URLS", ("http://127.0.0.1:9/never-used",))


@pytest.fixture
def archive(tmp_path) -> tuple[bytes, str]:
    """A good fake archive at tmp_path/src/good.tar: (bytes, md5)."""
    (tmp_path / "src").mkdir()
    return make_archive(tmp_path / "src" / "good.tar")


@pytest.fixture
def server(archive):
    """A running loopback server that serves ``archive`` at ARCHIVE_PATH."""
    srv = Server(payload=archive[0])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    httpd.daemon_threads = True
    srv.url = f"http://127.0.0.1:{httpd.server_address[1]}{ARCHIVE_PATH}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "dest"


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_good_result(path: Path, dest: Path) -> None:
    """The extracted folder is complete and nothing else is left in ``dest``."""
    assert path == dest / "Task02_Heart"
    assert json.loads((path / "dataset.json").read_text()) == DATASET_JSON
    assert (path / "imagesTr" / "la_003.nii.gz").read_bytes() == IMAGE_BYTES
    assert (path / "labelsTr" / "la_003.nii.gz").read_bytes() == LABEL_BYTES
    assert (path / "imagesTs" / "la_001.nii.gz").is_file()
    assert not [p for p in path.rglob("._*")], "macOS ._ files must be skipped"
    assert not (dest / "__MACOSX").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["Task02_Heart"]  # no .part, no tmp


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["download", *args, "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str) -> str:
    assert rc == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lasegtut download: error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- tests
def test_good_archive_downloads_verifies_and_extracts(server, archive, dest):
    path = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert_good_result(path, dest)
    assert server.requests == [(ARCHIVE_PATH, None)]


def test_good_archive_through_cli_with_progress_output(server, archive, dest, capsys):
    rc = main(["download", "--dest", str(dest), "--url", server.url, "--md5", archive[1]])
    out, err = capsys.readouterr()
    assert rc == 0
    assert str(dest / "Task02_Heart") in out
    assert "downloading" in err and "verifying MD5" in err
    assert_good_result(dest / "Task02_Heart", dest)


def test_second_run_makes_no_request(server, archive, dest):
    first = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert len(server.requests) == 1
    second = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert second == first and len(server.requests) == 1


def test_complete_folder_via_env_var_makes_no_request(server, archive, dest, monkeypatch):
    dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    # `lasegtut download` tells users to export LASEG_DATA_DIR=DEST/Task02_Heart
    monkeypatch.setenv(paths.DATA_DIR_VAR, str(dest / "Task02_Heart"))
    assert dl.download(url=server.url, progress=False) == dest / "Task02_Heart"
    assert len(server.requests) == 1


def test_wrong_md5_exits_2_removes_part_and_extracts_nothing(server, archive, dest, capsys):
    wrong = "0" * 32
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", server.url, "--md5", wrong)
    line = assert_one_line_error(rc, err)
    assert wrong in line and archive[1] in line and "MD5" in line
    assert not (dest / "Task02_Heart").exists()
    assert not (dest / "Task02_Heart.tar.part").exists()
    assert list(dest.iterdir()) == []


def test_bad_md5_argument_is_rejected(dest, capsys):
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", "x.tar", "--md5", "xyz")
    assert "32 hexadecimal digits" in assert_one_line_error(rc, err)


HOSTILE = {
    "dotdot": ("Task02_Heart/../../evil.txt", b"pwned", tarfile.REGTYPE, ""),
    "dotdot_top": ("../evil.txt", b"pwned", tarfile.REGTYPE, ""),
    "symlink_out": ("Task02_Heart/imagesTr/link", None, tarfile.SYMTYPE, "../../../evil.txt"),
    "symlink_abs": ("Task02_Heart/link", None, tarfile.SYMTYPE, "/etc/passwd"),
    "hardlink_out": ("Task02_Heart/hard", None, tarfile.LNKTYPE, "../evil.txt"),
    "device": ("Task02_Heart/dev", None, tarfile.CHRTYPE, ""),
    "fifo": ("Task02_Heart/fifo", None, tarfile.FIFOTYPE, ""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_refuses_whole_archive(case, server, tmp_path, dest, capsys):
    payload, md5 = make_archive(tmp_path / "bad.tar", extra=[HOSTILE[case]])
    server.set_archive(payload)
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", server.url, "--md5", md5)
    line = assert_one_line_error(rc, err)
    assert "refusing to extract" in line and "nothing was extracted" in line
    assert list(dest.iterdir()) == []  # no Task02_Heart, no temp folder, no part file
    assert not list(tmp_path.rglob("evil.txt"))


def test_absolute_member_refused(server, tmp_path, dest, capsys):
    outside = tmp_path / "outside" / "abs.txt"
    payload, md5 = make_archive(tmp_path / "abs.tar",
                                extra=[(str(outside), b"pwned", tarfile.REGTYPE, "")])
    server.set_archive(payload)
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", server.url, "--md5", md5)
    assert "absolute path" in assert_one_line_error(rc, err)
    assert not outside.exists() and list(dest.iterdir()) == []


def test_internal_symlink_is_allowed(server, tmp_path, dest):
    payload, md5 = make_archive(tmp_path / "ok.tar", extra=[
        ("Task02_Heart/imagesTr/alias.nii.gz", None, tarfile.SYMTYPE, "la_003.nii.gz")])
    server.set_archive(payload)
    path = dl.download(dest=dest, url=server.url, md5=md5, progress=False)
    assert (path / "imagesTr" / "alias.nii.gz").read_bytes() == IMAGE_BYTES


def test_transfer_cut_at_40_percent_then_resumed(server, archive, dest):
    server.cut_fraction = 0.4
    with pytest.raises(LasegError, match="run the same command again to resume"):
        dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    part = dest / "Task02_Heart.tar.part"
    cut_at = int(len(archive[0]) * 0.4)
    assert part.stat().st_size == cut_at
    assert not (dest / "Task02_Heart").exists()

    path = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert_good_result(path, dest)
    assert server.requests[0] == (ARCHIVE_PATH, None)
    assert server.requests[1] == (ARCHIVE_PATH, f"bytes={cut_at}-")  # resumed, not from 0


def test_server_ignoring_range_restarts_cleanly(server, archive, dest):
    server.cut_fraction = 0.4
    with pytest.raises(LasegError):
        dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    server.ignore_range = True
    path = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert_good_result(path, dest)  # MD5 passed: not two copies glued together
    assert server.requests[1][1] is not None  # it did ask for a range


def test_complete_part_file_is_not_downloaded_again(server, archive, dest):
    dest.mkdir()
    (dest / "Task02_Heart.tar.part").write_bytes(archive[0])  # e.g. extraction was killed
    path = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert_good_result(path, dest)
    assert server.requests == [(ARCHIVE_PATH, f"bytes={len(archive[0])}-")]  # got HTTP 416


def test_interrupted_extraction_leaves_nothing_half_done(server, archive, dest, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tarfile.TarFile, "extractall", boom)
    with pytest.raises(KeyboardInterrupt):
        dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    # Only the verified download is kept (to be reused); no data or temp folder.
    assert [p.name for p in dest.iterdir()] == ["Task02_Heart.tar.part"]


def test_stale_temp_folder_is_cleaned(server, archive, dest):
    stale = dest / ".Task02_Heart.extracting-abc123"
    (stale / "Task02_Heart").mkdir(parents=True)
    path = dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert_good_result(path, dest)


def test_unreachable_server_explains_manual_download(dest, capsys):
    url = f"http://127.0.0.1:{free_port()}{ARCHIVE_PATH}"
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", url, "--md5", "0" * 32)
    line = assert_one_line_error(rc, err)
    assert "by hand" in line and url in line
    assert f"--url /path/to/Task02_Heart.tar --dest {dest}" in line


def test_default_urls_fall_back_to_mirror(server, archive, dest, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}{ARCHIVE_PATH}"
    monkeypatch.setattr(dl, "OFFICIAL_URLS", (dead, server.url))
    monkeypatch.setattr(dl, "OFFICIAL_MD5", archive[1])
    path = dl.download(dest=dest, progress=False)  # no url: the official list, in order
    assert_good_result(path, dest)


def test_default_urls_all_unreachable(dest, monkeypatch):
    urls = tuple(f"http://127.0.0.1:{free_port()}/{i}/Task02_Heart.tar" for i in range(2))
    monkeypatch.setattr(dl, "OFFICIAL_URLS", urls)
    with pytest.raises(LasegError) as e:
        dl.download(dest=dest, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and urls[0] in msg and urls[1] in msg and "by hand" in msg


def test_http_error_is_one_line(server, dest, capsys):
    server.status = 403
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", server.url, "--md5", "0" * 32)
    assert "HTTP 403" in assert_one_line_error(rc, err)


@pytest.mark.parametrize("as_file_url", [True, False])
def test_local_archive_works_and_is_kept(as_file_url, archive, tmp_path, dest):
    src = tmp_path / "src" / "good.tar"
    url = src.as_uri() if as_file_url else str(src)
    path = dl.download(dest=dest, url=url, md5=archive[1], progress=False)
    assert_good_result(path, dest)
    assert src.read_bytes() == archive[0]  # the user's file is never deleted


def test_local_archive_with_wrong_md5_is_left_untouched(archive, tmp_path, dest, capsys):
    src = tmp_path / "src" / "good.tar"
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", str(src), "--md5", "1" * 32)
    assert "left untouched" in assert_one_line_error(rc, err)
    assert src.exists() and not (dest / "Task02_Heart").exists()


def test_archive_saved_by_hand_in_dest_is_used(archive, tmp_path, dest, monkeypatch):
    dest.mkdir()
    (dest / "Task02_Heart.tar").write_bytes(archive[0])
    monkeypatch.setattr(dl, "OFFICIAL_MD5", archive[1])
    path = dl.download(dest=dest, progress=False)  # OFFICIAL_URLS is unreachable
    assert path == dest / "Task02_Heart" and dl.is_complete(path)
    assert (dest / "Task02_Heart.tar").exists()


def test_custom_url_without_md5_warns(server, dest, capsys):
    path = dl.download(dest=dest, url=server.url, progress=False)
    assert dl.is_complete(path)
    assert "will not be verified" in capsys.readouterr().err


def test_archive_without_top_folder(server, tmp_path, dest):
    payload, md5 = make_archive(tmp_path / "flat.tar", top="", macos=False)
    server.set_archive(payload)
    path = dl.download(dest=dest, url=server.url, md5=md5, progress=False)
    assert dl.is_complete(path) and oct(path.stat().st_mode & 0o777) == "0o755"


def test_archive_without_dataset_is_refused(server, tmp_path, dest):
    path = tmp_path / "empty.tar"
    with tarfile.open(path, "w") as tf:
        _add(tf, "readme.txt", b"hello")
    server.set_archive(path.read_bytes())
    with pytest.raises(LasegError, match="does not hold an MSD task folder"):
        dl.download(dest=dest, url=server.url, progress=False)
    assert list(dest.iterdir()) == []


def test_not_a_tar_is_refused(server, dest):
    server.set_archive(b"<html>not an archive</html>")
    with pytest.raises(LasegError, match="not a readable tar archive"):
        dl.download(dest=dest, url=server.url, progress=False)
    assert list(dest.iterdir()) == []


def test_incomplete_existing_folder_is_never_deleted(server, archive, dest):
    (dest / "Task02_Heart").mkdir(parents=True)
    (dest / "Task02_Heart" / "notes.txt").write_text("mine")
    with pytest.raises(LasegError, match="move it away or delete it"):
        dl.download(dest=dest, url=server.url, md5=archive[1], progress=False)
    assert (dest / "Task02_Heart" / "notes.txt").read_text() == "mine"
    assert server.requests == []


def test_default_destination(monkeypatch, tmp_path):
    assert dl.resolve_dest() == tmp_path / "xdg-cache" / "lasegtut"
    monkeypatch.setenv(paths.DATA_DIR_VAR, str(tmp_path / "data"))
    assert dl.resolve_dest() == tmp_path / "data"
    assert dl.resolve_dest(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv(paths.DATA_DIR_VAR)
    assert dl.default_dest() == Path(os.path.expanduser("~")) / ".cache" / "lasegtut"


def test_official_constants_match_monai():
    """The hard-coded primary URL and MD5 are MONAI's (read from its source, not imported)."""
    from urllib.parse import urlparse

    parts = [urlparse(u) for u in REAL_OFFICIAL_URLS]  # mirrors: the archive over https, on different hosts
    assert all(p.scheme == "https" and p.path.endswith("/Task02_Heart.tar") for p in parts)
    assert len({p.netloc for p in parts}) == len(parts) >= 2
    spec = importlib.util.find_spec("monai")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("MONAI is not installed")
    source = (Path(spec.submodule_search_locations[0]) / "apps" / "datasets.py").read_text()
    assert f'"Task02_Heart": "{REAL_OFFICIAL_URLS[0]}"' in source
    assert f'"Task02_Heart": "{dl.OFFICIAL_MD5}"' in source


def test_a_malformed_url_is_one_line(dest, capsys):
    """Before: urllib's ValueError ("Invalid IPv6 URL") reached the user as a traceback."""
    rc, _, err = run_cli(capsys, "--dest", str(dest), "--url", "http://[::1", "--md5", "1" * 32)
    assert "not a valid URL" in assert_one_line_error(rc, err)
    assert not dest.exists()
