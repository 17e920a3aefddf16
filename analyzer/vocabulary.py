"""Word lists per language turned into tolerant regexes: morphology and punctuation as rules.

A vocabulary in ``rulebook.toml`` lists phrases per language (``[vocabulary.ROLE_MAKER]``,
``de = ["hergestellt von", ...]``). Each phrase becomes a pattern that also accepts:

- the inflections of its words in that language (``pile`` → ``piles``, ``importato`` →
  ``importata``, ``Hersteller`` → ``Herstellerin``), from the suffix rules below;
- punctuation as OCR and printers vary it: ``Ch.-B.`` matches ``Ch.B.``, ``Ch-B``, ``ChB``
  and ``Ch. - B.``; spaces between words may be several or a line break.

So a new wording is a new phrase in the data, and its plural or feminine comes for free.
An entry starting with ``re:`` is a regex, for the rare phrase the rules above cannot say.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

# Inflection endings per language, tried after a word's stem; why each: plurals (all),
# feminine/participle agreement (fr, es, it), German declension and the -in feminine.
_SUFFIXES: dict[str, str] = {
    "en": r"(?:s|es|'s)?",
    "de": r"(?:e|en|er|es|em|n|s|in|innen)?",
    "fr": r"(?:e|s|es|x)?",
    "es": r"(?:s|es|a|as)?",
    "it": "",  # Italian swaps the final vowel instead (importato/importata/importati).
    "ja": "",
}
_MIN_INFLECTED = 4  # short words ("by", "von", "par", "CE") stay exact


def _letters(text: str) -> str:
    """Letters with their accent optional: capitals and OCR often drop it ("A consommer")."""
    out = []
    for ch in text:
        base = unicodedata.normalize("NFD", ch)[0]
        out.append(f"[{base}{ch}]" if base != ch and base.isascii() else re.escape(ch))
    return "".join(out)


def _word(word: str, language: str) -> str:
    if not word.isalpha() or len(word) < _MIN_INFLECTED:
        return _letters(word)
    if language == "it" and word[-1].lower() in "aeio":
        return _letters(word[:-1]) + "[aeio]"
    if language == "es" and word[-1].lower() in "ao":
        return _letters(word[:-1]) + "[ao]s?"
    return _letters(word) + _SUFFIXES.get(language, "")


def _token(token: str, language: str) -> str:
    """One space-separated token: words keep their inflections, punctuation is optional."""
    parts = re.split(r"([.\-/:'\u2019])", token)
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if part in {".", "-", "/", ":"}:
            # A printed "Ch.-B." is "ChB", "Ch.B.", "Ch-B" or "Ch. - B." after OCR.
            out.append(r"\s*[.\-/:]?\s*")
        elif part in {"'", "\u2019"}:
            out.append(r"['\u2019 ]?")
        else:
            out.append(_word(part, language))
    return "".join(out)


def phrase_pattern(phrase: str, language: str) -> str:
    """The regex of one phrase in one language."""
    tokens = phrase.split()
    return r"\s+".join(_token(token, language) for token in tokens).replace(
        r"\s*[.\-/:]?\s*\s+", r"\s*[.\-/:]?\s*"
    )


def vocabulary_pattern(entries: Mapping[str, Iterable[str]]) -> str:
    """One alternation for a whole vocabulary, longest phrases first, on word boundaries."""
    alternatives = sorted(
        {
            # "re:" entries are regexes, for what a phrase cannot say ("L" only before ":" or ".").
            p[3:] if p.startswith("re:") else phrase_pattern(p, lang)
            for lang, phrases in entries.items()
            for p in phrases
        },
        key=len,
        reverse=True,
    )
    return r"(?<![\w])(?:" + "|".join(alternatives) + r")(?![\w])"
