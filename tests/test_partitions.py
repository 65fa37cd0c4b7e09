"""``rotator.partitions``: which partitions exist and which a region belongs to, from
botocore's endpoint data; the session's partition from the region rotator would use."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator import partitions


def test_the_known_partitions_start_with_aws_and_include_china_and_govcloud() -> None:
    known = partitions.known()
    assert known[0] == "aws"
    assert {"aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"} <= set(known)


@pytest.mark.parametrize("bad", ["", "AWS", "arn:aws", "aws-moon", "aws cn"])
def test_check_refuses_what_is_not_a_partition_naming_the_known_ones(bad: str) -> None:
    with pytest.raises(ValueError, match=r"is not an AWS partition \(one of: aws, aws-cn"):
        partitions.check(bad)


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("eu-central-2", "aws"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("xx-nowhere-1", "aws"),  # matches no partition: botocore's default
        (None, "aws"),
        ("", "aws"),
    ],
)
def test_a_region_belongs_to_its_partition(region: str | None, partition: str) -> None:
    assert partitions.for_region(region) == partition


def test_the_session_partition_is_the_setting_then_the_environment_then_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile china]\nregion = cn-north-1\n[default]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)

    assert partitions.of_session(None, "china") == "aws-cn"
    assert partitions.of_session(None, None) == "aws"
    assert partitions.of_session("us-gov-east-1", "china") == "aws-us-gov"
    # A profile no file defines is no region (the commands that call AWS report it).
    assert partitions.of_session(None, "no-such-profile") == "aws"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-northwest-1")
    assert partitions.of_session(None, None) == "aws-cn"
    assert partitions.of_session(None, "no-such-profile") == "aws-cn"
