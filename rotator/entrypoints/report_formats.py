"""How ``rotator report`` prints: ``--output json|table|text|csv|markdown|html|asff``
(``asff``: ``report_asff``).

Every format but the table and JSON is built from one flat record per row (``records``:
credentials, server certificates, expired service credentials, OIDC providers), written
one at a time as it is made: a report of 10,000 users is never held a second time as
text. User-supplied text (user names, reasons, AWS messages) is escaped for the format:
no rich markup, no Markdown, no HTML, no spreadsheet formula (a CSV or text cell that
starts with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'``, as OWASP advises).
"""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import IO, TYPE_CHECKING

from rotator.benchmarks_cis import CHECKS, Benchmark, Check

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from rotator.compliance import Report, Row


class ReportFormat(StrEnum):
    """What ``rotator report --output`` prints."""

    JSON = "json"  # one document, schema rotator/schemas/report.schema.json
    TABLE = "table"  # for people at a terminal (80 columns and up)
    TEXT = "text"  # tab-separated, one row a line, no header: for scripts
    CSV = "csv"  # RFC 4180 with a header line: for spreadsheets
    MARKDOWN = "markdown"  # a pipe table: for tickets and wikis
    HTML = "html"  # one self-contained page with a summary chart: for auditors
    ASFF = "asff"  # AWS Security Finding Format findings: for Security Hub


