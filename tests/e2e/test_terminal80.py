"""Tables on a real 80-column terminal: the CLI runs under a pseudo-terminal whose size is
set with TIOCSWINSZ (no COLUMNS), against a seeded moto sandbox with long user names, a
user name that looks like rich markup, long reasons and an emergency. No access key ID,
rotation ID or user name is split across lines (or cut), no line is wider than the
terminal, and no row takes more than 3 lines unless ``--wide`` is given."""

from __future__ import annotations

from typing import Any

import pytest
from rich.cells import cell_len

from tests.support.cli import Cli, Result
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

LONG = "svc-jenkins-prod-deploy-eu1"  # 27 characters
MARKUP = "legacy-[a]pp-[bold]payments"  # rich would eat [a] and [bold] as markup
BLOCKED = "two-keys-[red]vendor-sync"  # two active keys: blocked, with a long reason
LEAKED = "leaky-[b]ot-credentials-x"
USERS = (LONG, MARKUP, "ci-app")


def _items(doc: Any) -> list[Any]:
    """A JSON list, or the ``items`` of a document that wraps one."""
    return list(doc["items"] if isinstance(doc, dict) else doc)


def _body(stdout: str) -> list[str]:
    """The table's row lines: those with a column border, after the header's rule."""
    lines = stdout.splitlines()
    rule = next(n for n, line in enumerate(lines) if "━" in line and "╇" in line)
    return [line for line in lines[rule + 1 :] if "│" in line]


def _check(result: Result, *, words: set[str], rows: int, most: int = 3) -> None:
    assert result.code in (0, 1), result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    too_wide = [line for line in lines if cell_len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    for word in words:  # whole on one line: not split, not cut, not eaten as markup
        assert any(word in line for line in lines), f"{word!r} not whole in:\n{result.stdout}"
    body = _body(result.stdout)
    assert rows and len(body) <= most * rows, f"{len(body)} lines for {rows} rows:\n{result.stdout}"


@pytest.fixture
def seeded(cli: Cli, sandbox: MotoSandbox) -> dict[str, set[str]]:
    """Rotations in flight (promoted, the old key kept 7 days), one emergency held an
    hour, and a user blocked with two active keys. Returns the IDs that must stay whole."""
    cli.write_policy(max_age="90d", deactivate_after="7d", delete_after="7d")
    for user in USERS:
        sandbox.create_user(user, path="/ci/", keys=1)
        sandbox.age_keys(user, days=120)
    sandbox.create_user(BLOCKED, path="/ci/", keys=2)
    leaked = sandbox.create_user(LEAKED, path="/ci/", keys=1)[0]["AccessKeyId"]
    ran = cli("run")
    assert ran.code == 1, ran.stdout + ran.stderr  # the blocked user
    emergency = cli("rotate", "--access-key-id", leaked, "--emergency", "--hold", "1h", "--yes")
    assert emergency.code == 0, emergency.stdout + emergency.stderr
    keys = {k for user in (*USERS, LEAKED, BLOCKED) for k in sandbox.keys(user)}
    rotations = {r["rotation_id"] for r in _items(cli("history", "--json").json())}
    return {"keys": keys, "rotations": rotations}


def test_status_at_80_columns(cli: Cli, seeded: dict[str, set[str]]) -> None:
    rows = _items(cli("status", "--json").json())
    result = cli.on_screen("status")
    ids = {i for r in rows for i in (r["credential_id"], r["new_credential_id"]) if i}
    words = {*ids, *seeded["rotations"], *USERS, LEAKED, "(emergency)"}
    _check(result, words=words, rows=len(rows))


def test_history_at_80_columns_and_wide(cli: Cli, seeded: dict[str, set[str]]) -> None:
    rows = _items(cli("history", "--json").json())
    result = cli.on_screen("history")
    ids = {i for r in rows for i in (r["credential_id"], r["new_credential_id"]) if i}
    _check(result, words={*ids, *seeded["rotations"], *USERS, LEAKED}, rows=len(rows))
    assert "promote:done" not in result.stdout, "the steps are cut to one line"

    wide = cli.on_screen("history", "--wide")
    _check(wide, words={*ids, *USERS, "promote:done", "deactivate:done"}, rows=len(rows), most=6)


def test_plan_at_80_columns_and_wide(cli: Cli, seeded: dict[str, set[str]]) -> None:
    cli.write_policy(max_age="1d", deactivate_after="0s", delete_after="0s")
    decisions = [d for d in _items(cli("plan", "--json").json()) if d["action"] != "skip"]
    result = cli.on_screen("plan")
    words = {d["credential_id"] for d in decisions if d["credential_id"]}
    _check(result, words={*words, *USERS, BLOCKED}, rows=len(decisions))
    reason = "rotator cannot tell which one is in use"
    assert reason not in " ".join(result.stdout.split()), "a long reason is cut"
    assert "…" in result.stdout

    wide = cli.on_screen("plan", "--wide")
    _check(wide, words={*words, BLOCKED}, rows=len(decisions), most=8)
    last = " ".join(line.split("│")[-1].strip() for line in _body(wide.stdout))
    assert reason in " ".join(last.split()), "--wide shows it whole"


def test_run_dry_run_at_80_columns_counts_what_would_happen(
    cli: Cli, seeded: dict[str, set[str]], sandbox: MotoSandbox
) -> None:
    """The would-rotate decisions are counted in the title and the summary line, each
    listed with the steps it would take; nothing changes in IAM."""
    due = ("svc-terraform-state-backup", "ops-[i]talic-reporting-job")
    for user in due:
        sandbox.create_user(user, path="/ci/", keys=1)
        sandbox.age_keys(user, days=120)
    before = sandbox.dump()
    result = cli.on_screen("run", "--dry-run")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Dry run (nothing changed): would-rotate=2"), lines[0]
    assert "would-rotate=2" in lines[-1] and "blocked=1" in lines[-1], lines[-1]
    assert result.stdout.count("would-rotate") == 2 + 2, "two rows, the title, the summary"
    assert "create verify" in result.stdout, "the steps each would take"
    _check(result, words={*due, BLOCKED}, rows=3)  # the rotations in flight: one caption line

    one = cli.on_screen("rotate", "--user", due[1], "--dry-run")
    assert one.code == 0, one.stdout + one.stderr
    assert one.stdout.startswith(f"{due[1]} access-key "), "the name keeps its brackets"
    assert "would run, in order:" in one.stdout
    assert sandbox.dump() == before


def test_report_at_80_columns(cli: Cli, seeded: dict[str, set[str]]) -> None:
    result = cli.on_screen("report")
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    for key in seeded["keys"]:
        assert any(key in line for line in lines), f"{key} not whole"
    for user in (*USERS, LEAKED):
        assert any(user in line for line in lines), f"{user} not whole"
    assert len(lines) <= 3 * 20
