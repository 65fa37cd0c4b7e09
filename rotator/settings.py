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
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Literal
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
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rotator.accounts import AccountsSettings
from rotator.config_problems import message, problem
from rotator.cron import CronExpr
from rotator.errors import ConfigError
from rotator.kinds import AnyRule
from rotator.policy import Duration, check_rules, format_duration


def state_dir() -> Path:
    """Where rotator keeps state by default: ``$XDG_STATE_HOME/rotator`` or
    ``~/.local/state/rotator``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rotator"


def default_journal_url() -> str:
    return f"sqlite://{state_dir() / 'journal.db'}"  # sqlite:///home/... (absolute)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JournalSettings(_Section):
    """``[journal]``: where rotation records live."""

    url: str = Field(default_factory=default_journal_url)
    lease_ttl: Duration = timedelta(minutes=5)

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


class AwsSettings(_Section):
    """``[aws]``: how rotator talks to AWS (the standard AWS environment fills the rest)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = Field(default=8, ge=1, le=20)
    retry_mode: Literal["standard", "adaptive", "legacy"] = "adaptive"
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)


class VerifySettings(_Section):
    """``[verify]``: how long a new credential may take to start working (IAM is eventually
    consistent: a new access key can fail for a few seconds)."""

    attempts: int = Field(default=8, ge=1, le=30)
    initial_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(seconds=15)


class RetrySettings(_Section):
    """``[retry]``: how a step that hits a transient error (throttling, 5xx, a dropped
    connection, ``EntityTemporarilyUnmodifiable``) is retried within a sweep, on top of
    botocore's own per-call retries. After the last attempt the step waits for the next
    sweep."""

    attempts: int = Field(default=3, ge=1, le=10)
    initial_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(seconds=8)


class DaemonSettings(_Section):
    """``[daemon]``: when ``rotator daemon`` sweeps and where it serves health and metrics.
    Rules with their own ``schedule`` are swept on it; the others on ``schedule`` here (or
    every ``interval``, for tests and short cycles)."""

    schedule: CronExpr | None = None  # default "0 * * * *" unless interval is given
    interval: Duration | None = None
    timezone: str = "UTC"
    jitter: Duration = timedelta(0)
    misfire_grace_time: Duration = timedelta(minutes=5)
    drain_timeout: Duration = timedelta(minutes=10)
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
    timeout: Duration = timedelta(seconds=10)

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


def call_budget(aws: AwsSettings) -> timedelta:
    """The longest one AWS call may take: its connect and read timeouts."""
    return timedelta(seconds=aws.connect_timeout + aws.read_timeout)


def lease_floor(aws: AwsSettings) -> timedelta:
    """The shortest ``lease_ttl`` accepted: twice ``call_budget``, whole seconds up."""
    return timedelta(seconds=math.ceil(2 * call_budget(aws).total_seconds()))


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
    def _lease_outlasts_a_call(self) -> Config:
        floor = lease_floor(self.aws)
        if self.journal.lease_ttl < floor:
            raise ValueError(
                f"journal.lease_ttl {format_duration(self.journal.lease_ttl)} is below "
                f"{format_duration(floor)}: a worker checks its lease before each AWS call, "
                "and one call may take up to aws.connect_timeout + aws.read_timeout "
                f"({self.aws.connect_timeout + self.aws.read_timeout:g}s); the lease must "
                "outlast that twice over (raise lease_ttl, or lower the timeouts)"
            )
        return self

    @model_validator(mode="after")
    def _rules_fit_accounts(self) -> Config:
        problems: list[str] = []
        accounts = self.accounts
        for rule in self.rules:
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
            if (
                shared
                and many
                and "{account}" not in template
                and "{account_name}" not in (template)
            ):
                problems.append(
                    f"{where}: sink template {template!r} has no {{account}} (or "
                    "{account_name}) but the rule's secrets from several accounts go to one "
                    "place: they would overwrite each other"
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


def load_config(path: Path) -> Config:
    """Read, validate and return the policy file at ``path`` with environment overrides.
    Raises ``ConfigError`` listing every problem, each naming the rule and field."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    return load_config_text(text, source)


def load_config_text(text: str, source: str) -> Config:
    """``load_config`` for a policy that is not a file (an SSM parameter's value): the
    TOML ``text``, validated with environment overrides; ``source`` names it in every
    problem of the ``ConfigError``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    try:
        return Config(**raw)
    except ValidationError as exc:
        problems = [problem(e, raw) for e in exc.errors()]
        raise ConfigError(source, problems) from None


class LambdaSettings(BaseSettings):
    """Where the Lambda handler finds its policy, from the function's environment: a file
    bundled with the function (``ROTATOR_CONFIG``) or an SSM parameter holding the TOML
    (``ROTATOR_CONFIG_SSM``, a name or ARN; SecureString or String). A sweep starts no new
    rotation once less than ``ROTATOR_LAMBDA_MARGIN`` of the invocation's time remains."""

    model_config = SettingsConfigDict(env_prefix="ROTATOR_", extra="ignore", frozen=True)

    config: Path | None = None
    config_ssm: str | None = None
    lambda_margin: Duration = timedelta(minutes=2)

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
