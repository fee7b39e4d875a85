"""File-system building blocks of the built-in file store and file queue: private
directories, atomic replacement, ``O_EXCL`` test-and-set, bounded reads that refuse foreign
files, and the layout marker. A neutral module, so neither plugin imports the other."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .backends import file_url_path
from .errors import ConfigurationError, OpenIDError

LAYOUT_VERSION = 1
LAYOUT_FILE = "LAYOUT"
DIR_MODE = 0o700
FILE_MODE = 0o600
#: Temp files older than this (real time) belong to crashed writers.
STALE_TMP_SECONDS = 3600.0

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def digest(*parts: str | float) -> str:
    """The SHA-256 hex of one string's UTF-8 (lone surrogates allowed), or of several
    parts encoded as a JSON array, so that no two different tuples share an encoding."""
    if len(parts) == 1 and isinstance(parts[0], str):
        data = parts[0].encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(list(parts), separators=(",", ":")).encode("ascii")
    return hashlib.sha256(data).hexdigest()


def make_private_dir(path: Path) -> None:
    """Create ``path`` as mode 0700 whatever the umask; an existing one is left as it is."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIR_MODE)


def fsync_dir(path: Path) -> None:
    """Make entries created, renamed or removed in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    tmp_dir: Path, target: Path, data: bytes, *, fsync: bool, durable_dir: bool = False
) -> None:
    """Replace ``target`` with ``data`` so readers see the old or the new file, never part.

    ``tmp_dir`` must be on the file system of ``target`` (``os.replace`` is atomic only
    there). ``durable_dir`` also fsyncs the target's directory, so the replacement itself
    survives a crash.
    """
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="w-")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync and durable_dir:
        fsync_dir(target.parent)


def create_empty(path: Path) -> bool:
    """Create an empty private file; False if it already existed. ``O_EXCL`` makes this
    the atomic test-and-set that nonces and queue entries rely on (also across processes
    and on NFSv3+)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


class ForeignFileError(Exception):
    """Internal: a file in our tree that we did not write (or that was damaged)."""


def read_small(path: Path, limit: int) -> bytes | None:
    """The content of ``path`` (None if it does not exist), refusing symlinks, directories
    and files over ``limit`` bytes with ``ForeignFileError``."""
    try:
        fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ForeignFileError("a directory where a record file belongs") from None
    except OSError:
        if O_NOFOLLOW and os.path.islink(path):
            raise ForeignFileError("a symbolic link where a record file belongs") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ForeignFileError("not a regular file")
        if info.st_size > limit:
            raise ForeignFileError(f"{info.st_size} bytes, more than a record can be")
        chunks = []
        size = 0
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ForeignFileError(f"more than {limit} bytes, more than a record can be")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json_object(path: Path, limit: int) -> dict[str, Any] | None:
    """A JSON object read from ``path``; None if absent; ``ForeignFileError`` if unusable."""
    raw = read_small(path, limit)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ForeignFileError("not JSON (truncated or damaged)") from None
    if not isinstance(data, dict):
        raise ForeignFileError("JSON, but not one of our records")
    return data


def open_layout(root: Path, kind: str, error: type[OpenIDError], *, create: bool = True) -> None:
    """Create ``root`` (private) with its layout marker, or check the marker it has.

    ``kind`` is ``"store"`` or ``"queue"``: pointing one at the other's directory fails.
    With ``create`` false (``StoreOptions.create``) a missing one is an error instead.

    A non-empty directory without a marker is refused rather than filled: a store URL
    pointing at the wrong directory (a home, a project) must not scatter files into it.
    """
    fmt = f"openid-plugins file {kind}"
    marker = root / LAYOUT_FILE
    if not create and not marker.exists():
        raise error(
            f"there is no {fmt} at {root}; check the URL (a site creates its {kind} on first"
            " use, and this command creates none)"
        )
    try:
        root.mkdir(parents=True)
    except FileExistsError:
        pass
    else:
        os.chmod(root, DIR_MODE)
    try:
        data = read_json_object(marker, 4096)
    except ForeignFileError as exc:
        raise error(f"{marker} is damaged ({exc}); restore it or move {root} aside") from None
    if data is None:
        others = [e for e in os.listdir(root) if not e.startswith(f".{LAYOUT_FILE}.")]
        if not others:
            text = json.dumps({"format": fmt, "layout": LAYOUT_VERSION}) + "\n"
            fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{LAYOUT_FILE}.")
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), FILE_MODE)
                f.write(text)
            os.replace(tmp, marker)
            return
        # Another process may have laid the directory out since we looked for the marker.
        data = read_json_object(marker, 4096)
        if data is None:
            raise error(
                f"{root} is not empty and is not an {fmt} (no {LAYOUT_FILE} file);"
                " point the URL at a new or empty directory"
            )
    if data.get("format") != fmt:
        raise error(f"{root} holds {data.get('format')!r}, not an {fmt}; use another directory")
    if data.get("layout") != LAYOUT_VERSION:
        raise error(
            f"{root} has layout version {data.get('layout')!r}; this version of openid-plugins"
            f" reads version {LAYOUT_VERSION} only: upgrade openid-plugins or use a new directory"
        )


def local_root(url: str) -> Path:
    """The absolute directory a ``file://`` store or queue URL names."""
    path = file_url_path(url)
    if not path.is_absolute():
        raise ConfigurationError(f"{url!r} names a relative path; use file:///absolute/path")
    return path
