"""IAM policy statements made as small as they can be, granting exactly the same.

``smallest(statements)``: an action that another statement grants on the same or wider
resources is dropped; a resource another of the same statement covers is dropped;
statements with the same actions (and condition) are one, their resources united, and so
are statements with the same resources (and condition), their actions united and Sids
joined. Each step keeps what is granted unchanged; ``covers`` decides "wider" soundly
(only a trailing ``*``). Pure: plain dicts in, plain dicts out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Statement = dict[str, Any]


def covers(wide: str, narrow: str) -> bool:
    """True if every ARN that the pattern ``narrow`` matches, ``wide`` matches too: the
    same pattern, ``*``, or ``narrow`` spelled out from ``wide``'s text before a final
    ``*`` (``arn:aws:iam::*:user/*`` covers ``arn:aws:iam::*:user/ci/*``)."""
    return wide in (narrow, "*") or (wide.endswith("*") and narrow.startswith(wide[:-1]))


def _covered(actions: set[str], resources: list[str], by: Statement) -> set[str]:
    """The actions of ``actions`` that ``by`` (a statement without a condition) grants on
    every resource of ``resources``."""
    if "Condition" in by or not all(
        any(covers(r, mine) for r in by["Resource"]) for mine in resources
    ):
        return set()
    return actions & set(by["Action"])


def smallest(statements: list[Statement]) -> list[Statement]:
    """The smallest equivalent list: empty statements dropped; an action dropped from a
    statement when another grants it on all its resources (the first of equals keeps it);
    resources covered by another of the same statement dropped; then statements with the
    same actions and condition merged (resources united), and those with the same
    resources and condition (actions united, Sids joined), until nothing changes. Actions
    and resources sorted; every Sid unique."""
    shaped = [
        {**s, "Action": sorted(set(s["Action"])), "Resource": _narrowest(s["Resource"])}
        for s in statements
        if s["Action"] and s["Resource"]
    ]
    kept: list[Statement] = []
    for i, statement in enumerate(shaped):
        actions = set(statement["Action"])
        for j, other in enumerate(shaped):
            if j == i:
                continue
            same = _covered(actions, statement["Resource"], other)
            # Of two statements covering each other, the first keeps the action.
            if same and j > i and _covered(same, other["Resource"], statement):
                continue
            actions -= same
        if actions:
            kept.append({**statement, "Action": sorted(actions)})
    while True:
        merged = _join(_join(kept, "Action", "Resource"), "Resource", "Action")
        if len(merged) == len(kept):
            break
        kept = merged
    seen: dict[str, int] = {}
    for statement in kept:
        base = statement["Sid"]
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            statement["Sid"] = f"{base}{seen[base]}"
    return kept


def _join(statements: list[Statement], same: str, united: str) -> list[Statement]:
    """Statements with the same ``same`` field and condition merged: their ``united``
    fields united (resources narrowed) and, for united actions, their Sids joined."""
    merged: dict[str, Statement] = {}
    for statement in statements:
        key = json.dumps([statement[same], statement.get("Condition")], sort_keys=True)
        if key not in merged:
            merged[key] = dict(statement)
            continue
        into = merged[key]
        values = [*into[united], *statement[united]]
        into[united] = sorted(set(values)) if united == "Action" else _narrowest(values)
        if united == "Action" and statement["Sid"] not in into["Sid"]:
            into["Sid"] += statement["Sid"]
    return list(merged.values())


def _narrowest(resources: Iterable[str]) -> list[str]:
    """The resources, sorted, without those another of them covers."""
    unique = sorted(set(resources))
    return [r for r in unique if not any(o != r and covers(o, r) for o in unique)]
