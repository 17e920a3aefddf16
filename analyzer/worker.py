"""The read loop: one consumer of the group, up to N scans at once, no busy polling."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import uuid
from types import TracebackType

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from analyzer.backends import Backend, make_backend
from analyzer.fetch import ImageFetcher
from analyzer.runner import ScanRunner
from shared.connection import connect
from shared.keys import GROUP
from shared.schemas import ScanJob
from shared.settings import Settings
from shared.store import ScanStore

log = structlog.get_logger("analyzer")

_decode_job = msgspec.json.Decoder(ScanJob).decode
Entry = tuple[str, str, dict[bytes, bytes]]
"""(stream, entry id, fields) of one delivered request."""


def consumer_name() -> str:
    """A name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """An analyzer process's consumer: reads, dispatches, and drains on stop.

    Use as ``async with Worker(settings) as worker: await worker.run()``.
    """

    def __init__(
        self, settings: Settings, *, backend: Backend | None = None, redis: Redis | None = None
    ) -> None:
        self.settings = settings
        self.consumer = consumer_name()
        self.redis = redis or connect(settings, max_connections=settings.worker_concurrency + 8)
        self._owns_redis = redis is None
        # Blocking reads get a connection of their own, so stop() can CLIENT UNBLOCK it.
        self._reader = connect(settings, max_connections=1)
        self._reader_id: int | None = None
        self.store = ScanStore(self.redis, settings)
        self.backend = backend or make_backend(settings)
        self.fetcher = ImageFetcher(
            max_bytes=settings.max_image_bytes, timeout_s=settings.fetch_timeout_s
        )
        self.runner = ScanRunner(self.store, self.backend, self.fetcher)
        self.streams = self.store.keys.request_streams  # highest priority first
        self.processed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog: collections.deque[Entry] = collections.deque()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._block_ms = 1000

    async def __aenter__(self) -> Worker:
        await self.ensure_groups()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ensure_groups(self) -> None:
        """Create the consumer group on every request stream (idempotent)."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def stop(self) -> None:
        """Stop claiming new entries; :meth:`run` returns once in-flight scans end."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._slot_free.set()
        if self._reader_id is not None:
            task = asyncio.get_running_loop().create_task(self._unblock(self._reader_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unblock(self, client_id: int) -> None:
        # Ends the pending XREADGROUP as if it had timed out: no entry is lost.
        try:
            await self.redis.client_unblock(client_id)
        except RedisError as exc:
            log.warning("could not unblock the reader; it stops within a second", error=str(exc))

    async def run(self) -> None:
        """Claim and run scans until :meth:`stop`."""
        log.info("consumer started", consumer=self.consumer,
                 concurrency=self.settings.worker_concurrency, backend=self.backend.name)
        failures = 0
        while not self._stopping.is_set():
            free = self.settings.worker_concurrency - len(self._tasks)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if not self._backlog:
                try:
                    self._backlog.extend(await self._read(free))
                    if failures:
                        log.info("redis reachable again", consumer=self.consumer)
                    failures = 0
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    self._reader_id = None
                    failures += 1
                    if failures == 1:
                        log.warning("redis unreachable; retrying", error=str(exc))
                    await self._sleep(min(0.1 * 2 ** min(failures, 5), 2.0))
                    continue
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    log.warning("consumer group missing; re-creating it")
                    await self.ensure_groups()
                    continue
            while self._backlog and len(self._tasks) < self.settings.worker_concurrency:
                self._start(*self._backlog.popleft())
        await self._drain()

    async def _read(self, count: int) -> list[Entry]:
        # One blocking read over every level returns at once when any level has
        # entries; taking them highest level first keeps priorities honest.
        if self._reader_id is None:
            self._reader_id = int(await self._reader.client_id())
        reply = await self._reader.xreadgroup(
            GROUP, self.consumer, dict.fromkeys(self.streams, ">"),
            count=count, block=self._block_ms,
        )
        if not reply:
            return []
        by_stream = {
            (s.decode() if isinstance(s, bytes) else s): entries for s, entries in reply
        }
        out: list[Entry] = []
        for stream in self.streams:
            for entry_id, fields in by_stream.get(stream, ()):
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                out.append((stream, eid, fields))
        return out

    def _start(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        task = asyncio.create_task(self._handle(stream, entry_id, fields))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.processed += 1
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("scan task failed", error=repr(task.exception()))

    async def _handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        try:
            job = _decode_job(fields[b"job"])
        except (KeyError, msgspec.DecodeError) as exc:
            await self._dead_letter(stream, entry_id, fields, f"undecodable entry: {exc!r}")
            return
        try:
            await self.runner.run(job, entry_id, stream, self.consumer)
        except RedisError as exc:
            # The entry stays pending; it is delivered again once Redis answers.
            log.warning("redis error during scan; entry left pending",
                        scan_id=job.scan_id, error=str(exc))

    async def _dead_letter(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes], reason: str
    ) -> None:
        log.error("poison entry dead-lettered", entry_id=entry_id, reason=reason)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.store.keys.dead, {
            "stream": stream, "entry_id": entry_id, "reason": reason,
            "fields": msgspec.json.encode({k.decode(errors="replace"): v.decode(errors="replace")
                                           for k, v in fields.items()}),
        })
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return

    async def _drain(self) -> None:
        if self._tasks:
            log.info("draining", in_flight=len(self._tasks))
            await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("consumer stopped", consumer=self.consumer, processed=self.processed)

    async def aclose(self) -> None:
        """Release the backend, the HTTP client and (if owned) Redis."""
        for task in self._tasks:
            task.cancel()
        await self.backend.aclose()
        await self.fetcher.aclose()
        await self._reader.aclose()
        if self._owns_redis:
            await self.redis.aclose()
