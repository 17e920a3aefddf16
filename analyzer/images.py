"""Image preparation shared by every backend: decode, orient, downscale, re-encode."""

from __future__ import annotations

import io
import math
import warnings

import msgspec
from PIL import Image

from shared.errors import InvalidImageError
from shared.images import ImageTooLargeError, check_canvas, check_raster

MAX_LONG_EDGE = 1568
"""Claude downsizes anything larger server-side, so bigger images only cost bytes and time."""

MAX_PIXELS = 1_200_000
"""About the most pixels Claude looks at (1,600 tokens; 1092x1092 for 1:1 in Anthropic's
table); it scales larger images down first."""

PIXELS_PER_TOKEN = 750

MAX_BASE64_BYTES = 5 * 1024 * 1024
"""The Messages API rejects an image whose base64 string is longer than 5 MB."""

MAX_ENCODED_BYTES = MAX_BASE64_BYTES // 4 * 3
"""Raw-byte budget so that the base64 form stays within :data:`MAX_BASE64_BYTES`."""

JPEG_QUALITIES = (85, 75, 65, 50)
AS_IS_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_AS_IS_PLUGINS = tuple(AS_IS_FORMATS)
_PNG_ORIENTATION_CHUNKS = (b"eXIf", b"Raw profile type exif", b"XML:com.adobe.xmp")
"""Where Pillow reads a PNG's orientation: the eXIf chunk, and text chunks by keyword."""
AS_IS_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})
EXIF_ORIENTATION = 0x0112
LOSSLESS_SOURCES = frozenset({"PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM"})
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class PreparedImage(msgspec.Struct, frozen=True, kw_only=True):
    """An image ready to send: oriented, bounded in size, re-encoded."""

    data: bytes
    media_type: str
    width: int
    height: int
    token_estimate: int


def token_estimate(width: int, height: int) -> int:
    """Anthropic's documented image cost: w * h / 750 tokens, after Claude's own scaling."""
    # Claude first scales an image to a long edge of 1568 px and about 1.2 MP.
    edge_scale = min(1.0, MAX_LONG_EDGE / max(width, height))
    pixels = min(width * height * edge_scale * edge_scale, MAX_PIXELS)
    return max(1, math.ceil(pixels / PIXELS_PER_TOKEN))


