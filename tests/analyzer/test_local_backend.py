"""The local backend: real OCR on Pillow-drawn labels, the rulebook, and the recall floor."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import msgspec
import pytest
from PIL import Image
from redis.asyncio import Redis

from analyzer import ocr
from analyzer.backends import AnalysisRequest
from analyzer.backends.local import LocalBackend
from analyzer.evaluator import evaluate, verdict_of
from analyzer.images import prepare_image
from analyzer.rulebook import Rulebook, RulebookError, load_rulebook
from bench.eval_local import checkable_rules
from bench.scoring import score
from shared.errors import InvalidImageError
from shared.keys import Keys
from shared.schemas import (
    CATEGORIES,
    MARKETPLACES,
    Finding,
    LabelAnalysis,
    MarketplaceReport,
    ScanEvent,
)
from shared.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.labels import LabelSpec, cjk_font_path, label_specs, render
from tests.support.stack import running_stack

# What the local backend reached on the Latin-script synthetic set (bench/scoring.py
# definitions: recall counts fail or unclear, precision is that of the fail findings);
# a drop below either means an OCR or rulebook change lost findings or cried wolf.
RECALL_FLOOR = 1.0
PRECISION_FLOOR = 1.0

Events = list[tuple[str, int, str]]

# The module fixture OCRs the whole synthetic set (~40 s on 2 cores); leave room on a busy CI.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    """One backend with the OCR models loaded once for the module."""
    ocr.warm_up()
    yield LocalBackend()


@pytest.fixture(scope="module")
def specs() -> list[LabelSpec]:
    """The synthetic set without Japanese, so every machine runs the same labels."""
    return label_specs(include_japanese=False)


async def _analyze_all(specs: list[LabelSpec], backend: LocalBackend) -> dict[str, LabelAnalysis]:
    async def report(stage: str, percentage: int, message: str) -> None:
        return None

    out: dict[str, LabelAnalysis] = {}
    for spec in specs:
        prepared = prepare_image(render(spec))
        request = _request(
            prepared.data,
            media_type=prepared.media_type,
            category=spec.category,
            marketplaces=list(spec.marketplaces),
            product_name=spec.name,
        )
        out[spec.name] = (await backend.analyze(request, report)).analysis
    return out


@pytest.fixture(scope="module")
def results(backend: LocalBackend, specs: list[LabelSpec]) -> dict[str, LabelAnalysis]:
    """Every synthetic label through the real backend, once."""
    return asyncio.run(_analyze_all(specs, backend))


def _finding(analysis: LabelAnalysis, marketplace: str, rule: str) -> Finding:
    report = next(r for r in analysis.marketplaces if r.marketplace == marketplace)
    return next(f for f in report.findings if f.rule == rule)


def _request(data: bytes, **overrides: object) -> AnalysisRequest:
    fields: dict[str, object] = {
        "image": data,
        "media_type": "image/png",
        "category": "toys",
        "marketplaces": ["US"],
        "product_name": "Test label",
    }
    fields.update(overrides)
    return AnalysisRequest(**fields)  # type: ignore[arg-type]


def test_compliant_us_toy_passes_origin_and_choking_hazard(
    results: dict[str, LabelAnalysis],
) -> None:
    # This label is stored sideways with an EXIF orientation tag, like a phone photo.
    analysis = results["us-toy-ok"]
    coo = _finding(analysis, "US", "US-ALL-COO")
    choking = _finding(analysis, "US", "US-TOY-CHOKING")
    assert coo.status == "pass" and "Made in China" in coo.evidence
    assert choking.status == "pass" and "CHOKING HAZARD" in choking.evidence
    assert coo.fix == "" and choking.fix == ""
    assert "Made in China" in analysis.detected_text


def test_label_without_made_in_fails_country_of_origin(results: dict[str, LabelAnalysis]) -> None:
    analysis = results["us-toy-no-coo"]
    coo = _finding(analysis, "US", "US-ALL-COO")
    assert coo.status == "fail"
    assert coo.severity == "major"
    assert "Made in" in coo.fix
    assert coo.regulation.startswith("19 USC 1304")
    assert analysis.verdict == "non_compliant"
    assert "US-ALL-COO" in analysis.summary


def test_german_cosmetics_inhaltsstoffe_passes_ingredients(
    results: dict[str, LabelAnalysis],
) -> None:
    ingredients = _finding(results["de-cosmetics-ok"], "DE", "EU-COS-INGREDIENTS")
    assert ingredients.status == "pass"
    assert "Inhaltsstoffe" in ingredients.evidence


def test_symbols_and_listing_items_are_never_passed_by_ocr(
    results: dict[str, LabelAnalysis],
) -> None:
    analysis = results["de-toy-ok"]
    ce = _finding(analysis, "DE", "EU-ALL-CE")
    lucid = _finding(analysis, "DE", "DE-ALL-LUCID")
    assert ce.status == "unclear" and ce.fix.startswith("Needs visual check")
    assert lucid.status == "unclear" and lucid.fix.startswith("Verify in Seller Central")
    assert analysis.verdict == "needs_review"


async def test_reports_follow_the_requested_order_and_stages(backend: LocalBackend) -> None:
    spec = next(s for s in label_specs(False) if s.name == "uk-toy-ok")
    prepared = prepare_image(render(spec))
    events: Events = []

    async def report(stage: str, percentage: int, message: str) -> None:
        events.append((stage, percentage, message))

    request = _request(prepared.data, marketplaces=["UK", "US", "DE", "UK"])
    result = await backend.analyze(request, report)
    assert [r.marketplace for r in result.analysis.marketplaces] == ["UK", "US", "DE"]
    assert [e[0] for e in events] == ["ocr", "checking_rules"]
    assert events[0][1] < events[1][1]
    assert result.model == f"local-rulebook-{load_rulebook().version}"
    assert result.usage.input_tokens == 0


async def test_blank_image_makes_every_text_rule_unclear(backend: LocalBackend) -> None:
    blank = Image.new("RGB", (400, 300), "white")
    out = io.BytesIO()
    blank.save(out, "PNG")

    async def report(stage: str, percentage: int, message: str) -> None:
        return None

    result = await backend.analyze(_request(out.getvalue()), report)
    statuses = {f.status for r in result.analysis.marketplaces for f in r.findings}
    assert "fail" not in statuses
    assert result.analysis.verdict == "needs_review"
    assert "No text" in result.analysis.summary


async def test_non_image_is_a_permanent_invalid_image_error(backend: LocalBackend) -> None:
    async def report(stage: str, percentage: int, message: str) -> None:
        return None

    with pytest.raises(InvalidImageError):
        await backend.analyze(_request(b"%PDF-1.7 not an image"), report)


def test_recall_and_precision_floor_on_the_synthetic_set(
    specs: list[LabelSpec], results: dict[str, LabelAnalysis]
) -> None:
    by_name = {s.name: s for s in specs}
    scored = score([(by_name[n], a) for n, a in results.items()], checkable_rules())
    detail = "\n".join(
        f"{m.label} {m.marketplace} {m.rule}: expected {m.expected}, got {m.got} ({m.evidence})"
        for m in scored.mismatches
    )
    assert len(results) == len(specs) >= 60
    assert scored.overall.recall >= RECALL_FLOOR, detail
    assert scored.overall.fail_precision >= PRECISION_FLOOR, detail


@pytest.mark.skipif(cjk_font_path() is None, reason="no CJK font: fonts-ipafont-gothic")
async def test_japanese_food_label_is_read(backend: LocalBackend) -> None:
    spec = next(s for s in label_specs(True) if s.name == "jp-food-ok")

    async def report(stage: str, percentage: int, message: str) -> None:
        return None

    request = _request(render(spec), category="food", marketplaces=["JP"])
    result = await backend.analyze(request, report)
    statuses = {f.rule: f.status for f in result.analysis.marketplaces[0].findings}
    assert statuses["JP-ALL-LANG"] == "pass"
    assert statuses["JP-FOOD-DATE"] == "pass"
    assert statuses["JP-FOOD-NUTRITION"] == "pass"


# --- the rulebook as data ---------------------------------------------------------------


def test_every_marketplace_and_category_has_rules() -> None:
    book = load_rulebook()
    for marketplace in MARKETPLACES:
        for category in CATEGORIES:
            assert book.for_scan(marketplace, category), (marketplace, category)
    assert len({r.id for r in book.rules}) == len(book.rules)
    assert all(r.regulation and r.requirement and r.fix for r in book.rules)


MINI = """
version = "test-1"
[macros]
ORIGIN = 'made\\s+in'
[languages.en]
name = "English"
words = ["the", "and", "for"]
min_hits = 2
[[rules]]
id = "XX-COO"
marketplaces = ["CA"]
requirement = "origin"
regulation = "test"
severity = "major"
fix = "add origin"
[rules.detect]
any = ['{ORIGIN}\\s+\\w+']
[[rules]]
id = "XX-CLAIM"
marketplaces = ["CA"]
categories = ["supplements"]
requirement = "no cures"
regulation = "test"
severity = "major"
fix = "remove claim"
[rules.detect]
none = ['\\bcures\\b']
[[rules]]
id = "XX-RADIO"
marketplaces = ["CA"]
requirement = "radio id"
regulation = "test"
severity = "minor"
fix = "add id"
[rules.detect]
when = ['bluetooth']
all = ['IC:']
[[rules]]
id = "XX-LANG"
marketplaces = ["CA"]
requirement = "english"
regulation = "test"
severity = "minor"
fix = "english"
[rules.detect]
kind = "language"
languages = ["en"]
"""


def _statuses(lines: list[str], category: str = "supplements") -> dict[str, str]:
    book = load_rulebook(MINI)
    (report,) = evaluate(lines, category, ["CA"], book)  # type: ignore[arg-type]
    return {f.rule: f.status for f in report.findings}


def test_a_new_marketplace_rule_is_only_data() -> None:
    assert isinstance(load_rulebook(MINI), Rulebook)
    assert _statuses(["Made in Canada", "Good for the skin and the hair"]) == {
        "XX-COO": "pass",
        "XX-CLAIM": "pass",
        "XX-RADIO": "pass",
        "XX-LANG": "pass",
    }
    assert _statuses(["Bluetooth speaker", "cures colds"]) == {
        "XX-COO": "fail",
        "XX-CLAIM": "fail",
        "XX-RADIO": "fail",
        "XX-LANG": "fail",
    }
    assert "XX-CLAIM" not in _statuses(["Made in Canada"], category="toys")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            MINI.replace(
                'marketplaces = ["CA"]\nrequirement = "origin"',
                'marketplaces = ["XX"]\nrequirement = "origin"',
            ),
            "marketplaces",
        ),
        (MINI.replace("['\\bcures\\b']", "['(unclosed']"), "bad pattern"),
        (MINI.replace('languages = ["en"]', 'languages = ["tlh"]'), "unknown language"),
        (MINI.replace('id = "XX-CLAIM"', 'id = "XX-COO"'), "defined twice"),
    ],
    ids=["unknown-marketplace", "bad-regex", "unknown-language", "duplicate-id"],
)
def test_malformed_rulebooks_are_rejected(broken: str, message: str) -> None:
    assert broken != MINI
    with pytest.raises(RulebookError, match=message):
        load_rulebook(broken)


def _f(status: str, severity: str) -> Finding:
    return Finding(
        rule="R",
        requirement="r",
        status=status,
        severity=severity,  # type: ignore[arg-type]
        evidence="",
        fix="",
        regulation="x",
    )


def test_verdicts() -> None:
    assert verdict_of([_f("pass", "major"), _f("unclear", "info")]) == "compliant"
    assert verdict_of([_f("pass", "major"), _f("fail", "minor")]) == "needs_review"
    assert verdict_of([_f("unclear", "critical")]) == "needs_review"
    assert verdict_of([_f("fail", "critical"), _f("pass", "minor")]) == "non_compliant"
    assert isinstance(
        MarketplaceReport(marketplace="US", verdict="compliant", findings=[]), MarketplaceReport
    )


async def test_stack_without_api_key_analyses_a_label_offline(
    make_settings: SettingsFactory, redis: Redis, backend: LocalBackend
) -> None:
    """No key, default backend: a posted label ends with rulebook findings and real stages."""
    settings = make_settings(analyzer_backend=Settings.from_env({}).analyzer_backend)
    assert settings.analyzer_backend == "local"
    spec = next(s for s in label_specs(include_japanese=False) if s.name == "us-toy-no-coo")
    async with running_stack(settings) as stack:
        accepted = await stack.client.post(
            "/api/scans",
            data={
                "category": spec.category,
                "marketplaces": list(spec.marketplaces),
                "product_name": "Bright blocks",
            },
            files={"image": ("label.png", render(spec), "image/png")},
        )
        assert accepted.status_code == 202, accepted.text
        scan_id = accepted.json()["scan_id"]
        detail = await stack.wait_terminal(scan_id, timeout=120)
    assert detail["state"] == "completed"
    result = detail["result"]
    assert isinstance(result, dict)
    assert result["backend"] == "local"
    (us,) = result["analysis"]["marketplaces"]
    by_rule = {f["rule"]: f for f in us["findings"]}
    assert by_rule["US-ALL-COO"]["status"] == "fail" and by_rule["US-ALL-COO"]["fix"]
    assert by_rule["US-TOY-CHOKING"]["status"] == "pass"
    assert "CHOKING" in by_rule["US-TOY-CHOKING"]["evidence"].upper()
    raw = await redis.xrange(Keys(settings.prefix).scan_events(scan_id))
    stages = [msgspec.json.decode(f[b"event"], type=ScanEvent).progress.stage for _, f in raw]
    assert stages.index("ocr") < stages.index("checking_rules") < stages.index("completed")
