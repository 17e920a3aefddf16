"""The label rulebook as data (rulebook.toml): loaded, validated, patterns compiled."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from importlib import resources
from typing import Literal

import msgspec

from analyzer.addresses import PostalFormat
from analyzer.vocabulary import vocabulary_pattern
from shared.schemas import Category, Marketplace, Severity

DetectKind = Literal["text", "language", "visual", "listing", "address", "operator", "code"]
Status = Literal["pass", "fail", "unclear"]
_MACRO = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


class Detect(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a rule is decided from the label text."""

    kind: DetectKind = "text"
    all: list[str] = []
    any: list[str] = []
    min_any: int = 1
    local: dict[Marketplace, list[str]] = {}
    none: list[str] = []
    when: list[str] = []
    when_absent: str = "the text that triggers this rule is absent"
    otherwise: Status = "pass"
    on_missing: Status = "fail"
    languages: list[str] = []
    hint: list[str] = []
    near: list[str] = []
    """Text that suggests the element is there but did not parse: unclear, not fail."""
    regions: list[str] = []
    """address: where the address must be (EU, UK, US, CA, JP, OTHER); empty = anywhere."""
    regions_for: dict[Marketplace, list[str]] = {}
    electronic: bool = False
    """address: an e-mail or web address must belong to it (GPSR)."""
    exclude_roles: list[str] = []
    """address: blocks introduced by these role vocabularies do not count."""
    vocab: list[str] = []
    """code: vocabularies of the words that introduce the code (batch, model...)."""


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One label requirement for some marketplaces and categories."""

    id: str
    marketplaces: list[Marketplace]
    categories: list[Category] = []
    requirement: str
    regulation: str
    severity: Severity
    fix: str
    detect: Detect = Detect()

    def applies(self, marketplace: Marketplace, category: Category) -> bool:
        """Whether this rule is checked for ``marketplace`` and ``category``."""
        return marketplace in self.marketplaces and (
            not self.categories or category in self.categories
        )


class Language(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Markers of one language: common words, or a character class for other scripts."""

    name: str
    words: list[str] = []
    pattern: str = ""
    min_hits: int = 3


class Rulebook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole rulebook file."""

    version: str
    macros: dict[str, str] = {}
    vocabulary: dict[str, dict[str, list[str]]] = {}
    """Phrases per language; each vocabulary is also a macro (``{ROLE_MAKER}``)."""
    postal: dict[str, PostalFormat] = {}
    """Postal-line formats per country, for the address detector."""
    fold: dict[str, str] = {}
    """Characters OCR reads as a lookalike (simplified for Japanese kanji), folded back."""
    languages: dict[str, Language] = {}
    rules: list[Rule] = []

    def all_macros(self) -> tuple[tuple[str, str], ...]:
        """The macros, with every vocabulary compiled to its tolerant pattern."""
        table = dict(self.macros)
        table.update((name, vocabulary_pattern(v)) for name, v in self.vocabulary.items())
        return tuple(sorted(table.items()))

    def for_scan(self, marketplace: Marketplace, category: Category) -> list[Rule]:
        """The rules checked for one marketplace and category, in file order."""
        return [rule for rule in self.rules if rule.applies(marketplace, category)]


class RulebookError(ValueError):
    """The rulebook file is malformed; the message names the rule."""


@functools.cache
def load_rulebook(source: str | None = None) -> Rulebook:
    """Decode and validate the rulebook (the packaged file unless ``source`` is given)."""
    text = source if source is not None else _packaged_text()
    try:
        book = msgspec.toml.decode(text, type=Rulebook)
    except msgspec.ValidationError as exc:
        raise RulebookError(f"rulebook.toml: {exc}") from exc
    _validate(book)
    return book


def _packaged_text() -> str:
    return (resources.files("analyzer") / "rulebook.toml").read_text(encoding="utf-8")


def _validate(book: Rulebook) -> None:
    seen: set[str] = set()
    for rule in book.rules:
        if rule.id in seen:
            raise RulebookError(f"rule {rule.id} is defined twice")
        seen.add(rule.id)
        detect = rule.detect
        for language in detect.languages:
            if language not in book.languages:
                raise RulebookError(f"rule {rule.id} names unknown language {language!r}")
        if detect.kind == "language" and not detect.languages:
            raise RulebookError(f"rule {rule.id} is a language check without languages")
        if detect.kind == "text" and not (detect.all or detect.any or detect.local or detect.none):
            raise RulebookError(f"rule {rule.id} is a text check without patterns")
        for name in (*detect.vocab, *detect.exclude_roles):
            if name not in book.vocabulary:
                raise RulebookError(f"rule {rule.id} names unknown vocabulary {name!r}")
        if detect.kind == "code" and not detect.vocab:
            raise RulebookError(f"rule {rule.id} is a code check without a vocabulary")
        for pattern in _patterns_of(detect):
            try:
                compile_pattern(pattern, book.all_macros())
            except (re.error, KeyError) as exc:
                raise RulebookError(f"rule {rule.id}: bad pattern {pattern!r}: {exc}") from exc


def _patterns_of(detect: Detect) -> Iterable[str]:
    yield from (*detect.all, *detect.any, *detect.none, *detect.when, *detect.hint, *detect.near)
    for patterns in detect.local.values():
        yield from patterns


@functools.cache
def compile_pattern(pattern: str, macros: tuple[tuple[str, str], ...]) -> re.Pattern[str]:
    """A rule pattern with its macros expanded, NFKC-normalised, case-insensitive."""
    table = dict(macros)
    expanded = pattern
    # Macros may name other macros ({MAKER} = {ROLE_MAKER}|...): expand a few levels deep.
    for _ in range(4):
        expanded = _MACRO.sub(lambda m: f"(?:{table[m.group(1)]})", expanded)
    return re.compile(unicodedata.normalize("NFKC", expanded), re.IGNORECASE)
