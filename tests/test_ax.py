"""AX fetch and store: requests python3-openid's OP parses, responses it builds, and the
malformed responses a strict reader must refuse."""

from __future__ import annotations

import json

import pytest
from openid.extensions import ax as op_ax
from test_sreg import V1, build_request, extension_response, op_answer, parse

from openid_plugins.errors import ConfigurationError, IncompleteAnswerError
from openid_plugins.extensions import ax
from openid_plugins.extensions.ax import AX, AXResult, AXStore, AXStoreResponse
from openid_plugins.protocol.message import OPENID2_NS, Message

CUSTOM = "https://schema.rp.example/favourite_movie"
REALM_A = "https://rp.example/update/a"
REALM_B = "https://rp.example/update/b"


def ax_response(args: dict[str, str], *, signed: set[str] | None = None, **kwargs):
    """An assertion carrying ``args`` under the ``ax`` alias, all signed unless told."""
    fields = {"ns": OPENID2_NS, "mode": "id_res", "ns.ax": ax.AX_NS}
    fields.update({f"ax.{key}": value for key, value in args.items()})
    message = Message(fields)
    return extension_response(message, signed=set(fields) if signed is None else signed, **kwargs)


# -- the request objects --------------------------------------------------------------------


def test_constants_are_the_axschema_uris():
    assert AX.email == "http://axschema.org/contact/email"
    assert AX.first == "http://axschema.org/namePerson/first"
    assert AX.last == "http://axschema.org/namePerson/last"
    assert AX.fullname == "http://axschema.org/namePerson"
    assert AX.nickname == "http://axschema.org/namePerson/friendly"
    assert AX.country == "http://axschema.org/contact/country/home"
    assert AX.language == "http://axschema.org/pref/language"
    assert AX.timezone == "http://axschema.org/pref/timezone"
    assert AX.dob == "http://axschema.org/birthDate"
    assert AX.gender == "http://axschema.org/person/gender"
    assert AX.postcode == "http://axschema.org/contact/postalCode/home"


def test_short_names_resolve_and_required_wins():
    wish = AX(required=["email"], optional=[AX.email, "first", CUSTOM], count={"first": 2})
    assert wish.required == (AX.email,)
    assert wish.optional == (AX.first, CUSTOM)
    assert dict(wish.count) == {AX.first: 2}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"required": "email"},
        {"required": ["not a uri"]},
        {"required": ["emial"]},
        {"required": ["email"], "count": {"email": 0}},
        {"required": ["email"], "count": {"email": -2}},
        {"required": ["email"], "count": {"email": True}},
        {"required": ["email"], "count": {"email": "many"}},
        {"required": ["email"], "count": {"first": 2}},
        {"required": ["email"], "update_url": "/update"},
    ],
)
def test_invalid_fetch_requests_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        AX(**kwargs)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"email": []},
        {"email": ["a\nb"]},
        {"email": [1]},
        {"nope": "x"},
        {"email": "a", AX.email: "b"},
    ],
)
def test_invalid_store_requests_are_configuration_errors(values):
    with pytest.raises(ConfigurationError):
        AXStore(values)


def test_session_record_is_json_and_round_trips():
    wish = AX(required=[AX.email], optional=[CUSTOM], count={CUSTOM: "unlimited"}, update_url=None)
    stored = json.loads(json.dumps(wish.to_session()))
    assert stored["extension"] == "ax"
    assert AX.from_session(stored) == wish
    store = AXStore({"email": "a@example.com"})
    assert json.loads(json.dumps(store.to_session())) == {
        "extension": "ax_store",
        "types": [AX.email],
    }


def test_merging_fetch_requests_keeps_the_larger_count():
    merged = AX(optional=[AX.email, CUSTOM], count={CUSTOM: 3}).merge(
        AX(required=[AX.email], optional=[CUSTOM], count={CUSTOM: "unlimited"})
    )
    assert merged.required == (AX.email,)
    assert merged.optional == (CUSTOM,)
    assert dict(merged.count) == {CUSTOM: "unlimited"}
    assert dict(AX(optional=[CUSTOM], count={CUSTOM: 3}).merge(AX(optional=[CUSTOM])).count) == {
        CUSTOM: 3
    }
    with pytest.raises(ConfigurationError, match="update URLs"):
        AX(required=["email"], update_url=REALM_A).merge(AX(required=["email"], update_url=REALM_B))


# -- outgoing requests ----------------------------------------------------------------------


def test_fetch_request_arguments():
    message = build_request(
        [
            AX(
                required=[AX.email],
                optional=[AX.first, CUSTOM],
                count={CUSTOM: 3, AX.first: 1},
                update_url=REALM_A,
            )
        ]
    )
    assert message["ns.ax"] == ax.AX_NS
    assert message.get_args(ax.AX_NS) == {
        "mode": "fetch_request",
        "type.email": AX.email,
        "type.first": AX.first,
        "type.attr0": CUSTOM,
        "count.attr0": "3",
        "required": "email",
        "if_available": "first,attr0",
        "update_url": REALM_A,
    }


