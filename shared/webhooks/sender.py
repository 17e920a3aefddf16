"""One HTTP POST of a signed delivery, SSRF-guarded, bounded in time and bytes, classified.

Every connection goes through :class:`shared.netguard.GuardedBackend` (the
address each name resolves to is checked, and the socket connects to that
checked address); redirects are never followed: a ``3xx`` is a failed attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterable
from datetime import UTC

import httpcore
import httpx
import msgspec

from shared.netguard import GuardedPool, UnsafeURLError, checked_url, parse_allow_hosts

MAX_RESPONSE_BYTES = 64 * 1024
"""What is read of a receiver's answer before the connection is dropped."""

_USER_AGENT = b"labelscan-webhooks/0.1"


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How an attempt went: ``ok``, else whether to retry, and why."""

    ok: bool
    retry: bool = False
    status: int = 0
    """The receiver's status code; 0 when there was no answer."""
    latency_ms: int = 0
    error: str = ""
    retry_after_s: float | None = None


def retry_after(raw: bytes | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if not raw:
        return None
    text = raw.decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    base = now if now is not None else time.time()
    return max(0.0, when.timestamp() - base)


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class Sender:
    """Posts deliveries over one guarded connection pool."""

    def __init__(
        self, *, timeout_s: float, allow_hosts: Iterable[str], max_connections: int
    ) -> None:
        self._timeout = timeout_s
        self._origins = parse_allow_hosts(allow_hosts)
        self._pool = GuardedPool(
            self._origins,
            name="url",
            timeout_s=timeout_s,
            max_connections=max_connections,
            max_keepalive=max_connections,
            keepalive_expiry_s=30.0,
        )

    def check(self, url: str) -> httpx.URL:
        """``url`` parsed if it may be posted to (UnsafeURLError otherwise)."""
        return checked_url(url, allow_http=False, origins=self._origins, name="url")

    async def post(self, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Outcome:
        """POST ``body`` to ``url`` and say how it went (never raises for the receiver's sake)."""
        started = time.perf_counter()

        def took() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            target = self.check(url)
            # One deadline for connect, send and answer: a slow drip cannot outlast it.
            async with asyncio.timeout(self._timeout):
                status, after = await self._post(target, headers, body)
        except UnsafeURLError as exc:
            return Outcome(ok=False, error=f"refused: {exc}", latency_ms=took())
        except (TimeoutError, httpcore.TimeoutException):
            return Outcome(
                ok=False,
                retry=True,
                error=f"timed out after {self._timeout:g} s",
                latency_ms=took(),
            )
        except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
            return Outcome(ok=False, retry=True, error=f"unreachable: {exc!r}", latency_ms=took())
        except (httpcore.LocalProtocolError, httpcore.UnsupportedProtocol) as exc:
            return Outcome(ok=False, error=f"could not be sent: {exc}", latency_ms=took())
        latency = took()
        if 200 <= status < 300:
            return Outcome(ok=True, status=status, latency_ms=latency)
        if 300 <= status < 400:
            return Outcome(
                ok=False,
                status=status,
                latency_ms=latency,
                error=f"answered {status}; redirects are not followed",
            )
        return Outcome(
            ok=False,
            retry=_retryable_status(status),
            status=status,
            latency_ms=latency,
            error=f"answered {status}",
            retry_after_s=retry_after(after) if status in (429, 503) else None,
        )

    async def _post(
        self, url: httpx.URL, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes | None]:
        async with self._pool.stream(
            "POST",
            url,
            [
                (b"user-agent", _USER_AGENT),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
            body,
        ) as response:
            after = next((v for k, v in response.headers if k.lower() == b"retry-after"), None)
            read = 0
            async for chunk in response.aiter_stream():
                read += len(chunk)
                if read > MAX_RESPONSE_BYTES:
                    break  # the answer's body means nothing to us; only its status does
            return response.status, after

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._pool.aclose()
