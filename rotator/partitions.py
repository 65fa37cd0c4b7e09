"""AWS partitions (``aws``, ``aws-cn``, ``aws-us-gov``, …): the second field of every ARN.

botocore's endpoint data is the authority for which partitions exist and which region
belongs to which (``cn-north-1`` -> ``aws-cn``, ``us-gov-west-1`` -> ``aws-us-gov``), so a
new partition arrives with a botocore upgrade. Nothing here calls AWS; ``of_session`` reads
the region the way rotator's sessions do (botocore: ``AWS_DEFAULT_REGION``, the profile).
"""

from __future__ import annotations

from functools import cache

DEFAULT = "aws"


@cache
def _session() -> object:
    import botocore.session  # on first use: `rotator --help` does not need it

    return botocore.session.Session()


@cache
def known() -> tuple[str, ...]:
    """Every partition botocore knows, its commercial ``aws`` first."""
    names: list[str] = _session().get_available_partitions()  # type: ignore[attr-defined]
    return tuple(sorted(names, key=lambda name: (name != DEFAULT, name)))


def check(name: str) -> str:
    """``name`` if it is a partition; ``ValueError`` naming the known ones otherwise."""
    if name not in known():
        raise ValueError(f"{name!r} is not an AWS partition (one of: {', '.join(known())})")
    return name


def for_region(region: str | None) -> str:
    """The partition of ``region`` (by botocore's region patterns); ``aws`` for no region or
    one that matches no partition (botocore's own default)."""
    if not region:
        return DEFAULT
    from botocore.exceptions import UnknownRegionError

    try:
        found: str = _session().get_partition_for_region(region)  # type: ignore[attr-defined]
    except UnknownRegionError:
        return DEFAULT
    return found


def of_session(region: str | None, profile: str | None) -> str:
    """The partition rotator's AWS session would act in: that of ``region`` (``[aws]
    region``), else of the region botocore finds for ``profile`` (``AWS_REGION``,
    ``AWS_DEFAULT_REGION``, the profile's ``region``); ``aws`` if none is set. A profile
    that does not exist counts as no region (the commands that call AWS report it)."""
    if not region:
        import botocore.session
        from botocore.exceptions import BotoCoreError

        try:
            found = botocore.session.Session(profile=profile).get_config_variable("region")
        except BotoCoreError:
            found = None
        region = found if isinstance(found, str) else None
    return for_region(region)
