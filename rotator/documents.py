"""What commands print for programs: one JSON document per command (``--output json``)
and tab-separated rows (``--output text``). No logic, no I/O but writing.

Every JSON document is an object with ``schema_version`` and ``kind`` (``KINDS``); its
shape is the JSON Schema ``rotator/schemas/<kind>.schema.json`` shipped in the package and
described in docs/output.md. Field names mean one thing everywhere: ``credential_id`` is
the credential acted on (the old one of a rotation), ``new_credential_id`` the one made in
its place; a step is ``{step, outcome, at, credential_id, reason}``; timestamps are UTC ISO
8601 ending in ``Z`` (``model.utc_iso``). Lists stream (``render.print_json``): their rows
are built one at a time as they are written.

Text rows are the same fields, picked in a fixed order (``*_COLUMNS``), an empty field
written as ``-`` (so ``awk``'s default splitting keeps the columns), tabs and line breaks in
a value as spaces; no header, no colour.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotator import partitions
from rotator.errors import CorruptRecord
from rotator.model import Plan, Rotation, StepRecord, utc_iso
from rotator.rotation.org import AccountResult, OrgResult
from rotator.rotation.protocol import next_step
from rotator.rotation.report import Report, SweepResult, corrupt_dict
from rotator.rotation.steps import StepResult

if TYPE_CHECKING:
    from rich.console import Console

    from rotator.settings import Config

SCHEMA_VERSION = 1
# Every ``kind`` a command prints; each has rotator/schemas/<kind>.schema.json.
KINDS = (
    "validate",
    "plan",
    "sweep",
    "org-sweep",
    "status",
    "history",
    "rotation",
    "profile-rotation",
    "rollback",
    "report",  # rotator report (entrypoints/report_formats.py)
    "org-report",
)


def document(kind: str, **fields: Any) -> dict[str, Any]:
    """A JSON document: ``schema_version``, ``kind``, then ``fields``."""
    assert kind in KINDS, kind
    return {"schema_version": SCHEMA_VERSION, "kind": kind, **fields}


# -- validate ------------------------------------------------------------------------------


def validate_document(path: Path, config: Config, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """``validate``: the policy file checked, its rules and its accounts, and the warnings
    (a shadowed rule, an unknown ``ROTATOR_*`` variable) also printed on stderr."""
    accounts: dict[str, Any] | None = None
    if config.accounts is not None:
        a = config.accounts
        partition = partitions.of_session(config.aws.region, config.aws.profile)
        role = a.role_arn or (a.role_name and a.role_for("{account}", partition))
        accounts = {
            "members": [m.id for m in a.members],
            "organization_ous": list(a.organization.ous) if a.organization else None,
            "include_self": a.include_self,
            "role": role or None,
        }
    rules = []
    for rule in config.rules:
        dumped = rule.model_dump(mode="json")
        rules.append(
            {
                "name": rule.name,
                "kind": str(rule.kind),
                "enabled": rule.enabled,
                "max_age": dumped.get("max_age"),
                "deadline": dumped.get("deadline"),
                "sink": {"type": rule.sink.type, "template": rule.sink.template},
            }
        )
    return document(
        "validate",
        ok=True,
        config=str(path),
        rules=rules,
        accounts=accounts,
        warnings=list(warnings),
    )


# -- plan ----------------------------------------------------------------------------------


def _decisions(plan: Plan, account_name: str | None = None) -> Iterator[dict[str, Any]]:
    return ({**d.as_dict(), "account_name": account_name} for d in plan)


def plan_document(plan: Plan) -> dict[str, Any]:
    """``plan`` of one account: every decision (built as it is written)."""
    return document("plan", items=_decisions(plan), failed_accounts=[])


def _failed_account(one: AccountResult) -> dict[str, Any]:
    return {
        "account": one.account.id,
        "account_name": one.account.name,
        "error": one.error,
        "reason": one.reason,
    }


def org_plan_document(planned: Sequence[AccountResult]) -> dict[str, Any]:
    """``plan`` over many accounts: every decision of every account (with the account's
    name), and each account that could not be planned in ``failed_accounts``."""

    def items() -> Iterator[dict[str, Any]]:
        for one in planned:
            if one.plan is not None:
                yield from _decisions(one.plan, one.account.name)

    failed = [_failed_account(one) for one in planned if one.plan is None]
    return document("plan", items=items(), failed_accounts=failed)


# -- run / rotate --------------------------------------------------------------------------


def sweep_document(result: SweepResult) -> dict[str, Any]:
    """``run`` of one account; its results are built one at a time as they are written."""
    return document("sweep", **result.head(), results=(r.as_dict() for r in result.reports))


def org_sweep_document(result: OrgResult) -> dict[str, Any]:
    """``run`` over many accounts: per account, its sweep (or why it failed)."""
    return document("org-sweep", **result.as_dict())


def rotation_document(report: Report) -> dict[str, Any]:
    """``rotate``: what was done about the one credential (``result``)."""
    return document("rotation", ok=report.ok, result=report.as_dict())


def profile_document(report: Report, profile: str, path: Path) -> dict[str, Any]:
    """``rotate-profile``: ``rotation_document`` and the profile and file it rotated."""
    return document(
        "profile-rotation", ok=report.ok, profile=profile, file=str(path), result=report.as_dict()
    )


# -- rotations in the journal --------------------------------------------------------------


def rotation_dict(r: Rotation) -> dict[str, Any]:
    """A journalled rotation, as status, history and rollback show it."""
    return {
        "rotation_id": r.rotation_id,
        "account": r.account,
        "user": r.user,
        "kind": str(r.kind),
        "slot": r.slot or None,
        "rule": r.rule,
        "state": str(r.state),
        "emergency": r.emergency,
        "credential_id": r.old_credential_id,
        "new_credential_id": r.new_credential_id,
        "created_at": utc_iso(r.created_at),
        "finished_at": utc_iso(r.finished_at) if r.finished_at else None,
        "held_since": utc_iso(r.held_since) if r.held_since else None,
        "reason": r.reason,
    }


def status_document(
    rotations: Sequence[Rotation], now: datetime, corrupt: Sequence[CorruptRecord]
) -> dict[str, Any]:
    """``status``: the rotations in flight with their next step, and corrupt journal rows."""

    def items() -> Iterator[dict[str, Any]]:
        for r in rotations:
            due = next_step(r)
            yield {
                **rotation_dict(r),
                "next_step": str(due.step) if due else None,
                "due_at": utc_iso(due.at) if due else None,
                "due_now": bool(due and due.ready(now)),
            }

    return document("status", items=items(), corrupt=[corrupt_dict(c) for c in corrupt])


def history_document(
    rotations: Iterable[tuple[Rotation, list[StepRecord]]], corrupt: Sequence[CorruptRecord]
) -> dict[str, Any]:
    """``history``: rotations newest first, each with every step, and corrupt rows."""
    items = ({**rotation_dict(r), "steps": [s.as_dict() for s in steps]} for r, steps in rotations)
    return document("history", items=items, corrupt=[corrupt_dict(c) for c in corrupt])


def rollback_document(done: StepResult) -> dict[str, Any]:
    """``rollback``: the rotation as it is now and the rollback step."""
    return document(
        "rollback", ok=True, rotation=rotation_dict(done.rotation), step=done.record("").as_dict()
    )


# -- text ----------------------------------------------------------------------------------

PLAN_COLUMNS = ("account", "user", "kind", "slot", "credential_id", "action", "due_at", "reason")
SWEEP_COLUMNS = (
    "account",
    "user",
    "kind",
    "credential_id",
    "action",
    "state",
    "outcome",
    "new_credential_id",
    "rotation_id",
    "detail",
)
ROTATION_COLUMNS = (
    "rotation_id",
    "account",
    "user",
    "kind",
    "state",
    "credential_id",
    "new_credential_id",
)
STATUS_COLUMNS = (*ROTATION_COLUMNS, "next_step", "due_at", "reason")
HISTORY_COLUMNS = (*ROTATION_COLUMNS, "created_at", "finished_at", "reason")
ROLLBACK_COLUMNS = (*ROTATION_COLUMNS, "outcome", "reason")
VALIDATE_COLUMNS = ("name", "kind", "enabled", "max_age", "sink_type", "sink_template")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split()) if any(c in str(value) for c in "\t\r\n") else str(value)


def _pick(row: dict[str, Any], columns: Sequence[str]) -> list[Any]:
    return [row.get(column) for column in columns]


def _corrupt_text(bad: CorruptRecord, columns: Sequence[str]) -> list[Any]:
    """A corrupt journal row in a text listing: its IDs, ``corrupt`` as its state and
    outcome, what is wrong as its reason/detail."""
    row = corrupt_dict(bad)
    what = f"{bad.field}: {bad.detail}"
    return _pick({**row, "outcome": "corrupt", "reason": what, "detail": what}, columns)


def plan_text(plan: Plan) -> Iterator[list[Any]]:
    return (_pick(d.as_dict(), PLAN_COLUMNS) for d in plan)


def org_plan_text(planned: Sequence[AccountResult]) -> Iterator[list[Any]]:
    for one in planned:
        if one.plan is None:
            row = {**_failed_account(one), "action": "account-failed"}
            yield _pick(row, PLAN_COLUMNS)
        else:
            yield from plan_text(one.plan)


def sweep_text(result: SweepResult) -> Iterator[list[Any]]:
    for r in result.reports:
        yield _pick(r.as_dict(), SWEEP_COLUMNS)
    for bad in result.corrupt:
        yield _corrupt_text(bad, SWEEP_COLUMNS)


def org_sweep_text(result: OrgResult) -> Iterator[list[Any]]:
    for one in result.accounts:
        if one.sweep is None:
            row = {"account": one.account.id, "outcome": "account-failed", "detail": one.reason}
            yield _pick(row, SWEEP_COLUMNS)
        else:
            yield from sweep_text(one.sweep)


def rotation_text(report: Report) -> Iterator[list[Any]]:
    yield _pick(report.as_dict(), SWEEP_COLUMNS)


def status_text(
    rotations: Sequence[Rotation], now: datetime, corrupt: Sequence[CorruptRecord]
) -> Iterator[list[Any]]:
    for row in status_document(rotations, now, ())["items"]:
        yield _pick(row, STATUS_COLUMNS)
    for bad in corrupt:
        yield _corrupt_text(bad, STATUS_COLUMNS)


def history_text(
    rotations: Iterable[tuple[Rotation, list[StepRecord]]], corrupt: Sequence[CorruptRecord]
) -> Iterator[list[Any]]:
    for r, _ in rotations:
        yield _pick(rotation_dict(r), HISTORY_COLUMNS)
    for bad in corrupt:
        yield _corrupt_text(bad, HISTORY_COLUMNS)


def rollback_text(done: StepResult) -> Iterator[list[Any]]:
    row = {**rotation_dict(done.rotation), "outcome": str(done.outcome), "reason": done.reason}
    yield _pick(row, ROLLBACK_COLUMNS)


def validate_text(config: Config) -> Iterator[list[Any]]:
    for rule in validate_document(Path(), config)["rules"]:
        sink = rule["sink"]
        yield _pick(
            {**rule, "sink_type": sink["type"], "sink_template": sink["template"]}, VALIDATE_COLUMNS
        )


def print_text(console: Console, rows: Iterable[Sequence[Any]]) -> None:
    """``rows`` tab-separated, one a line, on ``console``'s file (no markup, no colour)."""
    write = console.file.write
    for row in rows:
        write("\t".join(_cell(v) for v in row) + "\n")
    console.file.flush()
