"""The Lambda handler, invoked in-process as Lambda would, against a moto server: a DynamoDB
journal, secrets in SSM. A scheduled event runs one sweep; a ``rotator`` event rotates a
leaked key; a sweep running out of invocation time leaves the rest to the next one; every
error is a JSON result, never a traceback or a secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.entrypoints.lambda_handler import (
    RotateCommand,
    SweepCommand,
    handler,
    parse_event,
)
from rotator.errors import ConfigError, InputError
from rotator.journal import create_table, open_journal
from rotator.model import Rotation, utcnow
from rotator.settings import load_config_text
from tests.support.moto import MotoSandbox
from tests.support.schemas import validate

TABLE = "rotator-journal"
POLICY = """\
max_concurrency = 1

[journal]
url = "{journal}"

[audit]
stream = "none"
file = "{tmp}/audit.jsonl"

[verify]
attempts = 3
initial_delay = "1s"

[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "ssm", name = "/rotator/{{account}}/{{user}}/{{kind}}" }}
"""
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-22T03:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/rotator-sweep"],
    "detail": {},
}


@dataclass
class Context:
    """What the Lambda runtime passes as ``context`` (the parts rotator uses)."""

    remaining_ms: Callable[[], int] = lambda: 900_000
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    calls: list[int] = field(default_factory=list)

    def get_remaining_time_in_millis(self) -> int:
        self.calls.append(1)
        return self.remaining_ms()


@pytest.fixture
def policy(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A policy file bundled with the function (``ROTATOR_CONFIG``), its table created."""
    assert asyncio.run(create_table(TABLE, region=None))
    path = tmp_path / "rotator.toml"
    path.write_text(POLICY.format(journal=f"dynamodb://{TABLE}", tmp=tmp_path))
    monkeypatch.setenv("ROTATOR_CONFIG", str(path))
    return path


def due_user(sandbox: MotoSandbox, name: str) -> dict[str, str]:
    """A /ci/ user whose one key is 100 days old (the policy rotates at 90)."""
    key = sandbox.create_user(name, path="/ci/", keys=1)[0]
    sandbox.age_keys(name, days=100)
    return key


def current_secret(sandbox: MotoSandbox, user: str) -> dict[str, str]:
    name = f"/rotator/{sandbox.account()}/{user}/access-key"
    found = sandbox.client("ssm").get_parameter(Name=name, WithDecryption=True)
    value: dict[str, str] = json.loads(found["Parameter"]["Value"])
    return value


