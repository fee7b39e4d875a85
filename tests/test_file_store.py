"""What the file store promises beyond the Store contract: private hashed files, atomic
writes, bucketed cleanup, tolerance of damaged and foreign files, StoreError on OS errors."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from openid_plugins.config import open_store
from openid_plugins.contracts import Association, StoreOptions
from openid_plugins.errors import ConfigurationError, StoreError
from openid_plugins.manager import make_plugin_manager
from openid_plugins.stores.file import (
    ASSOCIATION_BUCKET,
    NONCE_BUCKET,
    FileStore,
    digest,
)
from openid_plugins.testing import FakeClock

OP = "https://op.example/server"
OTHER = "https://other.example/server"
HEX = re.compile(r"[0-9a-f]{64}(\.json|\.[0-9a-f]{64})?|-?[0-9]+")
FIXED_NAMES = {
    "LAYOUT",
    "cleanup-stamp",
    "tmp",
    "associations",
    "associations-expiry",
    "nonces",
    "cache",
    "cache-expiry",
}


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "store"


def make(root: Path, clock: FakeClock, **extra) -> FileStore:
    return FileStore(root, StoreOptions(clock=clock, nonce_skew=300, extra=extra))


def assoc(handle: str, issued: float, lifetime: float = 3600) -> Association:
    return Association(handle, b"k" * 20, issued, lifetime, "HMAC-SHA256")


def tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def fill(store: FileStore, clock: FakeClock) -> None:
    now = clock.now()
    store.store_association(OP, assoc("a", now))
    store.store_association(OTHER, assoc("b", now, 10))
    store.use_nonce(OP, now, "salt")
    store.cache_set("discovery", "https://id.example/", {"v": 1}, 60)


def warnings_about(caplog, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


# -- files: names, permissions, atomicity --------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_private_permissions_whatever_the_umask(root, clock, umask):
    old = os.umask(umask)
    try:
        store = make(root, clock)
        fill(store, clock)
        clock.advance(7200)
        store.use_nonce(OP, clock.now(), "later")
        store.cleanup()
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in tree(root):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_every_name_is_hashed_and_nothing_escapes(tmp_path, root, clock):
    store = make(root, clock)
    hostile = ["../../etc/passwd", "/tmp/x", "b'x'", "..", "\x01", "ü/日本"]
    for i, key in enumerate(hostile):
        store.store_association(key, assoc(key, clock.now()))
        store.use_nonce(key, clock.now(), key)
        store.cache_set(key, key, i, 60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    for path in tree(root):
        assert path.name in FIXED_NAMES or HEX.fullmatch(path.name), path
    assert (root / "associations" / digest("../../etc/passwd")).is_dir()


def test_layout_marker(root, clock):
    make(root, clock)
    assert json.loads((root / "LAYOUT").read_text()) == {
        "format": "openid-plugins file store",
        "layout": 1,
    }
    make(root, clock)  # reopening accepts its own marker


def test_concurrent_first_opens_all_succeed(tmp_path, clock):
    import threading

    for attempt in range(5):
        root = tmp_path / f"new{attempt}"
        barrier, errors = threading.Barrier(8), []

        def opener(root=root, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                make(root, clock).use_nonce(OP, clock.now(), "s")
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []


def test_future_layout_version_refused(root, clock):
    make(root, clock)
    (root / "LAYOUT").write_text(json.dumps({"format": "openid-plugins file store", "layout": 2}))
    with pytest.raises(StoreError, match="layout version 2"):
        make(root, clock)


def test_foreign_directories_refused(tmp_path, clock):
    busy = tmp_path / "home"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        make(busy, clock)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_queue_directory_refused(tmp_path, clock):
    from openid_plugins.queues.file import FileQueue

    FileQueue(tmp_path / "q", StoreOptions(clock=clock))
    with pytest.raises(StoreError, match="file queue"):
        make(tmp_path / "q", clock)


def test_url_forms(tmp_path, clock):
    pm = make_plugin_manager()
    store = open_store(pm, (tmp_path / "with space").as_uri(), StoreOptions(clock=clock))
    assert isinstance(store, FileStore) and store.root == tmp_path / "with space"
    with pytest.raises(ConfigurationError, match="relative"):
        open_store(pm, "file://relative/dir", StoreOptions(clock=clock))


def test_writes_leave_no_temp_files(root, clock):
    store = make(root, clock)
    for i in range(20):
        store.store_association(OP, assoc(f"h{i % 3}", clock.now()))
        store.cache_set("ns", f"k{i % 4}", list(range(i)), 60)
    assert list((root / "tmp").iterdir()) == []
    # A write that fails half-way removes its temp file too.
    target = root / "cache" / f"{digest('ns', 'blocked')}.json"
    target.mkdir()
    with pytest.raises(StoreError, match="could not write the cache"):
        store.cache_set("ns", "blocked", 1, 60)
    assert list((root / "tmp").iterdir()) == []


def test_stale_temp_files_are_swept(root, clock):
    store = make(root, clock)
    stale, fresh = root / "tmp" / "w-crashed", root / "tmp" / "w-inflight"
    stale.write_bytes(b"{")
    fresh.write_bytes(b"{")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    store.cleanup()
    assert not stale.exists() and fresh.exists()


# -- nonces ---------------------------------------------------------------------------------


def test_nonce_outside_skew_touches_no_disk(root, clock):
    store = make(root, clock)
    before = tree(root)
    assert store.use_nonce(OP, clock.now() - 301, "s") is False
    assert store.use_nonce(OP, clock.now() + 301, "s") is False
    assert tree(root) == before


def test_nonce_is_one_file_in_its_expiry_bucket(root, clock):
    store = make(root, clock)
    now = clock.now()
    assert store.use_nonce(OP, now, "s")
    bucket = int((now + 300) // NONCE_BUCKET)
    assert [p.name for p in (root / "nonces" / str(bucket)).iterdir()] == [digest(OP, now, "s")]
    # 5 and 5.0 are the same timestamp
    assert store.use_nonce(OP, int(now), "int") and not store.use_nonce(OP, float(int(now)), "int")


# -- associations ---------------------------------------------------------------------------


def test_newest_association_reads_only_its_servers_directory(root, clock, caplog):
    store = make(root, clock)
    store.store_association(OP, assoc("mine", clock.now()))
    store.store_association(OTHER, assoc("theirs", clock.now()))
    (root / "associations" / digest(OTHER) / "garbage").write_text("x")
    caplog.set_level(logging.WARNING)
    assert store.get_association(OP).handle == "mine"
    assert warnings_about(caplog, "garbage") == []
    assert store.get_association(OTHER).handle == "theirs"
    assert len(warnings_about(caplog, "garbage")) == 1


def test_corrupted_association_files_are_ignored_with_a_warning(root, clock, caplog):
    store = make(root, clock)
    now = clock.now()
    store.store_association(OP, assoc("good", now - 10))
    for handle in ("truncated", "notjson", "wrongserver", "huge", "link", "dir"):
        store.store_association(OP, assoc(handle, now))
    directory = root / "associations" / digest(OP)

    def path(handle):
        return directory / f"{digest(handle)}.json"

    raw = path("truncated").read_bytes()
    path("truncated").write_bytes(raw[: len(raw) // 2])
    path("notjson").write_bytes(b"\xff\xfe not json")
    path("wrongserver").write_text(
        raw.decode()
        .replace(json.dumps(OP), json.dumps(OTHER))
        .replace('"truncated"', '"wrongserver"')
    )
    path("huge").write_bytes(b" " * (65 * 1024))
    path("link").unlink()
    path("link").symlink_to(path("good"))
    path("dir").unlink()
    path("dir").mkdir()
    (directory / "README").write_text("foreign")

    caplog.set_level(logging.WARNING)
    assert store.get_association(OP).handle == "good"
    for handle in ("truncated", "notjson", "wrongserver", "huge", "link", "dir"):
        assert store.get_association(OP, handle) is None
    for handle in ("truncated", "notjson", "wrongserver", "huge", "link", "dir"):
        assert warnings_about(caplog, digest(handle)), handle
    assert warnings_about(caplog, "README")
    # Each bad file is reported once per store, not on every login.
    count = len(caplog.records)
    store.get_association(OP)
    assert len(caplog.records) == count


def test_file_renamed_to_another_handle_is_ignored(root, clock, caplog):
    store = make(root, clock)
    store.store_association(OP, assoc("real", clock.now()))
    directory = root / "associations" / digest(OP)
    os.rename(directory / f"{digest('real')}.json", directory / f"{digest('fake')}.json")
    caplog.set_level(logging.WARNING)
    assert store.get_association(OP, "fake") is None
    assert store.get_association(OP) is None
    assert warnings_about(caplog, "does not match")


def test_too_long_server_url_and_endless_association_refused(root, clock):
    store = make(root, clock)
    with pytest.raises(StoreError, match="2047"):
        store.store_association("https://x/" + "a" * 2040, assoc("h", clock.now()))
    with pytest.raises(StoreError, match="finite"):
        store.store_association(OP, assoc("h", clock.now(), float("inf")))


# -- cache ----------------------------------------------------------------------------------


def test_corrupted_cache_entries_are_ignored(root, clock, caplog):
    store = make(root, clock)
    store.cache_set("ns", "a", {"x": 1}, 60)
    store.cache_set("ns", "b", {"x": 2}, 60)
    (root / "cache" / f"{digest('ns', 'a')}.json").write_text('{"namespace": "ns", "key"')
    entry_b = root / "cache" / f"{digest('ns', 'b')}.json"
    os.replace(entry_b, root / "cache" / f"{digest('ns', 'c')}.json")
    caplog.set_level(logging.WARNING)
    assert store.cache_get("ns", "a") is None
    assert store.cache_get("ns", "c") is None  # holds key "b": not this key's record
    assert len(warnings_about(caplog, "ignoring")) == 2


def test_oversized_cache_value_refused(root, clock):
    store = make(root, clock)
    with pytest.raises(StoreError, match="at most"):
        store.cache_set("ns", "k", "x" * (1024 * 1024), 60)


# -- cleanup --------------------------------------------------------------------------------


def test_cleanup_never_lists_live_buckets(root, clock, caplog):
    store = make(root, clock, file_cleanup_interval=0)
    now = clock.now()
    store.use_nonce(OP, now, "expiring")
    clock.advance(900)
    store.use_nonce(OP, clock.now(), "live")
    store.cache_set("ns", "live", 1, 3600)
    live_buckets = [p for p in (root / "nonces").iterdir() if int(p.name) * 60 > clock.now()]
    (live_buckets[0] / "stray-in-live").write_text("x")
    expired_bucket = root / "nonces" / str(int((now + 300) // NONCE_BUCKET))
    (expired_bucket / "stray-in-expired").write_text("x")
    caplog.set_level(logging.WARNING)

    assert store.cleanup() == 1
    assert warnings_about(caplog, "stray-in-expired")
    assert warnings_about(caplog, "stray-in-live") == []
    assert (live_buckets[0] / "stray-in-live").exists()
    assert [p.name for p in expired_bucket.iterdir()] == ["stray-in-expired"]
    assert store.use_nonce(OP, clock.now(), "live") is False
    assert store.cache_get("ns", "live") == 1


def test_cleanup_survives_stray_files_and_dirs(root, clock, caplog):
    store = make(root, clock, file_cleanup_interval=0)
    fill(store, clock)
    store.store_association(OP, assoc("live", clock.now(), 86400))
    (root / "nonces" / "notes.txt").write_text("x")
    (root / "nonces" / "12").write_text("a file with a bucket's name")
    (root / "associations-expiry" / "junk").mkdir()
    clock.advance(3 * ASSOCIATION_BUCKET)
    expired_assoc_bucket = next((root / "associations-expiry").glob("[0-9]*"))
    (expired_assoc_bucket / "not-a-marker").mkdir()
    (expired_assoc_bucket / ("f" * 64 + "." + "e" * 64)).write_text("")  # points at nothing
    caplog.set_level(logging.WARNING)

    assert store.cleanup() == 4  # associations "a" and "b", the nonce, the cache entry
    assert store.get_association(OP).handle == "live"
    assert (root / "nonces" / "notes.txt").exists()
    assert (expired_assoc_bucket / "not-a-marker").is_dir()
    assert warnings_about(caplog, "notes.txt") and warnings_about(caplog, "not-a-marker")
    assert store.cleanup() == 0


def test_cleanup_keeps_an_association_replaced_by_a_live_one(root, clock):
    store = make(root, clock, file_cleanup_interval=0)
    store.store_association(OP, assoc("h", clock.now(), 10))
    store.store_association(OP, assoc("h", clock.now(), 86400))
    clock.advance(3 * ASSOCIATION_BUCKET)
    assert store.cleanup() == 0
    assert store.get_association(OP, "h").lifetime == 86400


def test_cleanup_prunes_empty_server_directories(root, clock):
    store = make(root, clock, file_cleanup_interval=0)
    store.store_association(OP, assoc("h", clock.now(), 10))
    store.store_association(OTHER, assoc("h2", clock.now(), 10))
    assert store.remove_association(OTHER, "h2")
    clock.advance(3 * ASSOCIATION_BUCKET)
    assert store.cleanup() == 1
    assert list((root / "associations").iterdir()) == []
    assert list((root / "associations-expiry").iterdir()) == []
    store.store_association(OP, assoc("again", clock.now()))  # the directory comes back
    assert store.get_association(OP).handle == "again"


def test_cleanup_removes_damaged_records_its_index_points_at(root, clock, caplog):
    store = make(root, clock, file_cleanup_interval=0)
    store.cache_set("ns", "k", 1, 10)
    (root / "cache" / f"{digest('ns', 'k')}.json").write_text("{trunc")
    clock.advance(3600)
    caplog.set_level(logging.WARNING)
    assert store.cleanup() == 0
    assert list((root / "cache").iterdir()) == []
    assert warnings_about(caplog, "damaged")


def test_automatic_cleanup_runs_once_per_interval(root, clock):
    store = make(root, clock, file_cleanup_interval=600)
    other_process = make(root, clock, file_cleanup_interval=600)
    now = clock.now()
    store.use_nonce(OP, now, "old")
    expired_bucket = root / "nonces" / str(int((now + 300) // NONCE_BUCKET))
    clock.advance(400)
    store.use_nonce(OP, clock.now(), "x")
    assert expired_bucket.exists()  # interval not over yet
    clock.advance(300)
    other_process.use_nonce(OP, clock.now(), "y")  # any write checks the shared stamp
    assert not expired_bucket.exists()
    ran_at = (root / "cleanup-stamp").stat().st_mtime
    assert ran_at == pytest.approx(clock.now())
    store.cache_set("ns", "k", 1, 60)  # the stamp says it just ran: no second run
    assert (root / "cleanup-stamp").stat().st_mtime == ran_at


def test_automatic_cleanup_can_be_turned_off(root, clock):
    store = make(root, clock, file_cleanup_interval=0)
    now = clock.now()
    store.use_nonce(OP, now, "old")
    clock.advance(7200)
    store.use_nonce(OP, clock.now(), "new")
    assert (root / "nonces" / str(int((now + 300) // NONCE_BUCKET))).exists()


def test_without_fsync_still_works(root, clock):
    store = make(root, clock, file_fsync=False)
    fill(store, clock)
    assert store.get_association(OP).handle == "a"
    assert store.use_nonce(OP, clock.now(), "salt") is False


# -- OS errors become StoreError ------------------------------------------------------------


def test_os_errors_become_store_errors(root, clock):
    store = make(root, clock)
    for name in ("associations", "nonces", "cache-expiry"):
        os.rmdir(root / name)
        (root / name).write_text("not a directory")
    with pytest.raises(StoreError, match="could not store an association") as info:
        store.store_association(OP, assoc("h", clock.now()))
    assert str(root) in str(info.value) and "disk" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(StoreError, match="could not record a nonce"):
        store.use_nonce(OP, clock.now(), "s")
    with pytest.raises(StoreError, match="could not write the cache"):
        store.cache_set("ns", "k", 1, 60)


def test_unusable_root_is_a_store_error(tmp_path, clock):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="could not create the store directory"):
        make(blocker / "store", clock)


# -- recoverable faults recover -----------------------------------------------------------


def test_a_removed_store_directory_is_recreated(root, clock, caplog):
    """Removed by hand or by a tmp cleaner: the store starts again empty (with a warning)
    instead of failing every call until the process restarts."""
    store = make(root, clock)
    fill(store, clock)
    shutil.rmtree(root)
    assert store.get_association(OP) is None  # reads find nothing, and fail nothing
    assert store.use_nonce(OP, clock.now(), "after") is True
    assert store.use_nonce(OP, clock.now(), "after") is False
    store.store_association(OP, assoc("new", clock.now()))
    assert store.get_association(OP).handle == "new"
    store.cache_set("ns", "k", 1, 60)
    assert store.cache_get("ns", "k") == 1
    assert warnings_about(caplog, "disappeared")
    assert (root / "LAYOUT").exists() and stat.S_IMODE(root.stat().st_mode) == 0o700
    shutil.rmtree(root)
    assert store.cleanup() == 0


def test_a_removed_subdirectory_is_recreated(root, clock):
    store = make(root, clock)
    shutil.rmtree(root / "nonces")
    shutil.rmtree(root / "associations")
    assert store.use_nonce(OP, clock.now(), "s") is True
    store.store_association(OP, assoc("h", clock.now()))
    assert store.get_association(OP, "h") is not None
