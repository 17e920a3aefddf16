"""The offline backend: OCR of the label, then the rulebook; no API key, no network."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from analyzer import ocr
from analyzer.backends import Analysis, AnalysisRequest, Report
from analyzer.evaluator import evaluate, worst
from analyzer.ratelimit import mark_sent
from analyzer.rulebook import Rulebook, load_rulebook
from shared.schemas import (
    Category,
    Finding,
    LabelAnalysis,
    Marketplace,
    MarketplaceReport,
    Stage,
    Usage,
)
from shared.settings import Settings

OCR_STAGE: Stage = "ocr"
RULES_STAGE: Stage = "checking_rules"
DETECTED_TEXT_CHARS = 4000
NO_TEXT = "No text could be read from the image."
WEAK_LINE = 0.85
"""A line read with less confidence may hide the element a rule looks for: absence becomes
unclear rather than a failure when any line is this weak or some print stayed unread."""


class LocalBackend:
    """Reads the label with RapidOCR and checks it against the packaged rulebook."""

    name = "local"

    def __init__(self, settings: Settings | None = None, book: Rulebook | None = None) -> None:
        self._book = book or load_rulebook()
        self.model = f"local-rulebook-{self._book.version}"

    async def warm_up(self) -> None:
        """Load the OCR models now, so the first scan does not pay for it."""
        await asyncio.to_thread(ocr.warm_up)

    async def analyze(self, request: AnalysisRequest, report: Report) -> Analysis:
        """OCR the image, evaluate the rules for each requested marketplace."""
        await mark_sent()  # configured API limits also pace this backend: its call starts now
        await report(OCR_STAGE, 40, "Reading the label text (offline OCR)")
        result = await ocr.read_text(request.image)
        markets = ", ".join(dict.fromkeys(request.marketplaces))
        await report(RULES_STAGE, 80, f"Checking {request.category} label rules for {markets}")
        lines = [line.text for line in result.lines]
        reports = check(result, request.category, request.marketplaces, self._book)
        analysis = LabelAnalysis(
            verdict=worst(r.verdict for r in reports),
            summary=summarize(reports, request.product_name, has_text=bool(lines)),
            detected_text=_abridge("\n".join(lines)),
            marketplaces=reports,
        )
        return Analysis(analysis=analysis, usage=Usage(), model=self.model)

    async def aclose(self) -> None:
        """Nothing to release: the OCR engine is shared by the process."""


def check(
    result: ocr.OcrResult,
    category: Category,
    marketplaces: Sequence[Marketplace],
    book: Rulebook | None = None,
) -> list[MarketplaceReport]:
    """The rulebook's reports on what OCR read, with how well each line was read."""
    reports = evaluate(
        [line.text for line in result.lines],
        category,
        marketplaces,
        book,
        # The recogniser's confidence per line: a poorly read label makes absence uncertain.
        [line.confidence for line in result.lines],
        unread=result.unread_strips + sum(x.confidence < WEAK_LINE for x in result.lines),
        reread=[line.second_look for line in result.lines],
    )
    if not result.lines:
        reports = [_unreadable(r) for r in reports]
    return reports


def summarize(reports: list[MarketplaceReport], product: str, *, has_text: bool = True) -> str:
    """Two or three sentences for the seller."""
    if not has_text:
        return (
            f"No text could be read from the label of {product}, so no rule could be checked. "
            "Upload a sharper, well-lit photo of the label."
        )
    findings = [f for r in reports for f in r.findings]
    failed = [f for f in findings if f.status == "fail"]
    unclear = [f for f in findings if f.status == "unclear" and f.severity != "info"]
    markets = ", ".join(r.marketplace for r in reports)
    text = (
        f"Offline check of {product} for {markets}: {len(findings)} requirements checked from "
        f"the label text, {len(failed)} failed and {len(unclear)} need a visual or manual check."
    )
    serious = [f for f in failed if f.severity in {"critical", "major"}]
    if serious:
        names = ", ".join(dict.fromkeys(f.rule for f in serious[:4]))
        text += f" Fix first: {names}."
    return text + " Symbols, layout and listing documents need the Claude backend or a person."


def _unreadable(report: MarketplaceReport) -> MarketplaceReport:
    """Without any text, a missing element is unknown rather than absent."""
    findings: list[Finding] = [
        msgspec.structs.replace(f, status="unclear", evidence=NO_TEXT) if f.status == "fail" else f
        for f in report.findings
    ]
    return MarketplaceReport(
        marketplace=report.marketplace, verdict="needs_review", findings=findings
    )


def _abridge(text: str) -> str:
    if len(text) <= DETECTED_TEXT_CHARS:
        return text
    return text[: DETECTED_TEXT_CHARS - 1] + "…"
