"""SSRF guard for seller-supplied URLs: scheme, host and address checks, and a safe connector.

Only publicly routable addresses are reachable. Names are resolved once per
connection, every resolved address is checked, and the socket connects to a
checked address, never to the name again, so DNS rebinding cannot slip past.
Origins on the allow-list (``host`` for any port, ``host:port`` for one) skip
only the address check; they may also use plain http.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Origins = frozenset[tuple[str, int | None]]

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Our own tables rather than ``is_global`` alone: the stdlib's answers differ
# between patch releases (3.11.7 calls 224.0.0.1, fec0::1 and 3fff::1 global).
_V4_BLOCKED = tuple(
    (ipaddress.IPv4Network(net), label)
    for net, label in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_BLOCKED = tuple(
    (ipaddress.IPv6Network(net), label)
    for net, label in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo tunnel"),
        ("2001::/23", "IETF protocol"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4 tunnel"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6"),
        ("fc00::/7", "private (unique-local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V6_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """A URL, or an address it resolves to, that must not be fetched; the message says why."""


def address_refusal(ip: IPAddress) -> str | None:
    """Why connecting to ``ip`` is refused (e.g. ``"loopback"``), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # Never a legitimate DNS answer; name the embedded class when it has one.
            inner = address_refusal(ip.ipv4_mapped)
            return f"IPv4-mapped {inner}" if inner else "IPv4-mapped"
        if ip in _NAT64:
            # DNS64 synthesises these for every IPv4 name, internal ones included.
            inner = address_refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"NAT64 {inner}" if inner else None
        blocked: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = _V6_BLOCKED
    else:
        blocked = _V4_BLOCKED
    for network, label in blocked:
        if ip in network:
            return label
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _V6_UNICAST:
        return "reserved"
    # A backstop: newer Pythons know more special-purpose ranges.
    return None if ip.is_global else "non-global"


def parse_allow_hosts(entries: Iterable[str]) -> Origins:
    """Allow-list entries (``host``, ``host:port``, ``[v6]:port``) as canonical pairs."""
    out: set[tuple[str, int | None]] = set()
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port_text = rest.removeprefix(":") if rest.startswith(":") else None
            if rest and port_text is None:
                raise ValueError(f"{raw!r} is not host, host:port or [ipv6]:port")
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
        else:
            host, port_text = entry, None
        if not host or any(c in host for c in "/@ ?#"):
            raise ValueError(f"{raw!r} is not host, host:port or [ipv6]:port")
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"{raw!r} has an invalid port")
            port = int(port_text)
        out.add((_canonical_host(host), port))
    return frozenset(out)


def is_allowed(host: str, port: int, origins: Origins) -> bool:
    """Whether ``host:port`` is an allow-listed origin."""
    host = _canonical_host(host)
    return (host, port) in origins or (host, None) in origins


def checked_url(
    url: str, *, allow_http: bool, origins: Origins, name: str = "image_url"
) -> httpx.URL:
    """``url`` parsed, after every check that needs no DNS; UnsafeURLError otherwise.

    ``name`` is the field the messages name.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeURLError(f"{name} is not a valid URL: {exc}") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise UnsafeURLError(f"{name} must be an {'http(s)' if allow_http else 'https'} URL")
    if parsed.userinfo:
        raise UnsafeURLError(f"{name} must not contain credentials")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise UnsafeURLError(f"{name} has no host")
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[parsed.scheme]
    if not 0 < port < 65536:
        raise UnsafeURLError(f"{name} has an invalid port ({port})")
    if is_allowed(host, port, origins):
        return parsed
    if parsed.scheme != "https" and not allow_http:
        raise UnsafeURLError(f"{name} must be an https URL")
    ip = literal_ip(host, name)
    if ip is not None and (reason := address_refusal(ip)) is not None:
        raise UnsafeURLError(f"{name} host {host} is {_a(reason)} address; refused")
    return parsed


def check_url(url: str, *, allow_http: bool, allow_hosts: frozenset[str]) -> None:
    """Scheme, credentials and literal-address checks, no DNS: UnsafeURLError (a ValueError)."""
    checked_url(url, allow_http=allow_http, origins=parse_allow_hosts(allow_hosts))


def literal_ip(host: str, name: str = "image_url") -> IPAddress | None:
    """The address ``host`` spells, including legacy forms like ``127.1`` or ``0x7f000001``."""
    try:
        return ipaddress.ip_address(host.replace("%25", "%"))
    except ValueError:
        pass
    if ":" in host:
        raise UnsafeURLError(f"{name} host {host} is not a valid address")
    # The resolver accepts inet_aton's shorthand; judge it as the address it means.
    if host and all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, from one lookup, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that only connects to checked public addresses."""

    def __init__(
        self,
        origins: Origins,
        delegate: httpcore.AsyncNetworkBackend | None = None,
        name: str = "image_url",
    ) -> None:
        self._origins = origins
        self._name = name
        self._delegate = delegate or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to a checked address of ``host`` (any address if allow-listed)."""
        if is_allowed(host, port, self._origins):
            return await self._delegate.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        last: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in await self._addresses(host, port, timeout):
            try:
                return await self._delegate.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host} has no addresses")

    async def _addresses(self, host: str, port: int, limit_s: float | None) -> list[str]:
        ip = literal_ip(host, self._name)
        if ip is not None:
            addresses = [ip]
        else:
            try:
                async with asyncio.timeout(limit_s):
                    found = await resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from None
            addresses = [ipaddress.ip_address(a) for a in found]
        # Every address must pass, not just the first: a name that resolves to
        # one public and one private address is an attack, not a fallback.
        for address in addresses:
            if (reason := address_refusal(address)) is not None:
                verb = "is" if ip is not None else "resolves to"
                raise UnsafeURLError(
                    f"{self._name} host {host} {verb} {_a(reason)} address ({address}); refused"
                )
        return [str(a) for a in addresses]

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never used: image URLs are fetched over TCP only."""
        raise UnsafeURLError("unix sockets are not reachable from image_url")

    async def sleep(self, seconds: float) -> None:
        """Delegate sleeping to the wrapped backend."""
        await self._delegate.sleep(seconds)


class GuardedPool:
    """httpcore's connection pool on a :class:`GuardedBackend`, for the image fetch and
    the webhook sender alike.

    httpcore directly, not httpx: its public ``network_backend`` hook is what lets
    every connection go through the address guard, and nothing is read from the
    environment (no proxies). Requests go to the checked URL itself, with one timeout
    for each phase (connect, read, write, waiting for a pooled connection).
    """

    def __init__(
        self,
        origins: Origins,
        *,
        name: str,
        timeout_s: float,
        max_connections: int,
        max_keepalive: int,
        keepalive_expiry_s: float,
    ) -> None:
        self._timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout_s)
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=GuardedBackend(origins, name=name),
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive,
            keepalive_expiry=keepalive_expiry_s,
            retries=0,
        )

    def stream(
        self,
        method: str,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None = None,
    ) -> AbstractAsyncContextManager[httpcore.Response]:
        """One request to ``url`` (already checked), its ``Host`` header first."""
        return self._pool.stream(
            method,
            httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=[(b"host", url.netloc), *headers],
            content=content,
            extensions={"timeout": self._timeouts},
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()


def _canonical_host(host: str) -> str:
    host = host.lower().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _a(label: str) -> str:
    return f"{'an' if label[0] in 'aeiouAEIOU' else 'a'} {label}"
