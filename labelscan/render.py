"""What the ``labelscan`` command prints: progress, findings and summaries.

On a terminal, rich draws live progress bars and tables; without one (a pipe, a
file, CI) the same information goes out as plain lines with no escape codes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from shared.schemas import (
    BatchCounts,
    BatchStatus,
    DeadLetters,
    Finding,
    MarketplaceReport,
    QueueStats,
    ScanDetail,
)

# Failures first: what the seller must fix before what merely needs a look.
_STATUS_ORDER = {"fail": 0, "unclear": 1, "pass": 2}
_SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2, "info": 3}
_VERDICT_ORDER = {"non_compliant": 0, "needs_review": 1, "compliant": 2}
_STYLE = {"fail": "bold red", "unclear": "yellow", "pass": "green"}
_VERDICT_STYLE = {"non_compliant": "bold red", "needs_review": "yellow", "compliant": "green"}


def console(*, stderr: bool = False) -> Console:
    """A console; off a terminal it writes plain text, wide enough not to wrap most rows."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, no_color=True, width=160, soft_wrap=False)


def ordered_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Failures first, then unclear, then passes; the most severe first within each."""
    return sorted(
        findings,
        key=lambda f: (_STATUS_ORDER.get(f.status, 3), _SEVERITY_ORDER.get(f.severity, 4)),
    )


def ordered_reports(reports: Sequence[MarketplaceReport]) -> list[MarketplaceReport]:
    """Non-compliant marketplaces first."""
    return sorted(reports, key=lambda r: _VERDICT_ORDER.get(r.verdict, 3))


def _verdict(text: str, terminal: bool) -> str:
    style = _VERDICT_STYLE.get(text)
    return f"[{style}]{text}[/]" if terminal and style else text


def scan_detail(out: Console, detail: ScanDetail) -> None:
    """A scan's state, then its findings per marketplace (fail first), or its error."""
    head = f"Scan {detail.scan_id} · {detail.product_name} · {detail.category} · {detail.state}"
    out.print(head, markup=False)
    if detail.error is not None:
        out.print(f"error: {detail.error.kind}: {detail.error.message}", markup=False)
    if detail.result is None:
        out.print(
            f"progress: {detail.progress.percentage}% {detail.progress.stage}: "
            f"{detail.progress.message}",
            markup=False,
        )
        return
    analysis = detail.result.analysis
    out.print(f"verdict: {_verdict(analysis.verdict, out.is_terminal)}")
    out.print(analysis.summary, markup=False)
    for report in ordered_reports(analysis.marketplaces):
        table = Table(
            title=f"{report.marketplace}: {report.verdict}",
            title_justify="left",
            show_lines=False,
        )
        for column in ("status", "severity", "rule", "requirement", "fix"):
            table.add_column(column, overflow="fold")
        for f in ordered_findings(report.findings):
            status = f"[{_STYLE[f.status]}]{f.status}[/]" if out.is_terminal else f.status
            table.add_row(
                status, f.severity, escape(f.rule), escape(f.requirement), escape(f.fix or "-")
            )
        out.print(table)


@dataclass
class ScanBar:
    """One scan's progress: a rich bar on a terminal, a line per change elsewhere."""

    out: Console
    progress: Progress | None = None
    task: TaskID | None = None
    last: tuple[str, int, str] | None = None

    def update(self, stage: str, percentage: int, message: str) -> None:
        """Show the scan's stage, percentage and message."""
        now = (stage, percentage, message)
        if now == self.last:
            return
        self.last = now
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task, completed=percentage, description=stage, message=message
            )
        else:
            self.out.print(f"{percentage:>3}% {stage}: {message}", markup=False)


def _bar(out: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}", markup=False),
        console=out,
    )


@contextlib.contextmanager
def scan_bar(out: Console, scan_id: str) -> Iterator[ScanBar]:
    """A live bar for one scan while the block runs."""
    if not out.is_terminal:
        out.print(f"scan {scan_id}", markup=False)
        yield ScanBar(out)
        return
    with _bar(out) as progress:
        task = progress.add_task("queued", total=100, message="")
        yield ScanBar(out, progress, task)


def finished(counts: BatchCounts) -> int:
    """A batch's scans that have ended, whatever their outcome."""
    return counts.completed + counts.failed + counts.cancelled


