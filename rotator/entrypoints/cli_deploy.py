"""Deployment commands of the CLI: ``rotator iam-policy``. ``register`` adds them to the
``rotator`` Typer app (``cli.py`` calls it); thin like the rest of the CLI."""

from __future__ import annotations

from typing import Annotated

import typer

from rotator import app as application
from rotator.entrypoints.options import ConfigOpt
from rotator.errors import ConfigError
from rotator.permissions import hub_policy, member_policy, policy_document, render

EXIT_BAD_INPUT = 2


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
            help="With [accounts]: the member role's policy (what a sweep does in each "
            "account; deploy/member-role-stackset.yaml).",
        ),
    ] = False,
    hub: Annotated[
        bool,
        typer.Option(
            "--hub",
            help="With [accounts]: the hub's policy (Organizations discovery, AssumeRole, "
            "journal, notifications, hub-kept sinks).",
        ),
    ] = False,
) -> None:
    """Print the least-privilege IAM policy (JSON) for exactly the kinds, sinks, journal
    and notifications the policy file uses. No AWS call."""
    try:
        cfg = application.load(config)
    except ConfigError as exc:
        typer.echo(f"invalid policy file {exc.source}:", err=True)
        for problem in exc.problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if (member or hub) and cfg.accounts is None:
        typer.echo("--member and --hub need an [accounts] section in the policy", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if member and hub:
        typer.echo("give --member or --hub, not both", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if member:
        document = member_policy(cfg)
    elif hub:
        document = hub_policy(cfg, journal_init=journal_init)
    else:
        document = policy_document(cfg, journal_init=journal_init)
    typer.echo(render(document), nl=False)
