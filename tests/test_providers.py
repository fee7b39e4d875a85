"""Provider profiles and OP pinning, against local OPs that behave like Steam and Ubuntu One
(``openid_plugins.testing.lookalikes``) and python3-openid's OP.

The built-in profiles are rebuilt with the same functions, pointed at the local OPs, and
registered by a plugin in code: a profile offered by a later plugin replaces the built-in
one of the same name. Every refusal is checked for its own error type and for leaving
nothing behind: the nonce can still be used, no association was made, and the OP or host
named by the attacker received no request.
"""

from __future__ import annotations

import copy
import re
import time
from urllib.parse import urlencode

import pytest
import requests
from conftest import REALM, RETURN_TO, query_of
from distributions import install_distribution

from openid_plugins import hookimpl
from openid_plugins.config import Settings
from openid_plugins.contracts import ProviderProfile
from openid_plugins.errors import (
    ConfigurationError,
    DiscoveryMismatchError,
    PluginError,
    ReplayAttackError,
    SetupNeededError,
    UntrustedIdentifierError,
    UntrustedProviderError,
)
from openid_plugins.extensions.sreg import SREG_1_1_NS, SReg
from openid_plugins.extensions.teams import TEAMS_NS, Teams
from openid_plugins.profiles import steam_profile, ubuntu_one_profile
from openid_plugins.protocol import nonce as nonce_module
from openid_plugins.protocol.message import OPENID2_NS, kv_encode
from openid_plugins.relying_party import IDENTIFIER_SELECT, SESSION_KEY
from openid_plugins.testing.lookalikes import (
    STEAM_DUMMY_HANDLE,
    SteamLikeProvider,
    UbuntuOneLikeProvider,
)

STEAM_ID = "76561197960287930"
UBUNTU_ID = "AbCd3Fg"


class LocalProfiles:
    """A plugin in code offering profiles: here, the built-ins pointed at local OPs."""

    def __init__(self, *profiles: ProviderProfile) -> None:
        self.profiles = profiles

    @hookimpl
    def openid_providers(self):
        return list(self.profiles)


@pytest.fixture(scope="module")
def lookalikes():
    with (
        SteamLikeProvider(users=(STEAM_ID, "76561198000000001")) as steam,
        UbuntuOneLikeProvider(users=(UBUNTU_ID, "abcd3fg")) as ubuntu,
    ):
        yield steam, ubuntu


@pytest.fixture
def steam(lookalikes):
    lookalikes[0].reset()
    return lookalikes[0]


@pytest.fixture
def ubuntu(lookalikes):
    lookalikes[1].reset()
    return lookalikes[1]


@pytest.fixture
def site(make_rp, steam, ubuntu):
    """A site offering Steam and Ubuntu One, reaching them on 127.0.0.1."""

    def make(**settings):
        profiles = LocalProfiles(steam_profile(steam.base_url), ubuntu_one_profile(ubuntu.base_url))
        settings.setdefault("fetch_block_private_addresses", False)
        return make_rp(plugins=[profiles], **settings)

    return make


def sign_in(rp, browser, session, **begin):
    begin.setdefault("return_to", RETURN_TO)
    auth = rp.begin(session=session, **begin)
    back = browser.visit_op(auth)
    return query_of(back), back


def assert_nothing_stored(rp, query, endpoint):
    """The refused assertion left no trace: its nonce is unused and no association exists."""
    timestamp, salt = nonce_module.parse_nonce(query["openid.response_nonce"])
    assert rp.store.use_nonce(query["openid.op_endpoint"], timestamp, salt)
    assert rp.store.get_association(endpoint) is None


# -- the built-in profiles ---------------------------------------------------------------


def test_builtin_profiles_are_offered(make_rp):
    rp = make_rp()
    steam, ubuntu = rp.providers["steam"], rp.providers["ubuntu_one"]
    assert steam.op_identifier == "https://steamcommunity.com/openid"
    assert steam.op_endpoints == ("https://steamcommunity.com/openid/login",)
    assert steam.association == "stateless"
    assert ubuntu.op_identifier == "https://login.ubuntu.com/"
    assert ubuntu.op_endpoints == ("https://login.ubuntu.com/+openid",)
    assert ubuntu.association is None and ubuntu.immediate is False
    assert ubuntu.speaks(TEAMS_NS) and not steam.speaks(TEAMS_NS)


