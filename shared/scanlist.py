"""Finding scans (``GET /api/scans``): newest first, from each partition's listing index.

``submit.lua`` adds every scan to two sorted sets of its partition, scored by
creation time: one of every scan (what an admin lists) and one of its tenant's.
They are trimmed there by age (nothing older than a scan can live) and by size
(``SCAN_INDEX_MAX``), and expire with the scans. A listing reads each partition's
index newest first, merges them, reads the candidates' hashes in one pipeline
and keeps those that match the filters.

Order and cursor: entries sort by ``(created_ms, scan_id)``, descending; the
cursor is the position of the last entry a page looked at, and the next page
starts strictly below it. A scan created meanwhile sorts above every cursor
already handed out, so paging while scans arrive returns each scan once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Any

import msgspec

from shared import events
from shared.clock import iso
from shared.connection import RedisClient
from shared.keys import Keys
from shared.record import latest_event
from shared.schemas import (
    Base,
    Category,
    Marketplace,
    Priority,
    ScanJob,
    ScanState,
    Stage,
    Verdict,
)
from shared.settings import Settings

BATCH = 100
"""Index entries read per partition and round trip."""
BUDGET = 2_000
"""Most entries one page looks at: a rare filter returns a short page and a cursor."""
_ABOVE_EVERY_ID = "g"  # scan ids are lowercase hex: "g" sorts after each of them
_CURSOR = re.compile(r"(-?[0-9]{1,15}):([0-9a-f]{32})")

Position = tuple[int, str]
"""``(created_ms, scan_id)`` of an index entry."""

_decode_job = msgspec.json.Decoder(ScanJob).decode


class ScanSummary(Base, frozen=True, kw_only=True):
    """One scan of a listing: what it is and where it stands, without its result."""

    scan_id: str
    tenant: str
    state: ScanState
    priority: Priority
    category: Category
    marketplaces: list[Marketplace]
    product_name: str
    created_at: str
    updated_at: str
    """When its latest event happened (its end, once it has ended)."""
    stage: Stage
    percentage: int
    verdict: Verdict | None = None
    """The outcome of a completed scan."""


class ScanPage(Base, frozen=True, kw_only=True):
    """Answer of ``GET /api/scans``: a page, newest first, and the cursor of the next."""

    items: list[ScanSummary]
    next: str | None = None
    """Pass as ``cursor`` for the next page; null when there is nothing older."""


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """What to list: whose scans, which ones, from where, how many."""

    tenant: str | None
    """None: every tenant's (an admin)."""
    state: ScanState | None = None
    priority: Priority | None = None
    since_ms: int | None = None
    """Created at or after."""
    until_ms: int | None = None
    """Created at or before."""
    q: str | None = None
    """Lowercase: a substring of the product name, or a prefix of the scan id."""
    cursor: Position | None = None
    limit: int = 20


def index_horizon_ms(settings: Settings) -> int:
    """How long a listing entry can point at a live scan.

    A scan's hash expires ``SCAN_RESULT_TTL`` after it is accepted unless it ends
    first, and then ``SCAN_RESULT_TTL`` after it ends: at most twice that.
    """
    return 2 * settings.result_ttl_s * 1000


def encode_cursor(position: Position) -> str:
    """The opaque cursor of ``position``."""
    raw = f"{position[0]}:{position[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position of a cursor from :func:`encode_cursor`; ValueError if it is not one."""
    if len(cursor) > 80:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    match = _CURSOR.fullmatch(raw)
    if match is None:
        raise ValueError("not a cursor")
    return int(match[1]), match[2]


class _Feed:
    """One partition's index, newest first, read a batch at a time below a position."""

    __slots__ = ("buffer", "exhausted", "key", "low", "upper")

    def __init__(self, key: str, upper: Position | None, low: int | None) -> None:
        self.key = key
        self.upper = upper
        self.low = low
        self.buffer: list[Position] = []  # newest last, popped from the end
        self.exhausted = False

    @property
    def wants_more(self) -> bool:
        return not self.buffer and not self.exhausted

    async def refill(self, redis: RedisClient) -> None:
        pipe = redis.pipeline(transaction=False)
        low = "-inf" if self.low is None else self.low
        if self.upper is None:
            pipe.zrevrangebyscore(self.key, "+inf", low, start=0, num=BATCH, withscores=True)
        else:
            # Entries of the same millisecond as the bound, then everything below it.
            pipe.zrangebyscore(self.key, self.upper[0], self.upper[0], withscores=True)
            pipe.zrevrangebyscore(
                self.key, f"({self.upper[0]}", low, start=0, num=BATCH, withscores=True
            )
        replies: Any = await pipe.execute()
        below = replies[-1]
        self.exhausted = len(below) < BATCH
        entries: list[Position] = []
        if self.upper is not None and (self.low is None or self.upper[0] >= self.low):
            upper = self.upper
            same = [(int(score), member.decode()) for member, score in replies[0]]
            entries = sorted((e for e in same if e < upper), reverse=True)
        entries += [(int(score), member.decode()) for member, score in below]
        if entries:
            self.upper = entries[-1]
        self.buffer = entries[::-1]


