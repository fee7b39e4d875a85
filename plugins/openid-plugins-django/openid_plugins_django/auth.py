"""The API of seed 004 (``openid2rp.django.auth``) on openid-plugins' ``RelyingParty``.

No views: ``preAuthenticate`` returns the response that sends the user to their OP, Django's
``authenticate(openidrequest=request)`` verifies the answer, and every failure is raised as
one of the core's typed exceptions (all ``OpenIDError``) for the site to render as it likes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from openid_plugins.contracts import check_server_url
from openid_plugins.errors import (
    CancelledError,
    ConfigurationError,
    IncompleteAnswerError,
    IncorrectClaimError,
    IncorrectURIError,
    MissingSessionError,
    MultipleClaimUsageError,
    OpenIDError,
    ReplayAttackError,
    TookTooLongError,
)
from openid_plugins.extensions.ax import AX
from openid_plugins.extensions.sreg import SReg
from openid_plugins.protocol import nonce
from openid_plugins.protocol.message import Message
from openid_plugins.relying_party import RelyingParty

from .models import OpenIDClaim, claim_digest
from .plugin import DEFAULT_URL

__all__ = [
    "AX",
    "Backend",
    "CancelledError",
    "ConfigurationError",
    "IncompleteAnswerError",
    "IncorrectClaimError",
    "IncorrectURIError",
    "MissingSessionError",
    "MultipleClaimUsageError",
    "OpenIDError",
    "ReplayAttackError",
    "TookTooLongError",
    "getOpenIDs",
    "get_openids",
    "get_relying_party",
    "linkOpenID",
    "link_openid",
    "preAuthenticate",
    "pre_authenticate",
    "reset_relying_party",
    "unlinkOpenID",
    "unlink_openid",
]

log = logging.getLogger("openid_plugins.django")

#: Seed 004's settings and the core settings they set (when ``OPENID_PLUGINS`` does not).
SEED_SETTINGS = {
    "OPENID2RP_MAXLOGINDELAY": "max_login_delay",
    "OPENID2RP_MAXTIMESHIFT": "nonce_skew",
}
OWN_SETTINGS = ("OPENID_PLUGINS", *SEED_SETTINGS)

#: Store cache namespace of the OpenID 1.x answers already accepted (see ``_AnswerNonce``).
USED_ANSWERS = "django-used-answer"

#: Seed 004's defaults: what most sites want to pre-fill a registration form.
DEFAULT_SREG: tuple[Sequence[str], Sequence[str]] = (("nickname", "email"), ())
DEFAULT_AX: tuple[Sequence[str], Sequence[str]] = ((AX.email, AX.first, AX.last), ())

_lock = threading.Lock()
_relying_party: RelyingParty | None = None


def relying_party_settings() -> dict[str, Any]:
    """The mapping given to ``RelyingParty.from_config``, from Django's settings.

    Without a ``store``/``queue`` in ``OPENID_PLUGINS`` both live in the site's own database
    (``django://default``): every web server process and ``manage.py openid_associate``
    then share them, with no other server or directory to run.
    """
    mapping = dict(getattr(settings, "OPENID_PLUGINS", None) or {})
    mapping.setdefault("store", DEFAULT_URL)
    mapping.setdefault("queue", DEFAULT_URL)
    for name, key in SEED_SETTINGS.items():
        value = getattr(settings, name, None)
        if value is not None:
            mapping.setdefault(key, value)
    return mapping


def get_relying_party() -> RelyingParty:
    """The process's relying party, built on first use: it holds the HTTP pool and the store."""
    global _relying_party
    with _lock:
        if _relying_party is None:
            _relying_party = RelyingParty.from_config(relying_party_settings())
        return _relying_party


def reset_relying_party() -> None:
    """Close the relying party so the next use rebuilds it from the current settings."""
    global _relying_party
    with _lock:
        if _relying_party is not None:
            _relying_party.close()
        _relying_party = None


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting in OWN_SETTINGS:
        reset_relying_party()


def _extension(kind: type, value: Any) -> object | None:
    """An ``SReg``/``AX`` from seed 004's ``(required, optional)`` pair; None asks nothing."""
    if value is None or isinstance(value, kind):
        return value
    required, optional = value
    if not required and not optional:
        return None
    return kind(required=tuple(required), optional=tuple(optional))


def _session(request: HttpRequest) -> Any:
    session = getattr(request, "session", None)
    if session is None:
        raise ConfigurationError(
            "the request has no session: add django.contrib.sessions.middleware."
            "SessionMiddleware to MIDDLEWARE (the sign-in state is kept in the session)"
        )
    return session


def preAuthenticate(
    uri: str | None,
    answer_url: str,
    sreg: tuple[Sequence[str], Sequence[str]] | SReg | None = DEFAULT_SREG,
    ax: tuple[Sequence[str], Sequence[str]] | AX | None = DEFAULT_AX,
    reuse_session: bool = True,
    *,
    request: HttpRequest,
    realm: str | None = None,
    provider: str | None = None,
) -> HttpResponse:
    """Start a sign-in: the response sends the user's browser to their OP.

    ``answer_url`` is the absolute URL of the view that calls ``authenticate``; the sign-in
    state goes into ``request.session``. ``reuse_session=False`` (seed 004) makes this
    sign-in stateless: no association handle is sent, and the OP confirms its answer by
    check_authentication (OpenID 2.0 section 11.4.2) - for OPs whose associations
    misbehave. ``provider`` names a provider profile (``"steam"``, ``"ubuntu_one"``, or one a
    plugin adds), passed to ``RelyingParty.begin``: with ``uri=None`` the sign-in starts
    at the provider's OP, and its endpoints are pinned. Raises ``IncorrectURIError`` for
    input that is no identifier and ``IncorrectClaimError`` when discovery finds no OP.

    The redirect is a 302: the browser follows it with a GET. Seed 004's 307 would make it
    re-POST the site's login form (with its CSRF token and whatever else it held) to the OP.
    """
    extensions = [e for e in (_extension(SReg, sreg), _extension(AX, ax)) if e is not None]
    options: dict[str, Any] = {} if reuse_session else {"association": "stateless"}
    if provider is not None:
        options["provider"] = provider
    auth = get_relying_party().begin(
        uri, answer_url, realm, session=_session(request), extensions=extensions, **options
    )
    if auth.needs_form:
        # OpenID 2.0 section 5.2.1: too long for a redirect, so a self-submitting POST form.
        return HttpResponse(auth.form_html, content_type="text/html; charset=utf-8")
    return HttpResponseRedirect(auth.redirect_url)


pre_authenticate = preAuthenticate


class Backend(BaseBackend):
    """Authenticates ``authenticate(openidrequest=request)`` calls; ignores all others."""

    def authenticate(
        self, request: HttpRequest | None, openidrequest: HttpRequest | None = None, **kwargs: Any
    ) -> AbstractBaseUser | AnonymousUser | None:
        """The linked user, or an ``AnonymousUser`` for a verified claim nobody has linked.

        Both carry ``openid_claim``, ``openid_sreg`` and ``openid_ax``. A failed verification
        raises the core's exception; None means "not an OpenID sign-in", or a linked account
        that is disabled (as Django's ModelBackend treats inactive users).
        """
        if openidrequest is None:
            return None
        args = openidrequest.POST if openidrequest.method == "POST" else openidrequest.GET
        # lists(), not dict(): a repeated openid.* argument must reach complete() as such
        # and be refused, rather than have Django silently keep its last value.
        query = dict(args.lists())
        rp = get_relying_party()
        session = _session(openidrequest)
        answer = _answer_nonce(query)
        if answer is not None and answer.used(rp):
            raise ReplayAttackError(
                "this answer was already given before: a replayed assertion is refused"
            )
        result = rp.complete(query, openidrequest.build_absolute_uri(), session=session)
        if answer is not None:
            answer.mark_used(rp)
        user = _linked_user(result.claimed_id)
        if user is None:
            user = AnonymousUser()
        elif not getattr(user, "is_active", True):
            log.info("OpenID %s verified, but its user %s is inactive", result.claimed_id, user.pk)
            return None
        user.openid_claim = result.claimed_id
        user.openid_sreg = dict(result.sreg)
        user.openid_ax = result.ax
        return user

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:
        model = get_user_model()
        try:
            return model._default_manager.get(pk=user_id)
        except model.DoesNotExist:
            return None


@dataclass(frozen=True)
class _AnswerNonce:
    """The nonce an answer carries, to name a replay before the session is looked at.

    Seed 004 promises ``ReplayAttackError`` for an answer "already given before". The core
    checks the nonce last, after the session state ``begin()`` left, which a completed
    sign-in has used up: a replay would be reported as ``MissingSessionError``. Looking the
    nonce up first only adds a refusal (a nonce is recorded only for an answer that passed
    every check), and the core's checks and its atomic ``use_nonce`` still decide.
    """

    #: OpenID 2.0: the OP endpoint and its response_nonce, as the core records them.
    #: OpenID 1.x has no response_nonce: the core uses the relying party's own nonce from
    #: return_to, recorded under the session's OP endpoint, which a replay without the
    #: session does not name. Then None, and a marker in the store's cache records the
    #: answer.
    server_url: str | None
    timestamp: float
    salt: str

    def used(self, rp: RelyingParty) -> bool:
        if self.server_url is not None:
            return rp.store.nonce_seen(self.server_url, self.timestamp, self.salt)
        return rp.store.cache_get(USED_ANSWERS, self.salt) is not None

    def mark_used(self, rp: RelyingParty) -> None:
        if self.server_url is None:
            # Kept as long as the core would accept the answer's nonce at all.
            rp.store.cache_set(USED_ANSWERS, self.salt, 1, 2 * rp.settings.nonce_skew)


def _answer_nonce(query: dict[str, list[str]]) -> _AnswerNonce | None:
    """The nonce of a positive assertion, or None for anything else (which ``complete``
    refuses or reports in its own words)."""
    try:
        message = Message.from_query(query)
        if message.mode != "id_res":
            return None
        if message.is_openid2:
            server_url = message.get("op_endpoint")
            if not server_url:
                return None
            timestamp, salt = nonce.parse_nonce(message.get("response_nonce") or "")
            check_server_url(server_url)
            return _AnswerNonce(server_url, timestamp, salt)
        timestamp, salt = nonce.split_rp_nonce(message.get("return_to") or "")
        return _AnswerNonce(None, timestamp, salt)
    except OpenIDError:
        return None


def _linked_user(claim: str) -> AbstractBaseUser | None:
    links = list(
        OpenIDClaim.objects.select_related("user").filter(claim_hash=claim_digest(claim))[:2]
    )
    if len(links) > 1:
        # The unique index forbids this; a table created without it (an older schema, an
        # import) can still hold it, and picking one of the users would be a guess.
        raise MultipleClaimUsageError(
            f"the OpenID {claim!r} is linked to several users; unlink it from all but one"
        )
    return links[0].user if links else None


def getOpenIDs(user: AbstractBaseUser) -> list[str]:
    """The claims linked to ``user``, oldest first (for a user settings page)."""
    return list(
        OpenIDClaim.objects.filter(user=user).order_by("pk").values_list("claim", flat=True)
    )


def linkOpenID(user: AbstractBaseUser, claim: str) -> None:
    """Let ``claim`` (use ``user.openid_claim`` from ``authenticate``) sign in ``user``.

    Linking a claim twice to the same user is harmless; linking one another user holds raises
    ``MultipleClaimUsageError``.
    """
    try:
        with transaction.atomic():
            link, created = OpenIDClaim.objects.get_or_create(
                claim_hash=claim_digest(claim), defaults={"user": user, "claim": claim}
            )
    except IntegrityError as exc:  # a concurrent link of the same claim won the race
        link, created = OpenIDClaim.objects.get(claim_hash=claim_digest(claim)), False
        log.debug("concurrent link of %s: %s", claim, exc)
    if not created and link.user_id != user.pk:
        raise MultipleClaimUsageError(
            f"the OpenID {claim!r} already signs in another user; unlink it there first"
        )


def unlinkOpenID(user: AbstractBaseUser, claim: str) -> None:
    """Stop ``claim`` from signing in ``user``; a claim that was not linked is ignored."""
    OpenIDClaim.objects.filter(user=user, claim_hash=claim_digest(claim)).delete()


get_openids = getOpenIDs
link_openid = linkOpenID
unlink_openid = unlinkOpenID
