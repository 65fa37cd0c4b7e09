"""Runtime settings and the policy file: the only module that reads the environment.

The policy file is TOML. Environment variables prefixed ``ROTATOR_`` override its
settings, nested with ``__`` (``ROTATOR_JOURNAL__URL``, ``ROTATOR_MAX_CONCURRENCY``,
``ROTATOR_AUDIT__FILE``). Every problem is reported at once, each naming the file, the rule
(by name) and the field, as a ``ConfigError``; nothing touches AWS before the file is valid.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from rotator import cron
from rotator.accounts import AccountsSettings
from rotator.config_problems import did_you_mean, message
from rotator.cron import CronExpr
from rotator.errors import ConfigError
from rotator.kinds import AnyRule
from rotator.policy import Duration, Rule, at_most, check_rules, format_duration


def state_dir() -> Path:
    """Where rotator keeps state by default: ``$XDG_STATE_HOME/rotator`` or
    ``~/.local/state/rotator``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rotator"


def default_journal_url() -> str:
    return f"sqlite://{state_dir() / 'journal.db'}"  # sqlite:///home/... (absolute)


_REGION = re.compile(r"[a-z]{2,5}(-[a-z]+)+-\d{1,2}")  # us-east-1, us-gov-west-1, eusc-de-east-1

MAX_VERIFY_REGIONS = 32


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JournalSettings(_Section):
    """``[journal]``: where rotation records live."""

    url: str = Field(default_factory=default_journal_url)
    lease_ttl: Annotated[Duration, at_most(timedelta(days=1))] = timedelta(minutes=5)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "memory://", "dynamodb://")):
            raise ValueError(
                f"unsupported journal url {value!r}: use sqlite:///PATH, memory:// "
                "or dynamodb://TABLE"
            )
        return value


class AuditSettings(_Section):
    """``[audit]``: where the JSON-lines audit log goes."""

    file: Path | None = None
    stream: Literal["stdout", "stderr", "none"] = "stderr"
    level: Literal["debug", "info", "warning", "error"] = "info"
    # How the stream shows events: "auto" (lines for people at a terminal, JSON lines
    # otherwise), "json" or "console". The file is always JSON lines.
    format: Literal["auto", "json", "console"] = "auto"


