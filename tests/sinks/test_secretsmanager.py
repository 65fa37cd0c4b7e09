"""The Secrets Manager sink against a moto server: staging labels after each step, the
value consumers read, creation settings, replays and failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from moto.secretsmanager.models import SecretsManagerBackend

from rotator.aws import Aws, Clients
from rotator.errors import LeaseLost, SinkError, Transient
from rotator.policy import SecretsManagerSinkConfig
from rotator.sinks import SecretsManagerSink, SinkDocument
from rotator.sinks.base import Fence
from rotator.sinks.secretsmanager import version_token
from tests.sinks.test_contract import ALICE, FENCE, access_key, rotate_in, secret_of
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

NAME = "rotator/123456789012/alice/access-key"
EMPTY = "{}"


def make_sink(clients: Clients, **settings: Any) -> SecretsManagerSink:
    config = SecretsManagerSinkConfig(
        type="secretsmanager", name="rotator/{account}/{user}/{kind}", **settings
    )
    return SecretsManagerSink(config, clients)


@pytest.fixture
def sm(sandbox: MotoSandbox) -> Any:
    """A plain boto3 Secrets Manager client on the moto server, to inspect what was stored."""
    return sandbox.client("secretsmanager")


def labels(sm: Any, name: str = NAME) -> dict[str, str]:
    """Each staging label -> the CredentialId of the version holding it ({} if none)."""
    found: dict[str, str] = {}
    for version in sm.list_secret_version_ids(SecretId=name)["Versions"]:
        value = sm.get_secret_value(SecretId=name, VersionId=version["VersionId"])
        holder = json.loads(value["SecretString"]).get("CredentialId", EMPTY)
        for stage in version["VersionStages"]:
            assert stage not in found, f"{stage} is on two versions"
            found[stage] = holder
    return found


async def test_labels_follow_secrets_manager_rotation_step_by_step(
    clients: Clients, sm: Any
) -> None:
    sink = make_sink(clients)
    one, two = access_key(1).credential_id, access_key(2).credential_id

    await sink.put_pending(ALICE, access_key(1), FENCE)
    assert labels(sm) == {"AWSCURRENT": EMPTY, "AWSPENDING": one}

    await sink.promote(ALICE, one, FENCE)
    assert labels(sm) == {"AWSCURRENT": one, "AWSPREVIOUS": EMPTY}

    await sink.put_pending(ALICE, access_key(2), FENCE)
    assert labels(sm) == {"AWSCURRENT": one, "AWSPREVIOUS": EMPTY, "AWSPENDING": two}

    await sink.promote(ALICE, two, FENCE)
    assert labels(sm) == {"AWSCURRENT": two, "AWSPREVIOUS": one}

    await sink.rollback(ALICE, one, FENCE)
    assert labels(sm) == {"AWSCURRENT": one, "AWSPREVIOUS": two}


async def test_consumers_reading_awscurrent_get_the_entry_as_json(
    clients: Clients, sm: Any
) -> None:
    await rotate_in(make_sink(clients), ALICE, access_key(1))

    # AWSCURRENT is Secrets Manager's default stage, but moto (5.2) answers a request
    # without VersionStage from the first version once labels were moved: name the stage.
    value = sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")

    assert value["VersionId"] == version_token(access_key(1), FENCE)
    assert json.loads(value["SecretString"]) == {
        "AccessKeyId": "AKIA0000000000000001",
        "SecretAccessKey": secret_of(1),
        "Kind": "access-key",
        "CredentialId": "AKIA0000000000000001",
        "CreatedAt": "2024-01-01T12:30:00+00:00",
        "RotatorFence": "tests:1",  # the fence of the write that made the version
    }


async def test_a_new_secret_is_tagged_encrypted_with_the_key_and_holds_no_credential(
    clients: Clients, sm: Any
) -> None:
    await make_sink(clients, kms_key_id="alias/rotator").put_pending(ALICE, access_key(1), FENCE)

    described = sm.describe_secret(SecretId=NAME)
    assert described["KmsKeyId"] == "alias/rotator"
    assert {"Key": "managed-by", "Value": "rotator"} in described["Tags"]
    assert sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")["SecretString"] == EMPTY


async def test_storing_the_same_pending_entry_again_adds_no_version(
    clients: Clients, sm: Any
) -> None:
    sink = make_sink(clients)
    for _ in range(3):
        await sink.put_pending(ALICE, access_key(1), FENCE)

    versions = sm.list_secret_version_ids(SecretId=NAME)["Versions"]
    assert len(versions) == 2  # the empty first version and the entry's
    assert version_token(access_key(1), FENCE) in {v["VersionId"] for v in versions}
    assert version_token(access_key(1), FENCE) == version_token(access_key(1), FENCE)
    assert version_token(access_key(1), FENCE) != version_token(
        access_key(1, credential_id=""), FENCE
    )


async def test_the_region_setting_picks_the_region(
    clients: Clients, sm: Any, sandbox: MotoSandbox
) -> None:
    await make_sink(clients, region="eu-west-1").put_pending(ALICE, access_key(1), FENCE)

    assert sm.list_secrets()["SecretList"] == []
    elsewhere = MotoSandbox(sandbox.url, region="eu-west-1").client("secretsmanager")
    assert [s["Name"] for s in elsewhere.list_secrets()["SecretList"]] == [NAME]


async def test_an_existing_secret_without_a_value_gets_an_empty_current_first(
    clients: Clients, sm: Any
) -> None:
    """Secrets Manager makes the first version AWSCURRENT whatever it is asked."""
    sm.create_secret(Name=NAME)
    sink = make_sink(clients)

    await sink.put_pending(ALICE, access_key(1), FENCE)

    assert labels(sm) == {"AWSCURRENT": EMPTY, "AWSPENDING": access_key(1).credential_id}
    assert await sink.read(ALICE) == SinkDocument(pending=access_key(1))


async def test_a_promote_interrupted_between_its_two_calls_is_finished_by_a_replay(
    clients: Clients, sm: Any
) -> None:
    sink = make_sink(clients)
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)
    sm.update_secret_version_stage(  # the first call of promote, then a crash
        SecretId=NAME,
        VersionStage="AWSCURRENT",
        MoveToVersionId=version_token(access_key(2), FENCE),
        RemoveFromVersionId=version_token(access_key(1), FENCE),
    )
    expected = SinkDocument(current=access_key(2), previous=access_key(1))
    assert await sink.read(ALICE) == expected

    await sink.promote(ALICE, access_key(2).credential_id, FENCE)

    two, one = access_key(2).credential_id, access_key(1).credential_id
    assert labels(sm) == {"AWSCURRENT": two, "AWSPREVIOUS": one}
    assert await sink.read(ALICE) == expected


async def test_a_secret_rotator_did_not_write_is_a_sink_error_without_its_value(
    clients: Clients, sm: Any
) -> None:
    sm.create_secret(Name=NAME, SecretString="leaked-plain-password-123456")

    with pytest.raises(SinkError) as failed:
        await make_sink(clients).read(ALICE)

    assert NAME in str(failed.value)
    assert "leaked-plain-password" not in str(failed.value)


async def test_a_secret_scheduled_for_deletion_is_a_sink_error(clients: Clients, sm: Any) -> None:
    await rotate_in(make_sink(clients), ALICE, access_key(1))
    sm.delete_secret(SecretId=NAME, RecoveryWindowInDays=7)

    with pytest.raises(SinkError, match="scheduled for deletion"):
        await make_sink(clients).put_pending(ALICE, access_key(2), FENCE)


async def test_an_unreachable_endpoint_is_transient_so_the_step_is_retried(
    aws_env: str,
) -> None:
    config = SecretsManagerSinkConfig(type="secretsmanager", name="rotator/{user}")
    aws = Aws(endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=1)

    async with Clients(aws) as clients:
        with pytest.raises(Transient, match="rotator/alice"):
            await SecretsManagerSink(config, clients).read(ALICE)


async def test_a_label_another_writer_moved_since_the_fence_check_is_not_taken_from_it(
    aws_env: str, clients: Clients
) -> None:
    """A checks its fence (a pending entry of its own is there), then its PutSecretValue
    is held; B (newer fence) moves AWSPENDING to its own version meanwhile. A's move of
    AWSPENDING names the version it saw, which no longer has the label: Secrets Manager
    refuses it, and A finds B's newer fence and stops."""
    older = Fence(epoch="tests", value=1, rotation_id="r-a")
    newer = Fence(epoch="tests", value=2, rotation_id="r-b")
    await make_sink(clients).put_pending(ALICE, access_key(1), older)
    with FaultProxy(aws_env) as proxy:
        held = proxy.hold("PutSecretValue", phase="before")
        async with Clients(Aws(endpoint_url=proxy.url)) as late_clients:
            late = asyncio.create_task(
                make_sink(late_clients).put_pending(ALICE, access_key(3), older)
            )
            await asyncio.to_thread(held.wait)
            await make_sink(clients).put_pending(ALICE, access_key(2), newer)
            held.release()
            with pytest.raises(LeaseLost, match="newer than this worker's 1"):
                await late

    doc = await make_sink(clients).read(ALICE)
    assert doc == SinkDocument(pending=access_key(2))
    assert doc.fence == newer


async def test_check_reports_access_denied_before_anything_is_written(
    clients: Clients, sm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Any, secret_id: str) -> Any:
        raise JsonRESTError("AccessDeniedException", "not authorized to DescribeSecret")

    monkeypatch.setattr(SecretsManagerBackend, "describe_secret", denied)

    with pytest.raises(SinkError) as refused:
        await make_sink(clients).check(ALICE)

    assert NAME in str(refused.value)
    assert "AccessDenied" in str(refused.value)
    monkeypatch.undo()
    assert sm.list_secrets()["SecretList"] == []
