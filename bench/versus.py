"""What a scan costs Valkey with this tree's code and with an older revision's, in one run.

``python -m bench.versus REV [--runs N] [--scans N] [--libc-malloc]`` checks REV out
into a temporary git worktree and runs the same measurement N times with each tree's
own code, in turn, so both see the same machine: a fresh embedded Valkey, the scans
accepted through that tree's store (``bench.core``'s filler), one ``python -m analyzer``
of that tree processing them at concurrency 100 (``simulated`` backend at 0 ms), and the
server's ``INFO`` deltas (``bench.valkeycost``) for accepting and for processing.

Each tree starts its server as that tree does: an older tree on glibc's malloc, this
one on jemalloc when it is installed. ``--libc-malloc`` adds runs of this tree on
glibc's malloc, which separates what the code saved from what the allocator saved.
Writes ``bench/results/versus.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CONCURRENCY = 100


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One run of one tree: Valkey's cost per scan accepted and per scan processed."""

    accept_cpu_us: float
    accept_commands: float
    process_cpu_us: float
    process_commands: float
    process_script_calls: float
    scans_per_s: float


class Side(msgspec.Struct, frozen=True, kw_only=True):
    """Every run of one tree and allocator, with the medians."""

    code: str
    allocator: str
    samples: list[Sample]
    median_accept_cpu_us: float
    median_process_cpu_us: float


class Versus(msgspec.Struct, frozen=True, kw_only=True):
    """The comparison: each side, and this tree's processing cost over the older one's."""

    rev: str
    scans: int
    concurrency: int
    sides: list[Side]
    process_cpu_now_over_then: float


def _measure(scans: int, preload: bool) -> Sample:
    """In a child whose cwd and PYTHONPATH are the tree under test: one run."""
    # That tree's code (first on its path); the cost accounting is this file's sibling,
    # loaded by path, since older trees lack it.
    from bench.core import _fill, _span, service_env
    from shared.embedded import EmbeddedValkey
    from shared.settings import Settings

    spec = importlib.util.spec_from_file_location("valkeycost", HERE / "valkeycost.py")
    assert spec is not None and spec.loader is not None
    valkeycost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(valkeycost)
    cost, snapshot = valkeycost.cost, valkeycost.snapshot

    options = {}
    if "preload_jemalloc" in inspect.signature(EmbeddedValkey.__init__).parameters:
        options["preload_jemalloc"] = preload
    with tempfile.TemporaryDirectory() as tmp:
        valkey = EmbeddedValkey(Path(tmp), log_file=Path(tmp) / "valkey.log", **options)
        valkey.start()
        try:
            prefix = f"versus{os.getpid()}"
            settings = Settings.from_env(service_env(valkey.url, prefix))
            start = snapshot(valkey.url)
            asyncio.run(_fill(settings, scans))
            filled = snapshot(valkey.url)
            env = service_env(
                valkey.url,
                prefix,
                SCAN_WORKER_CONCURRENCY=str(CONCURRENCY),
                EVENTS_MAXLEN=str(scans * 10),
                ANALYZER_HEALTH_PORT="0",
            )
            analyzer = subprocess.Popen(
                [sys.executable, "-m", "analyzer"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                extra = (
                    {"pid": analyzer.pid} if "pid" in inspect.signature(_span).parameters else {}
                )
                seconds = asyncio.run(_span(settings, scans, timeout=300, **extra))[0]
                done = snapshot(valkey.url)
            finally:
                analyzer.terminate()
                analyzer.wait(30)
        finally:
            valkey.stop()
    accept, process = cost(start, filled, scans), cost(filled, done, scans)
    return Sample(
        accept_cpu_us=accept.cpu_us_per_unit,
        accept_commands=accept.commands_per_unit,
        process_cpu_us=process.cpu_us_per_unit,
        process_commands=process.commands_per_unit,
        process_script_calls=process.script_calls_per_unit,
        scans_per_s=round(scans / seconds, 1),
    )


def _run(tree: Path, scans: int, preload: bool) -> Sample:
    """One run in a child process importing ``tree``'s packages."""
    command = [sys.executable, __file__, "--measure", "--scans", str(scans)]
    if not preload:
        command.append("--libc-malloc")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True)
    return msgspec.json.decode(out.stdout.splitlines()[-1], type=Sample)


def _side(code: str, allocator: str, samples: list[Sample]) -> Side:
    return Side(
        code=code,
        allocator=allocator,
        samples=samples,
        median_accept_cpu_us=statistics.median(s.accept_cpu_us for s in samples),
        median_process_cpu_us=statistics.median(s.process_cpu_us for s in samples),
    )


def compare(rev: str, *, runs: int, scans: int, libc_too: bool) -> Versus:
    """Check ``rev`` out beside this tree and measure both, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), rev],
            check=True,
            capture_output=True,
        )
        try:
            plan = [("then", old, False), ("now", ROOT, True)]
            if libc_too:
                plan.append(("now", ROOT, False))
            samples: dict[tuple[str, bool], list[Sample]] = {(c, p): [] for c, _, p in plan}
            for i in range(runs):
                for code, tree, preload in plan:
                    sample = _run(tree, scans, preload)
                    samples[code, preload].append(sample)
                    print(f"run {i + 1} {code:4} {'jemalloc' if preload else 'libc':8} {sample}")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False
            )
    sides = [_side(c, "jemalloc" if p else "libc", s) for (c, p), s in samples.items()]
    then, now = sides[0].median_process_cpu_us, sides[1].median_process_cpu_us
    return Versus(
        rev=rev,
        scans=scans,
        concurrency=CONCURRENCY,
        sides=sides,
        process_cpu_now_over_then=round(now / then, 3),
    )


def main() -> None:
    """Measure, print the medians and the ratio, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rev", nargs="?", help="the older revision (a commit, tag or branch)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--libc-malloc", action="store_true", help="also this tree on glibc")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: one run of the tree it was started in
        print(msgspec.json.encode(_measure(args.scans, not args.libc_malloc)).decode())
        return
    if not args.rev:
        parser.error("name the older revision to compare with")
    result = compare(args.rev, runs=args.runs, scans=args.scans, libc_too=args.libc_malloc)
    for side in result.sides:
        print(
            f"{side.code:4} {side.allocator:8} accept {side.median_accept_cpu_us:6.1f} µs"
            f"  process {side.median_process_cpu_us:6.1f} µs (medians)"
        )
    print(f"processing, now over then: x{result.process_cpu_now_over_then}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "versus.json").write_bytes(msgspec.json.format(msgspec.json.encode(result)))


if __name__ == "__main__":
    main()