@pytest.mark.parametrize(
    ("claimed_id", "steam_id"),
    [
        (f"https://steamcommunity.com/openid/id/{STEAM_ID}", STEAM_ID),
        (f"http://steamcommunity.com/openid/id/{STEAM_ID}", STEAM_ID),  # before 2018
        (f"https://steamcommunity.com/openid/id/{STEAM_ID[:-1]}", None),  # 16 digits
        (f"https://steamcommunity.com/openid/id/{STEAM_ID}0", None),  # 18 digits
        (f"https://steamcommunity.com/openid/id/{STEAM_ID}/", None),
        (f"https://steamcommunity.com/openid/id/{STEAM_ID}#x", None),
        (f"https://steamcommunity.com.evil.example/openid/id/{STEAM_ID}", None),
        (f"https://steamcommunity.com@evil.example/openid/id/{STEAM_ID}", None),
        (f"https://evil.example/openid/id/{STEAM_ID}", None),
        (f"https://evil.example/?https://steamcommunity.com/openid/id/{STEAM_ID}", None),
        (f"https://steamcommunityXcom/openid/id/{STEAM_ID}", None),  # the dot is literal
    ],
)
def test_steam_claimed_ids_are_read_by_pattern(claimed_id, steam_id):
    assert steam_profile().read_claimed_id(claimed_id) == steam_id


def test_ubuntu_one_ids_are_case_sensitive():
    profile = ubuntu_one_profile()
    assert profile.read_claimed_id(f"https://login.ubuntu.com/+id/{UBUNTU_ID}") == UBUNTU_ID
    assert profile.read_claimed_id("https://login.ubuntu.com/+id/abcd3fg") == "abcd3fg"
    assert profile.read_claimed_id(f"https://login.ubuntu.com/id/{UBUNTU_ID}") is None
    assert profile.read_claimed_id(f"http://login.ubuntu.com/+id/{UBUNTU_ID}") is None


def test_a_bad_profile_is_a_plugin_error():
    with pytest.raises(PluginError, match="name"):
        ProviderProfile("Steam!", "https://a.example/", ("https://a.example/op",), ".*")
    with pytest.raises(PluginError, match="op_endpoints"):
        ProviderProfile("a", "https://a.example/", "https://a.example/op", ".*")
    with pytest.raises(PluginError, match="op_endpoints"):
        ProviderProfile("a", "https://a.example/", ("javascript:alert(1)",), ".*")
    with pytest.raises(PluginError, match="claimed_id_pattern"):
        ProviderProfile("a", "https://a.example/", ("https://a.example/op",), "(")
    with pytest.raises(PluginError, match="association"):
        ProviderProfile("a", "https://a.example/", ("https://a.example/op",), ".*", "never")


def test_unknown_provider_names_the_offered_ones(make_rp):
    rp = make_rp()
    with pytest.raises(ConfigurationError, match="'stream'.*steam, ubuntu_one"):
        rp.begin(provider="stream", return_to=RETURN_TO, session={})
    with pytest.raises(ConfigurationError, match="identifier or provider"):
        rp.begin(return_to=RETURN_TO, session={})
    with pytest.raises(ConfigurationError, match="return_to"):
        rp.begin(provider="steam", session={})


def test_a_hook_returning_something_else_is_refused(make_rp):
    rp = make_rp(plugins=[LocalProfiles("steam")])  # a name, not a ProviderProfile
    with pytest.raises(PluginError, match="not a ProviderProfile"):
        rp.begin(provider="steam", return_to=RETURN_TO, session={})


# -- Sign in with Steam --------------------------------------------------------------------


