"""The audit log: structlog JSON lines, one event per step outcome, secrets redacted.

Event names are constants. Context (``run_id``, ``account``) is bound once per sweep with
contextvars. Every line passes ``redact`` twice: field-wise before rendering (fields named
like secrets are replaced, registered secret values scrubbed) and on the rendered line, so
a secret cannot reach the log through any field or exception text.

Each line::

    {"ts": "...Z", "level": "info", "event": "rotation.step", "run_id": "...",
     "rotation_id": "...", "account": "...", "user": "...", "kind": "access-key",
     "credential_id": "AKIA...", "step": "deactivate", "outcome": "held",
     "reason": "...", "dry_run": false, "duration_ms": 41}
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rotator import redaction
from rotator.errors import ConfigError
from rotator.model import Decision, Outcome, Rotation, Step

SWEEP_STARTED = "sweep.started"
SWEEP_FINISHED = "sweep.finished"
ROTATION_STEP = "rotation.step"
ROTATION_ESCALATED = "rotation.escalated"  # an operator's emergency took over a rotation
# Named events that replaced the catch-all ``rotator.notice`` (see CHANGELOG.md):
ROTATION_WAITING = "rotation.waiting"  # another worker holds the lease (holder, until when)
ROTATION_LEASE_LOST = "rotation.lease_lost"  # our lease was taken over mid-rotation: stopped
ROTATION_DEADLINE = "rotation.deadline"  # a held old credential nears or passed its deadline
ROTATION_DEFERRED = "rotation.deferred"  # too little time left in this run; next sweep does it
LEASE_RELEASE_FAILED = "lease.release_failed"  # giving a lease back failed; it simply expires
LEASE_RENEW_FAILED = "lease.renew_failed"  # a heartbeat could not reach the journal; retried
ORPHAN_DELETED = "orphan.deleted"  # a late create's orphan found by a sweep, deleted
ROTATION_COMPENSATED = "rotation.compensated"  # a credential whose secret was lost, deleted
ROTATION_TAKEN_OVER = "rotation.taken_over"  # a dead or silent worker's lease was taken
JOURNAL_CORRUPT_RECORD = "journal.corrupt_record"  # a row that does not decode: skipped
DECISION_CRASHED = "decision.crashed"  # a bug failed one decision; the sweep went on
INVENTORY_REPORT_UNAVAILABLE = "inventory.report_unavailable"  # listing per user instead
OWN_KEY_SWITCHED = "own_key.switched"  # rotator rotated the key it signs with: now the new one
# An organization sweep (rotation/org.py): its start and end, the accounts found and left
# out, and an account that could not be swept (no role, AccessDenied ...): the others go on.
ORG_STARTED = "org.started"
ORG_FINISHED = "org.finished"
ACCOUNT_SKIPPED = "account.skipped"
ACCOUNT_FAILED = "account.failed"

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return redaction.scrub(value)
    if isinstance(value, dict):
        return {k: _redact_field(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def _redact_field(key: str, value: Any) -> Any:
    if redaction.is_secret_field(key) and value is not None:
        return redaction.REDACTED
    return _scrub_value(value)


# The order fields appear in on a line: the schema's fields first, the rest after.
FIELD_ORDER = (
    "ts",
    "level",
    "event",
    "run_id",
    "rotation_id",
    "account",
    "user",
    "kind",
    "slot",
    "rule",
    "credential_id",
    "step",
    "outcome",
    "state",
    "reason",
    "dry_run",
    "duration_ms",
    "propagation_s",
)


def order_fields(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the schema's fields first, in a stable order."""
    first = {k: event_dict[k] for k in FIELD_ORDER if k in event_dict}
    return first | {k: v for k, v in event_dict.items() if k not in first}


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide fields named like secrets, scrub registered secret values."""
    return {k: _redact_field(k, v) for k, v in event_dict.items()}


class _Tee:
    """A structlog logger that writes each event to a stream and/or a file: the file always
    gets a JSON line; the stream gets a JSON line too, or a line for people (structlog's
    console renderer) when ``console`` says so.

    The stream (``sys.stdout`` or ``sys.stderr``) is looked up at each write, so that
    whoever stands in for it then (the CLI's progress bar, which prints lines above
    itself) gets the line."""

    def __init__(self, stream: str | None, file: TextIO | None, console: str = "json") -> None:
        self._stream = stream
        self._file = file
        self._console = console  # "json", "console", or "auto": console at a terminal
        self._json = structlog.processors.JSONRenderer(sort_keys=False)
        self._people: structlog.dev.ConsoleRenderer | None = None
        self._lock = threading.Lock()

    def _for_people(self, stream: TextIO) -> bool:
        if self._console == "auto":
            isatty = getattr(stream, "isatty", None)
            return bool(isatty and isatty())
        return self._console == "console"

    def msg(self, event_dict: EventDict) -> None:
        stream = getattr(sys, self._stream) if self._stream else None
        line = redaction.scrub(str(self._json(None, "", dict(event_dict)))) + "\n"
        if stream is not None and self._for_people(stream):
            if self._people is None:
                colors = self._console == "auto" or bool(getattr(stream, "isatty", bool)())
                self._people = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
            shown = redaction.scrub(str(self._people(None, "", dict(event_dict)))) + "\n"
        else:
            shown = line
        with self._lock:
            if stream is not None:
                stream.write(shown)
                stream.flush()
            if self._file is not None:
                self._file.write(line)
                self._file.flush()

    log = debug = info = warning = warn = error = critical = exception = msg


def _to_tee(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> Any:
    """structlog's last processor: hand the event itself to ``_Tee`` (which renders it
    once per destination) as the one positional argument of its method."""
    return (event_dict,), {}


def _open_file(path: Path) -> TextIO:
    """The audit file, opened for appending; never through a symbolic link (a planted
    link would make rotator, often root, append to any file)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o640)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise ConfigError(
            "audit.file",
            [
                f"{path} is a symbolic link; rotator does not follow links for the "
                "files it writes: remove it"
            ],
        ) from None
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


