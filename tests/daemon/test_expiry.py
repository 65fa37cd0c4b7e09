"""rotator.daemon.expiry: one expiry series per active certificate IAM holds, replaced by
each sweep for what that sweep could see."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator.daemon.metrics import Metrics
from rotator.model import Credential, Holder, Inventory, Kind, Status
from rotator.policy import Rule
from rotator.settings import load_config
from tests.support.sweeps import ACCOUNT, NOW

POLICY = """\
[journal]
url = "memory://"

[[rules]]
name = "signers-a"
kind = "signing-certificate"
select = { path_prefix = "/a/" }
sink = { type = "memory" }

[[rules]]
name = "signers-b"
kind = "signing-certificate"
select = { path_prefix = "/b/" }
sink = { type = "memory" }

[[rules]]
name = "ci-keys"
kind = "access-key"
select = { path_prefix = "/a/" }
sink = { type = "memory" }

[[rules]]
name = "www"
kind = "server-certificate"
issuer = { type = "self-signed", dns_names = ["www.example.com"] }
select = { names = ["www"] }
sink = { type = "memory" }
"""
NAME = "rotator_certificate_expiration_timestamp_seconds"


@pytest.fixture
def rules(tmp_path: Path) -> dict[str, Rule]:
    (tmp_path / "policy.toml").write_text(POLICY)
    return {r.name: r for r in load_config(tmp_path / "policy.toml").rules}


def cred(kind: Kind, cid: str, days: int | None, status: Status = Status.ACTIVE) -> Credential:
    return Credential(
        kind=kind,
        credential_id=cid,
        status=status,
        created=NOW - timedelta(days=30),
        expires=None if days is None else NOW + timedelta(days=days),
    )


def user(name: str, path: str, *creds: Credential) -> Holder:
    return Holder(account=ACCOUNT, name=name, arn=f"arn:{name}", path=path, credentials=creds)


def inventory(*holders: Holder) -> Inventory:
    return Inventory(account=ACCOUNT, holders=holders)


def series(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["kind"], s.labels["holder"], s.labels["credential_id"]): s.value
        for family in metrics.registry.collect()
        if family.name == NAME
        for s in family.samples
    }


def at(days: int) -> float:
    return (NOW + timedelta(days=days)).timestamp()


def test_each_active_certificate_is_a_series_labelled_by_kind_holder_and_id(
    rules: dict[str, Rule],
) -> None:
    metrics = Metrics()
    alice = user(
        "alice",
        "/a/",
        cred(Kind.SIGNING_CERTIFICATE, "CERTNEW", 365),
        cred(Kind.SIGNING_CERTIFICATE, "CERTOLD", 20, Status.INACTIVE),  # retired: not exported
        cred(Kind.ACCESS_KEY, "AKIAALICE", None),  # no expiry
    )
    www = Holder(
        account=ACCOUNT,
        name="www",
        arn="arn:www",
        account_held=True,
        credentials=(
            cred(Kind.SERVER_CERTIFICATE, "ASCAWWW2", 90),
            cred(Kind.SERVER_CERTIFICATE, "ASCAWWW1", 5, Status.INACTIVE),
        ),
    )
    metrics.expiry.observe(inventory(alice, www), list(rules.values()))
    assert series(metrics) == {
        ("signing-certificate", "alice", "CERTNEW"): at(365),
        ("server-certificate", "www", "ASCAWWW2"): at(90),
    }
    text = metrics.render()[0].decode()
    assert f'{NAME}{{credential_id="CERTNEW",holder="alice",kind="signing-certificate"}}' in text


def test_a_renewed_certificate_replaces_its_predecessor(rules: dict[str, Rule]) -> None:
    metrics = Metrics()
    everything = list(rules.values())
    metrics.expiry.observe(
        inventory(user("alice", "/a/", cred(Kind.SIGNING_CERTIFICATE, "CERT1", 10))), everything
    )
    metrics.expiry.observe(
        inventory(user("alice", "/a/", cred(Kind.SIGNING_CERTIFICATE, "CERT2", 365))), everything
    )
    assert series(metrics) == {("signing-certificate", "alice", "CERT2"): at(365)}
    metrics.expiry.observe(inventory(user("alice", "/a/")), everything)  # deleted
    assert series(metrics) == {}


def test_a_sweep_for_some_rules_keeps_what_only_the_others_can_see(
    rules: dict[str, Rule],
) -> None:
    """Two schedules: signers-a's sweep reads only /a/, signers-b's only /b/. Each
    replaces its own holders' series, and drops them when they are gone."""
    metrics = Metrics()
    a = [rules["signers-a"]]
    b = [rules["signers-b"]]
    anna = user("anna", "/a/", cred(Kind.SIGNING_CERTIFICATE, "CERTANNA", 100))
    bob = user("bob", "/b/", cred(Kind.SIGNING_CERTIFICATE, "CERTBOB", 200))
    metrics.expiry.observe(inventory(anna), a)
    metrics.expiry.observe(inventory(bob), b)
    assert set(series(metrics)) == {
        ("signing-certificate", "anna", "CERTANNA"),
        ("signing-certificate", "bob", "CERTBOB"),
    }
    metrics.expiry.observe(inventory(), a)  # anna was deleted; bob is not a's to judge
    assert set(series(metrics)) == {("signing-certificate", "bob", "CERTBOB")}
    # A sweep of every rule (--run-now) sees everything, and so judges everything.
    metrics.expiry.observe(inventory(anna), list(rules.values()))
    assert set(series(metrics)) == {("signing-certificate", "anna", "CERTANNA")}
