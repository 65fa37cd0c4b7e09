"""The policy: which credentials to rotate, when, and where their secrets go.

A policy is a list of rules. A rule names a credential kind, selects IAM users (path
prefix, name globs, tags), excludes some, says how old a credential may get and how long
the old one stays after the new one is promoted, and names the sink for the secrets.
Everything here is pure validation; nothing does I/O.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    field_validator,
    model_validator,
)

from rotator.cron import CronExpr
from rotator.model import Kind, KindFacts

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d+[smhdw])+$")
_PART = re.compile(r"(\d+)([smhdw])")


# No duration rotator reads may exceed this: ten years is longer than any credential's
# sensible life, and far from ``datetime``'s limits (year 9999) when added to "now".
# Settings with a tighter bound say so with ``at_most``.
MAX_DURATION = timedelta(days=3650)
_MAX_TEXT = 40  # characters: no real duration is longer; a huge number is refused unread


def parse_duration(value: Any) -> timedelta:
    """``"90d"``, ``"1h30m"``, ``"0s"`` -> timedelta. Units: s m h d w. At most
    ``MAX_DURATION``; ``ValueError`` (never ``OverflowError``) otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    else:
        text = value.strip() if isinstance(value, str) else ""
        if not text or len(text) > _MAX_TEXT or not _DURATION.match(text):
            shown = (
                repr(value) if len(repr(value)) <= _MAX_TEXT + 2 else repr(value)[:_MAX_TEXT] + "…"
            )
            raise ValueError(
                f"invalid duration {shown}: use a number and a unit (s, m, h, d, w), "
                'e.g. "90d", "12h", "1h30m", "0s"'
            )
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds < 0:
        raise ValueError("a duration may not be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"duration {value if isinstance(value, str) else format_duration(value)!r} is "
            f"longer than the maximum, {format_duration(MAX_DURATION)}"
        )
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def at_most(limit: timedelta) -> AfterValidator:
    """A tighter upper bound for one duration setting: ``Annotated[Duration, at_most(..)]``."""

    def check(value: timedelta) -> timedelta:
        if value > limit:
            raise ValueError(
                f"{format_duration(value)} is longer than the maximum, {format_duration(limit)}"
            )
        return value

    return AfterValidator(check)


def format_duration(value: timedelta) -> str:
    """The shortest duration string for ``value`` (``"90d"``, ``"1h30m"``, ``"0s"``)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if unit == "w" and seconds % size:
            continue  # "10d" reads better than "1w3d"
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_age(delta: timedelta) -> str:
    """A rough human age, one unit: ``120d``, ``5h``, ``3m``, ``0s`` (a negative one: 0s)."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Selector(_Strict):
    """Which users a rule selects. All given conditions must hold."""

    path_prefix: str = "/"
    users: list[str] = Field(default_factory=lambda: ["*"])
    tags: dict[str, str] = Field(default_factory=dict)
    names: list[str] | None = None  # server-certificate rules: certificate base-name globs

    @field_validator("path_prefix")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path_prefix {value!r} must start with '/'")
        return value

    @property
    def patterns(self) -> list[str]:
        """The name globs: certificate names if given, else user names."""
        return self.names if self.names is not None else self.users

    def matches(self, name: str, path: str, tags: Mapping[str, str]) -> bool:
        return (
            path.startswith(self.path_prefix)
            and any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)
            and all(tags.get(k) == v for k, v in self.tags.items())
        )


class Exclude(_Strict):
    """Users a rule leaves alone even when selected: any condition excludes."""

    users: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    def reason(self, name: str, tags: Mapping[str, str]) -> str | None:
        """Why ``name`` is excluded, or None if it is not."""
        for pattern in self.users:
            if fnmatch.fnmatchcase(name, pattern):
                return f"user matches exclude pattern {pattern!r}"
        for key, value in self.tags.items():
            if tags.get(key) == value:
                return f"user has tag {key}={value}"
        return None


_ACCOUNT_ID = re.compile(r"^\d{12}$")
_OU_ID = re.compile(r"^(?:ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}|r-[0-9a-z]{4,32})$")


def check_account_id(value: str) -> str:
    if not isinstance(value, str) or not _ACCOUNT_ID.match(value):
        raise ValueError(f"{value!r} is not an AWS account ID (12 digits, as a string)")
    return value


