"""``rotator iam-policy --member`` / ``--hub``: an organization sweep's two roles, each
with only its part; the StackSet's member role is what ``--member`` prints for the
example org policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rotator import app as application
from rotator.entrypoints.cli_deploy import register
from rotator.permissions import hub_policy, member_policy, policy_document
from rotator.settings import Config
from tests.test_deploy import PARTITION, CfnLoader, in_template

yaml: Any = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "org.toml"
ORG = {"role_name": "rotator-member", "organization": {}}


@pytest.fixture(autouse=True)
def _no_rotator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROTATOR_"):
            monkeypatch.delenv(name)


def config(accounts: dict[str, Any] | None = None, **rule: Any) -> Config:
    return Config.model_validate(
        {
            "journal": {"url": "dynamodb://rotator-journal"},
            "accounts": accounts if accounts is not None else ORG,
            "rules": [
                {
                    "name": "keys",
                    "kind": "access-key",
                    "select": {"path_prefix": "/ci/"},
                    "sink": {"type": "secretsmanager", "name": "rotator/{account}/{user}"},
                    **rule,
                }
            ],
        }
    )


def granted(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] for a in s["Action"]}


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command: typer then keeps subcommands
    return app


def test_the_member_role_rotates_and_keeps_member_sinks_only() -> None:
    member = granted(member_policy(config()))
    assert "iam:CreateAccessKey" in member and "secretsmanager:PutSecretValue" in member
    assert not {a for a in member if a.startswith(("dynamodb:", "organizations:", "sns:"))}
    assert "sts:AssumeRole" not in member
    hub = granted(hub_policy(config()))
    assert "iam:CreateAccessKey" not in hub and "secretsmanager:PutSecretValue" not in hub
    assert {"sts:AssumeRole", "organizations:ListAccountsForParent", "dynamodb:PutItem"} <= hub
    assert "organizations:ListTagsForResource" not in hub  # no tag matching in this policy


def test_the_hub_assumes_only_the_member_role_and_reads_tags_only_when_needed() -> None:
    document = hub_policy(config({**ORG, "role_path": "/ops/", "exclude": {"tags": {"a": "b"}}}))
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["AssumeMemberRole"]["Resource"] == ["arn:aws:iam::*:role/ops/rotator-member"]
    (discover,) = [s for s in document["Statement"] if "organizations:ListRoots" in s["Action"]]
    assert "organizations:ListTagsForResource" in discover["Action"]
    assert discover["Resource"] == ["*"]
    listed = hub_policy(config({"role_name": "r", "members": ["111122223333"]}))
    assert not {a for a in granted(listed) if a.startswith("organizations:")}


def test_hub_sinks_and_the_hubs_own_account_move_to_the_hub() -> None:
    hub_kept = config(sink_in="hub")
    assert "secretsmanager:PutSecretValue" in granted(hub_policy(hub_kept))
    assert "secretsmanager:PutSecretValue" not in granted(member_policy(hub_kept))
    with_self = config({**ORG, "include_self": True})
    assert "iam:CreateAccessKey" in granted(hub_policy(with_self))
    assert granted(policy_document(with_self)) >= granted(member_policy(with_self))


def test_the_stackset_member_role_is_what_the_command_prints_for_the_example() -> None:
    template = yaml.load((ROOT / "deploy" / "member-role-stackset.yaml").read_text(), CfnLoader)
    role = template["Resources"]["MemberRole"]["Properties"]
    (policy,) = role["Policies"]
    expected = in_template(
        member_policy(application.load(EXAMPLE), partition=PARTITION)["Statement"]
    )
    assert policy["PolicyDocument"]["Statement"] == expected, (
        "regenerate: rotator iam-policy --member --config config/org.toml"
    )
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Ref": "HubRoleArn"}}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}


def test_the_org_template_hub_role_holds_the_hub_policy() -> None:
    template = yaml.load((ROOT / "deploy" / "org-template.yaml").read_text(), CfnLoader)
    (policy,) = template["Resources"]["HubRole"]["Properties"]["Policies"]
    actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]}
    hub = granted(hub_policy(application.load(EXAMPLE)))
    assert hub <= actions


def test_member_and_hub_need_accounts(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(
        '[[rules]]\nname = "k"\nkind = "access-key"\n'
        'sink = { type = "file", path = "/tmp/{user}.json" }\n'
    )
    printed = CliRunner().invoke(cli(), ["iam-policy", "--member", "--config", str(plain)])
    assert printed.exit_code == 2 and "[accounts]" in printed.output
    both = ["iam-policy", "--member", "--hub", "--config", str(EXAMPLE)]
    assert CliRunner().invoke(cli(), both).exit_code == 2
    member = CliRunner().invoke(cli(), ["iam-policy", "--member", "--config", str(EXAMPLE)])
    assert member.exit_code == 0 and "iam:CreateAccessKey" in member.output
