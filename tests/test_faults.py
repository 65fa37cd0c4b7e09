"""The fault proxy: transparent for IAM, STS, Secrets Manager and DynamoDB; faults on demand."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError

from rotator.aws import convert
from rotator.errors import Transient
from tests.support.faults import (
    FaultPlan,
    FaultProxy,
    Request,
    choose,
    parse_request,
    request_region,
)
from tests.support.moto import MotoSandbox


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


@functools.cache
def session() -> boto3.session.Session:
    """One boto3 session for the file: loading service models once keeps the tests fast."""
    return boto3.session.Session()


def client(
    proxy: FaultProxy, service: str, *, attempts: int = 1, key: dict[str, str] | None = None
) -> Any:
    """A boto3 client through the proxy; ``attempts=1`` shows faults raw (no retries)."""
    key = key or {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
    return session().client(
        service,
        endpoint_url=proxy.url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
        ),
    )


def users(sandbox: MotoSandbox) -> list[str]:
    """User names as moto itself holds them (read directly, not through the proxy)."""
    return sorted(u["UserName"] for u in sandbox.iam.list_users()["Users"])


def outcome(call: Callable[[], object]) -> str:
    """'ok', the error code of a ClientError, or the name of a botocore error."""
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    except BotoCoreError as exc:
        return type(exc).__name__
    return "ok"


# --- transparent forwarding ---------------------------------------------------------------


def test_iam_is_forwarded_over_one_kept_alive_connection(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    iam = client(proxy, "iam")
    iam.create_user(UserName="alice", Path="/ci/")
    key = iam.create_access_key(UserName="alice")["AccessKey"]
    assert [u["Arn"] for u in iam.list_users()["Users"]] == [
        "arn:aws:iam::123456789012:user/ci/alice"
    ]
    assert sandbox.keys("alice") == {key["AccessKeyId"]: "Active"}
    assert proxy.actions_seen() == ["CreateUser", "CreateAccessKey", "ListUsers"]
    counts = proxy.counts()
    assert counts["requests"] == counts["forwarded"] == 3
    assert counts["connections"] == 1


def test_sts_through_aws_endpoint_url_maps_a_key_to_its_user(
    proxy: FaultProxy, sandbox: MotoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = sandbox.create_user("alice", path="/ci/", keys=1)[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    sts = boto3.session.Session().client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    assert sts.get_caller_identity()["Arn"].endswith(":user/ci/alice")
    assert proxy.actions_seen() == ["GetCallerIdentity"]


def test_secrets_manager_is_forwarded(proxy: FaultProxy) -> None:
    sm = client(proxy, "secretsmanager")
    sm.create_secret(Name="ci/alice", SecretString="v1")
    token = "0" * 32
    sm.put_secret_value(SecretId="ci/alice", SecretString="v2", ClientRequestToken=token)
    value = sm.get_secret_value(SecretId="ci/alice")
    assert (value["SecretString"], value["VersionId"]) == ("v2", token)
    with pytest.raises(ClientError) as caught:
        sm.get_secret_value(SecretId="nope")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert proxy.actions_seen() == [
        "CreateSecret",
        "PutSecretValue",
        "GetSecretValue",
        "GetSecretValue",
    ]


def test_dynamodb_is_forwarded_including_cancelled_transactions(proxy: FaultProxy) -> None:
    ddb = client(proxy, "dynamodb")
    ddb.create_table(
        TableName="journal",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    put = {
        "Put": {
            "TableName": "journal",
            "Item": {"pk": {"S": "run-1"}, "step": {"S": "create"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    ddb.transact_write_items(TransactItems=[put])
    with pytest.raises(ClientError) as caught:
        ddb.transact_write_items(TransactItems=[put])
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    item = ddb.get_item(TableName="journal", Key={"pk": {"S": "run-1"}})["Item"]
    assert item["step"] == {"S": "create"}
    assert proxy.actions_seen()[1:] == ["TransactWriteItems", "TransactWriteItems", "GetItem"]


# --- injected answers ---------------------------------------------------------------------

CHEAP_CALLS: dict[str, Callable[[Any], object]] = {
    "iam": lambda c: c.list_users(),
    "sts": lambda c: c.get_caller_identity(),
    "secretsmanager": lambda c: c.list_secrets(),
    "dynamodb": lambda c: c.list_tables(),
}


@pytest.mark.parametrize(
    ("service", "code"),
    [
        ("iam", "Throttling"),
        ("sts", "Throttling"),
        ("secretsmanager", "ThrottlingException"),
        ("dynamodb", "ThrottlingException"),
    ],
)
def test_throttling_looks_like_the_real_service(proxy: FaultProxy, service: str, code: str) -> None:
    proxy.set_plan(FaultPlan(throttle=1.0))
    with pytest.raises(ClientError) as caught:
        CHEAP_CALLS[service](client(proxy, service))
    response = caught.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
        code,
        400,
    )
    assert isinstance(convert(caught.value, "call", {}), Transient)
    assert proxy.counts()["throttled"] == 1
    assert proxy.counts()["forwarded"] == 0


@pytest.mark.parametrize("service", ["iam", "secretsmanager"])
def test_botocore_retries_throttling_until_it_passes(proxy: FaultProxy, service: str) -> None:
    """A seed whose first draw throttles and second does not: one retry, then success."""

    def plan(seed: int) -> FaultPlan:
        return FaultPlan(seed=seed, throttle=0.5)

    def faults(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [choose(plan(seed), rng, "any")[1] for _ in range(2)]

    seed = next(s for s in range(100) if faults(s) == ["throttle", "none"])
    proxy.set_plan(plan(seed))
    CHEAP_CALLS[service](client(proxy, service, attempts=3))
    counts = proxy.counts()
    assert (counts["requests"], counts["throttled"], counts["forwarded"]) == (2, 1, 1)


def test_botocore_gives_up_after_max_attempts_of_throttling(proxy: FaultProxy) -> None:
    proxy.set_plan(FaultPlan(throttle=1.0))
    with pytest.raises(ClientError) as caught:
        client(proxy, "iam", attempts=2).list_users()
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 1
    assert proxy.counts()["throttled"] == 2


@pytest.mark.parametrize("service", ["iam", "secretsmanager", "dynamodb"])
def test_server_errors_are_500_or_503_and_transient(proxy: FaultProxy, service: str) -> None:
    proxy.set_plan(FaultPlan(server_error=1.0))
    aws = client(proxy, service)
    seen = set()
    for _ in range(6):
        with pytest.raises(ClientError) as caught:
            CHEAP_CALLS[service](aws)
        response = caught.value.response
        seen.add((response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]))
        assert isinstance(convert(caught.value, "call", {}), Transient)
    assert seen == {(500, "InternalFailure"), (503, "ServiceUnavailable")}
    assert proxy.counts()["server_errors"] == 6


# --- dropped connections ------------------------------------------------------------------


def test_drop_before_is_a_connection_error_and_not_applied(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    proxy.set_plan(FaultPlan(drop_before=1.0))
    with pytest.raises(ConnectionClosedError) as caught:
        client(proxy, "iam").create_user(UserName="alice")
    assert isinstance(convert(caught.value, "CreateUser", {}), Transient)
    assert users(sandbox) == []
    counts = proxy.counts()
    assert (counts["dropped_before"], counts["forwarded"]) == (1, 0)


def test_drop_after_is_a_connection_error_but_applied(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    proxy.set_plan(FaultPlan(drop_after=1.0))
    with pytest.raises(ConnectionClosedError):
        client(proxy, "iam").create_user(UserName="alice")
    assert users(sandbox) == ["alice"]
    counts = proxy.counts()
    assert (counts["dropped_after"], counts["forwarded"]) == (1, 1)


def test_botocore_retries_a_dropped_call_so_an_applied_create_comes_back_as_exists(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    """Why steps must be idempotent: the retry of an applied CreateUser fails."""
    proxy.on("CreateUser", phase="after", callback=lambda: None)
    with pytest.raises(ClientError) as caught:
        client(proxy, "iam", attempts=2).create_user(UserName="alice")
    assert caught.value.response["Error"]["Code"] == "EntityAlreadyExists"
    assert users(sandbox) == ["alice"]


# --- confinement, determinism, hooks, latency ---------------------------------------------


def test_actions_confine_faults(proxy: FaultProxy, sandbox: MotoSandbox) -> None:
    proxy.set_plan(FaultPlan(throttle=1.0, actions=frozenset({"CreateUser"})))
    iam = client(proxy, "iam")
    assert outcome(iam.list_users) == "ok"
    assert outcome(lambda: iam.create_user(UserName="alice")) == "Throttling"
    assert outcome(lambda: client(proxy, "sts").get_caller_identity()) == "ok"
    assert users(sandbox) == []


def test_the_same_seed_injects_the_same_faults_and_counts_add_up(proxy: FaultProxy) -> None:
    sts = client(proxy, "sts")

    def run(seed: int) -> list[str]:
        proxy.set_plan(
            FaultPlan(seed=seed, throttle=0.2, server_error=0.2, drop_before=0.2, drop_after=0.1)
        )
        return [outcome(sts.get_caller_identity) for _ in range(15)]

    first = run(7)
    assert run(7) == first
    assert run(8) != first
    assert {"ok", "Throttling", "ConnectionClosedError"} <= set(first)
    counts = proxy.counts()
    assert counts["requests"] == 45
    assert (
        counts["requests"]
        == (counts["forwarded"] + counts["throttled"] + counts["server_errors"])
        + counts["dropped_before"]
    )
    assert 0 < counts["dropped_after"] <= counts["forwarded"]
    assert proxy.actions_seen() == ["GetCallerIdentity"] * 45


def test_a_before_hook_fires_once_at_the_nth_call_and_does_not_forward_it(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    at_callback: list[list[str]] = []
    proxy.on(
        "CreateUser", phase="before", nth=2, callback=lambda: at_callback.append(users(sandbox))
    )
    iam = client(proxy, "iam")
    results = [outcome(functools.partial(iam.create_user, UserName=n)) for n in "abc"]
    assert results == ["ok", "ConnectionClosedError", "ok"]
    assert at_callback == [["a"]]
    assert users(sandbox) == ["a", "c"]
    counts = proxy.counts()
    assert (counts["hooks_fired"], counts["dropped_before"], counts["forwarded"]) == (1, 1, 2)


def test_an_after_hook_calls_back_once_the_call_is_applied(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    at_callback: list[list[str]] = []
    proxy.on("CreateUser", phase="after", callback=lambda: at_callback.append(users(sandbox)))
    iam = client(proxy, "iam")
    results = [outcome(functools.partial(iam.create_user, UserName=n)) for n in "ab"]
    assert results == ["ConnectionClosedError", "ok"]
    assert at_callback == [["a"]]
    assert users(sandbox) == ["a", "b"]
    counts = proxy.counts()
    assert (counts["hooks_fired"], counts["dropped_after"], counts["forwarded"]) == (1, 1, 2)


def test_match_selects_the_sts_call_made_with_a_given_key(
    proxy: FaultProxy, sandbox: MotoSandbox
) -> None:
    key = sandbox.create_user("alice", keys=1)[0]
    fired: list[int] = []
    requests: list[Request] = []

    def with_new_key(request: Request) -> bool:
        requests.append(request)
        return request.service == "sts" and key["AccessKeyId"] in request.headers["authorization"]

    def is_iam(request: Request) -> bool:
        return request.service == "iam"

    hooks = [("GetCallerIdentity", is_iam), ("GetCallerIdentity", with_new_key)]
    for n, (action, match) in enumerate([*hooks, ("ListUsers", is_iam)]):
        proxy.on(action, phase="after", callback=functools.partial(fired.append, n), match=match)
    assert outcome(client(proxy, "sts").get_caller_identity) == "ok"
    assert outcome(client(proxy, "sts", key=key).get_caller_identity) == "ConnectionClosedError"
    assert outcome(client(proxy, "iam").list_users) == "ConnectionClosedError"
    assert fired == [1, 2]  # the IAM-only hook on GetCallerIdentity never fired
    assert [(r.service, r.action, r.method) for r in requests] == [
        ("sts", "GetCallerIdentity", "POST")
    ] * 2


def test_latency_delays_every_request_even_outside_the_faulted_actions(
    proxy: FaultProxy,
) -> None:
    proxy.set_plan(FaultPlan(latency=(0.2, 0.25), throttle=1.0, actions=frozenset({"Nothing"})))
    iam = client(proxy, "iam")
    started = time.monotonic()
    iam.list_users()
    assert time.monotonic() - started >= 0.2


def test_stop_cuts_kept_alive_connections(proxy: FaultProxy) -> None:
    iam = client(proxy, "iam")
    iam.list_users()
    proxy.stop()
    assert outcome(iam.list_users) in {"ConnectionClosedError", "EndpointConnectionError"}


@pytest.mark.parametrize(
    "kwargs",
    [{"throttle": 1.5}, {"throttle": 0.6, "drop_after": 0.6}, {"latency": (0.2, 0.1)}],
)
def test_impossible_plans_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        FaultPlan(**kwargs)


@pytest.mark.parametrize(
    ("host", "authorization", "region"),
    [
        ("sts.eu-west-1.amazonaws.com", "", "eu-west-1"),
        (
            "127.0.0.1:4566",
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261202/ap-south-1/sts/aws4_request, "
            "SignedHeaders=host, Signature=abc",
            "ap-south-1",
        ),
        ("127.0.0.1:4566", "", ""),
    ],
)
def test_a_requests_region_is_its_regional_host_or_its_credential_scope(
    host: str, authorization: str, region: str
) -> None:
    headers = {"host": host, "authorization": authorization}
    assert (
        request_region(parse_request("POST", "/", headers, b"Action=GetCallerIdentity")) == region
    )


def test_young_keys_are_rejected_only_in_the_region_told(sandbox: MotoSandbox) -> None:
    sandbox.create_user("lagging")
    with FaultProxy(sandbox.url) as proxy:
        proxy.reject_young_keys(60, region="eu-west-1")
        iam = boto3.client(
            "iam",
            endpoint_url=proxy.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        key = iam.create_access_key(UserName="lagging")["AccessKey"]

        def whoami(region: str) -> str:
            sts = boto3.client(
                "sts",
                endpoint_url=proxy.url,
                region_name=region,
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
                config=Config(retries={"total_max_attempts": 1}),
            )
            return str(sts.get_caller_identity()["Arn"])

        assert whoami("us-east-1").endswith("user/lagging")
        with pytest.raises(ClientError, match="InvalidClientTokenId"):
            whoami("eu-west-1")
        assert proxy.sts_answers(key["AccessKeyId"]) == [("us-east-1", 200), ("eu-west-1", 403)]
