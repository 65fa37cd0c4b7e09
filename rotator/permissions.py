"""The least-privilege IAM policy for a policy file: ``rotator iam-policy --config F``.

Pure: ``policy_document(config)`` is a function of the validated ``Config``; nothing here
calls AWS. Each part of rotator declares what it calls, next to the code that calls it:

=============  =================================================  ===========================
part           actions (declared in)                              resources
=============  =================================================  ===========================
discovery      ``sts:GetCallerIdentity``, ``iam:ListUsers``, the  ``*`` (IAM cannot scope
               credential report (``DISCOVERY`` below)            them)
users          ``iam:GetUser``, ``iam:ListUserTags``              users under the rules' path
                                                                  prefixes
each kind      its ``REGISTRATION.iam`` (``kinds.REGISTRY``)      users (server certificates:
                                                                  certificates) under its
                                                                  rules' path prefixes; its
                                                                  ``unscoped`` ones on ``*``
each sink      its module's ``permissions(config)``               secrets / parameters by the
                                                                  template's prefix; the KMS
                                                                  key through that service
journal        ``JOURNAL_ACTIONS`` (``--journal-init`` adds       the DynamoDB table
               ``JOURNAL_INIT_ACTIONS``)
notifications  ``sns:Publish``                                    the ``[notify]`` topic
=============  =================================================  ===========================

Account IDs are ``*`` (a policy file does not name its account) and so are regions unless
the file names one. Statements with the same actions and condition are merged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from rotator.kinds import REGISTRY
from rotator.settings import Config
from rotator.sinks import file, memory, secretsmanager, ssm

Statement = dict[str, Any]

# Every sweep: whose credentials (STS), which users (IAM lists them account-wide).
DISCOVERY: tuple[str, ...] = ("sts:GetCallerIdentity", "iam:ListUsers")
# For kinds the inventory may read from IAM's credential report instead of per user.
CREDENTIAL_REPORT: tuple[str, ...] = ("iam:GenerateCredentialReport", "iam:GetCredentialReport")
USERS: tuple[str, ...] = ("iam:GetUser", "iam:ListUserTags")
# IAM actions without resource-level permissions: they need "Resource": "*".
UNSCOPED = frozenset(
    {
        *DISCOVERY,
        *CREDENTIAL_REPORT,
        *(action for registered in REGISTRY.values() for action in registered.iam.unscoped),
    }
)
# What the DynamoDB journal calls (docs/configuration.md), and `rotator journal init`.
JOURNAL_ACTIONS: tuple[str, ...] = tuple(
    f"dynamodb:{a}"
    for a in (
        "DescribeTable",
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "TransactWriteItems",
    )
)
JOURNAL_INIT_ACTIONS: tuple[str, ...] = tuple(
    f"dynamodb:{a}"
    for a in ("CreateTable", "UpdateTimeToLive", "DescribeTimeToLive", "TagResource")
)
# Each sink type's declaration (``permissions(config)`` in its module).
SINKS: Mapping[str, Callable[[Any], list[Statement]]] = {
    "file": file.permissions,
    "memory": memory.permissions,
    "secretsmanager": secretsmanager.permissions,
    "ssm": ssm.permissions,
}


# The hub of an organization sweep: account discovery (tags only when the policy matches
# on them) and getting into the member accounts.
ORGANIZATIONS: tuple[str, ...] = (
    "organizations:ListRoots",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListAccountsForParent",
)
ORGANIZATIONS_TAGS = "organizations:ListTagsForResource"


def policy_document(config: Config, *, journal_init: bool = False) -> dict[str, Any]:
    """The IAM policy document (``{"Version", "Statement"}``) for exactly what ``config``
    uses. ``journal_init`` adds what ``rotator journal init`` needs. With ``[accounts]``
    this is the hub's and the members' policies together; ``member_policy`` and
    ``hub_policy`` split them."""
    statements = [
        *_in_account(config, sinks_in=("member", "hub")),
        *_hub(config),
        *_journal(config.journal.url, journal_init=journal_init),
        *_notify(config),
    ]
    return {"Version": "2012-10-17", "Statement": _merged(statements)}


def member_policy(config: Config) -> dict[str, Any]:
    """The member role's policy (``rotator iam-policy --member``): what a sweep does inside
    a member account — discovery, the kinds' IAM calls, and the sinks kept there
    (``sink_in = "member"``). No journal, no notifications: those are the hub's."""
    return {"Version": "2012-10-17", "Statement": _merged(_in_account(config, ("member",)))}


def hub_policy(config: Config, *, journal_init: bool = False) -> dict[str, Any]:
    """The hub's policy (``rotator iam-policy --hub``): Organizations discovery, assuming
    the member role, the journal, notifications, the sinks kept in the hub
    (``sink_in = "hub"``), and — with ``include_self`` — sweeping its own account."""
    accounts = config.accounts
    own = accounts is not None and accounts.include_self
    statements = [
        *(_in_account(config, ("member", "hub")) if own else _hub_sinks(config)),
        _statement("Identity", ["sts:GetCallerIdentity"], ["*"]),
        *_hub(config),
        *_journal(config.journal.url, journal_init=journal_init),
        *_notify(config),
    ]
    return {"Version": "2012-10-17", "Statement": _merged(statements)}


