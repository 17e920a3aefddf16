"""Drawing generated labels: fonts, layouts (columns, tables, inverse bands, small print,
pictograms and barcodes) and phone-photo degradations, all seeded by the label's name."""

from __future__ import annotations

import functools
import io
import random
import zlib
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from bench.labelset import CorpusLabel

Font = ImageFont.FreeTypeFont
LATIN = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
)
CJK = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/opentype/ipafont-mincho/ipam.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
WIDTH = 900


@functools.cache
def fonts(script: str) -> tuple[str, ...]:
    """The installed font files for a script (Japanese needs a CJK font)."""
    return tuple(p for p in (CJK if script == "ja" else LATIN) if Path(p).is_file())


@functools.cache
def _font(path: str, size: int) -> Font:
    return ImageFont.truetype(path, size)


def _wrap(text: str, font: Font, width: int, cjk: bool) -> list[str]:
    words = list(text) if cjk else text.split(" ")
    joiner = "" if cjk else " "
    rows: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current}{joiner}{word}" if current else word
        if current and font.getlength(candidate) > width:
            rows.append(current)
            current = word
        else:
            current = candidate
    return [*rows, current] if current else rows


class _Canvas:
    """Rows of text laid out top to bottom, then painted."""

    def __init__(self, rng: random.Random, label: CorpusLabel) -> None:
        path = rng.choice(fonts(label.script))
        self.cjk = label.script == "ja"
        self.size = rng.randint(19, 24)
        self.body = _font(path, self.size)
        self.title = _font(path, self.size + 8)
        self.small = _font(path, rng.randint(13, 15))
        self.paper = (rng.randint(236, 255), rng.randint(234, 255), rng.randint(225, 255))
        self.ink = (rng.randint(0, 45),) * 3
        self.ops: list[tuple[str, tuple[int, ...], object]] = []
        self.y = 26

    def text(self, x: int, width: int, line: str, font: Font, fill: tuple[int, ...]) -> None:
        for row in _wrap(line, font, width, self.cjk):
            self.ops.append(("text", (x, self.y), (row, font, fill)))
            self.y += int(font.getbbox("Ag")[3]) + self.size // 2

    def band(self, lines: Sequence[str], rng: random.Random) -> None:
        """An inverse band: light (sometimes small) text on a dark fill."""
        top = self.y
        self.y += 8
        dark = (rng.randint(20, 70), rng.randint(20, 60), rng.randint(40, 90))
        marker = len(self.ops)
        font = self.small if rng.random() < 0.5 else self.body
        light = (rng.randint(200, 240),) * 3
        for line in lines:
            self.text(34, WIDTH - 68, line, font, light)
        self.y += 8
        self.ops.insert(marker, ("rect", (20, top, WIDTH - 20, self.y), dark))

    def paint(self) -> Image.Image:
        image = Image.new("RGB", (WIDTH, self.y + 26), self.paper)
        draw = ImageDraw.Draw(image)
        draw.rectangle((6, 6, WIDTH - 7, image.height - 7), outline=self.ink, width=2)
        for kind, where, what in self.ops:
            if kind == "rect":
                draw.rectangle(where, fill=what)  # type: ignore[arg-type]
            elif kind == "line":
                draw.line(where, fill=self.ink, width=1)
            else:
                row, font, fill = what  # type: ignore[misc]
                draw.text(where, row, font=font, fill=fill)
        return image


def _table(canvas: _Canvas, lines: Sequence[str]) -> None:
    """Key-value rows in a ruled two-column table ("Hersteller" | "X GmbH, ...")."""
    for line in lines:
        key, sep, value = line.partition(":")
        canvas.ops.append(("line", (20, canvas.y - 4, WIDTH - 20, canvas.y - 4), None))
        if sep and value.strip() and len(key) < 40:
            top = canvas.y
            canvas.text(28, 250, key.strip(), canvas.body, canvas.ink)
            left_end, canvas.y = canvas.y, top
            canvas.text(300, WIDTH - 330, value.strip(), canvas.body, canvas.ink)
            canvas.y = max(canvas.y, left_end)
        else:
            canvas.text(28, WIDTH - 56, line, canvas.body, canvas.ink)


