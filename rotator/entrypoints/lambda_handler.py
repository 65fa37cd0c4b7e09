"""The Lambda entry point: ``rotator.entrypoints.lambda_handler.handler``.

Thin, like the CLI: read the settings (``rotator.settings.lambda_settings``), load the
policy, build the engine (``rotator.app``), call one function, return its result as JSON.

Events:

* an EventBridge scheduled event (or ``{}``) — one sweep;
* ``{"rotator": {"action": "sweep", "dry_run": false}}`` — the same, asked for by name;
* ``{"rotator": {"action": "rotate", "access_key_id": "AKIA…", "emergency": true,
  "hold": "0s"}}`` — ``rotator rotate`` (also ``user``, ``kind``, ``credential_id``,
  ``service``, ``dry_run``, ``account``): an emergency deactivates the leaked credential
  first; with ``[accounts]`` the key is rotated in the account it belongs to;
* an AWS Health event ``AWS_RISK_CREDENTIALS_EXPOSED`` (an EventBridge rule on
  ``aws.health``) — an emergency rotation of each exposed key in ``affectedEntities``, in
  its own account (``mode: exposed-keys``); the quarantine policy AWS attached stays.

With ``[accounts]`` a sweep covers every account (``mode: sweep-accounts``), and the Step
Functions fan-out (``deploy/org-template.yaml``) uses three more:

* ``{"rotator": {"action": "list-accounts", "batch_size": 5}}`` (also ``accounts``,
  ``ous``, ``dry_run``) — the accounts, as ``batches``: each one a ready
  ``sweep-accounts`` event, the Map's items;
* ``{"rotator": {"action": "sweep-accounts", "accounts": [{"id": "…", "name": "…",
  "ou_ids": [...], "ou_path": "/…", "tags": {}}]}}`` — sweep those accounts;
* ``{"rotator": {"action": "summarize", "results": [...]}}`` — the Map's results added up
  (the ``org.summary`` audit event).

Any other shape (a misspelt ``"Rotator"``, extra keys) is refused as ``InputError``, never
run as a sweep.

The policy comes from a file bundled with the function (``ROTATOR_CONFIG``) or from an SSM
parameter (``ROTATOR_CONFIG_SSM``); its journal must be ``dynamodb://`` (a Lambda has no
disk that lasts). A sweep starts no new rotation once less than ``ROTATOR_LAMBDA_MARGIN``
(default 2 minutes) of the invocation remains: the next invocation does the rest.

A sweep's result is the ``sweep`` document of ``rotator run --output json`` (plus ``mode``,
``deferred``, ``complete``), a rotation's the ``rotation`` document of ``rotator rotate
--output json`` (plus ``mode``): both carry ``schema_version`` and ``kind`` and match the
schemas in ``rotator/schemas/`` (docs/output.md). Any error is returned, not raised, as
``{"ok": false, "error": TYPE, "message": ...}`` and logged as ``lambda.failed``; results,
messages and log lines never hold a secret.
"""

from __future__ import annotations

import asyncio
from collections import Counter
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
from rotator import audit, documents, redaction
from rotator.aws import Aws, aws_errors
from rotator.daemon.notify import Notifier
from rotator.errors import ConfigError, InputError, Permanent, RotatorError
from rotator.model import Kind, Plan, new_id, utcnow
from rotator.policy import Account, AccountId, Duration, OuRef
from rotator.rotation.emergency import Request, access_key_id_problem
from rotator.rotation.engine import Engine
from rotator.rotation.org import OrgResult
from rotator.rotation.report import Report, SweepResult, json_counts
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
    account: AccountId | None = None  # with [accounts]: the account of ``user``

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


class ExposedKeysCommand(_Command):
    """An AWS Health ``AWS_RISK_CREDENTIALS_EXPOSED`` event (``parse_event`` makes it from
    the EventBridge event): an emergency rotation of each exposed key, found in its account
    with ``sts:GetAccessKeyInfo`` when ``[accounts]`` is set."""

    action: Literal["exposed-keys"]
    access_key_ids: list[str] = Field(min_length=1)
    hold: Duration = timedelta(0)


EXPOSED = "AWS_RISK_CREDENTIALS_EXPOSED"


def _health_event(event: Mapping[str, Any]) -> ExposedKeysCommand | None:
    """The command for an AWS Health event about exposed credentials, else None."""
    detail = event.get("detail")
    if event.get("source") != "aws.health" or not isinstance(detail, Mapping):
        return None
    if detail.get("eventTypeCode") != EXPOSED:
        return None
    values = [
        str(e.get("entityValue", ""))
        for e in detail.get("affectedEntities") or []
        if isinstance(e, Mapping)
    ]
    keys = [
        v for v in values if v.startswith(("AKIA", "ASIA")) and access_key_id_problem(v) is None
    ]
    if not keys:
        raise InputError(f"an {EXPOSED} event naming no access key in affectedEntities")
    return ExposedKeysCommand(action="exposed-keys", access_key_ids=keys)


