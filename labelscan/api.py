"""The API's operations, each described once, for both clients.

An operation is a function that returns a ``Request``: its method, path, query, body
and the msgspec struct its answer decodes to. The sync client sends it with
``httpx.Client``, the async one with ``httpx.AsyncClient``; both read the answer
through ``decode``, which maps every refusal to its typed error.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Generic, Literal, TypedDict, TypeVar

import httpx
import msgspec

from labelscan import errors
from shared.schemas import (
    TERMINAL_STATES,
    BatchAccepted,
    BatchCancelled,
    BatchRetried,
    BatchStatus,
    CancelResult,
    DeadLetters,
    EventsLink,
    QueueStats,
    ScanAccepted,
    ScanDetail,
    ScanStatus,
)

T = TypeVar("T")
Image = str | os.PathLike[str] | bytes
"""A label: a file path, its bytes, or an ``http(s)://`` URL the analyzer fetches."""

LONG_POLL_S = 30
"""How long one ``GET /api/scans/{id}?wait=`` may hold (the API caps it at 60)."""


class Request(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One call of the API: what is sent, and the struct its answer decodes to."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    answer: type[T]
    params: dict[str, str | int] = {}
    headers: dict[str, str] = {}
    json: bytes | None = None
    """A JSON body, encoded."""
    form: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes]] | None = None
    """With ``form``, a multipart body."""

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request for ``http`` to send (its base URL, key and timeouts applied)."""
        headers = (
            {**self.headers, "content-type": "application/json"}
            if self.json is not None
            else self.headers
        )
        return http.build_request(
            self.method,
            self.path,
            params=self.params or None,
            headers=headers,
            content=self.json,
            data=self.form,
            files=self.files,
        )


class _Scan(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A scan as a JSON body carries it (``ScanCreate`` at the gateway)."""

    category: str
    marketplaces: list[str]
    product_name: str
    priority: str
    image_url: str | None = None
    image_base64: str | None = None


class _Batch(msgspec.Struct, frozen=True, kw_only=True):
    scans: list[_Scan]


def _url(image: Image) -> str | None:
    """The label's URL when it is one (the analyzer fetches it), else None."""
    return image if isinstance(image, str) and image.startswith(("http://", "https://")) else None


def _read(image: Image) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def _once(idempotency_key: str | None) -> dict[str, str]:
    return {"idempotency-key": idempotency_key} if idempotency_key else {}


def default_name(image: Image, index: int = 0) -> str:
    """A product name for a label nobody named: the file's stem, else its position."""
    if isinstance(image, bytes) or _url(image):
        return f"label {index + 1}"
    return Path(image).stem[:200] or f"label {index + 1}"


def _json_scan(
    image: Image, *, category: str, marketplaces: Sequence[str], product_name: str, priority: str
) -> _Scan:
    url = _url(image)
    return _Scan(
        category=category,
        marketplaces=list(marketplaces),
        product_name=product_name,
        priority=priority,
        image_url=url,
        image_base64=None if url else base64.b64encode(_read(image)).decode(),
    )


def scan(
    image: Image,
    *,
    category: str,
    marketplaces: Sequence[str],
    product_name: str | None = None,
    priority: str = "normal",
    idempotency_key: str | None = None,
) -> Request[ScanAccepted]:
    """Submit one label (a path, bytes or URL); answers at once with its id and links."""
    name = product_name or default_name(image)
    headers = _once(idempotency_key)
    if _url(image):
        body = _json_scan(
            image,
            category=category,
            marketplaces=marketplaces,
            product_name=name,
            priority=priority,
        )
        return Request(
            method="POST",
            path="/api/scans",
            answer=ScanAccepted,
            json=msgspec.json.encode(body),
            headers=headers,
        )
    # Multipart: the file goes as it is, a third smaller than base64 in JSON.
    form = {
        "category": category,
        "marketplaces": ",".join(marketplaces),
        "product_name": name,
        "priority": priority,
    }
    files = {"image": (default_name(image), _read(image))}
    return Request(
        method="POST",
        path="/api/scans",
        answer=ScanAccepted,
        form=form,
        files=files,
        headers=headers,
    )


def batch(
    images: Sequence[Image],
    *,
    category: str,
    marketplaces: Sequence[str],
    product_names: Sequence[str] | None = None,
    priority: str = "normal",
    idempotency_key: str | None = None,
) -> Request[BatchAccepted]:
    """Submit many labels as one batch: all accepted, or none (``errors`` per item)."""
    # Every field on every item (not in `defaults`): each scan reads whole on its own.
    scans = [
        _json_scan(
            image,
            category=category,
            marketplaces=marketplaces,
            product_name=product_names[i] if product_names else default_name(image, i),
            priority=priority,
        )
        for i, image in enumerate(images)
    ]
    return Request(
        method="POST",
        path="/api/batches",
        answer=BatchAccepted,
        json=msgspec.json.encode(_Batch(scans=scans)),
        headers=_once(idempotency_key),
    )


