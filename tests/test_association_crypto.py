"""Associations (OpenID 2.0 section 8) and signatures (section 6): integer encoding, DH,
HMAC and signing vectors, request/response handling, and interop with python3-openid's OP.

Cost note: loading a DH key with known numbers makes OpenSSL re-check the group (a
primality test, ~40 ms for the default group), so each vector case loads at most two keys.
"""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import defusedxml.ElementTree as ElementTree
import pytest
from cryptography.utils import CryptographyDeprecationWarning
from openid.association import SessionNegotiator
from openid.message import Message as Python3OpenIDMessage
from openid.server.server import Server
from openid.store.memstore import MemoryStore

from openid_plugins.contracts import Association, SystemClock
from openid_plugins.errors import (
    AssociationError,
    AssociationRefusedError,
    ConfigurationError,
    IncompleteAnswerError,
    ProtocolError,
)
from openid_plugins.protocol.association import (
    DEFAULT_DH_GROUP,
    DEFAULT_DH_MODULUS,
    DH_SHA1,
    DH_SHA256,
    FFDHE2048_GROUP,
    HMAC_SHA1,
    HMAC_SHA256,
    NO_ENCRYPTION,
    AssociationRequest,
    DHGroup,
    DHSession,
    NoEncryptionSession,
    UnsupportedType,
    allowed_types,
    b64_btwoc_decode,
    b64_btwoc_encode,
    btwoc,
    check_signature,
    int_from_btwoc,
    mac,
    negotiate,
    sign,
    signing_input,
    unmask_mac_key,
)
from openid_plugins.protocol.message import OPENID2_NS, Message

with warnings.catch_warnings():
    # cryptography 50 deprecates finite-field DH on attribute access; OpenID needs it.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from cryptography.hazmat.primitives.asymmetric.dh import DHPrivateNumbers, DHPublicNumbers

DATA = Path(__file__).parent / "data"
HTTP_OP = "http://op.example/openid"
HTTPS_OP = "https://op.example/openid"


def lines(relative: str) -> list[list[str]]:
    return [line.split() for line in (DATA / relative).read_text("ascii").splitlines()]


def load_private_key(x: int, y: int, group: DHGroup = DEFAULT_DH_GROUP):
    """A cryptography private key with private value x; y is only stored with it."""
    return DHPrivateNumbers(x, DHPublicNumbers(y, group.parameter_numbers)).private_key()


@pytest.fixture(scope="module")
def generator_key():
    """g itself as a public key: exchange(g) computes g ^ x mod p, the public key of x.
    (``private_key().public_key()`` would only echo the y it was built with.)"""
    return DHPublicNumbers(2, DEFAULT_DH_GROUP.parameter_numbers).public_key()


# -- integers (4.2) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x00\x80"),
        (255, b"\x00\xff"),
        (32768, b"\x00\x80\x00"),
    ],
)
def test_btwoc_spec_examples(number: int, encoded: bytes) -> None:
    assert btwoc(number) == encoded
    assert int_from_btwoc(encoded) == number


def test_btwoc_refuses_negative_and_reads_signed() -> None:
    with pytest.raises(ProtocolError):
        btwoc(-1)
    assert int_from_btwoc(b"\x80") == -128


def test_n2b64_vectors() -> None:
    cases = lines("python3-openid/n2b64")
    assert len(cases) == 650
    wrong = [
        (text, number)
        for text, number in cases
        if b64_btwoc_encode(int(number)) != text or b64_btwoc_decode(text) != int(number)
    ]
    assert wrong == []


@pytest.mark.parametrize("text", ["not base64!", "AQ", "é", "AA==\n"])
def test_b64_btwoc_decode_refuses(text: str) -> None:
    with pytest.raises(ProtocolError):
        b64_btwoc_decode(text)


# -- Diffie-Hellman vectors ----------------------------------------------------------------------


def test_default_group_is_appendix_b_and_python3_openid() -> None:
    from openid.dh import DiffieHellman

    assert DEFAULT_DH_MODULUS == DiffieHellman.DEFAULT_MOD
    assert DEFAULT_DH_GROUP.is_default and not FFDHE2048_GROUP.is_default
    assert DEFAULT_DH_GROUP.parameters() is DEFAULT_DH_GROUP.parameters()  # built once


