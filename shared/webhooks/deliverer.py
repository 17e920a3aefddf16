"""The webhook deliverer: the outbox reader (:mod:`shared.webhooks.outbox`) and the sender,
which attempts due deliveries and retries them with exponential backoff and full jitter.

Both stages are safe against ``kill -9``. A delivery is leased from the due
schedule for the time an attempt can take; a sender that dies mid-request leaves
it due again when the lease ends, and the next attempt carries the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from shared.batchstore import BatchStore
from shared.clock import now_ms
from shared.connection import RedisClient
from shared.keys import Keys
from shared.settings import Settings
from shared.tasks import cancel_and_wait
from shared.webhooks import metrics
from shared.webhooks.deliveries import (
    Delivery,
    DeliveryStore,
    delivery_ttl_s,
)
from shared.webhooks.endpoints import EndpointStore
from shared.webhooks.models import Attempts
from shared.webhooks.outbox import Outbox
from shared.webhooks.sender import Outcome, Sender
from shared.webhooks.signing import headers

log = structlog.get_logger("webhooks")

IDLE_S = 0.5
"""How often an idle sender looks at the schedule (a local fan-out wakes it at once)."""


def lease_ms(settings: Settings) -> int:
    """How long an attempt may take before another deliverer may take it over."""
    return int((2 * settings.webhook_timeout_s + 5) * 1000)


def backoff_s(settings: Settings, attempts: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(attempts-1))]."""
    ceiling = min(settings.webhook_retry_cap_s, settings.webhook_retry_base_s * 2 ** (attempts - 1))
    return random.uniform(0, ceiling)


