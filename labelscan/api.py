"""The API's requests and answers, built and decoded once for both clients."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

from labelscan import errors
from shared.schemas import TERMINAL_STATES, ScanDetail

T = TypeVar("T")
Image = str | os.PathLike[str] | bytes
"""A label: a file path, its bytes, or an ``http(s)://`` URL the analyzer fetches."""

LONG_POLL_S = 30
"""How long one ``GET /api/scans/{id}?wait=`` may hold (the API caps it at 60)."""


def _is_url(image: Image) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://"))


def _read(image: Image) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def default_name(image: Image, index: int = 0) -> str:
    """A product name for a label nobody named: the file's stem, else its position."""
    if isinstance(image, bytes) or _is_url(image):
        return f"label {index + 1}"
    return Path(image).stem[:200] or f"label {index + 1}"


class Requests:
    """Builds the API's requests and decodes its answers, for both clients."""

    def __init__(self, http: httpx.Client | httpx.AsyncClient) -> None:
        self.http = http

    def scan(
        self,
        image: Image,
        *,
        category: str,
        marketplaces: Sequence[str],
        product_name: str,
        priority: str,
        idempotency_key: str | None,
    ) -> httpx.Request:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        fields = {"category": category, "product_name": product_name, "priority": priority}
        if _is_url(image):
            body = {**fields, "marketplaces": list(marketplaces), "image_url": image}
            return self.http.build_request("POST", "/api/scans", json=body, headers=headers)
        # Multipart: the file goes as it is, a third smaller than base64 in JSON.
        form = {**fields, "marketplaces": ",".join(marketplaces)}
        files = {"image": (default_name(image) or "label", _read(image))}
        return self.http.build_request(
            "POST", "/api/scans", data=form, files=files, headers=headers
        )

    def batch(
        self,
        images: Sequence[Image],
        *,
        category: str,
        marketplaces: Sequence[str],
        product_names: Sequence[str] | None,
        priority: str,
        idempotency_key: str | None,
    ) -> httpx.Request:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        scans: list[dict[str, Any]] = []
        for i, image in enumerate(images):
            # Every field on every item (not in `defaults`): each scan reads whole on its own.
            item: dict[str, Any] = {
                "category": category,
                "marketplaces": list(marketplaces),
                "priority": priority,
                "product_name": product_names[i] if product_names else default_name(image, i),
            }
            if _is_url(image):
                item["image_url"] = image
            else:
                item["image_base64"] = base64.b64encode(_read(image)).decode()
            scans.append(item)
        body = msgspec.json.encode({"scans": scans})
        headers["content-type"] = "application/json"
        return self.http.build_request("POST", "/api/batches", content=body, headers=headers)

    def get(self, path: str, **params: str | int) -> httpx.Request:
        return self.http.build_request("GET", path, params=params or None)

    def send(self, method: str, path: str, body: object = None) -> httpx.Request:
        return self.http.build_request(method, path, json=body)


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

    def request(self, build: Requests) -> httpx.Request:
        """The next poll: ``GET /api/scans/{id}?wait=`` for as long as may be waited."""
        left = LONG_POLL_S if self.deadline is None else int(self.deadline - time.monotonic())
        self.hold = max(0, min(LONG_POLL_S, left))
        self.started = time.monotonic()
        return build.get(f"/api/scans/{self.scan_id}", wait=self.hold)

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


def http_args(url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    # Long polls hold the read for up to LONG_POLL_S: the read timeout must outlast them.
    limits = httpx.Timeout(timeout, read=max(timeout, LONG_POLL_S + 10))
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": limits}
