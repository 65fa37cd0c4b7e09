"""``rotator.aws``: following IAM's ``Marker`` paging and converting its errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from rotator.aws import all_pages
from rotator.errors import NoSuchEntity


async def test_all_pages_follows_the_marker_to_the_last_page() -> None:
    items = [{"n": n} for n in range(7)]
    asked: list[dict[str, Any]] = []

    async def list_things(**kwargs: Any) -> dict[str, Any]:
        asked.append(kwargs)
        start = int(kwargs.get("Marker", 0))
        end = min(start + 3, len(items))
        page: dict[str, Any] = {"Things": items[start:end], "IsTruncated": end < len(items)}
        if page["IsTruncated"]:
            page["Marker"] = str(end)
        return page

    got = await all_pages(list_things, "Things", "ListThings", UserName="alice")

    assert got == items
    assert asked == [
        {"UserName": "alice"},
        {"UserName": "alice", "Marker": "3"},
        {"UserName": "alice", "Marker": "6"},
    ]


async def test_all_pages_converts_an_error_naming_the_call_and_the_ids() -> None:
    async def list_things(**kwargs: Any) -> dict[str, Any]:
        error = {"Error": {"Code": "NoSuchEntity", "Message": "The user cannot be found."}}
        raise ClientError(error, "ListThings")  # type: ignore[arg-type]

    with pytest.raises(NoSuchEntity) as caught:
        await all_pages(list_things, "Things", "ListThings", {"user": "alice"}, UserName="alice")

    assert "ListThings" in str(caught.value)
    assert "alice" in str(caught.value)
