"""The credential report: parsing IAM's CSV, and fetching it the way IAM allows (the current
report if it is younger than four hours, else generate and poll), falling back with a
reason when it cannot be had."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotator.credential_report import (
    REPORT_LIFETIME,
    ReportUnavailable,
    credentials,
    fetch,
    match,
    named,
    parse,
)
from rotator.model import Action, Decision, Kind, Plan, Status
from rotator.testing import MemoryIam

GENERATED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
# As IAM writes it (AWS documentation's example, two users and the root account).
CSV = """\
user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,\
password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,\
access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,\
access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,\
access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,\
cert_1_last_rotated,cert_2_active,cert_2_last_rotated
<root_account>,arn:aws:iam::123456789012:root,2014-08-31T19:05:44+00:00,not_supported,\
2025-05-30T10:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,\
N/A,N/A,N/A,false,N/A,false,N/A
alice,arn:aws:iam::123456789012:user/alice,2024-01-02T03:04:05+00:00,true,no_information,\
2024-01-02T03:05:00+00:00,N/A,false,true,2024-02-01T00:00:00+00:00,\
2025-05-01T08:09:10+00:00,us-east-1,s3,false,2024-03-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,\
false,N/A
bob,arn:aws:iam::123456789012:user/ci/bob,2024-05-05T05:05:05+00:00,false,N/A,N/A,N/A,false,\
false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A
"""


def test_a_report_is_parsed_into_rows_without_the_root_account() -> None:
    report = parse(CSV.encode(), GENERATED)
    assert report.generated == GENERATED
    assert set(report.rows) == {"alice", "bob"}
    alice = report.rows["alice"]
    assert alice.password_enabled
    assert alice.password_last_used is None, "no_information: never signed in"
    assert alice.password_last_changed == datetime(2024, 1, 2, 3, 5, tzinfo=UTC)
    assert [(k.number, k.active) for k in alice.keys] == [(1, True), (2, False)]
    assert alice.keys[0].last_used == datetime(2025, 5, 1, 8, 9, 10, tzinfo=UTC)
    assert alice.keys[1].last_used is None
    bob = report.rows["bob"]
    assert not bob.password_enabled and bob.keys == ()


def test_report_rows_become_credentials_named_as_the_report_names_them() -> None:
    alice = parse(CSV, GENERATED).rows["alice"]
    keys = credentials(alice, Kind.ACCESS_KEY)
    assert [(c.credential_id, c.status) for c in keys] == [
        ("access_key_1", Status.ACTIVE),
        ("access_key_2", Status.INACTIVE),
    ]
    assert keys[0].created == datetime(2024, 2, 1, tzinfo=UTC)
    (password,) = credentials(alice, Kind.LOGIN_PROFILE)
    assert password.credential_id == "alice", "as LoginProfiles.list names it"
    assert password.created == alice.password_last_changed
    assert credentials(parse(CSV, GENERATED).rows["bob"], Kind.LOGIN_PROFILE) == []
    assert credentials(alice, Kind.SSH_PUBLIC_KEY) == []


def test_columns_are_read_by_name_whatever_their_order_and_line_ends() -> None:
    """The report is read as it streams: columns found by the header's names (in another
    order, with CRLF line ends) and a row cut short read as empty for what it lacks."""
    lines = [line.split(",") for line in CSV.splitlines()]
    order = list(reversed(range(len(lines[0]))))
    shuffled = "\r\n".join(",".join(row[i] for i in order) for row in lines) + "\r\n"
    assert parse(shuffled.encode(), GENERATED) == parse(CSV.encode(), GENERATED)
    cut = CSV + "carol,arn:aws:iam::123456789012:user/carol,2024-06-06T06:06:06+00:00,true\n\n"
    carol = parse(cut.encode(), GENERATED).rows["carol"]
    assert carol.password_enabled
    assert carol.password_last_changed is None
    assert carol.keys == ()


def test_a_user_recreated_since_the_report_is_not_in_it() -> None:
    report = parse(CSV, GENERATED)
    same = datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)  # ListUsers has microseconds
    assert report.row("alice", same) is not None
    assert report.row("alice", same + timedelta(days=1)) is None
    assert report.row("carol") is None


@pytest.mark.parametrize(
    "content",
    [b"user,arn\nalice,arn:aws:iam::1:user/alice\n", b"\xff\xfe\x00garbage", b""],
)
def test_an_unreadable_report_is_unavailable(content: bytes) -> None:
    with pytest.raises(ReportUnavailable):
        parse(content, GENERATED)


class Clock:
    def __init__(self) -> None:
        self.now = GENERATED

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def twin(clock: Clock) -> MemoryIam:
    return MemoryIam(clock=clock)


async def no_sleep(seconds: float) -> None:
    return None


async def test_without_a_report_one_is_generated_and_polled_until_complete(
    twin: MemoryIam, clock: Clock
) -> None:
    await twin.create_user(UserName="alice")
    twin.report_polls = 3
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    report = await fetch(twin, clock=clock, sleep=sleep)
    assert set(report.rows) == {"alice"}
    assert report.generated == clock.now
    assert len(slept) == 3, "one wait between polls"
    for wait, cap in zip(slept, [0.5, 1.0, 2.0], strict=True):
        assert cap / 2 <= wait <= cap, "jittered exponential backoff between polls"
    assert twin.calls["GenerateCredentialReport"] == 1 + 3
    assert twin.calls["GetCredentialReport"] == 2


async def test_a_report_younger_than_four_hours_costs_one_call(
    twin: MemoryIam, clock: Clock
) -> None:
    await fetch(twin, clock=clock, sleep=no_sleep)
    await twin.create_user(UserName="late")
    twin.calls.clear()
    clock.now += REPORT_LIFETIME - timedelta(minutes=1)
    report = await fetch(twin, clock=clock, sleep=no_sleep)
    assert dict(twin.calls) == {"GetCredentialReport": 1}
    assert "late" not in report.rows, "IAM does not regenerate it within four hours"
    assert report.row("late") is None


async def test_an_expired_report_is_regenerated(twin: MemoryIam, clock: Clock) -> None:
    await fetch(twin, clock=clock, sleep=no_sleep)
    await twin.create_user(UserName="late")
    clock.now += REPORT_LIFETIME + timedelta(minutes=1)
    report = await fetch(twin, clock=clock, sleep=no_sleep)
    assert "late" in report.rows
    assert report.generated == clock.now


@pytest.mark.parametrize(
    ("action", "code", "status"),
    [
        ("GenerateCredentialReport", "Throttling", 400),
        ("GenerateCredentialReport", "LimitExceeded", 409),
        ("GetCredentialReport", "AccessDenied", 403),
        ("GetCredentialReport", "ServiceFailure", 500),
    ],
)
async def test_throttling_or_refusal_makes_the_report_unavailable(
    twin: MemoryIam, clock: Clock, action: str, code: str, status: int
) -> None:
    twin.fail_next(action, code, status=status)
    with pytest.raises(ReportUnavailable, match=code):
        await fetch(twin, clock=clock, sleep=no_sleep)


async def test_a_report_that_does_not_finish_within_the_budget_is_unavailable(
    twin: MemoryIam, clock: Clock
) -> None:
    twin.report_polls = 1000
    with pytest.raises(ReportUnavailable, match="not generated within"):
        await fetch(twin, clock=clock, sleep=no_sleep, budget=timedelta(0))


async def test_moto_reports_a_fixed_generated_time_and_fetch_still_returns_it(
    aws_env: str,
) -> None:
    """A moto gap (documented): its GeneratedTime is always 2015-02-02, so every fetch
    regenerates (three calls) and still gets today's data."""
    from rotator.aws import Aws

    async with Aws().client("iam") as iam:
        await iam.create_user(UserName="alice")
        report = await fetch(iam, sleep=no_sleep)
    assert report.generated.year == 2015
    assert set(report.rows) == {"alice"}


