"""Rotating the access key rotator itself signs with (the aws-vault / aws-rotate-key case).

A host whose rotator uses the very key a rule rotates (``AWS_PROFILE`` naming the profile
the aws-credentials file sink rewrites, say) needs two things the protocol alone lacks:

* **Switch.** Once the new key is promoted, rotator's own calls must be signed with it:
  ``follow`` reads the new key back from the sink and switches every client of the
  session to it (``Aws.switch_to``) *before* the promotion time is stamped. So every call
  rotator signed with the old key was sent before ``promoted_at``.
* **Don't count rotator as a consumer.** The deactivate step holds an old key that was used
  after the promotion. Rotator's own last calls with the old key were sent before the
  switch, hence before ``promoted_at``; IAM may record one that was in flight (another
  task's call, sent just before the switch) up to one call budget later (the SDK gives up
  an attempt after its connect and read timeouts, and a retry is signed afresh, with the
  new key). So when this session now signs with the rotation's *new* key, use of the old
  key up to ``promoted_at + margin`` (the call budget) is rotator's own and is ignored;
  use after that is an application's and holds the step as always.

A session that still signs with the old key when the old key is to be deactivated (its
credentials do not come from the rotation's sink, e.g. environment variables) holds the
step: deactivating it would lock rotator out, and rotator is a consumer that has not
switched.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rotator import audit
from rotator.aws import Aws, Credentials
from rotator.model import Kind, Rotation
from rotator.sinks.base import SecretEntry

SECRET_ACCESS_KEY = "SecretAccessKey"  # noqa: S105 (a field name, not a secret)


class OwnKey:
    """The access key this session signs with, and switching it after a promotion."""

    def __init__(self, aws: Aws, margin: timedelta) -> None:
        self._aws = aws
        self.margin = margin

    async def current(self) -> str | None:
        """The access key ID rotator's own calls are signed with now."""
        return await self._aws.own_access_key_id()

    async def is_old_key_of(self, rotation: Rotation) -> bool:
        """True if rotator still signs with the key ``rotation`` replaces."""
        if rotation.kind is not Kind.ACCESS_KEY or rotation.old_credential_id is None:
            return False
        return await self.current() == rotation.old_credential_id

    async def follow(self, rotation: Rotation, entry: SecretEntry | None) -> bool:
        """After ``rotation`` promoted ``entry``: if rotator signed with the old key, sign
        with the new one from now on. True if it switched."""
        if entry is None or not await self.is_old_key_of(rotation):
            return False
        secret = entry.secret.get(SECRET_ACCESS_KEY)
        if secret is None:
            return False
        self._aws.switch_to(
            Credentials(
                access_key_id=entry.credential_id,
                secret_access_key=secret.get_secret_value(),
            )
        )
        audit.get_logger().info(
            audit.OWN_KEY_SWITCHED,
            rotation_id=rotation.rotation_id,
            user=rotation.user,
            kind=str(rotation.kind),
            credential_id=entry.credential_id,
            old_credential_id=rotation.old_credential_id,
            reason="rotator rotated the access key it signs with; its calls now use the new one",
        )
        return True

    async def own_use(self, rotation: Rotation, used: datetime, promoted_at: datetime) -> str:
        """Why the old key's use at ``used`` (after ``promoted_at``) is rotator's own and
        does not hold the step; empty if it may be an application's."""
        if rotation.kind is not Kind.ACCESS_KEY or rotation.new_credential_id is None:
            return ""
        if used > promoted_at + self.margin:
            return ""
        if await self.current() != rotation.new_credential_id:
            return ""
        return (
            f"old key last used at {used:%Y-%m-%d %H:%M:%S}Z, within {self.margin} of the "
            "promotion: by rotator itself, which signed with it until the promotion and "
            "signs with the new key now"
        )
