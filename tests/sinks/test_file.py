"""The file sink: modes, the exact file shapes, the aws-credentials profile, atomic writes,
locking, and errors that name the path but never the content."""

from __future__ import annotations

import asyncio
import configparser
import fcntl
import json
import os
import stat
import time
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from rotator.errors import SinkError
from rotator.model import Kind
from rotator.policy import FileSinkConfig
from rotator.sinks import FileSink, SecretEntry, SinkDocument, SinkKey
from tests.sinks.test_contract import ALICE, FENCE, access_key, rotate_in, secret_of

EXISTING = """\
# edited by hand
[default]
aws_access_key_id = AKIADEFAULT000000000
aws_secret_access_key = default-secret-0000000000000000000000000
region = eu-west-1

# the production account
[prod]
aws_access_key_id = AKIAPROD000000000000
aws_secret_access_key = prod-secret-00000000000000000000000000000
"""
PROD_BLOCK = EXISTING[EXISTING.index("\n# the production account") :]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def json_sink(path: Path | str) -> FileSink:
    return FileSink(FileSinkConfig(type="file", path=str(path)))


def profile_sink(path: Path, profile: str = "rotated") -> FileSink:
    config = FileSinkConfig(type="file", path=str(path), format="aws-credentials", profile=profile)
    return FileSink(config)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(path.read_text(), source=str(path))
    return parser


async def test_files_are_0600_and_created_directories_0700(tmp_path: Path) -> None:
    before = mode(tmp_path)
    sink = json_sink(tmp_path / "a" / "b" / "{user}.json")

    await rotate_in(sink, ALICE, access_key(1))

    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path / "a" / "b" / "alice.json") == 0o600
    assert mode(tmp_path / "a" / "b" / "alice.json.lock") == 0o600
    assert mode(tmp_path) == before  # a directory that existed is left alone


async def test_an_existing_credentials_file_keeps_its_mode_and_new_files_are_0600(
    tmp_path: Path,
) -> None:
    """The application reads its own credentials file: its mode is kept (issue 11, item
    7); rotator's own sidecar and lock are 0600, and so is a credentials file it creates."""
    path = tmp_path / "credentials"
    path.write_text(EXISTING)
    path.chmod(0o640)

    await rotate_in(profile_sink(path), ALICE, access_key(1))

    assert mode(path) == 0o640
    assert mode(tmp_path / "credentials.rotator.json") == 0o600
    assert mode(tmp_path / "credentials.lock") == 0o600
    fresh = tmp_path / "fresh" / "credentials"
    await rotate_in(profile_sink(fresh), ALICE, access_key(1))
    assert mode(fresh) == 0o600


async def test_a_json_file_holds_exactly_current_previous_pending_and_the_fence(
    tmp_path: Path,
) -> None:
    path = tmp_path / "alice.json"
    await rotate_in(json_sink(path), ALICE, access_key(1))

    raw = json.loads(path.read_text())

    assert path.read_text() == SinkDocument(current=access_key(1), fence=FENCE).to_json()
    assert set(raw) == {"current", "previous", "pending", "fence"}
    assert raw["fence"] == "tests:1"
    assert raw["previous"] is None
    assert raw["pending"] is None
    assert raw["current"] == {
        "AccessKeyId": "AKIA0000000000000001",
        "SecretAccessKey": secret_of(1),
        "Kind": "access-key",
        "CredentialId": "AKIA0000000000000001",
        "CreatedAt": "2024-01-01T12:30:00+00:00",
    }


async def test_a_tilde_in_the_template_is_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    sink = json_sink("~/secrets/{account}/{user}.json")

    await sink.put_pending(ALICE, access_key(1), FENCE)

    assert sink.location(ALICE) == f"{tmp_path}/secrets/123456789012/alice.json"
    assert (tmp_path / "secrets" / "123456789012" / "alice.json").exists()


