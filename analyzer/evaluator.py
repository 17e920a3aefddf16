"""Applying the rulebook to one label's text: findings, confidences, verdicts."""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence

from analyzer.addresses import Address, find_addresses
from analyzer.detectors import Decision, address_rule, code_rule, operator_rule
from analyzer.misread import find_misread
from analyzer.rulebook import Detect, Rule, Rulebook, compile_pattern, load_rulebook
from shared.schemas import Category, Finding, Marketplace, MarketplaceReport, Verdict

_EVIDENCE_CHARS = 320
FAIL_CONFIDENCE = 0.8
"""A ``fail`` below this confidence is reported as ``unclear``: a false alarm costs trust."""
OCR_DOUBT = 0.8
"""Below this mean OCR confidence, "not found" may be "not read": absence is less certain."""
MISREAD_CONFIDENCE = 0.5
"""The confidence of a ``fail`` whose element may be on the label, misread."""
ILLEGIBLE = 0.85
"""A line read below this confidence next to part of an element may hold the rest of it."""


class LabelText:
    """OCR lines, normalised, with a map from character offsets back to lines."""

    def __init__(
        self,
        lines: Sequence[str],
        confidences: Sequence[float] = (),
        fold: str = "",
        reread: Sequence[bool] = (),
    ) -> None:
        # NFKC folds full-width colons, ligatures and the like into what patterns expect;
        # ``fold`` ("ab" pairs) maps OCR lookalikes back (a simplified 赏 to the Japanese 賞).
        table = str.maketrans(fold[0::2], fold[1::2])
        self.lines = [
            unicodedata.normalize("NFKC", line).translate(table).strip() for line in lines
        ]
        self.ocr = bool(confidences)
        """Read by OCR (with confidences), rather than text known to be right."""
        self.confidences = list(confidences) or [1.0] * len(self.lines)
        self.reread = list(reread) or [False] * len(self.lines)
        self.text = "\n".join(self.lines)
        self._starts: list[int] = []
        offset = 0
        for line in self.lines:
            self._starts.append(offset)
            offset += len(line) + 1

    def index_at(self, offset: int) -> int:
        """The index of the line containing character ``offset``."""
        return bisect.bisect_right(self._starts, offset) - 1

    def locate(self, pattern: re.Pattern[str]) -> int | None:
        """The index of the line where ``pattern`` first matches, if it does."""
        match = pattern.search(self.text)
        return None if match is None else self.index_at(match.start())

    def line_at(self, offset: int) -> str:
        """The line containing character ``offset``."""
        return self.lines[self.index_at(offset)]

    @property
    def quality(self) -> float:
        """The mean OCR confidence of the lines (1.0 for text that was not OCR'd)."""
        return sum(self.confidences) / len(self.confidences) if self.confidences else 1.0


class Evaluator:
    """Applies the rulebook to one label's text."""

    def __init__(self, book: Rulebook, text: LabelText, unread: int = 0) -> None:
        self._book = book
        self._unread = unread
        self._macros = book.all_macros()
        self._text = text
        self._addresses: list[Address] | None = None

    def _pattern(self, pattern: str) -> re.Pattern[str]:
        return compile_pattern(pattern, self._macros)

    def _search(self, pattern: str) -> str | None:
        match = self._pattern(pattern).search(self._text.text)
        return None if match is None else self._text.line_at(match.start())

    def _found(self, patterns: Iterable[str]) -> list[str]:
        return [line for p in patterns if (line := self._search(p)) is not None]

    def addresses(self) -> list[Address]:
        """The label's address blocks, parsed once per label."""
        if self._addresses is None:
            roles = {
                name: self._pattern(f"{{{name}}}")
                for name in self._book.vocabulary
                if name.startswith("ROLE_")
            }
            legal = self._pattern("{LEGAL_FORM}") if "LEGAL_FORM" in self._book.macros else None
            self._addresses = find_addresses(
                self._text.lines, self._book.postal, roles, legal or re.compile(r"(?!)")
            )
        return self._addresses

    def _role_lines(self, excluded: Sequence[str]) -> list[int]:
        """Lines with a role word (other than ``excluded``) outside every parsed address."""
        taken = {i for a in self.addresses() for i in a.lines}
        names = [n for n in self._book.vocabulary if n.startswith("ROLE_") and n not in excluded]
        pattern = self._pattern("|".join(f"{{{n}}}" for n in names)) if names else None
        return [
            i
            for i, line in enumerate(self._text.lines)
            if i not in taken and pattern is not None and pattern.search(line)
        ]

    def finding(self, rule: Rule, marketplace: Marketplace) -> Finding:
        """Decide one rule for one marketplace."""
        decision = self._decide(rule, marketplace)
        status, evidence = decision.status, decision.evidence
        confidence = decision.confidence
        if status == "fail" and self._text.quality < OCR_DOUBT:
            # A poorly read label: what is missing may only be unread.
            confidence = min(confidence, self._text.quality)
        if status == "fail" and self._unread and decision.absent:
            # Print the OCR saw but could not read: "not found" may be "not legible".
            confidence = min(confidence, 0.6)
            evidence = (
                f"{evidence} Part of the label ({self._unread} line(s) or strip(s)) was read "
                "poorly or not at all."
            )
        if status == "fail" and self._text.ocr:
            misread = self._misread(decision)
            if misread:
                # Present but misread, or print too weak to say: a doubt, not a failure.
                confidence = min(confidence, MISREAD_CONFIDENCE)
                evidence = f"{evidence} Perhaps misread: {misread}"
        if status == "fail" and rule.detect.on_missing == "unclear":
            status = "unclear"
        if status == "fail" and confidence < FAIL_CONFIDENCE:
            status = "unclear"
            evidence = f"Not certain: {evidence}"
        if rule.detect.kind in {"text", "address", "operator", "code", "language"}:
            evidence = f"{evidence} [confidence {confidence:.2f}; OCR {self._text.quality:.2f}]"
        fix = ""
        if rule.detect.kind == "visual" and status == "unclear":
            fix = f"Needs visual check: {rule.fix}"
        elif rule.detect.kind == "listing":
            fix = f"Verify in Seller Central: {rule.fix}"
        elif status != "pass":
            fix = rule.fix
        return Finding(
            rule=rule.id,
            requirement=rule.requirement,
            status=status,
            severity=rule.severity,
            evidence=evidence,
            fix=fix,
            regulation=rule.regulation,
        )

    def _misread(self, decision: Decision) -> str:
        """Why the element a ``fail`` missed may be on the label after all ("" if not)."""
        text = self._text
        if decision.seen:
            # Part of it was read: a barely legible line next to that part may hold the rest.
            low, high = min(decision.seen) - 2, max(decision.seen) + 2
            weak = [
                i
                for i in range(max(0, low), min(len(text.lines), high + 1))
                if text.confidences[i] < ILLEGIBLE
            ]
            if weak:
                line, read = text.lines[weak[0]], text.confidences[weak[0]]
                return f'"{line}" next to it was read with OCR confidence {read:.2f}.'
        if not decision.wanted:
            return ""
        patterns = [self._pattern(p).pattern for p in decision.wanted]
        found = find_misread(patterns, text.lines, text.confidences, text.reread, decision.seen)
        return found.describe() if found else ""

    def _decide(self, rule: Rule, marketplace: Marketplace) -> Decision:
        detect = rule.detect
        trigger: list[str] = []
        if detect.when:
            trigger = self._found(detect.when)
            if not trigger:
                return Decision(detect.otherwise, f"Not required: {detect.when_absent}.", 0.9)
        if detect.kind == "listing":
            return Decision("unclear", "Not on the label: a listing or document requirement.", 1.0)
        if detect.kind == "visual":
            hints = self._found(detect.hint)
            seen = f" Text that may belong to it: {_quote(hints)}." if hints else ""
            return Decision("unclear", f"A symbol or layout OCR cannot judge.{seen}", 1.0)
        if detect.kind == "language":
            return self._languages(detect.languages)
        if detect.kind == "address":
            return address_rule(
                self.addresses(),
                self._text.lines,
                regions=detect.regions_for.get(marketplace, detect.regions),
                electronic=detect.electronic,
                excluded_roles=detect.exclude_roles,
                role_lines=self._role_lines(detect.exclude_roles),
            )
        if detect.kind == "operator":
            non_eu = self._found(detect.any)
            return operator_rule(
                self.addresses(), self._text.lines, non_eu[0] if non_eu else "", detect.vocab[0]
            )
        if detect.kind == "code":
            keywords = "|".join(f"{{{name}}}" for name in detect.vocab)
            return code_rule(self._text.text, self._pattern(keywords))
        return self._text_rule(detect, marketplace)

    def _text_rule(self, detect: Detect, marketplace: Marketplace) -> Decision:
        bad = self._found(detect.none)
        if bad:
            return Decision("fail", f"Prohibited wording: {_quote(bad)}", 0.9)
        wanted_any = detect.local.get(marketplace, detect.any)
        at_all = {p: self._text.locate(self._pattern(p)) for p in detect.all}
        at_any = {p: self._text.locate(self._pattern(p)) for p in wanted_any}
        seen = tuple(i for i in (*at_all.values(), *at_any.values()) if i is not None)
        hits = [self._text.lines[i] for i in seen]
        any_found = sum(i is not None for i in at_any.values())
        any_ok = not wanted_any or any_found >= min(detect.min_any, len(wanted_any))
        if all(i is not None for i in at_all.values()) and any_ok:
            return Decision("pass", _quote(hits) if hits else "No prohibited wording found.", 0.9)
        partial = f" Found only: {_quote(hits)}." if hits else ""
        near = self._found(detect.near)
        if near and detect.on_missing == "fail":
            return Decision(
                "unclear", f"Could not confirm it; related text: {_quote(near)}.{partial}", 0.5
            )
        wanted = [p for p, i in at_all.items() if i is None]
        if not any_ok:
            wanted += [p for p, i in at_any.items() if i is None]
        return Decision(
            detect.on_missing,
            f"Not found in the label text.{partial}",
            0.9,
            absent=not hits,
            wanted=tuple(wanted),
            seen=seen,
        )

    def _languages(self, codes: Sequence[str]) -> Decision:
        words = set(re.findall(r"\w+", self._text.text.lower()))
        found: list[str] = []
        missing: list[str] = []
        for code in codes:
            language = self._book.languages[code]
            if language.pattern:
                hits = sorted(set(re.findall(language.pattern, self._text.text)))
            else:
                hits = sorted(words.intersection(w.lower() for w in language.words))
            target = found if len(hits) >= language.min_hits else missing
            target.append(f"{language.name} ({', '.join(hits[:6]) or 'no markers'})")
        if missing:
            return Decision("fail", f"Too little text in {'; '.join(missing)}.", 0.85)
        return Decision("pass", f"Text found in {'; '.join(found)}.", 0.9)


