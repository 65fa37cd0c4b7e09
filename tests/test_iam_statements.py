"""``iam_statements.smallest`` grants exactly what it was given, in fewer statements, with
no action granted twice; ``covers`` never claims a pattern it does not cover."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.iam_statements import Statement, covers, smallest

USER = "arn:aws:iam::*:user"
PATTERNS = ["*", f"{USER}/*", f"{USER}/ci/*", f"{USER}/ci/deploy/*", f"{USER}/vendors/*"]
PATTERNS += ["arn:aws:ssm:*:*:parameter/rotator/*", "arn:aws:ssm:eu-west-1:*:parameter/r*"]
CONCRETE = [
    "arn:aws:iam::111122223333:user/ci/app",
    "arn:aws:iam::111122223333:user/ci/deploy/bot",
    "arn:aws:iam::111122223333:user/vendors/acme",
    "arn:aws:iam::111122223333:user/people/ann",
    "arn:aws:ssm:eu-west-1:111122223333:parameter/rotator/x",
    "arn:aws:ssm:us-east-1:111122223333:parameter/rotator/x",
    "arn:aws:ssm:eu-west-1:111122223333:parameter/rx",
    "*",
]
ACTIONS = ["iam:GetUser", "iam:ListUsers", "iam:CreateAccessKey", "ssm:GetParameter"]
CONDITION = {"StringLike": {"kms:ViaService": "ssm.*.amazonaws.com"}}


def grants(statements: list[Statement]) -> set[tuple[str, str, str]]:
    """(action, concrete resource, condition) triples the statements allow; a grant under
    a condition that is also granted without one is the unconditioned grant only."""
    found = {
        (action, resource, repr(s.get("Condition")))
        for s in statements
        for action in s["Action"]
        for resource in CONCRETE
        if any(fnmatchcase(resource, pattern) for pattern in s["Resource"])
    }
    free = {(a, r) for a, r, c in found if c == "None"}
    return {(a, r, c) for a, r, c in found if c == "None" or (a, r) not in free}


statement = st.builds(
    lambda sid, actions, resources, conditioned: {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": resources,
        **({"Condition": CONDITION} if conditioned else {}),
    },
    st.sampled_from(["A", "B", "C"]),
    st.lists(st.sampled_from(ACTIONS), max_size=4),
    st.lists(st.sampled_from(PATTERNS), max_size=3),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(statement, max_size=6))
def test_smallest_grants_exactly_the_same_with_no_action_twice(given_: list[Any]) -> None:
    made = smallest([dict(s) for s in given_])

    assert grants(made) == grants(given_)
    plain = [s for s in made if "Condition" not in s]
    for i, one in enumerate(plain):
        for other in plain[i + 1 :]:
            assert one["Resource"] != other["Resource"], "same resources: one statement"
            for action in set(one["Action"]) & set(other["Action"]):
                for a, b in ((one, other), (other, one)):
                    wider = all(any(covers(r, m) for r in a["Resource"]) for m in b["Resource"])
                    assert not wider, f"{action} granted twice"
    assert len({s["Sid"] for s in made}) == len(made)


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        ("*", f"{USER}/ci/*", True),
        (f"{USER}/*", f"{USER}/ci/*", True),
        (f"{USER}/ci/*", f"{USER}/ci/*", True),
        (f"{USER}/ci/*", f"{USER}/*", False),
        (f"{USER}/ci*", f"{USER}/cid/*", True),
        (f"{USER}/ci/x", f"{USER}/ci/*", False),
        # a '?' or a '*' before the end is matched literally only: never assumed wider
        ("arn:aws:iam::?:user/*", "arn:aws:iam::*:user/ci/*", False),
        ("arn:aws:iam::1*:user/*", "arn:aws:iam::*:user/ci/*", False),
    ],
)
def test_covers_only_what_every_match_of_the_narrow_pattern_matches(
    wide: str, narrow: str, expected: bool
) -> None:
    assert covers(wide, narrow) is expected
