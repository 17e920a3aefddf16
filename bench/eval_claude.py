"""The same held-out evaluation as bench/eval_local.py, against the ``claude`` backend.

``make eval`` (needs ``ANTHROPIC_API_KEY``; costs money, so never in CI): renders the
held-out labels clean (``--photo`` adds the photo-like pass), sends each through
:class:`analyzer.backends.claude.ClaudeBackend`, scores the findings with the same
definitions, and prices the reported token usage. Writes ``bench/results/claude_eval.json``.
Only rules the local backend can also decide from text are scored, so the two backends are
compared on the same findings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from pathlib import Path

import msgspec

from analyzer.backends.claude import ClaudeBackend
from analyzer.rulebook import load_rulebook
from bench.eval_local import Evaluation, analyze, report, scored_pass, select
from shared.schemas import Usage
from shared.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "claude_eval.json"

# USD per million tokens: input, output, cache write, cache read (Anthropic's list prices;
# override with EVAL_PRICE_INPUT / EVAL_PRICE_OUTPUT for another model or a new price list).
PRICES: dict[str, tuple[float, float, float, float]] = {
    "opus": (15.0, 75.0, 18.75, 1.5),
    "sonnet": (3.0, 15.0, 3.75, 0.3),
    "haiku": (1.0, 5.0, 1.25, 0.1),
}


class Cost(msgspec.Struct, kw_only=True):
    """What the run cost, from the usage the API reported."""

    model: str
    labels: int
    input_tokens: int
    output_tokens: int
    usd_total: float
    usd_per_label: float


def price(model: str) -> tuple[float, float, float, float]:
    """The per-million-token prices for a model id."""
    family = next((name for name in PRICES if name in model), "sonnet")
    base = PRICES[family]
    inp = float(os.environ.get("EVAL_PRICE_INPUT", base[0]))
    out = float(os.environ.get("EVAL_PRICE_OUTPUT", base[1]))
    return (inp, out, base[2], base[3])


def cost(model: str, usages: list[Usage]) -> Cost:
    """Total and per-label cost."""
    p_in, p_out, p_write, p_read = price(model)
    total = (
        sum(
            u.input_tokens * p_in
            + u.output_tokens * p_out
            + u.cache_creation_input_tokens * p_write
            + u.cache_read_input_tokens * p_read
            for u in usages
        )
        / 1e6
    )
    return Cost(
        model=model,
        labels=len(usages),
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        usd_total=round(total, 4),
        usd_per_label=round(total / max(1, len(usages)), 5),
    )


class ClaudeEvaluation(msgspec.Struct, kw_only=True):
    """The scored run and its cost."""

    evaluation: Evaluation
    cost: Cost


async def _run(args: argparse.Namespace) -> ClaudeEvaluation:
    settings = Settings.from_env()
    backend = ClaudeBackend(settings)
    labels = select("held-out", args.limit)
    evaluation = Evaluation(
        backend="claude",
        part="held-out",
        rulebook_version=load_rulebook().version,
        machine=f"{platform.machine()}, {os.cpu_count()} cores",
    )
    usages: list[Usage] = []
    try:
        renders = [("clean", False), ("photo-like", True)] if args.photo else [("clean", False)]
        for name, photo in renders:
            done = await analyze(labels, backend, photo)
            usages += [d.usage for d in done]
            evaluation.passes.append(scored_pass(name, labels, done))
    finally:
        await backend.aclose()
    return ClaudeEvaluation(evaluation=evaluation, cost=cost(settings.anthropic_model, usages))


def main() -> None:
    """Command-line entry point; exits quietly without an API key."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N labels")
    parser.add_argument("--photo", action="store_true", help="also the photo-like renderings")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not os.environ.get("ANTHROPIC_API_KEY"):
        print("ANTHROPIC_API_KEY is not set: skipping the claude evaluation")
        return
    result = asyncio.run(_run(args))
    report(result.evaluation)
    c = result.cost
    print(
        f"\n{c.labels} analyses with {c.model}: {c.input_tokens} input and {c.output_tokens} "
        f"output tokens, ${c.usd_total:.2f} in all, ${c.usd_per_label:.4f} per label"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
