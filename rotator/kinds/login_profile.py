"""Console passwords (login profiles): one per user, changed in place.

There is no second slot, so the crash rule is: the new password is generated to the
account's password policy (``rotator.passwords``) and stored in the sink as *pending*
before ``UpdateLoginProfile`` is called; a resumed rotation finds it pending
(``reusable``) and applies the *same* password again. If IAM's ``PasswordReusePrevention``
then refuses it (``PasswordPolicyViolation``) although it satisfies the policy, the
password is already the user's: the first attempt was applied. Promotion completes the
rotation (nothing old to retire).

The listed credential's ID is the user name (stable for the profile); the sink entry's ID
is ``pw-<random>``, made with the password. A user without a login profile has no console
access: nothing to rotate (``list`` returns []). ``EntityTemporarilyUnmodifiable`` is
transient (the step is retried). Rotator never deletes a login profile in a rotation; only
``disable`` (``disable_unused_after``, CIS 1.12) does.

Declares the kind once: ``LoginProfileRule`` (options, and the facts as ``facts``),
``LoginProfiles`` (the IAM calls) and ``REGISTRATION``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Literal

from pydantic import SecretStr

from rotator import passwords
from rotator.aws import aws_errors
from rotator.errors import NoSuchEntity, Permanent, Refused
from rotator.kinds.base import IamActions, KindContext, Registration
from rotator.model import Credential, Kind, KindFacts, Shape, Status, new_id, utcnow
from rotator.policy import Duration, Rule
from rotator.sinks import SinkKey
from rotator.sinks.base import SecretEntry

PASSWORD = "Password"  # noqa: S105 (a field name, not a secret)
USER_NAME = "UserName"
RESET_REQUIRED = "PasswordResetRequired"


def user_gone(exc: NoSuchEntity) -> bool:
    """True if IAM's NoSuchEntity is about the user (not about a missing login profile)."""
    return "user with name" in exc.aws_message.lower()


class LoginProfileRule(Rule):
    """``kind = "login-profile"``: the console password, changed in place."""

    facts: ClassVar[KindFacts] = KindFacts(
        kind=Kind.LOGIN_PROFILE,
        shape=Shape.IN_PLACE,
        noun="console password",
        limit=1,
        in_credential_report=True,
    )
    kind: Literal[Kind.LOGIN_PROFILE]
    password_reset_required: bool = True
    # Delete the login profile of a password unused for this long (CIS 1.12).
    disable_unused_after: Duration | None = None

    @property
    def unused_after(self) -> timedelta | None:
        return self.disable_unused_after


class LoginProfiles:
    """The IAM calls of ``kind = "login-profile"``; makes its material (the password),
    tracks last use and its own rotations, disables."""

    kind = Kind.LOGIN_PROFILE

    def __init__(self, ctx: KindContext) -> None:
        self._ctx = ctx
        self._iam = ctx.iam

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        try:
            with aws_errors("GetLoginProfile", user=user):
                profile = (await self._iam.get_login_profile(UserName=user))["LoginProfile"]
        except NoSuchEntity as exc:
            if user_gone(exc):
                raise
            return []  # no console access: nothing to rotate
        return [
            Credential(
                kind=self.kind,
                credential_id=user,
                status=Status.ACTIVE,
                created=profile["CreateDate"],
            )
        ]

    async def password_policy(self) -> passwords.PasswordPolicy:
        """The account's password policy (IAM's default one if none is set)."""
        try:
            with aws_errors("GetAccountPasswordPolicy"):
                found = (await self._iam.get_account_password_policy())["PasswordPolicy"]
        except NoSuchEntity:
            return passwords.PasswordPolicy.from_iam(None)
        return passwords.PasswordPolicy.from_iam(found)

    async def make_material(self, rule: LoginProfileRule, user: str) -> SecretEntry:
        password = passwords.generate(await self.password_policy())
        reset = rule.password_reset_required
        return SecretEntry(
            kind=self.kind,
            credential_id=new_id("pw"),
            created_at=utcnow(),
            public={USER_NAME: user, RESET_REQUIRED: str(reset).lower()},
            secret={PASSWORD: SecretStr(password)},
        )

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        if material is None or PASSWORD not in material.secret:
            raise Refused(f"no pending password for {user}: rotator makes console passwords itself")
        password = material.reveal(PASSWORD)
        reset = material.public.get(RESET_REQUIRED, "true") == "true"
        ids = {"user": user, "credential_id": material.credential_id}
        try:
            with aws_errors("UpdateLoginProfile", **ids):
                await self._iam.update_login_profile(
                    UserName=user, Password=password, PasswordResetRequired=reset
                )
        except NoSuchEntity as exc:
            if user_gone(exc):
                raise
            raise Refused(
                f"{user} has no console access any more (its login profile was deleted): "
                "nothing to rotate"
            ) from None
        except Permanent as exc:
            if exc.code != "PasswordPolicyViolation":
                raise
            lacking = passwords.problems(password, await self.password_policy())
            if lacking:
                raise passwords.PasswordPolicyError(
                    f"the pending password of {user} ({material.credential_id}) no longer "
                    f"satisfies the account's password policy: {'; '.join(lacking)}"
                ) from None
            # It satisfies the policy, so IAM refused it as a re-use: it is already applied.
        return material

    def reusable(self, pending: SecretEntry) -> bool:
        return pending.kind is self.kind and PASSWORD in pending.secret

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        return False  # in place: the profile is never a new credential to adopt

    async def verify(self, user: str, entry: SecretEntry) -> None:
        # The console cannot be signed in to through the API: the proof is that IAM accepted
        # the password (create) and the profile is still there.
        with aws_errors("GetLoginProfile", user=user, credential_id=entry.credential_id):
            await self._iam.get_login_profile(UserName=user)

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        if status is Status.INACTIVE:
            raise Refused(
                f"the console password of {user} has no Inactive state; rotator removes a "
                "login profile only when it is unused (disable_unused_after)"
            )

    async def delete(self, user: str, credential_id: str) -> None:
        raise Refused(f"rotator does not delete the login profile of {user} during a rotation")

    async def last_used(self, user: str, credential_id: str) -> datetime | None:
        with aws_errors("GetUser", user=user):
            found = (await self._iam.get_user(UserName=user))["User"]
        when = found.get("PasswordLastUsed")
        return when if isinstance(when, datetime) else None

    async def disable(self, user: str, credential_id: str) -> None:
        """Delete the login profile (the user loses console access; keys are untouched)."""
        try:
            with aws_errors("DeleteLoginProfile", user=user):
                await self._iam.delete_login_profile(UserName=user)
        except NoSuchEntity:
            return  # already gone

    async def rotated_at(self, rule: Rule, user: str) -> datetime | None:
        """When rotator last set ``user``'s password under ``rule``: the sink's current
        entry. IAM tells when a password changed only in the credential report (up to four
        hours old; moto never updates it), so this keeps a password rotator has just
        changed from looking due again."""
        sink = self._ctx.sink(rule)
        key = SinkKey(account=self._ctx.account, user=user, kind=self.kind)
        current = (await sink.read(key)).current
        return current.created_at if current is not None else None


REGISTRATION = Registration(
    rule=LoginProfileRule,
    build=LoginProfiles,
    iam=IamActions(
        scoped=(
            "iam:GetLoginProfile",
            "iam:UpdateLoginProfile",
            "iam:GetUser",
        ),
        unscoped=("iam:GetAccountPasswordPolicy",),
        disable=("iam:DeleteLoginProfile",),  # ``disable``: never in a rotation
    ),
)
