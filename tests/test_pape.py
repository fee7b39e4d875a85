"""PAPE requests and responses (drafts 2 and 5 of python3-openid's OP), auth_time parsing,
and the max_auth_age policy check."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from openid.extensions.draft import pape2 as op_pape2
from openid.extensions.draft import pape5 as op_pape5
from test_sreg import V1, build_request, extension_response, op_answer, parse

from openid_plugins.errors import ConfigurationError, IncompleteAnswerError, PolicyError
from openid_plugins.extensions import pape
from openid_plugins.extensions.pape import PAPE, PAPEResponse
from openid_plugins.protocol.message import OPENID2_NS, Message

NOW = datetime(2024, 5, 15, 17, 11, 51, tzinfo=timezone.utc)
CUSTOM_LEVEL = "https://levels.example/assurance"


class FixedClock:
    """A clock that stands still at ``t``: the RP's clock as the response hooks see it."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def stamp(seconds_before_now: float) -> str:
    return datetime.fromtimestamp(NOW.timestamp() - seconds_before_now, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def pape_response(args: dict[str, str], *, wish: PAPE | None = None, signed=None):
    fields = {"ns": OPENID2_NS, "mode": "id_res", "ns.pape": pape.PAPE_NS}
    fields.update({f"pape.{key}": value for key, value in args.items()})
    return extension_response(
        Message(fields),
        signed=set(fields) if signed is None else signed,
        extensions=[wish] if wish else [],
        clock=FixedClock(NOW.timestamp()),
    )


# -- the request object ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_auth_age": -1},
        {"max_auth_age": 1.5},
        {"max_auth_age": "3600"},
        {"max_auth_age": True},
        {"preferred_policies": PAPE.PHISHING_RESISTANT},
        {"preferred_policies": ["two words"]},
        {"preferred_policies": ["phishing-resistant"]},
        {"preferred_auth_level_types": ["nist"]},
        {"clock_leeway": -1},
        {"clock_leeway": "60"},
    ],
)
def test_invalid_requests_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        PAPE(**kwargs)


def test_session_record_is_json_and_round_trips():
    wish = PAPE(3600, [PAPE.PHISHING_RESISTANT], [PAPE.LEVELS_NIST], clock_leeway=5)
    stored = json.loads(json.dumps(wish.to_session()))
    assert stored["extension"] == "pape"
    assert PAPE.from_session(stored) == wish


def test_merging_takes_the_strictest():
    merged = PAPE(3600, [PAPE.MULTI_FACTOR]).merge(PAPE(600, [PAPE.PHISHING_RESISTANT], [], 10))
    assert merged == PAPE(600, [PAPE.MULTI_FACTOR, PAPE.PHISHING_RESISTANT], [], 10)
    assert PAPE(None).merge(PAPE(None)).max_auth_age is None


# -- outgoing requests ----------------------------------------------------------------------


def test_request_arguments():
    wish = PAPE(0, [PAPE.PHISHING_RESISTANT, PAPE.MULTI_FACTOR], [CUSTOM_LEVEL, PAPE.LEVELS_NIST])
    message = build_request([wish])
    assert message["ns.pape"] == pape.PAPE_NS
    assert message.get_args(pape.PAPE_NS) == {
        "preferred_auth_policies": f"{PAPE.PHISHING_RESISTANT} {PAPE.MULTI_FACTOR}",
        "max_auth_age": "0",
        "auth_level.ns.cust0": CUSTOM_LEVEL,
        "auth_level.ns.nist": PAPE.LEVELS_NIST,
        "preferred_auth_level_types": "cust0 nist",
    }


def test_no_preferred_policy_sends_an_empty_list():
    # Section 5.1: preferred_auth_policies is not optional; zero URIs is an empty value.
    assert build_request([PAPE()]).get_args(pape.PAPE_NS) == {"preferred_auth_policies": ""}


def test_openid1_request_uses_the_pape_alias():
    message = build_request([PAPE(max_auth_age=60)], endpoint=V1)
    assert "ns.pape" not in message
    assert message["pape.max_auth_age"] == "60"


