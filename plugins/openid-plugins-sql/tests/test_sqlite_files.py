"""SQLite database files hold association secrets (MAC keys) in clear: they are created
0600 with their -wal and -shm files, whatever the umask, and a relative path - which each
process would resolve against its own working directory - is refused."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator

import pytest
from openid_plugins_sql import SQLStore

from openid_plugins.contracts import Association, StoreOptions
from openid_plugins.errors import ConfigurationError
from openid_plugins.testing.clock import FakeClock

OP = "https://op.example/server"


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what makes files 0644 unless asked otherwise
    yield
    os.umask(previous)


def mode(path) -> int:  # noqa: ANN001
    return stat.S_IMODE(os.stat(path).st_mode)


def test_database_wal_and_shm_files_are_private(tmp_path, usual_umask) -> None:
    db = tmp_path / "openid.db"
    clock = FakeClock()
    with SQLStore(f"sqlite:///{db}", StoreOptions(clock=clock)) as store:
        store.store_association(OP, Association("h", b"s" * 32, clock.now(), 3600, "HMAC-SHA256"))
        files = [db, tmp_path / "openid.db-wal", tmp_path / "openid.db-shm"]
        assert all(path.exists() for path in files)
        assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}


def test_an_existing_readable_database_is_reported(tmp_path, caplog) -> None:
    db = tmp_path / "shared.db"
    db.touch()
    db.chmod(0o644)
    store = SQLStore(f"sqlite:///{db}", StoreOptions(clock=FakeClock()))
    with caplog.at_level(logging.WARNING, logger="openid_plugins.sql"), store:
        store.cache_set("ns", "k", 1, 60)
    assert "readable by other users" in caplog.text
    assert mode(db) == 0o644  # reported, not changed behind its owner's back


@pytest.mark.parametrize("url", ["sqlite:///openid.db", "sqlite:///tmp/x.db"])
def test_a_relative_path_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="absolute path"):
        SQLStore(url, StoreOptions(clock=FakeClock()))


def test_processes_opening_a_new_database_together_all_get_in(tmp_path) -> None:
    """The cause of "database is locked" in ~1/16 runs of the cross-process nonce race:
    every new connection asked for WAL mode, which needs the file to itself and is refused
    at once (no busy timeout) while another connection holds a write lock on it, as a
    process creating the schema does. The store's first connection must wait instead."""
    db = tmp_path / "new.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, still in rollback-journal mode
    release = threading.Timer(0.5, holder.execute, args=("COMMIT",))
    release.start()
    clock = FakeClock()
    try:
        with SQLStore(f"sqlite:///{db}", StoreOptions(clock=clock)) as store:
            assert store.use_nonce(OP, clock.now(), "x") is True
    finally:
        release.join()
        holder.close()
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    check.close()
