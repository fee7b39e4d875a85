"""Associations (OpenID 2.0 section 8) and message signatures (section 6), RP side.

Builds ``associate`` requests, turns the OP's Key-Value answer into an ``Association``
(Diffie-Hellman through ``cryptography``, never by hand), negotiates once when the OP
answers ``unsupported-type``, and signs / verifies messages with the association's HMAC.
No network I/O: the caller POSTs the request and hands back the parsed response.

Diffie-Hellman cost: ``cryptography`` runs OpenSSL's full parameter check (a primality test,
about 40 ms for the 1024-bit default group of Appendix B) every time the OP's public key
is loaded, because that group is not one OpenSSL knows by name. ``FFDHE2048_GROUP``
(RFC 7919) is known by name, so the whole RP side takes under 1 ms with a stronger group;
section 8.1.2 lets the RP choose p and g, so it is what we ask for first
(``PREFERRED_DH_GROUP``). An OP that ignores ``openid.dh_modulus`` answers with a public
key below 2^1024 (it computed in the default group), which a genuine ffdhe2048 key is with
probability 2^-1024: that is detected (``DHGroupIgnoredError``) and the request repeated
once in the default group, so no wrong MAC key is ever stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.utils import CryptographyDeprecationWarning

from ..contracts import MAX_HANDLE_LENGTH, Association, Clock
from ..errors import (
    AssociationError,
    AssociationRefusedError,
    ConfigurationError,
    IncompleteAnswerError,
    ProtocolError,
)
from .message import OPENID2_NS, Message, excerpt, kv_encode

with warnings.catch_warnings():
    # cryptography 50 deprecates finite-field DH, but OpenID 2.0 (8.4.2) defines nothing
    # else: the warning names no action anybody using this library could take.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from cryptography.hazmat.primitives.asymmetric.dh import (
        DHParameterNumbers,
        DHParameters,
        DHPrivateKey,
        DHPublicNumbers,
    )

log = logging.getLogger("openid_plugins.protocol.association")

HMAC_SHA1 = "HMAC-SHA1"
HMAC_SHA256 = "HMAC-SHA256"
DH_SHA1 = "DH-SHA1"
DH_SHA256 = "DH-SHA256"
NO_ENCRYPTION = "no-encryption"

#: Appendix B: the default modulus; 8.1.2: the default generator is 2.
DEFAULT_DH_MODULUS = int(
    "DCF93A0B883972EC0E19989AC5A2CE310E1D37717E8D9571BB7623731866E61E"
    "F75A2E27898B057F9891C2E27A639C3F29B60814581CD3B2CA3986D268370557"
    "7D45C2E7E52DC81C7A171876E5CEA74B1448BFDFAF18828EFD2519F14E45E382"
    "6634AF1949E5B535CC829A483B8A76223E5D490A257F05BDFF16F2FB22C583AB",
    16,
)
DEFAULT_DH_GENERATOR = 2

# 6.2 / 8.3: the signature algorithm of each association type.
_ASSOC_HASHES: dict[str, Callable] = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}
_ASSOC_DIGEST_NAMES = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}
# 8.2.3: H of each Diffie-Hellman session type.
_SESSION_HASHES: dict[str, Callable] = {DH_SHA1: hashlib.sha1, DH_SHA256: hashlib.sha256}
# 8.4.2: a DH session's MAC key is as long as its hash, so it carries one association type;
# 8.4.1: no-encryption carries either.
_COMPATIBLE = {
    DH_SHA256: (HMAC_SHA256,),
    DH_SHA1: (HMAC_SHA1,),
    NO_ENCRYPTION: (HMAC_SHA256, HMAC_SHA1),
}
# 8.2.1: handles are 1..255 characters in the range 33-126.
_HANDLE_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_HANDLE_LENGTH}}}\Z")


# -- integers (section 4.2) ------------------------------------------------------------------


def btwoc(n: int) -> bytes:
    """Shortest big-endian two's complement of a non-negative integer (4.2)."""
    if n < 0:
        raise ProtocolError("btwoc encodes only the non-negative integers OpenID uses (4.2)")
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def int_from_btwoc(data: bytes) -> int:
    """The integer a btwoc string encodes (negative when its top bit is set)."""
    return int.from_bytes(data, "big", signed=True)


def b64_btwoc_encode(n: int) -> str:
    """``base64(btwoc(n))``, the wire form of DH values (8.1.2, 8.2.3)."""
    return base64.b64encode(btwoc(n)).decode("ascii")


