"""uvicorn as both services run it: httptools, with limits on the request head.

httptools (llhttp) buffers a header line for as long as it grows and keeps any
number of headers, and uvicorn waits for a request head forever: one connection
sending a 100 MB header line cost the gateway 200 MB. This protocol counts the bytes
and headers of each request head and answers ``431`` past ``HTTP_MAX_HEADER_BYTES``
or ``HTTP_MAX_HEADERS``, and ``408`` when the head is not complete within
``HTTP_HEADER_TIMEOUT``. The cost is a counter per connection and one timer handle
(no task) while a head is being read; an open SSE stream holds neither.

h11 (uvicorn's other parser) has a size limit but answers 400, counts no headers,
has no timeout either, and is pure Python: slower on every request.
"""

from __future__ import annotations

import asyncio

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import Settings


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a request head that broke a limit."""


def _answer(status: bytes, error: str, detail: str) -> bytes:
    body = (
        b'{"error":"' + error.encode() + b'","detail":"' + detail.encode() + b'","field":"headers"}'
    )
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded, timed request head. Limits: class attributes."""

    max_head_bytes = 16 * 1024
    max_headers = 100
    head_timeout_s = 10.0

    # Per connection: the head being read (bytes so far, headers so far) and its deadline.
    _head_bytes = 0  # read from the socket while in the head (a head still arriving)
    _head_parsed = 0  # of the head parsed so far (a head that arrived whole)
    _header_count = 0
    _in_head = False
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock at once: a client that connects and sends nothing is timed too."""
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head timer with the connection."""
        self._end_head()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A new request on a kept-alive connection: its head is counted and timed afresh."""
        super().on_message_begin()
        if not self._in_head:
            self._start_head()

    def on_url(self, url: bytes) -> None:
        """Count the request line: a head that arrives whole in one read is checked here."""
        self._parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count headers (llhttp keeps any number of them) and their bytes."""
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise _HeadRefused(f"more than {self.max_headers} headers")
        self._parsed(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _parsed(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > self.max_head_bytes:
            raise _HeadRefused(f"the request head is over {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        """The head is in: stop counting and cancel the deadline before the app runs."""
        self._end_head()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the head's byte count (checked after each read, ~64 KiB at most)."""
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse_large(str(exc.__context__))
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse_large(f"the request head is over {self.max_head_bytes} bytes")

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_parsed = 0
        self._header_count = 0
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse_large(self, detail: str) -> None:
        self._close_with(
            _answer(b"431 Request Header Fields Too Large", "headers_too_large", detail)
        )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            detail = f"the request head took over {self.head_timeout_s:g} s"
            self._close_with(_answer(b"408 Request Timeout", "request_timeout", detail))

    def _close_with(self, response: bytes) -> None:
        self._end_head()
        # Nothing more is read: what the client still sends is discarded by the kernel.
        self.transport.pause_reading()
        self.transport.write(response)
        self.transport.close()


def protocol(settings: Settings) -> type[GuardedHttpTools]:
    """The protocol class with ``settings``' limits: one class per server, none per connection."""
    return type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {
            "max_head_bytes": settings.http_max_header_bytes,
            "max_headers": settings.http_max_headers,
            "head_timeout_s": settings.http_header_timeout_s,
        },
    )


def server_config(
    app: ASGIApp, settings: Settings, *, host: str, port: int, **options: object
) -> uvicorn.Config:
    """The uvicorn Config every server of the project uses (services and tests alike)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(settings),
        log_config=None,
        access_log=False,
        **options,  # type: ignore[arg-type]
    )