def test_the_steam_lookalike_answers_as_steam_does(steam):
    """The public behaviour the lookalike reproduces, checked on the wire."""
    xrds = requests.get(steam.op_identifier_url, timeout=5)
    assert xrds.headers["Content-Type"] == "application/xrds+xml"
    assert "auth/2.0/server" in xrds.text and "LocalID" not in xrds.text
    claimed = requests.get(steam.identity_url(STEAM_ID), timeout=5).text
    assert "auth/2.0/signon" in claimed and "LocalID" not in claimed
    refusal = requests.post(
        steam.endpoint,
        data={
            "openid.ns": OPENID2_NS,
            "openid.mode": "associate",
            "openid.assoc_type": "HMAC-SHA256",
            "openid.session_type": "DH-SHA256",
            "openid.dh_consumer_public": "AQ==",
        },
        timeout=5,
    )
    assert refusal.status_code == 200
    assert "assoc_type" not in refusal.text and "session_type" not in refusal.text
    assert "error:" in refusal.text


def test_steam_login_returns_the_steam_id(site, steam, browser):
    rp = site()
    session: dict = {}
    auth = rp.begin(provider="steam", return_to=RETURN_TO, session=session)
    assert auth.endpoint.server_url == steam.endpoint
    assert auth.message["claimed_id"] == auth.message["identity"] == IDENTIFIER_SELECT
    assert "assoc_handle" not in auth.message  # stateless: Steam associates with nobody
    back = browser.visit_op(auth)
    query = query_of(back)
    assert query["openid.assoc_handle"] == STEAM_DUMMY_HANDLE
    assert "ns" not in query["openid.signed"].split(",")
    replayed = copy.deepcopy(session)
    result = rp.complete(query, back, session=session)
    assert result.provider == "steam"
    assert result.provider_id == STEAM_ID
    assert result.claimed_id == f"{steam.base_url}/openid/id/{STEAM_ID}"
    assert result.verified_by == "check_authentication"
    assert steam.counts == {"checkid_setup": 1, "check_authentication": 1}
    assert rp.store.get_association(steam.endpoint) is None
    assert rp.queue.pending() == 0  # nothing queued for the fetcher either
    with pytest.raises(ReplayAttackError):
        rp.complete(query, back, session=replayed)


def test_steam_login_as_a_second_user_and_with_a_realm(site, steam, browser):
    rp = site()
    steam.select_user = "76561198000000001"
    session: dict = {}
    query, back = sign_in(rp, browser, session, provider="steam", realm=REALM)
    assert query["openid.claimed_id"].endswith("/76561198000000001")
    assert rp.complete(query, back, session=session).provider_id == "76561198000000001"


def test_a_site_forcing_associations_on_steam_still_signs_in(site, steam, browser):
    """Steam refuses associate with HTTP 200 and no suggestion: the refusal is remembered
    and the login continues statelessly, the second one without asking again."""
    rp = site()
    for _ in range(2):
        session: dict = {}
        query, back = sign_in(rp, browser, session, provider="steam", association="inline")
        result = rp.complete(query, back, session=session)
        assert result.provider_id == STEAM_ID
        assert result.verified_by == "check_authentication"
    assert steam.counts["associate"] == 1
    assert rp.store.get_association(steam.endpoint) is None


def test_extensions_steam_does_not_speak_get_no_answer(site, steam, browser, caplog):
    rp = site()
    session: dict = {}
    caplog.set_level("INFO", "openid_plugins.relying_party")
    auth = rp.begin(
        provider="steam", return_to=RETURN_TO, session=session, extensions=[SReg(["email"])]
    )
    assert auth.message.get_args(SREG_1_1_NS) == {"required": "email"}
    assert "not known to answer" in caplog.text
    back = browser.visit_op(auth)
    assert rp.complete(query_of(back), back, session=session).sreg == {}


# -- the three attacks on a Steam login ----------------------------------------------------


def test_an_assertion_from_another_endpoint_is_refused(site, steam, op, browser):
    """A genuine assertion, signed by python3-openid's OP for the attacker's own account,
    delivered to a victim's Steam sign-in: refused before return_to, discovery or any
    request to either OP."""
    rp = site()
    victim: dict = {}
    rp.begin(provider="steam", return_to=RETURN_TO, session=victim)
    attacker: dict = {}
    query, back = sign_in(rp, browser, attacker, user_input=op.identity())
    op_requests = dict(op.counts)
    with pytest.raises(UntrustedProviderError, match="this sign-in"):
        rp.complete(query, back, session=victim)
    assert dict(op.counts) == op_requests and steam.counts == {}
    assert_nothing_stored(rp, query, op.endpoint())
    assert SESSION_KEY in victim  # the pending sign-in is kept


