"""Whole sweeps of the real engine against the in-memory IAM twin (``MemoryAws``): what moto
cannot show — service-specific credentials, a password policy IAM enforces (including
re-use), ``EntityTemporarilyUnmodifiable`` — and calls applied by IAM whose answer was
lost (the connection dropped), which the next attempt must repair without losing a secret
or making a second credential."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError
from cryptography.hazmat.primitives import serialization

from rotator import audit, compliance, credential_report, passwords
from rotator.journal import MemoryJournal
from rotator.model import Action, Credential, Kind, Outcome, RotationState, Status, utcnow
from rotator.rotation.engine import Engine
from rotator.rotation.report import Result, SweepResult
from rotator.settings import Config, RetrySettings, VerifySettings
from rotator.testing import MemoryAws, MemoryIam
from tests.support.oidc import ca as oidc_ca
from tests.support.oidc import oidc_server
from tests.support.oidc import thumbprint as oidc_thumbprint

CODECOMMIT = "codecommit.amazonaws.com"
START = "Start-Pass1!" + "x" * 10


def file_sink(tmp: Path) -> dict[str, str]:
    return {"type": "file", "path": f"{tmp}/secrets/{{user}}/{{kind}}{{slot}}.json"}


def rule(kind: str, tmp: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": kind,
        "kind": kind,
        "max_age": "30d",
        "deactivate_after": "0s",
        "delete_after": "0s",
        "sink": file_sink(tmp),
        **extra,
    }


def engine(twin: MemoryIam, rules: list[dict[str, Any]], journal: MemoryJournal) -> Engine:
    config = Config(
        rules=rules,  # type: ignore[arg-type]
        retry=RetrySettings(attempts=3, initial_delay=timedelta(0)),
        verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
    )
    return Engine(config=config, journal=journal, aws=MemoryAws(twin))


async def sweep(
    twin: MemoryIam, rules: list[dict[str, Any]], journal: MemoryJournal
) -> SweepResult:
    return await engine(twin, rules, journal).sweep()


def read(path: Path) -> str:
    return path.read_text()


def sink(tmp: Path, user: str, kind: str, slot: str = "") -> Any:
    return json.loads((tmp / "secrets" / user / f"{kind}{slot}.json").read_text())


def age(twin: MemoryIam, user: str, days: int) -> None:
    """Backdate every credential of ``user`` by ``days``."""
    u, delta = twin.users[user], timedelta(days=days)
    u.created -= delta
    for key in u.keys:
        key.created -= delta
    for ssh in u.ssh_keys:
        ssh.uploaded -= delta
    for cred in u.service_credentials:
        cred.created -= delta
    if u.profile is not None:
        u.profile.created -= delta
        u.profile.changed -= delta


def drop_after(twin: MemoryIam, method: str, times: int = 1) -> list[int]:
    """The next ``times`` calls of ``method`` are applied, then the connection drops (the
    caller never sees the answer). Returns a list that counts the drops."""
    original: Callable[..., Any] = getattr(twin, method)
    dropped: list[int] = []

    async def call(**kwargs: Any) -> Any:
        answer = await original(**kwargs)
        if len(dropped) < times:
            dropped.append(1)
            raise ConnectionClosedError(endpoint_url="memory://iam")
        return answer

    setattr(twin, method, call)
    return dropped


@pytest.fixture
def twin() -> MemoryIam:
    return MemoryIam()


@pytest.fixture
def journal() -> MemoryJournal:
    return MemoryJournal()


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    audit.configure(stream="none", file=path)
    return path


def steps(result: SweepResult, user: str) -> list[tuple[str, str]]:
    return [
        (str(s.step), str(s.outcome))
        for r in result.reports
        if r.decision.user == user
        for s in r.steps
    ]


# -- service-specific credentials --------------------------------------------------------


async def test_a_service_credential_is_rotated_through_the_two_slot_protocol(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    await twin.create_user(UserName="dev")
    old = (await twin.create_service_specific_credential(UserName="dev", ServiceName=CODECOMMIT))[
        "ServiceSpecificCredential"
    ]
    age(twin, "dev", 100)
    rules = [rule("service-credential", tmp_path, service=CODECOMMIT)]
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
    doc = sink(tmp_path, "dev", "service-credential", CODECOMMIT)
    assert doc["current"]["ServicePassword"] == new.password
    assert doc["current"]["ServiceUserName"] == "dev-at-123456789012"
    assert doc["previous"] is None and doc["pending"] is None
    again = await sweep(twin, rules, journal)
    assert [r.decision.action for r in again.reports] == [Action.SKIP]
    log = read(audit_file)
    assert new.password not in log and old["ServicePassword"] not in log


async def test_a_service_credential_created_but_unanswered_is_deleted_as_an_orphan(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path
) -> None:
    await twin.create_user(UserName="dev")
    await twin.create_service_specific_credential(UserName="dev", ServiceName=CODECOMMIT)
    age(twin, "dev", 100)
    dropped = drop_after(twin, "create_service_specific_credential")
    result = await sweep(twin, [rule("service-credential", tmp_path, service=CODECOMMIT)], journal)
    assert dropped == [1]
    assert result.ok, result.as_dict()
    (new,) = twin.users["dev"].service_credentials
    assert (
        sink(tmp_path, "dev", "service-credential", CODECOMMIT)["current"][
            "ServiceSpecificCredentialId"
        ]
        == new.credential_id
    )
    (create,) = [s for r in result.reports for s in r.steps if s.step == "create"]
    assert "deleted orphan" in create.reason
    assert twin.calls["CreateServiceSpecificCredential"] == 1 + 2, "seeded, dropped, made"
    assert twin.calls["DeleteServiceSpecificCredential"] == 2  # the orphan and the old one


# -- console passwords -------------------------------------------------------------------


async def test_a_password_applied_but_unanswered_is_reapplied_not_replaced(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    """The crash rule: the pending password is stored first; the retry applies the SAME
    password, which IAM's re-use prevention refuses: that means it was applied."""
    await twin.create_user(UserName="ops")
    await twin.create_login_profile(UserName="ops", Password=START)
    await twin.update_account_password_policy(
        MinimumPasswordLength=16,
        RequireSymbols=True,
        RequireNumbers=True,
        PasswordReusePrevention=5,
    )
    age(twin, "ops", 100)
    dropped = drop_after(twin, "update_login_profile")
    result = await sweep(twin, [rule("login-profile", tmp_path)], journal)
    assert dropped == [1]
    assert result.ok, result.as_dict()
    assert steps(result, "ops") == [("create", "done"), ("verify", "done"), ("promote", "done")]
    profile = twin.users["ops"].profile
    assert profile is not None
    doc = sink(tmp_path, "ops", "login-profile")
    assert doc["current"]["Password"] == profile.password
    assert profile.history == [START, profile.password], "one new password, applied once"
    assert profile.reset_required is True
    assert twin.calls["UpdateLoginProfile"] == 2
    (record,) = await journal.list_rotations(limit=10)
    assert record.state is RotationState.COMPLETED
    assert record.new_credential_id == doc["current"]["CredentialId"]
    assert str(record.new_credential_id).startswith("pw-") and record.old_credential_id is None
    assert profile.password not in read(audit_file)
    again = await sweep(twin, [rule("login-profile", tmp_path)], journal)
    assert [r.decision.action for r in again.reports] == [Action.SKIP], "changed just now"


