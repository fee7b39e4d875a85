"""The discovery cache is an optimisation: a store that cannot write (or read) it costs a
fetch and a warning, never the sign-in."""

from __future__ import annotations

import logging
import shutil

import pytest

from openid_plugins.errors import StoreError
from openid_plugins.testing.provider import DevelopmentProvider

RETURN_TO = "https://rp.example/finish"


@pytest.fixture
def provider():
    with DevelopmentProvider(users=("alice",)) as op:
        yield op


def break_cache_writes(root) -> None:
    """What a full disk or a changed permission does to cache writes, made real: the
    cache's expiry index is a file now, so every cache write fails with an OS error
    (reads still work)."""
    shutil.rmtree(root / "cache-expiry")
    (root / "cache-expiry").write_text("not a directory")


def test_a_failed_cache_write_does_not_fail_the_sign_in(make_rp, tmp_path, provider, caplog):
    root = tmp_path / "store"
    rp = make_rp(store=root.as_uri(), **provider.rp_settings)
    break_cache_writes(root)
    with pytest.raises(StoreError):  # the store really fails these writes
        rp.store.cache_set("ns", "k", 1, 60)
    with caplog.at_level(logging.WARNING, logger="openid_plugins.discoverer"):
        for _ in range(2):  # nothing cached: both discover afresh
            auth = rp.begin(provider.identity_url("alice"), RETURN_TO, session={})
            assert auth.endpoint.server_url == provider.endpoint
    assert "could not cache the discovery" in caplog.text
