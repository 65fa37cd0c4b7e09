"""``rotator``: the command line. Thin: parse, build from settings, call one function,
render. Exit codes: 0 all good, 1 something failed or was blocked, 2 bad input."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from rotator.entrypoints import cli_daemon, cli_deploy, cli_profile, cli_report
from rotator.entrypoints.exits import (
    EPILOG,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    fail,
)
from rotator.entrypoints.lazy import lazy
from rotator.entrypoints.options import ConfigOpt, JsonOpt
from rotator.errors import ConfigError, CorruptRecord, RotatorError
from rotator.model import Kind, utcnow

if TYPE_CHECKING:  # loaded on first use: `rotator --help` needs none of them
    from rotator import app as application
    from rotator import journal as journals
    from rotator import policy, sinks
    from rotator.entrypoints import render
    from rotator.rotation import emergency as emergencies
    from rotator.rotation import report as reports
    from rotator.rotation.report import Report
    from rotator.settings import Config
else:
    application = lazy("rotator.app")
    journals = lazy("rotator.journal")
    policy = lazy("rotator.policy")
    sinks = lazy("rotator.sinks")
    render = lazy("rotator.entrypoints.render")
    emergencies = lazy("rotator.rotation.emergency")
    reports = lazy("rotator.rotation.report")

cli = typer.Typer(
    name="rotator",
    help="Rotate AWS IAM credentials safely, on a schedule and on demand.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def _version(asked: bool) -> None:
    if asked:
        from rotator import __version__

        print(f"rotator {__version__} (Python {sys.version.split()[0]})")
        raise typer.Exit(EXIT_OK)


@cli.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Rotate AWS IAM credentials safely, on a schedule and on demand."""


T = TypeVar("T")


def _load(path: Path, *, inputs: bool = True) -> Config:
    try:
        return application.load(path, inputs=inputs)
    except ConfigError as exc:
        raise fail(exc, err) from None


def _confirm(question: str) -> None:
    """Ask; anything but yes exits 2 (nothing was done)."""
    if not typer.confirm(question, default=False):
        err.print("error: not confirmed; nothing was done")
        raise typer.Exit(EXIT_BAD_INPUT)


def _journal_exists(config: Config) -> None:
    """Exit 2 if the policy's SQLite journal file does not exist: ``status`` and
    ``history`` read a journal, they never create an empty one at a mistyped path."""
    journal = journals.open_journal(config.journal.url)
    path = getattr(journal, "path", None)
    if isinstance(path, Path) and not path.exists():
        problem = f"journal.url: no journal at {path} (`rotator journal init` creates one)"
        raise fail(ConfigError("policy", [problem]), err)


def _run(work: Awaitable[T]) -> T:
    """Run ``work``; rotator errors become a message and an exit code, never a traceback."""
    import asyncio

    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except RotatorError as exc:
        raise fail(exc, err) from None


def _with_audit(config: Config, work: Callable[[], Awaitable[T]]) -> T:
    try:
        close = application.configure_audit(config)
    except OSError as exc:
        problem = f"audit.file: cannot open {config.audit.file}: {exc.strerror or exc}"
        raise fail(ConfigError("policy", [problem]), err) from None
    try:
        return _run(work())
    finally:
        close()


@cli.command()
def validate(config: ConfigOpt) -> None:
    """Check the policy file; exit 2 with every problem named if it is invalid."""
    cfg = _load(config)
    sink_problems = sinks.preflight_problems(cfg.rules)
    if sink_problems:  # one line each: "error: FILE: unusable sink: ..."
        problems = [f"unusable sink: {problem}" for problem in sink_problems]
        raise fail(ConfigError(str(config), problems), err)
    out.print(f"[green]ok[/]: {config} — {len(cfg.rules)} rule(s)")
    for rule in cfg.rules:
        state = "" if rule.enabled else " [dim](disabled)[/]"
        deadline = ""
        if rule.deadline is not None and rule.start_age is not None:
            deadline = (
                f", deadline {policy.format_duration(rule.deadline)} (rotations start at "
                f"{policy.format_duration(rule.start_age)} old)"
            )
        out.print(
            f"  {rule.name}: {rule.kind}, max_age {rule.model_dump()['max_age']}{deadline}, "
            f"sink {rule.sink.type} {rule.sink.template}{state}",
            highlight=False,
        )


