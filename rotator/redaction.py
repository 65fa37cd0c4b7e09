"""The set of secret values this process has seen, and scrubbing of text that contains them.

Every ``SecretEntry`` registers its secret values here when it is built, so the audit log's
redaction processor (``rotator.audit``) and error rendering can scrub a secret even where it
turns up somewhere unexpected (an exception message, a third-party log line). Values shorter
than ``MIN_LENGTH`` are not registered: they would scrub innocent text and no real secret is
that short.
"""

from __future__ import annotations

import threading

REDACTED = "[REDACTED]"
MIN_LENGTH = 8

# Field names whose values are always secret, whatever their value.
SECRET_FIELDS = frozenset(
    {
        "secretaccesskey",
        "secret_access_key",
        "aws_secret_access_key",
        "sessiontoken",
        "aws_session_token",
        "password",
        "servicepassword",
        "servicecredentialsecret",
        "privatekey",
        "private_key",
        "secret",
        "secretstring",
    }
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register(value: str) -> None:
    """Remember ``value`` as a secret so it is scrubbed from anything rendered later."""
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        _secrets.add(value)
        # A PEM private key is also scrubbed line by line: tracebacks may show a fragment.
        if "\n" in value:
            for line in value.splitlines():
                if len(line) >= 32 and not line.startswith("-----"):
                    _secrets.add(line)


def is_secret_field(name: str) -> bool:
    return name.lower().replace("-", "_") in SECRET_FIELDS or name.lower() in SECRET_FIELDS


def scrub(text: str) -> str:
    """``text`` with every registered secret value replaced by ``[REDACTED]``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def forget_all() -> None:
    """Forget every registered secret (tests only)."""
    with _lock:
        _secrets.clear()
