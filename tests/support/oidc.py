"""A local OpenID Connect provider for tests: an HTTPS server on 127.0.0.1 with its own CA
(root -> intermediate -> leaf) serving ``/.well-known/openid-configuration`` and a JWKS.

``OidcServer.use(...)`` swaps the chain it serves (a new intermediate, a self-signed leaf, a
leaf for another host) for the connections that follow; ``jwks_host`` makes its
``jwks_uri`` name another host (``localhost``: the leaf names only 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from rotator import crypto
from rotator.model import utcnow
from tests.support.certs import DAY, Issued, name

HOST = "127.0.0.1"


def _builder(cn: str, key: crypto.PrivateKey, issuer: Issued | None) -> x509.CertificateBuilder:
    now = utcnow()
    issuer_name = issuer.cert.subject if issuer else name(cn)
    signer_public = issuer.key.public_key() if issuer else key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 365 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public),  # type: ignore[arg-type]
            False,
        )
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def ca(cn: str, parent: Issued | None = None) -> Issued:
    """A root CA, or an intermediate signed by ``parent`` (strict X.509 extensions)."""
    key = crypto.generate_key()
    cert = (
        _builder(cn, key, parent)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .sign(parent.key if parent else key, hashes.SHA256())
    )
    return Issued(cert, key)


def leaf(cn: str, issuer: Issued | None, *, ips: tuple[str, ...] = (HOST,)) -> Issued:
    """A server certificate for ``ips``, signed by ``issuer`` (None: by itself)."""
    key = crypto.generate_key()
    alt = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips])
    builder = (
        _builder(cn, key, issuer)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(alt, critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def thumbprint(issued: Issued) -> str:
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


class OidcServer:
    """The provider. ``url`` is what IAM holds (``127.0.0.1:PORT``); ``ca_bundle`` the
    root's PEM file, for the rule."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = ca("Test OIDC Root")
        self.intermediate = ca("Test OIDC Intermediate 1", self.root)
        self.ca_bundle = tmp / "oidc-root.pem"
        self.ca_bundle.write_text(self.root.pem)
        self.jwks_host = HOST
        self._context: ssl.SSLContext | None = None
        self._served = 0
        self.use(self.intermediate)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": f"https://{server.url}",
                        "jwks_uri": f"https://{server.jwks_host}:{server.port}/jwks",
                    }
                elif self.path == "/jwks":
                    body = {"keys": []}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, address = super().get_request()
                assert server._context is not None
                return server._context.wrap_socket(sock, server_side=True), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client refusing our chain ends its handshake: expected

        self._http = Server((HOST, 0), Handler)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{HOST}:{self.port}"

    def use(self, intermediate: Issued | None, *, server_leaf: Issued | None = None) -> Issued:
        """Serve a new leaf signed by ``intermediate`` (sent with it), or ``server_leaf``
        as given (a self-signed one: ``intermediate=None``)."""
        issued = server_leaf or leaf("oidc.test", intermediate)
        self._served += 1
        cert_file = self.tmp / f"oidc-chain-{self._served}.pem"
        key_file = self.tmp / f"oidc-key-{self._served}.pem"
        chain = [issued] + ([intermediate] if intermediate else [])
        cert_file.write_text("".join(c.pem for c in chain))
        key_file.write_text(issued.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self._context = context
        return issued

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@contextlib.contextmanager
def oidc_server(tmp: Path) -> Iterator[OidcServer]:
    server = OidcServer(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()
