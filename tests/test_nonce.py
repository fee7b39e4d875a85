"""Response nonces (OpenID 2.0 section 10.1) and the RP's own OpenID 1.x nonce."""

from __future__ import annotations

import calendar
from urllib.parse import parse_qsl, urlsplit

import pytest
from openid.store import nonce as python3_openid_nonce

from openid_plugins.errors import AuthenticationError, IncompleteAnswerError, ProtocolError
from openid_plugins.protocol.nonce import (
    MAX_NONCE_LENGTH,
    RP_NONCE_ARG,
    add_rp_nonce,
    make_nonce,
    parse_nonce,
    split_rp_nonce,
)

SPEC_EXAMPLE = "2005-05-15T17:11:51ZUNIQUE"
SPEC_TIME = calendar.timegm((2005, 5, 15, 17, 11, 51, 0, 0, 0))


def test_spec_example() -> None:
    assert parse_nonce(SPEC_EXAMPLE) == (SPEC_TIME, "UNIQUE")


def test_make_then_parse_round_trip() -> None:
    nonce = make_nonce(SPEC_TIME + 0.75)
    timestamp, salt = parse_nonce(nonce)
    assert nonce.startswith("2005-05-15T17:11:51Z")
    assert timestamp == SPEC_TIME
    assert len(salt) == 8 and all(0x21 <= ord(c) <= 0x7E for c in salt)


def test_salts_differ() -> None:
    assert len({make_nonce(SPEC_TIME) for _ in range(50)}) == 50


def test_given_salt_and_empty_salt() -> None:
    assert make_nonce(SPEC_TIME, salt="!~{}") == "2005-05-15T17:11:51Z!~{}"
    assert parse_nonce("2005-05-15T17:11:51Z") == (SPEC_TIME, "")


@pytest.mark.parametrize("salt", ["has space", "tab\t", "é", "x" * 236])
def test_make_refuses_bad_salt(salt: str) -> None:
    with pytest.raises(ProtocolError):
        make_nonce(SPEC_TIME, salt=salt)


def test_longest_salt_fits() -> None:
    nonce = make_nonce(SPEC_TIME, salt="x" * 235)
    assert len(nonce) == MAX_NONCE_LENGTH
    assert parse_nonce(nonce)[1] == "x" * 235


def test_any_printable_salt_is_accepted() -> None:
    printable = "".join(chr(c) for c in range(0x21, 0x7F))
    assert parse_nonce("2005-05-15T17:11:51Z" + printable) == (SPEC_TIME, printable)


@pytest.mark.parametrize(
    "nonce",
    [
        "",
        "UNIQUE",
        "2005-05-15T17:11:51",  # no Z
        "2005-05-15T17:11:51+00:00UNIQUE",  # UTC must be written "Z"
        "2005-05-15T17:11:51.5ZUNIQUE",  # no fractional seconds
        "2005-05-15 17:11:51ZUNIQUE",
        "2005-5-15T17:11:51ZUNIQUE",
        "2005-13-15T17:11:51ZUNIQUE",
        "2005-02-29T17:11:51ZUNIQUE",  # not a leap year
        "2005-05-32T17:11:51ZUNIQUE",
        "2005-05-15T24:00:00ZUNIQUE",
        "2005-05-15T17:60:00ZUNIQUE",
        "2005-05-15T17:11:61ZUNIQUE",
        "2005-05-15T17:11:51ZUNI QUE",
        "2005-05-15T17:11:51ZUNIQUE\n",
        "2005-05-15T17:11:51Zé",
        "\u0662005-05-15T17:11:51ZUNIQUE",  # a non-ASCII digit
        "2005-05-15T17:11:51Z" + "x" * 236,
        None,
    ],
)
def test_parse_refuses(nonce) -> None:
    with pytest.raises(IncompleteAnswerError) as info:
        parse_nonce(nonce)
    assert isinstance(info.value, AuthenticationError)


def test_leap_day_and_leap_second() -> None:
    assert parse_nonce("2004-02-29T00:00:00Zx")[0] == calendar.timegm((2004, 2, 29, 0, 0, 0))
    # 23:59:60 is the leap second (RFC 3339 5.6); POSIX time counts it as the next second
    assert parse_nonce("2016-12-31T23:59:60Z")[0] == calendar.timegm((2017, 1, 1, 0, 0, 0))


def test_agrees_with_python3_openid() -> None:
    """Nonces we make are ones python3-openid (a real OP library) parses identically."""
    for now in (0, SPEC_TIME, 2**31 + 12345):
        nonce = make_nonce(now)
        assert python3_openid_nonce.split(nonce) == parse_nonce(nonce)
    theirs = python3_openid_nonce.mkNonce(SPEC_TIME)
    assert parse_nonce(theirs) == python3_openid_nonce.split(theirs)


def test_rp_nonce_in_return_to() -> None:
    return_to = add_rp_nonce("https://rp.example/finish?next=%2Fhome#top", SPEC_TIME)
    parts = urlsplit(return_to)
    assert parts.fragment == "top"
    args = parse_qsl(parts.query)
    assert args[0] == ("next", "/home")
    assert args[1][0] == RP_NONCE_ARG
    timestamp, salt = split_rp_nonce(return_to)
    assert timestamp == SPEC_TIME and args[1][1].endswith(salt)
    bare = add_rp_nonce("https://rp.example/finish", SPEC_TIME)
    assert bare.startswith(f"https://rp.example/finish?{RP_NONCE_ARG}=2005-05-15T17%3A11%3A51Z")


@pytest.mark.parametrize(
    "return_to",
    [
        "https://rp.example/finish",
        f"https://rp.example/finish?{RP_NONCE_ARG}=2005-05-15T17:11:51Za"
        f"&{RP_NONCE_ARG}=2005-05-15T17:11:51Zb",
        f"https://rp.example/finish?{RP_NONCE_ARG}=garbage",
    ],
)
def test_split_rp_nonce_refuses(return_to: str) -> None:
    with pytest.raises(IncompleteAnswerError):
        split_rp_nonce(return_to)
