"""``[accounts]``: many accounts in the policy file, validated with clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.accounts import AccountsSettings, select_accounts
from rotator.aws import Aws
from rotator.errors import ConfigError
from rotator.journal import MemoryJournal
from rotator.model import Kind
from rotator.policy import Account
from rotator.rotation.org import OrgSweep
from rotator.settings import load_config
from rotator.sinks.base import SinkKey, naming_accounts

RULE = """
[[rules]]
name = "keys"
kind = "access-key"
sink = { type = "file", path = "/tmp/s/{account}/{user}.json" }
"""

ORG = """
[accounts]
role_name = "rotator-member"
external_id = "rotator-ext-1"
[accounts.organization]
ous = ["ou-ab12-cdef3456", "/Workloads/Prod"]
[accounts.exclude]
ids = ["999999999999"]
ous = ["/Workloads/Prod/Legacy"]
tags = { "rotator:skip" = "true" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rotator.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value.problems


def test_an_org_section_is_accepted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORG + RULE))
    accounts = config.accounts
    assert accounts is not None and accounts.organization is not None
    assert accounts.organization.ous == ["ou-ab12-cdef3456", "/Workloads/Prod"]
    assert accounts.organization.recursive
    assert accounts.exclude.ids == ["999999999999"]
    assert accounts.role_for("111122223333") == "arn:aws:iam::111122223333:role/rotator-member"
    assert accounts.session_duration == timedelta(hours=1)
    assert (accounts.max_accounts, accounts.per_account_concurrency) == (8, 4)


def test_members_as_ids_or_tables(tmp_path: Path) -> None:
    text = """
[accounts]
role_arn = "arn:aws:iam::{account}:role/ops/rotator"
members = ["111122223333", { id = "444455556666", name = "prod" }]
"""
    config = load_config(write(tmp_path, text + RULE))
    assert config.accounts is not None
    assert [(m.id, m.name) for m in config.accounts.members] == [
        ("111122223333", ""),
        ("444455556666", "prod"),
    ]
    assert config.accounts.role_for("444455556666") == "arn:aws:iam::444455556666:role/ops/rotator"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('[accounts]\nrole_name = "r"', "no accounts"),
        ('[accounts]\nmembers = ["1234"]\nrole_name = "r"', "not an AWS account ID"),
        ("[accounts]\nmembers = [111122223333]\nrole_name = 'r'", "not an AWS account ID"),
        ('[accounts]\nmembers = ["111122223333"]', "role_name (or a role_arn template)"),
        (
            '[accounts]\nmembers = ["111122223333", "111122223333"]\nrole_name = "r"',
            "more than once: 111122223333",
        ),
        (
            '[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nrole_arn = '
            '"arn:aws:iam::{account}:role/r"',
            "not both",
        ),
        (
            '[accounts]\nmembers = ["111122223333"]\nrole_arn = "arn:aws:iam::1:role/r"',
            "{account}",
        ),
        ('[accounts]\nmembers = ["111122223333"]\nrole_name = "a b"', "not an IAM role name"),
        (
            '[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nsession_duration = "5m"',
            "between 15m and 12h",
        ),
        (
            '[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nsession_duration = "13h"',
            "between 15m and 12h",
        ),
        ('[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nmax_accounts = 0', "greater"),
        (
            '[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nper_account_concurrency = 65',
            "less than or equal to 64",
        ),
        (
            '[accounts]\nrole_name = "r"\n[accounts.organization]\nous = ["Workloads"]',
            "neither an OU ID",
        ),
        ('[accounts]\nrole_name = "r"\n[accounts.organization]\nous = ["/A//B"]', "empty"),
        (
            '[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nexternal_id = "x"',
            "external_id",
        ),
        ('[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\nbogus = 1', "unknown key"),
    ],
)
def test_account_mistakes_are_named(tmp_path: Path, section: str, expected: str) -> None:
    found = problems(tmp_path, section + "\n" + RULE)
    assert any(p.startswith("accounts") and expected in p for p in found), found


def test_rule_account_selectors_need_accounts(tmp_path: Path) -> None:
    found = problems(tmp_path, RULE + 'accounts = ["111122223333"]\n')
    assert any("rule 'keys'" in p and "need an [accounts] section" in p for p in found), found


def test_ou_selectors_need_discovery(tmp_path: Path) -> None:
    text = '[accounts]\nmembers = ["111122223333"]\nrole_name = "r"\n' + RULE + 'ous = ["/A"]\n'
    found = problems(tmp_path, text)
    assert any("[accounts.organization]" in p for p in found), found


def test_rule_selectors_are_validated(tmp_path: Path) -> None:
    found = problems(tmp_path, ORG + RULE + 'accounts = ["12"]\n')
    assert any(p.startswith("rule 'keys': accounts") and "12 digits" in p for p in found), found


