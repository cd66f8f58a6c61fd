"""How audit results are shown: a rich table for people, JSON lines and CSV for scripts."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from enum import StrEnum
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from setaccounts.events import CommandFinished, SetAccountsCommand
from setaccounts_audit.command_log import CommandRecord
from setaccounts_audit.verify import Report

WIDE = 240  # piped without COLUMNS: do not wrap the table at rich's default 80 columns
TABLE_MIN_WIDTH = 170  # narrower consoles get the log as short blocks instead of a table


class Format(StrEnum):
    TABLE = "table"
    JSONL = "jsonl"
    CSV = "csv"


FIELDS = (
    "requested_at",
    "requested_by",
    "target",
    "mode",
    "accounts",
    "accounts_before",
    "accounts_after",
    "propagate",
    "expected",
    "resources_updated",
    "resources_changed",
    "status",
    "diagnostics",
    "redrive_of",
    "command_id",
    "trace_id",
)


def as_row(record: CommandRecord) -> dict[str, Any]:
    """The log's columns for one command, JSON-ready."""
    return {
        "requested_at": record.requested_at.isoformat(),
        "requested_by": record.requested_by,
        "target": record.target,
        "mode": record.mode,
        "accounts": record.accounts,
        "accounts_before": record.accounts_before,
        "accounts_after": record.accounts_after,
        "propagate": record.propagate,
        "expected": record.expected,
        "resources_updated": record.resources_updated,
        "resources_changed": record.resources_changed,
        "status": record.status,
        "diagnostics": record.diagnostics,
        "redrive_of": record.redrive_of,
        "command_id": record.command_id,
        "trace_id": record.trace_id,
    }


def console(out: IO[str] | None = None) -> Console:
    made = Console(file=out, highlight=False)
    if made.is_terminal or os.environ.get("COLUMNS"):
        return made
    return Console(file=out, highlight=False, width=WIDE)


def _accounts(values: list[str] | None) -> str:
    return "?" if values is None else (", ".join(values) or "∅")


_MODE_WORD = {"set": "→", "add": "+", "remove": "-"}


def _mode(record: CommandRecord) -> str:
    """`add X: ` / `remove X: ` before an add or remove command's before → after (set shows nothing)."""
    return "" if record.mode == "set" else f"{record.mode} {_accounts(record.accounts)}: "


def _outcome(record: CommandRecord, sep: str = "\n") -> str:
    if record.status == "error":
        text = f"[red]error[/]: {escape(record.diagnostics or '')}"
    elif record.status == "cancelled":
        text = f"[yellow]cancelled[/] by {escape(record.cancel_requested_by or 'unknown')}"
    else:
        text = "[green]completed[/]" if record.status == "completed" else "[dim]pending[/]"
    return text + (f"{sep}re-drive of {record.redrive_of}" if record.redrive_of else "")


def _trace(record: CommandRecord, sep: str) -> str:
    return f"{sep}trace {record.trace_id}" if record.trace_id else ""


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def print_log(records: Sequence[CommandRecord], fmt: Format, out: IO[str], undecodable: int = 0) -> None:
    if fmt is Format.JSONL:
        for record in records:
            out.write(json.dumps(as_row(record), sort_keys=True) + "\n")
        return
    if fmt is Format.CSV:
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            row = as_row(record)
            writer.writerow({k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()})
        return
    shown = console(out)
    if shown.width >= TABLE_MIN_WIDTH:
        shown.print(_log_table(records))
    else:  # a narrow terminal: one short block per command reads better than a crushed table
        shown.print(f"set-accounts commands ({len(records)})")
        for r in records:
            shown.print(
                f"{r.requested_at:%Y-%m-%d %H:%M:%S} {r.target} {_outcome(r, ', ')} "
                f"updated={_count(r.resources_updated)} changed={_count(r.resources_changed)}"
            )
            shown.print(
                escape(
                    f"    by {r.requested_by or '-'}; {_mode(r)}{_accounts(r.accounts_before)} → "
                    f"{_accounts(r.accounts_after)}; propagate {'yes' if r.propagate else 'no'}; "
                    f"members {_count(r.expected)}; command {r.command_id}{_trace(r, '; ')}"
                )
            )
    if undecodable:
        shown.print(
            f"[yellow]{undecodable} record(s) could not be decoded[/] "
            "(the consumers dead-lettered them: they never ran)"
        )


def _log_table(records: Sequence[CommandRecord]) -> Table:
    table = Table(title=f"set-accounts commands ({len(records)})", title_justify="left")
    for name in (
        "when (UTC)",
        "by",
        "target",
        "accounts before → after",
        "prop",
        "members",
        "updated",
        "changed",
        "outcome (re-drive of)",
        "command",
    ):
        table.add_column(name, overflow="fold")
    for r in records:
        table.add_row(
            r.requested_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.requested_by or "-"),
            r.target,
            escape(f"{_mode(r)}{_accounts(r.accounts_before)} → {_accounts(r.accounts_after)}"),
            "yes" if r.propagate else "no",
            _count(r.expected),
            _count(r.resources_updated),
            _count(r.resources_changed),
            _outcome(r),
            r.command_id + _trace(r, "\n"),
        )
    return table


def print_report(report: Report, out: IO[str]) -> None:
    shown = console(out)
    shown.print(
        f"checked {report.resources} resources: {report.targets_checked} targets, "
        f"{report.members_checked} members of propagated targets"
    )
    for ref in report.deleted_targets:
        shown.print(f"[dim]skipped {escape(ref)}: deleted after its commands[/]")
    if report.clean:
        shown.print("[green]no drift[/]: the store matches the command log")
        return
    table = Table(title=f"drift ({report.drift_count})", title_justify="left")
    for name, min_width in (
        ("kind", 15),
        ("resource", 16),
        ("expected", 16),
        ("found", 16),
        ("command", 12),
        ("note", 16),
    ):
        table.add_column(name, min_width=min_width, overflow="fold")
    for d in report.drifts:
        table.add_row(
            d.kind,
            d.ref,
            escape(_accounts(d.expected)),
            escape(_accounts(d.found)),
            d.command_id or "",
            escape(d.note),
        )
    shown.print(table)
    if report.drift_count > len(report.drifts):
        shown.print(f"... and {report.drift_count - len(report.drifts)} more (raise --limit to list them)")


def print_redrive(command: SetAccountsCommand, finished: CommandFinished, out: IO[str]) -> None:
    shown = console(out)
    propagate = "yes" if command.propagate else "no"
    shown.print(
        escape(
            f"re-drive {command.command_id} of {command.redrive_of}: {command.target} "
            f"{_MODE_WORD[command.mode]} {_accounts(list(command.accounts))} (propagate: {propagate})"
        )
    )
    shown.print(
        f"finished: {finished.status}, resourcesUpdated={finished.resources_updated}, "
        f"resourcesChanged={finished.resources_changed}"
    )
    if finished.outcome:
        shown.print(escape(json.dumps(finished.outcome, sort_keys=True)))
