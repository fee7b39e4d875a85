"""Response nonces (OpenID 2.0 section 10.1, checked per 11.3) and the RP's own nonce in
every return_to URL, where the OP's signature over ``return_to`` protects it. In OpenID 1.x,
which has no ``openid.response_nonce``, it is the replay protection; in 2.0 it binds an
answer to the session that asked for it (no login CSRF with an attacker's own answer).

Format: an RFC 3339 UTC time without fractions, then up to 235 printable ASCII characters,
e.g. ``2005-05-15T17:11:51ZUNIQUE``. The timestamp bounds how long used nonces are kept.
"""

from __future__ import annotations

import calendar
import re
import secrets
import time
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import IncompleteAnswerError, ProtocolError

#: 10.1: "A string 255 characters or less in length".
MAX_NONCE_LENGTH = 255
#: The return_to argument carrying the RP's nonce (python-openid: janrain_nonce).
RP_NONCE_ARG = "openid_plugins.nonce"

# 10.1: RFC 3339 section 5.6 date-time, UTC ("Z"), no fractional seconds; then printable
# non-whitespace ASCII (33-126) to make it unique.
_NONCE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z([\x21-\x7e]*)\Z"
)
_SALT_RE = re.compile(r"[\x21-\x7e]*\Z")
#: Length of the date-time part, which leaves 235 characters for the salt.
_TIME_LENGTH = len("2005-05-15T17:11:51Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def make_nonce(now: float, salt: str | None = None) -> str:
    """A nonce stamped ``now`` (POSIX seconds, from the configured clock) with a random
    salt of 8 URL-safe characters unless ``salt`` is given."""
    if salt is None:
        salt = secrets.token_urlsafe(6)
    elif not _SALT_RE.match(salt) or len(salt) > MAX_NONCE_LENGTH - _TIME_LENGTH:
        raise ProtocolError(
            f"nonce salt {salt[:20]!r} must be at most {MAX_NONCE_LENGTH - _TIME_LENGTH}"
            " printable non-space ASCII characters (10.1)"
        )
    return time.strftime(_TIME_FORMAT, time.gmtime(int(now))) + salt


def parse_nonce(nonce: str) -> tuple[int, str]:
    """Split a nonce into (POSIX timestamp, salt); raise ``IncompleteAnswerError`` when it
    is not in the 10.1 format (too long, not UTC, impossible date, non-printable)."""
    if not isinstance(nonce, str):
        raise IncompleteAnswerError("the response has no nonce (openid.response_nonce, 10.1)")
    if len(nonce) > MAX_NONCE_LENGTH:
        raise IncompleteAnswerError(
            f"response nonce is longer than {MAX_NONCE_LENGTH} characters (10.1)"
        )
    match = _NONCE_RE.match(nonce)
    if match is None:
        raise IncompleteAnswerError(
            f"response nonce {nonce[:40]!r} does not start with a UTC time like "
            "2005-05-15T17:11:51Z or has non-printable characters (10.1)"
        )
    return _timestamp(nonce[:_TIME_LENGTH]), match.group(7)


@lru_cache(maxsize=512)
def _timestamp(stamp: str) -> int:
    """POSIX time of a matched date-time; cached, as a busy RP sees the same second often."""
    year, month, day, hour, minute, second = (
        int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
        int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19]),
    )  # fmt: skip
    # RFC 3339 5.6 allows second 60 (a leap second); POSIX time folds it into the next one.
    # Year 0000 matches the pattern but exists in no calendar Python computes with.
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= _days_in(year, month)) or (
        hour > 23 or minute > 59 or second > 60
    ):
        raise IncompleteAnswerError(f"response nonce {stamp!r} is not a valid date (10.1)")
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def add_rp_nonce(return_to: str, now: float) -> str:
    """``return_to`` with a fresh RP nonce in its query."""
    parts = urlsplit(return_to)
    argument = urlencode({RP_NONCE_ARG: make_nonce(now)})
    query = f"{parts.query}&{argument}" if parts.query else argument
    return urlunsplit(parts._replace(query=query))


def split_rp_nonce(return_to: str) -> tuple[int, str]:
    """The (timestamp, salt) of the RP nonce in a signed ``return_to``.

    Read it from ``openid.return_to`` (covered by the signature), never from the request's
    own query: an attacker can add arguments there. Raises ``IncompleteAnswerError`` when
    there is none, or more than one.
    """
    values = [
        value
        for key, value in parse_qsl(urlsplit(return_to).query, keep_blank_values=True)
        if key == RP_NONCE_ARG
    ]
    if len(values) != 1:
        raise IncompleteAnswerError(
            f"return_to carries {len(values)} {RP_NONCE_ARG} arguments instead of one: "
            "this response was not made for a request of ours"
        )
    return parse_nonce(values[0])


def _days_in(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31
