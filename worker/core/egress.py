"""The egress guard: refuse URLs that reach anything but the public internet.

Used for every outbound request a worker makes on a user's behalf (webhooks,
``bg_image_url`` fetches). The host is resolved **once**; if *any* address is
not globally routable the URL is refused before a connection is made. The
request then goes to the checked address itself, with the hostname kept for
``Host`` and TLS SNI (and certificate checks), so DNS rebinding has no window.

Refused: private, loopback, link-local (169.254.169.254 included), CGNAT
100.64/10, ULA, unspecified, multicast, reserved, and those hidden in
IPv4-mapped, 6to4, Teredo and NAT64 addresses. ``allowlist`` (CIDRs and
hostnames) opens exceptions for tests and private deployments.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from worker.core.errors import EgressRefused  # noqa: F401  (raised here; imported from here too)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")




@dataclass(frozen=True)
class EgressPolicy:
    allowlist: tuple[str, ...] = ()
    https_only: bool = False

    @classmethod
    def parse(cls, allowlist: str | None, https_only: bool = False) -> EgressPolicy:
        items = tuple(x.strip().lower() for x in (allowlist or "").split(",") if x.strip())
        return cls(items, https_only)

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        nets = []
        for item in self.allowlist:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue
        return nets


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``ip``, present ``host``."""

    scheme: str
    host: str
    port: int
    ip: IPAddress
    path: str  # path + query

    @property
    def connect_url(self) -> str:
        ip = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{self.scheme}://{ip}:{self.port}{self.path}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def why_not_public(ip: IPAddress) -> str | None:
    """``None`` if ``ip`` is globally routable, else the reason it is not."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return f"{ip} is a local-use NAT64 address"
        inner = _embedded_v4(ip)
        if inner is not None:
            reason = why_not_public(inner)
            return f"{ip} embeds {reason}" if reason else None
    for attr, label in (
        ("is_loopback", "loopback"), ("is_private", "private"), ("is_link_local", "link-local"),
        ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return f"{ip} is a {label} address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def check(url: str, policy: EgressPolicy) -> Target:
    """Resolve ``url`` once and return where to connect, or raise ``EgressRefused``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise EgressRefused(f"only http and https URLs are allowed, not {scheme or 'none'!r}")
    if policy.https_only and scheme != "https":
        raise EgressRefused("only https URLs are allowed (EXTWORKER_EGRESS_HTTPS_ONLY)")
    host = (parts.hostname or "").lower()
    if not host:
        raise EgressRefused("the URL has no host")
    if parts.username or parts.password:
        raise EgressRefused("URLs with credentials are not allowed")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise EgressRefused("the URL has an invalid port") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise EgressRefused(f"cannot resolve {host}: {e}") from None
    addrs: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if ip not in addrs:
            addrs.append(ip)
    if not addrs:
        raise EgressRefused(f"{host} resolves to no address")
    if host not in policy.allowlist:
        nets = policy.networks()
        for ip in addrs:
            if any(ip in n for n in nets):
                continue
            reason = why_not_public(ip)
            if reason:
                raise EgressRefused(f"refused {host}: {reason}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=scheme, host=host, port=port, ip=addrs[0], path=path)
