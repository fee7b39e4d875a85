"""Built-in plugin: a store in a local directory, for ``file:///abs/path`` URLs.

It is the default store, so it is built to be shared by every process of a site on one host
and to fix what python-openid's ``FileOpenIDStore`` got wrong: every file name is a SHA-256
hex digest (no ``b'...'`` names, no path traversal from hostile URLs, handles or keys);
records are replaced atomically (temp file + fsync + ``os.replace``); a nonce is claimed with
one ``O_CREAT|O_EXCL`` file, atomic across processes; the newest association of an OP reads
only that OP's directory; and cleanup deletes whole expired time buckets, so its cost follows
the number of *expired* entries, not the live ones. Cleanup also runs by itself from normal
operations at most once per ``file_cleanup_interval`` seconds.

Layout (version 1; ``LAYOUT`` names it so later versions can migrate)::

    LAYOUT                                 {"format": "openid-plugins file store", "layout": 1}
    cleanup-stamp                          mtime = when cleanup last ran (store clock)
    tmp/                                   temp files of in-flight writes
    associations/<H(url)>/<H(handle)>.json {"server_url": url, "association": to_json text}
    associations-expiry/<bucket>/<H(url)>.<H(handle)>   expiry index (empty marker files)
    nonces/<bucket>/<H(url, timestamp, salt)>           one empty file per used nonce
    cache/<H(namespace, key)>.json         cache entries with their expiry
    cache-expiry/<bucket>/<H(namespace, key)>           expiry index (empty marker files)

``<bucket>`` is ``floor(expiry / width)``: every entry in it has expired once
``(bucket + 1) * width <= now``. Markers are written (and made durable) before the record
they point at, so a crash can leave a marker without a record (harmless) but never a
record nobody will clean up. Temp files live in ``tmp/`` on the same file system rather
than beside their target, so a crashed writer's leftovers are swept from one small
directory instead of from every data directory.

Options (``StoreOptions.extra``): ``file_fsync`` (default True; False skips every fsync, for
throwaway stores on tmpfs) and ``file_cleanup_interval`` (seconds, default 300; 0 turns the
automatic cleanup off, leaving it to explicit ``cleanup()`` calls).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..contracts import Association, Backend, Store, StoreOptions, check_server_url
from ..errors import StoreError
from ..fileutil import (
    O_CLOEXEC,
    O_NOFOLLOW,
    STALE_TMP_SECONDS,
    ForeignFileError,
    create_empty,
    digest,
    fsync_dir,
    local_root,
    make_private_dir,
    open_layout,
    read_json_object,
    write_atomically,
)
from ..hookspecs import hookimpl

log = logging.getLogger("openid_plugins.stores.file")

SCHEME = "file"

#: Bucket widths in seconds. Cleanup lists one index's bucket names (at most the longest
#: lifetime divided by the width of them are live) and the contents of expired buckets only.
NONCE_BUCKET = 60
CACHE_BUCKET = 300
ASSOCIATION_BUCKET = 3600
#: Expiry times are clamped here so a bucket name stays a short integer.
MAX_TIME = float(2**53)
#: Larger files are not ours (a secret is 64 bytes): they are ignored unread.
MAX_ASSOCIATION_BYTES = 64 * 1024
MAX_CACHE_BYTES = 1024 * 1024
#: How often a write retries when cleanup removed an empty directory under it.
_WRITE_ATTEMPTS = 5
#: Foreign files are reported once per store instance, up to this many.
_MAX_WARNED = 1024

HEX64 = re.compile(r"[0-9a-f]{64}")
RECORD_NAME = re.compile(r"[0-9a-f]{64}\.json")
ASSOCIATION_MARKER = re.compile(r"([0-9a-f]{64})\.([0-9a-f]{64})")
BUCKET_NAME = re.compile(r"-?[0-9]{1,20}")

def _bucket(expires: float, width: int) -> int:
    return math.floor(min(max(expires, -MAX_TIME), MAX_TIME) / width)


class FileStore(Store):
    """A ``Store`` in one local directory, safe for many threads and processes."""

    def __init__(self, root: Path, options: StoreOptions) -> None:
        super().__init__(options)
        extra: Mapping[str, Any] = options.extra
        self.root = root
        self.fsync = bool(extra.get("file_fsync", True))
        self.cleanup_interval = float(extra.get("file_cleanup_interval", 300.0))
        self._tmp = root / "tmp"
        self._associations = root / "associations"
        self._association_index = root / "associations-expiry"
        self._nonces = root / "nonces"
        self._cache = root / "cache"
        self._cache_index = root / "cache-expiry"
        self._stamp = root / "cleanup-stamp"
        self._next_cleanup = -math.inf
        self._warned: set[str] = set()
        with self._errors("create the store directory"):
            self._lay_out(create=options.create)

    def _lay_out(self, *, create: bool = True) -> None:
        open_layout(self.root, "store", StoreError, create=create)
        for path in (
            self._tmp,
            self._associations,
            self._association_index,
            self._nonces,
            self._cache,
            self._cache_index,
        ):
            make_private_dir(path)
        if create_empty(self._stamp):
            now = self.clock.now()
            os.utime(self._stamp, (now, now))

    def _make_dir(self, path: Path) -> None:
        """``make_private_dir``, recreating the whole store first if its directory is gone
        (removed by hand, or by a tmp cleaner): a StoreError on every call until the
        process restarts would be worse than starting empty."""
        try:
            make_private_dir(path)
        except FileNotFoundError:
            if self.root.is_dir():
                if path.parent == self.root or self.root not in path.parents:
                    raise
                self._make_dir(path.parent)  # a subdirectory was removed: make it again
                make_private_dir(path)
                return
            log.warning(
                "the file store directory %s disappeared; recreating it empty (the nonces"
                " it held are gone, so responses from the last %d s could be replayed once)",
                self.root,
                int(self.options.nonce_skew),
            )
            self._lay_out()
            make_private_dir(path)

    # -- associations ---------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        _check_expiry(association)
        server, handle = digest(server_url), digest(association.handle)
        # The association stays in its own to_json text, parsed once by from_json on reads.
        text = json.dumps(
            {"server_url": server_url, "association": association.to_json()},
            separators=(",", ":"),
        )
        with self._errors("store an association"):
            self._mark(
                self._association_index,
                _bucket(association.expires, ASSOCIATION_BUCKET),
                f"{server}.{handle}",
            )
            self._write(self._associations / server, f"{handle}.json", text.encode("ascii"))
        self._maybe_cleanup()

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        now = self.clock.now()
        directory = self._associations / digest(server_url)
        with self._errors("read associations"):
            if handle is not None:
                path = directory / f"{digest(handle)}.json"
                found = self._read_association(path, server_url, handle)
                if found is None or found.remaining(now) <= 0:
                    return None
                return found
            valid = []
            # Only this OP's directory is read; an OP has a handful of live associations.
            for name in self._list(directory):
                if not RECORD_NAME.fullmatch(name):
                    self._foreign(directory / name, "not a file name this store writes")
                    continue
                found = self._read_association(directory / name, server_url, None)
                if found is not None and found.remaining(now) > 0:
                    valid.append(found)
        return max(valid, key=lambda a: (a.issued, a.expires, a.handle), default=None)

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        path = self._associations / digest(server_url) / f"{digest(handle)}.json"
        with self._errors("remove an association"):
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            except IsADirectoryError:
                self._foreign(path, "a directory where a record file belongs")
                return False
            return True

    def _read_association(
        self, path: Path, server_url: str, handle: str | None
    ) -> Association | None:
        """The record at ``path`` if it is a sound association of ``server_url`` stored
        under its own handle's name (``handle``, when known, spares hashing it again)."""
        try:
            data = read_json_object(path, MAX_ASSOCIATION_BYTES)
            if data is None:
                return None
            if data.get("server_url") != server_url:
                raise ForeignFileError("a record of another server URL")
            found = Association.from_json(data["association"])
        except ForeignFileError as exc:
            self._foreign(path, str(exc))
            return None
        except (KeyError, TypeError, ValueError) as exc:
            self._foreign(path, f"not an association record ({exc!r})")
            return None
        if handle is not None:
            named_right = found.handle == handle
        else:
            named_right = f"{digest(found.handle)}.json" == path.name
        if not named_right:
            self._foreign(path, "its handle does not match its file name")
            return None
        return found

    # -- nonces ---------------------------------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):  # refused without touching the disk
            return False
        timestamp = float(timestamp)
        bucket_dir = self._nonces / str(_bucket(timestamp + self.options.nonce_skew, NONCE_BUCKET))
        path = bucket_dir / digest(server_url, timestamp, salt)
        with self._errors("record a nonce"):
            for _ in range(_WRITE_ATTEMPTS):
                try:
                    fresh = create_empty(path)
                except FileNotFoundError:  # a new bucket, or one cleanup just removed
                    self._make_dir(bucket_dir)
                    continue
                if not fresh:
                    return False
                if self.fsync:
                    # A replay after a power cut must still find the nonce.
                    fsync_dir(bucket_dir)
                break
            else:
                raise FileNotFoundError(f"{bucket_dir} keeps disappearing")
        self._maybe_cleanup()
        return True

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        if not math.isfinite(timestamp):
            return False
        timestamp = float(timestamp)
        bucket = _bucket(timestamp + self.options.nonce_skew, NONCE_BUCKET)
        path = self._nonces / str(bucket) / digest(server_url, timestamp, salt)
        with self._errors("look up a nonce"):
            return path.exists()

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        path = self._cache / f"{digest(namespace, key)}.json"
        with self._errors("read the cache"):
            try:
                data = read_json_object(path, MAX_CACHE_BYTES)
                if data is None:
                    return None
                if data.get("namespace") != namespace or data.get("key") != key:
                    raise ForeignFileError("a record of another cache key")
                expires = float(data["expires"])
                value = data["value"]
            except ForeignFileError as exc:
                self._foreign(path, str(exc))
                return None
            except (KeyError, TypeError, ValueError) as exc:
                self._foreign(path, f"not a cache record ({exc!r})")
                return None
        return value if expires > self.clock.now() else None

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        if not math.isfinite(ttl):
            raise StoreError(f"cache ttl must be a finite number of seconds, not {ttl!r}")
        expires = self.clock.now() + ttl
        name = digest(namespace, key)
        try:
            text = json.dumps(
                {"namespace": namespace, "key": key, "expires": expires, "value": value},
                separators=(",", ":"),
            )
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"cache value for {namespace!r}/{key!r} is not JSON-serializable ({exc}); "
                "cache only dicts, lists, strings, numbers, booleans and None"
            ) from None
        if len(text) > MAX_CACHE_BYTES:
            raise StoreError(
                f"cache value for {namespace!r}/{key!r} is {len(text)} bytes as JSON; the file"
                f" store keeps at most {MAX_CACHE_BYTES}: cache something smaller"
            )
        # Cache entries are disposable (a lost one costs one discovery), so they are written
        # atomically but never fsynced: on a login's path, an fsync costs more than the fetch.
        with self._errors("write the cache"):
            self._mark(self._cache_index, _bucket(expires, CACHE_BUCKET), name, durable=False)
            self._write(self._cache, f"{name}.json", text.encode("ascii"), False, fsync=False)
        self._maybe_cleanup()

    def cache_delete(self, namespace: str, key: str) -> None:
        path = self._cache / f"{digest(namespace, key)}.json"
        with self._errors("delete from the cache"), contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    # -- housekeeping ---------------------------------------------------------------------

    def cleanup(self) -> int:
        """Delete expired buckets of nonces and the expired records the expiry indexes point
        at; live buckets are never listed. Safe to run from several processes at once."""
        now = self.clock.now()
        with self._errors("clean up"):
            if not self._stamp.exists():
                self._make_dir(self._tmp)  # recreates the store if it is gone
                create_empty(self._stamp)
            removed = self._sweep_nonces(now)
            removed += self._sweep_index(
                self._association_index, ASSOCIATION_BUCKET, now, self._association_marker, True
            )
            removed += self._sweep_index(
                self._cache_index, CACHE_BUCKET, now, self._cache_marker, False
            )
            self._sweep_tmp()
            os.utime(self._stamp, (now, now))
        if removed:
            log.debug("cleanup of %s removed %d expired entries", self.root, removed)
        return removed

    def _maybe_cleanup(self) -> None:
        """Run ``cleanup`` if nobody (in any process) ran it for ``cleanup_interval``.

        Costs nothing between checks and one ``stat`` per check. Two processes may both
        run it; that is harmless, as every deletion tolerates a missing file.
        """
        if self.cleanup_interval <= 0:
            return
        now = self.clock.now()
        if now < self._next_cleanup:
            return
        try:
            last = os.stat(self._stamp).st_mtime
            if now < last + self.cleanup_interval:
                self._next_cleanup = last + self.cleanup_interval
                return
            os.utime(self._stamp, (now, now))
            self._next_cleanup = now + self.cleanup_interval
            self.cleanup()
        except (OSError, StoreError) as exc:
            # The caller's own operation succeeded; a failed sweep is retried next interval.
            self._next_cleanup = now + self.cleanup_interval
            log.warning("automatic cleanup of %s failed: %s", self.root, exc)

    def _expired_buckets(self, index: Path, width: int, now: float) -> Iterator[Path]:
        for entry in _scandir(index):
            if not BUCKET_NAME.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                self._foreign(Path(entry.path), "not a bucket directory this store writes")
            elif (int(entry.name) + 1) * width <= now:
                yield Path(entry.path)

    def _sweep_nonces(self, now: float) -> int:
        removed = 0
        for bucket in self._expired_buckets(self._nonces, NONCE_BUCKET, now):
            for entry in _scandir(bucket):
                if not HEX64.fullmatch(entry.name) or entry.is_dir(follow_symlinks=False):
                    self._foreign(Path(entry.path), "not a nonce file this store writes")
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
            _rmdir_if_empty(bucket)
        return removed

    def _sweep_index(
        self,
        index: Path,
        width: int,
        now: float,
        target_of: Callable[[str], Path | None],
        prune_parent: bool,
    ) -> int:
        """Remove the expired records that expired buckets of ``index`` point at, then the
        buckets; ``prune_parent`` also removes a record's directory once it is empty (an
        OP's association directory)."""
        removed = 0
        for bucket in self._expired_buckets(index, width, now):
            for entry in _scandir(bucket):
                target = target_of(entry.name)
                if target is None or entry.is_dir(follow_symlinks=False):
                    self._foreign(Path(entry.path), "not an index marker this store writes")
                    continue
                removed += self._remove_expired(target, now)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                if prune_parent:
                    _rmdir_if_empty(target.parent)
            _rmdir_if_empty(bucket)
        return removed

    def _association_marker(self, name: str) -> Path | None:
        match = ASSOCIATION_MARKER.fullmatch(name)
        if match is None:
            return None
        return self._associations / match[1] / f"{match[2]}.json"

    def _cache_marker(self, name: str) -> Path | None:
        return self._cache / f"{name}.json" if HEX64.fullmatch(name) else None

    def _remove_expired(self, path: Path, now: float) -> int:
        """Delete the record at ``path`` if it has expired; 1 if it did.

        The record may have been replaced by a live one since its marker was written (the
        live one has its own marker in a later bucket): then it stays. A replacement that
        lands between the check and the unlink is lost; that costs one association request
        or one discovery, and the inode comparison keeps the window to a few instructions.
        """
        try:
            fd = os.open(path, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        except OSError as exc:
            self._foreign(path, f"cannot be opened ({exc.strerror})")
            return 0
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self._foreign(path, "not a regular file")
                return 0
            raw = os.read(fd, MAX_CACHE_BYTES + 1)
        finally:
            os.close(fd)
        damaged = False
        try:
            data = json.loads(raw)
            if "association" in data:
                expires = Association.from_json(data["association"]).expires
            else:
                expires = float(data["expires"])
        except (KeyError, TypeError, ValueError, UnicodeDecodeError):
            # Written atomically, so never half-written by us: damaged on disk, useless.
            log.warning("removing %s: a damaged record that its expiry index points at", path)
            damaged, expires = True, -math.inf
        if expires > now:
            return 0
        try:
            if os.stat(path, follow_symlinks=False).st_ino != info.st_ino:
                return 0
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return 0 if damaged else 1

    def _sweep_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_SECONDS
        for entry in _scandir(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff and entry.is_file(
                    follow_symlinks=False
                ):
                    os.unlink(entry.path)
                    log.info("removed %s, left behind by a crashed writer", entry.path)

    # -- plumbing -------------------------------------------------------------------------

    def _mark(self, index: Path, bucket: int, name: str, durable: bool = True) -> None:
        """Add an expiry-index marker, durable (unless told otherwise) before the record it
        points at."""
        bucket_dir = index / str(bucket)
        for _ in range(_WRITE_ATTEMPTS):
            try:
                fresh = create_empty(bucket_dir / name)
            except FileNotFoundError:
                self._make_dir(bucket_dir)
                continue
            if fresh and durable and self.fsync:
                fsync_dir(bucket_dir)
            return
        raise FileNotFoundError(f"{bucket_dir} keeps disappearing")

    def _write(
        self, directory: Path, name: str, data: bytes, durable_dir: bool = True, fsync: bool = True
    ) -> None:
        for _ in range(_WRITE_ATTEMPTS):
            try:
                write_atomically(
                    self._tmp,
                    directory / name,
                    data,
                    fsync=fsync and self.fsync,
                    durable_dir=durable_dir,
                )
                return
            except FileNotFoundError:  # cleanup removed the (empty) directory meanwhile
                self._make_dir(self._tmp)
                self._make_dir(directory)
        raise FileNotFoundError(f"{directory} keeps disappearing")

    def _list(self, directory: Path) -> list[str]:
        try:
            return os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _foreign(self, path: Path, reason: str) -> None:
        key = str(path)
        if key in self._warned:
            return
        if len(self._warned) < _MAX_WARNED:
            self._warned.add(key)
        log.warning("ignoring %s in the file store: %s", path, reason)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise StoreError(
                f"file store at {self.root} could not {doing}: {exc}; check that the disk"
                " has space and that this user owns the directory"
            ) from exc


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (new entries, or stray ones), or gone
        os.rmdir(path)


def _check_expiry(association: Association) -> None:
    if not math.isfinite(association.expires):
        raise StoreError(
            f"association {association.handle!r} has no finite expiry"
            f" (issued={association.issued!r}, lifetime={association.lifetime!r})"
        )


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="store",
            schemes=(SCHEME,),
            open=lambda url, options: FileStore(local_root(url), options),
            description="a private directory on this host, shared by its processes",
        )
    ]