def test_ffdhe2048_is_rfc7919() -> None:
    """RFC 7919 A.1: p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1."""
    guard = 64
    one = 1 << (1918 + guard)
    e_scaled, term, k = 0, one, 0
    while term:
        e_scaled += term
        k += 1
        term //= k
    p = 2**2048 - 2**1984 + ((e_scaled >> guard) + 560316) * 2**64 - 1
    assert DHGroup(p, 2) == FFDHE2048_GROUP


@pytest.mark.parametrize(("x", "y"), lines("python3-openid/dhpriv"))
def test_dhpriv_public_from_private(x: str, y: str, generator_key) -> None:
    key = load_private_key(int(x), 2)
    assert int.from_bytes(key.exchange(generator_key), "big") == int(y)


def test_dhpriv_count() -> None:
    assert len(lines("python3-openid/dhpriv")) == 29
    assert len(lines("php-openid/OpenID/dhexch")) == 25


@pytest.mark.parametrize(("x1", "x2", "shared"), lines("php-openid/OpenID/dhexch"))
def test_dhexch_shared_secret_both_sides(x1: str, x2: str, shared: str) -> None:
    p = DEFAULT_DH_MODULUS
    # Each key holds its public half (computed here), so public_key() is the real one.
    key1 = load_private_key(int(x1), pow(2, int(x1), p))
    key2 = load_private_key(int(x2), pow(2, int(x2), p))
    assert int.from_bytes(key1.exchange(key2.public_key()), "big") == int(shared)
    assert int.from_bytes(key2.exchange(key1.public_key()), "big") == int(shared)


def openid4java_dh_cases() -> list:
    root = ElementTree.parse(DATA / "openid4java/association/DiffieHellmanSessionTestData.xml")
    cases = [test.attrib for test in root.getroot().iter("test")]
    assert len(cases) == 4
    return [pytest.param(case, id=f"{n}-{case['session_type']}") for n, case in enumerate(cases)]


@pytest.mark.parametrize("case", openid4java_dh_cases())
def test_openid4java_dh_session(case: dict) -> None:
    group = DHGroup(b64_btwoc_decode(case["dh_modulus"]), b64_btwoc_decode(case["dh_gen"]))
    p, g = group.modulus, group.generator
    consumer_x = b64_btwoc_decode(case["dh_consumer_private"])
    consumer_y = b64_btwoc_decode(case["dh_consumer_public"])
    server_x = b64_btwoc_decode(case["dh_server_private"])
    server_y = b64_btwoc_decode(case["dh_server_public"])
    mac_key = base64.b64decode(case["mac_key"])
    enc_mac_key = base64.b64decode(case["enc_mac_key"])
    response = {"dh_server_public": case["dh_server_public"], "enc_mac_key": case["enc_mac_key"]}
    if group.is_default:
        session = DHSession(
            case["session_type"], group, private_key=load_private_key(consumer_x, consumer_y)
        )
        assert session.request_args() == {"dh_consumer_public": case["dh_consumer_public"]}
        assert session.extract_secret(response) == mac_key
        # the OP's side, through the same code: the mask is its own inverse
        server = DHSession(
            case["session_type"], group, private_key=load_private_key(server_x, server_y)
        )
        assert unmask_mac_key(server.exchange(consumer_y), mac_key, case["session_type"]) == (
            enc_mac_key
        )
    else:
        # A random 512-bit group whose p is not a safe prime: cryptography (OpenSSL) refuses
        # it, so the arithmetic is checked here with int pow, in the test only.
        with pytest.raises(ConfigurationError):
            group.parameters()
        assert pow(g, consumer_x, p) == consumer_y and pow(g, server_x, p) == server_y
        shared = pow(server_y, consumer_x, p)
        assert shared == pow(consumer_y, server_x, p)
        assert unmask_mac_key(shared, enc_mac_key, case["session_type"]) == mac_key


def test_non_default_group_is_sent() -> None:
    session = DHSession(DH_SHA1, FFDHE2048_GROUP)
    args = session.request_args()
    assert b64_btwoc_decode(args["dh_modulus"]) == FFDHE2048_GROUP.modulus
    assert b64_btwoc_decode(args["dh_gen"]) == 2
    assert b64_btwoc_decode(args["dh_consumer_public"]) == session.public
    assert 1 < session.public < FFDHE2048_GROUP.modulus - 1


