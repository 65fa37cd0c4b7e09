"""The in-memory IAM twin's login profiles (console passwords) and account password policy.

Like IAM, it enforces the password policy on ``CreateLoginProfile`` and
``UpdateLoginProfile`` (``PasswordPolicyViolation``), including ``PasswordReusePrevention``,
and applies IAM's default policy when none is set. The check is written independently of
``rotator.passwords`` so that tests of the generator are not tests of itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator.testing.memory_state import LoginProfile, State, User, client_error, ok

IAM_SYMBOLS = "!@#$%^&*()_+-=[]{}|'"


def _policy_violation(password: str, policy: dict[str, Any] | None) -> str | None:
    """IAM's complaint about ``password`` under ``policy`` (None: the default policy)."""
    classes = {
        "uppercase letter": any(c.isascii() and c.isupper() for c in password),
        "lowercase letter": any(c.isascii() and c.islower() for c in password),
        "number": any(c.isdigit() for c in password),
        "symbol": any(c in IAM_SYMBOLS for c in password),
    }
    if policy is None:
        if len(password) < 8:
            return "Password should have a minimum length of 8"
        if sum(classes.values()) < 3:
            return "Password should have at least three of: uppercase, lowercase, numbers, symbols"
        return None
    if len(password) < int(policy.get("MinimumPasswordLength", 6)):
        return f"Password should have a minimum length of {policy['MinimumPasswordLength']}"
    wanted = {
        "uppercase letter": "RequireUppercaseCharacters",
        "lowercase letter": "RequireLowercaseCharacters",
        "number": "RequireNumbers",
        "symbol": "RequireSymbols",
    }
    for name, flag in wanted.items():
        if policy.get(flag) and not classes[name]:
            return f"Password should have at least one {name}"
    return None


class ProfilesMixin(State):
    """``*LoginProfile`` and ``*AccountPasswordPolicy`` calls."""

    def _profile(self, action: str, user: User) -> LoginProfile:
        if user.profile is None:
            raise client_error(
                action, "NoSuchEntity", f"Login Profile for User {user.name} cannot be found.", 404
            )
        return user.profile

    def _check_password(self, action: str, password: str, profile: LoginProfile | None) -> None:
        complaint = _policy_violation(password, self.password_policy)
        reuse = int((self.password_policy or {}).get("PasswordReusePrevention") or 0)
        recent = profile.history[-reuse:] if profile is not None and reuse else []
        if complaint is None and password in recent:
            complaint = f"Password was used within the last {reuse} passwords"
        if complaint is not None:
            raise client_error(action, "PasswordPolicyViolation", complaint, 400)

    def _profile_shape(self, user: User, profile: LoginProfile) -> dict[str, Any]:
        return {
            "UserName": user.name,
            "CreateDate": profile.created,
            "PasswordResetRequired": profile.reset_required,
        }

    async def create_login_profile(
        self, *, UserName: str, Password: str, PasswordResetRequired: bool = False
    ) -> dict[str, Any]:
        self._call("CreateLoginProfile")
        user = self._user("CreateLoginProfile", UserName)
        if user.profile is not None:
            raise client_error(
                "CreateLoginProfile",
                "EntityAlreadyExists",
                f"Login Profile for user {UserName} already exists.",
                409,
            )
        self._check_password("CreateLoginProfile", Password, None)
        now = self.clock()
        user.profile = LoginProfile(
            password=Password,
            created=now,
            changed=now,
            reset_required=PasswordResetRequired,
            history=[Password],
        )
        return ok({"LoginProfile": self._profile_shape(user, user.profile)})

    async def get_login_profile(self, *, UserName: str) -> dict[str, Any]:
        self._call("GetLoginProfile")
        user = self._user("GetLoginProfile", UserName)
        return ok(
            {"LoginProfile": self._profile_shape(user, self._profile("GetLoginProfile", user))}
        )

    async def update_login_profile(
        self,
        *,
        UserName: str,
        Password: str | None = None,
        PasswordResetRequired: bool | None = None,
    ) -> dict[str, Any]:
        self._call("UpdateLoginProfile")
        user = self._user("UpdateLoginProfile", UserName)
        profile = self._profile("UpdateLoginProfile", user)
        if Password is not None:
            self._check_password("UpdateLoginProfile", Password, profile)
            profile.password = Password
            profile.changed = self.clock()
            profile.history.append(Password)
        if PasswordResetRequired is not None:
            profile.reset_required = PasswordResetRequired
        return ok({})

    async def delete_login_profile(self, *, UserName: str) -> dict[str, Any]:
        self._call("DeleteLoginProfile")
        user = self._user("DeleteLoginProfile", UserName)
        self._profile("DeleteLoginProfile", user)
        user.profile = None
        return ok({})

    def use_password(self, user: str, at: datetime | None = None) -> None:
        """Test helper: record a console sign-in (IAM's ``PasswordLastUsed``)."""
        self.users[user].password_last_used = at or self.clock()

    async def get_account_password_policy(self) -> dict[str, Any]:
        self._call("GetAccountPasswordPolicy")
        if self.password_policy is None:
            raise client_error(
                "GetAccountPasswordPolicy",
                "NoSuchEntity",
                f"The Password Policy with domain name {self.account} cannot be found.",
                404,
            )
        return ok({"PasswordPolicy": dict(self.password_policy)})

    async def update_account_password_policy(self, **settings: Any) -> dict[str, Any]:
        self._call("UpdateAccountPasswordPolicy")
        length = int(settings.get("MinimumPasswordLength", 6))
        if not 6 <= length <= 128:
            raise client_error(
                "UpdateAccountPasswordPolicy",
                "ValidationError",
                "MinimumPasswordLength must be between 6 and 128",
            )
        flags = (
            "RequireSymbols",
            "RequireNumbers",
            "RequireUppercaseCharacters",
            "RequireLowercaseCharacters",
            "AllowUsersToChangePassword",
            "HardExpiry",
        )
        policy: dict[str, Any] = {"MinimumPasswordLength": length}
        policy.update({flag: bool(settings.get(flag, False)) for flag in flags})
        policy["ExpirePasswords"] = bool(settings.get("MaxPasswordAge"))
        for number in ("MaxPasswordAge", "PasswordReusePrevention"):
            if settings.get(number):
                policy[number] = int(settings[number])
        self.password_policy = policy
        return ok({})
