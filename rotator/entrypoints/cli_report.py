"""The ``rotator report`` command: a compliance view of every user's access keys and console
password (age, last use, CIS 1.12 / 1.13 / 1.14, and 1.19 for server certificates) and what
rotator will do about each. ``register(app)`` adds it to the ``rotator`` CLI; this module
imports nothing from ``cli.py`` so that ``cli.py`` can import it at the top.

Credentials come from the credential report (a handful of IAM calls), or per user if the
report is unavailable. Exit codes: 0 (the report was made, whatever it found), 1 (AWS or
the journal failed), 2 (bad policy file).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from rotator import app as application
from rotator import compliance, credential_report, inventory
from rotator.aws import Aws, Clients, aws_errors
from rotator.credential_report import ReportUnavailable
from rotator.entrypoints.options import AccountsOpt, ConfigOpt, JsonOpt, OusOpt
from rotator.entrypoints.render import progress_bar
from rotator.errors import ConfigError, RotatorError
from rotator.kinds import KindContext, build_kinds
from rotator.model import Kind, Plan, utcnow
from rotator.policy import Account, check_account_id, check_ou
from rotator.progress import NO_PROGRESS, ProgressFn
from rotator.rotation.org import AccountResult, config_for
from rotator.settings import Config
from rotator.sinks import Sinks

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
STYLE = {"pass": "green", "fail": "bold red", "n/a": "dim"}


async def build(config: Config, progress: ProgressFn = NO_PROGRESS) -> compliance.Report:
    """Plan with the policy, survey the whole account, and judge every credential."""
    async with application.open_engine(config) as engine:
        the_plan = await engine.plan(progress=progress)
    return await survey(config, application.make_aws(config), the_plan)


async def survey(config: Config, aws: Aws, the_plan: Plan | None) -> compliance.Report:
    """Every credential of the account ``aws`` acts in, judged and joined with the plan."""
    now = utcnow()
    async with aws.client("iam") as iam, aws.client("sts") as sts, Clients(aws) as clients:
        with aws_errors("GetCallerIdentity"):
            account = str((await sts.get_caller_identity())["Account"])
        users = await inventory.list_users(iam, "/")
        ctx = KindContext(
            iam=iam,
            iam_once=iam,
            aws=aws,
            account=account,
            verify=config.verify,
            sink=Sinks(clients).for_rule,
        )
        kinds = build_kinds(ctx, {Kind.ACCESS_KEY, Kind.LOGIN_PROFILE})
        try:
            report = await credential_report.fetch(iam)
            source = f"credential report generated {report.generated:%Y-%m-%d %H:%M}Z"
        except ReportUnavailable as exc:
            report, source = None, f"per-user listing (credential report unavailable: {exc})"
        view = await credential_report.survey(
            users=users,
            account=account,
            kinds=kinds,
            report=report,
            now=now,
            max_concurrency=config.max_concurrency,
        )
        certificates = await credential_report.server_certificates(iam)
    return compliance.evaluate(view, the_plan, certificates, now, source=source)


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
    config: Config, only: Sequence[str], ous: Sequence[str], progress: ProgressFn = NO_PROGRESS
) -> list[AccountReport]:
    """``build`` in every account of ``[accounts]`` (each on its own session); an account
    that cannot be surveyed gets its error, the others their reports."""
    async with application.open_engine(config) as engine:
        org = engine.org
        assert org is not None
        planned = await org.plan(progress=progress, only=only, ous=ous)
        limit = asyncio.Semaphore(org.settings.max_accounts)

        async def one(planned_one: AccountResult) -> AccountReport:
            account = planned_one.account
            if planned_one.plan is None:
                return AccountReport(
                    account=account, error=planned_one.error, reason=planned_one.reason
                )
            async with limit:
                try:
                    aws = await org.aws_for(account)
                    report = await survey(config_for(config, account), aws, planned_one.plan)
                except Exception as exc:
                    failed = org.failed(account, exc)
                    return AccountReport(account=account, error=failed.error, reason=failed.reason)
            return AccountReport(account=account, report=report)

        return list(await asyncio.gather(*(one(p) for p in planned)))


def org_table(reports: Sequence[AccountReport]) -> Table:
    """Per-account totals: credentials and failures per CIS control."""
    out = Table(title="Compliance per account", title_justify="left")
    for column in ("account", "OU", "credentials", *CONTROLS_ALL, "note"):
        out.add_column(column, overflow="fold")
    for one in reports:
        if one.report is None:
            out.add_row(
                one.account.label,
                one.account.ou_path,
                "",
                *("" for _ in CONTROLS_ALL),
                f"[bold red]account-failed[/] ({one.error}) {one.reason}",
            )
            continue
        failures = one.report.failures()
        out.add_row(
            one.account.label,
            one.account.ou_path,
            str(len(one.report.rows)),
            *(_count(failures[c]) for c in CONTROLS_ALL),
            "",
        )
    return out


CONTROLS_ALL = (*compliance.CONTROLS, "1.19")


def _count(n: int) -> str:
    return f"[bold red]{n}[/]" if n else "[green]0[/]"


def _cell(verdict: compliance.Verdict) -> str:
    return f"[{STYLE[str(verdict)]}]{verdict}[/]"


def table(report: compliance.Report) -> Table:
    """The report for people: one row per credential."""
    out = Table(
        title=f"Compliance, account {report.account} ({report.source})", title_justify="left"
    )
    columns = ("user", "kind", "credential", "status", "age", "last used")
    for column in (*columns, "1.12", "1.13", "1.14", "rotator"):
        out.add_column(column, overflow="fold")
    for row in report.rows:
        used = f"{row.last_used:%Y-%m-%d}" if row.last_used else "never"
        out.add_row(
            row.user,
            str(row.kind),
            row.credential_id,
            row.status,
            f"{row.age_days}d",
            used,
            *(_cell(row.verdicts[c]) for c in compliance.CONTROLS),
            f"{row.action}: {row.reason}",
        )
    return out


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command()
    def report(
        config: ConfigOpt,
        as_json: JsonOpt = False,
        account: AccountsOpt = None,
        ou: OusOpt = None,
    ) -> None:
        """Compliance per user and credential: age, last use, CIS 1.12 (unused), 1.13 (one
        active key), 1.14 (rotated within 90 days), 1.19 (no expired server certificates),
        and what rotator will do about it. With [accounts]: every account, with per-account
        totals (exit 1 if an account could not be surveyed). Changes nothing."""
        out, err = Console(), Console(stderr=True)
        try:
            cfg = application.load(config)
        except ConfigError as exc:
            err.print(f"[bold red]invalid policy file[/] {exc.source}:")
            for problem in exc.problems:
                err.print(f"  - {problem}", markup=False, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        try:
            only = [check_account_id(a) for a in account or []]
            ous = [check_ou(o) for o in ou or []]
        except ValueError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        if (only or ous) and cfg.accounts is None:
            err.print("[bold red]error:[/] --account and --ou need an [accounts] section")
            raise typer.Exit(EXIT_BAD_INPUT)
        close = application.configure_audit(cfg)
        try:
            with progress_bar(err) as progress:
                if cfg.accounts is not None:
                    reports = asyncio.run(build_org(cfg, only, ous, progress))
                else:
                    result = asyncio.run(build(cfg, progress))
        except RotatorError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
        finally:
            close()
        if cfg.accounts is not None:
            _print_org(out, reports, as_json=as_json)
            if any(r.report is None for r in reports):
                raise typer.Exit(EXIT_FAILED)
            return
        if as_json:
            out.print_json(json.dumps(result.as_dict()))
            return
        _print_one(out, result)


def _print_one(out: Console, result: compliance.Report) -> None:
    out.print(table(result))
    for cert in result.certificates:
        expires = f"{cert.expires:%Y-%m-%d}"
        out.print(f"server certificate {cert.name}: expires {expires}, 1.19 {_cell(cert.verdict)}")
    failures = ", ".join(f"{c}: {n}" for c, n in result.failures().items())
    out.print(f"failures per CIS control: {failures}", highlight=False)


def _print_org(out: Console, reports: Sequence[AccountReport], *, as_json: bool) -> None:
    if as_json:
        data = {
            "accounts": [
                {**r.totals(), **({"report": r.report.as_dict()} if r.report else {})}
                for r in reports
            ],
            "failures": _sum(reports),
        }
        out.print_json(json.dumps(data))
        return
    for one in reports:
        if one.report is not None:
            out.print(table(one.report))
    out.print(org_table(reports))
    total = ", ".join(f"{c}: {n}" for c, n in _sum(reports).items())
    out.print(f"failures per CIS control, all accounts: {total}", highlight=False)


def _sum(reports: Sequence[AccountReport]) -> dict[str, int]:
    totals = dict.fromkeys(CONTROLS_ALL, 0)
    for one in reports:
        if one.report is not None:
            for control, n in one.report.failures().items():
                totals[control] += n
    return totals
