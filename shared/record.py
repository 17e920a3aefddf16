"""The scan hash ``{p}:scan:<id>``, written down once.

Every field a Lua script or a Python module reads or writes is a field of
:class:`ScanRecord`; the scripts get the same names as the table ``F``
(``F.state``), generated from this class, so no field name is typed twice.
A scan's progress is not a field: it is the last event of the scan's history.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared.schemas import Priority, ScanError, ScanEvent, ScanJob, ScanResult, ScanState

_job = msgspec.json.Decoder(ScanJob)
_event = msgspec.json.Decoder(ScanEvent)


def latest_event(history_tail: Any) -> ScanEvent | None:
    """The scan's progress as shown: the last entry of its history (``XREVRANGE .. COUNT 1``).

    The same event the stream carried, so ``/status`` and SSE say the same words.
    """
    if not history_tail:
        return None
    raw = history_tail[0][1].get(b"event")
    return _event.decode(raw) if raw else None


_result = msgspec.json.Decoder(ScanResult)
_error = msgspec.json.Decoder(ScanError)


class ScanRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One scan's hash, decoded."""

    state: ScanState
    job: ScanJob
    """The request as accepted (JSON)."""
    priority: Priority
    tenant: str
    attempts: int = 0
    """Attempts started so far."""
    created_ms: int = 0
    due_ms: int | None = None
    """When a retrying or scheduled scan is queued again."""
    entry_id: str | None = None
    """The request stream entry that currently carries the scan."""
    token: str | None = None
    """The attempt that owns the scan while active."""
    owner: str | None = None
    """The consumer running that attempt."""
    deferred: bool = False
    """Waiting because its tenant is at its cap of active scans, or paused (announced once)."""
    result: ScanResult | None = None
    error: ScanError | None = None
    history: tuple[ScanError, ...] = ()
    """Errors of earlier attempts (one JSON per line)."""
    dead_id: str | None = None
    """Its entry in the dead-letter stream."""
    batch: str | None = None
    """The batch it belongs to, if any."""
    webhook: bool = False
    """Its terminal states go to the outbox: its tenant has webhooks, or it has a callback_url."""


FIELDS: tuple[str, ...] = ScanRecord.__struct_fields__


def _text(raw: dict[bytes, bytes], name: str) -> str | None:
    value = raw.get(name.encode())
    return value.decode() if value is not None else None


def decode_record(raw: dict[bytes, bytes] | dict[Any, Any]) -> ScanRecord | None:
    """The record of an ``HGETALL`` reply; None when the scan is unknown or expired."""
    job = raw.get(b"job")
    state = raw.get(b"state")
    if job is None or state is None:
        return None
    result = raw.get(b"result")
    error = raw.get(b"error")
    due = raw.get(b"due_ms")
    history = raw.get(b"history", b"")
    return ScanRecord(
        state=state.decode(),  # type: ignore[arg-type]  # written only by the scripts
        job=_job.decode(job),
        priority=raw.get(b"priority", b"normal").decode(),  # type: ignore[arg-type]
        tenant=raw.get(b"tenant", b"default").decode(),
        attempts=int(raw.get(b"attempts", b"0")),
        created_ms=int(raw.get(b"created_ms", b"0")),
        due_ms=int(due) if due else None,
        entry_id=_text(raw, "entry_id"),
        token=_text(raw, "token"),
        owner=_text(raw, "owner"),
        deferred=bool(raw.get(b"deferred")),
        result=_result.decode(result) if result else None,
        error=_error.decode(error) if error else None,
        history=tuple(_error.decode(line) for line in history.splitlines() if line),
        dead_id=_text(raw, "dead_id"),
        batch=_text(raw, "batch"),
        webhook=bool(raw.get(b"webhook")),
    )
