"""Precision and recall of the local backend on the generated label set (bench/labelset).

``python -m bench.eval_local`` renders the **held-out** labels clean and as phone-like
photos, runs each through :class:`analyzer.backends.local.LocalBackend` (real OCR, real
rulebook), and scores every text-checkable finding against the label's expected status
(bench/scoring.py: Wilson 95 % intervals, per marketplace and per rule family). Writes
``bench/results/local_eval.json`` and the README's quality table.

``--part dev`` evaluates the development part instead (the one to look at when changing
rules); ``--text`` skips drawing and OCR and checks the rulebook on the labels' own text.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from analyzer.backends import AnalysisRequest, Backend
from analyzer.backends.local import LocalBackend
from analyzer.evaluator import evaluate, worst
from analyzer.images import prepare_image
from analyzer.rulebook import load_rulebook
from bench.labelset import HELD_OUT_SHARE, SEED, SIZE, CorpusLabel, corpus
from bench.labelset.draw import fonts, render
from bench.scoring import Rates, Scored, score
from shared.schemas import LabelAnalysis, Stage, Usage

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "local_eval.json"
README = ROOT / "README.md"
TABLE_START = "<!-- local-eval:start (make bench writes this table) -->"
TABLE_END = "<!-- local-eval:end -->"
CHECKABLE_KINDS = frozenset({"text", "language", "address", "operator", "code"})


class Analysed(msgspec.Struct, frozen=True, kw_only=True):
    """One label's analysis, the time it took and what it cost."""

    name: str
    analysis: LabelAnalysis
    seconds: float
    usage: Usage = Usage()


class Pass(msgspec.Struct, kw_only=True):
    """One rendering (clean or photo) of one part, scored."""

    render: str
    labels: int
    seconds_per_label: float
    scored: Scored


class Evaluation(msgspec.Struct, kw_only=True):
    """The whole run."""

    backend: str
    part: str
    seed: int = SEED
    size: int = SIZE
    held_out_share: float = HELD_OUT_SHARE
    rulebook_version: str = ""
    machine: str = ""
    passes: list[Pass] = []


def checkable_rules() -> frozenset[str]:
    """Rules decided from text (not symbols, not listing documents)."""
    return frozenset(r.id for r in load_rulebook().rules if r.detect.kind in CHECKABLE_KINDS)


def select(part: str, limit: int | None = None) -> list[CorpusLabel]:
    """The labels of one part, Japanese ones only when a CJK font can draw them."""
    labels = [x for x in corpus() if x.split == part]
    if not fonts("ja"):
        labels = [x for x in labels if x.script != "ja"]
    return labels[:limit] if limit else labels


async def _no_report(stage: Stage, percentage: int, message: str) -> None:
    return None


async def analyze(
    labels: Sequence[CorpusLabel], backend: Backend, photo: bool = False
) -> list[Analysed]:
    """Render, prepare and analyse every label, one after the other."""
    out: list[Analysed] = []
    for label in labels:
        prepared = prepare_image(render(label, photo))
        request = AnalysisRequest(
            image=prepared.data,
            media_type=prepared.media_type,
            image_tokens=prepared.token_estimate,
            category=label.category,  # type: ignore[arg-type]
            marketplaces=list(label.marketplaces),  # type: ignore[arg-type]
            product_name=label.name,
        )
        started = time.perf_counter()
        result = await backend.analyze(request, _no_report)
        elapsed = time.perf_counter() - started
        out.append(
            Analysed(name=label.name, analysis=result.analysis, seconds=elapsed, usage=result.usage)
        )
    return out


def analyze_text(labels: Sequence[CorpusLabel]) -> list[Analysed]:
    """The rulebook on each label's own text: rule quality without OCR."""
    out: list[Analysed] = []
    for label in labels:
        started = time.perf_counter()
        reports = evaluate(list(label.lines), label.category, label.marketplaces)  # type: ignore[arg-type]
        analysis = LabelAnalysis(
            verdict=worst(r.verdict for r in reports),
            summary="",
            detected_text="",
            marketplaces=reports,
        )
        out.append(
            Analysed(name=label.name, analysis=analysis, seconds=time.perf_counter() - started)
        )
    return out


