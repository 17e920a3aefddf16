"""Writes scan events exactly as the services do, through the shared stores."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from redis.asyncio import Redis

from analyzer.attempts import AttemptStore, Claim
from shared.keys import GROUP, Keys
from shared.schemas import LabelAnalysis, Progress, ScanJob, ScanResult, Usage
from shared.settings import Settings
from shared.store import ScanStore
from shared.streamids import parse_stream_id

# 1795980000000-0 in Arabic-Indic digits (U+0660-0669): str.isdigit() and \d take them and
# int() reads them, but Redis refuses them as an entry id.
OTHER_DIGITS_ID = "1795980000000-0".translate({ord("0") + d: 0x660 + d for d in range(10)})

RESULT = ScanResult(
    analysis=LabelAnalysis(
        verdict="compliant", summary="Fine.", detected_text="Made in EU", marketplaces=[]
    ),
    backend="simulated",
    model="test",
    usage=Usage(),
    duration_ms=1,
)


class Publisher:
    """Submits, claims and advances scans like the gateway and an analyzer would."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.scans = ScanStore(redis, settings)
        self.store = AttemptStore(redis, settings)
        self.keys = Keys(settings.prefix, settings.partitions)

    def stream(self, scan_id: str) -> str:
        """The request stream that carries ``scan_id`` (normal priority, its partition)."""
        return self.keys.of_scan(scan_id).requests("normal")

    async def setup(self) -> None:
        """Create the consumer groups the claim and finish scripts acknowledge into."""
        for part in self.keys.partitions:
            await self.redis.xgroup_create(part.requests("normal"), GROUP, id="0", mkstream=True)

    async def submit(self, tenant: str = "default", partition: int | None = None) -> str:
        """A new queued scan of ``tenant`` (in ``partition`` if given); returns its id."""
        part = None if partition is None else self.keys.partitions[partition]
        job = ScanJob(
            scan_id=self.keys.new_scan_id(part),
            category="toys",
            marketplaces=["US"],
            product_name="Blocks",
            submitted_at_ms=int(time.time() * 1000),
            tenant=tenant,
        )
        assert await self.scans.submit(job, b"\x89PNG fake") is None
        return job.scan_id

    async def claim(self, scan_id: str, consumer: str = "c1") -> Claim:
        """Deliver the scan's request to ``consumer`` and mark it active."""
        stream = self.stream(scan_id)
        reply: Any = await self.redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=1)
        entry_id, fields = reply[0][1][0]
        job = msgspec.json.decode(fields[b"job"], type=ScanJob)
        assert job.scan_id == scan_id, "tests claim scans in the order they submit them"
        progress = Progress(stage="fetching", percentage=10, message="Fetching the image")
        claim = await self.store.claim(job, entry_id.decode(), stream, consumer, progress)
        assert claim is not None
        return claim

    async def progress(self, claim: Claim, pct: int, message: str = "Analyzing") -> None:
        """Publish one progress event."""
        ok = await self.store.progress(
            claim, Progress(stage="analyzing", percentage=pct, message=message)
        )
        assert ok

    async def complete(self, claim: Claim) -> None:
        """Finish the scan with a result (the terminal event)."""
        assert await self.store.complete(claim, RESULT)

    async def history(self, scan_id: str) -> list[tuple[str, str]]:
        """(entry id, event JSON) of everything the scan published, in order."""
        raw: Any = await self.redis.xrange(self.keys.scan_events(scan_id))
        return [(i.decode(), f[b"event"].decode()) for i, f in raw]

    async def events(self) -> list[tuple[str, str]]:
        """(entry id, event JSON) of the global events stream, as notifiers read it."""
        out: list[tuple[str, str]] = []
        for part in self.keys.partitions:
            raw: Any = await self.redis.xrange(part.events)
            out += [(i.decode(), f[b"event"].decode()) for i, f in raw]
        return out

    async def tenant_events(self, tenant: str) -> list[tuple[str, str]]:
        """(entry id, event JSON) of every event of ``tenant``'s scans, in order."""
        return [
            pair
            for part in self.keys.partitions
            for pair in await self._tenant_events(part.events, tenant)
        ]

    async def _tenant_events(self, stream: str, tenant: str) -> list[tuple[str, str]]:
        raw: Any = await self.redis.xrange(stream)
        return [
            (i.decode(), f[b"event"].decode()) for i, f in raw if f[b"tenant"] == tenant.encode()
        ]

    async def trimmed_past(self, key: str, entry_id: str) -> bool:
        """Whether stream ``key``'s cap has trimmed ``entry_id`` away (it trims the head)."""
        first: Any = await self.redis.xrange(key, count=1)
        return bool(first) and parse_stream_id(first[0][0].decode()) > parse_stream_id(entry_id)

    async def run_to_completion(self, scan_id: str, steps: int = 2) -> None:
        """Claim, publish ``steps`` progress events and complete."""
        claim = await self.claim(scan_id)
        for i in range(steps):
            await self.progress(claim, 30 + 20 * i)
        await self.complete(claim)
