"""``labelscan``: scan labels, follow them, read the queue, from a shell.

Exit codes: 0 compliant (or the command did what was asked), 1 not compliant
(``non_compliant`` or ``needs_review``), 2 an error (a refused request, a failed
or cancelled scan, an unreachable service).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
from rich.console import Console

from labelscan import render, report
from labelscan.client import AsyncClient
from labelscan.errors import ApiError, ConnectionLost, LabelscanError
from shared.schemas import (
    CATEGORIES,
    MARKETPLACES,
    PRIORITIES,
    BatchAccepted,
    BatchStatus,
    ScanDetail,
)
from shared.settings import Secret

COMPLIANT, NOT_COMPLIANT, ERROR = 0, 1, 2
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
DEFAULT_URL = "http://127.0.0.1:8000"  # where `make run` puts the gateway
BATCH_POLL_S = 1.0  # without events from the batch's stream, its status is read this often
BATCH_COALESCE_S = 0.1
DETAIL_READS = 8  # a batch's scans are read this many at a time for its report


class CliConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the gateway is and the key to use: flags first, then the environment."""

    url: str = DEFAULT_URL
    api_key: Secret | None = None
    """Prints as ``**********``: a config shown in an error or a log never leaks it."""

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None, env: Mapping[str, str]) -> CliConfig:
        """The config from ``--url``/``--api-key``, else ``LABELSCAN_URL``/``LABELSCAN_API_KEY``."""
        key = api_key or env.get("LABELSCAN_API_KEY")
        return cls(
            url=url or env.get("LABELSCAN_URL") or DEFAULT_URL,
            api_key=Secret(key) if key else None,
        )


def _exit_code(detail: ScanDetail) -> int:
    if detail.state != "completed" or detail.result is None:
        return ERROR
    return COMPLIANT if detail.result.analysis.verdict == "compliant" else NOT_COMPLIANT


def _print_json(data: object) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(data)).decode() + "\n")


async def _follow(client: AsyncClient, out: Console, scan_id: str, events_url: str) -> None:
    """Show the scan's progress from its event stream until it ends."""
    with render.scan_bar(out, scan_id) as bar:
        try:
            async for event in client.events(scan_id, events_url=events_url):
                progress = event.progress
                bar.update(progress.stage, progress.percentage, progress.message)
        except ConnectionLost as exc:
            out.print(f"event stream lost ({exc}); waiting on the API", markup=False)


async def cmd_scan(client: AsyncClient, args: argparse.Namespace, out: Console) -> int:
    """Upload one label; with ``--watch``, follow it and print its findings."""
    accepted = await client.scan(
        args.image,
        category=args.category,
        marketplaces=args.marketplace,
        product_name=args.product_name,
        priority=args.priority,
    )
    if not args.watch:
        if args.json:
            _print_json(accepted)
        else:
            out.print(f"scan {accepted.scan_id} {accepted.status}", markup=False)
            out.print(f"status: {accepted.status_url}", markup=False)
        return COMPLIANT
    loop = asyncio.get_running_loop()
    deadline = None if args.timeout is None else loop.time() + args.timeout
    if not args.json:
        with contextlib.suppress(TimeoutError):  # then wait() below says how it stands
            async with asyncio.timeout_at(deadline):
                await _follow(client, out, accepted.scan_id, accepted.events_url)
    left = None if deadline is None else max(0.0, deadline - loop.time())
    detail = await client.wait(accepted.scan_id, timeout=left)
    if args.json:
        _print_json(detail)
    else:
        render.scan_detail(out, detail)
    return _exit_code(detail)


def expand(paths: Sequence[str]) -> list[Path]:
    """The label files named: files as given, and the images directly inside directories."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found


async def _wake_on_events(client: AsyncClient, url: str, wake: asyncio.Event, err: Console) -> None:
    """Set ``wake`` on every event of the batch's stream: its status is read again then."""
    try:
        async for _ in client.batch_events(url):
            wake.set()
    except LabelscanError as exc:
        err.print(f"batch events unavailable ({exc}); polling instead", markup=False)


async def _batch_until_done(
    client: AsyncClient, out: Console, accepted: BatchAccepted, within: float | None
) -> BatchStatus:
    loop = asyncio.get_running_loop()
    # Past the deadline the batch is reported as it stands (running), not abandoned silently.
    deadline = None if within is None else loop.time() + within
    wake = asyncio.Event()
    events = None
    if accepted.events_url:
        err = render.console(stderr=True) if not out.quiet else out
        events = asyncio.create_task(_wake_on_events(client, accepted.events_url, wake, err))
    try:
        with render.batch_bar(out, accepted.batch_id, len(accepted.scan_ids)) as bar:
            while True:
                status = await client.batch_status(accepted.batch_id)
                bar.update(status)
                if status.state != "running":
                    return status
                if deadline is not None and loop.time() >= deadline:
                    return status
                # An event, or a poll's worth of time, whichever comes first; events that
                # arrive together are read as one status.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BATCH_POLL_S):
                        await wake.wait()
                await asyncio.sleep(BATCH_COALESCE_S)
                wake.clear()
    finally:
        if events is not None:
            events.cancel()
            await asyncio.wait([events])  # its cancellation ends here; ours would not


async def _rows(
    client: AsyncClient, files: Sequence[Path], scan_ids: Sequence[str]
) -> list[render.Row]:
    gate = asyncio.Semaphore(DETAIL_READS)

    async def one(file: Path, scan_id: str) -> render.Row:
        async with gate:
            try:
                return report.row(file.name, scan_id, await client.get(scan_id))
            except LabelscanError as exc:
                return report.row(file.name, scan_id, None, str(exc))

    return list(await asyncio.gather(*(one(f, s) for f, s in zip(files, scan_ids, strict=True))))