def test_private_key_must_match_group() -> None:
    key = DEFAULT_DH_GROUP.parameters().generate_private_key()
    with pytest.raises(ConfigurationError):
        DHSession(DH_SHA256, FFDHE2048_GROUP, private_key=key)
    with pytest.raises(AssociationError):
        DHSession("DH-MD5")


def dh_response(session: DHSession, mac_key: bytes) -> dict[str, str]:
    """What an OP answers to ``session``, computed with a second session as the OP."""
    server = DHSession(session.session_type, session.group)
    enc = unmask_mac_key(server.exchange(session.public), mac_key, session.session_type)
    return {
        "dh_server_public": b64_btwoc_encode(server.public),
        "enc_mac_key": base64.b64encode(enc).decode(),
    }


@pytest.mark.parametrize(
    ("session_type", "group"),
    [(DH_SHA256, DEFAULT_DH_GROUP), (DH_SHA1, DEFAULT_DH_GROUP), (DH_SHA256, FFDHE2048_GROUP)],
)
def test_dh_round_trip(session_type: str, group: DHGroup) -> None:
    session = DHSession(session_type, group)
    mac_key = bytes(range(hashlib.new(session_type[3:].lower()).digest_size))
    assert session.extract_secret(dh_response(session, mac_key)) == mac_key


@pytest.mark.parametrize(
    "server_public",
    [
        b64_btwoc_encode(0),
        b64_btwoc_encode(1),
        b64_btwoc_encode(DEFAULT_DH_MODULUS - 1),
        b64_btwoc_encode(DEFAULT_DH_MODULUS),
        b64_btwoc_encode(DEFAULT_DH_MODULUS + 5),
        base64.b64encode(b"\x80\x01").decode(),  # negative: top bit set, no 0x00 byte
        "%%%",
    ],
)
def test_dh_refuses_bad_server_public(server_public: str) -> None:
    session = DHSession(DH_SHA1)
    enc = base64.b64encode(bytes(20)).decode()
    with pytest.raises(AssociationError):
        session.extract_secret({"dh_server_public": server_public, "enc_mac_key": enc})


def test_dh_refuses_missing_or_wrong_length_fields() -> None:
    session = DHSession(DH_SHA256, FFDHE2048_GROUP)
    good = dh_response(session, bytes(32))
    for missing in good:
        with pytest.raises(AssociationError):
            session.extract_secret({k: v for k, v in good.items() if k != missing})
    with pytest.raises(AssociationError):
        session.extract_secret({**good, "enc_mac_key": base64.b64encode(bytes(20)).decode()})


# -- HMAC and signatures (section 6) -------------------------------------------------------------


def hmac_cases(relative: str, assoc_type: str) -> list:
    def value(text: str) -> bytes:
        text = text.strip()
        if text.startswith("0x"):
            return bytes.fromhex(text[2:])
        assert text.startswith('"') and text.endswith('"'), text
        return text[1:-1].encode("ascii")

    params = []
    for block in (DATA / relative).read_text("ascii").split("\n\n"):
        fields = dict(
            re.match(r"(\S+)\s*=\s*(.*)", line).groups()
            for line in block.strip().splitlines()
            if line.strip() and not line.startswith("#")
        )
        if not fields:
            continue
        params.append(
            pytest.param(
                assoc_type,
                value(fields["key"]),
                value(fields["data"]),
                value(fields["digest"]),
                id=f"{assoc_type}-{fields['test_case'].strip()}",
            )
        )
    return params


HMAC_CASES = hmac_cases("php-openid/OpenID/hmac-sha1.txt", HMAC_SHA1) + hmac_cases(
    "php-openid/OpenID/hmac-sha256.txt", HMAC_SHA256
)


def test_hmac_case_counts() -> None:
    assert len(HMAC_CASES) == 13  # 7 RFC 2202 + 6 RFC 4231


@pytest.mark.parametrize(("assoc_type", "key", "data", "digest"), HMAC_CASES)
def test_hmac_vectors(assoc_type: str, key: bytes, data: bytes, digest: bytes) -> None:
    assert mac(assoc_type, key, data) == digest


