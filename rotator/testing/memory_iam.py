"""An in-memory IAM: a real implementation of the IAM calls rotator makes, for tests.

It answers with IAM's response shapes (dicts with timezone-aware datetimes, as botocore
parses them) and raises IAM's errors as botocore ``ClientError``s with IAM's codes and HTTP
statuses, so ``rotator.aws.aws_errors`` converts them exactly as it converts the real
service's. Methods are coroutines, like an aioboto3 client's. It covers what moto lacks
(service-specific credentials; enforcing the password policy; a credential report whose
``GeneratedTime`` and four-hour regeneration rule are real; validating certificates, their
duplicates and limits, ``DeleteConflict``) and is the second implementation the kind
contract suite runs against, for every kind.

Calls: users (CreateUser, GetUser, ListUsers, ListUserTags), access keys
(Create/List/Update/DeleteAccessKey, GetAccessKeyLastUsed), login profiles
(Create/Get/Update/DeleteLoginProfile), the account password policy
(Get/UpdateAccountPasswordPolicy), SSH public keys and service-specific credentials
(``memory_keys``), server and signing certificates (``memory_certificates``), OpenID
Connect providers (``memory_oidc``), the credential report (``memory_report``).

Test helpers (not IAM calls): ``use_access_key``, ``use_password``, ``fail_next``,
``attach_server_certificate`` / ``detach_server_certificate``,
``calls`` (a ``Counter`` of every call by action), ``clock`` (replaceable), ``page_size``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator.testing.memory_certificates import CertificatesMixin
from rotator.testing.memory_keys import KeysMixin
from rotator.testing.memory_oidc import OidcMixin
from rotator.testing.memory_profiles import ProfilesMixin
from rotator.testing.memory_report import ReportMixin
from rotator.testing.memory_state import (
    AccessKey,
    User,
    client_error,
    ok,
    page,
    random_id,
    random_secret,
)

MAX_ACCESS_KEYS = 2


class MemoryIam(KeysMixin, ProfilesMixin, CertificatesMixin, OidcMixin, ReportMixin):
    """The twin. ``MemoryIam(account=..., clock=...)``; every method is an IAM call."""

    # -- users and tags -----------------------------------------------------------------

    async def create_user(
        self, *, UserName: str, Path: str = "/", Tags: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        self._call("CreateUser")
        if UserName in self.users:
            raise client_error(
                "CreateUser",
                "EntityAlreadyExists",
                f"User with name {UserName} already exists.",
                409,
            )
        user = User(
            name=UserName,
            path=Path,
            user_id=random_id("AIDA"),
            arn=f"arn:aws:iam::{self.account}:user{Path}{UserName}",
            created=self.clock(),
            tags={t["Key"]: t["Value"] for t in Tags or []},
        )
        self.users[UserName] = user
        return ok({"User": self._user_shape(user)})

    def _user_shape(self, user: User) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "Path": user.path,
            "UserName": user.name,
            "UserId": user.user_id,
            "Arn": user.arn,
            "CreateDate": user.created,
        }
        if user.password_last_used is not None:
            shape["PasswordLastUsed"] = user.password_last_used
        return shape

    async def get_user(self, *, UserName: str) -> dict[str, Any]:
        self._call("GetUser")
        return ok({"User": self._user_shape(self._user("GetUser", UserName))})

    async def list_users(
        self, *, PathPrefix: str = "/", Marker: str | None = None, MaxItems: int | None = None
    ) -> dict[str, Any]:
        self._call("ListUsers")
        found = sorted(
            (u for u in self.users.values() if u.path.startswith(PathPrefix)),
            key=lambda u: u.name.lower(),
        )
        chunk, paging = page(found, Marker, MaxItems)
        return ok({"Users": [self._user_shape(u) for u in chunk], **paging})

    async def list_user_tags(
        self, *, UserName: str, Marker: str | None = None, MaxItems: int | None = None
    ) -> dict[str, Any]:
        self._call("ListUserTags")
        tags = sorted(self._user("ListUserTags", UserName).tags.items())
        chunk, paging = page(tags, Marker, MaxItems)
        return ok({"Tags": [{"Key": k, "Value": v} for k, v in chunk], **paging})

    # -- access keys --------------------------------------------------------------------

    def _key(self, action: str, user: User, key_id: str) -> AccessKey:
        found = next((k for k in user.keys if k.key_id == key_id), None)
        if found is None:
            raise client_error(
                action, "NoSuchEntity", f"The Access Key with id {key_id} cannot be found.", 404
            )
        return found

    async def create_access_key(self, *, UserName: str) -> dict[str, Any]:
        self._call("CreateAccessKey")
        user = self._user("CreateAccessKey", UserName)
        if len(user.keys) >= MAX_ACCESS_KEYS:
            raise client_error(
                "CreateAccessKey",
                "LimitExceeded",
                f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}",
                409,
            )
        key = AccessKey(
            key_id=random_id("AKIA"), secret=random_secret(), status="Active", created=self.clock()
        )
        user.keys.append(key)
        shape = {
            "UserName": UserName,
            "AccessKeyId": key.key_id,
            "Status": key.status,
            "SecretAccessKey": key.secret,
            "CreateDate": key.created,
        }
        return ok({"AccessKey": shape})

    async def list_access_keys(self, *, UserName: str) -> dict[str, Any]:
        self._call("ListAccessKeys")
        user = self._user("ListAccessKeys", UserName)
        listed = [
            {
                "UserName": UserName,
                "AccessKeyId": k.key_id,
                "Status": k.status,
                "CreateDate": k.created,
            }
            for k in user.keys
        ]
        return ok({"AccessKeyMetadata": listed, "IsTruncated": False})

    async def update_access_key(
        self, *, UserName: str, AccessKeyId: str, Status: str
    ) -> dict[str, Any]:
        self._call("UpdateAccessKey")
        if Status not in ("Active", "Inactive"):
            raise client_error("UpdateAccessKey", "ValidationError", f"bad Status {Status!r}")
        self._key(
            "UpdateAccessKey", self._user("UpdateAccessKey", UserName), AccessKeyId
        ).status = Status
        return ok({})

    async def delete_access_key(self, *, UserName: str, AccessKeyId: str) -> dict[str, Any]:
        self._call("DeleteAccessKey")
        user = self._user("DeleteAccessKey", UserName)
        user.keys.remove(self._key("DeleteAccessKey", user, AccessKeyId))
        return ok({})

    async def get_access_key_last_used(self, *, AccessKeyId: str) -> dict[str, Any]:
        self._call("GetAccessKeyLastUsed")
        for user in self.users.values():
            for key in user.keys:
                if key.key_id == AccessKeyId:
                    used: dict[str, Any] = {
                        "ServiceName": key.last_service,
                        "Region": key.last_region,
                    }
                    if key.last_used is not None:
                        used["LastUsedDate"] = key.last_used
                    return ok({"UserName": user.name, "AccessKeyLastUsed": used})
        raise client_error("GetAccessKeyLastUsed", "AccessDenied", "not authorized", 403)

    def use_access_key(
        self,
        key_id: str,
        at: datetime | None = None,
        *,
        service: str = "s3",
        region: str = "us-east-1",
    ) -> None:
        """Test helper: record that the key signed a request (IAM's last-used tracking)."""
        for user in self.users.values():
            for key in user.keys:
                if key.key_id == key_id:
                    key.last_used = at or self.clock()
                    key.last_service, key.last_region = service, region
                    return
        raise KeyError(key_id)
