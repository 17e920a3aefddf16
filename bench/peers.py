"""Peer job queues on the same Valkey: no-op jobs per second with ONE worker process.

``python -m bench.peers [--redis-url URL] [--jobs N]`` prints a table; without a URL it
starts its own embedded Valkey. ``bench.core`` calls :func:`measure_peers` so that its
numbers and the peers' come from the same run on the same server.

Method, the same for every peer:

* every key of a run carries a unique run id (queue/stream name, job ids, counter key),
  and only keys matching ``*<run id>*`` are deleted afterwards (never FLUSHDB: the server
  may be shared);
* the benchmark process enqueues N no-op jobs, then starts ONE worker process
  (``python -m <peer's worker CLI>`` on a small module generated into a temp dir);
* each job only INCRs a counter key through a plain ``redis.asyncio`` client (the same
  job body for every peer); the benchmark polls that key every few milliseconds;
* the clock starts when the first completion is seen (so interpreter start-up and
  imports are not counted) and stops when the counter reaches N:
  ``jobs_per_s = (N - done_at_start) / seconds``.

Tuning: 100 concurrent jobs per worker through each peer's documented knob (arq
``max_jobs``, taskiq ``--max-async-tasks`` with ``--workers 1``, saq ``concurrency``);
everything else is the peer's default, including what it persists per job: arq keeps
every result for 3600 s and polls its queue every 0.5 s (``poll_delay``: 0.05 s was no
faster with a backlog), taskiq has no result backend (results dropped) and acks once
the task ran, saq keeps each finished job for 600 s. arq's and saq's pools get
``max_connections=400``: redis-py 8 caps an asyncio pool at 100 and raises past it (a
saq worker lost jobs that way), where the redis<6 / redis<8 that arq / saq[redis]
declare had no cap.

Installing: ``pip install -e '.[bench]'`` brings taskiq, taskiq-redis and saq. arq is
not in that extra: arq 0.28 declares ``redis<6`` while taskiq-redis 1.2 declares
``redis>=8`` and labelscan runs on redis 8, so arq goes in with
``pip install --no-deps 'arq>=0.28'`` (it runs on redis 8 here). A peer that is missing
or fails is reported with ``error`` set, never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis

from shared.embedded import EmbeddedValkey, die_with_parent

CONCURRENCY = 100
ENQUEUE_BATCH = 500
POLL_S = 0.005
STOP_GRACE_S = 5.0


class PeerResult(msgspec.Struct, frozen=True, kw_only=True):
    """One peer's no-op throughput with one worker process (``error`` set if it failed)."""

    name: str
    version: str
    jobs: int
    seconds: float
    jobs_per_s: float
    cpu_us_per_job: float | None = None
    """CPU time of the worker's processes per job over the same span (Linux only): unlike
    the rate, it hardly moves when other work shares the machine."""
    error: str | None = None


# Worker modules: run in the worker process, configured by LSBENCH_* environment variables.
_COMMON = """\
import os

import redis.asyncio

URL = os.environ["LSBENCH_REDIS_URL"]
QUEUE = os.environ["LSBENCH_QUEUE"]
COUNTER = os.environ["LSBENCH_COUNTER"]
CONCURRENCY = int(os.environ["LSBENCH_CONCURRENCY"])
counter = redis.asyncio.Redis.from_url(URL, max_connections=4 * CONCURRENCY)
"""

_ARQ_WORKER = (
    _COMMON
    + """
import dataclasses

from arq.connections import RedisSettings


async def noop(ctx):
    await counter.incr(COUNTER)


class WorkerSettings:
    functions = [noop]
    # redis-py 8 caps an asyncio pool at 100 and raises past it; arq expects no cap.
    redis_settings = dataclasses.replace(
        RedisSettings.from_dsn(URL), max_connections=4 * CONCURRENCY
    )
    queue_name = QUEUE
    max_jobs = CONCURRENCY
"""
)

_TASKIQ_WORKER = (
    _COMMON
    + """
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(URL, queue_name=QUEUE)


@broker.task(task_name="noop")
async def noop() -> None:
    await counter.incr(COUNTER)
"""
)

_SAQ_WORKER = (
    _COMMON
    + """
from saq.queue.redis import RedisQueue


async def noop(ctx):
    await counter.incr(COUNTER)


settings = {
    # Uncapped pool as with the redis<8 that saq[redis] declares (see module docstring).
    "queue": RedisQueue(
        redis.asyncio.Redis.from_url(URL, max_connections=4 * CONCURRENCY), name=QUEUE
    ),
    "functions": [noop],
    "concurrency": CONCURRENCY,
}
"""
)


