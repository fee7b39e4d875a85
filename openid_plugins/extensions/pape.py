"""Provider Authentication Policy Extension (PAPE 1.0) as a plugin on the extension hooks.

A site asks with ``begin(..., extensions=[PAPE(max_auth_age=3600,
preferred_policies=[PAPE.PHISHING_RESISTANT])])`` and reads ``result.extensions["pape"]``: a
``PAPEResponse`` with the policies the OP says it met, when the user last authenticated, and
the assurance levels. The wire format follows draft 2 (``nist_auth_level``) and the later
1.0 drafts (``auth_level.<alias>`` with ``auth_level.ns.<alias>``) alike.

When ``max_auth_age`` was asked for, the assertion is rejected with ``PolicyError`` if the
OP's signed ``auth_time`` is older than that, *or missing*: section 5.2 says the OP MUST then
include it, and an OP that ignores PAPE gives no proof of a fresh login.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from ..errors import ConfigurationError, IncompleteAnswerError, PolicyError
from ..hookspecs import hookimpl
from .base import ExtensionArgs, ExtensionRequest, ExtensionResponse

log = logging.getLogger("openid_plugins.extensions.pape")

PAPE_NS = "http://specs.openid.net/extensions/pape/1.0"

AUTH_PHISHING_RESISTANT = "http://schemas.openid.net/pape/policies/2007/06/phishing-resistant"
AUTH_MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
AUTH_MULTI_FACTOR_PHYSICAL = "http://schemas.openid.net/pape/policies/2007/06/multi-factor-physical"
#: What a response's auth_policies says when no policy was met (later drafts; draft 2 says
#: the bare word "none"). Never reported as a policy.
AUTH_NONE = "http://schemas.openid.net/pape/policies/2007/06/none"

LEVELS_NIST = "http://csrc.nist.gov/publications/nistpubs/800-63/SP800-63V1_0_2.pdf"
LEVELS_JISA = "http://www.jisa.or.jp/spec/auth_level.html"
#: Assurance level aliases that OpenID 1.x messages may use without declaring them.
DEFAULT_LEVEL_ALIASES = {"nist": LEVELS_NIST, "jisa": LEVELS_JISA}

SESSION_KIND = "pape"
#: Default ``PAPE.clock_leeway``, in seconds.
DEFAULT_CLOCK_LEEWAY = 60.0

# Section 5.2: RFC 3339 section 5.6, UTC with "Z", no fractional seconds.
_AUTH_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def _uris(values: str | Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ConfigurationError(f"PAPE {what} must be a list of URIs, not the string {values!r}")
    result: list[str] = []
    for uri in values:
        # Sent space-separated (5.1), so a URI must not contain whitespace.
        if not isinstance(uri, str) or ":" not in uri or any(c.isspace() for c in uri):
            raise ConfigurationError(f"PAPE {what}: {uri!r} is not a URI")
        if uri not in result:
            result.append(uri)
    return tuple(result)


def _level_aliases(uris: Iterable[str]) -> dict[str, str]:
    """Assurance level type URI -> alias: ``nist``/``jisa`` for the known ones, ``custN``
    otherwise (the aliases python3-openid and DotNetOpenAuth use)."""
    known = {uri: alias for alias, uri in DEFAULT_LEVEL_ALIASES.items()}
    aliases: dict[str, str] = {}
    number = 0
    for uri in uris:
        alias = known.get(uri)
        if alias is None:
            while f"cust{number}" in aliases.values():
                number += 1
            alias = f"cust{number}"
        aliases[uri] = alias
    return aliases


@dataclass(frozen=True)
class PAPE:
    """What to ask the OP with PAPE (section 5.1)."""

    #: Seconds since the user last actively authenticated at the OP, at most.
    max_auth_age: int | None = None
    preferred_policies: Sequence[str] = ()
    #: Assurance level types (``PAPE.LEVELS_NIST``...) the OP should report, in preference order.
    preferred_auth_level_types: Sequence[str] = ()
    #: Slack granted when checking ``auth_time`` against ``max_auth_age`` at response time:
    #: the trip back from the OP and clock differences between OP and RP. Without it
    #: ``max_auth_age=0`` ("log in again now") could never be satisfied.
    clock_leeway: float = DEFAULT_CLOCK_LEEWAY

    PHISHING_RESISTANT: ClassVar[str] = AUTH_PHISHING_RESISTANT
    MULTI_FACTOR: ClassVar[str] = AUTH_MULTI_FACTOR
    MULTI_FACTOR_PHYSICAL: ClassVar[str] = AUTH_MULTI_FACTOR_PHYSICAL
    NONE: ClassVar[str] = AUTH_NONE
    LEVELS_NIST: ClassVar[str] = LEVELS_NIST
    LEVELS_JISA: ClassVar[str] = LEVELS_JISA

    def __post_init__(self) -> None:
        age = self.max_auth_age
        # Section 5.1: an integer >= 0, in seconds.
        if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 0):
            raise ConfigurationError(
                f"PAPE max_auth_age={age!r}; use a whole number of seconds >= 0, or None"
            )
        if isinstance(self.clock_leeway, bool) or not isinstance(self.clock_leeway, (int, float)):
            raise ConfigurationError(f"PAPE clock_leeway={self.clock_leeway!r} is not a number")
        if self.clock_leeway < 0:
            raise ConfigurationError("PAPE clock_leeway must be >= 0 seconds")
        policies = _uris(self.preferred_policies, "preferred_policies")
        levels = _uris(self.preferred_auth_level_types, "preferred_auth_level_types")
        object.__setattr__(self, "preferred_policies", policies)
        object.__setattr__(self, "preferred_auth_level_types", levels)

    def merge(self, other: PAPE) -> PAPE:
        """One request as strict as both: the smaller max_auth_age and leeway, all policies."""
        ages = [a for a in (self.max_auth_age, other.max_auth_age) if a is not None]
        return PAPE(
            min(ages) if ages else None,
            (*self.preferred_policies, *other.preferred_policies),
            (*self.preferred_auth_level_types, *other.preferred_auth_level_types),
            min(self.clock_leeway, other.clock_leeway),
        )

    def to_args(self) -> dict[str, str]:
        """The request arguments (section 5.1), without the namespace alias.

        ``preferred_auth_policies`` is always sent, empty when no policy is preferred: the
        spec lists it as not optional and its value as zero or more URIs ("none" is only a
        response value).
        """
        args = {"preferred_auth_policies": " ".join(self.preferred_policies)}
        if self.max_auth_age is not None:
            args["max_auth_age"] = str(self.max_auth_age)
        if self.preferred_auth_level_types:
            aliases = _level_aliases(self.preferred_auth_level_types)
            for uri, alias in aliases.items():
                args[f"auth_level.ns.{alias}"] = uri
            args["preferred_auth_level_types"] = " ".join(aliases.values())
        return args

    def to_session(self) -> dict[str, Any]:
        return {
            "extension": SESSION_KIND,
            "max_auth_age": self.max_auth_age,
            "preferred_policies": list(self.preferred_policies),
            "preferred_auth_level_types": list(self.preferred_auth_level_types),
            "clock_leeway": self.clock_leeway,
        }

    @classmethod
    def from_session(cls, data: Mapping[str, Any]) -> PAPE:
        return cls(
            data.get("max_auth_age"),
            data.get("preferred_policies", ()),
            data.get("preferred_auth_level_types", ()),
            data.get("clock_leeway", DEFAULT_CLOCK_LEEWAY),
        )


@dataclass(frozen=True)
class PAPEResponse:
    """The OP's signed statement about how the user authenticated (section 5.2)."""

    #: Policy URIs the OP conformed to; empty when it met none.
    policies: list[str] = field(default_factory=list)
    #: When the user last actively authenticated at the OP (UTC), if the OP said.
    auth_time: datetime | None = None
    #: NIST SP 800-63 assurance level 0-4, if the OP said.
    nist_auth_level: int | None = None
    #: Every assurance level reported: level type URI -> level, as sent.
    auth_levels: dict[str, str] = field(default_factory=dict)

    def met(self, policy: str) -> bool:
        return policy in self.policies


