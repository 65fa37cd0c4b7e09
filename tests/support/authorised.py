"""Which IAM permissions an AWS request needs, and whether a policy document grants them.

``needs(request, world)`` turns one request the ``FaultProxy`` saw into the (IAM action,
resource ARN) pairs IAM authorises it by: the action is the service's signing name and the
operation (the ``Action`` parameter or ``X-Amz-Target``); a DynamoDB transaction is
authorised by its items' actions (``Put`` -> ``dynamodb:PutItem``, …; IAM has no
``TransactWriteItems`` action). The resource comes from the request's parameters
(``UserName``, ``SecretId``, ``Name``, ``TableName``, ``RoleArn``, …) and what ``World``
knows of the account (user paths, which user owns an access key, server certificate
paths); a request without one is authorised against ``*``, as IAM does for actions
without resource-level permissions.

``denied(document, needs)`` evaluates Allow statements the way IAM matches them (actions
case-insensitively, ``*``/``?`` wildcards in resources); statements with a ``Condition``
are left out (they are the KMS ones, which no request here exercises).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from tests.support.faults import Request, request_region

Need = tuple[str, str]  # (IAM action, resource ARN or "*")
_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
_TRANSACT |= {"ConditionCheck": "ConditionCheckItem"}


@dataclass
class World:
    """What the account holds that a request does not say: user paths, access key owners,
    server certificate paths (a request names only the user, key or certificate)."""

    account: str
    partition: str = "aws"
    user_paths: dict[str, str] = field(default_factory=dict)
    key_owners: dict[str, str] = field(default_factory=dict)
    certificate_paths: dict[str, str] = field(default_factory=dict)


def params(request: Request) -> dict[str, Any]:
    """The request's parameters: the form (query protocol) or the JSON body."""
    if request.headers.get("x-amz-target"):
        loaded: Any = json.loads(request.body or b"{}")
        return loaded if isinstance(loaded, dict) else {}
    form = urllib.parse.urlsplit(request.path).query
    if "x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = f"{form}&{request.body.decode('utf-8', 'replace')}"
    return {k: v[0] for k, v in urllib.parse.parse_qs(form).items()}


def needs(request: Request, world: World) -> list[Need]:
    """The (action, resource) pairs IAM checks for ``request``."""
    given = params(request)
    service = request.service
    if service == "dynamodb" and request.action in ("TransactWriteItems", "TransactGetItems"):
        found: list[Need] = []
        for item in given.get("TransactItems", []):
            ((kind, body),) = item.items()
            action = _TRANSACT.get(kind, "GetItem")
            found.append((f"dynamodb:{action}", _arn(world, request, "dynamodb", body)))
        return found
    return [(f"{service}:{request.action}", _arn(world, request, service, given))]


def _arn(world: World, request: Request, service: str, given: dict[str, Any]) -> str:
    head = f"arn:{world.partition}"
    region = request_region(request)
    if service == "iam":
        return _iam_arn(world, given)
    if service == "secretsmanager":
        name = str(given.get("SecretId") or given.get("Name") or "")
        if name.startswith("arn:"):
            return name
        return (
            f"{head}:secretsmanager:{region}:{world.account}:secret:{name}-AbCdEf" if name else "*"
        )
    if service == "ssm":
        name = str(given.get("Name") or given.get("ResourceId") or "").lstrip("/")
        return f"{head}:ssm:{region}:{world.account}:parameter/{name}" if name else "*"
    if service == "dynamodb" and given.get("TableName"):
        return f"{head}:dynamodb:{region}:{world.account}:table/{given['TableName']}"
    if service == "sns" and given.get("TopicArn"):
        return str(given["TopicArn"])
    if service == "sts" and given.get("RoleArn"):
        return str(given["RoleArn"])  # AssumeRole: the role
    return "*"


def _iam_arn(world: World, given: dict[str, Any]) -> str:
    head = f"arn:{world.partition}:iam::{world.account}"
    if "OpenIDConnectProviderArn" in given:
        return str(given["OpenIDConnectProviderArn"])
    if "ServerCertificateName" in given:
        name = str(given["ServerCertificateName"])
        path = str(given.get("Path") or world.certificate_paths.get(name, "/"))
        return f"{head}:server-certificate{path}{name}"
    user = given.get("UserName") or world.key_owners.get(str(given.get("AccessKeyId", "")))
    if user:
        return f"{head}:user{world.user_paths.get(str(user), '/')}{user}"
    return "*"


def grants(document: dict[str, Any], action: str, resource: str) -> bool:
    """True if an unconditioned Allow statement of ``document`` grants ``action`` on
    ``resource``."""
    for statement in document["Statement"]:
        if statement.get("Effect") != "Allow" or "Condition" in statement:
            continue
        actions = _listed(statement["Action"])
        if not any(fnmatchcase(action.lower(), a.lower()) for a in actions):
            continue
        if any(fnmatchcase(resource, r) for r in _listed(statement["Resource"])):
            return True
    return False


def denied(document: dict[str, Any], wanted: Iterable[Need]) -> list[Need]:
    """The needs ``document`` does not grant, each once, in order."""
    missing: list[Need] = []
    for need in wanted:
        if need not in missing and not grants(document, *need):
            missing.append(need)
    return missing


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
