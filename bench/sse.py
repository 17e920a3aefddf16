"""SSE fan-out benchmark: N connections on one notifier process, against the naive design.

``python -m bench.sse`` (``--quick`` for a small run) starts its own Valkey,
then for each N and each design a server process (``python -m notifier``, or
``bench.sse_naive``: one Redis XREAD BLOCK per connection) and a separate
load process (``bench.sse_load``) on loopback. Each connection follows one of
SCANS active scans; events are published at a fixed rate. Reported: connect
rate, publish-to-receipt latency, server RSS per idle connection, CPU, and
a SIGTERM drain with every connection still open (seconds to exit, how many
clients got the reconnect frame). Writes bench/results/sse.json
(sse-quick.json for ``--quick``).

Each case gets fresh scans, so no case replays another's history. The naive
design needs two descriptors per connection (client socket and its own Redis
connection), so under an open-file limit L it cannot hold more than ~L/2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.sse_load import Connected, Drained, Received
from bench.sse_probe import CpuWindow, publish, rss_kib
from shared.connection import connect
from shared.embedded import EmbeddedValkey, free_port, terminate
from shared.keys import Keys
from shared.settings import Settings
from shared.store import new_scan_id

RESULTS = Path(__file__).parent / "results"
DESIGNS = ("fanout", "naive")
SETTLE_S = 2.0
STEP_TIMEOUT_S = 120.0


class Case(msgspec.Struct, kw_only=True):
    """One design at one N."""

    design: str
    n: int
    connected: Connected | None = None
    rss_base_kib: int = 0
    rss_idle_kib: int = 0
    kib_per_conn: float | None = None
    cpu_connect_pct: float = 0.0
    cpu_idle_pct: float = 0.0
    cpu_publish_pct: float = 0.0
    gc_pauses_publish_ms: list[float] = []  # the notifier's GC passes >= 50 ms while publishing
    load_cpu_publish_pct: float = 0.0  # the client process: saturated, it adds its own latency
    loadavg_before: float = 0.0  # the machine's 1-minute load when the case began (noise)
    published: int = 0
    expected: int = 0
    delivered: int = 0
    closed_early: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    sigterm_exit_s: float | None = None
    drain_reconnect_frames: int | None = None
    drain_closed: int | None = None
    error: str | None = None


def _read_json(proc: subprocess.Popen[bytes], timeout: float) -> Any:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no answer from the load process in {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"load process exited with {proc.wait()}")
    return msgspec.json.decode(line)


def _start_server(
    design: str, env: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    module = "notifier" if design == "fanout" else "bench.sse_naive"
    with log.open("ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    path = "/readyz" if design == "fanout" else "/healthz"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{module} did not come up (see {log})")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> float | None:
    """SIGTERM and wait: seconds to exit, None when it had to be killed."""
    started = time.perf_counter()
    if not terminate(proc, timeout):
        return None
    return round(time.perf_counter() - started, 2)


def _tell(load: subprocess.Popen[bytes], command: bytes) -> None:
    assert load.stdin is not None
    load.stdin.write(command + b"\n")
    load.stdin.flush()


class Publishing(msgspec.Struct, frozen=True, kw_only=True):
    """What the publisher writes during a case, and where."""

    redis_url: str
    prefix: str
    rate: float
    seconds: float


def run_case(
    design: str, n: int, *, env: dict[str, str], scans: int, tmp: Path, publishing: Publishing
) -> Case:
    """Connect N clients, idle, publish, measure, SIGTERM with every client still connected."""
    case = Case(design=design, n=n, loadavg_before=round(os.getloadavg()[0], 2))
    followed = asyncio.run(_create_scans(publishing.redis_url, publishing.prefix, scans))
    scans_file = tmp / f"scans-{design}-{n}.txt"
    scans_file.write_text("\n".join(followed))
    port = free_port()
    log = tmp / f"server-{design}-{n}.log"
    server = _start_server(design, {**env, "NOTIFIER_PORT": str(port)}, port, log)
    load: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(0.5)
        case.rss_base_kib = rss_kib(server.pid)
        window = CpuWindow(server.pid)
        load = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sse_load",
                "127.0.0.1",
                str(port),
                str(scans_file),
                str(n),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        case.connected = msgspec.convert(_read_json(load, STEP_TIMEOUT_S), Connected)
        case.cpu_connect_pct = window.percent()
        _measure_idle(case, server.pid)
        before = len(_gc_pauses(log))
        _measure_delivery(case, load, server.pid, followed, publishing)
        case.gc_pauses_publish_ms = _gc_pauses(log)[before:]
        # A rolling restart at scale: every client is still connected when SIGTERM lands.
        case.sigterm_exit_s = _stop(server)
        time.sleep(0.5)  # the last frames and FINs reach the load process
        _tell(load, b"stop")
        drained = msgspec.convert(_read_json(load, STEP_TIMEOUT_S), Drained)
        case.drain_reconnect_frames, case.drain_closed = drained.reconnect_frames, drained.closed
    except (RuntimeError, TimeoutError, OSError, msgspec.ValidationError) as exc:
        case.error = f"{type(exc).__name__}: {exc}"
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        if server.poll() is None:
            case.sigterm_exit_s = _stop(server)
    if case.error:
        case.error += f" | server log: {_tail(log)}"  # the temporary directory goes away
    return case


def _measure_idle(case: Case, pid: int) -> None:
    """RSS per connection once the connect storm has settled, then CPU with nothing to send."""
    assert case.connected is not None
    time.sleep(SETTLE_S)
    case.rss_idle_kib = rss_kib(pid)
    if case.connected.open:
        case.kib_per_conn = round((case.rss_idle_kib - case.rss_base_kib) / case.connected.open, 2)
    window = CpuWindow(pid)
    time.sleep(SETTLE_S)
    case.cpu_idle_pct = window.percent()


def _measure_delivery(
    case: Case, load: subprocess.Popen[bytes], pid: int, followed: list[str], publishing: Publishing
) -> None:
    """Publish at the fixed rate; what arrived, and how late."""
    assert case.connected is not None
    window, client = CpuWindow(pid), CpuWindow(load.pid)
    counts = asyncio.run(_publish(publishing, followed))
    time.sleep(1.0)  # the last events are in flight
    case.cpu_publish_pct = window.percent()
    case.load_cpu_publish_pct = client.percent()
    followers = [0] * len(followed)
    for i in range(case.connected.open):
        followers[i % len(followed)] += 1  # the load process assigns scans round robin
    case.published = sum(counts.values())
    case.expected = sum(counts.get(s, 0) * followers[i] for i, s in enumerate(followed))
    _tell(load, b"mark")
    received = msgspec.convert(_read_json(load, STEP_TIMEOUT_S), Received)
    case.delivered, case.closed_early = received.events, received.closed_early
    _latencies(case, received.latencies_us)


def _gc_pauses(log: Path) -> list[float]:
    """The notifier's ``gc pause`` warnings so far, in milliseconds."""
    pauses = []
    for line in log.read_bytes().splitlines():
        if b'"gc pause"' in line:
            pauses.append(float(msgspec.json.decode(line).get("ms", 0.0)))
    return pauses


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "-"


