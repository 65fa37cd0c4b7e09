"""``rotator iam-policy``: the least-privilege policy is a pure function of the policy file,
with exactly the actions its kinds, sinks, journal and notifications need, each scoped as
far as IAM allows; and ``deploy/iam-policy.json`` is what the command prints for the
example policy it was generated from."""

from __future__ import annotations

import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rotator import app as application
from rotator.entrypoints.cli_deploy import register
from rotator.kinds import REGISTRY
from rotator.model import Kind
from rotator.permissions import (
    JOURNAL_ACTIONS,
    JOURNAL_INIT_ACTIONS,
    SINKS,
    UNSCOPED,
    policy_document,
    render,
)
from rotator.policy import SinkConfig
from rotator.settings import Config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "lambda.toml"
ACCESS_KEY_ACTIONS = [
    "iam:CreateAccessKey",
    "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:UpdateAccessKey",
]


@pytest.fixture(autouse=True)
def _no_rotator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment overrides a policy file; these tests are about the file alone."""
    for name in list(os.environ):
        if name.startswith("ROTATOR_"):
            monkeypatch.delenv(name)


def rule(name: str = "keys", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "access-key",
        "sink": {"type": "file", "path": "/var/lib/rotator/{user}.json"},
        **fields,
    }


def config(*rules: dict[str, Any], **top: Any) -> Config:
    return Config.model_validate({"rules": list(rules) or [rule()], **top})


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert len(by_sid) == len(document["Statement"]), "Sids are unique"
    return by_sid


def granted(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] for a in s["Action"]}


# --- exactly what is needed -------------------------------------------------------------


def test_access_keys_with_a_file_sink_and_sqlite_need_iam_only_scoped_to_the_path() -> None:
    document = policy_document(config(rule(select={"path_prefix": "/ci/"})))

    assert document["Version"] == "2012-10-17"
    assert document["Statement"] == [
        {
            "Sid": "Discover",
            "Effect": "Allow",
            "Action": [
                "iam:GenerateCredentialReport",
                "iam:GetCredentialReport",
                "iam:ListUsers",
                "sts:GetCallerIdentity",
            ],
            "Resource": ["*"],
        },
        {
            "Sid": "ReadUsers",
            "Effect": "Allow",
            "Action": ["iam:GetUser", "iam:ListUserTags"],
            "Resource": ["arn:aws:iam::*:user/ci/*"],
        },
        {
            "Sid": "AccessKey",
            "Effect": "Allow",
            "Action": ACCESS_KEY_ACTIONS,
            "Resource": ["arn:aws:iam::*:user/ci/*"],
        },
    ]


def test_path_prefixes_covered_by_a_shorter_one_are_not_repeated() -> None:
    document = policy_document(
        config(
            rule("a", select={"path_prefix": "/ci/"}),
            rule("b", select={"path_prefix": "/ci/deploy/"}),
            rule("c", select={"path_prefix": "/vendors/"}),
        )
    )

    assert statements(document)["AccessKey"]["Resource"] == [
        "arn:aws:iam::*:user/ci/*",
        "arn:aws:iam::*:user/vendors/*",
    ]


KIND_RULES: dict[Kind, dict[str, Any]] = {
    Kind.ACCESS_KEY: {},
    Kind.SIGNING_CERTIFICATE: {},
    Kind.LOGIN_PROFILE: {},
    Kind.SSH_PUBLIC_KEY: {},
    Kind.SERVICE_CREDENTIAL: {"service": "codecommit.amazonaws.com"},
    Kind.SERVER_CERTIFICATE: {
        "issuer": {"type": "self-signed"},
        "select": {"path_prefix": "/web/", "names": ["www-*"]},
    },
}


@pytest.mark.parametrize("kind", list(KIND_RULES))
def test_each_kind_gets_exactly_its_declared_actions_scoped_where_iam_allows(kind: Kind) -> None:
    fields = {"select": {"path_prefix": "/ci/"}, **KIND_RULES[kind]}
    document = policy_document(config(rule(kind=str(kind), **fields)))

    declared = set(REGISTRY[kind].iam.all)
    assert declared, f"{kind} declares its IAM actions"
    base = {"sts:GetCallerIdentity", "iam:ListUsers", "iam:GetUser", "iam:ListUserTags"}
    base |= {"iam:GenerateCredentialReport", "iam:GetCredentialReport"}
    assert declared <= granted(document)
    assert granted(document) - declared <= base
    for statement in document["Statement"]:
        if statement["Resource"] == ["*"]:
            assert set(statement["Action"]) <= UNSCOPED
        else:
            assert not set(statement["Action"]) & UNSCOPED
            resource_type = "server-certificate" if kind is Kind.SERVER_CERTIFICATE else "user"
            if statement["Sid"] != "ReadUsers":
                prefix = "/web/" if kind is Kind.SERVER_CERTIFICATE else "/ci/"
                assert statement["Resource"] == [f"arn:aws:iam::*:{resource_type}{prefix}*"]


def test_a_policy_of_server_certificates_only_reads_no_users() -> None:
    fields = KIND_RULES[Kind.SERVER_CERTIFICATE]
    document = policy_document(config(rule(kind="server-certificate", **fields)))

    assert "iam:ListUsers" not in granted(document)
    assert "ReadUsers" not in statements(document)


# --- sinks, journal, notifications --------------------------------------------------------


def test_aws_sinks_are_scoped_to_their_template_prefix_and_their_kms_key() -> None:
    key_arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    sm = {
        "type": "secretsmanager",
        "name": "ci/{user}",
        "kms_key_id": key_arn,
        "region": "eu-west-1",
    }
    ssm = {"type": "ssm", "name": "/team/{account}/{user}", "kms_key_id": "1234abcd-12ab"}
    document = policy_document(config(rule("a", sink=sm), rule("b", sink=ssm)))
    by_sid = statements(document)

    assert by_sid["SinkSecretsmanager"]["Resource"] == [
        "arn:aws:secretsmanager:eu-west-1:*:secret:ci/*"
    ]
    assert by_sid["SinkSecretsmanagerKms"]["Resource"] == [key_arn]
    assert by_sid["SinkSecretsmanagerKms"]["Condition"] == {
        "StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}
    }
    assert by_sid["SinkSsm"]["Resource"] == ["arn:aws:ssm:*:*:parameter/team/*"]
    assert by_sid["SinkSsmKms"]["Resource"] == ["arn:aws:kms:*:*:key/1234abcd-12ab"]
    assert "secretsmanager:PutSecretValue" in by_sid["SinkSecretsmanager"]["Action"]
    assert "ssm:LabelParameterVersion" in by_sid["SinkSsm"]["Action"]


def test_two_rules_with_the_same_sink_type_share_one_statement() -> None:
    document = policy_document(
        config(
            rule("a", sink={"type": "ssm", "name": "/a/{user}"}),
            rule("b", sink={"type": "ssm", "name": "/b/{user}"}),
        )
    )

    assert statements(document)["SinkSsm"]["Resource"] == [
        "arn:aws:ssm:*:*:parameter/a/*",
        "arn:aws:ssm:*:*:parameter/b/*",
    ]


def test_local_sinks_and_journals_need_no_aws_permissions() -> None:
    document = policy_document(config(rule(sink={"type": "memory"}), journal={"url": "memory://"}))

    assert {a.split(":")[0] for a in granted(document)} == {"iam", "sts"}


def test_a_dynamodb_journal_gets_its_table_and_journal_init_adds_creating_it() -> None:
    cfg = config(journal={"url": "dynamodb://rotations?region=eu-central-1"})

    runtime = statements(policy_document(cfg))["Journal"]
    init = statements(policy_document(cfg, journal_init=True))["Journal"]

    assert runtime["Resource"] == ["arn:aws:dynamodb:eu-central-1:*:table/rotations"]
    assert set(runtime["Action"]) == set(JOURNAL_ACTIONS)
    assert set(init["Action"]) == set(JOURNAL_ACTIONS) | set(JOURNAL_INIT_ACTIONS)


def test_an_sns_topic_to_notify_gets_publish_on_that_topic_only() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:rotator"
    document = policy_document(config(notify={"sns_topic_arn": topic}))

    assert statements(document)["Notify"] == {
        "Sid": "Notify",
        "Effect": "Allow",
        "Action": ["sns:Publish"],
        "Resource": [topic],
    }


def test_every_sink_type_declares_its_permissions() -> None:
    union = typing.get_args(typing.get_args(SinkConfig)[0])
    types = {typing.get_args(model.model_fields["type"].annotation)[0] for model in union}

    assert types == set(SINKS)


def test_no_statement_grants_a_wildcard_action() -> None:
    document = policy_document(application.load(EXAMPLE))

    for action in granted(document):
        service, _, name = action.partition(":")
        assert service and name and "*" not in action


# --- the command and deploy/iam-policy.json ----------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command, as in the real CLI
    return app


def test_deploy_iam_policy_json_is_what_the_command_prints_for_the_example() -> None:
    printed = CliRunner().invoke(cli(), ["iam-policy", "--config", str(EXAMPLE)])

    assert printed.exit_code == 0, printed.output
    on_disk = (ROOT / "deploy" / "iam-policy.json").read_text()
    assert printed.stdout == on_disk, (
        "regenerate: rotator iam-policy --config config/lambda.toml > deploy/iam-policy.json"
    )
    assert json.loads(on_disk) == policy_document(application.load(EXAMPLE))
    assert render(json.loads(on_disk)) == on_disk


def test_the_command_refuses_an_invalid_policy_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nkind = "access-key"\nmax_age = "9x"\n')

    printed = CliRunner().invoke(cli(), ["iam-policy", "--config", str(bad)])

    assert printed.exit_code == 2
    assert "max_age" in printed.output
