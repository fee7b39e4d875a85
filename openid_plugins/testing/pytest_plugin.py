"""The ``openid_provider`` fixture: a fresh development OP on 127.0.0.1 for each test.

Opt in from a site's own test suite::

    # conftest.py
    pytest_plugins = ["openid_plugins.testing.pytest_plugin"]

    # test_login.py: the site's relying party, in its test settings, takes
    # openid_provider.rp_settings (the SSRF guard off: the provider is on 127.0.0.1)
    def test_login(openid_provider, client):
        response = client.post("/login", {"openid": openid_provider.identity_url("alice")})
        ...
        assert openid_provider.counts["checkid_setup"] == 1

Override the ``openid_provider_users`` fixture to name other users. Each test gets its own
provider (and port), so knobs such as ``deny`` never leak from one test to the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .provider import DevelopmentProvider


@pytest.fixture
def openid_provider_users() -> tuple[str, ...]:
    """The users the ``openid_provider`` approves; override it to name your own."""
    return ("alice", "bob")


@pytest.fixture
def openid_provider(openid_provider_users: tuple[str, ...]) -> Iterator[DevelopmentProvider]:
    """A running ``DevelopmentProvider``, stopped after the test."""
    with DevelopmentProvider(users=openid_provider_users) as provider:
        yield provider
