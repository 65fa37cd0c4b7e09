"""Credential kinds: the registry, keyed by the names the policy file uses.

**Adding a kind** happens here, in ``rotator/kinds/``: write one module declaring the
kind's rule class (its options, and its ``KindFacts`` as ``facts``), its implementation
(the core ``CredentialKind`` plus whichever capabilities of ``base`` it has) and a
``REGISTRATION`` tying them to the IAM actions it calls; then list the module in
``_MODULES`` below. The only line outside this folder is the kind's name, a member of
``model.Kind``. The planner, the engine, the policy file's validation (``AnyRule``) and
``rotator iam-policy`` all read the registry; none of them changes.

Code with a rule reads its kind's facts from the rule (``rule.facts``); code with only a
``Kind`` asks ``facts_of(kind)``. ``build_kinds`` binds implementations to a sweep's
clients.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import reduce
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, TypeAlias

from pydantic import Field

from rotator.kinds import (
    access_key,
    login_profile,
    oidc_thumbprint,
    server_certificate,
    service_credential,
    signing_certificate,
    ssh_public_key,
)
from rotator.kinds.base import (
    AccountHolders,
    CredentialKind,
    Disables,
    KindContext,
    MakesMaterial,
    Registration,
    TracksLastUse,
    TracksRotations,
)
from rotator.model import Kind, KindFacts
from rotator.policy import Rule

_MODULES = (
    access_key,
    signing_certificate,
    server_certificate,
    login_profile,
    ssh_public_key,
    service_credential,
    oidc_thumbprint,
)


def _registry(*registrations: Registration) -> Mapping[Kind, Registration]:
    found: dict[Kind, Registration] = {}
    for registration in registrations:
        if registration.kind in found:
            raise TypeError(f"{registration.kind} is registered twice")
        found[registration.kind] = registration
    return MappingProxyType(found)


REGISTRY: Mapping[Kind, Registration] = _registry(*(m.REGISTRATION for m in _MODULES))

if TYPE_CHECKING:
    AnyRule: TypeAlias = Rule
else:
    # The policy file's rules: one class per kind, picked by the rule's ``kind``.
    AnyRule = Annotated[
        reduce(operator.or_, (r.rule for r in REGISTRY.values())), Field(discriminator="kind")
    ]


def facts_of(kind: Kind) -> KindFacts:
    """The facts the module of ``kind`` declares (for code that has no rule at hand)."""
    return REGISTRY[kind].facts


def build_kinds(ctx: KindContext, kinds: set[Kind]) -> dict[Kind, CredentialKind]:
    """One instance of each kind in ``kinds`` bound to this sweep's clients."""
    return {kind: REGISTRY[kind].build(ctx) for kind in kinds}


__all__ = [
    "REGISTRY",
    "AccountHolders",
    "AnyRule",
    "CredentialKind",
    "Disables",
    "KindContext",
    "MakesMaterial",
    "Registration",
    "TracksLastUse",
    "TracksRotations",
    "build_kinds",
    "facts_of",
]
