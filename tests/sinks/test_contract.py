"""The contract every ``SecretSink`` keeps, run against each implementation.

memory, file (json), file (aws-credentials), secretsmanager and ssm (a moto server over
real HTTP) must behave the same through the port: a new sink built by ``build_sink`` from the
same settings the policy file holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, TypeAdapter

from rotator.aws import Aws, Clients
from rotator.errors import LeaseLost, SinkError
from rotator.model import Kind
from rotator.policy import SinkConfig
from rotator.sinks import (
    FileSink,
    MemorySink,
    SecretEntry,
    SecretSink,
    SecretsManagerSink,
    SinkDocument,
    SinkKey,
    build_sink,
)
from rotator.sinks.base import Fence

ALICE = SinkKey(account="123456789012", user="alice", kind=Kind.ACCESS_KEY)
BOB = SinkKey(account="123456789012", user="bob", kind=Kind.ACCESS_KEY)
FENCE = Fence(epoch="tests", value=1, rotation_id="r-tests")


def secret_of(n: int) -> str:
    """The secret access key of test entry ``n`` (long enough to be registered as secret)."""
    return f"wJalrXUtnFEMI/K7MDENG/bPxRfiCY{n:010d}"


def access_key(n: int, *, credential_id: str | None = None) -> SecretEntry:
    """Test entry ``n``: an access key ``AKIA000...n`` created on 2024-01-``n``."""
    key_id = f"AKIA{n:016d}"
    return SecretEntry(
        kind=Kind.ACCESS_KEY,
        credential_id=key_id if credential_id is None else credential_id,
        created_at=datetime(2024, 1, n, 12, 30, tzinfo=UTC),
        public={"AccessKeyId": key_id},
        secret={"SecretAccessKey": SecretStr(secret_of(n))},
    )


async def rotate_in(sink: SecretSink, key: SinkKey, entry: SecretEntry) -> None:
    """Store ``entry`` as pending and promote it."""
    await sink.put_pending(key, entry, FENCE)
    await sink.promote(key, entry.credential_id, FENCE)


def settings(kind: str, tmp_path: Any) -> dict[str, Any]:
    return {
        "memory": {"type": "memory"},
        "file-json": {"type": "file", "path": f"{tmp_path}/{{account}}/{{user}}-{{kind}}.json"},
        "file-aws-credentials": {
            "type": "file",
            "path": f"{tmp_path}/{{user}}/credentials",
            "format": "aws-credentials",
            "profile": "rotated",
        },
        "secretsmanager": {"type": "secretsmanager", "name": "rotator/{account}/{user}/{kind}"},
        "ssm": {"type": "ssm", "name": "/rotator/{account}/{user}/{kind}"},
    }[kind]


@pytest.fixture(params=["memory", "file-json", "file-aws-credentials", "secretsmanager", "ssm"])
async def sink(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[SecretSink]:
    if request.param in ("secretsmanager", "ssm"):
        request.getfixturevalue("aws_env")
    config = TypeAdapter(SinkConfig).validate_python(settings(request.param, tmp_path))
    async with Clients(Aws()) as clients:
        yield build_sink(config, clients)


async def test_a_new_holder_reads_as_an_empty_document(sink: SecretSink) -> None:
    assert await sink.read(ALICE) == SinkDocument()


async def test_promoting_the_first_entry_makes_it_current_with_no_previous(
    sink: SecretSink,
) -> None:
    await sink.put_pending(ALICE, access_key(1), FENCE)
    assert await sink.read(ALICE) == SinkDocument(pending=access_key(1))

    await sink.promote(ALICE, access_key(1).credential_id, FENCE)

    assert await sink.read(ALICE) == SinkDocument(current=access_key(1))


async def test_put_pending_leaves_current_and_previous_alone(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await rotate_in(sink, ALICE, access_key(2))

    await sink.put_pending(ALICE, access_key(3), FENCE)

    assert await sink.read(ALICE) == SinkDocument(
        current=access_key(2), previous=access_key(1), pending=access_key(3)
    )


async def test_promote_moves_pending_to_current_and_current_to_previous(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)

    await sink.promote(ALICE, access_key(2).credential_id, FENCE)

    assert await sink.read(ALICE) == SinkDocument(current=access_key(2), previous=access_key(1))


async def test_promote_again_is_a_no_op(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await rotate_in(sink, ALICE, access_key(2))

    await sink.promote(ALICE, access_key(2).credential_id, FENCE)

    assert await sink.read(ALICE) == SinkDocument(current=access_key(2), previous=access_key(1))


async def test_a_third_rotation_drops_the_oldest_entry(sink: SecretSink) -> None:
    for n in (1, 2, 3):
        await rotate_in(sink, ALICE, access_key(n))

    assert await sink.read(ALICE) == SinkDocument(current=access_key(3), previous=access_key(2))


@pytest.mark.parametrize("credential_id", ["AKIA-NOT-STORED-0000", "AKIA0000000000000001", ""])
async def test_promote_of_an_id_that_is_not_pending_raises_and_changes_nothing(
    sink: SecretSink, credential_id: str
) -> None:
    """Unknown, previous (entry 1) and "" (no ID yet) cannot be promoted."""
    await rotate_in(sink, ALICE, access_key(1))
    await rotate_in(sink, ALICE, access_key(2))
    await sink.put_pending(ALICE, access_key(3, credential_id=""), FENCE)
    before = await sink.read(ALICE)

    with pytest.raises(SinkError):
        await sink.promote(ALICE, credential_id, FENCE)

    assert await sink.read(ALICE) == before


async def test_promote_on_an_empty_holder_raises(sink: SecretSink) -> None:
    with pytest.raises(SinkError):
        await sink.promote(ALICE, access_key(1).credential_id, FENCE)


async def test_rollback_swaps_current_and_previous_back_and_is_idempotent(
    sink: SecretSink,
) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await rotate_in(sink, ALICE, access_key(2))

    await sink.rollback(ALICE, access_key(1).credential_id, FENCE)
    assert await sink.read(ALICE) == SinkDocument(current=access_key(1), previous=access_key(2))

    await sink.rollback(ALICE, access_key(1).credential_id, FENCE)
    assert await sink.read(ALICE) == SinkDocument(current=access_key(1), previous=access_key(2))


async def test_rollback_leaves_a_pending_entry_alone(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await rotate_in(sink, ALICE, access_key(2))
    await sink.put_pending(ALICE, access_key(3), FENCE)

    await sink.rollback(ALICE, access_key(1).credential_id, FENCE)

    assert await sink.read(ALICE) == SinkDocument(
        current=access_key(1), previous=access_key(2), pending=access_key(3)
    )


@pytest.mark.parametrize("credential_id", ["AKIA-NOT-STORED-0000", "AKIA0000000000000003", ""])
async def test_rollback_to_an_id_that_is_not_previous_raises_and_changes_nothing(
    sink: SecretSink, credential_id: str
) -> None:
    """Unknown, pending (entry 3) and "" cannot be rolled back to."""
    await rotate_in(sink, ALICE, access_key(1))
    await rotate_in(sink, ALICE, access_key(2))
    await sink.put_pending(ALICE, access_key(3), FENCE)
    before = await sink.read(ALICE)

    with pytest.raises(SinkError):
        await sink.rollback(ALICE, credential_id, FENCE)

    assert await sink.read(ALICE) == before


async def test_put_pending_replaces_an_older_pending_entry(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)

    await sink.put_pending(ALICE, access_key(3), FENCE)

    assert await sink.read(ALICE) == SinkDocument(current=access_key(1), pending=access_key(3))


async def test_put_pending_with_the_id_iam_assigned_replaces_the_unnamed_material(
    sink: SecretSink,
) -> None:
    unnamed = access_key(2, credential_id="")
    await sink.put_pending(ALICE, unnamed, FENCE)

    await sink.put_pending(ALICE, unnamed.with_id(access_key(2).credential_id), FENCE)
    await sink.promote(ALICE, access_key(2).credential_id, FENCE)

    assert await sink.read(ALICE) == SinkDocument(current=access_key(2))


async def test_storing_the_same_pending_entry_again_is_a_no_op(sink: SecretSink) -> None:
    await sink.put_pending(ALICE, access_key(1), FENCE)
    await sink.put_pending(ALICE, access_key(1), FENCE)

    assert await sink.read(ALICE) == SinkDocument(pending=access_key(1))


async def test_entries_round_trip_every_field(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)

    doc = await sink.read(ALICE)

    for stored, n in ((doc.current, 1), (doc.pending, 2)):
        assert stored is not None
        assert stored.kind is Kind.ACCESS_KEY
        assert stored.credential_id == f"AKIA{n:016d}"
        assert stored.created_at == datetime(2024, 1, n, 12, 30, tzinfo=UTC)
        assert stored.created_at.utcoffset() is not None
        assert dict(stored.public) == {"AccessKeyId": f"AKIA{n:016d}"}
        assert stored.reveal("SecretAccessKey") == secret_of(n)
        assert set(stored.secret) == {"SecretAccessKey"}


async def test_two_holders_do_not_interfere(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(BOB, access_key(2), FENCE)
    await rotate_in(sink, ALICE, access_key(3))
    assert await sink.read(BOB) == SinkDocument(pending=access_key(2))

    await rotate_in(sink, BOB, access_key(4))

    assert sink.location(ALICE) != sink.location(BOB)
    assert await sink.read(ALICE) == SinkDocument(current=access_key(3), previous=access_key(1))
    assert await sink.read(BOB) == SinkDocument(current=access_key(4))


async def test_nothing_rendered_shows_a_secret_value(sink: SecretSink) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)
    doc = await sink.read(ALICE)
    with pytest.raises(SinkError) as failed:
        await sink.promote(ALICE, "AKIA-NOT-STORED-0000", FENCE)

    rendered = [repr(doc), str(doc), repr(doc.current), str(doc.pending), sink.location(ALICE)]
    rendered += [str(failed.value), repr(failed.value)]
    for text in rendered:
        assert secret_of(1) not in text
        assert secret_of(2) not in text


async def test_build_sink_dispatches_on_the_settings_type(tmp_path: Any) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(SinkConfig)
    async with Clients(Aws()) as clients:
        built = {
            kind: build_sink(adapter.validate_python(settings(kind, tmp_path)), clients)
            for kind in ("memory", "file-json", "file-aws-credentials", "secretsmanager")
        }

    assert isinstance(built["memory"], MemorySink)
    assert isinstance(built["file-json"], FileSink)
    assert isinstance(built["file-aws-credentials"], FileSink)
    assert isinstance(built["secretsmanager"], SecretsManagerSink)
    assert built["secretsmanager"].location(ALICE) == "rotator/123456789012/alice/access-key"
    assert (
        built["file-aws-credentials"].location(ALICE) == f"{tmp_path}/alice/credentials [rotated]"
    )


class CountingAws(Aws):
    """An ``Aws`` that records the service of every client it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @asynccontextmanager
    async def client(self, service: str, **kwargs: Any) -> AsyncIterator[Any]:
        self.opened.append(service)
        async with super().client(service, **kwargs) as client:
            yield client


