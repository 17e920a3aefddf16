"""A batch's report file: one row per scan, as CSV or JSON (chosen by the file's suffix)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import msgspec

from labelscan.render import Row
from shared.schemas import MARKETPLACES, BatchStatus, ScanDetail


def row(file: str, scan_id: str, detail: ScanDetail | None, problem: str = "") -> Row:
    """One scan's line of the report (``problem``: why its detail could not be read)."""
    if detail is None:
        return Row(file, scan_id, "unknown", "", [], problem, {})
    error = f"{detail.error.kind}: {detail.error.message}" if detail.error else problem
    if detail.result is None:
        return Row(file, scan_id, detail.state, "", [], error, {})
    analysis = detail.result.analysis
    failed = sorted(
        {f.rule for m in analysis.marketplaces for f in m.findings if f.status == "fail"}
    )
    markets: dict[str, str] = {m.marketplace: m.verdict for m in analysis.marketplaces}
    return Row(file, scan_id, detail.state, analysis.verdict, failed, error, markets)


class ReportScan(msgspec.Struct, frozen=True, kw_only=True):
    """A scan in the JSON report."""

    file: str
    scan_id: str
    state: str
    verdict: str | None
    marketplaces: dict[str, str]
    failed_rules: list[str]
    error: str | None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON report: the batch's status and every scan's outcome."""

    batch: BatchStatus
    scans: list[ReportScan]


def as_json(status: BatchStatus, rows: Sequence[Row]) -> bytes:
    """The report as JSON."""
    scans = [
        ReportScan(
            file=r.file,
            scan_id=r.scan_id,
            state=r.state,
            verdict=r.verdict or None,
            marketplaces=r.marketplaces,
            failed_rules=r.failed_rules,
            error=r.error or None,
        )
        for r in rows
    ]
    return msgspec.json.format(msgspec.json.encode(Report(batch=status, scans=scans)))


def write(path: Path, status: BatchStatus, rows: Sequence[Row]) -> None:
    """Write the report to ``path``: JSON for ``.json``, CSV otherwise."""
    if path.suffix.lower() == ".json":
        path.write_bytes(as_json(status, rows) + b"\n")
        return
    markets = [m for m in MARKETPLACES if any(m in r.marketplaces for r in rows)]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["file", "scan_id", "state", "verdict", *markets, "failed_rules", "error"])
        for r in rows:
            out.writerow(
                [
                    r.file,
                    r.scan_id,
                    r.state,
                    r.verdict,
                    *(r.marketplaces.get(m, "") for m in markets),
                    ";".join(r.failed_rules),
                    r.error,
                ]
            )
