"""Scoring findings against expected statuses: counts, Wilson intervals, rule families.

A *positive* is a problem on the label (expected ``fail`` or ``unclear``). Two precisions:

- ``fail_precision``: of the ``fail`` findings, the share that were real problems. This is
  the "cry wolf" measure: a ``fail`` tells a seller to change a label.
- ``flag_precision``: the same over ``fail`` and ``unclear`` together (an ``unclear`` asks
  for a review, a smaller cost).

``recall`` is the share of real problems flagged (``fail`` or ``unclear``): a problem sent
to review is caught. ``unclear_on_compliant`` is the share of compliant elements sent to
review, so that trading ``fail`` for ``unclear`` cannot hide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

import msgspec

from shared.schemas import LabelAnalysis

Z95 = 1.959964

# Rule families, by the rule id (first match wins): what kind of element a rule checks.
FAMILIES: tuple[tuple[str, str], ...] = (
    (r"LANG|BILINGUAL", "language"),
    (
        r"BUSINESS|MANUFACTURER|OPERATOR|-RP|UKRP|FBO|ADDRESS|DEALER|IMPORTER|RESPONSIBLE|MAH",
        "address",
    ),
    (r"COO|ORIGIN", "origin"),
    (r"BATCH|-ID$|MODEL|TRACKING|-LOT", "identifier"),
    (r"NETQTY|CONTENT", "quantity"),
    (r"DATE|DURABILITY", "date"),
    (r"INGREDIENTS|ALLERGEN|MEDICINAL", "ingredients"),
    (r"NUTRITION|FACTS|NAME|IDENTITY", "food-info"),
    (r"CHOKING|AGE-WARNING|CHILDREN|EXCEED|SUBSTITUTE|STORAGE|DOSE|P65", "warnings"),
    (r"CLAIMS|DSHEA", "claims"),
    (r"FCC|PART15|ICES|-IC$|RATING|NPN|PACKAGING", "markings"),
)


def family(rule: str) -> str:
    """The rule family of a rule id."""
    return next((name for pattern, name in FAMILIES if re.search(pattern, rule)), "other")


def wilson(successes: int, total: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion (1.0, 1.0 for no trials)."""
    if total == 0:
        return (1.0, 1.0)
    p = successes / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


class Counts(msgspec.Struct, kw_only=True):
    """Confusion counts of one slice; positive = a real problem."""

    tp_fail: int = 0  # real problem, reported fail
    tp_unclear: int = 0  # real problem, reported unclear
    fn: int = 0  # real problem, reported pass
    fp_fail: int = 0  # no problem, reported fail
    fp_unclear: int = 0  # no problem, reported unclear
    tn: int = 0

    def add(self, expected: str, got: str) -> None:
        """Count one finding."""
        real = expected != "pass"
        if real:
            if got == "fail":
                self.tp_fail += 1
            elif got == "unclear":
                self.tp_unclear += 1
            else:
                self.fn += 1
        elif got == "fail":
            self.fp_fail += 1
        elif got == "unclear":
            self.fp_unclear += 1
        else:
            self.tn += 1

    def merge(self, other: Counts) -> None:
        """Add another slice's counts."""
        for name in self.__struct_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Rates(msgspec.Struct, kw_only=True):
    """Proportions with their 95 % Wilson intervals."""

    findings: int
    problems: int
    fail_precision: float
    fail_precision_ci: tuple[float, float]
    flag_precision: float
    flag_precision_ci: tuple[float, float]
    recall: float
    recall_ci: tuple[float, float]
    unclear_on_compliant: float
    counts: Counts


def rates(counts: Counts) -> Rates:
    """Precision and recall of a slice, with intervals."""
    tp = counts.tp_fail + counts.tp_unclear
    fails = counts.tp_fail + counts.fp_fail
    flags = tp + counts.fp_fail + counts.fp_unclear
    problems = tp + counts.fn
    compliant = counts.fp_fail + counts.fp_unclear + counts.tn
    return Rates(
        findings=problems + compliant,
        problems=problems,
        fail_precision=round(counts.tp_fail / fails, 4) if fails else 1.0,
        fail_precision_ci=wilson(counts.tp_fail, fails),
        flag_precision=round(tp / flags, 4) if flags else 1.0,
        flag_precision_ci=wilson(tp, flags),
        recall=round(tp / problems, 4) if problems else 1.0,
        recall_ci=wilson(tp, problems),
        unclear_on_compliant=round(counts.fp_unclear / compliant, 4) if compliant else 0.0,
        counts=counts,
    )


class Expectation(Protocol):
    """A label with expected statuses."""

    name: str

    def expect(self, rule: str) -> str:
        """The expected status of a rule."""
        ...


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A finding whose status differs from the expected one."""

    label: str
    marketplace: str
    rule: str
    expected: str
    got: str
    evidence: str


class Scored(msgspec.Struct, kw_only=True):
    """A scored slice: overall, per marketplace, per family, and the mismatches."""

    overall: Rates
    per_marketplace: dict[str, Rates]
    per_family: dict[str, Rates]
    mismatches: list[Mismatch]


def score(labels: Iterable[tuple[Expectation, LabelAnalysis]], checkable: frozenset[str]) -> Scored:
    """Compare every checkable finding of every analysis with its label's expectation."""
    total = Counts()
    markets: dict[str, Counts] = {}
    families: dict[str, Counts] = {}
    mismatches: list[Mismatch] = []
    for label, analysis in labels:
        for report in analysis.marketplaces:
            for finding in report.findings:
                if finding.rule not in checkable:
                    continue
                expected = label.expect(finding.rule)
                for counts in (
                    total,
                    markets.setdefault(report.marketplace, Counts()),
                    families.setdefault(family(finding.rule), Counts()),
                ):
                    counts.add(expected, finding.status)
                if (expected == "pass") != (finding.status == "pass") or (
                    expected != "pass" and finding.status == "pass"
                ):
                    mismatches.append(
                        Mismatch(
                            label=label.name,
                            marketplace=report.marketplace,
                            rule=finding.rule,
                            expected=expected,
                            got=finding.status,
                            evidence=finding.evidence,
                        )
                    )
    return Scored(
        overall=rates(total),
        per_marketplace=_sorted(markets),
        per_family=_sorted(families),
        mismatches=mismatches,
    )


def _sorted(slices: Mapping[str, Counts]) -> dict[str, Rates]:
    return {key: rates(slices[key]) for key in sorted(slices)}
