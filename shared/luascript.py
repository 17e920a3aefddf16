"""Typed Lua scripts: one Python declaration per script owns its keys, arguments and reply.

A script's ``KEYS`` and ``ARGV`` are described by two msgspec structs. The
loader generates the Lua lines that bind every key and argument to a local
named after its field (``local scan_key = KEYS[1]``, ``local token = ARGV[2]``)
and prepends them, with the shared helpers, to the script's body; ``F.<field>``
in a body names a field of the scan hash (:class:`shared.record.ScanRecord`).
Positions therefore exist only in generated code: a script body and its caller
agree by name, and adding an argument is one field.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import typing
from collections.abc import Callable
from importlib import resources
from typing import Any, Generic, TypeVar

import hiredis
import msgspec
import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from shared.record import FIELDS

log = structlog.get_logger("labelscan")

K = TypeVar("K", bound=msgspec.Struct)
A = TypeVar("A", bound=msgspec.Struct)
R = TypeVar("R")

Arg = str | bytes | int | float


def _binding(table: str, cls: type[msgspec.Struct], suffix: str) -> list[str]:
    """``local <name> = KEYS[i]`` lines for each field; a trailing tuple takes the rest."""
    lines = []
    hints = typing.get_type_hints(cls)
    for i, field in enumerate(cls.__struct_fields__, start=1):
        name = field + suffix
        hint = hints[field]
        if typing.get_origin(hint) is tuple:
            if i != len(cls.__struct_fields__):
                raise TypeError(f"{cls.__name__}.{field}: only the last field may be variadic")
            lines.append(f"local {name} = {{unpack({table}, {i})}}")
        elif hint is int or hint is float:
            lines.append(f"local {name} = tonumber({table}[{i}])")
        else:
            lines.append(f"local {name} = {table}[{i}]")
    return lines


_FIELD = re.compile(r"\bF\.([a-z_]+)\b")


def _with_fields(lua: str, name: str) -> str:
    """``F.<field>`` replaced by the scan hash's field name, checked against ScanRecord.

    Done here, not by a Lua table: a table built on every call measurably cost
    Valkey CPU, and a misspelt field now fails at import, not at run time.
    """

    def field(match: re.Match[str]) -> str:
        if match[1] not in FIELDS:
            raise ValueError(f"{name}.lua: F.{match[1]} is not a field of ScanRecord")
        return f"'{match[1]}'"

    return _FIELD.sub(field, lua)


def _flattener(cls: type[msgspec.Struct]) -> Callable[[msgspec.Struct], list[Arg]]:
    """How to turn a ``cls`` value into arguments, decided once per struct, not per call.

    Fields are strings, bytes and numbers, but for a last variadic tuple (spread),
    ``None`` (sent as "") and ``bool`` (sent as 0 or 1).
    """
    hints = list(typing.get_type_hints(cls).values())
    variadic = bool(hints) and typing.get_origin(hints[-1]) is tuple
    plain = all(
        hint in (str, bytes, int, float) or typing.get_origin(hint) is tuple for hint in hints
    )
    astuple = msgspec.structs.astuple

    def slow(value: msgspec.Struct) -> list[Arg]:
        out: list[Arg] = []
        for item in astuple(value):
            if isinstance(item, tuple):
                out.extend(item)
            elif item is None:
                out.append("")
            elif isinstance(item, bool):
                out.append(int(item))
            else:
                out.append(item)
        return out

    if not plain:
        return slow
    if variadic:
        return lambda value: [*(items := astuple(value))[:-1], *items[-1]]
    return lambda value: list(astuple(value))


class Script(Generic[K, A, R]):
    """One Lua script: its keys struct, its arguments struct and how to read its reply."""

    __slots__ = ("_flat_args", "_flat_keys", "args", "keys", "name", "reply", "sha", "source")

    def __init__(self, name: str, keys: type[K], args: type[A], reply: Callable[[Any], R]) -> None:
        lua = resources.files("shared") / "lua"
        header = [
            f"-- {name}.lua with its bindings, generated from shared/scripts.py",
            *_binding("KEYS", keys, "_key"),
            *_binding("ARGV", args, ""),
        ]
        self.name = name
        self.keys = keys
        self.args = args
        self.reply = reply
        self.source = _with_fields(
            "\n".join([(lua / "_lib.lua").read_text(), *header, (lua / f"{name}.lua").read_text()]),
            name,
        )
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self._flat_keys = _flattener(keys)
        self._flat_args = _flattener(args)

    def command(self, keys: K, args: A) -> list[Arg]:
        """The arguments of ``EVALSHA`` for one call."""
        k = self._flat_keys(keys)
        return [self.sha, len(k), *k, *self._flat_args(args)]


class _Call:
    __slots__ = ("batch", "command", "future", "script")

    def __init__(self, script: Script[Any, Any, Any], command: list[Arg], future: Any) -> None:
        self.script = script
        self.command = command
        self.future = future
        self.batch: asyncio.Task[None] | None = None
        """The task sending the call's pipeline, once it is sent."""


