"""The in-memory IAM twin's server and signing certificates, validated as IAM validates them.

What IAM does and moto does not: server-certificate names are unique
(``EntityAlreadyExists``); a body that does not parse, has expired or is too long is
``MalformedCertificate``, a private key that does not match it ``KeyPairMismatch``; the
metadata's ``Expiration`` is the body's notAfter; ``ListServerCertificates`` pages (its
``MaxItems`` defaults to the twin's ``page_size``) and honours ``PathPrefix``; a certificate a
load balancer uses cannot be deleted (``DeleteConflict``: see
``attach_server_certificate``). Signing certificates: two per user (``LimitExceeded``), a
body already uploaded for any user is ``DuplicateCertificate``.

Like moto, a refused body is echoed in IAM's error message: rotator must not repeat it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator import crypto, crypto_checks
from rotator.testing.memory_state import (
    ServerCertificate,
    SigningCertificate,
    State,
    User,
    client_error,
    ok,
    page,
    random_id,
)

MAX_SERVER_CERTIFICATES = 20  # per account (IAM's default quota)
MAX_SIGNING_CERTIFICATES = 2  # per user
STATUSES = ("Active", "Inactive")


class CertificatesMixin(State):
    """``*ServerCertificate*`` and ``*SigningCertificate*`` calls."""

    # -- server certificates ------------------------------------------------------------

    def attach_server_certificate(self, name: str, load_balancer: str = "web") -> None:
        """Test helper: a load balancer now uses the certificate (IAM refuses to delete it)."""
        arn = f"arn:aws:elasticloadbalancing:us-east-1:{self.account}:loadbalancer/{load_balancer}"
        self.server_certificates[name].attached_to = arn

    def detach_server_certificate(self, name: str) -> None:
        """Test helper: no load balancer uses the certificate any more."""
        self.server_certificates[name].attached_to = None

    def _server(self, action: str, name: str) -> ServerCertificate:
        found = self.server_certificates.get(name)
        if found is None:
            raise client_error(
                action,
                "NoSuchEntity",
                f"The Server Certificate with name {name} cannot be found.",
                404,
            )
        return found

    def _metadata(self, cert: ServerCertificate) -> dict[str, Any]:
        return {
            "Path": cert.path,
            "ServerCertificateName": cert.name,
            "ServerCertificateId": cert.certificate_id,
            "Arn": f"arn:aws:iam::{self.account}:server-certificate{cert.path}{cert.name}",
            "UploadDate": cert.uploaded,
            "Expiration": cert.expiration,
        }

    async def list_server_certificates(
        self, *, PathPrefix: str = "/", Marker: str | None = None, MaxItems: int | None = None
    ) -> dict[str, Any]:
        self._call("ListServerCertificates")
        found = [c for c in self.server_certificates.values() if c.path.startswith(PathPrefix)]
        chunk, paging = page(found, Marker, MaxItems or self.page_size)
        return ok({"ServerCertificateMetadataList": [self._metadata(c) for c in chunk], **paging})

    async def get_server_certificate(self, *, ServerCertificateName: str) -> dict[str, Any]:
        self._call("GetServerCertificate")
        cert = self._server("GetServerCertificate", ServerCertificateName)
        got: dict[str, Any] = {
            "ServerCertificateMetadata": self._metadata(cert),
            "CertificateBody": cert.body.rstrip(),  # IAM returns the body re-wrapped
            "Tags": [],
        }
        if cert.chain:
            got["CertificateChain"] = cert.chain
        return ok({"ServerCertificate": got})

    async def upload_server_certificate(
        self,
        *,
        ServerCertificateName: str,
        CertificateBody: str,
        PrivateKey: str,
        Path: str = "/",
        CertificateChain: str | None = None,
    ) -> dict[str, Any]:
        action = "UploadServerCertificate"
        self._call(action)
        name = ServerCertificateName
        if name in self.server_certificates:
            raise client_error(
                action,
                "EntityAlreadyExists",
                f"The Server Certificate with name {name} already exists.",
                409,
            )
        if len(self.server_certificates) >= MAX_SERVER_CERTIFICATES:
            raise client_error(
                action,
                "LimitExceeded",
                f"Cannot exceed quota for ServerCertificatesPerAccount: {MAX_SERVER_CERTIFICATES}",
                409,
            )
        now = self.clock()
        problems = crypto_checks.material_problems(
            CertificateBody, PrivateKey, CertificateChain, now
        )
        if any("KeyPairMismatch" in p for p in problems):
            raise client_error(
                action, "KeyPairMismatch", "Certificate and private key do not match"
            )
        if problems:
            raise client_error(
                action, "MalformedCertificate", f"Unable to parse certificate: {CertificateBody}"
            )
        cert = ServerCertificate(
            name=name,
            certificate_id=random_id("ASCA"),
            path=Path,
            uploaded=now,
            expiration=_not_after(CertificateBody),
            body=CertificateBody,
            chain=CertificateChain,
        )
        self.server_certificates[name] = cert
        return ok({"ServerCertificateMetadata": self._metadata(cert), "Tags": []})

    async def delete_server_certificate(self, *, ServerCertificateName: str) -> dict[str, Any]:
        action = "DeleteServerCertificate"
        self._call(action)
        cert = self._server(action, ServerCertificateName)
        if cert.attached_to is not None:
            raise client_error(
                action,
                "DeleteConflict",
                f"Certificate: {cert.certificate_id} is currently in use by {cert.attached_to}. "
                "Please remove it first before deleting it from IAM.",
                409,
            )
        del self.server_certificates[ServerCertificateName]
        return ok({})

    # -- signing certificates -----------------------------------------------------------

    def _signing(self, action: str, user: User, certificate_id: str) -> SigningCertificate:
        found = next(
            (c for c in user.signing_certificates if c.certificate_id == certificate_id), None
        )
        if found is None:
            raise client_error(
                action,
                "NoSuchEntity",
                f"The Certificate with id {certificate_id} cannot be found.",
                404,
            )
        return found

    @staticmethod
    def _signing_shape(user: User, cert: SigningCertificate) -> dict[str, Any]:
        return {
            "UserName": user.name,
            "CertificateId": cert.certificate_id,
            "CertificateBody": cert.body,
            "Status": cert.status,
            "UploadDate": cert.uploaded,
        }

    async def list_signing_certificates(
        self, *, UserName: str, Marker: str | None = None, MaxItems: int | None = None
    ) -> dict[str, Any]:
        self._call("ListSigningCertificates")
        user = self._user("ListSigningCertificates", UserName)
        chunk, paging = page(user.signing_certificates, Marker, MaxItems or self.page_size)
        return ok({"Certificates": [self._signing_shape(user, c) for c in chunk], **paging})

    async def upload_signing_certificate(
        self, *, UserName: str, CertificateBody: str
    ) -> dict[str, Any]:
        action = "UploadSigningCertificate"
        self._call(action)
        user = self._user(action, UserName)
        if crypto.pem_fingerprint(CertificateBody) == "":
            raise client_error(
                action, "MalformedCertificate", f"Certificate {CertificateBody} is malformed"
            )
        every = (c for u in self.users.values() for c in u.signing_certificates)
        if any(c.body == CertificateBody for c in every):
            raise client_error(
                action, "DuplicateCertificate", "The certificate is already in use", 409
            )
        if len(user.signing_certificates) >= MAX_SIGNING_CERTIFICATES:
            raise client_error(
                action,
                "LimitExceeded",
                f"Cannot exceed quota for CertificatesPerUser: {MAX_SIGNING_CERTIFICATES}",
                409,
            )
        cert = SigningCertificate(
            certificate_id=random_id("", 32),
            body=CertificateBody,
            status="Active",
            uploaded=self.clock(),
        )
        user.signing_certificates.append(cert)
        return ok({"Certificate": self._signing_shape(user, cert)})

    async def update_signing_certificate(
        self, *, UserName: str, CertificateId: str, Status: str
    ) -> dict[str, Any]:
        action = "UpdateSigningCertificate"
        self._call(action)
        if Status not in STATUSES:
            raise client_error(action, "ValidationError", f"bad Status {Status!r}")
        self._signing(action, self._user(action, UserName), CertificateId).status = Status
        return ok({})

    async def delete_signing_certificate(
        self, *, UserName: str, CertificateId: str
    ) -> dict[str, Any]:
        action = "DeleteSigningCertificate"
        self._call(action)
        user = self._user(action, UserName)
        user.signing_certificates.remove(self._signing(action, user, CertificateId))
        return ok({})


def _not_after(body: str) -> datetime:
    """The notAfter of the (already validated) certificate ``body``."""
    return crypto.load_certificate(body, "certificate").not_valid_after_utc
