"""The exception hierarchy: every failure the library reports is an ``OpenIDError``.

Names from seed 004 (openid2rp's Django backend) are kept where it names them, so a site can
render each case in its own way without parsing messages.
"""

from __future__ import annotations


class OpenIDError(Exception):
    """Root of every error this library raises on purpose."""


# -- configuration and plugins ------------------------------------------------------------


class ConfigurationError(OpenIDError):
    """A setting is missing or invalid; fix the configuration and restart."""


class UnknownSchemeError(ConfigurationError):
    """No installed plugin handles a store or queue URL's scheme."""


class PluginError(OpenIDError):
    """A plugin failed to load or broke its hook contract."""


# -- backends -------------------------------------------------------------------------------


class StoreError(OpenIDError):
    """A store backend failed (server down, disk full, ...); the operation did not happen."""


class QueueError(OpenIDError):
    """A queue backend failed; the item was neither lost nor half-written."""


# -- HTTP ---------------------------------------------------------------------------------


class FetchError(OpenIDError):
    """An HTTP fetch failed: connection, timeout, status, size or redirect limits."""

    def __init__(self, message: str, *, url: str | None = None, reason: str | None = None):
        super().__init__(message)
        #: The URL that could not be fetched, when the failure is about one (a connection).
        self.url = url
        #: Why, in a few words ("connection refused"), for messages that name the URL
        #: themselves; the whole message when nothing shorter is known.
        self.reason = reason or message


class FetchRefusedError(FetchError):
    """The fetch policy refused a URL before any connection was made (e.g. SSRF guard)."""


class FetchTimeoutError(FetchError):
    """A fetch did not complete in time: connect, read or total timeout, or the budget of a
    user-facing call (``fetch_user_timeout``)."""


class ResponseTooLargeError(FetchError):
    """A response exceeded the configured maximum size and was cut off."""


# -- begin(): identifiers and discovery ---------------------------------------------------


class IncorrectURIError(OpenIDError):
    """The user-supplied identifier cannot be normalized (OpenID 2.0 section 7.2)."""


class XRIError(IncorrectURIError):
    """An XRI was given and no installed plugin resolves XRIs."""


class RealmError(IncorrectURIError):
    """A realm (OpenID 2.0 section 9.2) cannot be parsed: fix the site's configured realm."""


class DiscoveryError(OpenIDError):
    """Discovery (OpenID 2.0 section 7.3) found no usable OpenID service."""


class IncorrectClaimError(DiscoveryError):
    """Discovery for the user's claim failed: a typo, or the provider is unavailable."""


class XRDSError(DiscoveryError):
    """An XRDS document was malformed or hostile (entity expansion, external entities)."""


class XRDSRefusedError(XRDSError):
    """An XRDS document used a DTD, entities or external references (billion laughs, XXE);
    it is refused outright, with no fallback to HTML discovery."""


class YadisError(DiscoveryError):
    """The Yadis protocol failed after the identifier page was fetched: an unusable or
    ambiguous X-XRDS-Location, or the XRDS document could not be fetched."""


# -- associations ---------------------------------------------------------------------------


class AssociationError(OpenIDError):
    """An association could not be made; logins can still complete statelessly."""


class AssociationRefusedError(AssociationError):
    """The OP refused every association type we are willing to use."""


# -- complete(): the response -------------------------------------------------------------


class ProtocolError(OpenIDError):
    """A message does not follow the OpenID wire format (KV form, namespaces, encoding)."""


class CancelledError(OpenIDError):
    """The user cancelled at the OP (openid.mode=cancel)."""


class SetupNeededError(OpenIDError):
    """An immediate request needs user interaction; send the user to ``setup_url``."""

    def __init__(self, message: str, setup_url: str | None = None) -> None:
        super().__init__(message)
        self.setup_url = setup_url


class ProviderError(OpenIDError):
    """The OP answered with an error response (openid.mode=error)."""

    def __init__(self, message: str, contact: str | None = None, reference: str | None = None):
        super().__init__(message)
        self.contact = contact
        self.reference = reference


class AuthenticationError(OpenIDError):
    """The positive assertion could not be verified; the user is not signed in."""


class MissingSessionError(AuthenticationError):
    """No begin() state is in the session for this response: start with begin()."""


class IncompleteAnswerError(AuthenticationError):
    """The response is malformed or lacks required (or required-signed) fields."""


class SignatureError(AuthenticationError):
    """The signature does not verify, or the OP did not confirm it (check_authentication)."""


class CheckAuthenticationError(SignatureError):
    """The OP could not be asked to confirm the signature (11.4.2): it answered
    ``check_authentication`` with an HTTP error (403, 429 ...), with something other than
    Key-Value form, or not in time. The assertion is unverified, not known to be forged;
    the message says what the OP answered."""


class ReturnToMismatchError(AuthenticationError):
    """openid.return_to does not match the URL the response arrived at (section 11.1)."""


class DiscoveryMismatchError(AuthenticationError):
    """The asserted identifier's discovered information does not match (section 11.2)."""


class ReplayAttackError(AuthenticationError):
    """The response nonce was already used: this assertion is being replayed (section 11.3)."""


class TookTooLongError(AuthenticationError):
    """The response nonce is outside the allowed clock skew, or the login took too long."""


class UntrustedProviderError(AuthenticationError):
    """The OP is not one this site (``allowed_op_endpoints``), this sign-in
    (``begin(op_endpoints=...)``) or its provider profile accepts. ``complete()`` raises it
    before anything else, so an assertion from an unlisted OP costs no discovery, no
    signature check and no request to that OP; ``begin()`` raises it for an identifier
    whose discovered OP is not listed."""


class UntrustedIdentifierError(DiscoveryMismatchError):
    """The claimed identifier does not have the form the sign-in's provider profile says
    its OP issues (a Steam assertion naming an identifier on another host): refused before
    any discovery, so the identifier's host is never contacted."""


class PolicyError(AuthenticationError):
    """An extension policy was violated (e.g. PAPE max_auth_age)."""


class MultipleClaimUsageError(AuthenticationError):
    """The authenticated claim is linked to several users; correct the user database."""
