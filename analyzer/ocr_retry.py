"""A second look at the parts of a label the first OCR pass may have misread.

Before a rule concludes that something is missing, the regions where text is likely but
was read poorly are recognised again, each prepared for what is wrong with it:

- dark bands (light text printed on a dark fill): inverted and contrast-stretched;
- weak lines (low recogniser confidence, or small print): cut out with a margin,
  contrast-stretched and upscaled so the characters are about 40 px high.

A re-read replaces the first one only when the recogniser is more confident in it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from analyzer.ocr_types import OcrLine

Reader = Callable[[Image.Image], list[OcrLine]]

DARK_ROW = 110  # a row whose median grey is below this is a dark fill
MIN_BAND = 12  # px: thinner dark runs are rules and borders, not bands
WEAK = 0.8  # re-read lines the recogniser is less sure of than this
SMALL = 18  # px: re-read lines shorter than this (small print)
TARGET_HEIGHT = 40  # px: upscale small text to about this height
MAX_REGIONS = 4  # bound the extra time per label
SAME_TEXT = 0.8  # similarity above which a re-read box is a neighbour read again


def is_inverse(image: Image.Image) -> bool:
    """Light text on a dark label: the whole image is mostly dark."""
    return float(np.median(np.asarray(image.convert("L")))) < DARK_ROW


def dark_bands(image: Image.Image) -> list[tuple[int, int]]:
    """Row ranges filled dark across most of the width."""
    rows = np.median(np.asarray(image.convert("L")), axis=1)
    bands: list[tuple[int, int]] = []
    start: int | None = None
    for y, value in enumerate([*rows.tolist(), 255.0]):
        if value < DARK_ROW and start is None:
            start = y
        elif value >= DARK_ROW and start is not None:
            if y - start >= MIN_BAND:
                bands.append((start, y))
            start = None
    return bands


def _center_in(line: OcrLine, top: int, bottom: int) -> bool:
    return top <= (line.box[1] + line.box[3]) / 2 <= bottom


def _shift(lines: Sequence[OcrLine], dx: int, dy: int, scale: float) -> list[OcrLine]:
    return [
        OcrLine(
            text=x.text,
            confidence=x.confidence,
            box=(
                int(x.box[0] / scale) + dx,
                int(x.box[1] / scale) + dy,
                int(x.box[2] / scale) + dx,
                int(x.box[3] / scale) + dy,
            ),
            second_look=True,
        )
        for x in lines
    ]


def _mean(lines: Sequence[OcrLine]) -> float:
    weights = [max(1, len(x.text)) for x in lines]
    return sum(x.confidence * w for x, w in zip(lines, weights, strict=True)) / max(1, sum(weights))


def second_look(
    image: Image.Image, first: list[OcrLine], read: Reader
) -> tuple[list[OcrLine], int]:
    """The first pass, with dark bands and weak lines read again where that reads better.

    Also returns how many strips of print could not be read even on a second look.
    """
    lines = list(first)
    budget = MAX_REGIONS
    for top, bottom in dark_bands(image)[:budget]:
        budget -= 1
        y0, y1 = max(0, top - 3), min(image.height, bottom + 3)
        crop = ImageOps.autocontrast(
            ImageOps.invert(image.crop((0, y0, image.width, y1)).convert("RGB")), cutoff=1
        )
        scale = 2.0 if bottom - top < 80 else 1.0
        if scale != 1.0:
            crop = crop.resize(
                (int(crop.width * scale), int(crop.height * scale)), Image.Resampling.LANCZOS
            )
        again = _shift(read(crop), 0, y0, scale)
        before = [x for x in lines if _center_in(x, top, bottom)]
        if again and (not before or _mean(again) > _mean(before)):
            lines = [x for x in lines if not _center_in(x, top, bottom)] + again
    weak = [
        x
        for x in lines
        if not x.second_look and (x.confidence < WEAK or x.box[3] - x.box[1] < SMALL)
    ]
    for line in sorted(weak, key=lambda x: x.confidence)[: max(0, budget)]:
        x0, y0, x1, y1 = line.box
        height = max(1, y1 - y0)
        pad = max(4, height // 2)
        box = (
            max(0, x0 - pad),
            max(0, y0 - pad),
            min(image.width, x1 + pad),
            min(image.height, y1 + pad),
        )
        scale = max(1.5, min(3.0, TARGET_HEIGHT / height))
        crop = ImageOps.autocontrast(image.crop(box).convert("RGB"), cutoff=1)
        crop = crop.resize(
            (int(crop.width * scale), int(crop.height * scale)), Image.Resampling.LANCZOS
        )
        again = _middle_row(read(crop), (y0 - box[1]) * scale, (y1 - box[1]) * scale)
        # A tilted line's box is tall: the cut-out holds part of the line above or below,
        # and its re-read is that neighbour again, not this line.
        neighbours = [x.text for x in lines if x is not line and _overlaps(x.box, box)]
        again = [x for x in again if not any(_same_text(x.text, n) for n in neighbours)]
        if again and _mean(again) > line.confidence:
            text = " ".join(x.text for x in again)
            index = lines.index(line)
            lines[index] = OcrLine(
                text=text, confidence=round(_mean(again), 4), box=line.box, second_look=True
            )
    unread = 0
    if budget > 0:
        extra, unread = _unread_rows(image, lines, read)
        lines += extra
    return sorted(lines, key=lambda x: (x.box[1], x.box[0])), unread


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[1] < b[3] and b[1] < a[3] and a[0] < b[2] and b[0] < a[2]


def _same_text(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= SAME_TEXT


def _middle_row(lines: Sequence[OcrLine], top: float, bottom: float) -> list[OcrLine]:
    """The re-read boxes of the line that was cut out, not of its neighbours in the margin."""
    middle = (top + bottom) / 2
    return sorted(
        (x for x in lines if abs((x.box[1] + x.box[3]) / 2 - middle) <= (bottom - top) / 2),
        key=lambda x: x.box[0],
    )


INK = 35  # grey levels below the row's paper that count as ink
MIN_INK = 12  # dark pixels a row needs outside every box to count as unread text
MIN_STRIP, MAX_STRIP = 6, 50  # px: the height of a strip of unread text
MAX_STRIPS = 2
PAPER_RADIUS = 12  # px: the blur that estimates the paper around a pixel
MIN_RUNS = 4  # separate ink runs a row of text has at least
MIN_READ = 0.6  # a strip read below this confidence counts as unread


def _unread_rows(
    image: Image.Image, lines: Sequence[OcrLine], read: Reader
) -> tuple[list[OcrLine], int]:
    """Rows with ink that no box covers (small or faint print the detector skipped)."""
    grey = image.convert("L")
    gray = np.asarray(grey).astype(np.int16)
    # The local paper tone, not the row's: photos are lit unevenly across the label.
    paper = np.asarray(grey.filter(ImageFilter.BoxBlur(PAPER_RADIUS))).astype(np.int16)
    margin = max(8, image.width // 30)  # the label's border and the photo's edge
    covered = np.zeros(gray.shape, dtype=bool)
    for x in lines:
        covered[max(0, x.box[1] - 2) : x.box[3] + 2, max(0, x.box[0] - 4) : x.box[2] + 4] = True
    ink = (gray < paper - INK) & ~covered
    ink[:, :margin] = False
    ink[:, -margin:] = False
    # Text is many small strokes per row; a border or rule (slanted in a photo) is one
    # or two long runs: count the runs, not just the dark pixels.
    runs = (ink[:, 1:] & ~ink[:, :-1]).sum(axis=1)
    rows = (ink.sum(axis=1) >= MIN_INK) & (runs >= MIN_RUNS)
    strips: list[tuple[int, int]] = []
    start: int | None = None
    for y, on in enumerate([*rows.tolist(), False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            # Text-line height only: taller runs are pictograms, barcodes, photos.
            if MIN_STRIP <= y - start <= MAX_STRIP:
                strips.append((start, y))
            start = None
    found: list[OcrLine] = []
    unread = 0
    for top, bottom in strips[:MAX_STRIPS]:
        read_here = _read_strip(image, max(0, top - 4), min(image.height, bottom + 4), read)
        # Nothing legible at all: print that stays unread. A re-read of what a box
        # already holds (descenders, a tilted line's corner) is not unread text.
        unread += not read_here
        found += [x for x in read_here if not _covered_by(x, lines)]
    return found, unread


def _covered_by(line: OcrLine, lines: Sequence[OcrLine]) -> bool:
    middle = (line.box[0] + line.box[2]) / 2
    return any(
        _center_in(line, o.box[1], o.box[3]) and o.box[0] <= middle <= o.box[2] for o in lines
    )


def _read_strip(image: Image.Image, top: int, bottom: int, read: Reader) -> list[OcrLine]:
    crop = ImageOps.autocontrast(image.crop((0, top, image.width, bottom)).convert("RGB"), cutoff=1)
    # Unread print is small: bring it to about TARGET_HEIGHT, within 2-3x.
    scale = max(2.0, min(3.0, TARGET_HEIGHT / max(1, bottom - top - 8)))
    crop = crop.resize(
        (int(crop.width * scale), int(crop.height * scale)), Image.Resampling.LANCZOS
    )
    return [x for x in _shift(read(crop), 0, top, scale) if x.confidence >= MIN_READ]
