"""SREG requests and responses, checked against python3-openid's OP-side SREG code.

The helpers at the top build requests the way the relying party does (core fields, then
every plugin's ``openid_extension_request_args`` through a real plugin manager) and answer
them with python3-openid's real OP (``openid.server``), so what we send is what a deployed OP
parses and what we read is what it signs. test_ax, test_pape and test_extension_mapping use
them too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import pytest
from openid.extensions import sreg as op_sreg
from openid.server.server import CheckIDRequest, OpenIDResponse, Server
from openid.store.memstore import MemoryStore

from openid_plugins.errors import ConfigurationError
from openid_plugins.extensions import sreg
from openid_plugins.extensions.base import ExtensionArgs, ExtensionRequest, ExtensionResponse
from openid_plugins.extensions.sreg import SReg
from openid_plugins.manager import make_plugin_manager
from openid_plugins.protocol.endpoint import OPENID_1_1_TYPE, OPENID_2_0_TYPE, Endpoint
from openid_plugins.protocol.message import OPENID2_NS, Message

OP_URL = "https://op.example/server"
USER = "https://alice.example/"
RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"
V2 = Endpoint(OP_URL, USER, None, (OPENID_2_0_TYPE,))
V1 = Endpoint(OP_URL, USER, None, (OPENID_1_1_TYPE,))


def build_request(extensions: Iterable[object], endpoint: Endpoint = V2, plugins=()) -> Message:
    """A checkid_setup message with the contributions of every installed plugin."""
    pm = make_plugin_manager(plugins)
    if endpoint.is_openid2:
        fields = {"ns": OPENID2_NS, "claimed_id": USER, "realm": REALM}
    else:
        fields = {"trust_root": REALM}
    fields.update(mode="checkid_setup", identity=USER, return_to=RETURN_TO)
    message = Message(fields)
    request = ExtensionRequest(extensions=tuple(extensions), endpoint=endpoint)
    for contribution in pm.hook.openid_extension_request_args(request=request):
        items = [contribution] if isinstance(contribution, ExtensionArgs) else contribution
        for args in items:
            message.add_extension(args.namespace, args.args, args.alias)
    return message


def op_answer(
    message: Message, extend: Callable[[CheckIDRequest, OpenIDResponse], None]
) -> Message:
    """python3-openid's OP decodes ``message``, approves it, lets ``extend`` add extension
    responses, and signs; the result is the assertion as it arrives at the return_to URL."""
    server = Server(MemoryStore(), OP_URL)
    checkid = server.decodeRequest(message.to_post_args())
    claimed = USER if message.is_openid2 else None
    answer = checkid.answer(True, identity=USER, claimed_id=claimed)
    extend(checkid, answer)
    return Message.from_url(server.encodeResponse(answer).headers["location"])


def extension_response(
    message: Message,
    *,
    signed: Iterable[str] | None = None,
    extensions: Iterable[object] = (),
    endpoint: Endpoint = V2,
    clock=None,
) -> ExtensionResponse:
    """What the RP hands the response hooks: the signed field set is the message's own
    ``openid.signed`` unless given, and ``requested`` is what begin() stored."""
    signed_set = frozenset(message["signed"].split(",") if signed is None else signed)
    requested = tuple(json.loads(json.dumps([ext.to_session() for ext in extensions])))
    return ExtensionResponse(message, signed_set, endpoint, requested, clock)


def parse(response: ExtensionResponse, plugins=()) -> dict:
    """Every response hook's output merged, like ``result.extensions``."""
    merged: dict = {}
    for part in make_plugin_manager(plugins).hook.openid_extension_response(response=response):
        merged.update(part or {})
    return merged


# -- the request object ---------------------------------------------------------------------


def test_required_wins_over_optional_and_duplicates_collapse():
    wish = SReg(required=["email", "email"], optional=["nickname", "email", "fullname"])
    assert wish.required == ("email",)
    assert wish.optional == ("nickname", "fullname")


def test_comma_separated_string_is_the_wire_form():
    assert SReg(required="email, nickname").required == ("email", "nickname")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"required": ["e-mail"]},
        {"optional": ["openid"]},
        {"required": [3]},
        {},
        {"required": [], "optional": []},
        {"required": ["email"], "policy_url": "/privacy"},
        {"required": ["email"], "policy_url": "ftp://rp.example/privacy"},
    ],
)
def test_invalid_requests_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        SReg(**kwargs)


def test_session_record_is_json_and_round_trips():
    wish = SReg(required=["email"], optional=["dob"], policy_url="https://rp.example/privacy")
    stored = json.loads(json.dumps(wish.to_session()))
    assert stored["extension"] == "sreg"
    assert SReg.from_session(stored) == wish


def test_merging_two_requests():
    merged = SReg(optional=["email", "nickname"]).merge(
        SReg(required=["email"], policy_url="https://rp.example/p")
    )
    assert merged == SReg(required=["email"], optional=["nickname"], policy_url=merged.policy_url)
    assert merged.policy_url == "https://rp.example/p"
    with pytest.raises(ConfigurationError, match="policy URL"):
        SReg(required=["email"], policy_url="https://a.example/").merge(
            SReg(required=["email"], policy_url="https://b.example/")
        )


# -- outgoing requests ----------------------------------------------------------------------


def test_openid2_request_declares_sreg_1_1():
    message = build_request(
        [SReg(required=["email"], optional=["nickname"], policy_url="https://rp.example/p")]
    )
    assert message["ns.sreg"] == sreg.SREG_1_1_NS
    assert message["sreg.required"] == "email"
    assert message["sreg.optional"] == "nickname"
    assert message["sreg.policy_url"] == "https://rp.example/p"


