"""Bedrock long-term API keys and every service IAM makes service-specific credentials for,
against the in-memory IAM twin (moto does not implement these calls): the twin's expiry
and per-service limit, the rule's options, and whole sweeps that renew a key before it
expires and delete expired ones."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import TypeAdapter, ValidationError

from rotator.journal import MemoryJournal
from rotator.kinds import AnyRule
from rotator.kinds.service_credential import SERVICES, ServiceCredentialRule
from rotator.model import Action, Status
from rotator.testing import MemoryIam
from tests.kinds.test_engine_memory import audit_file, journal, read, rule, sink, steps, sweep, twin

__all__ = ["audit_file", "journal", "twin"]  # fixtures

BEDROCK = "bedrock.amazonaws.com"
RULES: TypeAdapter[Any] = TypeAdapter(AnyRule)


def bedrock_rule(tmp: Path, **extra: Any) -> dict[str, Any]:
    return rule("service-credential", tmp, service=BEDROCK, **extra)


async def bedrock_key(twin: MemoryIam, user: str, days: int | None = 30) -> dict[str, Any]:
    extra = {} if days is None else {"CredentialAgeDays": days}
    made = await twin.create_service_specific_credential(
        UserName=user, ServiceName=BEDROCK, **extra
    )
    return made["ServiceSpecificCredential"]  # type: ignore[no-any-return]


def shift(twin: MemoryIam, user: str, days: int) -> None:
    """Move every service credential of ``user`` ``days`` into the past."""
    for cred in twin.users[user].service_credentials:
        cred.created -= timedelta(days=days)
        if cred.expires is not None:
            cred.expires -= timedelta(days=days)


# -- the twin ------------------------------------------------------------------------------


async def test_the_twin_gives_bedrock_keys_an_alias_a_secret_and_an_expiry(
    twin: MemoryIam,
) -> None:
    await twin.create_user(UserName="dev")
    made = await bedrock_key(twin, "dev", 30)
    assert made["ServiceCredentialAlias"].startswith("BedrockAPIKey-")
    assert made["ServiceCredentialSecret"] and "ServicePassword" not in made
    assert made["ExpirationDate"] - made["CreateDate"] == timedelta(days=30)
    assert made["Status"] == "Active"
    forever = await bedrock_key(twin, "dev", None)
    assert "ExpirationDate" not in forever
    shift(twin, "dev", 31)
    listed = (await twin.list_service_specific_credentials(UserName="dev", ServiceName=BEDROCK))[
        "ServiceSpecificCredentials"
    ]
    statuses = {c["ServiceSpecificCredentialId"]: c["Status"] for c in listed}
    assert statuses == {
        made["ServiceSpecificCredentialId"]: "Expired",
        forever["ServiceSpecificCredentialId"]: "Active",
    }
    assert all("ServiceCredentialSecret" not in c for c in listed)


async def test_the_twin_keeps_two_per_service_expired_ones_included(twin: MemoryIam) -> None:
    await twin.create_user(UserName="dev")
    await bedrock_key(twin, "dev", 1)
    await bedrock_key(twin, "dev", 1)
    shift(twin, "dev", 2)  # both expired: they still hold their places
    with pytest.raises(ClientError) as caught:
        await bedrock_key(twin, "dev", 1)
    assert caught.value.response["Error"]["Code"] == "LimitExceeded"
    for service in SERVICES[:2]:  # another service has its own two
        await twin.create_service_specific_credential(UserName="dev", ServiceName=service)


@pytest.mark.parametrize(
    ("service", "days"),
    [(BEDROCK, 0), (BEDROCK, 36601), ("codecommit.amazonaws.com", 30)],
)
async def test_the_twin_refuses_a_credential_age_iam_refuses(
    twin: MemoryIam, service: str, days: int
) -> None:
    await twin.create_user(UserName="dev")
    with pytest.raises(ClientError) as caught:
        await twin.create_service_specific_credential(
            UserName="dev", ServiceName=service, CredentialAgeDays=days
        )
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert twin.users["dev"].service_credentials == []


# -- the rule ------------------------------------------------------------------------------


def test_every_service_iam_supports_is_accepted_and_no_other(tmp_path: Path) -> None:
    assert SERVICES == (
        "codecommit.amazonaws.com",
        "cassandra.amazonaws.com",
        "bedrock.amazonaws.com",
    )
    for service in SERVICES:
        found = RULES.validate_python(rule("service-credential", tmp_path, service=service))
        assert isinstance(found, ServiceCredentialRule)
        assert found.slot == service
    with pytest.raises(ValidationError):
        RULES.validate_python(rule("service-credential", tmp_path, service="s3.amazonaws.com"))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"credential_age": 0}, "greater than or equal to 1"),
        ({"credential_age": 36601}, "less than or equal to 36600"),
        ({"credential_age": 10, "renew_before": "10d"}, "must be shorter than credential_age"),
    ],
)
def test_bedrock_options_are_bounded(tmp_path: Path, extra: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        RULES.validate_python(bedrock_rule(tmp_path, **extra))


def test_only_bedrock_takes_a_credential_age(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="only Bedrock API keys"):
        RULES.validate_python(
            rule(
                "service-credential", tmp_path, service="cassandra.amazonaws.com", credential_age=9
            )
        )


def test_the_renewal_window_defaults_to_a_week_or_a_quarter_of_the_age(tmp_path: Path) -> None:
    def window(**extra: Any) -> timedelta | None:
        found = RULES.validate_python(bedrock_rule(tmp_path, **extra))
        assert isinstance(found, ServiceCredentialRule)
        return found.renew_window

    assert window(credential_age=90) == timedelta(days=7)
    assert window(credential_age=8) == timedelta(days=2)
    assert window() == timedelta(days=7)
    assert window(credential_age=90, renew_before="20d") == timedelta(days=20)
    assert RULES.validate_python(bedrock_rule(tmp_path, credential_age=36600)).credential_age


# -- whole sweeps --------------------------------------------------------------------------


async def test_a_bedrock_key_is_renewed_before_it_expires_with_the_rules_age(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    await twin.create_user(UserName="dev")
    old = await bedrock_key(twin, "dev", 30)
    rules = [bedrock_rule(tmp_path, credential_age=30, renew_before="5d", max_age="3650d")]
    shift(twin, "dev", 20)  # expires in 10 days: not yet due
    first = await sweep(twin, rules, journal)
    [decision] = [r.decision for r in first.reports]
    assert decision.action is Action.SKIP
    assert "expires" in decision.reason and "renew_before 5d" in decision.reason
    shift(twin, "dev", 6)  # expires in 4 days: due
    result = await sweep(twin, rules, journal)
    assert result.ok, result.as_dict()
    assert steps(result, "dev") == [
        ("create", "done"),
        ("verify", "done"),
        ("promote", "done"),
        ("deactivate", "done"),
        ("delete", "done"),
    ]
    (new,) = twin.users["dev"].service_credentials
    assert new.credential_id != old["ServiceSpecificCredentialId"]
    assert new.expires is not None and new.expires - new.created == timedelta(days=30)
    doc = sink(tmp_path, "dev", "service-credential", BEDROCK)
    assert doc["current"]["Secret"] == new.password
    assert doc["current"]["ServiceCredentialAlias"] == new.service_user
    assert doc["current"]["ExpirationDate"] == new.expires.isoformat()
    again = await sweep(twin, rules, journal)
    assert [r.decision.action for r in again.reports] == [Action.SKIP]
    log = read(audit_file)
    assert new.password not in log and old["ServiceCredentialSecret"] not in log


async def test_an_expired_bedrock_key_is_deleted_by_a_delete_expired_rule(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    await twin.create_user(UserName="dev")
    expired = (await bedrock_key(twin, "dev", 10))["ServiceSpecificCredentialId"]
    shift(twin, "dev", 11)
    live = (await bedrock_key(twin, "dev", 30))["ServiceSpecificCredentialId"]
    keep = [bedrock_rule(tmp_path, credential_age=30)]
    kept = await sweep(twin, keep, journal)  # without delete_expired: left alone
    assert [r.decision.action for r in kept.reports] == [Action.SKIP]
    assert len(twin.users["dev"].service_credentials) == 2
    clean = [bedrock_rule(tmp_path, credential_age=30, delete_expired=True)]
    result = await sweep(twin, clean, journal)
    assert result.ok, result.as_dict()
    [report] = result.reports
    assert report.decision.action is Action.DISABLE
    assert report.decision.credential_id == expired
    assert "expired on" in report.decision.reason and "(delete_expired)" in report.decision.reason
    assert [(c.credential_id, c.status) for c in twin.users["dev"].service_credentials] == [
        (live, "Active")
    ]
    events = [line for line in read(audit_file).splitlines() if '"step": "disable"' in line]
    assert len(events) == 1 and expired in events[0]
    after = await sweep(twin, clean, journal)
    assert [r.decision.action for r in after.reports] == [Action.SKIP]


async def test_an_expired_key_makes_room_for_the_rotation_of_the_live_one(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path
) -> None:
    await twin.create_user(UserName="dev")
    await bedrock_key(twin, "dev", 10)
    shift(twin, "dev", 11)  # expired, still holding a place
    await bedrock_key(twin, "dev", 30)
    shift(twin, "dev", 28)  # the live one expires in 2 days
    rules = [bedrock_rule(tmp_path, credential_age=30)]
    result = await sweep(twin, rules, journal)
    assert result.ok, result.as_dict()
    (new,) = twin.users["dev"].service_credentials
    assert new.status_at(twin.clock()) == "Active"
    listed = await twin.list_service_specific_credentials(UserName="dev")
    assert [Status(c["Status"]) for c in listed["ServiceSpecificCredentials"]] == [Status.ACTIVE]


# -- the report ----------------------------------------------------------------------------


async def test_report_lists_expired_keys_and_what_a_delete_expired_rule_does(
    twin: MemoryIam, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rotator import app
    from rotator.entrypoints import cli_report
    from rotator.settings import Config
    from rotator.testing import MemoryAws

    await twin.create_user(UserName="dev")
    await twin.create_user(UserName="ops")
    expired = (await bedrock_key(twin, "dev", 10))["ServiceSpecificCredentialId"]
    shift(twin, "dev", 11)
    await bedrock_key(twin, "dev", 30)
    await bedrock_key(twin, "ops", 30)
    monkeypatch.setattr(app, "make_aws", lambda config: MemoryAws(twin))

    def config(**extra: Any) -> Config:
        return Config(
            journal={"url": "memory://"},  # type: ignore[arg-type]
            rules=[bedrock_rule(tmp_path, credential_age=30, **extra)],  # type: ignore[list-item]
        )

    report = await cli_report.build(config())
    [row] = report.expired
    assert (row.user, row.service, row.credential_id) == ("dev", BEDROCK, expired)
    assert row.action == "none" and "delete_expired" in row.reason
    (listed,) = report.as_dict()["expired_service_credentials"]  # written as it is read
    assert listed["credential_id"] == expired
    cleaning = await cli_report.build(config(delete_expired=True))
    [row] = cleaning.expired
    assert row.action == "disable" and "expired on" in row.reason
    assert len(twin.users["dev"].service_credentials) == 2  # a report changes nothing
