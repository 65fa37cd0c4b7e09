"""``rotator rotate-profile PROFILE`` end to end: the real CLI against the moto server, with
no policy file — only a shared credentials file and the user's state directory."""

from __future__ import annotations

import configparser
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import Cli, Result
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

USER = "dev-laptop"
HEAD = (
    "# my credentials\n"
    "[default]\n"
    "aws_access_key_id = AKIADEFAULTEXAMPLE\n"
    "aws_secret_access_key = untouched\n"
    "region = eu-west-1\n"
    "\n"
)
TAIL = "\n; a comment after the profile\n[later]\naws_access_key_id = AKIALATEREXAMPLE\n"


@pytest.fixture
def profile(cli: Cli, sandbox: MotoSandbox) -> tuple[Path, str]:
    """A user whose one key is profile [work] of a credentials file between two others."""
    (key,) = sandbox.create_user(USER, keys=1)
    creds = cli.tmp / "aws" / "credentials"
    creds.parent.mkdir()
    creds.write_text(
        HEAD
        + f"[work]\naws_access_key_id = {key['AccessKeyId']}\n"
        + f"aws_secret_access_key = {key['SecretAccessKey']}\n"
        + TAIL
    )
    cli.env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), XDG_STATE_HOME=str(cli.tmp / "state"))
    # AWS_ACCESS_KEY_ID stays set (Cli's "testing"): the named profile must win over it.
    return creds, key["AccessKeyId"]


def _run(cli: Cli, *args: str) -> Result:
    return cli("rotate-profile", *args, config=False)