class AccountItem(_Command):
    """One account as ``list-accounts`` hands it on (what a rule's account selectors and
    the sweep need: no second trip to Organizations per batch)."""

    id: AccountId
    name: str = ""
    ou_ids: list[str] = Field(default_factory=list)
    ou_path: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    hub: bool = False

    @classmethod
    def of(cls, account: Account) -> AccountItem:
        return cls(
            id=account.id,
            name=account.name,
            ou_ids=list(account.ou_ids),
            ou_path=account.ou_path,
            tags=dict(account.tags),
            hub=account.hub,
        )

    def account(self) -> Account:
        return Account(
            id=self.id,
            name=self.name,
            ou_ids=tuple(self.ou_ids),
            ou_path=self.ou_path,
            tags=self.tags,
            hub=self.hub,
        )


class ListAccountsCommand(_Command):
    """The first state of the Step Functions fan-out: the accounts ``[accounts]`` names
    (narrowed to ``accounts`` / ``ous`` if given), in batches of ``batch_size``, each batch
    a ready ``sweep-accounts`` event for the Map."""

    action: Literal["list-accounts"]
    batch_size: int = Field(default=1, ge=1, le=100)
    accounts: list[AccountId] = Field(default_factory=list)
    ous: list[OuRef] = Field(default_factory=list)
    dry_run: bool = False


class SweepAccountsCommand(_Command):
    """One item of the Map: sweep these accounts (at most 100), each on its own session."""

    action: Literal["sweep-accounts"]
    accounts: list[AccountItem] = Field(min_length=1, max_length=100)
    dry_run: bool = False


class SummarizeCommand(_Command):
    """The last state: the Map's results (``sweep-accounts`` results), added up into one
    summary, logged as ``org.summary``."""

    action: Literal["summarize"]
    results: list[dict[str, Any]]


Command = Annotated[
    SweepCommand | RotateCommand | ListAccountsCommand | SweepAccountsCommand | SummarizeCommand,
    Field(discriminator="action"),
]
AnyCommand = (
    SweepCommand
    | RotateCommand
    | ExposedKeysCommand
    | ListAccountsCommand
    | SweepAccountsCommand
    | SummarizeCommand
)
ORG_SUMMARY = "org.summary"


def parse_event(event: object) -> AnyCommand:
    """The command an event carries. Four shapes, nothing else: an EventBridge scheduled
    event (``"source": "aws.events"``, ``"detail-type": "Scheduled Event"``) or an empty
    one (``{}``, ``null``) is a sweep; an AWS Health ``AWS_RISK_CREDENTIALS_EXPOSED`` event
    is an emergency rotation of each exposed key; ``{"rotator": {...}}`` is the command it
    holds. Any other shape is an ``InputError`` — never a sweep: a misspelt emergency
    (``{"Rotator": ...}``) must not run as a scheduled sweep and leave the leaked key
    active. ``InputError`` names what is wrong with a malformed command."""
    if event is None or (isinstance(event, Mapping) and not event):
        return SweepCommand()
    if not isinstance(event, Mapping):
        raise InputError("the event must be a JSON object")
    if (health := _health_event(event)) is not None:
        return health
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return SweepCommand()
    if set(event) != {"rotator"}:
        keys = ", ".join(repr(str(k)[:40]) for k in sorted(event, key=str)[:8])
        raise InputError(
            f"unknown event shape (keys {keys}): expected an EventBridge scheduled event, "
            'an AWS Health credentials-exposed event, {} or {"rotator": {"action": '
            '"sweep" | "rotate" | "list-accounts" | "sweep-accounts" | "summarize", ...}}'
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
    command: AnyCommand, config: Config, settings: LambdaSettings, context: Any
) -> dict[str, Any]:
    owner = f"lambda:{getattr(context, 'aws_request_id', '')}" if context else None
    budget = time_left(context, settings.lambda_margin)
    if isinstance(command, SummarizeCommand):
        return summarize(command.results)
    async with application.open_engine(config, owner=owner) as engine:
        if isinstance(command, ListAccountsCommand | SweepAccountsCommand) and engine.org is None:
            raise InputError(f"{command.action} needs an [accounts] section in the policy")
        if isinstance(command, ListAccountsCommand):
            assert engine.org is not None
            found = await engine.org.accounts(command.accounts, command.ous)
            items = [AccountItem.of(a).model_dump() for a in found.selected]
            size = command.batch_size
            batches = [
                {
                    "rotator": {
                        "action": "sweep-accounts",
                        "accounts": items[i : i + size],
                        "dry_run": command.dry_run,
                    }
                }
                for i in range(0, len(items), size)
            ]
            return {
                "mode": "list-accounts",
                "ok": True,
                "count": len(items),
                "batches": batches,
                "skipped": [{**s.account.as_dict(), "reason": s.reason} for s in found.skipped],
            }
        if isinstance(command, SweepAccountsCommand) or (
            isinstance(command, SweepCommand) and engine.org is not None
        ):
            assert engine.org is not None
            accounts = (
                [a.account() for a in command.accounts]
                if isinstance(command, SweepAccountsCommand)
                else None
            )
            org = await engine.org.run(dry_run=command.dry_run, time_left=budget, accounts=accounts)
            return {"mode": "sweep-accounts", **compact(org)}
        if isinstance(command, SweepCommand):
            result = await engine.sweep(dry_run=command.dry_run, time_left=budget)
            deferred = result.counts()["deferred"]
            return {
                "mode": "sweep",
                **documents.document("sweep", **result.as_dict()),
                "deferred": deferred,
                "complete": not deferred,
            }
        # An escalation waits for a busy worker no longer than the invocation can.
        patience = None if budget is None else timedelta(seconds=max(0.0, budget()))
        if isinstance(command, ExposedKeysCommand):
            return await _exposed(command, engine, config, patience)
        report = await engine.rotate_now(
            _request(command),
            access_key_id=command.access_key_id,
            dry_run=command.dry_run,
            patience=patience,
            account=command.account,
        )
    return {"mode": "rotate", **documents.rotation_document(report)}


