"""Server-certificate versions and their names (pure; no I/O).

The versions of base ``web`` are ``web`` itself and the names a rule's ``name_format`` makes
of it: ``web-20260301``, and for a second renewal that day ``web-20260301-2``. ``base_of``
parses a name back to its base with the same format, so grouping and naming agree.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache

from rotator.errors import InputError
from rotator.kinds.certificate_common import BodyInfo
from rotator.model import Credential, Kind, Status

DEFAULT_FORMAT = "{base}-{date}"
NAME_MAX = 128  # IAM's limit on ServerCertificateName


@cache
def name_pattern(name_format: str) -> re.Pattern[str]:
    """A regex matching the names ``name_format`` makes, with an optional ``-N`` suffix
    (N from 2 to 999); groups ``base``, ``date`` and ``n``."""
    regex = ""
    for literal, field, _, _ in string.Formatter().parse(name_format):
        regex += re.escape(literal)
        if field == "base":
            regex += r"(?P<base>[\w+=,.@-]+?)"
        elif field == "date":
            regex += r"(?P<date>\d{8})"
    return re.compile(rf"^{regex}(?:-(?P<n>[2-9]|[1-9]\d{{1,2}}))?$")


def base_of(name: str, name_format: str = DEFAULT_FORMAT) -> str:
    """The base name of version ``name`` (a name ``name_format`` did not make is a base)."""
    found = name_pattern(name_format).match(name)
    return found["base"] if found else name


def version_name(name_format: str, base: str, day: date, taken: set[str]) -> str:
    """The name of a new version of ``base`` made on ``day``: the first of ``F``, ``F-2``,
    ``F-3`` ... (F = ``name_format`` filled in) that is not in ``taken``."""
    first = name_format.format(base=base, date=day.strftime("%Y%m%d"))
    candidates = itertools.chain([first], (f"{first}-{n}" for n in range(2, 1000)))
    name = next(c for c in candidates if c not in taken)
    if len(name) > NAME_MAX:
        raise InputError(f"server certificate name {name!r} is longer than IAM's {NAME_MAX}")
    return name


@dataclass(frozen=True, kw_only=True)
class Version:
    """One server certificate as IAM holds it (the body is public; no key here)."""

    name: str
    path: str
    arn: str
    uploaded: datetime
    info: BodyInfo | None

    @property
    def issued(self) -> datetime:
        return self.info.not_before if self.info else self.uploaded


def upload_order(name: str) -> tuple[str, int]:
    """Where a version's name puts it in upload order: rotator names each upload after its
    day (and ``-N`` for a second one that day); a name without a date predates rotator."""
    found = re.search(r"(?:^|-)(?P<date>\d{8})(?:-(?P<n>\d{1,3}))?$", name)
    if found is None:
        return ("", 0)
    return (found["date"], int(found["n"] or 1))


def newest(versions: Sequence[Version]) -> Version | None:
    """The current version: the one uploaded last by rotator's naming, then the latest
    notBefore (a new certificate is backdated a few minutes, so notBefore alone can rank
    an old certificate issued moments earlier above it)."""
    return max(versions, key=lambda v: (upload_order(v.name), v.issued, v.name), default=None)


def credentials(versions: Sequence[Version]) -> list[Credential]:
    """The versions as credentials: the newest Active, the older ones Inactive (server
    certificates have no status; this is how the engine sees which one is in service)."""
    current = newest(versions)
    return [
        Credential(
            kind=Kind.SERVER_CERTIFICATE,
            credential_id=v.name,
            status=Status.ACTIVE if v is current else Status.INACTIVE,
            created=v.uploaded,
            expires=v.info.not_after if v.info else None,
            not_before=v.info.not_before if v.info else None,
        )
        for v in versions
    ]
