"""Drive a certificate kind through the real protocol (``Driver`` + ``Steps``) against the
in-memory IAM twin (``rotator.testing.MemoryIam``), with a real in-memory journal and
sink: what the engine does, minus the inventory and the planner."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from rotator.journal.memory import MemoryJournal
from rotator.kinds import AnyRule
from rotator.kinds.base import CredentialKind, KindContext
from rotator.model import Kind, Lease, Rotation, utcnow
from rotator.policy import Rule
from rotator.rotation.driver import Driver
from rotator.rotation.own_key import OwnKey
from rotator.rotation.steps import StepResult, Steps
from rotator.settings import RetrySettings, VerifySettings
from rotator.sinks.base import SecretSink, SinkDocument, SinkKey
from rotator.sinks.memory import MemorySink
from rotator.testing import MemoryAws, MemoryIam

ACCOUNT = "123456789012"
SINK = {"type": "memory", "name": "{account}/{name}/{kind}"}
RULES: TypeAdapter[Any] = TypeAdapter(AnyRule)
FAST_VERIFY = VerifySettings(attempts=2, initial_delay=timedelta(0), max_delay=timedelta(0))


def rule(**fields: Any) -> Rule:
    """A rule from policy-file fields (the sink defaults to memory)."""
    made: Rule = RULES.validate_python({"sink": SINK, **fields})
    return made


def no_sink(rule: Rule) -> SecretSink:
    """The kinds driven here (certificates) read no sink through their context: the steps
    get the harness's own ``sink``."""
    raise AssertionError(f"a certificate kind asked its context for the sink of {rule.name}")


def context(iam: MemoryIam) -> KindContext:
    return KindContext(
        iam=iam, iam_once=iam, aws=MemoryAws(iam), account=ACCOUNT, verify=FAST_VERIFY, sink=no_sink
    )


@dataclass
class Harness:
    """One kind, one rule, a journal and a sink; ``rotate`` runs every due step."""

    kind: CredentialKind
    rule: Rule
    journal: MemoryJournal = field(default_factory=MemoryJournal)
    sink: MemorySink = field(default_factory=MemorySink)
    clock: Any = utcnow
    own: OwnKey | None = None  # the key rotator signs with (self-rotation), if tracked

    def steps(self) -> Steps:
        return Steps(
            journal=self.journal,
            kind=self.kind,
            sink=self.sink,
            rule=self.rule,
            clock=self.clock,
            own=self.own,
        )

    def driver(self) -> Driver:
        return Driver(
            journal=self.journal,
            owner="test",
            lease_ttl=timedelta(minutes=1),
            retry=RetrySettings(attempts=1),
            clock=self.clock,
        )

    async def start(self, holder: str, old_id: str, now: datetime | None = None) -> Rotation:
        now = now or self.clock()
        deactivate_after, delete_after = self.rule.timings()
        rotation = Rotation.start(
            account=ACCOUNT,
            user=holder,
            kind=self.rule.kind,
            rule=self.rule.name,
            now=now,
            old_credential_id=old_id,
            deactivate_after=deactivate_after,
            delete_after=delete_after,
        ).evolve(lease=Lease(owner="test", expires_at=now + timedelta(minutes=1), fence=1))
        return await self.journal.add(rotation)

    async def drive(self, rotation: Rotation) -> tuple[Rotation, list[StepResult]]:
        rotation = await self.journal.acquire(
            rotation.rotation_id, "test", timedelta(minutes=1), self.clock()
        )
        return await self.driver().drive(rotation, self.steps())

    async def document(self, holder: str) -> SinkDocument:
        key = SinkKey(account=ACCOUNT, user=holder, kind=Kind(self.rule.kind))
        return await self.sink.read(key)