def test_a_claimed_id_on_another_host_is_refused(site, steam, server, browser):
    """A Steam-form claimed id on the attacker's host, whose XRDS names Steam's endpoint,
    in an assertion "from" Steam: refused without fetching the attacker's host and without
    asking Steam."""
    server.route(
        f"/openid/id/{STEAM_ID}",
        200,
        {"Content-Type": "application/xrds+xml"},
        (
            '<?xml version="1.0"?><xrds:XRDS xmlns:xrds="xri://$xrds"'
            ' xmlns="xri://$xrd*($v*2.0)"><XRD><Service>'
            f"<Type>http://specs.openid.net/auth/2.0/signon</Type><URI>{steam.endpoint}</URI>"
            "</Service></XRD></xrds:XRDS>"
        ).encode(),
    )
    rp = site()
    session: dict = {}
    query, back = sign_in(rp, browser, session, provider="steam")
    foreign = server.url(f"/openid/id/{STEAM_ID}")
    query["openid.claimed_id"] = query["openid.identity"] = foreign
    with pytest.raises(UntrustedIdentifierError, match="not of the form provider 'steam'"):
        rp.complete(query, back, session=session)
    assert server.requests == []
    assert steam.counts == {"checkid_setup": 1}
    assert_nothing_stored(rp, query, steam.endpoint)
    assert issubclass(UntrustedIdentifierError, DiscoveryMismatchError)


@pytest.fixture
def attacker_op(server):
    """An OP that confirms every signature: check_authentication always is_valid:true."""
    server.route(
        "/openid/login",
        200,
        {"Content-Type": "text/plain"},
        kv_encode({"ns": OPENID2_NS, "is_valid": "true"}),
    )
    return server


def forged_assertion(session: dict, op_endpoint: str, steam) -> tuple[dict[str, str], str]:
    """What an attacker's OP sends: the victim's SteamID, for the session's return_to, with
    a signature its own check_authentication would confirm; and the URL it arrives at."""
    fields = {
        "ns": OPENID2_NS,
        "mode": "id_res",
        "op_endpoint": op_endpoint,
        "claimed_id": steam.identity_url(STEAM_ID),
        "identity": steam.identity_url(STEAM_ID),
        "return_to": session[SESSION_KEY]["return_to"],
        "response_nonce": nonce_module.make_nonce(time.time()),
        "assoc_handle": STEAM_DUMMY_HANDLE,
        "signed": "signed,op_endpoint,claimed_id,identity,return_to,response_nonce,assoc_handle",
        "sig": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }
    query = {f"openid.{key}": value for key, value in fields.items()}
    return query, fields["return_to"] + "&" + urlencode(query)


@pytest.mark.parametrize("pinned_by", ["provider", "op_endpoints", "settings"])
def test_an_attacker_op_confirming_everything_is_refused(site, steam, attacker_op, pinned_by):
    """The attacker's OP asserts the victim's SteamID and would confirm any signature; it
    is never asked, however the site pinned Steam."""
    if pinned_by == "settings":
        rp = site(allowed_op_endpoints=[steam.endpoint])
        begin = {"user_input": steam.op_identifier_url}
    else:
        rp = site()
        begin = (
            {"provider": "steam"}
            if pinned_by == "provider"
            else {"user_input": steam.op_identifier_url, "op_endpoints": [steam.endpoint]}
        )
    session: dict = {}
    rp.begin(return_to=RETURN_TO, session=session, association="stateless", **begin)
    query, url = forged_assertion(session, attacker_op.url("/openid/login"), steam)
    with pytest.raises(UntrustedProviderError):
        rp.complete(query, url, session=session)
    assert attacker_op.requests == []
    assert steam.counts == {}
    assert_nothing_stored(rp, query, attacker_op.url("/openid/login"))


