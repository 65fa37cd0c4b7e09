"""IAM's credential report: fetch it (get, else generate and poll), parse it, and turn its
rows into ``Credential``s.

One report describes every user's console password and access keys (ages, last use) for
two or three calls, however many users there are. IAM regenerates it at most every four
hours, so its data may be that old: ``fetch`` takes a report younger than four hours as it
is, else asks for a new one and polls until it is COMPLETE (within a budget). Anything that
goes wrong (throttling, access denied, a report that will not finish, unreadable content)
raises ``ReportUnavailable``, and the caller lists per user instead.

Access keys in the report have no IDs: ``credentials`` names them ``access_key_1`` /
``access_key_2`` as the report's columns do. Such credentials are for reading (planning
what is *not* due); anything rotator acts on is listed per user first. ``survey`` (for
``rotator report``) joins the report with ``ListAccessKeys`` for the users whose row has
keys, so that every key is shown by its ID; ``named`` carries those names over to a plan
made from the report.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.aws import all_pages, aws_errors
from rotator.backoff import delays
from rotator.errors import AwsError, RotatorError
from rotator.model import Credential, Decision, Holder, Inventory, Kind, Plan, Status, utcnow

REPORT_LIFETIME = timedelta(hours=4)  # IAM makes a new report at most this often
POLL_BUDGET = timedelta(seconds=60)
ROOT = "<root_account>"
# Codes meaning "there is no current report": generate one.
_REGENERATE = frozenset({"ReportNotPresent", "ReportExpired", "ReportInProgress"})
_REQUIRED: tuple[str, ...] = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
)
TRUE = "true"


class ReportUnavailable(RotatorError):
    """The credential report could not be had now; list per user instead."""


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyRow:
    """One access-key column group of a report row (only keys that exist)."""

    number: int  # 1 or 2, the report's column group
    active: bool
    last_rotated: datetime  # the key's creation
    last_used: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class UserRow:
    """One user's row."""

    user: str
    arn: str
    created: datetime
    password_enabled: bool
    password_last_used: datetime | None
    password_last_changed: datetime | None
    mfa_active: bool
    keys: tuple[KeyRow, ...]


@dataclass(frozen=True, kw_only=True)
class CredentialReport:
    """A parsed report: when IAM generated it, and a row per user (root left out)."""

    generated: datetime
    rows: Mapping[str, UserRow]

    def row(self, user: str, created: datetime | None = None) -> UserRow | None:
        """``user``'s row; None if the report predates the user (or a same-named user
        that was deleted: the creation times differ)."""
        found = self.rows.get(user)
        if found is None or created is None:
            return found
        return found if abs(found.created - created) < timedelta(seconds=1) else None


