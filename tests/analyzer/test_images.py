"""Image preparation: decode, orient, bound pixels and bytes, reject what is not an image."""

from __future__ import annotations

import base64
import io
import math
import os
import struct
import time
import warnings
import zlib

import pytest
from PIL import Image, PngImagePlugin

from analyzer.images import (
    MAX_BASE64_BYTES,
    MAX_LONG_EDGE,
    as_is,
    prepare_image,
    token_estimate,
)
from shared.errors import InvalidImageError
from shared.images import MAX_DECODED_BYTES, MAX_DIMENSION, ImageTooLargeError
from tests.support.images import bilevel_png, label_png


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    channels = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * channels))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` with no real pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


def test_small_label_keeps_its_size_and_reports_tokens() -> None:
    prepared = prepare_image(label_png("Made in China", size=(320, 120)))
    assert (prepared.width, prepared.height) == (320, 120)
    assert prepared.media_type in {"image/png", "image/jpeg"}
    assert prepared.token_estimate == math.ceil(320 * 120 / 750)
    assert Image.open(io.BytesIO(prepared.data)).size == (320, 120)


def test_token_estimate_follows_the_documented_formula() -> None:
    assert token_estimate(1092, 1092) == math.ceil(1092 * 1092 / 750)
    assert token_estimate(1, 1) == 1


def test_large_photo_is_downscaled_to_the_long_edge_limit() -> None:
    photo = _encode(_noise((4000, 3000)), "JPEG", quality=90)
    prepared = prepare_image(photo)
    assert max(prepared.width, prepared.height) == MAX_LONG_EDGE
    assert prepared.width / prepared.height == pytest.approx(4 / 3, rel=0.01)
    assert prepared.media_type == "image/jpeg"
    assert len(base64.b64encode(prepared.data)) <= MAX_BASE64_BYTES


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    prepared = prepare_image(_encode(image, "JPEG", exif=exif))
    assert (prepared.width, prepared.height) == (100, 200)
    shown = Image.open(io.BytesIO(prepared.data)).convert("RGB")
    red, _, _ = shown.getpixel((50, 20))  # type: ignore[misc]
    assert red > 200, "the red half should be on top after rotation"
    assert shown.getexif().get(0x0112) in (None, 1), "orientation must not be applied twice"


def test_transparency_is_kept_as_png() -> None:
    image = Image.new("RGBA", (300, 200), (255, 255, 255, 0))
    image.paste((0, 0, 0, 255), (50, 50, 250, 150))
    prepared = prepare_image(_encode(image, "PNG"))
    assert prepared.media_type == "image/png"
    assert Image.open(io.BytesIO(prepared.data)).mode == "RGBA"


def test_opaque_alpha_channel_is_dropped() -> None:
    image = Image.new("RGBA", (300, 200), (10, 20, 30, 255))
    prepared = prepare_image(_encode(image, "PNG"))
    assert Image.open(io.BytesIO(prepared.data)).mode in {"RGB", "L"}


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.new("CMYK", (120, 80), (0, 50, 100, 0)), "JPEG"),
        (Image.new("I;16", (120, 80), 40000), "TIFF"),
        (Image.new("P", (120, 80), 3), "GIF"),
        (Image.new("LA", (120, 80), (100, 128)), "PNG"),
        (Image.new("1", (120, 80), 1), "BMP"),
    ],
    ids=["cmyk-jpeg", "16bit-tiff", "gif", "grey-alpha", "bilevel-bmp"],
)
def test_unusual_modes_become_sendable(image: Image.Image, fmt: str) -> None:
    prepared = prepare_image(_encode(image, fmt))
    decoded = Image.open(io.BytesIO(prepared.data))
    assert decoded.mode in {"RGB", "RGBA", "L"}
    assert (prepared.width, prepared.height) == (120, 80)


def test_byte_limit_is_met_by_lowering_quality_then_size() -> None:
    photo = _encode(_noise((1200, 900)), "JPEG", quality=95)
    prepared = prepare_image(photo, max_bytes=150_000)
    assert len(prepared.data) <= 150_000
    assert prepared.media_type == "image/jpeg"


def test_noisy_transparent_png_is_shrunk_under_the_api_limit() -> None:
    data = _encode(_noise((1400, 1400), "RGBA"), "PNG", compress_level=1)
    assert len(base64.b64encode(data)) > MAX_BASE64_BYTES
    prepared = prepare_image(data)
    assert prepared.media_type == "image/png"
    assert len(base64.b64encode(prepared.data)) <= MAX_BASE64_BYTES
    assert prepared.width < 1400


@pytest.mark.parametrize(
    "data",
    [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n", b"GIF89a" + b"\0" * 10],
    ids=["empty", "text", "png-signature-only", "gif-garbage"],
)
def test_non_images_are_rejected(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        prepare_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_are_rejected(fmt: str) -> None:
    whole = _encode(_noise((400, 300)), fmt)
    with pytest.raises(InvalidImageError):
        prepare_image(whole[: len(whole) // 2])


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    with pytest.raises(InvalidImageError):
        prepare_image(_png_header(30_000, 30_000))


def test_oversized_canvas_below_pillows_error_threshold_is_rejected() -> None:
    # 10000x10000 only warns in Pillow; our own pixel check must still refuse it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(InvalidImageError, match="too large"):
            prepare_image(_png_header(10_000, 10_000))


def test_bomb_warning_turned_error_is_also_an_invalid_image() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(InvalidImageError):
            prepare_image(_png_header(10_000, 10_000))


def _rotated() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif


def test_an_image_that_already_fits_is_sent_byte_for_byte() -> None:
    """No decode, no re-encode: the same bytes, with the size and token estimate read."""
    png = label_png(size=(600, 200))
    ready = as_is(png)
    assert ready is not None
    assert (ready.data, ready.media_type) == (png, "image/png")
    assert (ready.width, ready.height, ready.token_estimate) == (600, 200, 160)


@pytest.mark.parametrize(
    "data",
    [
        _encode(Image.new("RGB", (MAX_LONG_EDGE + 1, 10), "white"), "PNG"),
        _encode(Image.new("RGB", (200, 100)), "JPEG", exif=_rotated()),
        _encode(Image.new("CMYK", (20, 20)), "JPEG"),
        _encode(Image.new("RGB", (20, 20)), "BMP"),
        b"not an image",
    ],
    ids=["too-large", "exif-rotated", "cmyk", "bmp", "garbage"],
)
def test_images_that_need_work_are_not_sent_as_is(data: bytes) -> None:
    """Anything to scale, rotate, convert or reject goes through prepare_image."""
    assert as_is(data) is None


def _png_with_text(keyword: str, text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt(keyword, text)
    return _encode(Image.new("RGB", (20, 10)), "PNG", pnginfo=info)


@pytest.mark.parametrize(
    "data",
    [
        _encode(Image.new("RGB", (20, 10)), "PNG", exif=_rotated()),
        _png_with_text("XML:com.adobe.xmp", '<x:xmpmeta><r tiff:Orientation="6"/></x:xmpmeta>'),
        _png_with_text(
            "Raw profile type exif",
            f"\nexif\n{len(_rotated().tobytes())}\n{_rotated().tobytes().hex()}",
        ),
    ],
    ids=["exif-chunk", "xmp", "raw-profile"],
)
def test_a_png_rotated_by_any_of_its_chunks_is_not_sent_as_is(data: bytes) -> None:
    """A PNG's orientation is looked for wherever Pillow finds one."""
    assert as_is(data) is None


def test_an_upright_png_is_judged_by_its_header_alone() -> None:
    """No chunk that could rotate it: its pixels are not decoded (a corrupt IDAT shows it)."""
    png = label_png(size=(600, 200))
    start = png.index(b"IDAT") + 4
    broken = png[:start] + bytes(64) + png[start + 64 :]
    ready = as_is(broken)
    assert ready is not None and (ready.width, ready.height) == (600, 200)


@pytest.mark.parametrize(
    ("width", "height"), [(1, 40_000_000), (40_000_000, 1), (6_000, 6_000)], ids=str
)
def test_bomb_under_the_pixel_limit_is_refused_from_its_header(width: int, height: int) -> None:
    """A 1 x 40M strip took 3.9 s and 1.6 GB: now refused before a pixel is decoded."""
    started = time.process_time()
    with pytest.raises(ImageTooLargeError):
        prepare_image(bilevel_png(width, height))
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize("mode", ["1", "P", "RGBA", "I;16"])
def test_image_at_the_decoded_size_cap_is_reduced_before_conversion(mode: str) -> None:
    """The largest accepted raster of each awkward mode prepares quickly, to the long edge."""
    side = int(math.sqrt(MAX_DECODED_BYTES // 4))
    if mode == "1":
        data = bilevel_png(side, side)
    else:
        image = Image.new(mode, (side, side))
        if mode == "P":
            image.putpalette([i % 256 for i in range(768)])
            image.info["transparency"] = 0
        data = _encode(image, "PNG", compress_level=1)
    started = time.process_time()
    prepared = prepare_image(data)
    assert max(prepared.width, prepared.height) == MAX_LONG_EDGE
    assert time.process_time() - started < 3


def test_canvas_over_a_side_limit_is_refused_even_as_jpeg() -> None:
    jpeg = _encode(Image.new("L", (MAX_DIMENSION + 8, 8)), "JPEG")
    with pytest.raises(ImageTooLargeError, match="a side"):
        prepare_image(jpeg)
