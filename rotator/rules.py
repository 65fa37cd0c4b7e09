"""One rule class per credential kind: the common fields of ``policy.Rule`` plus the
options only that kind has. ``AnyRule`` is the union the policy file is validated with
(the ``kind`` field picks the class). Pure validation; nothing does I/O.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from rotator.model import Kind
from rotator.policy import Duration, Rule, _Strict


class AccessKeyRule(Rule):
    """``kind = "access-key"``."""

    kind: Literal[Kind.ACCESS_KEY]
    # Deactivate an access key unused for this long, or never used and older (CIS 1.12).
    disable_unused_after: Duration | None = None

    @property
    def unused_after(self) -> timedelta | None:
        return self.disable_unused_after


class KeySpec(_Strict):
    """The key pair rotator generates."""

    type: Literal["rsa", "ec"] = "rsa"
    size: int = 2048  # RSA bits; ignored for EC (P-256)

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value not in (2048, 3072, 4096):
            raise ValueError(f"key size {value} is not one of 2048, 3072, 4096")
        return value


class SigningCertificateRule(Rule):
    """``kind = "signing-certificate"``: rotator makes the key pair and the X.509 itself."""

    kind: Literal[Kind.SIGNING_CERTIFICATE]
    key: KeySpec = Field(default_factory=KeySpec)
    subject: str = "CN={user}"
    validity: Duration = timedelta(days=365)
    renew_before: Duration = timedelta(days=30)

    @property
    def renew_window(self) -> timedelta | None:
        return self.renew_before


class SelfSignedIssuer(_Strict):
    """A self-signed certificate, for internal endpoints."""

    type: Literal["self-signed"]
    key: KeySpec = Field(default_factory=KeySpec)
    subject: str = "CN={name}"
    dns_names: list[str] = Field(default_factory=list)
    validity: Duration = timedelta(days=90)


class LocalCaIssuer(_Strict):
    """A certificate signed by the team's own CA (its certificate and key as PEM files)."""

    type: Literal["local-ca"]
    cert: Path
    key: Path
    key_spec: KeySpec = Field(default_factory=KeySpec)
    subject: str = "CN={name}"
    dns_names: list[str] = Field(default_factory=list)
    validity: Duration = timedelta(days=90)


class DirectoryIssuer(_Strict):
    """A certificate an ACME client (certbot ...) left in a directory: ``cert.pem``,
    ``privkey.pem``, ``chain.pem``. Uploaded when it is newer than what IAM holds."""

    type: Literal["directory"]
    path: Path


Issuer = Annotated[SelfSignedIssuer | LocalCaIssuer | DirectoryIssuer, Field(discriminator="type")]


class ServerCertificateRule(Rule):
    """``kind = "server-certificate"``: per account, selected by name glob and path."""

    kind: Literal[Kind.SERVER_CERTIFICATE]
    max_age: Duration | None = None  # renewal is driven by expiry unless set
    issuer: Issuer
    renew_before: Duration = timedelta(days=30)
    retire_after: Duration = timedelta(days=7)
    name_format: str = "{base}-{date}"

    @model_validator(mode="after")
    def _names(self) -> ServerCertificateRule:
        if "{base}" not in self.name_format or "{date}" not in self.name_format:
            raise ValueError("name_format must contain {base} and {date}")
        if self.select.users != ["*"] or self.select.tags:
            raise ValueError("server certificates are selected by select.names and path_prefix")
        return self

    @property
    def renew_window(self) -> timedelta | None:
        return self.renew_before

    def timings(self) -> tuple[timedelta, timedelta]:
        return timedelta(0), self.retire_after  # server certificates have no status


class LoginProfileRule(Rule):
    """``kind = "login-profile"``: the console password, changed in place."""

    kind: Literal[Kind.LOGIN_PROFILE]
    password_reset_required: bool = True
    # Delete the login profile of a password unused for this long (CIS 1.12).
    disable_unused_after: Duration | None = None

    @property
    def unused_after(self) -> timedelta | None:
        return self.disable_unused_after


class SshPublicKeyRule(Rule):
    """``kind = "ssh-public-key"``: rotator makes an RSA key pair (the type IAM accepts)."""

    kind: Literal[Kind.SSH_PUBLIC_KEY]
    key_size: int = 4096

    @field_validator("key_size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value not in (2048, 3072, 4096):
            raise ValueError(f"key_size {value} is not one of 2048, 3072, 4096")
        return value


class ServiceCredentialRule(Rule):
    """``kind = "service-credential"``: one service's credentials (CodeCommit, Keyspaces)."""

    kind: Literal[Kind.SERVICE_CREDENTIAL]
    service: str = Field(pattern=r"^[a-z0-9.-]+\.amazonaws\.com$")

    @property
    def slot(self) -> str:
        return self.service


AnyRule = Annotated[
    AccessKeyRule
    | SigningCertificateRule
    | ServerCertificateRule
    | LoginProfileRule
    | SshPublicKeyRule
    | ServiceCredentialRule,
    Field(discriminator="kind"),
]
