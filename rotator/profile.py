"""``rotator rotate-profile PROFILE``: rotate the access key of one profile of the AWS
shared credentials file in one command — no policy file, no journal to set up (the
aws-rotate-key / ``aws-vault rotate`` case).

The engine does the work, as for any rotation: a ``Config`` is built here with one
access-key rule that selects only the profile's own IAM user (found with
``sts:GetCallerIdentity`` signed with the profile's key) and sinks into that profile of that
file (``format = "aws-credentials"``); the journal is SQLite in the user's state directory
(``settings.state_dir()``), so a run interrupted at any point is finished by the next one.
rotator signs with the very key it rotates, so the self-rotation rules apply
(``rotation.own_key``): it switches to the new key once it is promoted.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotator.aws import Aws, aws_errors
from rotator.errors import ConfigError, RotatorError
from rotator.model import Kind
from rotator.policy import MAX_DURATION, format_duration
from rotator.settings import Config, state_dir

if TYPE_CHECKING:
    from rotator.rotation.report import Report

SOURCE = "rotate-profile"
RULE = "rotate-profile"


def credentials_file() -> Path:
    """The shared credentials file: ``AWS_SHARED_CREDENTIALS_FILE``, else
    ``~/.aws/credentials`` (as the AWS CLI and SDKs read it)."""
    return Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials").expanduser()


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One profile of the credentials file, as found there (the secret is not kept)."""

    name: str
    path: Path
    access_key_id: str


def read_profile(name: str, path: Path | None = None) -> Profile:
    """The profile ``name`` of the credentials file. Raises ``ConfigError`` (exit 2) for a
    missing file or profile, a profile without a long-term access key, or a file that does
    not parse; messages name the file and profile, never the content."""
    path = path or credentials_file()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            SOURCE, [f"no credentials file at {path} (set AWS_SHARED_CREDENTIALS_FILE?)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(SOURCE, [f"cannot read {path}: {reason}"]) from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error:
        # configparser quotes the offending lines, which may hold secrets.
        raise ConfigError(SOURCE, [f"{path} is not a valid INI credentials file"]) from None
    if not parser.has_section(name):
        known = ", ".join(parser.sections()) or "none"
        raise ConfigError(SOURCE, [f"no profile [{name}] in {path} (its profiles: {known})"])
    key = parser.get(name, "aws_access_key_id", fallback="").strip()
    secret = parser.get(name, "aws_secret_access_key", fallback="").strip()
    if not (key and secret):
        raise ConfigError(
            SOURCE,
            [
                f"profile [{name}] in {path} holds no access key "
                "(aws_access_key_id and aws_secret_access_key)"
            ],
        )
    if parser.get(name, "aws_session_token", fallback="").strip():
        raise ConfigError(
            SOURCE,
            [
                f"profile [{name}] in {path} holds temporary credentials (a session token): "
                "only an IAM user's long-term access key can be rotated"
            ],
        )
    return Profile(name=name, path=path, access_key_id=key)


async def profile_user(profile: Profile) -> tuple[str, str]:
    """(account, IAM user name) the profile's key belongs to, from
    ``sts:GetCallerIdentity`` signed with it. Raises ``ConfigError`` if it is not an IAM
    user's key."""
    aws = Aws(profile=profile.name, max_attempts=3)
    async with aws.client("sts") as sts:
        with aws_errors("GetCallerIdentity"):
            found = await sts.get_caller_identity()
    arn = str(found["Arn"])
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("user/"):
        raise ConfigError(SOURCE, [f"profile [{profile.name}] signs as {arn}, not as an IAM user"])
    return str(found["Account"]), parts[5].rsplit("/", 1)[-1]


def profile_config(profile: Profile, user: str, keep_old: timedelta) -> Config:
    """The policy of one ``rotate-profile`` run: one access-key rule selecting only
    ``user``, into the profile; the journal and the audit log in the state directory.
    ``keep_old``: how long the old key stays active after the new one is written (0s:
    deactivated and deleted at once)."""
    state = state_dir()
    path = str(profile.path).replace("{", "{{").replace("}", "}}")  # a template
    raw: dict[str, Any] = {
        "journal": {"url": f"sqlite://{state / 'journal.db'}"},
        "audit": {"file": str(state / "audit.jsonl"), "stream": "none"},
        "aws": {"profile": profile.name},
        "rules": [
            {
                "name": RULE,
                "kind": str(Kind.ACCESS_KEY),
                # Never due by age: this command starts rotations itself, and only finishes
                # one under way (after --keep-old) by a sweep.
                "max_age": format_duration(MAX_DURATION),
                "deactivate_after": format_duration(keep_old),
                "delete_after": "0s",
                "select": {"users": [user]},
                "sink": {
                    "type": "file",
                    "path": path,
                    "format": "aws-credentials",
                    "profile": profile.name,
                },
            }
        ],
    }
    return Config(**raw)


def make_state_dir() -> Path:
    """The state directory, created (mode 0700) if missing."""
    state = state_dir()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state


async def rotate_profile(
    profile: Profile, config: Config, account: str, user: str, *, dry_run: bool
) -> Report:
    """Rotate the profile's key now, or — if a rotation of the user's key is under way (an
    interrupted run, or one whose old key ``--keep-old`` keeps) — finish it (a sweep
    advances it, or reports when its next step is due)."""
    from rotator.app import open_engine
    from rotator.rotation.emergency import Request

    async with open_engine(config) as engine:
        journal = engine.rotations.journal
        under_way = [
            r
            for r in await journal.list_active()
            if (r.account, r.user, r.kind) == (account, user, Kind.ACCESS_KEY)
        ]
        if not under_way:
            request = Request(user=user, kind=Kind.ACCESS_KEY, credential_id=profile.access_key_id)
            return await engine.rotate_now(
                request, access_key_id=profile.access_key_id, dry_run=dry_run
            )
        result = await engine.sweep(dry_run=dry_run)
    mine = [r for r in result.reports if r.decision.rotation_id == under_way[0].rotation_id]
    if not mine:  # the planner always has a decision for a rotation in flight
        raise RotatorError(f"rotation {under_way[0].rotation_id} under way was not planned")
    return mine[0]