def test_mac_refuses_unknown_type() -> None:
    with pytest.raises(AssociationError):
        mac("HMAC-MD5", b"k", b"d")


def signing_cases() -> list:
    root = ElementTree.parse(DATA / "openid4java/association/AssociationTestData.xml").getroot()
    cases = [(t.attrib, t.find("text").text) for t in root.iter("test")]
    assert len(cases) == 2
    return [pytest.param(attrib, text, id=attrib["assoc_type"]) for attrib, text in cases]


def make_association(assoc_type: str, secret: bytes) -> Association:
    return Association("handle", secret, issued=0.0, lifetime=60.0, assoc_type=assoc_type)


@pytest.mark.parametrize(("attrib", "text"), signing_cases())
def test_openid4java_signing(attrib: dict, text: str) -> None:
    association = make_association(attrib["assoc_type"], base64.b64decode(attrib["mac_key"]))
    fields = {"key1": "value1", "key2": "value2", "mode": "id_res"}
    assert signing_input(fields, ["key1", "key2"]) == text.encode()
    assert sign(association, fields, ["key1", "key2"]) == attrib["sig"]
    assert check_signature(association, fields, "key1,key2", attrib["sig"])
    assert check_signature(association, fields, ["key1", "key2"], attrib["sig"])
    assert not check_signature(association, fields, "key2,key1", attrib["sig"])
    assert not check_signature(
        association, {**fields, "key2": "value3"}, "key1,key2", attrib["sig"]
    )
    assert not check_signature(
        association,
        fields,
        "key1,key2",
        ("B" if attrib["sig"][0] == "A" else "A") + attrib["sig"][1:],
    )
    assert not check_signature(association, fields, "key1,key2", "\u00e9")


def test_check_signature_missing_signed_field() -> None:
    association = make_association(HMAC_SHA1, bytes(20))
    with pytest.raises(IncompleteAnswerError):
        check_signature(association, {"mode": "id_res"}, "mode,identity", "x")


# -- requests ------------------------------------------------------------------------------------


def test_allowed_types() -> None:
    assert allowed_types(HTTP_OP) == [(HMAC_SHA256, DH_SHA256), (HMAC_SHA1, DH_SHA1)]
    assert allowed_types("HTTPS://op.example/")[2:] == [
        (HMAC_SHA256, NO_ENCRYPTION),
        (HMAC_SHA1, NO_ENCRYPTION),
    ]
    assert allowed_types(HTTP_OP, openid2=False) == [(HMAC_SHA1, DH_SHA1)]
    assert allowed_types(HTTPS_OP, openid2=False) == [
        (HMAC_SHA1, DH_SHA1),
        (HMAC_SHA1, NO_ENCRYPTION),
    ]


def test_openid2_dh_request_fields() -> None:
    request = AssociationRequest.create(HTTP_OP)
    fields = request.to_message().fields
    assert fields == {
        "ns": OPENID2_NS,
        "mode": "associate",
        "assoc_type": HMAC_SHA256,
        "session_type": DH_SHA256,
        "dh_consumer_public": b64_btwoc_encode(request.session.public),
    }


def test_openid1_request_fields() -> None:
    dh = AssociationRequest.create(HTTP_OP, HMAC_SHA1, DH_SHA1, openid2=False).to_message()
    assert "ns" not in dh and dh["session_type"] == DH_SHA1 and "dh_consumer_public" in dh
    plain = AssociationRequest.create(HTTPS_OP, HMAC_SHA1, NO_ENCRYPTION, openid2=False)
    assert plain.to_message().fields == {"mode": "associate", "assoc_type": HMAC_SHA1}


def test_no_encryption_request_over_https() -> None:
    request = AssociationRequest.create(HTTPS_OP, HMAC_SHA256, NO_ENCRYPTION)
    assert isinstance(request.session, NoEncryptionSession)
    assert request.to_message()["session_type"] == NO_ENCRYPTION