@pytest.mark.parametrize("kind", ["secretsmanager", "ssm"])
async def test_an_aws_sink_opens_one_client_for_every_call_of_its_session(
    kind: str, aws_env: str, tmp_path: Any
) -> None:
    aws = CountingAws()
    config = TypeAdapter(SinkConfig).validate_python(settings(kind, tmp_path))
    async with Clients(aws) as clients:
        sink = build_sink(config, clients)
        await rotate_in(sink, ALICE, access_key(1))
        await rotate_in(sink, BOB, access_key(2))
        await rotate_in(sink, ALICE, access_key(3))
        await sink.rollback(ALICE, access_key(1).credential_id, FENCE)
        assert await sink.read(ALICE) == SinkDocument(current=access_key(1), previous=access_key(3))

    assert aws.opened == [kind]


# -- fencing ---------------------------------------------------------------------------

NEWER = Fence(epoch="tests", value=2, rotation_id="r-newer")
OLDER = Fence(epoch="tests", value=1, rotation_id="r-older")


async def test_a_put_pending_with_an_older_fence_is_refused_and_changes_nothing(
    sink: SecretSink,
) -> None:
    """Race 1 of issue 11: a worker whose lease was taken over stores its late pending
    entry after the new owner stored its own; the new owner's secret must survive."""
    await sink.put_pending(ALICE, access_key(1), OLDER)
    await sink.promote(ALICE, access_key(1).credential_id, OLDER)
    await sink.put_pending(ALICE, access_key(2), NEWER)
    before = await sink.read(ALICE)

    with pytest.raises(LeaseLost) as refused:
        await sink.put_pending(ALICE, access_key(3), OLDER)

    assert (
        await sink.read(ALICE)
        == before
        == SinkDocument(current=access_key(1), pending=access_key(2))
    )
    assert "r-older" in str(refused.value)
    assert secret_of(3) not in str(refused.value)


