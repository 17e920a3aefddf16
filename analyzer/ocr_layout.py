"""Reading order of OCR lines: two-column labels and key/value tables.

RapidOCR returns boxes top to bottom. On a two-column label that interleaves the
columns (an address split by a line from the other column); on a ruled table it
separates a key from its value. Rules read neighbouring lines, so the order matters:

- a vertical gutter with boxes on both sides, rows not aligned: read the left column,
  then the right one (what spans the gutter keeps its place above or below);
- the same gutter with short left boxes mostly facing a right box on the same row, or
  no gutter at all: rows; boxes side by side become one line, "key value".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

_NARROW = 0.6  # boxes narrower than this share of the page can belong to a column
_GUTTER = 0.02  # the smallest empty vertical strip that separates columns
_TABLE_ROWS = 0.7  # share of left boxes that face a right box in a table


class Boxed(Protocol):
    """A line with its box (x0, y0, x1, y1)."""

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The bounding box."""
        ...


L = TypeVar("L", bound=Boxed)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    top, bottom = max(a[1], b[1]), min(a[3], b[3])
    return bottom - top >= 0.5 * min(a[3] - a[1], b[3] - b[1])


def _same_row(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Centres level within a third of the smaller height, boxes not stacked.

    Stricter than overlap: a long line photographed at a tilt has a tall box that
    overlaps the short line below it, which is still the next line.
    """
    height = min(a[3] - a[1], b[3] - b[1])
    level = abs((a[1] + a[3]) - (b[1] + b[3])) / 2 <= height / 3
    return level and (a[2] <= b[0] or b[2] <= a[0])


def _gutter(lines: Sequence[Boxed], width: int) -> int | None:
    """The x of an empty vertical strip in the middle half of the page, if any."""
    covered = [False] * (width + 1)
    for line in lines:
        x0, _, x1, _ = line.box
        if x1 - x0 < _NARROW * width:
            for x in range(max(0, x0), min(width, x1) + 1):
                covered[x] = True
    best, run, start = (0, 0), 0, 0
    for x in range(width // 4, 3 * width // 4):
        if covered[x]:
            run = 0
            continue
        if run == 0:
            start = x
        run += 1
        if run > best[0]:
            best = (run, start)
    if best[0] < _GUTTER * width:
        return None
    return best[1] + best[0] // 2


def reading_order(lines: Sequence[L], width: int) -> list[list[L]]:
    """Lines grouped into reading order; a group of several is one row, left to right."""
    if len(lines) < 4 or width <= 0:
        return [[line] for line in lines]
    gutter = _gutter(lines, width)
    left = [x for x in lines if gutter is not None and x.box[2] <= gutter]
    right = [x for x in lines if gutter is not None and x.box[0] >= gutter]
    if len(left) < 2 or len(right) < 2:
        # One column: boxes side by side on a row are one line split by the detector, or
        # a key and its value in a table whose long rows hide the gutter.
        return _rows(lines)
    paired = sum(any(_overlap(a.box, b.box) for b in right) for a in left)
    narrow_keys = _median_width(left) < 0.6 * _median_width(right)
    if paired >= _TABLE_ROWS * len(left) and narrow_keys:
        return _rows(lines)
    return _columns(lines, left, right)


def _median_width(lines: Sequence[Boxed]) -> float:
    widths = sorted(x.box[2] - x.box[0] for x in lines)
    return float(widths[len(widths) // 2])


def _rows(lines: Sequence[L]) -> list[list[L]]:
    """Boxes that share a row, joined left to right; rows top to bottom."""
    rows: list[list[L]] = []
    for line in sorted(lines, key=lambda x: (x.box[1] + x.box[3]) / 2):
        row = next((r for r in rows if _same_row(r[0].box, line.box)), None)
        if row is None:
            rows.append([line])
        else:
            row.append(line)
    return [sorted(row, key=lambda x: x.box[0]) for row in rows]


def _columns(lines: Sequence[L], left: Sequence[L], right: Sequence[L]) -> list[list[L]]:
    top = min(x.box[1] for x in (*left, *right))
    spanning = [x for x in lines if x not in left and x not in right]
    above = [x for x in spanning if x.box[3] <= top + 4]
    below = [x for x in spanning if x not in above]
    ordered = [
        *sorted(above, key=lambda x: x.box[1]),
        *sorted(left, key=lambda x: x.box[1]),
        *sorted(right, key=lambda x: x.box[1]),
        *sorted(below, key=lambda x: x.box[1]),
    ]
    return [[line] for line in ordered]
