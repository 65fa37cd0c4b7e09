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

ARNs are in the partition asked for (``--partition``; default ``aws``). Account IDs are
``*`` (a policy file does not name its account) and so are regions unless the file names
one. ``--for report`` gives what ``rotator report`` needs instead of (or beside) a run's:
the run's reads, and reads over every user (``REPORT_*``). The document is made as small
as it can be by ``iam_statements.smallest`` (no action granted twice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from rotator.iam_statements import Statement, smallest
from rotator.kinds import REGISTRY
from rotator.model import Kind
from rotator.partitions import DEFAULT as DEFAULT_PARTITION
from rotator.settings import Config
from rotator.sinks import file, memory, secretsmanager, ssm

# What the policy is for: ``rotator run`` (and plan, rotate, rollback, daemon, Lambda) or
# ``rotator report`` (read-only, over every user of the account).
Purpose = Literal["run", "report"]
PURPOSES: tuple[Purpose, ...] = ("run", "report")

# Every sweep: whose credentials (STS), which users (IAM lists them account-wide).
DISCOVERY: tuple[str, ...] = ("sts:GetCallerIdentity", "iam:ListUsers")
# For kinds the inventory may read from IAM's credential report instead of per user.
CREDENTIAL_REPORT: tuple[str, ...] = ("iam:GenerateCredentialReport", "iam:GetCredentialReport")
USERS: tuple[str, ...] = ("iam:GetUser", "iam:ListUserTags")
# `rotator report` (entrypoints/cli_report.py): the credential report and every server
# certificate, whatever the rules cover ...
REPORT_ACCOUNT: tuple[str, ...] = (
    *DISCOVERY,
    *CREDENTIAL_REPORT,
    "iam:ListServerCertificates",
)
# ... and, on every user of the account (``ListUsers`` on "/"), the access keys named in
# the report and, when the credential report is unavailable, each user's keys and password.
REPORT_USERS: tuple[str, ...] = (
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetLoginProfile",
    "iam:GetUser",
)
# With a service-credential rule: expired service-specific credentials, of every user.
REPORT_SERVICE_CREDENTIALS = "iam:ListServiceSpecificCredentials"
# IAM actions without resource-level permissions: they need "Resource": "*".
UNSCOPED = frozenset(
    {
        *REPORT_ACCOUNT,
        *(action for registered in REGISTRY.values() for action in registered.iam.unscoped),
    }
)
# What the DynamoDB journal calls (rotator/journal/dynamodb.py): its transactions hold only
# ``Put`` items, and IAM authorises a TransactWriteItems by its items' actions (PutItem,
# UpdateItem, DeleteItem, ConditionCheckItem); there is no TransactWriteItems action.
JOURNAL_ACTIONS: tuple[str, ...] = tuple(
    f"dynamodb:{a}" for a in ("DescribeTable", "GetItem", "PutItem", "Query", "Scan")
)
# And `rotator journal init` (rotator/journal/dynamodb_table.py; tags on CreateTable need
# TagResource).
JOURNAL_INIT_ACTIONS: tuple[str, ...] = tuple(
    f"dynamodb:{a}"
    for a in ("CreateTable", "UpdateTimeToLive", "DescribeTimeToLive", "TagResource")
)
# Actions that only read: what `report` (which plans, then surveys) may use of the run's.
_READ = re.compile(r"^[a-z0-9-]+:(Get|List|Describe|Query$|Scan$|Decrypt$)")
# Each sink type's declaration (``permissions(config, partition)`` in its module).
SINKS: Mapping[str, Callable[[Any, str], list[Statement]]] = {
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


def purposes_of(names: Iterable[str]) -> tuple[Purpose, ...]:
    """The purposes named (``--for``); ``ValueError`` naming any that is not one."""
    known: dict[str, Purpose] = {p: p for p in PURPOSES}
    unknown = [name for name in names if name not in known]
    if unknown:
        wanted = ", ".join(PURPOSES)
        raise ValueError(f"{', '.join(map(repr, unknown))}: not one of {wanted}")
    return tuple(known[name] for name in names)


@dataclass(frozen=True, kw_only=True)
class _For:
    """What a document is for: the ARN partition and the commands it must let run."""

    partition: str
    purposes: frozenset[Purpose]

    @property
    def run(self) -> bool:
        return "run" in self.purposes

    @property
    def report(self) -> bool:
        return "report" in self.purposes

    def arn(self, service: str, resource: str, region: str = "", account: str = "*") -> str:
        return f"arn:{self.partition}:{service}:{region}:{account}:{resource}"


def _for(partition: str, purposes: Iterable[Purpose]) -> _For:
    chosen: frozenset[Purpose] = frozenset(purposes) or frozenset({"run"})
    return _For(partition=partition, purposes=chosen)


def policy_document(
    config: Config,
    *,
    journal_init: bool = False,
    partition: str = DEFAULT_PARTITION,
    purposes: Iterable[Purpose] = ("run",),
) -> dict[str, Any]:
    """The IAM policy document (``{"Version", "Statement"}``) for exactly what ``config``
    uses, with ARNs in ``partition``, for the commands of ``purposes``. ``journal_init``
    adds what ``rotator journal init`` needs. With ``[accounts]`` this is the hub's and the
    members' policies together; ``member_policy`` and ``hub_policy`` split them."""
    ask = _for(partition, purposes)
    statements = [
        *_in_account(config, ask, sinks_in=("member", "hub")),
        *_hub(config, ask),
        *_journal(config.journal.url, ask, journal_init=journal_init),
        *_notify(config, ask),
    ]
    return {"Version": "2012-10-17", "Statement": smallest(statements)}


def member_policy(
    config: Config,
    *,
    partition: str = DEFAULT_PARTITION,
    purposes: Iterable[Purpose] = ("run",),
) -> dict[str, Any]:
    """The member role's policy (``rotator iam-policy --member``): what a sweep does inside
    a member account — discovery, the kinds' IAM calls, and the sinks kept there
    (``sink_in = "member"``). No journal, no notifications: those are the hub's."""
    ask = _for(partition, purposes)
    return {"Version": "2012-10-17", "Statement": smallest(_in_account(config, ask, ("member",)))}


def hub_policy(
    config: Config,
    *,
    journal_init: bool = False,
    partition: str = DEFAULT_PARTITION,
    purposes: Iterable[Purpose] = ("run",),
) -> dict[str, Any]:
    """The hub's policy (``rotator iam-policy --hub``): Organizations discovery, assuming
    the member role, the journal, notifications, the sinks kept in the hub
    (``sink_in = "hub"``), and — with ``include_self`` — sweeping its own account."""
    ask = _for(partition, purposes)
    accounts = config.accounts
    own = accounts is not None and accounts.include_self
    statements = [
        *(_in_account(config, ask, ("member", "hub")) if own else _sinks(config, ask, ("hub",))),
        _statement("Identity", ["sts:GetCallerIdentity"], ["*"]),
        *_hub(config, ask),
        *_journal(config.journal.url, ask, journal_init=journal_init),
        *_notify(config, ask),
    ]
    return {"Version": "2012-10-17", "Statement": smallest(statements)}


def wide_sinks(config: Config) -> list[str]:
    """A warning for each rule whose AWS sink's name starts with a field (``"{user}/…"``):
    its statement then covers every secret (``secret:*``) or parameter (``parameter/*``)
    of the account, not only rotator's."""
    warnings = []
    for rule in config.rules:
        sink = rule.sink
        if sink.type not in ("secretsmanager", "ssm"):
            continue
        name = str(getattr(sink, "name", ""))
        if name.split("{", 1)[0].strip("/"):
            continue
        every = "secret:*" if sink.type == "secretsmanager" else "parameter/*"
        warnings.append(
            f"rule {rule.name!r}: sink name {name!r} starts with a field, so the policy "
            f"grants writing EVERY {sink.type} {'secret' if every[0] == 's' else 'parameter'} "
            f'of the account ({every}); start the name with a fixed prefix ("rotator/{{user}}")'
        )
    return warnings


def _in_account(config: Config, ask: _For, sinks_in: tuple[str, ...]) -> list[Statement]:
    run = [
        _statement("Discover", _discovery(config), ["*"]),
        _statement("ReadUsers", USERS, _arns(ask, "user", _user_prefixes(config))),
        *_kinds(config, ask),
        *_sinks(config, ask, sinks_in),
    ]
    if not ask.report:
        return run
    # `report` plans with the policy (the run's reads), then surveys every user.
    reads = [{**s, "Action": [a for a in s["Action"] if _READ.match(a)]} for s in run]
    return [*(run if ask.run else reads), *_report(config, ask)]


def _report(config: Config, ask: _For) -> list[Statement]:
    services = any(r.enabled and r.kind is Kind.SERVICE_CREDENTIAL for r in config.rules)
    users = [*REPORT_USERS, *([REPORT_SERVICE_CREDENTIALS] if services else [])]
    return [
        _statement("Report", REPORT_ACCOUNT, ["*"]),
        _statement("ReportUsers", users, _arns(ask, "user", ["/"])),
    ]


def _hub(config: Config, ask: _For) -> list[Statement]:
    accounts = config.accounts
    if accounts is None or not (accounts.members or accounts.organization):
        return []
    role = (
        accounts.role_arn.format(account="*")
        if accounts.role_arn is not None
        else ask.arn("iam", f"role{accounts.role_path}{accounts.role_name}")
    )
    statements = [
        _statement("AssumeMemberRole", ["sts:AssumeRole"], [role]),
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


def _kinds(config: Config, ask: _For) -> list[Statement]:
    statements = []
    for kind, registered in REGISTRY.items():
        rules = [r for r in config.rules if r.kind is kind]
        if not rules:
            continue
        iam = registered.iam
        name = _sid(str(kind))
        arns = _arns(ask, iam.resource, [r.select.path_prefix for r in rules])
        statements.append(_statement(name, iam.scoped, arns))
        statements.append(_statement(name + "List", iam.unscoped, ["*"]))
        disabling = [r.select.path_prefix for r in rules if r.unused_after is not None]
        statements.append(
            _statement(name + "Disable", iam.disable, _arns(ask, iam.resource, disabling))
        )
    return statements


def _sinks(config: Config, ask: _For, sinks_in: tuple[str, ...]) -> list[Statement]:
    statements = []
    for rule in config.rules:
        # A file or memory sink asks nothing of AWS wherever it is; without [accounts]
        # member and hub are one account.
        where = rule.sink_in if config.accounts is not None else "member"
        if where not in sinks_in:
            continue
        for declared in SINKS[rule.sink.type](rule.sink, ask.partition):
            kms = all(action.startswith("kms:") for action in declared["Action"])
            sid = "Sink" + _sid(rule.sink.type) + ("Kms" if kms else "")
            statements.append({"Sid": sid, "Effect": "Allow", **declared})
    return statements


def _journal(url: str, ask: _For, *, journal_init: bool) -> list[Statement]:
    parsed = urlsplit(url)
    if parsed.scheme != "dynamodb":
        return []  # sqlite and memory journals call no AWS
    region = dict(parse_qsl(parsed.query)).get("region") or "*"
    # `report` reads the journal (its plan); a run writes it.
    actions = JOURNAL_ACTIONS if ask.run else tuple(a for a in JOURNAL_ACTIONS if _READ.match(a))
    actions += JOURNAL_INIT_ACTIONS if journal_init else ()
    table = ask.arn("dynamodb", f"table/{parsed.netloc}", region)
    return [_statement("Journal", actions, [table])]


def _notify(config: Config, ask: _For) -> list[Statement]:
    topic = config.notify.sns_topic_arn
    return [_statement("Notify", ["sns:Publish"], [topic])] if topic and ask.run else []


def _statement(sid: str, actions: Iterable[str], resources: Iterable[str]) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def _arns(ask: _For, resource_type: str, prefixes: Iterable[str]) -> list[str]:
    """``arn:aws:iam::*:user/ci/*`` for each path prefix (covered ones dropped later)."""
    return [ask.arn("iam", f"{resource_type}{prefix}*") for prefix in sorted(set(prefixes))]


def _sid(name: str) -> str:
    """``access-key`` -> ``AccessKey`` (a Sid is alphanumeric)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
