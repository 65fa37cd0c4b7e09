"""CIS verdicts: the same outcome the AWS Config rules and Prowler's checks give (whole
days, strictly more than the limit), for each situation, and joined with the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.benchmarks_cis import Check, benchmark
from rotator.compliance import Verdict, evaluate, one_active_key, rotated, unused
from rotator.model import Action, Credential, Decision, Holder, Inventory, Kind, Plan, Status

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PASS, FAIL, NA = Verdict.PASS, Verdict.FAIL, Verdict.NOT_APPLICABLE
UNUSED, ONE_KEY, ROTATED = Check.UNUSED, Check.ONE_ACTIVE_KEY, Check.ROTATED
V4 = benchmark("cis-v4.0")


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
        benchmark=V4,
    )
    rows = {(r.user, r.credential_id): r for r in report.rows}
    old = rows[("alice", "AKIAOLD")]
    assert old.verdicts == {UNUSED: PASS, ONE_KEY: PASS, ROTATED: FAIL}
    assert (old.action, old.age_days) == ("rotate", 120)
    assert "120d old" in old.reason
    password = rows[("alice", "alice")]
    assert password.verdicts == {UNUSED: FAIL, ONE_KEY: NA, ROTATED: NA}
    assert password.action == "none" and "no rule" in password.reason
    assert FAIL not in rows[("bob", "AKIABOB")].verdicts.values()
    assert report.failures() == {"1.12": 1, "1.13": 0, "1.14": 1, "1.19": 1}
    data = report.as_dict()
    credentials = list(data["credentials"])
    assert credentials[0]["user"] == "alice", "sorted by user"
    assert credentials[0]["cis_1.14"] == "fail"
    assert credentials[0]["security_hub"] == {"IAM.8": "pass", "IAM.22": "pass", "IAM.3": "fail"}
    assert list(data["server_certificates"]) == [
        {
            "name": "www",
            "expires": "2025-05-31T12:00:00Z",
            "cis_1.19": "fail",
            "security_hub": {"IAM.26": "fail"},
        }
    ]
    assert (data["schema_version"], data["kind"], data["benchmark"]) == (1, "report", "cis-v4.0")
    assert data["generated_at"] == "2025-06-01T12:00:00Z"


def two_keys(user: str, *, active: bool = True) -> Holder:
    return Holder(
        account="1",
        name=user,
        arn=f"arn:{user}",
        credentials=(key(f"{user}-A"), key(f"{user}-B", active=active)),
    )


def test_one_active_key_is_counted_per_user_not_per_key() -> None:
    """Two users with two active keys each are two failures, not four; a user with one
    of two keys inactive passes."""
    holders = (two_keys("ann"), two_keys("ben"), two_keys("cid", active=False))
    report = evaluate(Inventory(account="1", holders=holders), None, [], NOW, benchmark=V4)
    failing = [r.credential_id for r in report.rows if r.verdicts[ONE_KEY] is FAIL]
    assert failing == ["ann-A", "ann-B", "ben-A", "ben-B"], "shown on each of the user's keys"
    assert report.failures()["1.13"] == 2


@pytest.mark.parametrize(
    ("name", "failures"),
    [
        ("cis-v1.4", {"1.12": 0, "1.13": 1, "1.14": 1, "1.19": 1}),
        ("cis-v3.0", {"1.12": 0, "1.13": 1, "1.14": 1, "1.19": 1}),
        ("cis-v4.0", {"1.12": 0, "1.13": 1, "1.14": 1, "1.19": 1}),
        ("cis-v5.0", {"1.11": 0, "1.12": 1, "1.13": 1, "1.18": 1}),
        ("cis-v6.0", {"2.11": 0, "2.12": 1, "2.13": 1, "2.18": 1}),
        ("cis-v7", {"2.11": 0, "2.12": 1, "2.17": 1}),  # no one-active-key control
    ],
)
def test_each_benchmark_numbers_the_same_verdicts_its_own_way(
    name: str, failures: dict[str, int]
) -> None:
    old = Holder(
        account="1",
        name="old",
        arn="arn:old",
        credentials=(key("OLD-A", age=days(120), used=days(1)), key("OLD-B", used=days(1))),
    )
    certificate = Credential(
        kind=Kind.SERVER_CERTIFICATE,
        credential_id="www",
        status=Status.ACTIVE,
        created=NOW - days(400),
        expires=NOW - days(10),
    )
    report = evaluate(
        Inventory(account="1", holders=(old,)), None, [certificate], NOW, benchmark=benchmark(name)
    )
    assert report.failures() == failures
    row = next(iter(report.as_dict()["credentials"]))
    assert {k for k in row if k.startswith("cis_")} == {
        f"cis_{n}" for n in failures if n not in ("1.19", "1.18", "2.18", "2.17")
    }
    assert report.certificates[0].when(NOW) == "expired 10d ago"


def test_an_unknown_benchmark_names_the_versions_there_are() -> None:
    with pytest.raises(ValueError, match=r"cis-v1\.4, .*cis-v7\.0"):
        benchmark("cis-v8")
    assert benchmark("CIS-V5").name == "cis-v5.0"
    assert benchmark("cis-v1.5").name == "cis-v1.5"


def test_a_keys_row_shows_only_the_plans_decision_about_that_key() -> None:
    """The plan rotates AKIAOLD and deletes the inactive AKIAGONE first: each row says its
    own part. Bob's block names AKIABOB2: his other key's row does not claim it."""
    alice = Holder(
        account="1",
        name="alice",
        arn="arn:alice",
        credentials=(
            key("AKIAOLD", age=days(120), used=days(1)),
            key("AKIAGONE", active=False),
        ),
    )
    bob = Holder(
        account="1",
        name="bob",
        arn="arn:bob",
        credentials=(key("AKIABOB1", used=days(1)), key("AKIABOB2", used=days(1))),
    )
    decisions = (
        Decision(
            account="1",
            user="alice",
            kind=Kind.ACCESS_KEY,
            rule="keys",
            action=Action.ROTATE,
            reason="access key AKIAOLD is 120d old",
            credential_id="AKIAOLD",
            delete_first="AKIAGONE",
        ),
        Decision(
            account="1",
            user="bob",
            kind=Kind.ACCESS_KEY,
            rule="keys",
            action=Action.BLOCK,
            reason="2 active access keys",
            credential_id="AKIABOB2",
        ),
    )
    report = evaluate(
        Inventory(account="1", holders=(alice, bob)), Plan(decisions=decisions), [], NOW
    )
    shown = {r.credential_id: (r.action, r.reason) for r in report.rows}
    assert shown["AKIAOLD"] == ("rotate", "access key AKIAOLD is 120d old")
    assert shown["AKIAGONE"][0] == "delete" and "AKIAOLD" in shown["AKIAGONE"][1]
    assert shown["AKIABOB2"] == ("block", "2 active access keys")
    assert shown["AKIABOB1"][0] == "none", "the block names the other key"
    assert "AKIABOB2" in shown["AKIABOB1"][1]
