"""The ``rotator report`` command: a compliance view of every user's access keys (by ID) and
console password (age, last use, the CIS controls of ``--benchmark`` and the Security Hub
ones: unused, one active key, rotated, expired server certificates) and what rotator will
do about each; OIDC providers whose thumbprints do not match what they serve;
service-specific credentials past their expiry (Bedrock API keys). ``--output`` picks the
format (``report_formats``).
``register(app)`` adds it to the ``rotator`` CLI; this module imports nothing from
``cli.py`` so that ``cli.py`` can import it at the top.

Credentials come from the credential report (a handful of IAM calls), or per user if the
report is unavailable. Exit codes: 0 (the report was made, whatever it found), 1 (AWS or
the journal failed), 2 (bad policy file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rotator import benchmarks_cis
from rotator.entrypoints.exits import EXIT_FAILED, fail
from rotator.entrypoints.lazy import lazy
from rotator.entrypoints.options import AccountsOpt, ConfigOpt, JsonOpt, OusOpt
from rotator.entrypoints.report_formats import ReportFormat
from rotator.errors import ConfigError, RotatorError
from rotator.model import Holder, Kind, utcnow
from rotator.progress import NO_PROGRESS, ProgressFn

if TYPE_CHECKING:  # loaded on first use: `rotator --help` needs none of them
    from datetime import datetime

    from rich.table import Table

    from rotator import app as application
    from rotator import (
        aws,
        compliance,
        credential_report,
        inventory,
        kinds,
        partitions,
        policy,
        sinks,
    )
    from rotator.benchmarks_cis import Benchmark
    from rotator.entrypoints import render, report_asff, report_formats, report_html
    from rotator.model import Plan
    from rotator.policy import Account
    from rotator.rotation import org as orgs
    from rotator.settings import Config
else:
    application = lazy("rotator.app")
    aws = lazy("rotator.aws")
    compliance = lazy("rotator.compliance")
    credential_report = lazy("rotator.credential_report")
    inventory = lazy("rotator.inventory")
    kinds = lazy("rotator.kinds")
    sinks = lazy("rotator.sinks")
    render = lazy("rotator.entrypoints.render")
    report_formats = lazy("rotator.entrypoints.report_formats")
    report_html = lazy("rotator.entrypoints.report_html")
    report_asff = lazy("rotator.entrypoints.report_asff")
    partitions = lazy("rotator.partitions")
    policy = lazy("rotator.policy")
    orgs = lazy("rotator.rotation.org")


OutputOpt = Annotated[
    ReportFormat,
    typer.Option(
        "--output",
        "-o",
        metavar="FORMAT",
        help="json, table (for people), text (tab-separated, a row a line), csv, markdown, "
        "html (one self-contained page with a summary chart), or asff (AWS Security Finding "
        "Format findings for Security Hub's batch-import-findings).",
        case_sensitive=False,
    ),
]
BenchmarkOpt = Annotated[
    str,
    typer.Option(
        "--benchmark",
        metavar="VERSION",
        help="The CIS AWS Foundations Benchmark version whose control numbers to use: "
        + ", ".join(benchmarks_cis.VERSIONS)
        + " (or short: cis-v7).",
    ),
]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Show every reason whole (the table cuts them at 3 lines).")
]
DEFAULT_BENCHMARK = benchmarks_cis.DEFAULT


def asyncio_run(work: Any) -> Any:
    import asyncio  # on first use: `rotator --help` does not need it

    return asyncio.run(work)


def _gather_limited(limit: int, works: Sequence[Any]) -> Any:
    """The results of ``works`` (coroutines), at most ``limit`` running at once."""
    import asyncio

    slots = asyncio.Semaphore(limit)

    async def one(work: Any) -> Any:
        async with slots:
            return await work

    return asyncio.gather(*(one(w) for w in works))


async def build(
    config: Config, benchmark: Benchmark | None = None, progress: ProgressFn = NO_PROGRESS
) -> compliance.Report:
    """Plan with the policy, survey the whole account, and judge every credential,
    numbered as ``benchmark`` (default: the newest) numbers the controls."""
    async with application.open_engine(config) as engine:
        the_plan = await engine.plan(progress=progress)
    mark = benchmark or benchmarks_cis.benchmark(benchmarks_cis.DEFAULT)
    return await survey(config, application.make_aws(config), the_plan, mark)


async def survey(
    config: Config, session: aws.Aws, the_plan: Plan | None, benchmark: Benchmark
) -> compliance.Report:
    """Every credential of the account ``session`` acts in, judged and joined with the
    plan."""
    now = utcnow()
    async with (
        session.client("iam") as iam,
        session.client("sts") as sts,
        aws.Clients(session) as clients,
    ):
        with aws.aws_errors("GetCallerIdentity"):
            account = str((await sts.get_caller_identity())["Account"])
        users = await inventory.list_users(iam, "/")
        ctx = kinds.KindContext(
            iam=iam,
            iam_once=iam,
            aws=session,
            account=account,
            verify=config.verify,
            sink=sinks.Sinks(clients).for_rule,
        )
        bound = kinds.build_kinds(ctx, {Kind.ACCESS_KEY, Kind.LOGIN_PROFILE})
        try:
            report = await credential_report.fetch(iam)
            source = f"credential report generated {report.generated:%Y-%m-%d %H:%M}Z"
        except credential_report.ReportUnavailable as exc:
            report, source = None, f"per-user listing (credential report unavailable: {exc})"
        view = await credential_report.survey(
            iam=iam,
            users=users,
            account=account,
            kinds=bound,
            report=report,
            now=now,
            max_concurrency=config.max_concurrency,
        )
        del report  # parsed rows: not needed once surveyed
        certificates = await credential_report.server_certificates(iam)
        judged = await _judged(config, ctx, account)
        expired = await _expired(config, ctx, account, users, the_plan, now)
    return compliance.evaluate(
        view.inventory,
        credential_report.named(the_plan, view.names),
        certificates,
        now,
        source=source,
        judged=judged,
        expired=expired,
        benchmark=benchmark,
    )


async def _expired(
    config: Config,
    ctx: kinds.KindContext,
    account: str,
    users: list[dict[str, Any]],
    the_plan: Plan | None,
    now: datetime,
) -> tuple[compliance.ExpiredRow, ...]:
    """Service-specific credentials past their expiry, when a rule covers the kind (IAM
    lists them per user; an account without such rules is not asked)."""
    if not any(r.enabled and r.kind is Kind.SERVICE_CREDENTIAL for r in config.rules):
        return ()
    import asyncio  # on first use, as in asyncio_run

    kind = kinds.build_kinds(ctx, {Kind.SERVICE_CREDENTIAL})[Kind.SERVICE_CREDENTIAL]
    gate = asyncio.Semaphore(config.max_concurrency)

    async def holder(user: dict[str, Any]) -> Holder:
        async with gate:
            listed = await kind.list(str(user["UserName"]))
        return Holder(
            account=account,
            name=str(user["UserName"]),
            arn=str(user.get("Arn", "")),
            path=str(user.get("Path", "/")),
            credentials=tuple(listed),
        )

    holders = await asyncio.gather(*(holder(u) for u in users))
    return compliance.expired_credentials(holders, the_plan, now)


async def _judged(
    config: Config, ctx: kinds.KindContext, account: str
) -> list[compliance.FindingRow]:
    """What the account-held kinds with rules found of their holders (OIDC providers whose
    thumbprints do not match what they serve)."""
    rules = [r for r in config.rules if r.enabled and r.facts.account_held]
    bound = kinds.build_kinds(ctx, {r.kind for r in rules})
    rows: list[compliance.FindingRow] = []
    for kind, impl in sorted(bound.items()):
        if isinstance(impl, kinds.AccountHolders):
            holders = await impl.account_holders(account, [r for r in rules if r.kind is kind])
            rows.extend(compliance.findings(kind, holders))
    return rows


@dataclass(frozen=True, kw_only=True)
class AccountReport:
    """One account's compliance report, or why it could not be made."""

    account: Account
    report: compliance.Report | None = None
    error: str | None = None
    reason: str = ""

    def totals(self) -> dict[str, Any]:
        """The account's totals: credentials, failures per CIS control."""
        out: dict[str, Any] = {**self.account.as_dict(), "error": self.error}
        if self.report is not None:
            out["credentials"] = len(self.report.rows)
            out["failures"] = self.report.failures()
        else:
            out["reason"] = self.reason
        return out


