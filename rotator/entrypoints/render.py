"""Rendering for the CLI: rich tables for people, JSON for programs. No logic."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from rotator.entrypoints.fit import Fitted, Group, one_line
from rotator.errors import CorruptRecord
from rotator.kinds import facts_of
from rotator.model import Action, Outcome, Plan, Rotation, StepRecord
from rotator.progress import NO_PROGRESS, ProgressFn
from rotator.rotation.org import AccountResult, OrgResult
from rotator.rotation.protocol import next_step
from rotator.rotation.report import Report, Result, SweepResult
from rotator.rotation.steps import StepResult

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
    return (escape(f"{name} ({account})" if name else account),)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}Z" if value else ""


def print_json(console: Console, data: Any) -> None:
    """``data`` as JSON (two-space indents) on ``console``'s file, written piece by piece as
    it is encoded, with the standard library: a list or an iterator of 10,000 rows is never
    held as one string (nor as rich's renderables), and an iterator's rows are built one
    at a time."""
    write = console.file.write
    for chunk in _encode(data, 0):
        write(chunk)
    write("\n")
    console.file.flush()


def _encode(value: Any, depth: int) -> Iterator[str]:
    """JSON text of ``value``: containers at the top two levels stream their members (and
    iterators are read lazily); anything deeper is one ``json.dumps`` each (its iterators
    read whole)."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if depth < 2 and isinstance(value, dict):
        if not value:
            yield "{}"
            return
        yield "{"
        for n, (key, member) in enumerate(value.items()):
            yield f"{',' if n else ''}\n{inner}{json.dumps(str(key))}: "
            yield from _encode(member, depth + 1)
        yield f"\n{pad}}}"
    elif depth < 2 and isinstance(value, (list, tuple, Iterator)):
        empty = True
        for member in value:
            yield ("[" if empty else ",") + f"\n{inner}"
            empty = False
            yield from _encode(member, depth + 1)
        yield "[]" if empty else f"\n{pad}]"
    else:
        text = json.dumps(value, default=_plain, indent=2)
        yield text.replace("\n", "\n" + pad) if "\n" in text else text


def _plain(value: Any) -> Any:
    """What ``json.dumps`` makes of a value it does not know: an iterator deeper than the
    streamed levels (an organization report's per-account rows) is read into a list; else
    its ``str``."""
    return list(value) if isinstance(value, Iterator) else str(value)


# Rows nobody needs to read one by one: a no-op sweep of 10,000 users is 10,000 of them.
QUIET_ACTIONS = frozenset({Action.SKIP})
QUIET_RESULTS = frozenset({Result.SKIPPED, Result.NOT_DUE})


def _free(text: str) -> Text:
    """A free-text cell (a reason, the steps): plain text, so user-supplied characters
    are never markup; ``Fitted`` cuts it to one line ending in "…", or with ``--wide``
    wraps it whole."""
    return Text(text)


def _quiet_note(table: Fitted, hidden: Counter[str], what: str) -> None:
    if hidden:
        summary = ", ".join(f"{n} {reason}" for reason, n in hidden.most_common())
        table.caption = (
            f"and {sum(hidden.values())} {what} not listed ({summary}); --all lists them"
        )


def _stacked(*groups: tuple[str, ...]) -> tuple[Group, ...]:
    """A narrow layout: each tuple of columns one column, its cells stacked."""
    return tuple(Group(columns) for columns in groups)


def plan_table(
    plan: Plan,
    *,
    accounts: bool = False,
    everything: bool = False,
    wide: bool = False,
    failed: Sequence[AccountResult] = (),
) -> Fitted:
    """The plan; ``accounts``: with an account column (a sweep over many accounts), and a
    row for each account in ``failed`` (one that could not be planned)."""
    account = _ACCOUNT[accounts]
    columns = (*account, "user", "kind", "credential", "action", "reason")
    narrow = _stacked((*account, "user", "credential"), ("kind", "action"), ("reason",))
    table = Fitted("Plan", columns, free={"reason"}, layouts=(one_line(columns), narrow), wide=wide)
    hidden: Counter[str] = Counter()
    for d in plan:
        if d.action in QUIET_ACTIONS and not everything:
            hidden[str(d.action)] += 1
            continue
        style = ACTION_STYLE[d.action]
        table.add_row(
            *_account_cell(accounts, d.account),
            escape(d.user),
            str(d.kind) + (f" ({escape(d.slot)})" if d.slot else ""),
            d.credential_id or "",
            f"[{style}]{d.action}[/]",
            _free(d.reason),
        )
    for one in failed:
        table.add_row(
            escape(one.account.label),
            "",
            "",
            "",
            "[bold red]account-failed[/]",
            _free(one.reason),
        )
    _quiet_note(table, hidden, "decisions")
    return table


def _sweep_layout(title: str, accounts: bool, wide: bool) -> Fitted:
    """The sweep table: one line a decision where it fits; else the user over its kind,
    action over state over outcome, and the steps over the detail."""
    account = _ACCOUNT[accounts]
    columns = (*account, "user", "kind", "action", "state", "outcome", "steps", "detail")
    narrow = _stacked(
        (*account, "user", "kind"), ("action", "state", "outcome"), ("steps", "detail")
    )
    return Fitted(
        title,
        columns,
        free={"steps", "detail"},
        layouts=(one_line(columns), narrow),
        wide=wide,
    )


def sweep_table(
    result: SweepResult,
    *,
    accounts: bool = False,
    title: str | None = None,
    everything: bool = False,
    wide: bool = False,
) -> Fitted:
    title = title or (_dry_title(result.counts()) if result.dry_run else f"Sweep {result.run_id}")
    table = _sweep_layout(title, accounts, wide)
    hidden: Counter[str] = Counter()
    _sweep_rows(table, result, accounts, everything, hidden)
    _quiet_note(table, hidden, "decisions")
    return table


_WOULD = (Result.WOULD_ROTATE, Result.WOULD_ADVANCE, Result.WOULD_DISABLE, Result.WOULD_CLEAN)


def _dry_title(counts: dict[str, int]) -> str:
    """A dry run's title: nothing changed, and what would have (``would-rotate=2`` …)."""
    would = [f"{result}={counts[result]}" for result in _WOULD if counts[result]]
    return "Dry run (nothing changed): " + (", ".join(would) or "nothing would change")


def _sweep_rows(
    table: Fitted,
    result: SweepResult,
    accounts: bool,
    everything: bool,
    hidden: Counter[str],
) -> None:
    """One sweep's rows (its corrupt journal rows last); the quiet ones counted in
    ``hidden`` unless ``everything``."""
    for r in result.reports:
        if r.result in QUIET_RESULTS and not everything:
            hidden[str(r.result)] += 1
            continue
        table.add_row(
            *_account_cell(accounts, r.decision.account),
            escape(r.decision.user),
            str(r.decision.kind),
            f"[{ACTION_STYLE[r.decision.action]}]{r.decision.action}[/]",
            str(r.state or ""),
            f"[{RESULT_STYLE[r.result]}]{r.result}[/]",
            _free(" ".join(f"{s.step}" for s in r.steps)),
            _free(r.reason),
        )
    for bad in result.corrupt:
        _corrupt_row(table, bad, status=False, accounts=accounts)


def _corrupt_row(table: Fitted, bad: CorruptRecord, *, status: bool, accounts: bool) -> None:
    """A quarantined journal row as a table row: its account (``accounts``), user and kind
    if readable, the state ``corrupt`` and what is wrong; the other cells empty."""
    account, user, kind, _ = bad.target or ("?", "?", "?", "")
    shown = _account_cell(accounts, account)
    if not status:  # the sweep table: [account] user kind action state outcome steps detail
        cells = [escape(user), escape(kind), "", "[bold red]corrupt[/]", "", "", escape(str(bad))]
        table.add_row(*shown, *cells)
    else:  # the status table: rotation account user kind state old new next note
        table.add_row(
            escape(bad.rotation_id),
            *shown,
            escape(user),
            escape(kind),
            "[bold red]corrupt[/]",
            "",
            "",
            "",
            "",
            _free(f"{bad.field}: {bad.detail}"),
        )


def counts_line(result: SweepResult) -> str:
    counts = result.counts()
    shown = [f"{k}={v}" for k, v in counts.items() if v and k != "decisions"]
    return f"account {result.account}: {counts['decisions']} decisions; " + ", ".join(shown)


def org_sweep_table(result: OrgResult, *, everything: bool = False, wide: bool = False) -> Fitted:
    """An organization sweep: the decisions of every account (those with something to do,
    unless ``everything``), with its account; a row for each account that failed."""
    title = _dry_title(result.counts()) if result.dry_run else f"Sweep {result.run_id}"
    table = _sweep_layout(title, True, wide)
    for one in result.accounts:
        if one.account.name:
            ACCOUNT_NAMES[one.account.id] = one.account.name
    hidden: Counter[str] = Counter()
    for one in result.accounts:
        if one.sweep is None:
            table.add_row(
                escape(one.account.label),
                "",
                "",
                "",
                "",
                "[bold red]account-failed[/]",
                "",
                _free(one.reason),
            )
            continue
        _sweep_rows(table, one.sweep, True, everything, hidden)
    _quiet_note(table, hidden, "decisions")
    return table


def org_counts_lines(result: OrgResult) -> list[str]:
    """One line per account (its totals, or why it failed), then the totals over all;
    rich markup, names and AWS messages escaped."""
    lines = []
    for one in result.accounts:
        if one.sweep is None:
            failed = f"account {one.account.label}: FAILED ({one.error}) {one.reason}"
            lines.append(escape(failed))
        else:
            label = escape(one.account.label)
            lines.append(counts_line(one.sweep).replace(one.account.id, label, 1))
    for skipped in result.skipped:
        lines.append(escape(f"account {skipped.account.label}: skipped, {skipped.reason}"))
    counts = result.counts()
    shown = [f"{k}={v}" for k, v in counts.items() if v and k not in ("decisions", "accounts")]
    lines.append(
        f"{counts['accounts']} accounts, {counts['decisions']} decisions; " + ", ".join(shown)
    )
    return lines


def org_plan_table(
    planned: Sequence[AccountResult], *, everything: bool = False, wide: bool = False
) -> Fitted:
    decisions = [d for one in planned if one.plan is not None for d in one.plan]
    for one in planned:
        if one.account.name:
            ACCOUNT_NAMES[one.account.id] = one.account.name
    return plan_table(
        Plan(decisions=tuple(decisions)),
        accounts=True,
        everything=everything,
        wide=wide,
        failed=[one for one in planned if one.plan is None],
    )


def _state(rotation: Rotation) -> str:
    """A rotation's state for a table; an emergency's (a leaked credential) stands out."""
    if rotation.emergency:
        return f"{rotation.state} [bold red](emergency)[/]"
    return str(rotation.state)


_KEYS = Group(("old", "→ new"), " ")  # "AKIAOLD → AKIANEW" on one line


def status_table(
    rotations: Sequence[Rotation],
    now: datetime,
    corrupt: Sequence[CorruptRecord] = (),
    *,
    wide: bool = False,
) -> Fitted:
    """Rotations in flight: one line each where it fits; else three, the rotation over its
    user and kind, the account over the state and when the next step is due (or since when
    it is held), the old key over the new and the next step. ``note``: what is wrong with
    a corrupt row."""
    columns = (
        *("rotation", "account", "user", "kind", "state"),
        *("old", "→ new", "next step", "due", "note"),
    )
    one = (*one_line(columns[:5]), _KEYS, *one_line(columns[7:]))
    narrow = (
        *_stacked(("rotation", "user", "kind"), ("account", "state", "due")),
        Group(("old", "→ new", "next step", "note"), title="old\n→ new\nnext step"),
    )
    table = Fitted("Rotations in flight", columns, free={"note"}, layouts=(one, narrow), wide=wide)
    for r in rotations:
        due = next_step(r)
        when = ""
        if due:
            when = "now" if due.ready(now) else _when(due.at)
        if r.held_since:  # a held step is due again now: since when it is held says more
            when = f"[yellow]held {_when(r.held_since)}[/]"
        table.add_row(
            r.rotation_id,
            *_account_cell(True, r.account),
            escape(r.user),
            str(r.kind),
            _state(r),
            r.old_credential_id or "-",
            f"→ {r.new_credential_id or '-'}",
            str(due.step) if due else "",
            when,
            "",
        )
    for bad in corrupt:
        _corrupt_row(table, bad, status=True, accounts=True)
    return table


def history_table(
    items: Iterable[tuple[Rotation, list[StepRecord]]], *, wide: bool = False
) -> Fitted:
    """Past and current rotations: one line each where it fits; else three, the rotation
    over its user and kind, when it started over its account and state, the old key over
    the new and the steps."""
    columns = (
        *("started", "rotation", "account", "user", "kind", "state"),
        *("old", "→ new", "steps"),
    )
    one = (*one_line(columns[:6]), _KEYS, *one_line(columns[8:]))
    narrow = _stacked(
        ("rotation", "user", "kind"), ("started", "account", "state"), ("old", "→ new", "steps")
    )
    table = Fitted("Rotation history", columns, free={"steps"}, layouts=(one, narrow), wide=wide)
    for r, steps in items:
        table.add_row(
            _when(r.created_at),
            r.rotation_id,
            *_account_cell(True, r.account),
            escape(r.user),
            str(r.kind),
            _state(r),
            r.old_credential_id or "-",
            f"→ {r.new_credential_id or '-'}",
            _free(" ".join(f"{s.step}:{s.outcome}" for s in steps)),
        )
    return table


def report_line(report: Report) -> str:
    """One operator-facing line about one rotation (plain text, not markup)."""
    d = report.decision
    planned = _planned(report)
    steps = " ".join(f"{s.step}:{s.outcome}" for s in report.steps) or "no steps"
    if planned:
        steps = f"dry run: {len(planned)} steps below, nothing changed"
    state = f"{report.rotation_id} {report.state}" if report.rotation_id else "not started"
    return (
        f"{d.user} {d.kind} {d.credential_id}: {report.result}, {state} ({steps}) — {report.reason}"
    )


def _planned(report: Report) -> list[StepResult]:
    return [s for s in report.steps if s.outcome is Outcome.DRY_RUN]


def report_text(report: Report) -> str:
    """``report_line``, then what an operator needs next (plain text, not markup): for a
    dry run every step that would run, in order, with when and on what; for a rotation
    that made a new credential, its ID and where its secret is."""
    lines = [report_line(report)]
    planned = _planned(report)
    if planned:
        first = planned[0].rotation.updated_at
        lines.append("would run, in order:")
        for n, s in enumerate(planned, 1):
            at = s.rotation.updated_at
            when = "now" if at <= first else f"from {_when(at)}"
            lines.append(f"  {n}. {s.step} ({when}): {s.reason}")
        return "\n".join(lines)
    rotation = report.rotation
    if rotation is not None and rotation.new_credential_id and report.sink:
        noun = facts_of(rotation.kind).noun
        lines.append(f"new {noun}: {rotation.new_credential_id}, its secret in {report.sink}")
    return "\n".join(lines)


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
