"""Command-line options every command shares."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rotator.entrypoints.exits import fail
from rotator.errors import ConfigError

ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="ROTATOR_CONFIG",
        metavar="FILE",
        help="The policy file (TOML).",
        show_default=False,
    ),
]


class Output(StrEnum):
    """How a command prints its result (``--output``); docs/output.md shows each shape."""

    TABLE = "table"  # rich tables and lines, for people
    JSON = "json"  # one JSON document (schema_version, kind), for programs
    TEXT = "text"  # tab-separated, one row per line, no header, no colour: for cut/awk


OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FORMAT",
        help="table (for people, the default), json (one document, see docs/output.md) or "
        "text (tab-separated, one row per line).",
        show_default=False,
        case_sensitive=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="The same as --output json.")]


def output_format(output: Output | None, as_json: bool, err: Console) -> Output:
    """The format ``--output`` / ``--json`` ask for (table if neither); exit 2 if they
    disagree (``--json -o text``)."""
    if as_json and output not in (None, Output.JSON):
        problem = f"--json and --output {output} disagree: give one of them"
        raise fail(ConfigError("command line", [problem]), err)
    return Output.JSON if as_json else (output or Output.TABLE)


AccountsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--account",
        metavar="ID",
        help="Only this account (its 12-digit ID); repeatable. With --ou: either matches.",
        show_default=False,
    ),
]
OusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ou",
        metavar="OU",
        help="Only accounts in this OU (ou-… / r-… or a path such as /Workloads/Prod, "
        "nested OUs included; needs [accounts]); repeatable.",
        show_default=False,
    ),
]
