"""DESIGN.md's invariants, checked from the outside after crashes, races and faults."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tests.support.cli import Cli
from tests.support.moto import MotoSandbox


def sink_current(cli: Cli, sandbox: MotoSandbox, user: str, sink: str) -> dict[str, Any] | None:
    """The secret consumers would read now, and whether a pending one is left over."""
    account = sandbox.account()
    if sink == "file":
        return cli.sink_document(account, user)["current"]  # type: ignore[no-any-return]
    sm = sandbox.client("secretsmanager")
    value = sm.get_secret_value(
        SecretId=f"rotator/{account}/{user}/access-key", VersionStage="AWSCURRENT"
    )
    return json.loads(value["SecretString"]) or None  # type: ignore[no-any-return]


def pending_left(cli: Cli, sandbox: MotoSandbox, user: str, sink: str) -> bool:
    if sink == "file":
        return cli.sink_document(sandbox.account(), user)["pending"] is not None
    sm = sandbox.client("secretsmanager")
    versions = sm.list_secret_version_ids(
        SecretId=f"rotator/{sandbox.account()}/{user}/access-key"
    )["Versions"]
    return any("AWSPENDING" in v.get("VersionStages", []) for v in versions)


def history(cli: Cli) -> list[dict[str, Any]]:
    result = cli("history", "--json", "--limit", "10000")
    assert result.code == 0, result.stderr
    return result.items()


def assert_rotated_once_and_whole(
    cli: Cli, sandbox: MotoSandbox, users: Iterable[str], *, sink: str, originals: dict[str, str]
) -> None:
    """After a zero-duration rotation of every user, whatever happened on the way:

    * the user holds exactly one key — active, and the sink's current secret, which
      authenticates as the user (no orphan, no user left without a working key);
    * no pending secret is left behind and nothing is in flight;
    * the user's original key was rotated by exactly one completed rotation, and no
      credential was rotated twice.
    """
    records = history(cli)
    in_flight = [r for r in records if r["state"] not in ("completed", "failed", "rolled-back")]
    assert in_flight == [], in_flight
    assert [r for r in records if r["state"] == "failed"] == []
    rotated = Counter(r["credential_id"] for r in records if r["state"] == "completed")
    assert all(n == 1 for n in rotated.values()), f"a credential was rotated twice: {rotated}"
    for user in users:
        keys = sandbox.keys(user)
        assert list(keys.values()) == ["Active"], f"{user}: {keys}"
        current = sink_current(cli, sandbox, user, sink)
        assert current is not None, f"{user}: no current secret"
        assert list(keys) == [current["AccessKeyId"]], f"{user}: IAM {keys}, sink {current}"
        arn = sandbox.caller_arn(current["AccessKeyId"], current["SecretAccessKey"])
        assert arn.endswith(f"/{user}"), arn
        assert not pending_left(cli, sandbox, user, sink), f"{user}: pending secret left"
        assert rotated[originals[user]] == 1, f"{user}: original key not rotated exactly once"