def _in_account(config: Config, sinks_in: tuple[str, ...]) -> list[Statement]:
    return [
        _statement("Discover", _discovery(config), ["*"]),
        _statement("ReadUsers", USERS, _arns("user", _user_prefixes(config))),
        *_kinds(config),
        *_sinks(config, sinks_in),
    ]


def _hub_sinks(config: Config) -> list[Statement]:
    return _sinks(config, ("hub",))


def _hub(config: Config) -> list[Statement]:
    accounts = config.accounts
    if accounts is None or not (accounts.members or accounts.organization):
        return []
    statements = [
        _statement("AssumeMemberRole", ["sts:AssumeRole"], [accounts.role_for("*")]),
        # An exposed key's account (``rotator rotate --access-key-id``, the Health event).
        _statement("FindKeyAccount", ["sts:GetAccessKeyInfo"], ["*"]),
    ]
    if accounts.organization is not None:
        tags = bool(accounts.exclude.tags) or any(r.account_tags for r in config.rules)
        actions = [*ORGANIZATIONS, *([ORGANIZATIONS_TAGS] if tags else [])]
        statements.append(_statement("DiscoverAccounts", actions, ["*"]))
    return statements


def render(document: Mapping[str, Any]) -> str:
    """The document as ``rotator iam-policy`` prints it (stable: diff-friendly)."""
    return json.dumps(document, indent=2) + "\n"


def _discovery(config: Config) -> list[str]:
    users = ["iam:ListUsers"] if _user_prefixes(config) else []
    reported = any(rule.facts.in_credential_report for rule in config.rules)
    return ["sts:GetCallerIdentity", *users, *(CREDENTIAL_REPORT if reported else ())]


def _user_prefixes(config: Config) -> list[str]:
    return [r.select.path_prefix for r in config.rules if not r.facts.account_held]


def _kinds(config: Config) -> list[Statement]:
    statements = []
    for kind, registered in REGISTRY.items():
        rules = [r for r in config.rules if r.kind is kind]
        if not rules:
            continue
        iam = registered.iam
        arns = _arns(iam.resource, [r.select.path_prefix for r in rules])
        name = _sid(str(kind))
        statements.append(_statement(name, iam.scoped, arns))
        statements.append(_statement(name + "List", iam.unscoped, ["*"]))
    return statements


def _sinks(config: Config, sinks_in: tuple[str, ...] = ("member", "hub")) -> list[Statement]:
    statements = []
    for rule in config.rules:
        # A file or memory sink asks nothing of AWS wherever it is; without [accounts]
        # member and hub are one account.
        where = rule.sink_in if config.accounts is not None else "member"
        if where not in sinks_in:
            continue
        for declared in SINKS[rule.sink.type](rule.sink):
            kms = all(action.startswith("kms:") for action in declared["Action"])
            sid = "Sink" + _sid(rule.sink.type) + ("Kms" if kms else "")
            statements.append({"Sid": sid, "Effect": "Allow", **declared})
    return statements


def _journal(url: str, *, journal_init: bool) -> list[Statement]:
    parsed = urlsplit(url)
    if parsed.scheme != "dynamodb":
        return []  # sqlite and memory journals call no AWS
    region = dict(parse_qsl(parsed.query)).get("region") or "*"
    actions = [*JOURNAL_ACTIONS, *(JOURNAL_INIT_ACTIONS if journal_init else ())]
    return [_statement("Journal", actions, [f"arn:aws:dynamodb:{region}:*:table/{parsed.netloc}"])]


def _notify(config: Config) -> list[Statement]:
    topic = config.notify.sns_topic_arn
    return [_statement("Notify", ["sns:Publish"], [topic])] if topic else []


def _statement(sid: str, actions: Iterable[str], resources: Iterable[str]) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def _arns(resource_type: str, prefixes: Iterable[str]) -> list[str]:
    """``arn:aws:iam::*:user/ci/*`` for each path prefix not already covered by another."""
    unique = sorted(set(prefixes))
    kept = [p for p in unique if not any(p != q and p.startswith(q) for q in unique)]
    return [f"arn:aws:iam::*:{resource_type}{prefix}*" for prefix in kept]


def _merged(statements: list[Statement]) -> list[Statement]:
    """Drop empty statements; merge those with the same actions and condition (their
    resources united); sort actions and resources; make every Sid unique."""
    merged: dict[str, Statement] = {}
    for statement in statements:
        if not statement["Action"] or not statement["Resource"]:
            continue
        actions = sorted(set(statement["Action"]))
        key = json.dumps([actions, statement.get("Condition")], sort_keys=True)
        if key in merged:
            resources = {*merged[key]["Resource"], *statement["Resource"]}
            merged[key]["Resource"] = sorted(resources)
        else:
            merged[key] = {
                **statement,
                "Action": actions,
                "Resource": sorted(statement["Resource"]),
            }
    seen: dict[str, int] = {}
    for statement in merged.values():
        base = statement["Sid"]
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            statement["Sid"] = f"{base}{seen[base]}"
    return list(merged.values())


def _sid(name: str) -> str:
    """``access-key`` -> ``AccessKey`` (a Sid is alphanumeric)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
