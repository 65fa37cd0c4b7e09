"""The Secrets Manager sink: one secret per holder, its versions staged like rotation.

Each version's ``SecretString`` is the JSON of one entry (``SecretEntry.to_document()``), so
a consumer reading ``AWSCURRENT`` gets ``{"AccessKeyId": ..., "SecretAccessKey": ...}`` plus
rotator's ``Kind``, ``CredentialId`` and ``CreatedAt``. The slots are the staging labels:

* ``put_pending``: ``PutSecretValue`` with ``VersionStages=["AWSPENDING"]`` and a
  ``ClientRequestToken`` derived from the entry, so a replay adds no version;
* ``promote``: ``UpdateSecretVersionStage`` moves ``AWSCURRENT`` to the pending version
  (Secrets Manager moves ``AWSPREVIOUS`` to the old current itself), then drops
  ``AWSPENDING``;
* ``rollback``: ``AWSCURRENT`` moves back to the ``AWSPREVIOUS`` version, swapping the two.

Secrets Manager labels the *first* version of a secret ``AWSCURRENT`` whatever the request
asks, so a new secret is created holding ``{}`` (no credential yet) and ``read`` reports a
``{}`` version as an empty slot. A version labelled both ``AWSCURRENT`` and ``AWSPENDING``
(a promote interrupted before its last call) counts as current only; promoting it again
removes the stale label. Which slot a decision concerns is decided by the same functions
as the memory sink's (``rotator.sinks.memory.next_*``).

Writes are fenced. Each version's JSON also holds ``RotatorFence`` (``epoch:value``, the
fence of the write that made it); the secret's fence is the highest of its labelled
versions'. A write whose fence is older is refused (``LeaseLost``) before any call that
changes the secret, and labels move by compare-and-swap where one is there to move: a
version replacing a pending one is added with a staging label of its own
(``ROTATOR_STAGED``), then ``AWSPENDING`` is moved onto it with ``RemoveFromVersionId``
naming the version that held it when the fence was checked (Secrets Manager refuses the
move if another writer moved the label since); ``promote`` and ``rollback`` move
``AWSCURRENT`` the same way. The first pending version of a rotation (no pending label to
take) is put with ``AWSPENDING`` directly. The ``ClientRequestToken`` of a version
derives from the rotation, the fence, the step and the material, so a replay of the same
write adds no version and a late writer's version can never stand in for another's.

Transient AWS errors (throttling, 5xx) propagate as ``rotator.errors.Transient`` so the
step is retried; every other failure is a ``SinkError`` naming the secret (never its
value), raised from the ``Permanent`` error of the call that failed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from rotator.aws import Clients, aws_errors
from rotator.errors import AwsError, NoSuchEntity, Permanent, SinkError, Transient
from rotator.policy import SecretsManagerSinkConfig
from rotator.sinks.base import Fence, SecretEntry, SinkDocument, SinkKey
from rotator.sinks.memory import next_promote, next_rollback

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
PENDING = "AWSPENDING"
STAGED = "ROTATOR_STAGED"  # a new version's own label until AWSPENDING moves onto it
FENCE_FIELD = "RotatorFence"
EMPTY = "{}"  # the value of a new secret's first version: no credential yet
MANAGED_BY_TAG = {"Key": "managed-by", "Value": "rotator"}
_NAMESPACE = uuid.UUID("5d0b7f3c-2f43-4c56-9a1e-6a8f0c3e9b27")

# The Secrets Manager actions this sink calls, for `rotator iam-policy` (least privilege).
ACTIONS: tuple[str, ...] = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:TagResource",  # tags on create
)


def permissions(config: SecretsManagerSinkConfig, partition: str = "aws") -> list[dict[str, Any]]:
    """The IAM statements this sink needs in ``partition``: its secrets (by the template's
    literal prefix; a secret's ARN ends in a random suffix) and, with ``kms_key_id``, the
    key."""
    prefix = config.name.split("{", 1)[0]
    resource = f"arn:{partition}:secretsmanager:{config.region or '*'}:*:secret:{prefix}*"
    statements: list[dict[str, Any]] = [{"Action": list(ACTIONS), "Resource": [resource]}]
    if config.kms_key_id:
        statements.append(
            kms_statement(config.kms_key_id, service="secretsmanager", partition=partition)
        )
    return statements


def kms_statement(key_id: str, *, service: str, partition: str = "aws") -> dict[str, Any]:
    """The IAM statement letting rotator use the customer key ``key_id`` (a key ID, key
    ARN, alias name or alias ARN) through ``service`` (``secretsmanager``, ``ssm``) only."""
    condition: dict[str, Any] = {"StringLike": {"kms:ViaService": f"{service}.*.amazonaws.com"}}
    if key_id.startswith("arn:") and ":key/" in key_id:
        resource = key_id
    elif key_id.startswith("alias/") or ":alias/" in key_id:
        resource = f"arn:{partition}:kms:*:*:key/*"
        alias = "alias/" + key_id.split("alias/", 1)[1]
        condition["ForAnyValue:StringEquals"] = {"kms:ResourceAliases": [alias]}
    else:
        resource = f"arn:{partition}:kms:*:*:key/{key_id}"
    return {
        "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
        "Resource": [resource],
        "Condition": condition,
    }


def secret_string(entry: SecretEntry, fence: Fence | None = None) -> str:
    """The ``SecretString`` of ``entry``'s version (stable: keys sorted), with the fence of
    the write that stores it."""
    doc = entry.to_document()
    if fence is not None:
        doc[FENCE_FIELD] = fence.text()
    return json.dumps(doc, sort_keys=True)


def version_token(entry: SecretEntry, fence: Fence, step: str = "put_pending") -> str:
    """The ``ClientRequestToken`` (= ``VersionId``) of ``entry``'s version, written by
    ``fence``'s rotation in ``step``.

    The same write always gets the same token, so storing it again adds no version; the
    material is hashed first, so the token (visible in the version list) reveals nothing.
    """
    material = hashlib.sha256(secret_string(entry).encode()).hexdigest()
    who = f"{fence.rotation_id}:{fence.text()}:{step}"
    return str(uuid.uuid5(_NAMESPACE, f"{who}:{entry.credential_id}:{material}"))


@dataclass(frozen=True)
class _Slot:
    """A staging label's version and the entry it holds (None for ``{}``)."""

    version_id: str
    entry: SecretEntry | None
    fence: Fence | None = None


_Slots = dict[str, _Slot]


def _held(slots: _Slots) -> Fence | None:
    """The secret's fence: the newest of its labelled versions' (per epoch, the last seen
    epoch's when they differ)."""
    held: Fence | None = None
    for slot in slots.values():
        if slot.fence is not None:
            held = slot.fence.newest(held)
    return held


class SecretsManagerSink:
    """Secrets in one Secrets Manager secret per holder, named by the template."""

    def __init__(self, config: SecretsManagerSinkConfig, clients: Clients) -> None:
        self._config = config
        self._clients = clients

    def location(self, key: SinkKey) -> str:
        """The secret's name."""
        return self._config.name.format(**key.fields())

    async def read(self, key: SinkKey) -> SinkDocument:
        """The entries labelled AWSCURRENT, AWSPREVIOUS and AWSPENDING; empty if no secret."""
        name = self.location(key)
        async with self._client(name) as client:
            slots = await self._slots(client, name)
        return _document(slots or {})

    async def check(self, key: SinkKey) -> None:
        """Preflight: the secret can be described and its versions read (a missing secret
        is fine: the first write creates it). Raises ``SinkError`` (e.g. AccessDenied)."""
        await self.read(key)

    async def put_pending(self, key: SinkKey, entry: SecretEntry, fence: Fence) -> None:
        """Add ``entry`` as a version labelled AWSPENDING (creating the secret if needed)."""
        name = self.location(key)
        token = version_token(entry, fence)
        async with self._client(name) as client:
            slots = await self._slots(client, name)
            if slots is None:
                await self._create(client, name)
                slots = await self._slots(client, name) or {}
            fence.check(_held(slots), f"secret {name}")
            if CURRENT not in slots:  # a secret without versions: its first one gets AWSCURRENT
                await self._put(client, name, EMPTY, _empty_token(name), [CURRENT])
            pending = slots.get(PENDING)
            if pending is not None and pending.version_id == token:
                return
            value = secret_string(entry, fence)
            if pending is None:  # nothing to take the label from: one call
                stages = await self._put(client, name, value, token, [PENDING])
                if PENDING not in stages:  # the version existed: Secrets Manager kept its labels
                    await self._label(client, name, PENDING, move_to=token)
                return
            # Replacing a pending version: stage the new one under its own label, then move
            # AWSPENDING from the version seen when the fence was checked (compare-and-swap).
            await self._put(client, name, value, token, [STAGED])
            try:
                await self._label(
                    client, name, PENDING, move_to=token, remove_from=pending.version_id
                )
            except Permanent:
                await self._refuse_if_overtaken(client, name, fence)
                raise
            await self._label(client, name, STAGED, remove_from=token)

    async def _refuse_if_overtaken(self, client: Any, name: str, fence: Fence) -> None:
        """After a label move failed: ``LeaseLost`` if a newer fence wrote meanwhile."""
        slots = await self._slots(client, name) or {}
        fence.check(_held(slots), f"secret {name}")

    async def promote(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Move AWSCURRENT to the pending ``credential_id`` and drop AWSPENDING."""
        name = self.location(key)
        async with self._client(name) as client:
            slots = await self._slots(client, name) or {}
            fence.check(_held(slots), f"secret {name}")
            doc = _document(slots)
            current, pending = slots.get(CURRENT), slots.get(PENDING)
            if next_promote(doc, credential_id, name) is doc:
                if pending and current and pending.version_id == current.version_id:
                    # A promote interrupted after moving AWSCURRENT: finish it.
                    await self._label(client, name, PENDING, remove_from=pending.version_id)
                return
            try:
                await self._label(
                    client,
                    name,
                    CURRENT,
                    move_to=slots[PENDING].version_id,
                    remove_from=current.version_id if current else None,
                )
            except Permanent:
                await self._refuse_if_overtaken(client, name, fence)
                raise
            await self._label(client, name, PENDING, remove_from=slots[PENDING].version_id)

    async def rollback(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Move AWSCURRENT back to the previous ``credential_id`` (the current one becomes
        AWSPREVIOUS)."""
        name = self.location(key)
        async with self._client(name) as client:
            slots = await self._slots(client, name) or {}
            fence.check(_held(slots), f"secret {name}")
            doc = _document(slots)
            if next_rollback(doc, credential_id, name) is doc:
                return
            try:
                await self._label(
                    client,
                    name,
                    CURRENT,
                    move_to=slots[PREVIOUS].version_id,
                    remove_from=slots[CURRENT].version_id,
                )
            except Permanent:
                await self._refuse_if_overtaken(client, name, fence)
                raise

    @asynccontextmanager
    async def _client(self, name: str) -> AsyncIterator[Any]:
        """The session's Secrets Manager client. Transient AWS errors propagate as
        ``Transient`` (the step is retried next sweep); permanent ones become ``SinkError``."""
        try:
            with aws_errors("secretsmanager", secret=name):
                yield await self._clients.get("secretsmanager", region=self._config.region)
        except Transient:
            raise
        except AwsError as exc:
            raise SinkError(f"secret {name}: {exc}") from exc

    async def _slots(self, client: Any, name: str) -> _Slots | None:
        """The labelled versions and their entries; None if the secret does not exist."""
        try:
            with aws_errors("DescribeSecret", secret=name):
                described: dict[str, Any] = await client.describe_secret(SecretId=name)
        except NoSuchEntity:
            return None
        if described.get("DeletedDate"):
            raise SinkError(f"secret {name} is scheduled for deletion; restore it first")
        labels = {
            stage: version_id
            for version_id, stages in (described.get("VersionIdsToStages") or {}).items()
            for stage in stages
        }
        entries: dict[str, tuple[SecretEntry | None, Fence | None]] = {}
        slots: _Slots = {}
        for stage in (CURRENT, PREVIOUS, PENDING):
            version_id = labels.get(stage)
            if version_id is None:
                continue
            if version_id not in entries:
                with aws_errors("GetSecretValue", secret=name, stage=stage):
                    got = await client.get_secret_value(SecretId=name, VersionId=version_id)
                entries[version_id] = _parse(got.get("SecretString"), name, stage)
            entry, fence = entries[version_id]
            slots[stage] = _Slot(version_id, entry, fence)
        return slots

    async def _create(self, client: Any, name: str) -> None:
        kwargs: dict[str, Any] = {
            "Name": name,
            "SecretString": EMPTY,
            "ClientRequestToken": _empty_token(name),
            "Description": "Credentials rotated by rotator",
            "Tags": [MANAGED_BY_TAG],
        }
        if self._config.kms_key_id:
            kwargs["KmsKeyId"] = self._config.kms_key_id
        try:
            with aws_errors("CreateSecret", secret=name):
                await client.create_secret(**kwargs)
        except AwsError as exc:
            if exc.code != "ResourceExistsException":  # another writer created it first
                raise

    async def _put(
        self, client: Any, name: str, value: str, token: str, stages: list[str]
    ) -> list[str]:
        """Add a version; returns the labels it carries (what was asked if not reported)."""
        with aws_errors("PutSecretValue", secret=name):
            response: dict[str, Any] = await client.put_secret_value(
                SecretId=name, ClientRequestToken=token, SecretString=value, VersionStages=stages
            )
        reported = response.get("VersionStages")
        return list(stages if reported is None else reported)

    async def _label(
        self,
        client: Any,
        name: str,
        stage: str,
        *,
        move_to: str | None = None,
        remove_from: str | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"SecretId": name, "VersionStage": stage}
        if move_to:
            kwargs["MoveToVersionId"] = move_to
        if remove_from:
            kwargs["RemoveFromVersionId"] = remove_from
        try:
            with aws_errors("UpdateSecretVersionStage", secret=name, stage=stage):
                await client.update_secret_version_stage(**kwargs)
        except Permanent:
            # The SDK may have retried a call that AWS applied before the connection
            # dropped; the retry then fails because the label already moved.
            if not await _labelled(client, name, stage, move_to, remove_from):
                raise


async def _labelled(
    client: Any, name: str, stage: str, move_to: str | None, remove_from: str | None
) -> bool:
    """True if ``stage`` already sits where a label change wanted it."""
    with aws_errors("DescribeSecret", secret=name):
        described: dict[str, Any] = await client.describe_secret(SecretId=name)
    stages = described.get("VersionIdsToStages") or {}
    on_target = move_to is None or stage in stages.get(move_to, [])
    off_source = remove_from is None or remove_from == move_to
    off_source = off_source or stage not in stages.get(remove_from or "", [])
    return on_target and off_source


def _document(slots: _Slots) -> SinkDocument:
    """The slots as a document; a pending label left on the current version is not pending."""
    current, previous, pending = slots.get(CURRENT), slots.get(PREVIOUS), slots.get(PENDING)
    stale = pending is not None and current is not None and pending.version_id == current.version_id
    return SinkDocument(
        current=current.entry if current else None,
        previous=previous.entry if previous else None,
        pending=None if stale or pending is None else pending.entry,
        fence=_held(slots),
    )


def _parse(text: str | None, name: str, stage: str) -> tuple[SecretEntry | None, Fence | None]:
    """A version's entry (None for ``{}``) and the fence of the write that made it."""
    try:
        raw = json.loads(text) if text is not None else None
        if raw == {}:
            return None, None
        if not isinstance(raw, dict):
            raise TypeError
        fence = Fence.parse(raw.pop(FENCE_FIELD, None))
        return SecretEntry.from_document(raw), fence
    except (ValueError, KeyError, TypeError):
        # ``from None``: a JSON error carries the whole text, secrets included.
        raise SinkError(f"secret {name} ({stage}) does not hold a rotator entry") from None


def _empty_token(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"empty:{name}"))
