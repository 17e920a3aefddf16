"""Small real images made with Pillow."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def label_png(text: str = "Made in China", size: tuple[int, int] = (320, 120)) -> bytes:
    """A PNG of a white label with black text."""
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((10, 10), text, fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