@pytest.mark.parametrize(
    ("server_url", "assoc_type", "session_type", "openid2"),
    [
        (HTTP_OP, HMAC_SHA256, NO_ENCRYPTION, True),  # 8.4.1: cleartext key needs TLS
        (HTTP_OP, HMAC_SHA1, NO_ENCRYPTION, False),
        (HTTP_OP, HMAC_SHA256, DH_SHA1, True),  # inconsistent hash
        (HTTP_OP, HMAC_SHA1, DH_SHA256, True),
        (HTTPS_OP, HMAC_SHA256, DH_SHA256, False),  # OpenID 1.1 has no SHA-256
        (HTTP_OP, "HMAC-MD5", DH_SHA1, True),
    ],
)
def test_create_refuses(server_url, assoc_type, session_type, openid2) -> None:
    with pytest.raises(AssociationError):
        AssociationRequest.create(server_url, assoc_type, session_type, openid2=openid2)


# -- responses -----------------------------------------------------------------------------------

NOW = 1_700_000_000.0


def good_response(request: AssociationRequest, mac_key: bytes, **extra: str) -> Message:
    fields = {
        "ns": OPENID2_NS,
        "assoc_handle": "{HMAC}{abc}",
        "assoc_type": request.assoc_type,
        "session_type": request.session_type,
        "expires_in": "3600",
    }
    if isinstance(request.session, DHSession):
        fields.update(dh_response(request.session, mac_key))
    else:
        fields["mac_key"] = base64.b64encode(mac_key).decode()
    fields.update(extra)
    return Message({k: v for k, v in fields.items() if v is not None})


@pytest.fixture(scope="module")
def dh_exchange() -> tuple[AssociationRequest, Message]:
    """One DH-SHA256 request and a valid answer to it (in the fast RFC 7919 group)."""
    request = AssociationRequest.create(HTTP_OP, group=FFDHE2048_GROUP)
    return request, good_response(request, b"k" * 32)


def test_parse_response_success(dh_exchange) -> None:
    request, response = dh_exchange
    association = request.parse_response(response, NOW)
    assert association == Association("{HMAC}{abc}", b"k" * 32, NOW, 3600.0, HMAC_SHA256)
    assert request.parse_response(response, NOW + 1).issued == NOW + 1


@pytest.mark.parametrize(
    "extra",
    [
        {"assoc_type": HMAC_SHA1},
        {"assoc_type": None},
        {"session_type": NO_ENCRYPTION},
        {"session_type": None},
        {"assoc_handle": ""},
        {"assoc_handle": "has space"},
        {"assoc_handle": "x" * 256},
        {"assoc_handle": None},
        {"expires_in": "-1"},
        {"expires_in": "0"},
        {"expires_in": "1.5"},
        {"expires_in": "\u0661\u0662"},
        {"expires_in": None},
        {"error": "temporarily unavailable"},
        {"mode": "error"},
    ],
    ids=repr,
)
def test_parse_response_refuses(extra: dict, dh_exchange) -> None:
    request, response = dh_exchange
    fields = {k: v for k, v in {**response.fields, **extra}.items() if v is not None}
    with pytest.raises(AssociationError):
        request.parse_response(Message(fields), NOW)


def test_handle_of_255_printable_characters_is_accepted() -> None:
    request = AssociationRequest.create(HTTPS_OP, HMAC_SHA1, NO_ENCRYPTION)
    handle = "".join(chr(33 + i % 94) for i in range(255))
    association = request.parse_response(
        good_response(request, b"k" * 20, assoc_handle=handle), NOW
    )
    assert association.handle == handle


def test_no_encryption_key_length_must_match() -> None:
    request = AssociationRequest.create(HTTPS_OP, HMAC_SHA256, NO_ENCRYPTION)
    with pytest.raises(AssociationError):
        request.parse_response(good_response(request, b"k" * 20), NOW)


def test_openid1_cleartext_answer_to_dh_request() -> None:
    """OpenID 1.1 4.1.3: an OP may answer a DH-SHA1 request in cleartext; we accept
    that only over https (8.4.1)."""
    for server_url, accepted in ((HTTPS_OP, True), (HTTP_OP, False)):
        request = AssociationRequest.create(server_url, HMAC_SHA1, DH_SHA1, openid2=False)
        response = Message(
            {
                "assoc_type": HMAC_SHA1,
                "assoc_handle": "h",
                "expires_in": "60",
                "mac_key": base64.b64encode(b"s" * 20).decode(),
                "session_type": "",
            }
        )
        if accepted:
            assert request.parse_response(response, NOW).secret == b"s" * 20
        else:
            with pytest.raises(AssociationError):
                request.parse_response(response, NOW)


