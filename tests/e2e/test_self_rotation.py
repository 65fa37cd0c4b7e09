"""A rotator that rotates the very access key it signs with (the aws-vault / aws-rotate-key
case): a profile of an aws-credentials file, rotated into that same profile by a rotator
process whose own credentials are that profile (``AWS_SHARED_CREDENTIALS_FILE`` +
``AWS_PROFILE``).

moto records every request's key as its last use (``mark_account_as_visited``), so
``GetAccessKeyLastUsed`` shows rotator's own calls: before rotator switched to the new key
after the promotion, its own calls made the old key look used and the rotation was held
forever. moto also lets inactive keys authenticate, so what proves the switch is the last
use of each key, not a failed call."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

USER = "ci-app"
HEAD = "# rotator test\n[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n\n"


def _self_rotating(cli: Cli, sandbox: MotoSandbox, *, deactivate_after: str) -> tuple[Path, str]:
    """A user whose only key is in profile [ci] of a credentials file; the CLI signs with
    that profile and rotates it into the same profile. Returns the file and the old key."""
    (key,) = sandbox.create_user(USER, path="/ci/", keys=1)
    creds = cli.tmp / "credentials"
    creds.write_text(
        HEAD
        + f"[ci]\naws_access_key_id = {key['AccessKeyId']}\n"
        + f"aws_secret_access_key = {key['SecretAccessKey']}\n"
    )
    cli.write_policy(
        deactivate_after=deactivate_after,
        sink=f'{{ type = "file", path = "{creds}", format = "aws-credentials", profile = "ci" }}',
        # A call budget of 3s: the margin within which use of the old key after the
        # promotion is taken for rotator's own (see rotator/rotation/own_key.py).
        extra="\n[aws]\nconnect_timeout = 1\nread_timeout = 2\n",
    )
    cli.config.write_text(cli.config.read_text().replace('users = ["*"]', f'users = ["{USER}"]'))
    cli.env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_PROFILE="ci")
    cli.unset.update({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
    time.sleep(1.1)  # max_age 0s: the key must be older than 0s in whole seconds
    return creds, key["AccessKeyId"]


def _profile_key(creds: Path) -> str:
    lines = creds.read_text().split("[ci]", 1)[1].splitlines()
    return next(line.split("=", 1)[1].strip() for line in lines if "aws_access_key_id" in line)


def _last_used(sandbox: MotoSandbox, key_id: str) -> object:
    found = sandbox.iam.get_access_key_last_used(AccessKeyId=key_id)
    return found["AccessKeyLastUsed"].get("LastUsedDate")


def test_a_profile_rotated_by_a_rotator_using_it_completes_in_one_sweep(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    creds, old = _self_rotating(cli, sandbox, deactivate_after="0s")
    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert cli.steps(USER) == [
        ("create", "done"),
        ("verify", "done"),
        ("promote", "done"),
        ("deactivate", "done"),
        ("delete", "done"),
    ]
    new = _profile_key(creds)
    assert new != old
    assert sandbox.keys(USER) == {new: "Active"}  # the old one is deleted
    assert creds.read_text().startswith(HEAD)  # the other section and the comment kept
    (switched,) = [e for e in cli.audit_events() if e["event"] == "own_key.switched"]
    assert (switched["credential_id"], switched["old_credential_id"]) == (new, old)
    assert _last_used(sandbox, new) is not None  # rotator's own calls went on with it
    (row,) = cli.journal_rows()
    assert row["state"] == "completed"


def test_with_a_deactivate_window_it_completes_in_two_sweeps(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    creds, old = _self_rotating(cli, sandbox, deactivate_after="2s")
    assert cli("run").code == 0
    new = _profile_key(creds)
    assert sandbox.keys(USER) == {old: "Active", new: "Active"}
    time.sleep(2.1)
    result = cli("run")  # a new process: its profile holds the new key now
    assert result.code == 0, result.stdout + result.stderr
    assert cli.steps(USER)[-2:] == [("deactivate", "done"), ("delete", "done")]
    assert sandbox.keys(USER) == {new: "Active"}


def test_an_application_still_on_the_old_key_holds_it_as_ever(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """Only rotator's own use is discounted: a call with the old key after the promotion
    plus the margin (3s here) is an application's, and the old key stays active."""
    creds, old = _self_rotating(cli, sandbox, deactivate_after="1s")
    assert cli("run").code == 0
    assert _profile_key(creds) != old
    time.sleep(3.5)
    # moto does not check signatures: any secret records a use of the key ID.
    sandbox.client("sts", access_key_id=old, secret_access_key="x").get_caller_identity()
    cli("run")
    assert cli.steps(USER)[-1] == ("deactivate", "held")
    (held,) = [e for e in cli.audit_events() if e.get("outcome") == "held"]
    assert "consumers have not switched" in held["reason"]
    assert sandbox.keys(USER)[old] == "Active"


