"""Credential kinds, registered under the names the policy file uses.

Adding a kind: write a module with a class implementing ``CredentialKind`` and add it to
``REGISTRY``. The engine needs no change.
"""

from __future__ import annotations

from collections.abc import Callable

from rotator.kinds.access_key import AccessKeys
from rotator.kinds.base import CredentialKind, KindContext
from rotator.kinds.login_profile import LoginProfiles
from rotator.kinds.server_certificate import ServerCertificates
from rotator.kinds.service_credential import ServiceCredentials
from rotator.kinds.signing_certificate import SigningCertificates
from rotator.kinds.ssh_public_key import SshPublicKeys
from rotator.model import Kind

REGISTRY: dict[Kind, Callable[[KindContext], CredentialKind]] = {
    Kind.ACCESS_KEY: AccessKeys,
    Kind.SIGNING_CERTIFICATE: SigningCertificates,
    Kind.SERVER_CERTIFICATE: ServerCertificates,
    Kind.LOGIN_PROFILE: LoginProfiles,
    Kind.SSH_PUBLIC_KEY: SshPublicKeys,
    Kind.SERVICE_CREDENTIAL: ServiceCredentials,
}


def build_kinds(ctx: KindContext, kinds: set[Kind]) -> dict[Kind, CredentialKind]:
    """One instance of each kind in ``kinds`` bound to this sweep's clients."""
    return {kind: REGISTRY[kind](ctx) for kind in kinds}


__all__ = ["REGISTRY", "CredentialKind", "KindContext", "build_kinds"]
