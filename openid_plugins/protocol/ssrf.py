"""The SSRF guard: which addresses a relying party refuses to fetch from.

A relying party fetches URLs chosen by strangers (the identifier a user types, the
``X-XRDS-Location`` and OP endpoints a page names). Without a guard, anyone can make the
RP send requests into its own network: ``http://169.254.169.254/`` (cloud metadata),
``http://localhost:6379/``, the intranet. ruby-openid CVE-2019-11027 is exactly that.

With ``FetchSettings.block_private_addresses`` on, every URL - the first one and each
redirect target - is refused unless *all* the addresses its host resolves to are public.
Checking all of them matters: a name that resolves to one public and one private address
would otherwise be a coin toss away from the intranet.

What is covered: names resolving to private, loopback, link-local, multicast, reserved,
unspecified, shared (CGNAT) or otherwise non-global addresses, IP literals in any form
``getaddrinfo`` accepts (``http://2130706433/``, ``http://0x7f.1/``), and IPv6 addresses
that embed an IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64).

DNS rebinding: ``Fetcher`` resolves a host once, passes those addresses to this check and
then connects only to those same addresses (it pins the connection), so a second,
different DNS answer between check and connect is never used. Not covered: a proxy in
front of the RP (the fetcher ignores proxy environment variables for that reason), and
names that resolve to public addresses routed to private networks by the local network
itself; an egress firewall is the complete answer for those.

The guard is part of the core, not a plugin: ``Fetcher`` applies it whenever
``FetchSettings.block_private_addresses`` is on, and the ``openid_check_fetch_url`` hook can
only add checks after it, so no plugin configuration can switch it off by accident. On by
default; local development (an OP on localhost) turns it off explicitly
(``fetch_block_private_addresses=False``), and ``RelyingParty`` logs a warning when it is off.
"""

from __future__ import annotations

import ipaddress
import logging

from ..errors import FetchRefusedError

log = logging.getLogger("openid_plugins.protocol.ssrf")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Well-known NAT64 prefix (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries, which decide where a packet really goes."""
    embedded: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def non_public_reason(address: str) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "is not an IP address"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attribute, label in checks:
        if getattr(ip, attribute):
            return f"is a {label} address"
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            reason = non_public_reason(str(inner))
            if reason is not None:
                return f"embeds {inner}, which {reason}"
    if not ip.is_global:
        return "is not a globally routable address"
    return None


def check_addresses(url: str, addresses: list[str]) -> None:
    """Raise ``FetchRefusedError`` unless every address is public (and there is one)."""
    if not addresses:
        raise FetchRefusedError(f"refusing to fetch {url}: its host resolved to no address")
    for address in addresses:
        reason = non_public_reason(address)
        if reason is not None:
            log.warning("refused %s: %s %s", url, address, reason)
            raise FetchRefusedError(
                f"refusing to fetch {url}: its host resolves to {address}, which {reason}"
                " (block_private_addresses is on; turn it off only for local development)"
            )

