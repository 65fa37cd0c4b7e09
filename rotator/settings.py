"""Runtime settings and the policy file: the only module that reads the environment.

The policy file is TOML. Environment variables prefixed ``ROTATOR_`` override its
settings, nested with ``__`` (``ROTATOR_JOURNAL__URL``, ``ROTATOR_MAX_CONCURRENCY``,
``ROTATOR_AUDIT__FILE``). Every problem is reported at once, each naming the file, the rule
(by name) and the field, as a ``ConfigError``; nothing touches AWS before the file is valid.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rotator.errors import ConfigError
from rotator.model import Kind
from rotator.policy import Duration, check_rules
from rotator.rules import AnyRule


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
    max_concurrency: int = Field(default=8, ge=1, le=128)
    rules: list[AnyRule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[AnyRule]) -> list[AnyRule]:
        check_rules(list(rules))
        return rules

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


_TAGS = frozenset(
    {
        *(str(k) for k in Kind),
        "file",
        "secretsmanager",
        "memory",
        "ssm",
        "self-signed",
        "local-ca",
        "directory",
    }
)


def _describe(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """``rules[0].max_age`` -> ``rule 'ci-keys': max_age``."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules") or []
        name = rules[loc[1]].get("name") if loc[1] < len(rules) else None
        rule = f"rule {name!r}" if name else f"rules[{loc[1]}]"
        # Drop discriminator tags pydantic inserts (e.g. 'file' in sink.file.path).
        rest = [str(p) for p in loc[2:] if p not in _TAGS]
        return f"{rule}: {'.'.join(rest) or '(rule)'}"
    return ".".join(str(p) for p in loc) or "(file)"


def _loc(error: Any) -> tuple[int | str, ...]:
    """The error's location; an unknown rule kind is reported at the rule's ``kind``."""
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid" and "kind" in str(error.get("ctx", {})):
        return (*loc, "kind")
    return loc


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        field = str(ctx.get("discriminator", "'type'")).strip("'")
        expected = ctx.get("expected_tags")
        if field == "kind":
            expected = ", ".join(repr(str(k)) for k in Kind)
        return f"unknown {field} {ctx.get('tag')!r}; expected one of {expected}"
    if kind == "enum":
        ctx = error.get("ctx", {})
        return f"unknown value {error.get('input')!r}; expected one of {ctx.get('expected')}"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def load_config(path: Path) -> Config:
    """Read, validate and return the policy file at ``path`` with environment overrides.
    Raises ``ConfigError`` listing every problem, each naming the rule and field."""
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    try:
        return Config(**raw)
    except ValidationError as exc:
        problems = [f"{_describe(_loc(e), raw)}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(source, problems) from None