def b64_btwoc_decode(text: str) -> int:
    """Inverse of ``b64_btwoc_encode``; raises ``ProtocolError`` for invalid base64."""
    return int_from_btwoc(_b64decode(text, "integer"))


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ProtocolError(f"{what} {text[:40]!r} is not valid base64") from None


# -- Diffie-Hellman (sections 8.1.2, 8.2.3, 8.4.2) -------------------------------------------


@dataclass(frozen=True)
class DHGroup:
    """The modulus p and generator g the RP chooses for a DH session (8.4.2)."""

    modulus: int
    generator: int

    @property
    def is_default(self) -> bool:
        return (self.modulus, self.generator) == (DEFAULT_DH_MODULUS, DEFAULT_DH_GENERATOR)

    @property
    def parameter_numbers(self) -> DHParameterNumbers:
        return _parameters(self.modulus, self.generator)[0]

    def parameters(self) -> DHParameters:
        """The checked ``cryptography`` parameters, built once per process and group."""
        return _parameters(self.modulus, self.generator)[1]


class DHGroupIgnoredError(AssociationError):
    """The OP computed in the default group although we sent our own modulus."""


#: Appendix B's group, which every OP supports.
DEFAULT_DH_GROUP = DHGroup(DEFAULT_DH_MODULUS, DEFAULT_DH_GENERATOR)
#: RFC 7919 ffdhe2048, g = 2: stronger, and far cheaper with OpenSSL (see the module doc).
FFDHE2048_GROUP = DHGroup(
    int(
        "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695"
        "A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A"
        "D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
        "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A"
        "BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4"
        "AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
        "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005"
        "C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF",
        16,
    ),
    2,
)
#: The group associate requests use first (see the module docstring for why).
PREFERRED_DH_GROUP = FFDHE2048_GROUP


@lru_cache(maxsize=8)
def _parameters(modulus: int, generator: int) -> tuple[DHParameterNumbers, DHParameters]:
    numbers = DHParameterNumbers(modulus, generator)
    try:
        return numbers, numbers.parameters()
    except ValueError as exc:
        raise ConfigurationError(
            f"cryptography refused the Diffie-Hellman group ({modulus.bit_length()}-bit p,"
            f" {generator.bit_length()}-bit g): {exc}; use DEFAULT_DH_GROUP or a safe prime"
            " of at least 1024 bits"
        ) from None


def unmask_mac_key(shared: int, enc_mac_key: bytes, session_type: str) -> bytes:
    """``H(btwoc(shared)) XOR enc_mac_key`` (8.2.3); the same operation masks a key."""
    digest = _SESSION_HASHES[session_type](btwoc(shared)).digest()
    if len(enc_mac_key) != len(digest):
        raise AssociationError(
            f"enc_mac_key is {len(enc_mac_key)} bytes, {session_type} needs {len(digest)} (8.4.2)"
        )
    return bytes(a ^ b for a, b in zip(digest, enc_mac_key))


class DHSession:
    """The RP side of a DH-SHA1 or DH-SHA256 association session."""

    def __init__(
        self,
        session_type: str = DH_SHA256,
        group: DHGroup = DEFAULT_DH_GROUP,
        *,
        private_key: DHPrivateKey | None = None,
    ) -> None:
        if session_type not in _SESSION_HASHES:
            raise AssociationError(f"{session_type!r} is not a Diffie-Hellman session type")
        self.session_type = session_type
        self.group = group
        if private_key is None:
            private_key = group.parameters().generate_private_key()
        else:
            own = private_key.private_numbers().public_numbers.parameter_numbers
            if (own.p, own.g) != (group.modulus, group.generator):
                raise ConfigurationError("the private key given is not in this session's group")
        self._private_key = private_key
        #: g ^ xa mod p, sent as openid.dh_consumer_public.
        self.public: int = private_key.public_key().public_numbers().y

    def request_args(self) -> dict[str, str]:
        """The DH fields of the associate request (without the ``openid.`` prefix)."""
        args = {"dh_consumer_public": b64_btwoc_encode(self.public)}
        if not self.group.is_default:
            # 8.1.2: modulus and generator may only be left out when they are the defaults.
            args["dh_modulus"] = b64_btwoc_encode(self.group.modulus)
            args["dh_gen"] = b64_btwoc_encode(self.group.generator)
        return args

    def extract_secret(self, response_fields: Mapping[str, str]) -> bytes:
        """The MAC key from ``dh_server_public`` and ``enc_mac_key`` (8.2.3)."""
        server_public = int_from_btwoc(_field_bytes(response_fields, "dh_server_public"))
        enc_mac_key = _field_bytes(response_fields, "enc_mac_key")
        # 1 and p-1 (and anything outside the group) would make the shared secret
        # predictable to an attacker in the middle.
        if not 1 < server_public < self.group.modulus - 1:
            raise AssociationError(
                "the OP's Diffie-Hellman public key is out of range (1 < y < p-1 fails);"
                " the association is refused"
            )
        if (
            not self.group.is_default
            and self.group.modulus.bit_length() > DEFAULT_DH_MODULUS.bit_length()
            and server_public.bit_length() <= DEFAULT_DH_MODULUS.bit_length()
        ):
            raise DHGroupIgnoredError(
                "the OP's public key lies in the default 1024-bit group: it ignored"
                " openid.dh_modulus (8.1.2)"
            )
        return unmask_mac_key(self.exchange(server_public), enc_mac_key, self.session_type)

    def exchange(self, server_public: int) -> int:
        """The shared secret ``server_public ^ xa mod p`` (8.4.2), computed by OpenSSL."""
        try:
            peer = DHPublicNumbers(server_public, self.group.parameter_numbers).public_key()
            shared = self._private_key.exchange(peer)
        except ValueError as exc:
            raise AssociationError(f"Diffie-Hellman exchange with the OP failed: {exc}") from None
        return int.from_bytes(shared, "big")


