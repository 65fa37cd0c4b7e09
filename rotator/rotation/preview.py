"""What a rotation would do, step by step, before it does anything (dry runs).

``ahead`` walks the protocol table from a rotation's state the way ``Driver.drive`` does —
``protocol.next_step``, then the row's ``succeeds`` — so a preview is the protocol's own
path, not a copy of it: the rows, their order, which credential each acts on and when each
is due all come from ``protocol.TABLE`` and the rotation record. A new rotation's record
is the one ``Rotations.start`` would journal (``rotations.new_rotation``). ``_DOES`` only
words each row for people; a row it does not know is refused (a test walks every row).

Each planned step is a ``StepResult`` with outcome ``dry-run``: its rotation is the record
as it would be after the step, stamped (``updated_at``) with when the step would run.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rotator.model import Outcome, Rotation, Step
from rotator.policy import Rule
from rotator.rotation.protocol import TABLE, Transition, next_step
from rotator.rotation.steps import StepResult, sink_key
from rotator.sinks import SecretSink, where


@dataclass(frozen=True, kw_only=True)
class Words:
    """What a preview names: the kind's noun ("access key") and where its secret goes."""

    noun: str
    sink: str


def _create(r: Rotation, w: Words) -> str:
    room = ""
    if r.delete_first is not None:
        which = "leaked" if r.delete_first == r.old_credential_id else "inactive"
        room = f"delete the {which} {w.noun} {r.delete_first} to make room, then "
    return f"{room}create a new {w.noun} for {r.user}; its secret is stored as pending in {w.sink}"


def _promote(r: Rotation, w: Words) -> str:
    if r.old_credential_id is None:
        return f"make the new secret current in {w.sink}; the rotation completes"
    return f"make the new secret current in {w.sink}; the old one stays there as previous"


def _delete(r: Rotation, w: Words) -> str:
    if r.delete_first is not None and r.delete_first == r.old_credential_id:
        return f"{r.old_credential_id} was deleted to make room (create); the rotation completes"
    which = "leaked" if r.emergency else "old"
    return f"delete the {which} {w.noun} {r.old_credential_id}"


_DOES: dict[str, Callable[[Rotation, Words], str]] = {
    "emergency-deactivate": lambda r, w: (
        f"deactivate the leaked {w.noun} {r.old_credential_id} first, whoever still uses it"
    ),
    "create": _create,
    "verify": lambda r, w: f"prove the new {w.noun} works before anyone is switched to it",
    "promote": _promote,
    "deactivate": lambda r, w: (
        f"deactivate the old {w.noun} {r.old_credential_id} unless it was used after the "
        "promotion (then held)"
    ),
    "delete": _delete,
}
# The credential a row acts on: the old one, or (None) the new one, not made yet.
_ON_OLD = frozenset({Step.DEACTIVATE, Step.DELETE})


def ahead(rotation: Rotation, now: datetime, words: Words) -> tuple[StepResult, ...]:
    """Every step ``rotation`` would take from its state, in order, each stamped with the
    earliest moment it would run (``now`` for those due already), assuming each succeeds."""
    planned: list[StepResult] = []
    for _ in range(len(TABLE) + 1):
        due = next_step(rotation)
        if due is None:
            return tuple(planned)
        at = max(now, due.at)
        planned.append(_planned(due.transition, rotation, at, words))
        rotation = due.transition.succeeds(rotation, at)
    raise ValueError(f"the protocol does not finish rotation {rotation.rotation_id}")


def _planned(row: Transition, rotation: Rotation, at: datetime, words: Words) -> StepResult:
    does = _DOES.get(row.name)
    if does is None:
        raise ValueError(f"no words for protocol row {row.name!r} (rotator.rotation.preview)")
    on = rotation.old_credential_id if row.step in _ON_OLD else rotation.new_credential_id
    return StepResult(
        rotation=row.succeeds(rotation, at),
        step=row.step,
        outcome=Outcome.DRY_RUN,
        reason=does(rotation, words),
        credential_id=on,
    )


def preview(
    rotation: Rotation, rule: Rule, sink: SecretSink, now: datetime
) -> tuple[StepResult, ...]:
    """``ahead`` for a rotation of ``rule``, whose secrets go to ``sink``."""
    words = Words(noun=rule.facts.noun, sink=where(rule, sink, sink_key(rotation)))
    return ahead(rotation, now, words)