async def _in_batches(jobs: int, deadline: float, one: Callable[[int], Awaitable[object]]) -> None:
    for start in range(0, jobs, ENQUEUE_BATCH):
        if time.monotonic() > deadline:
            raise TimeoutError(f"enqueue not finished in time ({start}/{jobs})")
        await asyncio.gather(*(one(i) for i in range(start, min(start + ENQUEUE_BATCH, jobs))))


async def _enqueue_arq(url: str, queue: str, jobs: int, deadline: float) -> None:
    from arq.connections import RedisSettings, create_pool

    settings = dataclasses.replace(RedisSettings.from_dsn(url), max_connections=4 * ENQUEUE_BATCH)
    pool = await create_pool(settings, default_queue_name=queue)
    try:
        await _in_batches(
            jobs, deadline, lambda i: pool.enqueue_job("noop", _job_id=f"{queue}:{i}")
        )
    finally:
        await pool.aclose()


async def _enqueue_taskiq(url: str, queue: str, jobs: int, deadline: float) -> None:
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(url, queue_name=queue)
    # Client start-up creates the consumer group at "$": it must exist before the jobs.
    await broker.startup()
    try:
        kicker: AsyncKicker[[], None] = AsyncKicker("noop", broker, {})
        await _in_batches(jobs, deadline, lambda _: kicker.kiq())
    finally:
        await broker.shutdown()


async def _enqueue_saq(url: str, queue: str, jobs: int, deadline: float) -> None:
    from saq import Queue

    q = Queue.from_url(url, name=queue)
    await q.connect()
    try:
        await _in_batches(jobs, deadline, lambda _: q.enqueue("noop"))
    finally:
        await q.disconnect()


@dataclasses.dataclass(frozen=True)
class _Peer:
    name: str
    dists: tuple[str, ...]  # distributions whose versions are reported, main one first
    module: str  # generated worker module's name
    source: str
    argv: Callable[[str], list[str]]  # worker command line after sys.executable, from module
    enqueue: Callable[[str, str, int, float], Coroutine[Any, Any, None]]

    def version(self) -> str:
        versions = [importlib.metadata.version(d) for d in self.dists]
        extra = [f"{d} {v}" for d, v in zip(self.dists[1:], versions[1:], strict=True)]
        return "/".join([versions[0], *extra])


PEERS: tuple[_Peer, ...] = (
    _Peer(
        "arq",
        ("arq",),
        "lsbench_arq_worker",
        _ARQ_WORKER,
        lambda m: ["-m", "arq", f"{m}.WorkerSettings"],
        _enqueue_arq,
    ),
    _Peer(
        "taskiq",
        ("taskiq", "taskiq-redis"),
        "lsbench_taskiq_worker",
        _TASKIQ_WORKER,
        lambda m: [
            "-m",
            "taskiq",
            "worker",
            f"{m}:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(CONCURRENCY),
            "--log-level",
            "WARNING",
        ],
        _enqueue_taskiq,
    ),
    _Peer(
        "saq",
        ("saq",),
        "lsbench_saq_worker",
        _SAQ_WORKER,
        lambda m: ["-m", "saq", f"{m}.settings"],
        _enqueue_saq,
    ),
)


def _delete_run_keys(client: redis.Redis, run_id: str, deadline: float) -> None:
    """Unlink every key whose name contains the run id (and nothing else)."""
    for key in client.scan_iter(match=f"*{run_id}*", count=1000):
        client.unlink(key)
        if time.monotonic() > deadline:
            break


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (taskiq forks its worker), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE_S)
    # Children of the group may outlive its leader: kill whatever is left of it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(STOP_GRACE_S)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def group_cpu_s(pgid: int) -> float | None:
    """User + system CPU seconds of the live processes in process group ``pgid`` (Linux)."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            found = True
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total if found else None


def _wait_done(
    client: redis.Redis, counter: str, jobs: int, proc: subprocess.Popen[bytes], deadline: float
) -> tuple[int, float, float | None]:
    """Poll the counter: (done when first seen, seconds from then until all ``jobs``, the
    worker's CPU seconds meanwhile)."""
    started: float | None = None
    done_at_start = 0
    cpu_at_start: float | None = None
    while True:
        done = int(client.get(counter) or 0)
        now = time.perf_counter()
        if started is None and done > 0:
            started, done_at_start = now, done
            cpu_at_start = group_cpu_s(proc.pid)
        if done >= jobs:
            assert started is not None
            cpu_now = group_cpu_s(proc.pid)
            cpu = None if cpu_at_start is None or cpu_now is None else cpu_now - cpu_at_start
            return done_at_start, now - started, cpu
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode} after {done}/{jobs}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done}/{jobs} jobs done in time")
        time.sleep(POLL_S)


