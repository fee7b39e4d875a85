"""The limits every HTTP request of the relying party runs under (discovery, associate,
check_authentication): a plain value the protocol layer takes, so it needs no settings
object and no plugin engine."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError


@dataclass(frozen=True)
class FetchSettings:
    """Limits for every HTTP request the relying party makes (discovery, associate,
    check_authentication)."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: Responses are streamed and cut off past this many bytes.
    max_bytes: int = 1024 * 1024
    max_redirects: int = 5
    #: Wall-clock limit for one fetch, redirects included, so a server that drips bytes
    #: slowly (each read within ``read_timeout``) still cannot hold a request forever.
    total_timeout: float = 30.0
    #: What a person waits for: every fetch of one ``begin()`` or ``complete()`` (discovery,
    #: an inline ``associate``, ``check_authentication``) shares this many seconds, end to
    #: end. The background fetcher is bounded by ``total_timeout`` per fetch instead.
    user_timeout: float = 5.0
    verify_tls: bool = True
    #: Refuse private, loopback and link-local addresses (SSRF guard, ``protocol.ssrf``;
    #: ruby-openid CVE-2019-11027). On by default: identifiers and the URLs their pages
    #: name are chosen by strangers. Turn it off only to sign in against an OP on this
    #: machine or network (development, tests); the relying party logs a warning then.
    block_private_addresses: bool = True
    user_agent: str = "openid-plugins"

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout", "user_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"fetch_{name} must be a positive number of seconds")
