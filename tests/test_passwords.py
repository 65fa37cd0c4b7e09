"""Console passwords: every password policy IAM can hold yields a password that satisfies
it (checked by rotator's own check *and* by the in-memory IAM's independent one, since moto
enforces nothing), and impossible requests fail with a clear error."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.passwords import (
    ALPHABET,
    IAM_MAX_LENGTH,
    SYMBOLS,
    PasswordPolicy,
    PasswordPolicyError,
    check_policy,
    generate,
    problems,
)
from rotator.testing.memory_profiles import _policy_violation

FLAGS = (
    "RequireUppercaseCharacters",
    "RequireLowercaseCharacters",
    "RequireNumbers",
    "RequireSymbols",
)
LENGTHS = (6, 8, 14, 20, 24, 25, 64, 127, 128)


def iam_policy(length: int, flags: tuple[bool, ...], reuse: int = 0) -> dict[str, object]:
    """A ``GetAccountPasswordPolicy`` answer."""
    policy: dict[str, object] = {
        "MinimumPasswordLength": length,
        **dict(zip(FLAGS, flags, strict=True)),
    }
    if reuse:
        policy["PasswordReusePrevention"] = reuse
    return policy


COMBINATIONS = [
    pytest.param(
        length, flags, id=f"len{length}-" + "".join("ULNS"[i] for i, f in enumerate(flags) if f)
    )
    for length in LENGTHS
    for flags in itertools.product((False, True), repeat=4)
]


@pytest.mark.parametrize(("length", "flags"), COMBINATIONS)
def test_every_policy_combination_yields_a_compliant_password(
    length: int, flags: tuple[bool, ...]
) -> None:
    raw = iam_policy(length, flags, reuse=24)
    policy = PasswordPolicy.from_iam(raw)
    for _ in range(5):
        password = generate(policy)
        assert problems(password, policy) == []
        assert _policy_violation(password, raw) is None, "IAM (the twin) would refuse it"
        assert max(length, 24) == len(password) <= IAM_MAX_LENGTH
        assert set(password) <= set(ALPHABET)


def test_no_custom_policy_means_iams_default_policy() -> None:
    policy = PasswordPolicy.from_iam(None)
    password = generate(policy)
    assert _policy_violation(password, None) is None
    assert problems(password, policy) == []
    assert problems("abcdefgh", policy) != [], "default policy wants 3 of the 4 classes"
    assert problems("abcdEFG1", policy) == []


@pytest.mark.parametrize(
    ("policy", "length", "message"),
    [
        (PasswordPolicy(min_length=129, custom=True), None, "more than IAM's maximum of 128"),
        (PasswordPolicy(min_length=200, require_symbols=True, custom=True), None, "128"),
        (PasswordPolicy(min_length=8, custom=True), 129, "longer than IAM's maximum 128"),
        (PasswordPolicy(min_length=20, custom=True), 12, "shorter than the policy's 20"),
        (PasswordPolicy(min_length=1, custom=True), 3, "cannot hold all four character classes"),
    ],
)
def test_impossible_requests_fail_with_a_clear_error(
    policy: PasswordPolicy, length: int | None, message: str
) -> None:
    with pytest.raises(PasswordPolicyError, match=message):
        generate(policy, length)
    with pytest.raises(PasswordPolicyError):
        check_policy(policy, length)


@pytest.mark.parametrize(
    ("password", "policy", "lacking"),
    [
        ("Short1!", PasswordPolicy(min_length=8, custom=True), "shorter than 8"),
        ("nouppercase1!", PasswordPolicy(require_uppercase=True, custom=True), "no uppercase"),
        ("NOLOWER1!", PasswordPolicy(require_lowercase=True, custom=True), "no lowercase"),
        ("NoNumbers!", PasswordPolicy(require_numbers=True, custom=True), "no number"),
        ("NoSymbols1", PasswordPolicy(require_symbols=True, custom=True), "no symbol"),
        ("Tab\tInside1!", PasswordPolicy(custom=True), "outside letters"),
        ("A" * 129, PasswordPolicy(custom=True), "longer than 128"),
        ("alllowercase", PasswordPolicy(), "fewer than 3 of the 4"),
    ],
)
def test_problems_names_what_a_password_lacks(
    password: str, policy: PasswordPolicy, lacking: str
) -> None:
    found = problems(password, policy)
    assert any(lacking in p for p in found), found
    assert all(password not in p for p in found), "a problem never quotes the password"


def test_symbols_are_iams_documented_set() -> None:
    assert SYMBOLS == "!@#$%^&*()_+-=[]{}|'"
    assert problems("aA1" + SYMBOLS, PasswordPolicy(require_symbols=True, custom=True)) == []


def test_passwords_are_random() -> None:
    policy = PasswordPolicy.from_iam(iam_policy(14, (True, True, True, True)))
    assert len({generate(policy) for _ in range(50)}) == 50


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(min_value=6, max_value=128),
    flags=st.tuples(*[st.booleans()] * 4),
    seed=st.integers(min_value=0, max_value=2**32),
    extra=st.one_of(st.none(), st.integers(min_value=0, max_value=128)),
)
def test_any_satisfiable_request_yields_a_compliant_password(
    length: int, flags: tuple[bool, ...], seed: int, extra: int | None
) -> None:
    raw = iam_policy(length, flags)
    policy = PasswordPolicy.from_iam(raw)
    wanted = None if extra is None else max(length, 4, extra)
    password = generate(policy, wanted, rng=random.Random(seed))
    assert _policy_violation(password, raw) is None
    assert problems(password, policy) == []
    assert len(password) == (wanted if wanted is not None else max(24, length))