def _pictograms(image: Image.Image, rng: random.Random) -> Image.Image:
    """A barcode with its digits, a warning triangle and a round recycling-like mark."""
    strip = 120
    out = Image.new("RGB", (image.width, image.height + strip), image.getpixel((10, 10)))
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    x, top = 40, image.height + 10
    for _ in range(60):
        w = rng.choice((1, 2, 3))
        if rng.random() < 0.55:
            draw.rectangle((x, top, x + w, top + 70), fill=(0, 0, 0))
        x += w + 1
    digits = "".join(str(rng.randint(0, 9)) for _ in range(13))
    draw.text((40, top + 74), digits, font=_font(fonts("latin")[0], 16), fill=(0, 0, 0))
    cx = image.width - 200
    draw.polygon(((cx, top + 80), (cx + 40, top), (cx + 80, top + 80)), outline=(0, 0, 0), width=4)
    draw.ellipse((cx + 100, top + 5, cx + 170, top + 75), outline=(0, 0, 0), width=4)
    return out


def _layout(label: CorpusLabel, rng: random.Random) -> Image.Image:  # noqa: PLR0912 - one branch per layout
    canvas = _Canvas(rng, label)
    blocks = list(label.blocks)
    special = rng.randrange(1, len(blocks)) if len(blocks) > 1 else 0
    if label.layout == "columns" and len(blocks) > 3:
        title, rest = blocks[0], blocks[1:]
        for line in title[1]:
            canvas.text(28, WIDTH - 56, line, canvas.title, canvas.ink)
        half = (len(rest) + 1) // 2
        top = canvas.y
        for column, part in ((0, rest[:half]), (1, rest[half:])):
            canvas.y = top
            for _, lines in part:
                for line in lines:
                    canvas.text(28 + column * 450, 400, line, canvas.body, canvas.ink)
            column_end = canvas.y
            if column == 0:
                left_end = column_end
        canvas.y = max(canvas.y, left_end)
        return canvas.paint()
    for index, (_, lines) in enumerate(blocks):
        if index == 0:
            for line in lines:
                canvas.text(28, WIDTH - 56, line, canvas.title, canvas.ink)
        elif label.layout == "band" and index == special:
            canvas.band(lines, rng)
        elif label.layout == "small" and index == special:
            grey = (rng.randint(95, 130),) * 3
            for line in lines:
                canvas.text(28, WIDTH - 56, line, canvas.small, grey)
        elif label.layout == "table":
            _table(canvas, lines)
        else:
            for line in lines:
                canvas.text(28, WIDTH - 56, line, canvas.body, canvas.ink)
    image = canvas.paint()
    return _pictograms(image, rng) if label.layout == "pictograms" else image


def render(label: CorpusLabel, photo: bool = False) -> bytes:
    """The label as image bytes; ``photo`` imitates a phone photo of the printed label."""
    rng = random.Random(zlib.crc32(label.name.encode()))
    image = _layout(label, rng)
    tilt = rng.uniform(-4.0, 4.0) if photo else rng.uniform(-1.2, 1.2)
    image = image.rotate(
        tilt, expand=True, fillcolor=(200, 200, 195), resample=Image.Resampling.BICUBIC
    )
    out = io.BytesIO()
    if not photo:
        if rng.random() < 0.5:
            image.save(out, "PNG")
        else:
            image.save(out, "JPEG", quality=rng.randint(75, 92))
        return out.getvalue()
    scale = rng.uniform(0.75, 0.9)
    image = image.resize(
        (int(image.width * scale), int(image.height * scale)), Image.Resampling.BILINEAR
    )
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
    # Uneven light: a gradient from one side, and the whole shot a little flat.
    shade = Image.linear_gradient("L").resize(image.size).rotate(rng.choice((0, 90, 180, 270)))
    dim = Image.new("RGB", image.size, (0, 0, 0))
    image = Image.composite(
        image, dim, shade.point(lambda v: 255 - v * rng.uniform(0.25, 0.4) // 1)
    )
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 0.9))
    noise = Image.effect_noise(image.size, rng.uniform(8, 14)).convert("RGB")
    image = Image.blend(image, noise, 0.06)
    image.save(out, "JPEG", quality=rng.randint(55, 70))
    return out.getvalue()
