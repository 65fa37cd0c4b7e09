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
from rotator.iam_statements import covers
from rotator.kinds import REGISTRY
from rotator.model import Kind
from rotator.permissions import (
    JOURNAL_ACTIONS,
    JOURNAL_INIT_ACTIONS,
    SINKS,
    UNSCOPED,
    hub_policy,
    member_policy,
    policy_document,
    render,
)
from rotator.policy import SinkConfig
from rotator.settings import Config, load_config

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
    """Reading users and rotating their keys share one statement (same resources), and
    iam:GetUser, which both need, is granted once."""
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
            "Sid": "ReadUsersAccessKey",
            "Effect": "Allow",
            "Action": sorted({*ACCESS_KEY_ACTIONS, "iam:ListUserTags"}),
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

    assert statements(document)["ReadUsersAccessKey"]["Resource"] == [
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

    iam = REGISTRY[kind].iam
    declared = set(iam.scoped + iam.unscoped)
    assert declared, f"{kind} declares its IAM actions"
    base = {"sts:GetCallerIdentity", "iam:ListUsers", "iam:GetUser", "iam:ListUserTags"}
    base |= {"iam:GenerateCredentialReport", "iam:GetCredentialReport"}
    assert declared <= granted(document)
    assert granted(document) - declared <= base
    assert not set(iam.disable) & granted(document), "no rule disables unused credentials"
    resource_type = "server-certificate" if kind is Kind.SERVER_CERTIFICATE else "user"
    prefix = "/web/" if kind is Kind.SERVER_CERTIFICATE else "/ci/"
    for statement in document["Statement"]:
        if statement["Resource"] == ["*"]:
            assert set(statement["Action"]) <= UNSCOPED
        else:
            assert not set(statement["Action"]) & UNSCOPED
            if set(statement["Action"]) & set(iam.scoped) - {"iam:GetUser"}:
                assert statement["Resource"] == [f"arn:aws:iam::*:{resource_type}{prefix}*"]


def test_a_policy_of_server_certificates_only_reads_no_users() -> None:
    fields = KIND_RULES[Kind.SERVER_CERTIFICATE]
    document = policy_document(config(rule(kind="server-certificate", **fields)))

    assert "iam:ListUsers" not in granted(document)
    assert "iam:ListUserTags" not in granted(document)


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


# --- partitions, duplicates, the journal's real actions, --for ------------------------

EVERYTHING = ROOT / "config"


def every_policy() -> list[Config]:
    """Every example policy, plus one rule of each kind with each AWS sink and a DynamoDB
    journal and an SNS topic: the documents below must hold for all of them."""
    rules = [
        rule(f"k{i}", kind=str(kind), **{"select": {"path_prefix": f"/p{i % 3}/"}, **fields})
        for i, (kind, fields) in enumerate(KIND_RULES.items())
    ]
    rules[0]["sink"] = {"type": "secretsmanager", "name": "rotator/{user}", "kms_key_id": "k"}
    rules[1]["sink"] = {"type": "ssm", "name": "/rotator/{user}", "region": "eu-west-1"}
    rules[2]["disable_unused_after"] = "90d"
    top = {"journal": {"url": "dynamodb://rotations"}, "notify": {"sns_topic_arn": SNS_TOPIC}}
    # Parsed only: the examples name certificate files this machine does not have.
    examples = [load_config(p) for p in sorted(EVERYTHING.glob("*.toml"))]
    return [*examples, config(*rules, **top)]


SNS_TOPIC = "arn:aws:sns:us-east-1:123456789012:rotator"


@pytest.mark.parametrize("purposes", [("run",), ("report",), ("run", "report")])
def test_no_action_is_granted_twice_on_the_same_resources(purposes: tuple[Any, ...]) -> None:
    """Within a statement actions are unique; across statements, no action is granted on
    resources another statement already grants it on; statements with the same
    resources (and condition) are one."""
    for cfg in every_policy():
        for document in (
            policy_document(cfg, purposes=purposes),
            *((member_policy(cfg), hub_policy(cfg)) if cfg.accounts else ()),
        ):
            found = document["Statement"]
            for statement in found:
                assert len(set(statement["Action"])) == len(statement["Action"])
                assert len(set(statement["Resource"])) == len(statement["Resource"])
            for i, one in enumerate(found):
                for other in found[i + 1 :]:
                    same = set(one["Action"]) & set(other["Action"])
                    for action in same:
                        for a, b in ((one, other), (other, one)):
                            assert "Condition" in a or not all(
                                any(covers(r, mine) for r in a["Resource"])
                                for mine in b["Resource"]
                            ), f"{action} twice: {a['Sid']} covers {b['Sid']}"
                    if one.get("Condition") == other.get("Condition"):
                        assert one["Resource"] != other["Resource"], (one["Sid"], other["Sid"])


def test_the_journal_gets_the_actions_its_calls_need_and_no_transact_write_items() -> None:
    """IAM has no dynamodb:TransactWriteItems: a transaction is authorised by its items'
    own actions, and the journal's transactions hold only Puts."""
    cfg = config(journal={"url": "dynamodb://rotations"})
    journal = statements(policy_document(cfg))["Journal"]
    assert journal["Action"] == [
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ]
    source = (ROOT / "rotator" / "journal" / "dynamodb.py").read_text()
    source += (ROOT / "rotator" / "journal" / "dynamodb_table.py").read_text()
    for item in ("Update", "Delete", "ConditionCheck"):
        assert f'{{"{item}":' not in source, f"a {item} item needs dynamodb:{item}Item"
    for document in (policy_document(c) for c in every_policy()):
        assert not {a for a in granted(document) if a.startswith("dynamodb:Transact")}


@pytest.mark.parametrize("partition", ["aws-cn", "aws-us-gov", "aws-iso-b"])
def test_every_arn_is_in_the_partition_asked_for(partition: str) -> None:
    for cfg in every_policy():
        for statement in policy_document(cfg, partition=partition)["Statement"]:
            for resource in statement["Resource"]:
                if resource.startswith("arn:") and resource != SNS_TOPIC:
                    assert resource.startswith(f"arn:{partition}:"), resource


def test_delete_login_profile_only_where_a_rule_disables_unused_passwords() -> None:
    plain = rule("pw", kind="login-profile", select={"path_prefix": "/staff/"})
    unused = rule(
        "idle", kind="login-profile", select={"path_prefix": "/ops/"}, disable_unused_after="90d"
    )

    assert "iam:DeleteLoginProfile" not in granted(policy_document(config(plain)))
    document = policy_document(config(plain, unused))
    (deleting,) = [s for s in document["Statement"] if "iam:DeleteLoginProfile" in s["Action"]]
    assert deleting["Resource"] == ["arn:aws:iam::*:user/ops/*"]
    assert REGISTRY[Kind.LOGIN_PROFILE].iam.disable == ("iam:DeleteLoginProfile",)


WRITES = ("Create", "Update", "Delete", "Put", "Upload", "Reset", "Label", "Add", "Tag")


def test_report_is_read_only_over_every_user_and_lists_server_certificates() -> None:
    """`rotator report` surveys every user of the account (not only the rules' paths),
    reads the credential report and every server certificate, and changes nothing."""
    cfg = config(rule(select={"path_prefix": "/ci/"}), journal={"url": "dynamodb://rotations"})
    document = policy_document(cfg, purposes=["report"])
    actions = granted(document)

    assert {"iam:ListServerCertificates", "iam:GenerateCredentialReport"} <= actions
    users = [s for s in document["Statement"] if "iam:ListAccessKeys" in s["Action"]]
    assert [s["Resource"] for s in users] == [["arn:aws:iam::*:user/*"]]
    assert not [a for a in actions if a.split(":")[1].startswith(WRITES)]
    assert "dynamodb:Query" in actions and "dynamodb:PutItem" not in actions
    assert "iam:ListServiceSpecificCredentials" not in actions
    services = rule("svc", kind="service-credential", service="codecommit.amazonaws.com")
    with_services = policy_document(config(services), purposes=["report"])
    assert "iam:ListServiceSpecificCredentials" in granted(with_services)
    both = granted(policy_document(cfg, purposes=["run", "report"]))
    assert both == granted(policy_document(cfg)) | actions


def test_the_command_takes_a_partition_and_derives_it_from_the_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[journal]\nurl = "dynamodb://rotations"\n' + RULE_TOML)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def arns(*args: str) -> set[str]:
        printed = CliRunner().invoke(cli(), ["iam-policy", "--config", str(policy), *args])
        assert printed.exit_code == 0, printed.output
        document = json.loads(printed.stdout)
        return {r.split(":")[1] for s in document["Statement"] for r in s["Resource"] if ":" in r}

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert arns() == {"aws"}
    assert arns("--partition", "aws-us-gov") == {"aws-us-gov"}
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-northwest-1")
    assert arns() == {"aws-cn"}
    assert arns("--partition", "aws") == {"aws"}, "the option wins"
    policy.write_text('[aws]\nregion = "us-gov-east-1"\n' + RULE_TOML)
    assert arns() == {"aws-us-gov"}, "[aws] region wins over the environment"


RULE_TOML = (
    '[[rules]]\nname = "k"\nkind = "access-key"\n'
    'sink = { type = "ssm", name = "/rotator/{user}" }\n'
)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--partition", "aws-moon"], "--partition: 'aws-moon' is not an AWS partition"),
        (["--partition", "arn:aws"], "--partition"),
        (["--for", "audit"], "--for: 'audit'"),
        (["--for", "run", "--for", "nope"], "--for: 'nope'"),
    ],
)
def test_a_bad_partition_or_purpose_exits_2_naming_the_option(
    tmp_path: Path, args: list[str], named: str
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(RULE_TOML)

    printed = CliRunner().invoke(cli(), ["iam-policy", "--config", str(policy), *args])

    assert printed.exit_code == 2
    assert printed.stdout == ""
    assert f"error: command line: {named}" in printed.stderr
    assert "Traceback" not in printed.output


@pytest.mark.parametrize(
    ("sink", "wide"),
    [
        ('{ type = "secretsmanager", name = "{user}/{kind}" }', "secret:*"),
        ('{ type = "ssm", name = "/{account}/{user}" }', "parameter/*"),
        ('{ type = "ssm", name = "/rotator/{user}" }', None),
        ('{ type = "secretsmanager", name = "ci/{user}" }', None),
    ],
)
def test_a_sink_name_starting_with_a_field_is_warned_about_loudly(
    tmp_path: Path, sink: str, wide: str | None
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(RULE_TOML.replace('{ type = "ssm", name = "/rotator/{user}" }', sink))

    printed = CliRunner().invoke(cli(), ["iam-policy", "--config", str(policy)])

    assert printed.exit_code == 0
    json.loads(printed.stdout)  # the policy still prints, whole, on stdout
    if wide is None:
        assert printed.stderr == ""
    else:
        assert printed.stderr.startswith("WARNING: rule 'k': ")
        assert f"({wide})" in printed.stderr
        assert wide in json.dumps(json.loads(printed.stdout))


def test_the_help_names_the_defaults_of_partition_and_for_whole() -> None:
    """Nothing in the options' help is read as rich markup and lost (``[aws]`` was)."""
    shown = CliRunner().invoke(cli(), ["iam-policy", "--help"], env={"COLUMNS": "200"})

    assert shown.exit_code == 0
    text = " ".join(shown.output.replace("│", " ").split())
    assert "(the aws.region setting, AWS_DEFAULT_REGION or the profile's region), else aws" in text
    assert "Repeatable; default: run." in text
    assert text.count("With an `accounts` section:") == 2


def test_iam_policy_for_report_grants_every_action_the_report_calls() -> None:
    """``compliance.REPORT_ACTIONS`` (what ``rotator report`` calls, checked against the
    calls it really makes in tests/e2e/test_report.py) is exactly what ``--for report``
    grants beside the plan's reads."""
    from rotator import compliance, permissions

    granted = {*permissions.REPORT_ACCOUNT, *permissions.REPORT_USERS}
    assert set(compliance.REPORT_ACTIONS) == granted
