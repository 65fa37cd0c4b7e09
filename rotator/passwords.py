"""Console passwords that satisfy an account's IAM password policy. Pure: no I/O.

``PasswordPolicy.from_iam`` reads ``GetAccountPasswordPolicy``'s ``PasswordPolicy`` (or
None: the account has no custom policy, and IAM applies its default one: at least 8
characters from at least three of the four classes). ``generate`` draws a password with
``secrets`` that has every class (so it satisfies any policy that is satisfiable at its
length); ``problems`` says what a password lacks, and is how the generator's output is
checked before it goes anywhere (moto does not enforce the policy, so rotator does).

Symbols are IAM's documented set: ``! @ # $ % ^ & * ( ) _ + - = [ ] { } | '``.
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rotator.errors import Refused

SYMBOLS = "!@#$%^&*()_+-=[]{}|'"
UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
CLASSES: Mapping[str, str] = {
    "uppercase": UPPER,
    "lowercase": LOWER,
    "number": DIGITS,
    "symbol": SYMBOLS,
}
ALPHABET = UPPER + LOWER + DIGITS + SYMBOLS

IAM_MAX_LENGTH = 128  # IAM rejects longer passwords and policies asking for more
IAM_MIN_LENGTH = 6  # the smallest MinimumPasswordLength IAM accepts
DEFAULT_MIN_LENGTH = 8  # IAM's default policy (no custom policy set)
DEFAULT_LENGTH = 24  # what rotator generates unless the policy asks for more


class PasswordPolicyError(Refused):
    """No password can satisfy the policy (or IAM's limits): a human must change it."""


@dataclass(frozen=True, kw_only=True)
class PasswordPolicy:
    """The parts of an account password policy a new password must satisfy."""

    min_length: int = DEFAULT_MIN_LENGTH
    require_uppercase: bool = False
    require_lowercase: bool = False
    require_numbers: bool = False
    require_symbols: bool = False
    custom: bool = False  # False: no policy set; IAM's default (3 of 4 classes) applies

    @classmethod
    def from_iam(cls, policy: Mapping[str, Any] | None) -> PasswordPolicy:
        """From ``GetAccountPasswordPolicy()["PasswordPolicy"]``; None means no custom
        policy (``NoSuchEntity``), so IAM's default policy applies."""
        if policy is None:
            return cls()
        return cls(
            min_length=int(policy.get("MinimumPasswordLength", IAM_MIN_LENGTH)),
            require_uppercase=bool(policy.get("RequireUppercaseCharacters", False)),
            require_lowercase=bool(policy.get("RequireLowercaseCharacters", False)),
            require_numbers=bool(policy.get("RequireNumbers", False)),
            require_symbols=bool(policy.get("RequireSymbols", False)),
            custom=True,
        )

    @property
    def required_classes(self) -> tuple[str, ...]:
        """The character classes the policy names (the default policy names none but
        wants three of the four)."""
        flags = {
            "uppercase": self.require_uppercase,
            "lowercase": self.require_lowercase,
            "number": self.require_numbers,
            "symbol": self.require_symbols,
        }
        return tuple(name for name, required in flags.items() if required)

    def describe(self) -> str:
        """The policy in words, for error messages."""
        if not self.custom:
            return f"IAM's default policy (>= {self.min_length} characters, 3 of 4 classes)"
        classes = ", ".join(self.required_classes) or "no required classes"
        return f">= {self.min_length} characters; {classes}"


def _length_problem(policy: PasswordPolicy, length: int) -> str | None:
    if length > IAM_MAX_LENGTH:
        return f"a password of {length} characters is longer than IAM's maximum {IAM_MAX_LENGTH}"
    if length < policy.min_length:
        return f"a password of {length} characters is shorter than the policy's {policy.min_length}"
    if length < len(CLASSES):
        return f"a password of {length} characters cannot hold all four character classes"
    return None


def check_policy(policy: PasswordPolicy, length: int | None = None) -> int:
    """The length ``generate`` will use for ``policy``; raises ``PasswordPolicyError`` if
    no password of that length can satisfy it within IAM's limits."""
    if policy.min_length > IAM_MAX_LENGTH:
        raise PasswordPolicyError(
            f"the password policy asks for at least {policy.min_length} characters, more than "
            f"IAM's maximum of {IAM_MAX_LENGTH}: no password can satisfy it"
        )
    chosen = length if length is not None else max(DEFAULT_LENGTH, policy.min_length)
    problem = _length_problem(policy, chosen)
    if problem is not None:
        raise PasswordPolicyError(f"cannot generate a password: {problem} ({policy.describe()})")
    return chosen


def generate(
    policy: PasswordPolicy,
    length: int | None = None,
    *,
    rng: random.Random | None = None,
) -> str:
    """A random password satisfying ``policy``: one character of every class, the rest
    from all of them, shuffled. Raises ``PasswordPolicyError`` for an impossible request."""
    size = check_policy(policy, length)
    draw = rng or secrets.SystemRandom()
    chars = [draw.choice(cls) for cls in CLASSES.values()]
    chars += [draw.choice(ALPHABET) for _ in range(size - len(chars))]
    draw.shuffle(chars)
    password = "".join(chars)
    found = problems(password, policy)
    if found:  # cannot happen; never hand IAM a password rotator has not checked
        raise PasswordPolicyError("generated password failed its own check: " + "; ".join(found))
    return password


def problems(password: str, policy: PasswordPolicy) -> list[str]:
    """What ``password`` lacks under ``policy`` (empty: it complies). Never includes the
    password itself."""
    found: list[str] = []
    if len(password) < policy.min_length:
        found.append(f"shorter than {policy.min_length} characters")
    if len(password) > IAM_MAX_LENGTH:
        found.append(f"longer than {IAM_MAX_LENGTH} characters")
    allowed = set(ALPHABET)
    if any(c not in allowed for c in password):
        found.append("has characters outside letters, digits and IAM's symbols")
    present = {name for name, chars in CLASSES.items() if any(c in chars for c in password)}
    missing = [name for name in policy.required_classes if name not in present]
    if missing:
        found.append("no " + ", no ".join(missing) + " character")
    if not policy.custom and len(present) < 3:
        found.append("fewer than 3 of the 4 character classes (IAM's default policy)")
    return found