AllOpt = Annotated[
    bool,
    typer.Option(
        "--all",
        help="List every decision in the table, also those with nothing to do "
        "(by default they are counted in one line).",
    ),
]


WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="Show long reasons whole (wrapped) instead of cut to one line."),
]


@cli.command()
def plan(
    config: ConfigOpt,
    as_json: JsonOpt = False,
    everything: AllOpt = False,
    wide: WideOpt = False,
) -> None:
    """Show what a sweep would do now and why (changes nothing)."""
    cfg = _load(config)

    async def work() -> None:
        async with application.open_engine(cfg) as engine:
            with render.progress_bar(err) as progress:
                the_plan = await engine.plan(progress=progress)
        if as_json:
            render.print_json(out, render.plan_rows(the_plan))
        else:
            out.print(render.plan_table(the_plan, everything=everything, wide=wide))

    _with_audit(cfg, work)


@cli.command()
def run(
    config: ConfigOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and report, change nothing.")
    ] = False,
    as_json: JsonOpt = False,
    everything: AllOpt = False,
    wide: WideOpt = False,
) -> None:
    """Run one sweep: advance rotations in flight, start those the policy says are due."""
    cfg = _load(config)

    async def work() -> bool:
        async with application.open_engine(cfg) as engine:
            with render.progress_bar(err) as progress:
                result = await engine.sweep(dry_run=dry_run, progress=progress)
        if as_json:
            render.print_json(out, render.sweep_document(result))
        else:
            out.print(render.sweep_table(result, everything=everything, wide=wide))
            out.print(render.counts_line(result), highlight=False)
        return result.ok

    ok = _with_audit(cfg, work)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


