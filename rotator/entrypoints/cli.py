"""``rotator``: the command line. Thin: parse, build from settings, call one function,
render. Exit codes: 0 all good, 1 something failed or was blocked, 2 bad input."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rotator import partitions
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
from rotator.entrypoints.options import (
    AccountsOpt,
    ConfigOpt,
    JsonOpt,
    OusOpt,
    Output,
    OutputOpt,
    output_format,
)
from rotator.errors import ConfigError, CorruptRecord, RotatorError
from rotator.model import Kind, Plan, utcnow

if TYPE_CHECKING:  # loaded on first use: `rotator --help` needs none of them
    from rotator import app as application
    from rotator import documents, policy
    from rotator import journal as journals
    from rotator.entrypoints import render
    from rotator.rotation import emergency as emergencies
    from rotator.rotation.report import Report
    from rotator.rotation.steps import StepResult
    from rotator.settings import Config
else:
    application = lazy("rotator.app")
    journals = lazy("rotator.journal")
    policy = lazy("rotator.policy")
    render = lazy("rotator.entrypoints.render")
    documents = lazy("rotator.documents")
    emergencies = lazy("rotator.rotation.emergency")

cli = typer.Typer(
    name="rotator",
    help="Rotate AWS IAM credentials safely, on a schedule and on demand.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: no "<bool>" placeholders, paragraphs rewrapped whole, and policy
    # section names such as "[accounts]" printed as written (not eaten as rich markup).
    rich_markup_mode=None,
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
def validate(
    config: ConfigOpt,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Check only what the policy file says: not the files it names "
            "(certificates, keys, the audit log, sink directories) nor the AWS "
            "environment. For CI, or a machine other than the one that runs it.",
        ),
    ] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the policy file without calling AWS. Every problem is reported at once, one
    line each naming the file and the field (exit 2); warnings (a rule that can never
    apply, an unknown ROTATOR_* variable) do not change the exit code."""
    shown = output_format(output, as_json, err)
    examined = application.examine(config, offline=offline)
    for warning in examined.warnings:
        err.print(
            f"warning: {examined.source}: {warning}", markup=False, highlight=False, soft_wrap=True
        )
    if examined.config is None:  # one line each: "error: FILE: FIELD: ..."
        raise fail(examined.error(), err)
    cfg = examined.config
    if shown is Output.JSON:
        render.print_json(out, documents.validate_document(config, cfg, examined.warnings))
        return
    if shown is Output.TEXT:
        documents.print_text(out, documents.validate_text(cfg))
        return
    skipped = " (offline: no file it names, no AWS environment)" if offline else ""
    out.print(
        f"[green]ok[/]: {escape(str(config))} — {len(cfg.rules)} rule(s){skipped}",
        highlight=False,
        soft_wrap=True,
    )
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
        partition = partitions.of_session(cfg.aws.region, cfg.aws.profile)
        role = accounts.role_arn or (
            accounts.role_name and accounts.role_for("{account}", partition)
        )
        line = f"  accounts: {'; '.join(where)}; role {role or '-'}"
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for rule in cfg.rules:
        state = "" if rule.enabled else " [dim](disabled)[/]"
        deadline = ""
        if rule.deadline is not None and rule.start_age is not None:
            deadline = (
                f", deadline {policy.format_duration(rule.deadline)} (rotations start at "
                f"{policy.format_duration(rule.start_age)} old)"
            )
        out.print(
            f"  {escape(rule.name)}: {rule.kind}, max_age {rule.model_dump()['max_age']}"
            f"{deadline}, sink {rule.sink.type} {escape(rule.sink.template)}{state}",
            highlight=False,
            soft_wrap=True,
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
    typer.Option(
        "--wide", help="Show long reasons and steps whole (wrapped) instead of cut to one line."
    ),
]