class NoEncryptionSession:
    """The no-encryption session (8.4.1): the MAC key travels in the clear, so it is only
    ever used when the OP endpoint is https."""

    session_type = NO_ENCRYPTION

    def request_args(self) -> dict[str, str]:
        return {}

    def extract_secret(self, response_fields: Mapping[str, str]) -> bytes:
        return _field_bytes(response_fields, "mac_key")


def _field_bytes(fields: Mapping[str, str], key: str) -> bytes:
    value = fields.get(key)
    if value is None:
        raise AssociationError(f"the associate response lacks {key} (8.2)")
    try:
        return _b64decode(value, key)
    except ProtocolError as exc:
        raise AssociationError(f"the associate response's {exc}") from None


# -- signatures (section 6) --------------------------------------------------------------------


def mac(assoc_type: str, key: bytes, data: bytes) -> bytes:
    """The HMAC of ``data`` for an association type (6.2)."""
    try:
        digest = _ASSOC_DIGEST_NAMES[assoc_type]
    except KeyError:
        raise AssociationError(
            f"unknown association type {assoc_type!r}; only HMAC-SHA1 and HMAC-SHA256 exist"
        ) from None
    return hmac.digest(key, data, digest)


def signing_input(fields: Mapping[str, str], signed_keys: Sequence[str]) -> bytes:
    """The KV form of the signed fields, in ``openid.signed`` order, keys without the
    ``openid.`` prefix (6.1 steps 2-3). ``fields`` are ``Message.fields``."""
    try:
        text = "".join([f"{key}:{fields[key]}\n" for key in signed_keys])
    except KeyError as exc:
        raise IncompleteAnswerError(
            f"openid.signed lists {exc.args[0]!r}, which the message lacks"
        ) from None
    # 4.1.1: a newline in a value, or a colon or newline in a key, has no KV form; such a
    # message cannot have been signed as it reads.
    if text.count("\n") != len(signed_keys) or any(":" in key for key in signed_keys):
        return kv_encode([(key, fields[key]) for key in signed_keys])
    return text.encode("utf-8")


def sign(association: Association, fields: Mapping[str, str], signed_keys: Sequence[str]) -> str:
    """base64 of the association's HMAC over the signed fields (section 6)."""
    data = signing_input(fields, signed_keys)
    return base64.b64encode(mac(association.assoc_type, association.secret, data)).decode()


def check_signature(
    association: Association,
    message_fields: Mapping[str, str],
    signed_list: str | Sequence[str],
    sig: str,
) -> bool:
    """Whether ``sig`` is the association's signature over the listed fields (11.4.1).

    ``signed_list`` is the ``openid.signed`` value (or its split list); ``message_fields``
    are ``Message.fields``. Compared in constant time.
    """
    if not isinstance(sig, str):
        return False
    keys = signed_list.split(",") if isinstance(signed_list, str) else list(signed_list)
    expected = sign(association, message_fields, keys)
    return hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8"))


# -- association requests and responses (sections 8.1, 8.2) -----------------------------------


