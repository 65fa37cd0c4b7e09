"""The cost of laying tables out for their width (``rotator.entrypoints.fit``): the plan
table of N decisions rendered at 80 and at 200 columns, against a baseline measured in the
same run — the same cells in a plain rich ``Table`` (what ``plan`` printed before, which
cut IDs at 80 columns). Target: at most 2x the baseline's time (each cell is measured
once per layout tried). Not part of the test run.

    .venv/bin/python -m benchmarks.fit_tables [--rows 1000 10000]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rotator.entrypoints.fit import Fitted, Group, one_line

COLUMNS = ("user", "kind", "credential", "action", "reason")
NARROW = (Group(("user", "credential")), Group(("kind", "action")), Group(("reason",)))
REASON = "access key AKIARZPUZDIKOTC4SIQR is 120d old (max_age 90d): rotation due now"


def cells(n: int) -> list[tuple[str, str, str, str, Text]]:
    return [
        (escape(f"svc-app-{i:05d}-deployer"), "access-key", f"AKIA{i:016d}", "rotate", Text(REASON))
        for i in range(n)
    ]


def fitted(rows: list[tuple[str, str, str, str, Text]]) -> Fitted:
    table = Fitted("Plan", COLUMNS, free={"reason"}, layouts=(one_line(COLUMNS), NARROW))
    for row in rows:
        table.add_row(*row)
    return table


def plain(rows: list[tuple[str, str, str, str, Text]]) -> Table:
    table = Table(title="Plan", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, no_wrap=column != "reason", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def timed(build: Callable[[], object], width: int) -> float:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    started = time.perf_counter()
    console.print(build())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    print(f"{'rows':>7} {'width':>5} {'plain s':>8} {'fitted s':>8} {'ratio':>6}")
    for n in args.rows:
        rows = cells(n)
        for width in (80, 200):
            base = timed(lambda rows=rows: plain(rows), width)
            ours = timed(lambda rows=rows: fitted(rows), width)
            print(f"{n:>7} {width:>5} {base:>8.2f} {ours:>8.2f} {ours / base:>6.2f}")


if __name__ == "__main__":
    main()