def _filters(cfg: Config, accounts: list[str] | None, ous: list[str] | None) -> Filters:
    """The ``--account`` / ``--ou`` filters, checked: exit 2 on a malformed ID or OU, or
    ``--ou`` without ``[accounts]``."""
    problems = []
    only, within = [], []
    for value in accounts or []:
        try:
            only.append(policy.check_account_id(value))
        except ValueError as exc:
            problems.append(f"--account: {exc}")
    for value in ous or []:
        try:
            within.append(policy.check_ou(value))
        except ValueError as exc:
            problems.append(f"--ou: {exc}")
    if ous and cfg.accounts is None:
        problems.append("--ou: needs an [accounts] section in the policy")
    if problems:
        raise fail(ConfigError("command line", problems), err)
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
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    everything: AllOpt = False,
    wide: WideOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Show what a sweep would do now and why (changes nothing). With [accounts]: in
    every account (--account / --ou: some of them); exit 1 if AWS fails, or an account
    could not be planned."""
    shown = output_format(output, as_json, err)
    cfg = _load(config)
    filters = _filters(cfg, account, ou)

    async def work() -> bool:
        async with application.open_engine(cfg) as engine:
            if engine.org is not None:
                with render.progress_bar(err) as progress:
                    planned = await engine.org.plan(
                        progress=progress, only=filters.accounts, ous=filters.ous
                    )
                if shown is Output.JSON:
                    render.print_json(out, documents.org_plan_document(planned))
                elif shown is Output.TEXT:
                    documents.print_text(out, documents.org_plan_text(planned))
                else:
                    out.print(render.org_plan_table(planned, everything=everything, wide=wide))
                return all(result.ok for result in planned)
            with render.progress_bar(err) as progress:
                the_plan = await engine.plan(progress=progress)
        if filters.accounts:
            kept = tuple(d for d in the_plan if d.account in filters.accounts)
            the_plan = Plan(decisions=kept)
        if shown is Output.JSON:
            render.print_json(out, documents.plan_document(the_plan))
        elif shown is Output.TEXT:
            documents.print_text(out, documents.plan_text(the_plan))
        else:
            out.print(render.plan_table(the_plan, everything=everything, wide=wide))
        return True

    # An AWS error ends the command through _run: one line, exit 1.
    raise typer.Exit(EXIT_OK if _with_audit(cfg, work) else EXIT_FAILED)


@cli.command()
def run(
    config: ConfigOpt,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and report, change nothing.")
    ] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    everything: AllOpt = False,
    wide: WideOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Run one sweep: advance rotations in flight, start those the policy says are due.
    With [accounts]: every account on its own session; an account that cannot be swept is
    reported and the others go on (exit 1)."""
    shown = output_format(output, as_json, err)
    cfg = _load(config)
    filters = _filters(cfg, account, ou)

    async def work() -> bool:
        async with application.open_engine(cfg) as engine:
            if engine.org is not None:
                with render.progress_bar(err) as progress:
                    org = await engine.org.run(
                        dry_run=dry_run, progress=progress, only=filters.accounts, ous=filters.ous
                    )
                if shown is Output.JSON:
                    render.print_json(out, documents.org_sweep_document(org))
                elif shown is Output.TEXT:
                    documents.print_text(out, documents.org_sweep_text(org))
                else:
                    out.print(render.org_sweep_table(org, everything=everything, wide=wide))
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
        if shown is Output.JSON:
            render.print_json(out, documents.sweep_document(result))
        elif shown is Output.TEXT:
            documents.print_text(out, documents.sweep_text(result))
        else:
            out.print(render.sweep_table(result, everything=everything, wide=wide))
            out.print(render.counts_line(result), highlight=False)
        return result.ok

    ok = _with_audit(cfg, work)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def _kept(bad: CorruptRecord, keep: set[str] | None) -> bool:
    """Whether a corrupt row is shown under an account filter: one of a kept account, or
    one whose account cannot be read."""
    return keep is None or bad.target is None or bad.target[0] in keep