def test_without_pins_the_attacker_op_still_fails_later(make_rp, steam, attacker_op):
    """For contrast: with no pin, section 11.2 catches it after re-discovering the
    claimed id (which costs a fetch); the pin refuses it before any."""
    rp = make_rp(fetch_block_private_addresses=False)
    session: dict = {}
    rp.begin(steam.op_identifier_url, RETURN_TO, session=session, association="stateless")
    query, url = forged_assertion(session, attacker_op.url("/openid/login"), steam)
    with pytest.raises(DiscoveryMismatchError):
        rp.complete(query, url, session=session)
    assert attacker_op.requests == []


# -- pinning at begin() ------------------------------------------------------------------


def test_begin_refuses_an_identifier_served_by_another_op(site, op):
    rp = site()
    session: dict = {}
    with pytest.raises(UntrustedProviderError, match=re.escape(op.endpoint())):
        rp.begin(op.identity(), RETURN_TO, session=session, provider="steam")
    with pytest.raises(UntrustedProviderError):
        rp.begin(op.identity(), RETURN_TO, session=session, op_endpoints=["https://a.example/"])
    pinned = site(allowed_op_endpoints="https://a.example/op,https://b.example/op")
    with pytest.raises(UntrustedProviderError):
        pinned.begin(op.identity(), RETURN_TO, session=session)
    assert session == {}


def test_begin_with_the_pinned_op_works_for_any_identifier_it_serves(site, op, browser):
    rp = site(allowed_op_endpoints=[op.endpoint()])
    session: dict = {}
    query, back = sign_in(
        rp, browser, session, user_input=op.identity(), op_endpoints=[op.endpoint()]
    )
    result = rp.complete(query, back, session=session)
    assert result.claimed_id == op.identity()
    assert result.provider is None and result.provider_id is None


def test_an_openid1_answer_is_pinned_by_the_session_endpoint(site, op, browser):
    """OpenID 1.x names no op_endpoint: the OP the session's request went to answers."""
    session: dict = {}
    query, back = sign_in(
        site(),
        browser,
        session,
        user_input=op.openid1_identity(),
        op_endpoints=[op.endpoint("op1")],
    )
    assert "openid.ns" not in query  # 1.x: any op_endpoint field is not read
    other_site = site(allowed_op_endpoints=["https://a.example/op"])
    with pytest.raises(UntrustedProviderError, match="allowed_op_endpoints"):
        other_site.complete(query, back, session=copy.deepcopy(session))
    assert site().complete(query, back, session=session).claimed_id == op.openid1_identity()


def test_pins_are_checked(site, steam):
    rp = site()
    with pytest.raises(ConfigurationError, match="single string"):
        rp.begin(steam.op_identifier_url, RETURN_TO, session={}, op_endpoints=steam.endpoint)
    with pytest.raises(ConfigurationError, match="names none of provider 'steam'"):
        rp.begin(
            provider="steam", return_to=RETURN_TO, session={}, op_endpoints=["https://x.example/"]
        )
    with pytest.raises(ConfigurationError, match="no OP endpoint"):
        rp.begin(steam.op_identifier_url, RETURN_TO, session={}, op_endpoints=[])


def test_allowed_op_endpoints_from_the_environment():
    settings = Settings.from_env(
        {"OPENID_PLUGINS_ALLOWED_OP_ENDPOINTS": "https://a.example/op, https://b.example/op,"}
    )
    assert settings.allowed_op_endpoints == ("https://a.example/op", "https://b.example/op")
    assert Settings().allowed_op_endpoints == ()
    with pytest.raises(ConfigurationError, match="ftp"):
        Settings.from_mapping({"allowed_op_endpoints": "ftp://a.example/op"})


# -- Ubuntu One and the teams extension ----------------------------------------------------


def test_ubuntu_one_directed_identity_with_teams_and_an_association(site, ubuntu, browser):
    ubuntu.teams[UBUNTU_ID] = {"canonical", "ubuntu-core-dev", "not-asked"}
    rp = site(association="inline")
    session: dict = {}
    auth = rp.begin(
        provider="ubuntu_one",
        return_to=RETURN_TO,
        realm=REALM,
        session=session,
        extensions=[Teams(["ubuntu-core-dev", "launchpad", "canonical"]), SReg(["nickname"])],
    )
    assert auth.message.get_args(TEAMS_NS) == {
        "query_membership": "ubuntu-core-dev,launchpad,canonical"
    }
    assert auth.association is not None  # associations work with Ubuntu One
    back = browser.visit_op(auth)
    result = rp.complete(query_of(back), back, session=session)
    assert result.provider == "ubuntu_one" and result.provider_id == UBUNTU_ID
    assert result.verified_by == "association"
    assert result.extensions["teams"] == ("ubuntu-core-dev", "canonical")
    assert result.sreg == {"nickname": UBUNTU_ID}


