"""Small real images made with Pillow."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw


def label_png(text: str = "Made in China", size: tuple[int, int] = (320, 120)) -> bytes:
    """A PNG of a white label with black text."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((10, 10), text, fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bilevel_png(width: int, height: int) -> bytes:
    """A well-formed 1-bit PNG of zeros: a few KB on disk, width x height decoded."""
    row = b"\0" * (1 + -(-width // 8))
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row * 1000) for _ in range(height // 1000))
    body += packer.compress(row * (height % 1000)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
