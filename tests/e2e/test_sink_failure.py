"""A sink that cannot take a new secret: the credential IAM just made is deleted at once
(compensation), the user is left exactly as before, the journal says why, and once the
sink is fixed the next sweep rotates normally."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e


def test_an_unwritable_sink_leaves_the_user_with_exactly_its_old_key(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    cli.write_policy(max_age="90d", deactivate_after="0s", delete_after="0s")
    old = sandbox.create_user("ci-app", path="/ci/", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys("ci-app", days=120)
    # The sink reads fine (no document yet) but cannot be written: its lock file's name is
    # taken by a directory (even root cannot open that for writing).
    holder = cli.tmp / "secrets" / sandbox.account() / "ci-app"
    blocker = holder / "access-key.json.lock"
    blocker.mkdir(parents=True)

    broken = cli("run", "--json")
    assert broken.code == 1, broken.stdout + broken.stderr
    (report,) = broken.json()["results"]
    assert report["outcome"] == "failed"
    assert report["state"] == "failed"
    assert "was deleted at once and the user is as before" in report["detail"]
    assert sandbox.keys("ci-app") == {old: "Active"}, "no key whose secret is lost"
    (rotation,) = cli("history", "--json").items()
    assert "could not store the secret of" in rotation["reason"]
    events = cli.audit_events()
    (compensated,) = [e for e in events if e["event"] == "rotation.compensated"]
    assert compensated["credential_id"] != old

    blocker.rmdir()
    fixed = cli("run", "--json")
    assert fixed.code == 0, fixed.stdout + fixed.stderr
    assert [r["outcome"] for r in fixed.json()["results"]] == ["completed"]
    (new,) = sandbox.keys("ci-app")
    assert new != old
    current = cli.sink_document(sandbox.account(), "ci-app")["current"]
    assert current["AccessKeyId"] == new
    assert sandbox.caller_arn(new, current["SecretAccessKey"]).endswith("/ci-app")
