"""CIS verdicts: the same outcome the AWS Config rules and Prowler's checks give (whole
days, strictly more than the limit), for each situation, and joined with the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.compliance import Verdict, evaluate, one_active_key, rotated, unused
from rotator.model import Action, Credential, Decision, Holder, Inventory, Kind, Plan, Status

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PASS, FAIL, NA = Verdict.PASS, Verdict.FAIL, Verdict.NOT_APPLICABLE


def key(
    cid: str = "AKIA1",
    *,
    age: timedelta = timedelta(days=10),
    used: timedelta | None = None,
    active: bool = True,
    kind: Kind = Kind.ACCESS_KEY,
) -> Credential:
    return Credential(
        kind=kind,
        credential_id=cid,
        status=Status.ACTIVE if active else Status.INACTIVE,
        created=NOW - age,
        last_used=NOW - used if used is not None else None,
    )


def days(n: float) -> timedelta:
    return timedelta(days=n)


@pytest.mark.parametrize(
    ("cred", "verdict"),
    [
        (key(used=days(1)), PASS),
        (key(age=days(100), used=days(45)), PASS),  # 45 days: not more than 45
        (key(age=days(100), used=days(45.9)), PASS),  # whole days, like Prowler's .days
        (key(age=days(100), used=days(46)), FAIL),
        (key(age=days(46)), FAIL),  # never used: since creation (AWS Config's rule)
        (key(age=days(44)), PASS),
        (key(age=days(400), used=days(400), active=False), PASS),  # disabled
        (key(kind=Kind.LOGIN_PROFILE, age=days(100), used=days(50)), FAIL),
        (key(kind=Kind.LOGIN_PROFILE, age=days(100), used=days(3)), PASS),
        (key(kind=Kind.LOGIN_PROFILE, age=days(50)), FAIL),
        (key(kind=Kind.SSH_PUBLIC_KEY, age=days(500)), NA),
    ],
)
def test_cis_1_12_credentials_unused_for_more_than_45_days(
    cred: Credential, verdict: Verdict
) -> None:
    assert unused(cred, NOW) is verdict


@pytest.mark.parametrize(
    ("cred", "verdict"),
    [
        (key(age=days(90)), PASS),
        (key(age=days(90.9)), PASS),
        (key(age=days(91)), FAIL),
        (key(age=days(300), active=False), PASS),  # Prowler checks active keys only
        (key(kind=Kind.LOGIN_PROFILE, age=days(300)), NA),
    ],
)
def test_cis_1_14_access_keys_rotated_within_90_days(cred: Credential, verdict: Verdict) -> None:
    assert rotated(cred, NOW) is verdict


@pytest.mark.parametrize(
    ("keys", "verdict"),
    [
        ((key("A"),), PASS),
        ((key("A"), key("B", active=False)), PASS),
        ((key("A"), key("B")), FAIL),
    ],
)
def test_cis_1_13_one_active_access_key(keys: tuple[Credential, ...], verdict: Verdict) -> None:
    holder = Holder(account="1", name="u", arn="arn", credentials=keys)
    assert {one_active_key(holder, k) for k in keys} == {verdict}
    password = key("u", kind=Kind.LOGIN_PROFILE)
    assert one_active_key(holder, password) is NA


def test_the_report_joins_verdicts_with_what_rotator_will_do() -> None:
    alice = Holder(
        account="1",
        name="alice",
        arn="arn:alice",
        credentials=(
            key("AKIAOLD", age=days(120), used=days(1)),
            key("alice", kind=Kind.LOGIN_PROFILE, age=days(60)),
        ),
    )
    bob = Holder(account="1", name="bob", arn="arn:bob", credentials=(key("AKIABOB"),))
    decision = Decision(
        account="1",
        user="alice",
        kind=Kind.ACCESS_KEY,
        rule="keys",
        action=Action.ROTATE,
        reason="access key AKIAOLD is 120d old (max_age 90d)",
        credential_id="AKIAOLD",
    )
    certificate = Credential(
        kind=Kind.SERVER_CERTIFICATE,
        credential_id="www",
        status=Status.ACTIVE,
        created=NOW - days(400),
        expires=NOW - days(1),
    )
    report = evaluate(
        Inventory(account="1", holders=(bob, alice)),
        Plan(decisions=(decision,)),
        [certificate],
        NOW,
        source="test",
    )
    rows = {(r.user, r.credential_id): r for r in report.rows}
    old = rows[("alice", "AKIAOLD")]
    assert old.verdicts == {"1.12": PASS, "1.13": PASS, "1.14": FAIL}
    assert (old.action, old.age_days) == ("rotate", 120)
    assert "120d old" in old.reason
    password = rows[("alice", "alice")]
    assert password.verdicts == {"1.12": FAIL, "1.13": NA, "1.14": NA}
    assert password.action == "none" and "no rule" in password.reason
    assert FAIL not in rows[("bob", "AKIABOB")].verdicts.values()
    assert report.failures() == {"1.12": 1, "1.13": 0, "1.14": 1, "1.19": 1}
    data = report.as_dict()
    assert data["credentials"][0]["user"] == "alice", "sorted by user"
    assert data["server_certificates"] == [
        {"name": "www", "expires": (NOW - days(1)).isoformat(), "cis_1.19": "fail"}
    ]