@dataclass
class BatchBar:
    """A batch's overall progress: scans finished out of the total."""

    out: Console
    progress: Progress | None = None
    task: TaskID | None = None
    last: tuple[int, int] | None = None

    def update(self, status: BatchStatus) -> None:
        """Show how many scans are done, and how many of them failed."""
        failed = status.counts.failed + status.counts.cancelled
        done = finished(status.counts)
        now = (done, failed)
        if now == self.last:
            return
        self.last = now
        message = f"{done}/{status.total} done" + (f", {failed} failed" if failed else "")
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=status.total, message=message)
        else:
            self.out.print(f"{status.progress:>3}% {message}", markup=False)


@contextlib.contextmanager
def batch_bar(out: Console, batch_id: str, total: int) -> Iterator[BatchBar]:
    """A live bar for a batch while the block runs."""
    if not out.is_terminal:
        out.print(f"batch {batch_id}: {total} scans", markup=False)
        yield BatchBar(out)
        return
    with _bar(out) as progress:
        task = progress.add_task("batch", total=total, message=f"0/{total} done")
        yield BatchBar(out, progress, task)


@dataclass(frozen=True, slots=True)
class Row:
    """One scan of a batch report."""

    file: str
    scan_id: str
    state: str
    verdict: str
    failed_rules: list[str]
    error: str
    marketplaces: dict[str, str]


def batch_summary(out: Console, status: BatchStatus, rows: Sequence[Row]) -> None:
    """A table of every scan (not compliant first), then the batch's aggregate."""
    out.print(f"Batch {status.batch_id} · {status.state} · {status.total} scans", markup=False)
    table = Table(title="Scans", title_justify="left")
    for column in ("file", "scan", "state", "verdict", "failed rules"):
        table.add_column(column, overflow="fold")
    for row in sorted(rows, key=lambda r: (_VERDICT_ORDER.get(r.verdict, -1), r.file)):
        table.add_row(
            escape(row.file),
            row.scan_id,
            row.state,
            _verdict(row.verdict, out.is_terminal) if row.verdict else escape(row.error or "-"),
            escape(", ".join(row.failed_rules) or "-"),
        )
    out.print(table)
    by_state = msgspec.structs.asdict(status.counts)
    counts = ", ".join(f"{state} {n}" for state, n in sorted(by_state.items()) if n)
    out.print(f"counts: {counts or 'none'}", markup=False)
    if status.aggregate is None:
        return
    if status.aggregate.verdicts:
        verdicts = Table(title="Verdicts per marketplace", title_justify="left")
        for column in ("marketplace", "compliant", "needs_review", "non_compliant"):
            verdicts.add_column(column)
        for market, by_verdict in sorted(status.aggregate.verdicts.items()):
            verdicts.add_row(
                market,
                *(
                    str(by_verdict.get(v, 0))
                    for v in ("compliant", "needs_review", "non_compliant")
                ),
            )
        out.print(verdicts)
    if status.aggregate.top_failing_rules:
        rules = Table(title="Most frequent failures", title_justify="left")
        rules.add_column("rule")
        rules.add_column("scans")
        for rule in status.aggregate.top_failing_rules:
            rules.add_row(escape(rule.rule), str(rule.count))
        out.print(rules)


def queue_stats(out: Console, stats: QueueStats) -> None:
    """The queue's counts as one table."""
    table = Table(title="Queue", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name in ("waiting", "active", "delayed", "completed", "failed", "cancelled", "consumers"):
        table.add_row(name, str(getattr(stats, name)))
    for priority, n in stats.waiting_by_priority.items():
        table.add_row(f"waiting {priority}", str(n))
    out.print(table)


def dead_letters(out: Console, letters: DeadLetters) -> None:
    """A page of dead letters, newest first, and how to get the next."""
    table = Table(title="Dead letters", title_justify="left")
    for column in ("scan", "failed at", "attempts", "product", "error"):
        table.add_column(column, overflow="fold")
    for letter in letters.items:
        table.add_row(
            letter.scan_id,
            letter.failed_at,
            str(letter.attempts),
            escape(letter.product_name or "-"),
            escape(f"{letter.error.kind}: {letter.error.message}"),
        )
    out.print(table)
    if letters.next:
        out.print(f"older: --before {letters.next}", markup=False)