async def _exposed(
    command: ExposedKeysCommand, engine: Engine, config: Config, patience: timedelta | None
) -> dict[str, Any]:
    """Each exposed key: deactivated first, replaced, in its own account; one failure does
    not stop the others. The notification says what was done and where each new secret
    went (the rule's sink)."""
    started = utcnow()
    reports: list[Report] = []
    results: list[dict[str, Any]] = []
    for key in command.access_key_ids:
        request = Request(emergency=True, hold=command.hold, kind=Kind.ACCESS_KEY)
        try:
            report = await engine.rotate_now(request, access_key_id=key, patience=patience)
        except RotatorError as exc:
            results.append({"access_key_id": key, "ok": False, **_failed(exc)})
            continue
        reports.append(report)
        rule = config.rule(report.decision.rule)
        results.append(
            {
                "access_key_id": key,
                "ok": report.ok,
                "sink": f"{rule.sink.type}:{rule.sink.template}" if rule else None,
                "sink_in": rule.sink_in if rule else None,
                **report.as_dict(),
            }
        )
    if reports and config.notify.enabled:
        summary = SweepResult(
            run_id=new_id("run"),
            account=reports[0].decision.account,
            dry_run=False,
            started_at=started,
            finished_at=utcnow(),
            plan=Plan(decisions=tuple(r.decision for r in reports)),
            reports=tuple(reports),
        )
        await Notifier(config.notify, application.make_aws(config)).sweep_finished(
            summary, owners=False
        )
    return {"mode": "exposed-keys", "ok": all(r["ok"] for r in results), "results": results}


def compact(org: OrgResult) -> dict[str, Any]:
    """An organization sweep's result, small enough for a Map's output (Step Functions
    passes at most 256 KB between states): totals and one line per account."""
    deferred = org.counts()["deferred"]
    return {
        "run_id": org.run_id,
        "ok": org.ok,
        "dry_run": org.dry_run,
        "counts": json_counts(org.counts()),
        "deferred": deferred,
        "complete": not deferred,
        "accounts": [
            {
                "id": a.account.id,
                "name": a.account.name,
                "outcome": a.outcome,
                "ok": a.ok,
                "error": a.error,
                "reason": a.reason,
                "counts": json_counts(a.sweep.counts()) if a.sweep is not None else {},
            }
            for a in org.accounts
        ],
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The Map's results added up: accounts, failed accounts (with their errors), totals
    per outcome; logged as one ``org.summary`` audit event."""
    totals: Counter[str] = Counter()
    accounts: list[dict[str, Any]] = []
    for result in results:
        if result.get("mode") != "sweep-accounts":  # a batch whose invocation failed
            accounts.append({"id": None, "outcome": "batch-failed", "ok": False, **result})
            continue
        accounts.extend(result.get("accounts", []))
        totals.update({k: int(v) for k, v in result.get("counts", {}).items()})
    failed = [a for a in accounts if not a.get("ok")]
    summary = {
        "mode": "summarize",
        "ok": not failed,
        "accounts": len(accounts),
        "accounts_not_ok": len(failed),
        "failed": [
            {"id": a.get("id"), "outcome": a.get("outcome"), "error": a.get("error")}
            for a in failed
        ],
        "counts": dict(totals),
    }
    log = audit.get_logger()
    (log.info if summary["ok"] else log.warning)(
        ORG_SUMMARY,
        accounts=summary["accounts"],
        accounts_not_ok=summary["accounts_not_ok"],
        failed=summary["failed"],
        counts=summary["counts"],
    )
    return summary


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
