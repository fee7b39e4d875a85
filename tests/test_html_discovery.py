"""HTML-based discovery (OpenID 2.0 7.3.3): link extraction against the JanRain linkparse
vectors of three libraries and the openid4java identity pages."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from openid_plugins.protocol.html import (
    decode_html,
    decode_link_value,
    find_openid_links,
    find_xrds_location,
    links_with_rel,
    parse_links,
    parse_tag_attributes,
    read_start_tag,
)

DATA = Path(__file__).parent / "data"


# -- linkparse.txt vectors ----------------------------------------------------------------


def _parse_link_line(line: str) -> tuple[bool, dict[str, tuple[bool, str]]]:
    parts = line.split()
    if parts[0] not in ("Link:", "Link*:"):
        raise ValueError(f"bad link line {line!r}")
    attributes = {}
    for pair in parts[1:]:
        name, value = pair.split("=", 1)
        optional = name.endswith("*")
        attributes[name.rstrip("*")] = (optional, value)
    return parts[0] == "Link*:", attributes


def _linkparse_cases(relative: str):
    text = (DATA / relative).read_text(encoding="utf-8")
    chunks = text.split("\n\n\n")
    header = chunks.pop(0)
    declared = int(header.split("\n", 1)[0].split(": ")[1])
    cases = []
    for chunk in chunks[:-1]:  # the file ends with "\n\n\n": the last chunk is empty
        head, markup = chunk.split("\n\n", 1)
        lines = head.split("\n")
        name = lines.pop(0)
        assert name.startswith("Name: ")
        cases.append(
            pytest.param(markup, [_parse_link_line(x) for x in lines], id=f"{relative}:{name[6:]}")
        )
    assert len(cases) == declared, f"{relative} declares {declared} cases"
    return cases


def _matches(actual: list[dict[str, str]], expected) -> None:
    """The MANIFEST's matching algorithm: optional links and attributes may be absent,
    nothing may be produced that the case does not list."""
    i = 0
    for optional, expected_link in expected:
        if optional and i >= len(actual):
            continue
        assert i < len(actual), f"missing link #{i} {expected_link}; got {actual}"
        skipped = False
        for name, (optional_attribute, value) in expected_link.items():
            got = actual[i].get(name)
            if optional_attribute and got is None:
                continue
            if optional and got != value:
                skipped = True
                break
            assert got == value, f"{name}: got {got!r}, expected {value!r} in {actual}"
        if not skipped:
            i += 1
    assert i == len(actual), f"extra links: got {actual}, matched {i}"


LINKPARSE = (
    _linkparse_cases("python3-openid/linkparse.txt")
    + _linkparse_cases("ruby-openid/linkparse.txt")
    + _linkparse_cases("php-openid/OpenID/linkparse.txt")
)


@pytest.mark.parametrize(("markup", "expected"), LINKPARSE)
def test_linkparse_vectors(markup, expected):
    _matches(parse_links(markup), expected)


def test_linkparse_vector_counts():
    assert len(LINKPARSE) == 72 + 72 + 73


# -- openid4java identity pages -----------------------------------------------------------

O4J = json.loads((DATA / "derived/openid4java.expectations.json").read_text())


@pytest.mark.parametrize(
    "case", [c for c in O4J["html_parser_cases"] if "openid1_server" in c], ids=lambda c: c["file"]
)
def test_openid4java_identity_pages(case):
    found = find_openid_links(decode_html((DATA / case["file"]).read_bytes()))
    assert found.server == case["openid1_server"]
    assert found.delegate == case["openid1_delegate"]
    assert (found.provider, found.local_id) == (None, None)


def test_external_entity_dtd_in_a_page_is_inert():
    """identityPageWithExternalEntityReference.html declares an external entity; the parser
    treats the DTD as text and fetches nothing (there is no network code in it)."""
    page = DATA / "openid4java/discovery/html/identityPageWithExternalEntityReference.html"
    text = decode_html(page.read_bytes())
    assert "<!ENTITY" in text
    found = find_openid_links(text)
    assert found.server == "http://www.example.com:8080/openidserver/openid.server"


def test_issue83_meta_location():
    case = next(c for c in O4J["html_parser_cases"] if "x_xrds_location" in c)
    text = decode_html((DATA / case["file"]).read_bytes())
    assert find_xrds_location(text) == case["x_xrds_location"]


# -- OpenID link rules --------------------------------------------------------------------


def test_openid2_and_openid1_links():
    page = """<html><head>
      <link rel="openid2.provider" href="https://op.example/2">
      <link rel="openid2.local_id" href="https://op.example/u/alice">
      <link rel="openid.server" href="https://op.example/1">
      <link rel="openid.delegate" href="https://op.example/d/alice">
    </head><body><link rel="openid2.provider" href="https://evil.example/"></body></html>"""
    found = find_openid_links(page)
    assert found.provider == "https://op.example/2"
    assert found.local_id == "https://op.example/u/alice"
    assert found.server == "https://op.example/1"
    assert found.delegate == "https://op.example/d/alice"


def test_rel_is_a_case_insensitive_whitespace_separated_list():
    page = '<html><head><link REL="stylesheet  OpenID2.Provider\topenid.server" href="x:/op">'
    found = find_openid_links(page)
    assert (found.provider, found.server) == ("x:/op", "x:/op")
    links = parse_links(page)
    assert links_with_rel(links, "openid2.provider") == links
    assert links_with_rel(links, "openid2") == []


def test_first_link_with_a_rel_wins_and_empty_hrefs_are_skipped():
    page = (
        '<html><head><link rel="openid2.provider" href="">'
        '<link rel="openid2.provider" href="https://first/">'
        '<link rel="openid2.provider" href="https://second/"></head>'
    )
    assert find_openid_links(page).provider == "https://first/"


def test_only_the_four_entities_of_7_3_3_are_decoded():
    assert decode_link_value("a&amp;b&lt;&gt;&quot;") == 'a&b<>"'
    assert decode_link_value("&amp;lt;") == "&lt;"  # one pass
    assert decode_link_value("&#x26;&hellip;&AMP;") == "&#x26;&hellip;&AMP;"
    page = '<html><head><link rel="openid2.provider" href="https://op/?a=1&amp;b=2">'
    assert find_openid_links(page).provider == "https://op/?a=1&b=2"


def test_links_outside_head_do_not_count():
    assert find_openid_links('<link rel="openid.server" href="https://x/">').server is None
    page = '<html><body><link rel="openid.server" href="https://x/"></body></html>'
    assert find_openid_links(page).server is None
    page = '<html><head><!-- <link rel="openid.server" href="https://x/"> --></head>'
    assert find_openid_links(page).server is None


def test_tag_attribute_reader():
    assert parse_tag_attributes('<link rel="a" HREF=b>') == ({"rel": "a", "href": "b"}, None)
    assert parse_tag_attributes("<link x=y<link z=y />") == ({}, 9)
    assert parse_tag_attributes("<link rel=openid.server/>") == ({"rel": "openid.server"}, None)
    assert parse_tag_attributes("<link x='>' y= z w=>") == ({"x": ">", "y": "z"}, None)
    assert parse_tag_attributes("<link a=1 a=2>") == ({"a": "2"}, None)
    assert parse_tag_attributes("not a tag") == ({}, None)


def test_broken_start_tags_resume_at_the_stray_bracket():
    assert read_start_tag("<link x=y<link z=y />", closed=True) == ("link", {"z": "y"}, True)
    assert read_start_tag("<link x=y<>", closed=False) is None
    assert read_start_tag("<LINK REL=a>", closed=False) == ("link", {"rel": "a"}, False)
    assert read_start_tag("<a " + "<b " * 1000 + "c=d>", closed=False) == ("b", {"c": "d"}, False)


# -- robustness ---------------------------------------------------------------------------


def test_decode_html_charsets():
    assert decode_html("é".encode("latin-1"), "iso-8859-1") == "é"
    assert decode_html(b"\xef\xbb\xbfx") == "x"
    assert decode_html("x".encode("utf-16")) == "x"
    assert decode_html(b"a\xffb") == "a\ufffdb"
    assert decode_html(b"ok", "no-such-charset") == "ok"


#: (page, how many links it has): broken, hostile and huge inputs, including shapes that
#: make html.parser's close() quadratic (CVE-2025-6069); each finishes in milliseconds.
GARBAGE = [
    ("", 0),
    ("<", 0),
    ("<<<<>>>>", 0),
    ("<html><head><link rel=" + "x" * 10000, 0),
    ("<!--" * 2000, 0),
    ("<![CDATA[" * 2000, 0),
    ("<html><head>" + "<link " * 40000, 0),
    ("<html><head>" + "<link " * 40000 + ">", 1),
    ("<html><head>" + "<a b='" * 40000, 0),
    ("<html><head>" + "<!-- >" * 40000, 0),
    ("&" * 10000 + "&#99999999999;&#xffffffff;", 0),
    ("<html><head><link rel='openid.server' href='\x00\ud800'>", 1),
    ("<" + "a" * 50000, 0),
    ("</" * 5000, 0),
    ("<!DOCTYPE x [<!ENTITY a SYSTEM 'file:///etc/passwd'>]><html><head>&a;<link>", 1),
]


@pytest.mark.parametrize(("text", "count"), GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises(text, count):
    assert len(parse_links(text)) == count
    assert find_xrds_location(text) is None
    assert find_openid_links(text).provider is None


def test_random_bytes_never_raise():
    rng = random.Random(20240601)
    alphabet = b"<>/=\"' &#;!-[]abcdehklmnrt\n\x00\xff\xc3"
    for _ in range(300):
        blob = bytes(rng.choice(alphabet) for _ in range(rng.randrange(200)))
        text = decode_html(blob)
        parse_links(text)
        find_xrds_location(text)
