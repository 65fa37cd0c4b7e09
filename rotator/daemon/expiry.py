"""``rotator_certificate_expiration_timestamp_seconds``: when each active certificate IAM
holds expires (its notAfter), as cert-manager's ``certmanager_certificate_expiration_
timestamp_seconds`` does for its certificates.

Fed from each sweep's inventory. One series per certificate, labelled ``kind``,
``holder`` (the IAM user, or the server certificate's name) and ``credential_id`` — names
and IDs, bounded by what IAM holds, never a secret. A sweep scheduled for some rules reads
only the holders those rules select, so a sweep replaces what it can see: the series of
the holders it read, and drops those of holders that one of its rules selected before and
that are gone (deleted, or their certificate deleted or deactivated).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from rotator.model import Holder, Inventory
from rotator.policy import Rule

NAME = "rotator_certificate_expiration_timestamp_seconds"
HELP = "When each active certificate IAM holds expires (notAfter, Unix time)."
LABELS = ("kind", "holder", "credential_id")

_Key = tuple[str, str]  # (kind, holder)


class CertificateExpiry:
    """A Prometheus collector of certificate expiry times; ``observe`` each sweep."""

    def __init__(self) -> None:
        # (kind, holder) -> (the rules that selected it when last read, {ID: notAfter})
        self._book: dict[_Key, tuple[frozenset[str], dict[str, float]]] = {}

    def observe(self, inventory: Inventory, rules: Sequence[Rule]) -> None:
        """What one sweep read; ``rules``: the rules it swept (the others selected nobody)."""
        seen: dict[_Key, tuple[frozenset[str], dict[str, float]]] = {}
        for holder in inventory.holders:
            for kind, expiries in _certificates(holder).items():
                of_kind = [r for r in rules if str(r.kind) == kind]
                owners = [
                    r.name for r in of_kind if r.selects(holder.name, holder.path, holder.tags)
                ]
                seen[kind, holder.name] = (frozenset(owners or [r.name for r in of_kind]), expiries)
        swept = {r.name for r in rules}
        for key, (read_by, _) in list(self._book.items()):
            if key not in seen and read_by & swept:
                del self._book[key]
        self._book.update(seen)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(NAME, HELP, labels=LABELS)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(NAME, HELP, labels=LABELS)
        for (kind, holder), (_, expiries) in sorted(self._book.items()):
            for credential_id, expires in sorted(expiries.items()):
                family.add_metric([kind, holder, credential_id], expires)
        return [family]


def _certificates(holder: Holder) -> dict[str, dict[str, float]]:
    """``{kind: {credential ID: notAfter}}`` of a holder's active certificates."""
    found: dict[str, dict[str, float]] = {}
    for cred in holder.credentials:
        if cred.expires is not None and cred.active:
            found.setdefault(str(cred.kind), {})[cred.credential_id] = cred.expires.timestamp()
    return found
