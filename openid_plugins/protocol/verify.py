"""Verifying assertions (OpenID 2.0 section 11): the checks that need no network.

The relying party runs them in this order, cheapest first, and stores nothing until every
check has passed: fields present, return_to (11.1), signed-list coverage (11.4), nonce
format and skew (11.3). Discovered-information verification (11.2), the signature itself and
the nonce's single use need the store or the network and live in ``relying_party``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from ..errors import (
    IncompleteAnswerError,
    ProtocolError,
    ReturnToMismatchError,
    SignatureError,
    TookTooLongError,
)
from .message import Message, kv_decode

#: Fields a positive assertion must carry (10.1 for 2.0; 1.1 section 4.2.3.1).
REQUIRED_2 = ("op_endpoint", "return_to", "response_nonce", "assoc_handle", "signed", "sig")
REQUIRED_1 = ("return_to", "identity", "assoc_handle", "signed", "sig")
#: Fields that must be covered by the signature when present (10.1 and 11.4).
MUST_SIGN_2 = ("op_endpoint", "return_to", "response_nonce", "assoc_handle")
MUST_SIGN_IF_PRESENT_2 = ("claimed_id", "identity")
MUST_SIGN_1 = ("return_to", "identity")


def check_fields(message: Message) -> None:
    """Every required field is present and claimed_id/identity come as a pair."""
    required = REQUIRED_2 if message.is_openid2 else REQUIRED_1
    missing = [name for name in required if not message.get(name)]
    if missing:
        raise IncompleteAnswerError(
            "the positive assertion lacks " + ", ".join(f"openid.{m}" for m in missing)
        )
    if message.is_openid2 and (("claimed_id" in message) != ("identity" in message)):
        raise IncompleteAnswerError(
            "openid.claimed_id and openid.identity must both be present or both absent (10.1)"
        )


def signed_keys(message: Message) -> list[str]:
    """The ``openid.signed`` list, checked to cover every field that must be signed."""
    keys = (message.get("signed") or "").split(",")
    present = set(keys)
    if len(present) != len(keys) or "" in present:
        raise IncompleteAnswerError("openid.signed lists a field twice or an empty name")
    fields = message.fields
    absent = [key for key in keys if key not in fields]
    if absent:
        raise IncompleteAnswerError(
            "openid.signed names fields the response does not carry: " + ", ".join(absent)
        )
    if message.is_openid2:
        must = MUST_SIGN_2 + tuple(k for k in MUST_SIGN_IF_PRESENT_2 if k in fields)
    else:
        must = MUST_SIGN_1
    unsigned = [key for key in must if key not in present]
    if unsigned:
        raise IncompleteAnswerError(
            "the OP did not sign " + ", ".join(f"openid.{k}" for k in unsigned) + " (11.4)"
        )
    return keys


def _split(url: str) -> tuple[str, str, int | None, str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ReturnToMismatchError(f"{url!r} has an invalid port") from None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return (
        parts.scheme.lower(),
        (parts.hostname or "").lower(),
        port if port is not None else default,
        parts.path or "/",
        parse_qsl(parts.query, keep_blank_values=True),
    )


def check_return_to(return_to: str, current_url: str) -> None:
    """11.1: scheme, host, port and path equal, and every query argument of return_to is
    present in the URL the response arrived at with the same value - and no other value:
    a framework that reads the other copy of a repeated argument would act on one the OP
    never signed."""
    if return_to == current_url:
        return
    scheme, host, port, path, expected_args = _split(return_to)
    c_scheme, c_host, c_port, c_path, actual_args = _split(current_url)
    if (scheme, host, port, path) != (c_scheme, c_host, c_port, c_path):
        raise ReturnToMismatchError(
            f"openid.return_to {return_to[:200]!r} does not match the URL the response arrived"
            f" at ({current_url[:200]!r}): pass the full current URL as current_url"
        )
    expected: dict[str, list[str]] = {}
    for key, value in expected_args:
        expected.setdefault(key, []).append(value)
    actual: dict[str, list[str]] = {key: [] for key in expected}
    for key, value in actual_args:
        if key in actual:
            actual[key].append(value)
    for key, values in expected.items():
        if sorted(actual[key]) != sorted(values):
            raise ReturnToMismatchError(
                f"query argument {key!r} of openid.return_to is missing or different in the"
                " URL the response arrived at"
            )


def check_nonce_time(timestamp: float, now: float, skew: float) -> None:
    """11.3: a nonce from further than ``skew`` seconds away is refused (a replay store only
    remembers nonces that long)."""
    if timestamp < now - skew:
        raise TookTooLongError(
            f"the response nonce is {int(now - timestamp)} s old, more than the allowed"
            f" {int(skew)} s: the login took too long or the OP's clock is wrong; sign in again"
        )
    if timestamp > now + skew:
        raise TookTooLongError(
            f"the response nonce is {int(timestamp - now)} s in the future, more than the allowed"
            f" {int(skew)} s: the OP's clock is wrong"
        )


def check_authentication_request(message: Message) -> Message:
    """11.4.2.1: an exact copy of the assertion with mode ``check_authentication``."""
    fields = dict(message.fields)
    fields["mode"] = "check_authentication"
    return Message(fields)


def parse_check_authentication(body: bytes) -> tuple[bool, str | None]:
    """11.4.2.2: ``is_valid`` and the ``invalidate_handle`` the OP confirms, if any."""
    try:
        fields = kv_decode(body)
    except ProtocolError as exc:
        raise SignatureError(f"the OP's check_authentication answer is not KV form: {exc}") from exc
    return fields.get("is_valid") == "true", fields.get("invalidate_handle") or None
