"""What only the SSM sink can get wrong: SecureString and the KMS key, tiers, the version
and label layout after each operation, replays of an interrupted promotion, and errors
that name the parameter but never the value. The shared behaviour is in
``test_contract.py``; all of this runs against a moto server over real HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from moto.ssm.exceptions import ValidationException
from moto.ssm.models import SimpleSystemManagerBackend
from pydantic import SecretStr, TypeAdapter, ValidationError

from rotator.aws import Aws, Clients
from rotator.errors import LeaseLost, SinkError, Transient
from rotator.model import Kind
from rotator.policy import SinkConfig, SsmSinkConfig
from rotator.sinks import SecretEntry, SinkDocument, SinkKey, SsmSink, build_sink
from rotator.sinks.base import Fence
from rotator.sinks.secretsmanager import secret_string
from rotator.sinks.ssm import permissions
from tests.sinks.test_contract import ALICE, FENCE, access_key, rotate_in, secret_of
from tests.support.faults import FaultPlan, FaultProxy
from tests.support.moto import MotoSandbox

NAME = "/rotator/123456789012/alice/access-key"
PENDING = NAME + "/pending"


def ssm_sink(clients: Clients, **settings: Any) -> SsmSink:
    config = TypeAdapter(SinkConfig).validate_python(
        {"type": "ssm", "name": "/rotator/{account}/{user}/{kind}", **settings}
    )
    sink = build_sink(config, clients)
    assert isinstance(sink, SsmSink)
    return sink


@pytest.fixture
def sink(clients: Clients) -> SsmSink:
    return ssm_sink(clients, kms_key_id="alias/rotator-secrets")


@pytest.fixture
def ssm(sandbox: MotoSandbox) -> Any:
    return sandbox.client("ssm")


def versions(ssm: Any, name: str = NAME) -> list[tuple[int, list[str], str]]:
    """(version, labels, credential ID) of every version of ``name``, oldest first."""
    history = ssm.get_parameter_history(Name=name, WithDecryption=True)["Parameters"]
    return [
        (p["Version"], sorted(p["Labels"]), json.loads(p["Value"])["CredentialId"]) for p in history
    ]


def exists(ssm: Any, name: str) -> bool:
    try:
        ssm.get_parameter(Name=name)
    except ssm.exceptions.ParameterNotFound:
        return False
    return True


def big_entry(n: int, size: int) -> SecretEntry:
    """An entry whose stored JSON is a little over ``size`` bytes (a certificate's PEMs)."""
    return SecretEntry(
        kind=Kind.SIGNING_CERTIFICATE,
        credential_id=f"CERT{n:016d}",
        created_at=datetime(2024, 1, n, tzinfo=UTC),
        public={"CertificateBody": "M" * size},
        secret={"PrivateKey": SecretStr(f"-----BEGIN PRIVATE KEY----- {secret_of(n)}")},
    )


# --- layout ------------------------------------------------------------------------------


async def test_pending_waits_in_its_own_parameter_and_consumers_see_only_current(
    sink: SsmSink, ssm: Any
) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)

    assert versions(ssm) == [(1, ["current"], access_key(1).credential_id)]
    assert versions(ssm, PENDING) == [(1, [], access_key(2).credential_id)]
    consumer = json.loads(ssm.get_parameter(Name=NAME, WithDecryption=True)["Parameter"]["Value"])
    assert consumer["AccessKeyId"] == access_key(1).credential_id
    assert consumer["SecretAccessKey"] == secret_of(1)


async def test_labels_and_versions_after_promote_and_rollback(sink: SsmSink, ssm: Any) -> None:
    one, two, three = (access_key(n).credential_id for n in (1, 2, 3))
    await sink.put_pending(ALICE, access_key(1), FENCE)
    assert not exists(ssm, NAME)

    await sink.promote(ALICE, one, FENCE)
    assert versions(ssm) == [(1, ["current"], one)]
    assert not exists(ssm, PENDING)

    await rotate_in(sink, ALICE, access_key(2))
    assert versions(ssm) == [(1, ["previous"], one), (2, ["current"], two)]

    await sink.put_pending(ALICE, access_key(3), FENCE)
    await sink.rollback(ALICE, one, FENCE)  # written again as the latest version
    assert versions(ssm) == [(1, [], one), (2, ["previous"], two), (3, ["current"], one)]
    assert versions(ssm, PENDING) == [(1, [], three)]
    latest = ssm.get_parameter(Name=NAME, WithDecryption=True)["Parameter"]
    assert json.loads(latest["Value"])["CredentialId"] == one

    await sink.rollback(ALICE, one, FENCE)  # idempotent: no new version
    assert [v for v, _, _ in versions(ssm)] == [1, 2, 3]


