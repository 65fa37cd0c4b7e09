"""``rotator report --output html``: one self-contained page for auditors.

Inline CSS, an inline SVG bar chart of the failures per control, a table per account of
every record (``report_formats.records``), and nothing fetched from anywhere: a Content
Security Policy of ``default-src 'none'`` says so to the browser too. Every piece of
user-supplied text is HTML-escaped. Rows are written one at a time as they are made.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import IO, TYPE_CHECKING

from rotator.benchmarks_cis import CHECKS
from rotator.entrypoints.report_formats import columns, records

if TYPE_CHECKING:
    from rotator.compliance import Report

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1b1b1b; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #c8c8c8; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.fail { background: #fde2e1; color: #8a1010; font-weight: bold; }
td.pass { color: #1f6b2a; }
td.id, td.user { font-family: ui-monospace, monospace; white-space: nowrap; }
.chart text { font: 12px system-ui, sans-serif; }
.bar { fill: #c0392b; } .bar.zero { fill: #27ae60; }
"""
_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
"""
_BAR_WIDTH, _GAP, _HEIGHT = 64, 16, 160


def _chart(failures: dict[str, int]) -> str:
    """An SVG bar chart: a bar per control, its height the failures (a thin green bar
    for none), labelled with the control and the count."""
    top = max(failures.values(), default=0) or 1
    width = len(failures) * (_BAR_WIDTH + _GAP) + _GAP
    parts = [
        f'<svg class="chart" id="summary-chart" role="img" width="{width}" '
        f'height="{_HEIGHT + 40}" viewBox="0 0 {width} {_HEIGHT + 40}">',
        "<title>Failures per control</title>",
    ]
    for n, (control, count) in enumerate(failures.items()):
        x = _GAP + n * (_BAR_WIDTH + _GAP)
        height = max(2, round(_HEIGHT * count / top)) if count else 2
        y = _HEIGHT - height + 16
        label = escape(control)
        zero = " zero" if count == 0 else ""
        parts.append(
            f'<rect class="bar{zero}" data-control="{label}" data-failures="{count}" '
            f'x="{x}" y="{y}" width="{_BAR_WIDTH}" height="{height}"></rect>'
            f'<text x="{x + _BAR_WIDTH // 2}" y="{y - 4}" text-anchor="middle">{count}</text>'
            f'<text x="{x + _BAR_WIDTH // 2}" y="{_HEIGHT + 34}" '
            f'text-anchor="middle">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _failures(report: Report) -> dict[str, int]:
    """Failures per CIS control of the report's benchmark, then per Security Hub one."""
    by_check = report.failures_by_check()
    out = {f"CIS {n}": c for n, c in report.failures().items()}
    for check, mapped in CHECKS.items():
        for control in mapped.security_hub:
            out[control] = by_check[check]
    return out


def _cell(name: str, value: str) -> str:
    css = value if value in ("pass", "fail") else ""
    if name == "credential_id":
        css = "id"
    elif name == "user":
        css = "user"
    return f'<td class="{css}">{escape(value)}</td>' if css else f"<td>{escape(value)}</td>"


def write_html(out: IO[str], reports: Sequence[Report]) -> None:
    """The page: per account, its benchmark and source, the chart, and the table."""
    title = "rotator compliance report"
    if len(reports) == 1:
        title += f", account {reports[0].account}"
    out.write(_HEAD.format(title=escape(title), css=_CSS))
    for report in reports:
        mark = report.benchmark
        out.write(f'<section class="account" data-account="{escape(report.account)}">\n')
        out.write(f"<h2>Account {escape(report.account)}</h2>\n")
        out.write(
            f"<p>{escape(mark.title)}; {escape(report.source)}; generated "
            f"{report.generated_at:%Y-%m-%d %H:%M}Z</p>\n"
        )
        out.write(_chart(_failures(report)) + "\n")
        names = columns(mark)[1:]
        out.write('<table class="records">\n<thead><tr>')
        out.write("".join(f"<th>{escape(n)}</th>" for n in names))
        out.write("</tr></thead>\n<tbody>\n")
        for record in records(report):
            section = escape(record["section"])
            cells = "".join(_cell(n, record.get(n, "")) for n in names)
            out.write(f'<tr class="{section}">{cells}</tr>\n')
        out.write("</tbody>\n</table>\n</section>\n")
    out.write("</body>\n</html>\n")
