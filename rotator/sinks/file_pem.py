"""PEM files beside a file sink's JSON document, for entries that carry certificates.

Web servers, load-balancer tooling and signing clients want PEM files, not JSON. When the
*current* entry of a document at ``DIR/NAME.json`` holds a certificate, the file sink keeps::

    DIR/NAME.cert.pem    the certificate body
    DIR/NAME.chain.pem   the chain (removed when the current entry has none)
    DIR/NAME.key.pem     the private key

each written like the document itself (mode 0600, temporary file, fsync, rename), after
the document, under the document's lock. Only files whose content differs are written, so
a promote replayed after a crash repairs files a crash left stale. Entries without a
certificate (access keys) leave any PEM files alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from rotator.crypto import CERTIFICATE_BODY, CERTIFICATE_CHAIN, PRIVATE_KEY
from rotator.sinks.base import SecretEntry

CERT_SUFFIX = ".cert.pem"
CHAIN_SUFFIX = ".chain.pem"
KEY_SUFFIX = ".key.pem"


def pem_paths(document: Path) -> dict[str, Path]:
    """The PEM files beside ``document`` (``x/y.json`` -> ``x/y.cert.pem`` ...)."""
    stem = document.with_suffix("") if document.suffix else document
    return {
        CERT_SUFFIX: Path(f"{stem}{CERT_SUFFIX}"),
        CHAIN_SUFFIX: Path(f"{stem}{CHAIN_SUFFIX}"),
        KEY_SUFFIX: Path(f"{stem}{KEY_SUFFIX}"),
    }


def pem_contents(entry: SecretEntry) -> dict[str, str | None] | None:
    """What each PEM file should hold for ``entry`` (None: the file should not exist), or
    None if the entry holds no certificate (its files are then left as they are)."""
    body = entry.public.get(CERTIFICATE_BODY)
    if not body:
        return None
    chain = entry.public.get(CERTIFICATE_CHAIN) or None
    key = entry.reveal(PRIVATE_KEY) if PRIVATE_KEY in entry.secret else None
    return {CERT_SUFFIX: _ended(body), CHAIN_SUFFIX: _ended(chain), KEY_SUFFIX: _ended(key)}


def sync_pem_files(
    document: Path, entry: SecretEntry, write: Callable[[Path, str], None]
) -> list[Path]:
    """Make the PEM files beside ``document`` match ``entry``; ``write`` writes one file
    atomically. Returns the files written or removed."""
    wanted = pem_contents(entry)
    if wanted is None:
        return []
    changed = []
    for suffix, path in pem_paths(document).items():
        text = wanted[suffix]
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                changed.append(path)
        elif _current(path) != text:
            write(path, text)
            changed.append(path)
    return changed


def _ended(text: str | None) -> str | None:
    if text is None:
        return None
    return text if text.endswith("\n") else text + "\n"


def _current(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