def test_openid1_request_uses_the_bare_sreg_prefix():
    message = build_request([SReg(required=["email"])], endpoint=V1)
    assert "ns" not in message and "ns.sreg" not in message
    assert message["sreg.required"] == "email"


def test_no_sreg_object_no_arguments():
    message = build_request([object()])
    assert not any(key.startswith(("sreg.", "ns.")) for key in message.fields)


def test_several_sreg_objects_are_sent_once():
    message = build_request([SReg(optional=["email"]), SReg(required=["email", "fullname"])])
    assert message["sreg.required"] == "email,fullname"
    assert "sreg.optional" not in message


@pytest.mark.parametrize("endpoint", [V2, V1], ids=["openid2", "openid1"])
def test_python3_openid_op_understands_the_request(endpoint):
    message = build_request(
        [SReg(required=["email"], optional=["nickname", "dob"], policy_url=REALM + "p")],
        endpoint=endpoint,
    )
    seen = {}

    def extend(checkid, answer):
        parsed = op_sreg.SRegRequest.fromOpenIDRequest(checkid)
        seen.update(required=parsed.required, optional=parsed.optional, url=parsed.policy_url)

    op_answer(message, extend)
    assert seen == {"required": ["email"], "optional": ["nickname", "dob"], "url": REALM + "p"}


# -- responses ------------------------------------------------------------------------------


def _sreg_answer(data: dict, endpoint: Endpoint = V2, wish: SReg | None = None) -> Message:
    wish = wish or SReg(optional=list(data))

    def extend(checkid, answer):
        parsed = op_sreg.SRegRequest.fromOpenIDRequest(checkid)
        answer.addExtension(op_sreg.SRegResponse.extractResponse(parsed, data))

    return op_answer(build_request([wish], endpoint=endpoint), extend)


@pytest.mark.parametrize("endpoint", [V2, V1], ids=["openid2", "openid1"])
def test_signed_values_from_a_real_op(endpoint):
    data = {"email": "alice@example.com", "nickname": "alice", "dob": "1980-00-00"}
    message = _sreg_answer(data, endpoint)
    assert parse(extension_response(message, endpoint=endpoint)) == {"sreg": data}


def test_unsigned_values_are_never_reported():
    message = _sreg_answer({"email": "alice@example.com", "nickname": "alice"})
    signed = set(message["signed"].split(",")) - {"sreg.email"}
    message.fields["sreg.fullname"] = "Injected Name"
    assert sreg.parse_response(extension_response(message, signed=signed)) == {"nickname": "alice"}


def test_unsigned_namespace_declaration_voids_the_alias():
    message = _sreg_answer({"email": "alice@example.com"})
    signed = set(message["signed"].split(",")) - {"ns.sreg"}
    assert sreg.parse_response(extension_response(message, signed=signed)) is None


def test_alias_re_pointed_at_sreg_is_not_read_when_declaration_unsigned():
    # An attacker declares a signed extension's alias as SREG: the declaration is unsigned.
    message = Message(
        {
            "ns": OPENID2_NS,
            "mode": "id_res",
            "ns.other": sreg.SREG_1_1_NS,
            "other.email": "mallory@example.com",
        }
    )
    response = extension_response(message, signed={"other.email", "mode", "ns"})
    assert sreg.parse_response(response) is None


def test_sreg_1_0_namespace_is_accepted():
    message = Message(
        {
            "ns": OPENID2_NS,
            "mode": "id_res",
            "ns.x": sreg.SREG_1_0_NS,
            "x.email": "alice@example.com",
        }
    )
    response = extension_response(message, signed={"ns.x", "x.email"})
    assert sreg.parse_response(response) == {"email": "alice@example.com"}


def test_openid1_sreg_without_namespace():
    message = Message({"mode": "id_res", "sreg.email": "alice@example.com", "sreg.gender": "F"})
    response = extension_response(message, signed={"mode", "sreg.email"}, endpoint=V1)
    assert sreg.parse_response(response) == {"email": "alice@example.com"}


def test_openid2_bare_sreg_prefix_without_declaration_is_ignored():
    message = Message({"ns": OPENID2_NS, "mode": "id_res", "sreg.email": "a@example.com"})
    assert sreg.parse_response(extension_response(message, signed={"sreg.email"})) is None


def test_fields_sreg_does_not_define_are_dropped():
    message = Message(
        {
            "ns": OPENID2_NS,
            "ns.sreg": sreg.SREG_1_1_NS,
            "sreg.email": "alice@example.com",
            "sreg.shoe_size": "38",
        }
    )
    response = extension_response(message, signed={"ns.sreg", "sreg.email", "sreg.shoe_size"})
    assert sreg.parse_response(response) == {"email": "alice@example.com"}


def test_unrequested_known_fields_are_reported():
    # SREG 1.0 section 4: what to do with extra fields is up to the consumer; they are signed.
    message = _sreg_answer({"email": "a@example.com"}, wish=SReg(optional=["email"]))
    message.fields["sreg.nickname"] = "alice"
    signed = {*message["signed"].split(","), "sreg.nickname"}
    assert sreg.parse_response(extension_response(message, signed=signed)) == {
        "email": "a@example.com",
        "nickname": "alice",
    }


def test_requested_but_absent_gives_an_empty_dict_and_unasked_absent_gives_nothing():
    message = op_answer(build_request([SReg(required=["email"])]), lambda checkid, answer: None)
    asked = extension_response(message, extensions=[SReg(required=["email"])])
    assert parse(asked) == {"sreg": {}}
    assert parse(extension_response(message)) == {}
