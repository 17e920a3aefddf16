"""``make bench``: every benchmark in turn; each prints its table and writes bench/results/."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.core",
    "bench.hotpath",
    "bench.cluster",
    "bench.limiter",
    "bench.batch",
    "bench.sse",
    "bench.eval_local",
)


def main() -> None:
    """Run each benchmark module that exists; report which failed."""
    failed = []
    for module in BENCHMARKS:
        try:
            __import__(module)
        except ImportError as exc:
            print(f"skipping {module}: {exc}")
            continue
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], check=False).returncode:
            failed.append(module)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