async def _publish(publishing: Publishing, scans: list[str]) -> dict[str, int]:
    async with connect(Settings(redis_url=publishing.redis_url)) as redis:
        return await publish(redis, publishing.prefix, scans, publishing.rate, publishing.seconds)


def _latencies(case: Case, values_us: list[int]) -> None:
    if not values_us:
        return
    ordered = sorted(values_us)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1000, 2)

    case.p50_ms, case.p99_ms, case.max_ms = pct(0.50), pct(0.99), round(ordered[-1] / 1000, 2)


async def _create_scans(redis_url: str, prefix: str, count: int) -> list[str]:
    """``count`` active scans (their hashes; the history starts empty)."""
    keys = Keys(prefix)
    scans = [new_scan_id() for _ in range(count)]
    async with connect(Settings(redis_url=redis_url)) as redis:
        pipe = redis.pipeline(transaction=False)
        for scan in scans:
            pipe.hset(
                keys.scan(scan),
                mapping={
                    "state": "active",
                    "tenant": "bench",
                    "stage": "analyzing",
                    "pct": 50,
                    "msg": "",
                },
            )
        await pipe.execute()
    return scans


def _valkey_clients(redis_url: str, limit: int) -> None:
    """Let Valkey take as many clients as the fd limit allows: the naive design's every chance."""

    async def run() -> None:
        async with connect(Settings(redis_url=redis_url)) as redis:
            await redis.config_set("maxclients", limit)

    asyncio.run(run())


