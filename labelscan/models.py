"""The batch API's answers, as the client reads them.

Scans, events, stats and dead letters are typed with the services' own structs
(``shared.schemas``); these cover ``/api/batches``. Unknown fields are ignored and
new ones have defaults, so the client keeps reading a newer gateway's answers.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.schemas import Base

BatchState = Literal["running", "finished", "cancelled"]


class BatchItemError(Base, frozen=True, kw_only=True):
    """Why one scan of a refused batch was refused."""

    index: int
    field: str | None = None
    reason: str = ""


class BatchRejected(Base, frozen=True, kw_only=True):
    """The ``400 invalid_batch`` body: every item's problem (nothing was written)."""

    error: str
    detail: str = ""
    errors: list[BatchItemError] = msgspec.field(default_factory=list)


class BatchAccepted(Base, frozen=True, kw_only=True):
    """Answer to ``POST /api/batches``: one id for the batch, one per scan, in order."""

    batch_id: str
    scan_ids: list[str]
    status_url: str = ""
    events_url: str = ""
    events_token: str | None = None


class RuleCount(Base, frozen=True, kw_only=True):
    """A failing rule and how many scans of the batch failed it."""

    rule: str
    count: int


class BatchAggregate(Base, frozen=True, kw_only=True):
    """A finished batch's outcome: verdicts per marketplace, the most frequent failures."""

    verdicts: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    top_failing_rules: list[RuleCount] = msgspec.field(default_factory=list)


class BatchStatus(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/batches/{id}``."""

    batch_id: str
    state: BatchState
    total: int
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    progress: int = 0
    scan_ids: list[str] = msgspec.field(default_factory=list)
    next_cursor: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    aggregate: BatchAggregate | None = None

    @property
    def done(self) -> int:
        """Scans that have finished, whatever their outcome."""
        return sum(self.counts.get(s, 0) for s in ("completed", "failed", "cancelled"))


class EventsLink(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/scans/{id}/events-url``: a fresh event token and its URL."""

    events_url: str
    events_token: str | None = None
