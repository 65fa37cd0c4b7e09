"""Rendering for the CLI: rich tables for people, JSON for programs. No logic."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from rotator.model import Action, Plan, Rotation, StepRecord
from rotator.progress import NO_PROGRESS, ProgressFn
from rotator.rotation.org import AccountResult, OrgResult
from rotator.rotation.protocol import next_step
from rotator.rotation.report import Report, Result, SweepResult

ACTION_STYLE = {
    Action.ROTATE: "bold green",
    Action.ADVANCE: "green",
    Action.WAIT: "cyan",
    Action.SKIP: "dim",
    Action.BLOCK: "bold red",
    Action.EXCLUDE: "yellow",
    Action.DISABLE: "magenta",
}
RESULT_STYLE = {
    Result.ROTATED: "bold green",
    Result.COMPLETED: "green",
    Result.ADVANCED: "green",
    Result.DISABLED: "magenta",
    Result.ROLLED_BACK: "green",
    Result.CLEANED: "magenta",
    Result.HELD: "yellow",
    Result.BLOCKED: "bold red",
    Result.FAILED: "bold red",
    Result.RETRY: "yellow",
    Result.WAITING: "yellow",
    Result.DEFERRED: "cyan",
    Result.STALE: "dim",
    Result.NOT_DUE: "cyan",
    Result.SKIPPED: "dim",
    Result.EXCLUDED: "yellow",
    Result.WOULD_ROTATE: "cyan",
    Result.WOULD_ADVANCE: "cyan",
    Result.WOULD_DISABLE: "cyan",
    Result.WOULD_CLEAN: "cyan",
}


_ACCOUNT: dict[bool, tuple[str, ...]] = {True: ("account",), False: ()}
# Account names (by ID) for the account column, where [accounts] knows them.
ACCOUNT_NAMES: dict[str, str] = {}


def _account_cell(shown: bool, account: str) -> tuple[str, ...]:
    if not shown:
        return ()
    name = ACCOUNT_NAMES.get(account)
    return (f"{name} ({account})" if name else account,)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value else ""


def print_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    """The ``plan --json`` objects: user, kind, credential_id, action, reason (and more)."""
    return [d.as_dict() for d in plan]


def plan_table(plan: Plan, *, accounts: bool = False) -> Table:
    """The plan; ``accounts``: with an account column (a sweep over many accounts)."""
    table = Table(title="Plan", title_justify="left")
    for column in (*_ACCOUNT[accounts], "user", "kind", "credential", "action", "reason"):
        table.add_column(column, overflow="fold")
    for d in plan:
        style = ACTION_STYLE[d.action]
        table.add_row(
            *_account_cell(accounts, d.account),
            d.user,
            str(d.kind) + (f" ({d.slot})" if d.slot else ""),
            d.credential_id or "",
            f"[{style}]{d.action}[/]",
            d.reason,
        )
    return table


def sweep_table(result: SweepResult, *, accounts: bool = False, title: str | None = None) -> Table:
    title = title or ("Dry run (nothing changed)" if result.dry_run else f"Sweep {result.run_id}")
    table = Table(title=title, title_justify="left")
    columns = (*_ACCOUNT[accounts], "user", "kind", "action", "state", "outcome", "steps")
    for column in (*columns, "detail"):
        table.add_column(column, overflow="fold")
    for r in result.reports:
        table.add_row(
            *_account_cell(accounts, r.decision.account),
            r.decision.user,
            str(r.decision.kind),
            f"[{ACTION_STYLE[r.decision.action]}]{r.decision.action}[/]",
            str(r.state or ""),
            f"[{RESULT_STYLE[r.result]}]{r.result}[/]",
            " ".join(f"{s.step}" for s in r.steps),
            r.reason,
        )
    return table


def counts_line(result: SweepResult) -> str:
    counts = result.counts()
    shown = [f"{k}={v}" for k, v in counts.items() if v and k != "decisions"]
    return f"account {result.account}: {counts['decisions']} decisions; " + ", ".join(shown)


def org_sweep_table(result: OrgResult) -> Table:
    """An organization sweep: every decision of every account, with its account."""
    title = "Dry run (nothing changed)" if result.dry_run else f"Sweep {result.run_id}"
    table = Table(title=title, title_justify="left")
    for column in ("account", "user", "kind", "action", "state", "outcome", "steps", "detail"):
        table.add_column(column, overflow="fold")
    for one in result.accounts:
        cell = one.account.label
        if one.sweep is None:
            table.add_row(cell, "", "", "", "", "[bold red]account-failed[/]", "", one.reason)
            continue
        for r in one.sweep.reports:
            table.add_row(
                cell,
                r.decision.user,
                str(r.decision.kind),
                f"[{ACTION_STYLE[r.decision.action]}]{r.decision.action}[/]",
                str(r.state or ""),
                f"[{RESULT_STYLE[r.result]}]{r.result}[/]",
                " ".join(f"{s.step}" for s in r.steps),
                r.reason,
            )
    return table


def org_counts_lines(result: OrgResult) -> list[str]:
    """One line per account (its totals, or why it failed), then the totals over all."""
    lines = []
    for one in result.accounts:
        if one.sweep is None:
            lines.append(f"account {one.account.label}: FAILED ({one.error}) {one.reason}")
        else:
            lines.append(counts_line(one.sweep).replace(one.account.id, one.account.label, 1))
    for skipped in result.skipped:
        lines.append(f"account {skipped.account.label}: skipped, {skipped.reason}")
    counts = result.counts()
    shown = [f"{k}={v}" for k, v in counts.items() if v and k not in ("decisions", "accounts")]
    lines.append(
        f"{counts['accounts']} accounts, {counts['decisions']} decisions; " + ", ".join(shown)
    )
    return lines


def org_plan_rows(planned: Sequence[AccountResult]) -> list[dict[str, Any]]:
    """``plan --json`` over many accounts: every decision (with its account and the
    account's name), and an ``account-failed`` row for an account that could not be read."""
    rows: list[dict[str, Any]] = []
    for one in planned:
        if one.plan is None:
            rows.append(
                {
                    "account": one.account.id,
                    "account_name": one.account.name,
                    "action": "account-failed",
                    "error": one.error,
                    "reason": one.reason,
                }
            )
            continue
        rows.extend({**d.as_dict(), "account_name": one.account.name} for d in one.plan)
    return rows


def org_plan_table(planned: Sequence[AccountResult]) -> Table:
    decisions = [d for one in planned if one.plan is not None for d in one.plan]
    for one in planned:
        if one.account.name:
            ACCOUNT_NAMES[one.account.id] = one.account.name
    table = plan_table(Plan(decisions=tuple(decisions)), accounts=True)
    for one in planned:
        if one.plan is None:
            table.add_row(one.account.label, "", "", "", "[bold red]account-failed[/]", one.reason)
    return table


def status_rows(rotations: Sequence[Rotation], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for r in rotations:
        due = next_step(r)
        rows.append(
            {
                "rotation_id": r.rotation_id,
                "account": r.account,
                "user": r.user,
                "kind": str(r.kind),
                "state": str(r.state),
                "emergency": r.emergency,
                "old_credential_id": r.old_credential_id,
                "new_credential_id": r.new_credential_id,
                "next_step": str(due.step) if due else None,
                "due_at": due.at.isoformat() if due else None,
                "due_now": bool(due and due.ready(now)),
                "held_since": r.held_since.isoformat() if r.held_since else None,
                "reason": r.reason,
            }
        )
    return rows


def _state(rotation: Rotation) -> str:
    """A rotation's state for a table; an emergency's (a leaked credential) stands out."""
    if rotation.emergency:
        return f"{rotation.state} [bold red](emergency)[/]"
    return str(rotation.state)


def status_table(rotations: Sequence[Rotation], now: datetime) -> Table:
    table = Table(title="Rotations in flight", title_justify="left")
    columns = ("rotation", "account", "user", "kind", "state", "old → new", "next step", "due")
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in rotations:
        due = next_step(r)
        when = ""
        if due:
            when = "now" if due.ready(now) else _when(due.at)
            if r.held_since:
                when += f" [yellow](held since {_when(r.held_since)})[/]"
        table.add_row(
            r.rotation_id,
            *_account_cell(True, r.account),
            r.user,
            str(r.kind),
            _state(r),
            f"{r.old_credential_id or '-'} → {r.new_credential_id or '-'}",
            str(due.step) if due else "",
            when,
        )
    return table


def history_rows(items: Iterable[tuple[Rotation, list[StepRecord]]]) -> list[dict[str, Any]]:
    return [
        {
            "rotation_id": r.rotation_id,
            "account": r.account,
            "user": r.user,
            "kind": str(r.kind),
            "rule": r.rule,
            "state": str(r.state),
            "emergency": r.emergency,
            "old_credential_id": r.old_credential_id,
            "new_credential_id": r.new_credential_id,
            "created_at": r.created_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "reason": r.reason,
            "steps": [
                {
                    "at": s.at.isoformat(),
                    "step": str(s.step),
                    "outcome": str(s.outcome),
                    "reason": s.reason,
                    "credential_id": s.credential_id,
                }
                for s in steps
            ],
        }
        for r, steps in items
    ]


def history_table(items: Iterable[tuple[Rotation, list[StepRecord]]]) -> Table:
    table = Table(title="Rotation history", title_justify="left")
    columns = ("started", "rotation", "account", "user", "kind", "state", "old → new", "steps")
    for column in columns:
        table.add_column(column, overflow="fold")
    for r, steps in items:
        table.add_row(
            _when(r.created_at),
            r.rotation_id,
            *_account_cell(True, r.account),
            r.user,
            str(r.kind),
            _state(r),
            f"{r.old_credential_id or '-'} → {r.new_credential_id or '-'}",
            " ".join(f"{s.step}:{s.outcome}" for s in steps),
        )
    return table


def report_line(report: Report) -> str:
    """One operator-facing line about one rotation."""
    d = report.decision
    steps = " ".join(f"{s.step}:{s.outcome}" for s in report.steps) or "no steps"
    state = f"{report.rotation_id} {report.state}" if report.rotation_id else "not started"
    return (
        f"{d.user} {d.kind} {d.credential_id}: {report.result}, {state} ({steps}) — {report.reason}"
    )


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressFn]:
    """A progress bar per phase of the work (``rotator.progress``) on ``console`` when it
    is a terminal; nothing otherwise (pipes, logs, ``--json`` consumers)."""
    if not console.is_terminal:
        yield NO_PROGRESS
        return
    bars = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, TaskID] = {}

    def report(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(phase, total=total)
        bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield report
