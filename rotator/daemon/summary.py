"""What a sweep's notification says: pure functions of its ``SweepResult``.

One message per sweep (not per key) with what was rotated, retired, disabled, held,
blocked, failed or left for a retry; and one per *owner* (the value of a user tag such as
``owner-email``) about the users whose credentials changed or were held. Credential IDs
appear (they are not secrets); secret values never do: nothing here sees one, and every
reason is scrubbed of registered secrets all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rotator import redaction
from rotator.model import Outcome, Step
from rotator.rotation.report import Report, Result, SweepResult

# Category -> heading, in the order a message lists them.
HEADINGS = {
    "rotated": "Rotated (the new credential is current in the sink)",
    "retired": "Retired (old credential deactivated or deleted)",
    "disabled": "Disabled (unused for too long)",
    "held": "Held (the old credential is still in use: switch its consumers)",
    "blocked": "Blocked (a human must act)",
    "failed": "Failed",
    "retry": "Will retry (transient error)",
    "waiting": "Waiting (another worker holds the rotation)",
}
HEADLINE = ("rotated", "held", "blocked", "failed")  # always counted in the first line
CHANGES = frozenset({"rotated", "retired", "disabled"})
MAX_LINES = 25  # per category; the rest is counted
_STATUS = {Result.HELD: "held", Result.BLOCKED: "blocked", Result.FAILED: "failed"}
_STATUS |= {Result.RETRY: "retry", Result.WAITING: "waiting"}


def _done(report: Report, step: Step) -> bool:
    return any(s.step is step and s.outcome is Outcome.DONE for s in report.steps)


def categories(report: Report) -> list[str]:
    """The categories one report falls in: at most one change (rotated, retired,
    disabled) and at most one status (held, blocked, failed, retry)."""
    found: list[str] = []
    if _done(report, Step.PROMOTE):
        found.append("rotated")
    elif _done(report, Step.DEACTIVATE) or _done(report, Step.DELETE):
        found.append("retired")
    elif report.result is Result.DISABLED:
        found.append("disabled")
    if report.result in _STATUS:
        found.append(_STATUS[report.result])
    return found


def _old_fate(report: Report) -> str:
    if _done(report, Step.DELETE):
        return "old deleted"
    if _done(report, Step.DEACTIVATE):
        return "old deactivated"
    return "old still active until deactivate_after"


def _describe(report: Report, category: str) -> dict[str, Any]:
    decision = report.decision
    last = report.steps[-1].rotation if report.steps else None
    old = (last.old_credential_id if last else None) or decision.credential_id
    item: dict[str, Any] = {
        "user": decision.user,
        "kind": str(decision.kind),
        "slot": decision.slot or None,
        "credential_id": old,
        "rotation_id": report.rotation_id or decision.rotation_id,
    }
    if category == "rotated":
        item["new_credential_id"] = last.new_credential_id if last else None
        item["detail"] = _old_fate(report) if old else ""
    elif category == "retired":
        item["detail"] = "deleted" if _done(report, Step.DELETE) else "deactivated"
    else:
        item["detail"] = redaction.scrub(report.reason)
    return item


def _line(item: dict[str, Any], category: str) -> str:
    what = f"{item['user']} {item['kind']}" + (f" ({item['slot']})" if item["slot"] else "")
    if category == "rotated":
        detail = f"; {item['detail']}" if item["detail"] else ""
        return f"{what}: {item['credential_id'] or '(none)'} -> {item['new_credential_id']}{detail}"
    cred = f" {item['credential_id']}" if item["credential_id"] else ""
    return f"{what}{cred}: {item['detail']}"


@dataclass(frozen=True, kw_only=True)
class Summary:
    """What one message reports: items per category, in ``HEADINGS`` order."""

    account: str
    run_id: str
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.items.values())

    def counts(self) -> dict[str, int]:
        return {c: len(self.items.get(c, [])) for c in HEADINGS}

    def headline(self) -> str:
        counts = self.counts()
        shown = [c for c in HEADINGS if c in HEADLINE or counts[c]]
        return ", ".join(f"{counts[c]} {c}" for c in shown)

    def text(self, title: str) -> str:
        """The message body: a title line, then each non-empty category's lines."""
        out = [f"{title}: {self.headline()}"]
        for category, heading in HEADINGS.items():
            items = self.items.get(category, [])
            if not items:
                continue
            out.append(f"{heading}:")
            out.extend(f"  - {_line(item, category)}" for item in items[:MAX_LINES])
            if len(items) > MAX_LINES:
                out.append(f"  ... and {len(items) - MAX_LINES} more")
        return "\n".join(out)


def summarise(result: SweepResult, users: set[str] | None = None) -> Summary:
    """The summary of ``result`` (only ``users``' reports if given)."""
    items: dict[str, list[dict[str, Any]]] = {c: [] for c in HEADINGS}
    for report in result.reports:
        if users is not None and report.decision.user not in users:
            continue
        for category in categories(report):
            items[category].append(_describe(report, category))
    return Summary(account=result.account, run_id=result.run_id, items=items)


def owner_users(result: SweepResult) -> set[str]:
    """Users an owner hears about: their credentials changed, or a rotation was held."""
    return {r.decision.user for r in result.reports if {*categories(r)} & (CHANGES | {"held"})}


@dataclass(frozen=True, kw_only=True)
class Message:
    """One notification, ready for any channel."""

    subject: str  # ASCII, at most 100 characters (SNS' limit)
    text: str
    data: dict[str, Any]
    owner: str | None = None


def _subject(text: str) -> str:
    ascii_only = text.encode("ascii", "replace").decode("ascii")
    return ascii_only if len(ascii_only) <= 100 else ascii_only[:97] + "..."


def sweep_message(summary: Summary) -> Message:
    """The one message about a whole sweep."""
    title = f"rotator sweep {summary.run_id} (account {summary.account})"
    return Message(
        subject=_subject(f"rotator {summary.account}: {summary.headline()}"),
        text=summary.text(title),
        data=_data(summary),
    )


def owner_messages(result: SweepResult, owners: Mapping[str, str]) -> list[Message]:
    """One message per owner (``owners``: user -> owner tag value) about their users."""
    by_owner: dict[str, set[str]] = {}
    for user in sorted(owner_users(result)):
        if owners.get(user):
            by_owner.setdefault(owners[user], set()).add(user)
    messages: list[Message] = []
    for owner, users in sorted(by_owner.items()):
        summary = summarise(result, users)
        title = f"rotator: credentials of IAM users owned by {owner} (account {result.account})"
        messages.append(
            Message(
                subject=_subject(f"rotator {result.account}: your credentials changed"),
                text=summary.text(title),
                data=_data(summary) | {"owner": owner, "users": sorted(users)},
                owner=owner,
            )
        )
    return messages


def _data(summary: Summary) -> dict[str, Any]:
    items = {c: v for c, v in summary.items.items() if v}
    return {
        "run_id": summary.run_id,
        "account": summary.account,
        "counts": summary.counts(),
        "items": items,
    }


def webhook_payload(message: Message) -> dict[str, Any]:
    """Slack-compatible JSON: ``text`` for people, ``rotator`` for programs."""
    return {"text": message.text, "rotator": message.data}