def allowed_types(server_url: str, *, openid2: bool = True) -> list[tuple[str, str]]:
    """(assoc_type, session_type) pairs we accept with an OP, best first.

    HMAC-SHA256 is RECOMMENDED (6.2); no-encryption only over https (8.4.1). OpenID 1.1
    knows only HMAC-SHA1 and DH-SHA1 or a cleartext session.
    """
    https = urlsplit(server_url).scheme.lower() == "https"
    if openid2:
        pairs = [(HMAC_SHA256, DH_SHA256), (HMAC_SHA1, DH_SHA1)]
        if https:
            pairs += [(HMAC_SHA256, NO_ENCRYPTION), (HMAC_SHA1, NO_ENCRYPTION)]
    else:
        pairs = [(HMAC_SHA1, DH_SHA1)] + ([(HMAC_SHA1, NO_ENCRYPTION)] if https else [])
    return pairs


@dataclass(frozen=True)
class UnsupportedType:
    """The OP answered ``error_code=unsupported-type`` (8.2.4), maybe with a suggestion."""

    error: str
    assoc_type: str | None
    session_type: str | None

    def retry(self, request: AssociationRequest) -> AssociationRequest | None:
        """A new request following the OP's suggestion, when we allow it and it differs
        from what was refused; None when there is nothing acceptable to try."""
        allowed = allowed_types(request.server_url, openid2=request.openid2)
        candidates = [
            pair
            for pair in allowed
            if self.assoc_type in (None, pair[0]) and self.session_type in (None, pair[1])
        ]
        if self.assoc_type is None and self.session_type is None:
            candidates = []
        tried = (request.assoc_type, request.session_type)
        if not candidates:
            # No suggestion at all (Steam: "Associations not supported"), or one we do not
            # accept: the caller reports the refusal once.
            return None
        for assoc_type, session_type in candidates:
            if (assoc_type, session_type) != tried:
                return AssociationRequest.create(
                    request.server_url,
                    assoc_type,
                    session_type,
                    openid2=request.openid2,
                    group=request.group,
                )
        return None

    def describe(self) -> str:
        """What the OP said, for the refusal's message."""
        said = f"{excerpt(self.error)!r}" if self.error else "no reason"
        if self.assoc_type is None and self.session_type is None:
            return f"it answered {said} and suggested no other type"
        return f"it answered {said} and suggested {self.assoc_type}/{self.session_type}"


@dataclass(frozen=True)
class AssociationRequest:
    """One ``associate`` request and the session secret needed to read its answer."""

    server_url: str
    assoc_type: str
    session: DHSession | NoEncryptionSession
    openid2: bool
    group: DHGroup

    @classmethod
    def create(
        cls,
        server_url: str,
        assoc_type: str = HMAC_SHA256,
        session_type: str = DH_SHA256,
        *,
        openid2: bool = True,
        group: DHGroup = DEFAULT_DH_GROUP,
    ) -> AssociationRequest:
        """Raises ``AssociationError`` for a pair ``allowed_types`` does not list: an
        inconsistent one, no-encryption over http, or one OpenID 1.1 lacks."""
        if (assoc_type, session_type) not in allowed_types(server_url, openid2=openid2):
            raise AssociationError(
                f"{assoc_type} over a {session_type} session is not allowed with {server_url}"
                f" (OpenID {'2.0' if openid2 else '1.1'}; no-encryption needs https, 8.4.1)"
            )
        session: DHSession | NoEncryptionSession
        if session_type == NO_ENCRYPTION:
            session = NoEncryptionSession()
        else:
            session = DHSession(session_type, group)
        return cls(server_url, assoc_type, session, openid2, group)

    @property
    def session_type(self) -> str:
        return self.session.session_type

    def to_message(self) -> Message:
        """The request (8.1), to POST to ``server_url`` as a direct request."""
        fields = {"mode": "associate", "assoc_type": self.assoc_type}
        if self.openid2:
            fields = {"ns": OPENID2_NS, **fields, "session_type": self.session_type}
        elif self.session_type != NO_ENCRYPTION:
            # OpenID 1.1 section 4.1.1: a blank (absent) session_type means cleartext.
            fields["session_type"] = self.session_type
        fields.update(self.session.request_args())
        return Message(fields)

    def parse_response(self, response: Message, now: float) -> Association | UnsupportedType:
        """The association in the OP's answer (8.2), issued ``now``; an ``UnsupportedType``
        for a negotiable refusal (8.2.4). Raises ``AssociationError`` for anything else."""
        fields = response.fields
        if fields.get("error_code") == "unsupported-type":
            return UnsupportedType(
                error=fields.get("error", ""),
                assoc_type=fields.get("assoc_type") or None,
                session_type=fields.get("session_type") or None,
            )
        if "error" in fields or response.mode == "error":
            raise AssociationError(
                f"{self.server_url} refused the association: {fields.get('error', '')!r}"
            )
        if fields.get("assoc_type") != self.assoc_type:
            raise AssociationError(
                f"{self.server_url} answered assoc_type {fields.get('assoc_type')!r} to a"
                f" {self.assoc_type} request (8.2.1)"
            )
        session = self._response_session(fields.get("session_type"))
        handle = fields.get("assoc_handle", "")
        if not _HANDLE_RE.match(handle):
            raise AssociationError(
                f"association handle {handle[:40]!r} is not 1-255 printable ASCII characters"
                " (8.2.1)"
            )
        lifetime = fields.get("expires_in", "")
        if not (lifetime.isascii() and lifetime.isdigit()) or int(lifetime) <= 0:
            raise AssociationError(
                f"expires_in {lifetime[:20]!r} is not a positive base-10 integer (8.2.1)"
            )
        secret = session.extract_secret(fields)
        key_length = _ASSOC_HASHES[self.assoc_type]().digest_size
        if len(secret) != key_length:
            raise AssociationError(
                f"the MAC key is {len(secret)} bytes; {self.assoc_type} needs {key_length}"
                " (6.2, 8.4.1)"
            )
        return Association(
            handle=handle,
            secret=secret,
            issued=now,
            lifetime=float(int(lifetime)),
            assoc_type=self.assoc_type,
        )

    def _response_session(self, session_type: str | None) -> DHSession | NoEncryptionSession:
        if self.openid2:
            if session_type != self.session_type:
                raise AssociationError(
                    f"{self.server_url} answered session_type {session_type!r} to a"
                    f" {self.session_type} request (8.2.1)"
                )
            return self.session
        # OpenID 1.1 section 4.1.2: "MAY be blank, absent, or DH-SHA1"; blank is cleartext,
        # which an OP may send whatever we asked (4.1.3).
        answered = session_type or NO_ENCRYPTION
        if answered == self.session_type:
            return self.session
        if answered == NO_ENCRYPTION and (self.assoc_type, NO_ENCRYPTION) in allowed_types(
            self.server_url, openid2=False
        ):
            return NoEncryptionSession()
        raise AssociationError(
            f"{self.server_url} answered with a {answered} session to a {self.session_type}"
            " request; a MAC key sent in the clear over http is refused (8.4.1)"
        )