def test_openid1_dh_answer_without_ns() -> None:
    request = AssociationRequest.create(
        HTTP_OP, HMAC_SHA1, DH_SHA1, openid2=False, group=FFDHE2048_GROUP
    )
    response = good_response(request, b"s" * 20, ns=None)
    assert request.parse_response(response, NOW).assoc_type == HMAC_SHA1


def unsupported(**suggestion: str) -> Message:
    return Message(
        {"ns": OPENID2_NS, "error": "no", "error_code": "unsupported-type", **suggestion}
    )


def test_unsupported_type_retry_choices() -> None:
    request = AssociationRequest.create(HTTP_OP)
    result = request.parse_response(unsupported(assoc_type=HMAC_SHA1, session_type=DH_SHA1), NOW)
    assert result == UnsupportedType("no", HMAC_SHA1, DH_SHA1)
    retry = result.retry(request)
    assert (retry.assoc_type, retry.session_type) == (HMAC_SHA1, DH_SHA1)
    # only an assoc_type: the session type is completed consistently
    retry = request.parse_response(unsupported(assoc_type=HMAC_SHA1), NOW).retry(request)
    assert (retry.assoc_type, retry.session_type) == (HMAC_SHA1, DH_SHA1)
    # refused: cleartext over http, inconsistent, the same pair again, no suggestion
    for suggestion in (
        {"assoc_type": HMAC_SHA256, "session_type": NO_ENCRYPTION},
        {"assoc_type": HMAC_SHA256, "session_type": DH_SHA1},
        {"assoc_type": HMAC_SHA256, "session_type": DH_SHA256},
        {},
    ):
        assert request.parse_response(unsupported(**suggestion), NOW).retry(request) is None
    # over https the cleartext suggestion is fine
    secure = AssociationRequest.create(HTTPS_OP)
    retry = secure.parse_response(
        unsupported(assoc_type=HMAC_SHA256, session_type=NO_ENCRYPTION), NOW
    ).retry(secure)
    assert (retry.assoc_type, retry.session_type) == (HMAC_SHA256, NO_ENCRYPTION)


# -- against python3-openid's OP (in process: its real request handling, no network) -----------


class Python3OpenIDOP:
    """python3-openid's ``openid.server`` answering direct requests, counting them."""

    def __init__(self, server_url: str, allowed: list[tuple[str, str]] | None = None) -> None:
        self.store = MemoryStore()
        self.server = Server(self.store, server_url)
        if allowed is not None:
            self.server.negotiator = SessionNegotiator(allowed)
        self.requests: list[dict[str, str]] = []

    def post(self, message: Message) -> Message:
        query = message.to_post_args()
        self.requests.append(query)
        response = self.server.handleRequest(self.server.decodeRequest(query))
        return Message.from_kv(self.server.encodeResponse(response).body)

    def sign(self, handle: str, fields: dict[str, str]) -> dict[str, str]:
        """Sign like the OP does for an id_res, with its copy of the association."""
        association = self.server.signatory.getAssociation(handle, dumb=False)
        message = Python3OpenIDMessage.fromOpenIDArgs(fields)
        signed = association.signMessage(message)
        return {k[len("openid.") :]: v for k, v in signed.toPostArgs().items()}


@pytest.mark.parametrize(
    ("server_url", "openid2", "group", "expected_type"),
    [
        (HTTP_OP, True, DEFAULT_DH_GROUP, HMAC_SHA256),
        (HTTP_OP, False, DEFAULT_DH_GROUP, HMAC_SHA1),
        (HTTPS_OP, True, FFDHE2048_GROUP, HMAC_SHA256),
    ],
)
def test_negotiate_with_python3_openid(server_url, openid2, group, expected_type) -> None:
    op = Python3OpenIDOP(server_url)
    association = negotiate(server_url, op.post, SystemClock(), openid2=openid2, group=group)
    assert association.assoc_type == expected_type
    assert len(op.requests) == 1
    assert ("openid.ns" in op.requests[0]) is openid2
    assert ("openid.dh_modulus" in op.requests[0]) is (not group.is_default)
    # both sides hold the same secret: the OP's signature verifies, ours equals it
    fields = {
        "mode": "id_res",
        "return_to": "https://rp.example/finish",
        "identity": "https://alice.example/",
        "assoc_handle": association.handle,
    }
    if openid2:
        fields["ns"] = OPENID2_NS
        fields["response_nonce"] = "2005-05-15T17:11:51ZUNIQUE"
    signed = op.sign(association.handle, fields)
    assert check_signature(association, signed, signed["signed"], signed["sig"])
    assert sign(association, signed, signed["signed"].split(",")) == signed["sig"]
    tampered = {**signed, "identity": "https://mallory.example/"}
    assert not check_signature(association, tampered, signed["signed"], signed["sig"])


