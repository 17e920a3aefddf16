"""Submitting a catalogue: one 500-scan batch against 500 single POSTs, same gateway.

``python -m bench.batch`` starts its own Valkey and one gateway process (no
analyzer: only the submit is measured), then, in interleaved rounds, sends the
same scans as 500 ``POST /api/scans`` (``--concurrency`` at once, as a client
with a connection pool would) and as one ``POST /api/batches``; it reports the
wall time of each until every scan is accepted, the ratio, and what each cost
Valkey (``INFO`` deltas), and writes ``bench/results/batch.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.core import PNG, RESULTS, _wait_http, service_env
from bench.valkeycost import Cost, Snapshot, cost, snapshot
from shared.embedded import EmbeddedValkey, free_port


class Round(msgspec.Struct, frozen=True, kw_only=True):
    """One round: seconds until all scans were accepted, each way."""

    singles_s: float
    batch_s: float


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """The comparison over every round, and the Valkey cost per scan of each way."""

    scans: int
    concurrency: int
    rounds: list[Round]
    singles_median_s: float
    batch_median_s: float
    ratio: float
    """Singles' time over the batch's: how many times faster the batch is."""
    singles_cost: Cost
    batch_cost: Cost
    singles_script_calls: int
    """Script calls (EVALSHA) of one round of single POSTs."""
    batch_script_calls: int
    """Script calls of one batch: one, whatever its size."""
    singles_commands: int
    batch_commands: int
    """Commands Valkey ran for one round (those inside scripts included)."""


def _scan(i: int) -> dict[str, Any]:
    return {
        "image_base64": base64.b64encode(PNG).decode(),
        "category": "toys",
        "marketplaces": ["US", "DE"],
        "product_name": f"Label {i}",
    }


async def _singles(http: httpx.AsyncClient, scans: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            response = await http.post("/api/scans", json=_scan(i))
            if response.status_code != 202:
                raise RuntimeError(f"scan refused: {response.status_code} {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(scans)))
    return time.perf_counter() - started


async def _batch(http: httpx.AsyncClient, scans: int) -> float:
    body = {"scans": [_scan(i) for i in range(scans)]}
    started = time.perf_counter()
    response = await http.post("/api/batches", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"batch refused: {response.status_code} {response.text[:500]}")
    return elapsed


async def _run(url: str, redis_url: str, args: argparse.Namespace) -> BatchResult:
    limits = httpx.Limits(max_connections=args.concurrency)
    rounds: list[Round] = []
    spent: dict[str, list[tuple[Any, Any]]] = {"singles": [], "batch": []}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await _singles(http, args.concurrency, args.concurrency)  # warm: connections, scripts
        await _batch(http, 2)
        for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
            before = snapshot(redis_url)
            singles = await _singles(http, args.scans, args.concurrency)
            middle = snapshot(redis_url)
            batch = await _batch(http, args.scans)
            after = snapshot(redis_url)
            spent["singles"].append((before, middle))
            spent["batch"].append((middle, after))
            rounds.append(Round(singles_s=round(singles, 4), batch_s=round(batch, 4)))
    singles_median = statistics.median(r.singles_s for r in rounds)
    batch_median = statistics.median(r.batch_s for r in rounds)
    first_singles, first_batch = spent["singles"][0], spent["batch"][0]
    return BatchResult(
        scans=args.scans,
        concurrency=args.concurrency,
        rounds=rounds,
        singles_median_s=singles_median,
        batch_median_s=batch_median,
        ratio=round(singles_median / batch_median, 2),
        singles_cost=cost(*first_singles, args.scans),
        batch_cost=cost(*first_batch, args.scans),
        singles_script_calls=_calls(*first_singles, scripts_only=True),
        batch_script_calls=_calls(*first_batch, scripts_only=True),
        singles_commands=_calls(*first_singles),
        batch_commands=_calls(*first_batch),
    )


def _calls(before: Snapshot, after: Snapshot, *, scripts_only: bool = False) -> int:
    names = ("evalsha", "eval") if scripts_only else tuple(after.calls)
    skip = ("info", "ping", "client|setname", "hello")
    return sum(after.calls.get(n, 0) - before.calls.get(n, 0) for n in names if n not in skip)


def main() -> None:
    """Run the rounds; print the table and write bench/results/batch.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        valkey = EmbeddedValkey(Path(tmp), log_file=Path(tmp) / "valkey.log")
        valkey.start()
        port = free_port()
        env = service_env(valkey.url, f"batch{os.getpid()}", GATEWAY_PORT=str(port))
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz")
            result = asyncio.run(_run(f"http://127.0.0.1:{port}", valkey.url, args))
        finally:
            gateway.terminate()
            gateway.wait(15)
            valkey.stop()
    print(f"\nsubmitting {result.scans} scans, {args.rounds} rounds (median)")
    print(f"{'way':<36}{'seconds':>10}{'scans/s':>10}{'script calls':>14}{'commands':>10}")
    rows = (
        (
            f"{result.scans} POST /api/scans (x{result.concurrency})",
            result.singles_median_s,
            result.singles_script_calls,
            result.singles_commands,
        ),
        (
            "1 POST /api/batches",
            result.batch_median_s,
            result.batch_script_calls,
            result.batch_commands,
        ),
    )
    for name, seconds, calls, commands in rows:
        print(f"{name:<36}{seconds:>10.3f}{result.scans / seconds:>10.0f}{calls:>14}{commands:>10}")
    print(f"batch is x{result.ratio} faster")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "batch.json"
    out.write_bytes(msgspec.json.format(msgspec.json.encode(result)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
