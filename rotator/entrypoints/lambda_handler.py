"""The Lambda entry point: ``rotator.entrypoints.lambda_handler.handler``.

Thin, like the CLI: read the settings (``rotator.settings.lambda_settings``), load the
policy, build the engine (``rotator.app``), call one function, return its result as JSON.

Events:

* an EventBridge scheduled event (or ``{}``) — one sweep;
* ``{"rotator": {"action": "sweep", "dry_run": false}}`` — the same, asked for by name;
* ``{"rotator": {"action": "rotate", "access_key_id": "AKIA…", "emergency": true,
  "hold": "0s"}}`` — ``rotator rotate`` (also ``user``, ``kind``, ``credential_id``,
  ``service``, ``dry_run``): an emergency deactivates the leaked credential first.

Any other shape (a misspelt ``"Rotator"``, extra keys) is refused as ``InputError``, never
run as a sweep.

The policy comes from a file bundled with the function (``ROTATOR_CONFIG``) or from an SSM
parameter (``ROTATOR_CONFIG_SSM``); its journal must be ``dynamodb://`` (a Lambda has no
disk that lasts). A sweep starts no new rotation once less than ``ROTATOR_LAMBDA_MARGIN``
(default 2 minutes) of the invocation remains: the next invocation does the rest.

The result is ``SweepResult.as_dict()`` (plus ``mode``, ``deferred``, ``complete``) or
``Report.as_dict()`` (plus ``mode``, ``ok``). Any error is returned, not raised, as
``{"ok": false, "error": TYPE, "message": ...}`` and logged as ``lambda.failed``; results,
messages and log lines never hold a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from rotator import app as application
from rotator import audit, redaction
from rotator.aws import Aws, aws_errors
from rotator.errors import ConfigError, InputError, Permanent, RotatorError
from rotator.model import Kind
from rotator.policy import Duration
from rotator.rotation.emergency import Request, access_key_id_problem
from rotator.settings import Config, LambdaSettings, lambda_settings

LAMBDA_FAILED = "lambda.failed"


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepCommand(_Command):
    """One sweep (what a schedule asks for)."""

    action: Literal["sweep"] = "sweep"
    dry_run: bool = False


class RotateCommand(_Command):
    """``rotator rotate``: one credential now; ``emergency`` deactivates it first."""

    action: Literal["rotate"]
    access_key_id: str | None = None
    user: str | None = None
    kind: Kind = Kind.ACCESS_KEY
    credential_id: str | None = None
    service: str = ""
    emergency: bool = False
    hold: Duration = timedelta(0)
    dry_run: bool = False

    @field_validator("access_key_id")
    @classmethod
    def _key_id(cls, value: str | None) -> str | None:
        if value is not None and (problem := access_key_id_problem(value)):
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _hold_needs_emergency(self) -> RotateCommand:
        if "hold" in self.model_fields_set and not self.emergency:
            raise ValueError("hold: only an emergency rotation holds the old credential")
        return self


Command = Annotated[SweepCommand | RotateCommand, Field(discriminator="action")]


def parse_event(event: object) -> SweepCommand | RotateCommand:
    """The command an event carries. Three shapes, nothing else: an EventBridge scheduled
    event (``"source": "aws.events"``, ``"detail-type": "Scheduled Event"``) or an empty
    one (``{}``, ``null``) is a sweep; ``{"rotator": {...}}`` is the command it holds. Any
    other shape is an ``InputError`` — never a sweep: a misspelt emergency
    (``{"Rotator": ...}``) must not run as a scheduled sweep and leave the leaked key
    active. ``InputError`` names what is wrong with a malformed command."""
    if event is None or (isinstance(event, Mapping) and not event):
        return SweepCommand()
    if not isinstance(event, Mapping):
        raise InputError("the event must be a JSON object")
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return SweepCommand()
    if set(event) != {"rotator"}:
        keys = ", ".join(repr(str(k)[:40]) for k in sorted(event, key=str)[:8])
        raise InputError(
            f"unknown event shape (keys {keys}): expected an EventBridge scheduled event, "
            '{} or {"rotator": {"action": "sweep" | "rotate", ...}}'
        )
    try:
        return TypeAdapter(Command).validate_python(event["rotator"])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'rotator'}: {e['msg']}" for e in exc.errors()
        )
        raise InputError(f"invalid rotator event: {problems}") from None


def handler(event: object, context: Any = None) -> dict[str, Any]:
    """Run what ``event`` asks for; returns a JSON-serialisable result (never raises)."""
    close = audit.configure()  # JSON lines on stderr until the policy says otherwise
    try:
        return asyncio.run(_handle(event, context))
    except Exception as exc:
        return _failed(exc)
    finally:
        close()


async def _handle(event: object, context: Any) -> dict[str, Any]:
    command = parse_event(event)
    settings = lambda_settings()
    config = await load(settings)
    close = application.configure_audit(config)
    try:
        return await _run(command, config, settings, context)
    except Exception as exc:
        return _failed(exc)  # logged where the policy sends the audit log
    finally:
        close()


async def _run(
    command: SweepCommand | RotateCommand, config: Config, settings: LambdaSettings, context: Any
) -> dict[str, Any]:
    owner = f"lambda:{getattr(context, 'aws_request_id', '')}" if context else None
    budget = time_left(context, settings.lambda_margin)
    async with application.open_engine(config, owner=owner) as engine:
        if isinstance(command, SweepCommand):
            result = await engine.sweep(dry_run=command.dry_run, time_left=budget)
            deferred = result.counts()["deferred"]
            return {
                "mode": "sweep",
                **result.as_dict(),
                "deferred": deferred,
                "complete": not deferred,
            }
        report = await engine.rotate_now(
            _request(command),
            access_key_id=command.access_key_id,
            dry_run=command.dry_run,
            # An escalation waits for a busy worker no longer than the invocation can.
            patience=None if budget is None else timedelta(seconds=max(0.0, budget())),
        )
    return {"mode": "rotate", "ok": report.ok, **report.as_dict()}


def _failed(exc: Exception) -> dict[str, Any]:
    """The result (and the ``lambda.failed`` log line) for an error; secrets scrubbed."""
    message = redaction.scrub(str(exc))
    log = audit.get_logger()
    if isinstance(exc, RotatorError):
        log.error(LAMBDA_FAILED, error=type(exc).__name__, reason=message)
    else:  # a bug: keep the traceback (the audit log redacts it)
        log.exception(LAMBDA_FAILED, error=type(exc).__name__, reason=message)
    return {"ok": False, "error": type(exc).__name__, "message": message}


def _request(command: RotateCommand) -> Request:
    return Request(
        user=command.user,
        kind=command.kind,
        credential_id=command.credential_id,
        slot=command.service,
        emergency=command.emergency,
        hold=command.hold,
    )


def time_left(context: Any, margin: timedelta) -> Callable[[], float] | None:
    """Seconds left to start new work: the invocation's remaining time minus ``margin``
    (None without a Lambda context: no limit)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return lambda: float(remaining()) / 1000 - margin.total_seconds()