def table(cases: list[Case]) -> str:
    """The printed comparison, one row per design and N, with naive/fan-out ratios."""
    head = (
        f"{'design':<7} {'N':>6} {'open':>6} {'conn/s':>7} {'KiB/conn':>8} {'RSS MiB':>8} "
        f"{'CPU idle':>8} {'CPU pub':>8} {'deliv %':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'GC ms':>6} {'stop s':>6} {'told':>6} {'client':>7} {'loadavg':>7}"
    )
    rows = [head, "-" * len(head)]
    for c in cases:
        opened = c.connected.open if c.connected else 0
        rate = c.connected.per_s if c.connected else 0
        share = f"{100 * c.delivered / c.expected:.1f}" if c.expected else "-"
        rows.append(
            f"{c.design:<7} {c.n:>6} {opened:>6} {rate:>7} {_f(c.kib_per_conn):>8} "
            f"{c.rss_idle_kib / 1024:>8.1f} {c.cpu_idle_pct:>7}% {c.cpu_publish_pct:>7}% "
            f"{share:>7} {_f(c.p50_ms):>7} {_f(c.p99_ms):>7} {_f(c.max_ms):>7} "
            f"{_f(max(c.gc_pauses_publish_ms, default=None)):>6} "
            f"{_f(c.sigterm_exit_s):>6} {_f(c.drain_reconnect_frames):>6} "
            f"{c.load_cpu_publish_pct:>6}% {c.loadavg_before:>7}"
            + (f"  ERROR {c.error}" if c.error else "")
        )
    rows.append(
        "(CPU: the server's, % of one core; deliv %: events received / events x followers; "
        "GC ms: the notifier's longest garbage-collector pause (>= 50 ms) while publishing; "
        "told: clients sent a reconnect frame by the SIGTERM drain; client: the load "
        "process's CPU while publishing; loadavg: the machine's 1-minute load before the case)"
    )
    by = {(c.design, c.n): c for c in cases}
    for n in sorted({c.n for c in cases}):
        fan, naive = by.get(("fanout", n)), by.get(("naive", n))
        if fan is None or naive is None:
            continue
        memory = _ratio(naive.kib_per_conn, fan.kib_per_conn)
        rows.append(
            f"naive/fanout at N={n}: memory per conn {memory}, "
            f"p99 {_ratio(naive.p99_ms, fan.p99_ms)}, "
            f"idle CPU {_ratio(naive.cpu_idle_pct, fan.cpu_idle_pct)}, "
            f"publish CPU {_ratio(naive.cpu_publish_pct, fan.cpu_publish_pct)}, "
            f"naive held {naive.connected.open if naive.connected else 0}/{n}"
        )
    return "\n".join(rows)


def targets(cases: list[Case]) -> list[str]:
    """The issue's targets, checked against the fan-out cases."""
    fan = [c for c in cases if c.design == "fanout" and c.connected is not None]
    if not fan:
        return []
    held = max((c.connected.open for c in fan if c.connected is not None), default=0)
    p99 = max((c.p99_ms for c in fan if c.p99_ms is not None), default=None)
    kib = max((c.kib_per_conn for c in fan if c.kib_per_conn is not None), default=None)
    return [
        f"largest N held: {held} (target 10000: {'met' if held >= 10_000 else 'NOT met'})",
        f"worst p99: {_f(p99)} ms (target < 100: "
        f"{'met' if p99 is not None and p99 < 100 else 'NOT met'})",
        f"worst idle RSS per connection: {_f(kib)} KiB (target < 20: "
        f"{'met' if kib is not None and kib < 20 else 'NOT met'})",
    ]


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a and b else "-"


def main() -> None:
    """Run every case within a bounded time; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, short publish")
    parser.add_argument("--n", type=int, nargs="*", help="connection counts")
    parser.add_argument("--rate", type=float, help="events per second")
    parser.add_argument("--seconds", type=float, help="publish duration")
    parser.add_argument("--scans", type=int, default=1000, help="active scans followed")
    parser.add_argument("--designs", nargs="*", default=list(DESIGNS), choices=DESIGNS)
    args = parser.parse_args()
    ns = args.n or ([200, 1000] if args.quick else [1000, 5000, 10000])
    rate = args.rate or (200.0 if args.quick else 1000.0)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    cases: list[Case] = []
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedValkey(Path(tmp) / "valkey", log_file=Path(tmp) / "valkey.log") as valkey,
    ):
        _valkey_clients(valkey.url, hard - 100)  # Valkey keeps a few descriptors for itself
        prefix = f"bsse{os.getpid()}"
        publishing = Publishing(redis_url=valkey.url, prefix=prefix, rate=rate, seconds=seconds)
        env = {
            **os.environ,
            "REDIS_URL": valkey.url,
            "LABELSCAN_PREFIX": prefix,
            "LABELSCAN_AUTH": "off",
            "LOG_LEVEL": "WARNING",
            "LOG_JSON": "true",
        }
        for n in ns:
            for design in args.designs:
                print(f"... {design} N={n}", flush=True)
                cases.append(
                    run_case(
                        design, n, env=env, scans=args.scans, tmp=Path(tmp), publishing=publishing
                    )
                )
    print(
        f"\nSSE fan-out: {args.scans} active scans per case, {rate:g} events/s for "
        f"{seconds:g}s, {os.cpu_count()} CPUs, open-file limit {hard}, "
        f"{time.perf_counter() - started:.0f}s in all\n"
    )
    print(table(cases))
    if max(ns) >= 10_000 and rate >= 1_000:
        checks = targets(cases)
    else:
        checks = ["(the targets are for N = 10,000 at 1,000 events/s: not checked in this run)"]
    print("\n" + "\n".join(checks))
    RESULTS.mkdir(exist_ok=True)
    out = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "scans": args.scans,
        "rate": rate,
        "seconds": seconds,
        "open_file_limit": hard,
        "targets": checks,
        "cases": cases,
    }
    path = RESULTS / ("sse-quick.json" if args.quick else "sse.json")  # quick never clobbers
    path.write_bytes(msgspec.json.format(msgspec.json.encode(out)))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
