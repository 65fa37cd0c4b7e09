"""CIS AWS Foundations verdicts for IAM credentials, from an ``Inventory``. Pure: no I/O.

The checks (``benchmarks_cis.Check``; their control numbers differ between CIS versions
and Security Hub, ``benchmarks_cis.CHECKS`` maps them; v1.4 to v4.0 numbers below), as the
AWS Config rules and Prowler's checks evaluate them (whole days, strictly more than the
limit):

* **1.12** credentials unused for 45 days or more are disabled — an *active* access key
  or a console password fails if its last use (or, never used, its creation: the AWS
  Config rule ``iam-user-unused-credentials-check``; Prowler passes never-used ones) is
  more than 45 days ago (Prowler ``iam_user_accesskey_unused``,
  ``iam_user_console_access_unused``);
* **1.13** one active access key per user — both keys active fails
  (``iam_user_two_active_access_key``); each key row shows its user's verdict, and the
  failures are counted per user;
* **1.14** access keys rotated every 90 days — an active key created more than 90 days ago
  fails (``access-keys-rotated``, ``iam_rotate_access_key_90_days``);
* **1.19** no expired server certificates stored in IAM
  (``iam_no_expired_server_certificates_stored``).

Beside the controls, the report lists the holders a kind judged from outside IAM (OIDC
providers: whether their thumbprints match the chain they serve, ``FindingRow``), and the
service-specific credentials past their expiry (Bedrock API keys, ``ExpiredRow``).

Each row also says what rotator will do about the credential: the plan's decision that
names that credential (another key's decision is never shown on a key's row), or that no
rule covers it.

``REPORT_ACTIONS`` lists every AWS action ``rotator report`` calls beside the plan's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rotator.benchmarks_cis import CHECKS, DEFAULT, Benchmark, Check
from rotator.model import Credential, Decision, Holder, Inventory, Kind, Plan, Status
from rotator.policy import format_age

UNUSED_DAYS = 45
ROTATED_DAYS = 90
# Every AWS action `rotator report` calls itself, beside what planning with the policy
# calls (the kinds' own listing): who the caller is, every user, the credential report,
# the key IDs of the users it shows (and, per user when the report is unavailable, keys,
# last use and console passwords), and the server certificates. `rotator iam-policy
# --for report` grants these.
REPORT_ACTIONS: tuple[str, ...] = (
    "sts:GetCallerIdentity",
    "iam:ListUsers",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetLoginProfile",
    "iam:GetUser",  # a console password's last use, when the credential report is unavailable
    "iam:ListServerCertificates",
)


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
    """1.13: a user with two active access keys fails (shown on each of its keys, counted
    once per user by ``Report.failures``)."""
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
    verdicts: Mapping[Check, Verdict]
    action: str
    reason: str
    arn: str = ""  # the user's ARN (the ASFF finding's resource)

    def as_dict(self, benchmark: Benchmark) -> dict[str, Any]:
        return {
            "user": self.user,
            "kind": str(self.kind),
            "credential_id": self.credential_id,
            "status": self.status,
            "age_days": self.age_days,
            "last_used": _utc(self.last_used),
            **_verdicts(self.verdicts, benchmark),
            "rotator_action": self.action,
            "rotator_reason": self.reason,
        }


def _utc(when: datetime | None) -> str | None:
    """An ISO 8601 UTC timestamp ending in ``Z``."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _verdicts(verdicts: Mapping[Check, Verdict], benchmark: Benchmark) -> dict[str, Any]:
    """``cis_<number>`` for each check ``benchmark`` numbers, and the Security Hub
    controls' verdicts."""
    out: dict[str, Any] = {}
    for check, verdict in verdicts.items():
        number = benchmark.control(check)
        if number is not None:
            out[f"cis_{number}"] = str(verdict)
    out["security_hub"] = {
        control: str(verdict)
        for check, verdict in verdicts.items()
        for control in CHECKS[check].security_hub
    }
    return out