async def build_org(
    config: Config,
    only: Sequence[str],
    ous: Sequence[str],
    benchmark: Benchmark,
    progress: ProgressFn = NO_PROGRESS,
) -> list[AccountReport]:
    """``build`` in every account of ``[accounts]`` (each on its own session); an account
    that cannot be surveyed gets its error, the others their reports."""
    async with application.open_engine(config) as engine:
        org = engine.org
        assert org is not None
        planned = await org.plan(progress=progress, only=only, ous=ous)

        async def one(planned_one: orgs.AccountResult) -> AccountReport:
            account = planned_one.account
            if planned_one.plan is None:
                return AccountReport(
                    account=account, error=planned_one.error, reason=planned_one.reason
                )
            try:
                session = await org.aws_for(account)
                report = await survey(
                    orgs.config_for(config, account), session, planned_one.plan, benchmark
                )
            except Exception as exc:
                failed = org.failed(account, exc)
                return AccountReport(account=account, error=failed.error, reason=failed.reason)
            return AccountReport(account=account, report=report)

        works = [one(p) for p in planned]
        return list(await _gather_limited(org.settings.max_accounts, works))


def _controls_all(benchmark: Benchmark) -> tuple[str, ...]:
    numbers = (benchmark.control(c) for c in benchmark.checks)
    return tuple(n for n in numbers if n is not None)


