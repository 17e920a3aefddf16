"""Recognising and verifying image bytes, within bounds on dimensions and decoded memory.

The gateway and the analyzer's fetcher use :func:`inspect_image` to accept only
what the analyzer can decode within :data:`MAX_DECODED_BYTES`; the analyzer's own
decoding (``analyzer/images.py``) applies the same limits to whatever reaches it.
"""

from __future__ import annotations

import io
import math
import struct
import threading
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
# Each side: a 48 MP phone photo is 8064 px wide. Without it a 1 x 40,000,000 strip
# passes the pixel limit and costs seconds and gigabytes to downscale.
MAX_DIMENSION = 12_000
# The raster Pillow allocates to decode an image at the scale it is decoded at (full
# size, but 1/2 to 1/8 for a JPEG, which decodes scaled). Counted at 4 bytes a pixel
# whatever the mode (Pillow stores RGB as 4, and the analyzer converts palette and
# 1-bit images to 8-bit RGB(A) or grey before scaling): 64 MiB is a 16.7 MP PNG.
MAX_DECODED_BYTES = 64 * 1024 * 1024
BYTES_PER_PIXEL = 4
JPEG_MIN_SCALE = 8  # libjpeg decodes at 1/1, 1/2, 1/4 or 1/8
# Decodes at once per process: with MAX_DECODED_BYTES each, this bounds the memory of
# verification however many uploads arrive together.
DECODE_SLOTS = 2
_slots = threading.BoundedSemaphore(DECODE_SLOTS)
INLINE_DECODE_BYTES = 4 * 1024 * 1024
"""A raster this small decodes in a few milliseconds: not worth a thread hop."""


class ImageInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the bytes of an accepted image are."""

    media_type: str
    width: int
    height: int
    decoded_bytes: int


class ImageTooLargeError(InvalidImageError):
    """The image's canvas exceeds a dimension, pixel or decoded-size limit."""

    kind = "image_too_large"


def check_canvas(width: int, height: int) -> None:
    """Refuse a canvas over :data:`MAX_DIMENSION` a side or :data:`MAX_PIXELS` in all."""
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image is {width}x{height} pixels")
    if max(width, height) > MAX_DIMENSION:
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels; at most {MAX_DIMENSION:,} a side are accepted"
        )
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels; at most {MAX_PIXELS:,} are accepted"
        )


def check_raster(width: int, height: int) -> int:
    """The bytes a ``width`` x ``height`` decode allocates; ImageTooLargeError over the cap."""
    size = width * height * BYTES_PER_PIXEL
    if size > MAX_DECODED_BYTES:
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels: {size:,} bytes decoded, "
            f"at most {MAX_DECODED_BYTES:,} are accepted"
        )
    return size


def header(data: bytes) -> tuple[ImageInfo, Image.Image]:
    """Open ``data`` (header only) and check its limits; the image is ready to decode.

    Raises InvalidImageError, or ImageTooLargeError for a canvas over the limits,
    before a single pixel is allocated.
    """
    media_type = sniff_image(data)
    if media_type is None:
        raise InvalidImageError("not a PNG, JPEG, GIF or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            check_canvas(width, height)
            if media_type == "image/jpeg":
                _check_jpeg_data(data, width, height)
                # Verified at 1/8 scale: every coded byte is still decoded, in 1/64 the memory.
                image.draft(None, (-(-width // JPEG_MIN_SCALE), -(-height // JPEG_MIN_SCALE)))
            decoded = check_raster(*image.size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image is too large to decode safely: {exc}") from None
    except InvalidImageError:
        raise
    except Exception as exc:  # Pillow signals corrupt input with many exception types
        raise InvalidImageError(f"image is truncated or corrupt: {exc}") from None
    info = ImageInfo(media_type=media_type, width=width, height=height, decoded_bytes=decoded)
    return info, image


def decode_fully(image: Image.Image) -> None:
    """Decode every pixel of an image from :func:`header`: truncated or corrupt data fails.

    At most DECODE_SLOTS decodes run at once per process (blocking the calling
    thread, so call it off the event loop for a large image).
    """
    try:
        with _slots, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except Exception as exc:  # Pillow signals corrupt input with many exception types
        raise InvalidImageError(f"image is truncated or corrupt: {exc}") from None
    finally:
        image.close()


def inspect_image(data: bytes) -> ImageInfo:
    """Check an image by its bytes: a known format, bounded dimensions, every pixel decodes.

    Raises InvalidImageError (or its ImageTooLargeError) with the reason. Blocks for
    as long as the decode takes (milliseconds up to ~0.5 s at the decoded-size cap).
    """
    info, image = header(data)
    decode_fully(image)
    return info


# JPEG markers without a length: TEM and RSTn; SOF markers that use arithmetic coding.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOF_HUFFMAN = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
_SOF_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _check_jpeg_data(data: bytes, width: int, height: int) -> None:
    """Refuse a JPEG whose coded data is too short for the canvas its header claims.

    libjpeg decodes a stream that ends early (an EOI after too little data) without an
    error, padding the missing blocks with grey, so decoding alone does not catch it.
    Every 8x8 block of every component costs at least one bit of Huffman-coded data
    (its DC difference), so a valid image has at least blocks / 8 bytes of scan data.
    """
    blocks, coded, pos, end = 0, 0, 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise InvalidImageError("image is corrupt: a JPEG marker was expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker in _SOF_ARITHMETIC:
            raise InvalidImageError("arithmetic-coded JPEG is not supported")
        if marker in _SOF_HUFFMAN:
            blocks = _jpeg_blocks(segment, width, height)
        elif marker == 0xDA:  # SOS: entropy-coded data follows, up to the next marker
            start = pos
            pos = _scan_end(data, pos)
            coded += pos - start
    if blocks and coded * 8 < blocks:
        raise InvalidImageError(
            f"image is truncated: {coded:,} bytes of JPEG data cannot hold the "
            f"{width}x{height} pixels its header claims"
        )


def _scan_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data ends: the first marker that is not RSTn or a stuffed 0."""
    last = len(data) - 1
    while (found := data.find(b"\xff", pos, last)) >= 0:
        follower = data[found + 1]
        if follower != 0 and not 0xD0 <= follower <= 0xD7:
            return found
        pos = found + 2
    return len(data)


def _jpeg_blocks(sof: bytes, width: int, height: int) -> int:
    """The number of 8x8 blocks a frame codes, summed over its components."""
    count = sof[5] if len(sof) > 5 else 0
    factors = [(sof[7 + 3 * i] >> 4, sof[7 + 3 * i] & 0x0F) for i in range(count)]
    if not factors or len(sof) < 6 + 3 * count:
        raise InvalidImageError("image is corrupt: a malformed JPEG frame header")
    h_max = max(h for h, _ in factors) or 1
    v_max = max(v for _, v in factors) or 1
    return sum(
        math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
        for h, v in factors
    )