def _measure(peer: _Peer, redis_url: str, jobs: int, budget_s: float) -> PeerResult:
    def failed(error: str, version: str = "") -> PeerResult:
        return PeerResult(
            name=peer.name, version=version, jobs=jobs, seconds=0.0, jobs_per_s=0.0, error=error
        )

    try:
        version = peer.version()
    except importlib.metadata.PackageNotFoundError as exc:
        return failed(f"not installed: {exc}")
    deadline = time.monotonic() + budget_s
    run_id = f"lsbench-{peer.name}-{uuid.uuid4().hex[:12]}"
    counter = f"{run_id}:done"
    client = redis.Redis.from_url(redis_url)
    proc: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="lsbench-") as tmp:
        log = Path(tmp) / "worker.log"
        try:
            (Path(tmp) / f"{peer.module}.py").write_text(peer.source)
            asyncio.run(peer.enqueue(redis_url, run_id, jobs, deadline))
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")])),
                "LSBENCH_REDIS_URL": redis_url,
                "LSBENCH_QUEUE": run_id,
                "LSBENCH_COUNTER": counter,
                "LSBENCH_CONCURRENCY": str(CONCURRENCY),
            }
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, *peer.argv(peer.module)],
                    cwd=tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            done_at_start, seconds, cpu_s = _wait_done(client, counter, jobs, proc, deadline)
        except Exception as exc:
            tail = _tail(log)
            return failed(f"{type(exc).__name__}: {exc}" + (f" [{tail}]" if tail else ""), version)
        finally:
            if proc is not None:
                _stop(proc)
            with contextlib.suppress(redis.RedisError):
                _delete_run_keys(client, run_id, time.monotonic() + 30)
            client.close()
    timed = jobs - done_at_start
    return PeerResult(
        name=peer.name,
        version=version,
        jobs=jobs,
        seconds=round(seconds, 3),
        jobs_per_s=round(timed / seconds, 1) if seconds > 0 else 0.0,
        cpu_us_per_job=round(cpu_s * 1e6 / timed, 1) if cpu_s is not None and timed else None,
    )


def measure_peers(redis_url: str, jobs: int = 5000, timeout_s: float = 120) -> list[PeerResult]:
    """No-op jobs/s of each peer with one worker process, measured one after another.

    ``timeout_s`` bounds the whole call (plus a few seconds to stop workers and delete
    keys): each peer gets an equal share of the time that is left when its turn comes.
    """
    return _measure_all(PEERS, redis_url, jobs, timeout_s)


def _measure_all(
    peers: Sequence[_Peer], redis_url: str, jobs: int, timeout_s: float
) -> list[PeerResult]:
    deadline = time.monotonic() + timeout_s
    results: list[PeerResult] = []
    for index, peer in enumerate(peers):
        share = max(deadline - time.monotonic(), 0.0) / (len(peers) - index)
        results.append(_measure(peer, redis_url, jobs, share))
    return results


def _print_table(results: Sequence[PeerResult]) -> None:
    print(f"{'peer':<10}{'version':<28}{'jobs':>7}{'seconds':>10}{'jobs/s':>10}")
    for r in results:
        if r.error:
            print(f"{r.name:<10}{r.version:<28}{'error':>7}  {r.error}")
        else:
            print(f"{r.name:<10}{r.version:<28}{r.jobs:>7}{r.seconds:>10.3f}{r.jobs_per_s:>10.0f}")


def main() -> None:
    """Measure every peer once and print a table."""
    parser = argparse.ArgumentParser(description="No-op jobs/s of peer Redis job queues.")
    parser.add_argument("--redis-url", help="server to use (default: start an embedded Valkey)")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=120, help="seconds for all peers")
    args = parser.parse_args()
    if args.redis_url:
        results = measure_peers(args.redis_url, jobs=args.jobs, timeout_s=args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="lsbench-valkey-") as tmp:
            valkey = EmbeddedValkey(Path(tmp), log_file=Path(tmp) / "valkey.log")
            valkey.start()
            try:
                results = measure_peers(valkey.url, jobs=args.jobs, timeout_s=args.timeout)
            finally:
                valkey.stop()
    print(f"\npeer queues, one worker process each, {os.cpu_count()} cores")
    _print_table(results)


if __name__ == "__main__":
    main()
