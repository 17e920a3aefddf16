"""Lua scripts and the runner that batches their calls into pipelines."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

EncodableT = str | bytes | int | float


class Script:
    """One Lua script, with the shared helper library prepended."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _load(name: str) -> Script:
    lua = resources.files("shared") / "lua"
    lib = (lua / "_lib.lua").read_text()
    return Script(name, lib + "\n" + (lua / f"{name}.lua").read_text())


SUBMIT = _load("submit")
CLAIM = _load("claim")
PROGRESS = _load("progress")
FINISH = _load("finish")
RETRY = _load("retry")
PROMOTE = _load("promote")
CANCEL = _load("cancel")
RELEASE = _load("release")
REQUEUE = _load("requeue")
RENEW = _load("renew")
RATELIMIT_ACQUIRE = _load("ratelimit_acquire")
RATELIMIT_SETTLE = _load("ratelimit_settle")
RATELIMIT_PAUSE = _load("ratelimit_pause")
TENANT_RATE = _load("tenant_rate")


class Packed(bytes):
    """An argument already in RESP bulk form: constants packed once, not per call."""

    __slots__ = ()

    @classmethod
    def of(cls, value: str | bytes | int | float) -> Packed:
        """Pack ``value`` once."""
        return cls(_bulk(value))


def _bulk(value: EncodableT) -> bytes:
    if isinstance(value, Packed):
        return value
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, int):
        data = b"%d" % value
    else:
        data = repr(value).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_evalsha(script: Script, keys: Sequence[str], args: Sequence[EncodableT]) -> bytes:
    """The RESP bytes of ``EVALSHA sha numkeys keys... args...``."""
    parts = [
        b"*%d\r\n" % (3 + len(keys) + len(args)),
        _bulk("EVALSHA"),
        _bulk(script.sha),
        _bulk(len(keys)),
    ]
    parts.extend(_bulk(k) for k in keys)
    parts.extend(_bulk(a) for a in args)
    return b"".join(parts)


_Call = tuple[Script, Sequence[str], Sequence[EncodableT], "asyncio.Future[Any]"]


class ScriptRunner:
    """Runs scripts by EVALSHA, coalescing calls made in one loop turn into one pipeline.

    Many scans progressing at once each publish events; sending them together
    turns N round trips into one without any caller knowing about it.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def __call__(
        self, script: Script, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> Any:
        """Run ``script`` and return its reply; raises what Redis raised."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, keys, args, fut))
        return await fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            replies = await self._execute(batch)
        except BaseException as exc:  # delivered to every waiting caller, not swallowed
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (*_, fut), reply in zip(batch, replies, strict=True):
            if fut.done():
                continue
            if isinstance(reply, Exception):
                fut.set_exception(reply)
            else:
                fut.set_result(reply)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        # redis-py's generic pipeline spends most of its time packing arguments;
        # scripts' arguments are few types, packed here in one pass per call.
        pool = self._redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(
                b"".join(pack_evalsha(sc, keys, args) for sc, keys, args, _ in batch),
                check_health=False,
            )
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # one script's error; the stream stays in sync
                    replies.append(exc)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        # A restarted server has lost its script cache: load and run those again.
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for script in {batch[i][0] for i in missing}:
                await self._redis.script_load(script.source)
            again = await self._execute([batch[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies
