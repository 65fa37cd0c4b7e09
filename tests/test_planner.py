"""The planner is a pure function: tables of situations, and hypothesis for its guarantees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from rotator.kinds import AnyRule, facts_of
from rotator.model import (
    Action,
    Credential,
    Holder,
    Inventory,
    Kind,
    Rotation,
    RotationState,
    Status,
)
from rotator.planner import plan
from rotator.policy import Rule

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
RULES: TypeAdapter[Any] = TypeAdapter(AnyRule)
KEYS_PER_USER = facts_of(Kind.ACCESS_KEY).limit or 0
ACCOUNT = "123456789012"


def rule(**overrides: Any) -> Rule:
    data: dict[str, Any] = {
        "name": "ci-keys",
        "kind": "access-key",
        "max_age": "90d",
        "select": {"path_prefix": "/ci/", "users": ["*"]},
        "exclude": {"users": ["break-glass"], "tags": {"rotator:skip": "true"}},
        "sink": {"type": "memory"},
    }
    data.update(overrides)
    made: Rule = RULES.validate_python(data)
    return made


def key(cid: str, *, days: int, active: bool = True) -> Credential:
    return Credential(
        kind=Kind.ACCESS_KEY,
        credential_id=cid,
        status=Status.ACTIVE if active else Status.INACTIVE,
        created=NOW - timedelta(days=days),
    )


def holder(name: str, *keys: Credential, path: str = "/ci/", **tags: str) -> Holder:
    return Holder(
        account=ACCOUNT,
        name=name,
        arn=f"arn:aws:iam::{ACCOUNT}:user{path}{name}",
        path=path,
        tags=tags,
        credentials=keys,
    )


def inventory(*holders: Holder) -> Inventory:
    return Inventory(account=ACCOUNT, holders=holders)


def only(holder_: Holder, rules: list[Rule] | None = None, rotations: tuple[Rotation, ...] = ()):
    decisions = plan(inventory(holder_), rules or [rule()], rotations, NOW).decisions
    assert len(decisions) == 1, decisions
    return decisions[0]


@pytest.mark.parametrize(
    ("keys", "action", "credential", "delete_first", "reason_has"),
    [
        ((key("AKOLD", days=120),), Action.ROTATE, "AKOLD", None, "120d old (max_age 90d)"),
        ((key("AKNEW", days=10),), Action.SKIP, "AKNEW", None, "due in 80d"),
        ((key("AKEDGE", days=90),), Action.ROTATE, "AKEDGE", None, "90d old"),
        (
            (key("AKIN", days=200, active=False), key("AKOLD", days=100)),
            Action.ROTATE,
            "AKOLD",
            "AKIN",
            "inactive access key AKIN is deleted first",
        ),
        (
            (key("AKA", days=100), key("AKB", days=100)),
            Action.BLOCK,
            "AKB",
            None,
            "cannot tell which one is in use",
        ),
        ((key("AKIN", days=100, active=False),), Action.SKIP, None, None, "no active access key"),
        ((), Action.SKIP, None, None, "no active access key"),
    ],
    ids=[
        "old",
        "young",
        "exactly-max-age",
        "inactive-second",
        "two-active",
        "only-inactive",
        "no-keys",
    ],
)
def test_access_key_decisions(keys, action, credential, delete_first, reason_has) -> None:
    decision = only(holder("ci-app", *keys))
    assert decision.action is action
    assert decision.credential_id == credential
    assert decision.delete_first == delete_first
    assert reason_has in decision.reason


def test_a_user_with_two_active_keys_is_blocked_not_guessed() -> None:
    decision = only(holder("legacy", key("AKA", days=300), key("AKB", days=1)))
    assert decision.action is Action.BLOCK
    assert "AKA" in decision.reason
    assert "AKB" in decision.reason


@pytest.mark.parametrize(
    ("name", "tags", "reason_has"),
    [
        ("break-glass", {}, "exclude pattern 'break-glass'"),
        ("vendor", {"rotator:skip": "true"}, "tag rotator:skip=true"),
    ],
)
def test_excluded_users_say_why(name: str, tags: dict[str, str], reason_has: str) -> None:
    decision = only(holder(name, key("AK1", days=365), **tags))
    assert decision.action is Action.EXCLUDE
    assert reason_has in decision.reason


@pytest.mark.parametrize(
    ("select", "user", "path", "tags", "selected"),
    [
        ({"path_prefix": "/ci/"}, "a", "/ci/", {}, True),
        ({"path_prefix": "/ci/"}, "a", "/ops/", {}, False),
        ({"users": ["deploy-*"]}, "deploy-web", "/", {}, True),
        ({"users": ["deploy-*"]}, "build-web", "/", {}, False),
        ({"tags": {"team": "platform"}}, "a", "/", {"team": "platform"}, True),
        ({"tags": {"team": "platform"}}, "a", "/", {"team": "data"}, False),
        ({"tags": {"team": "platform"}}, "a", "/", {}, False),
    ],
)
def test_selectors(
    select: dict[str, Any], user: str, path: str, tags: dict[str, str], selected: bool
) -> None:
    r = rule(select=select, exclude={})
    decisions = plan(inventory(holder(user, key("AK", days=1), path=path, **tags)), [r], (), NOW)
    assert bool(decisions.decisions) is selected


def test_first_matching_rule_wins() -> None:
    first = rule(name="strict", max_age="30d")
    second = rule(name="lenient", max_age="365d")
    decision = only(holder("ci-app", key("AK1", days=60)), [first, second])
    assert (decision.rule, decision.action) == ("strict", Action.ROTATE)


def test_zero_duration_rotates_a_brand_new_key() -> None:
    assert only(holder("ci-app", key("AK1", days=0)), [rule(max_age="0s")]).action is Action.ROTATE


def _rotation(state: RotationState, **changes: Any) -> Rotation:
    r = Rotation.start(
        account=ACCOUNT,
        user="ci-app",
        kind=Kind.ACCESS_KEY,
        rule="ci-keys",
        now=NOW,
        old_credential_id="AKOLD",
        deactivate_after=timedelta(days=7),
        delete_after=timedelta(days=7),
    )
    return r.evolve(state=state, **changes)


@pytest.mark.parametrize(
    ("rotation", "action", "reason_has"),
    [
        (_rotation(RotationState.CREATED), Action.ADVANCE, "verify is due"),
        (
            _rotation(RotationState.PROMOTED, promoted_at=NOW - timedelta(days=8)),
            Action.ADVANCE,
            "deactivate is due",
        ),
        (
            _rotation(RotationState.PROMOTED, promoted_at=NOW - timedelta(days=1)),
            Action.WAIT,
            "deactivate is due at 2026-11-28 03:00Z (in 6d)",
        ),
        (
            _rotation(RotationState.DEACTIVATED, deactivated_at=NOW - timedelta(days=2)),
            Action.WAIT,
            "delete is due",
        ),
    ],
    ids=["created", "promoted-due", "promoted-waiting", "deactivated-waiting"],
)
def test_rotations_in_flight_are_advanced_when_due(rotation, action, reason_has) -> None:
    decision = only(
        holder("ci-app", key("AKOLD", days=120), key("AKNEW", days=0)), rotations=(rotation,)
    )
    assert decision.action is action
    assert decision.rotation_id == rotation.rotation_id
    assert reason_has in decision.reason


def test_a_rotation_whose_rule_was_removed_is_blocked_with_what_to_do() -> None:
    rotation = _rotation(RotationState.VERIFIED)
    decisions = plan(inventory(), [rule(name="other")], (rotation,), NOW).decisions
    assert decisions[0].action is Action.BLOCK
    rid = rotation.rotation_id
    assert f"was removed from the policy: restore it, or `rotator rollback {rid}`" in (
        decisions[0].reason
    )


def test_an_emergency_whose_rule_was_removed_is_blocked_and_never_told_to_roll_back() -> None:
    """A rollback would reactivate the leaked credential."""
    rotation = _rotation(RotationState.DEACTIVATED).evolve(emergency=True)
    decisions = plan(inventory(), [rule(name="other")], (rotation,), NOW).decisions
    assert decisions[0].action is Action.BLOCK
    assert "was removed from the policy: restore it so that emergency rotation" in (
        decisions[0].reason
    )
    assert "rollback" not in decisions[0].reason


# -- properties -----------------------------------------------------------------------------

key_ids = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=4, max_size=8)


@st.composite
def holders(draw: st.DrawFn) -> Holder:
    count = draw(st.integers(min_value=0, max_value=KEYS_PER_USER))
    ids = draw(st.lists(key_ids, min_size=count, max_size=count, unique=True))
    keys = [key(f"AK{i}", days=draw(st.integers(0, 400)), active=draw(st.booleans())) for i in ids]
    name = draw(st.sampled_from(["ci-a", "ci-b", "break-glass", "vendor"]))
    tags = draw(st.sampled_from([{}, {"rotator:skip": "true"}, {"team": "x"}]))
    return holder(name, *keys, **tags)


@settings(max_examples=400, deadline=None)
@given(
    holders=st.lists(holders(), max_size=6, unique_by=lambda h: h.name),
    max_age=st.sampled_from(["0s", "1d", "30d", "90d", "365d"]),
)
def test_planner_guarantees(holders: list[Holder], max_age: str) -> None:
    result = plan(inventory(*holders), [rule(max_age=max_age)], (), NOW)
    by_user = {h.name: h for h in holders}
    seen = set()
    for d in result:
        assert d.reason, "every decision has a reason"
        assert (d.user, d.kind) not in seen, "one decision per holder and kind"
        seen.add((d.user, d.kind))
        keys = {c.credential_id: c for c in by_user[d.user].credentials}
        if d.action is Action.ROTATE:
            assert keys[d.credential_id].active
            after = len(keys) - (1 if d.delete_first else 0) + 1
            assert after <= KEYS_PER_USER == 2, "never more than 2 keys"
            assert sum(c.active for c in keys.values()) == 1, "only the one active key"
        if d.delete_first is not None:
            assert not keys[d.delete_first].active, "never delete an active key"
        if sum(c.active for c in keys.values()) > 1 and d.action is not Action.EXCLUDE:
            assert d.action is Action.BLOCK


# -- compliance deadlines ----------------------------------------------------------------


def test_a_deadline_starts_the_rotation_early_enough_for_the_old_key_to_go_inactive() -> None:
    """deadline 90d, deactivate_after 7d: the rotation starts at 90 - 7 - (verification and
    the wait for a sweep) - margin, well before max_age, and the plan says when the old key
    goes inactive."""
    deadline = rule(deadline="90d", deactivate_after="7d", max_age="90d")
    deadline.set_overhead(timedelta(hours=1, minutes=2))
    start = deadline.start_age
    assert start == timedelta(days=82) - timedelta(hours=1, minutes=2)
    assert start <= timedelta(days=83) - deadline.deadline_margin
    young = only(holder("ci", key("AKYOUNG", days=81)), [deadline])
    assert young.action is Action.SKIP
    assert young.due_at == NOW - timedelta(days=81) + start
    assert "rotation starts at 81d22h58m old" in young.reason, young.reason
    due = only(holder("ci", key("AKDUE", days=82)), [deadline])
    assert due.action is Action.ROTATE and due.credential_id == "AKDUE"
    created = NOW - timedelta(days=82)
    inactive = created + start + timedelta(days=7, hours=1, minutes=2)
    assert f"inactive by {inactive:%Y-%m-%d %H:%M}Z" in due.reason, due.reason
    assert f"the deadline is {created + timedelta(days=90):%Y-%m-%d %H:%M}Z" in due.reason
    assert inactive <= created + timedelta(days=90) - deadline.deadline_margin


def test_without_a_deadline_max_age_alone_decides() -> None:
    assert only(holder("ci", key("AK", days=85))).action is Action.SKIP


def test_a_deadline_not_after_deactivate_after_is_refused_with_why() -> None:
    with pytest.raises(ValueError, match="deactivate_after 6d is not less than deadline 6d"):
        rule(deadline="6d", deactivate_after="6d")


@pytest.mark.parametrize(
    ("left", "said"),
    [
        (timedelta(days=-10), "expired 10d ago (2026-11-12; renew_before 5d)"),
        (timedelta(days=4), "expires 2026-11-26 (in 4d; renew_before 5d)"),
    ],
)
def test_an_expiry_that_has_passed_reads_expired_n_days_ago(left: timedelta, said: str) -> None:
    """Not "expires 2026-11-12 (in 0s)": a credential past its expiry says how long ago."""
    bedrock = rule(
        kind="service-credential",
        service="bedrock.amazonaws.com",
        credential_age=30,
        renew_before="5d",
        max_age="3650d",
    )
    credential = Credential(
        kind=Kind.SERVICE_CREDENTIAL,
        credential_id="ACCA1",
        status=Status.ACTIVE,
        created=NOW - timedelta(days=30) + left,
        expires=NOW + left,
        slot="bedrock.amazonaws.com",
    )
    decision = only(holder("dev", credential), [bedrock])
    assert decision.action is Action.ROTATE
    assert decision.reason.endswith(f"ACCA1 {said}"), decision.reason
