"""An AWS Organization in the moto server: OUs by path, accounts in them, member roles,
and AssumeRole refused (as AWS does) for a role the target account lacks."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from moto.iam.models import iam_backends
from moto.sts.exceptions import STSClientError
from moto.sts.models import STSBackend

from tests.support.moto import MotoSandbox

ROLE = "rotator-member"


class _AccessDenied(STSClientError):
    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message)


@contextmanager
def assume_role_needs_the_role() -> Iterator[None]:
    """moto lets anyone assume any role ARN, existing or not; AWS refuses a role that does
    not exist with AccessDenied. The moto server runs in this process: within the block
    its STS does what AWS does."""
    original = STSBackend.assume_role

    def assume_role(self: STSBackend, **kwargs: Any) -> Any:
        arn = str(kwargs["role_arn"])
        account = arn.split(":")[4]
        name = arn.rsplit("/", 1)[-1]
        roles = iam_backends[account]["aws"].roles.values()
        if not any(r.name == name for r in roles):
            raise _AccessDenied(f"User is not authorized to perform: sts:AssumeRole on {arn}")
        return original(self, **kwargs)

    STSBackend.assume_role = assume_role  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():  # moto: "AccessDenied does not match an error shape"
            warnings.filterwarnings("ignore", message=".*does not match an error shape.*")
            yield
    finally:
        STSBackend.assume_role = original  # type: ignore[method-assign]


@dataclass
class Org:
    """An organization whose management account is the sandbox's own."""

    sandbox: MotoSandbox
    root: str = ""
    ous: dict[str, str] = field(default_factory=dict)  # path -> OU ID
    accounts: dict[str, str] = field(default_factory=dict)  # name -> account ID

    @property
    def org(self) -> Any:
        return self.sandbox.client("organizations")

    def create(self) -> Org:
        self.org.create_organization(FeatureSet="ALL")
        self.root = self.org.list_roots()["Roots"][0]["Id"]
        self.ous["/"] = self.root
        return self

    def ou(self, path: str) -> str:
        """The OU at ``path`` (``/A/B``), made with its parents if missing."""
        if path in self.ous:
            return self.ous[path]
        parent_path, _, name = path.rpartition("/")
        parent = self.ou(parent_path or "/")
        made = self.org.create_organizational_unit(ParentId=parent, Name=name)
        self.ous[path] = made["OrganizationalUnit"]["Id"]
        return self.ous[path]

    def account(
        self, name: str, ou: str = "/", *, tags: dict[str, str] | None = None, role: bool = True
    ) -> str:
        """A new account in ``ou`` (with the member role unless ``role`` is False)."""
        kwargs: dict[str, Any] = {"AccountName": name, "Email": f"{name}@example.com"}
        if tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        status = self.org.create_account(**kwargs)["CreateAccountStatus"]
        account = str(status["AccountId"])
        if ou != "/":
            self.org.move_account(
                AccountId=account, SourceParentId=self.root, DestinationParentId=self.ou(ou)
            )
        self.accounts[name] = account
        if role:
            self.in_account(account, "iam").create_role(
                RoleName=ROLE,
                AssumeRolePolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": self.sandbox.account()},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                ),
            )
        return account

    def in_account(self, account: str, service: str) -> Any:
        """A client acting in ``account`` (through the member role, as rotator does)."""
        creds = self.sandbox.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{ROLE}", RoleSessionName="test"
        )["Credentials"]
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.sandbox.url,
            region_name=self.sandbox.region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def user(self, account: str, name: str, *, keys: int = 1, age_days: int = 100) -> list[str]:
        """A user in ``account`` with ``keys`` active access keys aged ``age_days``
        (moto's backend, in this process: IAM has no way to backdate a key). Works for an
        account without the member role too."""
        backend = iam_backends[account]["aws"]
        backend.create_user("us-east-1", name, path="/ci/")
        made = [backend.create_access_key(name) for _ in range(keys)]
        for key in made:
            key.create_date = key.create_date - timedelta(days=age_days)
        return [key.access_key_id for key in made]

    def keys(self, account: str, user: str) -> dict[str, str]:
        """``{AccessKeyId: Status}`` of a user's keys in ``account``."""
        backend = iam_backends[account]["aws"]
        return {k.access_key_id: k.status for k in backend.users[user].access_keys}