def listed(key_id: str, created: datetime, status: str = "Active") -> dict[str, object]:
    return {"AccessKeyId": key_id, "CreateDate": created, "Status": status}


def test_listed_keys_are_matched_to_the_reports_by_creation_second_and_status() -> None:
    """The report drops fractions of seconds; two keys made in the same second are told
    apart by status, then taken in the report's order; a key made since the report has
    no match, and a reported key deleted since is left out."""
    alice = parse(CSV, GENERATED).rows["alice"]
    first, second = credentials(alice, Kind.ACCESS_KEY)
    same = datetime(2024, 2, 1, 0, 0, 0, 700000, tzinfo=UTC)  # ListAccessKeys: fractions
    pairs = match(
        [first, second],
        [
            listed("AKIANEW", GENERATED + timedelta(hours=1)),
            listed("AKIASECOND", datetime(2024, 3, 1, 0, 0, 0, 300000, tzinfo=UTC), "Inactive"),
            listed("AKIAFIRST", same),
        ],
    )
    assert [(k["AccessKeyId"], r.credential_id if r else None) for k, r in pairs] == [
        ("AKIANEW", None),
        ("AKIASECOND", "access_key_2"),
        ("AKIAFIRST", "access_key_1"),
    ]
    twins = [replace(first, status=Status.INACTIVE), replace(first, credential_id="access_key_2")]
    both = match(twins, [listed("AKIAA", same, "Active"), listed("AKIAB", same, "Inactive")])
    assert [(k["AccessKeyId"], r.credential_id if r else None) for k, r in both] == [
        ("AKIAA", "access_key_2"),
        ("AKIAB", "access_key_1"),
    ], "same second: the status decides"
    gone = match([first, second], [listed("AKIAFIRST", same)])
    assert [r.credential_id if r else None for _, r in gone] == ["access_key_1"]


def test_a_plan_made_from_the_report_gets_the_key_ids() -> None:
    decision = Decision(
        account="1",
        user="alice",
        kind=Kind.ACCESS_KEY,
        rule="keys",
        action=Action.SKIP,
        reason="access key access_key_1 is 10d old; due in 80d",
        credential_id="access_key_1",
    )
    other = replace(decision, user="bob")
    password = replace(decision, kind=Kind.LOGIN_PROFILE, credential_id="alice", reason="x")
    plan = Plan(decisions=(decision, other, password))
    renamed = named(plan, {"alice": {"access_key_1": "AKIAFIRST"}})
    assert renamed is not None
    first, bobs, unchanged = renamed
    assert first.credential_id == "AKIAFIRST"
    assert first.reason == "access key AKIAFIRST is 10d old; due in 80d"
    assert bobs == other, "bob's keys were not renamed"
    assert unchanged == password
    assert named(None, {}) is None