class AwsSettings(_Section):
    """``[aws]``: how rotator talks to AWS (the standard AWS environment fills the rest)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = Field(default=8, ge=1, le=20)
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    # The most IAM calls per second rotator makes in one account (all workers together);
    # unset: as many as IAM accepts (the pace adapts when IAM throttles).
    max_iam_calls_per_second: float | None = Field(default=None, gt=0, le=1000)


class VerifySettings(_Section):
    """``[verify]``: how long a new credential may take to start working (IAM is eventually
    consistent: a new access key can fail for a few seconds)."""

    attempts: int = Field(default=8, ge=1, le=30)
    initial_delay: Annotated[Duration, at_most(timedelta(minutes=5))] = timedelta(seconds=1)
    max_delay: Annotated[Duration, at_most(timedelta(minutes=5))] = timedelta(seconds=15)
    # The regional STS endpoints a new access key must answer from (empty: the session's
    # region); IAM's data planes are regional and a key may work in one before another.
    regions: tuple[str, ...] = Field(default=(), max_length=MAX_VERIFY_REGIONS)
    # Answers in a row each region must give (a lone success may be a lucky replica).
    consecutive: int = Field(default=2, ge=1, le=10)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [r for r in value if not _REGION.fullmatch(r)]
        if bad:
            raise ValueError(f"not AWS region names: {', '.join(map(repr, bad))} (e.g. us-east-1)")
        if len(set(value)) != len(value):
            raise ValueError("a region is listed twice")
        return value


class RetrySettings(_Section):
    """``[retry]``: how a step that hits a transient error (throttling, 5xx, a dropped
    connection, ``EntityTemporarilyUnmodifiable``) is retried within a sweep, on top of
    botocore's own per-call retries. After the last attempt the step waits for the next
    sweep."""

    attempts: int = Field(default=3, ge=1, le=10)
    initial_delay: Annotated[Duration, at_most(timedelta(minutes=5))] = timedelta(seconds=1)
    max_delay: Annotated[Duration, at_most(timedelta(minutes=5))] = timedelta(seconds=8)


class DaemonSettings(_Section):
    """``[daemon]``: when ``rotator daemon`` sweeps and where it serves health and metrics.
    Rules with their own ``schedule`` are swept on it; the others on ``schedule`` here (or
    every ``interval``, for tests and short cycles)."""

    schedule: CronExpr | None = None  # default "0 * * * *" unless interval is given
    interval: Annotated[Duration, at_most(timedelta(days=366))] | None = None
    timezone: str = "UTC"
    jitter: Annotated[Duration, at_most(timedelta(days=1))] = timedelta(0)
    misfire_grace_time: Annotated[Duration, at_most(timedelta(days=1))] = timedelta(minutes=5)
    drain_timeout: Annotated[Duration, at_most(timedelta(days=1))] = timedelta(minutes=10)
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=9464, ge=0, le=65535)

    @model_validator(mode="after")
    def _one_cadence(self) -> DaemonSettings:
        if self.schedule is not None and self.interval is not None:
            raise ValueError("give schedule (cron) or interval, not both")
        if self.interval is not None and self.interval.total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        if self.misfire_grace_time.total_seconds() < 1:
            raise ValueError("misfire_grace_time must be at least 1s")
        return self

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def default_schedule(self) -> str:
        """The cron schedule of rules without their own (when no interval is set)."""
        return self.schedule or "0 * * * *"


class NotifySettings(_Section):
    """``[notify]``: one message per sweep to a webhook and/or SNS, and one per owner."""

    webhook_url: SecretStr | None = None  # a secret: webhook URLs carry their own token
    sns_topic_arn: str | None = None
    owner_tag: str | None = None  # e.g. "owner-email": its value gets its own message
    send_empty: bool = False  # also send when a sweep changed and reported nothing
    timeout: Annotated[Duration, at_most(timedelta(minutes=5))] = timedelta(seconds=10)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the URL: its path is the webhook's secret token.
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("webhook_url must be an http(s):// URL")
        return value

    @field_validator("sns_topic_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:\S+", value
        ):
            raise ValueError(f"{value!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return value

    @property
    def enabled(self) -> bool:
        """True if any channel is configured."""
        return self.webhook_url is not None or self.sns_topic_arn is not None


def deadline_problems(
    rules: Sequence[Rule], verify: VerifySettings, daemon: DaemonSettings
) -> list[str]:
    """Each rule with a deadline learns what the settings add before its old credential
    goes inactive (verification, the wait for its next sweep); one that leaves no time to
    start a rotation is a problem, with the sum."""
    problems: list[str] = []
    for rule in rules:
        if rule.deadline is None:
            continue
        rule.set_overhead(verify_budget(verify) + sweep_gap(daemon, rule.schedule))
        problem = rule.deadline_problem()
        if problem is not None:
            problems.append(f"rule {rule.name!r}: {problem}")
    return problems


def lease_problems(journal: JournalSettings, aws: AwsSettings) -> list[str]:
    """A lease that would not outlast an AWS call twice over."""
    floor = lease_floor(aws)
    if journal.lease_ttl >= floor:
        return []
    return [
        f"journal.lease_ttl {format_duration(journal.lease_ttl)} is below "
        f"{format_duration(floor)}: a worker checks its lease before each AWS call, "
        "and one call may take up to aws.connect_timeout + aws.read_timeout "
        f"({aws.connect_timeout + aws.read_timeout:g}s); the lease must "
        "outlast that twice over (raise lease_ttl, or lower the timeouts)"
    ]


def account_problems(rules: Sequence[Rule], accounts: AccountsSettings | None) -> list[str]:
    """Rules that name accounts without ``[accounts]``, or whose secrets from several
    accounts would land in one place."""
    problems: list[str] = []
    for rule in rules:
        where = f"rule {rule.name!r}"
        if accounts is None:
            if rule.account_scoped:
                problems.append(
                    f"{where}: accounts, ous and account_tags need an [accounts] section"
                )
            continue
        if (rule.ous is not None or rule.account_tags) and not accounts.discovers:
            problems.append(
                f"{where}: ous and account_tags match only accounts discovered with "
                "[accounts.organization] (listed members have no OU or tags)"
            )
        template = rule.sink.template
        shared = rule.sink.type in ("file", "memory") or rule.sink_in == "hub"
        many = accounts.discovers or len(accounts.members) + accounts.include_self > 1
        if shared and many and "{account}" not in template and "{account_name}" not in template:
            problems.append(
                f"{where}: sink template {template!r} has no {{account}} (or "
                "{account_name}) but the rule's secrets from several accounts go to one "
                "place: they would overwrite each other"
            )
    return problems


def cross_problems(
    rules: Sequence[Rule],
    *,
    journal: JournalSettings | None,
    aws: AwsSettings | None,
    verify: VerifySettings | None,
    daemon: DaemonSettings | None,
    accounts: tuple[AccountsSettings | None, ...],
) -> list[str]:
    """The checks that span sections, for the ``rules`` and sections that are valid
    (None, or an empty ``accounts``: that one is not, and what needs it is not checked)."""
    problems: list[str] = []
    if verify is not None and daemon is not None:
        problems += deadline_problems(rules, verify, daemon)
    if journal is not None and aws is not None:
        problems += lease_problems(journal, aws)
    if accounts:
        problems += account_problems(rules, accounts[0])
    return problems


def call_budget(aws: AwsSettings) -> timedelta:
    """The longest one AWS call may take: its connect and read timeouts."""
    return timedelta(seconds=aws.connect_timeout + aws.read_timeout)


def lease_floor(aws: AwsSettings) -> timedelta:
    """The shortest ``lease_ttl`` accepted: twice ``call_budget``, whole seconds up."""
    return timedelta(seconds=math.ceil(2 * call_budget(aws).total_seconds()))


def verify_budget(verify: VerifySettings) -> timedelta:
    """The longest a verification may take: every attempt waiting ``max_delay``."""
    return verify.attempts * verify.max_delay


def sweep_gap(daemon: DaemonSettings, schedule: str | None) -> timedelta:
    """The longest a due rotation may wait for the next sweep of a rule with ``schedule``
    (else the daemon's schedule, or its interval)."""
    if schedule is None and daemon.interval is not None:
        return daemon.interval
    return cron.longest_gap(schedule or daemon.default_schedule)


class Config(BaseSettings):
    """The whole policy file plus environment overrides."""

    model_config = SettingsConfigDict(
        env_prefix="ROTATOR_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    journal: JournalSettings = Field(default_factory=JournalSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    max_concurrency: int = Field(default=8, ge=1, le=128)
    accounts: AccountsSettings | None = None  # many accounts (rotator/accounts.py)
    rules: list[AnyRule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[AnyRule]) -> list[AnyRule]:
        check_rules(list(rules))
        return rules

    @model_validator(mode="after")
    def _settings_fit_rules(self) -> Config:
        """What no section can check alone (``cross_problems``). ``load_config_text``
        reports these one a line, also when other fields are invalid."""
        problems = cross_problems(
            self.rules,
            journal=self.journal,
            aws=self.aws,
            verify=self.verify,
            daemon=self.daemon,
            accounts=(self.accounts,),
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment overrides them.
        return (env_settings, init_settings)

    def rule(self, name: str) -> AnyRule | None:
        return next((r for r in self.rules if r.name == name), None)


def read_policy(path: Path) -> str:
    """The text of the policy file at ``path``; ``ConfigError`` if it cannot be read."""
    source = str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None


def load_config(path: Path) -> Config:
    """Read, validate and return the policy file at ``path`` with environment overrides.
    Raises ``ConfigError`` listing every problem, each naming the rule and field."""
    return load_config_text(read_policy(path), str(path))


def load_config_text(text: str, source: str) -> Config:
    """``load_config`` for a policy that is not a file (an SSM parameter's value): the
    TOML ``text``, validated with environment overrides; ``source`` names it in every
    problem of the ``ConfigError``."""
    from rotator.settings_check import check_text  # it builds on this module

    checked = check_text(text)
    if checked.config is None:
        # In the same round: what is wrong with the AWS environment and the audit file.
        problems = checked.problems + aws_problems(checked.section(AwsSettings, "aws"))
        problems += audit_problems(checked.section(AuditSettings, "audit"))
        raise ConfigError(source, problems)
    return checked.config


def environment_values() -> dict[str, Any]:
    """The settings the ``ROTATOR_*`` variables set, as pydantic-settings reads them."""
    from pydantic_settings import EnvSettingsSource

    try:
        return dict(EnvSettingsSource(Config)())
    except SettingsError:
        return {}


def from_environment() -> dict[str, str]:
    """The top-level settings a ``ROTATOR_*`` variable overrides -> that variable."""
    found: dict[str, str] = {}
    for name in os.environ:
        upper = name.upper()
        if upper.startswith("ROTATOR_"):
            setting = upper.removeprefix("ROTATOR_").split("__")[0].lower()
            if setting in Config.model_fields:
                found[setting] = name
    return found


# ROTATOR_* variables rotator reads outside ``Config`` (the Lambda handler's settings).
_OTHER_VARIABLES = ("ROTATOR_CONFIG", "ROTATOR_CONFIG_SSM", "ROTATOR_LAMBDA_MARGIN")


def environment_warnings() -> list[str]:
    """``ROTATOR_*`` variables no setting reads (a typo is otherwise silently ignored),
    with the nearest name a setting does read."""
    known = [f"ROTATOR_{name.upper()}" for name in Config.model_fields]
    warnings = []
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith("ROTATOR_") or upper in _OTHER_VARIABLES:
            continue
        if upper.split("__")[0] in known:
            continue
        hint = did_you_mean(upper.split("__")[0], [*known, *_OTHER_VARIABLES])
        warnings.append(f"environment: {name}: no setting reads this variable{hint}")
    return warnings


def env_problem(error: Any, variable: str) -> str:
    """A problem with a value a ``ROTATOR_*`` variable set: named by the variable."""
    where = ".".join(str(p) for p in error["loc"])
    return f"environment: {variable}: {where}: {message(error, Config)}"


class LambdaSettings(BaseSettings):
    """Where the Lambda handler finds its policy, from the function's environment: a file
    bundled with the function (``ROTATOR_CONFIG``) or an SSM parameter holding the TOML
    (``ROTATOR_CONFIG_SSM``, a name or ARN; SecureString or String). A sweep starts no new
    rotation once less than ``ROTATOR_LAMBDA_MARGIN`` of the invocation's time remains."""

    model_config = SettingsConfigDict(env_prefix="ROTATOR_", extra="ignore", frozen=True)

    config: Path | None = None
    config_ssm: str | None = None
    lambda_margin: Annotated[Duration, at_most(timedelta(minutes=15))] = timedelta(minutes=2)

    @model_validator(mode="after")
    def _one_source(self) -> LambdaSettings:
        if (self.config is None) == (self.config_ssm is None):
            raise ValueError(
                "set exactly one of ROTATOR_CONFIG (a policy file bundled with the function) "
                "and ROTATOR_CONFIG_SSM (an SSM parameter holding it)"
            )
        return self


def lambda_settings() -> LambdaSettings:
    """The Lambda handler's settings from the environment; ``ConfigError`` if unusable."""
    try:
        return LambdaSettings()
    except ValidationError as exc:
        problems = [
            f"ROTATOR_{str(e['loc'][0]).upper() if e['loc'] else 'CONFIG'}: {message(e)}"
            for e in exc.errors()
        ]
        raise ConfigError("environment", problems) from None


def aws_problems(aws: AwsSettings, *, environment: bool = True) -> list[str]:
    """What is wrong with how rotator would reach AWS, before any call: the ``[aws]``
    section and the standard AWS environment (a region that is not one, an endpoint that
    is not a URL, a profile no file defines, half of a key pair). Each problem names the
    setting or variable. Reads the environment and the AWS config files (not with
    ``environment=False``: then only the section's own values); calls nothing."""
    problems: list[str] = []
    regions = [("aws.region", aws.region)]
    endpoints = [("aws.endpoint_url", aws.endpoint_url)]
    if environment:
        regions += [
            (f"environment: {k}", os.environ.get(k)) for k in ("AWS_REGION", "AWS_DEFAULT_REGION")
        ]
        endpoints += [
            (f"environment: {k}", v)
            for k, v in sorted(os.environ.items())
            if k.startswith("AWS_ENDPOINT_URL")
        ]
    for where, region in regions:
        if region is not None and not _REGION.fullmatch(region):
            problems.append(f"{where}: {region!r} is not an AWS region (e.g. us-east-1)")
    for where, url in endpoints:
        if url is not None and not _is_url(url):
            problems.append(f"{where}: {url!r} is not an http(s):// URL")
    if not environment:
        return problems
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        given, missing = (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if key
            else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        )
        problems.append(
            f"environment: {missing}: {given} is set but {missing} is not (set both, or neither)"
        )
    profile_from = "aws.profile" if aws.profile else "environment: AWS_PROFILE"
    profile = aws.profile or os.environ.get("AWS_PROFILE")
    if profile:
        known = _profiles()
        if known is not None and profile not in known:
            problems.append(
                f"{profile_from}: no profile {profile!r} in the AWS config or credentials "
                "files (see `aws configure list-profiles`)"
            )
    return problems


def _is_url(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _profiles() -> list[str] | None:
    """The profiles the AWS config and credentials files define (None if unreadable)."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        return list(botocore.session.Session(profile=None).available_profiles)
    except (BotoCoreError, OSError, ValueError):
        return None


def audit_problems(audit: AuditSettings) -> list[str]:
    """Whether the audit log file could be opened for appending, checked without creating
    it: the path is not a directory, its nearest existing ancestor is a writable
    directory, and an existing file is writable."""
    if audit.file is None:
        return []
    path = audit.file.expanduser()
    where = f"audit.file: {path}"
    if path.is_dir():
        return [f"{where}: is a directory"]
    if path.exists():
        return [] if os.access(path, os.W_OK) else [f"{where}: not writable"]
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{where}: {parent} is not a directory"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{where}: directory {parent} is not writable"]
    return []
