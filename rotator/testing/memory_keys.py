"""The in-memory IAM twin's SSH public keys and service-specific credentials.

SSH keys: IAM accepts ``ssh-rsa`` keys of at least 2048 bits (OpenSSH or PEM encoding),
five per user, and refuses the same key twice (``DuplicateSSHPublicKey``); its fingerprint
is the MD5 of the key blob in colon-separated hex. Service-specific credentials: two per
service per user (expired ones count until deleted), for the services IAM supports
(``NotSupportedService`` otherwise); the password is returned only by Create and Reset.
Bedrock API keys are named by a ``ServiceCredentialAlias`` and return a
``ServiceCredentialSecret``; ``CredentialAgeDays`` (1-36600, Bedrock only) gives them an
``ExpirationDate``, past which they are listed ``Expired`` (by the twin's clock).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rotator.testing.memory_state import (
    ServiceCredential,
    SshKey,
    State,
    User,
    client_error,
    ok,
    page,
    random_id,
    random_secret,
)

MAX_SSH_KEYS = 5
MAX_SERVICE_CREDENTIALS = 2  # per service, per user
BEDROCK = "bedrock.amazonaws.com"
SERVICES = frozenset({"codecommit.amazonaws.com", "cassandra.amazonaws.com", BEDROCK})
MAX_CREDENTIAL_AGE_DAYS = 36600


def _parse_ssh_key(action: str, body: str) -> rsa.RSAPublicKey:
    text = body.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_ssh_public_key(text.encode())
    except (ValueError, TypeError, IndexError):
        raise client_error(
            action, "UnrecognizedPublicKeyEncoding", "The public key encoding is not recognized."
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise client_error(action, "InvalidPublicKey", "The public key must be an ssh-rsa key.")
    if key.key_size < 2048:
        raise client_error(action, "InvalidPublicKey", "The key must be at least 2048 bits long.")
    return key


def _blob(key: rsa.RSAPublicKey) -> bytes:
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def fingerprint(key: rsa.RSAPublicKey) -> str:
    """IAM's fingerprint of an SSH key: MD5 of the key blob, colon-separated hex."""
    digest = hashlib.md5(_blob(key), usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class KeysMixin(State):
    """``*SSHPublicKey*`` and ``*ServiceSpecificCredential*`` calls."""

    # -- SSH public keys ----------------------------------------------------------------

    def _ssh(self, action: str, user: User, key_id: str) -> SshKey:
        found = next((k for k in user.ssh_keys if k.key_id == key_id), None)
        if found is None:
            raise client_error(
                action, "NoSuchEntity", f"The Public Key with id {key_id} cannot be found.", 404
            )
        return found

    def _ssh_shape(self, user: User, key: SshKey, *, body: bool) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "UserName": user.name,
            "SSHPublicKeyId": key.key_id,
            "Status": key.status,
            "UploadDate": key.uploaded,
        }
        if body:
            shape.update(Fingerprint=key.fingerprint, SSHPublicKeyBody=key.body)
        return shape

    async def upload_ssh_public_key(
        self, *, UserName: str, SSHPublicKeyBody: str
    ) -> dict[str, Any]:
        action = "UploadSSHPublicKey"
        self._call(action)
        user = self._user(action, UserName)
        print_ = fingerprint(_parse_ssh_key(action, SSHPublicKeyBody))
        if any(k.fingerprint == print_ for k in user.ssh_keys):
            raise client_error(action, "DuplicateSSHPublicKey", "The public key already exists.")
        if len(user.ssh_keys) >= MAX_SSH_KEYS:
            raise client_error(
                action,
                "LimitExceeded",
                f"Cannot exceed quota for PublicKeysPerUser: {MAX_SSH_KEYS}",
                409,
            )
        key = SshKey(
            key_id=random_id("APKA"),
            body=SSHPublicKeyBody.strip(),
            fingerprint=print_,
            status="Active",
            uploaded=self.clock(),
        )
        user.ssh_keys.append(key)
        return ok({"SSHPublicKey": self._ssh_shape(user, key, body=True)})

    async def get_ssh_public_key(
        self, *, UserName: str, SSHPublicKeyId: str, Encoding: str
    ) -> dict[str, Any]:
        action = "GetSSHPublicKey"
        self._call(action)
        user = self._user(action, UserName)
        key = self._ssh(action, user, SSHPublicKeyId)
        shape = self._ssh_shape(user, key, body=True)
        parsed = _parse_ssh_key(action, key.body)
        if Encoding == "SSH":
            openssh = parsed.public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            shape["SSHPublicKeyBody"] = openssh.decode()
        elif Encoding == "PEM":
            pem = parsed.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            shape["SSHPublicKeyBody"] = pem.decode()
        else:
            raise client_error(action, "UnrecognizedPublicKeyEncoding", f"bad Encoding {Encoding}")
        return ok({"SSHPublicKey": shape})

    async def list_ssh_public_keys(
        self, *, UserName: str, Marker: str | None = None, MaxItems: int | None = None
    ) -> dict[str, Any]:
        self._call("ListSSHPublicKeys")
        user = self._user("ListSSHPublicKeys", UserName)
        chunk, paging = page(user.ssh_keys, Marker, MaxItems)
        return ok(
            {"SSHPublicKeys": [self._ssh_shape(user, k, body=False) for k in chunk], **paging}
        )

    async def update_ssh_public_key(
        self, *, UserName: str, SSHPublicKeyId: str, Status: str
    ) -> dict[str, Any]:
        self._call("UpdateSSHPublicKey")
        if Status not in ("Active", "Inactive"):
            raise client_error("UpdateSSHPublicKey", "InvalidInput", f"bad Status {Status!r}")
        user = self._user("UpdateSSHPublicKey", UserName)
        self._ssh("UpdateSSHPublicKey", user, SSHPublicKeyId).status = Status
        return ok({})

    async def delete_ssh_public_key(self, *, UserName: str, SSHPublicKeyId: str) -> dict[str, Any]:
        self._call("DeleteSSHPublicKey")
        user = self._user("DeleteSSHPublicKey", UserName)
        user.ssh_keys.remove(self._ssh("DeleteSSHPublicKey", user, SSHPublicKeyId))
        return ok({})

    # -- service-specific credentials ---------------------------------------------------

    def _service(self, action: str, name: str) -> None:
        if name not in SERVICES:
            raise client_error(
                action,
                "NotSupportedService",
                f"The specified service {name} is not supported.",
                404,
            )

    def _credential(self, action: str, user: User, credential_id: str) -> ServiceCredential:
        found = next(
            (c for c in user.service_credentials if c.credential_id == credential_id), None
        )
        if found is None:
            raise client_error(
                action,
                "NoSuchEntity",
                f"No such ServiceSpecificCredential: {credential_id}",
                404,
            )
        return found

    def _credential_shape(
        self, user: User, cred: ServiceCredential, *, secret: bool
    ) -> dict[str, Any]:
        bedrock = cred.service == BEDROCK
        shape: dict[str, Any] = {
            "UserName": user.name,
            "Status": cred.status_at(self.clock()),
            "CreateDate": cred.created,
            "ServiceSpecificCredentialId": cred.credential_id,
            "ServiceName": cred.service,
            ("ServiceCredentialAlias" if bedrock else "ServiceUserName"): cred.service_user,
        }
        if cred.expires is not None:
            shape["ExpirationDate"] = cred.expires
        if secret:
            shape["ServiceCredentialSecret" if bedrock else "ServicePassword"] = cred.password
        return shape

    async def create_service_specific_credential(
        self, *, UserName: str, ServiceName: str, CredentialAgeDays: int | None = None
    ) -> dict[str, Any]:
        action = "CreateServiceSpecificCredential"
        self._call(action)
        user = self._user(action, UserName)
        self._service(action, ServiceName)
        if CredentialAgeDays is not None and not (
            ServiceName == BEDROCK and 1 <= CredentialAgeDays <= MAX_CREDENTIAL_AGE_DAYS
        ):
            raise client_error(
                action,
                "ValidationError",
                f"CredentialAgeDays must be 1-{MAX_CREDENTIAL_AGE_DAYS}, for {BEDROCK} only",
            )
        same = [c for c in user.service_credentials if c.service == ServiceName]
        if len(same) >= MAX_SERVICE_CREDENTIALS:
            raise client_error(
                action,
                "LimitExceeded",
                f"Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: "
                f"{MAX_SERVICE_CREDENTIALS}",
                409,
            )
        cred = ServiceCredential(
            credential_id=random_id("ACCA", 17),
            service=ServiceName,
            service_user=(
                f"BedrockAPIKey-{random_id('', 6).lower()}"
                if ServiceName == BEDROCK
                else f"{UserName}-at-{self.account}"
            ),
            password=random_secret(44),
            status="Active",
            created=self.clock(),
        )
        if CredentialAgeDays is not None:
            cred.expires = cred.created + timedelta(days=CredentialAgeDays)
        user.service_credentials.append(cred)
        return ok({"ServiceSpecificCredential": self._credential_shape(user, cred, secret=True)})

    async def list_service_specific_credentials(
        self, *, UserName: str, ServiceName: str | None = None
    ) -> dict[str, Any]:
        action = "ListServiceSpecificCredentials"
        self._call(action)
        user = self._user(action, UserName)
        if ServiceName is not None:
            self._service(action, ServiceName)
        found = [
            self._credential_shape(user, c, secret=False)
            for c in user.service_credentials
            if ServiceName is None or c.service == ServiceName
        ]
        return ok({"ServiceSpecificCredentials": found, "IsTruncated": False})

    async def update_service_specific_credential(
        self, *, UserName: str, ServiceSpecificCredentialId: str, Status: str
    ) -> dict[str, Any]:
        action = "UpdateServiceSpecificCredential"
        self._call(action)
        if Status not in ("Active", "Inactive"):
            raise client_error(action, "ValidationError", f"bad Status {Status!r}")
        user = self._user(action, UserName)
        self._credential(action, user, ServiceSpecificCredentialId).status = Status
        return ok({})

    async def delete_service_specific_credential(
        self, *, UserName: str, ServiceSpecificCredentialId: str
    ) -> dict[str, Any]:
        action = "DeleteServiceSpecificCredential"
        self._call(action)
        user = self._user(action, UserName)
        user.service_credentials.remove(self._credential(action, user, ServiceSpecificCredentialId))
        return ok({})
