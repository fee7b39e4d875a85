"""The Launchpad teams extension, as a plugin on the extension hooks.

Ubuntu One (login.ubuntu.com) tells a site which Launchpad teams a user belongs to: the
request names the teams the site cares about, ``openid.lp.query_membership=team1,team2``,
and the answer lists those the user is a member of, ``openid.lp.is_member=team1``
(namespace ``http://ns.launchpad.net/2007/openid-teams``; Launchpad's
``lp.services.openid.extensions.teams``, python-openid-teams).

A site asks with ``begin(..., extensions=[Teams(["ubuntu-core-dev", "canonical"])])`` and
reads ``result.extensions["teams"]``: a tuple of team names. Only a *signed* ``is_member``
counts (an unsigned one could be added by anyone in the browser's path), and only teams
the site asked about are reported: a team the OP names unasked grants nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from ..hookspecs import hookimpl
from .base import ExtensionArgs, ExtensionRequest, ExtensionResponse, was_requested

log = logging.getLogger("openid_plugins.extensions.teams")

TEAMS_NS = "http://ns.launchpad.net/2007/openid-teams"
#: Key of the entries this module keeps in ``ExtensionResponse.requested``.
SESSION_KIND = "teams"
#: A team name travels in a comma-separated list: no commas, no spaces, nothing empty.
_TEAM_NAME = re.compile(r"[^\s,]{1,255}\Z")


@dataclass(frozen=True)
class Teams:
    """The teams to ask about (``query_membership``), in order, without repeats."""

    teams: Iterable[str]

    def __post_init__(self) -> None:
        if isinstance(self.teams, str):
            raise ConfigurationError("Teams takes a list of team names, not one string")
        names: list[str] = []
        for name in self.teams:
            if not isinstance(name, str) or not _TEAM_NAME.match(name):
                raise ConfigurationError(
                    f"Teams: {name!r} is not a team name (no commas or spaces, 1-255 characters)"
                )
            if name not in names:
                names.append(name)
        if not names:
            raise ConfigurationError("Teams asks about no team; name at least one")
        object.__setattr__(self, "teams", tuple(names))

    def to_session(self) -> dict[str, Any]:
        """JSON-able record of what was asked, handed back in ``ExtensionResponse.requested``."""
        return {"extension": SESSION_KIND, "teams": list(self.teams)}


def _asked(requested: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every team this sign-in asked about, from the session records."""
    names: list[str] = []
    for entry in requested:
        if isinstance(entry, Mapping) and entry.get("extension") == SESSION_KIND:
            names += [n for n in entry.get("teams") or () if isinstance(n, str)]
    return names


@hookimpl
def openid_extension_request_args(request: ExtensionRequest) -> ExtensionArgs | None:
    names = list(dict.fromkeys(n for wish in request.requested(Teams) for n in wish.teams))
    if not names:
        return None
    # "lp" is the alias Launchpad and Ubuntu One use; the core picks another if it is taken.
    return ExtensionArgs(namespace=TEAMS_NS, args={"query_membership": ",".join(names)}, alias="lp")


@hookimpl
def openid_extension_response(response: ExtensionResponse) -> dict[str, Any] | None:
    """``{"teams": (names...)}`` when teams were asked about: the signed ``is_member``
    names that were asked about, in the order asked; empty when none (or nothing signed)
    came back. None when this sign-in asked about no team."""
    if not was_requested(response, SESSION_KIND):
        return None
    asked = _asked(response.requested)
    answer = response.signed_args(TEAMS_NS).get("is_member", "")
    members = {name.strip() for name in answer.split(",") if name.strip()}
    unasked = members.difference(asked)
    if unasked:
        log.info("ignoring teams the OP reported without being asked: %s", sorted(unasked))
    return {"teams": tuple(name for name in asked if name in members)}
