"""The shared rate limiter's cost: scans/s with and without it, and one call's latency.

``python -m bench.limiter`` (simulated backend at 0 ms, limits set high enough
that nothing waits, so only the limiter's own work is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from analyzer.ratelimit import RateLimiter
from bench.core import RESULTS, bench_pipeline, service_env
from shared.connection import connect
from shared.embedded import EmbeddedValkey
from shared.keys import Keys
from shared.luascript import ScriptRunner
from shared.settings import Settings

HIGH = {
    "ANTHROPIC_RPM": "100000000",
    "ANTHROPIC_INPUT_TPM": "1000000000000",
    "ANTHROPIC_OUTPUT_TPM": "1000000000000",
}


async def _latency(redis_url: str, calls: int) -> tuple[float, float]:
    settings = Settings.from_env(service_env(redis_url, f"lim{os.getpid()}", **HIGH))
    redis = connect(settings)
    limiter = RateLimiter(ScriptRunner(redis), Keys(settings.prefix), settings)
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        decision = await limiter.try_acquire(1600, 1500)
        samples.append(time.perf_counter() - started)
        assert decision.wait_ms == 0
    await redis.aclose()
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99)] * 1e3


def main() -> None:
    """Run both pipelines and the latency probe; print and write bench/results/limiter.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        valkey = EmbeddedValkey(Path(tmp), log_file=Path(tmp) / "valkey.log")
        valkey.start()
        try:
            plain, limited = [], []
            for i in range(args.rounds):  # interleaved, so machine noise hits both alike
                plain.append(
                    bench_pipeline(
                        valkey.url, scans=args.scans, concurrency=args.concurrency, tag=f"n{i}"
                    )
                )
                limited.append(
                    bench_pipeline(
                        valkey.url,
                        scans=args.scans,
                        concurrency=args.concurrency,
                        tag=f"l{i}",
                        **HIGH,
                    )
                )
            p50, p99 = asyncio.run(_latency(valkey.url, 2000))
        finally:
            valkey.stop()
    best_plain = max(r.scans_per_s for r in plain)
    best_limited = max(r.scans_per_s for r in limited)
    overhead_ms = (1 / best_limited - 1 / best_plain) * 1000
    print(f"\nshared rate limiter, {args.scans} simulated scans x {args.rounds} rounds")
    print(f"{'scans/s without limiter (best)':<40}{best_plain:>10.0f}")
    print(
        f"{'scans/s with limiter (best)':<40}{best_limited:>10.0f}"
        f"  ratio x{best_limited / best_plain:.2f}"
    )
    print(f"{'added time per scan (ms, throughput)':<40}{overhead_ms:>10.3f}")
    print(f"{'acquire latency p50 / p99 (ms)':<40}{p50:>10.3f} / {p99:.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "limiter.json"
    out.write_bytes(
        msgspec.json.format(
            msgspec.json.encode(
                {
                    "plain": plain,
                    "limited": limited,
                    "overhead_ms_per_scan": round(overhead_ms, 4),
                    "acquire_p50_ms": round(p50, 4),
                    "acquire_p99_ms": round(p99, 4),
                }
            )
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
