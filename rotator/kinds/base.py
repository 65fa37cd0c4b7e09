"""The credential-kind port: the only code that calls a kind's IAM APIs.

A kind module in ``rotator/kinds/`` declares everything about its kind in one place:

* its **facts** (``model.KindFacts``: shape, per-holder limit, noun, account-held, in the
  credential report), as the ``facts`` class variable of
* its **rule class** (a ``policy.Rule`` with the kind's typed options), and
* its **implementation**: a class with the core ``CredentialKind`` methods and those of
  the optional capabilities below that the kind has — nothing else, no stubs;
* a ``Registration`` named ``REGISTRATION`` tying them together with the **IAM actions**
  the implementation calls.

``rotator/kinds/__init__.py`` lists the kind modules: that is the registry, and the policy
file's ``AnyRule`` is built from it. The engine drives every kind through the same
protocol; it asks for a capability with ``isinstance`` (the protocols are
``runtime_checkable``) and knows nothing of IAM.

IAM is reached through ``iam``, an aioboto3 IAM client or anything with the same methods
and response shapes (tests use ``rotator.testing.MemoryIam``). Kinds convert botocore
errors with ``rotator.aws.aws_errors`` so callers only see ``rotator.errors``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from rotator.aws import Aws
from rotator.model import Credential, Holder, Kind, KindFacts, Status
from rotator.policy import Rule
from rotator.sinks.base import SecretEntry, SecretSink

if TYPE_CHECKING:  # settings builds the policy's rule union from this package's registry
    from rotator.settings import VerifySettings

# An aioboto3 IAM client, or an object with the same methods and response shapes.
IamClient = Any

R_contra = TypeVar("R_contra", bound=Rule, contravariant=True)


@dataclass(frozen=True, kw_only=True)
class KindContext:
    """What a kind needs to talk to AWS during one sweep."""

    iam: IamClient
    iam_once: IamClient  # the same, without SDK retries: for calls that are not idempotent
    aws: Aws
    account: str
    verify: VerifySettings
    sink: Callable[[Rule], SecretSink]  # the session's sink of a rule (``Sinks.for_rule``)
    # STS clients the session shares, one per verification region, each signing a call
    # with the credentials its caller set with ``aws.signing_as`` (verifying new keys);
    # a region missing here: a client per verification.
    signed_sts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verify_regions(self) -> tuple[str, ...]:
        """The regions whose STS endpoints a new key must answer from: ``[verify]
        regions``, else the session's region."""
        return self.verify.regions or (self.aws.session_region,)


class CredentialKind(Protocol):
    """The core every kind has. Every method is safe to call again after a crash."""

    kind: Kind

    async def list(self, user: str, slot: str = "") -> list[Credential]:
        """The holder's credentials of this kind (and slot). Raises ``NoSuchEntity`` if the
        holder is gone."""
        ...

    async def create(self, user: str, material: SecretEntry | None, slot: str = "") -> SecretEntry:
        """Create the credential in IAM (uploading ``material``, for a kind that
        ``MakesMaterial``) and return its entry with the ID IAM assigned and all secret
        fields. Raises ``LimitExceeded``."""
        ...

    def matches(self, credential: Credential, pending: SecretEntry) -> bool:
        """True if ``credential`` is the one ``pending`` was (or was about to be) created as:
        how a resumed rotation recognises a create that happened before a crash."""
        ...

    async def verify(self, user: str, entry: SecretEntry) -> None:
        """Prove the new credential works as ``user``. Raises ``VerificationFailed``."""
        ...

    async def set_status(self, user: str, credential_id: str, status: Status) -> None:
        """Set a credential Active or Inactive. Idempotent. A kind without a status says
        how it treats the request (server certificates: nothing to do; a console password:
        ``Refused``)."""
        ...

    async def delete(self, user: str, credential_id: str) -> None:
        """Delete a credential. Deleting one that is already gone is a no-op."""
        ...


# -- optional capabilities ---------------------------------------------------------------


