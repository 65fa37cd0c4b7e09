"""Command-line options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
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