async def test_entity_temporarily_unmodifiable_is_retried(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path
) -> None:
    await twin.create_user(UserName="ops")
    await twin.create_login_profile(UserName="ops", Password=START)
    age(twin, "ops", 100)
    twin.fail_next("UpdateLoginProfile", "EntityTemporarilyUnmodifiable", status=409)
    result = await sweep(
        twin, [rule("login-profile", tmp_path, password_reset_required=False)], journal
    )
    assert result.ok, result.as_dict()
    profile = twin.users["ops"].profile
    assert profile is not None and profile.password != START
    assert profile.reset_required is False
    assert passwords.problems(profile.password, passwords.PasswordPolicy()) == []


async def test_an_impossible_password_policy_fails_the_rotation_with_a_clear_reason(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path
) -> None:
    await twin.create_user(UserName="ops")
    await twin.create_login_profile(UserName="ops", Password=START)
    twin.password_policy = {"MinimumPasswordLength": 200, "RequireSymbols": True}
    age(twin, "ops", 100)
    result = await sweep(twin, [rule("login-profile", tmp_path)], journal)
    (report,) = result.reports
    assert report.result is Result.FAILED
    assert "at least 200 characters, more than IAM's maximum of 128" in report.reason
    assert twin.users["ops"].profile is not None
    assert twin.users["ops"].profile.password == START


