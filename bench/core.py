"""The working core's benchmark: gateway accept path and analyzer throughput.

``python -m bench.core`` starts its own Valkey, runs the gateway and one analyzer
as separate processes (``simulated`` backend at 0 ms), drives load from a
separate process, and compares with peer queues measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.loadgen import LoadResult
from bench.peers import CONCURRENCY, group_cpu_s
from bench.valkeycost import Cost, cost, snapshot
from shared.clock import now_ms
from shared.connection import connect
from shared.embedded import EmbeddedValkey, die_with_parent, free_port
from shared.keys import Keys
from shared.schemas import ScanJob
from shared.settings import Settings
from shared.stats import queue_stats
from shared.store import ScanStore, new_scan_id

RESULTS = Path(__file__).parent / "results"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


class PipelineResult(msgspec.Struct, frozen=True, kw_only=True):
    """Analyzer throughput with every progress event published, and what it cost Valkey."""

    scans: int
    concurrency: int
    seconds: float
    scans_per_s: float
    events_published: int
    cpu_us_per_scan: float | None = None
    """The analyzer process's CPU time per scan over the same span (Linux only)."""
    accept_cost: Cost
    process_cost: Cost
    kept_bytes_per_scan: int
    """``MEMORY USAGE`` of a finished scan's hash and history, kept for SCAN_RESULT_TTL."""


def service_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark service: simulated backend at 0 ms, quiet logs."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "LABELSCAN_PREFIX": prefix,
        "ANALYZER_BACKEND": "simulated",
        "SIMULATED_DELAY_MS": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "true",
        "LABELSCAN_AUTH": "off",
        "LABELSCAN_TENANT_RPS": "0",
        **extra,
    }


def _wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _loadgen(mode: str, port: int, body: Path, rate: float, seconds: float) -> LoadResult:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            mode,
            "127.0.0.1",
            str(port),
            "/api/scans",
            str(body),
            str(rate),
            str(seconds),
        ],
        check=True,
        capture_output=True,
    )
    return msgspec.json.decode(out.stdout, type=LoadResult)


def bench_gateway(
    redis_url: str, *, rate: float, seconds: float, tag: str = "g", **extra: str
) -> list[LoadResult]:
    """POST latency at a fixed rate, then the maximum sustained accept rate."""
    port = free_port()
    env = service_env(redis_url, f"bench{os.getpid()}{tag}", GATEWAY_PORT=str(port), **extra)
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(
                msgspec.json.encode(
                    {
                        "image_base64": base64.b64encode(PNG).decode(),
                        "category": "toys",
                        "marketplaces": ["US", "DE"],
                        "product_name": "Benchmark blocks",
                    }
                )
            )
            body.flush()
            fixed = _loadgen("fixed", port, Path(body.name), rate, seconds)
            peak = _loadgen("max", port, Path(body.name), 0, seconds)
        return [fixed, peak]
    finally:
        gateway.terminate()
        gateway.wait(15)


async def _fill(settings: Settings, scans: int) -> None:
    redis = connect(settings, max_connections=16)
    store = ScanStore(redis, settings)

    async def submit() -> None:
        sid = new_scan_id()
        job = ScanJob(
            scan_id=sid,
            category="toys",
            marketplaces=["US"],
            product_name="Bench",
            submitted_at_ms=now_ms(),
        )
        await store.submit(job, PNG)

    for start in range(0, scans, 500):
        await asyncio.gather(*(submit() for _ in range(min(500, scans - start))))
    await redis.aclose()


async def _span(
    settings: Settings, scans: int, timeout: float, pid: int
) -> tuple[float, int, float | None]:
    # Throughput from the stream entry ids: first claim to last completion, in server time;
    # the analyzer's CPU per scan from its first completion seen to its last.
    redis = connect(settings)
    store = ScanStore(redis, settings)
    deadline = time.monotonic() + timeout
    first: tuple[int, float | None] | None = None
    while (completed := (await queue_stats(redis, store.keys, settings)).completed) < scans:
        if first is None and completed > 0:
            first = completed, group_cpu_s(pid)
        if time.monotonic() > deadline:
            raise RuntimeError("analyzer did not finish in time")
        await asyncio.sleep(0.02)
    cpu_end = group_cpu_s(pid)
    cpu_per_scan = None
    if first is not None and first[1] is not None and cpu_end is not None and scans > first[0]:
        cpu_per_scan = round((cpu_end - first[1]) * 1e6 / (scans - first[0]), 1)
    first_claim: int | None = None
    total = 0
    last = 0
    for part in store.keys.partitions:
        cursor = "-"
        while True:
            batch: Any = await redis.xrange(part.events, min=cursor, count=10_000)
            if not batch:
                break
            for entry_id, fields in batch:
                total += 1
                ms = int(entry_id.split(b"-")[0])
                if b'"type":"progress"' in fields[b"event"]:
                    first_claim = ms if first_claim is None else min(first_claim, ms)
                last = max(last, ms)
            cursor = "(" + batch[-1][0].decode()
    await redis.aclose()
    assert first_claim is not None
    return max(last - first_claim, 1) / 1000, total, cpu_per_scan