def test_generated_aliases_are_valid_and_unique():
    uris = [f"https://schema.example/{n}.attr,x" for n in range(40)] + [AX.email]
    aliases = ax.aliases_for(uris)
    assert len(set(aliases.values())) == len(uris)
    assert aliases[AX.email] == "email"
    for alias in aliases.values():
        assert alias and not set(alias) & set(".,:\n") and len(alias) <= 32


def test_python3_openid_op_understands_the_fetch_request():
    wish = AX(
        required=[AX.email],
        optional=[AX.first, CUSTOM],
        count={CUSTOM: "unlimited", AX.email: 2},
        update_url=REALM_A,
    )
    seen = {}

    def extend(checkid, answer):
        request = op_ax.FetchRequest.fromOpenIDRequest(checkid)
        seen["attrs"] = {a.type_uri: (a.count, a.required) for a in request.iterAttrs()}
        seen["update_url"] = request.update_url

    op_answer(build_request([wish]), extend)
    assert seen == {
        "attrs": {AX.email: (2, True), AX.first: (1, False), CUSTOM: ("unlimited", False)},
        "update_url": REALM_A,
    }


def test_python3_openid_op_understands_the_store_request():
    store = AXStore({AX.email: "alice@example.com", CUSTOM: ["Movie1", "Movie2"]})
    message = build_request([store])
    assert message.get_args(ax.AX_NS)["mode"] == "store_request"
    seen = {}

    def extend(checkid, answer):
        request = op_ax.StoreRequest()
        request.parseExtensionArgs(checkid.message.getArgs(ax.AX_NS))
        seen.update(request.data)

    op_answer(message, extend)
    assert seen == {AX.email: ["alice@example.com"], CUSTOM: ["Movie1", "Movie2"]}


def test_openid1_endpoints_get_no_ax():
    message = build_request([AX(required=[AX.email])], endpoint=V1)
    assert not any(key.startswith("ax.") for key in message.fields)


def test_fetch_and_store_in_one_request_is_refused():
    with pytest.raises(ConfigurationError, match="one AX message"):
        build_request([AX(required=[AX.email]), AXStore({AX.email: "a@example.com"})])


def test_two_store_requests_merge():
    message = build_request([AXStore({"email": "a@example.com"}), AXStore({"first": "Alice"})])
    args = message.get_args(ax.AX_NS)
    assert args["value.email"] == "a@example.com" and args["value.first"] == "Alice"


# -- fetch responses ------------------------------------------------------------------------


def test_values_from_a_real_op_with_zero_one_and_many_values():
    wish = AX(required=[AX.email], optional=[AX.first, CUSTOM], count={CUSTOM: "unlimited"})

    def extend(checkid, answer):
        request = op_ax.FetchRequest.fromOpenIDRequest(checkid)
        response = op_ax.FetchResponse(request=request)
        response.addValue(AX.email, "alice@example.com")
        response.setValues(CUSTOM, ["Movie1", "Movie2", "Movie3"])
        answer.addExtension(response)

    message = op_answer(build_request([wish]), extend)
    result = parse(extension_response(message, extensions=[wish]))["ax"]
    assert result == {
        AX.email: ["alice@example.com"],
        AX.first: [],
        CUSTOM: ["Movie1", "Movie2", "Movie3"],
    }
    assert result["email"] == ["alice@example.com"]
    assert result.first("email") == "alice@example.com"
    assert result.first("first") is None


def test_spec_example_fetch_response():
    # AX 1.0 section 5.2's example, verbatim.
    response = ax_response(
        {
            "mode": "fetch_response",
            "type.fname": "http://example.com/schema/fullname",
            "type.gender": "http://example.com/schema/gender",
            "type.fav_dog": "http://example.com/schema/favourite_dog",
            "type.fav_movie": "http://example.com/schema/favourite_movie",
            "value.fname": "John Smith",
            "count.gender": "0",
            "value.fav_dog": "Spot",
            "count.fav_movie": "2",
            "value.fav_movie.1": "Movie1",
            "value.fav_movie.2": "Movie2",
            "update_url": "http://idconsumer.com/update?transaction_id=a6b5c41",
        }
    )
    result = ax.parse_response(response)
    assert result == {
        "http://example.com/schema/fullname": ["John Smith"],
        "http://example.com/schema/gender": [],
        "http://example.com/schema/favourite_dog": ["Spot"],
        "http://example.com/schema/favourite_movie": ["Movie1", "Movie2"],
    }
    assert result.update_url == "http://idconsumer.com/update?transaction_id=a6b5c41"