async def test_a_user_without_console_access_is_skipped_not_failed(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path
) -> None:
    await twin.create_user(UserName="robot")
    result = await sweep(twin, [rule("login-profile", tmp_path)], journal)
    assert result.ok
    (report,) = result.reports
    assert report.decision.action is Action.SKIP
    assert report.reason == "no console password"


# -- SSH public keys ---------------------------------------------------------------------


async def test_an_ssh_key_uploaded_but_unanswered_is_adopted(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    from rotator.kinds.ssh_public_key import key_pair

    await twin.create_user(UserName="git")
    _, public, _ = key_pair(2048)
    old = (await twin.upload_ssh_public_key(UserName="git", SSHPublicKeyBody=public))[
        "SSHPublicKey"
    ]
    age(twin, "git", 100)
    dropped = drop_after(twin, "upload_ssh_public_key")
    result = await sweep(twin, [rule("ssh-public-key", tmp_path, key_size=2048)], journal)
    assert dropped == [1]
    assert result.ok, result.as_dict()
    (create,) = [s for r in result.reports for s in r.steps if s.step == "create"]
    assert create.outcome is Outcome.ALREADY_DONE and "adopted" in create.reason
    (key,) = twin.users["git"].ssh_keys
    assert key.key_id != old["SSHPublicKeyId"]
    doc = sink(tmp_path, "git", "ssh-public-key")
    private = serialization.load_ssh_private_key(doc["current"]["PrivateKey"].encode(), None)
    derived = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert derived.decode().split()[:2] == key.body.split()[:2], "the sink's key opens IAM's"
    assert doc["current"]["CredentialId"] == key.key_id
    log = read(audit_file)
    for line in doc["current"]["PrivateKey"].splitlines()[1:-1]:
        assert line not in log


# -- unused credentials, through the credential report -----------------------------------


async def test_unused_access_keys_are_disabled_and_used_ones_kept(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    now = utcnow()
    ids = {}
    for user in ("idle", "stale", "busy", "fresh", "other"):
        await twin.create_user(UserName=user)
        ids[user] = (await twin.create_access_key(UserName=user))["AccessKey"]["AccessKeyId"]
    for user in ("idle", "stale", "busy"):
        age(twin, user, 60)
    twin.use_access_key(ids["stale"], now - timedelta(days=50))
    twin.use_access_key(ids["busy"], now - timedelta(days=1))
    rules = [rule("access-key", tmp_path, max_age="365d", disable_unused_after="45d")]
    result = await engine(twin, rules, journal).sweep()
    disabled = {r.decision.user: r for r in result.reports if r.decision.action is Action.DISABLE}
    assert set(disabled) == {"idle", "stale"}
    assert "never used" in disabled["idle"].reason
    assert f"last used {now - timedelta(days=50):%Y-%m-%d}" in disabled["stale"].reason
    statuses = {u: twin.users[u].keys[0].status for u in ids}
    assert statuses == {
        "idle": "Inactive",
        "stale": "Inactive",
        "busy": "Active",
        "fresh": "Active",
        "other": "Active",
    }
    events = [json.loads(line) for line in read(audit_file).splitlines()]
    done = [e for e in events if e.get("step") == "disable"]
    assert {(e["user"], e["outcome"], e["credential_id"]) for e in done} == {
        ("idle", "done", ids["idle"]),
        ("stale", "done", ids["stale"]),
    }
    assert twin.calls["GetCredentialReport"] >= 1, "five users: the report is cheaper"
    assert twin.calls["ListAccessKeys"] == 2, "listed per user: only the two it disabled"
    assert twin.calls["GetAccessKeyLastUsed"] == 2


# -- OIDC provider thumbprints -----------------------------------------------------------


async def test_oidc_thumbprints_follow_the_served_chain_on_a_controlled_clock(
    twin: MemoryIam, journal: MemoryJournal, tmp_path: Path, audit_file: Path
) -> None:
    """A provider moves to a new intermediate: a sweep adds its thumbprint beside the old
    one (the answer to the update is lost once: the retry adopts it); sweeps before
    ``retire_after`` keep the old one; the first sweep after removes it."""
    now = [utcnow()]
    with oidc_server(tmp_path) as server:
        old = oidc_thumbprint(server.intermediate)
        arn = (
            await twin.create_open_id_connect_provider(
                Url=f"https://{server.url}", ThumbprintList=[old]
            )
        )["OpenIDConnectProviderArn"]
        rules = [
            {
                "name": "oidc",
                "kind": "oidc-thumbprint",
                "retire_after": "3d",
                "ca_bundle": str(server.ca_bundle),
                "select": {"names": ["127.0.0.1:*"]},
                "sink": file_sink(tmp_path),
            }
        ]
        config = Config(
            rules=rules,  # type: ignore[arg-type]
            retry=RetrySettings(attempts=3, initial_delay=timedelta(0)),
            verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
        )

        async def sweep_at(days: float) -> SweepResult:
            now[0] += timedelta(days=days)
            return await Engine(
                config=config, journal=journal, aws=MemoryAws(twin), clock=lambda: now[0]
            ).sweep()

        def held() -> list[str]:
            return twin.oidc_providers[arn].thumbprints

        first = await sweep_at(1)
        assert [r.decision.action for r in first.reports] == [Action.SKIP]
        newer = oidc_ca("Test OIDC Intermediate 2", server.root)
        server.use(newer)
        new = oidc_thumbprint(newer)
        dropped = drop_after(twin, "update_open_id_connect_provider_thumbprint")
        added = await sweep_at(1)
        assert dropped == [1], "the first answer was lost"
        assert added.ok and held() == [old, new]
        assert steps(added, server.url) == [
            ("create", "already-done"),  # the retry found it added and adopted it
            ("verify", "done"),
            ("promote", "done"),
            ("deactivate", "already-done"),  # the old one matches no chain served
        ]
        for _ in range(2):
            kept = await sweep_at(1)
            assert held() == [old, new], "kept until retire_after"
        assert [r.decision.action for r in kept.reports] == [Action.WAIT]
        retired = await sweep_at(1.5)
        assert retired.ok and held() == [new]
        (rotation,) = await journal.list_rotations(limit=10)
        assert rotation.state is RotationState.COMPLETED
        assert (rotation.old_credential_id, rotation.new_credential_id) == (old, new)
        (after,) = (await sweep_at(1)).reports
        assert after.decision.action is Action.SKIP


# -- compliance deadlines ----------------------------------------------------------------


async def test_with_a_deadline_no_key_is_ever_active_past_it_over_simulated_months(
    journal: MemoryJournal, tmp_path: Path, audit_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deadline 90d, deactivate_after 7d, daily sweeps at 03:00 on a controlled clock for
    300 days: every old key is inactive before it is 90 days old, so CIS 1.14 passes every
    day; and each key was rotated at a computed age of at most 83 days minus the margin."""
    # Each simulated day needs a new credential report: poll for it without real waits.
    monkeypatch.setattr(credential_report, "delays", lambda *_: itertools.repeat(0.0))
    now = [datetime(2026, 1, 1, 3, 0, tzinfo=UTC)]
    twin = MemoryIam(clock=lambda: now[0])
    for user, age_days in (("fresh", 0), ("month", 30), ("older", 60), ("nearly", 80)):
        await twin.create_user(UserName=user)
        await twin.create_access_key(UserName=user)
        twin.users[user].keys[0].created -= timedelta(days=age_days)
    rules = [
        rule(
            "access-key",
            tmp_path,
            max_age="365d",
            deadline="90d",
            deactivate_after="7d",
            delete_after="7d",
            schedule="0 3 * * *",
        )
    ]
    config = Config(
        rules=rules,  # type: ignore[arg-type]
        retry=RetrySettings(attempts=3, initial_delay=timedelta(0)),
        verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
    )
    (checked,) = config.rules
    assert checked.start_age is not None
    assert checked.start_age <= timedelta(days=83) - checked.deadline_margin
    rotated_at: list[timedelta] = []
    for _ in range(300):
        result = await Engine(
            config=config, journal=journal, aws=MemoryAws(twin), clock=lambda: now[0]
        ).sweep()
        assert result.ok, [r.as_dict() for r in result.reports if not r.ok]
        for report in result.reports:
            if report.decision.action is Action.ROTATE:
                (old,) = [
                    k
                    for u in twin.users.values()
                    for k in u.keys
                    if k.key_id == report.decision.credential_id
                ]
                rotated_at.append(now[0] - old.created)
        for user in twin.users.values():
            for key in user.keys:
                cred = Credential(
                    kind=Kind.ACCESS_KEY,
                    credential_id=key.key_id,
                    status=Status(key.status),
                    created=key.created,
                )
                assert not (cred.active and cred.age(now[0]) >= timedelta(days=90)), (
                    f"{user.name}'s {key.key_id} is active at {cred.age(now[0])}"
                )
                assert compliance.rotated(cred, now[0]) is compliance.Verdict.PASS
        now[0] += timedelta(days=1)
    assert len(rotated_at) >= 12, "every user rotated three times or more"
    assert max(rotated_at) <= timedelta(days=83) - timedelta(days=1)


@pytest.mark.parametrize("on_deadline", ["deactivate", "alert"])
async def test_a_held_old_key_is_warned_about_then_handled_at_its_deadline(
    journal: MemoryJournal,
    tmp_path: Path,
    audit_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_deadline: str,
) -> None:
    """A straggler keeps using the old key after the promotion: the deactivation is held;
    within ``deadline_warning`` of the deadline each hold warns (``rotation.deadline``);
    at the deadline the key is deactivated anyway (``on_deadline = "deactivate"``) or
    stays active with an error (``"alert"``)."""
    monkeypatch.setattr(credential_report, "delays", lambda *_: itertools.repeat(0.0))
    now = [datetime(2026, 1, 1, 3, 0, tzinfo=UTC)]
    twin = MemoryIam(clock=lambda: now[0])
    await twin.create_user(UserName="app")
    old = (await twin.create_access_key(UserName="app"))["AccessKey"]["AccessKeyId"]
    twin.users["app"].keys[0].created -= timedelta(days=80)
    created = twin.users["app"].keys[0].created
    rules = [
        rule(
            "access-key",
            tmp_path,
            max_age="365d",
            deadline="90d",
            deadline_warning="3d",
            on_deadline=on_deadline,
            deactivate_after="2d",
            delete_after="7d",
            schedule="0 3 * * *",
        )
    ]
    config = Config(
        rules=rules,  # type: ignore[arg-type]
        retry=RetrySettings(attempts=3, initial_delay=timedelta(0)),
        verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
    )

    def old_key() -> Any:
        return next(k for k in twin.users["app"].keys if k.key_id == old)

    async def events() -> list[dict[str, Any]]:
        text = await asyncio.to_thread(audit_file.read_text)
        return [json.loads(line) for line in text.splitlines()]

    warned: list[timedelta] = []  # the old key's age at each sweep that warned
    for _ in range(14):
        before = len(await events())
        await Engine(
            config=config, journal=journal, aws=MemoryAws(twin), clock=lambda: now[0]
        ).sweep()
        new = (await events())[before:]
        age = now[0] - created
        near = [e for e in new if e["event"] == "rotation.deadline"]
        if near:
            warned.append(age)
            assert all(e["credential_id"] == old for e in near)
        if on_deadline == "deactivate" and age >= timedelta(days=90):
            assert old_key().status == "Inactive", "inactive by the deadline"
        if old_key().status == "Active":
            twin.use_access_key(old, now[0] + timedelta(hours=1))  # the straggler
        now[0] += timedelta(days=1)
    assert warned and min(warned) >= timedelta(days=87), "warned from the lead time on"
    everything = await events()
    if on_deadline == "deactivate":
        assert old_key().status == "Inactive"
        (done,) = [
            e
            for e in everything
            if e["event"] == "rotation.step"
            and e["step"] == "deactivate"
            and e["outcome"] == "done"
        ]
        assert "deactivated although" in done["reason"], done
    else:
        assert old_key().status == "Active", "alert only: the straggler keeps working"
        errors = [e for e in everything if e["event"] == "rotation.deadline"]
        assert any(e["level"] == "error" and "passed" in e["reason"] for e in errors)
