"""The read loop: one consumer of the group, up to N scans at once, no busy polling."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import time
import uuid
from types import TracebackType
from typing import Any

import msgspec
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from analyzer import metrics
from analyzer.attempts import AttemptStore
from analyzer.backends import Backend, make_backend
from analyzer.control import listen_for_control
from analyzer.fetch import ImageFetcher
from analyzer.health import Health, HealthServer, liveness
from analyzer.maintenance import Entry, Maintenance, request_streams
from analyzer.msgbatch import make_batcher
from analyzer.outage import Outage
from analyzer.runner import ScanRunner
from shared.connection import connect
from shared.keys import GROUP
from shared.metrics import metrics_route
from shared.schemas import PRIORITIES, ScanJob
from shared.settings import Settings

log = structlog.get_logger("analyzer")

_decode_job = msgspec.json.Decoder(ScanJob).decode
BLOCK_MS = 1000
MIN_BLOCK_MS = 50


def consumer_name() -> str:
    """A name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class InFlight(msgspec.Struct, kw_only=True):
    """A delivered entry this process is running."""

    stream: str
    entry_id: str
    scan_id: str
    task: asyncio.Task[None]


class Worker:
    """An analyzer process's consumer: reads, dispatches, maintains, and drains on stop.

    Use as ``async with Worker(settings) as worker: await worker.run()``.
    """

    def __init__(self, settings: Settings, *, backend: Backend | None = None) -> None:
        self.settings = settings
        self.consumer = consumer_name()
        self.redis = connect(settings, max_connections=settings.worker_concurrency + 8)
        # On one server, blocking reads get a connection of their own, so stop() can
        # CLIENT UNBLOCK it. A cluster or sentinel client reads from its own pool: a
        # one-connection client of its own did not always find the new primary after a
        # failover (its one connection held on to the dead one), and on a cluster the
        # unblock would have to reach the right node anyway; the short blocks there
        # (see _read) bound a stop's wait.
        self._reader = (
            connect(
                settings,
                max_connections=1,
                socket_timeout=BLOCK_MS / 1000 + settings.redis_timeout_s,
            )
            if settings.redis_mode == "standalone"
            else self.redis
        )
        self._reader_id: int | None = None
        self.store = AttemptStore(self.redis, settings)
        self.backend = backend or make_backend(settings)
        self.fetcher = ImageFetcher(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.fetch_timeout_s,
            allow_http=settings.image_url_allow_http,
            allow_hosts=settings.image_url_allow_hosts,
            max_redirects=settings.image_fetch_max_redirects,
        )
        self.runner = ScanRunner(self.store, self.backend, self.fetcher, settings)
        self.batcher = make_batcher(self.runner, self.backend, self.consumer)
        self.runner.batcher = self.batcher
        # By priority, highest first; within a level every partition is read in turn.
        self.streams = request_streams(self.store.keys)
        self._levels = [
            [part.requests(p) for part in self.store.keys.partitions] for p in PRIORITIES
        ]
        self._turn = 0
        self.maintenance = Maintenance(
            self.store,
            settings=settings,
            consumer=self.consumer,
            held=self._held,
            free_slots=self._free_slots,
            deliver=self._deliver,
        )
        self.health_server: HealthServer | None = None
        if settings.analyzer_health_port is not None:
            self.health_server = HealthServer(
                settings.analyzer_health_host,
                settings.analyzer_health_port,
                self.health,
                extra=[metrics_route(settings)] if settings.metrics else [],
            )
        self.processed = 0
        self.last_turn = time.monotonic()
        self._inflight: dict[str, InFlight] = {}
        self._backlog: collections.deque[Entry] = collections.deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self.drained = False
        self._background: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Worker:
        try:
            if self.health_server is not None:
                # First: a taken port ends the process before it loads models or touches Redis.
                self.health_server.bind()
            await self.ensure_groups()
            # Before the first claim: a scan must not wait seconds for OCR models to load.
            await self.backend.warm_up()
            if self.health_server is not None:
                await self.health_server.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ensure_groups(self) -> None:
        """Create the consumer group on every request stream (idempotent).

        A replica that starts while Redis is unreachable (a failover under way, a
        restart) waits for it rather than exit: it holds nothing yet, and exiting would
        only have its supervisor start it again into the same outage.
        """
        delay_s = 0.1
        while True:
            try:
                for stream in self.streams:
                    await self._create_group(stream)
                return
            except RedisConnectionError as exc:
                log.warning("redis unreachable at start; waiting", error=str(exc), retry_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)

    async def _create_group(self, stream: str) -> None:
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def health(self) -> Health:
        """Liveness snapshot for the health endpoint."""
        status, age = liveness(self.last_turn, self.settings.liveness_timeout_s)
        return Health(
            status=status,
            last_turn_s=age,
            in_flight=len(self._inflight),
            processed=self.processed,
            reclaimed=self.maintenance.reclaimed,
            draining=self.drained,
        )

    def stop(self) -> None:
        """Stop claiming; :meth:`run` drains in-flight scans, hands back the rest, returns."""
        if self._stopping.is_set():
            return
        log.info("stop requested", in_flight=len(self._inflight))
        self._stopping.set()
        self._wake.set()
        if self._reader_id is not None:
            task = asyncio.get_running_loop().create_task(self._unblock(self._reader_id))
            self._background.append(task)

    def force_stop(self) -> None:
        """Stop now: hand back running scans at once instead of waiting out the grace period."""
        self.stop()
        if self._forced.is_set():
            return
        log.warning(
            "forced stop: handing back running scans now, without waiting out the grace period",
            in_flight=len(self._inflight),
        )
        self._forced.set()

    def _on_drain(self, consumer: str, drain: bool) -> None:
        if consumer != self.consumer:
            return
        if drain:
            self.drain()
        else:
            self.undrain()

    def drain(self) -> None:
        """Stop taking work and hand back what this process holds, at once; stay up, idle.

        For maintenance without a SIGTERM: the running scans are interrupted and
        handed back like a forced stop's, so other analyzers take them at once.
        """
        if self.drained:
            return
        self.drained = True
        log.warning("draining on an operator's request", in_flight=len(self._inflight))
        for item in self._inflight.values():
            item.task.cancel()  # the runner hands each one back for immediate redelivery
        if self.batcher is not None:
            # Collected for a provider batch but not sent: back too. Sent batches are
            # still polled here (they hold no worker slot).
            loop = asyncio.get_running_loop()
            self._background.append(loop.create_task(self.batcher.hand_back_collected()))
        self._wake.set()
        if self._reader_id is not None:
            task = asyncio.get_running_loop().create_task(self._unblock(self._reader_id))
            self._background.append(task)

    def undrain(self) -> None:
        """Take work again after :meth:`drain`."""
        if self.drained:
            log.info("taking work again")
        self.drained = False
        self._wake.set()

    async def _unblock(self, client_id: int) -> None:
        # Ends the pending XREADGROUP as if it had timed out: no entry is lost.
        try:
            await self.redis.client_unblock(client_id)
        except RedisError as exc:
            log.warning("could not unblock the reader; it stops within a second", error=str(exc))

    async def run(self) -> None:
        """Claim and run scans until :meth:`stop`."""
        log.info(
            "consumer started",
            consumer=self.consumer,
            concurrency=self.settings.worker_concurrency,
            backend=self.backend.name,
        )
        self._background += self.maintenance.tasks(self._stopping)
        if self.batcher is not None:
            self._background += self.batcher.tasks(self._stopping)
        self._background.append(
            asyncio.create_task(
                listen_for_control(
                    self.redis,
                    self.store.keys.control,
                    self._cancel,
                    self._stopping,
                    on_controls=self.store.controls.invalidate,
                    on_drain=self._on_drain,
                )
            )
        )
        outage = Outage("read")
        while not self._stopping.is_set():
            if self.drained and self._backlog:
                # Read before the drain (or reclaimed meanwhile): back to the group.
                await self._hand_back_backlog()
            while self._backlog and len(self._inflight) < self.settings.worker_concurrency:
                self._start(*self._backlog.popleft())
            if self._free_slots() <= 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), BLOCK_MS / 1000)
                self.last_turn = time.monotonic()
                continue
            try:
                self._backlog.extend(await self._read(self._free_slots()))
                self.last_turn = time.monotonic()
                outage.recovered()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self._reader_id = None  # a new connection has a new client id
                await self._pause(outage.failed(exc))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing; re-creating it")
                await self.ensure_groups()
        await self._drain()

    def _free_slots(self) -> int:
        if self.drained:
            return 0  # neither reads nor reclaims
        return self.settings.worker_concurrency - len(self._inflight) - len(self._backlog)

    def _held(self) -> dict[str, list[str]]:
        held: dict[str, list[str]] = collections.defaultdict(list)
        for item in self._inflight.values():
            held[item.stream].append(item.entry_id)
        for stream, entry_id, _ in self._backlog:
            held[stream].append(entry_id)
        return held

    def _deliver(self, entries: list[Entry]) -> None:
        self._backlog.extend(entries)
        self._wake.set()

    async def _read(self, count: int) -> list[Entry]:
        # Highest level first without blocking, each level's partitions from a
        # rotating start (so none is always last); block only when all are empty,
        # so a free slot never waits behind an idle level.
        self._turn += 1
        out: list[Entry] = []
        for level in self._levels:
            start = self._turn % len(level)
            for stream in level[start:] + level[:start]:
                if len(out) >= count:
                    return out
                out += await self._xreadgroup({stream: ">"}, count - len(out), block=None)
        if out:
            return out
        if self._reader is not self.redis and self._reader_id is None:
            self._reader_id = int(await self._reader.client_id())
        # One blocking read covers one partition's streams (a command stays in one
        # slot); with several, each is watched in turn for a short while.
        parts = self.store.keys.partitions
        part = parts[self._turn % len(parts)]
        block = BLOCK_MS if len(parts) == 1 else max(BLOCK_MS // len(parts), MIN_BLOCK_MS)
        return await self._xreadgroup(dict.fromkeys(part.request_streams, ">"), 1, block=block)

    async def _xreadgroup(
        self, streams: dict[str, str], count: int, block: int | None
    ) -> list[Entry]:
        reply: Any = await self._reader.xreadgroup(
            GROUP,
            self.consumer,
            streams,  # type: ignore[arg-type]
            count=count,
            block=block,
        )
        out: list[Entry] = []
        by_stream = {(s.decode() if isinstance(s, bytes) else s): e for s, e in reply or ()}
        for stream in self.streams:
            for entry_id, fields in by_stream.get(stream, ()):
                out.append((stream, entry_id.decode(), fields))
        return out

    def _start(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        task = asyncio.create_task(self._handle(stream, entry_id, fields))
        scan_id = fields.get(b"scan_id", b"").decode(errors="replace")
        self._inflight[entry_id] = InFlight(
            stream=stream, entry_id=entry_id, scan_id=scan_id, task=task
        )
        metrics.INFLIGHT.inc()
        task.add_done_callback(lambda t: self._done(entry_id, t))

    def _done(self, entry_id: str, task: asyncio.Task[None]) -> None:
        if self._inflight.pop(entry_id, None) is not None:
            metrics.INFLIGHT.dec()
        self.processed += 1
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("scan task failed", error=repr(task.exception()))

    def _cancel(self, scan_id: str) -> None:
        for item in self._inflight.values():
            if item.scan_id == scan_id:
                log.info("cancelling scan", scan_id=scan_id)
                item.task.cancel()

    async def _handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        try:
            job = _decode_job(fields[b"job"])
        except (KeyError, msgspec.DecodeError) as exc:
            await self._dead_letter(stream, entry_id, fields, f"undecodable entry: {exc!r}")
            return
        try:
            await self.runner.run(
                job, entry_id, stream, self.consumer, _attempts(fields.get(b"attempts"))
            )
        except RedisError as exc:
            # The entry stays pending; it is reclaimed once Redis answers again.
            log.warning(
                "redis error during scan; entry left pending", scan_id=job.scan_id, error=str(exc)
            )

    async def _dead_letter(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes], reason: str
    ) -> None:
        log.error("poison entry dead-lettered", entry_id=entry_id, reason=reason)
        raw = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            self.store.keys.of_key(stream).dead,
            {
                "scan_id": raw.get("scan_id", ""),
                "stream": stream,
                "entry_id": entry_id,
                "reason": reason,
                "fields": msgspec.json.encode(raw),
            },
            maxlen=self.settings.dead_maxlen,
            approximate=True,
        )
        pipe.xack(stream, GROUP, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute()
        metrics.finished(self.settings, "dead_lettered", self.runner.backend.name, "")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _drain(self) -> None:
        grace = self.settings.shutdown_grace_s
        tasks = [item.task for item in self._inflight.values()]
        if tasks:
            log.info("draining", in_flight=len(tasks), grace_s=grace)
            pending = await self._wait_or_forced(tasks, grace)
            for task in pending:
                task.cancel()  # the runner hands each one back for immediate redelivery
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("handed back unfinished scans", count=len(pending))
        await self._hand_back_backlog()
        if self.batcher is not None:
            try:
                await self.batcher.aclose()
            except RedisError as exc:
                log.warning(
                    "could not hand back provider batches; they are taken over", error=str(exc)
                )
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        log.info("consumer stopped", processed=self.processed)

    async def _wait_or_forced(
        self, tasks: list[asyncio.Task[None]], grace_s: float
    ) -> set[asyncio.Task[None]]:
        """Wait for ``tasks`` for ``grace_s`` at most, less if forced; return the unfinished."""
        # asyncio.wait never cancels what it waits for: cancelling these two watchers
        # leaves the scans running, for the caller to cancel (and so hand back).
        watchers = [
            asyncio.ensure_future(asyncio.wait(tasks)),
            asyncio.ensure_future(self._forced.wait()),
        ]
        try:
            await asyncio.wait(watchers, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for watcher in watchers:
                watcher.cancel()
        return {task for task in tasks if not task.done()}

    async def _hand_back_backlog(self) -> None:
        while self._backlog:
            stream, entry_id, fields = self._backlog.popleft()
            try:
                job = _decode_job(fields[b"job"])
                await self.store.release(job, entry_id, stream)
            except (KeyError, msgspec.DecodeError):
                continue  # poison: left pending, dead-lettered by whoever reclaims it
            except RedisError as exc:
                log.warning(
                    "could not hand back entry; it will be reclaimed",
                    entry_id=entry_id,
                    error=str(exc),
                )

    async def aclose(self) -> None:
        """Release the health server, the backend, the HTTP client and Redis."""
        if self.health_server is not None:
            await self.health_server.stop()
        for item in self._inflight.values():
            item.task.cancel()
        await self.backend.aclose()
        await self.fetcher.aclose()
        if self._reader is not self.redis:
            await self._reader.aclose()
        await self.redis.aclose()


def _attempts(raw: bytes | None) -> int:
    """The attempt count an entry was queued with; -1 when it has none (older writers)."""
    try:
        return int(raw) if raw is not None else -1
    except ValueError:
        return -1