def check_ou(value: str) -> str:
    """An OU (or the root) by ID (``ou-ab12-cdef3456``, ``r-ab12``) or by path from the
    root, written with a leading slash (``/Workloads/Prod``; ``/`` is the root)."""
    if not isinstance(value, str) or not value:
        raise ValueError("an OU is an ID (ou-…, r-…) or a path from the root (/Workloads/Prod)")
    if value.startswith("/"):
        parts = value.strip("/").split("/") if value.strip("/") else []
        if any(not part.strip() for part in parts):
            raise ValueError(f"OU path {value!r} has an empty component")
        return "/" + "/".join(parts)
    if not _OU_ID.match(value):
        raise ValueError(
            f"{value!r} is neither an OU ID (ou-xxxx-xxxxxxxx, r-xxxx) nor a path from the "
            "root starting with '/' (e.g. /Workloads/Prod)"
        )
    return value


AccountId = Annotated[str, AfterValidator(check_account_id)]
OuRef = Annotated[str, AfterValidator(check_ou)]


@dataclass(frozen=True, kw_only=True)
class Account:
    """One account to sweep. ``ou_ids`` are its ancestors from the root down (root first);
    ``ou_path`` their names from the root (``/Workloads/Prod``; ``/`` for the root).
    Accounts listed explicitly have no OUs and no tags."""

    id: str
    name: str = ""
    ou_ids: tuple[str, ...] = ()
    ou_path: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    hub: bool = False  # the caller's own account (include_self): no role assumed

    @property
    def label(self) -> str:
        """``name (id)`` or just the ID."""
        return f"{self.name} ({self.id})" if self.name else self.id

    def in_ou(self, ou: str, *, recursive: bool = True) -> bool:
        """Is the account in ``ou`` (an ID or a path): directly, or (``recursive``) in
        any OU nested under it?"""
        if ou.startswith("/"):
            if not self.ou_path:
                return False
            if recursive:
                return ou == "/" or self.ou_path == ou or self.ou_path.startswith(ou + "/")
            return self.ou_path == ou
        if recursive:
            return ou in self.ou_ids
        return bool(self.ou_ids) and self.ou_ids[-1] == ou

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "ou_path": self.ou_path}


TEMPLATE_FIELDS = frozenset({"account", "account_name", "user", "name", "kind", "slot"})


