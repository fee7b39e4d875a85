"""Built-in plugin: a queue in a local directory, for ``file:///abs/path`` URLs.

This is the seed's "file to which the server URLs are appended", made safe for many writer
and fetcher processes. Instead of one appended file it keeps **one file per item**, because
then every operation is a single atomic file-system call and nothing needs a lock:

- ``put`` writes the item in ``tmp/`` and hard-links it to ``waiting/<H(url)>``: the link
  fails if that URL is already waiting (de-duplication for free), and readers never see a
  half-written item. An appended log would need ``flock`` (which NFS and crashed holders
  make unreliable) and compaction.
- ``claim`` renames ``waiting/<H>`` to ``claimed/<H>.<lease expiry ms>.<random>``; of several
  processes renaming the same file exactly one succeeds, so claims are disjoint.
- an expired lease (encoded in the name, so no file is read) is renamed back to
  ``waiting/`` by the next ``claim``: a crashed fetcher loses nothing.
- ``ack`` unlinks the claimed file; ``release`` renames it back.

``claim`` serves the oldest first: it lists ``waiting/`` and stats its entries once, keeps
that oldest-first list in memory and takes its items from it in later claims, listing the
directory again only when the list runs out. A claim thus costs about ``limit`` renames
whatever the backlog (one listing per backlog's worth of claims, not one per claim); items
put after a listing are served after the ones it found, which are older, and a listed item
another process claimed meanwhile is skipped when its rename fails. Entries that
are damaged are moved to ``rejected/`` with a warning; foreign files are left alone and
ignored with a warning. ``wait`` polls (there is no portable file notification): one
directory read every 50 ms at first, backing off to every 500 ms.

Option (``StoreOptions.extra``): ``file_fsync`` (default True) as for the file store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..contracts import Backend, Queue, QueueItem, StoreOptions, check_server_url
from ..errors import QueueError
from ..fileutil import (
    STALE_TMP_SECONDS,
    ForeignFileError,
    digest,
    local_root,
    make_private_dir,
    open_layout,
    read_json_object,
)
from ..hookspecs import hookimpl

log = logging.getLogger("openid_plugins.queues.file")

SCHEME = "file"
MAX_ITEM_BYTES = 16 * 1024
WAITING_NAME = re.compile(r"[0-9a-f]{64}")
CLAIMED_NAME = re.compile(r"([0-9a-f]{64})\.(-?[0-9]{1,20})\.([0-9a-f]{16})")
_POLL_FIRST = 0.05
_POLL_MAX = 0.5
_MAX_WARNED = 1024


class FileQueue(Queue):
    """A ``Queue`` in one local directory, shared by every process on the host."""

    def __init__(self, root: Path, options: StoreOptions) -> None:
        super().__init__(options)
        self.root = root
        self.fsync = bool(options.extra.get("file_fsync", True))
        self._tmp = root / "tmp"
        self._waiting = root / "waiting"
        self._claimed = root / "claimed"
        self._rejected = root / "rejected"
        self._warned: set[str] = set()
        #: Waiting names from the last listing, newest first (claims pop from the end).
        self._listed: list[str] = []
        with self._errors("create the queue directory"):
            open_layout(root, "queue", QueueError, create=options.create)
            for path in (self._tmp, self._waiting, self._claimed, self._rejected):
                make_private_dir(path)
            self._sweep_tmp()

    def put(self, server_url: str) -> None:
        """Atomic but not fsynced: ``put`` runs on a login's path, and a URL lost in a power
        cut is queued again by the next login that finds no association."""
        check_server_url(server_url, QueueError)
        target = self._waiting / digest(server_url)
        if os.path.lexists(target):
            return
        data = json.dumps({"server_url": server_url}).encode("ascii")
        with self._errors("add an item"):
            tmp = self._tmp / f"put-{secrets.token_hex(8)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return  # the URL is already waiting
            finally:
                os.unlink(tmp)
            log.debug("queued %s", server_url)

    def claim(self, limit: int = 100, lease: float = 60.0) -> list[QueueItem]:
        if not math.isfinite(lease):
            raise QueueError(f"lease must be a finite number of seconds, not {lease!r}")
        if limit <= 0:
            return []
        now = self.clock.now()
        until = _millis(now + lease)
        items: list[QueueItem] = []
        with self._errors("claim items"):
            self._return_expired(now)
            listed_again = False
            while len(items) < limit:
                if not self._listed:
                    if listed_again:
                        break
                    self._listed = self._oldest_waiting()[::-1]
                    listed_again = True
                    if not self._listed:
                        break
                name = self._listed.pop()
                token = f"{name}.{until}.{secrets.token_hex(8)}"
                try:
                    os.rename(self._waiting / name, self._claimed / token)
                except FileNotFoundError:
                    continue  # another claimer took it first
                server_url = self._read_item(self._claimed / token, name)
                if server_url is None:
                    continue
                items.append(QueueItem(server_url, token))
        return items

    def ack(self, items: Iterable[QueueItem]) -> None:
        with self._errors("acknowledge items"):
            for item in items:
                # Gone when its lease ran out and another claimer has it: not ours to remove.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._claimed / self._token(item))

    def release(self, items: Iterable[QueueItem]) -> None:
        with self._errors("release items"):
            for item in items:
                token = self._token(item)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self._claimed / token, self._waiting / token[:64])

    def pending(self) -> int:
        with self._errors("count items"):
            waiting = sum(1 for name in _names(self._waiting) if WAITING_NAME.fullmatch(name))
            claimed = sum(1 for name in _names(self._claimed) if CLAIMED_NAME.fullmatch(name))
        return waiting + claimed

    def wait(self, timeout: float) -> bool:
        """Poll until an item can be claimed (waiting, or its lease ran out); see the module
        docstring for the polling rate."""
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST
        while True:
            with self._errors("look for items"):
                if self._claimable():
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX)

    # -- plumbing -------------------------------------------------------------------------

    def _claimable(self) -> bool:
        with os.scandir(self._waiting) as entries:
            if any(WAITING_NAME.fullmatch(e.name) for e in entries):
                return True
        now = _millis(self.clock.now())
        return any(until <= now for _, until in self._claims())

    def _claims(self) -> Iterator[tuple[str, int]]:
        for name in _names(self._claimed):
            match = CLAIMED_NAME.fullmatch(name)
            if match is None:
                self._foreign(self._claimed / name)
            else:
                yield name, int(match[2])

    def _return_expired(self, now: float) -> None:
        current = _millis(now)
        for name, until in list(self._claims()):
            if until <= current:
                with contextlib.suppress(FileNotFoundError):  # acked or returned meanwhile
                    os.rename(self._claimed / name, self._waiting / name[:64])
                    log.info("a lease ran out; item %s is waiting again", name[:12])

    def _oldest_waiting(self) -> list[str]:
        found = []
        with os.scandir(self._waiting) as entries:
            for entry in entries:
                if not WAITING_NAME.fullmatch(entry.name):
                    self._foreign(Path(entry.path))
                    continue
                with contextlib.suppress(FileNotFoundError):
                    found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
        return [name for _, name in sorted(found)]

    def _read_item(self, path: Path, name: str) -> str | None:
        """The URL of a claimed item; a damaged one is moved to ``rejected/``."""
        try:
            data = read_json_object(path, MAX_ITEM_BYTES)
            if data is None:
                return None
            server_url = data.get("server_url")
            if not isinstance(server_url, str) or digest(server_url) != name:
                raise ForeignFileError("not an item for its file name")
        except ForeignFileError as exc:
            log.warning("moving %s to %s: %s", path, self._rejected, exc)
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, self._rejected / path.name)
            return None
        return server_url

    def _token(self, item: QueueItem) -> str:
        if not CLAIMED_NAME.fullmatch(item.token):
            raise QueueError(
                f"{item.token!r} is not a claim token of a file queue; pass items from claim()"
            )
        return item.token

    def _sweep_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_SECONDS
        for name in _names(self._tmp):
            path = self._tmp / name
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path, follow_symlinks=False).st_mtime < cutoff and path.is_file():
                    os.unlink(path)

    def _foreign(self, path: Path) -> None:
        key = str(path)
        if key in self._warned:
            return
        if len(self._warned) < _MAX_WARNED:
            self._warned.add(key)
        log.warning("ignoring %s in the file queue: not a file name this queue writes", path)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise QueueError(
                f"file queue at {self.root} could not {doing}: {exc}; check that the disk"
                " has space and that this user owns the directory"
            ) from exc


def _millis(t: float) -> int:
    """Lease expiry as integer milliseconds, rounded up so a lease is never cut short."""
    return math.ceil(min(max(t, -1e15), 1e15) * 1000)


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="queue",
            schemes=(SCHEME,),
            open=lambda url, options: FileQueue(local_root(url), options),
            description="a private directory on this host: one file per waiting endpoint",
        )
    ]
