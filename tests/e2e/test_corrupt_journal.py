"""A hand-edited or corrupt journal row (an unknown state, kind or date, a lease owner
without an expiry) is quarantined: ``run`` reports it, skips it, rotates everyone else and
exits 1; ``status`` lists it as corrupt and exits 1; ``journal.corrupt_record`` is in the
audit log. Never a traceback. On SQLite (the file edited with sqlite3) and DynamoDB
(the item edited through moto), through the real CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import tally
from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

TABLE = "rotator-corrupt"
# What a person with sqlite3 or the DynamoDB console might leave behind, per user.
EDITS: dict[str, dict[str, Any]] = {
    "ci-a": {"state": "bogus"},
    "ci-b": {"lease_owner": "host:1:x", "lease_expires_at": None},
    "ci-c": {"kind": "api-key"},
    "ci-d": {"created_at": "yesterday"},
}
FINE = "ci-e"  # in flight, untouched: not due again
NEW = "ci-f"  # due after the edits: rotates although the journal has corrupt rows


def edit_sqlite(cli: Cli, sandbox: MotoSandbox) -> None:
    with sqlite3.connect(cli.tmp / "journal.db") as db:
        for user, changes in EDITS.items():
            for column, value in changes.items():
                db.execute(f"UPDATE rotations SET {column} = ? WHERE user = ?", (value, user))  # noqa: S608 (test)


def edit_dynamodb(cli: Cli, sandbox: MotoSandbox) -> None:
    dynamodb = sandbox.client("dynamodb")
    items = dynamodb.scan(TableName=TABLE)["Items"]
    for item in items:
        user = item.get("user", {}).get("S")
        if "state" not in item or user not in EDITS:
            continue
        sets, removes, values, names = [], [], {}, {}
        for n, (column, value) in enumerate(EDITS[user].items()):
            names[f"#c{n}"] = column
            if value is None:
                removes.append(f"#c{n}")
            else:
                sets.append(f"#c{n} = :v{n}")
                values[f":v{n}"] = {"S": value}
        expression = (("SET " + ", ".join(sets)) if sets else "") + (
            (" REMOVE " + ", ".join(removes)) if removes else ""
        )
        kwargs: dict[str, Any] = {
            "TableName": TABLE,
            "Key": {"pk": item["pk"], "sk": item["sk"]},
            "UpdateExpression": expression.strip(),
            "ExpressionAttributeNames": names,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        dynamodb.update_item(**kwargs)


JOURNALS: dict[str, tuple[str | None, Callable[[Cli, MotoSandbox], None]]] = {
    "sqlite": (None, edit_sqlite),
    "dynamodb": (f"dynamodb://{TABLE}", edit_dynamodb),
}


@pytest.mark.parametrize("journal", list(JOURNALS))
def test_a_corrupt_row_is_quarantined_and_everyone_else_rotates(
    cli: Cli, sandbox: MotoSandbox, journal: str
) -> None:
    url, edit = JOURNALS[journal]
    if url is not None:
        cli.env["ROTATOR_JOURNAL__URL"] = url
    cli.write_policy(max_age="90d", deactivate_after="1d", delete_after="1d")
    if url is not None:
        assert cli("journal", "init").code == 0
    for user in [*EDITS, FINE]:
        sandbox.create_user(user, path="/ci/", keys=1)
        sandbox.age_keys(user, days=120)
    first = cli("run", "--json")
    assert first.code == 0, first.stderr
    assert first.json()["counts"]["rotated"] == len(EDITS) + 1
    keys_before = {user: sandbox.keys(user) for user in EDITS}

    edit(cli, sandbox)
    sandbox.create_user(NEW, path="/ci/", keys=1)
    sandbox.age_keys(NEW, days=120)

    run = cli("run", "--json")
    assert "Traceback" not in run.stdout + run.stderr
    assert run.code == 1, run.stderr
    swept = run.json()
    assert swept["counts"]["corrupt"] == len(EDITS)
    assert {c["field"] for c in swept["corrupt"]} == {
        "state",
        "lease_expires_at",
        "kind",
        "created_at",
    }
    outcomes = {r["user"]: r["outcome"] for r in swept["results"]}
    assert outcomes[NEW] == "rotated", swept
    assert outcomes.get(FINE) == "not-due", swept
    for user in EDITS:  # skipped: nothing done to them
        assert sandbox.keys(user) == keys_before[user]
        assert outcomes.get(user, "blocked") == "blocked", swept
    events = [e for e in cli.audit_events() if e["event"] == "journal.corrupt_record"]
    assert {e["field"] for e in events} >= {"state", "kind"}

    status = cli("status", "--json")
    assert "Traceback" not in status.stdout + status.stderr
    assert status.code == 1, status.stderr
    listed = status.json()
    assert sorted(r["rotation_id"] for r in listed["corrupt"]) == sorted(
        c["rotation_id"] for c in swept["corrupt"]
    )
    assert {r["state"] for r in listed["corrupt"]} == {"corrupt"}
    assert {r["user"] for r in listed["items"]} == {FINE, NEW}
    assert all(line.startswith("error: journal row ") for line in status.stderr.splitlines())

    table = cli("status")
    assert table.code == 1
    corrupt_lines = [line for line in table.stdout.splitlines() if "corrupt" in line]
    assert corrupt_lines
    for row in (c for c in swept["corrupt"]):  # each row starts with its rotation ID
        assert any(line.lstrip("│ ").startswith(row["rotation_id"]) for line in corrupt_lines)

    history = cli("history")
    assert "Traceback" not in history.stdout + history.stderr
    assert history.code == 1
    tally.add(corrupt_rows_quarantined=len(EDITS))
