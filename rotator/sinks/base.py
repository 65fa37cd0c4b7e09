"""The sink port: where secrets go, as three slots per holder: current, previous, pending.

A *holder* is one (account, user, kind, slot) and has one ``SinkDocument``. The protocol
moves secrets through it like Secrets Manager's rotation stages:

* ``put_pending`` stores a new secret before anything else can lose it;
* ``promote`` makes pending current and the old current previous (consumers switch now);
* ``rollback`` makes previous current again.

Each method is idempotent, so a rotation replayed after a crash can call it again. Every
implementation (memory, file, secretsmanager, ...) passes ``tests/sinks/test_contract.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import SecretStr

from rotator import redaction
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
    """The three slots of one holder."""

    current: SecretEntry | None = None
    previous: SecretEntry | None = None
    pending: SecretEntry | None = None

    def to_json(self) -> str:
        """The document as the file sink writes it (contains secrets: sinks only)."""

        def one(entry: SecretEntry | None) -> dict[str, str] | None:
            return entry.to_document() if entry else None

        return json.dumps(
            {
                "current": one(self.current),
                "previous": one(self.previous),
                "pending": one(self.pending),
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SinkDocument:
        raw = json.loads(text)

        def one(value: Any) -> SecretEntry | None:
            return SecretEntry.from_document(value) if value else None

        return cls(
            current=one(raw.get("current")),
            previous=one(raw.get("previous")),
            pending=one(raw.get("pending")),
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

    async def put_pending(self, key: SinkKey, entry: SecretEntry) -> None:
        """Store ``entry`` as pending, replacing any pending entry. Current and previous are
        untouched. Storing the same entry again is a no-op. Raises ``SinkError``."""
        ...

    async def promote(self, key: SinkKey, credential_id: str) -> None:
        """Make the pending entry with ``credential_id`` current; the old current becomes
        previous and pending is emptied. A no-op if current already has ``credential_id``.
        Raises ``SinkError`` if neither pending nor current holds ``credential_id``."""
        ...

    async def rollback(self, key: SinkKey, credential_id: str) -> None:
        """Make the previous entry with ``credential_id`` current again; the current entry
        becomes previous. A no-op if current already has ``credential_id``. Raises
        ``SinkError`` if neither previous nor current holds it."""
        ...