@pytest.mark.parametrize(
    "args",
    [
        {"count.e": "two"},
        {"count.e": "-1"},
        {"count.e": "²"},
        {"count.e": "2", "value.e.1": "a"},
        {"count.e": "1", "value.e.1": "a", "value.e.2": "b"},
        {"count.e": "1", "value.e.0": "a"},
        {"count.e": "1", "value.e": "a"},
        {"value.e.1": "a"},
        {"value.other": "a"},
        {"count.other": "0"},
        {"type.a.b": AX.first},
        {"type.a,b": AX.first},
        {"type.again": AX.email},
        {"mode": "fetch_request"},
        {"mode": None},
    ],
)
def test_malformed_fetch_responses_are_incomplete_answers(args):
    fields = {"mode": "fetch_response", "type.e": AX.email, **args}
    with pytest.raises(IncompleteAnswerError, match="AX"):
        ax.parse_response(ax_response({k: v for k, v in fields.items() if v is not None}))


def test_a_huge_count_fails_fast():
    response = ax_response({"mode": "fetch_response", "type.e": AX.email, "count.e": "9" * 30})
    with pytest.raises(IncompleteAnswerError, match="count.e"):
        ax.parse_response(response)


def test_unsigned_values_are_never_reported():
    args = {"mode": "fetch_response", "type.e": AX.email, "value.e": "a@example.com"}
    signed = {"ns", "ns.ax", "ax.mode", "ax.type.e"}
    assert ax.parse_response(ax_response(args, signed=signed)) == {AX.email: []}


def test_an_unsigned_value_among_counted_ones_is_an_incomplete_answer():
    args = {
        "mode": "fetch_response",
        "type.e": AX.email,
        "count.e": "2",
        "value.e.1": "a@example.com",
        "value.e.2": "mallory@example.com",
    }
    signed = {"ns", "ns.ax", "ax.mode", "ax.type.e", "ax.count.e", "ax.value.e.1"}
    with pytest.raises(IncompleteAnswerError):
        ax.parse_response(ax_response(args, signed=signed))


def test_unsigned_namespace_declaration_voids_ax():
    args = {"mode": "fetch_response", "type.e": AX.email, "value.e": "a@example.com"}
    response = ax_response(args, signed={"ns", "ax.mode", "ax.type.e", "ax.value.e"})
    assert ax.parse_response(response) is None


def test_openid1_messages_are_not_read():
    message = Message(
        {"mode": "id_res", "ns.ax": ax.AX_NS, "ax.mode": "fetch_response", "ax.type.e": AX.email}
    )
    response = extension_response(message, signed=set(message.fields), endpoint=V1)
    assert ax.parse_response(response) is None


def test_requested_but_absent_gives_an_empty_result():
    message = Message({"ns": OPENID2_NS, "mode": "id_res"})
    asked = extension_response(message, signed={"ns"}, extensions=[AX(required=[AX.email])])
    assert parse(asked) == {"ax": {}}
    assert isinstance(parse(asked)["ax"], AXResult)
    assert parse(extension_response(message, signed={"ns"})) == {}


def test_result_short_name_access():
    result = AXResult({AX.email: ["a@example.com", "b@example.com"], CUSTOM: []})
    assert result["email"] == result[AX.email]
    assert "email" in result and AX.email in result
    assert "first" not in result and "bogus" not in result
    assert result.get("first") is None and result.get("first", []) == []
    assert result.first("email") == "a@example.com"
    assert result.first(CUSTOM, "none") == "none"
    with pytest.raises(KeyError):
        result["first"]


# -- store responses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("succeeded", "error"), [(True, None), (False, "General storage failure"), (False, None)]
)
def test_store_responses_from_a_real_op(succeeded, error):
    store = AXStore({AX.email: "alice@example.com"})

    def extend(checkid, answer):
        answer.addExtension(op_ax.StoreResponse(succeeded, error))

    message = op_answer(build_request([store]), extend)
    assert parse(extension_response(message, extensions=[store])) == {
        "ax_store": AXStoreResponse(succeeded, error)
    }


def test_store_asked_without_answer_reports_nothing():
    store = AXStore({AX.email: "alice@example.com"})
    message = op_answer(build_request([store]), lambda checkid, answer: None)
    assert parse(extension_response(message, extensions=[store])) == {}


def test_request_objects_are_hashable_and_read_only():
    wish = AX(required=[AX.email], count={AX.email: 2})
    assert wish in {wish}
    with pytest.raises(AttributeError):
        wish.update_url = "https://x.example/"  # type: ignore[misc]
    with pytest.raises(TypeError):
        wish.count[AX.email] = 5  # type: ignore[index]