MAX_IN_FLIGHT = 4
"""Pipelines one runner keeps in flight (each holds a connection while it waits)."""


class NotDurableError(RedisError):
    """A write is in Redis but not yet on disk where strict durability requires it."""


async def _after_node_failure(cluster: RedisCluster, name: str, exc: BaseException) -> None:
    """What redis-py's own cluster commands do when a node fails or a slot moved: learn
    the topology again, so the next call goes to the slot's new primary."""
    if isinstance(exc, (ConnectionError, TimeoutError, ClusterDownError)) or (
        isinstance(exc, ResponseError) and str(exc).startswith(("MOVED", "ASK"))
    ):
        cluster.nodes_manager.move_node_to_end_of_cached_nodes(name)
        try:
            await cluster.nodes_manager.initialize()
        except RedisError as again:  # still failing over: the next call tries again
            log.warning("cluster topology refresh failed", error=str(again))


async def _read(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:  # one command's error; the connection stays in sync
        return exc


class ScriptRunner:
    """Runs scripts by EVALSHA, coalescing the calls of one loop turn into one pipeline.

    Many scans progressing at once each publish events; sending them together
    turns N round trips into one without any caller knowing about it. On one
    node the batch is packed by hiredis and sent on a pooled redis-py connection
    (see :meth:`_on_one_connection` for why); on a cluster it is redis-py's
    cluster pipeline, which routes each call to its slot's primary.
    """

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._pending: list[_Call] = []
        self._flushing: dict[asyncio.Task[None], list[_Call]] = {}

    async def __call__(self, script: Script[K, A, R], keys: K, args: A) -> R:
        """Run ``script`` and return its typed reply; raises what Redis raised."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        call = _Call(script, script.command(keys, args), fut)
        self._pending.append(call)
        try:
            reply = await fut
        except asyncio.CancelledError:
            await self._abandon(call)
            raise
        return script.reply(reply)

    async def _abandon(self, call: _Call) -> None:
        """A cancelled caller's call: dropped if not sent yet; else its pipeline is
        cancelled once no caller waits for it, and waited for either way.

        A pipeline must not outlive its callers: their owner stops them, then closes
        the client, and a pipeline still connecting or sending by then opens a
        connection again on the closed pool, which nothing would ever close.
        """
        batch = call.batch
        if batch is None:
            self._pending.remove(call)
            return
        if all(other.future.done() for other in self._flushing.get(batch, ())):
            batch.cancel()
        while not batch.done():
            try:
                await asyncio.wait({batch})
            except asyncio.CancelledError:
                continue  # cancelled again meanwhile: the caller still raises once it ends

    async def run_durable(
        self, script: Script[K, A, R], keys: K, args: A, *, timeout_ms: int = 5000
    ) -> R:
        """Run ``script``, then wait until its writes are in the append-only file of the
        primary and, when that primary has replicas, of one replica too.

        ``WAITAOF`` waits for the writes of its own connection, so the script and the
        waits share one connection, to the node that owns the script's first key.
        """
        command: list[Arg] = ["EVALSHA", *script.command(keys, args)]
        node_key = str(command[3])
        for _ in range(2):
            first = await self._pinned(
                node_key, [command, ["WAITAOF", 1, 0, timeout_ms], ["ROLE"]], then=timeout_ms
            )
            reply = first[0]
            if isinstance(reply, NoScriptError):
                await self.redis.script_load(script.source)
                continue
            if isinstance(reply, Exception):
                raise reply
            return script.reply(reply)
        raise NoScriptError(f"script {script.name} could not be loaded")

    async def _pinned(self, key: str, commands: list[list[Arg]], *, then: int) -> list[Any]:
        """Send ``commands`` on one connection to ``key``'s primary; then, if it has
        replicas, ``WAITAOF 0 1`` on the same connection. NotDurableError if a wait fails."""
        node = pool = None
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(key)
            if node is None:
                raise ClusterDownError(f"no primary serves the slot of {key} now")
            conn: Any = node.acquire_connection()
        else:
            pool = self.redis.connection_pool
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies = [await _read(conn) for _ in commands]
            if isinstance(replies[0], ResponseError) and str(replies[0]).startswith(
                ("MOVED", "ASK")
            ):
                raise replies[0]  # the slot moved: nothing ran; learn where it went
            local = replies[1]
            if isinstance(local, Exception) or int(local[0]) < 1:
                raise NotDurableError(f"WAITAOF: not fsynced on the primary ({local!r})")
            role = replies[2]
            if not isinstance(role, Exception) and role[0] == b"master" and role[2]:
                await conn.send_packed_command(conn.pack_command("WAITAOF", 0, 1, then))
                acked = await _read(conn)
                if isinstance(acked, Exception) or int(acked[1]) < 1:
                    raise NotDurableError("WAITAOF: no replica fsynced the write in time")
        except BaseException as exc:
            await conn.disconnect()
            if node is not None and isinstance(self.redis, RedisCluster):
                await _after_node_failure(self.redis, node.name, exc)
            raise
        finally:
            if node is not None:
                node.release(conn)
            elif pool is not None:
                await pool.release(conn)
        return replies

    def _flush(self) -> None:
        # A few pipelines in flight at most: calls made meanwhile wait for the next one,
        # so a burst spread over many loop turns never needs a connection per turn
        # (redis-py's pool refuses past its size rather than wait).
        if len(self._flushing) >= MAX_IN_FLIGHT:
            return  # the next pipeline to finish sends what waits
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._flushing[task] = batch
            for call in batch:
                call.batch = task
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._flushing.pop(task, None)
        if self._pending:
            self._flush()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            replies = await self._execute(batch)
        except BaseException as exc:  # delivered to every waiting caller, not swallowed
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for call, reply in zip(batch, replies, strict=True):
            if call.future.done():
                continue
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        replies: list[Any]
        if isinstance(self.redis, RedisCluster):
            # The cluster pipeline sends each call to its slot's primary.
            pipe = self.redis.pipeline(transaction=False)
            for call in batch:
                pipe.execute_command("EVALSHA", *call.command)
            replies = await pipe.execute(raise_on_error=False)
        else:
            replies = await self._on_one_connection(batch)
        # A restarted server (or a new primary) has an empty script cache.
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for script in {batch[i].script for i in missing}:
                await self.redis.script_load(script.source)
            again = await self._execute([batch[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _on_one_connection(self, batch: list[_Call]) -> list[Any]:
        """The batch on one pooled connection, packed by hiredis, retried as redis-py's
        pipeline retries it (a failed connection only, see shared/connection.py).

        Not redis-py's pipeline: its asyncio connection packs in Python (an encoder call
        per argument, ~25 per script call), and with the pipeline object around it that
        was a fifth of the analyzer's CPU per scan (``bench.hotpath``: about 300 µs a scan
        before, 235 µs after, on the same machine); ``hiredis.pack_command`` packs the
        same bytes in C.
        """
        assert isinstance(self.redis, Redis)
        # (hiredis's stub types the tuple as having one item)
        pack: Callable[[tuple[Arg, ...]], bytes] = hiredis.pack_command  # type: ignore[assignment]
        packed = b"".join([pack(("EVALSHA", *call.command)) for call in batch])
        pool = self.redis.connection_pool
        conn: Any = await pool.get_connection()  # type: ignore[no-untyped-call]

        async def round_trip() -> list[Any]:
            await conn.send_packed_command(packed)
            return [await _read(conn) for _ in batch]

        async def failed(_: BaseException) -> None:
            await conn.disconnect()

        try:
            replies: list[Any] = await conn.retry.call_with_retry(round_trip, failed)
        except BaseException:
            # Replies may be left unread: the connection is out of step, never reused.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return replies
