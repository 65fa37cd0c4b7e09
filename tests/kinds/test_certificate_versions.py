"""Server-certificate version names: parsing a name back to its base agrees with making
one, for the default format and custom ones (tables and a hypothesis property)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rotator.errors import InputError
from rotator.kinds.certificate_common import BodyInfo
from rotator.kinds.certificate_versions import (
    Version,
    base_of,
    newest,
    upload_order,
    version_name,
)

DAY = date(2026, 3, 1)


@pytest.mark.parametrize(
    ("name", "name_format", "base"),
    [
        ("web", "{base}-{date}", "web"),
        ("web-20260301", "{base}-{date}", "web"),
        ("web-20260301-2", "{base}-{date}", "web"),
        ("web-20260301-17", "{base}-{date}", "web"),
        ("api-v2-20260301", "{base}-{date}", "api-v2"),
        ("web-2026030", "{base}-{date}", "web-2026030"),  # not a date: a base of its own
        ("web-20260301-20260401", "{base}-{date}", "web-20260301"),
        ("web.20260301", "{base}.{date}", "web"),
        ("web-20260301", "{base}.{date}", "web-20260301"),
    ],
)
def test_base_of_parses_what_the_format_makes(name: str, name_format: str, base: str) -> None:
    assert base_of(name, name_format) == base


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        (set(), "web-20260301"),
        ({"web-20260301"}, "web-20260301-2"),
        ({"web-20260301", "web-20260301-2"}, "web-20260301-3"),
        ({"web-20260301-2"}, "web-20260301"),
        ({"web", "other-20260301"}, "web-20260301"),
    ],
)
def test_a_second_renewal_on_the_same_day_gets_a_suffix(taken: set[str], expected: str) -> None:
    assert version_name("{base}-{date}", "web", DAY, taken) == expected


def test_a_name_longer_than_iam_allows_is_refused() -> None:
    with pytest.raises(InputError, match="longer than IAM's 128"):
        version_name("{base}-{date}", "w" * 120, DAY, set())


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=40)
FORMATS = st.sampled_from(["{base}-{date}", "{base}.{date}", "{base}{date}", "{base}_{date}_x"])


@given(base=NAMES, name_format=FORMATS, days=st.integers(0, 3000), renewals=st.integers(1, 12))
def test_every_version_name_parses_back_to_its_base(
    base: str, name_format: str, days: int, renewals: int
) -> None:
    """Any base that is not itself a version name (``web-20260301`` is a version of
    ``web``) gets version names that parse back to it, however many renewals a day."""
    assume(base_of(base, name_format) == base)
    day = DAY + timedelta(days=days)
    names: set[str] = set()
    for _ in range(renewals):
        names.add(version_name(name_format, base, day, names))
    assert len(names) == renewals
    for name in names:
        assert base_of(name, name_format) == base, (name, name_format)


def test_the_newest_version_is_the_latest_not_before_whatever_the_upload_date() -> None:
    def version(name: str, issued_days_ago: int, uploaded_days_ago: int) -> Version:
        now = datetime(2026, 3, 1, tzinfo=UTC)
        issued = now - timedelta(days=issued_days_ago)
        info = BodyInfo(not_before=issued, not_after=issued + timedelta(days=90), fingerprint=name)
        return Version(
            name=name,
            path="/",
            arn="",
            uploaded=now - timedelta(days=uploaded_days_ago),
            info=info,
        )

    older = version("web", 80, 0)  # uploaded today, but issued long ago
    fresh = version("web-20260301", 1, 5)
    current = newest([older, fresh])
    assert current is not None and current.name == "web-20260301"
    assert newest([]) is None


def test_the_version_rotator_uploaded_last_is_current_even_if_issued_a_little_earlier() -> None:
    """A new certificate is backdated a few minutes: the old one, issued just before the
    renewal, must not outrank it. Upload order comes from rotator's version names."""
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    old = Version(name="web", path="/", arn="arn:old", uploaded=now, info=None)
    new = Version(
        name="web-20261123", path="/", arn="arn:new", uploaded=now - timedelta(minutes=5), info=None
    )
    again = Version(
        name="web-20261123-2",
        path="/",
        arn="arn:again",
        uploaded=now - timedelta(minutes=9),
        info=None,
    )
    assert newest([old, new]) is new
    assert newest([old, new, again]) is again
    assert upload_order("web") < upload_order("web-20261122") < upload_order("web-20261123")
