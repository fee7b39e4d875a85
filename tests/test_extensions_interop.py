"""Attribute extensions end to end against python3-openid's OP: SREG, AX and PAPE through the
RelyingParty, and a site-defined extension installed as a separate distribution."""

from __future__ import annotations

import importlib
import sys

import pytest
from conftest import REALM, RETURN_TO, query_of
from distributions import install_distribution

from openid_plugins.errors import PolicyError, SignatureError
from openid_plugins.extensions.ax import AX
from openid_plugins.extensions.pape import PAPE
from openid_plugins.extensions.sreg import SReg
from openid_plugins.protocol.nonce import parse_nonce

ECHO_NS = "http://example.com/ext/echo/1.0"

ECHO_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "openid-plugins-echo-extension"
version = "0.0.1"

[project.entry-points.openid_plugins]
echo_extension = "echo_extension"
"""

ECHO_MODULE = '''
"""A site-defined attribute extension: asks for a value, reads it back signed."""
from dataclasses import dataclass

from openid_plugins import hookimpl
from openid_plugins.extensions.base import ExtensionArgs

NAMESPACE = "http://example.com/ext/echo/1.0"


@dataclass(frozen=True)
class Echo:
    value: str

    def to_session(self):
        return {"extension": "echo", "value": self.value}


@hookimpl
def openid_extension_request_args(request):
    wanted = request.requested(Echo)
    if wanted:
        return ExtensionArgs(NAMESPACE, {"value": wanted[0].value}, alias="echo")
    return None


@hookimpl
def openid_extension_response(response):
    args = response.signed_args(NAMESPACE)
    if "echo.value" in args:
        return {"echo": args["echo.value"]}
    return None
'''


def login(rp, browser, op, extensions, *, tamper=None):
    session: dict = {}
    auth = rp.begin(op.identity(), RETURN_TO, REALM, session=session, extensions=extensions)
    back = browser.visit_op(auth)
    query = query_of(back)
    if tamper:
        tamper(query)
    return auth, query, rp.complete(query, back, session=session)


@pytest.mark.parametrize("mode", ["inline", "stateless"])
def test_sreg_ax_pape_round_trip(op, make_rp, browser, mode):
    rp = make_rp(association=mode)
    extensions = [
        SReg(required=["email"], optional=["nickname"]),
        AX(required=[AX.email], optional=[AX.first, AX.last]),
        PAPE(max_auth_age=3600, preferred_policies=[PAPE.PHISHING_RESISTANT]),
    ]
    _, query, result = login(rp, browser, op, extensions)
    assert result.sreg == {"email": "alice@example.com", "nickname": "alice"}
    assert result.ax[AX.email] == ["alice@example.com"]
    assert result.ax[AX.first] == ["Alice"] and result.ax[AX.last] == ["Liddell"]
    assert op.last_pape.max_auth_age == 3600
    assert op.last_pape.preferred_auth_policies == [PAPE.PHISHING_RESISTANT]
    assert result.pape.auth_time is not None
    signed = set(query["openid.signed"].split(","))
    assert {"sreg.email", "sreg.nickname"} <= signed


def test_tampered_extension_value_fails_the_signature(op, make_rp, browser):
    rp = make_rp(association="inline")

    def tamper(query):
        query["openid.sreg.email"] = "mallory@example.com"

    with pytest.raises(SignatureError):
        login(rp, browser, op, [SReg(required=["email"])], tamper=tamper)


def test_pape_max_auth_age_violation_is_refused_and_stores_nothing(op, make_rp, browser):
    rp = make_rp(association="inline")
    op.auth_age = 7200
    session: dict = {}
    auth = rp.begin(
        op.identity(), RETURN_TO, REALM, session=session, extensions=[PAPE(max_auth_age=600)]
    )
    back = browser.visit_op(auth)
    query = query_of(back)
    with pytest.raises(PolicyError):
        rp.complete(query, back, session=session)
    timestamp, salt = parse_nonce(query["openid.response_nonce"])
    assert rp.store.use_nonce(query["openid.op_endpoint"], timestamp, salt)


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory):
    return install_distribution(
        tmp_path_factory.mktemp("echo"), ECHO_PYPROJECT, {"echo_extension.py": ECHO_MODULE}
    )


def test_custom_extension_installed_by_entry_point(op, make_rp, browser, echo_site, monkeypatch):
    monkeypatch.syspath_prepend(str(echo_site))
    importlib.invalidate_caches()
    echo_extension = importlib.import_module("echo_extension")
    op.echo_namespaces.add(ECHO_NS)
    rp = make_rp(association="inline")
    assert rp.pm.get_plugin("echo_extension") is echo_extension
    auth, query, result = login(rp, browser, op, [echo_extension.Echo("hello")])
    assert auth.message.get_args(ECHO_NS) == {"value": "hello"}
    assert result.extensions["echo"] == "hello"
    alias = auth.message.alias_for(ECHO_NS)
    assert f"{alias}.echo.value" in query["openid.signed"].split(",")
    monkeypatch.delitem(sys.modules, "echo_extension")
