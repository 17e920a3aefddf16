"""What one scan costs the analyzer's Python and the Valkey server, counted, not timed.

``python -m bench.hotpath [--scans N] [--concurrency C] [--profile]`` starts its own
Valkey, queues N scans, runs ONE analyzer in this process (the ``simulated`` backend
at 0 ms, logging as ``python -m analyzer`` configures it) until all are finished, and
prints per scan: Python function calls (``cProfile``; ``--profile`` also prints the
top functions), commands, script calls, bytes the client sent, bytes appended to the
append-only file and (noisy on a shared machine) Valkey CPU. Counts, unlike rates, do
not depend on what else the machine runs, so a change to the hot path is judged here.
Writes ``bench/results/hotpath.json`` (not with ``--profile``); ``--compare-allocators N``
runs it N times on glibc's malloc and on jemalloc, interleaved (``allocator.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop
from redis import Redis

from bench.core import RESULTS, _fill, service_env
from bench.valkeycost import Cost, cost, snapshot
from shared.embedded import EmbeddedValkey, jemalloc
from shared.logs import configure_logging
from shared.settings import Settings


class HotPath(msgspec.Struct, frozen=True, kw_only=True):
    """Per-scan counts of one in-process analyzer run."""

    scans: int
    concurrency: int
    python_calls_per_scan: float | None
    """Function calls ``cProfile`` counted (coroutine resumptions included); with --profile."""
    python_cpu_us_per_scan: float
    """The analyzer process's CPU time (user + system) per scan; inflated by --profile."""
    valkey: Cost
    client_bytes_per_scan: float
    """Bytes the server read from its clients (commands and their arguments)."""
    aof_bytes_per_scan: float
    """Bytes appended to the append-only file: what every write costs in propagation."""
    seconds: float
    allocator: str = "jemalloc"
    """The embedded server's malloc: ``jemalloc`` (preloaded) or ``libc``."""


def _server_bytes(url: str) -> tuple[int, int]:
    client = Redis.from_url(url)
    try:
        stats = client.info("stats")
        persistence = client.info("persistence")
    finally:
        client.close()
    return int(stats["total_net_input_bytes"]), int(persistence.get("aof_current_size", 0))


async def _run(settings: Settings, scans: int, profiler: cProfile.Profile | None) -> None:
    from analyzer.__main__ import freeze_startup_objects
    from analyzer.worker import Worker

    async with Worker(settings) as worker:
        freeze_startup_objects()  # as python -m analyzer does
        task = asyncio.create_task(worker.run())
        if profiler is not None:
            profiler.enable()
        while worker.processed < scans:
            await asyncio.sleep(0.01)
        if profiler is not None:
            profiler.disable()
        worker.stop()
        await task


def measure(url: str, *, scans: int, concurrency: int, profile: bool) -> HotPath:
    """Run ``scans`` through one in-process analyzer and count what each cost."""
    prefix = f"hot{os.getpid()}"
    env = service_env(
        url,
        prefix,
        SCAN_WORKER_CONCURRENCY=str(concurrency),
        EVENTS_MAXLEN=str(scans * 10),
        ANALYZER_HEALTH_PORT="0",
    )
    settings = Settings.from_env(env)
    configure_logging(settings, "analyzer")
    asyncio.run(_fill(settings, scans))
    profiler = cProfile.Profile() if profile else None
    before = snapshot(url)
    net0, aof0 = _server_bytes(url)
    started, cpu = time.monotonic(), time.process_time()
    uvloop.run(_run(settings, scans, profiler))
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    after = snapshot(url)
    net1, aof1 = _server_bytes(url)
    calls = None
    if profiler is not None:
        stats = pstats.Stats(profiler)
        calls = round(stats.total_calls / scans, 1)  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("ncalls").print_stats(40)
    return HotPath(
        scans=scans,
        concurrency=concurrency,
        python_calls_per_scan=calls,
        python_cpu_us_per_scan=round(cpu * 1e6 / scans, 1),
        valkey=cost(before, after, scans),
        client_bytes_per_scan=round((net1 - net0) / scans, 1),
        aof_bytes_per_scan=round((aof1 - aof0) / scans, 1),
        seconds=round(seconds, 2),
    )


class Allocators(msgspec.Struct, frozen=True, kw_only=True):
    """Valkey's CPU per processed scan on each allocator, runs interleaved in one process."""

    runs: int
    scans: int
    libc_cpu_us_per_scan: list[float]
    jemalloc_cpu_us_per_scan: list[float]
    jemalloc_over_libc: float
    """Median jemalloc CPU over median libc CPU (below 1: jemalloc costs less)."""


def _run_once(scans: int, concurrency: int, profile: bool, preload: bool) -> HotPath:
    with tempfile.TemporaryDirectory() as tmp:
        valkey = EmbeddedValkey(
            Path(tmp), log_file=Path(tmp) / "valkey.log", preload_jemalloc=preload
        )
        valkey.start()
        # No rewrite mid-run: it would restart the append-only file's size count.
        with Redis.from_url(valkey.url) as admin:
            admin.config_set("auto-aof-rewrite-percentage", 0)
        try:
            result = measure(valkey.url, scans=scans, concurrency=concurrency, profile=profile)
        finally:
            valkey.stop()
    return msgspec.structs.replace(result, allocator="jemalloc" if preload else "libc")


def _compare_allocators(scans: int, concurrency: int, runs: int) -> Allocators:
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(runs):
        for preload in (False, True):  # interleaved: both see the same machine
            run = _run_once(scans, concurrency, False, preload)
            cpu[preload].append(run.valkey.cpu_us_per_unit)
    return Allocators(
        runs=runs,
        scans=scans,
        libc_cpu_us_per_scan=cpu[False],
        jemalloc_cpu_us_per_scan=cpu[True],
        jemalloc_over_libc=round(statistics.median(cpu[True]) / statistics.median(cpu[False]), 3),
    )


def main() -> None:
    """Start a Valkey, measure, print the counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="count Python calls (slower)")
    parser.add_argument(
        "--libc-malloc", action="store_true", help="run Valkey on glibc's malloc, not jemalloc"
    )
    parser.add_argument(
        "--compare-allocators",
        type=int,
        metavar="RUNS",
        help="RUNS interleaved runs on each allocator; writes bench/results/allocator.json",
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.compare_allocators:
        if jemalloc() is None:
            raise SystemExit("libjemalloc2 is not installed: nothing to compare (make bench)")
        both = _compare_allocators(args.scans, args.concurrency, args.compare_allocators)
        out = msgspec.json.format(msgspec.json.encode(both))
        print(out.decode())
        (RESULTS / "allocator.json").write_bytes(out)
        return
    preload = not args.libc_malloc and jemalloc() is not None
    result = _run_once(args.scans, args.concurrency, args.profile, preload)
    out = msgspec.json.format(msgspec.json.encode(result))
    print(out.decode())
    if not args.profile:  # a profiled run's CPU time is the profiler's as much as the scans'
        (RESULTS / "hotpath.json").write_bytes(out)


if __name__ == "__main__":
    main()