class Deliverer:
    """One process's share of webhook delivery: its own consumer and sender."""

    def __init__(self, redis: RedisClient, reader: RedisClient, settings: Settings) -> None:
        self.redis = redis
        self.reader = reader
        self.settings = settings
        self.keys = Keys(settings.prefix, settings.partitions)
        self.endpoints = EndpointStore(redis, self.keys, settings)
        self.deliveries = DeliveryStore(redis, self.keys, ttl_s=delivery_ttl_s(settings))
        self.scans = BatchStore(redis, settings)
        """Scans and batches: a delivery's payload is one of them."""
        self.sender = Sender(
            timeout_s=settings.webhook_timeout_s,
            allow_hosts=settings.webhook_allow_hosts,
            max_connections=settings.webhook_concurrency,
        )
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._lease_ms = lease_ms(settings)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self.outbox = Outbox(
            redis=redis,
            reader=reader,
            keys=self.keys,
            scans=self.scans,
            endpoints=self.endpoints,
            deliveries=self.deliveries,
            consumer=self.consumer,
            lease_ms=self._lease_ms,
            on_created=self._wake.set,
        )

    async def start(self) -> None:
        """Create the consumer groups and start reading and sending."""
        await self.outbox.ensure_groups()
        loop = asyncio.get_running_loop()
        for part in self.keys.partitions:
            task = loop.create_task(self.outbox.read(part), name=f"outbox-{part.index}")
            self._tasks.append(task)
        self._tasks.append(loop.create_task(self._send_loop(), name="webhook-sender"))
        log.info("webhook deliverer started", consumer=self.consumer)

    async def stop(self) -> None:
        """Stop reading and sending; leased deliveries go to another deliverer at lease end."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        # Only now, with the sender loop ended, is the set of attempts final: the loop
        # may start one until it ends, and one missing from an earlier copy would run on.
        await cancel_and_wait(self._inflight)
        await self.sender.aclose()

    # --- stage 2: deliveries -> receivers ----------------------------------------------

    async def _send_loop(self) -> None:
        limit = self.settings.webhook_concurrency
        while True:
            try:
                # Cleared before looking, so a fan-out finishing meanwhile is not missed.
                self._wake.clear()
                free = limit - len(self._inflight)
                claimed = await self.deliveries.claim(free, self._lease_ms) if free > 0 else []
                for delivery in claimed:
                    task = asyncio.create_task(self._attempt(delivery))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                if free <= 0:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                elif not claimed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_S)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                log.warning("webhook schedule read failed; retrying", error=str(exc))
                await asyncio.sleep(1)

    async def _attempt(self, delivery: str) -> None:
        try:
            await self._send(delivery)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            # The lease ends and the delivery is tried again: nothing is lost.
            log.warning("webhook attempt not recorded", delivery=delivery, error=str(exc))
        except Exception:  # a bug must not end the sender; the lease retries the delivery
            log.exception("webhook attempt crashed", delivery=delivery)

    async def _send(self, delivery_ref: str) -> None:
        d = await self.deliveries.load(delivery_ref)
        if d is None or d.state.status != "pending":
            await self.deliveries.drop(delivery_ref)
            return
        endpoint = None
        if d.doc.endpoint_id is not None:
            found = await self.endpoints.get(d.doc.endpoint_id)
            if found is None:
                await self._give_up(d, "the endpoint was deleted")
                return
            endpoint = found[0]
            if not endpoint.enabled:
                await self._give_up(d, f"the endpoint is disabled: {endpoint.disabled_reason}")
                return
            url, keys = endpoint.url, endpoint.signing_secrets(now_ms())
        else:
            url = d.doc.callback_url or ""
            record = await self.scans.record(d.doc.scan_id)
            secret = record.job.callback_secret if record is not None else None
            if not secret:
                await self._give_up(d, "the scan and its callback secret expired")
                return
            keys = [secret]
        signed = headers(keys, d.doc.event_id, int(time.time()), d.body)
        outcome = await self.sender.post(url, signed, d.body)
        metrics.REQUEST.observe(outcome.latency_ms / 1000)
        disabled = False
        if outcome.ok:
            if endpoint is not None:
                await self.endpoints.succeeded(endpoint.id)
        elif endpoint is not None:
            disabled = await self.endpoints.failed(endpoint, outcome.error)
            if disabled:
                log.warning("webhook endpoint disabled", endpoint=endpoint.id, error=outcome.error)
        await self._record(d, outcome, disabled)

    async def _record(self, d: Delivery, outcome: Outcome, disabled: bool) -> None:
        now = now_ms()
        attempts = d.state.attempts + 1
        status: Any = "succeeded" if outcome.ok else "failed"
        next_ms = 0
        error = outcome.error
        if not outcome.ok and outcome.retry and not disabled:
            wait = outcome.retry_after_s
            delay = wait if wait is not None else backoff_s(self.settings, attempts)
            next_ms = now + int(delay * 1000)
            window_end = d.state.window_ms + int(self.settings.webhook_retry_hours * 3_600_000)
            if next_ms <= window_end:
                status = "pending"
            else:
                error = f"{error}; gave up after {attempts} attempts"
        state = Attempts(
            status=status,
            attempts=attempts,
            window_ms=d.state.window_ms,
            next_ms=next_ms,
            last_status=outcome.status,
            last_latency_ms=outcome.latency_ms,
            last_error=error,
            updated_ms=now,
        )
        await self.deliveries.record(d.doc.id, state)
        metrics.ATTEMPTS.labels("retrying" if status == "pending" else status).inc()
        if status == "succeeded":
            metrics.LAG.observe(max(0, now - d.doc.created_ms) / 1000)
        log.info(
            "webhook attempt",
            delivery=d.doc.id,
            webhook_id=d.doc.event_id,
            type=d.doc.type,
            scan_id=d.doc.scan_id or None,
            batch_id=d.doc.batch_id,
            attempt=attempts,
            status=status,
            code=outcome.status or None,
            latency_ms=outcome.latency_ms,
            error=error or None,
        )

    async def _give_up(self, d: Delivery, reason: str) -> None:
        state = Attempts(
            status="failed",
            attempts=d.state.attempts,
            window_ms=d.state.window_ms,
            last_status=d.state.last_status,
            last_latency_ms=d.state.last_latency_ms,
            last_error=reason,
            updated_ms=now_ms(),
        )
        await self.deliveries.record(d.doc.id, state)
        metrics.ATTEMPTS.labels("failed").inc()
        log.info("webhook delivery dropped", delivery=d.doc.id, reason=reason)
