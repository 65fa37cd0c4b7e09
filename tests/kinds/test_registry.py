"""The registry (``rotator/kinds/__init__.py``): every kind is declared once, in its module,
and what it declares agrees with itself and with the rest of rotator."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import TypeAdapter

from rotator import credential_report
from rotator.credential_report import KeyRow, UserRow
from rotator.kinds import (
    REGISTRY,
    AccountHolders,
    AnyRule,
    Disables,
    MakesMaterial,
    TracksLastUse,
    TracksRotations,
    facts_of,
)
from rotator.kinds.access_key import AccessKeyRule, AccessKeys
from rotator.kinds.base import IamActions, Registration
from rotator.kinds.server_certificate import ServerCertificates
from rotator.model import Kind, KindFacts, Shape

RULES: TypeAdapter[Any] = TypeAdapter(AnyRule)
KINDS = [pytest.param(kind, id=str(kind)) for kind in Kind]

# What IAM lets rotator do with each kind, beyond the core every kind has.
CAPABILITIES: dict[Kind, set[type]] = {
    Kind.ACCESS_KEY: {TracksLastUse, Disables},  # IAM makes the secret
    Kind.SIGNING_CERTIFICATE: {MakesMaterial},
    Kind.SERVER_CERTIFICATE: {MakesMaterial, AccountHolders},
    Kind.LOGIN_PROFILE: {MakesMaterial, TracksLastUse, Disables, TracksRotations},
    Kind.SSH_PUBLIC_KEY: {MakesMaterial},
    Kind.SERVICE_CREDENTIAL: set(),  # IAM makes the secret
    Kind.OIDC_THUMBPRINT: {MakesMaterial, AccountHolders},  # the thumbprint of what it serves
}
ALL_CAPABILITIES = {MakesMaterial, TracksLastUse, Disables, AccountHolders, TracksRotations}


def test_every_kind_is_registered_once_under_its_own_name() -> None:
    assert list(REGISTRY) == list(Kind)
    for kind, registered in REGISTRY.items():
        assert registered.kind is kind is registered.facts.kind is facts_of(kind).kind


@pytest.mark.parametrize("kind", KINDS)
def test_the_policy_file_picks_each_kinds_own_rule_class(kind: Kind) -> None:
    fields: dict[str, Any] = {"name": "r", "kind": str(kind), "sink": {"type": "memory"}}
    if kind is Kind.SERVICE_CREDENTIAL:
        fields["service"] = "codecommit.amazonaws.com"
    if kind is Kind.SERVER_CERTIFICATE:
        fields["issuer"] = {"type": "self-signed"}
    rule = RULES.validate_python(fields)
    assert type(rule) is REGISTRY[kind].rule
    assert rule.facts is facts_of(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_has_exactly_its_capabilities(kind: Kind) -> None:
    implementation = REGISTRY[kind].build
    assert isinstance(implementation, type)
    found = {c for c in ALL_CAPABILITIES if issubclass(implementation, c)}
    assert found == CAPABILITIES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_a_rule_can_disable_unused_credentials_only_of_kinds_that_can(kind: Kind) -> None:
    """``disable_unused_after`` needs IAM's last use and a way to disable."""
    implementation = REGISTRY[kind].build
    assert isinstance(implementation, type)
    offered = "disable_unused_after" in REGISTRY[kind].rule.model_fields
    assert offered == issubclass(implementation, Disables)
    assert not offered or issubclass(implementation, TracksLastUse)


@pytest.mark.parametrize("kind", KINDS)
def test_the_facts_hold_together(kind: Kind) -> None:
    facts, iam = facts_of(kind), REGISTRY[kind].iam
    assert facts.noun and facts.noun == facts.noun.strip()
    assert (facts.shape is Shape.TWO_SLOT) == (facts.limit is not None and facts.limit >= 2)
    assert (iam.resource == "user") != facts.account_held
    assert iam.scoped and all(a.startswith("iam:") for a in iam.all)
    assert len(set(iam.all)) == len(iam.all)


def test_the_credential_report_covers_exactly_the_kinds_that_say_so() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    row = UserRow(
        user="alice",
        arn="arn:aws:iam::123456789012:user/alice",
        created=when,
        password_enabled=True,
        password_last_used=when,
        password_last_changed=when,
        mfa_active=False,
        keys=(KeyRow(number=1, active=True, last_rotated=when, last_used=None),),
    )
    for kind in Kind:
        read = credential_report.credentials(row, kind)
        assert bool(read) == facts_of(kind).in_credential_report, kind


def test_a_two_slot_kind_without_room_for_a_second_credential_is_refused() -> None:
    with pytest.raises(ValueError, match="limit of at least 2"):
        KindFacts(kind=Kind.ACCESS_KEY, shape=Shape.TWO_SLOT, noun="key", limit=1)


def test_a_registration_must_agree_with_its_rule_and_its_implementation() -> None:
    class Mislabelled(AccessKeyRule):
        facts: ClassVar[KindFacts] = facts_of(Kind.SSH_PUBLIC_KEY)

    with pytest.raises(TypeError, match="must be Literal"):
        Registration(rule=Mislabelled, build=AccessKeys, iam=IamActions(scoped=("iam:X",)))

    class AccountKeys(AccessKeyRule):
        facts: ClassVar[KindFacts] = KindFacts(
            kind=Kind.ACCESS_KEY, shape=Shape.TWO_SLOT, noun="key", limit=2, account_held=True
        )

    with pytest.raises(TypeError, match="does not list account holders"):
        Registration(rule=AccountKeys, build=AccessKeys, iam=IamActions(scoped=("iam:X",)))
    with pytest.raises(TypeError, match="lists account holders"):
        Registration(
            rule=AccessKeyRule, build=ServerCertificates, iam=IamActions(scoped=("iam:X",))
        )


def test_the_planner_and_the_model_import_no_kind_and_no_aws_sdk() -> None:
    code = (
        "import sys, rotator.planner, rotator.model, rotator.policy\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('botocore', 'aioboto3', 'boto3')"
        " or m.startswith('rotator.kinds')]\n"
        "print(','.join(bad))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == ""