@dataclass(frozen=True, kw_only=True)
class CertificateRow:
    """1.19 for one server certificate."""

    name: str
    expires: datetime
    verdict: Verdict

    def when(self, now: datetime) -> str:
        """``expired 10d ago`` or ``expires 2026-05-01 (in 12d)``."""
        if self.expires <= now:
            return f"expired {format_age(now - self.expires)} ago"
        return f"expires {self.expires:%Y-%m-%d} (in {format_age(self.expires - now)})"

    def as_dict(self, benchmark: Benchmark) -> dict[str, Any]:
        return {
            "name": self.name,
            "expires": _utc(self.expires),
            **_verdicts({Check.EXPIRED_CERTIFICATES: self.verdict}, benchmark),
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
class ExpiredRow:
    """A service-specific credential past its expiry (IAM lists it ``Expired``)."""

    user: str
    service: str
    credential_id: str
    expired: datetime | None
    action: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "service": self.service,
            "credential_id": self.credential_id,
            "expired": _utc(self.expired),
            "rotator_action": self.action,
            "rotator_reason": self.reason,
        }


def expired_credentials(
    holders: Sequence[Holder], plan: Plan | None, now: datetime
) -> tuple[ExpiredRow, ...]:
    """The service-specific credentials of ``holders`` that IAM lists as ``Expired`` (or
    whose expiry has passed), with what the plan does about each (a ``delete_expired``
    rule: ``disable``)."""
    rows: list[ExpiredRow] = []
    for holder in sorted(holders, key=lambda h: h.name):
        mine = (c for c in holder.credentials if c.kind is Kind.SERVICE_CREDENTIAL)
        for cred in sorted(mine, key=lambda c: (c.slot, c.created, c.credential_id)):
            gone = cred.expires is not None and cred.expires <= now
            if cred.status is not Status.EXPIRED and not gone:
                continue
            decision = _exact(plan, holder, cred)
            rows.append(
                ExpiredRow(
                    user=holder.name,
                    service=cred.slot,
                    credential_id=cred.credential_id,
                    expired=cred.expires,
                    action=str(decision.action) if decision else "none",
                    reason=decision.reason
                    if decision
                    else "expired: a rule with delete_expired = true deletes it",
                )
            )
    return tuple(rows)


