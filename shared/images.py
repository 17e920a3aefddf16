"""Recognising image bytes without decoding them (cheap enough for the accept path)."""

from __future__ import annotations

import io
import warnings

import msgspec
from PIL import Image

from shared.errors import InvalidImageError

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image(data: bytes) -> str | None:
    """Media type of ``data`` judged by its first bytes, or None if not a supported image."""
    for magic, media_type in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# Far above any photo of a label; a larger canvas is a decompression bomb or a mistake.
MAX_PIXELS = 40_000_000


class ImageInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the bytes of an accepted image are."""

    media_type: str
    width: int
    height: int


class ImageTooLargeError(InvalidImageError):
    """The image's canvas is larger than MAX_PIXELS."""

    kind = "image_too_large"


def inspect_image(data: bytes) -> ImageInfo:
    """Check an image by its bytes: a known format, sane dimensions, not truncated.

    Reads the header and verifies the structure without decoding pixels, so it
    is cheap enough for the accept path. Raises InvalidImageError (or its
    ImageTooLargeError) with the reason.
    """
    media_type = sniff_image(data)
    if media_type is None:
        raise InvalidImageError("not a PNG, JPEG, GIF or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageTooLargeError(
                    f"image is {width}x{height} pixels; at most {MAX_PIXELS:,} are accepted"
                )
            image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image is too large to decode safely: {exc}") from None
    except InvalidImageError:
        raise
    except Exception as exc:  # Pillow signals corrupt input with many exception types
        raise InvalidImageError(f"image is truncated or corrupt: {exc}") from None
    return ImageInfo(media_type=media_type, width=width, height=height)
