"""The SSM Parameter Store sink: SecureString parameters, the current entry where consumers
already look. For a holder whose template renders to ``NAME``:

* ``NAME``: its **latest version** is the current entry (a plain ``GetParameter(NAME,
  WithDecryption=True)`` gets it), labelled ``current``; the version current before it is
  labelled ``previous`` (for rollback);
* ``NAME/pending``: a new entry not yet promoted (absent otherwise).

Each value is one entry's JSON (``SecretEntry.to_document()``, as in Secrets Manager).
``put_pending`` writes ``NAME/pending``; ``promote`` writes the pending entry as a new
version of ``NAME``, labels the old current version ``previous`` and the new one
``current``, then deletes ``NAME/pending``; ``rollback`` writes the previous entry as a new
version the same way, so the latest version is always the current one.

No SSM call changes two things, so the labels may lag behind a write that a crash (or an
SDK retry of an applied ``PutParameter``) interrupted. What makes every replay harmless:
**the latest version is current**; if the ``current`` label is not on it, the labelled
version is the previous one. Every write first settles the labels to that rule, and
``read`` reports it. A pending entry equal to the current one (a promotion that did not
get to delete it) is reported as no pending entry.

Writes are fenced: each value's JSON also holds ``RotatorFence`` (the fence of the write
that made it) and the holder's fence is the newest of its latest, labelled and pending
versions'. A write with an older fence is refused (``LeaseLost``) before it is made. SSM has
no conditional put, so each put is checked after the fact: the version it made must be
exactly one above the version seen when the fence was checked. If other writes slipped in
between and one of them carries a newer fence, that write is put back on top (and
labelled current) and this one is refused: nothing of the late write is kept.

Values up to 4 KB are Standard parameters, larger ones Advanced (and an Advanced parameter
stays so); above 8 KB is a ``SinkError``. ``kms_key_id`` is the ``KeyId`` of every write.
New parameters are tagged ``managed-by=rotator``; descriptions and tags never hold a
secret. Transient AWS errors propagate as ``Transient``; any other failure is a
``SinkError`` naming the parameter, never its value (``PutParameter`` errors drop AWS's
message, which may quote the value).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rotator.aws import Clients, aws_errors, convert
from rotator.errors import AwsError, Permanent, SinkError, Transient
from rotator.policy import SsmSinkConfig
from rotator.sinks.base import Fence, SecretEntry, SinkDocument, SinkKey
from rotator.sinks.memory import next_promote, next_put_pending, next_rollback
from rotator.sinks.secretsmanager import FENCE_FIELD, MANAGED_BY_TAG, kms_statement, secret_string

CURRENT = "current"
PREVIOUS = "previous"
PENDING_SUFFIX = "/pending"
STANDARD_LIMIT = 4096  # bytes of value a Standard parameter holds
ADVANCED_LIMIT = 8192
DESCRIPTION = "Credentials rotated by rotator"
_NOT_FOUND = frozenset({"ParameterNotFound", "ParameterVersionNotFound"})
_VALID_NAME = re.compile(r"/[A-Za-z0-9_.\-/]{1,1000}")

# The SSM actions this sink calls, for `rotator iam-policy` (least privilege).
ACTIONS: tuple[str, ...] = (
    "ssm:GetParameter",
    "ssm:PutParameter",
    "ssm:LabelParameterVersion",
    "ssm:DeleteParameter",
    "ssm:AddTagsToResource",  # tags on create
)


def permissions(config: SsmSinkConfig, partition: str = "aws") -> list[dict[str, Any]]:
    """The IAM statements this sink needs in ``partition``: its parameters (by the
    template's literal prefix) and, with ``kms_key_id``, the key through SSM."""
    prefix = config.name.split("{", 1)[0].lstrip("/")
    arn = f"arn:{partition}:ssm:{config.region or '*'}:*:parameter/{prefix}*"
    statements: list[dict[str, Any]] = [{"Action": list(ACTIONS), "Resource": [arn]}]
    if config.kms_key_id:
        statements.append(kms_statement(config.kms_key_id, service="ssm", partition=partition))
    return statements


@dataclass(frozen=True)
class _Version:
    """One version of the parameter and the entry it holds."""

    number: int
    entry: SecretEntry
    fence: Fence | None = None


@dataclass(frozen=True)
class _State:
    """What SSM holds for one holder: the latest version, the labelled ones, pending."""

    latest: _Version | None
    current: _Version | None  # the version labelled ``current``
    previous: _Version | None  # the version labelled ``previous``
    pending_version: _Version | None  # ``NAME/pending`` as stored

    @property
    def pending(self) -> SecretEntry | None:
        return self.pending_version.entry if self.pending_version else None

    @property
    def fence(self) -> Fence | None:
        """The holder's fence: the newest its versions carry."""
        held: Fence | None = None
        for version in (self.previous, self.current, self.latest, self.pending_version):
            if version is not None and version.fence is not None:
                held = version.fence.newest(held)
        return held

    @property
    def settled(self) -> bool:
        """True if the ``current`` label is on the latest version (or nothing exists)."""
        return self.latest is None or (
            self.current is not None and self.current.number == self.latest.number
        )

    def document(self) -> SinkDocument:
        """The slots: the latest version is current (see the module docstring)."""
        current = self.latest.entry if self.latest else None
        before = self.previous if self.settled else self.current
        previous = before.entry if before and current else None
        stale = self.pending is not None and self.pending == current
        return SinkDocument(
            current=current,
            previous=previous,
            pending=None if stale else self.pending,
            fence=self.fence,
        )


class SsmSink:
    """Secrets in SSM Parameter Store SecureStrings, named by the template."""

    def __init__(self, config: SsmSinkConfig, clients: Clients) -> None:
        self._config = config
        self._clients = clients

    def location(self, key: SinkKey) -> str:
        """The parameter's name (the pending entry lives in ``NAME/pending``)."""
        return self._config.name.format(**key.fields())

    async def read(self, key: SinkKey) -> SinkDocument:
        """The current (latest), previous and pending entries; empty if none exist."""
        name = self._name(key)
        async with self._client(name) as client:
            state = await self._state(client, name)
        return state.document()

    async def check(self, key: SinkKey) -> None:
        """Preflight: the parameters can be read (missing ones are fine: the first write
        makes them). Raises ``SinkError`` (e.g. AccessDenied, an invalid name)."""
        await self.read(key)

    async def put_pending(self, key: SinkKey, entry: SecretEntry, fence: Fence) -> None:
        """Write ``entry`` to ``NAME/pending``; a no-op if it is already there."""
        name = self._name(key)
        async with self._client(name) as client:
            state = await self._state(client, name)
            fence.check(state.fence, f"parameter {name}")
            doc = state.document()
            stored = state.pending_version
            if next_put_pending(doc, entry) is doc and stored and stored.fence == fence:
                return  # the same write again
            await self._put(client, name + PENDING_SUFFIX, entry, fence, state.pending_version)

    async def promote(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make the pending ``credential_id`` the latest, ``current`` version; the old current
        version becomes ``previous``; ``NAME/pending`` is deleted."""
        name = self._name(key)
        async with self._client(name) as client:
            state = await self._state(client, name)
            fence.check(state.fence, f"parameter {name}")
            doc = state.document()
            if next_promote(doc, credential_id, name) is doc:
                await self._settle(client, name, state)
            else:
                assert doc.pending is not None  # next_promote checked it
                await self._make_current(client, name, state, doc.pending, fence)
            if state.pending is not None and state.pending.credential_id == credential_id:
                await self._delete(client, name + PENDING_SUFFIX)

    async def rollback(self, key: SinkKey, credential_id: str, fence: Fence) -> None:
        """Make the previous ``credential_id`` current again (written as the latest version);
        the current one becomes previous. A pending entry is left alone."""
        name = self._name(key)
        async with self._client(name) as client:
            state = await self._state(client, name)
            fence.check(state.fence, f"parameter {name}")
            doc = state.document()
            if next_rollback(doc, credential_id, name) is doc:
                await self._settle(client, name, state)
                return
            assert doc.previous is not None  # next_rollback checked it
            await self._make_current(client, name, state, doc.previous, fence)

    # -- plumbing -------------------------------------------------------------------------

    def _name(self, key: SinkKey) -> str:
        name = self.location(key)
        if not _VALID_NAME.fullmatch(name):
            raise SinkError(
                f"parameter name {name!r} (holder {key}) is not valid in SSM: letters, "
                "digits and _ . - / only"
            )
        return name

    @asynccontextmanager
    async def _client(self, name: str) -> AsyncIterator[Any]:
        """The session's SSM client. Transient AWS errors propagate as ``Transient`` (the
        step is retried next sweep); permanent ones become ``SinkError`` naming the parameter."""
        try:
            with aws_errors("ssm", parameter=name):
                yield await self._clients.get("ssm", region=self._config.region)
        except Transient:
            raise
        except AwsError as exc:
            raise SinkError(f"parameter {name}: {exc}") from exc

    async def _state(self, client: Any, name: str) -> _State:
        latest, current, previous, pending = await asyncio.gather(
            self._get(client, name),
            self._get(client, f"{name}:{CURRENT}"),
            self._get(client, f"{name}:{PREVIOUS}"),
            self._get(client, name + PENDING_SUFFIX),
        )
        return _State(latest=latest, current=current, previous=previous, pending_version=pending)

    async def _get(self, client: Any, selector: str) -> _Version | None:
        """The version ``selector`` (a name, ``name:label``) names; None if there is none."""
        try:
            with aws_errors("GetParameter", parameter=selector):
                got = await client.get_parameter(Name=selector, WithDecryption=True)
        except Permanent as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        parameter = got["Parameter"]
        entry, fence = _parse(parameter.get("Value"), selector)
        return _Version(int(parameter["Version"]), entry, fence)

    async def _make_current(
        self, client: Any, name: str, state: _State, entry: SecretEntry, fence: Fence
    ) -> None:
        """Write ``entry`` as the latest version and move the labels onto it."""
        await self._settle(client, name, state)
        number = await self._put(client, name, entry, fence, state.latest)
        if state.latest is not None:
            await self._label(client, name, state.latest.number, PREVIOUS)
        await self._label(client, name, number, CURRENT)

    async def _settle(self, client: Any, name: str, state: _State) -> None:
        """Finish a label move a crash interrupted: the latest version is current."""
        if state.settled or state.latest is None:
            return
        if state.current is not None:
            await self._label(client, name, state.current.number, PREVIOUS)
        await self._label(client, name, state.latest.number, CURRENT)

    async def _put(
        self, client: Any, name: str, entry: SecretEntry, fence: Fence, seen: _Version | None
    ) -> int:
        """Write ``entry`` under ``fence`` as a new version of ``name`` (creating it,
        tagged, if it does not exist); ``seen`` is its latest version when the fence was
        checked. Returns the version number; raises ``LeaseLost`` (with the newer write put
        back on top) if a write with a newer fence slipped in between."""
        number = await self._put_value(
            client, name, secret_string(entry, fence), entry, exists=seen is not None
        )
        expected = 1 if seen is None else seen.number + 1
        if number != expected:
            await self._refuse_if_overtaken(client, name, fence, range(expected, number))
        return number

    async def _refuse_if_overtaken(
        self, client: Any, name: str, fence: Fence, between: range
    ) -> None:
        """Versions ``between`` were written by others after this writer checked its fence;
        if one carries a newer fence, put the newest of them back on top and refuse."""
        newest: tuple[Fence, str] | None = None
        for number in between:
            try:
                with aws_errors("GetParameter", parameter=name, version=str(number)):
                    got = await client.get_parameter(Name=f"{name}:{number}", WithDecryption=True)
            except Permanent as exc:
                if exc.code in _NOT_FOUND:
                    continue
                raise
            value = str(got["Parameter"].get("Value"))
            _, other = _parse(value, name)
            newer = other is not None and fence.older_than(other)
            if other is not None and newer and (newest is None or newest[0].value < other.value):
                newest = (other, value)
        if newest is None:
            return
        entry, _ = _parse(newest[1], name)
        restored = await self._put_value(client, name, newest[1], entry, exists=True)
        if not name.endswith(PENDING_SUFFIX):
            await self._label(client, name, restored, CURRENT)
        fence.check(newest[0], f"parameter {name}")

    async def _put_value(
        self, client: Any, name: str, value: str, entry: SecretEntry, *, exists: bool
    ) -> int:
        """Write ``value`` (``entry``'s) as a new version of ``name``; its number."""
        size = len(value.encode())
        if size > ADVANCED_LIMIT:
            raise SinkError(
                f"parameter {name}: the entry of {entry.credential_id or 'new material'} is "
                f"{size} bytes; an SSM parameter holds at most {ADVANCED_LIMIT}"
            )
        kwargs: dict[str, Any] = {
            "Name": name,
            "Value": value,
            "Type": "SecureString",
            "Description": DESCRIPTION,
            "Tier": "Standard" if size <= STANDARD_LIMIT else "Advanced",
        }
        if self._config.kms_key_id:
            kwargs["KeyId"] = self._config.kms_key_id
        if not exists:
            try:
                return await _put_parameter(client, {**kwargs, "Tags": [MANAGED_BY_TAG]})
            except Permanent as exc:
                if exc.code != "ParameterAlreadyExists":  # a crash or a retry created it
                    raise
        try:
            return await _put_parameter(client, {**kwargs, "Overwrite": True})
        except Permanent as exc:
            # An Advanced parameter cannot go back to Standard (AWS: ValidationException).
            if exc.code != "ValidationException" or kwargs["Tier"] != "Standard":
                raise
        return await _put_parameter(client, {**kwargs, "Overwrite": True, "Tier": "Advanced"})

    async def _label(self, client: Any, name: str, number: int, label: str) -> None:
        """Put ``label`` on version ``number`` (SSM moves it off any other version)."""
        with aws_errors("LabelParameterVersion", parameter=name, label=label):
            labelled = await client.label_parameter_version(
                Name=name, ParameterVersion=number, Labels=[label]
            )
        if labelled.get("InvalidLabels"):
            raise SinkError(f"parameter {name}: SSM refused the label {label!r}")

    async def _delete(self, client: Any, name: str) -> None:
        try:
            with aws_errors("DeleteParameter", parameter=name):
                await client.delete_parameter(Name=name)
        except Permanent as exc:
            if exc.code not in _NOT_FOUND:
                raise


async def _put_parameter(client: Any, kwargs: dict[str, Any]) -> int:
    """``PutParameter``; its errors keep AWS's code but not its message (which may quote
    the rejected value)."""
    try:
        response: dict[str, Any] = await client.put_parameter(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        error = convert(exc, "PutParameter", {"parameter": str(kwargs["Name"])})
        raise type(error)(error.operation, error.code, "", error.ids) from None
    return int(response["Version"])


def _parse(text: str | None, where: str) -> tuple[SecretEntry, Fence | None]:
    """A value's entry and the fence of the write that made it."""
    try:
        raw = json.loads(text) if text is not None else None
        if not isinstance(raw, dict):
            raise TypeError
        fence = Fence.parse(raw.pop(FENCE_FIELD, None))
        return SecretEntry.from_document(raw), fence
    except (ValueError, KeyError, TypeError):
        # ``from None``: a JSON error carries the whole text, secrets included.
        raise SinkError(f"parameter {where} does not hold a rotator entry") from None