def assert_no_secret(secrets: list[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


def journal_dump(sandbox: MotoSandbox) -> str:
    return json.dumps(sandbox.client("dynamodb").scan(TableName=TABLE)["Items"])


# --- the two events ----------------------------------------------------------------------


def test_a_scheduled_event_runs_one_sweep_and_returns_its_summary(
    policy: Path, sandbox: MotoSandbox
) -> None:
    old = due_user(sandbox, "ci-deployer")
    sandbox.create_user("ci-fresh", path="/ci/", keys=1)

    result = handler(SCHEDULED_EVENT, Context())

    assert json.loads(json.dumps(result)) == result, "JSON-serialisable"
    validate("sweep", result)  # the document of `rotator run --output json`, and mode
    assert (result["mode"], result["ok"], result["complete"], result["deferred"]) == (
        "sweep",
        True,
        True,
        0,
    )
    assert result["counts"]["started"] == 1
    assert result["counts"]["completed"] == 1
    by_user = {r["user"]: r for r in result["results"]}
    assert by_user["ci-deployer"]["state"] == "completed"
    assert by_user["ci-fresh"]["action"] == "skip"
    secret = current_secret(sandbox, "ci-deployer")
    assert list(sandbox.keys("ci-deployer")) == [secret["AccessKeyId"]]
    assert sandbox.caller_arn(secret["AccessKeyId"], secret["SecretAccessKey"]).endswith(
        ":user/ci/ci-deployer"
    )
    assert '"rotation"' in journal_dump(sandbox), "the rotation is journalled in DynamoDB"
    audit = (policy.parent / "audit.jsonl").read_text()
    assert '"event": "sweep.finished"' in audit
    secrets = [old["SecretAccessKey"], secret["SecretAccessKey"]]
    assert_no_secret(secrets, json.dumps(result), audit, journal_dump(sandbox))


def test_an_emergency_event_rotates_a_leaked_key_and_deletes_it(
    policy: Path, sandbox: MotoSandbox
) -> None:
    leaked = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]
    event = {
        "rotator": {
            "action": "rotate",
            "access_key_id": leaked["AccessKeyId"],
            "emergency": True,
            "hold": "0s",
        }
    }

    result = handler(event, Context())

    assert result["ok"] is True, result
    validate("rotation", result)  # the document of `rotator rotate --output json`, and mode
    report = result["result"]
    assert (result["mode"], report["user"], report["state"]) == ("rotate", "ci-app", "completed")
    first = report["steps"][0]
    assert (first["step"], first["outcome"]) == ("deactivate", "done"), "deactivated first"
    assert first["credential_id"] == leaked["AccessKeyId"]
    new = current_secret(sandbox, "ci-app")
    assert sandbox.keys("ci-app") == {new["AccessKeyId"]: "Active"}
    audit = (policy.parent / "audit.jsonl").read_text()
    secrets = [leaked["SecretAccessKey"], new["SecretAccessKey"]]
    assert_no_secret(secrets, json.dumps(result), audit, journal_dump(sandbox))


async def hold_the_rotation(owner: str) -> Rotation:
    """Another worker (a daemon's sweep, say) takes the lease on the one rotation under way."""
    async with open_journal(f"dynamodb://{TABLE}") as journal:
        (rotation,) = await journal.list_active()
        return await journal.acquire(rotation.rotation_id, owner, timedelta(hours=1), utcnow())


async def let_go(rotation: Rotation) -> None:
    async with open_journal(f"dynamodb://{TABLE}") as journal:
        await journal.release(rotation)


def test_an_emergency_on_a_key_being_rotated_waits_no_longer_than_the_invocation_can(
    policy: Path, sandbox: MotoSandbox
) -> None:
    policy.write_text(
        policy.read_text().replace('deactivate_after = "0s"', 'deactivate_after = "7d"')
    )
    leaked = due_user(sandbox, "ci-app")["AccessKeyId"]
    assert handler(SCHEDULED_EVENT, Context())["ok"], "the sweep promotes a new key"
    held = asyncio.run(hold_the_rotation("daemon"))
    event = {"rotator": {"action": "rotate", "access_key_id": leaked, "emergency": True}}

    # 3 s of the invocation are left beyond the 2-minute margin: that is all it waits.
    busy = handler(event, Context(remaining_ms=lambda: 123_000))

    assert (busy["ok"], busy["error"]) == (False, "LeaseLost"), busy
    assert "held by daemon" in busy["message"]
    audit = (policy.parent / "audit.jsonl").read_text()
    assert "waiting up to 0:00:03 for another worker" in audit
    assert sandbox.keys("ci-app")[leaked] == "Active", "not escalated without the lease"

    asyncio.run(let_go(held))
    result = handler(event, Context())

    assert result["ok"] is True, result
    report = validate("rotation", result)["result"]
    assert [(s["step"], s["outcome"]) for s in report["steps"]] == [
        ("deactivate", "done"),
        ("delete", "done"),
    ]
    assert report["rotation_id"] == held.rotation_id, "the sweep's rotation, escalated"
    (new,) = sandbox.keys("ci-app")
    assert new != leaked and current_secret(sandbox, "ci-app")["AccessKeyId"] == new


def test_a_rotate_event_for_a_key_of_no_rule_fails_as_a_result_changing_nothing(
    policy: Path, sandbox: MotoSandbox
) -> None:
    stranger = sandbox.create_user("ops-admin", path="/ops/", keys=1)[0]["AccessKeyId"]

    result = handler({"rotator": {"action": "rotate", "access_key_id": stranger}}, Context())

    assert result["ok"] is False
    assert result["error"] == "InputError"
    assert "no rule" in result["message"]
    assert sandbox.keys("ops-admin") == {stranger: "Active"}


# --- the time budget ---------------------------------------------------------------------


def test_a_sweep_stops_starting_rotations_when_the_remaining_time_falls_below_the_margin(
    policy: Path, sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROTATOR_LAMBDA_MARGIN", "2m")
    for name in ("ci-a", "ci-b", "ci-c"):
        due_user(sandbox, name)
    # Plenty of time before the first rotation; 90 s (under the 2 min margin) afterwards.
    context = Context(remaining_ms=lambda: 600_000 if len(context.calls) <= 1 else 90_000)

    first = handler(SCHEDULED_EVENT, context)

    assert (first["counts"]["started"], first["deferred"], first["complete"]) == (1, 2, False)
    assert first["ok"] is True, "deferred work is not a failure"
    deferred = [r for r in first["results"] if r["outcome"] == "deferred"]
    assert len(deferred) == 2
    assert all(r["state"] is None and r["steps"] == [] for r in deferred)
    assert sum(len(sandbox.keys(u)) for u in ("ci-a", "ci-b", "ci-c")) == 3

    second = handler(SCHEDULED_EVENT, Context())

    assert (second["counts"]["started"], second["deferred"], second["complete"]) == (2, 0, True)


def test_with_less_time_than_the_margin_nothing_is_started(
    policy: Path, sandbox: MotoSandbox
) -> None:
    key = due_user(sandbox, "ci-a")["AccessKeyId"]

    result = handler(SCHEDULED_EVENT, Context(remaining_ms=lambda: 60_000))

    assert (result["counts"]["started"], result["deferred"]) == (0, 1)
    assert sandbox.keys("ci-a") == {key: "Active"}


# --- configuration -----------------------------------------------------------------------


def test_the_policy_can_come_from_an_ssm_parameter(
    policy: Path, sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.client("ssm").put_parameter(
        Name="/rotator/config", Value=policy.read_text(), Type="SecureString"
    )
    monkeypatch.delenv("ROTATOR_CONFIG")
    monkeypatch.setenv("ROTATOR_CONFIG_SSM", "/rotator/config")
    due_user(sandbox, "ci-deployer")

    result = handler(SCHEDULED_EVENT, Context())

    assert result["ok"] is True, result
    assert result["counts"]["completed"] == 1


def test_a_policy_problem_in_the_ssm_parameter_names_the_parameter(
    aws_env: str, sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.client("ssm").put_parameter(
        Name="/rotator/config",
        Value='[[rules]]\nname = "x"\nkind = "access-key"\nmax_age = "9x"\n'
        'sink = { type = "memory" }',
        Type="String",
    )
    monkeypatch.setenv("ROTATOR_CONFIG_SSM", "/rotator/config")

    result = handler(SCHEDULED_EVENT, Context())

    assert (result["ok"], result["error"]) == (False, "ConfigError")
    assert result["message"].startswith("ssm:/rotator/config: ")
    assert "rule 'x': max_age: invalid duration '9x'" in result["message"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "set exactly one of ROTATOR_CONFIG"),
        ({"ROTATOR_CONFIG": "a.toml", "ROTATOR_CONFIG_SSM": "/p"}, "set exactly one of"),
        (
            {"ROTATOR_CONFIG_SSM": "/rotator/missing"},
            "cannot read the parameter: ParameterNotFound",
        ),
        ({"ROTATOR_CONFIG": "/nonexistent/rotator.toml"}, "file not found"),
        ({"ROTATOR_LAMBDA_MARGIN": "soon", "ROTATOR_CONFIG": "a.toml"}, "invalid duration"),
    ],
)
def test_settings_problems_are_config_errors_in_the_result(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = handler(SCHEDULED_EVENT, Context())

    assert (result["ok"], result["error"]) == (False, "ConfigError")
    assert message in result["message"]


def test_a_journal_that_does_not_outlive_the_invocation_is_refused(
    policy: Path, sandbox: MotoSandbox
) -> None:
    policy.write_text(POLICY.format(journal="sqlite:///tmp/rotator-journal.db", tmp=policy.parent))
    key = due_user(sandbox, "ci-a")["AccessKeyId"]

    result = handler(SCHEDULED_EVENT, Context())

    assert (result["ok"], result["error"]) == (False, "ConfigError")
    assert "dynamodb://TABLE journal" in result["message"]
    assert sandbox.keys("ci-a") == {key: "Active"}


def test_a_failure_is_logged_as_one_json_line(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = handler({"rotator": {"action": "explode"}}, Context())

    assert (result["ok"], result["error"]) == (False, "InputError")
    (line,) = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert line["event"] == "lambda.failed"
    assert line["error"] == "InputError"


# --- events ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [SCHEDULED_EVENT, {}, None, {"rotator": {"action": "sweep"}}])
def test_a_schedule_or_a_sweep_command_is_a_sweep(event: Any) -> None:
    assert parse_event(event) == SweepCommand()


def test_a_rotate_command_reads_like_rotator_rotate() -> None:
    command = parse_event(
        {
            "rotator": {
                "action": "rotate",
                "user": "ci-app",
                "credential_id": "AKIA0000000000000001",
                "emergency": True,
                "hold": "1h",
                "dry_run": True,
            }
        }
    )

    assert isinstance(command, RotateCommand)
    assert (command.user, command.emergency, command.hold) == ("ci-app", True, timedelta(hours=1))


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"rotator": {"action": "rotate", "hold": "later"}}, "hold"),
        ({"rotator": {"action": "rotate", "force": True}}, "force"),
        ({"rotator": {}}, "rotator"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_malformed_command_is_an_input_error_naming_the_field(event: Any, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_event(event)


def test_load_config_text_names_its_source() -> None:
    with pytest.raises(ConfigError) as failed:
        load_config_text("max_concurrency = 0\n[[rules]]\n", "ssm:/p")

    assert failed.value.source == "ssm:/p"
    assert any(p.startswith("max_concurrency") for p in failed.value.problems)
