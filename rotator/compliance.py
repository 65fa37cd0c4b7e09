"""CIS AWS Foundations verdicts for IAM credentials, from an ``Inventory``. Pure: no I/O.

The controls, as the AWS Config rules and Prowler's checks evaluate them (whole days,
strictly more than the limit):

* **1.12** credentials unused for 45 days or more are disabled — an *active* access key
  or a console password fails if its last use (or, never used, its creation: the AWS
  Config rule ``iam-user-unused-credentials-check``; Prowler passes never-used ones) is
  more than 45 days ago (Prowler ``iam_user_accesskey_unused``,
  ``iam_user_console_access_unused``);
* **1.13** one active access key per user — both keys active fails
  (``iam_user_two_active_access_key``);
* **1.14** access keys rotated every 90 days — an active key created more than 90 days ago
  fails (``access-keys-rotated``, ``iam_rotate_access_key_90_days``);
* **1.19** no expired server certificates stored in IAM
  (``iam_no_expired_server_certificates_stored``).

Beside the controls, the report lists the holders a kind judged from outside IAM (OIDC
providers: whether their thumbprints match the chain they serve, ``FindingRow``).

Each row also says what rotator will do about the credential: the plan's decision for that
user and kind, or that no rule covers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from rotator.model import Credential, Decision, Holder, Inventory, Kind, Plan

UNUSED_DAYS = 45
ROTATED_DAYS = 90
CONTROLS = ("1.12", "1.13", "1.14")


class Verdict(StrEnum):
    """One control's outcome for one credential."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"


def _days(now: datetime, since: datetime) -> int:
    return (now - since).days


def unused(cred: Credential, now: datetime) -> Verdict:
    """1.12: an active credential last used (else created) more than 45 days ago fails."""
    if cred.kind not in (Kind.ACCESS_KEY, Kind.LOGIN_PROFILE):
        return Verdict.NOT_APPLICABLE
    if not cred.active:
        return Verdict.PASS  # disabled
    since = cred.last_used or cred.created
    return Verdict.FAIL if _days(now, since) > UNUSED_DAYS else Verdict.PASS


def one_active_key(holder: Holder, cred: Credential) -> Verdict:
    """1.13: a user with two active access keys fails (on each of its keys)."""
    if cred.kind is not Kind.ACCESS_KEY:
        return Verdict.NOT_APPLICABLE
    active = sum(c.active for c in holder.of_kind(Kind.ACCESS_KEY))
    return Verdict.FAIL if active > 1 else Verdict.PASS


def rotated(cred: Credential, now: datetime) -> Verdict:
    """1.14: an active access key created more than 90 days ago fails."""
    if cred.kind is not Kind.ACCESS_KEY:
        return Verdict.NOT_APPLICABLE
    if not cred.active:
        return Verdict.PASS
    return Verdict.FAIL if _days(now, cred.created) > ROTATED_DAYS else Verdict.PASS


@dataclass(frozen=True, kw_only=True)
class Row:
    """One credential's verdicts and what rotator will do."""

    user: str
    kind: Kind
    credential_id: str
    status: str
    age_days: int
    last_used: datetime | None
    verdicts: dict[str, Verdict]
    action: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "kind": str(self.kind),
            "credential_id": self.credential_id,
            "status": self.status,
            "age_days": self.age_days,
            "last_used": self.last_used.isoformat() if self.last_used else None,
            **{f"cis_{c}": str(v) for c, v in self.verdicts.items()},
            "rotator_action": self.action,
            "rotator_reason": self.reason,
        }


@dataclass(frozen=True, kw_only=True)
class CertificateRow:
    """1.19 for one server certificate."""

    name: str
    expires: datetime
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expires": self.expires.isoformat(),
            "cis_1.19": str(self.verdict),
        }


@dataclass(frozen=True, kw_only=True)
class FindingRow:
    """An account-held holder a kind judged from outside IAM (an OIDC provider: do its
    thumbprints match the chain it serves?)."""

    holder: str
    kind: Kind
    credentials: tuple[str, ...]
    action: str  # the kind's verdict: skip (all is well), rotate, block
    reason: str

    @property
    def matches(self) -> bool:
        return self.action == "skip"

    def as_dict(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "kind": str(self.kind),
            "credentials": list(self.credentials),
            "matches": self.matches,
            "action": self.action,
            "reason": self.reason,
        }


def findings(kind: Kind, holders: Sequence[Holder]) -> tuple[FindingRow, ...]:
    """The rows of the holders of ``kind`` that the kind gave a finding, by name."""
    return tuple(
        FindingRow(
            holder=h.name,
            kind=kind,
            credentials=tuple(c.credential_id for c in h.credentials),
            action=str(h.finding.action),
            reason=h.finding.reason,
        )
        for h in sorted(holders, key=lambda h: h.name)
        if h.finding is not None
    )


@dataclass(frozen=True, kw_only=True)
class Report:
    """Every row, and the count of failures per control."""

    account: str
    generated_at: datetime
    source: str  # where the credentials came from (the credential report, or per user)
    rows: tuple[Row, ...]
    certificates: tuple[CertificateRow, ...]
    findings: tuple[FindingRow, ...] = ()  # OIDC providers, judged by what they serve

    def failures(self) -> dict[str, int]:
        counts = {c: sum(r.verdicts[c] is Verdict.FAIL for r in self.rows) for c in CONTROLS}
        counts["1.19"] = sum(c.verdict is Verdict.FAIL for c in self.certificates)
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "generated_at": self.generated_at.isoformat(),
            "source": self.source,
            "failures": self.failures(),
            "credentials": [r.as_dict() for r in self.rows],
            "server_certificates": [c.as_dict() for c in self.certificates],
            "oidc_providers": [f.as_dict() for f in self.findings],
        }


def _decision(plan: Plan | None, holder: Holder, cred: Credential) -> Decision | None:
    if plan is None:
        return None
    mine = [d for d in plan if d.user == holder.name and d.kind is cred.kind]
    exact = [d for d in mine if d.credential_id == cred.credential_id]
    found = exact or mine
    return found[0] if found else None


def evaluate(
    inventory: Inventory,
    plan: Plan | None,
    certificates: Sequence[Credential],
    now: datetime,
    *,
    source: str = "",
    judged: Sequence[FindingRow] = (),
) -> Report:
    """The verdicts for every access key and console password in ``inventory`` and every
    server certificate in ``certificates``, joined with ``plan``'s decisions."""
    rows: list[Row] = []
    for holder in sorted(inventory.holders, key=lambda h: h.name):
        for cred in holder.credentials:
            if cred.kind not in (Kind.ACCESS_KEY, Kind.LOGIN_PROFILE):
                continue
            decision = _decision(plan, holder, cred)
            rows.append(
                Row(
                    user=holder.name,
                    kind=cred.kind,
                    credential_id=cred.credential_id,
                    status=str(cred.status),
                    age_days=_days(now, cred.created),
                    last_used=cred.last_used,
                    verdicts={
                        "1.12": unused(cred, now),
                        "1.13": one_active_key(holder, cred),
                        "1.14": rotated(cred, now),
                    },
                    action=str(decision.action) if decision else "none",
                    reason=decision.reason if decision else "no rule covers this credential",
                )
            )
    certs = tuple(
        CertificateRow(
            name=c.credential_id,
            expires=c.expires,
            verdict=Verdict.FAIL if c.expires <= now else Verdict.PASS,
        )
        for c in certificates
        if c.expires is not None
    )
    return Report(
        account=inventory.account,
        generated_at=now,
        source=source,
        rows=tuple(rows),
        certificates=certs,
        findings=tuple(judged),
    )
