"""Downloading a label image from ``image_url``: SSRF-guarded, bounded in bytes and time.

Every hop (the URL and each redirect) passes the checks of :mod:`shared.netguard`,
and every connection goes to a checked address. Refusals, bad answers and
non-images are InvalidImageError (permanent); timeouts, unreachable hosts and
5xx/429 answers are ImageUnavailableError (retried).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpcore
import httpx

from shared.errors import ImageUnavailableError, InvalidImageError
from shared.images import inspect_image
from shared.netguard import GuardedPool, UnsafeURLError, checked_url, parse_allow_hosts

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_HEADERS = [
    (b"user-agent", b"labelscan-analyzer/0.1"),
    (b"accept", b"image/*"),
    # Compressed bodies would slip past the byte cap once decoded; ask for none.
    (b"accept-encoding", b"identity"),
]


class ImageFetcher:
    """Fetches images over HTTP(S) with one pooled, SSRF-guarded connection pool.

    ``allow_http`` permits plain http for any host; ``allow_hosts`` lists origins
    (``host`` = any port, ``host:port``, ``[v6]:port``) exempt from the address
    check, which may use http too; ``max_redirects`` bounds the hops followed.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float,
        allow_http: bool = False,
        allow_hosts: Iterable[str] = (),
        max_redirects: int = 3,
    ) -> None:
        self._max = max_bytes
        self._timeout = timeout_s
        self._allow_http = allow_http
        self._origins = parse_allow_hosts(allow_hosts)
        self._max_redirects = max_redirects
        self._pool = GuardedPool(
            self._origins,
            name="image_url",
            timeout_s=timeout_s,
            max_connections=16,
            max_keepalive=8,
            keepalive_expiry_s=10.0,
        )

    async def fetch(self, url: str) -> bytes:
        """The image at ``url``; InvalidImageError (permanent) or ImageUnavailableError (retry)."""
        try:
            # One deadline across every hop: a slow drip of bytes cannot outlast it.
            async with asyncio.timeout(self._timeout):
                data = await self._follow(url)
        except TimeoutError:
            raise ImageUnavailableError(f"image_url timed out after {self._timeout:g}s") from None
        except httpcore.TimeoutException as exc:
            raise ImageUnavailableError(f"image_url timed out: {exc!r}") from None
        except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
            raise ImageUnavailableError(f"image_url unreachable: {exc!r}") from None
        except (httpcore.LocalProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise InvalidImageError(f"image_url could not be fetched: {exc}") from None
        try:
            # Pillow parses the header and verifies the structure off the event loop.
            await asyncio.to_thread(inspect_image, data)
        except InvalidImageError as exc:
            raise type(exc)(f"image_url: {exc}") from None
        return data

    async def _follow(self, url: str) -> bytes:
        target = self._check(url, hop=0)
        for hop in range(1, self._max_redirects + 2):
            try:
                location, data = await self._get(target)
            except UnsafeURLError as exc:
                raise InvalidImageError(_after(str(exc), hop - 1)) from None
            if location is None:
                return data
            if hop > self._max_redirects:
                break
            try:
                next_url = str(target.join(location))
            except httpx.InvalidURL as exc:
                raise InvalidImageError(f"image_url redirected to an invalid URL: {exc}") from None
            target = self._check(next_url, hop=hop)
        raise InvalidImageError(f"image_url redirected more than {self._max_redirects} times")

    def _check(self, url: str, *, hop: int) -> httpx.URL:
        try:
            return checked_url(url, allow_http=self._allow_http, origins=self._origins)
        except UnsafeURLError as exc:
            raise InvalidImageError(_after(str(exc), hop)) from None

    async def _get(self, url: httpx.URL) -> tuple[str | None, bytes]:
        """One GET: (redirect location, b"") or (None, body)."""
        async with self._pool.stream("GET", url, _HEADERS) as response:
            status = response.status
            headers = {k.lower(): v for k, v in response.headers}
            if status in _REDIRECT_STATUS:
                location = headers.get(b"location")
                if not location:
                    raise InvalidImageError(f"image_url answered {status} without a Location")
                return location.decode("latin-1"), b""
            if status in _RETRYABLE_STATUS:
                raise ImageUnavailableError(f"image_url answered {status}")
            if not 200 <= status < 300:
                raise InvalidImageError(f"image_url answered {status}")
            self._check_headers(headers)
            data = bytearray()
            async for chunk in response.aiter_stream():
                data += chunk
                if len(data) > self._max:
                    raise InvalidImageError(f"image is larger than {self._max} bytes")
        return None, bytes(data)

    def _check_headers(self, headers: dict[bytes, bytes]) -> None:
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self._max:
            raise InvalidImageError(f"image is larger than {self._max} bytes")
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        content_type = content_type.partition(";")[0].strip().lower()
        if content_type and not content_type.startswith(("image/", "application/octet-stream")):
            raise InvalidImageError(f"image_url is {content_type}, not an image")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._pool.aclose()


def _after(message: str, hops: int) -> str:
    if not hops:
        return message
    return f"{message} (after {hops} redirect{'s' if hops > 1 else ''})"
