"""Seeding and inspecting the moto server for console passwords, SSH keys and unused
credentials, policy files for those rules, and running ``rotator report``.

IAM has no API to backdate a credential or record a use; the moto server runs in the test
process, so its backend is reached directly (as ``MotoSandbox.age_keys`` does).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from rotator.kinds.ssh_public_key import key_pair
from rotator.model import utcnow
from tests.support.cli import Cli, Result
from tests.support.moto import MotoSandbox

HEADER = """\
[journal]
url = "sqlite:///{tmp}/journal.db"

[audit]
file = "{tmp}/audit.jsonl"

[verify]
attempts = 3
initial_delay = "1s"
"""
SINK = '{{ type = "file", path = "{tmp}/secrets/{{account}}/{{user}}/{{kind}}.json" }}'
START_PASSWORD = "Initial-Passw0rd!" + "x" * 20  # satisfies the policies the tests set


def write_rules(cli: Cli, *rules: str) -> None:
    """A policy file with ``rules`` (TOML ``[[rules]]`` bodies; ``{sink}`` is filled in)."""
    sink = SINK.format(tmp=cli.tmp)
    body = "".join(f"\n[[rules]]\n{rule.format(sink=sink)}" for rule in rules)
    cli.config.write_text(HEADER.format(tmp=cli.tmp) + body)


def backend(sandbox: MotoSandbox) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[sandbox.account()]["aws"]


def user(sandbox: MotoSandbox, name: str) -> Any:
    return backend(sandbox).users[name]


def console_user(sandbox: MotoSandbox, name: str, *, path: str = "/", days_old: int = 0) -> None:
    """A user with a console password, created (and so, for moto, password set) ``days_old``
    days ago: moto dates both the login profile and ``password_last_changed`` by the user."""
    sandbox.iam.create_user(UserName=name, Path=path)
    sandbox.iam.create_login_profile(UserName=name, Password=START_PASSWORD)
    user(sandbox, name).create_date -= timedelta(days=days_old)


def password_of(sandbox: MotoSandbox, name: str) -> str | None:
    return user(sandbox, name).password  # type: ignore[no-any-return]


def sign_in(sandbox: MotoSandbox, name: str, at: datetime) -> None:
    """Record a console sign-in (IAM's PasswordLastUsed)."""
    user(sandbox, name).password_last_used = at


def use_key(sandbox: MotoSandbox, key_id: str, at: datetime) -> None:
    """Record a use of an access key (GetAccessKeyLastUsed, the report's last_used_date)."""
    from moto.iam.models import AccessKeyLastUsed

    backend(sandbox).access_keys[key_id].last_used = AccessKeyLastUsed(
        timestamp=at, service="s3", region="us-east-1"
    )


def ssh_user(sandbox: MotoSandbox, name: str, *, days_old: int = 0) -> str:
    """A user with one SSH public key uploaded ``days_old`` days ago; returns its ID."""
    sandbox.iam.create_user(UserName=name)
    _, public, _ = key_pair(2048)
    made = sandbox.iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=public)
    for key in user(sandbox, name).ssh_public_keys:
        key.upload_date -= timedelta(days=days_old)
    return str(made["SSHPublicKey"]["SSHPublicKeyId"])


def ssh_keys(sandbox: MotoSandbox, name: str) -> dict[str, str]:
    """``{SSHPublicKeyId: Status}``."""
    listed = sandbox.iam.list_ssh_public_keys(UserName=name)["SSHPublicKeys"]
    return {k["SSHPublicKeyId"]: k["Status"] for k in listed}


def public_key_of(private_pem: str) -> str:
    """The ``ssh-rsa AAAA...`` line of an OpenSSH private key."""
    private = serialization.load_ssh_private_key(private_pem.encode(), None)
    line = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return line.decode()


def self_signed(cn: str, *, not_after: datetime) -> tuple[str, str]:
    """(certificate PEM, private key PEM) valid until ``not_after``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utcnow() - timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), private.decode()


def report(cli: Cli, *args: str) -> Result:
    """``rotator report --config F`` through the real ``rotator`` command."""
    return cli("report", *args)