def org_table(reports: Sequence[AccountReport], benchmark: Benchmark) -> Table:
    """Per-account totals: credentials and failures per CIS control."""
    from rich.table import Table

    controls = _controls_all(benchmark)
    out = Table(title="Compliance per account", title_justify="left")
    for column in ("account", "OU", "credentials", *controls, "note"):
        out.add_column(column, no_wrap=column != "note", overflow="fold")
    for one in reports:
        if one.report is None:
            out.add_row(
                escape(one.account.label),
                escape(one.account.ou_path),
                "",
                *("" for _ in controls),
                f"[bold red]account-failed[/] ({escape(str(one.error))}) " + escape(one.reason),
            )
            continue
        failures = one.report.failures()
        out.add_row(
            escape(one.account.label),
            escape(one.account.ou_path),
            str(len(one.report.rows)),
            *(_count(failures[c]) for c in controls),
            "",
        )
    return out


def _count(n: int) -> str:
    return f"[bold red]{n}[/]" if n else "[green]0[/]"


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command()
    def report(
        config: ConfigOpt,
        output: OutputOpt = ReportFormat.TABLE,
        as_json: JsonOpt = False,
        benchmark: BenchmarkOpt = DEFAULT_BENCHMARK,
        wide: WideOpt = False,
        account: AccountsOpt = None,
        ou: OusOpt = None,
    ) -> None:
        """Compliance per user and credential: age, last use, the CIS AWS Foundations
        controls of --benchmark (credentials unused for 45 days, one active key per user,
        keys rotated within 90 days, no expired server certificates) with the Security Hub
        controls IAM.3, IAM.8, IAM.22 and IAM.26, and what rotator will do about each.
        With [accounts]: every account, with per-account totals (exit 1 if an account
        could not be surveyed). Changes nothing."""
        out, err = Console(), Console(stderr=True)
        try:
            mark = benchmarks_cis.benchmark(benchmark)
        except ValueError as exc:
            raise fail(ConfigError("--benchmark", [str(exc)]), err) from None
        if as_json and output not in (ReportFormat.TABLE, ReportFormat.JSON):
            problem = f"--json and --output {output}: give one of them"
            raise fail(ConfigError("command line", [problem]), err)
        shape = ReportFormat.JSON if as_json else output
        try:
            cfg = application.load(config)
        except ConfigError as exc:
            raise fail(exc, err) from None
        only, ous = _filters(cfg, account, ou, err)
        close = application.configure_audit(cfg)
        try:
            with render.progress_bar(err) as progress:
                if cfg.accounts is not None:
                    reports = asyncio_run(build_org(cfg, only, ous, mark, progress))
                else:
                    result = asyncio_run(build(cfg, mark, progress))
        except RotatorError as exc:
            raise fail(exc, err) from None
        finally:
            close()
        where = _where(cfg) if shape is ReportFormat.ASFF else None
        if cfg.accounts is not None:
            _print_org(out, reports, mark, shape, wide=wide, where=where)
            if any(r.report is None for r in reports):
                raise typer.Exit(EXIT_FAILED)
            return
        _print(out, [result], shape, wide=wide, where=where)


