"""URI normalization (RFC 3986 section 6) and identifier normalization (OpenID 2.0 7.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openid_plugins.errors import IncorrectURIError, OpenIDError, XRIError
from openid_plugins.protocol.urinorm import (
    is_xri,
    normalize_identifier,
    normalize_uri,
    normalize_xri,
    remove_dot_segments,
    split_uri,
)

DATA = Path(__file__).parent / "data"


def load_urinorm(relative: str) -> list[tuple[str, str, str]]:
    """MANIFEST.md: cases separated by a blank line, 3 lines each (name, input, expected
    or ``fail``); each line stripped (the last input ends with a \\x08 strip() keeps)."""
    text = (DATA / relative).read_text(encoding="utf-8")
    cases = []
    for chunk in text.strip().split("\n\n"):
        name, uri, expected = (line.strip() for line in chunk.split("\n"))
        cases.append((name, uri, expected))
    return cases


def urinorm_vectors() -> list:
    params = []
    for origin, relative, count in (
        ("python3", "python3-openid/urinorm.txt", 22),
        ("ruby", "ruby-openid/urinorm.txt", 20),
    ):
        cases = load_urinorm(relative)
        assert len(cases) == count, f"{relative}: {len(cases)} cases, MANIFEST.md says {count}"
        params += [pytest.param(uri, exp, id=f"{origin}:{name}") for name, uri, exp in cases]
    return params


@pytest.mark.parametrize(("uri", "expected"), urinorm_vectors())
def test_urinorm_vectors(uri: str, expected: str) -> None:
    if expected == "fail":
        with pytest.raises(IncorrectURIError):
            normalize_uri(uri)
    else:
        assert normalize_uri(uri) == expected
        assert normalize_uri(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://[::1]:80/", "http://[::1]/"),
        ("https://[2001:DB8::1]:8443", "https://[2001:db8::1]:8443/"),
        ("https://example.com:0443/x", "https://example.com/x"),
        ("http://bücher.DE/", "http://xn--bcher-kva.de/"),
        ("http://%CF%80.example.com/", "http://xn--1xa.example.com/"),
        ("http://example.com/π", "http://example.com/%CF%80"),
        ("http://user:p%61ss@Example.com/", "http://user:pass@example.com/"),
        ("http://example.com/%7euser/%2f", "http://example.com/~user/%2F"),
        # the query and fragment are kept verbatim: OPs echo claimed identifiers back
        ("http://example.com?q=%7e&x=%zz#Frag", "http://example.com/?q=%7e&x=%zz#Frag"),
        ("http://example.com./", "http://example.com./"),
    ],
)
def test_normalize_uri_more(uri: str, expected: str) -> None:
    assert normalize_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "http://",
        "http:///path",
        "//example.com/",
        "example.com",
        "javascript:alert(1)",
        "http://example.com:99999/",
        "http://example.com:8o/",
        "http://example.com/100%",
        "http://example.com/%g1",
        "http://exa mple.com/",
        "http://example.com/a b",
        'http://example.com/"',
        "http://example.com/\x7f",
        "http://example.com/\n",
        "http://[::1/",
        "http://[::1]x/",
        "http://%ff.example.com/",
        "http://ex%25ample.com/",
    ],
)
def test_normalize_uri_rejects(uri: str) -> None:
    with pytest.raises(IncorrectURIError) as info:
        normalize_uri(uri)
    assert repr(uri) in str(info.value)


def test_split_uri_components() -> None:
    parts = split_uri("HTTPS://u@Host.example:8443/a/../b?x=1#f")
    assert parts.scheme == "https"
    assert parts.userinfo == "u"
    assert parts.host == "host.example"
    assert parts.port == 8443
    assert parts.effective_port == 8443
    assert (parts.path, parts.query, parts.fragment) == ("/b", "x=1", "f")
    assert str(parts) == "https://u@host.example:8443/b?x=1#f"
    default = split_uri("http://example.com")
    assert (default.port, default.effective_port, default.query) == (None, 80, None)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # RFC 3986 section 5.2.4 examples
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("../x", "x"),
        ("./x", "x"),
        (".", ""),
        ("..", ""),
        ("/a/b/..", "/a/"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


# OpenID 2.0 Appendix A.1, plus section 7.2 step 3 (fragment) and input whitespace.
@pytest.mark.parametrize(
    ("user_input", "expected"),
    [
        ("example.com", "http://example.com/"),
        ("http://example.com", "http://example.com/"),
        ("https://example.com/", "https://example.com/"),
        ("http://example.com/user", "http://example.com/user"),
        ("http://example.com/user/", "http://example.com/user/"),
        ("http://example.com/", "http://example.com/"),
        ("  Example.COM/~alice  \n", "http://example.com/~alice"),
        ("example.com:8080/path", "http://example.com:8080/path"),
        ("HTTPS://example.com/x#section", "https://example.com/x"),
        ("http://example.com/#", "http://example.com/"),
        ("http://example.com/?openid=1#frag", "http://example.com/?openid=1"),
    ],
)
def test_normalize_identifier(user_input: str, expected: str) -> None:
    assert normalize_identifier(user_input) == expected


@pytest.mark.parametrize(
    "user_input", ["=example", "xri://=example", "XRI://@example", "+tag", "$dns", "!1234", "(x)"]
)
def test_xri_is_recognized_and_refused_as_url(user_input: str) -> None:
    assert is_xri(user_input)
    with pytest.raises(XRIError):
        normalize_identifier(user_input)


def test_normalize_xri_strips_prefix() -> None:
    assert normalize_xri(" xri://=example ") == "=example"
    assert normalize_xri("@example") == "@example"
    with pytest.raises(IncorrectURIError):
        normalize_xri("example.com")


@pytest.mark.parametrize("user_input", ["example.com", "http://=example.com/", "xri://", ""])
def test_not_xri(user_input: str) -> None:
    assert not is_xri(user_input)


@pytest.mark.parametrize(
    "user_input",
    [
        "",
        "   ",
        "ftp://example.com/",
        "mailto://x@example.com",
        "http://",
        "a b",
        "alice@example.com",
        "https://bank.example@evil.example/",
        "https://user:pass@example.com/",
    ],
)
def test_normalize_identifier_rejects(user_input: str) -> None:
    with pytest.raises(IncorrectURIError) as info:
        normalize_identifier(user_input)
    assert isinstance(info.value, OpenIDError)
    assert not isinstance(info.value, XRIError)