def test_ubuntu_one_ids_keep_their_case(site, ubuntu, browser):
    rp = site()
    ids = []
    for user in (UBUNTU_ID, "abcd3fg"):
        ubuntu.select_user = user
        session: dict = {}
        query, back = sign_in(rp, browser, session, provider="ubuntu_one")
        ids.append(rp.complete(query, back, session=session).provider_id)
    assert ids == [UBUNTU_ID, "abcd3fg"]


def test_teams_the_op_reports_unasked_are_dropped(site, ubuntu, browser):
    ubuntu.teams_answer = "canonical,admins"
    rp = site()
    session: dict = {}
    query, back = sign_in(
        rp, browser, session, provider="ubuntu_one", extensions=[Teams(["canonical"])]
    )
    assert query["openid.lp.is_member"] == "canonical,admins"
    assert rp.complete(query, back, session=session).extensions["teams"] == ("canonical",)


def test_immediate_mode_is_never_attempted_with_ubuntu_one(site, ubuntu):
    rp = site()
    session: dict = {}
    with pytest.raises(ConfigurationError, match="immediate"):
        rp.begin(provider="ubuntu_one", return_to=RETURN_TO, session=session, immediate=True)
    assert session == {} and ubuntu.counts == {}


def test_why_ubuntu_one_refuses_immediate_mode(make_rp, ubuntu, browser):
    """Without the profile, an immediate request costs a round trip to learn what the
    profile already knows: setup is needed."""
    rp = make_rp(fetch_block_private_addresses=False)
    session: dict = {}
    query, back = sign_in(rp, browser, session, user_input=ubuntu.op_identifier_url, immediate=True)
    assert query["openid.mode"] == "setup_needed"
    with pytest.raises(SetupNeededError):
        rp.complete(query, back, session=session)


# -- a third-party profile from an installed distribution ----------------------------------

EXAMPLE_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "openid-plugins-example-provider"
version = "0.0.1"

[project.entry-points.openid_plugins]
example_provider = "example_provider"
"""

EXAMPLE_MODULE = """
import os
import re
import time

from openid_plugins import hookimpl
from openid_plugins.contracts import ProviderProfile


@hookimpl
def openid_providers():
    base = os.environ["EXAMPLE_PROVIDER_BASE"]
    return [
        ProviderProfile(
            name="example",
            op_identifier=base + "/server",
            op_endpoints=(base + "/op",),
            claimed_id_pattern=re.escape(base) + "/id/(?P<id>[a-z]+)",
            association="inline",
        )
    ]
"""


@pytest.fixture(scope="module")
def example_dist(tmp_path_factory):
    return install_distribution(
        tmp_path_factory.mktemp("provider"),
        EXAMPLE_PYPROJECT,
        {"example_provider.py": EXAMPLE_MODULE},
    )


def test_hook_openid_providers_a_third_party_profile_works_end_to_end(
    example_dist, monkeypatch, make_rp, op, browser
):
    """Installed by pip, found through its entry point, used by name; its pins hold."""
    monkeypatch.syspath_prepend(str(example_dist))
    monkeypatch.setenv("EXAMPLE_PROVIDER_BASE", op.base)
    rp = make_rp(fetch_block_private_addresses=False)
    assert rp.pm.distributions["example_provider"][0] == "openid-plugins-example-provider"
    session: dict = {}
    query, back = sign_in(rp, browser, session, provider="example")
    result = rp.complete(query, back, session=session)
    assert (result.provider, result.provider_id) == ("example", "alice")
    assert result.verified_by == "association"
    assert op.counts["associate"] >= 1
    # An identifier the same OP serves under another endpoint is refused at begin().
    with pytest.raises(UntrustedProviderError):
        rp.begin(op.elsewhere_identity(), RETURN_TO, session={}, provider="example")