def configure(
    *,
    stream: str = "stderr",
    file: Path | None = None,
    level: str = "info",
    console: str = "json",
) -> Callable[[], None]:
    """Send audit events to ``stream`` ("stdout", "stderr" or "none") and ``file``.
    ``console`` is how the stream shows them: "json" lines, "console" lines for people, or
    "auto" (for people at a terminal, JSON otherwise); the file is always JSON lines.
    Returns a function that closes the file."""
    handle = _open_file(file) if file is not None else None
    tee = _Tee(stream if stream in ("stdout", "stderr") else None, handle, console)
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
        redact,
        order_fields,
        _to_tee,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_: tee,
        cache_logger_on_first_use=False,
    )

    def close() -> None:
        if handle is not None:
            handle.close()

    return close


def get_logger() -> Any:
    """The audit logger (a structlog bound logger)."""
    return structlog.get_logger("rotator")


def bind(**context: Any) -> None:
    """Bind context (run_id, account, ...) to every event of this task from now on."""
    structlog.contextvars.bind_contextvars(**context)


def current(name: str) -> str:
    """A value bound with ``bind`` in this context ("" if none)."""
    return str(structlog.contextvars.get_contextvars().get(name, ""))


def clear() -> None:
    structlog.contextvars.clear_contextvars()


def step_event(
    step: Step,
    outcome: Outcome,
    *,
    decision: Decision | None = None,
    rotation: Rotation | None = None,
    credential_id: str | None = None,
    reason: str = "",
    duration_ms: int = 0,
    propagation_s: float | None = None,
) -> None:
    """Log one ``rotation.step`` event about a rotation (or, before one exists, a decision).
    ``propagation_s``: a verify step's seconds until the new credential answered in every
    verification region."""
    source: Any = rotation or decision
    fields: dict[str, Any] = {
        "rotation_id": rotation.rotation_id if rotation else decision and decision.rotation_id,
        "user": source.user,
        "kind": str(source.kind),
        "rule": source.rule,
        "credential_id": credential_id
        or (decision.credential_id if decision else rotation and rotation.old_credential_id),
        "step": str(step),
        "outcome": str(outcome),
        "duration_ms": duration_ms,
    }
    if source.slot:
        fields["slot"] = source.slot
    if rotation is not None:
        fields["state"] = str(rotation.state)
    if reason:
        fields["reason"] = reason
    if propagation_s is not None:
        fields["propagation_s"] = propagation_s
    level = {
        Outcome.HELD: "warning",
        Outcome.RETRY: "warning",
        Outcome.BLOCKED: "warning",
        Outcome.FAILED: "error",
    }.get(outcome, "info")
    getattr(get_logger(), level)(ROTATION_STEP, **fields)