# The Security Hub controls, in the mapping table's order.
SECURITY_HUB: tuple[str, ...] = tuple(
    dict.fromkeys(c for mapped in CHECKS.values() for c in mapped.security_hub)
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def columns(benchmark: Benchmark) -> list[str]:
    """The record's fields: what, whose, its facts, a verdict per control, rotator."""
    cis = [f"cis_{benchmark.control(c)}" for c in benchmark.checks]
    return [
        "account",
        "section",
        "user",
        "kind",
        "credential_id",
        "status",
        "age_days",
        "last_used",
        "expires",
        *cis,
        *SECURITY_HUB,
        "rotator_action",
        "rotator_reason",
    ]


def _verdicts(benchmark: Benchmark, verdicts: dict[Check, str]) -> dict[str, str]:
    out = {f"cis_{benchmark.control(c)}": v for c, v in verdicts.items() if c in benchmark.checks}
    for check, verdict in verdicts.items():
        for control in CHECKS[check].security_hub:
            out[control] = verdict
    return out


def _day(when: object) -> str:
    return f"{when:%Y-%m-%d}" if when is not None else ""


def records(report: Report) -> Iterator[dict[str, str]]:
    """One flat record (every value a string; "" where it does not apply) per row."""
    mark, account = report.benchmark, report.account
    for row in report.rows:
        yield {
            "account": account,
            "section": "credential",
            "user": row.user,
            "kind": str(row.kind),
            "credential_id": row.credential_id,
            "status": row.status,
            "age_days": str(row.age_days),
            "last_used": _day(row.last_used) or "never",
            **_verdicts(mark, {c: str(v) for c, v in row.verdicts.items()}),
            "rotator_action": row.action,
            "rotator_reason": row.reason,
        }
    for cert in report.certificates:
        yield {
            "account": account,
            "section": "server-certificate",
            "kind": "server-certificate",
            "credential_id": cert.name,
            "status": "expired" if cert.expires <= report.generated_at else "valid",
            "expires": _day(cert.expires),
            **_verdicts(mark, {Check.EXPIRED_CERTIFICATES: str(cert.verdict)}),
            "rotator_reason": cert.when(report.generated_at),
        }
    for gone in report.expired:
        yield {
            "account": account,
            "section": "expired-service-credential",
            "user": gone.user,
            "kind": f"service-credential ({gone.service})",
            "credential_id": gone.credential_id,
            "status": "Expired",
            "expires": _day(gone.expired),
            "rotator_action": gone.action,
            "rotator_reason": gone.reason,
        }
    for found in report.findings:
        yield {
            "account": account,
            "section": "oidc-provider",
            "user": found.holder,
            "kind": str(found.kind),
            "credential_id": " ".join(found.credentials),
            "status": "matches" if found.matches else "mismatch",
            "rotator_action": found.action,
            "rotator_reason": found.reason,
        }


def _cell(value: str) -> str:
    """A text or CSV cell that a spreadsheet will not run as a formula."""
    return "'" + value if value.startswith(_FORMULA) else value


def write_csv(out: IO[str], reports: Sequence[Report]) -> None:
    """A header line, then a record a line (quoted as RFC 4180 says)."""
    if not reports:
        return
    names = columns(reports[0].benchmark)
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n", restval="")
    writer.writeheader()
    for report in reports:
        for record in records(report):
            writer.writerow({k: _cell(v) for k, v in record.items()})


def write_text(out: IO[str], reports: Sequence[Report]) -> None:
    """A record a line, fields in ``columns`` order separated by tabs, no header; tabs and
    line breaks inside a field become spaces, and an empty field is ``-``."""
    for report in reports:
        names = columns(report.benchmark)
        for record in records(report):
            fields = (_cell(" ".join(record.get(n, "").split())) or "-" for n in names)
            out.write("\t".join(fields) + "\n")


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~"})


def _md(value: str) -> str:
    """Markdown-inert text in a table cell: the characters that make emphasis, code,
    links, HTML or a new cell backslash-escaped; line breaks as spaces."""
    return " ".join(value.split()).translate(_MARKDOWN)


def write_markdown(out: IO[str], reports: Sequence[Report]) -> None:
    """A heading and a pipe table per account, then its failures per control."""
    for report in reports:
        mark = report.benchmark
        out.write(f"## Compliance, account {_md(report.account)}\n\n")
        out.write(f"{_md(mark.title)}; {_md(report.source)}\n\n")
        names = columns(mark)[1:]  # the heading names the account
        out.write("| " + " | ".join(_md(n) for n in names) + " |\n")
        out.write("|" + "---|" * len(names) + "\n")
        for record in records(report):
            out.write("| " + " | ".join(_md(record.get(n, "")) for n in names) + " |\n")
        failures = ", ".join(f"{n}: {c}" for n, c in report.failures().items())
        out.write(f"\nFailures per control: {_md(failures)}\n\n")


# -- the table, for people ---------------------------------------------------------------

_ID = 20  # an access key ID
_VERDICT = 9  # "2.11 fail"
_MIN_REASON = _ID + 1  # a key ID in a reason is never split


def _used(row_last_used: object) -> str:
    return f"used {row_last_used:%Y-%m-%d}" if row_last_used is not None else "never used"


def _said(row: Row, reason_width: int, *, wide: bool) -> str:
    """What rotator does, wrapped to the column: three lines at most, cut with "…"
    (``wide``: whole); an ID is never broken."""
    said = f"{row.action}: {row.reason}"
    if wide:
        return "\n".join(textwrap.wrap(said, reason_width, break_long_words=False))
    return "\n".join(
        textwrap.wrap(said, reason_width, max_lines=3, placeholder=" …", break_long_words=False)
    )


def _state(row: Row) -> str:
    """A credential's status, age and last use in one line (the stacked layout)."""
    return f"{row.status} {row.age_days}d, {_used(row.last_used)}"


def _widths(report: Report, width: int) -> tuple[int | None, int, int]:
    """The columns' widths, the same for every piece of the table: (user, credential,
    rotator). The user gets a column of its own when its longest name fits whole beside
    the others; else (user ``None``) the name is stacked over the key ID in the credential
    column, which is then as wide as the longest name (cut with "…" only past what the
    terminal leaves: 40 characters at 80 columns)."""
    users = max((len(r.user) for r in report.rows), default=4)
    said = max((len(r.action) + len(r.reason) + 2 for r in report.rows), default=7)
    room = width - (_ID + _VERDICT + 13 + _MIN_REASON)  # what a user column may take
    if users <= max(room, 4):
        user_width = max(4, users)
        reason_width = max(width - (user_width + _ID + _VERDICT + 13), _MIN_REASON)
        return user_width, _ID, max(min(said, reason_width), len("rotator"))
    states = max((len(_state(r)) for r in report.rows), default=_ID)
    widest = width - (_VERDICT + 10 + _MIN_REASON)  # 3 columns: 3 + 3 + 3 + 1 borders
    first = max(_ID, min(max(users, states), widest))
    reason_width = max(width - (first + _VERDICT + 10), _MIN_REASON)
    return None, first, max(min(said, reason_width), len("rotator"))


def table(
    report: Report,
    *,
    width: int,
    wide: bool = False,
    rows: Sequence[Row] | None = None,
    head: bool = True,
    widths: tuple[int | None, int, int] | None = None,
) -> Table:
    """One row per credential (of ``rows``, default all), at most three lines each at any
    width from 80 columns: the user, the credential (ID; status and age; last use), its
    verdicts (one control a line), and what rotator does (the reason wrapped to three
    lines and cut with "…"; ``wide``: whole). IDs, names and dates never break: where a
    long user name leaves no room for a column of its own, it heads the credential's
    cell. ``head``: with the title and the header (the first piece of a long table);
    ``widths``: ``_widths`` of the whole report, measured once for all its pieces."""
    from rich.table import Table
    from rich.text import Text

    mark = report.benchmark
    checks = [c for c in mark.checks if c is not Check.EXPIRED_CERTIFICATES]
    title = (
        f"Compliance, account {report.account}, {mark.title} ({report.source})"
        if wide
        else f"Compliance, account {report.account}, {mark.name}"
    )
    out = Table(title=Text(title) if head else None, title_justify="left", show_header=head)
    user_width, credential_width, reason_width = widths or _widths(report, width)
    if user_width is not None:
        out.add_column("user", no_wrap=True, overflow="ellipsis", width=user_width)
    heading = "credential" if user_width is not None else "user / credential"
    out.add_column(heading, no_wrap=True, overflow="ellipsis", width=credential_width)
    out.add_column(mark.name.removeprefix("cis-"), no_wrap=True, width=_VERDICT)
    out.add_column("rotator", no_wrap=True, overflow="ellipsis", width=reason_width)
    for row in report.rows if rows is None else rows:
        cid = row.credential_id if row.kind.value == "access-key" else "console password"
        verdicts = "\n".join(f"{mark.control(c)} {row.verdicts[c]}" for c in checks)
        said = Text(_said(row, reason_width, wide=wide))
        if user_width is None:
            cells = [Text(f"{row.user}\n{cid}\n{_state(row)}")]
        else:
            state = f"{row.status}, {row.age_days}d old\n{_used(row.last_used)}"
            cells = [Text(row.user), Text(f"{cid}\n{state}")]
        out.add_row(*cells, Text(verdicts), said)
    return out


PIECE = 256  # rows rendered at once: a table of 10,000 users is never held whole


def print_table(console: Console, report: Report, *, wide: bool = False) -> None:
    """``table`` on ``console``, rendered ``PIECE`` rows at a time and joined so that it
    reads as one table (the pieces' inner borders are left out)."""
    from rich.segment import Segments

    rows = report.rows
    pieces = range(0, max(len(rows), 1), PIECE)
    last = pieces[-1]
    widths = _widths(report, console.width)  # every piece as wide as the whole table
    for start in pieces:
        piece = table(
            report,
            width=console.width,
            wide=wide,
            rows=rows[start : start + PIECE],
            head=not start,
            widths=widths,
        )
        if start == 0 == last:
            console.print(piece)
            return
        lines = console.render_lines(piece, pad=False, new_lines=True)
        lines = lines[1 if start else 0 : None if start == last else -1]
        for line in lines:
            console.print(Segments(line), end="")


def lines_after(report: Report) -> Iterable[str]:
    """What follows the table: certificates, expired service credentials, OIDC
    providers, and the failures per control (plain text, not markup)."""
    mark, now = report.benchmark, report.generated_at
    number = mark.control(Check.EXPIRED_CERTIFICATES)
    for cert in report.certificates:
        yield f"server certificate {cert.name}: {cert.when(now)}, {number} {cert.verdict}"
    for gone in report.expired:
        when = f" on {gone.expired:%Y-%m-%d}" if gone.expired else ""
        yield (
            f"expired {gone.service} credential {gone.credential_id} of {gone.user}{when}: "
            f"{gone.action}: {gone.reason}"
        )
    for found in report.findings:
        verdict = "matches" if found.matches else found.action
        yield f"{found.kind} {found.holder}: {verdict}: {found.reason}"
    failures = ", ".join(f"{c}: {n}" for c, n in report.failures().items())
    yield f"failures per CIS control ({mark.name}): {failures}"
    by_check = report.failures_by_check()
    hub = ", ".join(
        f"{control}: {by_check[check]}"
        for check, mapped in CHECKS.items()
        for control in mapped.security_hub
    )
    yield f"failures per Security Hub control: {hub}"
