"""Progress of a sweep (``rotator.progress``): every user read and every decision carried
out is reported, and the totals are what the sweep really did. The real engine against
the in-memory IAM twin."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator import audit
from rotator.journal import MemoryJournal
from rotator.model import Action
from rotator.progress import INVENTORY, WORK
from rotator.rotation.engine import Engine
from rotator.settings import Config, RetrySettings, VerifySettings
from rotator.testing import MemoryAws, MemoryIam


@pytest.fixture(autouse=True)
def _quiet(tmp_path: Path) -> None:
    audit.configure(stream="none", file=tmp_path / "audit.jsonl")


async def seeded(tmp: Path) -> Engine:
    """Six users under /ci/ (four with 40-day-old keys, due) and two elsewhere."""
    twin = MemoryIam()
    for n in range(6):
        await twin.create_user(UserName=f"ci-{n}", Path="/ci/")
        await twin.create_access_key(UserName=f"ci-{n}")
        if n < 4:
            twin.users[f"ci-{n}"].keys[0].created -= timedelta(days=40)
    for name in ("web-a", "web-b"):
        await twin.create_user(UserName=name, Path="/web/")
    config = Config(
        rules=[  # type: ignore[list-item]
            {
                "name": "ci-keys",
                "kind": "access-key",
                "max_age": "30d",
                "select": {"path_prefix": "/ci/"},
                "sink": {"type": "file", "path": f"{tmp}/secrets/{{user}}.json"},
            }
        ],
        retry=RetrySettings(attempts=2, initial_delay=timedelta(0)),
        verify=VerifySettings(attempts=2, initial_delay=timedelta(0)),
    )
    return Engine(config=config, journal=MemoryJournal(), aws=MemoryAws(twin))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.calls.append((phase, done, total))

    def of(self, phase: str) -> list[tuple[int, int]]:
        return [(done, total) for p, done, total in self.calls if p == phase]


async def test_a_sweep_reports_each_user_read_and_each_rotation_done(tmp_path: Path) -> None:
    heard = Recorder()
    result = await (await seeded(tmp_path)).sweep(progress=heard)

    rotated = [r for r in result.reports if r.decision.action is Action.ROTATE]
    assert len(rotated) == 4
    assert heard.of(INVENTORY) == [(n, 6) for n in range(7)], "the six selected users"
    assert heard.of(WORK) == [(n, 4) for n in range(5)], "the four rotations"
    phases = [p for p, _, _ in heard.calls]
    assert phases == [INVENTORY] * 7 + [WORK] * 5, "all the reading, then the work"


async def test_a_plan_reports_only_the_reading(tmp_path: Path) -> None:
    heard = Recorder()
    await (await seeded(tmp_path)).plan(progress=heard)
    assert heard.of(INVENTORY)[-1] == (6, 6)
    assert heard.of(WORK) == []
