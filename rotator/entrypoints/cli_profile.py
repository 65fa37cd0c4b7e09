"""The ``rotator rotate-profile PROFILE`` command (``rotator.profile``): rotate the access key
of one profile of the AWS shared credentials file, with no policy file and no journal to
set up. ``register(app)`` adds it to the ``rotator`` CLI. Exit codes: 0 done (or the old key
kept as asked), 1 failed or held, 2 bad input (no such profile, not confirmed)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from rotator.entrypoints.exits import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, fail
from rotator.entrypoints.lazy import lazy
from rotator.entrypoints.options import JsonOpt, Output, OutputOpt, output_format
from rotator.errors import ConfigError, RotatorError

if TYPE_CHECKING:  # loaded on first use: `rotator --help` needs none of them
    from rotator import app as application
    from rotator import documents, policy
    from rotator import profile as profiles
    from rotator.entrypoints import render
    from rotator.rotation.report import Report
else:
    application = lazy("rotator.app")
    policy = lazy("rotator.policy")
    profiles = lazy("rotator.profile")
    render = lazy("rotator.entrypoints.render")
    documents = lazy("rotator.documents")

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``rotate-profile`` to ``app``."""
    app.command("rotate-profile")(rotate_profile)


def rotate_profile(
    profile: Annotated[
        str,
        typer.Argument(
            metavar="PROFILE", help="The profile of the credentials file, e.g. default."
        ),
    ],
    keep_old: Annotated[
        str,
        typer.Option(
            "--keep-old",
            metavar="DURATION",
            help="Keep the old key active this long after the new one is written (e.g. "
            "1h, 7d); run the command again after that to deactivate and delete it.",
        ),
    ] = "0s",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rotate the access key of a profile of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE)
    in one go: create a new key for the profile's IAM user, write it to the profile,
    verify it, then deactivate and delete the old one. No policy file needed; a journal in
    the state directory ($XDG_STATE_HOME/rotator) makes an interrupted run resumable: run
    the command again."""
    shown = output_format(output, as_json, err)
    try:
        kept = policy.parse_duration(keep_old)
    except ValueError as exc:
        raise fail(ConfigError("command line", [f"--keep-old: {exc}"]), err) from None
    try:
        found = profiles.read_profile(profile)
    except ConfigError as exc:
        raise fail(exc, err) from None
    if not (yes or dry_run):
        if not sys.stdin.isatty():
            err.print("error: refusing to rotate without --yes (stdin is not a terminal)")
            raise typer.Exit(EXIT_BAD_INPUT)
        question = (
            f"Rotate access key {found.access_key_id} of profile [{profile}] in {found.path}?"
        )
        if not typer.confirm(question, default=False):
            err.print("error: not confirmed; nothing was done")
            raise typer.Exit(EXIT_BAD_INPUT)

    async def work() -> Report:
        account, user = await profiles.profile_user(found)
        config = profiles.profile_config(found, user, kept)
        profiles.make_state_dir()
        close = application.configure_audit(config)
        try:
            return await profiles.rotate_profile(found, config, account, user, dry_run=dry_run)
        finally:
            close()

    import asyncio

    try:
        report = asyncio.run(work())
    except RotatorError as exc:
        raise fail(exc, err) from None
    except OSError as exc:  # the state directory or its audit log
        problem = f"state directory: {exc.strerror or type(exc).__name__}"
        raise fail(ConfigError(profiles.SOURCE, [problem]), err) from None
    if shown is Output.JSON:
        render.print_json(out, documents.profile_document(report, profile, found.path))
    elif shown is Output.TEXT:
        documents.print_text(out, documents.rotation_text(report))
    else:
        out.print(_summary(report, found), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


def _summary(report: Report, found: profiles.Profile) -> str:
    """One line for people: what happened to the profile's key."""
    where = f"profile [{found.name}] in {found.path}"
    rotation = report.rotation
    state = str(report.state) if report.state else ""
    if rotation is not None and rotation.new_credential_id and report.ok:
        old, new = rotation.old_credential_id, rotation.new_credential_id
        if state == "completed":
            return f"rotated {where}: {old} -> {new}; {old} is deleted"
        if state in ("promoted", "deactivated"):
            return (
                f"{where} now holds {new}; the old key {old} is kept ({state}) for now: run "
                f"`rotator rotate-profile {found.name}` again later to finish"
            )
    return render.report_text(report)