@cli.command()
def status(
    config: ConfigOpt,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Rotations in flight, their account, next step and when it is due."""
    shown = output_format(output, as_json, err)
    cfg = _load(config, inputs=False)
    filters = _filters(cfg, account, ou)
    _journal_exists(cfg)

    async def work() -> list[CorruptRecord]:
        keep = await _account_ids(cfg, filters)
        async with application.open_journal_for(cfg) as journal:
            active = [r for r in await journal.list_active() if keep is None or r.account in keep]
            corrupt = [c for c in journal.quarantined() if _kept(c, keep)]
        now = utcnow()
        if shown is Output.JSON:
            render.print_json(out, documents.status_document(active, now, corrupt))
        elif shown is Output.TEXT:
            documents.print_text(out, documents.status_text(active, now, corrupt))
        elif not (active or corrupt):
            out.print("no rotations in flight")
        else:
            out.print(render.status_table(active, now, corrupt, wide=wide))
        return corrupt

    corrupt = _run(work())
    for bad in corrupt:  # exit 1: a human must fix or delete the row
        err.print(f"error: {bad}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if corrupt else EXIT_OK)


@cli.command()
def history(
    config: ConfigOpt,
    user: Annotated[
        str | None, typer.Option("--user", "-u", metavar="USER", help="Only this user.")
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            metavar="N", help="At most this many rotations (1-100000).", min=1, max=100_000
        ),
    ] = 50,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
    account: AccountsOpt = None,
    ou: OusOpt = None,
) -> None:
    """Past and current rotations, newest first, with their account and every step's
    outcome."""
    shown = output_format(output, as_json, err)
    cfg = _load(config, inputs=False)
    filters = _filters(cfg, account, ou)
    _journal_exists(cfg)

    async def work() -> None:
        keep = await _account_ids(cfg, filters)
        async with application.open_journal_for(cfg) as journal:
            # With an account filter, read more and keep the newest ``limit`` that match.
            read = limit if keep is None else max(limit * 20, 1000)
            rotations = await journal.list_rotations(user=user, limit=read)
            rotations = [r for r in rotations if keep is None or r.account in keep][:limit]
            corrupt.extend(c for c in journal.quarantined() if _kept(c, keep))
            items = [(r, await journal.steps(r.rotation_id)) for r in rotations]
        if shown is Output.JSON:
            render.print_json(out, documents.history_document(items, corrupt))
        elif shown is Output.TEXT:
            documents.print_text(out, documents.history_text(items, corrupt))
        elif not items:
            out.print("no rotations recorded" + (f" for {user}" if user else ""), markup=False)
        else:
            out.print(render.history_table(items, wide=wide))

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
        typer.Option(
            "--access-key-id",
            metavar="ID",
            help="A (leaked) access key: its user is found for you.",
        ),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", metavar="USER", help="The IAM user.")
    ] = None,
    kind: Annotated[
        Kind,
        typer.Option(
            metavar="KIND",
            help="The credential kind: " + ", ".join(k.value for k in Kind) + ".",
        ),
    ] = Kind.ACCESS_KEY,
    credential_id: Annotated[
        str | None,
        typer.Option(metavar="ID", help="Which credential, if the user has more than one."),
    ] = None,
    service: Annotated[
        str,
        typer.Option(metavar="SERVICE", help="For --kind service-credential: the service name."),
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
            metavar="DURATION",
            help="With --emergency: how long to keep the leaked credential "
            "(inactive) before deleting it, e.g. 0s, 1h, 7d (default 0s).",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            metavar="ID",
            help="With [accounts]: the account of --user (an --access-key-id's account is "
            "found with sts:GetAccessKeyInfo).",
        ),
    ] = None,
) -> None:
    """Rotate one credential now. With --emergency (a leaked key) the credential is
    deactivated before anything else. Works while a daemon runs (leases)."""
    shown = output_format(output, as_json, err)
    problems = []
    if hold is not None and not emergency:
        problems.append("--hold: only an --emergency rotation holds the old credential")
    try:
        held = policy.parse_duration(hold or "0s")
    except ValueError as exc:
        problems.append(f"--hold: {exc}")
    if access_key_id is not None and (problem := emergencies.access_key_id_problem(access_key_id)):
        problems.append(f"--access-key-id: {problem}")
    if account is not None:
        try:
            policy.check_account_id(account)
        except ValueError as exc:
            problems.append(f"--account: {exc}")
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
            return await engine.rotate_now(
                request, access_key_id=access_key_id, dry_run=dry_run, account=account
            )

    report = _with_audit(cfg, work)
    if shown is Output.JSON:
        render.print_json(out, documents.rotation_document(report))
    elif shown is Output.TEXT:
        documents.print_text(out, documents.rotation_text(report))
    else:
        out.print(render.report_text(report), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FAILED)


journal_cli = typer.Typer(
    help="The journal of rotations.", no_args_is_help=True, rich_markup_mode=None
)
cli.add_typer(journal_cli, name="journal")


@journal_cli.command("init")
def journal_init(config: ConfigOpt) -> None:
    """Create the journal: the DynamoDB table (on-demand billing, TTL on finished records)
    or the SQLite file. Safe to run again."""
    cfg = _load(config)
    out.print(_run(application.init_journal(cfg)), markup=False, highlight=False)


@cli.command()
def rollback(
    rotation_id: Annotated[
        str, typer.Argument(metavar="ROTATION_ID", help="The rotation (see `rotator history`).")
    ],
    config: ConfigOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put the old credential back: reactivate it (while it still exists) and make the
    sink's previous secret current again. The new credential stays active."""
    shown = output_format(output, as_json, err)
    cfg = _load(config)
    if not yes:
        if not sys.stdin.isatty():
            err.print("error: refusing to roll back without --yes (stdin is not a terminal)")
            raise typer.Exit(EXIT_BAD_INPUT)
        _confirm(f"Roll back {rotation_id}?")

    async def work() -> StepResult:
        async with application.open_engine(cfg) as engine:
            return await engine.rollback(rotation_id)

    done = _with_audit(cfg, work)
    if shown is Output.JSON:
        render.print_json(out, documents.rollback_document(done))
    elif shown is Output.TEXT:
        documents.print_text(out, documents.rollback_text(done))
    else:
        said = done.reason or "already rolled back"
        out.print(f"[green]rolled back[/] {escape(f'{rotation_id}: {said}')}", highlight=False)


@cli.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Where to put the demo's journal, secrets and audit log "
            "(default: a new temporary directory).",
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