async def cmd_batch(client: AsyncClient, args: argparse.Namespace, out: Console) -> int:
    """Submit every label as one batch, follow it, summarise it, write the report."""
    files = expand(args.images)
    if not files:
        out.print("labelscan batch: no label files in those directories", markup=False)
        return ERROR
    accepted = await client.batch(
        files,
        category=args.category,
        marketplaces=args.marketplace,
        priority=args.priority,
    )
    quiet = Console(quiet=True)
    status = await _batch_until_done(client, quiet if args.json else out, accepted, args.timeout)
    rows = await _rows(client, files, accepted.scan_ids)
    if args.report is not None:
        report.write(Path(args.report), status, rows)
    if args.json:
        sys.stdout.write(report.as_json(status, rows).decode() + "\n")
    else:
        render.batch_summary(out, status, rows)
        if args.report is not None:
            out.print(f"report: {args.report}", markup=False)
    if status.state == "running" or any(r.state != "completed" for r in rows):
        return ERROR
    return COMPLIANT if all(r.verdict == "compliant" for r in rows) else NOT_COMPLIANT


async def cmd_status(client: AsyncClient, args: argparse.Namespace, out: Console) -> int:
    """Print one scan's state and, once finished, its findings."""
    detail = await client.get(args.scan_id)
    if args.json:
        _print_json(detail)
    else:
        render.scan_detail(out, detail)
    return COMPLIANT


async def cmd_stats(client: AsyncClient, args: argparse.Namespace, out: Console) -> int:
    """Print the queue's counts."""
    stats = await client.stats()
    if args.json:
        _print_json(stats)
    else:
        render.queue_stats(out, stats)
    return COMPLIANT


async def cmd_dead(client: AsyncClient, args: argparse.Namespace, out: Console) -> int:
    """List dead letters, or replay one."""
    if args.action == "retry":
        accepted = await client.retry(args.scan_id)
        if args.json:
            _print_json(accepted)
        else:
            out.print(f"scan {accepted.scan_id} {accepted.status}", markup=False)
        return COMPLIANT
    letters = await client.dead_letters(args.count, args.before)
    if args.json:
        _print_json(letters)
    else:
        render.dead_letters(out, letters)
    return COMPLIANT


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="labelscan", description="Check product labels.")
    top.add_argument("--url", help="gateway URL (default: $LABELSCAN_URL or 127.0.0.1:8000)")
    top.add_argument("--api-key", help="API key (default: $LABELSCAN_API_KEY)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    commands = top.add_subparsers(dest="command", required=True)

    def submission(p: argparse.ArgumentParser) -> None:
        p.add_argument("--category", required=True, choices=CATEGORIES)
        p.add_argument(
            "--marketplace",
            required=True,
            action="append",
            choices=MARKETPLACES,
            help="repeat for several",
        )
        p.add_argument("--priority", default="normal", choices=PRIORITIES)
        p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")

    scan = commands.add_parser("scan", parents=[common], help="scan one label")
    scan.add_argument("image", help="a label file, or an http(s) URL")
    submission(scan)
    scan.add_argument("--product-name", help="default: the file's name")
    scan.add_argument("--watch", action="store_true", help="follow it and print its findings")
    scan.set_defaults(run=cmd_scan)

    batch = commands.add_parser("batch", parents=[common], help="scan many labels as one batch")
    batch.add_argument("images", nargs="+", help="label files, or directories of them")
    submission(batch)
    batch.add_argument("--report", help="write a report: .csv or .json")
    batch.set_defaults(run=cmd_batch)

    status = commands.add_parser("status", parents=[common], help="one scan's state and findings")
    status.add_argument("scan_id")
    status.set_defaults(run=cmd_status)

    stats = commands.add_parser("stats", parents=[common], help="the queue's counts")
    stats.set_defaults(run=cmd_stats)

    dead = commands.add_parser("dead", help="dead letters")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="newest first")
    listing.add_argument("--count", type=int, default=20)
    listing.add_argument("--before", help="the `older` id a previous page printed")
    retry = actions.add_parser("retry", parents=[common], help="replay a failed scan")
    retry.add_argument("scan_id")
    dead.set_defaults(run=cmd_dead)
    return top


def _report_error(exc: LabelscanError, as_json: bool, err: Console) -> None:
    if as_json and isinstance(exc, ApiError):
        _print_json(
            {
                "status": exc.status,
                "error": exc.error,
                "detail": exc.detail,
                "field": exc.field,
                "errors": exc.errors,
            }
        )
    err.print(f"labelscan: {exc}", markup=False)
    if isinstance(exc, ApiError):
        for item in exc.errors:
            err.print(f"  item {item.index}: {item.field}: {item.reason}", markup=False)


async def run(args: argparse.Namespace, config: CliConfig) -> int:
    """Run the chosen command with one client."""
    out, err = render.console(), render.console(stderr=True)
    key = config.api_key.value if config.api_key is not None else None
    async with AsyncClient(config.url, key) as client:
        try:
            code: int = await args.run(client, args, out)
        except LabelscanError as exc:
            _report_error(exc, args.json, err)
            return ERROR
        except OSError as exc:  # an unreadable label file or report path
            err.print(f"labelscan: {exc}", markup=False)
            return ERROR
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, configure from flags and environment, run."""
    args = parser().parse_args(argv)
    config = CliConfig.resolve(args.url, args.api_key, os.environ)
    try:
        return asyncio.run(run(args, config))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