@cli.command()
def status(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Rotations in flight, their next step and when it is due."""
    cfg = _load(config, inputs=False)
    _journal_exists(cfg)

    async def work() -> list[CorruptRecord]:
        async with application.open_journal_for(cfg) as journal:
            active = await journal.list_active()
            corrupt = journal.quarantined()
        now = utcnow()
        if as_json:
            rows = render.status_rows(active, now) + [reports.corrupt_dict(c) for c in corrupt]
            render.print_json(out, rows)
        elif not (active or corrupt):
            out.print("no rotations in flight")
        else:
            out.print(render.status_table(active, now, corrupt))
        return corrupt

    corrupt = _run(work())
    for bad in corrupt:  # exit 1: a human must fix or delete the row
        err.print(f"error: {bad}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if corrupt else EXIT_OK)


@cli.command()
def history(
    config: ConfigOpt,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rotations.", min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Past and current rotations, newest first, with every step's outcome."""
    cfg = _load(config, inputs=False)
    _journal_exists(cfg)

    async def work() -> None:
        async with application.open_journal_for(cfg) as journal:
            rotations = await journal.list_rotations(user=user, limit=limit)
            corrupt.extend(journal.quarantined())
            items = [(r, await journal.steps(r.rotation_id)) for r in rotations]
        if as_json:
            render.print_json(out, render.history_rows(items))
        elif not items:
            out.print("no rotations recorded" + (f" for {user}" if user else ""))
        else:
            out.print(render.history_table(items))

    corrupt: list[CorruptRecord] = []
    _run(work())
    for bad in corrupt:  # listed without it; exit 1: a human must fix or delete the row
        err.print(f"error: {bad}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if corrupt else EXIT_OK)


@cli.command()
def rotate(
    config: ConfigOpt,
    access_key_id: Annotated[
        str | None,
        typer.Option("--access-key-id", help="A (leaked) access key: its user is found for you."),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="The IAM user.")] = None,
    kind: Annotated[Kind, typer.Option(help="The credential kind.")] = Kind.ACCESS_KEY,
    credential_id: Annotated[
        str | None, typer.Option(help="Which credential, if the user has more than one.")
    ] = None,
    service: Annotated[
        str, typer.Option(help="For --kind service-credential: the service name.")
    ] = "",
    emergency: Annotated[
        bool,
        typer.Option(
            "--emergency",
            help="A leaked credential: deactivate it FIRST, then create, verify and promote "
            "the new one, and delete the leaked one after --hold.",
        ),
    ] = False,
    hold: Annotated[
        str | None,
        typer.Option(
            help="With --emergency: how long to keep the leaked credential "
            "(inactive) before deleting it, e.g. 0s, 1h, 7d (default 0s)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rotate one credential now. With --emergency (a leaked key) the credential is
    deactivated before anything else. Works while a daemon runs (leases)."""
    problems = []
    if hold is not None and not emergency:
        problems.append("--hold: only an --emergency rotation holds the old credential")
    try:
        held = policy.parse_duration(hold or "0s")
    except ValueError as exc:
        problems.append(f"--hold: {exc}")
    if access_key_id is not None and (problem := emergencies.access_key_id_problem(access_key_id)):
        problems.append(f"--access-key-id: {problem}")
    if problems:
        raise fail(ConfigError("command line", problems), err)
    cfg = _load(config)
    request = emergencies.Request(
        user=user,
        kind=kind,
        credential_id=credential_id,
        slot=service,
        emergency=emergency,
        hold=held,
    )
    what = access_key_id or request.describe()
    if not (yes or dry_run):
        if not sys.stdin.isatty():
            err.print("error: refusing to rotate without --yes (stdin is not a terminal)")
            raise typer.Exit(EXIT_BAD_INPUT)
        first = "DEACTIVATE " if emergency else ""
        _confirm(f"{first}and rotate {what}?")

    async def work() -> Report:
        async with application.open_engine(cfg) as engine:
            return await engine.rotate_now(request, access_key_id=access_key_id, dry_run=dry_run)

    report = _with_audit(cfg, work)
    if as_json:
        render.print_json(out, report.as_dict())
    else:
        out.print(render.report_line(report), highlight=False)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


journal_cli = typer.Typer(help="The journal of rotations.", no_args_is_help=True)
cli.add_typer(journal_cli, name="journal")


@journal_cli.command("init")
def journal_init(config: ConfigOpt) -> None:
    """Create the journal: the DynamoDB table (on-demand billing, TTL on finished records)
    or the SQLite file. Safe to run again."""
    cfg = _load(config)
    out.print(_run(application.init_journal(cfg)), highlight=False)


@cli.command()
def rollback(
    rotation_id: Annotated[str, typer.Argument(help="The rotation (see `rotator history`).")],
    config: ConfigOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Put the old credential back: reactivate it (while it still exists) and make the
    sink's previous secret current again. The new credential stays active."""
    cfg = _load(config)
    if not yes:
        if not sys.stdin.isatty():
            err.print("error: refusing to roll back without --yes (stdin is not a terminal)")
            raise typer.Exit(EXIT_BAD_INPUT)
        _confirm(f"Roll back {rotation_id}?")

    async def work() -> str:
        async with application.open_engine(cfg) as engine:
            result = await engine.rollback(rotation_id)
        return result.reason or "already rolled back"

    out.print(f"[green]rolled back[/] {rotation_id}: {_with_audit(cfg, work)}", highlight=False)


@cli.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Where to put the demo's journal, secrets and audit log "
            "(default: a new temporary directory)."
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the sandbox running afterwards (Ctrl-C ends).")
    ] = False,
) -> None:
    """Rotate access keys in a local sandbox (a moto server; no AWS account needed)."""
    try:
        from rotator.entrypoints import sandbox
    except ImportError as exc:  # moto is the 'sandbox' extra
        err.print("[bold red]the sandbox needs moto:[/] ", end="")
        err.print(f"pip install 'iam-rotator[sandbox]' ({exc})", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    ok = sandbox.run_demo(workdir, out, serve=serve)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


# Commands that live in their own modules.
cli_daemon.register(cli)
cli_deploy.register(cli)
cli_report.register(cli)
cli_profile.register(cli)


def main() -> None:
    """Console-script entry point."""
    try:
        cli()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except RotatorError as exc:  # one a command did not handle itself
        sys.exit(fail(exc, err).exit_code)