def get(scan_id: str) -> Request[ScanDetail]:
    """The scan's state, progress and, once finished, its result or error."""
    return Request(method="GET", path=f"/api/scans/{scan_id}", answer=ScanDetail)


def status(scan_id: str) -> Request[ScanStatus]:
    """The scan's state and progress, without the result."""
    return Request(method="GET", path=f"/api/scans/{scan_id}/status", answer=ScanStatus)


def events_link(scan_id: str) -> Request[EventsLink]:
    """A fresh token and URL for the scan's event stream."""
    return Request(method="GET", path=f"/api/scans/{scan_id}/events-url", answer=EventsLink)


def cancel(scan_id: str) -> Request[CancelResult]:
    """Cancel a scan that has not finished (``ConflictError`` once it has)."""
    return Request(method="DELETE", path=f"/api/scans/{scan_id}", answer=CancelResult)


def retry(scan_id: str) -> Request[ScanAccepted]:
    """Replay a failed scan (also how a dead letter is retried)."""
    return Request(method="POST", path=f"/api/scans/{scan_id}/retry", answer=ScanAccepted)


def batch_status(batch_id: str, cursor: str | None = None) -> Request[BatchStatus]:
    """The batch's counts per state, progress, a page of scan ids, and its aggregate."""
    params: dict[str, str | int] = {"cursor": cursor} if cursor else {}
    return Request(method="GET", path=f"/api/batches/{batch_id}", answer=BatchStatus, params=params)


def cancel_batch(batch_id: str) -> Request[BatchCancelled]:
    """Cancel every scan of the batch that has not finished."""
    return Request(method="DELETE", path=f"/api/batches/{batch_id}", answer=BatchCancelled)


def retry_batch(batch_id: str) -> Request[BatchRetried]:
    """Replay the batch's failed scans (the ids of those queued again)."""
    return Request(method="POST", path=f"/api/batches/{batch_id}/retry", answer=BatchRetried)


def stats() -> Request[QueueStats]:
    """The queue's counts (waiting, active, finished, consumers, rate limiter)."""
    return Request(method="GET", path="/api/queue/stats", answer=QueueStats)


def dead_letters(count: int = 50, before: str | None = None) -> Request[DeadLetters]:
    """A page of dead letters, newest first; pass its ``next`` as ``before`` for older."""
    params: dict[str, str | int] = {"count": count}
    if before is not None:
        params["before"] = before
    return Request(method="GET", path="/api/dead", answer=DeadLetters, params=params)


class LongPolls:
    """How ``wait()`` polls, for both clients: each poll's ``wait=`` (never past the
    deadline) and, when an answer came long before its wait ended (a gateway without
    long polls), a pause with backoff before the next."""

    def __init__(self, scan_id: str, timeout: float | None) -> None:
        self.scan_id = scan_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.pause = 0.1
        self.hold = LONG_POLL_S
        self.started = 0.0

    def request(self) -> Request[ScanDetail]:
        """The next poll: ``get()`` with ``?wait=`` for as long as may be waited."""
        left = LONG_POLL_S if self.deadline is None else int(self.deadline - time.monotonic())
        self.hold = max(0, min(LONG_POLL_S, left))
        self.started = time.monotonic()
        return msgspec.structs.replace(get(self.scan_id), params={"wait": self.hold})

    def pause_after(self, detail: ScanDetail) -> float | None:
        """None once the scan has finished, else the seconds to sleep before the next poll;
        ``WaitTimeout`` past the deadline."""
        if detail.state in TERMINAL_STATES:
            return None
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            raise errors.WaitTimeout(f"scan {self.scan_id} is still {detail.state}")
        if self.hold and now - self.started >= self.hold / 2:
            return 0.0
        pause, self.pause = self.pause, min(self.pause * 2, 2.0)
        return pause


@contextlib.contextmanager
def reaching(request: httpx.Request) -> Iterator[None]:
    """``ConnectionLost`` for what the network did to ``request`` while it was sent."""
    try:
        yield
    except httpx.TransportError as exc:
        raise errors.ConnectionLost(f"{request.url}: {exc!r}") from exc


def decode(response: httpx.Response, into: type[T]) -> T:
    """The answer as ``into``, or the typed error for a refusal."""
    if not response.is_success:
        raise errors.from_response(response)
    try:
        return msgspec.json.decode(response.content, type=into)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise errors.UnexpectedAnswer(
            f"{response.request.method} {response.url.path} answered {response.status_code} "
            f"with what a {into.__name__} cannot hold: {exc}"
        ) from exc


class HttpArgs(TypedDict):
    """What both clients open their httpx client with."""

    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout


def http_args(url: str, api_key: str | None, timeout: float) -> HttpArgs:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    # Long polls hold the read for up to LONG_POLL_S: the read timeout must outlast them.
    limits = httpx.Timeout(timeout, read=max(timeout, LONG_POLL_S + 10))
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": limits}