def _malformed(problem: str) -> IncompleteAnswerError:
    return IncompleteAnswerError(
        f"the OP's signed PAPE response is malformed: {problem} (PAPE 1.0 section 5.2); "
        "the assertion is rejected, try again or ask the OP's operator"
    )


def parse_auth_time(value: str) -> datetime:
    """``2005-05-15T17:11:51Z`` -> an aware UTC datetime; anything else is malformed."""
    match = _AUTH_TIME.fullmatch(value)
    if match is None:
        raise _malformed(f"auth_time {value!r} is not of the form 2005-05-15T17:11:51Z")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        # RFC 3339 5.6 allows a leap second (:60); datetime does not, so take the second before.
        return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except ValueError:
        raise _malformed(f"auth_time {value!r} is not a valid date and time") from None


def _nist_level(value: str) -> int:
    # Section 5.2: an integer between 0 and 4 inclusive.
    if value not in ("0", "1", "2", "3", "4"):
        raise _malformed(f"the NIST assurance level is {value!r}, not 0 to 4")
    return int(value)


def parse_args(args: Mapping[str, str], *, openid1: bool = False) -> PAPEResponse:
    """Read response arguments (without alias). A missing ``auth_policies`` reads as no
    policy met, like the "none" value it should have carried."""
    policies = [
        uri
        for uri in dict.fromkeys(args.get("auth_policies", "").split())
        if uri not in ("none", AUTH_NONE)
    ]
    auth_time = args.get("auth_time")
    levels: dict[str, str] = {}
    for key, value in args.items():
        if not key.startswith("auth_level.") or key.startswith("auth_level.ns."):
            continue
        alias = key[len("auth_level.") :]
        uri = args.get(f"auth_level.ns.{alias}")
        if uri is None and openid1:
            uri = DEFAULT_LEVEL_ALIASES.get(alias)
        if uri is None:
            log.debug("PAPE assurance level alias %r is not declared: ignored", alias)
            continue
        levels[uri] = value
    nist = args.get("nist_auth_level", levels.get(LEVELS_NIST))
    return PAPEResponse(
        policies=policies,
        auth_time=parse_auth_time(auth_time) if auth_time is not None else None,
        nist_auth_level=_nist_level(nist) if nist is not None else None,
        auth_levels=levels,
    )


