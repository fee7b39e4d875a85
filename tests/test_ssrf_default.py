"""The SSRF guard is on by default: a relying party built with no settings fetches nothing
from loopback, whatever the spelling, and a forged response cannot make it fetch there.
Local development turns it off explicitly, and the relying party logs a warning."""

from __future__ import annotations

import logging
import time

import pytest
import requests

from openid_plugins.contracts import Association
from openid_plugins.errors import AuthenticationError, IncorrectClaimError
from openid_plugins.protocol import nonce
from openid_plugins.protocol.association import HMAC_SHA256
from openid_plugins.protocol.message import OPENID2_NS
from openid_plugins.relying_party import SESSION_KEY, RelyingParty
from openid_plugins.testing.provider import DevelopmentProvider

RETURN_TO = "https://rp.example/finish"
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "2130706433",  # 127.0.0.1 as one decimal number
    "0x7f.1",  # hexadecimal, with the last parts folded
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "127.1",
]


@pytest.fixture
def default_rp(tmp_path):
    """A relying party with the default settings: nothing about the guard is said."""
    with RelyingParty(store="memory://", queue="memory://", data_dir=str(tmp_path)) as rp:
        yield rp


def test_the_guard_is_on_by_default(default_rp):
    assert default_rp.settings.fetch.block_private_addresses is True


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_default_settings_refuse_discovery_of_loopback(default_rp, server, host):
    server.route("/id", 200, {"Content-Type": "text/html"}, b"<html></html>")
    with pytest.raises(IncorrectClaimError, match="refusing to fetch"):
        default_rp.begin(f"http://{host}:{server.port}/id", RETURN_TO, session={})
    assert server.requests == []


def test_a_forged_response_makes_no_request_to_a_refused_address(default_rp, server):
    """A forged assertion (bad signature) naming a claimed_id on loopback: re-discovering
    it (11.2) goes through the guarded fetcher, so the server never hears of it."""
    server.route("/admin/delete-everything", 200, {"Content-Type": "text/html"}, b"done")
    op = "https://op.example/openid"
    now = time.time()
    default_rp.store.store_association(op, Association("h1", b"k" * 32, now, 3600, HMAC_SHA256))
    return_to = nonce.add_rp_nonce(RETURN_TO, now)
    session = {
        SESSION_KEY: {
            "v": 1,
            "endpoint": {
                "server_url": op,
                "claimed_id": "https://user.example/",
                "local_id": "https://user.example/",
                "type_uris": ["http://specs.openid.net/auth/2.0/signon"],
            },
            "claimed_id": "https://user.example/",
            "started": now,
            "return_to": return_to,
        }
    }
    target = server.url("/admin/delete-everything")
    forged = {
        "openid.ns": OPENID2_NS,
        "openid.mode": "id_res",
        "openid.op_endpoint": op,
        "openid.claimed_id": target,
        "openid.identity": target,
        "openid.return_to": return_to,
        "openid.response_nonce": nonce.make_nonce(now),
        "openid.assoc_handle": "h1",
        "openid.signed": "op_endpoint,claimed_id,identity,return_to,response_nonce,assoc_handle",
        "openid.sig": "Zm9yZ2VkIHNpZ25hdHVyZSBvZiAzMiBieXRlcyEhIQ==",
    }
    with pytest.raises(AuthenticationError):
        default_rp.complete(forged, return_to, session=session)
    assert server.requests == []
    assert default_rp.store.nonce_seen(op, *nonce.parse_nonce(forged["openid.response_nonce"])) is (
        False
    )


def test_the_development_op_names_the_settings_that_turn_the_guard_off(tmp_path, caplog):
    with DevelopmentProvider(users=("alice",)) as op:
        with caplog.at_level(logging.WARNING, logger="openid_plugins.relying_party"):
            rp = RelyingParty(
                store="memory://", queue="memory://", data_dir=str(tmp_path), **op.rp_settings
            )
        with rp:
            assert "SSRF guard is off" in caplog.text
            session: dict = {}
            auth = rp.begin(op.identity_url("alice"), RETURN_TO, session=session)
            back = requests.get(auth.redirect_url, allow_redirects=False, timeout=10)
            assert back.status_code in (302, 303)


def test_no_warning_when_the_guard_is_on(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="openid_plugins.relying_party"):
        RelyingParty(store="memory://", queue="memory://", data_dir=str(tmp_path)).close()
    assert "SSRF" not in caplog.text
