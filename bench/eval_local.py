"""Precision and recall of the local backend on the synthetic label set.

``python -m bench.eval_local`` renders every label of ``tests/support/labels.py``,
runs it through :class:`analyzer.backends.local.LocalBackend` (real OCR, real
rulebook) and scores each text-checkable finding against the expected status.
A "positive" is a problem: status fail or unclear. Writes
``bench/results/local_eval.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from analyzer.backends import AnalysisRequest
from analyzer.backends.local import LocalBackend
from analyzer.images import prepare_image
from analyzer.rulebook import Rulebook, load_rulebook
from shared.schemas import LabelAnalysis, Stage
from tests.support.labels import LabelSpec, label_specs, render

RESULTS = Path(__file__).parent / "results" / "local_eval.json"
CHECKABLE_KINDS = frozenset({"text", "language"})


class Labelled(msgspec.Struct, frozen=True, kw_only=True):
    """One label's analysis and how long it took."""

    name: str
    analysis: LabelAnalysis
    seconds: float


class RuleScore(msgspec.Struct, kw_only=True):
    """Confusion counts for one rule; positive means 'problem found'."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    exact: int = 0

    @property
    def precision(self) -> float:
        """Share of flagged problems that were real; 1.0 when nothing was flagged."""
        flagged = self.tp + self.fp
        return self.tp / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        """Share of real problems that were flagged; 1.0 when there were none."""
        real = self.tp + self.fn
        return self.tp / real if real else 1.0


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A finding whose status differs from the expected one."""

    label: str
    marketplace: str
    rule: str
    expected: str
    got: str
    evidence: str


class Evaluation(msgspec.Struct, kw_only=True):
    """The whole scored run."""

    labels: int
    findings: int
    precision: float
    recall: float
    exact_status_rate: float
    per_rule: dict[str, dict[str, float]]
    mismatches: list[Mismatch]
    seconds_per_label: float = 0.0
    rulebook_version: str = ""
    machine: str = ""
    degraded: Evaluation | None = None


async def _no_report(stage: Stage, percentage: int, message: str) -> None:
    return None


async def analyze_all(
    specs: Sequence[LabelSpec], backend: LocalBackend, degraded: bool = False
) -> list[Labelled]:
    """Render, prepare and analyse every label, one after the other."""
    out: list[Labelled] = []
    for spec in specs:
        prepared = prepare_image(render(spec, degraded))
        request = AnalysisRequest(
            image=prepared.data,
            media_type=prepared.media_type,
            category=spec.category,
            marketplaces=list(spec.marketplaces),
            product_name=spec.name,
        )
        started = time.perf_counter()
        result = await backend.analyze(request, _no_report)
        out.append(
            Labelled(
                name=spec.name, analysis=result.analysis, seconds=time.perf_counter() - started
            )
        )
    return out


def score(specs: Sequence[LabelSpec], results: Sequence[Labelled], book: Rulebook) -> Evaluation:
    """Compare every text-checkable finding with the label's expected status."""
    checkable = {r.id for r in book.rules if r.detect.kind in CHECKABLE_KINDS}
    by_name = {s.name: s for s in specs}
    rules: dict[str, RuleScore] = {}
    mismatches: list[Mismatch] = []
    for result in results:
        spec = by_name[result.name]
        for report in result.analysis.marketplaces:
            for finding in report.findings:
                if finding.rule not in checkable:
                    continue
                expected = spec.expect(finding.rule)
                counts = rules.setdefault(finding.rule, RuleScore())
                real, flagged = expected != "pass", finding.status != "pass"
                counts.tp += real and flagged
                counts.fp += flagged and not real
                counts.fn += real and not flagged
                counts.tn += not real and not flagged
                counts.exact += finding.status == expected
                if finding.status != expected:
                    mismatches.append(
                        Mismatch(
                            label=spec.name,
                            marketplace=report.marketplace,
                            rule=finding.rule,
                            expected=expected,
                            got=finding.status,
                            evidence=finding.evidence,
                        )
                    )
    total = RuleScore()
    for counts in rules.values():
        total.tp, total.fp = total.tp + counts.tp, total.fp + counts.fp
        total.fn, total.tn = total.fn + counts.fn, total.tn + counts.tn
        total.exact += counts.exact
    findings = total.tp + total.fp + total.fn + total.tn
    return Evaluation(
        labels=len(results),
        findings=findings,
        precision=round(total.precision, 4),
        recall=round(total.recall, 4),
        exact_status_rate=round(total.exact / findings, 4) if findings else 1.0,
        per_rule={
            rule: {
                "precision": round(c.precision, 4),
                "recall": round(c.recall, 4),
                "tp": c.tp,
                "fp": c.fp,
                "fn": c.fn,
                "tn": c.tn,
            }
            for rule, c in sorted(rules.items())
        },
        mismatches=mismatches,
        seconds_per_label=round(sum(r.seconds for r in results) / max(1, len(results)), 3),
        rulebook_version=book.version,
    )


def _print(evaluation: Evaluation) -> None:
    print(f"{'rule':32} {'prec':>6} {'recall':>6}   tp  fp  fn   tn")
    for rule, s in evaluation.per_rule.items():
        print(
            f"{rule:32} {s['precision']:6.2f} {s['recall']:6.2f} "
            f"{s['tp']:4} {s['fp']:3} {s['fn']:3} {s['tn']:4}"
        )
    print(
        f"\n{evaluation.labels} labels, {evaluation.findings} checkable findings: "
        f"precision {evaluation.precision:.3f}, recall {evaluation.recall:.3f}, "
        f"exact status {evaluation.exact_status_rate:.3f}, "
        f"{evaluation.seconds_per_label:.2f} s/label"
    )
    for m in evaluation.mismatches:
        print(
            f"  MISMATCH {m.label} {m.marketplace} {m.rule}: expected {m.expected}, "
            f"got {m.got} ({m.evidence[:90]})"
        )


async def _main(include_japanese: bool | None, degraded: bool) -> Evaluation:
    backend = LocalBackend()
    await backend.warm_up()
    specs = label_specs(include_japanese)
    results = await analyze_all(specs, backend)
    evaluation = score(specs, results, load_rulebook())
    evaluation.machine = f"{platform.machine()} {platform.python_version()}"
    if degraded:
        poor = await analyze_all(specs, backend, degraded=True)
        evaluation.degraded = score(specs, poor, load_rulebook())
    return evaluation


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--no-japanese",
        action="store_true",
        help="skip the Japanese labels even when a CJK font is installed",
    )
    parser.add_argument(
        "--no-degraded",
        action="store_true",
        help="skip the second pass over blurred, shrunken, tilted photos",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    japanese = False if args.no_japanese else None
    evaluation = asyncio.run(_main(japanese, not args.no_degraded))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(evaluation)) + b"\n")
    _print(evaluation)
    if evaluation.degraded is not None:
        print("\n--- degraded photos (60% scale, blur, ±4° tilt, JPEG q55) ---")
        _print(evaluation.degraded)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