def parse_response(response: ExtensionResponse) -> PAPEResponse | None:
    """The signed PAPE part of an assertion, or None when it carries none."""
    if response.message.alias_for(PAPE_NS) is None:
        return None
    args = response.signed_args(PAPE_NS)
    if not args:
        return None
    return parse_args(args, openid1=not response.message.is_openid2)


def check_max_auth_age(
    pape: PAPEResponse | None, requested: Iterable[Mapping[str, Any]], now: float
) -> None:
    """Raise ``PolicyError`` unless the OP proved a login within the strictest requested
    ``max_auth_age`` (plus that request's ``clock_leeway``) before ``now``."""
    limits: list[tuple[float, float]] = []
    for entry in requested:
        limit, leeway = entry.get("max_auth_age"), entry.get("clock_leeway")
        if isinstance(limit, (int, float)):
            limits.append(
                (limit, leeway if isinstance(leeway, (int, float)) else DEFAULT_CLOCK_LEEWAY)
            )
    if not limits:
        return
    max_age, leeway = min(limits)
    if pape is None or pape.auth_time is None:
        raise PolicyError(
            f"max_auth_age={max_age:g} was requested but the OP's response carries no signed "
            "PAPE auth_time (PAPE 1.0 section 5.2 requires one), so a recent login is not "
            "proven; use an OP that supports PAPE, or do not require max_auth_age"
        )
    age = now - pape.auth_time.timestamp()
    if age > max_age + leeway:
        raise PolicyError(
            f"the user last authenticated at the OP {age:.0f} s ago "
            f"(auth_time {pape.auth_time.isoformat()}), longer than the requested "
            f"max_auth_age={max_age:g} s (+{leeway:g} s leeway); send the user to log in again"
        )


def requested_pape(extensions: Iterable[object]) -> PAPE | None:
    merged: PAPE | None = None
    for ext in extensions:
        if isinstance(ext, PAPE):
            merged = ext if merged is None else merged.merge(ext)
    return merged


@hookimpl
def openid_extension_request_args(request: ExtensionRequest) -> ExtensionArgs | None:
    wish = requested_pape(request.extensions)
    if wish is None:
        return None
    # Section 1.2: the alias SHALL be "pape" in OpenID 1.1 messages (which declare none).
    return ExtensionArgs(namespace=PAPE_NS, args=wish.to_args(), alias="pape")


@hookimpl
def openid_extension_response(response: ExtensionResponse) -> dict[str, Any] | None:
    pape = parse_response(response)
    requested = [
        entry
        for entry in response.requested
        if isinstance(entry, Mapping) and entry.get("extension") == SESSION_KIND
    ]
    now = response.clock.now() if response.clock is not None else time.time()
    check_max_auth_age(pape, requested, now)
    return {"pape": pape} if pape is not None else None
