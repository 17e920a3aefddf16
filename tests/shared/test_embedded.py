"""The embedded server runs the allocator Valkey ships with, when it is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.embedded import EmbeddedValkey, jemalloc


def _mapped(server: EmbeddedValkey) -> str:
    assert server.process is not None
    return Path(f"/proc/{server.process.pid}/maps").read_text()


def test_the_embedded_server_runs_on_jemalloc_when_installed(valkey: EmbeddedValkey) -> None:
    if jemalloc() is None:
        pytest.skip("libjemalloc2 is not installed (make installs it as root with apt)")
    assert "libjemalloc" in _mapped(valkey)


def test_a_server_can_be_started_on_glibc_malloc(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path, log_file=tmp_path / "v.log", preload_jemalloc=False) as server:
        assert server.ping()
        assert "libjemalloc" not in _mapped(server)
