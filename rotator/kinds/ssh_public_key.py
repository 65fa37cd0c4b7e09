"""SSH public keys (CodeCommit): up to five per user; rotator makes the key pair.

IAM accepts ``ssh-rsa`` keys of at least 2048 bits, so rotator generates RSA
(``key_size``, default 4096). The private key (OpenSSH PEM) is stored pending *before* the
public key is uploaded; a resumed create uploads the same key again (``reusable``), and a
key uploaded before a crash is adopted (``matches``). ``verify`` reads the key back
(``GetSSHPublicKey``) and checks it is the one whose private key the sink holds. IAM does
not track when an SSH key was last used, so deactivation is never held for use.

Declares the kind once: ``SshPublicKeyRule`` (options, and the facts as ``facts``),
``SshPublicKeys`` (the IAM calls) and ``REGISTRATION``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import timedelta
from typing import Any, ClassVar, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, field_validator

from rotator.aws import all_pages, aws_errors
from rotator.errors import NoSuchEntity, Permanent, Refused, VerificationFailed, WrongIdentity
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.model import Credential, Kind, KindFacts, Shape, Status, utcnow
from rotator.policy import Rule
from rotator.sinks.base import SecretEntry

PRIVATE_KEY = "PrivateKey"
PUBLIC_KEY = "SSHPublicKeyBody"
KEY_ID = "SSHPublicKeyId"
FINGERPRINT = "Fingerprint"
# A key IAM lists with an UploadDate this much before the pending key was made is not it.
CLOCK_SKEW = timedelta(minutes=5)


def key_pair(size: int) -> tuple[str, str, str]:
    """(private key in OpenSSH PEM, public key ``ssh-rsa AAAA...``, MD5 fingerprint)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=size)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    digest = hashlib.md5(base64.b64decode(public.split()[1]), usedforsecurity=False).hexdigest()
    return pem, public, ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def same_key(one: str, other: str) -> bool:
    """True if two OpenSSH public-key lines hold the same key (comments aside)."""
    return one.split()[:2] == other.split()[:2]


class SshPublicKeyRule(Rule):
    """``kind = "ssh-public-key"``: rotator makes an RSA key pair (the type IAM accepts)."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.SSH_PUBLIC_KEY, shape=Shape.TWO_SLOT, noun="SSH public key", limit=5
    )
    kind: Literal[Kind.SSH_PUBLIC_KEY]
    key_size: int = 4096

    @field_validator("key_size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value not in (2048, 3072, 4096):
            raise ValueError(f"key_size {value} is not one of 2048, 3072, 4096")
        return value


class SshPublicKeys:
    """The IAM calls of ``kind = "ssh-public-key"``; makes its material (the key pair)."""

    kind = Kind.SSH_PUBLIC_KEY

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam

    async def _listed(self, user: str) -> list[dict[str, Any]]:
        return await all_pages(
            self._iam.list_ssh_public_keys,
            "SSHPublicKeys",
            "ListSSHPublicKeys",
            {"user": user},
            UserName=user,
        )

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        return [
            Credential(
                kind=self.kind,
                credential_id=k[KEY_ID],
                status=Status(k["Status"]),
                created=k["UploadDate"],
            )
            for k in await self._listed(user)
        ]

    async def make_material(self, rule: SshPublicKeyRule, user: str) -> SecretEntry:
        private, public, fingerprint = await asyncio.to_thread(key_pair, rule.key_size)
        return SecretEntry(
            kind=self.kind,
            credential_id="",
            created_at=utcnow(),
            public={PUBLIC_KEY: public, FINGERPRINT: fingerprint},
            secret={PRIVATE_KEY: SecretStr(private)},
        )

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        if material is None or PUBLIC_KEY not in material.public:
            raise Refused(f"no pending SSH key pair for {user}: rotator makes the key itself")
        body = material.public[PUBLIC_KEY]
        try:
            with aws_errors("UploadSSHPublicKey", user=user):
                made = await self._ctx.iam_once.upload_ssh_public_key(
                    UserName=user, SSHPublicKeyBody=body
                )
            key_id = str(made["SSHPublicKey"][KEY_ID])
        except Permanent as exc:
            if exc.code != "DuplicateSSHPublicKey":
                raise
            key_id = await self._find(user, body)  # uploaded already (IAM saw this key)
        return material.with_id(key_id)

    async def _find(self, user: str, body: str) -> str:
        for listed in await self._listed(user):
            if same_key(await self._body(user, listed[KEY_ID]), body):
                return str(listed[KEY_ID])
        raise Refused(f"IAM says {user} already has the pending SSH key, but does not list it")

    async def _body(self, user: str, key_id: str) -> str:
        with aws_errors("GetSSHPublicKey", user=user, credential_id=key_id):
            found = await self._iam.get_ssh_public_key(
                UserName=user, SSHPublicKeyId=key_id, Encoding="SSH"
            )
        return str(found["SSHPublicKey"][PUBLIC_KEY])

    def reusable(self, pending: SecretEntry) -> bool:
        return (
            pending.kind is self.kind
            and not pending.credential_id
            and PRIVATE_KEY in pending.secret
            and PUBLIC_KEY in pending.public
        )

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        if pending.credential_id:
            return credential.credential_id == pending.credential_id
        # Uploaded after the key pair was made: ours (verify proves it is the same key).
        return pending.kind is self.kind and credential.created >= pending.created_at - CLOCK_SKEW

    async def verify(self, user: str, entry: SecretEntry) -> None:
        key_id = entry.credential_id
        with aws_errors("GetSSHPublicKey", user=user, credential_id=key_id):
            found = (
                await self._iam.get_ssh_public_key(
                    UserName=user, SSHPublicKeyId=key_id, Encoding="SSH"
                )
            )["SSHPublicKey"]
        if not same_key(str(found[PUBLIC_KEY]), entry.public.get(PUBLIC_KEY, "")):
            raise WrongIdentity(key_id, user, "IAM holds a different key than the sink's")
        if found["Status"] != Status.ACTIVE:
            raise VerificationFailed(key_id, user, f"status is {found['Status']}")

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        with aws_errors("UpdateSSHPublicKey", user=user, credential_id=credential_id):
            await self._iam.update_ssh_public_key(
                UserName=user, SSHPublicKeyId=credential_id, Status=str(status)
            )

    async def delete(self, user: str, credential_id: str) -> None:
        try:
            with aws_errors("DeleteSSHPublicKey", user=user, credential_id=credential_id):
                await self._iam.delete_ssh_public_key(UserName=user, SSHPublicKeyId=credential_id)
        except NoSuchEntity:
            return  # already gone


REGISTRATION = Registration(
    rule=SshPublicKeyRule,
    build=SshPublicKeys,
    iam=IamActions(
        scoped=(
            "iam:ListSSHPublicKeys",
            "iam:UploadSSHPublicKey",
            "iam:GetSSHPublicKey",
            "iam:UpdateSSHPublicKey",
            "iam:DeleteSSHPublicKey",
        )
    ),
)
