"""An in-memory IAM for the certificate calls only, with IAM's response shapes and errors.

What moto does not do and real IAM does: reject duplicate server-certificate names
(``EntityAlreadyExists``), malformed bodies, key pairs that do not match
(``KeyPairMismatch``), a signing certificate already uploaded (``DuplicateCertificate``),
more than two signing certificates per user (``LimitExceeded``), and refuse to delete a
server certificate a load balancer uses (``DeleteConflict``: see ``attach``). Errors are
botocore ``ClientError``s shaped as IAM sends them. Every call is recorded in ``calls``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from rotator import crypto, crypto_checks

FAKE_EXPIRATION = datetime(2010, 5, 8, tzinfo=UTC)  # metadata rotator must never trust
PAGE = 2  # small pages, so pagination is exercised


def error(operation: str, code: str, message: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Type": "Sender", "Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@dataclass
class ServerCert:
    name: str
    path: str
    body: str
    chain: str | None
    uploaded: datetime

    def metadata(self) -> dict[str, Any]:
        return {
            "Path": self.path,
            "ServerCertificateName": self.name,
            "ServerCertificateId": "ASCA" + self.name.upper()[:16],
            "Arn": f"arn:aws:iam::123456789012:server-certificate{self.path}{self.name}",
            "UploadDate": self.uploaded,
            "Expiration": FAKE_EXPIRATION,
        }


@dataclass
class SigningCert:
    user: str
    cert_id: str
    body: str
    status: str = "Active"
    uploaded: datetime = field(default_factory=lambda: datetime.now(UTC))


class IamStub:
    """The certificate calls of an aioboto3 IAM client, kept in dicts."""

    def __init__(self) -> None:
        self.server: dict[str, ServerCert] = {}
        self.signing: dict[str, list[SigningCert]] = {}
        self.attached: set[str] = set()  # server certificates a load balancer uses
        self.calls: list[str] = []

    def attach(self, name: str) -> None:
        self.attached.add(name)

    # -- server certificates ----------------------------------------------------------------

    async def list_server_certificates(
        self, PathPrefix: str = "/", Marker: str | None = None
    ) -> dict[str, Any]:
        self.calls.append("ListServerCertificates")
        listed = [c.metadata() for c in self.server.values() if c.path.startswith(PathPrefix)]
        start = int(Marker or 0)
        page: dict[str, Any] = {"ServerCertificateMetadataList": listed[start : start + PAGE]}
        page["IsTruncated"] = start + PAGE < len(listed)
        if page["IsTruncated"]:
            page["Marker"] = str(start + PAGE)
        return page

    async def get_server_certificate(self, ServerCertificateName: str) -> dict[str, Any]:
        self.calls.append("GetServerCertificate")
        cert = self._server("GetServerCertificate", ServerCertificateName)
        got: dict[str, Any] = {
            "ServerCertificateMetadata": cert.metadata(),
            "CertificateBody": cert.body.rstrip(),  # IAM returns the body re-wrapped
        }
        if cert.chain:
            got["CertificateChain"] = cert.chain
        return {"ServerCertificate": got}

    async def upload_server_certificate(
        self,
        ServerCertificateName: str,
        CertificateBody: str,
        PrivateKey: str,
        Path: str = "/",
        CertificateChain: str | None = None,
    ) -> dict[str, Any]:
        op = "UploadServerCertificate"
        self.calls.append(op)
        if ServerCertificateName in self.server:
            raise error(
                op,
                "EntityAlreadyExists",
                f"The Server Certificate with name {ServerCertificateName} already exists.",
                409,
            )
        problems = crypto_checks.material_problems(
            CertificateBody, PrivateKey, CertificateChain, datetime.now(UTC)
        )
        if any("KeyPairMismatch" in p for p in problems):
            raise error(op, "KeyPairMismatch", "Certificate and private key do not match")
        if problems:
            raise error(
                op, "MalformedCertificate", f"Unable to parse certificate: {CertificateBody}"
            )
        cert = ServerCert(
            ServerCertificateName, Path, CertificateBody, CertificateChain, datetime.now(UTC)
        )
        self.server[ServerCertificateName] = cert
        return {"ServerCertificateMetadata": cert.metadata()}

    async def delete_server_certificate(self, ServerCertificateName: str) -> dict[str, Any]:
        op = "DeleteServerCertificate"
        self.calls.append(op)
        self._server(op, ServerCertificateName)
        if ServerCertificateName in self.attached:
            raise error(
                op,
                "DeleteConflict",
                f"Certificate: {ServerCertificateName} is currently in use by "
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/web. "
                "Please remove it first before deleting it from IAM.",
                409,
            )
        del self.server[ServerCertificateName]
        return {}

    def _server(self, operation: str, name: str) -> ServerCert:
        if name not in self.server:
            raise error(
                operation,
                "NoSuchEntity",
                f"The Server Certificate with name {name} cannot be found.",
                404,
            )
        return self.server[name]

    # -- signing certificates ---------------------------------------------------------------

    async def list_signing_certificates(
        self, UserName: str, Marker: str | None = None
    ) -> dict[str, Any]:
        self.calls.append("ListSigningCertificates")
        certs = self.signing.setdefault(UserName, [])
        return {
            "Certificates": [
                {
                    "UserName": c.user,
                    "CertificateId": c.cert_id,
                    "CertificateBody": c.body,
                    "Status": c.status,
                    "UploadDate": c.uploaded,
                }
                for c in certs
            ],
            "IsTruncated": False,
        }

    async def upload_signing_certificate(
        self, UserName: str, CertificateBody: str
    ) -> dict[str, Any]:
        op = "UploadSigningCertificate"
        self.calls.append(op)
        if crypto.pem_fingerprint(CertificateBody) == "":
            raise error(op, "MalformedCertificate", f"Certificate {CertificateBody} is malformed")
        every = [c for certs in self.signing.values() for c in certs]
        if any(c.body == CertificateBody for c in every):
            raise error(op, "DuplicateCertificate", "The certificate is already in use", 409)
        certs = self.signing.setdefault(UserName, [])
        if len(certs) >= 2:
            raise error(op, "LimitExceeded", "Cannot exceed quota for CertificatesPerUser: 2", 409)
        cert = SigningCert(UserName, secrets.token_hex(16).upper(), CertificateBody)
        certs.append(cert)
        return {
            "Certificate": {
                "UserName": UserName,
                "CertificateId": cert.cert_id,
                "CertificateBody": cert.body,
                "Status": cert.status,
                "UploadDate": cert.uploaded,
            }
        }

    async def update_signing_certificate(
        self, UserName: str, CertificateId: str, Status: str
    ) -> dict[str, Any]:
        self.calls.append("UpdateSigningCertificate")
        self._signing("UpdateSigningCertificate", UserName, CertificateId).status = Status
        return {}

    async def delete_signing_certificate(self, UserName: str, CertificateId: str) -> dict[str, Any]:
        self.calls.append("DeleteSigningCertificate")
        cert = self._signing("DeleteSigningCertificate", UserName, CertificateId)
        self.signing[UserName].remove(cert)
        return {}

    def _signing(self, operation: str, user: str, cert_id: str) -> SigningCert:
        for cert in self.signing.get(user, []):
            if cert.cert_id == cert_id:
                return cert
        raise error(
            operation, "NoSuchEntity", f"The Certificate with id {cert_id} cannot be found.", 404
        )
