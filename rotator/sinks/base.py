"""The sink port: where secrets go, as three slots per holder: current, previous, pending.

A *holder* is one (account, user, kind, slot) and has one ``SinkDocument``. The protocol
moves secrets through it like Secrets Manager's rotation stages:

* ``put_pending`` stores a new secret before anything else can lose it;
* ``promote`` makes pending current and the old current previous (consumers switch now);
* ``rollback`` makes previous current again.

Each method is idempotent, so a rotation replayed after a crash can call it again. Every
implementation (memory, file, secretsmanager, ...) passes ``tests/sinks/test_contract.py``.

Every mutating call carries a ``Fence``: the journal's epoch and the writer's lease fence.
A sink keeps the highest fence it has seen with the holder's document and refuses a write
whose fence is older (``LeaseLost``): a worker whose lease was taken over while its call
was in flight cannot overwrite what the new owner stored. Nothing of a refused write is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import SecretStr

from rotator import redaction
from rotator.errors import LeaseLost
from rotator.model import Kind

# Keys of a stored entry that rotator itself adds beside the kind's own fields.
CREDENTIAL_ID = "CredentialId"
CREATED_AT = "CreatedAt"
KIND = "Kind"


# The names of the accounts the current task works in (set by the organization sweep for
# each account's sweep), for ``{account_name}`` in sink templates.
ACCOUNT_NAMES: ContextVar[Mapping[str, str]] = ContextVar(
    "rotator_account_names", default=MappingProxyType({})
)


@contextmanager
def naming_accounts(names: Mapping[str, str]) -> Iterator[None]:
    """Within the block, ``{account_name}`` renders the names in ``names`` (by ID)."""
    token = ACCOUNT_NAMES.set({**ACCOUNT_NAMES.get(), **names})
    try:
        yield
    finally:
        ACCOUNT_NAMES.reset(token)


@dataclass(frozen=True, kw_only=True)
class Fence:
    """Who may write a holder's document: ``value`` is the writer's lease fence, which grows
    per holder (target) across rotations and takeovers; ``epoch`` names the journal it comes
    from. Fences compare only within one epoch: a write from another journal (a new
    journal, a migration) is not refused, and its fence replaces the one held.
    ``rotation_id`` says whose write it is (for messages and request tokens)."""

    epoch: str
    value: int
    rotation_id: str = field(default="", compare=False)

    def older_than(self, held: Fence | None) -> bool:
        """True if ``held`` is from the same journal and newer: this write must be refused."""
        return held is not None and held.epoch == self.epoch and self.value < held.value

    def newest(self, held: Fence | None) -> Fence:
        """The fence a document keeps after this write is accepted."""
        if held is not None and held.epoch == self.epoch and held.value > self.value:
            return held
        return self

    def text(self) -> str:
        """``epoch:value``, as the AWS sinks store it."""
        return f"{self.epoch}:{self.value}"

    @classmethod
    def parse(cls, text: object) -> Fence | None:
        """The inverse of ``text``; None for anything else (no fence stored)."""
        if not isinstance(text, str) or ":" not in text:
            return None
        epoch, _, value = text.rpartition(":")
        return cls(epoch=epoch, value=int(value)) if value.isdigit() and epoch else None

    def check(self, held: Fence | None, where: str) -> None:
        """Raise ``LeaseLost`` if ``held`` (the document's fence) is newer than this one."""
        if self.older_than(held):
            assert held is not None
            raise LeaseLost(
                self.rotation_id or "this rotation",
                f"{where} was written with fence {held.value}, newer than this worker's "
                f"{self.value}: another worker took over; this write was refused and nothing "
                "of it kept",
            )


@dataclass(frozen=True, kw_only=True)
class SinkKey:
    """Which holder a sink document belongs to; the values a sink template may use."""

    account: str
    user: str
    kind: Kind
    slot: str = ""

    def fields(self) -> dict[str, str]:
        """The template fields: ``{account}``, ``{account_name}`` (the account's name where
        ``[accounts]`` knows it, else its ID), ``{user}`` (``{name}`` for certificates: the
        holder's name either way), ``{kind}``, ``{slot}``."""
        return {
            "account": self.account,
            "account_name": ACCOUNT_NAMES.get().get(self.account) or self.account,
            "user": self.user,
            "name": self.user,
            "kind": str(self.kind),
            "slot": self.slot,
        }

    def __str__(self) -> str:
        return f"{self.account}/{self.user}/{self.kind}" + (f"/{self.slot}" if self.slot else "")


@dataclass(frozen=True, kw_only=True)
class SecretEntry:
    """One credential's secret material. ``public`` fields (IDs, certificate bodies) may be
    logged; ``secret`` fields never are: their values are registered for redaction on
    construction and hidden by ``repr``.

    ``credential_id`` is "" while IAM has not yet assigned one (material rotator generated
    and stored before uploading it).
    """

    kind: Kind
    credential_id: str
    created_at: datetime
    public: Mapping[str, str] = field(default_factory=dict)
    secret: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for value in self.secret.values():
            redaction.register(value.get_secret_value())

    def with_id(self, credential_id: str) -> SecretEntry:
        """The same material, now with the ID IAM assigned."""
        return SecretEntry(
            kind=self.kind,
            credential_id=credential_id,
            created_at=self.created_at,
            public=self.public,
            secret=self.secret,
        )

    def reveal(self, name: str) -> str:
        """The plain value of secret field ``name`` (for the sink and for verification only)."""
        return self.secret[name].get_secret_value()

    def to_document(self) -> dict[str, str]:
        """The plain JSON object a sink stores: the kind's fields plus rotator's own."""
        doc: dict[str, str] = {
            KIND: str(self.kind),
            CREDENTIAL_ID: self.credential_id,
            CREATED_AT: self.created_at.isoformat(),
        }
        doc.update(self.public)
        doc.update({k: v.get_secret_value() for k, v in self.secret.items()})
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SecretEntry:
        """The inverse of ``to_document``: fields named like secrets become ``SecretStr``."""
        public: dict[str, str] = {}
        secret: dict[str, SecretStr] = {}
        for key, value in doc.items():
            if key in (KIND, CREDENTIAL_ID, CREATED_AT):
                continue
            if redaction.is_secret_field(key):
                secret[key] = SecretStr(str(value))
            else:
                public[key] = str(value)
        return cls(
            kind=Kind(doc[KIND]),
            credential_id=str(doc.get(CREDENTIAL_ID, "")),
            created_at=datetime.fromisoformat(str(doc[CREATED_AT])),
            public=public,
            secret=secret,
        )


@dataclass(frozen=True, kw_only=True)
class SinkDocument:
    """The three slots of one holder, and the highest fence that wrote it (not part of the
    document's value: two documents with the same slots are equal)."""

    current: SecretEntry | None = None
    previous: SecretEntry | None = None
    pending: SecretEntry | None = None
    fence: Fence | None = field(default=None, compare=False)

    def fenced(self, fence: Fence) -> SinkDocument:
        """This document as written under ``fence`` (which must not be older)."""
        return replace(self, fence=fence.newest(self.fence))

    def to_json(self) -> str:
        """The document as the file sink writes it (contains secrets: sinks only)."""

        def one(entry: SecretEntry | None) -> dict[str, str] | None:
            return entry.to_document() if entry else None

        raw: dict[str, Any] = {
            "current": one(self.current),
            "previous": one(self.previous),
            "pending": one(self.pending),
        }
        if self.fence is not None:
            raw["fence"] = self.fence.text()
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SinkDocument:
        raw = json.loads(text)

        def one(value: Any) -> SecretEntry | None:
            return SecretEntry.from_document(value) if value else None

        return cls(
            current=one(raw.get("current")),
            previous=one(raw.get("previous")),
            pending=one(raw.get("pending")),
            fence=Fence.parse(raw.get("fence")),
        )

    def find(self, credential_id: str) -> SecretEntry | None:
        """The entry for ``credential_id`` in any slot."""
        for entry in (self.pending, self.current, self.previous):
            if entry is not None and credential_id and entry.credential_id == credential_id:
                return entry
        return None


class SecretSink(Protocol):
    """Where one rule's secrets are kept."""

    def location(self, key: SinkKey) -> str:
        """Where ``key``'s document lives, for people (a path, a secret name). No secrets."""
        ...

    async def read(self, key: SinkKey) -> SinkDocument:
        """The holder's document; an empty one if nothing was stored yet.
        Raises ``SinkError`` if it exists but cannot be read."""
        ...

    async def check(self, key: SinkKey) -> None:
        """Preflight: raise ``SinkError`` (one line, naming the place) if this sink cannot
        store ``key``'s secrets (a directory that is not writable, a profile that cannot be
        rewritten, access denied). Writes nothing; called before any credential is made."""
        ...

    async def put_pending(self, key: SinkKey, entry: SecretEntry, fence: Fence) -> None:
        """Store ``entry`` as pending, replacing any pending entry. Current and previous are
        untouched. Storing the same entry again is a no-op. Raises ``SinkError``, or
        ``LeaseLost`` if the document was written with a newer ``fence``."""
        ...

    async def promote(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make the pending entry with ``credential_id`` current; the old current becomes
        previous and pending is emptied. A no-op if current already has ``credential_id``.
        Raises ``SinkError`` if neither pending nor current holds ``credential_id``,
        ``LeaseLost`` if the document was written with a newer ``fence``."""
        ...

    async def rollback(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make the previous entry with ``credential_id`` current again; the current entry
        becomes previous. A no-op if current already has ``credential_id``. Raises
        ``SinkError`` if neither previous nor current holds it, ``LeaseLost`` if the
        document was written with a newer ``fence``."""
        ...