def negotiate(
    server_url: str,
    post: Callable[[Message], Message],
    clock: Clock,
    *,
    openid2: bool = True,
    group: DHGroup = PREFERRED_DH_GROUP,
) -> Association:
    """Associate with an OP: our preferred type first, then at most one retry with the
    type the OP suggests (8.2.4), and one repeat in the default DH group for an OP that
    ignores ``openid.dh_modulus``. ``post`` sends a request message to ``server_url`` and
    returns the parsed Key-Value answer (error answers, HTTP 400, included).

    Raises ``AssociationRefusedError`` when the OP accepts nothing we allow, and
    ``AssociationError`` for broken answers.
    """
    assoc_type, session_type = allowed_types(server_url, openid2=openid2)[0]
    request = AssociationRequest.create(
        server_url, assoc_type, session_type, openid2=openid2, group=group
    )
    result = _exchange(request, post, clock)
    refusal = result if isinstance(result, UnsupportedType) else None
    if isinstance(result, UnsupportedType):
        retry = result.retry(request)
        if retry is not None:
            log.info(
                "OP %s refused %s/%s (%s); retrying with %s/%s",
                server_url,
                assoc_type,
                session_type,
                result.error,
                retry.assoc_type,
                retry.session_type,
            )
            result = _exchange(retry, post, clock)
    if isinstance(result, Association):
        return result
    if isinstance(result, UnsupportedType):
        refusal = result
    said = f": {refusal.describe()}" if refusal is not None else ""
    raise AssociationRefusedError(
        f"{server_url} supports no association type we accept"
        f" ({', '.join('/'.join(pair) for pair in allowed_types(server_url, openid2=openid2))})"
        f"{said}; logins with it will use direct verification (11.4.2)"
    )



def _exchange(
    request: AssociationRequest, post: Callable[[Message], Message], clock: Clock
) -> Association | UnsupportedType:
    try:
        return request.parse_response(post(request.to_message()), clock.now())
    except DHGroupIgnoredError as exc:
        log.info("%s: %s; repeating in the default group", request.server_url, exc)
        again = AssociationRequest.create(
            request.server_url,
            request.assoc_type,
            request.session_type,
            openid2=request.openid2,
            group=DEFAULT_DH_GROUP,
        )
        return again.parse_response(post(again.to_message()), clock.now())