class ScanLister:
    """Pages of scans for one deployment's keys."""

    def __init__(self, redis: RedisClient, keys: Keys, *, budget: int = BUDGET) -> None:
        self.redis = redis
        self.keys = keys
        self.budget = budget

    def _feeds(self, query: ListQuery) -> list[_Feed]:
        upper = query.cursor
        if query.until_ms is not None:
            limit: Position = (query.until_ms, _ABOVE_EVERY_ID)
            upper = limit if upper is None else min(upper, limit)
        return [
            _Feed(
                part.scan_index if query.tenant is None else part.tenant_scan_index(query.tenant),
                upper,
                query.since_ms,
            )
            for part in self.keys.partitions
        ]

    async def page(self, query: ListQuery) -> ScanPage:
        """One page of the scans ``query`` asks for, newest first."""
        feeds = self._feeds(query)
        items: list[ScanSummary] = []
        examined = 0
        last: Position | None = None
        left_over = False  # entries taken from the feeds but not looked at
        while len(items) < query.limit and examined < self.budget and not left_over:
            await asyncio.gather(*(f.refill(self.redis) for f in feeds if f.wants_more))
            # Unfiltered, every live entry is an item: read no more scans than the page needs.
            wanted = query.limit - len(items) if _unfiltered(query) else max(query.limit, BATCH)
            chunk = _merge(feeds, min(wanted, self.budget - examined))
            if not chunk:
                break
            for n, ((_, position), summary) in enumerate(
                zip(chunk, await self._read(chunk), strict=True)
            ):
                examined += 1
                last = position
                if summary is not None and _matches(summary, query):
                    items.append(summary)
                    if len(items) == query.limit:
                        left_over = n + 1 < len(chunk)
                        break
        more = left_over or any(f.buffer or not f.exhausted for f in feeds)
        return ScanPage(items=items, next=encode_cursor(last) if more and last else None)

    async def _read(self, chunk: list[tuple[_Feed, Position]]) -> list[ScanSummary | None]:
        """Each entry's scan, or None where it has expired (its entry is then dropped)."""
        pipe = self.redis.pipeline(transaction=False)
        for _, (_, scan_id) in chunk:
            part = self.keys.of_scan(scan_id)
            pipe.hmget(part.scan(scan_id), ["state", "job", "priority", "created_ms"])
            pipe.xrevrange(part.scan_events(scan_id), count=1)
        replies: Any = await pipe.execute()
        out: list[ScanSummary | None] = []
        stale: dict[str, list[str]] = {}
        for index, (feed, (_, scan_id)) in enumerate(chunk):
            fields, tail = replies[2 * index], replies[2 * index + 1]
            summary = _summary(scan_id, fields, tail)
            if summary is None:
                stale.setdefault(feed.key, []).append(scan_id)
            out.append(summary)
        if stale:
            # Expired or purged scans leave the index as soon as a listing meets them.
            drop = self.redis.pipeline(transaction=False)
            for key, members in stale.items():
                drop.zrem(key, *members)
            await drop.execute()
        return out


def _merge(feeds: list[_Feed], count: int) -> list[tuple[_Feed, Position]]:
    """Up to ``count`` entries of the feeds, newest first, as far as their buffers tell."""
    chunk: list[tuple[_Feed, Position]] = []
    while len(chunk) < count:
        live = [f for f in feeds if f.buffer]
        if not live:
            break
        newest = max(live, key=lambda f: f.buffer[-1])
        chunk.append((newest, newest.buffer.pop()))
        if newest.wants_more:
            break  # its next entries are not read yet: they may be newer than the others'
    return chunk


def _summary(scan_id: str, fields: list[bytes | None], tail: Any) -> ScanSummary | None:
    state, job_raw, priority, created = fields
    if state is None or job_raw is None:
        return None
    job = _decode_job(job_raw)
    created_ms = int(created or 0)
    event = latest_event(tail)
    progress = event.progress if event is not None else events.QUEUED
    return ScanSummary(
        scan_id=scan_id,
        tenant=job.tenant,
        state=state.decode(),  # type: ignore[arg-type]  # written only by the scripts
        priority=(priority or b"normal").decode(),  # type: ignore[arg-type]
        category=job.category,
        marketplaces=job.marketplaces,
        product_name=job.product_name,
        created_at=iso(created_ms),
        updated_at=iso(event.at_ms if event is not None else created_ms),
        stage=progress.stage,
        percentage=progress.percentage,
        verdict=event.verdict if event is not None else None,
    )


def _unfiltered(query: ListQuery) -> bool:
    return query.state is None and query.priority is None and query.q is None


def _matches(summary: ScanSummary, query: ListQuery) -> bool:
    if query.state is not None and summary.state != query.state:
        return False
    if query.priority is not None and summary.priority != query.priority:
        return False
    if query.q is not None:
        return query.q in summary.product_name.casefold() or summary.scan_id.startswith(query.q)
    return True
