"""Helpers around a moto server: reset, seed users and keys, inspect IAM (sync boto3)."""

from __future__ import annotations

import json
import threading
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
from moto.dynamodb.responses import DynamoHandler

_ONE_DYNAMODB_REQUEST_AT_A_TIME = threading.Lock()
_dynamodb_call_action = DynamoHandler.call_action


def _atomic_call_action(self: DynamoHandler) -> Any:
    with _ONE_DYNAMODB_REQUEST_AT_A_TIME:
        return _dynamodb_call_action(self)


def make_dynamodb_atomic() -> None:
    """Real DynamoDB applies a conditional write or a transaction atomically. moto's
    threaded server does not: TransactWriteItems checks and writes item by item (and rolls
    back by restoring a copy of the whole table), so two racing transactions can both pass
    ``attribute_not_exists``. The moto server runs in this process: one lock around its
    DynamoDB handler gives racing journals DynamoDB's semantics."""
    DynamoHandler.call_action = _atomic_call_action  # type: ignore[method-assign]


@dataclass
class MotoSandbox:
    url: str
    region: str = "us-east-1"

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def client(self, service: str, *, region: str | None = None, **creds: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region or self.region,
            aws_access_key_id=creds.get("access_key_id", "testing"),
            aws_secret_access_key=creds.get("secret_access_key", "testing"),
        )

    @property
    def iam(self) -> Any:
        return self.client("iam")

    def create_user(
        self, name: str, *, path: str = "/", tags: dict[str, str] | None = None, keys: int = 0
    ) -> list[dict[str, str]]:
        """Create a user with ``keys`` active access keys; returns the keys (with secrets)."""
        kwargs: dict[str, Any] = {"UserName": name, "Path": path}
        if tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        self.iam.create_user(**kwargs)
        return [self.iam.create_access_key(UserName=name)["AccessKey"] for _ in range(keys)]

    def age_keys(self, user: str, *, days: int) -> None:
        """Backdate every access key of ``user`` by ``days`` (IAM has no API for that; the
        moto server runs in this process, so its backend is reachable)."""
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account()]["aws"]
        for key in backend.users[user].access_keys:
            key.create_date = key.create_date - timedelta(days=days)

    def keys(self, user: str) -> dict[str, str]:
        """``{AccessKeyId: Status}`` of a user's keys."""
        listed = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in listed}

    def caller_arn(self, access_key_id: str, secret_access_key: str) -> str:
        """The ARN STS reports for a key pair (moto maps a known key to its user)."""
        sts = self.client("sts", access_key_id=access_key_id, secret_access_key=secret_access_key)
        return str(sts.get_caller_identity()["Arn"])

    def account(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])

    def dump(self) -> str:
        return json.dumps(
            {u["UserName"]: self.keys(u["UserName"]) for u in self.iam.list_users()["Users"]},
            indent=1,
        )