def decode(data: bytes, max_long_edge: int = MAX_LONG_EDGE) -> tuple[Image.Image, str]:
    """Decode, apply EXIF orientation, flatten the mode, downscale; return image and format.

    Bounded in memory whatever the bytes claim: the canvas and the raster to allocate
    are checked from the header before any pixel is decoded (MAX_DIMENSION, MAX_PIXELS,
    MAX_DECODED_BYTES in ``shared/images.py``); a JPEG is decoded already scaled down,
    and any other image is reduced at its own mode before any full-size conversion.
    """
    if not data:
        raise InvalidImageError("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            source_format = opened.format or ""
            # Image.open reads only the header; refuse huge canvases before decoding.
            check_canvas(opened.width, opened.height)
            if source_format == "JPEG":
                # JPEG decodes at 1/2, 1/4 or 1/8 scale: far less memory for phone photos.
                opened.draft("RGB", _fit(opened.size, max_long_edge))
            check_raster(opened.width, opened.height)
            orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
            opened.load()
            image = _reduce(opened, max_long_edge)
            image = _orient(image, orientation)
            image = _normalize_mode(image)
            if max(image.size) > max_long_edge:
                image.thumbnail((max_long_edge, max_long_edge), Image.Resampling.LANCZOS)
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"the image is too large to decode safely: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(f"not a readable image: {type(exc).__name__}: {exc}") from exc
    return image, source_format


def _fit(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    """``size`` scaled so that its long edge is at most ``long_edge`` (aspect kept)."""
    scale = min(1.0, long_edge / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


_REDUCIBLE_AS = {"1": "L", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}


def _reduce(image: Image.Image, long_edge: int) -> Image.Image:
    """Shrink by a whole factor (box average) before anything else copies the full raster.

    The factor keeps the long edge at or above ``long_edge``, so the final LANCZOS
    thumbnail still does the quality resampling, on a raster 4 to 64 times smaller.
    """
    factor = max(image.size) // long_edge
    if factor < 2:
        return image
    if image.mode == "P":
        # A palette cannot be averaged; one full-size RGB(A) copy is within the raster cap.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in _REDUCIBLE_AS:
        image = image.convert(_REDUCIBLE_AS[image.mode])
    return image.reduce(factor)


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient(image: Image.Image, orientation: object) -> Image.Image:
    """Apply EXIF orientation read from the original (a reduced copy carries no EXIF)."""
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def flatten(image: Image.Image, background: str = "white") -> Image.Image:
    """An RGB or L copy with any transparency composited onto ``background``."""
    if image.mode != "RGBA":
        return image
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def as_is(data: bytes, max_bytes: int = MAX_ENCODED_BYTES) -> PreparedImage | None:
    """``data`` unchanged when its header shows it already fits every limit; else None.

    Header only, no pixel decode (tens of microseconds): the bytes were verified
    when they were accepted or fetched, and re-encoding an image that is already
    small enough would cost CPU on every scan and lose quality for nothing.
    """
    if len(data) > max_bytes:
        return None
    try:
        image = Image.open(io.BytesIO(data), formats=_AS_IS_PLUGINS)
        media_type = AS_IS_FORMATS.get(image.format or "")
        if (
            media_type is None
            or image.mode not in AS_IS_MODES
            or max(image.size) > MAX_LONG_EDGE
            or _orientation(image, data) != 1
        ):
            return None
    except _DECODE_ERRORS:
        return None  # prepare_image decodes it and says what is wrong
    return _prepared(data, media_type, image)


def _orientation(image: Image.Image, data: bytes) -> int:
    """The EXIF orientation, without decoding a PNG that cannot have one.

    Pillow decodes a whole PNG to find its orientation (the chunks that hold it may
    follow the pixels): about 0.9 ms for a 320x120 label, on every scan. Their names
    are plain bytes in the file, so a PNG that names none of them is upright.
    """
    if image.format == "PNG" and not any(name in data for name in _PNG_ORIENTATION_CHUNKS):
        return 1
    orientation: int = image.getexif().get(EXIF_ORIENTATION, 1)
    return orientation


def prepare_image(data: bytes, max_bytes: int = MAX_ENCODED_BYTES) -> PreparedImage:
    """Decode ``data`` and re-encode it within the API's pixel and byte limits."""
    image, source_format = decode(data)
    has_alpha = image.mode == "RGBA"
    while True:
        lossless = source_format in LOSSLESS_SOURCES
        encoded, media_type = _encode(image, has_alpha, lossless, max_bytes)
        if encoded is not None:
            return _prepared(encoded, media_type, image)
        if min(image.size) <= 16:
            raise InvalidImageError("the image cannot be encoded within the byte limit")
        # Still too large at the lowest quality: fewer pixels is the only lever left.
        size = (max(1, int(image.width * 0.75)), max(1, int(image.height * 0.75)))
        image = image.resize(size, Image.Resampling.LANCZOS)


def _prepared(data: bytes, media_type: str, image: Image.Image) -> PreparedImage:
    return PreparedImage(
        data=data,
        media_type=media_type,
        width=image.width,
        height=image.height,
        token_estimate=token_estimate(image.width, image.height),
    )


def _normalize_mode(image: Image.Image) -> Image.Image:
    """RGB, L or RGBA; RGBA only when some pixel is actually transparent."""
    if image.mode in {"RGB", "L"}:
        return image
    if image.mode == "P" and "transparency" not in image.info:
        return image.convert("RGB")
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        # 16-bit and float greyscale: scale into 8 bits rather than clip.
        grey = image.convert("F")
        high = float(grey.getextrema()[1] or 0)  # type: ignore[arg-type]
        scale = 255 / high if high > 255 else 1.0
        return grey.point(lambda v: v * scale).convert("L")
    rgba = image.convert("RGBA")
    alpha_min = rgba.getchannel("A").getextrema()[0]
    return rgba if isinstance(alpha_min, int) and alpha_min < 255 else rgba.convert("RGB")


def _encode(
    image: Image.Image, has_alpha: bool, lossless_source: bool, max_bytes: int
) -> tuple[bytes | None, str]:
    """The smallest acceptable encoding at this size, or None when none fits."""
    if has_alpha:
        png = _save(image, "PNG")
        return (png if len(png) <= max_bytes else None), "image/png"
    jpeg: bytes | None = None
    for quality in JPEG_QUALITIES:
        candidate = _save(image, "JPEG", quality=quality)
        if len(candidate) <= max_bytes:
            jpeg = candidate
            break
    if lossless_source:
        # Flat label artwork and screenshots are often smaller, and sharper, as PNG.
        png = _save(image, "PNG")
        if len(png) <= max_bytes and (jpeg is None or len(png) <= len(jpeg)):
            return png, "image/png"
    return jpeg, "image/jpeg"


def _save(image: Image.Image, fmt: str, **options: int) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", optimize=True, **options)
    else:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()
