"""A sink that cannot take a new secret is found before any key is made (issue 11, case 6):
``validate`` names it, ``plan`` shows the rotation blocked with the sink's reason, and
``run`` fails the rotation cleanly — IAM unchanged — then rotates normally once fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.invariants import history
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e


def blocked_sink(cli: Cli) -> Path:
    """A file sink under a path whose parent is a plain file: unwritable even as root."""
    blocker = cli.tmp / "blocker"
    blocker.write_text("not a directory\n")
    cli.write_policy(
        max_age="90d",
        sink=f'{{ type = "file", path = "{blocker}/{{account}}/{{user}}.json" }}',
    )
    return blocker


def test_validate_names_a_file_sink_whose_directory_cannot_be_written(cli: Cli) -> None:
    blocker = blocked_sink(cli)

    result = cli("validate")

    assert result.code == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())  # unwrapped
    assert "unusable sink" in said
    assert f"rules.ci-keys.sink: cannot write under {blocker}: {blocker} is not a directory" in said
    assert "Traceback" not in result.stderr


def test_plan_and_run_stop_before_iam_changes_when_the_sink_cannot_take_the_secret(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    (old,) = sandbox.create_user("ci-app", path="/ci/", keys=1)
    sandbox.age_keys("ci-app", days=120)
    blocker = blocked_sink(cli)

    planned = cli("plan", "--json")
    assert planned.code == 0, planned.stderr
    (decision,) = [d for d in planned.items() if d["user"] == "ci-app"]
    assert decision["action"] == "block", decision
    assert "the sink cannot store the new secret" in decision["reason"]

    ran = cli("run", "--json")
    (report,) = ran.json()["results"]
    assert report["outcome"] == "failed", report
    assert "not a directory" in report["detail"], report
    assert list(sandbox.keys("ci-app")) == [old["AccessKeyId"]]  # no key was made
    (rotation,) = history(cli)
    assert rotation["state"] == "failed"
    assert rotation["new_credential_id"] is None
    assert "not a directory" in rotation["reason"]

    blocker.unlink()  # the operator fixes the sink: the next sweep rotates normally
    again = cli("run", "--json")
    assert again.code == 0, again.stdout + again.stderr
    assert [r["outcome"] for r in again.json()["results"]] == ["completed"]
    (new,) = sandbox.keys("ci-app")
    document = json.loads((blocker / sandbox.account() / "ci-app.json").read_text())
    assert document["current"]["AccessKeyId"] == new != old["AccessKeyId"]