async def test_the_profile_holds_the_current_key_and_other_profiles_are_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "credentials"
    path.write_text(EXISTING)
    sink = profile_sink(path)

    await sink.put_pending(ALICE, access_key(1), FENCE)
    assert path.read_text() == EXISTING  # pending lives in the sidecar only

    await sink.promote(ALICE, access_key(1).credential_id, FENCE)
    parser = ini(path)
    assert parser.sections() == ["default", "prod", "rotated"]
    assert dict(parser["rotated"]) == {
        "aws_access_key_id": "AKIA0000000000000001",
        "aws_secret_access_key": secret_of(1),
    }
    assert path.read_text().startswith(EXISTING)  # byte for byte

    await rotate_in(sink, ALICE, access_key(2))
    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000002"

    await sink.rollback(ALICE, access_key(1).credential_id, FENCE)
    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000001"
    assert path.read_text().startswith(EXISTING)


async def test_boto3_loads_the_rotated_key_from_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".aws" / "credentials"
    await rotate_in(profile_sink(path), ALICE, access_key(1))
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    credentials = boto3.Session(profile_name="rotated", region_name="us-east-1").get_credentials()

    assert credentials is not None
    assert credentials.access_key == "AKIA0000000000000001"
    assert credentials.secret_key == secret_of(1)


async def test_a_profile_between_others_is_replaced_in_place_and_its_old_key_kept(
    tmp_path: Path,
) -> None:
    """Without a sidecar the profile's key is current, so it becomes previous (and can be
    rolled back to); the section is rewritten where it stands and neighbours keep their
    comments."""
    path = tmp_path / "credentials"
    path.write_text(EXISTING)
    sink = profile_sink(path, profile="default")
    old = (await sink.read(ALICE)).current
    assert old is not None
    assert old.credential_id == "AKIADEFAULT000000000"
    assert old.reveal("SecretAccessKey") == "default-secret-0000000000000000000000000"

    await rotate_in(sink, ALICE, access_key(1))

    assert path.read_text() == (
        "# edited by hand\n[default]\naws_access_key_id = AKIA0000000000000001\n"
        f"aws_secret_access_key = {secret_of(1)}\nregion = eu-west-1\n" + PROD_BLOCK
    )
    assert (await sink.read(ALICE)).previous == old

    await sink.rollback(ALICE, "AKIADEFAULT000000000", FENCE)
    assert ini(path)["default"]["aws_access_key_id"] == "AKIADEFAULT000000000"
    assert path.read_text().endswith(PROD_BLOCK)


async def test_a_crash_mid_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "alice.json"
    sink = json_sink(path)
    await rotate_in(sink, ALICE, access_key(1))
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", crash)
        with pytest.raises(SinkError, match=r"alice\.json"):
            await sink.put_pending(ALICE, access_key(2), FENCE)

    assert path.read_bytes() == before
    assert listing(tmp_path) == ["alice.json", "alice.json.lock"]
    await sink.put_pending(ALICE, access_key(2), FENCE)
    assert (await sink.read(ALICE)).pending == access_key(2)


async def test_a_promote_that_crashed_before_the_profile_is_repaired_by_a_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "credentials"
    sink = profile_sink(path)
    await rotate_in(sink, ALICE, access_key(1))
    await sink.put_pending(ALICE, access_key(2), FENCE)
    real_replace = os.replace

    def crash_on_profile(src: str, dst: str) -> None:
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", crash_on_profile)
        with pytest.raises(SinkError):
            await sink.promote(ALICE, access_key(2).credential_id, FENCE)
    assert (await sink.read(ALICE)).current == access_key(2)  # the sidecar was written
    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000001"

    await sink.promote(ALICE, access_key(2).credential_id, FENCE)

    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000002"
    assert not [name for name in listing(tmp_path) if name.endswith(".tmp")]


