"""Key-Value form (OpenID 2.0 section 4.1.1) against python3-openid's kvform vectors, and
the Message model: HTTP encoding (4.1.2) and extension namespaces (section 12)."""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from openid_plugins.errors import ProtocolError
from openid_plugins.protocol.message import (
    OPENID1_NS,
    OPENID2_NS,
    Message,
    kv_decode,
    kv_encode,
)

KVFORM = json.loads((Path(__file__).parent / "data/derived/kvform.json").read_text("utf-8"))
LOGGER = "openid_plugins.protocol.message"


def kv_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING)


@pytest.mark.parametrize("case", KVFORM["kv_to_dict"], ids=lambda c: repr(c["kv"]))
def test_kv_to_dict(case: dict, caplog: pytest.LogCaptureFixture) -> None:
    """Lenient parsing gives python3-openid's dict and logs one warning per leniency,
    exactly as many as python-openid does."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert kv_decode(case["kv"]) == case["dict"]
        assert kv_decode(case["kv"].encode("utf-8")) == case["dict"]
    assert kv_warnings(caplog) == 2 * case["warnings"]


@pytest.mark.parametrize("case", KVFORM["kv_to_dict"], ids=lambda c: repr(c["kv"]))
def test_kv_to_dict_strict(case: dict) -> None:
    """Strict mode accepts exactly the inputs lenient mode parses without a warning."""
    if case["warnings"]:
        with pytest.raises(ProtocolError):
            kv_decode(case["kv"], strict=True)
    else:
        assert kv_decode(case["kv"], strict=True) == case["dict"]


@pytest.mark.parametrize("case", KVFORM["seq_to_kv"], ids=lambda c: repr(c["kv"]))
def test_seq_to_kv(case: dict) -> None:
    pairs = [tuple(pair) for pair in case["seq"]]
    encoded = kv_encode(pairs)
    assert encoded == case["kv"].encode("utf-8")
    stripped = {key.strip(): value.strip() for key, value in pairs}
    assert kv_decode(encoded) == stripped


@pytest.mark.parametrize("case", KVFORM["seq_to_kv_must_fail"], ids=lambda c: repr(c["seq"]))
def test_seq_to_kv_must_fail(case: dict) -> None:
    with pytest.raises(ProtocolError):
        kv_encode([tuple(pair) for pair in case["seq"]])


def test_kv_counts() -> None:
    assert [len(KVFORM[k]) for k in ("kv_to_dict", "seq_to_kv", "seq_to_kv_must_fail")] == [
        15,
        8,
        6,
    ]


def test_kv_encode_mapping_and_spec_example() -> None:
    # 4.1.3
    assert kv_encode({"mode": "error", "error": "This is an example message"}) == (
        b"mode:error\nerror:This is an example message\n"
    )


def test_kv_decode_refuses_non_utf8() -> None:
    with pytest.raises(ProtocolError):
        kv_decode(b"mode:\xff\n")


def test_kv_decode_duplicate_keys(caplog: pytest.LogCaptureFixture) -> None:
    """4.1: messages MUST NOT repeat a parameter; strict refuses, lenient warns."""
    with pytest.raises(ProtocolError):
        kv_decode("is_valid:false\nis_valid:true\n", strict=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        kv_decode("is_valid:false\nis_valid:true\n")
    assert kv_warnings(caplog) == 1


def test_message_from_kv_round_trip() -> None:
    message = Message({"ns": OPENID2_NS, "mode": "error", "error": "über"})
    assert Message.from_kv(message.to_kv()) == message


# -- HTTP encoding (4.1.2) ---------------------------------------------------------------------


def test_from_query_keeps_only_openid_arguments() -> None:
    message = Message.from_query(
        {
            "openid.mode": "id_res",
            "openid.ns": OPENID2_NS,
            "openid.sreg.email": ["a@example.com"],
            "next": "/home",
            "openidx.mode": "x",
        }
    )
    assert message.fields == {"mode": "id_res", "ns": OPENID2_NS, "sreg.email": "a@example.com"}


@pytest.mark.parametrize("value", [["a", "b"], [], ("a", "b")])
def test_from_query_refuses_repeated_arguments(value) -> None:
    with pytest.raises(ProtocolError):
        Message.from_query({"openid.mode": value})


def test_from_query_bytes_and_bad_values() -> None:
    assert Message.from_query({"openid.mode": [b"id_res"]}).mode == "id_res"
    with pytest.raises(ProtocolError):
        Message.from_query({"openid.mode": b"\xff"})
    with pytest.raises(ProtocolError):
        Message.from_query({"openid.mode": 3})


def test_from_url_refuses_duplicates_and_keeps_blanks() -> None:
    url = "https://rp.example/finish?openid.mode=id_res&openid.x=&other=1"
    assert Message.from_url(url).fields == {"mode": "id_res", "x": ""}
    with pytest.raises(ProtocolError):
        Message.from_url("https://rp.example/?openid.mode=id_res&openid.mode=cancel")


def test_namespace() -> None:
    assert Message({"ns": OPENID2_NS}).is_openid2
    assert Message({}).namespace == OPENID1_NS
    assert Message({"ns": "http://openid.net/signon/1.1"}).namespace == OPENID1_NS
    with pytest.raises(ProtocolError):
        Message({"ns": "http://example.com/other"}).namespace  # noqa: B018


def test_to_url_keeps_existing_query_and_fragment() -> None:
    message = Message({"mode": "checkid_setup", "return_to": "https://rp.example/?a=1&b=2"})
    url = message.to_url("https://op.example/auth?session=abc#frag")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == (
        "https",
        "op.example",
        "/auth",
        "frag",
    )
    assert parse_qsl(parts.query) == [
        ("session", "abc"),
        ("openid.mode", "checkid_setup"),
        ("openid.return_to", "https://rp.example/?a=1&b=2"),
    ]
    assert Message.from_url(url) == message


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.action: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.action = attributes["action"]
        if tag == "input" and attributes.get("type") == "hidden":
            self.inputs[attributes["name"]] = attributes["value"]


def test_to_form_html_escapes_values() -> None:
    hostile = '"><script>alert(1)</script>&amp;'
    message = Message({"mode": "checkid_setup", "return_to": hostile, "sreg.x'": "'"})
    html = message.to_form_html('https://op.example/?a=1&b="2"')
    assert "<script>" not in html
    reader = _FormReader()
    reader.feed(html)
    assert reader.action == 'https://op.example/?a=1&b="2"'
    assert reader.inputs == message.to_post_args()


# -- extension namespaces (section 12) ---------------------------------------------------------


SREG = "http://openid.net/extensions/sreg/1.1"
AX = "http://openid.net/srv/ax/1.0"


@pytest.mark.parametrize("alias", ["mode", "ns", "return_to", "identity", "sig"])
def test_reserved_aliases_are_refused(alias: str) -> None:
    message = Message({"ns": OPENID2_NS, f"ns.{alias}": SREG})
    with pytest.raises(ProtocolError):
        message.extension_aliases()


def test_namespace_declared_twice_is_refused() -> None:
    message = Message({"ns": OPENID2_NS, "ns.a": SREG, "ns.b": SREG})
    with pytest.raises(ProtocolError):
        message.get_args(SREG)


def test_add_extension_avoids_alias_collisions() -> None:
    message = Message({"ns": OPENID2_NS, "mode": "checkid_setup", "ns.sreg": AX, "sreg.x": "1"})
    alias = message.add_extension(SREG, {"required": "email"}, "sreg")
    assert alias not in ("sreg", "mode")
    assert message[f"ns.{alias}"] == SREG
    assert message.get_args(SREG) == {"required": "email"}
    assert message.get_args(AX) == {"x": "1"}
    # a reserved preferred alias is never used
    other = message.add_extension("http://example.com/ext", {"a": "b"}, "mode")
    assert other not in ("mode", alias, "sreg")
    assert message.extension_aliases() == {AX: "sreg", SREG: alias, "http://example.com/ext": other}


def test_add_extension_merges_into_declared_namespace() -> None:
    message = Message({"ns": OPENID2_NS})
    first = message.add_extension(SREG, {"required": "email"}, "sreg")
    second = message.add_extension(SREG, {"optional": "nickname"}, "other")
    assert first == second == "sreg"
    assert message.get_args(SREG) == {"required": "email", "optional": "nickname"}


def test_openid1_implicit_sreg_alias() -> None:
    message = Message({"mode": "id_res", "sreg.email": "a@example.com"})
    assert message.get_args(SREG) == {"email": "a@example.com"}
    assert message.add_extension(SREG, {"nickname": "a"}, "sreg") == "sreg"
    assert "ns.sreg" not in message  # OpenID 1.x messages declare no namespaces