def _when(value: str | None) -> datetime | None:
    """A report timestamp, or None for ``N/A``, ``no_information``, ``not_supported``."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse(content: bytes | str, generated: datetime) -> CredentialReport:
    """Parse the CSV ``GetCredentialReport`` returns. Raises ``ReportUnavailable`` if it
    lacks the columns rotator reads."""
    try:
        return _parse(content, generated)
    except (csv.Error, UnicodeDecodeError, KeyError) as exc:
        raise ReportUnavailable(f"the credential report is unreadable: {exc!r}") from None


def _lines(content: bytes | str) -> Iterator[str]:
    """The report's lines, decoded as they are read: the whole report is never held
    again as text (10,000 users are about 3 MB of CSV, 12 MB in a ``StringIO``)."""
    if isinstance(content, str):
        return iter(content.splitlines(keepends=True))
    return io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", newline="")


def _parse(content: bytes | str, generated: datetime) -> CredentialReport:
    reader = csv.reader(_lines(content))
    header = next(reader, [])
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise ReportUnavailable(f"the credential report lacks columns: {', '.join(missing)}")
    at = {name: header.index(name) for name in _REQUIRED}
    mfa = header.index("mfa_active") if "mfa_active" in header else None
    keys_at = [
        (
            n,
            at[f"access_key_{n}_active"],
            at[f"access_key_{n}_last_rotated"],
            at[f"access_key_{n}_last_used_date"],
        )
        for n in (1, 2)
    ]
    width = len(header)
    rows: dict[str, UserRow] = {}
    for raw in reader:
        if not raw:  # a blank line
            continue
        if len(raw) < width:  # as csv.DictReader reads a short row: the rest empty
            raw += [""] * (width - len(raw))
        user = raw[at["user"]]
        if user == ROOT:
            continue
        keys = tuple(
            KeyRow(
                number=n,
                active=raw[active] == TRUE,
                last_rotated=rotated,
                last_used=_when(raw[used]),
            )
            for n, active, last_rotated, used in keys_at
            if (rotated := _when(raw[last_rotated])) is not None
        )
        rows[user] = UserRow(
            user=user,
            arn=raw[at["arn"]],
            created=_when(raw[at["user_creation_time"]]) or generated,
            password_enabled=raw[at["password_enabled"]] == TRUE,
            password_last_used=_when(raw[at["password_last_used"]]),
            password_last_changed=_when(raw[at["password_last_changed"]]),
            mfa_active=mfa is not None and raw[mfa] == TRUE,
            keys=keys,
        )
    return CredentialReport(generated=generated, rows=rows)


def credentials(row: UserRow, kind: Kind) -> list[Credential]:
    """The row's credentials of ``kind`` (access keys, or the console password whose ID is
    the user name, as ``LoginProfiles.list`` names it); [] for kinds the report lacks. The
    kinds it reads are those whose facts say ``in_credential_report``."""
    if kind is Kind.ACCESS_KEY:
        return [
            Credential(
                kind=kind,
                credential_id=f"access_key_{k.number}",
                status=Status.ACTIVE if k.active else Status.INACTIVE,
                created=k.last_rotated,
                last_used=k.last_used,
            )
            for k in row.keys
        ]
    if kind is Kind.LOGIN_PROFILE and row.password_enabled:
        return [
            Credential(
                kind=kind,
                credential_id=row.user,
                status=Status.ACTIVE,
                created=row.password_last_changed or row.created,
                last_used=row.password_last_used,
            )
        ]
    return []


# -- fetching ---------------------------------------------------------------------------


async def _get(iam: Any) -> CredentialReport | None:
    """The current report, or None if IAM has none ready (not present, expired, in progress)."""
    try:
        with aws_errors("GetCredentialReport"):
            found = await iam.get_credential_report()
    except AwsError as exc:
        if exc.code in _REGENERATE:
            return None
        raise
    generated = found.get("GeneratedTime")
    if not isinstance(generated, datetime):
        raise ReportUnavailable("the credential report has no GeneratedTime")
    return parse(found["Content"], generated)


async def _generate(iam: Any) -> str:
    with aws_errors("GenerateCredentialReport"):
        return str((await iam.generate_credential_report())["State"])


async def fetch(
    iam: Any,
    *,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    budget: timedelta = POLL_BUDGET,
) -> CredentialReport:
    """The account's credential report: the current one if it is younger than four hours,
    else a new one (generate, poll with backoff until COMPLETE, get). Raises
    ``ReportUnavailable`` with the reason when that fails or takes longer than ``budget``."""
    try:
        current = await _get(iam)
        if current is not None and clock() - current.generated < REPORT_LIFETIME:
            return current
        deadline = time.monotonic() + budget.total_seconds()
        waits = delays(0.5, 8.0)
        while await _generate(iam) != "COMPLETE":
            delay = next(waits)
            if time.monotonic() + delay > deadline:
                raise ReportUnavailable(f"not generated within {budget.total_seconds():.0f}s")
            await sleep(delay)
        fresh = await _get(iam)
    except AwsError as exc:
        raise ReportUnavailable(str(exc)) from None
    if fresh is None:
        raise ReportUnavailable("IAM said the report is COMPLETE but does not return it")
    return fresh


# -- the whole account, for `rotator report` ---------------------------------------------


# Users surveyed at once (their tasks exist together; at most max_concurrency call IAM).
SURVEY_BATCH = 256
# The names the report gives keys, by user: {user: {"access_key_1": "AKIA…"}}.
KeyNames = dict[str, dict[str, str]]


@dataclass(frozen=True, kw_only=True)
class Survey:
    """Every user's access keys (by ID) and console password, and the report's names of
    the keys (``access_key_1`` / ``access_key_2``) that the IDs replaced."""

    inventory: Inventory
    names: KeyNames


async def survey(
    *,
    iam: Any,
    users: Sequence[Mapping[str, Any]],
    account: str,
    kinds: Mapping[Kind, Any],
    report: CredentialReport | None,
    now: datetime,
    max_concurrency: int = 8,
) -> Survey:
    """Every user's access keys and console password with last-used dates: from the
    report's rows, each key named by its ID (``ListAccessKeys``, paginated, for the users
    whose row has keys, and only those), else (no report, or a user newer than it) per
    user through ``kinds`` (``access-key`` and ``login-profile``)."""
    limit = asyncio.Semaphore(max_concurrency)
    names: KeyNames = {}

    async def one(user: Mapping[str, Any]) -> Holder:
        name = str(user["UserName"])
        row = report.row(name, user.get("CreateDate")) if report else None
        if row is not None:
            reported = credentials(row, Kind.ACCESS_KEY)
            if reported:
                async with limit:
                    reported, names[name] = await _with_ids(iam, kinds, name, reported)
            creds = reported + credentials(row, Kind.LOGIN_PROFILE)
        else:
            async with limit:
                creds = await _listed(user, kinds)
        return Holder(
            account=account,
            name=name,
            arn=str(user["Arn"]),
            path=str(user.get("Path", "/")),
            credentials=tuple(creds),
        )

    holders: list[Holder] = []
    for start in range(0, len(users), SURVEY_BATCH):  # not 10,000 tasks at once
        holders += await asyncio.gather(*(one(u) for u in users[start : start + SURVEY_BATCH]))
    return Survey(inventory=Inventory(account=account, holders=tuple(holders)), names=names)


def match(
    reported: Sequence[Credential], listed: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], Credential | None]]:
    """Each key ``ListAccessKeys`` lists, with the report's key it is (created in the
    same second — the report drops the fraction — and, where two were, of the same
    status, then in the report's order), or None: a key made since the report. A
    reported key that is no longer listed was deleted since, and is left out."""
    left = list(reported)
    out: list[tuple[Mapping[str, Any], Credential | None]] = []
    for key in listed:
        created = key["CreateDate"]
        same = [r for r in left if abs(r.created - created) < timedelta(seconds=1)]
        status = [r for r in same if r.status.value == key["Status"]]
        candidates = status or same
        found = candidates[0] if candidates else None
        if found is not None:
            left.remove(found)
        out.append((key, found))
    return out


async def _with_ids(
    iam: Any, kinds: Mapping[Kind, Any], user: str, reported: list[Credential]
) -> tuple[list[Credential], dict[str, str]]:
    """The user's keys as IAM lists them now, with the report's last use (asked per key
    for a key made since the report), and the report's name of each."""
    listed = await all_pages(
        iam.list_access_keys, "AccessKeyMetadata", "ListAccessKeys", {"user": user}, UserName=user
    )
    keys: list[Credential] = []
    names: dict[str, str] = {}
    for key, found in match(reported, listed):
        key_id = str(key["AccessKeyId"])
        if found is not None:
            names[found.credential_id] = key_id
            used = found.last_used
        else:
            used = await kinds[Kind.ACCESS_KEY].last_used(user, key_id)
        keys.append(
            Credential(
                kind=Kind.ACCESS_KEY,
                credential_id=key_id,
                status=Status(key["Status"]),
                created=key["CreateDate"],
                last_used=used,
            )
        )
    return keys, names