def _quote(lines: Iterable[str]) -> str:
    unique = list(dict.fromkeys(lines))
    text = " | ".join(f'"{line}"' for line in unique)
    return text if len(text) <= _EVIDENCE_CHARS else text[: _EVIDENCE_CHARS - 1] + "…"


def verdict_of(findings: Sequence[Finding]) -> Verdict:
    """non_compliant on a critical/major fail; needs_review on other doubts; info never counts."""
    counted = [f for f in findings if f.severity != "info"]
    if any(f.status == "fail" and f.severity in {"critical", "major"} for f in counted):
        return "non_compliant"
    if any(f.status != "pass" for f in counted):
        return "needs_review"
    return "compliant"


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of several verdicts."""
    order: dict[Verdict, int] = {"compliant": 0, "needs_review": 1, "non_compliant": 2}
    return max(verdicts, key=order.__getitem__, default="needs_review")


def evaluate(
    lines: Sequence[str],
    category: Category,
    marketplaces: Sequence[Marketplace],
    book: Rulebook | None = None,
    confidences: Sequence[float] = (),
    *,
    unread: int = 0,
    reread: Sequence[bool] = (),
) -> list[MarketplaceReport]:
    """Check the label text against every applicable rule, one report per marketplace.

    ``confidences`` are the OCR confidences of the lines (none: text known to be right);
    ``reread`` says which lines the OCR second look read again.
    """
    book = book or load_rulebook()
    fold = "".join(a + b for a, b in book.fold.items() if len(a) == len(b) == 1)
    evaluator = Evaluator(book, LabelText(lines, confidences, fold, reread), unread)
    reports: list[MarketplaceReport] = []
    for marketplace in dict.fromkeys(marketplaces):
        findings = [evaluator.finding(r, marketplace) for r in book.for_scan(marketplace, category)]
        reports.append(
            MarketplaceReport(
                marketplace=marketplace, verdict=verdict_of(findings), findings=findings
            )
        )
    return reports