@dataclass(frozen=True, kw_only=True)
class Report:
    """Every row, and the count of failures per control of ``benchmark``."""

    account: str
    generated_at: datetime
    source: str  # where the credentials came from (the credential report, or per user)
    rows: tuple[Row, ...]
    certificates: tuple[CertificateRow, ...]
    findings: tuple[FindingRow, ...] = ()  # OIDC providers, judged by what they serve
    expired: tuple[ExpiredRow, ...] = ()  # service-specific credentials past their expiry
    benchmark: Benchmark = field(default_factory=lambda: Benchmark(name=DEFAULT))

    def failures_by_check(self) -> dict[Check, int]:
        """Failures per check: credentials (unused, rotated), users (one active key),
        certificates."""
        counts = {
            check: sum(r.verdicts[check] is Verdict.FAIL for r in self.rows)
            for check in (Check.UNUSED, Check.ROTATED)
        }
        counts[Check.ONE_ACTIVE_KEY] = len(
            {r.user for r in self.rows if r.verdicts[Check.ONE_ACTIVE_KEY] is Verdict.FAIL}
        )
        counts[Check.EXPIRED_CERTIFICATES] = sum(
            c.verdict is Verdict.FAIL for c in self.certificates
        )
        return {check: counts[check] for check in CHECKS}

    def failures(self) -> dict[str, int]:
        """Failures per control number of ``benchmark``, in its order."""
        by_check = self.failures_by_check()
        return {
            number: by_check[check]
            for check in self.benchmark.checks
            if (number := self.benchmark.control(check)) is not None
        }

    def controls(self) -> list[dict[str, Any]]:
        """Each check: its number in ``benchmark`` (None if it has none), its Security
        Hub controls, what it counts, and its failures."""
        by_check = self.failures_by_check()
        per = {Check.ONE_ACTIVE_KEY: "user", Check.EXPIRED_CERTIFICATES: "certificate"}
        return [
            {
                "check": str(check),
                "cis": self.benchmark.control(check),
                "security_hub": list(mapped.security_hub),
                "title": mapped.title,
                "counted_per": per.get(check, "credential"),
                "failures": by_check[check],
            }
            for check, mapped in CHECKS.items()
        ]

    def head(self) -> dict[str, Any]:
        """The document's fields other than its lists of rows."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "report",
            "benchmark": self.benchmark.name,
            "benchmark_title": self.benchmark.title,
            "account": self.account,
            "generated_at": _utc(self.generated_at),
            "source": self.source,
            "failures": self.failures(),
            "controls": self.controls(),
        }

    def as_dict(self) -> dict[str, Any]:
        """The ``report --output json`` document. The rows are iterators, built one at a
        time as they are written (``render.print_json``): never held twice."""
        mark = self.benchmark
        return {
            **self.head(),
            "credentials": (r.as_dict(mark) for r in self.rows),
            "server_certificates": (c.as_dict(mark) for c in self.certificates),
            "oidc_providers": (f.as_dict() for f in self.findings),
            "expired_service_credentials": (e.as_dict() for e in self.expired),
        }


SCHEMA_VERSION = 1  # of the JSON document (rotator/schemas/report.schema.json)


class _Decisions:
    """A plan's decisions by (user, kind): looked up once per row, not scanned."""

    def __init__(self, plan: Plan | None) -> None:
        self.by_holder: dict[tuple[str, Kind], list[Decision]] = {}
        for d in plan or ():
            self.by_holder.setdefault((d.user, d.kind), []).append(d)

    def __call__(self, holder: Holder, cred: Credential) -> tuple[str, str]:
        """The action and reason the plan gives ``cred``: a decision that names it (or
        deletes it first), else one that names no credential of that kind; a decision
        about another credential of the user is not this one's."""
        mine = self.by_holder.get((holder.name, cred.kind), [])
        for d in mine:
            if d.credential_id == cred.credential_id:
                return str(d.action), d.reason
        for d in mine:
            if d.delete_first == cred.credential_id:
                return "delete", f"deleted first to make room for {d.credential_id}'s rotation"
        for d in mine:
            if d.credential_id is None:
                return str(d.action), d.reason
        if mine:
            other = mine[0]
            return "none", f"the plan acts on {other.credential_id} ({other.action}), not this one"
        return "none", "no rule covers this credential"


def _exact(plan: Plan | None, holder: Holder, cred: Credential) -> Decision | None:
    """The plan's decision that names ``cred``, if any."""
    for d in plan or ():
        if d.user == holder.name and d.kind is cred.kind and d.credential_id == cred.credential_id:
            return d
    return None


def _rows(inventory: Inventory, plan: Plan | None, now: datetime) -> Iterator[Row]:
    decide = _Decisions(plan)
    for holder in sorted(inventory.holders, key=lambda h: h.name):
        for cred in holder.credentials:
            if cred.kind not in (Kind.ACCESS_KEY, Kind.LOGIN_PROFILE):
                continue
            action, reason = decide(holder, cred)
            yield Row(
                user=holder.name,
                kind=cred.kind,
                credential_id=cred.credential_id,
                status=str(cred.status),
                age_days=_days(now, cred.created),
                last_used=cred.last_used,
                verdicts={
                    Check.UNUSED: unused(cred, now),
                    Check.ONE_ACTIVE_KEY: one_active_key(holder, cred),
                    Check.ROTATED: rotated(cred, now),
                },
                action=action,
                reason=reason,
                arn=holder.arn,
            )


def evaluate(
    inventory: Inventory,
    plan: Plan | None,
    certificates: Sequence[Credential],
    now: datetime,
    *,
    source: str = "",
    judged: Sequence[FindingRow] = (),
    expired: Sequence[ExpiredRow] = (),
    benchmark: Benchmark | None = None,
) -> Report:
    """The verdicts for every access key and console password in ``inventory`` and every
    server certificate in ``certificates``, joined with ``plan``'s decisions, numbered
    as ``benchmark`` numbers them."""
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
        rows=tuple(_rows(inventory, plan, now)),
        certificates=certs,
        findings=tuple(judged),
        expired=tuple(expired),
        benchmark=benchmark or Benchmark(name=DEFAULT),
    )
