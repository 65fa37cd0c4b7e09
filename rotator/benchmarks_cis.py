"""Which control of which benchmark each of the report's checks is: one table.

The report evaluates four *checks* (``Check``) on IAM credentials; each CIS AWS
Foundations Benchmark version numbers them differently, and AWS Security Hub has its own
control IDs. ``CHECKS`` is the only place those numbers live; docs/report.md says which
were verified against which source.

Pure data: no I/O, nothing imported at run time but the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Check(StrEnum):
    """What the report judges, independent of any benchmark's numbering."""

    UNUSED = "unused-45d"  # an active key or password unused for more than 45 days
    ONE_ACTIVE_KEY = "one-active-key"  # a user has at most one active access key
    ROTATED = "rotated-90d"  # an active access key is at most 90 days old
    EXPIRED_CERTIFICATES = "no-expired-server-certificates"  # none stored in IAM


# The benchmark versions, oldest first; the last one is the default.
VERSIONS: tuple[str, ...] = (
    "cis-v1.4",
    "cis-v1.5",
    "cis-v2.0",
    "cis-v3.0",
    "cis-v4.0",
    "cis-v5.0",
    "cis-v6.0",
    "cis-v7.0",
)
DEFAULT = VERSIONS[-1]

_V1_TO_V4 = {"cis-v1.4", "cis-v1.5", "cis-v2.0", "cis-v3.0", "cis-v4.0"}


@dataclass(frozen=True, kw_only=True)
class CheckMapping:
    """One check: its title, its CIS control number per version (absent: the version has
    no such control), and the Security Hub controls that judge the same thing."""

    check: Check
    title: str
    cis: Mapping[str, str]
    security_hub: tuple[str, ...]


def _cis(v1_to_v4: str, v5: str, v6: str, v7: str | None) -> Mapping[str, str]:
    numbers = dict.fromkeys(_V1_TO_V4, v1_to_v4)
    numbers |= {"cis-v5.0": v5, "cis-v6.0": v6}
    if v7 is not None:
        numbers["cis-v7.0"] = v7
    return MappingProxyType(numbers)


# The table. Security Hub: IAM.3 (access keys rotated within 90 days), IAM.8 (unused
# credentials removed; its AWS Config rule defaults to 90 days), IAM.22 (credentials
# unused for 45 days removed), IAM.26 (expired certificates removed). Security Hub has
# no control for "one active key per user".
CHECKS: Mapping[Check, CheckMapping] = MappingProxyType(
    {
        Check.UNUSED: CheckMapping(
            check=Check.UNUSED,
            title="credentials unused for 45 days or more are disabled",
            cis=_cis("1.12", "1.11", "2.11", "2.11"),
            security_hub=("IAM.8", "IAM.22"),
        ),
        Check.ONE_ACTIVE_KEY: CheckMapping(
            check=Check.ONE_ACTIVE_KEY,
            title="one active access key per user",
            cis=_cis("1.13", "1.12", "2.12", None),  # v7.0 dropped the control
            security_hub=(),
        ),
        Check.ROTATED: CheckMapping(
            check=Check.ROTATED,
            title="access keys rotated every 90 days or less",
            cis=_cis("1.14", "1.13", "2.13", "2.12"),
            security_hub=("IAM.3",),
        ),
        Check.EXPIRED_CERTIFICATES: CheckMapping(
            check=Check.EXPIRED_CERTIFICATES,
            title="expired server certificates stored in IAM are removed",
            cis=_cis("1.19", "1.18", "2.18", "2.17"),
            security_hub=("IAM.26",),
        ),
    }
)


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """One CIS version: which checks it has, and what it calls each."""

    name: str  # "cis-v7.0"

    @property
    def title(self) -> str:
        return f"CIS AWS Foundations Benchmark v{self.name.removeprefix('cis-v')}.0"

    @property
    def checks(self) -> tuple[Check, ...]:
        """The checks this version has a control for, in the table's order."""
        return tuple(c for c, m in CHECKS.items() if self.name in m.cis)

    def control(self, check: Check) -> str | None:
        """The control number of ``check`` in this version; None if it has none."""
        return CHECKS[check].cis.get(self.name)


def benchmark(name: str) -> Benchmark:
    """The version ``name`` names: ``cis-v7.0``, ``cis-v7``, ``v7``, ``7.0`` or ``7``
    (case-insensitive). Raises ``ValueError`` naming the versions there are."""
    text = name.strip().lower().removeprefix("cis-").removeprefix("v")
    if text.isdigit():
        text += ".0"
    found = f"cis-v{text}"
    if found not in VERSIONS:
        raise ValueError(f"unknown benchmark {name!r}; one of: {', '.join(VERSIONS)}")
    return Benchmark(name=found)
