"""Floors on the held-out part of the generated label set, and the detectors as data.

The held-out part (bench/labelset, fixed seed) is never used to tune rules. Two floors:

- the rulebook on the labels' own text, the whole held-out part (fast: no OCR);
- the full backend (drawing, OCR, rules) on a small fixed sample of it, clean and as
  phone-like photos; ``make bench`` measures the whole part with intervals.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from analyzer import ocr
from analyzer.addresses import find_addresses
from analyzer.backends.local import LocalBackend
from analyzer.evaluator import evaluate
from analyzer.ocr_layout import reading_order
from analyzer.ocr_retry import dark_bands
from analyzer.ocr_types import OcrLine
from analyzer.rulebook import compile_pattern, load_rulebook
from analyzer.vocabulary import vocabulary_pattern
from bench.eval_local import analyze, analyze_text, checkable_rules, select
from bench.labelset import SEED, corpus, split_of
from bench.scoring import score, wilson

# Held-out floors. The text floor is the target. The OCR floors are regression
# guards at what the fixed sample reaches today: the whole part's numbers, with intervals,
# are in bench/results/local_eval.json and the README (photo-like fail precision 0.91, the
# target 0.9 met since the misread check). On the photo-like sample a rerun can flip one
# finding (ONNX Runtime's threaded scores vary in the last digits), so it is held to a count
# of false fails: the 2 it makes today, plus that one.
TEXT_FLOOR = 0.95
OCR_PRECISION_FLOOR = 0.9
OCR_RECALL_FLOOR = 0.9
PHOTO_FALSE_FAILS = 3
SAMPLE = 14  # labels; x2 renderings at about a second each

pytestmark = pytest.mark.timeout(300)


def test_split_is_fixed_and_disjoint() -> None:
    labels = corpus()
    held = [x for x in labels if x.split == "held-out"]
    dev = [x for x in labels if x.split == "dev"]
    assert len(labels) >= 400 and 0.35 < len(held) / len(labels) < 0.65
    assert {x.name for x in held}.isdisjoint(x.name for x in dev)
    assert all(x.split == split_of(int(x.name[:4]), SEED) for x in labels)
    assert {m for x in held for m in x.marketplaces} >= {
        "US",
        "UK",
        "DE",
        "FR",
        "IT",
        "ES",
        "JP",
        "CA",
    }


def test_rulebook_on_held_out_text_meets_the_floor() -> None:
    labels = [x for x in corpus() if x.split == "held-out"]
    by_name = {x.name: x for x in labels}
    done = analyze_text(labels)
    scored = score([(by_name[d.name], d.analysis) for d in done], checkable_rules())
    detail = "\n".join(f"{m.label} {m.rule}: {m.expected} -> {m.got}" for m in scored.mismatches)
    assert scored.overall.problems >= 120
    assert scored.overall.fail_precision >= TEXT_FLOOR, detail
    assert scored.overall.recall >= TEXT_FLOOR, detail


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    """The OCR models, loaded once."""
    ocr.warm_up()
    return LocalBackend()


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo-like"])
def test_held_out_sample_through_ocr_meets_the_floor(backend: LocalBackend, photo: bool) -> None:
    # Every other held-out label, so the sample spans markets, layouts and scripts.
    labels = select("held-out")[::7][:SAMPLE]
    by_name = {x.name: x for x in labels}
    done = asyncio.run(analyze(labels, backend, photo))
    scored = score([(by_name[d.name], d.analysis) for d in done], checkable_rules())
    detail = "\n".join(
        f"{m.label} {m.rule}: {m.expected} -> {m.got} ({m.evidence[:120]})"
        for m in scored.mismatches
    )
    assert scored.overall.problems >= 5
    if photo:
        assert scored.overall.counts.fp_fail <= PHOTO_FALSE_FAILS, detail
    else:
        assert scored.overall.fail_precision >= OCR_PRECISION_FLOOR, detail
    assert scored.overall.recall >= OCR_RECALL_FLOOR, detail


def test_wilson_interval() -> None:
    assert wilson(0, 0) == (1.0, 1.0)
    low, high = wilson(95, 100)
    assert 0.88 < low < 0.89 and 0.97 < high < 0.99
    assert wilson(10, 10)[0] > 0.69


# --- detectors as data ----------------------------------------------------------------


def test_vocabulary_takes_inflections_punctuation_and_accents() -> None:
    pattern = re.compile(
        vocabulary_pattern(
            {"fr": ["pile", "fabriqué par"], "de": ["Ch.-B."], "it": ["importato da"]}
        ),
        re.IGNORECASE,
    )
    for text in (
        "3 piles AAA",
        "Fabriquée par",
        "FABRIQUE PAR",
        "Ch.-B.: 24A",
        "ChB 24A",
        "importata da",
    ):
        assert pattern.search(text), text
    assert not pattern.search("pilote")


@pytest.mark.parametrize(
    ("lines", "country", "region"),
    [
        (["Delta B.V.", "Kalverstraat 12", "1012 AB Amsterdam"], "NL", "EU"),
        (["Harbour Ltd", "12 Grafton Street", "Dublin 2 D02 X285, Ireland"], "IE", "EU"),
        (["Verde Lda.", "Rua Augusta 10", "1100-148 Lisboa"], "PT", "EU"),
        (["Polar Sp. z o.o.", "ul. Floriańska 3", "31-019 Kraków"], "PL", "EU"),
        (["Nordic AB", "Drottninggatan 5", "111 52 Stockholm, Sweden"], "SE", "EU"),
        (["Mill Ltd", "4 High Street", "Leeds LS1 4AB"], "UK", "UK"),
        (["Acme Inc.", "100 Main St", "Springfield, IL 62701"], "US", "US"),
        (["Maple Inc.", "200 King Street West", "Toronto, ON M5V 2T6"], "CA", "CA"),
        (
            ["Tatra Co., Ltd.", "Nancheng Street", "Dongguan, Guangdong 523000, China"],
            "CN",
            "OTHER",
        ),
    ],
)
def test_postal_table_reads_every_format(lines: list[str], country: str, region: str) -> None:
    book = load_rulebook()
    roles = {
        n: re.compile(vocabulary_pattern(v), re.I)
        for n, v in book.vocabulary.items()
        if n.startswith("ROLE_")
    }
    legal = compile_pattern("{LEGAL_FORM}", book.all_macros())
    (address,) = find_addresses(lines, book.postal, roles, legal)
    assert (address.country, address.region) == (country, region)
    assert address.has_name and address.has_street


def test_postal_line_wrapped_after_its_code_is_one_line() -> None:
    book = load_rulebook()
    legal = compile_pattern("{LEGAL_FORM}", book.all_macros())
    wrapped = [
        "Verantwortliche",
        "Person Saffron S.A., 28 Grand-Rue, L-8327",
        "Esch-sur-Alzette, Luxemburg,",
        "service@saffron.lu",
    ]
    (address,) = find_addresses(wrapped, book.postal, {}, legal)
    assert (address.country, address.region, address.electronic) == (
        "LU",
        "EU",
        "service@saffron.lu",
    )
    # A date ending a line is not a code whose city is the next line.
    dated = ["Best before end: 01 2026", "Keep this information for future reference."]
    assert find_addresses(dated, book.postal, {}, legal) == []


def test_food_operator_without_a_role_word_passes() -> None:
    lines = [
        "Zutaten: Hafer, Zucker",
        "250 g",
        "Mindestens haltbar bis 12.2026",
        "Kühl lagern.",
        "Nährwerte pro 100 g: Energie 1600 kJ",
        "Brightwell GmbH",
        "Lindenweg 4",
        "90403 Nürnberg",
    ]
    (report,) = evaluate(lines, "food", ["DE"])
    statuses = {f.rule: f.status for f in report.findings}
    assert statuses["EU-FOOD-FBO"] == "pass"
    assert "confidence" in next(f.evidence for f in report.findings if f.rule == "EU-FOOD-FBO")


def test_eu_maker_needs_no_operator_and_non_eu_maker_does() -> None:
    eu = [
        "Hersteller: Spielwerk GmbH",
        "Lindenweg 12, 90403 Nürnberg, Deutschland",
        "info@spielwerk.de",
        "Made in China",
    ]
    # Five digits without a country could be Türkiye's as well: with a non-EU origin, a doubt.
    unnamed = [
        "Hersteller: Spielwerk GmbH",
        "Lindenweg 12, 90403 Nürnberg",
        "info@spielwerk.de",
        "Made in China",
    ]
    cn = [
        "Hersteller: Toyful Co., Ltd.",
        "Longgang District, Shenzhen, Guangdong 518000, China",
        "service@toyful.cn",
    ]
    for lines, expected in ((eu, "pass"), (unnamed, "unclear"), (cn, "fail")):
        (report,) = evaluate(lines, "toys", ["DE"])
        assert {f.rule: f.status for f in report.findings}["EU-ALL-GPSR-OPERATOR"] == expected


def test_unparsed_address_is_unclear_not_fail() -> None:
    lines = ["Hersteller: Toyful Co., Ltd.", "Longgang District, Shenzhen", "service@toyful.cn"]
    (report,) = evaluate(lines, "toys", ["DE"])
    assert {f.rule: f.status for f in report.findings}["EU-ALL-GPSR-MANUFACTURER"] == "unclear"


def test_kanji_lookalikes_are_folded() -> None:
    (report,) = evaluate(
        ["赏味期限:2026.12.31", "販壳者:株式会社サンプル", "東京都港区1-2-3"], "food", ["JP"]
    )
    statuses = {f.rule: f.status for f in report.findings}
    assert statuses["JP-FOOD-DATE"] == "pass" and statuses["JP-ALL-RESPONSIBLE"] == "pass"


def _line(text: str, box: tuple[int, int, int, int]) -> OcrLine:
    return OcrLine(text=text, confidence=1.0, box=box)


def test_two_columns_are_read_column_by_column() -> None:
    lines = [
        _line("L1", (20, 10, 400, 40)),
        _line("R1", (480, 12, 860, 40)),
        _line("L2", (20, 50, 380, 80)),
        _line("R2", (480, 52, 840, 80)),
        _line("L3", (20, 90, 390, 120)),
    ]
    order = [row[0].text for row in reading_order(lines, 900)]
    assert order == ["L1", "L2", "L3", "R1", "R2"]


def test_table_rows_become_key_value_lines() -> None:
    lines = [
        _line("Hersteller", (20, 10, 150, 40)),
        _line("Spielwerk GmbH", (300, 11, 700, 40)),
        _line("Charge", (20, 50, 120, 80)),
        _line("24A-118", (300, 50, 420, 80)),
        _line("Kühl und trocken lagern, vor Sonnenlicht schützen.", (20, 90, 800, 120)),
    ]
    rows = [" ".join(x.text for x in row) for row in reading_order(lines, 900)]
    assert rows[:2] == ["Hersteller Spielwerk GmbH", "Charge 24A-118"]


def test_dark_band_is_found() -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(image).rectangle((0, 80, 400, 120), fill=(30, 30, 50))
    assert dark_bands(image) == [(80, 121)]