def scored_pass(render_name: str, labels: Sequence[CorpusLabel], done: Sequence[Analysed]) -> Pass:
    """Score one rendering."""
    by_name = {x.name: x for x in labels}
    pairs = [(by_name[d.name], d.analysis) for d in done]
    return Pass(
        render=render_name,
        labels=len(done),
        seconds_per_label=round(sum(d.seconds for d in done) / max(1, len(done)), 3),
        scored=score(pairs, checkable_rules()),
    )


def _ci(rate: float, ci: tuple[float, float]) -> str:
    return f"{rate:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _row(name: str, r: Rates) -> str:
    c = r.counts
    return (
        f"| {name} | {r.findings} | {r.problems} | {_ci(r.fail_precision, r.fail_precision_ci)} "
        f"| {_ci(r.recall, r.recall_ci)} | {_ci(r.flag_precision, r.flag_precision_ci)} "
        f"| {c.fp_fail} | {c.fp_unclear} | {c.fn} |"
    )


def table(evaluation: Evaluation) -> str:
    """The README table: per rendering, overall, per marketplace and per rule family."""
    head = (
        "| slice | findings | problems | fail precision [95 % CI] | recall [95 % CI] "
        "| flag precision [95 % CI] | false fail | false unclear | missed |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    parts = []
    for p in evaluation.passes:
        rows = [_row("**all**", p.scored.overall)]
        rows += [_row(f"market {k}", v) for k, v in p.scored.per_marketplace.items()]
        rows += [_row(f"family {k}", v) for k, v in p.scored.per_family.items()]
        parts.append(
            f"**{evaluation.part} part, {p.render}** ({p.labels} labels, "
            f"{p.seconds_per_label:.2f} s per label on {evaluation.machine}):\n\n"
            + head
            + "\n"
            + "\n".join(rows)
        )
    return "\n\n".join(parts)


def write_readme(evaluation: Evaluation) -> None:
    """Replace the table between the README markers, if they are there."""
    text = README.read_text(encoding="utf-8")
    if TABLE_START not in text:
        return
    pattern = re.compile(re.escape(TABLE_START) + ".*?" + re.escape(TABLE_END), re.S)
    body = f"{TABLE_START}\n{table(evaluation)}\n{TABLE_END}"
    README.write_text(pattern.sub(lambda _: body, text), encoding="utf-8")


def report(evaluation: Evaluation, mistakes: int = 40) -> None:
    """Print the tables and the first mismatches."""
    print(table(evaluation))
    for p in evaluation.passes:
        print(f"\n--- {p.render}: mismatches ({len(p.scored.mismatches)})")
        for m in p.scored.mismatches[:mistakes]:
            print(
                f"  {m.label} {m.marketplace} {m.rule}: expected {m.expected}, got {m.got}"
                f" ({m.evidence[:140]})"
            )


async def _run(args: argparse.Namespace) -> Evaluation:
    labels = select(args.part, args.limit)
    evaluation = Evaluation(
        backend="local",
        part=args.part,
        rulebook_version=load_rulebook().version,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    )
    if args.text:
        evaluation.passes.append(scored_pass("text only (no OCR)", labels, analyze_text(labels)))
        return evaluation
    backend = LocalBackend()
    await backend.warm_up()
    evaluation.passes.append(scored_pass("clean", labels, await analyze(labels, backend)))
    if not args.no_photo:
        photos = await analyze(labels, backend, photo=True)
        evaluation.passes.append(scored_pass("photo-like", labels, photos))
    return evaluation


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", choices=("held-out", "dev"), default="held-out")
    parser.add_argument("--limit", type=int, default=None, help="only the first N labels")
    parser.add_argument("--text", action="store_true", help="rulebook on the text, no OCR")
    parser.add_argument("--no-photo", action="store_true", help="skip the photo-like pass")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    evaluation = asyncio.run(_run(args))
    report(evaluation)
    if args.part == "held-out" and not args.text and not args.limit:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(msgspec.json.format(msgspec.json.encode(evaluation)) + b"\n")
        write_readme(evaluation)
        print(f"\nwrote {args.out} and the README table")


if __name__ == "__main__":
    main()