def test_a_shared_sink_must_separate_accounts(tmp_path: Path) -> None:
    text = ORG + RULE.replace("/tmp/s/{account}/{user}.json", "/tmp/s/{user}.json")
    found = problems(tmp_path, text)
    assert any("has no {account}" in p for p in found), found
    hub = ORG + (
        '\n[[rules]]\nname = "sm"\nkind = "access-key"\nsink_in = "hub"\n'
        'sink = { type = "secretsmanager", name = "rotator/{user}" }\n'
    )
    assert any("has no {account}" in p for p in problems(tmp_path, hub))
    member = hub.replace('sink_in = "hub"\n', "")
    assert load_config(write(tmp_path, member)).rules[0].sink_in == "member"
    named = hub.replace("rotator/{user}", "rotator/{account_name}/{user}")
    assert load_config(write(tmp_path, named)).rules[0].sink_in == "hub"


ACCOUNTS = [
    Account(id="111111111111", name="a", ou_ids=("r-ab12",), ou_path="/"),
    Account(
        id="222222222222",
        name="b",
        ou_ids=("r-ab12", "ou-ab12-aaaaaaaa"),
        ou_path="/Workloads",
        tags={"env": "prod"},
    ),
    Account(
        id="333333333333",
        ou_ids=("r-ab12", "ou-ab12-aaaaaaaa", "ou-ab12-bbbbbbbb"),
        ou_path="/Workloads/Prod",
    ),
]


def test_accounts_in_ous_by_id_and_path_nested() -> None:
    a, b, c = ACCOUNTS
    assert c.in_ou("ou-ab12-aaaaaaaa") and c.in_ou("/Workloads") and c.in_ou("/")
    assert not c.in_ou("ou-ab12-aaaaaaaa", recursive=False)
    assert c.in_ou("/Workloads/Prod", recursive=False)
    assert not a.in_ou("/Workloads") and not b.in_ou("/Workloads/Prod")
    assert not Account(id="444444444444").in_ou("/")  # listed: no OU known
    assert not c.in_ou("/Work")  # a path matches whole names only


def test_rules_apply_to_accounts(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, ORG + RULE + 'ous = ["/Workloads"]\naccount_tags = { env = "prod" }\n')
    )
    rule = config.rules[0]
    assert [x.id for x in ACCOUNTS if rule.applies_to(x)] == ["222222222222"]
    only = rule.model_copy(update={"ous": None, "account_tags": {}, "accounts": ["333333333333"]})
    assert [x.id for x in ACCOUNTS if only.applies_to(x)] == ["333333333333"]


def test_exclusions_and_operator_filters() -> None:
    settings = AccountsSettings.model_validate(
        {
            "role_name": "r",
            "organization": {},
            "exclude": {"ous": ["/Workloads/Prod"], "tags": {"env": "prod"}},
        }
    )
    reasons = [settings.exclude.reason(x) for x in ACCOUNTS]
    assert reasons[0] is None
    assert reasons[1] is not None and "env=prod" in reasons[1]
    assert reasons[2] is not None and "/Workloads/Prod" in reasons[2]
    assert select_accounts(ACCOUNTS) == ACCOUNTS
    assert [x.id for x in select_accounts(ACCOUNTS, only=["111111111111"])] == ["111111111111"]
    picked = select_accounts(ACCOUNTS, only=["111111111111"], ous=["ou-ab12-bbbbbbbb"])
    assert [x.id for x in picked] == ["111111111111", "333333333333"]


def test_account_name_in_sink_templates() -> None:
    key = SinkKey(account="111111111111", user="ci", kind=Kind.ACCESS_KEY)
    assert key.fields()["account_name"] == "111111111111"
    with naming_accounts({"111111111111": "prod"}):
        assert key.fields()["account_name"] == "prod"
    assert key.fields()["account_name"] == "111111111111"


@pytest.mark.parametrize(
    ("region", "arn"),
    [
        ("eu-west-1", "arn:aws:iam::111122223333:role/rotator-member"),
        ("cn-north-1", "arn:aws-cn:iam::111122223333:role/rotator-member"),
        ("us-gov-west-1", "arn:aws-us-gov:iam::111122223333:role/rotator-member"),
    ],
)
async def test_a_member_role_is_assumed_in_the_hubs_partition(
    tmp_path: Path, region: str, arn: str
) -> None:
    """A hub in China or GovCloud assumes ``arn:aws-cn:…`` / ``arn:aws-us-gov:…`` roles:
    an ``arn:aws`` role does not exist there."""
    config = load_config(write(tmp_path, ORG + RULE))
    hub = Aws(region=region)
    assumed: list[str] = []

    async def assume_role(role: str, **_: Any) -> Aws:
        assumed.append(role)
        return hub

    hub.assume_role = assume_role  # type: ignore[method-assign]
    org = OrgSweep(config=config, journal=MemoryJournal(), aws=hub)
    await org.aws_for(Account(id="111122223333"))
    assert assumed == [arn]
