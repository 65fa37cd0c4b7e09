"""``rotator``: the command line. Thin: parse, build from settings, call one function,
render. Exit codes: 0 all good, 1 something failed or was blocked, 2 bad input."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from rotator import app as application
from rotator.entrypoints import cli_daemon, cli_deploy, cli_report, render
from rotator.entrypoints.options import AccountsOpt, ConfigOpt, JsonOpt, OusOpt
from rotator.errors import ConfigError, InputError, NotFound, RotatorError
from rotator.model import Kind, Plan, utcnow
from rotator.policy import check_account_id, check_ou, parse_duration
from rotator.rotation.emergency import Request
from rotator.rotation.report import Report
from rotator.settings import Config

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

cli = typer.Typer(
    name="rotator",
    help="Rotate AWS IAM credentials safely, on a schedule and on demand.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def _load(path: Path, *, inputs: bool = True) -> Config:
    try:
        return application.load(path, inputs=inputs)
    except ConfigError as exc:
        err.print(f"[bold red]invalid policy file[/] {exc.source}:")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _run(work: Awaitable[T]) -> T:
    """Run ``work``; rotator errors become a message and an exit code, never a traceback."""
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except (InputError, ConfigError, NotFound) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except RotatorError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def _with_audit(config: Config, work: Callable[[], Awaitable[T]]) -> T:
    close = application.configure_audit(config)
    try:
        return _run(work())
    finally:
        close()


@cli.command()
def validate(config: ConfigOpt) -> None:
    """Check the policy file; exit 2 with every problem named if it is invalid."""
    cfg = _load(config)
    out.print(f"[green]ok[/]: {config} — {len(cfg.rules)} rule(s)")
    if cfg.accounts is not None:
        accounts = cfg.accounts
        where = []
        if accounts.members:
            where.append(f"{len(accounts.members)} listed")
        if accounts.organization is not None:
            ous = ", ".join(accounts.organization.ous) or "the whole organization"
            where.append(f"discovered in {ous}")
        if accounts.include_self:
            where.append("this account")
        role = accounts.role_arn or (accounts.role_name and accounts.role_for("{account}"))
        out.print(f"  accounts: {'; '.join(where)}; role {role or '-'}", highlight=False)
    for rule in cfg.rules:
        state = "" if rule.enabled else " [dim](disabled)[/]"
        out.print(
            f"  {rule.name}: {rule.kind}, max_age {rule.model_dump()['max_age']}, "
            f"sink {rule.sink.type} {rule.sink.template}{state}",
            highlight=False,
        )


def _filters(cfg: Config, accounts: list[str] | None, ous: list[str] | None) -> Filters:
    """The ``--account`` / ``--ou`` filters, checked: exit 2 on a malformed ID or OU, or
    ``--ou`` without ``[accounts]``."""
    try:
        only = [check_account_id(a) for a in accounts or []]
        within = [check_ou(o) for o in ous or []]
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if within and cfg.accounts is None:
        err.print("[bold red]error:[/] --ou needs an [accounts] section in the policy")
        raise typer.Exit(EXIT_BAD_INPUT)
    return Filters(only, within)


@dataclass(frozen=True)
class Filters:
    """An operator's ``--account`` / ``--ou`` filters (empty: everything)."""

    accounts: list[str]
    ous: list[str]

    def __bool__(self) -> bool:
        return bool(self.accounts or self.ous)


async def _account_ids(cfg: Config, filters: Filters) -> set[str] | None:
    """The account IDs ``filters`` keep (None: no filter). ``--ou`` asks Organizations."""
    if not filters:
        return None
    if not filters.ous:
        return set(filters.accounts)
    async with application.open_engine(cfg) as engine:
        assert engine.org is not None  # _filters refuses --ou without [accounts]
        found = await engine.org.accounts(filters.accounts, filters.ous)
    render.ACCOUNT_NAMES.update({a.id: a.name for a in found.selected if a.name})
    return {a.id for a in found.selected}


