"""Authentication requests (OpenID 2.0 section 9; 1.1 section 4.2): the ``checkid_*``
message for a discovered endpoint, and how it reaches the OP (redirect or form POST)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..contracts import Association
from ..errors import ConfigurationError, IncorrectURIError
from .endpoint import Endpoint
from .message import OPENID2_NS, Message
from .urinorm import split_uri

#: 9.1: what an RP sends as claimed_id and identity to let the OP choose the identifier.
IDENTIFIER_SELECT = "http://specs.openid.net/auth/2.0/identifier_select"
#: Indirect messages longer than this go by form POST (section 5.2.1).
MAX_REDIRECT_URL = 2047
#: Longer return_to URLs are refused by begin(): the OP sends the user back to it, and a
#: site's own callback URL is short; a long one is a bug or an attack on the work done.
MAX_RETURN_TO_LENGTH = 4096


def check_return_to_url(return_to: str) -> None:
    """Refuse a return_to that is not an absolute http(s) URL of bounded length, before
    begin() does any work for it (the nonce is added to it, the OP redirects to it)."""
    if not isinstance(return_to, str):
        raise ConfigurationError(f"return_to must be a URL string, not {type(return_to).__name__}")
    if len(return_to) > MAX_RETURN_TO_LENGTH:
        raise ConfigurationError(
            f"return_to {return_to[:60]!r}... is {len(return_to)} characters long; at most"
            f" {MAX_RETURN_TO_LENGTH} are accepted"
        )
    try:
        split_uri(return_to)
    except IncorrectURIError as exc:
        raise ConfigurationError(f"return_to is not an absolute http(s) URL: {exc}") from None


@dataclass(frozen=True)
class AuthRequest:
    """Where to send the user: a redirect, or a self-submitting form for long messages."""

    message: Message
    endpoint: Endpoint
    association: Association | None

    @cached_property
    def redirect_url(self) -> str:
        return self.message.to_url(self.endpoint.server_url)

    @property
    def needs_form(self) -> bool:
        return len(self.redirect_url) > MAX_REDIRECT_URL

    @property
    def form_html(self) -> str:
        return self.message.to_form_html(self.endpoint.server_url)


def checkid_message(
    endpoint: Endpoint,
    claimed_id: str,
    return_to: str,
    realm: str,
    *,
    immediate: bool,
    assoc_handle: str | None,
) -> Message:
    """9.1 (2.0) or 1.1 section 4.2.3: the fields of a ``checkid_setup``/``_immediate``."""
    fields: dict[str, str] = {
        "mode": "checkid_immediate" if immediate else "checkid_setup",
        "return_to": return_to,
    }
    if endpoint.is_openid2:
        fields["ns"] = OPENID2_NS
        fields["realm"] = realm
        if endpoint.is_op_identifier:
            # 9.1: let the OP choose the identifier.
            fields["claimed_id"] = fields["identity"] = IDENTIFIER_SELECT
        else:
            fields["claimed_id"] = claimed_id
            fields["identity"] = endpoint.op_local_id or claimed_id
    else:
        fields["trust_root"] = realm
        fields["identity"] = endpoint.op_local_id or claimed_id
    if assoc_handle is not None:
        fields["assoc_handle"] = assoc_handle
    return Message(fields)