@pytest.mark.parametrize(
    "content",
    [
        '{"current": {"SecretAccessKey": "leaked-secret-value-123456"',
        '["leaked-secret-value-123456"]',
        '{"current": {"Kind": "leaked-secret-value-123456", "CreatedAt": "x"}}',
        "\xff leaked-secret-value-123456",
    ],
)
async def test_a_corrupt_document_is_a_sink_error_naming_the_path_not_the_content(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "alice.json"
    path.write_bytes(content.encode("latin-1"))
    sink = json_sink(path)

    for operation in (sink.read(ALICE), sink.put_pending(ALICE, access_key(1), FENCE)):
        with pytest.raises(SinkError) as failed:
            await operation
        assert str(path) in str(failed.value)
        assert "leaked-secret-value" not in str(failed.value)
        assert failed.value.__cause__ is None
    assert path.read_bytes() == content.encode("latin-1")  # not overwritten


@pytest.mark.parametrize(
    "content",
    [
        "aws_secret_access_key = leaked-secret-value-123456\n",  # no section header
        "[rotated]\nx = leaked-secret-value-123456\n[rotated]\n",  # duplicate section
    ],
)
async def test_a_corrupt_credentials_file_is_a_sink_error_without_its_content(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "credentials"
    path.write_text(content)

    with pytest.raises(SinkError) as failed:
        await profile_sink(path).read(ALICE)

    assert str(path) in str(failed.value)
    assert "leaked-secret-value" not in str(failed.value)


@pytest.mark.parametrize("unreadable", ["no-permission", "a-directory"])
async def test_an_unreadable_file_is_a_sink_error(tmp_path: Path, unreadable: str) -> None:
    path = tmp_path / "alice.json"
    if unreadable == "a-directory":
        path.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_text("{}")
        path.chmod(0)

    with pytest.raises(SinkError, match=r"cannot read .*alice\.json"):
        await json_sink(path).read(ALICE)


async def test_a_writer_waits_for_another_process_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "alice.json"
    sink = json_sink(path)
    await rotate_in(sink, ALICE, access_key(1))

    other_process = os.open(f"{path}.lock", os.O_RDWR)  # its own open file: flock conflicts
    try:
        fcntl.flock(other_process, fcntl.LOCK_EX)
        writer = asyncio.create_task(sink.put_pending(ALICE, access_key(2), FENCE))
        await asyncio.sleep(0.3)  # the loop keeps running while the writer waits
        assert not writer.done()
        assert (await sink.read(ALICE)).pending is None
        fcntl.flock(other_process, fcntl.LOCK_UN)
        await asyncio.wait_for(writer, timeout=5)
    finally:
        os.close(other_process)

    assert (await sink.read(ALICE)).pending == access_key(2)


async def test_concurrent_writers_in_one_process_lose_no_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A promote and a put_pending racing on one file end as if run one after the other."""
    path = tmp_path / "alice.json"
    sinks = [json_sink(path), json_sink(path)]
    await rotate_in(sinks[0], ALICE, access_key(1))
    await sinks[0].put_pending(ALICE, access_key(2), FENCE)
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # widen the read-modify-write window
        time.sleep(0.05)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    promoted, _ = await asyncio.gather(
        sinks[0].promote(ALICE, access_key(2).credential_id, FENCE),
        sinks[1].put_pending(ALICE, access_key(3), FENCE),
        return_exceptions=True,
    )

    if promoted is None:  # promote first, then put_pending
        expected = SinkDocument(
            current=access_key(2), previous=access_key(1), pending=access_key(3)
        )
    else:  # put_pending first: pending 2 was replaced, so the promote failed
        assert isinstance(promoted, SinkError)
        expected = SinkDocument(current=access_key(1), pending=access_key(3))
    assert await sinks[1].read(ALICE) == expected


async def test_a_symlinked_credentials_file_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    """Issue 11, item 8: a secret is never written through a link."""
    real = tmp_path / "dotfiles" / "credentials"
    real.parent.mkdir()
    real.write_text(EXISTING)
    link = tmp_path / "credentials"
    link.symlink_to(real)
    sink = profile_sink(link)

    for attempt in (sink.check(ALICE), sink.put_pending(ALICE, access_key(1), FENCE)):
        with pytest.raises(SinkError) as refused:
            await attempt
        assert str(refused.value) == (
            f"{link} is a symbolic link; rotator does not follow links for the files it "
            "writes: remove it"
        )

    assert link.is_symlink()
    assert real.read_text() == EXISTING


async def test_the_aws_credentials_format_refuses_entries_that_are_not_access_keys(
    tmp_path: Path,
) -> None:
    password = SecretEntry(
        kind=Kind.LOGIN_PROFILE,
        credential_id="alice",
        created_at=access_key(1).created_at,
        secret={"Password": SecretStr("correct-horse-battery-staple")},
    )

    with pytest.raises(SinkError, match="access keys only"):
        await profile_sink(tmp_path / "credentials").put_pending(ALICE, password, FENCE)

    assert listing(tmp_path) == []


async def test_a_holder_rendering_a_dot_dot_path_is_refused(tmp_path: Path) -> None:
    sink = json_sink(tmp_path / "{user}" / "key.json")
    sneaky = SinkKey(account="123456789012", user="..", kind=Kind.ACCESS_KEY)

    with pytest.raises(SinkError):
        await sink.put_pending(sneaky, access_key(1), FENCE)


# -- the aws-credentials profile: the rest of the section, headers, CRLF, owner --------

SECTION = """\
[default]
region = us-east-1

[rotated] # the deploy job's key
# rotated by rotator; do not edit the two key lines
region = eu-central-1
aws_access_key_id = AKIAOLD0000000000000
aws_secret_access_key = old-secret-000000000000000000000000000000
aws_session_token = stale-token
output = json
cli_pager =
"""


async def test_the_profile_keeps_every_line_but_the_two_key_lines(tmp_path: Path) -> None:
    """Region, output, comments and other keys stay where they were; the key lines are
    rewritten in place; an obsolete session token goes; the commented header is the
    profile's (no second ``[rotated]``)."""
    path = tmp_path / "credentials"
    path.write_text(SECTION)
    sink = profile_sink(path)
    await sink.check(ALICE)

    await rotate_in(sink, ALICE, access_key(1))

    assert path.read_text() == SECTION.replace(
        "aws_access_key_id = AKIAOLD0000000000000\n"
        "aws_secret_access_key = old-secret-000000000000000000000000000000\n"
        "aws_session_token = stale-token\n",
        f"aws_access_key_id = AKIA0000000000000001\naws_secret_access_key = {secret_of(1)}\n",
    )
    parser = ini(path)
    assert parser.sections() == ["default", "rotated"]
    assert dict(parser["rotated"]) == {
        "region": "eu-central-1",
        "aws_access_key_id": "AKIA0000000000000001",
        "aws_secret_access_key": secret_of(1),
        "output": "json",
        "cli_pager": "",
    }
    assert (await sink.read(ALICE)).previous is not None  # the old key, from the profile


@pytest.mark.parametrize(
    "header", ["[rotated] # comment", "[rotated]  ", "[rotated]; note", "[rotated]\t# tab"]
)
async def test_a_header_is_recognised_as_configparser_reads_it(tmp_path: Path, header: str) -> None:
    path = tmp_path / "credentials"
    path.write_text(f"{header}\nregion = eu-west-1\naws_access_key_id = AKIAOLD0000000000000\n")

    await rotate_in(profile_sink(path), ALICE, access_key(1))

    text = path.read_text()
    assert text.startswith(f"{header}\n")
    assert text.count("[rotated") == 1
    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000001"
    assert ini(path)["rotated"]["region"] == "eu-west-1"


async def test_a_crlf_file_stays_crlf(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_bytes(EXISTING.replace("\n", "\r\n").encode())

    await rotate_in(profile_sink(path), ALICE, access_key(1))
    await rotate_in(profile_sink(path, profile="prod"), ALICE, access_key(2))

    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n") > 0
    assert raw.startswith(EXISTING.replace("\n", "\r\n").encode()[:40])
    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000001"


async def test_a_profile_that_cannot_be_rewritten_is_found_by_the_preflight(
    tmp_path: Path,
) -> None:
    path = tmp_path / "credentials"
    path.write_text("aws_access_key_id = AKIA-BEFORE-ANY-SECTION\n")
    sink = profile_sink(path)

    with pytest.raises(SinkError, match="not a valid INI credentials file"):
        await sink.check(ALICE)

    assert path.read_text() == "aws_access_key_id = AKIA-BEFORE-ANY-SECTION\n"
    assert listing(tmp_path) == ["credentials"]  # the probe left nothing


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another owner needs root")
async def test_the_credentials_file_keeps_its_owner_and_group_and_lends_them_to_new_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "credentials"
    path.write_text(EXISTING)
    os.chown(path, 1234, 5678)
    path.chmod(0o600)

    await rotate_in(profile_sink(path), ALICE, access_key(1))

    for name in ("credentials", "credentials.rotator.json", "credentials.lock"):
        found = (tmp_path / name).stat()
        assert (found.st_uid, found.st_gid) == (1234, 5678), name
    assert ini(path)["rotated"]["aws_access_key_id"] == "AKIA0000000000000001"


# -- preflight -----------------------------------------------------------------------


async def test_check_refuses_a_path_whose_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    sink = json_sink(tmp_path / "blocker" / "{user}.json")

    with pytest.raises(SinkError, match="not a directory"):
        await sink.check(ALICE)

    assert sink.static_problems() != []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
async def test_check_refuses_a_read_only_directory_and_leaves_it_unchanged(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    sink = json_sink(locked / "{user}.json")
    try:
        with pytest.raises(SinkError, match="Permission denied"):
            await sink.check(ALICE)
        assert sink.static_problems() != []
    finally:
        locked.chmod(0o700)
    assert listing(locked) == []


async def test_check_and_static_problems_pass_a_usable_sink_and_leave_nothing(
    tmp_path: Path,
) -> None:
    sink = json_sink(tmp_path / "secrets" / "{user}.json")

    await sink.check(ALICE)

    assert sink.static_problems() == []
    assert listing(tmp_path) == []


# -- no symbolic links, no way out of the root ------------------------------------------


async def test_a_symlinked_holder_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "secrets"
    root.mkdir()
    (root / "alice").symlink_to(elsewhere)
    sink = json_sink(root / "{user}" / "key.json")

    for attempt in (sink.check(ALICE), sink.put_pending(ALICE, access_key(1), FENCE)):
        with pytest.raises(SinkError) as refused:
            await attempt
        assert "is a symbolic link" in str(refused.value)
        assert "\n" not in str(refused.value)

    assert listing(elsewhere) == []


async def test_a_symlinked_lock_file_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    """As root, rotator used to create the link's target anywhere."""
    target = tmp_path / "etc-file"
    (tmp_path / "alice.json.lock").symlink_to(target)
    sink = json_sink(tmp_path / "{user}.json")

    with pytest.raises(SinkError, match=r"alice\.json\.lock is a symbolic link"):
        await sink.put_pending(ALICE, access_key(1), FENCE)
    with pytest.raises(SinkError, match=r"alice\.json\.lock is a symbolic link"):
        await sink.check(ALICE)

    assert not target.exists()
    assert not (tmp_path / "alice.json").exists()


async def test_a_symlinked_sidecar_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "planted.json"
    target.write_text(SinkDocument().to_json())
    path = tmp_path / "credentials"
    (tmp_path / "credentials.rotator.json").symlink_to(target)

    with pytest.raises(SinkError, match="is a symbolic link"):
        await profile_sink(path).put_pending(ALICE, access_key(1), FENCE)

    assert target.read_text() == SinkDocument().to_json()


@pytest.mark.parametrize(
    ("field", "value"),
    [("user", "../../etc"), ("user", "a/b"), ("user", ".."), ("account", ".."), ("user", ".")],
)
async def test_a_holder_whose_fields_would_leave_the_root_is_refused(
    tmp_path: Path, field: str, value: str
) -> None:
    sink = json_sink(tmp_path / "secrets" / "{account}" / "{user}.json")
    fields = {"account": "123456789012", "user": "alice", field: value}
    sneaky = SinkKey(account=fields["account"], user=fields["user"], kind=Kind.ACCESS_KEY)

    for attempt in (sink.check(sneaky), sink.put_pending(sneaky, access_key(1), FENCE)):
        with pytest.raises(SinkError) as refused:
            await attempt
        assert "outside" in str(refused.value)
        assert "\n" not in str(refused.value)

    assert listing(tmp_path) == []
