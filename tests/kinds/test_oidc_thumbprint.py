"""``kind = "oidc-thumbprint"`` against moto over HTTP and the in-memory twin, with a local
HTTPS provider (root -> intermediate -> leaf): what the kind finds, adds and removes, and
what it refuses (a chain that does not verify)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.errors import Refused
from rotator.kinds.oidc_thumbprint import THUMBPRINT, OidcThumbprintRule, OidcThumbprints
from rotator.model import Action, Status, utcnow
from rotator.policy import MemorySinkConfig
from tests.kinds.conftest import Backend
from tests.support.oidc import OidcServer, ca, leaf, oidc_server, thumbprint

ACCOUNT = "123456789012"
OTHER = "a" * 40


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcServer]:
    with oidc_server(tmp_path) as server:
        yield server


def oidc_rule(server: OidcServer, **fields: Any) -> OidcThumbprintRule:
    return OidcThumbprintRule.model_validate(
        {
            "name": "oidc",
            "kind": "oidc-thumbprint",
            "sink": MemorySinkConfig(type="memory"),
            "ca_bundle": str(server.ca_bundle),
            "select": {"names": ["127.0.0.1:*"]},
            **fields,
        }
    )


async def register(backend: Backend, server: OidcServer, *thumbprints: str, **tags: str) -> str:
    got = await backend.iam.create_open_id_connect_provider(
        Url=f"https://{server.url}",
        ThumbprintList=list(thumbprints),
        ClientIDList=["sts.amazonaws.com"],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )
    return str(got["OpenIDConnectProviderArn"])


async def listed(backend: Backend, arn: str) -> list[str]:
    got = await backend.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    return [str(t).lower() for t in got["ThumbprintList"]]


def impl(backend: Backend) -> OidcThumbprints:
    kind = backend.kind(OidcThumbprintRule.facts.kind)
    assert isinstance(kind, OidcThumbprints)
    return kind


async def test_a_listed_served_thumbprint_is_active_and_nothing_is_due(
    backend: Backend, provider: OidcServer
) -> None:
    served = thumbprint(provider.intermediate)
    await register(backend, provider, OTHER, served)
    rule = oidc_rule(provider)
    (holder,) = await impl(backend).account_holders(ACCOUNT, [rule])
    assert holder.name == provider.url and holder.account_held
    assert holder.finding is not None and holder.finding.action is Action.SKIP
    assert served in holder.finding.reason and OTHER in holder.finding.reason
    statuses = {c.credential_id: c.status for c in holder.credentials}
    assert statuses == {OTHER: Status.INACTIVE, served: Status.ACTIVE}


async def test_a_new_intermediate_is_added_beside_the_old_and_the_old_removed_later(
    backend: Backend, provider: OidcServer
) -> None:
    old = thumbprint(provider.intermediate)
    arn = await register(backend, provider, old)
    newer = ca("Test OIDC Intermediate 2", provider.root)
    provider.use(newer)
    new = thumbprint(newer)
    kind, rule = impl(backend), oidc_rule(provider)
    (holder,) = await kind.account_holders(ACCOUNT, [rule])
    assert holder.finding is not None and holder.finding.action is Action.ROTATE
    assert new in holder.finding.reason and "Intermediate 2" in holder.finding.reason
    assert [c.status for c in holder.credentials] == [Status.ACTIVE], "in service until replaced"
    material = await kind.make_material(rule, provider.url)
    assert material.public[THUMBPRINT] == new and kind.reusable(material)
    entry = await kind.create(provider.url, material)
    assert entry.credential_id == new and not kind.reusable(entry)
    assert await listed(backend, arn) == [old, new], "the current one is kept"
    await kind.verify(provider.url, entry)
    creds = await kind.list(provider.url)
    assert [(c.credential_id, c.status) for c in creds] == [
        (old, Status.INACTIVE),
        (new, Status.ACTIVE),
    ]
    assert kind.matches(creds[1], material) and not kind.matches(creds[0], material)
    again = await kind.create(provider.url, material)  # a replay adds nothing
    assert again.credential_id == new and await listed(backend, arn) == [old, new]
    await kind.delete(provider.url, old)
    await kind.delete(provider.url, old)
    assert await listed(backend, arn) == [new]


@pytest.mark.parametrize("how", ["self-signed leaf", "wrong host", "unknown CA"])
async def test_a_chain_that_does_not_verify_is_refused(
    backend: Backend, provider: OidcServer, how: str
) -> None:
    old = thumbprint(provider.intermediate)
    arn = await register(backend, provider, old)
    if how == "self-signed leaf":
        provider.use(None, server_leaf=leaf("oidc.test", None))
    elif how == "wrong host":
        provider.jwks_host = "localhost"  # the leaf names 127.0.0.1 only
    else:
        provider.use(ca("Rogue Intermediate", ca("Rogue Root")))
    kind, rule = impl(backend), oidc_rule(provider)
    (holder,) = await kind.account_holders(ACCOUNT, [rule])
    assert holder.finding is not None and holder.finding.action is Action.BLOCK
    assert "does not verify" in holder.finding.reason
    assert [c.status for c in holder.credentials] == [Status.ACTIVE], "nothing retired on a guess"
    with pytest.raises(Refused, match="no thumbprint is added"):
        await kind.make_material(rule, provider.url)
    with pytest.raises(Refused):
        await kind.delete(provider.url, old)
    assert await listed(backend, arn) == [old]


async def test_at_five_the_oldest_unmatched_thumbprint_goes_first(
    backend: Backend, provider: OidcServer
) -> None:
    stale = [f"{n}" * 40 for n in range(1, 5)]
    served = thumbprint(provider.intermediate)
    arn = await register(backend, provider, stale[0], served, *stale[1:])
    newer = ca("Test OIDC Intermediate 2", provider.root)
    provider.use(newer)
    kind, rule = impl(backend), oidc_rule(provider)
    await kind.account_holders(ACCOUNT, [rule])
    entry = await kind.create(provider.url, await kind.make_material(rule, provider.url))
    assert await listed(backend, arn) == [served, *stale[1:], entry.credential_id]


async def test_providers_are_selected_by_url_glob_and_tag(
    backend: Backend, provider: OidcServer
) -> None:
    await register(backend, provider, OTHER, team="ci")
    kind = impl(backend)
    assert await kind.account_holders(
        ACCOUNT, [oidc_rule(provider, select={"tags": {"team": "ci"}})]
    )
    assert not await kind.account_holders(
        ACCOUNT, [oidc_rule(provider, select={"tags": {"team": "web"}})]
    )
    assert not await kind.account_holders(
        ACCOUNT, [oidc_rule(provider, select={"names": ["token.actions.*"]})]
    )


def test_a_rule_selects_providers_by_names_and_tags_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"select\.names"):
        OidcThumbprintRule.model_validate(
            {
                "name": "oidc",
                "kind": "oidc-thumbprint",
                "sink": {"type": "memory"},
                "select": {"users": ["alice"]},
            }
        )
    rule = OidcThumbprintRule.model_validate(
        {
            "name": "oidc",
            "kind": "oidc-thumbprint",
            "sink": {"type": "memory"},
            "ca_bundle": str(tmp_path / "missing.pem"),
        }
    )
    (problem,) = rule.input_problems(utcnow())
    assert problem.startswith("ca_bundle:")