async def test_parameters_are_securestrings_under_the_kms_key_tagged_without_secrets(
    sink: SsmSink, ssm: Any
) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)

    for name in (NAME, PENDING):
        (described,) = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [name]}]
        )["Parameters"]
        assert described["Type"] == "SecureString"
        assert described["KeyId"] == "alias/rotator-secrets"
        assert described["Tier"] == "Standard"
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
        assert tags == [{"Key": "managed-by", "Value": "rotator"}]
        metadata = json.dumps([described, tags], default=str)
        assert secret_of(1) not in metadata
        assert secret_of(2) not in metadata


async def test_without_a_kms_key_the_account_default_key_is_used(
    clients: Clients, ssm: Any
) -> None:
    await rotate_in(ssm_sink(clients), ALICE, access_key(1))

    (described,) = ssm.describe_parameters()["Parameters"]
    assert described["KeyId"] == "alias/aws/ssm"  # moto's stand-in for "no KeyId given"


# --- tiers -------------------------------------------------------------------------------


async def test_an_entry_over_4kb_is_an_advanced_parameter(sink: SsmSink, ssm: Any) -> None:
    small, large = big_entry(1, 100), big_entry(2, 5000)
    assert len(secret_string(large).encode()) > 4096

    await rotate_in(sink, ALICE, small)
    await sink.put_pending(ALICE, large, FENCE)
    await sink.promote(ALICE, large.credential_id, FENCE)

    history = ssm.get_parameter_history(Name=NAME)["Parameters"]
    assert [p["Tier"] for p in history] == ["Standard", "Advanced"]
    assert await sink.read(ALICE) == SinkDocument(current=large, previous=small)


async def test_an_entry_over_8kb_is_refused_without_writing_or_quoting_it(
    sink: SsmSink, ssm: Any
) -> None:
    huge = big_entry(1, 9000)

    with pytest.raises(SinkError, match=r"at most 8192") as refused:
        await sink.put_pending(ALICE, huge, FENCE)

    assert NAME in str(refused.value)
    assert secret_of(1) not in str(refused.value)
    assert not exists(ssm, PENDING)