def test_python3_openid_op_understands_the_request():
    wish = PAPE(120, [PAPE.PHISHING_RESISTANT], [PAPE.LEVELS_NIST, CUSTOM_LEVEL])
    seen = {}

    def extend(checkid, answer):
        request = op_pape5.Request.fromOpenIDRequest(checkid)
        seen.update(
            age=request.max_auth_age,
            policies=request.preferred_auth_policies,
            levels=request.preferred_auth_level_types,
        )

    op_answer(build_request([wish]), extend)
    assert seen == {
        "age": 120,
        "policies": [PAPE.PHISHING_RESISTANT],
        "levels": [PAPE.LEVELS_NIST, CUSTOM_LEVEL],
    }


# -- responses ------------------------------------------------------------------------------


def _answered(wish: PAPE, op_response) -> Message:
    return op_answer(build_request([wish]), lambda c, answer: answer.addExtension(op_response))


def test_draft5_response_from_a_real_op():
    wish = PAPE(max_auth_age=3600)
    op_response = op_pape5.Response(
        [PAPE.PHISHING_RESISTANT, PAPE.MULTI_FACTOR], stamp(30), {op_pape5.LEVELS_NIST: 2}
    )
    op_response.setAuthLevel(CUSTOM_LEVEL, "gold")
    response = extension_response(
        _answered(wish, op_response), extensions=[wish], clock=FixedClock(NOW.timestamp())
    )
    assert parse(response) == {
        "pape": PAPEResponse(
            policies=[PAPE.PHISHING_RESISTANT, PAPE.MULTI_FACTOR],
            auth_time=datetime.fromtimestamp(NOW.timestamp() - 30, timezone.utc),
            nist_auth_level=2,
            auth_levels={PAPE.LEVELS_NIST: "2", CUSTOM_LEVEL: "gold"},
        )
    }


def test_draft2_response_from_a_real_op_with_no_policy():
    wish = PAPE()
    op_response = op_pape2.Response(auth_time=stamp(5), nist_auth_level=0)
    message = _answered(wish, op_response)
    assert message.get_args(pape.PAPE_NS)["auth_policies"] == "none"
    result = pape.parse_response(extension_response(message))
    assert result == PAPEResponse([], NOW.replace(second=46), 0, {})
    assert not result.met(PAPE.PHISHING_RESISTANT)


def test_none_policy_uri_is_not_a_policy():
    result = pape.parse_args({"auth_policies": f"{pape.AUTH_NONE}"})
    assert result.policies == []
    assert pape.parse_args({}).policies == []


def test_openid1_default_level_aliases():
    args = {"auth_policies": PAPE.MULTI_FACTOR, "auth_level.nist": "3", "auth_level.x": "9"}
    assert pape.parse_args(args, openid1=True).nist_auth_level == 3
    assert pape.parse_args(args).nist_auth_level is None


def test_openid1_response_with_the_bare_pape_prefix():
    message = Message({"mode": "id_res", "pape.auth_policies": PAPE.MULTI_FACTOR})
    response = extension_response(message, signed={"mode", "pape.auth_policies"}, endpoint=V1)
    assert pape.parse_response(response).policies == [PAPE.MULTI_FACTOR]


@pytest.mark.parametrize(
    "auth_time",
    [
        "2005-05-15T17:11:51",
        "2005-05-15T17:11:51.5Z",
        "2005-05-15T17:11:51+00:00",
        "2005-05-15 17:11:51Z",
        "2005-13-15T17:11:51Z",
        "2005-02-30T17:11:51Z",
        "１２３４-05-15T17:11:51Z",
        "",
    ],
)
def test_malformed_auth_time_is_an_incomplete_answer(auth_time):
    with pytest.raises(IncompleteAnswerError, match="auth_time"):
        pape.parse_response(pape_response({"auth_policies": "none", "auth_time": auth_time}))


def test_leap_second_auth_time_is_accepted():
    assert pape.parse_auth_time("2016-12-31T23:59:60Z") == datetime(
        2016, 12, 31, 23, 59, 59, tzinfo=timezone.utc
    )


