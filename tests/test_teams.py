"""The Launchpad teams extension: what is asked, and what is believed of the answer.

End-to-end logins against the Ubuntu One lookalike are in test_providers; these build the
request through a real plugin manager and hand the response hook assertions whose signed
field set each test chooses (test_sreg's helpers).
"""

from __future__ import annotations

import pytest
from test_sreg import build_request, extension_response, parse

from openid_plugins.errors import ConfigurationError
from openid_plugins.extensions.sreg import SReg
from openid_plugins.extensions.teams import TEAMS_NS, Teams
from openid_plugins.protocol.message import Message

ASKED = Teams(["ubuntu-core-dev", "canonical"])


def answered(is_member: str, extensions=(ASKED,)) -> Message:
    """An assertion to a request asking ``extensions``, answering ``is_member``."""
    message = build_request(extensions)
    fields = dict(message.fields, mode="id_res")
    fields = {k: v for k, v in fields.items() if not k.startswith("lp.")}
    answer = Message(fields)
    alias = answer.alias_for(TEAMS_NS)
    answer.fields[f"{alias}.is_member"] = is_member
    answer.fields["signed"] = ",".join(k for k in answer.fields if k != "mode")
    return answer


def test_request_asks_about_the_teams_once_each_in_order():
    message = build_request([ASKED, Teams(["canonical", "launchpad"]), SReg(["email"])])
    assert message.get_args(TEAMS_NS) == {"query_membership": "ubuntu-core-dev,canonical,launchpad"}
    assert message.alias_for(TEAMS_NS) == "lp"
    assert build_request([SReg(["email"])]).alias_for(TEAMS_NS) is None


def test_signed_memberships_that_were_asked_about_are_reported():
    response = extension_response(answered("canonical"), extensions=[ASKED])
    assert parse(response)["teams"] == ("canonical",)


def test_teams_not_asked_about_are_dropped():
    response = extension_response(answered("admins,canonical"), extensions=[ASKED])
    assert parse(response)["teams"] == ("canonical",)


def test_an_unsigned_membership_is_not_believed():
    message = answered("canonical")
    signed = set(message["signed"].split(",")) - {"lp.is_member"}
    response = extension_response(message, signed=signed, extensions=[ASKED])
    assert parse(response)["teams"] == ()


def test_an_unsigned_namespace_declaration_is_not_believed():
    message = answered("canonical")
    signed = set(message["signed"].split(",")) - {"ns.lp"}
    response = extension_response(message, signed=signed, extensions=[ASKED])
    assert parse(response)["teams"] == ()


def test_nothing_is_reported_when_no_team_was_asked_about():
    response = extension_response(answered("canonical"), extensions=[SReg(["email"])])
    assert "teams" not in parse(response)


@pytest.mark.parametrize("teams", [[], ["a,b"], ["a b"], [""], "canonical", [7]])
def test_bad_team_lists_are_configuration_errors(teams):
    with pytest.raises(ConfigurationError):
        Teams(teams)