async def _kept_bytes(settings: Settings, sample: int = 200) -> int:
    """What one finished scan keeps in Redis (its hash and its history), averaged."""
    redis = connect(settings)
    keys = Keys(settings.prefix, settings.partitions)
    total = count = 0
    try:
        for part in keys.partitions:
            entries: Any = await redis.xrevrange(part.events, count=sample * 5)
            ids = {fields[b"scan_id"].decode() for _, fields in entries}
            for scan_id in list(ids)[: sample // len(keys.partitions) + 1]:
                usage = [
                    await redis.memory_usage(part.scan(scan_id)),
                    await redis.memory_usage(part.scan_events(scan_id)),
                ]
                total += sum(u or 0 for u in usage)
                count += 1
    finally:
        await redis.aclose()
    return total // max(count, 1)


def bench_pipeline(
    redis_url: str,
    *,
    scans: int,
    concurrency: int,
    tag: str = "p",
    nodes: Sequence[str] = (),
    **env: str,
) -> PipelineResult:
    """End-to-end scans/s through one analyzer process, every progress event published.

    ``nodes``: every primary's URL when ``redis_url`` names one node of a cluster, so
    the server's cost is summed over all of them.
    """
    prefix = f"bench{os.getpid()}{tag}"
    settings = Settings.from_env(service_env(redis_url, prefix, **env))
    servers = tuple(nodes) or (redis_url,)
    start = snapshot(*servers)
    asyncio.run(_fill(settings, scans))
    filled = snapshot(*servers)
    analyzer = subprocess.Popen(
        [sys.executable, "-m", "analyzer"],
        env=service_env(
            redis_url,
            prefix,
            SCAN_WORKER_CONCURRENCY=str(concurrency),
            EVENTS_MAXLEN=str(scans * 10),
            ANALYZER_HEALTH_PORT="0",
            **env,
        ),
        start_new_session=True,  # its own process group, whose CPU time is read
        preexec_fn=die_with_parent,
    )
    try:
        seconds, events, cpu_per_scan = asyncio.run(
            _span(settings, scans, timeout=300, pid=analyzer.pid)
        )
        done = snapshot(*servers)
        kept = asyncio.run(_kept_bytes(settings))
    finally:
        analyzer.terminate()
        analyzer.wait(30)
    return PipelineResult(
        scans=scans,
        concurrency=concurrency,
        seconds=round(seconds, 3),
        scans_per_s=round(scans / seconds, 1),
        events_published=events,
        cpu_us_per_scan=cpu_per_scan,
        accept_cost=cost(start, filled, scans),
        process_cost=cost(filled, done, scans),
        kept_bytes_per_scan=kept,
    )


def main() -> None:
    """Run everything, print a table, write bench/results/core.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--scans", type=int, default=20_000)
    # The peers' concurrency, so the ratio compares like with like.
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--peer-jobs", type=int, default=5_000)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        valkey = EmbeddedValkey(Path(tmp), log_file=Path(tmp) / "valkey.log")
        valkey.start()
        try:
            fixed, peak = bench_gateway(valkey.url, rate=args.rate, seconds=args.seconds)
            pipeline = bench_pipeline(valkey.url, scans=args.scans, concurrency=args.concurrency)
            peers = []
            if not args.no_peers:
                from bench.peers import measure_peers

                peers = measure_peers(valkey.url, jobs=args.peer_jobs)
        finally:
            valkey.stop()
    print(f"\nlabelscan core benchmark ({platform.machine()}, {os.cpu_count()} cores)")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'POST p50 at ' + str(int(args.rate)) + ' req/s (ms)':<44}{fixed.p50_ms:>12.2f}")
    print(f"{'POST p99 at ' + str(int(args.rate)) + ' req/s (ms)':<44}{fixed.p99_ms:>12.2f}")
    print(f"{'POST errors at fixed rate':<44}{fixed.errors:>12}")
    print(f"{'max accepted POST/s (1 gateway process)':<44}{peak.rate:>12.0f}")
    print(f"{'  p99 at max rate (ms)':<44}{peak.p99_ms:>12.2f}")
    print(f"{'scans/s, 1 analyzer, all events published':<44}{pipeline.scans_per_s:>12.0f}")
    print(f"{'  events published':<44}{pipeline.events_published:>12}")
    if pipeline.cpu_us_per_scan is not None:
        print(f"{'  analyzer CPU per scan (us)':<44}{pipeline.cpu_us_per_scan:>12.1f}")
    for what, c in (("accept", pipeline.accept_cost), ("process", pipeline.process_cost)):
        print(f"{'  Valkey CPU per scan, ' + what + ' (us)':<44}{c.cpu_us_per_unit:>12.1f}")
        print(f"{'  Valkey commands per scan, ' + what:<44}{c.commands_per_unit:>12.2f}")
        print(f"{'  script calls per scan, ' + what:<44}{c.script_calls_per_unit:>12.2f}")
    print(f"{'  bytes kept per finished scan':<44}{pipeline.kept_bytes_per_scan:>12}")
    for peer in peers:
        if peer.error:
            print(f"{'peer ' + peer.name:<44}{'error':>12}  {peer.error}")
            continue
        ratio = pipeline.scans_per_s / peer.jobs_per_s if peer.jobs_per_s else 0
        label = f"peer {peer.name} {peer.version} no-op jobs/s"
        print(f"{label:<44}{peer.jobs_per_s:>12.0f}  labelscan x{ratio:.2f}")
        if peer.cpu_us_per_job is not None and pipeline.cpu_us_per_scan:
            per_cpu = peer.cpu_us_per_job / pipeline.cpu_us_per_scan
            print(f"{'  worker CPU per job (us)':<44}{peer.cpu_us_per_job:>12.1f}  x{per_cpu:.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "core.json"
    out.write_bytes(
        msgspec.json.format(
            msgspec.json.encode(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "cpus": os.cpu_count(),
                    "post_fixed_rate": fixed,
                    "post_max_rate": peak,
                    "pipeline": pipeline,
                    "peers": peers,
                }
            )
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