@pytest.mark.parametrize("level", ["5", "-1", "two", "1.0", ""])
def test_malformed_nist_level_is_an_incomplete_answer(level):
    with pytest.raises(IncompleteAnswerError, match="NIST"):
        pape.parse_args({"auth_policies": "none", "nist_auth_level": level})


def test_unsigned_arguments_are_never_read():
    response = pape_response(
        {"auth_policies": PAPE.PHISHING_RESISTANT, "nist_auth_level": "4"},
        signed={"ns", "ns.pape", "pape.nist_auth_level"},
    )
    assert pape.parse_response(response) == PAPEResponse([], None, 4, {})


def test_unsigned_namespace_declaration_voids_pape():
    response = pape_response(
        {"auth_policies": PAPE.PHISHING_RESISTANT}, signed={"ns", "pape.auth_policies"}
    )
    assert pape.parse_response(response) is None
    assert parse(response) == {}


# -- max_auth_age ---------------------------------------------------------------------------


def test_fresh_enough_login_passes():
    wish = PAPE(max_auth_age=600, clock_leeway=0)
    response = pape_response({"auth_policies": "none", "auth_time": stamp(600)}, wish=wish)
    assert parse(response)["pape"].auth_time == NOW.replace(minute=1)


def test_too_old_login_is_a_policy_error():
    wish = PAPE(max_auth_age=600, clock_leeway=0)
    response = pape_response({"auth_policies": "none", "auth_time": stamp(601)}, wish=wish)
    with pytest.raises(PolicyError, match="max_auth_age=600"):
        parse(response)


def test_leeway_covers_the_trip_back_from_the_op():
    wish = PAPE(max_auth_age=0)  # "log in again now"; default leeway 60 s
    assert parse(pape_response({"auth_time": stamp(60)}, wish=wish))["pape"]
    with pytest.raises(PolicyError):
        parse(pape_response({"auth_time": stamp(61)}, wish=wish))


def test_auth_time_in_the_future_passes():
    wish = PAPE(max_auth_age=0, clock_leeway=0)
    assert parse(pape_response({"auth_time": stamp(-120)}, wish=wish))["pape"]


def test_the_rps_clock_is_used():
    wish = PAPE(max_auth_age=600, clock_leeway=0)
    response = pape_response({"auth_time": stamp(0)}, wish=wish)
    later = extension_response(
        response.message,
        signed=response.signed,
        extensions=[wish],
        clock=FixedClock(NOW.timestamp() + 601),
    )
    parse(response)
    with pytest.raises(PolicyError):
        parse(later)


def test_missing_auth_time_is_a_policy_error():
    wish = PAPE(max_auth_age=3600)
    with pytest.raises(PolicyError, match="no signed PAPE auth_time"):
        parse(pape_response({"auth_policies": PAPE.PHISHING_RESISTANT}, wish=wish))


def test_unsigned_auth_time_is_a_policy_error():
    wish = PAPE(max_auth_age=3600)
    response = pape_response(
        {"auth_policies": "none", "auth_time": stamp(0)},
        wish=wish,
        signed={"ns", "ns.pape", "pape.auth_policies"},
    )
    with pytest.raises(PolicyError):
        parse(response)


def test_op_ignoring_pape_is_a_policy_error_only_when_max_auth_age_was_asked():
    message = op_answer(build_request([PAPE(max_auth_age=60)]), lambda checkid, answer: None)
    with pytest.raises(PolicyError):
        parse(extension_response(message, extensions=[PAPE(max_auth_age=60)]))
    assert parse(extension_response(message, extensions=[PAPE()])) == {}


def test_the_strictest_of_several_requests_applies():
    response = pape_response({"auth_time": stamp(200)}, wish=PAPE(max_auth_age=3600))
    strict = extension_response(
        response.message,
        signed=response.signed,
        extensions=[PAPE(max_auth_age=3600), PAPE(max_auth_age=100, clock_leeway=0)],
        clock=response.clock,
    )
    assert parse(response)["pape"]
    with pytest.raises(PolicyError, match="max_auth_age=100"):
        parse(strict)
