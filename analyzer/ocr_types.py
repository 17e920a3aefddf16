"""What OCR returns: lines with their confidence and box."""

from __future__ import annotations

import msgspec


class OcrLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of text as read, with the recogniser's confidence and its box."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]
    second_look: bool = False
    """Read again (inverted, contrast-stretched or upscaled) after a weak first reading."""


class OcrResult(msgspec.Struct, frozen=True, kw_only=True):
    """All lines of one image, in reading order."""

    lines: list[OcrLine]
    width: int
    height: int
    elapsed_s: float
    second_looks: int = 0
    unread_strips: int = 0
    """Strips of print no pass could read: what seems missing may be there."""

    @property
    def text(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float:
        """The mean recogniser confidence, weighted by line length (1.0 without lines)."""
        weights = [max(1, len(x.text)) for x in self.lines]
        if not weights:
            return 1.0
        total = sum(x.confidence * w for x, w in zip(self.lines, weights, strict=True))
        return round(total / sum(weights), 4)
