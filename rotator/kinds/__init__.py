"""Credential kinds, registered under the names the policy file uses.

Adding a kind: write a module with a class implementing ``CredentialKind`` and add it to
``REGISTRY``. The engine needs no change.
"""

from __future__ import annotations

from collections.abc import Callable

from rotator.kinds.access_key import AccessKeys
from rotator.kinds.base import CredentialKind, KindContext
from rotator.model import Kind

REGISTRY: dict[Kind, Callable[[KindContext], CredentialKind]] = {
    Kind.ACCESS_KEY: AccessKeys,
}


def build_kinds(ctx: KindContext, kinds: set[Kind]) -> dict[Kind, CredentialKind]:
    """One instance of each kind in ``kinds`` bound to this sweep's clients."""
    return {kind: REGISTRY[kind](ctx) for kind in kinds}


__all__ = ["REGISTRY", "CredentialKind", "KindContext", "build_kinds"]