def check_template(template: str) -> str:
    """Reject templates with unknown ``{fields}`` or broken braces."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"invalid template {template!r}: {exc}") from None
    unknown = sorted(n for n in names if n not in TEMPLATE_FIELDS)
    if unknown:
        raise ValueError(
            f"template {template!r} uses unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(TEMPLATE_FIELDS))}"
        )
    return template


Template = Annotated[str, BeforeValidator(lambda v: check_template(v) if isinstance(v, str) else v)]


class FileSinkConfig(_Strict):
    """Secrets in a file per holder: JSON (current/previous/pending) or an AWS profile."""

    type: Literal["file"]
    path: Template
    format: Literal["json", "aws-credentials"] = "json"
    profile: str | None = None

    @model_validator(mode="after")
    def _profile(self) -> FileSinkConfig:
        if self.format == "aws-credentials" and not self.profile:
            raise ValueError('format "aws-credentials" needs profile = "NAME"')
        if self.format == "json" and self.profile:
            raise ValueError('profile is only used with format = "aws-credentials"')
        return self

    @property
    def template(self) -> str:
        return self.path


class SecretsManagerSinkConfig(_Strict):
    """One Secrets Manager secret per holder; versions staged like Secrets Manager rotation."""

    type: Literal["secretsmanager"]
    name: Template
    kms_key_id: str | None = None
    region: str | None = None

    @property
    def template(self) -> str:
        return self.name


class MemorySinkConfig(_Strict):
    """Secrets kept in memory for one sweep or command only (tests and ``--dry-run``
    experiments)."""

    type: Literal["memory"]
    name: Template = "{account}/{user}/{kind}"

    @property
    def template(self) -> str:
        return self.name


class SsmSinkConfig(_Strict):
    """One SSM Parameter Store SecureString per holder: its latest version is the current
    entry (labelled ``current``, the one before ``previous``); a pending entry waits in
    ``NAME/pending`` until promotion."""

    type: Literal["ssm"]
    name: Template
    kms_key_id: str | None = None
    region: str | None = None

    @field_validator("name")
    @classmethod
    def _parameter_name(cls, value: str) -> str:
        literal = re.sub(r"\{[a-z]+\}", "", value)
        if not value.startswith("/") or not re.fullmatch(r"[A-Za-z0-9_.\-/]*", literal):
            raise ValueError(
                f"SSM parameter name {value!r} must start with '/' and hold only letters, "
                "digits, '_', '.', '-', '/' and {fields}"
            )
        if value.lstrip("/").lower().startswith(("aws", "ssm")):
            raise ValueError(f"SSM parameter name {value!r} may not begin with 'aws' or 'ssm'")
        return value

    @property
    def template(self) -> str:
        return self.name


SinkConfig = Annotated[
    FileSinkConfig | SecretsManagerSinkConfig | MemorySinkConfig | SsmSinkConfig,
    Field(discriminator="type"),
]


class Rule(_Strict):
    """One rule of the policy: a kind, whom it selects, its timings and its sink.

    Each kind's module in ``rotator/kinds/`` subclasses this with the kind's options and
    its ``facts``; the policy file is validated with ``rotator.kinds.AnyRule``."""

    facts: ClassVar[KindFacts]  # the kind's facts (shape, limit, noun ...), set by each kind

    name: str = Field(min_length=1)
    kind: Kind
    enabled: bool = True
    max_age: Duration | None = timedelta(days=90)
    deactivate_after: Duration = timedelta(days=7)
    delete_after: Duration = timedelta(days=7)
    select: Selector = Field(default_factory=Selector)
    exclude: Exclude = Field(default_factory=Exclude)
    sink: SinkConfig
    # `rotator daemon` sweeps this rule on this crontab schedule (else on [daemon]'s).
    schedule: CronExpr | None = None
    # With [accounts]: the accounts this rule applies to (all conditions given must hold;
    # none given: every account swept). ``ous`` match nested OUs too.
    accounts: list[AccountId] | None = None
    ous: list[OuRef] | None = None
    account_tags: dict[str, str] = Field(default_factory=dict)
    # Where an AWS sink (secretsmanager, ssm) keeps the secrets: in the member account the
    # credential belongs to, or centrally in the hub account rotator runs in.
    sink_in: Literal["member", "hub"] = "member"
    # The age by which the old credential must be inactive (CIS: 90 days); rotations start
    # early enough to meet it (``start_age``). ``deadline_margin`` is kept in hand.
    deadline: Duration | None = None
    deadline_margin: Duration = timedelta(days=1)
    # An old credential held because it is still used: warn this long before its deadline;
    # at the deadline "deactivate" it anyway (as the standard demands) or only "alert".
    deadline_warning: Duration = timedelta(days=7)
    on_deadline: Literal["deactivate", "alert"] = "alert"
    # What the settings add before the old credential goes inactive: the verification
    # budget and the longest wait for this rule's next sweep (set by ``settings.Config``).
    _overhead: timedelta = PrivateAttr(default=timedelta(0))

    @model_validator(mode="after")
    def _deadline_after_deactivation(self) -> Rule:
        if self.deadline is None:
            return self
        deactivate = self.timings()[0]
        if deactivate >= self.deadline:
            raise ValueError(
                f"deactivate_after {format_duration(deactivate)} is not less than deadline "
                f"{format_duration(self.deadline)}: the old credential stays active for "
                "deactivate_after after the new one is promoted, so it would still be active "
                "at the deadline (lower deactivate_after or raise deadline)"
            )
        return self

    def set_overhead(self, overhead: timedelta) -> None:
        """Record the verification budget plus the longest wait for a sweep (the settings
        know them; the rule alone does not)."""
        self._overhead = overhead

    @property
    def deadline_lead(self) -> timedelta | None:
        """How long before the deadline a rotation must start: deactivate_after, the
        verification budget, the longest wait for a sweep, and the margin."""
        if self.deadline is None:
            return None
        return self.timings()[0] + self._overhead + self.deadline_margin

    @property
    def start_age(self) -> timedelta | None:
        """The age at which a credential's rotation starts so that the old one is inactive
        by ``deadline`` (None: no deadline)."""
        lead = self.deadline_lead
        if self.deadline is None or lead is None:
            return None
        return self.deadline - lead

    def deadline_problem(self) -> str | None:
        """Why the deadline cannot be met with these timings, or None."""
        start = self.start_age
        if self.deadline is None or start is None or start > timedelta(0):
            return None
        lead = self.deadline_lead or timedelta(0)
        return (
            f"deadline {format_duration(self.deadline)} cannot be met: deactivate_after "
            f"{format_duration(self.timings()[0])} + verification and the wait for the next "
            f"sweep {format_duration(self._overhead)} + deadline_margin "
            f"{format_duration(self.deadline_margin)} = {format_duration(lead)}, which leaves "
            "no time to start the rotation"
        )

    @model_validator(mode="after")
    def _sink_per_holder(self) -> Rule:
        patterns = self.select.patterns
        single = len(patterns) == 1 and not any(c in patterns[0] for c in "*?[")
        template = self.sink.template
        if not single and "{user}" not in template and "{name}" not in template:
            raise ValueError(
                f"sink template {template!r} has no {{user}} (or {{name}}) but the rule "
                "selects more than one holder: their secrets would overwrite each other"
            )
        return self

    @property
    def account_scoped(self) -> bool:
        """True if the rule names accounts, OUs or account tags."""
        return self.accounts is not None or self.ous is not None or bool(self.account_tags)

    def applies_to(self, account: Account) -> bool:
        """Does this rule apply in ``account``?"""
        if self.accounts is not None and account.id not in self.accounts:
            return False
        if self.ous is not None and not any(account.in_ou(ou) for ou in self.ous):
            return False
        return all(account.tags.get(k) == v for k, v in self.account_tags.items())

    def selects(self, name: str, path: str, tags: Mapping[str, str]) -> bool:
        return self.enabled and self.select.matches(name, path, tags)

    # What the planner and the engine ask of every rule; kinds with options override.

    @property
    def slot(self) -> str:
        """The slot this rule rotates ("" but for service credentials: the service)."""
        return ""

    @property
    def renew_window(self) -> timedelta | None:
        """Rotate when the credential expires within this (certificates), else None."""
        return None

    @property
    def unused_after(self) -> timedelta | None:
        """Disable a credential unused for this long (opt-in), else None."""
        return None

    @property
    def cleans_expired(self) -> bool:
        """Take credentials IAM lists as Expired out of the way (opt-in; Bedrock API keys)."""
        return False

    def timings(self) -> tuple[timedelta, timedelta]:
        """(deactivate_after, delete_after) for the old credential."""
        return self.deactivate_after, self.delete_after

    def input_problems(self, now: datetime, *, files: bool = True) -> list[str]:
        """What pydantic cannot check, each problem starting with the field it concerns:
        input files and templates (certificate issuers, subjects). Reads local files (not
        with ``files=False``: ``validate --offline``, ``iam-policy``); never calls AWS."""
        return []


def check_rules(rules: list[Rule]) -> list[Rule]:
    """Rule names must be unique: the journal and the audit log refer to rules by name."""
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"two rules are named {rule.name!r}; rule names must be unique")
        seen.add(rule.name)
    return rules


def shadowed(rules: list[Rule]) -> list[str]:
    """Rules that can never apply: an earlier enabled rule of the same kind and slot
    selects everything they select (the planner lets the first rule that selects a holder
    decide), in every account they apply to. One warning each, naming both rules."""
    warnings = []
    earlier: dict[tuple[str, str], list[_Reach]] = {}
    for rule in rules:
        if not rule.enabled:
            continue
        reach = _Reach.of(rule)
        group = earlier.setdefault((rule.kind, rule.slot), [])
        first = next((r for r in group if r.covers(reach)), None)
        if first is not None:
            slot = f" ({rule.slot})" if rule.slot else ""
            warnings.append(
                f"rule {rule.name!r}: never applies: the earlier rule {first.name!r} "
                f"({rule.kind}{slot}) already selects everything it selects; move it "
                f"before {first.name!r} or narrow {first.name!r}"
            )
        group.append(reach)
    return warnings


@dataclass(frozen=True)
class _Reach:
    """What an enabled rule selects, read once (``shadowed`` compares every pair)."""

    name: str
    path_prefix: str
    patterns: tuple[str, ...]
    tags: frozenset[tuple[str, str]]
    scope: tuple[object, ...] | None  # accounts, OUs, account tags; None: every account

    @classmethod
    def of(cls, rule: Rule) -> _Reach:
        scope = (rule.accounts, rule.ous, rule.account_tags) if rule.account_scoped else None
        return cls(
            name=rule.name,
            path_prefix=rule.select.path_prefix,
            patterns=tuple(rule.select.patterns),
            tags=frozenset(rule.select.tags.items()),
            scope=scope,
        )

    def covers(self, then: _Reach) -> bool:
        """Does this rule select every holder ``then`` selects, in every account?"""
        return (
            then.path_prefix.startswith(self.path_prefix)
            and self.tags <= then.tags
            and (self.scope is None or self.scope == then.scope)
            and all(_pattern_covers(self.patterns, pattern) for pattern in then.patterns)
        )


def _pattern_covers(patterns: tuple[str, ...], pattern: str) -> bool:
    """Does one of ``patterns`` match every name ``pattern`` matches? ("*" does; so does
    any glob for a plain name it matches.)"""
    if "*" in patterns:
        return True
    plain = not any(c in pattern for c in "*?[")
    return plain and any(fnmatch.fnmatchcase(pattern, p) for p in patterns)