def _where(cfg: Config) -> tuple[str, str]:
    """The region and partition of the ASFF findings: those rotator's AWS session acts in
    (``[aws] region``, else the environment or profile, else us-east-1)."""
    region = application.make_aws(cfg).session_region
    return region, partitions.for_region(region)


def _filters(
    cfg: Config, accounts: list[str] | None, ous: list[str] | None, err: Console
) -> tuple[list[str], list[str]]:
    """``--account`` / ``--ou``, checked: exit 2 on a malformed ID or OU, or either of
    them without ``[accounts]``."""
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
    if (accounts or ous) and cfg.accounts is None:
        problems.append("--account, --ou: need an [accounts] section in the policy")
    if problems:
        raise fail(ConfigError("command line", problems), err)
    return only, within


def _print(
    out: Console,
    reports: Sequence[compliance.Report],
    shape: ReportFormat,
    *,
    wide: bool,
    where: tuple[str, str] | None = None,
) -> None:
    """``reports`` (one per account) in ``shape``; JSON is printed by the caller. ``where``:
    the region and partition of ASFF findings."""
    file = out.file
    if shape is ReportFormat.ASFF:
        region, partition = where or ("us-east-1", "aws")
        report_asff.write_asff(file, reports, region=region, partition=partition)
    elif shape is ReportFormat.TEXT:
        report_formats.write_text(file, reports)
    elif shape is ReportFormat.CSV:
        report_formats.write_csv(file, reports)
    elif shape is ReportFormat.MARKDOWN:
        report_formats.write_markdown(file, reports)
    elif shape is ReportFormat.HTML:
        report_html.write_html(file, reports)
    elif shape is ReportFormat.JSON:
        (one,) = reports
        render.print_json(out, one.as_dict())
    else:
        for one in reports:
            report_formats.print_table(out, one, wide=wide)
            for line in report_formats.lines_after(one):
                out.print(line, markup=False, highlight=False, soft_wrap=True)
    file.flush()


def _print_org(
    out: Console,
    reports: Sequence[AccountReport],
    benchmark: Benchmark,
    shape: ReportFormat,
    *,
    wide: bool,
    where: tuple[str, str] | None = None,
) -> None:
    if shape is ReportFormat.JSON:
        data = {
            "schema_version": compliance.SCHEMA_VERSION,
            "kind": "org-report",
            "benchmark": benchmark.name,
            "accounts": (
                {**r.totals(), **({"report": r.report.as_dict()} if r.report else {})}
                for r in reports
            ),
            "failures": _sum(reports, benchmark),
        }
        render.print_json(out, data)
        return
    done = [r.report for r in reports if r.report is not None]
    _print(out, done, shape, wide=wide, where=where)
    if shape is not ReportFormat.TABLE:
        return
    out.print(org_table(reports, benchmark))
    total = ", ".join(f"{c}: {n}" for c, n in _sum(reports, benchmark).items())
    out.print(f"failures per CIS control, all accounts: {total}", highlight=False)


def _sum(reports: Sequence[AccountReport], benchmark: Benchmark) -> dict[str, int]:
    totals = dict.fromkeys(_controls_all(benchmark), 0)
    for one in reports:
        if one.report is not None:
            for control, n in one.report.failures().items():
                totals[control] += n
    return totals
