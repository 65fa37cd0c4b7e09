"""What an OpenID Connect provider serves: its configuration, then the TLS chain of the host
of its ``jwks_uri``, verified; the thumbprint IAM wants is the hex SHA-1 of the chain's top
intermediate CA certificate (as IAM's documentation describes).

Both connections verify the server's chain and name against the system trust store, or
the CA bundle the rule names (``ssl``: the same checks any HTTPS client makes). A chain
that does not verify (a self-signed leaf, a certificate for another host, an unknown CA)
is a ``problem``, never a thumbprint: rotator refuses to trust what it cannot verify.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import hashlib
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509

WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True, kw_only=True)
class Served:
    """What one provider serves now. ``thumbprint`` is None exactly when ``problem`` says
    why it could not be trusted."""

    url: str  # the provider's URL as IAM holds it (no scheme)
    jwks_host: str = ""
    thumbprint: str | None = None  # lower-case hex SHA-1 of the top intermediate CA
    subject: str = ""  # that certificate's subject, for reasons
    problem: str | None = None


def thumbprint(der: bytes) -> str:
    """IAM's thumbprint of a certificate: the hex SHA-1 of its DER bytes, lower case."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def context(ca_bundle: Path | None) -> ssl.SSLContext:
    """A verifying client context: the system trust store, or only ``ca_bundle``."""
    if ca_bundle is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_bundle))


def _verified_chain(ssl_object: Any) -> list[bytes]:
    """The DER certificates of the verified chain, leaf first, trust anchor last."""
    getter = getattr(ssl_object, "get_verified_chain", None)  # Python 3.13
    if getter is None:
        getter = ssl_object._sslobj.get_verified_chain  # 3.11/3.12: the same, not yet public
    return [
        c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in getter() or []
    ]


def top_intermediate(chain: list[bytes]) -> bytes | None:
    """The certificate IAM's thumbprint is made of: the highest CA below the trust anchor
    (the anchor itself when it signed the leaf directly); None for a lone leaf."""
    if len(chain) >= 3:
        return chain[-2]
    if len(chain) == 2:
        return chain[-1]
    return None


async def _chain_of(host: str, port: int, ctx: ssl.SSLContext, seconds: float) -> list[bytes]:
    async with asyncio.timeout(seconds):
        _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    try:
        return _verified_chain(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        # the chain is read; how the server closes does not matter
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(seconds):
                await writer.wait_closed()


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        exc = exc.certificate_error
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the TLS chain does not verify: {exc.verify_message or exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


async def fetch(url: str, *, ca_bundle: Path | None, seconds: float) -> Served:
    """Fetch ``https://<url>/.well-known/openid-configuration``, then verify the TLS chain
    of its ``jwks_uri`` host and take the thumbprint of the chain's top intermediate."""
    ctx = context(ca_bundle)
    config_url = f"https://{url}{WELL_KNOWN}"
    try:
        connector = aiohttp.TCPConnector(ssl=ctx)
        limit = aiohttp.ClientTimeout(total=seconds)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=limit) as http,
            http.get(config_url, allow_redirects=False) as answer,
        ):
            if answer.status != 200:
                return Served(url=url, problem=f"GET {config_url} answered {answer.status}")
            config = json.loads(await answer.read())
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return Served(url=url, problem=f"GET {config_url}: {_why(exc)}")
    jwks_uri = config.get("jwks_uri") if isinstance(config, dict) else None
    if not isinstance(jwks_uri, str):
        return Served(url=url, problem=f"{config_url} names no jwks_uri")
    parts = urlsplit(jwks_uri)
    if parts.scheme != "https" or not parts.hostname:
        return Served(url=url, problem=f"jwks_uri {jwks_uri!r} is not an https URL")
    host = parts.hostname
    where = f"{host}:{parts.port}" if parts.port else host
    try:
        chain = await _chain_of(host, parts.port or 443, ctx, seconds)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return Served(url=url, jwks_host=where, problem=f"jwks_uri host {where}: {_why(exc)}")
    top = top_intermediate(chain)
    if top is None:
        return Served(
            url=url, jwks_host=where, problem=f"jwks_uri host {where} serves no CA certificate"
        )
    subject = x509.load_der_x509_certificate(top).subject.rfc4514_string()
    return Served(url=url, jwks_host=where, thumbprint=thumbprint(top), subject=subject)
