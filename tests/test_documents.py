"""The ``--output json`` documents and ``--output text`` rows built from real domain objects
(``tests/support/sweeps.py``), checked against the shipped schemas: the shapes the CLI
tests cannot reach cheaply (many accounts, corrupt rows, odd characters)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

from rich.console import Console

from rotator import documents
from rotator.entrypoints import render
from rotator.errors import CorruptRecord
from rotator.model import Action, Plan, utc_iso
from rotator.policy import Account
from rotator.rotation.org import AccountResult, OrgResult
from rotator.rotation.report import Result
from tests.support.schemas import validate
from tests.support.sweeps import ACCOUNT, NOW, new_id, old_id, plain, rotated, sweep

PROD = Account(id=ACCOUNT, name="prod", ou_path="/Workloads/Prod")
NOROLE = Account(id="222222222222", name="norole")
CORRUPT = CorruptRecord("rot-bad", "state", "'exploded' is no state", ("1", "ci-x", "k", ""))


def written(doc: object) -> dict[str, object]:
    """``doc`` as ``render.print_json`` streams it, parsed back."""
    console = Console(file=io.StringIO())
    render.print_json(console, doc)
    parsed: dict[str, object] = json.loads(console.file.getvalue())  # type: ignore[attr-defined]
    return parsed


def text(rows: object) -> list[list[str]]:
    console = Console(file=io.StringIO())
    documents.print_text(console, rows)  # type: ignore[arg-type]
    out: str = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.split("\t") for line in out.splitlines()]


def org() -> OrgResult:
    done = sweep(rotated("ci-app"), plain("ci-idle", Action.SKIP, Result.SKIPPED))
    return OrgResult(
        run_id="org-1",
        dry_run=False,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=3),
        accounts=(
            AccountResult(account=PROD, sweep=done),
            AccountResult(account=NOROLE, error="AccessDenied", reason="cannot assume the role"),
        ),
    )


def test_utc_iso_is_utc_and_ends_in_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert utc_iso(datetime(2026, 11, 22, 5, 0, tzinfo=plus_two)) == "2026-11-22T03:00:00Z"
    assert utc_iso(datetime(2026, 11, 22, 3, 0, 4, 120000, tzinfo=UTC)).endswith(".120000Z")


def test_an_organization_sweep_document_has_each_account_and_its_steps_as_objects() -> None:
    doc = validate("org-sweep", written(documents.org_sweep_document(org())))
    assert doc["counts"]["accounts_failed"] == 1  # type: ignore[index]
    prod, norole = doc["accounts"]  # type: ignore[misc]
    assert (norole["outcome"], norole["error"], "sweep" in norole) == (
        "account-failed",
        "AccessDenied",
        False,
    )
    (app,) = [r for r in prod["sweep"]["results"] if r["user"] == "ci-app"]
    assert (app["credential_id"], app["new_credential_id"]) == (old_id("ci-app"), new_id("ci-app"))
    assert [s["step"] for s in app["steps"]] == [
        "create",
        "verify",
        "promote",
        "deactivate",
        "delete",
    ]
    assert {s["outcome"] for s in app["steps"]} == {"done"}
    rows = text(documents.org_sweep_text(org()))
    assert [(r[0], r[6]) for r in rows] == [
        (PROD.id, "completed"),
        (PROD.id, "skipped"),
        (NOROLE.id, "account-failed"),
    ]


def test_a_plan_over_accounts_lists_a_failed_account_apart() -> None:
    planned = [
        AccountResult(account=PROD, plan=Plan(decisions=(rotated("ci-app").decision,))),
        AccountResult(account=NOROLE, error="AccessDenied", reason="cannot assume the role"),
    ]
    doc = validate("plan", written(documents.org_plan_document(planned)))
    (item,) = doc["items"]  # type: ignore[misc]
    assert (item["account_name"], item["action"]) == ("prod", "rotate")
    assert doc["failed_accounts"] == [
        {
            "account": NOROLE.id,
            "account_name": "norole",
            "error": "AccessDenied",
            "reason": "cannot assume the role",
        }
    ]
    rows = text(documents.org_plan_text(planned))
    assert rows[1][0] == NOROLE.id and rows[1][5] == "account-failed"


def test_a_sweep_with_a_corrupt_row_lists_it_in_json_and_text() -> None:
    result = sweep(rotated("ci-app"))
    result = type(result)(**{**result.__dict__, "corrupt": (CORRUPT,)})
    doc = validate("sweep", written(documents.sweep_document(result)))
    assert doc["corrupt"] == [
        {
            "rotation_id": "rot-bad",
            "account": "1",
            "user": "ci-x",
            "kind": "k",
            "slot": None,
            "field": "state",
            "detail": "'exploded' is no state",
            "state": "corrupt",
        }
    ]
    assert doc["counts"]["corrupt"] == 1  # type: ignore[index]
    *_, bad = text(documents.sweep_text(result))
    assert (bad[1], bad[6], bad[-1]) == ("ci-x", "corrupt", "state: 'exploded' is no state")


def test_text_cells_stay_on_one_line_and_empty_ones_are_a_dash() -> None:
    report = plain("ci-app", Action.BLOCK, Result.BLOCKED, reason="two keys:\tAKIA1\nand AKIA2")
    (row,) = text(documents.rotation_text(report))
    assert len(row) == len(documents.SWEEP_COLUMNS)
    assert row[-1] == "two keys: AKIA1 and AKIA2"
    assert row[5] == "-" and row[7] == "-"  # no state, no new credential


def test_iterators_at_every_depth_are_written_as_arrays() -> None:
    """An organization report nests each account's rows (iterators) below the streamed
    levels: they must come out as arrays, not as the text of a generator object."""
    rows = (n for n in range(3))
    doc = {"accounts": [{"report": {"credentials": rows, "deeper": [iter(["a"])]}}]}
    assert written(doc) == {"accounts": [{"report": {"credentials": [0, 1, 2], "deeper": [["a"]]}}]}