async def load(settings: LambdaSettings) -> Config:
    """The policy from the bundled file or the SSM parameter, checked as the CLI checks it
    (``rotator.app.load``), with a DynamoDB journal. Raises ``ConfigError``."""
    if settings.config is not None:
        source, config = str(settings.config), application.load(settings.config)
    else:
        assert settings.config_ssm is not None  # LambdaSettings requires one of the two
        source = f"ssm:{settings.config_ssm}"
        config = application.load_text(await _parameter(settings.config_ssm, source), source)
    if not config.journal.url.startswith("dynamodb://"):
        raise ConfigError(
            source,
            [
                f"journal.url: {config.journal.url!r}: the Lambda handler needs a "
                "dynamodb://TABLE journal (a Lambda has no disk that lasts)"
            ],
        )
    return config


async def _parameter(name: str, source: str) -> str:
    """The value of SSM parameter ``name`` (decrypted), read with the function's role."""
    try:
        with aws_errors("GetParameter", parameter=name):
            async with Aws().client("ssm") as ssm:
                got = await ssm.get_parameter(Name=name, WithDecryption=True)
    except Permanent as exc:  # a transient error propagates: the next invocation retries
        raise ConfigError(source, [f"cannot read the parameter: {exc.code}"]) from None
    return str(got["Parameter"]["Value"])
