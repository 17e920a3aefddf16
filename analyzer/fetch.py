"""Downloading a label image from ``image_url``: bounded in bytes and time."""

from __future__ import annotations

import httpx

from shared.errors import ImageUnavailableError, InvalidImageError
from shared.images import sniff_image

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ImageFetcher:
    """Fetches images over HTTP with one pooled client."""

    def __init__(self, *, max_bytes: int, timeout_s: float) -> None:
        self._max = max_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            max_redirects=5,
            headers={"user-agent": "labelscan-analyzer/0.1", "accept": "image/*"},
        )

    async def fetch(self, url: str) -> bytes:
        """The image at ``url``; InvalidImageError (permanent) or ImageUnavailableError (retry)."""
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code in _RETRYABLE_STATUS:
                    raise ImageUnavailableError(f"image_url answered {response.status_code}")
                if response.status_code >= 400:
                    raise InvalidImageError(f"image_url answered {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self._max:
                    raise InvalidImageError(f"image is larger than {self._max} bytes")
                content_type = response.headers.get("content-type", "")
                if content_type and not content_type.startswith(
                    ("image/", "application/octet-stream")
                ):
                    raise InvalidImageError(f"image_url is {content_type}, not an image")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self._max:
                        raise InvalidImageError(f"image is larger than {self._max} bytes")
        except httpx.TimeoutException as exc:
            raise ImageUnavailableError(f"image_url timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ImageUnavailableError(f"image_url unreachable: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise InvalidImageError(f"image_url could not be fetched: {exc}") from exc
        if sniff_image(bytes(data)) is None:
            raise InvalidImageError("image_url did not return a PNG, JPEG, GIF or WebP image")
        return bytes(data)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