def test_negotiate_follows_one_suggestion() -> None:
    op = Python3OpenIDOP(HTTP_OP, allowed=[(HMAC_SHA1, DH_SHA1)])
    association = negotiate(HTTP_OP, op.post, SystemClock())
    assert association.assoc_type == HMAC_SHA1
    assert [r["openid.session_type"] for r in op.requests] == [DH_SHA256, DH_SHA1]


def test_negotiate_cleartext_suggestion_only_over_https() -> None:
    allowed = [(HMAC_SHA256, NO_ENCRYPTION)]
    op = Python3OpenIDOP(HTTP_OP, allowed=allowed)
    with pytest.raises(AssociationRefusedError):
        negotiate(HTTP_OP, op.post, SystemClock())
    assert len(op.requests) == 1
    secure = Python3OpenIDOP(HTTPS_OP, allowed=allowed)
    association = negotiate(HTTPS_OP, secure.post, SystemClock())
    assert association.assoc_type == HMAC_SHA256
    assert [r["openid.session_type"] for r in secure.requests] == [DH_SHA256, NO_ENCRYPTION]


def test_negotiate_refused_outright() -> None:
    op = Python3OpenIDOP(HTTPS_OP, allowed=[])
    with pytest.raises(AssociationRefusedError) as info:
        negotiate(HTTPS_OP, op.post, SystemClock())
    assert isinstance(info.value, AssociationError)
    assert len(op.requests) == 1


def test_negotiate_retries_at_most_once() -> None:
    """An OP that refuses its own suggestion is not asked a third time."""
    answers: list[Message] = []

    def post(message: Message) -> Message:
        answers.append(message)
        return unsupported(assoc_type=HMAC_SHA1, session_type=DH_SHA1)

    with pytest.raises(AssociationRefusedError):
        negotiate(HTTP_OP, post, SystemClock())
    assert len(answers) == 2


def test_negotiate_reports_broken_answers() -> None:
    post: Callable[[Message], Message] = lambda message: Message.from_kv(b"garbage\n")  # noqa: E731
    with pytest.raises(AssociationError) as info:
        negotiate(HTTP_OP, post, SystemClock())
    assert not isinstance(info.value, AssociationRefusedError)


def test_op_ignoring_our_dh_modulus_is_detected_and_repeated_in_default_group() -> None:
    """An OP that computes in the default group whatever modulus we send: without the
    check we would store a wrong MAC key; with it we ask again in the default group."""
    op = Python3OpenIDOP(HTTP_OP)

    def post_ignoring_modulus(message: Message) -> Message:
        fields = {k: v for k, v in message.fields.items() if k not in ("dh_modulus", "dh_gen")}
        return op.post(Message(fields))

    association = negotiate(HTTP_OP, post_ignoring_modulus, SystemClock())
    assert len(op.requests) == 2
    fields = {
        "ns": OPENID2_NS,
        "mode": "id_res",
        "return_to": "https://rp.example/finish",
        "identity": "https://alice.example/",
        "response_nonce": "2005-05-15T17:11:51ZUNIQUE",
        "assoc_handle": association.handle,
    }
    signed = op.sign(association.handle, fields)
    assert check_signature(association, signed, signed["signed"], signed["sig"])


def test_preferred_group_is_sent_first() -> None:
    op = Python3OpenIDOP(HTTP_OP)
    negotiate(HTTP_OP, op.post, SystemClock())
    assert b64_btwoc_decode(op.requests[0]["openid.dh_modulus"]) == FFDHE2048_GROUP.modulus
