"""Is an element a rule did not find perhaps on the label, misread by OCR?

A rule that finds nothing concludes "missing"; on OCR'd text the element may be there with
a character or two read wrong ("INTEGNATORE", "haltbarbis", "黄味期限"). Before such a
``fail`` stands, the patterns the rule looked for are matched again *fuzzily* (the
``regex`` module's edit-distance matching of the same pattern) against the lines as read:

- a line read with confidence may differ by one edit per ``PER_EDIT_CONFIDENT`` letters;
- a weakly read line by one edit per ``PER_EDIT_DOUBTFUL`` letters;
- only letters count, wide (CJK) ones as ``WIDE`` letters (a kanji says what several do):
  digits and punctuation are what patterns leave open, so an edit there proves nothing;
- the match must cover whole words: "supplemen|ts" is not a misread "supplement".

A match means "present but misread": the rule reports ``unclear`` with the line and its
OCR confidence, never ``fail``. Text that was not OCR'd is never second-guessed.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

import msgspec
import regex
import structlog

log = structlog.get_logger("analyzer")

MAX_EDITS = 3
PER_EDIT_CONFIDENT = 10  # letters per allowed edit in a line read with confidence
PER_EDIT_DOUBTFUL = 4  # ... in a weakly read line
WIDE = 3  # letters a kanji or kana counts for: one of thousands of signs, not of 26
DOUBTFUL = 0.9  # below this recogniser confidence a line is weakly read
_TIMEOUT = 0.05  # s per search: a pathological pattern must not stall a scan


class Misread(msgspec.Struct, frozen=True, kw_only=True):
    """A line that looks like a damaged form of what a rule looked for."""

    line: str
    matched: str
    edits: int
    confidence: float
    reread: bool

    def describe(self) -> str:
        """The evidence, for the finding."""
        how = "re-read" if self.reread else "read"
        return (
            f'"{self.line}" ({how} with OCR confidence {self.confidence:.2f}) looks like it '
            f'with {self.edits} character(s) misread ("{self.matched}").'
        )


@functools.cache
def _fuzzy(pattern: str) -> regex.Pattern[str]:
    return regex.compile(
        f"(?:{pattern}){{e<={MAX_EDITS}}}",
        regex.IGNORECASE | regex.BESTMATCH | regex.V0,
    )


def _letters(text: str) -> int:
    wide = ("W", "F")
    return sum(
        WIDE if unicodedata.east_asian_width(ch) in wide else 1 for ch in text if ch.isalpha()
    )


def _whole_words(text: str, start: int, end: int) -> bool:
    if start >= end:
        return False
    before = start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
    after = end == len(text) or not (text[end - 1].isalnum() and text[end].isalnum())
    return before and after


def find_misread(
    patterns: Sequence[str],
    lines: Sequence[str],
    confidences: Sequence[float],
    reread: Sequence[bool],
    around: Sequence[int] = (),
) -> Misread | None:
    """The first line (or pair of lines) where one of ``patterns`` matches within the budget.

    ``around``: line indices near which the element is expected (the part of it that was
    found); when given, only the lines within two of them are searched.
    """
    indices = range(len(lines))
    if around:
        indices = range(max(0, min(around) - 2), min(len(lines), max(around) + 3))
    for pattern in patterns:
        fuzzy = _fuzzy(pattern)
        for i in indices:
            # A phrase may wrap onto the next line: each line is searched with the next.
            window = "\n".join(lines[i : i + 2])
            found = _match(fuzzy, window)
            if found is None or not _whole_words(window, *found.span()):
                continue
            inserted = found.fuzzy_changes[1]
            if found.start() in inserted or found.end() - 1 in inserted:
                # Letters added at an end make another word ("supplement" + "s"), the very
                # difference a pattern's lookaround is there to see.
                continue
            first = i + window.count("\n", 0, found.start())
            last = i + window.count("\n", 0, found.end())
            confidence = min(confidences[first : last + 1])
            per_edit = PER_EDIT_DOUBTFUL if confidence < DOUBTFUL else PER_EDIT_CONFIDENT
            edits = sum(found.fuzzy_counts)
            if edits <= _letters(found.group()) // per_edit:
                return Misread(
                    line=" / ".join(lines[first : last + 1]),
                    matched=found.group().replace("\n", " "),
                    edits=edits,
                    confidence=confidence,
                    reread=any(reread[first : last + 1]),
                )
    return None


def _match(fuzzy: regex.Pattern[str], text: str) -> regex.Match[str] | None:
    try:
        return fuzzy.search(text, timeout=_TIMEOUT)
    except TimeoutError:
        # No evidence either way: the rule's own verdict stands.
        log.warning("misread_check_timeout", pattern=fuzzy.pattern[:80], chars=len(text))
        return None
