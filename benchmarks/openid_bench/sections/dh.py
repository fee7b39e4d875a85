"""Section 3, ``dh``: one DH-SHA256 association, the relying party's side only.

Key generation and request encoding, then secret extraction, are timed; the OP's answer is
computed between the two timed halves with python3-openid's server code, so only the RP's
CPU counts. Both libraries with Appendix B's 1024-bit group and with RFC 7919 ffdhe2048,
and the verdict compares the group each library asks an OP for first.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openid import cryptutil
from openid.consumer.consumer import DiffieHellmanSHA256ConsumerSession
from openid.dh import DiffieHellman
from openid.message import OPENID2_NS as THEIR_NS
from openid.message import Message as TheirMessage

from openid_plugins.protocol import association
from openid_plugins.protocol.association import (
    DEFAULT_DH_GROUP,
    DH_SHA256,
    FFDHE2048_GROUP,
    DHSession,
)

from ..context import Context, Sizes, say, show, speedup
from ..fixtures import Timing


@dataclass(frozen=True)
class RPSide:
    """How one library does the relying party's half of a DH association, split where the
    OP's answer comes in so that only the library's own work is timed."""

    #: What the measurement is called, before the group's label.
    name: str
    #: Who is blamed when the extracted MAC key is wrong.
    who: str
    #: Timed: a session for the group, and its request.
    start: Callable[[Any], Any]
    #: Untimed: the session's public key, for the OP.
    public: Callable[[Any], int]
    #: Untimed: the OP's answer, as the library takes it.
    read: Callable[[dict[str, str]], Any]
    #: Timed: the MAC key, from the session and the answer.
    extract: Callable[[Any, Any], bytes]


def _our_start(group: Any) -> DHSession:
    session = DHSession(DH_SHA256, group)
    session.request_args()
    return session


def _their_start(group: Any) -> DiffieHellmanSHA256ConsumerSession:
    session = DiffieHellmanSHA256ConsumerSession(DiffieHellman(group.modulus, group.generator))
    session.getRequest()
    return session


OURS = RPSide(
    name="ours DHSession",
    who="our DH session",
    start=_our_start,
    public=lambda session: session.public,
    read=lambda answer: answer,
    extract=lambda session, answer: session.extract_secret(answer),
)
THEIRS = RPSide(
    name="python3-openid DH consumer session",
    who="python3-openid",
    start=_their_start,
    public=lambda session: session.dh.public,
    read=lambda answer: TheirMessage.fromOpenIDArgs({"ns": THEIR_NS, **answer}),
    extract=lambda session, message: session.extractSecret(message),
)


def server_answer(consumer_public: int, group: Any, mac_key: bytes) -> dict[str, str]:
    """The OP's side (8.4.2), by python3-openid's server code path, untimed."""
    server = DiffieHellman(group.modulus, group.generator)
    enc = server.xorSecret(consumer_public, mac_key, cryptutil.sha256)
    answer = {
        "dh_server_public": cryptutil.longToBase64(server.public),
        "enc_mac_key": cryptutil.toBase64(enc),
    }
    # python3-openid returns bytes or str depending on the helper; the wire is text.
    return {k: v.decode("ascii") if isinstance(v, bytes) else v for k, v in answer.items()}


def time_side(side: RPSide, label: str, group: Any, sizes: Sizes) -> Timing:
    """Up to ``sizes.dh`` associations of ``side`` with ``group``, each checked."""
    timing = Timing(f"{side.name} {label}")
    deadline = time.monotonic() + sizes.dh_seconds
    for i in range(sizes.dh + 1):
        mac_key = secrets.token_bytes(32)
        started = time.perf_counter()
        session = side.start(group)
        first = time.perf_counter() - started
        answer = side.read(server_answer(side.public(session), group, mac_key))
        started = time.perf_counter()
        secret = side.extract(session, answer)
        second = time.perf_counter() - started
        if secret != mac_key:
            raise AssertionError(f"{side.who} extracted the wrong MAC key")
        if i:  # the first one builds the cached group parameters
            timing.seconds.append(first + second)
        if time.monotonic() > deadline:
            timing.notes.append(f"stopped after {i} of {sizes.dh} ({sizes.dh_seconds:.0f} s)")
            break
    return timing


def run(ctx: Context) -> dict[str, Any]:
    say("one DH-SHA256 association, RP-side CPU only (OP answer computed untimed)")
    sizes = ctx.sizes
    out: dict[str, Any] = {
        "ours_default_group": show(
            time_side(OURS, "default group (1024-bit, App. B)", DEFAULT_DH_GROUP, sizes)
        ),
        "theirs_default_group": show(
            time_side(THEIRS, "default group (1024-bit)", DEFAULT_DH_GROUP, sizes)
        ),
        "ours_ffdhe2048": show(time_side(OURS, "ffdhe2048 (RFC 7919)", FFDHE2048_GROUP, sizes)),
        "theirs_ffdhe2048": show(time_side(THEIRS, "ffdhe2048", FFDHE2048_GROUP, sizes)),
    }
    out["speedup"] = {
        "default_group": speedup(out["ours_default_group"], out["theirs_default_group"]),
        "ffdhe2048": speedup(out["ours_ffdhe2048"], out["theirs_ffdhe2048"]),
        "ours_ffdhe2048_vs_theirs_default": speedup(
            out["ours_ffdhe2048"], out["theirs_default_group"]
        ),
    }
    # What each library asks an OP for first: python3-openid always uses Appendix B's group.
    preferred = getattr(association, "PREFERRED_DH_GROUP", DEFAULT_DH_GROUP)
    out["ours_requests_first"] = "ffdhe2048" if preferred == FFDHE2048_GROUP else "default"
    out["speedup"]["as_requested_first"] = out["speedup"][
        "ours_ffdhe2048_vs_theirs_default"
        if out["ours_requests_first"] == "ffdhe2048"
        else "default_group"
    ]
    for key, value in out["speedup"].items():
        say(f"  speed-up {key}: {value}x")
    return out
