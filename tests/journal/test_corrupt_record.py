"""A stored row that does not decode raises ``CorruptRecord`` naming the field (never an
``AssertionError``, ``ValueError`` or ``OverflowError``), and ``decode_rows`` quarantines
it while the other rows decode."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.errors import CorruptRecord
from rotator.journal.base import decode_rows, rotation_from_record, rotation_to_record
from rotator.model import Lease
from tests.journal.test_contract import NOW, TTL, rotation

EDITS: list[tuple[str, dict[str, Any]]] = [
    ("state", {"state": "bogus"}),
    ("state", {"state": None}),
    ("kind", {"kind": "api-key"}),
    ("created_at", {"created_at": "yesterday"}),
    ("created_at", {"created_at": "2026-01-01T00:00:00"}),  # no time zone
    ("created_at", {"created_at": None}),
    ("updated_at", {"updated_at": 5}),
    ("promoted_at", {"promoted_at": "31/12/2026"}),
    ("lease_expires_at", {"lease_owner": "host:1:x", "lease_expires_at": None}),
    ("lease_fence", {"lease_owner": "host:1:x", "lease_fence": "many"}),
    ("deactivate_after", {"deactivate_after": 1e300}),
    ("delete_after", {"delete_after": -1}),
    ("delete_after", {"delete_after": "forever"}),
    ("version", {"version": "x"}),
    ("rotation_id", {"user": None}),  # a missing identity field: the row as a whole
]


@pytest.mark.parametrize(
    ("field", "edit"), EDITS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(EDITS)]
)
def test_a_corrupt_row_names_its_field(field: str, edit: dict[str, Any]) -> None:
    good = rotation().evolve(lease=Lease(owner="host:1:a", expires_at=NOW + TTL, fence=1))
    row = rotation_to_record(good) | edit
    if edit.get("user", "") is None:
        del row["user"]

    with pytest.raises(CorruptRecord) as raised:
        rotation_from_record(row)

    assert raised.value.field == field
    assert raised.value.rotation_id == good.rotation_id
    assert good.rotation_id in str(raised.value)


def test_decode_rows_quarantines_the_bad_and_keeps_the_good() -> None:
    good = rotation("alice")
    bad = rotation("bob")
    rows = [rotation_to_record(good), rotation_to_record(bad) | {"state": "bogus"}]

    decoded, quarantined = decode_rows(rows)

    assert decoded == [good]
    assert [(q.rotation_id, q.field) for q in quarantined] == [(bad.rotation_id, "state")]
    assert quarantined[0].target == (bad.account, "bob", "access-key", "")
