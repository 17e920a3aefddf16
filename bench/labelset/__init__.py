"""The generated evaluation set for the local backend: hundreds of varied labels.

``corpus()`` draws labels from real-world conventions (``world``, ``wording``) for every
marketplace and category (``markets``, ``markets_more``); each label gets a layout and a split.
The split is fixed by ``SEED``: a label is held out when a hash of its index with the seed
falls in the held-out share. No rule change may be tuned on the held-out part; the dev part
is for looking at mistakes.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bench.labelset.markets import eu_nonfood, uk_nonfood, us_label
from bench.labelset.markets_more import ca_label, eu_cosmetics, eu_food, jp_label
from bench.labelset.parts import Draft

SEED = 20251
"""Draws the labels and the split; changing it gives a new, equally valid set."""
SIZE = 480
HELD_OUT_SHARE = 0.5
Split = Literal["dev", "held-out"]
Layout = Literal["stack", "columns", "table", "band", "small", "pictograms"]
LAYOUTS: tuple[Layout, ...] = ("stack", "columns", "table", "band", "small", "pictograms")
CATEGORIES = ("toys", "cosmetics", "electronics", "food", "supplements", "general")
# Marketplace groups a label is scanned for, with weights: mostly one market, some EU pairs.
MARKET_GROUPS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("US",), 5),
    (("UK",), 4),
    (("DE",), 4),
    (("FR",), 4),
    (("IT",), 3),
    (("ES",), 3),
    (("JP",), 3),
    (("CA",), 3),
    (("DE", "FR"), 2),
    (("IT", "ES"), 1),
)


@dataclass(frozen=True)
class CorpusLabel:
    """One generated label: its blocks of text, how it is drawn, what is expected."""

    name: str
    category: str
    marketplaces: tuple[str, ...]
    blocks: tuple[tuple[str, tuple[str, ...]], ...]
    expected: Mapping[str, str] = field(default_factory=dict)
    script: Literal["latin", "ja"] = "latin"
    layout: Layout = "stack"
    split: Split = "dev"
    planted: str = ""

    @property
    def lines(self) -> tuple[str, ...]:
        """Every line, block after block."""
        return tuple(line for _, block in self.blocks for line in block)

    def expect(self, rule: str) -> str:
        """The expected status of ``rule`` (pass unless named)."""
        return self.expected.get(rule, "pass")


def split_of(index: int, seed: int = SEED) -> Split:
    """Held out or dev, from the label's index and the seed alone.

    Not from its content: a label stays on its side when the generator's wording changes.
    """
    bucket = zlib.crc32(f"{seed}:{index}".encode()) % 1000
    return "held-out" if bucket < HELD_OUT_SHARE * 1000 else "dev"


IT_PACKAGING = (
    "PAP 20 - Raccolta carta",
    "Imballaggio: PP 5 Raccolta plastica",
    "Scatola: C/PAP 81 - Raccolta carta. Verifica le disposizioni del tuo Comune.",
)


def _draft(rng: random.Random, markets: tuple[str, ...], category: str) -> Draft:
    draft = _content(rng, markets, category)
    if "IT" in markets:
        # Italian packaging carries its material code and sorting note in every category.
        draft.add("packaging", [rng.choice(IT_PACKAGING)])
        draft.variant("no-packaging", {"packaging": None}, {"IT-ALL-PACKAGING": "unclear"})
    return draft


def _content(rng: random.Random, markets: tuple[str, ...], category: str) -> Draft:
    first = markets[0]
    if first == "US":
        return us_label(rng, category)
    if first == "JP":
        return jp_label(rng, category)
    if first == "CA":
        return ca_label(rng, category)
    if category == "cosmetics":
        return eu_cosmetics(rng, markets)
    if category in {"food", "supplements"}:
        return eu_food(rng, markets, category)
    if first == "UK":
        return uk_nonfood(rng, category)
    return eu_nonfood(rng, markets, category)


def corpus(size: int = SIZE, seed: int = SEED) -> list[CorpusLabel]:
    """``size`` labels: about 40 % compliant, the rest with one planted problem each."""
    rng = random.Random(seed)
    groups = [g for g, _ in MARKET_GROUPS]
    weights = [n for _, n in MARKET_GROUPS]
    labels: list[CorpusLabel] = []
    for index in range(size):
        markets = rng.choices(groups, weights)[0]
        category = rng.choice(CATEGORIES)
        sub = random.Random(f"{seed}-{index}")
        draft = _draft(sub, markets, category)
        blocks = dict(draft.blocks)
        expected = dict(draft.expected)
        planted = ""
        if draft.variants and sub.random() < 0.6:
            planted = sub.choice(sorted(draft.variants))
            changes, more = draft.variants[planted]
            for block, lines in changes.items():
                if lines is None:
                    blocks.pop(block, None)
                elif block in blocks:
                    blocks[block] = lines
            expected.update(more)
        order = list(blocks.items())
        if sub.random() < 0.5:
            # Real labels do not share one block order: shuffle all but the title.
            head, tail = order[:1], order[1:]
            sub.shuffle(tail)
            order = head + tail
        name = f"{index:04d}-{'+'.join(markets).lower()}-{category}-{planted or 'ok'}"
        labels.append(
            CorpusLabel(
                name=name,
                category=category,
                marketplaces=markets,
                blocks=tuple((k, tuple(v)) for k, v in order),
                expected=expected,
                script="ja" if markets == ("JP",) else "latin",
                layout=sub.choice(LAYOUTS),
                split=split_of(index, seed),
                planted=planted,
            )
        )
    return labels