def _read(creds: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(creds.read_text())
    return parser


def test_rotates_the_profile_key_in_one_command(
    cli: Cli, sandbox: MotoSandbox, profile: tuple[Path, str]
) -> None:
    creds, old = profile
    result = _run(cli, "work", "--yes", "--json")
    assert result.code == 0, result.stdout + result.stderr
    doc = result.json()
    assert (doc["kind"], doc["ok"], doc["profile"], doc["file"]) == (
        "profile-rotation",
        True,
        "work",
        str(creds),
    )
    assert doc["result"]["state"] == "completed"
    parser = _read(creds)
    new = parser.get("work", "aws_access_key_id")
    assert new != old
    assert (doc["result"]["credential_id"], doc["result"]["new_credential_id"]) == (old, new)
    secret = parser.get("work", "aws_secret_access_key")
    assert sandbox.caller_arn(new, secret).endswith(f"/{USER}")
    assert sandbox.keys(USER) == {new: "Active"}  # one key active, the old one deleted
    text = creds.read_text()
    assert text.startswith(HEAD) and text.endswith(TAIL)  # the rest of the file as it was
    assert (cli.tmp / "state" / "rotator" / "journal.db").exists()
    assert secret not in result.stdout + result.stderr
    assert secret not in (cli.tmp / "state" / "rotator" / "audit.jsonl").read_text()


def test_a_person_reads_one_line(cli: Cli, sandbox: MotoSandbox, profile: tuple[Path, str]) -> None:
    creds, old = profile
    result = _run(cli, "work", "--yes")
    assert result.code == 0, result.stdout + result.stderr
    new = _read(creds).get("work", "aws_access_key_id")
    assert f"{old} -> {new}" in result.stdout
    assert f"{old} is deleted" in result.stdout


def test_dry_run_changes_nothing(cli: Cli, sandbox: MotoSandbox, profile: tuple[Path, str]) -> None:
    creds, old = profile
    before = creds.read_text()
    result = _run(cli, "work", "--dry-run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    assert result.json()["result"]["outcome"] == "would-rotate"
    assert creds.read_text() == before
    assert sandbox.keys(USER) == {old: "Active"}


def test_keep_old_finishes_on_the_next_run(
    cli: Cli, sandbox: MotoSandbox, profile: tuple[Path, str]
) -> None:
    creds, old = profile
    first = _run(cli, "work", "--yes", "--keep-old", "2s", "--json")
    assert first.code == 0, first.stdout + first.stderr
    assert first.json()["result"]["state"] == "promoted"
    new = _read(creds).get("work", "aws_access_key_id")
    assert sandbox.keys(USER) == {old: "Active", new: "Active"}
    time.sleep(2.1)
    second = _run(cli, "work", "--yes", "--keep-old", "2s", "--json")
    assert second.code == 0, second.stdout + second.stderr
    assert second.json()["result"]["state"] == "completed"
    assert sandbox.keys(USER) == {new: "Active"}
    assert _read(creds).get("work", "aws_access_key_id") == new


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch", "--yes"), "no profile [nosuch] in"),
        (("work", "--yes", "--keep-old", "soon"), "--keep-old"),
        (("work",), "refusing to rotate without --yes"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    cli: Cli, sandbox: MotoSandbox, profile: tuple[Path, str], args: tuple[str, ...], message: str
) -> None:
    creds, old = profile
    before = creds.read_text()
    result = _run(cli, *args)
    assert result.code == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert creds.read_text() == before
    assert sandbox.keys(USER) == {old: "Active"}


def test_no_credentials_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    cli.env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "missing"))
    result = _run(cli, "work", "--yes")
    assert result.code == 2
    assert "no credentials file at" in result.stderr


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        ("CreateAccessKey", "after"),  # key made, its secret lost: an orphan
        ("GetCallerIdentity", "before"),  # verifying the new key (pending in the sidecar)
        ("UpdateAccessKey", "before"),  # promoted: the profile holds the new key
        ("DeleteAccessKey", "after"),  # deleted in IAM, not journalled
    ],
)
def test_a_run_killed_midway_is_finished_by_the_next(
    cli: Cli,
    sandbox: MotoSandbox,
    profile: tuple[Path, str],
    aws_env: str,
    action: str,
    phase: str,
) -> None:
    creds, old = profile
    with FaultProxy(aws_env) as proxy:
        cli.endpoint = proxy.url
        box: dict[str, subprocess.Popen[str]] = {}
        nth = 3 if action == "GetCallerIdentity" else 1  # 1: whose user, 2: the session's
        proxy.on(
            action,
            phase=phase,  # type: ignore[arg-type]
            nth=nth,
            callback=lambda: os.kill(box["proc"].pid, signal.SIGKILL),
        )
        box["proc"] = cli.popen("rotate-profile", "work", "--yes")
        box["proc"].communicate(timeout=60)
        assert proxy.counts()["hooks_fired"] == 1, f"never reached {phase}-{action}"
        assert box["proc"].returncode == -signal.SIGKILL
    cli.endpoint = aws_env
    result = _run(cli, "work", "--yes", "--json")
    assert result.code == 0, result.stdout + result.stderr
    new = _read(creds).get("work", "aws_access_key_id")
    assert new != old
    assert sandbox.keys(USER) == {new: "Active"}  # no orphan, the old key gone
    secret = _read(creds).get("work", "aws_secret_access_key")
    assert sandbox.caller_arn(new, secret).endswith(f"/{USER}")
    text = creds.read_text()
    assert text.startswith(HEAD) and text.endswith(TAIL)


def test_a_second_inactive_key_makes_room_and_two_active_ones_are_refused(
    cli: Cli, sandbox: MotoSandbox, profile: tuple[Path, str]
) -> None:
    creds, old = profile
    spare = sandbox.iam.create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    before = creds.read_text()
    refused = _run(cli, "work", "--yes")
    assert refused.code == 2, refused.stdout + refused.stderr
    assert "will not guess" in refused.stderr
    assert creds.read_text() == before
    sandbox.iam.update_access_key(UserName=USER, AccessKeyId=spare, Status="Inactive")
    result = _run(cli, "work", "--yes")
    assert result.code == 0, result.stdout + result.stderr
    new = _read(creds).get("work", "aws_access_key_id")
    assert new not in (old, spare)
    assert sandbox.keys(USER) == {new: "Active"}  # the spare deleted first, the old one after


def test_temporary_credentials_cannot_be_rotated(cli: Cli, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[sso]\naws_access_key_id = ASIAEXAMPLE\naws_secret_access_key = s\naws_session_token = t\n"
    )
    cli.env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds))
    result = _run(cli, "sso", "--yes")
    assert result.code == 2
    assert "temporary credentials" in result.stderr
