"""Rotator's exceptions. Foreign errors (botocore, sqlite) are converted once, at the edge
that made the call, into one of these; the engine reasons only about this tree::

    RotatorError
    ├── ConfigError            bad policy file or settings (exit code 2)
    ├── InputError             bad command-line input or certificate material (exit code 2)
    ├── AwsError               an AWS call failed; carries the AWS error code and the IDs
    │   ├── Transient          retry later: throttling, 5xx, lost connection, IAM not ready
    │   └── Permanent          retrying will not help
    │       ├── NoSuchEntity
    │       ├── LimitExceeded
    │       ├── DeleteConflict
    │       └── AccessDenied
    ├── VerificationFailed     a new credential did not work (yet) as its user
    │   └── WrongIdentity      it authenticated, but as someone else (permanent)
    ├── Refused                going on would break an invariant (e.g. delete an active key)
    │   ├── ProtocolViolation  a step tried to journal a state its protocol row does not allow
    │   ├── IncompleteRecord   a rotation record lacks a field its state guarantees
    │   └── RuleGone           the rule that started a rotation is no longer in the policy
    ├── SinkError              a secret could not be stored or read
    └── JournalError
        ├── Conflict           an active rotation already exists for that credential
        ├── LeaseLost          another worker holds (or took) the lease; stop writing
        ├── CorruptRecord      a stored row does not decode (hand-edited?): quarantined
        └── NotFound           no such rotation

Messages never contain secret values: errors carry IDs, codes and names only.
"""

from __future__ import annotations

from collections.abc import Mapping

from rotator.model import LeaseSeen


class RotatorError(Exception):
    """Base of every error rotator raises on purpose."""


class ConfigError(RotatorError):
    """The policy file or settings are invalid. ``problems`` lists each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class InputError(RotatorError):
    """Bad input from the operator (arguments, certificate files)."""


class AwsError(RotatorError):
    """An AWS call failed. ``code`` is AWS's error code; ``ids`` what the call concerned."""

    def __init__(
        self, operation: str, code: str, message: str = "", ids: Mapping[str, str] | None = None
    ) -> None:
        self.operation = operation
        self.code = code
        self.aws_message = message
        self.ids = dict(ids or {})
        about = ", ".join(f"{k}={v}" for k, v in self.ids.items())
        text = f"{operation} failed: {code}"
        if about:
            text += f" ({about})"
        if message:
            text += f": {message}"
        super().__init__(text)


class Transient(AwsError):
    """Worth retrying later: throttling, a 5xx, a dropped connection, IAM not ready."""


class Permanent(AwsError):
    """Retrying will not help; the rotation fails with the AWS code in its reason."""


class NoSuchEntity(Permanent):
    """The user or credential does not exist (any more)."""


class LimitExceeded(Permanent):
    """The holder already has as many credentials of this kind as IAM allows."""


class DeleteConflict(Permanent):
    """IAM refuses the delete because something still uses the entity."""


class AccessDenied(Permanent):
    """rotator's own principal lacks a permission."""


class WrongAccount(Permanent):
    """The credentials for an account act in another one (a wrong role ARN template)."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            "GetCallerIdentity",
            "WrongAccount",
            f"the role for account {expected} acts in account {actual}",
            {"account": expected},
        )


class VerificationFailed(RotatorError):
    """A new credential did not authenticate as its user within the verify budget."""

    def __init__(self, credential_id: str, user: str, detail: str) -> None:
        self.credential_id = credential_id
        self.user = user
        super().__init__(f"credential {credential_id} of {user} did not verify: {detail}")


class WrongIdentity(VerificationFailed):
    """The new credential authenticated as a different principal: never promote it."""


class Refused(RotatorError):
    """Going on would break one of rotator's invariants; a human must look."""


class ProtocolViolation(Refused):
    """A step tried to leave a rotation in a state its protocol row does not allow (a bug):
    nothing is written, and the rotation fails with this reason."""

    def __init__(self, rotation_id: str, step: str, state: str) -> None:
        self.rotation_id = rotation_id
        super().__init__(
            f"rotation {rotation_id}: step {step} may not leave it {state} (protocol table)"
        )


class IncompleteRecord(Refused):
    """A rotation record lacks a field its state guarantees (hand-edited, or a bug)."""

    def __init__(self, rotation_id: str, state: str, field: str) -> None:
        self.rotation_id = rotation_id
        super().__init__(f"rotation {rotation_id} is {state} but has no {field}")


class RuleGone(Refused):
    """The rule that started a rotation was removed from (or renamed in) the policy:
    rotator no longer knows the rotation's sink. The message says what to do."""

    def __init__(self, rotation_id: str, rule: str, *, emergency: bool) -> None:
        self.rotation_id = rotation_id
        self.rule = rule
        if emergency:  # a rollback would reactivate the leaked credential: never advise it
            advice = f"restore it so that emergency rotation {rotation_id} can finish"
        else:
            advice = f"restore it, or `rotator rollback {rotation_id}`"
        super().__init__(f"rule {rule!r} was removed from the policy: {advice}")


class SinkError(RotatorError):
    """A secret could not be written to or read from its sink."""


class JournalError(RotatorError):
    """The journal refused or failed an operation."""


class Conflict(JournalError):
    """An active rotation already exists for the same credential."""

    def __init__(self, target: str, existing: str) -> None:
        self.existing = existing
        super().__init__(f"an active rotation ({existing}) already exists for {target}")


class LeaseLost(JournalError):
    """Another worker holds or took the lease on a rotation: this worker must stop.
    ``holder`` and ``until`` say who holds it and until when (ISO 8601), when known;
    ``seen`` is what the journal held (a ``LeaseSeen``), for a takeover a lease period
    later."""

    def __init__(
        self,
        rotation_id: str,
        detail: str = "",
        *,
        holder: str | None = None,
        until: str | None = None,
        seen: LeaseSeen | None = None,
    ) -> None:
        self.rotation_id = rotation_id
        self.holder = holder
        self.until = until
        self.seen = seen
        super().__init__(f"lease on {rotation_id} lost" + (f": {detail}" if detail else ""))


class CorruptRecord(JournalError):
    """A stored rotation row that does not decode (an unknown state, kind or date, a lease
    owner without an expiry …), most likely edited by hand. Listings skip it and report it
    (``Journal.quarantined``); everyone else's rotations go on. ``target`` is the row's
    (account, user, kind, slot) where those could be read, else None."""

    def __init__(
        self,
        rotation_id: str,
        field: str,
        detail: str,
        target: tuple[str, str, str, str] | None = None,
    ) -> None:
        self.rotation_id = rotation_id
        self.field = field
        self.detail = detail
        self.target = target
        super().__init__(f"journal row {rotation_id} is corrupt: {field}: {detail}")


class NotFound(JournalError):
    """No rotation with that ID."""

    def __init__(self, rotation_id: str) -> None:
        self.rotation_id = rotation_id
        super().__init__(f"no rotation {rotation_id}")