@pytest.mark.parametrize("journal", ["sqlite", "dynamodb"])
def test_after_the_promotion_every_call_is_signed_with_the_new_key(
    cli: Cli, sandbox: MotoSandbox, aws_env: str, journal: str
) -> None:
    """Seen at the wire (a proxy in front of moto records which key signed each call): the
    deactivate and delete calls — after the promotion — are signed with the new key, and
    the old key signs nothing after it. With a DynamoDB journal its clients switch too
    (else the lease renewals and saves would keep the old key in use)."""
    with FaultProxy(aws_env) as proxy:
        cli.endpoint = proxy.url
        creds, old = _self_rotating(cli, sandbox, deactivate_after="0s")
        if journal == "dynamodb":
            cli.env["ROTATOR_JOURNAL__URL"] = "dynamodb://rotator-journal"
            init = cli("journal", "init")
            assert init.code == 0, init.stderr
        result = cli("run")
        assert result.code == 0, result.stdout + result.stderr
        new = _profile_key(creds)
        by_old, by_new = proxy.actions_signed_by(old), proxy.actions_signed_by(new)
    assert cli.steps(USER)[-2:] == [("deactivate", "done"), ("delete", "done")]
    assert "CreateAccessKey" in by_old
    for action in ("GetAccessKeyLastUsed", "UpdateAccessKey", "DeleteAccessKey"):
        assert action in by_new
        assert action not in by_old
    if journal == "dynamodb":  # the journal's writes after the promotion
        assert {"UpdateItem", "PutItem", "TransactWriteItems"} & set(by_new), by_new


def test_a_rotator_whose_credentials_stay_on_the_old_key_holds_rather_than_lock_itself_out(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """rotator's credentials come from the environment (the old key), the sink is a JSON
    file: the first run switches in memory after the promotion, but the next run starts on
    the old key again, and deactivating it would lock rotator out: held, with the reason."""
    (key,) = sandbox.create_user(USER, path="/ci/", keys=1)
    cli.write_policy(deactivate_after="1s")
    cli.config.write_text(cli.config.read_text().replace('users = ["*"]', f'users = ["{USER}"]'))
    cli.env.update(
        AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"]
    )
    time.sleep(1.1)
    assert cli("run").code == 0
    time.sleep(1.1)
    cli("run")
    assert cli.steps(USER)[-1] == ("deactivate", "held")
    (held,) = [e for e in cli.audit_events() if e.get("outcome") == "held"]
    assert "rotator itself still signs with the old key" in held["reason"]
    assert sandbox.keys(USER)[key["AccessKeyId"]] == "Active"


def test_an_emergency_for_the_key_rotator_signs_with_is_refused(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """An emergency deactivates the leaked key first: with rotator's own key that would
    lock rotator out before the new key exists (real IAM refuses an inactive key; moto does
    not, so the refusal is checked before any change)."""
    creds, old = _self_rotating(cli, sandbox, deactivate_after="0s")
    before = creds.read_text()
    result = cli("rotate", "--access-key-id", old, "--emergency", "--yes")
    assert result.code == 2, result.stdout + result.stderr
    assert f"rotator itself signs with {old}" in result.stderr
    assert sandbox.keys(USER) == {old: "Active"}
    assert creds.read_text() == before