@cli.command()
def plan(
    config: ConfigOpt,
    as_json: JsonOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Show what a sweep would do now and why (changes nothing). With [accounts]: in
    every account (--account / --ou: some of them)."""
    cfg = _load(config)
    filters = _filters(cfg, account, ou)

    async def work() -> None:
        async with application.open_engine(cfg) as engine:
            if engine.org is not None:
                with render.progress_bar(err) as progress:
                    planned = await engine.org.plan(
                        progress=progress, only=filters.accounts, ous=filters.ous
                    )
                if as_json:
                    render.print_json(out, render.org_plan_rows(planned))
                else:
                    out.print(render.org_plan_table(planned))
                return
            with render.progress_bar(err) as progress:
                the_plan = await engine.plan(progress=progress)
        if filters.accounts:
            kept = tuple(d for d in the_plan if d.account in filters.accounts)
            the_plan = Plan(decisions=kept)
        if as_json:
            render.print_json(out, render.plan_rows(the_plan))
        else:
            out.print(render.plan_table(the_plan))

    _with_audit(cfg, work)


@cli.command()
def run(
    config: ConfigOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and report, change nothing.")
    ] = False,
    as_json: JsonOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Run one sweep: advance rotations in flight, start those the policy says are due.
    With [accounts]: every account on its own session; an account that cannot be swept is
    reported and the others go on (exit 1)."""
    cfg = _load(config)
    filters = _filters(cfg, account, ou)

    async def work() -> bool:
        async with application.open_engine(cfg) as engine:
            if engine.org is not None:
                with render.progress_bar(err) as progress:
                    org = await engine.org.run(
                        dry_run=dry_run, progress=progress, only=filters.accounts, ous=filters.ous
                    )
                if as_json:
                    render.print_json(out, org.as_dict())
                else:
                    out.print(render.org_sweep_table(org))
                    for line in render.org_counts_lines(org):
                        out.print(line, highlight=False)
                return org.ok
            with render.progress_bar(err) as progress:
                result = await engine.sweep(dry_run=dry_run, progress=progress)
        if filters.accounts and result.account not in filters.accounts:
            err.print(
                f"[yellow]note:[/] --account: this policy has no [accounts]; it swept the "
                f"caller's account {result.account}",
                highlight=False,
            )
        if as_json:
            render.print_json(out, result.as_dict())
        else:
            out.print(render.sweep_table(result))
            out.print(render.counts_line(result), highlight=False)
        return result.ok

    ok = _with_audit(cfg, work)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


@cli.command()
def status(
    config: ConfigOpt,
    as_json: JsonOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Rotations in flight, their account, next step and when it is due."""
    cfg = _load(config, inputs=False)
    filters = _filters(cfg, account, ou)

    async def work() -> None:
        keep = await _account_ids(cfg, filters)
        async with application.open_journal_for(cfg) as journal:
            active = [r for r in await journal.list_active() if keep is None or r.account in keep]
        now = utcnow()
        if as_json:
            render.print_json(out, render.status_rows(active, now))
        elif not active:
            out.print("no rotations in flight")
        else:
            out.print(render.status_table(active, now))

    _run(work())


@cli.command()
def history(
    config: ConfigOpt,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rotations.", min=1)] = 50,
    as_json: JsonOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Past and current rotations, newest first, with their account and every step's
    outcome."""
    cfg = _load(config, inputs=False)
    filters = _filters(cfg, account, ou)

    async def work() -> None:
        keep = await _account_ids(cfg, filters)
        async with application.open_journal_for(cfg) as journal:
            # With an account filter, read more and keep the newest ``limit`` that match.
            read = limit if keep is None else max(limit * 20, 1000)
            rotations = await journal.list_rotations(user=user, limit=read)
            rotations = [r for r in rotations if keep is None or r.account in keep][:limit]
            items = [(r, await journal.steps(r.rotation_id)) for r in rotations]
        if as_json:
            render.print_json(out, render.history_rows(items))
        elif not items:
            out.print("no rotations recorded" + (f" for {user}" if user else ""))
        else:
            out.print(render.history_table(items))

    _run(work())


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
        str,
        typer.Option(
            help="With --emergency: how long to keep the leaked credential "
            "(inactive) before deleting it, e.g. 0s, 1h, 7d."
        ),
    ] = "0s",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    as_json: JsonOpt = False,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="With [accounts]: the account of --user (an --access-key-id's account is "
            "found with sts:GetAccessKeyInfo).",
        ),
    ] = None,
) -> None:
    """Rotate one credential now. With --emergency (a leaked key) the credential is
    deactivated before anything else. Works while a daemon runs (leases)."""
    cfg = _load(config)
    try:
        held = parse_duration(hold)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] --hold: {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if account is not None:
        _filters(cfg, [account], None)  # exit 2 unless a 12-digit ID
    request = Request(
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
        typer.confirm(f"{first}and rotate {what}?", abort=True)

    async def work() -> Report:
        async with application.open_engine(cfg) as engine:
            return await engine.rotate_now(
                request, access_key_id=access_key_id, dry_run=dry_run, account=account
            )

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
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Roll back {rotation_id}?", abort=True)

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
        err.print(f"[bold red]the sandbox needs moto:[/] pip install 'rotator[sandbox]' ({exc})")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    ok = sandbox.run_demo(workdir, out, serve=serve)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


# Commands that live in their own modules.
cli_daemon.register(cli)
cli_deploy.register(cli)
cli_report.register(cli)


def main() -> None:
    """Console-script entry point."""
    try:
        cli()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