def named(plan: Plan | None, names: KeyNames) -> Plan | None:
    """``plan`` with the report's key names (``access_key_1``) in its decisions (IDs and
    reasons) replaced by the keys' IDs, as ``survey`` found them."""
    if plan is None or not names:
        return plan

    def one(d: Decision) -> Decision:
        mine = names.get(d.user) if d.kind is Kind.ACCESS_KEY else None
        if not mine:
            return d
        reason = d.reason
        for alias, key_id in mine.items():
            reason = reason.replace(alias, key_id)
        return replace(
            d,
            credential_id=mine.get(d.credential_id or "", d.credential_id),
            delete_first=mine.get(d.delete_first or "", d.delete_first),
            reason=reason,
        )

    return Plan(decisions=tuple(one(d) for d in plan))


async def _listed(user: Mapping[str, Any], kinds: Mapping[Kind, Any]) -> list[Credential]:
    name = str(user["UserName"])
    keys = kinds[Kind.ACCESS_KEY]
    found = [
        replace(k, last_used=await keys.last_used(name, k.credential_id))
        for k in await keys.list(name)
    ]
    used = user.get("PasswordLastUsed")
    for profile in await kinds[Kind.LOGIN_PROFILE].list(name):
        found.append(replace(profile, last_used=used if isinstance(used, datetime) else None))
    return found


async def server_certificates(iam: Any) -> list[Credential]:
    """The account's server certificates (ID: name; ``expires``: IAM's Expiration)."""
    listed = await all_pages(
        iam.list_server_certificates, "ServerCertificateMetadataList", "ListServerCertificates"
    )
    return [
        Credential(
            kind=Kind.SERVER_CERTIFICATE,
            credential_id=c["ServerCertificateName"],
            status=Status.ACTIVE,
            created=c["UploadDate"],
            expires=c.get("Expiration"),
        )
        for c in listed
    ]
