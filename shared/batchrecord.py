"""A batch's hash ``{p}:batch:<id>``, decoded, and the aggregate of a finished batch.

The hash holds ``total``, ``tenant``, ``created_ms``, the terminal counts
(``completed``, ``failed``, ``cancelled``, kept by the scripts that end a scan),
``finished_ms`` once every scan has ended, ``cancelled_ms`` once it was
cancelled, the cached ``aggregate`` (stamped with the finish it describes) and
``webhook`` when its tenant had webhook endpoints at submit (its end then goes to
the outbox as ``batch.completed``).
"""

from __future__ import annotations

from collections import Counter

import msgspec

from shared.schemas import BatchAggregate, RuleCount, ScanResult

TOP_RULES = 10
"""Failing rules an aggregate lists, most frequent first."""


class BatchHead(msgspec.Struct, frozen=True, kw_only=True):
    """A batch's hash, decoded."""

    batch_id: str
    tenant: str
    total: int
    created_ms: int
    completed: int
    failed: int
    cancelled: int
    finished_ms: int | None
    cancelled_ms: int | None
    aggregate: bytes | None

    @property
    def state(self) -> str:
        """running until every scan has ended; then finished, or cancelled if it was."""
        if self.finished_ms is None:
            return "running"
        return "cancelled" if self.cancelled_ms is not None else "finished"


def decode_head(batch_id: str, raw: dict[bytes, bytes]) -> BatchHead | None:
    if b"total" not in raw:
        return None

    def number(name: bytes) -> int | None:
        value = raw.get(name)
        return int(value) if value is not None else None

    return BatchHead(
        batch_id=batch_id,
        tenant=raw.get(b"tenant", b"default").decode(),
        total=int(raw[b"total"]),
        created_ms=number(b"created_ms") or 0,
        completed=number(b"completed") or 0,
        failed=number(b"failed") or 0,
        cancelled=number(b"cancelled") or 0,
        finished_ms=number(b"finished_ms"),
        cancelled_ms=number(b"cancelled_ms"),
        aggregate=raw.get(b"aggregate"),
    )


def summarize(results: list[ScanResult]) -> BatchAggregate:
    """Verdicts per marketplace and the rules failed most often, over ``results``."""
    verdicts: dict[str, dict[str, int]] = {}
    failing: Counter[str] = Counter()
    for result in results:
        for report in result.analysis.marketplaces:
            tally = verdicts.setdefault(
                report.marketplace, {"compliant": 0, "non_compliant": 0, "needs_review": 0}
            )
            tally[report.verdict] += 1
            failing.update(f.rule for f in report.findings if f.status == "fail")
    top = sorted(failing.items(), key=lambda item: (-item[1], item[0]))[:TOP_RULES]
    return BatchAggregate(
        verdicts=dict(sorted(verdicts.items())),
        top_failing_rules=[RuleCount(rule=rule, count=count) for rule, count in top],
    )
