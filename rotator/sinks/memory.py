"""The in-memory sink, and the slot transitions every document-shaped sink shares.

The four ``next_*`` functions are the functional core of the sink port: each takes a holder's
``SinkDocument`` and returns the document after the operation (the same document when the
operation is a no-op), or raises ``SinkError``. ``MemorySink`` applies them to a dict and is
the reference twin of the other sinks; ``FileSink`` applies them to a file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rotator.errors import SinkError
from rotator.policy import MemorySinkConfig
from rotator.sinks.base import Fence, SecretEntry, SinkDocument, SinkKey


def permissions(config: MemorySinkConfig, partition: str = "aws") -> list[dict[str, Any]]:
    """No AWS permissions: the memory sink keeps secrets in this process (for
    ``rotator iam-policy``)."""
    return []


def holds(entry: SecretEntry | None, credential_id: str) -> bool:
    """True if ``entry`` exists and has the (non-empty) ``credential_id``."""
    return entry is not None and bool(credential_id) and entry.credential_id == credential_id


def next_put_pending(doc: SinkDocument, entry: SecretEntry) -> SinkDocument:
    """``doc`` with ``entry`` as pending; current and previous untouched."""
    if doc.pending == entry:
        return doc
    return SinkDocument(current=doc.current, previous=doc.previous, pending=entry)


def next_promote(doc: SinkDocument, credential_id: str, where: str) -> SinkDocument:
    """``doc`` with pending ``credential_id`` current and the old current previous.

    A no-op if current already holds it; ``SinkError`` (naming ``where``) if pending does not.
    """
    if holds(doc.current, credential_id):
        return doc
    if not holds(doc.pending, credential_id):
        raise SinkError(
            f"{where}: cannot promote {credential_id!r}: it is neither pending nor current"
        )
    return SinkDocument(current=doc.pending, previous=doc.current, pending=None)


def next_rollback(doc: SinkDocument, credential_id: str, where: str) -> SinkDocument:
    """``doc`` with previous ``credential_id`` current again and the current one previous.

    A no-op if current already holds it; ``SinkError`` (naming ``where``) if previous does not.
    """
    if holds(doc.current, credential_id):
        return doc
    if not holds(doc.previous, credential_id):
        raise SinkError(
            f"{where}: cannot roll back to {credential_id!r}: it is neither previous nor current"
        )
    return SinkDocument(current=doc.previous, previous=doc.current, pending=doc.pending)


class MemorySink:
    """Secrets kept in this process: one ``SinkDocument`` per rendered holder name."""

    def __init__(self, config: MemorySinkConfig | None = None) -> None:
        self._template = (config or MemorySinkConfig(type="memory")).name
        self._documents: dict[str, SinkDocument] = {}

    def location(self, key: SinkKey) -> str:
        """The holder's name rendered from the template, prefixed ``memory:``."""
        return f"memory:{self._name(key)}"

    async def read(self, key: SinkKey) -> SinkDocument:
        """The holder's document; an empty one if nothing was stored yet."""
        return self._documents.get(self._name(key), SinkDocument())

    async def check(self, key: SinkKey) -> None:
        """Nothing can stop a write to memory."""

    async def put_pending(self, key: SinkKey, entry: SecretEntry, fence: Fence) -> None:
        """Store ``entry`` as pending, replacing any pending entry."""
        self._apply(key, fence, lambda doc: next_put_pending(doc, entry))

    async def promote(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make pending ``credential_id`` current; raises ``SinkError`` if it is not pending."""
        self._apply(key, fence, lambda doc: next_promote(doc, credential_id, self.location(key)))

    async def rollback(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make previous ``credential_id`` current; raises ``SinkError`` if it is not previous."""
        self._apply(key, fence, lambda doc: next_rollback(doc, credential_id, self.location(key)))

    def _name(self, key: SinkKey) -> str:
        return self._template.format(**key.fields())

    def _apply(
        self, key: SinkKey, fence: Fence, change: Callable[[SinkDocument], SinkDocument]
    ) -> None:
        name = self._name(key)
        old = self._documents.get(name, SinkDocument())
        fence.check(old.fence, self.location(key))
        self._documents[name] = change(old).fenced(fence)
