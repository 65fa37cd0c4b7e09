"""Deployment commands of the CLI: ``rotator iam-policy``. ``register`` adds them to the
``rotator`` Typer app (``cli.py`` calls it); thin like the rest of the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from rotator.entrypoints.exits import fail
from rotator.entrypoints.lazy import lazy
from rotator.entrypoints.options import ConfigOpt
from rotator.errors import ConfigError

if TYPE_CHECKING:  # loaded on first use: `rotator --help` needs none of them
    from rotator import app as application
    from rotator import partitions, permissions
else:
    application = lazy("rotator.app")
    partitions = lazy("rotator.partitions")
    permissions = lazy("rotator.permissions")


def register(app: typer.Typer) -> None:
    """Add the deployment commands to ``app``."""
    app.command("iam-policy")(iam_policy)


def iam_policy(
    config: ConfigOpt,
    journal_init: Annotated[
        bool,
        typer.Option(
            "--journal-init",
            help="Also allow `rotator journal init` (create the DynamoDB table).",
        ),
    ] = False,
    member: Annotated[
        bool,
        typer.Option(
            "--member",
            help="With an `accounts` section: the member role's policy (what a sweep does in each "
            "account; deploy/member-role-stackset.yaml).",
        ),
    ] = False,
    hub: Annotated[
        bool,
        typer.Option(
            "--hub",
            help="With an `accounts` section: the hub's policy (Organizations discovery, "
            "AssumeRole, journal, notifications, hub-kept sinks).",
        ),
    ] = False,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition",
            metavar="PARTITION",
            help="The AWS partition of the ARNs: aws, aws-cn, aws-us-gov, ... Default: the "
            "partition of the region rotator uses (the aws.region setting, AWS_DEFAULT_REGION "
            "or the profile's region), else aws.",
            show_default=False,
        ),
    ] = None,
    purposes: Annotated[
        list[str] | None,
        typer.Option(
            "--for",
            metavar="run|report",
            help="The commands the policy lets run: run (sweeps, plan, rotate, rollback, "
            "daemon, Lambda) or report (read-only, every user). Repeatable; default: run.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the least-privilege IAM policy (JSON) for exactly the kinds, sinks, journal
    and notifications the policy file uses. No AWS call, and only the rules are read: the
    files the policy names (certificates, keys) need not be present."""
    try:
        cfg = application.load(config, offline=True)
    except ConfigError as exc:
        raise fail(exc) from None
    problems = []
    if (member or hub) and cfg.accounts is None:
        problems.append("--member, --hub: need an [accounts] section in the policy")
    if member and hub:
        problems.append("--member, --hub: give one of them, not both")
    chosen: tuple[permissions.Purpose, ...] = ("run",)
    try:
        chosen = permissions.purposes_of(purposes or ["run"])
    except ValueError as exc:
        problems.append(f"--for: {exc}")
    if partition is None:
        partition = partitions.of_session(cfg.aws.region, cfg.aws.profile)
    else:
        try:
            partitions.check(partition)
        except ValueError as exc:
            problems.append(f"--partition: {exc}")
    if problems:
        raise fail(ConfigError("command line", problems))
    if member:
        document = permissions.member_policy(cfg, partition=partition, purposes=chosen)
    elif hub:
        document = permissions.hub_policy(
            cfg, journal_init=journal_init, partition=partition, purposes=chosen
        )
    else:
        document = permissions.policy_document(
            cfg, journal_init=journal_init, partition=partition, purposes=chosen
        )
    err = Console(stderr=True)
    for warning in permissions.wide_sinks(cfg):
        err.print(f"WARNING: {warning}", style="bold red", markup=False, soft_wrap=True)
    typer.echo(permissions.render(document), nl=False)
