"""What the file queue promises beyond the Queue contract: one private, hash-named file per
item, leases in claim names, damaged and foreign files set aside, QueueError on OS errors."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time

import pytest

from openid_plugins.contracts import QueueItem, StoreOptions
from openid_plugins.errors import QueueError
from openid_plugins.queues.file import FileQueue
from openid_plugins.stores.file import FileStore, digest
from openid_plugins.testing import FakeClock

OP = "https://op.example/server"


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "queue"


def make(root, clock, **extra) -> FileQueue:
    return FileQueue(root, StoreOptions(clock=clock, extra=extra))


def names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def warnings_about(caplog, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


def test_one_hash_named_file_per_waiting_url(root, clock):
    queue = make(root, clock)
    for url in (OP, OP, "../../etc/passwd", OP):
        queue.put(url)
    assert names(root / "waiting") == sorted([digest(OP), digest("../../etc/passwd")])
    assert json.loads((root / "waiting" / digest(OP)).read_text()) == {"server_url": OP}
    assert names(root / "tmp") == []
    assert names(root.parent) == ["queue"]


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_private_permissions_whatever_the_umask(root, clock, umask):
    old = os.umask(umask)
    try:
        queue = make(root, clock)
        queue.put(OP)
        queue.put("https://other.example/")
        queue.claim(limit=1)
    finally:
        os.umask(old)
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_claim_renames_with_the_lease_in_the_name(root, clock):
    queue = make(root, clock)
    queue.put(OP)
    [item] = queue.claim(lease=45)
    match = re.fullmatch(r"([0-9a-f]{64})\.(\d+)\.([0-9a-f]{16})", item.token)
    assert match and match[1] == digest(OP)
    assert int(match[2]) == round((clock.now() + 45) * 1000)
    assert names(root / "claimed") == [item.token] and names(root / "waiting") == []


def test_claims_oldest_first(root, clock):
    queue = make(root, clock)
    urls = [f"https://op{i}.example/" for i in range(5)]
    for i, url in enumerate(reversed(urls)):
        queue.put(url)
        t = time.time() - 100 + i
        os.utime(root / "waiting" / digest(url), (t, t))
    assert [item.server_url for item in queue.claim(limit=2)] == urls[-1:-3:-1]


def test_put_of_a_waiting_url_keeps_its_place(root, clock):
    queue = make(root, clock)
    queue.put(OP)
    old = time.time() - 1000
    os.utime(root / "waiting" / digest(OP), (old, old))
    queue.put("https://later.example/")
    queue.put(OP)
    assert [item.server_url for item in queue.claim(limit=1)] == [OP]


def test_foreign_files_are_ignored_with_a_warning(root, clock, caplog):
    queue = make(root, clock)
    queue.put(OP)
    (root / "waiting" / "notes.txt").write_text("hello")
    (root / "claimed" / "stray").write_text("x")
    caplog.set_level(logging.WARNING)
    assert queue.pending() == 1
    assert [item.server_url for item in queue.claim()] == [OP]
    assert queue.claim() == []
    assert warnings_about(caplog, "notes.txt") and warnings_about(caplog, "stray")
    assert (root / "waiting" / "notes.txt").exists()


@pytest.mark.parametrize(
    "content",
    [b'{"server_url": "https://op.exa', b"\xff\xfe", b"[1, 2]", b'{"server_url": "https://x/"}'],
    ids=["truncated", "binary", "not-an-object", "wrong-url-for-name"],
)
def test_damaged_items_are_moved_aside(root, clock, caplog, content):
    queue = make(root, clock)
    queue.put(OP)
    (root / "waiting" / digest(OP)).write_bytes(content)
    queue.put("https://fine.example/")
    caplog.set_level(logging.WARNING)
    assert [item.server_url for item in queue.claim()] == ["https://fine.example/"]
    assert len(names(root / "rejected")) == 1
    assert warnings_about(caplog, "rejected")
    assert queue.pending() == 1


def test_tokens_that_are_not_claims_are_refused(root, clock):
    queue = make(root, clock)
    queue.put(OP)
    for token in ("../../etc/passwd", digest(OP), "", "x" * 300):
        with pytest.raises(QueueError, match="claim token"):
            queue.ack([QueueItem(OP, token)])
        with pytest.raises(QueueError, match="claim token"):
            queue.release([QueueItem(OP, token)])
    assert queue.pending() == 1


def test_stale_temp_files_are_swept_on_open(root, clock):
    make(root, clock)
    stale, fresh = root / "tmp" / "put-crashed", root / "tmp" / "put-inflight"
    stale.write_text("{}")
    fresh.write_text("{}")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    make(root, clock)
    assert names(root / "tmp") == ["put-inflight"]


def test_store_and_foreign_directories_refused(tmp_path, clock):
    FileStore(tmp_path / "store", StoreOptions(clock=clock))
    with pytest.raises(QueueError, match="file store"):
        make(tmp_path / "store", clock)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "data.csv").write_text("1,2")
    with pytest.raises(QueueError, match="not empty"):
        make(busy, clock)


def test_os_errors_become_queue_errors(root, clock):
    queue = make(root, clock)
    queue.put(OP)
    os.rename(root / "claimed", root / "claimed-moved")
    (root / "claimed").write_text("not a directory")
    with pytest.raises(QueueError, match="could not claim items") as info:
        queue.claim()
    assert isinstance(info.value.__cause__, OSError) and str(root) in str(info.value)
    os.rmdir(root / "tmp")
    (root / "tmp").write_text("not a directory")
    with pytest.raises(QueueError, match="could not add an item"):
        queue.put("https://new.example/")


def test_refuses_bad_arguments(root, clock):
    queue = make(root, clock)
    with pytest.raises(QueueError, match="2047"):
        queue.put("https://x/" + "a" * 2040)
    with pytest.raises(QueueError, match="finite"):
        queue.claim(lease=float("nan"))


def test_without_fsync_still_works(root, clock):
    queue = make(root, clock, file_fsync=False)
    queue.put(OP)
    [item] = queue.claim()
    queue.ack([item])
    assert queue.pending() == 0


def test_claims_serve_one_listing_before_listing_again(root, clock):
    """A claim does not list and stat the whole backlog: it takes from the oldest-first
    listing an earlier claim made, so an item put meanwhile - even one that looks older -
    waits until that listing is used up."""
    queue = make(root, clock)
    urls = [f"https://op{i}.example/" for i in range(3)]
    for i, url in enumerate(urls):
        queue.put(url)
        t = time.time() - 100 + i
        os.utime(root / "waiting" / digest(url), (t, t))
    assert [item.server_url for item in queue.claim(limit=1)] == urls[:1]
    queue.put("https://older.example/")
    old = time.time() - 1000
    os.utime(root / "waiting" / digest("https://older.example/"), (old, old))
    assert [item.server_url for item in queue.claim(limit=1)] == urls[1:2]
    assert [item.server_url for item in queue.claim(limit=5)] == [
        urls[2],
        "https://older.example/",
    ]
    assert queue.claim() == []


def test_an_item_another_queue_claimed_is_skipped(root, clock):
    first, second = make(root, clock), make(root, clock)
    for i in range(4):
        first.put(f"https://op{i}.example/")
    a = first.claim(limit=1)
    b = second.claim(limit=4)
    c = first.claim(limit=4)
    claimed = [item.server_url for item in a + b + c]
    assert sorted(claimed) == [f"https://op{i}.example/" for i in range(4)]