@runtime_checkable
class MakesMaterial(Protocol[R_contra]):
    """A kind whose secret rotator makes (key pairs, certificates, passwords); without
    this capability IAM makes the secret on ``create``."""

    async def make_material(self, rule: R_contra, user: str) -> SecretEntry:
        """New secret material as the kind's rule describes. Stored pending *before*
        ``create`` is called."""
        ...

    def reusable(self, pending: SecretEntry) -> bool:
        """True if ``pending`` is material rotator made that a resumed create should use
        again (rather than make new): it was stored before IAM saw it and IAM holds no
        credential made from it."""
        ...


@runtime_checkable
class CreatesPerRule(Protocol[R_contra]):
    """A kind whose IAM create takes options from the rule (a Bedrock API key's
    ``CredentialAgeDays``); the engine creates through ``create_for`` then."""

    async def create_for(self, rule: R_contra, user: str, slot: str = "") -> SecretEntry:
        """``create`` with the rule's options. Raises ``LimitExceeded``."""
        ...


@runtime_checkable
class TracksLastUse(Protocol):
    """A kind whose last use IAM records (access keys, console passwords): deactivating an
    old one is held while it is still used, and ``disable_unused_after`` can judge it."""

    async def last_used(self, user: str, credential_id: str) -> datetime | None:
        """When the credential was last used (None: never)."""
        ...


@runtime_checkable
class Disables(Protocol):
    """A kind whose rule can ask for unused credentials to be taken out of service
    (``disable_unused_after``, CIS 1.12)."""

    async def disable(self, user: str, credential_id: str) -> None:
        """Take an unused credential out of service (deactivate it; a console password's
        login profile is deleted). Idempotent."""
        ...


@runtime_checkable
class AccountHolders(Protocol):
    """A kind held by the account rather than by users (``KindFacts.account_held``)."""

    async def account_holders(self, account: str, rules: Sequence[Rule]) -> Sequence[Holder]:
        """The holders the rules may select, with their credentials."""
        ...


@runtime_checkable
class TracksRotations(Protocol):
    """A kind whose IAM dates may lag a change rotator made (console passwords)."""

    async def rotated_at(self, rule: Rule, user: str) -> datetime | None:
        """When rotator last changed ``user``'s credential under ``rule`` (None: unknown)."""
        ...


# -- registration ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IamActions:
    """The IAM actions a kind's implementation calls, for ``rotator iam-policy``."""

    scoped: tuple[str, ...]  # granted on its holders under the rules' path prefixes
    unscoped: tuple[str, ...] = ()  # IAM has no resource-level permission: on "*"
    # Called only to disable an unused credential: granted (scoped) only where a rule of
    # the kind sets ``disable_unused_after`` (``Rule.unused_after``).
    disable: tuple[str, ...] = ()
    resource: str = "user"  # the IAM resource type of its holders' ARNs

    @property
    def all(self) -> tuple[str, ...]:
        return self.scoped + self.unscoped + self.disable


@dataclass(frozen=True, kw_only=True)
class Registration:
    """One kind, as its module registers it: its rule class (which carries its facts), how
    to build its implementation for a sweep, and the IAM actions that implementation
    calls. Checked when made: the rule's ``kind`` is the facts' kind, and the
    implementation lists account holders exactly when the facts say account-held."""

    rule: type[Rule]
    build: Callable[[KindContext], CredentialKind]
    iam: IamActions

    @property
    def facts(self) -> KindFacts:
        return self.rule.facts

    @property
    def kind(self) -> Kind:
        return self.facts.kind

    def __post_init__(self) -> None:
        tags = typing.get_args(self.rule.model_fields["kind"].annotation)
        if tags != (self.kind,):
            raise TypeError(f"{self.rule.__name__}.kind must be Literal[{self.kind!r}]")
        holders = isinstance(self.build, type) and issubclass(self.build, AccountHolders)
        if holders != self.facts.account_held:
            raise TypeError(
                f"{self.kind}: account_held={self.facts.account_held} but its implementation "
                f"{'lists' if holders else 'does not list'} account holders"
            )
