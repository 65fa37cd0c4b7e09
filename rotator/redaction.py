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
# The secrets by their first MIN_LENGTH characters, rebuilt only when one is added: scrub
# runs on every field of every audit line, and must not slow down as secrets accumulate
# (one per rotation, for the life of a daemon). A text is looked at only where one of its
# MIN_LENGTH-character windows starts a secret.
_by_prefix: dict[str, tuple[str, ...]] = {}


def register(value: str) -> None:
    """Remember ``value`` as a secret so it is scrubbed from anything rendered later."""
    global _by_prefix
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        added = {value}
        # A PEM private key is also scrubbed line by line: tracebacks may show a fragment.
        if "\n" in value:
            added |= {
                line
                for line in value.splitlines()
                if len(line) >= 32 and not line.startswith("-----")
            }
        added -= _secrets
        _secrets.update(added)
        # Copy, then swap: a scrub running meanwhile keeps reading the old mapping whole.
        # Only the groups the new secrets fall in are rebuilt, not every secret's.
        by_prefix = dict(_by_prefix)
        for secret in added:
            group = (*by_prefix.get(secret[:MIN_LENGTH], ()), secret)
            by_prefix[secret[:MIN_LENGTH]] = tuple(sorted(group, key=len, reverse=True))
        _by_prefix = by_prefix


def is_secret_field(name: str) -> bool:
    return name.lower().replace("-", "_") in SECRET_FIELDS or name.lower() in SECRET_FIELDS


def scrub(text: str) -> str:
    """``text`` with every registered secret value replaced by ``[REDACTED]``."""
    if len(text) < MIN_LENGTH:  # too short to hold any registered secret
        return text
    by_prefix = _by_prefix  # replaced whole by register, never changed in place
    if not by_prefix:
        return text
    windows = {text[i : i + MIN_LENGTH] for i in range(len(text) - MIN_LENGTH + 1)}
    found = windows & by_prefix.keys()
    if not found:
        return text
    # Longest first: a secret that contains another is scrubbed whole.
    candidates = sorted({s for p in found for s in by_prefix[p]}, key=len, reverse=True)
    for secret in candidates:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def forget_all() -> None:
    """Forget every registered secret (tests only)."""
    global _by_prefix
    with _lock:
        _secrets.clear()
        _by_prefix = {}