async def test_an_advanced_parameter_stays_advanced_for_a_small_entry(
    sink: SsmSink, ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS refuses to turn an Advanced parameter back into a Standard one; moto does not
    check, so the test adds AWS's rule to the (in-process) moto server."""
    original = SimpleSystemManagerBackend.put_parameter

    def aws_rule(self: SimpleSystemManagerBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        history = self._parameters.get(name) or []
        if history and history[-1].tier == "Advanced" and kwargs.get("tier") == "Standard":
            raise ValidationException("This parameter uses the advanced-parameter tier.")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(SimpleSystemManagerBackend, "put_parameter", aws_rule)
    large, small = big_entry(1, 5000), big_entry(2, 100)
    await rotate_in(sink, ALICE, large)
    await sink.put_pending(ALICE, small, FENCE)

    await sink.promote(ALICE, small.credential_id, FENCE)

    history = ssm.get_parameter_history(Name=NAME)["Parameters"]
    assert [p["Tier"] for p in history] == ["Advanced", "Advanced"]
    assert await sink.read(ALICE) == SinkDocument(current=small, previous=large)


# --- interrupted promotions --------------------------------------------------------------


def put_raw(ssm: Any, entry: SecretEntry) -> None:
    """What an applied ``PutParameter`` of ``entry`` leaves (the labels not yet moved)."""
    ssm.put_parameter(Name=NAME, Value=secret_string(entry), Type="SecureString", Overwrite=True)


@pytest.mark.parametrize(
    "interrupted",
    ["after-put", "after-previous-label", "put-applied-twice"],
)
async def test_a_promote_interrupted_between_its_calls_reads_as_done_and_replays_cleanly(
    sink: SsmSink, ssm: Any, interrupted: str
) -> None:
    one, two = access_key(1), access_key(2)
    await rotate_in(sink, ALICE, one)
    await sink.put_pending(ALICE, two, FENCE)
    put_raw(ssm, two)
    if interrupted == "after-previous-label":
        ssm.label_parameter_version(Name=NAME, ParameterVersion=1, Labels=["previous"])
    if interrupted == "put-applied-twice":  # an SDK retry of a write AWS had applied
        put_raw(ssm, two)

    assert await sink.read(ALICE) == SinkDocument(current=two, previous=one)
    await sink.promote(ALICE, two.credential_id, FENCE)

    assert await sink.read(ALICE) == SinkDocument(current=two, previous=one)
    labelled = {v: labels for v, labels, _ in versions(ssm) if labels}
    latest = versions(ssm)[-1][0]
    assert labelled == {1: ["previous"], latest: ["current"]}
    assert not exists(ssm, PENDING)


async def test_a_rollback_interrupted_after_its_write_reads_as_done(
    sink: SsmSink, ssm: Any
) -> None:
    one, two = access_key(1), access_key(2)
    await rotate_in(sink, ALICE, one)
    await rotate_in(sink, ALICE, two)
    put_raw(ssm, one)

    assert await sink.read(ALICE) == SinkDocument(current=one, previous=two)
    await sink.rollback(ALICE, one.credential_id, FENCE)

    assert versions(ssm)[1:] == [
        (2, ["previous"], two.credential_id),
        (3, ["current"], one.credential_id),
    ]


# --- errors ------------------------------------------------------------------------------


async def test_a_transient_aws_error_propagates_as_transient(aws_env: str) -> None:
    with FaultProxy(aws_env, FaultPlan(throttle=1.0)) as proxy:
        async with Clients(Aws(endpoint_url=proxy.url, max_attempts=1)) as clients:
            with pytest.raises(Transient):
                await ssm_sink(clients).read(ALICE)


async def test_aws_quoting_the_value_in_an_error_never_reaches_the_sink_error(
    sink: SsmSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def quoting(self: Any, name: str, description: str, value: str, *a: Any, **k: Any) -> Any:
        raise ValidationException(f"Value '{value}' at 'value' failed to satisfy constraint")

    monkeypatch.setattr(SimpleSystemManagerBackend, "put_parameter", quoting)

    with pytest.raises(SinkError) as failed:
        await sink.put_pending(ALICE, access_key(1), FENCE)

    assert PENDING in str(failed.value)
    assert "ValidationException" in str(failed.value)
    for text in (str(failed.value), repr(failed.value), str(failed.value.__cause__)):
        assert secret_of(1) not in text


async def test_a_holder_whose_name_ssm_cannot_hold_fails_before_any_call(
    sink: SsmSink,
) -> None:
    odd = SinkKey(account="123456789012", user="bob@example.com", kind=Kind.ACCESS_KEY)

    with pytest.raises(SinkError, match=r"not valid in SSM"):
        await sink.read(odd)


async def test_a_parameter_holding_something_else_is_a_sink_error(sink: SsmSink, ssm: Any) -> None:
    ssm.put_parameter(Name=NAME, Value="hunter2-not-json", Type="SecureString")

    with pytest.raises(SinkError, match=r"does not hold a rotator entry") as failed:
        await sink.read(ALICE)

    assert "hunter2" not in str(failed.value)


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("rotator/{user}", "must start with '/'"),
        ("/rotator/{user}@x", "must start with '/'"),
        ("/aws/{user}", "may not begin with 'aws' or 'ssm'"),
        ("/SSM/{user}", "may not begin with 'aws' or 'ssm'"),
    ],
)
def test_parameter_names_ssm_would_refuse_are_config_errors(name: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SsmSinkConfig(type="ssm", name=name)


def test_permissions_cover_the_parameters_and_the_key_through_ssm_only() -> None:
    config = SsmSinkConfig(type="ssm", name="/rotator/{account}/{user}", kms_key_id="alias/rot")

    parameters, key = permissions(config)

    assert parameters["Resource"] == ["arn:aws:ssm:*:*:parameter/rotator/*"]
    assert "ssm:PutParameter" in parameters["Action"]
    assert key["Condition"]["StringLike"] == {"kms:ViaService": "ssm.*.amazonaws.com"}
    assert key["Condition"]["ForAnyValue:StringEquals"] == {"kms:ResourceAliases": ["alias/rot"]}


async def test_a_write_that_slipped_in_with_a_newer_fence_is_put_back_and_the_late_one_refused(
    aws_env: str, clients: Clients
) -> None:
    """A checks its fence, then its PutParameter is held; B (newer fence) stores its
    pending entry meanwhile. A's put lands on top of B's, so A sees the version jumped,
    finds B's newer fence, puts B's entry back on top and refuses its own write."""
    older = Fence(epoch="tests", value=1, rotation_id="r-a")
    newer = Fence(epoch="tests", value=2, rotation_id="r-b")
    with FaultProxy(aws_env) as proxy:
        held = proxy.hold("PutParameter", phase="before")
        async with Clients(Aws(endpoint_url=proxy.url)) as late_clients:
            late = asyncio.create_task(
                ssm_sink(late_clients).put_pending(ALICE, access_key(1), older)
            )
            await asyncio.to_thread(held.wait)
            await ssm_sink(clients).put_pending(ALICE, access_key(2), newer)
            held.release()
            with pytest.raises(LeaseLost, match="newer than this worker's 1"):
                await late

    doc = await ssm_sink(clients).read(ALICE)
    assert doc == SinkDocument(pending=access_key(2))
    assert doc.fence == newer


async def test_check_reports_access_denied_before_anything_is_written(
    sink: SsmSink, ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Any, name: str) -> Any:
        raise JsonRESTError("AccessDeniedException", "not authorized to GetParameter")

    monkeypatch.setattr(SimpleSystemManagerBackend, "get_parameter", denied)

    with pytest.raises(SinkError) as refused:
        await sink.check(ALICE)

    assert "AccessDenied" in str(refused.value)
    monkeypatch.undo()
    assert ssm.describe_parameters()["Parameters"] == []