async def test_a_promote_with_an_older_fence_is_refused_and_changes_nothing(
    sink: SecretSink,
) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), OLDER)
    await sink.put_pending(ALICE, access_key(3), NEWER)
    before = await sink.read(ALICE)

    with pytest.raises(LeaseLost):
        await sink.promote(ALICE, access_key(3).credential_id, OLDER)

    assert (
        await sink.read(ALICE)
        == before
        == SinkDocument(current=access_key(1), pending=access_key(3))
    )


async def test_a_rollback_with_an_older_fence_is_refused_and_changes_nothing(
    sink: SecretSink,
) -> None:
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), NEWER)
    await sink.promote(ALICE, access_key(2).credential_id, NEWER)
    before = await sink.read(ALICE)

    with pytest.raises(LeaseLost):
        await sink.rollback(ALICE, access_key(1).credential_id, OLDER)

    assert (
        await sink.read(ALICE)
        == before
        == SinkDocument(current=access_key(2), previous=access_key(1))
    )


async def test_the_same_or_a_newer_fence_writes_and_the_document_keeps_the_newest(
    sink: SecretSink,
) -> None:
    await sink.put_pending(ALICE, access_key(1), OLDER)
    await sink.put_pending(ALICE, access_key(1), OLDER)  # the same writer again
    await sink.put_pending(ALICE, access_key(2), NEWER)  # a takeover
    await sink.promote(ALICE, access_key(2).credential_id, NEWER)

    doc = await sink.read(ALICE)

    assert doc == SinkDocument(current=access_key(2))
    assert doc.fence == NEWER


async def test_a_fence_of_another_journal_is_not_compared(sink: SecretSink) -> None:
    """Fences count per journal: after a move to a new journal (a new epoch) its first
    rotation's low fence is not refused."""
    await sink.put_pending(ALICE, access_key(1), Fence(epoch="old-journal", value=40))
    fresh = Fence(epoch="new-journal", value=1)

    await sink.put_pending(ALICE, access_key(2), fresh)
    await sink.promote(ALICE, access_key(2).credential_id, fresh)

    assert await sink.read(ALICE) == SinkDocument(current=access_key(2))


async def test_check_passes_for_a_usable_holder_and_writes_nothing(sink: SecretSink) -> None:
    await sink.check(ALICE)
    assert await sink.read(ALICE) == SinkDocument()
