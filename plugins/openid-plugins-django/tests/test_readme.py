"""The README's views, run from the README's own text (see site_urls.readme_views), through
Django's test client with CSRF checks on, against python3-openid's OP."""

from __future__ import annotations

import socket

from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth.models import User
from openid_plugins_django import auth

from openid_plugins.extensions.ax import AX

START = "/readme/login/"


def submit_login(browser, identifier: str):
    """Fill in and post the README's login form, as a browser does (CSRF token included)."""
    page = browser.site.get(START)
    assert page.status_code == 200
    token = browser.site.cookies["csrftoken"].value
    return browser.site.post(START, {"openid": identifier, "csrfmiddlewaretoken": token})


def test_new_claim_goes_to_registration_with_sreg_and_ax(op, browser):
    back = browser.finish(browser.to_op(submit_login(browser, op.identity())))
    assert (back.status_code, back["Location"]) == (302, "/readme/register/")
    pending = browser.site.get(back["Location"]).json()
    assert pending["claim"] == op.identity()
    assert pending["sreg"] == {"nickname": "alice", "email": "alice@example.com"}
    assert pending["ax"][AX.first] == ["Alice"]
    assert AUTH_SESSION_KEY not in browser.site.session


def test_linked_claim_signs_the_user_in(op, browser):
    user = User.objects.create_user("alice")
    auth.linkOpenID(user, op.identity())
    back = browser.finish(browser.to_op(submit_login(browser, op.identity())))
    assert (back.status_code, back["Location"]) == (302, "/")
    assert browser.site.session[AUTH_SESSION_KEY] == str(user.pk)


def test_no_identifier_and_unknown_claims_are_form_errors_not_500s(browser):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    for identifier, why in [
        ("http://exa mple.com/", "IncorrectURIError"),
        (f"http://127.0.0.1:{port}/alice", "IncorrectClaimError"),
    ]:
        page = submit_login(browser, identifier)
        assert page.status_code == 200, why
        errors = page.context["form"].errors["openid"]
        assert errors and errors[0], why
        assert 'class="errorlist' in page.content.decode(), why


def test_form_posted_answer_with_a_long_sreg_value_is_accepted(op, browser, monkeypatch):
    """An answer longer than a URL may be (5.2.2) comes as the OP's form POST, without the
    site's CSRF token; the return view accepts it because it is CSRF-exempt."""
    nickname = "alice-" + "x" * 2500
    monkeypatch.setitem(op.sreg_data, "nickname", nickname)
    answer = browser.to_op(submit_login(browser, op.identity()))
    assert answer.form is not None and answer.form["openid.sreg.nickname"] == nickname
    assert "csrfmiddlewaretoken" not in answer.form
    back = browser.finish(answer)
    assert (back.status_code, back["Location"]) == (302, "/readme/register/")
    assert browser.site.get(back["Location"]).json()["sreg"]["nickname"] == nickname
