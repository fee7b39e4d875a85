"""From a ``memcached://`` URL and ``StoreOptions.extra`` to the servers and client settings.

Every option can be given on the URL (``?prefix=site1&timeout=0.5``) or in the store options;
giving one in both places with different values is a configuration error, as in
openid-plugins-sql.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openid_plugins.errors import ConfigurationError

DEFAULT_PORT = 11211
DEFAULT_PREFIX = "openid"
#: Seconds. A dead server costs a login at most this long per attempt, never a hang.
DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_TIMEOUT = 1.0
#: Readable and short: the prefix is the only part of a key that is not a hash, and a key
#: must stay within memcached's 250 bytes with no spaces or control characters.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

OPTIONS = (
    "prefix",
    "connect_timeout",
    "timeout",
    "max_pool_size",
    "restart_guard",
    "tls",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
)


@dataclass(frozen=True)
class Target:
    """The memcached servers a store uses and how it talks to them."""

    servers: tuple[tuple[str, int], ...]
    prefix: str = DEFAULT_PREFIX
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT
    #: Connections kept per server and process (None: as many as threads ask for).
    max_pool_size: int | None = None
    #: Refuse nonces stamped before the server that would record them started (it cannot
    #: know whether they were used before its restart); see MemcachedStore.use_nonce.
    restart_guard: bool = True
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @property
    def display(self) -> str:
        """The URL for messages and logs (no credentials exist to hide)."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.servers)
        return f"memcached://{hosts}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context (certificate and host name verified), or None."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"memcached TLS files unusable: {exc}") from exc
        return context


def parse_target(url: str, extra: Mapping[str, Any] | None = None) -> Target:
    """The servers and settings for ``url``; ``ConfigurationError`` if unusable."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "memcached":
        raise ConfigurationError(f"{url!r} is not a memcached:// URL")
    if parts.path not in ("", "/") or parts.fragment or parts.username or "@" in parts.netloc:
        raise ConfigurationError(
            f"{url!r}: a memcached URL names servers only, e.g. "
            "memcached://10.0.0.5:11211,10.0.0.6:11211?prefix=site1"
        )
    servers = tuple(_server(spec, url) for spec in parts.netloc.split(","))
    if len(set(servers)) != len(servers):
        raise ConfigurationError(f"{url!r} names a server twice")
    values = _merged(url, parse_qs(parts.query, keep_blank_values=True), extra or {})

    prefix = values.get("prefix", DEFAULT_PREFIX)
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigurationError(
            f"prefix={prefix!r} is invalid: use 1 to 64 letters, digits, '_', '.' or '-'"
        )
    max_pool = values.get("max_pool_size")
    return Target(
        servers=servers,
        prefix=prefix,
        connect_timeout=_seconds(values, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        timeout=_seconds(values, "timeout", DEFAULT_TIMEOUT),
        max_pool_size=None if max_pool is None else _positive_int("max_pool_size", max_pool),
        restart_guard=_flag("restart_guard", values.get("restart_guard", True)),
        tls=_flag("tls", values.get("tls", False)),
        tls_ca_file=values.get("tls_ca_file") or None,
        tls_cert_file=values.get("tls_cert_file") or None,
        tls_key_file=values.get("tls_key_file") or None,
    )


def _server(spec: str, url: str) -> tuple[str, int]:
    spec = spec.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?", spec)
    if not spec or match is None:
        raise ConfigurationError(
            f"{url!r}: {spec!r} is not host[:port] (IPv6 as [addr]:port); "
            "use e.g. memcached://127.0.0.1:11211"
        )
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise ConfigurationError(f"{url!r}: port {port} is out of range")
    return host, port


def _merged(url: str, query: dict[str, list[str]], extra: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"{url!r}: unknown option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
        )
    values: dict[str, Any] = {}
    for name, given in query.items():
        if len(given) > 1:
            raise ConfigurationError(f"{name} is given more than once in the store URL")
        values[name] = given[0]
    for name in OPTIONS:
        if name not in extra or extra[name] is None:
            continue
        if name in values and str(values[name]) != str(extra[name]):
            raise ConfigurationError(
                f"the store URL says {name}={values[name]!r} but the store options say "
                f"{extra[name]!r}; set it in one place"
            )
        values[name] = extra[name]
    return values


def _seconds(values: Mapping[str, Any], name: str, default: float) -> float:
    raw = values.get(name, default)
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 60):
        raise ConfigurationError(f"{name}={raw!r}: give seconds, more than 0 and at most 60")
    return seconds


def _positive_int(name: str, raw: Any) -> int:
    try:
        number = int(raw)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(number) != str(raw).strip():
        raise ConfigurationError(f"{name}={raw!r}: give a whole number of at least 1")
    return number


def _flag(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r}: give true or false")
